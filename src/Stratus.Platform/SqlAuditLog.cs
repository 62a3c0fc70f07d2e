// IAuditLog on the platform database, SQLite or PostgreSQL (table audit_log). Appends run in a
// write transaction (PlatformDatabase.Write: SQLite's IMMEDIATE, PostgreSQL's advisory lock), so
// reading the last hash and inserting the next entry is atomic even across processes sharing it;
// the stores append the entry of a change in the change's own transaction.
using System.Data.Common;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public sealed class SqlAuditLog(PlatformDatabase database, TimeProvider? time = null) : IAuditLog
{
    readonly TimeProvider clock = time ?? TimeProvider.System;

    // The stored details are read by people (`stratus audit list` prints them as stored): a
    // blocklist term in any script, or a pattern's `+` and `<`, is kept as written rather than as
    // \uXXXX, which the default encoder writes for whatever an HTML page could misread. The text is
    // still JSON with its control characters escaped, and is never put into a page.
    static readonly JsonSerializerOptions StoredDetails = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>On the request path (a filtered request's entry), so asynchronously
    /// (PlatformDatabase.WriteAsync).</summary>
    public ValueTask<AuditEntry> AppendAsync(string actor, string action, JsonObject? details = null, CancellationToken cancellationToken = default) =>
        database.WriteAsync((transaction, synchronously, cancellation) => AppendAsync(transaction, new AuditRecord(actor, action, details ?? []), synchronously, cancellation),
            cancellationToken);

    /// <summary>Appends <paramref name="record"/> in a write transaction of the caller's: the
    /// stores' changes pass theirs, so the change and its entry commit together or not at all.</summary>
    internal AuditEntry Append(DbTransaction transaction, AuditRecord record) =>
        Completed(AppendAsync(transaction, record, synchronously: true, CancellationToken.None));

    async ValueTask<AuditEntry> AppendAsync(DbTransaction transaction, AuditRecord record, bool synchronously, CancellationToken cancellationToken)
    {
        var detailsJson = record.Details.ToJsonString(StoredDetails);
        long sequence = 1;
        var previousHash = AuditChain.GenesisHash;
        using (var last = Command(transaction, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))
        {
            using var reader = await ReaderAsync(last, synchronously, cancellationToken);
            if (await NextRowAsync(reader, synchronously, cancellationToken))
            {
                sequence = reader.GetInt64(0) + 1;
                previousHash = reader.GetString(1);
            }
        }
        // Truncated to what the stored text keeps, so the hash recomputed from the row matches.
        var now = ParseTime(FormatTime(clock.GetUtcNow()));
        var hash = AuditChain.ComputeHash(previousHash, sequence, now, record.Actor, record.Action, detailsJson);
        using (var insert = Command(transaction, "INSERT INTO audit_log (seq, time, actor, action, details, hash) VALUES (@seq, @time, @actor, @action, @details, @hash)",
                   ("@seq", sequence), ("@time", FormatTime(now)), ("@actor", record.Actor), ("@action", record.Action), ("@details", detailsJson), ("@hash", hash)))
            await ExecuteAsync(insert, synchronously, cancellationToken);
        return new AuditEntry(sequence, now, record.Actor, record.Action, detailsJson, hash);
    }

    public ValueTask<IReadOnlyList<AuditEntry>> ReadAsync(AuditQuery query, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IReadOnlyList<AuditEntry>>(database.Use(connection =>
        {
            // A filter's parameter is CAST where it is compared with NULL: PostgreSQL must know the type
            // of a parameter that may be NULL, and cannot tell it from IS NULL alone.
            using var command = Command(connection, """
                SELECT seq, time, actor, action, details, hash FROM audit_log
                WHERE seq > @after
                  AND (CAST(@action AS TEXT) IS NULL OR action = @action)
                  AND (CAST(@actor AS TEXT) IS NULL OR actor = @actor)
                  AND (CAST(@from AS TEXT) IS NULL OR time >= @from)
                  AND (CAST(@to AS TEXT) IS NULL OR time < @to)
                ORDER BY seq LIMIT @limit
                """,
                ("@after", query.AfterSequence), ("@action", query.Action), ("@actor", query.Actor),
                ("@from", query.From is { } f ? FormatTime(f) : null), ("@to", query.To is { } t ? FormatTime(t) : null),
                ("@limit", Math.Clamp(query.Limit, 1, 10_000)));
            using var reader = command.ExecuteReader();
            return ReadAll(reader).ToList();
        }));

    public ValueTask<AuditVerification> VerifyAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Use(connection =>
    {
        using var command = Command(connection, "SELECT seq, time, actor, action, details, hash FROM audit_log ORDER BY seq");
        using var reader = command.ExecuteReader();
        return AuditChain.Verify(ReadAll(reader));
    }));

    static IEnumerable<AuditEntry> ReadAll(DbDataReader reader)
    {
        while (reader.Read()) yield return Read(reader);
    }

    static AuditEntry Read(DbDataReader r)
    {
        // A row that was tampered with may hold anything: a time that no longer parses (MinValue
        // makes its hash fail), or NULL where the schema, rewritten too, said NOT NULL (read as
        // empty text, which no entry is written with). The verifier then names the entry
        // instead of crashing, and a listing shows it.
        string Text(int column) => r.IsDBNull(column) ? "" : r.GetString(column);
        var time = TryParseTime(Text(1), out var parsed) ? parsed : DateTimeOffset.MinValue;
        return new(r.GetInt64(0), time, Text(2), Text(3), Text(4), Text(5));
    }
}
