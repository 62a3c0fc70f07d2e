// An index of a run's metrics.jsonl that follows the file while training appends to it: each line
// is read and checked once, and where it lies, its step and its kind are kept. A reader that
// polls a long run (the dashboard's loss curve, every few seconds, from several tabs) then reads
// only the lines written since it last looked, and reads the rows it answers by their place in the
// file instead of parsing the whole file again. Lines are checked as MetricsLog.Entries checks
// them (the same damage is refused with the same words); a line is whole once its newline is
// written, so a last line still being written is not read until it is.
using System.Buffers;
using System.Text.Unicode;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;

namespace Stratus.Training;

/// <summary>A step's row of metrics.jsonl: where its line lies (without its newline), its step,
/// and whether it is an evaluation (val_loss) rather than a training step.</summary>
public readonly record struct MetricsRow(long Offset, long Step, int Length, bool Evaluation);

/// <summary>Not thread-safe: one reader at a time (the server locks it).</summary>
public sealed class MetricsIndex(string runDirectory)
{
    // Bytes of the file's start and of the end of what was indexed, compared on every refresh. A
    // file that no longer holds them was rewritten: a resumed run drops the lines of steps its
    // checkpoint had not seen (MetricsLog) and writes new ones in their place, a new run into the
    // folder starts the file afresh. Either is indexed again from its start, never answered from
    // the old one's places. A file rewritten with the very bytes at both places holds those lines
    // still, and the lines before them are the ones a resumed run keeps.
    const int Witness = 256;
    static readonly byte[] ByteOrderMark = [0xEF, 0xBB, 0xBF];

    readonly string path = Path.Combine(runDirectory, MetricsLog.FileName);
    MetricsRow[] rows = [];
    int count;
    long end;
    int lines;
    byte[] head = [], tail = [];

    /// <summary>Changes whenever the index starts again from the file's start, so that a place in
    /// it (a count of rows) is known to refer to the same file.</summary>
    public long Generation { get; private set; } = NewGeneration();

    /// <summary>The rows indexed, in the file's order (a line without a step is none).</summary>
    public ReadOnlySpan<MetricsRow> Rows => rows.AsSpan(0, count);

    /// <summary>Brings the index up to the file as it is now: only the bytes past what was indexed
    /// are read, unless the file was rewritten, when it is indexed from its start with a new
    /// <see cref="Generation"/>. Returns the file opened for reading rows (the caller disposes it),
    /// null where the run has no metrics.jsonl yet.</summary>
    /// <exception cref="StratusUserException">A line no trainer wrote (as MetricsLog.Entries says), or a file that is no regular file (a folder included).</exception>
    public SafeFileHandle? Refresh()
    {
        FileBytes.RequireRegular(path);
        SafeFileHandle file;
        try { file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            Reset();
            return null;
        }
        // RequireRegular lets a folder through for its callers to say what it is: .NET refuses to
        // open one with "Access to the path is denied".
        catch (UnauthorizedAccessException) when (Directory.Exists(path))
        {
            throw new StratusUserException($"{path} is a directory, not a regular file; a run folder holds its metrics in a file: replace it with the file itself");
        }
        try
        {
            var length = RandomAccess.GetLength(file);
            if (end > 0 && !StillHolds(file, length)) Reset();
            if (length > end) Extend(file, length);
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Forgets what was indexed: the next <see cref="Refresh"/> reads the file from its start.</summary>
    public void Reset()
    {
        count = 0;
        end = 0;
        lines = 0;
        head = tail = [];
        Generation = NewGeneration();
    }

    /// <summary>Reads <paramref name="row"/>'s line into <paramref name="into"/> (its Length long);
    /// false where the file no longer holds a JSON object in UTF-8 there (changed in place since
    /// it was indexed: <see cref="Reset"/> and read again).</summary>
    public static bool TryRead(SafeFileHandle file, MetricsRow row, Span<byte> into)
    {
        if (RandomAccess.Read(file, into, row.Offset) != into.Length || !Utf8.IsValid(into)) return false;
        var reader = new Utf8JsonReader(into);
        try { return reader.Read() && reader.TokenType == JsonTokenType.StartObject && reader.TrySkip() && !reader.Read(); }
        catch (JsonException) { return false; }
    }

    bool StillHolds(SafeFileHandle file, long length) =>
        length >= end && Same(file, head, 0) && Same(file, tail, end - tail.Length);

    static bool Same(SafeFileHandle file, byte[] expected, long offset)
    {
        Span<byte> found = stackalloc byte[Witness];
        found = found[..expected.Length];
        return RandomAccess.Read(file, found, offset) == expected.Length && found.SequenceEqual(expected);
    }

    /// <summary>Indexes the whole lines between what was indexed and <paramref name="length"/>. A
    /// line that does not parse stops it there, to be read again next time: damage only once
    /// another line follows it (a crash can only cut the last line).</summary>
    void Extend(SafeFileHandle file, long length)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            // buffer[0..filled) holds the file's bytes from start on: the lines not yet whole, then those just read.
            long start = end;
            var filled = 0;
            int? broken = null;
            while (start + filled < length)
            {
                if (filled == buffer.Length)
                {
                    // A line longer than the buffer: no trainer writes one, but a file may hold one.
                    var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, filled).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                var read = RandomAccess.Read(file, buffer.AsSpan(filled, (int)Math.Min(buffer.Length - filled, length - start - filled)), start + filled);
                if (read == 0) break;
                filled += read;
                var taken = 0;
                for (int newline; (newline = buffer.AsSpan(taken, filled - taken).IndexOf((byte)'\n')) >= 0; taken += newline + 1)
                {
                    var line = buffer.AsSpan(taken, newline);
                    if (line.EndsWith("\r"u8)) line = line[..^1];
                    var offset = start + taken;
                    if (offset == 0 && line.StartsWith(ByteOrderMark))
                    {
                        line = line[ByteOrderMark.Length..];
                        offset = ByteOrderMark.Length;
                    }
                    if (line.Length == 0)
                    {
                        if (broken is null) end = start + taken + newline + 1;
                        continue;
                    }
                    if (broken is { } before) throw MetricsLog.Damaged(runDirectory, before, "is not a JSON object");
                    if (Parse(line) is not { } entry)
                    {
                        broken = lines + 1;
                        continue;
                    }
                    // Its bytes are answered as they are, in a JSON text that must be UTF-8 (the
                    // parser passes a string's bytes over unchecked).
                    if (!Utf8.IsValid(line)) throw MetricsLog.Damaged(runDirectory, lines + 1, "is not UTF-8 text");
                    (long Step, bool Evaluation)? row;
                    try { row = LossCurves.Points(entry) is var (step, _, val) ? (step, val is not null) : null; }
                    catch (FormatException e) { throw MetricsLog.Damaged(runDirectory, lines + 1, e.Message); }
                    if (row is { } r) Add(new MetricsRow(offset, r.Step, line.Length, r.Evaluation));
                    lines++;
                    end = start + taken + newline + 1;
                }
                buffer.AsSpan(taken, filled - taken).CopyTo(buffer);
                start += taken;
                filled -= taken;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            var witnessed = (int)Math.Min(end, Witness);
            // Shorter than it was a moment ago: rewritten while read, to be read again from its start.
            if (Bytes(file, 0, witnessed) is not { } first || Bytes(file, end - witnessed, witnessed) is not { } last) Reset();
            else (head, tail) = (first, last);
        }
    }

    void Add(MetricsRow row)
    {
        if (count == rows.Length) Array.Resize(ref rows, Math.Max(256, rows.Length * 2));
        rows[count++] = row;
    }

    static byte[]? Bytes(SafeFileHandle file, long offset, int length)
    {
        var bytes = new byte[length];
        return RandomAccess.Read(file, bytes, offset) == length ? bytes : null;
    }

    static JsonObject? Parse(ReadOnlySpan<byte> line)
    {
        try { return JsonNode.Parse(line) as JsonObject; }
        catch (JsonException) { return null; }
    }

    static long NewGeneration() => Random.Shared.NextInt64(1, long.MaxValue);
}
