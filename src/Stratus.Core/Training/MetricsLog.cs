// <run>/metrics.jsonl: one JSON object per line, appended and flushed as training goes, so a
// crash loses at most the line being written. On resume, lines from steps the checkpoint has
// not seen are dropped so the file reads as one uninterrupted run.
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Training;

public sealed class MetricsLog : IDisposable
{
    public const string FileName = "metrics.jsonl";
    readonly StreamWriter writer;

    public MetricsLog(string runDirectory, long resumeStep)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (resumeStep > 0 && File.Exists(path))
        {
            var kept = new List<string>();
            foreach (var line in File.ReadLines(path))
            {
                // A line torn by a crash does not parse and goes too.
                if (Parse(line) is not { } entry || entry["step"]?.Deserialize<long>() >= resumeStep) continue;
                kept.Add(line);
                Curves.Add(entry);
            }
            AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join('\n', kept) + "\n");
        }
        else if (File.Exists(path)) File.Delete(path);
        writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
    }

    /// <summary>The losses written so far, those of the run before a resume included.</summary>
    public LossCurves Curves { get; } = new();

    public void Write(JsonObject entry)
    {
        writer.WriteLine(entry.ToJsonString());
        Curves.Add(entry);
    }

    /// <summary>The entries of a run's metrics.jsonl, of a run in progress too. A last line cut short
    /// (being written, or torn by a crash) is left out; a broken line before it is an error.</summary>
    public static IEnumerable<JsonObject> Read(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        var lines = File.ReadLines(path).Where(l => l.Length > 0).ToList();
        for (var i = 0; i < lines.Count; i++)
        {
            if (Parse(lines[i]) is { } entry) yield return entry;
            else if (i < lines.Count - 1)
                throw new StratusUserException($"line {i + 1} of {path} is not a JSON object; the file was edited or damaged (a crash can only cut its last line)");
        }
    }

    static JsonObject? Parse(string line)
    {
        try { return JsonNode.Parse(line) as JsonObject; }
        catch (JsonException) { return null; }
    }

    public void Dispose() => writer.Dispose();
}
