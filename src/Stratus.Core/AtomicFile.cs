// Writes that never leave a half-written file behind: write a temporary sibling, flush it to
// disk, then rename over the target (rename is atomic on one file system). StagedFiles does the
// same for several files that replace theirs together.
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
    public static void WriteJson(string path, JsonNode node) => Write(path, stream => stream.Write(JsonBytes(node)));

    // Written as UTF-8 at once: through a string, a Hugging Face tokenizer of 40 MB took 200 MB more.
    internal static byte[] JsonBytes(JsonNode node) => JsonSerializer.SerializeToUtf8Bytes(node, ReadableJson);

    public static void Write(string path, Action<FileStream> write)
    {
        using var files = new StagedFiles();
        files.Write(path, write);
        files.Commit();
    }

    /// <summary>The temporary sibling that <paramref name="path"/> is written to before it replaces it.</summary>
    internal static string TemporaryFor(string path) =>
        Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    /// <summary>The temporary sibling folder that the folder <paramref name="path"/> is written
    /// into before it replaces it (a checkpoint's).</summary>
    internal static string TemporaryFolderFor(string path)
    {
        var folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        return Path.Combine(Path.GetDirectoryName(folder)!, $".tmp-{Path.GetFileName(folder)}-{Guid.NewGuid():N}");
    }

    static readonly Regex TemporaryFolderName = new("^\\.tmp-(?<name>.+)-[0-9a-f]{32}$", RegexOptions.CultureInvariant);

    // The name of Write's temporary sibling (TemporaryFor) in this process, and in any process.
    static readonly Regex TemporaryName = new($@"^\.(?<name>.+)\.{Environment.ProcessId}\.[0-9a-f]{{32}}\.tmp$", RegexOptions.CultureInvariant);
    static readonly Regex AnyTemporaryName = new(@"^\.(?<name>.+)\.[0-9]+\.[0-9a-f]{32}\.tmp$", RegexOptions.CultureInvariant);

    /// <summary>The file that <paramref name="path"/>, a temporary sibling <see cref="Write"/> made
    /// in this process, was to become, in the folder that a temporary folder
    /// (<see cref="TemporaryFolderFor"/>) it lies in was to become; any other path as it is. An
    /// error met writing the sibling (a full disk, a folder without write permission) names the
    /// file the user asked for.</summary>
    public static string TargetOf(string path)
    {
        var file = TemporaryName.Match(Path.GetFileName(path)) is { Success: true } match ? Path.Combine(Path.GetDirectoryName(path) ?? "", match.Groups["name"].Value) : path;
        var folder = Path.GetDirectoryName(file);
        return !string.IsNullOrEmpty(folder) && TemporaryFolderName.Match(Path.GetFileName(folder)) is { Success: true } temporary
            ? Path.Combine(Path.GetDirectoryName(folder) ?? "", temporary.Groups["name"].Value, Path.GetFileName(file))
            : file;
    }

    /// <summary>The name of the file that the temporary sibling <paramref name="fileName"/> was to
    /// become, written by any process (one killed while writing left it), or null where it is no
    /// such sibling.</summary>
    internal static string? LeftOverTargetOf(string fileName) =>
        AnyTemporaryName.Match(fileName) is { Success: true } match ? match.Groups["name"].Value : null;
}
