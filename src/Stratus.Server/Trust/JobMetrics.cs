// The rows of a run's metrics.jsonl for GET /api/jobs/{id}/metrics (the dashboard's loss curves).
// A run's file is indexed once and followed as it grows (Core's MetricsIndex, one per file, kept
// for the runs asked about last within a budget of bytes): a poll reads only the lines written
// since the last one, and the rows answered are copied from the file as they are, not parsed
// again. Each answer carries a cursor, the place in the file's index where it ended: a client that
// asks with it gets the rows written since, or, where the file was rewritten meanwhile (a run
// resumed or trained again from the start) or the server no longer knows the cursor (restarted,
// or the run's index was dropped for others), the whole series again, said with "reset": true, so
// that what it holds is never a mix of two files.
// Files are read asynchronously, each run's by one request at a time: a request waits only for
// its own run's reads (a run on a stuck disk holds no other run's requests, nor a thread per
// request waiting for it), and stops waiting once its client has gone.
using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using Stratus.Safety;
using Stratus.Training;

namespace Stratus.Server.Trust;

/// <summary>Bounded, as TensorBoard bounds a scalar series, by keeping rows spread evenly over the
/// run (the first and the last always) where there are more than asked for. Training steps and
/// evaluations are thinned each on its own: evaluations are few, and a chart needs each of them.
/// Safe for concurrent requests.</summary>
/// <param name="budgetBytes">The memory the runs' indexes may hold together (<see cref="MetricsIndex.HeldBytes"/>):
/// past it, the runs asked about least recently are dropped, to be read again from their start
/// when asked about next. The run just read is kept, even where it alone is over the budget.</param>
/// <param name="open">Opens a run's metrics.jsonl (<see cref="MetricsIndex.OpenFile"/> by default).</param>
public sealed class JobMetrics(long budgetBytes = JobMetrics.DefaultBudgetBytes, Func<string, SafeFileHandle?>? open = null)
{
    public const int MaxRows = 1000;

    /// <summary>64 MiB: 24 bytes a row, the indexes of 2.7 million rows together (a 100,000-step
    /// run's is 2.4 MB, a million-step run's 24 MB).</summary>
    public const long DefaultBudgetBytes = 64L << 20;

    /// <summary>A run's index, read by one request at a time (its turn), and its place in the
    /// order of use: none once dropped, when a request still reading it finishes unaccounted.</summary>
    sealed class Run(string directory, Func<string, SafeFileHandle?>? open)
    {
        public readonly string Directory = directory;
        public readonly MetricsIndex Index = new(directory, open);
        public readonly SemaphoreSlim Turn = new(1, 1);
        public LinkedListNode<Run>? Used;
        public long Bytes;
    }

    readonly Dictionary<string, Run> runs = new(StringComparer.Ordinal);
    // Most recently asked about first.
    readonly LinkedList<Run> used = new();
    long held;

    /// <summary>The bytes the kept indexes hold.</summary>
    public long HeldBytes { get { lock (runs) return held; } }

    /// <param name="after">Only rows of a later step.</param>
    /// <param name="cursor">The cursor a previous answer gave: only rows written since, where it still holds.</param>
    /// <param name="limit">At most this many training steps, and as many evaluations.</param>
    /// <exception cref="TrustUserException">409: the run's file holds a line no trainer wrote, or the server may not read it.</exception>
    /// <exception cref="OperationCanceledException">Cancelled before the answer was read (its client went away).</exception>
    public async Task<MetricsAnswer> ReadAsync(string runDirectory, long after, string? cursor, int limit, CancellationToken cancellationToken)
    {
        var run = RunOf(runDirectory);
        await run.Turn.WaitAsync(cancellationToken);
        try
        {
            // A row whose bytes changed in place since they were indexed (a file written over
            // rather than replaced) makes the index start again, once.
            for (var attempt = 0; ; attempt++)
            {
                using var file = await run.Index.RefreshAsync(cancellationToken);
                if (file is null) return new MetricsAnswer(0, 0, null) { Reset = cursor is not null };
                var from = Continues(run.Index, cursor);
                if (await AnswerAsync(run.Index, file, from ?? 0, after, limit, reset: cursor is not null && from is null, cancellationToken) is { } answer) return answer;
                if (attempt == 1) throw new TrustUserException("The job's metrics.jsonl changed while it was read; ask again.") { Conflict = true };
                run.Index.Reset();
            }
        }
        catch (StratusUserException e)
        {
            // The request is sound; the run's file is what is wrong.
            throw new TrustUserException($"The job's metrics cannot be read: {e.Message}.", e) { Conflict = true };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The file the system refuses to this user (no permission, a link that leads round in
            // a loop, a disk that fails reads) is as much the run's as a damaged line, and was a
            // 500 naming nothing; .NET's words name the path and the cause.
            throw new TrustUserException($"The job's metrics cannot be read: the server cannot read {Path.Combine(run.Directory, MetricsLog.FileName)} " +
                $"({e.Message.TrimEnd('.')}); make it a file the server's user may read.", e) { Conflict = true };
        }
        finally
        {
            Account(run);
            run.Turn.Release();
        }
    }

    /// <summary>Checks a cursor's form, so that a bad one is a 400 before the file is read.</summary>
    public static void CheckCursor(string cursor)
    {
        if (!TryParse(cursor, out _, out _))
            throw new TrustUserException($"'cursor' must be the cursor a previous answer of this endpoint gave, got '{cursor}'.") { Param = "cursor" };
    }

    Run RunOf(string runDirectory)
    {
        var key = Path.GetFullPath(runDirectory);
        lock (runs)
        {
            if (runs.TryGetValue(key, out var run)) used.Remove(run.Used!);
            else runs[key] = run = new Run(key, open);
            run.Used = used.AddFirst(run);
            return run;
        }
    }

    /// <summary>Counts what <paramref name="run"/>'s index holds now, and drops the runs asked about
    /// least recently while the kept ones hold more than the budget.</summary>
    void Account(Run run)
    {
        var bytes = run.Index.HeldBytes;
        lock (runs)
        {
            if (run.Used is null) return;
            held += bytes - run.Bytes;
            run.Bytes = bytes;
            while (held > budgetBytes && used.Last!.Value != run)
            {
                var dropped = used.Last.Value;
                used.RemoveLast();
                runs.Remove(dropped.Directory);
                dropped.Used = null;
                held -= dropped.Bytes;
            }
        }
    }

    /// <summary>The row a cursor continues from, null where it is not this index's (rewritten
    /// since, or given by a server before a restart).</summary>
    static int? Continues(MetricsIndex index, string? cursor) =>
        cursor is not null && TryParse(cursor, out var generation, out var row) && generation == index.Generation && row <= index.Count ? row : null;

    static bool TryParse(string cursor, out long generation, out int row)
    {
        row = 0;
        generation = 0;
        var dot = cursor.IndexOf('.');
        return dot > 0 && long.TryParse(cursor.AsSpan(0, dot), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out generation)
            && int.TryParse(cursor.AsSpan(dot + 1), NumberStyles.None, CultureInfo.InvariantCulture, out row);
    }

    static string CursorOf(MetricsIndex index) =>
        string.Create(CultureInfo.InvariantCulture, $"{index.Generation:x}.{index.Count}");

    /// <summary>The rows from <paramref name="from"/> on of a later step than <paramref name="after"/>,
    /// thinned to <paramref name="limit"/> of each kind and read from the file; null where one of
    /// them is no longer what was indexed.</summary>
    static async Task<MetricsAnswer?> AnswerAsync(MetricsIndex index, SafeFileHandle file, int from, long after, int limit, bool reset, CancellationToken cancellationToken)
    {
        // The kept rows chosen twice (a copy of the counts each time): to size the answer, then to read their lines into it.
        var counted = new Kept(after, index, from, limit);
        var (length, rows) = Measure(index, from, counted);
        var answer = new MetricsAnswer(length, rows, CursorOf(index)) { Reset = reset };
        try
        {
            var kept = counted;
            for (var row = from; row < index.Count; row++)
                if (kept.Keeps(index[row]) && !await answer.TryAddAsync(file, index[row], cancellationToken))
                {
                    answer.Dispose();
                    return null;
                }
            return answer;
        }
        catch
        {
            answer.Dispose();
            throw;
        }
    }

    /// <summary>The bytes and the number of the rows an answer keeps.</summary>
    static (int Length, int Rows) Measure(MetricsIndex index, int from, Kept kept)
    {
        int length = 0, rows = 0;
        for (var row = from; row < index.Count; row++)
            if (kept.Keeps(index[row]))
            {
                length += index[row].Length;
                rows++;
            }
        return (length, rows);
    }

    /// <summary>Which rows, taken in order, are kept: those of a later step than <c>after</c>,
    /// <c>limit</c> of each kind where there are more, evenly spaced, the first and last among them.</summary>
    struct Kept
    {
        readonly long after;
        readonly int trainings, evaluations, limit;
        int trainingsSeen, trainingsKept, evaluationsSeen, evaluationsKept;

        public Kept(long after, MetricsIndex index, int from, int limit)
        {
            (this.after, this.limit) = (after, limit);
            for (var row = from; row < index.Count; row++)
            {
                var counted = index[row];
                if (counted.Step > after) { if (counted.Evaluation) evaluations++; else trainings++; }
            }
        }

        public bool Keeps(MetricsRow row) =>
            row.Step > after && (row.Evaluation
                ? Spread(evaluations, limit, ref evaluationsSeen, ref evaluationsKept)
                : Spread(trainings, limit, ref trainingsSeen, ref trainingsKept));

        static bool Spread(int count, int limit, ref int seen, ref int taken)
        {
            var index = seen++;
            if (count <= limit) return true;
            var next = limit == 1 ? count - 1 : (int)Math.Round(taken * (count - 1) / (double)(limit - 1));
            if (index != next) return false;
            taken++;
            return true;
        }
    }
}

/// <summary>An answer of GET /api/jobs/{id}/metrics: <c>{"object": "list", "data": [row, ...],
/// "cursor": ..., "reset": ...}</c>, each row written as the file holds it, from buffers the
/// answer returns to their pool once written.</summary>
public sealed class MetricsAnswer : IResult, IDisposable
{
    byte[] bytes;
    int[] lengths;
    int count, filled;

    /// <param name="length">The bytes of every row's line.</param>
    /// <param name="rows">How many rows.</param>
    /// <param name="cursor">Where the answer ends, for the next request; null before the run logged anything.</param>
    public MetricsAnswer(int length, int rows, string? cursor)
    {
        bytes = length == 0 ? [] : ArrayPool<byte>.Shared.Rent(length);
        lengths = rows == 0 ? [] : ArrayPool<int>.Shared.Rent(rows);
        Cursor = cursor;
    }

    public string? Cursor { get; }

    /// <summary>The cursor asked with no longer held: the rows are the whole series, to replace what the client holds.</summary>
    public bool Reset { get; init; }

    /// <summary>Reads a row's line after those added; false where the file holds no JSON object there any more.</summary>
    public async ValueTask<bool> TryAddAsync(SafeFileHandle file, MetricsRow row, CancellationToken cancellationToken)
    {
        var line = bytes.AsMemory(filled, row.Length);
        if (await RandomAccess.ReadAsync(file, line, row.Offset, cancellationToken) != row.Length || !MetricsIndex.IsRow(line.Span)) return false;
        filled += row.Length;
        lengths[count++] = row.Length;
        return true;
    }

    public async Task ExecuteAsync(HttpContext http)
    {
        try
        {
            http.Response.ContentType = "application/json; charset=utf-8";
            Write(http.Response.BodyWriter);
            await http.Response.BodyWriter.FlushAsync(http.RequestAborted);
        }
        finally
        {
            Dispose();
        }
    }

    void Write(IBufferWriter<byte> body)
    {
        using var json = new Utf8JsonWriter(body);
        json.WriteStartObject();
        json.WriteString("object", "list");
        json.WriteStartArray("data");
        var at = 0;
        // Checked as JSON objects when they were read (MetricsIndex.TryRead).
        foreach (var length in lengths.AsSpan(0, count))
        {
            json.WriteRawValue(bytes.AsSpan(at, length), skipInputValidation: true);
            at += length;
        }
        json.WriteEndArray();
        json.WriteString("cursor", Cursor);
        json.WriteBoolean("reset", Reset);
        json.WriteEndObject();
    }

    public void Dispose()
    {
        if (bytes.Length > 0) ArrayPool<byte>.Shared.Return(bytes);
        if (lengths.Length > 0) ArrayPool<int>.Shared.Return(lengths);
        (bytes, lengths, count) = ([], [], 0);
    }
}
