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
            var lineNumber = 0;
            foreach (var line in Lines(path))
            {
                lineNumber++;
                // A line torn by a crash does not parse and goes too.
                if (Parse(line) is not { } entry) continue;
                // One that parses but holds a loss that is not a number was edited: refused before
                // the file is rewritten, so that nothing in it is lost.
                try
                {
                    if (LossCurves.Step(entry) >= resumeStep) continue;
                    Curves.Add(entry);
                }
                catch (FormatException e) { throw Damaged(runDirectory, lineNumber, e.Message); }
                kept.Add(line);
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
    public static IEnumerable<JsonObject> Read(string runDirectory) => Entries(runDirectory).Select(e => e.Entry);

    /// <summary>The entries of <see cref="Read"/> with the number of their line, for errors that name it.
    /// Read as it is enumerated, a line at a time: a long run's file is hundreds of megabytes.</summary>
    public static IEnumerable<(int Line, JsonObject Entry)> Entries(string runDirectory)
    {
        var number = 0;
        // A line that does not parse is damage only where another line follows it.
        int? broken = null;
        foreach (var line in Lines(Path.Combine(runDirectory, FileName)))
        {
            if (line.Length == 0) continue;
            number++;
            if (broken is { } before) throw Damaged(runDirectory, before, "is not a JSON object");
            if (Parse(line) is { } entry) yield return (number, entry);
            else broken = number;
        }
    }

    /// <summary>The last training step a run's metrics.jsonl records, with its loss, read from the
    /// file's last 16 KiB (a long run's file is large, and lists of jobs read one per job); null
    /// where there is none yet, or no regular file to read (a listing goes on without it).</summary>
    public static (long Step, double Loss)? LastTrainingStep(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        try
        {
            FileBytes.RequireRegular(path);
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            stream.Seek(Math.Max(0, stream.Length - 16384), SeekOrigin.Begin);
            foreach (var line in new StreamReader(stream).ReadToEnd().Split('\n').Reverse())
            {
                // The first line read may be cut, and the last one half-written; a line whose loss is
                // no finite number (edited: 1e999 would be an infinity, which no JSON answer carries)
                // is passed over as they are.
                try
                {
                    if (Parse(line) is { } entry && LossCurves.Points(entry) is (var step, { } point, _)) return (step, point.Loss);
                }
                catch (FormatException) { }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or StratusUserException) { }
        return null;
    }

    /// <summary>The lines of a run's metrics.jsonl, which must be a regular file (see
    /// <see cref="FileBytes.RequireRegular"/>): a named pipe there kept `plot` and `train --resume`
    /// waiting for a writer, and a link to /dev/zero read on until memory ran out.</summary>
    static IEnumerable<string> Lines(string path)
    {
        FileBytes.RequireRegular(path);
        return File.ReadLines(path);
    }

    /// <summary>The error for a line that no trainer wrote: <paramref name="what"/> says what is wrong with it.</summary>
    public static StratusUserException Damaged(string runDirectory, int line, string what) =>
        new($"line {line} of {Path.Combine(runDirectory, FileName)} {what}; the file was edited or damaged (a crash can only cut its last line)");

    static JsonObject? Parse(string line)
    {
        try { return JsonNode.Parse(line) as JsonObject; }
        catch (JsonException) { return null; }
    }

    public void Dispose() => writer.Dispose();
}
