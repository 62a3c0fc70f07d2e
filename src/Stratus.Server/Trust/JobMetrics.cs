// The rows of a run's metrics.jsonl for GET /api/jobs/{id}/metrics (the dashboard's loss curves).
// A run's file is indexed once and followed as it grows (Core's MetricsIndex, one per file, kept
// for the runs asked about last): a poll reads only the lines written since the last one, and the
// rows answered are copied from the file as they are, not parsed again. Each answer carries a
// cursor, the place in the file's index where it ended: a client that asks with it gets the rows
// written since, or, where the file was rewritten meanwhile (a run resumed or trained again from
// the start) or the server no longer knows the cursor (restarted), the whole series again, said
// with "reset": true, so that what it holds is never a mix of two files.
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
/// Safe for concurrent requests: each file's index is read by one at a time.</summary>
public sealed class JobMetrics
{
    public const int MaxRows = 1000;
    // The runs whose indexes are kept (24 bytes a row: a 100,000-step run's is 2.4 MB); the one
    // asked about least recently goes first.
    const int KeptRuns = 32;

    readonly Dictionary<string, (MetricsIndex Index, long Used)> indexes = new(StringComparer.Ordinal);
    long uses;

    /// <param name="after">Only rows of a later step.</param>
    /// <param name="cursor">The cursor a previous answer gave: only rows written since, where it still holds.</param>
    /// <param name="limit">At most this many training steps, and as many evaluations.</param>
    /// <exception cref="TrustUserException">409: the run's file holds a line no trainer wrote.</exception>
    public MetricsAnswer Read(string runDirectory, long after, string? cursor, int limit)
    {
        var index = IndexOf(runDirectory);
        lock (index)
        {
            try
            {
                // A row whose bytes changed in place since they were indexed (a file written over
                // rather than replaced) makes the index start again, once.
                for (var attempt = 0; ; attempt++)
                {
                    using var file = index.Refresh();
                    if (file is null) return new MetricsAnswer(0, 0, null) { Reset = cursor is not null };
                    var from = Continues(index, cursor);
                    if (Answer(index, file, from ?? 0, after, limit, reset: cursor is not null && from is null) is { } answer) return answer;
                    if (attempt == 1) throw new TrustUserException("The job's metrics.jsonl changed while it was read; ask again.") { Conflict = true };
                    index.Reset();
                }
            }
            catch (StratusUserException e)
            {
                // The request is sound; the run's file is what is wrong.
                throw new TrustUserException($"The job's metrics cannot be read: {e.Message}.", e) { Conflict = true };
            }
        }
    }

    /// <summary>Checks a cursor's form, so that a bad one is a 400 before the file is read.</summary>
    public static void CheckCursor(string cursor)
    {
        if (!TryParse(cursor, out _, out _))
            throw new TrustUserException($"'cursor' must be the cursor a previous answer of this endpoint gave, got '{cursor}'.") { Param = "cursor" };
    }

    MetricsIndex IndexOf(string runDirectory)
    {
        var key = Path.GetFullPath(runDirectory);
        lock (indexes)
        {
            if (!indexes.TryGetValue(key, out var held))
            {
                if (indexes.Count == KeptRuns) indexes.Remove(indexes.MinBy(i => i.Value.Used).Key);
                held = (new MetricsIndex(key), 0);
            }
            indexes[key] = (held.Index, ++uses);
            return held.Index;
        }
    }

    /// <summary>The row a cursor continues from, null where it is not this index's (rewritten
    /// since, or given by a server before a restart).</summary>
    static int? Continues(MetricsIndex index, string? cursor) =>
        cursor is not null && TryParse(cursor, out var generation, out var row) && generation == index.Generation && row <= index.Rows.Length ? row : null;

    static bool TryParse(string cursor, out long generation, out int row)
    {
        row = 0;
        generation = 0;
        var dot = cursor.IndexOf('.');
        return dot > 0 && long.TryParse(cursor.AsSpan(0, dot), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out generation)
            && int.TryParse(cursor.AsSpan(dot + 1), NumberStyles.None, CultureInfo.InvariantCulture, out row);
    }

    static string CursorOf(MetricsIndex index) =>
        string.Create(CultureInfo.InvariantCulture, $"{index.Generation:x}.{index.Rows.Length}");

    /// <summary>The rows from <paramref name="from"/> on of a later step than <paramref name="after"/>,
    /// thinned to <paramref name="limit"/> of each kind and read from the file; null where one of
    /// them is no longer what was indexed.</summary>
    static MetricsAnswer? Answer(MetricsIndex index, SafeFileHandle file, int from, long after, int limit, bool reset)
    {
        var rows = index.Rows[from..];
        int trainings = 0, evaluations = 0;
        foreach (var row in rows)
            if (row.Step > after) { if (row.Evaluation) evaluations++; else trainings++; }
        // The kept rows chosen twice: to size the buffer, then to read their lines into it.
        var length = 0;
        var kept = new Kept(after, trainings, evaluations, limit);
        foreach (var row in rows)
            if (kept.Keeps(row)) length += row.Length;
        var answer = new MetricsAnswer(length, Math.Min(trainings, limit) + Math.Min(evaluations, limit), CursorOf(index)) { Reset = reset };
        kept = new Kept(after, trainings, evaluations, limit);
        foreach (var row in rows)
        {
            if (!kept.Keeps(row) || answer.TryAdd(file, row)) continue;
            answer.Dispose();
            return null;
        }
        return answer;
    }

    /// <summary>Which rows, taken in order, are kept: those of a later step than <c>after</c>,
    /// <c>limit</c> of each kind where there are more, evenly spaced, the first and last among them.</summary>
    struct Kept(long after, int trainings, int evaluations, int limit)
    {
        int trainingsSeen, trainingsKept, evaluationsSeen, evaluationsKept;

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
    public bool TryAdd(SafeFileHandle file, MetricsRow row)
    {
        if (!MetricsIndex.TryRead(file, row, bytes.AsSpan(filled, row.Length))) return false;
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
