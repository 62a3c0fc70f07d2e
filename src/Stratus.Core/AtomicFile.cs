// Writes that never leave a half-written file behind: write a temporary sibling, flush it to
// disk, then rename over the target (rename is atomic on one file system).
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Stratus;

public static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, stream =>
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        stream.Write(bytes);
    });

    // Indented, and only what JSON requires escaped: a vocabulary's "<|endoftext|>", "&" or "é"
    // reads as itself, as in Hugging Face's files (the default encoder writes
    // "\u003C|endoftext|\u003E", which is the same JSON but unreadable to a person).
    static readonly JsonSerializerOptions ReadableJson = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes a JSON document for people and tools to read (configs, manifests, reports).</summary>
    public static void WriteJson(string path, JsonNode node) => WriteAllText(path, node.ToJsonString(ReadableJson));

    public static void Write(string path, Action<FileStream> write)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        var temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            // Read access too: a writer may read back what it wrote (a token shard moves its tail to another).
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    // The name of Write's temporary sibling in this process, as above.
    static readonly Regex TemporaryName = new($@"^\.(?<name>.+)\.{Environment.ProcessId}\.[0-9a-f]{{32}}\.tmp$", RegexOptions.CultureInvariant);

    /// <summary>The file that <paramref name="path"/>, a temporary sibling <see cref="Write"/> made
    /// in this process, was to become; any other path as it is. An error met writing the sibling
    /// (a full disk, a folder without write permission) names the file the user asked for.</summary>
    public static string TargetOf(string path) =>
        TemporaryName.Match(Path.GetFileName(path)) is { Success: true } match ? Path.Combine(Path.GetDirectoryName(path) ?? "", match.Groups["name"].Value) : path;
}
