// Usage metering: requests and prompt/completion tokens per key, per UTC day, per model,
// accumulated as requests complete, and queried by key and date range for billing, the admin
// API's /v1/usage and `stratus usage`.
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public sealed record UsageRecord(string KeyId, DateOnly Day, string Model, long Requests, long PromptTokens, long CompletionTokens)
{
    public long TotalTokens => PromptTokens + CompletionTokens;
}

/// <param name="KeyId">One key, or null for all keys.</param>
/// <param name="From">First UTC day, inclusive.</param>
/// <param name="To">Last UTC day, inclusive.</param>
public sealed record UsageQuery(string? KeyId, DateOnly From, DateOnly To, string? Model = null)
{
    /// <summary>The key under which requests served without keys (--insecure-no-auth) are recorded.</summary>
    public const string AnonymousKeyId = "anonymous";

    /// <summary>The key id a usage filter names: a key's name or id, or <see cref="AnonymousKeyId"/>.</summary>
    /// <exception cref="TrustUserException">No such key.</exception>
    public static async ValueTask<string?> KeyIdAsync(ApiKeyService keys, string? nameOrId, CancellationToken cancellationToken = default) =>
        nameOrId is null ? null : nameOrId == AnonymousKeyId ? nameOrId : (await keys.FindAsync(nameOrId, cancellationToken)).Id;

    /// <summary>The days asked for, by default the 30 days up to today (UTC) by <paramref name="time"/>'s clock.</summary>
    public static UsageQuery Days(string? keyId, DateOnly? from, DateOnly? to, string? model, TimeProvider? time = null)
    {
        var last = to ?? DateOnly.FromDateTime((time ?? TimeProvider.System).GetUtcNow().UtcDateTime);
        return new UsageQuery(keyId, from ?? (last.DayNumber >= 30 ? last.AddDays(-30) : DateOnly.MinValue), last, model);
    }

    /// <exception cref="TrustUserException">The range is reversed.</exception>
    public UsageQuery Validate() => From > To ? throw new TrustUserException($"Usage range starts ({From:yyyy-MM-dd}) after it ends ({To:yyyy-MM-dd}).") : this;
}

public interface IUsageStore
{
    /// <summary>Adds one completed request at <paramref name="at"/> (its UTC day counts).</summary>
    ValueTask RecordAsync(string keyId, string model, int promptTokens, int completionTokens, DateTimeOffset at, CancellationToken cancellationToken = default);

    /// <summary>Rows ordered by day, key, model.</summary>
    ValueTask<IReadOnlyList<UsageRecord>> QueryAsync(UsageQuery query, CancellationToken cancellationToken = default);
}

public sealed class SqlUsageStore(PlatformDatabase database) : IUsageStore
{
    const string DayFormat = "yyyy-MM-dd";

    /// <summary>Once per completed request, so asynchronously (PlatformDatabase.UseAsync).</summary>
    public async ValueTask RecordAsync(string keyId, string model, int promptTokens, int completionTokens, DateTimeOffset at, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(completionTokens);
        // One upsert, so concurrent completions add up instead of overwriting each other.
        await database.UseAsync(async (connection, synchronously, cancellation) =>
        {
            using var command = Command(connection, """
                INSERT INTO usage_daily (key_id, day, model, requests, prompt_tokens, completion_tokens)
                VALUES (@key, @day, @model, 1, @prompt, @completion)
                ON CONFLICT (key_id, day, model) DO UPDATE SET
                    requests = usage_daily.requests + 1,
                    prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens,
                    completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens
                """,
                ("@key", keyId), ("@day", Day(at)), ("@model", model), ("@prompt", promptTokens), ("@completion", completionTokens));
            return await ExecuteAsync(command, synchronously, cancellation);
        }, cancellationToken, writes: true);
    }

    public ValueTask<IReadOnlyList<UsageRecord>> QueryAsync(UsageQuery query, CancellationToken cancellationToken = default)
    {
        query.Validate();
        return ValueTask.FromResult<IReadOnlyList<UsageRecord>>(database.Use(connection =>
        {
            // A filter's parameter is CAST where it is compared with NULL: PostgreSQL must know the type
            // of a parameter that may be NULL, and cannot tell it from IS NULL alone.
            using var command = Command(connection, """
                SELECT key_id, day, model, requests, prompt_tokens, completion_tokens FROM usage_daily
                WHERE day >= @from AND day <= @to
                  AND (CAST(@key AS TEXT) IS NULL OR key_id = @key)
                  AND (CAST(@model AS TEXT) IS NULL OR model = @model)
                ORDER BY day, key_id, model
                """,
                ("@from", query.From.ToString(DayFormat)), ("@to", query.To.ToString(DayFormat)), ("@key", query.KeyId), ("@model", query.Model));
            using var reader = command.ExecuteReader();
            var rows = new List<UsageRecord>();
            while (reader.Read())
                rows.Add(new UsageRecord(reader.GetString(0), DateOnly.ParseExact(reader.GetString(1), DayFormat), reader.GetString(2),
                    reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5)));
            return rows;
        }));
    }

    static string Day(DateTimeOffset at) => DateOnly.FromDateTime(at.UtcDateTime).ToString(DayFormat);
}
