// API key lifecycle and authentication: create (the secret is returned once), list, revoke,
// re-limit and rotate by name or id, each change stored with its audit entry in one transaction;
// authenticate a presented key in constant time, a rotated key's old secret until its overlap ends.
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Platform;

public enum AuthenticationFailure { None, Missing, Malformed, Unknown, Revoked, Expired, Rotated }

/// <summary>Failure reasons are for logs; clients get one 401 for a wrong or revoked key, so they
/// cannot tell them apart. Expiry, and a rotated key's old secret past its overlap, are told,
/// with <paramref name="ExpiredAt"/> (when the key or that secret stopped), only to someone
/// holding the real secret, so they know to ask for the new one.</summary>
public sealed record AuthenticationResult(ApiKeyRecord? Key, AuthenticationFailure Failure, DateTimeOffset? ExpiredAt = null)
{
    public bool Succeeded => Key is not null;
}

/// <summary>A rotated key: its new secret, shown this once, and where the rotation came within
/// the last one's overlap, when the secret before it would have stopped (it stopped now).</summary>
public sealed record RotatedApiKey(ApiKeyRecord Key, string Secret, DateTimeOffset? OlderSecretCutShort);

public sealed class ApiKeyService(IApiKeyStore store, TimeProvider? time = null)
{
    readonly TimeProvider clock = time ?? TimeProvider.System;

    /// <param name="expiry">When the key stops authenticating; null: never.</param>
    /// <exception cref="TrustUserException">Bad name, no scope, negative limits, an expiry that
    /// is not in the future, or an active key with this name exists.</exception>
    public async ValueTask<CreatedApiKey> CreateAsync(string name, ApiKeyScopes scopes, RateLimits limits, string actor, ApiKeyExpiry? expiry = null,
        CancellationToken cancellationToken = default)
    {
        ApiKeyFormat.ValidateName(name);
        if (scopes == ApiKeyScopes.None) throw ApiKeyScopeNames.NoScope();
        limits.Validate();
        var now = clock.GetUtcNow();
        var expiresAt = expiry?.From(now);
        if (expiresAt <= now) throw new TrustUserException($"The key would expire at {FormatExpiry(expiresAt.Value)}, which has passed; give a time in the future.");
        var (id, secret) = ApiKeyFormat.Generate();
        var salt = ApiKeyFormat.NewSalt();
        var record = new ApiKeyRecord(id, name, scopes, limits, now, null, expiresAt);
        await store.InsertAsync(new StoredApiKey(record, salt, ApiKeyFormat.Hash(salt, secret)), new AuditRecord(actor, AuditActions.KeyCreated, new JsonObject
        {
            ["key_id"] = id,
            ["name"] = name,
            ["scopes"] = ApiKeyScopeNames.Format(scopes),
            ["rpm"] = limits.RequestsPerMinute,
            ["tpm"] = limits.TokensPerMinute,
            ["expires_at"] = expiresAt is { } at ? PlatformDatabase.FormatTime(at) : null,
        }), cancellationToken);
        return new CreatedApiKey(record, secret);
    }

    public ValueTask<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked = false, CancellationToken cancellationToken = default) =>
        store.ListAsync(includeRevoked, cancellationToken);

    /// <exception cref="TrustUserException">No active key has this name or id.</exception>
    public async ValueTask<ApiKeyRecord> RevokeAsync(string nameOrId, string actor, CancellationToken cancellationToken = default)
    {
        var key = await ResolveActiveAsync(nameOrId, cancellationToken);
        var at = clock.GetUtcNow();
        if (!await store.RevokeAsync(key.Id, at, new AuditRecord(actor, AuditActions.KeyRevoked, new JsonObject { ["key_id"] = key.Id, ["name"] = key.Name }), cancellationToken))
            throw new TrustUserException($"API key '{nameOrId}' was revoked meanwhile.");
        return key with { RevokedAt = at };
    }

    /// <summary>Changes a key's limits, each left as it is when null; the QuotaEnforcer applies
    /// them from the next request, because authentication reads the key record each time.</summary>
    /// <exception cref="TrustUserException">No limit given, no active key (or it was revoked
    /// meanwhile), or negative limits.</exception>
    public async ValueTask<ApiKeyRecord> SetLimitsAsync(string nameOrId, int? requestsPerMinute, int? tokensPerMinute, string actor, CancellationToken cancellationToken = default)
    {
        // Refused rather than audited as a change that changed nothing.
        if (requestsPerMinute is null && tokensPerMinute is null)
            throw new TrustUserException("No limit to change: give rpm, tpm or both (0 is unlimited).");
        var key = await ResolveActiveAsync(nameOrId, cancellationToken);
        // The limit not given is the one stored when the change is written, not when the key was read.
        var limits = await store.ChangeLimitsAsync(key.Id,
            stored => new RateLimits(requestsPerMinute ?? stored.RequestsPerMinute, tokensPerMinute ?? stored.TokensPerMinute).Validate(),
            limits => new AuditRecord(actor, AuditActions.KeyLimitsChanged, new JsonObject
            {
                ["key_id"] = key.Id,
                ["rpm"] = limits.RequestsPerMinute,
                ["tpm"] = limits.TokensPerMinute,
            }), cancellationToken) ?? throw new TrustUserException($"API key '{nameOrId}' was revoked meanwhile.");
        return key with { Limits = limits };
    }

    /// <summary>Gives the key a new secret, keeping its id, name, scopes, limits, expiry and usage,
    /// printed once as at creation; the one it replaces goes on working for
    /// <paramref name="overlap"/> (zero: it stops now), so that its clients move to the new one
    /// without downtime. A rotation during another's overlap stops the secret before it at once.
    /// Servers read the key at every request, so a running one takes both from the next.</summary>
    /// <exception cref="TrustUserException">No active key (or it was revoked meanwhile), an
    /// expired one, or an overlap longer than <see cref="ApiKeyRotation.MaxOverlap"/>.</exception>
    public async ValueTask<RotatedApiKey> RotateAsync(string nameOrId, TimeSpan overlap, string actor, CancellationToken cancellationToken = default)
    {
        if (overlap < TimeSpan.Zero || overlap > ApiKeyRotation.MaxOverlap)
            throw new TrustUserException($"The overlap must be 0 to {ApiKeyRotation.MaxOverlap.TotalDays:0} days.");
        var key = await ResolveActiveAsync(nameOrId, cancellationToken);
        if (HasExpired(key))
            throw new TrustUserException($"API key '{key.Name}' expired on {FormatExpiry(key.ExpiresAt!.Value)}, and a new secret would not work either; create a new key.");
        var now = clock.GetUtcNow();
        var previousUntil = now + overlap;
        var secret = ApiKeyFormat.GenerateFor(key.Id);
        var salt = ApiKeyFormat.NewSalt();
        var before = await store.RotateAsync(key.Id, salt, ApiKeyFormat.Hash(salt, secret), previousUntil, before => new AuditRecord(actor, AuditActions.KeyRotated, new JsonObject
        {
            ["key_id"] = key.Id,
            ["name"] = key.Name,
            ["previous_secret_until"] = PlatformDatabase.FormatTime(previousUntil),
            // A rotation within the last one's overlap: the secret before it stops now, not then.
            ["older_secret_cut_short"] = before.HasPreviousSecretAt(now) ? PlatformDatabase.FormatTime(before.PreviousSecretExpiresAt!.Value) : null,
        }), cancellationToken) ?? throw new TrustUserException($"API key '{nameOrId}' was revoked meanwhile.");
        return new RotatedApiKey(before with { PreviousSecretExpiresAt = previousUntil }, secret,
            before.HasPreviousSecretAt(now) ? before.PreviousSecretExpiresAt : null);
    }

    /// <summary>Checks a presented key (the raw value of a bearer token or api-key header).
    /// Never throws for bad input: malformed keys are an ordinary failure.</summary>
    public async ValueTask<AuthenticationResult> AuthenticateAsync(string? presented, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(presented)) return new(null, AuthenticationFailure.Missing);
        if (!ApiKeyFormat.TryGetId(presented, out var id)) return new(null, AuthenticationFailure.Malformed);
        // An unknown id answers sooner than a wrong secret; that reveals only whether an id
        // exists, and ids are not secret.
        var stored = await store.FindAsync(id, cancellationToken);
        if (stored is null) return new(null, AuthenticationFailure.Unknown);
        var current = ApiKeyFormat.Matches(stored.Salt, stored.Hash, presented);
        var previous = !current && stored is { PreviousSalt: { } previousSalt, PreviousHash: { } previousHash } && ApiKeyFormat.Matches(previousSalt, previousHash, presented);
        if (!current && !previous) return new(null, AuthenticationFailure.Unknown);
        // Revocation, expiry and a rotation's end are reported only to someone holding a real secret.
        if (!stored.Record.IsActive) return new(null, AuthenticationFailure.Revoked);
        if (HasExpired(stored.Record)) return new(null, AuthenticationFailure.Expired, stored.Record.ExpiresAt);
        return previous && !stored.Record.HasPreviousSecretAt(clock.GetUtcNow())
            ? new(null, AuthenticationFailure.Rotated, stored.Record.PreviousSecretExpiresAt)
            : new(stored.Record, AuthenticationFailure.None);
    }

    /// <summary>Whether the key's expiry has come, by this service's clock.</summary>
    public bool HasExpired(ApiKeyRecord key) => key.HasExpiredAt(clock.GetUtcNow());

    /// <summary>An expiry as people read it, to the second, in UTC.</summary>
    public static string FormatExpiry(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The key with this id, else with this name, revoked keys included (their usage
    /// outlives them); of several keys with one name the active one, else the newest.</summary>
    /// <exception cref="TrustUserException">No key has this name or id.</exception>
    public async ValueTask<ApiKeyRecord> FindAsync(string nameOrId, CancellationToken cancellationToken = default)
    {
        var keys = await store.ListAsync(includeRevoked: true, cancellationToken);
        return keys.FirstOrDefault(k => k.Id == nameOrId)
            ?? keys.Where(k => k.Name == nameOrId).OrderBy(k => k.IsActive ? 0 : 1).ThenByDescending(k => k.CreatedAt).FirstOrDefault()
            ?? throw new TrustUserException($"No API key with name or id '{nameOrId}'.") { NotFound = true };
    }

    async ValueTask<ApiKeyRecord> ResolveActiveAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var active = await store.ListAsync(includeRevoked: false, cancellationToken);
        return active.FirstOrDefault(k => k.Id == nameOrId)
            ?? active.FirstOrDefault(k => k.Name == nameOrId)
            ?? throw new TrustUserException($"No active API key with name or id '{nameOrId}'.") { NotFound = true };
    }
}
