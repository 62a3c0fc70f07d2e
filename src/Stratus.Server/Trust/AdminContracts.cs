// Wire shapes of the admin API (/v1/admin/*, GET /v1/usage): snake_case like the rest of the
// OpenAI surface, lists wrapped as {"object": "list", "data": [...]}.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public sealed record ListResponse<T>(
    [property: JsonPropertyName("data")] IReadOnlyList<T> Data)
{
    [JsonPropertyName("object")] public string Object => "list";
}

/// <param name="Scopes">"inference,training" or ["inference", "training"]; missing or null:
/// <see cref="ApiKeyScopeNames.Default"/>, as the CLI's --scopes.</param>
/// <param name="ExpiresAt">An ISO 8601 time (UTC unless it names an offset; a date alone is its
/// midnight UTC) the key stops working at; or <paramref name="ExpiresIn"/>, "30d", "12h"...
/// from its creation. Neither: the key never expires.</param>
public sealed record CreateKeyRequest(
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("scopes")] JsonElement Scopes,
    [property: JsonPropertyName("rpm")] int Rpm = 0,
    [property: JsonPropertyName("tpm")] int Tpm = 0,
    [property: JsonPropertyName("expires_at")] string? ExpiresAt = null,
    [property: JsonPropertyName("expires_in")] string? ExpiresIn = null)
{
    /// <exception cref="TrustUserException">Both expiry fields, or either unreadable.</exception>
    public ApiKeyExpiry? ParseExpiry() => ApiKeyExpiry.Parse(ExpiresAt, ExpiresIn, "'expires_at'", "'expires_in'");

    /// <exception cref="TrustUserException">Scopes not a string or array of strings.</exception>
    public ApiKeyScopes ParseScopes() => Scopes.ValueKind switch
    {
        JsonValueKind.Undefined or JsonValueKind.Null => ApiKeyScopeNames.Default,
        JsonValueKind.String => ApiKeyScopeNames.Parse(Scopes.GetString()!),
        JsonValueKind.Array when Scopes.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String)
            => ApiKeyScopeNames.Parse(string.Join(",", Scopes.EnumerateArray().Select(s => s.GetString()))),
        _ => throw new TrustUserException("'scopes' must be a string (\"inference,training\") or an array of scope names."),
    };
}

/// <summary>New limits; a missing field keeps the key's current value. 0 means unlimited.</summary>
public sealed record SetLimitsRequest(
    [property: JsonPropertyName("rpm")] int? Rpm,
    [property: JsonPropertyName("tpm")] int? Tpm);

public sealed record KeyView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("scopes")] IReadOnlyList<string> Scopes,
    [property: JsonPropertyName("rpm")] int Rpm,
    [property: JsonPropertyName("tpm")] int Tpm,
    [property: JsonPropertyName("created_at")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("revoked_at")] DateTimeOffset? RevokedAt,
    [property: JsonPropertyName("expires_at")] DateTimeOffset? ExpiresAt)
{
    public static KeyView From(ApiKeyRecord key) => new(key.Id, key.Name, ApiKeyScopeNames.Format(key.Scopes).Split(','),
        key.Limits.RequestsPerMinute, key.Limits.TokensPerMinute, key.CreatedAt, key.RevokedAt, key.ExpiresAt);
}

/// <param name="Key">The secret: shown in this response only.</param>
public sealed record CreatedKeyView(
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("api_key")] KeyView ApiKey);

public sealed record BlocklistBody(
    [property: JsonPropertyName("terms")] List<string>? Terms,
    [property: JsonPropertyName("patterns")] List<string>? Patterns,
    [property: JsonPropertyName("category")] string? Category);

public sealed record BlocklistView(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("category")] string Category,
    [property: JsonPropertyName("terms")] IReadOnlyList<string> Terms,
    [property: JsonPropertyName("patterns")] IReadOnlyList<string> Patterns)
{
    public static BlocklistView From(Blocklist list) => new(list.Name, list.Category.WireName(), list.Terms, list.Patterns);
}

/// <param name="ActorName">The name of the API key that acted, where the actor is one (revoked
/// keys included); null for any other actor (`cli:&lt;user&gt;`).</param>
public sealed record AuditEntryView(
    [property: JsonPropertyName("seq")] long Sequence,
    [property: JsonPropertyName("time")] DateTimeOffset Time,
    [property: JsonPropertyName("actor")] string Actor,
    [property: JsonPropertyName("actor_name")] string? ActorName,
    [property: JsonPropertyName("action")] string Action,
    [property: JsonPropertyName("details")] JsonNode? Details,
    [property: JsonPropertyName("hash")] string Hash)
{
    public static AuditEntryView From(AuditEntry e, string? actorName) => new(e.Sequence, e.Time, e.Actor, actorName, e.Action, ParseDetails(e.Details), e.Hash);

    // A tampered row may hold anything; show it as text rather than fail the listing.
    static JsonNode? ParseDetails(string details)
    {
        try
        {
            return JsonNode.Parse(details);
        }
        catch (JsonException)
        {
            return JsonValue.Create(details);
        }
    }
}

public sealed record AuditVerificationView(
    [property: JsonPropertyName("valid")] bool Valid,
    [property: JsonPropertyName("entries_checked")] long EntriesChecked,
    [property: JsonPropertyName("first_bad_seq")] long? FirstBadSequence,
    [property: JsonPropertyName("problem")] string? Problem,
    [property: JsonPropertyName("head_hash")] string HeadHash)
{
    public static AuditVerificationView From(AuditVerification v) => new(v.Valid, v.EntriesChecked, v.FirstBadSequence, v.Problem, v.HeadHash);
}

public sealed record UsageView(
    [property: JsonPropertyName("key_id")] string KeyId,
    [property: JsonPropertyName("day")] string Day,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("requests")] long Requests,
    [property: JsonPropertyName("prompt_tokens")] long PromptTokens,
    [property: JsonPropertyName("completion_tokens")] long CompletionTokens,
    [property: JsonPropertyName("total_tokens")] long TotalTokens)
{
    public static UsageView From(UsageRecord r) => new(r.KeyId, r.Day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), r.Model,
        r.Requests, r.PromptTokens, r.CompletionTokens, r.TotalTokens);
}
