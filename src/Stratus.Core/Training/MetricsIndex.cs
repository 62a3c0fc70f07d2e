// An index of a run's metrics.jsonl that follows the file while training appends to it: each line
// is read and checked once, and where it lies, its step and its kind are kept. A reader that
// polls a long run (the dashboard's loss curve, every few seconds, from several tabs) then reads
// only the lines written since it last looked, and reads the rows it answers by their place in the
// file instead of parsing the whole file again. Lines are split and checked as MetricsLog.Entries
// splits and checks them (the same damage is refused with the same words); a line is whole once
// its newline is written, so a last line still being written is not read until it is.
// The file is read in blocks and each line checked where it lies, without a parsed copy: a line
// as the trainer writes it (its fields once each, the step a whole number, the losses finite
// numbers) is read through once; any other goes the way MetricsLog reads it, so that its refusal
// is worded by the same code. A million-line file is read in well under a second, holding 24
// bytes a row (see bench/README.md).
using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Text.Unicode;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Win32.SafeHandles;

namespace Stratus.Training;

/// <summary>A step's row of metrics.jsonl: where its line lies (without its newline), its step,
/// and whether it is an evaluation (val_loss) rather than a training step.</summary>
public readonly record struct MetricsRow(long Offset, long Step, int Length, bool Evaluation);

/// <summary>Not thread-safe: one reader at a time (the server takes a turn per run).</summary>
/// <param name="runDirectory">The run folder whose metrics.jsonl is indexed.</param>
/// <param name="open">Opens the file for reading, null where there is none; by default
/// <see cref="OpenFile"/>. Tests give one that blocks, as a stuck disk would.</param>
public sealed class MetricsIndex(string runDirectory, Func<string, SafeFileHandle?>? open = null)
{
    // Bytes of the file's start and of the end of what was indexed, compared on every refresh. A
    // file that no longer holds them was rewritten: a resumed run drops the lines of steps its
    // checkpoint had not seen (MetricsLog) and writes new ones in their place, a new run into the
    // folder starts the file afresh. Either is indexed again from its start, never answered from
    // the old one's places. A file rewritten with the very bytes at both places holds those lines
    // still, and the lines before them are the ones a resumed run keeps.
    const int Witness = 256;

    /// <summary>The longest line read. The trainer's are a few hundred bytes; a longer one is no
    /// trainer's, and refusing it bounds what a read holds (a file with no newline, say a binary
    /// one put in its place, was otherwise held whole, again on every poll) and what an answer of
    /// <c>2 x 1,000</c> rows copies.</summary>
    public const int MaxLineBytes = 64 * 1024;

    // Rows are kept in blocks of this many (48 KiB, under the large object heap's 85,000 bytes):
    // growing adds a block and never copies the rows held, and what is held is what is used.
    const int BlockRows = 2048;
    // Read a block at a time; a line not yet whole is moved to the buffer's start, so the buffer
    // holds the longest line allowed with its \r\n and a block more.
    const int ReadBytes = 64 * 1024;
    static readonly int RowBytes = Unsafe.SizeOf<MetricsRow>();
    static readonly byte[] ByteOrderMark = [0xEF, 0xBB, 0xBF];

    readonly string path = Path.Combine(runDirectory, MetricsLog.FileName);
    readonly Func<string, SafeFileHandle?> open = open ?? OpenFile;
    readonly byte[] head = new byte[Witness], tail = new byte[Witness], found = new byte[Witness];
    MetricsRow[][] blocks = [];
    int count, witnessed;
    long end;
    int lines;

    /// <summary>Changes whenever the index starts again from the file's start, so that a place in
    /// it (a count of rows) is known to refer to the same file.</summary>
    public long Generation { get; private set; } = NewGeneration();

    /// <summary>How many rows are indexed (a line without a step is none).</summary>
    public int Count => count;

    /// <summary>The indexed rows in the file's order.</summary>
    public MetricsRow this[int row] => (uint)row < (uint)count ? blocks[row / BlockRows][row % BlockRows] : throw new ArgumentOutOfRangeException(nameof(row));

    /// <summary>The memory the index holds: its blocks of rows and the bytes it compares. A cache
    /// of indexes is bounded by it.</summary>
    public long HeldBytes => (long)blocks.Length * BlockRows * RowBytes + blocks.Length * IntPtr.Size + 3 * Witness;

    /// <summary>Brings the index up to the file as it is now: only the bytes past what was indexed
    /// are read, unless the file was rewritten, when it is indexed from its start with a new
    /// <see cref="Generation"/>. Returns the file opened for reading rows (the caller disposes it),
    /// null where the run has no metrics.jsonl yet. Cancelled, or failed reading, it forgets
    /// what it had (the next refresh starts from the file's start).</summary>
    /// <exception cref="StratusUserException">A line no trainer wrote (as MetricsLog.Entries says), or a file that is no regular file (a folder included).</exception>
    public async ValueTask<SafeFileHandle?> RefreshAsync(CancellationToken cancellationToken = default)
    {
        if (open(path) is not { } file)
        {
            Reset();
            return null;
        }
        StratusUserException? damage = null;
        try
        {
            var length = RandomAccess.GetLength(file);
            if (end > 0 && !await StillHoldsAsync(file, length, cancellationToken)) Reset();
            if (length > end)
            {
                // The lines before a damaged one stay indexed, for it to be refused again next time
                // without reading them again.
                try { await ExtendAsync(file, length, cancellationToken); }
                catch (StratusUserException e) { damage = e; }
                if (!await WitnessAsync(file, cancellationToken)) Reset();
            }
        }
        catch
        {
            // Cancelled, or the disk failed: nothing known by half is kept.
            Reset();
            file.Dispose();
            throw;
        }
        if (damage is null) return file;
        file.Dispose();
        ExceptionDispatchInfo.Throw(damage);
        return null;
    }

    /// <summary>Opens a run's metrics.jsonl for reading, which must be a regular file (see
    /// <see cref="FileBytes.RequireRegular"/>); null where there is none.</summary>
    public static SafeFileHandle? OpenFile(string path)
    {
        FileBytes.RequireRegular(path);
        try { return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
        // RequireRegular lets a folder through for its callers to say what it is: .NET refuses to
        // open one with "Access to the path is denied".
        catch (UnauthorizedAccessException) when (Directory.Exists(path))
        {
            throw new StratusUserException($"{path} is a directory, not a regular file; a run folder holds its metrics in a file: replace it with the file itself");
        }
    }

    /// <summary>Forgets what was indexed: the next refresh reads the file from its start.</summary>
    public void Reset()
    {
        blocks = [];
        count = 0;
        end = 0;
        lines = 0;
        witnessed = 0;
        Generation = NewGeneration();
    }

    /// <summary>Checks a row's line as read back from its place: false where the file no longer
    /// holds a JSON object in UTF-8 there (changed in place since it was indexed: <see cref="Reset"/>
    /// and read again).</summary>
    public static bool IsRow(ReadOnlySpan<byte> line)
    {
        if (!Utf8.IsValid(line)) return false;
        var reader = new Utf8JsonReader(line);
        try { return reader.Read() && reader.TokenType == JsonTokenType.StartObject && reader.TrySkip() && !reader.Read(); }
        catch (JsonException) { return false; }
    }

    async ValueTask<bool> StillHoldsAsync(SafeFileHandle file, long length, CancellationToken cancellationToken) =>
        length >= end && await SameAsync(file, head, 0, cancellationToken) && await SameAsync(file, tail, end - witnessed, cancellationToken);

    async ValueTask<bool> SameAsync(SafeFileHandle file, byte[] expected, long offset, CancellationToken cancellationToken) =>
        await RandomAccess.ReadAsync(file, found.AsMemory(0, witnessed), offset, cancellationToken) == witnessed
        && found.AsSpan(0, witnessed).SequenceEqual(expected.AsSpan(0, witnessed));

    /// <summary>Takes the bytes at the file's start and before <see cref="end"/>; false where the
    /// file is shorter than it was a moment ago (rewritten while read, to be read again).</summary>
    async ValueTask<bool> WitnessAsync(SafeFileHandle file, CancellationToken cancellationToken)
    {
        witnessed = (int)Math.Min(end, Witness);
        return await RandomAccess.ReadAsync(file, head.AsMemory(0, witnessed), 0, cancellationToken) == witnessed
            && await RandomAccess.ReadAsync(file, tail.AsMemory(0, witnessed), end - witnessed, cancellationToken) == witnessed;
    }

    /// <summary>Indexes the whole lines between what was indexed and <paramref name="length"/>.</summary>
    async ValueTask ExtendAsync(SafeFileHandle file, long length, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxLineBytes + ByteOrderMark.Length + 2 + ReadBytes);
        try
        {
            // buffer[0..filled) holds the file's bytes from start on: the line not yet whole, then those just read.
            long start = end;
            var filled = 0;
            int? broken = null;
            while (start + filled < length)
            {
                var read = await RandomAccess.ReadAsync(file, buffer.AsMemory(filled, (int)Math.Min(buffer.Length - filled, length - start - filled)), start + filled, cancellationToken);
                if (read == 0) break;
                filled += read;
                var taken = Take(buffer.AsSpan(0, filled), start, ref broken);
                buffer.AsSpan(taken, filled - taken).CopyTo(buffer);
                start += taken;
                filled -= taken;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Indexes the whole lines of <paramref name="bytes"/> (the file's from
    /// <paramref name="start"/>), returning how many bytes they take. A line that does not parse
    /// is noted in <paramref name="broken"/> and read again next time: damage only once another
    /// line follows it (a crash can only cut the last line).</summary>
    int Take(ReadOnlySpan<byte> bytes, long start, ref int? broken)
    {
        var taken = 0;
        for (int next; (next = NextLine(bytes, taken, out var line)) > 0; taken = next)
        {
            var offset = start + taken;
            if (offset == 0 && line.StartsWith(ByteOrderMark))
            {
                line = line[ByteOrderMark.Length..];
                offset = ByteOrderMark.Length;
            }
            if (line.Length == 0)
            {
                if (broken is null) end = start + next;
                continue;
            }
            if (broken is { } before) throw MetricsLog.Damaged(runDirectory, before, "is not a JSON object");
            if (line.Length > MaxLineBytes) throw TooLong();
            if (!Index(line, offset))
            {
                broken = lines + 1;
                continue;
            }
            lines++;
            end = start + next;
        }
        if (bytes.Length - taken > MaxLineBytes + ByteOrderMark.Length + 1)
            throw broken is { } cut ? MetricsLog.Damaged(runDirectory, cut, "is not a JSON object") : TooLong();
        return taken;
    }

    /// <summary>Where the line at <paramref name="from"/> ends, and the next begins: lines end
    /// as MetricsLog reads them (File.ReadLines), at \n, \r\n or a lone \r. 0 where it is not
    /// whole yet.</summary>
    static int NextLine(ReadOnlySpan<byte> bytes, int from, out ReadOnlySpan<byte> line)
    {
        line = default;
        var at = bytes[from..].IndexOfAny((byte)'\n', (byte)'\r');
        if (at < 0) return 0;
        var lineEnd = from + at;
        line = bytes[from..lineEnd];
        if (bytes[lineEnd] == '\n') return lineEnd + 1;
        // \r\n or a lone \r: the byte after it tells, once it is read.
        return lineEnd + 1 == bytes.Length ? 0 : bytes[lineEnd + 1] == '\n' ? lineEnd + 2 : lineEnd + 1;
    }

    StratusUserException TooLong() =>
        MetricsLog.Damaged(runDirectory, lines + 1, $"is longer than {MaxLineBytes:N0} bytes, which no trainer writes");

    /// <summary>Indexes a whole line at <paramref name="offset"/> (a row where it has a step);
    /// false where it is no JSON object (broken).</summary>
    /// <exception cref="StratusUserException">It is no UTF-8 text, or its step or a loss is no number.</exception>
    bool Index(ReadOnlySpan<byte> line, long offset)
    {
        var scanned = Scan(line, out var step, out var evaluation);
        if (scanned == Line.Broken) return false;
        // Its bytes are answered as they are, in a JSON text that must be UTF-8 (the parser
        // passes a string's bytes over unchecked).
        if (!Utf8.IsValid(line)) throw MetricsLog.Damaged(runDirectory, lines + 1, "is not UTF-8 text");
        if (scanned == Line.Other)
        {
            // Read as MetricsLog reads it, for its refusal's words.
            try { (step, evaluation) = LossCurves.Points((JsonObject)JsonNode.Parse(line)!) is var (parsed, _, val) ? (parsed, val is not null) : ((long?)null, false); }
            catch (FormatException e) { throw MetricsLog.Damaged(runDirectory, lines + 1, e.Message); }
        }
        if (step is { } s) Add(new MetricsRow(offset, s, line.Length, evaluation));
        return true;
    }

    enum Line { Broken, Plain, Other }

    /// <summary>Reads a line through once: Broken where it is no JSON object (as JsonNode.Parse
    /// refuses it), Plain where its fields are named once each, unescaped, and the step (where
    /// there is one) a whole number and the losses finite numbers, as the trainer writes them;
    /// Other where LossCurves has to say what is wrong with it, or that nothing is.</summary>
    static Line Scan(ReadOnlySpan<byte> line, out long? step, out bool evaluation)
    {
        step = null;
        evaluation = false;
        // The fields' names, to find one named twice: a trainer's line has fewer than a dozen.
        Span<Range> names = stackalloc Range[32];
        var named = 0;
        var plain = true;
        var reader = new Utf8JsonReader(line);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return Line.Broken;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.ValueSpan;
                var at = (int)reader.TokenStartIndex + 1;
                if (reader.ValueIsEscaped || named == names.Length) plain = false;
                else
                {
                    foreach (var seen in names[..named])
                        if (line[seen].SequenceEqual(name)) plain = false;
                    names[named++] = at..(at + name.Length);
                }
                var isStep = name.SequenceEqual("step"u8);
                var isLoss = name.SequenceEqual("train_loss"u8) || name.SequenceEqual("val_loss"u8) || name.SequenceEqual("val_loss_stderr"u8);
                reader.Read();
                if (isStep)
                {
                    if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var whole)) step = whole;
                    else plain = false;
                }
                else if (isLoss && !(reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out var loss) && double.IsFinite(loss))) plain = false;
                else if (name.SequenceEqual("val_loss"u8)) evaluation = true;
                if (!reader.TrySkip()) return Line.Broken;
            }
            if (reader.Read()) return Line.Broken;
        }
        catch (JsonException) { return Line.Broken; }
        return plain ? Line.Plain : Line.Other;
    }

    void Add(MetricsRow row)
    {
        if (count == blocks.Length * BlockRows)
        {
            Array.Resize(ref blocks, blocks.Length + 1);
            blocks[^1] = new MetricsRow[BlockRows];
        }
        blocks[count / BlockRows][count % BlockRows] = row;
        count++;
    }

    static long NewGeneration() => Random.Shared.NextInt64(1, long.MaxValue);
}
