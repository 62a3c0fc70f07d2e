// API keys: scopes, per-key rate limits, the key format, and how a key is stored. A key is
// "sk-stratus-" + a 12-character id (9 random bytes) + a 43-character secret (32 random bytes),
// both base64url. The id is not secret: it names the key in lists, logs and the audit log, and
// finds the stored row without scanning. Only a salted SHA-256 of the whole key is stored.
//
// Why SHA-256 and not PBKDF2/Argon2: slow hashes protect low-entropy passwords from guessing.
// These secrets are 256 random bits, which no amount of guessing reaches, so a fast hash loses
// nothing, and it keeps authentication (done on every request) in microseconds. The salt makes
// equal keys hash differently and rules out precomputed tables.
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Stratus.Safety;

namespace Stratus.Platform;

[Flags]
public enum ApiKeyScopes
{
    None = 0,
    /// <summary>/v1 completions, chat, embeddings, moderations.</summary>
    Inference = 1,
    /// <summary>Submitting and managing training jobs.</summary>
    Training = 2,
    /// <summary>Keys, policies, blocklists, audit, usage of every key.</summary>
    Admin = 4,
}

public static class ApiKeyScopeNames
{
    /// <exception cref="TrustUserException">An unknown scope name, or none.</exception>
    public static ApiKeyScopes Parse(string text)
    {
        var scopes = ApiKeyScopes.None;
        foreach (var part in text.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
            scopes |= part.ToLowerInvariant() switch
            {
                "inference" => ApiKeyScopes.Inference,
                "training" => ApiKeyScopes.Training,
                "admin" => ApiKeyScopes.Admin,
                _ => throw new TrustUserException($"Unknown scope '{part}'; expected inference, training or admin."),
            };
        return scopes == ApiKeyScopes.None ? throw new TrustUserException("An API key needs at least one scope (inference, training, admin).") : scopes;
    }

    public static string Format(ApiKeyScopes scopes) => string.Join(",",
        new[] { ApiKeyScopes.Inference, ApiKeyScopes.Training, ApiKeyScopes.Admin }.Where(s => scopes.HasFlag(s)).Select(s => s.ToString().ToLowerInvariant()));
}

/// <summary>Per-key limits per minute; 0 means unlimited.</summary>
public sealed record RateLimits(int RequestsPerMinute, int TokensPerMinute)
{
    public static RateLimits Unlimited { get; } = new(0, 0);

    /// <exception cref="TrustUserException">A negative limit.</exception>
    public RateLimits Validate() => RequestsPerMinute < 0 || TokensPerMinute < 0
        ? throw new TrustUserException("Rate limits must be 0 (unlimited) or positive.")
        : this;
}

/// <summary>What is known about a key, without its secret.</summary>
public sealed record ApiKeyRecord(
    string Id,
    string Name,
    ApiKeyScopes Scopes,
    RateLimits Limits,
    DateTimeOffset CreatedAt,
    DateTimeOffset? RevokedAt)
{
    public bool IsActive => RevokedAt is null;
    public bool Allows(ApiKeyScopes scope) => (Scopes & scope) == scope || Scopes.HasFlag(ApiKeyScopes.Admin);
}

/// <summary>A new key: the only moment the secret exists outside the client.</summary>
public sealed record CreatedApiKey(ApiKeyRecord Key, string Secret);

/// <summary>A key as stores keep it.</summary>
public sealed record StoredApiKey(ApiKeyRecord Record, byte[] Salt, byte[] Hash);

public static class ApiKeyFormat
{
    public const string Prefix = "sk-stratus-";
    const int IdBytes = 9;
    const int SecretBytes = 32;
    public const int IdLength = 12;
    public const int Length = 11 + IdLength + 43;

    static readonly Regex Shape = new($"^{Regex.Escape(Prefix)}[A-Za-z0-9_-]{{{Length - Prefix.Length}}}$", RegexOptions.CultureInvariant);
    static readonly Regex Name = new("^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$", RegexOptions.CultureInvariant);

    /// <summary>A new random key and its id.</summary>
    public static (string Id, string Key) Generate()
    {
        var id = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(IdBytes));
        var secret = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(SecretBytes));
        return (id, Prefix + id + secret);
    }

    /// <summary>The id of a well-formed key; false for anything else (wrong prefix, length or
    /// alphabet), without throwing: malformed keys are an everyday input.</summary>
    public static bool TryGetId(string? key, out string id)
    {
        id = "";
        if (key is null || key.Length != Length || !Shape.IsMatch(key)) return false;
        id = key.Substring(Prefix.Length, IdLength);
        return true;
    }

    /// <summary>The key from an "Authorization: Bearer ..." value or a bare "api-key" value.</summary>
    public static string? FromHeader(string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        var trimmed = value.Trim();
        return trimmed.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? trimmed[7..].Trim() : trimmed;
    }

    public static byte[] NewSalt() => RandomNumberGenerator.GetBytes(16);

    public static byte[] Hash(ReadOnlySpan<byte> salt, string key)
    {
        var keyBytes = Encoding.UTF8.GetBytes(key);
        var input = new byte[salt.Length + keyBytes.Length];
        salt.CopyTo(input);
        keyBytes.CopyTo(input.AsSpan(salt.Length));
        return SHA256.HashData(input);
    }

    /// <summary>Constant-time comparison, so response timing says nothing about how much of a
    /// guessed key was right.</summary>
    public static bool Matches(StoredApiKey stored, string key) =>
        CryptographicOperations.FixedTimeEquals(Hash(stored.Salt, key), stored.Hash);

    /// <exception cref="TrustUserException">Not a usable key name.</exception>
    public static void ValidateName(string name)
    {
        if (!Name.IsMatch(name))
            throw new TrustUserException($"Key name '{name}' is invalid: use 1-64 letters, digits, '_', '.', '@', '-', starting with a letter or digit.");
        if (name.StartsWith(Prefix, StringComparison.Ordinal))
            throw new TrustUserException("A key name must not look like a key.");
    }
}

/// <summary>Keys as stored. Every change takes the audit entry that records it and stores both in
/// one transaction, so no change goes unaudited when the log cannot be written.</summary>
public interface IApiKeyStore
{
    /// <exception cref="TrustUserException">An active key already has this name.</exception>
    ValueTask InsertAsync(StoredApiKey key, AuditRecord audit, CancellationToken cancellationToken = default);
    ValueTask<StoredApiKey?> FindAsync(string id, CancellationToken cancellationToken = default);
    ValueTask<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked, CancellationToken cancellationToken = default);
    /// <returns>False when no active key has this id; nothing is audited then.</returns>
    ValueTask<bool> RevokeAsync(string id, DateTimeOffset at, AuditRecord audit, CancellationToken cancellationToken = default);
    /// <returns>False when no key has this id; nothing is audited then.</returns>
    ValueTask<bool> SetLimitsAsync(string id, RateLimits limits, AuditRecord audit, CancellationToken cancellationToken = default);
}
