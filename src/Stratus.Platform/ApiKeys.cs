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
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Stratus.Safety;

namespace Stratus.Platform;

[Flags]
public enum ApiKeyScopes
{
    None = 0,
    /// <summary>/v1 completions, chat, embeddings, moderations; /metrics too (see
    /// <see cref="ApiKeyScopeNames.Granted"/>).</summary>
    Inference = 1,
    /// <summary>Submitting and managing training jobs.</summary>
    Training = 2,
    /// <summary>Keys, policies, blocklists, audit, usage of every key.</summary>
    Admin = 4,
    /// <summary>Reading /metrics and nothing else: a Prometheus scraper's key, which cannot
    /// spend tokens.</summary>
    Metrics = 8,
}

public static class ApiKeyScopeNames
{
    /// <summary>A key's scopes where its creator names none (`stratus keys create` without
    /// --scopes, POST /v1/admin/keys without "scopes"): calling the models, nothing more.</summary>
    public const ApiKeyScopes Default = ApiKeyScopes.Inference;

    /// <summary>Every scope by its name, in the order lists and messages give them.</summary>
    static readonly (ApiKeyScopes Scope, string Name)[] Known =
        [(ApiKeyScopes.Inference, "inference"), (ApiKeyScopes.Training, "training"), (ApiKeyScopes.Admin, "admin"), (ApiKeyScopes.Metrics, "metrics")];

    /// <summary>Every scope: what an admin key is granted.</summary>
    public static readonly ApiKeyScopes All = Known.Aggregate(ApiKeyScopes.None, (all, k) => all | k.Scope);

    /// <summary>"inference, training, admin, metrics": the names a user may give.</summary>
    public static string Listed { get; } = string.Join(", ", Known.Select(k => k.Name));

    /// <summary>What a key with <paramref name="scopes"/> may do: admin implies every scope, and
    /// inference implies metrics (an inference key read /metrics before the metrics scope existed,
    /// and scrapers set up with one keep working).</summary>
    public static ApiKeyScopes Granted(ApiKeyScopes scopes) =>
        scopes.HasFlag(ApiKeyScopes.Admin) ? All
        : scopes.HasFlag(ApiKeyScopes.Inference) ? scopes | ApiKeyScopes.Metrics
        : scopes;

    /// <exception cref="TrustUserException">An unknown scope name, or none.</exception>
    public static ApiKeyScopes Parse(string text)
    {
        var scopes = ApiKeyScopes.None;
        foreach (var part in text.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries))
        {
            var known = Array.FindIndex(Known, k => k.Name.Equals(part, StringComparison.OrdinalIgnoreCase));
            scopes |= known >= 0 ? Known[known].Scope : throw new TrustUserException($"Unknown scope '{part}'; expected one of {Listed}.");
        }
        return scopes == ApiKeyScopes.None ? throw NoScope() : scopes;
    }

    /// <summary>The refusal of a key without any scope.</summary>
    public static TrustUserException NoScope() => new($"An API key needs at least one scope ({Listed}).");

    public static string Format(ApiKeyScopes scopes) => string.Join(",", Known.Where(k => scopes.HasFlag(k.Scope)).Select(k => k.Name));
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
/// <param name="ExpiresAt">When the key stops authenticating; null: never. An expired key is
/// still active (listed, its name taken) until it is revoked.</param>
/// <param name="PreviousSecretExpiresAt">When the secret the key's last rotation replaced stops
/// authenticating (then or earlier: it may have passed); null: never rotated.</param>
public sealed record ApiKeyRecord(
    string Id,
    string Name,
    ApiKeyScopes Scopes,
    RateLimits Limits,
    DateTimeOffset CreatedAt,
    DateTimeOffset? RevokedAt,
    DateTimeOffset? ExpiresAt = null,
    DateTimeOffset? PreviousSecretExpiresAt = null)
{
    public bool IsActive => RevokedAt is null;
    public bool HasExpiredAt(DateTimeOffset now) => ExpiresAt <= now;
    /// <summary>Whether the secret a rotation replaced still authenticates at <paramref name="now"/>.</summary>
    public bool HasPreviousSecretAt(DateTimeOffset now) => PreviousSecretExpiresAt > now;
    public bool Allows(ApiKeyScopes scope) => (ApiKeyScopeNames.Granted(Scopes) & scope) == scope;
}

/// <summary>When a new key expires: at a time, or a span after it is created (the key service's
/// clock decides when that is).</summary>
public sealed class ApiKeyExpiry
{
    /// <summary>Keys live at most this long; further is a typo, and past year 9999 no time exists.</summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromDays(36_500);

    // [0-9], not \d: \d takes every script's digits ('٣'), which long.Parse would then refuse with a FormatException.
    static readonly Regex Span = new(@"^\s*([0-9]{1,6})\s*([mhdw])?\s*$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    ApiKeyExpiry(DateTimeOffset? time, TimeSpan? after) => (Time, After) = (time, after);

    public DateTimeOffset? Time { get; }
    public TimeSpan? After { get; }

    public static ApiKeyExpiry At(DateTimeOffset time) => new(time, null);
    public static ApiKeyExpiry In(TimeSpan span) => new(null, span);

    /// <summary>The time a key created at <paramref name="createdAt"/> expires.</summary>
    public DateTimeOffset From(DateTimeOffset createdAt) => Time ?? createdAt + After!.Value;

    /// <summary>The expiry that an "at" value (an ISO 8601 time, UTC unless it names an offset; a
    /// date alone is its midnight UTC) or an "in" value ("90m", "12h", "30d", "2w") gives, at most
    /// one of them; null when neither is given. <paramref name="atName"/> and
    /// <paramref name="inName"/> are how the caller's user knows them (--expires, expires_at).</summary>
    /// <exception cref="TrustUserException">Both given, or either unreadable.</exception>
    public static ApiKeyExpiry? Parse(string? at, string? @in, string atName, string inName)
    {
        if (at is not null && @in is not null) throw new TrustUserException($"Give {atName} or {inName}, not both.");
        if (at is not null)
            return DateTimeOffset.TryParse(at, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var time)
                ? At(time)
                : throw new TrustUserException($"{atName} must be an ISO 8601 time (2026-12-31T18:00:00Z) or date (2026-12-31, its midnight UTC), not '{at}'.");
        if (@in is null) return null;
        var span = ParseSpan(@in, inName);
        if (span <= TimeSpan.Zero || span > MaxLifetime)
            throw new TrustUserException($"{inName} must be more than nothing and at most {MaxLifetime.TotalDays:0} days, not '{@in}'.");
        return In(span);
    }

    /// <summary>A span as people write it: a number and a unit, m (minutes), h, d or w ("90m",
    /// "12h", "30d", "2w"); 0 needs none. <paramref name="name"/> is how the caller's user knows it.</summary>
    /// <exception cref="TrustUserException">Anything else.</exception>
    public static TimeSpan ParseSpan(string text, string name)
    {
        var match = Span.Match(text);
        var count = match.Success ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : -1;
        if (count < 0 || count > 0 && !match.Groups[2].Success)
            throw new TrustUserException($"{name} must be a number and a unit, m (minutes), h, d or w, such as 30d or 12h; not '{text}'.");
        return count == 0 ? TimeSpan.Zero : char.ToLowerInvariant(match.Groups[2].Value[0]) switch
        {
            'm' => TimeSpan.FromMinutes(count),
            'h' => TimeSpan.FromHours(count),
            'd' => TimeSpan.FromDays(count),
            _ => TimeSpan.FromDays(7 * count),
        };
    }
}

/// <summary>How long a rotated key's old secret goes on working beside the new one, so that its
/// clients can move to the new one without downtime (Stripe's rolling keys; Azure OpenAI's two
/// keys, regenerated one at a time, give the same window).</summary>
public static class ApiKeyRotation
{
    /// <summary>A day: a deploy of the key's clients fits in it.</summary>
    public static readonly TimeSpan DefaultOverlap = TimeSpan.FromHours(24);
    /// <summary>Past a month the old secret is a second key, which `keys create` makes openly.</summary>
    public static readonly TimeSpan MaxOverlap = TimeSpan.FromDays(30);

    /// <summary>An overlap as given (--overlap 24h; 0 ends the old secret at once); the default
    /// where none is given.</summary>
    /// <exception cref="TrustUserException">Unreadable, or longer than <see cref="MaxOverlap"/>.</exception>
    public static TimeSpan ParseOverlap(string? text, string name)
    {
        if (text is null) return DefaultOverlap;
        var overlap = ApiKeyExpiry.ParseSpan(text, name);
        return overlap <= MaxOverlap ? overlap
            : throw new TrustUserException($"{name} must be at most {MaxOverlap.TotalDays:0} days, not '{text}'; for clients that need longer, create them a key of their own.");
    }
}

/// <summary>A new key: the only moment the secret exists outside the client.</summary>
public sealed record CreatedApiKey(ApiKeyRecord Key, string Secret);

/// <summary>A key as stores keep it: its secret's salted hash, and the one its last rotation
/// replaced (null: never rotated), which works until <see cref="ApiKeyRecord.PreviousSecretExpiresAt"/>.</summary>
public sealed record StoredApiKey(ApiKeyRecord Record, byte[] Salt, byte[] Hash, byte[]? PreviousSalt = null, byte[]? PreviousHash = null);

public static partial class ApiKeyFormat
{
    public const string Prefix = "sk-stratus-";
    const int IdBytes = 9;
    const int SecretBytes = 32;
    public const int IdLength = 12;
    public const int Length = 11 + IdLength + 43;

    static readonly Regex Shape = new($"^{Regex.Escape(Prefix)}[A-Za-z0-9_-]{{{Length - Prefix.Length}}}$", RegexOptions.CultureInvariant);
    static readonly Regex Name = new(@"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\z", RegexOptions.CultureInvariant);
    /// <summary>A '%' that itself may be percent-encoded any number of times (%25, %2525, ...), as a
    /// URL carries a key that each of its writers escaped again (`%2573` for `s`). The '25's are
    /// taken whole and never given back (no key character's code begins with 25), so a run of them
    /// is read once: a line of 8 KB of them costs microseconds, not a backtracking search.</summary>
    const string Escape = "%(?>(?:25)*)";
    /// <summary>A character of a key's alphabet (A-Z, a-z, 0-9, '_', '-'), as it is or
    /// percent-encoded (%2D, %41, %61 ...) to any depth, as a URL's query string carries it and a
    /// request line in the log quotes it.</summary>
    const string KeyCharacter = "(?:[A-Za-z0-9_-]|" + Escape + "(?i:2D|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9A]))";
    /// <summary><see cref="Prefix"/>, each character of it as it is or percent-encoded to any depth.</summary>
    const string PrefixInText = "(?:s|" + Escape + "73)(?:k|" + Escape + "6(?i:B))(?:-|" + Escape + "2(?i:D))(?:s|" + Escape + "73)(?:t|" + Escape + "74)" +
        "(?:r|" + Escape + "72)(?:a|" + Escape + "61)(?:t|" + Escape + "74)(?:u|" + Escape + "75)(?:s|" + Escape + "73)(?:-|" + Escape + "2(?i:D))";

    /// <summary>A key, or what begins as one, anywhere in a text, each character of it as it is or
    /// percent-encoded: its id (<see cref="IdLength"/>, 12, characters at most), then the rest of it.
    /// Source-generated: every server log line with a '%' in it runs it, and the interpreter took
    /// 1-3 µs a line where this takes about 0.3.</summary>
    [GeneratedRegex(PrefixInText + "(?<id>" + KeyCharacter + "{0,12})" + KeyCharacter + "*", RegexOptions.CultureInvariant)]
    private static partial Regex InText();

    /// <summary><paramref name="text"/> with every key in it, percent-encoded or not, cut to its id
    /// (which `stratus keys list` and the access log show; the secret follows it), for text bound
    /// for a log.</summary>
    public static string Redact(string text) =>
        text.Contains(Prefix, StringComparison.Ordinal) || text.Contains('%')
            ? InText().Replace(text, static key => $"{Prefix}{Unescape(key.Groups["id"].ValueSpan)}[redacted]")
            : text;

    /// <summary>An id as <see cref="InText"/> matched it, its characters unescaped whatever their
    /// depth, in one pass (unescaping a level at a time would read a deep one again per level).</summary>
    static string Unescape(ReadOnlySpan<char> id)
    {
        Span<char> characters = stackalloc char[IdLength];
        var count = 0;
        for (var i = 0; i < id.Length; i++)
        {
            if (id[i] != '%')
            {
                characters[count++] = id[i];
                continue;
            }
            i++;
            while (id[i..].StartsWith("25", StringComparison.Ordinal)) i += 2;
            characters[count++] = (char)byte.Parse(id.Slice(i++, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
        }
        return new string(characters[..count]);
    }

    /// <summary>A new random key and its id.</summary>
    public static (string Id, string Key) Generate()
    {
        var id = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(IdBytes));
        return (id, GenerateFor(id));
    }

    /// <summary>A new random key with the id <paramref name="id"/>: a rotated key's new secret.</summary>
    public static string GenerateFor(string id) => Prefix + id + Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(SecretBytes));

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
    public static bool Matches(ReadOnlySpan<byte> salt, ReadOnlySpan<byte> hash, string key) =>
        CryptographicOperations.FixedTimeEquals(Hash(salt, key), hash);

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
    /// <summary>Reads the active key's limits and stores what <paramref name="change"/> makes of
    /// them, with the audit entry <paramref name="audit"/> makes of the result, in one write
    /// transaction: two changes made at once (one of rpm, one of tpm) each build on the other
    /// instead of one writing back the limit it read before the other changed it. An exception
    /// from <paramref name="change"/> stores nothing.</summary>
    /// <returns>The limits stored; null when no active key has this id (nothing is audited then).</returns>
    ValueTask<RateLimits?> ChangeLimitsAsync(string id, Func<RateLimits, RateLimits> change, Func<RateLimits, AuditRecord> audit, CancellationToken cancellationToken = default);
    /// <summary>Gives the active key the secret hashed as <paramref name="salt"/> and
    /// <paramref name="hash"/>, keeping the one it had as its previous secret until
    /// <paramref name="previousUntil"/> (a previous one before it is dropped), with the audit entry
    /// <paramref name="audit"/> makes of the key as it was, in one write transaction.</summary>
    /// <returns>The key as it was before; null when no active key has this id (nothing is audited then).</returns>
    ValueTask<ApiKeyRecord?> RotateAsync(string id, byte[] salt, byte[] hash, DateTimeOffset previousUntil, Func<ApiKeyRecord, AuditRecord> audit, CancellationToken cancellationToken = default);
}
