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
            var kept = File.ReadLines(path).Where(line => KeepLine(line, resumeStep)).ToList();
            foreach (var line in kept) Curves.Add(JsonNode.Parse(line)!.AsObject());
            AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join('\n', kept) + "\n");
        }
        else if (File.Exists(path)) File.Delete(path);
        writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = true };
    }

    static bool KeepLine(string line, long resumeStep)
    {
        try { return JsonNode.Parse(line)?["step"]?.GetValue<long>() < resumeStep; }
        catch (JsonException) { return false; } // a line torn by a crash
    }

    /// <summary>The losses written so far, those of the run before a resume included.</summary>
    public LossCurves Curves { get; } = new();

    public void Write(JsonObject entry)
    {
        writer.WriteLine(entry.ToJsonString());
        Curves.Add(entry);
    }

    public static IEnumerable<JsonObject> Read(string runDirectory) =>
        File.ReadLines(Path.Combine(runDirectory, FileName)).Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!.AsObject());

    public void Dispose() => writer.Dispose();
}
