// API key lifecycle and authentication: create (the secret is returned once), list, revoke and
// re-limit by name or id, each change stored with its audit entry in one transaction;
// authenticate a presented key in constant time.
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Platform;

public enum AuthenticationFailure { None, Missing, Malformed, Unknown, Revoked, Expired }

/// <summary>Failure reasons are for logs; clients get one 401 for a wrong or revoked key, so they
/// cannot tell them apart. Expiry is told, with <paramref name="ExpiredAt"/>, only to someone
/// holding the real secret, so they know to ask for a new key.</summary>
public sealed record AuthenticationResult(ApiKeyRecord? Key, AuthenticationFailure Failure, DateTimeOffset? ExpiredAt = null)
{
    public bool Succeeded => Key is not null;
}

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

    /// <summary>Checks a presented key (the raw value of a bearer token or api-key header).
    /// Never throws for bad input: malformed keys are an ordinary failure.</summary>
    public async ValueTask<AuthenticationResult> AuthenticateAsync(string? presented, CancellationToken cancellationToken = default)
    {
        if (string.IsNullOrWhiteSpace(presented)) return new(null, AuthenticationFailure.Missing);
        if (!ApiKeyFormat.TryGetId(presented, out var id)) return new(null, AuthenticationFailure.Malformed);
        // An unknown id answers sooner than a wrong secret; that reveals only whether an id
        // exists, and ids are not secret.
        var stored = await store.FindAsync(id, cancellationToken);
        if (stored is null || !ApiKeyFormat.Matches(stored, presented)) return new(null, AuthenticationFailure.Unknown);
        // Revocation and expiry are reported only to someone holding the real secret.
        if (!stored.Record.IsActive) return new(null, AuthenticationFailure.Revoked);
        return HasExpired(stored.Record) ? new(null, AuthenticationFailure.Expired, stored.Record.ExpiresAt) : new(stored.Record, AuthenticationFailure.None);
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
