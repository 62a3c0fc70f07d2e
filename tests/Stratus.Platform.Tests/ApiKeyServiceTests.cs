// API keys: random, shown once, stored only as a salted hash, found by id, compared in
// constant time, revocable by name or id, and every change audited without the secret.
using System.Data.Common;
using System.Text;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public abstract class ApiKeyServiceTests : IDisposable
{
    readonly TestDatabases databases;
    readonly TempPlatform platform;
    readonly ApiKeyService keys;

    protected ApiKeyServiceTests(TestDatabases databases)
    {
        this.databases = databases;
        platform = new(databases);
        keys = platform.Stores.KeyService();
    }

    public void Dispose() => platform.Dispose();

    [Fact]
    public async Task Created_key_authenticates_and_carries_scopes_and_limits()
    {
        var created = await keys.CreateAsync("ci-bot", ApiKeyScopes.Inference | ApiKeyScopes.Training, new RateLimits(60, 10_000), "admin");
        Assert.StartsWith(ApiKeyFormat.Prefix, created.Secret);
        Assert.Equal(ApiKeyFormat.Length, created.Secret.Length);
        Assert.Contains(created.Key.Id, created.Secret);

        var auth = await keys.AuthenticateAsync(created.Secret);
        Assert.True(auth.Succeeded);
        Assert.Equal("ci-bot", auth.Key!.Name);
        Assert.True(auth.Key.Allows(ApiKeyScopes.Training));
        Assert.False(auth.Key.Allows(ApiKeyScopes.Admin));
        Assert.Equal(new RateLimits(60, 10_000), auth.Key.Limits);
    }

    [Fact]
    public async Task A_metrics_key_stores_and_grants_the_metrics_scope_alone()
    {
        Assert.Equal(ApiKeyScopes.Metrics, ApiKeyScopeNames.Parse("metrics"));
        Assert.Equal(ApiKeyScopes.Metrics | ApiKeyScopes.Training, ApiKeyScopeNames.Parse("Training, METRICS"));
        Assert.Equal("training,metrics", ApiKeyScopeNames.Format(ApiKeyScopes.Metrics | ApiKeyScopes.Training));
        Assert.Contains("inference, training, admin, metrics", Assert.Throws<TrustUserException>(() => ApiKeyScopeNames.Parse("root")).Message);

        var created = await keys.CreateAsync("prometheus", ApiKeyScopes.Metrics, RateLimits.Unlimited, "admin");
        var scraper = (await keys.AuthenticateAsync(created.Secret)).Key!;
        Assert.Equal(ApiKeyScopes.Metrics, scraper.Scopes);
        Assert.True(scraper.Allows(ApiKeyScopes.Metrics));
        foreach (var other in new[] { ApiKeyScopes.Inference, ApiKeyScopes.Training, ApiKeyScopes.Admin })
            Assert.False(scraper.Allows(other), $"a metrics key allowed {other}");
        // Inference (and admin, which implies everything) grants metrics; training does not.
        Assert.True((scraper with { Scopes = ApiKeyScopes.Inference }).Allows(ApiKeyScopes.Metrics));
        Assert.True((scraper with { Scopes = ApiKeyScopes.Admin }).Allows(ApiKeyScopes.Metrics));
        Assert.False((scraper with { Scopes = ApiKeyScopes.Training }).Allows(ApiKeyScopes.Metrics));
    }

    [Fact]
    public async Task Keys_are_unique_and_the_secret_is_never_stored()
    {
        var a = await keys.CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "admin");
        var b = await keys.CreateAsync("b", ApiKeyScopes.Inference, RateLimits.Unlimited, "admin");
        Assert.NotEqual(a.Secret, b.Secret);
        Assert.NotEqual(a.Key.Id, b.Key.Id);
        var everything = platform.StoredText();
        Assert.Contains(a.Key.Id, everything);
        Assert.DoesNotContain(a.Secret[ApiKeyFormat.Prefix.Length..][ApiKeyFormat.IdLength..], everything);
        Assert.DoesNotContain(b.Secret, everything);
    }

    [Theory]
    [InlineData(null, AuthenticationFailure.Missing)]
    [InlineData("  ", AuthenticationFailure.Missing)]
    [InlineData("sk-stratus-short", AuthenticationFailure.Malformed)]
    [InlineData("Bearer sk-stratus-", AuthenticationFailure.Malformed)]
    [InlineData("sk-other-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", AuthenticationFailure.Malformed)]
    [InlineData("sk-stratus-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", AuthenticationFailure.Malformed)]
    [InlineData("sk-stratus-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", AuthenticationFailure.Unknown)]
    public async Task Bad_keys_are_rejected_without_throwing(string? presented, AuthenticationFailure failure)
    {
        var result = await keys.AuthenticateAsync(presented);
        Assert.False(result.Succeeded);
        Assert.Equal(failure, result.Failure);
    }

    [Fact]
    public async Task A_right_id_with_a_wrong_secret_is_unknown()
    {
        var created = await keys.CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "admin");
        var last = created.Secret[^1];
        var tampered = created.Secret[..^1] + (last == 'A' ? 'B' : 'A');
        Assert.Equal(AuthenticationFailure.Unknown, (await keys.AuthenticateAsync(tampered)).Failure);
    }

    [Fact]
    public async Task Revoke_by_name_or_id_stops_authentication_and_frees_the_name()
    {
        var first = await keys.CreateAsync("svc", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice");
        var other = await keys.CreateAsync("other", ApiKeyScopes.Admin, RateLimits.Unlimited, "alice");
        await Assert.ThrowsAsync<TrustUserException>(async () => await keys.CreateAsync("svc", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice"));

        var revoked = await keys.RevokeAsync("svc", "bob");
        Assert.NotNull(revoked.RevokedAt);
        Assert.Equal(AuthenticationFailure.Revoked, (await keys.AuthenticateAsync(first.Secret)).Failure);
        await keys.RevokeAsync(other.Key.Id, "bob");
        Assert.Equal(AuthenticationFailure.Revoked, (await keys.AuthenticateAsync(other.Secret)).Failure);

        var again = await keys.CreateAsync("svc", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice");
        Assert.True((await keys.AuthenticateAsync(again.Secret)).Succeeded);
        Assert.Single(await keys.ListAsync());
        Assert.Equal(3, (await keys.ListAsync(includeRevoked: true)).Count);
        await Assert.ThrowsAsync<TrustUserException>(async () => await keys.RevokeAsync("nobody", "bob"));
    }

    [Fact]
    public async Task Changes_are_audited_without_secrets()
    {
        var created = await keys.CreateAsync("svc", ApiKeyScopes.Inference, new RateLimits(5, 500), "alice");
        await keys.SetLimitsAsync("svc", 10, 1000, "alice");
        Assert.Equal(new RateLimits(10, 7), (await keys.SetLimitsAsync("svc", null, 7, "alice")).Limits); // a null limit stays as it was
        await keys.SetLimitsAsync("svc", null, 1000, "alice");
        await keys.RevokeAsync(created.Key.Id, "bob");
        var log = await platform.Stores.Audit.ReadAsync(new AuditQuery());
        Assert.Equal([AuditActions.KeyCreated, AuditActions.KeyLimitsChanged, AuditActions.KeyLimitsChanged, AuditActions.KeyLimitsChanged, AuditActions.KeyRevoked], log.Select(e => e.Action));
        Assert.Equal(["alice", "alice", "alice", "alice", "bob"], log.Select(e => e.Actor));
        Assert.All(log, e => Assert.Contains(created.Key.Id, e.Details));
        Assert.All(log, e => Assert.DoesNotContain(created.Secret[ApiKeyFormat.Prefix.Length..], e.Details));
        Assert.Equal(new RateLimits(10, 1000), (await keys.ListAsync(true)).Single().Limits);
    }

    [Fact]
    public async Task A_change_of_rpm_alone_and_one_of_tpm_alone_made_at_once_keep_both()
    {
        await keys.CreateAsync("svc", ApiKeyScopes.Inference, new RateLimits(5, 500), "alice");
        // Bob's change of tpm is stored after Alice's change of rpm has looked the key up.
        var alices = new ApiKeyService(new InterleavingStore(platform.Stores.ApiKeys, () => keys.SetLimitsAsync("svc", null, 700, "bob").AsTask()));
        Assert.Equal(new RateLimits(10, 700), (await alices.SetLimitsAsync("svc", 10, null, "alice")).Limits);
        Assert.Equal(new RateLimits(10, 700), (await keys.ListAsync()).Single().Limits);
        var last = (await platform.Stores.Audit.ReadAsync(new AuditQuery())).Last();
        Assert.Equal(("alice", 10, 700), (last.Actor, (int)System.Text.Json.Nodes.JsonNode.Parse(last.Details)!["rpm"]!, (int)System.Text.Json.Nodes.JsonNode.Parse(last.Details)!["tpm"]!));
    }

    [Fact]
    public async Task A_change_of_limits_to_a_key_revoked_meanwhile_is_refused_and_not_audited()
    {
        await keys.CreateAsync("svc", ApiKeyScopes.Inference, new RateLimits(5, 500), "alice");
        var alices = new ApiKeyService(new InterleavingStore(platform.Stores.ApiKeys, () => keys.RevokeAsync("svc", "bob").AsTask()));
        var error = await Assert.ThrowsAsync<TrustUserException>(async () => await alices.SetLimitsAsync("svc", 10, null, "alice"));
        Assert.Equal("API key 'svc' was revoked meanwhile.", error.Message);
        Assert.Equal(new RateLimits(5, 500), (await keys.ListAsync(includeRevoked: true)).Single().Limits);
        Assert.Equal([AuditActions.KeyCreated, AuditActions.KeyRevoked], (await platform.Stores.Audit.ReadAsync(new AuditQuery())).Select(e => e.Action));
    }

    /// <summary>A store whose first lookup of the keys lets <paramref name="meanwhile"/> change
    /// them after it read them, as a change made at the same moment by another admin would.</summary>
    sealed class InterleavingStore(IApiKeyStore inner, Func<Task> meanwhile) : IApiKeyStore
    {
        bool interleaved;

        public async ValueTask<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked, CancellationToken cancellationToken = default)
        {
            var keys = await inner.ListAsync(includeRevoked, cancellationToken);
            if (!interleaved)
            {
                interleaved = true;
                await meanwhile();
            }
            return keys;
        }

        public ValueTask InsertAsync(StoredApiKey key, AuditRecord audit, CancellationToken cancellationToken = default) => inner.InsertAsync(key, audit, cancellationToken);
        public ValueTask<StoredApiKey?> FindAsync(string id, CancellationToken cancellationToken = default) => inner.FindAsync(id, cancellationToken);
        public ValueTask<bool> RevokeAsync(string id, DateTimeOffset at, AuditRecord audit, CancellationToken cancellationToken = default) => inner.RevokeAsync(id, at, audit, cancellationToken);
        public ValueTask<RateLimits?> ChangeLimitsAsync(string id, Func<RateLimits, RateLimits> change, Func<RateLimits, AuditRecord> audit, CancellationToken cancellationToken = default) =>
            inner.ChangeLimitsAsync(id, change, audit, cancellationToken);
        public ValueTask<ApiKeyRecord?> RotateAsync(string id, byte[] salt, byte[] hash, DateTimeOffset previousUntil, Func<ApiKeyRecord, AuditRecord> audit, CancellationToken cancellationToken = default) =>
            inner.RotateAsync(id, salt, hash, previousUntil, audit, cancellationToken);
    }

    /// <summary>Rotation, as Stripe's rolling keys: a new secret for the same key (id, name,
    /// scopes, limits, expiry, usage), and the old one working beside it until the overlap ends,
    /// then refused as rotated (told only to its holder); audited without either secret.</summary>
    [Fact]
    public async Task Rotating_gives_the_key_a_new_secret_and_the_old_one_works_until_the_overlap_ends()
    {
        var clock = new TestClock(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
        using var timed = new TempPlatform(databases, clock);
        var service = timed.Stores.KeyService(clock);
        var created = await service.CreateAsync("svc", ApiKeyScopes.Inference | ApiKeyScopes.Metrics, new RateLimits(5, 500), "alice", ApiKeyExpiry.In(TimeSpan.FromDays(90)));
        await timed.Stores.Usage.RecordAsync(created.Key.Id, "m", 3, 4, clock.GetUtcNow());

        var rotated = await service.RotateAsync("svc", TimeSpan.FromHours(2), "bob");
        Assert.NotEqual(created.Secret, rotated.Secret);
        Assert.True(ApiKeyFormat.TryGetId(rotated.Secret, out var id) && id == created.Key.Id);
        Assert.Equal(created.Key with { PreviousSecretExpiresAt = clock.GetUtcNow().AddHours(2) }, rotated.Key);
        Assert.Null(rotated.OlderSecretCutShort);
        foreach (var secret in new[] { rotated.Secret, created.Secret })
            Assert.Equal(rotated.Key, (await service.AuthenticateAsync(secret)).Key);
        Assert.Equal(rotated.Key, Assert.Single(await service.ListAsync()));
        Assert.Equal(7, Assert.Single(await timed.Stores.Usage.QueryAsync(UsageQuery.Days(rotated.Key.Id, null, null, null, clock))).TotalTokens);

        clock.Advance(TimeSpan.FromHours(2));
        var old = await service.AuthenticateAsync(created.Secret);
        Assert.Equal((null, AuthenticationFailure.Rotated, rotated.Key.PreviousSecretExpiresAt), (old.Key, old.Failure, old.ExpiredAt));
        Assert.True((await service.AuthenticateAsync(rotated.Secret)).Succeeded);
        Assert.False(Assert.Single(await service.ListAsync()).HasPreviousSecretAt(clock.GetUtcNow()));

        var entry = (await timed.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.KeyRotated))).Single();
        Assert.Equal("bob", entry.Actor);
        Assert.Equal($"{{\"key_id\":\"{id}\",\"name\":\"svc\",\"previous_secret_until\":\"2026-03-01T14:00:00.0000000Z\",\"older_secret_cut_short\":null}}", entry.Details);
        Assert.DoesNotContain(rotated.Secret[ApiKeyFormat.Prefix.Length..], entry.Details);
        Assert.True((await timed.Stores.Audit.VerifyAsync()).Valid);
    }

    /// <summary>--overlap 0 stops the old secret at once (a leaked key); a rotation within the
    /// last one's overlap stops the secret before it at once and says so; a revoked key is
    /// refused, and revoking a key in its overlap stops both secrets.</summary>
    [Fact]
    public async Task A_rotation_without_overlap_or_within_one_stops_the_older_secret_now()
    {
        var created = await keys.CreateAsync("svc", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice");
        var first = await keys.RotateAsync("svc", TimeSpan.Zero, "alice");
        Assert.Equal(AuthenticationFailure.Rotated, (await keys.AuthenticateAsync(created.Secret)).Failure);
        Assert.False(first.Key.HasPreviousSecretAt(DateTimeOffset.UtcNow));

        var second = await keys.RotateAsync(first.Key.Id, TimeSpan.FromDays(1), "alice");
        Assert.True((await keys.AuthenticateAsync(first.Secret)).Succeeded);
        var third = await keys.RotateAsync("svc", TimeSpan.FromDays(1), "alice");
        Assert.Equal(second.Key.PreviousSecretExpiresAt, third.OlderSecretCutShort);
        // The secret before the old one is no longer the key's at all.
        Assert.Equal(AuthenticationFailure.Unknown, (await keys.AuthenticateAsync(first.Secret)).Failure);
        Assert.True((await keys.AuthenticateAsync(second.Secret)).Succeeded);

        await keys.RevokeAsync("svc", "alice");
        foreach (var secret in new[] { second.Secret, third.Secret })
            Assert.Equal(AuthenticationFailure.Revoked, (await keys.AuthenticateAsync(secret)).Failure);
        var refused = await Assert.ThrowsAsync<TrustUserException>(async () => await keys.RotateAsync("svc", TimeSpan.Zero, "alice"));
        Assert.Equal("No active API key with name or id 'svc'.", refused.Message);
    }

    [Fact]
    public async Task An_overlap_is_a_span_of_at_most_30_days_and_an_expired_key_is_not_rotated()
    {
        Assert.Equal(TimeSpan.FromHours(24), ApiKeyRotation.ParseOverlap(null, "--overlap"));
        Assert.Equal(TimeSpan.Zero, ApiKeyRotation.ParseOverlap("0", "--overlap"));
        Assert.Equal(TimeSpan.FromMinutes(90), ApiKeyRotation.ParseOverlap("90m", "--overlap"));
        Assert.Equal("--overlap must be at most 30 days, not '31d'; for clients that need longer, create them a key of their own.",
            Assert.Throws<TrustUserException>(() => ApiKeyRotation.ParseOverlap("31d", "--overlap")).Message);
        Assert.Equal("--overlap must be a number and a unit, m (minutes), h, d or w, such as 30d or 12h; not '5'.",
            Assert.Throws<TrustUserException>(() => ApiKeyRotation.ParseOverlap("5", "--overlap")).Message);

        var clock = new TestClock(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
        using var timed = new TempPlatform(databases, clock);
        var service = timed.Stores.KeyService(clock);
        await service.CreateAsync("short", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice", ApiKeyExpiry.In(TimeSpan.FromHours(1)));
        clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal("API key 'short' expired on 2026-03-01 13:00:00 UTC, and a new secret would not work either; create a new key.",
            (await Assert.ThrowsAsync<TrustUserException>(async () => await service.RotateAsync("short", TimeSpan.Zero, "alice"))).Message);
    }


    /// <summary>Digits of other scripts ('٣', Arabic-Indic three) are a user's error like any
    /// other unreadable span, not a FormatException out of the CLI.</summary>
    [Theory]
    [InlineData("٣h")]
    [InlineData("１２h")]
    public void A_span_in_digits_other_than_ascii_is_refused_as_unreadable(string text)
    {
        Assert.Equal($"--overlap must be a number and a unit, m (minutes), h, d or w, such as 30d or 12h; not '{text}'.",
            Assert.Throws<TrustUserException>(() => ApiKeyRotation.ParseOverlap(text, "--overlap")).Message);
        Assert.Throws<TrustUserException>(() => ApiKeyExpiry.Parse(null, text, "--expires", "--expires-in"));
    }

    [Fact]
    public async Task A_key_change_whose_audit_entry_cannot_be_written_is_not_stored()
    {
        var created = await keys.CreateAsync("svc", ApiKeyScopes.Inference, new RateLimits(10, 100), "alice");
        // An audit log that refuses every entry, as a failure between a change and its entry would.
        platform.BreakAuditAppends();
        await Assert.ThrowsAnyAsync<DbException>(() => keys.SetLimitsAsync("svc", 1, null, "bob").AsTask());
        await Assert.ThrowsAnyAsync<DbException>(() => keys.RevokeAsync("svc", "bob").AsTask());
        await Assert.ThrowsAnyAsync<DbException>(() => keys.CreateAsync("other", ApiKeyScopes.Inference, RateLimits.Unlimited, "bob").AsTask());

        var key = (await keys.AuthenticateAsync(created.Secret)).Key;
        Assert.NotNull(key);
        Assert.Equal(new RateLimits(10, 100), key.Limits);
        Assert.Equal(["svc"], (await keys.ListAsync(includeRevoked: true)).Select(k => k.Name));

        // Once entries can be written again, so can the changes, each with its entry.
        platform.RepairAuditAppends();
        await keys.RevokeAsync("svc", "bob");
        Assert.Equal([AuditActions.KeyCreated, AuditActions.KeyRevoked], (await platform.Stores.Audit.ReadAsync(new AuditQuery())).Select(e => e.Action));
        Assert.True((await platform.Stores.Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public async Task A_key_past_its_expiry_is_refused_as_expired_and_only_to_its_holder()
    {
        var clock = new TestClock(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
        var service = platform.Stores.KeyService(clock);
        var created = await service.CreateAsync("temp", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice", ApiKeyExpiry.In(TimeSpan.FromDays(30)));
        var expiresAt = new DateTimeOffset(2026, 3, 31, 12, 0, 0, TimeSpan.Zero);
        Assert.Equal(expiresAt, created.Key.ExpiresAt);
        Assert.Contains("\"expires_at\":\"2026-03-31T12:00:00.0000000Z\"", (await platform.Stores.Audit.ReadAsync(new AuditQuery())).Single().Details);

        clock.Advance(TimeSpan.FromDays(30) - TimeSpan.FromSeconds(1));
        Assert.True((await service.AuthenticateAsync(created.Secret)).Succeeded);
        clock.Advance(TimeSpan.FromSeconds(1));
        var expired = await service.AuthenticateAsync(created.Secret);
        Assert.Equal((null, AuthenticationFailure.Expired, expiresAt), (expired.Key, expired.Failure, expired.ExpiredAt));
        Assert.True(service.HasExpired((await service.ListAsync()).Single()));
        // A wrong secret for the same id learns nothing of the expiry.
        var wrong = await service.AuthenticateAsync(created.Secret[..^1] + (created.Secret[^1] == 'A' ? 'B' : 'A'));
        Assert.Equal((AuthenticationFailure.Unknown, (DateTimeOffset?)null), (wrong.Failure, wrong.ExpiredAt));

        var past = await Assert.ThrowsAsync<TrustUserException>(() =>
            service.CreateAsync("late", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice", ApiKeyExpiry.At(expiresAt)).AsTask());
        Assert.Contains("2026-03-31 12:00:00 UTC, which has passed", past.Message);
    }

    [Theory]
    [InlineData(null, "30d", 30 * 24 * 60)]
    [InlineData(null, "12h", 12 * 60)]
    [InlineData(null, "90m", 90)]
    [InlineData(null, "2W", 14 * 24 * 60)]
    [InlineData("2026-03-02", null, 12 * 60)]
    [InlineData("2026-03-01T13:00:00Z", null, 60)]
    [InlineData("2026-03-01T14:00:00+01:00", null, 60)]
    [InlineData("2026-03-01T13:00:00", null, 60)]
    public void Expiries_are_read_as_a_time_or_a_span_from_creation(string? at, string? within, int minutesAfterNoon)
    {
        var noon = new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
        Assert.Equal(noon.AddMinutes(minutesAfterNoon), ApiKeyExpiry.Parse(at, within, "--expires", "--expires-in")!.From(noon));
    }

    [Theory]
    [InlineData("2026-03-02", "30d", "--expires or --expires-in, not both")]
    [InlineData("next tuesday", null, "--expires must be an ISO 8601 time")]
    [InlineData(null, "30", "--expires-in must be a number and a unit")]
    [InlineData(null, "1y", "--expires-in must be a number and a unit")]
    [InlineData(null, "-3d", "--expires-in must be a number and a unit")]
    [InlineData(null, "0d", "at most 36500 days")]
    [InlineData(null, "999999w", "at most 36500 days")]
    public void Unreadable_expiries_are_user_errors_naming_the_option(string? at, string? within, string message) =>
        Assert.Contains(message, Assert.Throws<TrustUserException>(() => ApiKeyExpiry.Parse(at, within, "--expires", "--expires-in")).Message);

    [Fact]
    public void Neither_expiry_is_a_key_that_never_expires() => Assert.Null(ApiKeyExpiry.Parse(null, null, "--expires", "--expires-in"));

    [Fact]
    public async Task A_limits_change_that_names_no_limit_is_refused_and_not_audited()
    {
        await keys.CreateAsync("svc", ApiKeyScopes.Inference, new RateLimits(5, 500), "alice");
        var error = await Assert.ThrowsAsync<TrustUserException>(async () => await keys.SetLimitsAsync("svc", null, null, "alice"));
        Assert.Contains("rpm, tpm or both", error.Message);
        Assert.Equal([AuditActions.KeyCreated], (await platform.Stores.Audit.ReadAsync(new AuditQuery())).Select(e => e.Action));
    }

    [Fact]
    public async Task Invalid_requests_are_user_errors()
    {
        await Assert.ThrowsAsync<TrustUserException>(async () => await keys.CreateAsync("bad name", ApiKeyScopes.Inference, RateLimits.Unlimited, "a"));
        await Assert.ThrowsAsync<TrustUserException>(async () => await keys.CreateAsync("ok", ApiKeyScopes.None, RateLimits.Unlimited, "a"));
        await Assert.ThrowsAsync<TrustUserException>(async () => await keys.CreateAsync("ok", ApiKeyScopes.Inference, new RateLimits(-1, 0), "a"));
        Assert.Equal(ApiKeyScopes.Inference | ApiKeyScopes.Admin, ApiKeyScopeNames.Parse("inference, admin"));
        Assert.Equal("inference,admin", ApiKeyScopeNames.Format(ApiKeyScopes.Inference | ApiKeyScopes.Admin));
        Assert.Throws<TrustUserException>(() => ApiKeyScopeNames.Parse("root"));
        Assert.Equal("sk-x", ApiKeyFormat.FromHeader("Bearer  sk-x "));
        Assert.Null(ApiKeyFormat.FromHeader(null));
    }

    /// <summary>What the server's log writes: a key anywhere in a line, whole or cut short, is
    /// cut to its id, which `keys list` shows; the secret after it never shows.</summary>
    [Fact]
    public void Redacting_cuts_every_key_in_a_text_to_its_id()
    {
        var (id, key) = ApiKeyFormat.Generate();
        var (otherId, other) = ApiKeyFormat.Generate();
        Assert.Equal($"GET /v1/models?api-key={ApiKeyFormat.Prefix}{id}[redacted]&x={ApiKeyFormat.Prefix}{otherId}[redacted] 401",
            ApiKeyFormat.Redact($"GET /v1/models?api-key={key}&x={other} 401"));
        Assert.Equal($"'{ApiKeyFormat.Prefix}{id}[redacted]\\x0D'", ApiKeyFormat.Redact($"'{key[..30]}\\x0D'"));
        Assert.Equal($"{ApiKeyFormat.Prefix}abc[redacted]", ApiKeyFormat.Redact($"{ApiKeyFormat.Prefix}abc"));
        const string plain = "Request finished HTTP/1.1 GET http://127.0.0.1:8000/v1/models - 200";
        Assert.Same(plain, ApiKeyFormat.Redact(plain));
    }

    /// <summary>A key in a URL's query string comes percent-encoded as the client wrote it, and the
    /// request lines quote it so: any of its characters escaped, in either case of hex, is a key too.</summary>
    [Fact]
    public void Redacting_cuts_a_percent_encoded_key_to_its_id()
    {
        var (id, key) = ApiKeyFormat.Generate();
        var redacted = $"{ApiKeyFormat.Prefix}{id}[redacted]";
        var dashes = key.Replace("-", "%2D", StringComparison.Ordinal);
        var everyCharacter = string.Concat(key.Select(c => $"%{(int)c:X2}"));
        var lowerHex = string.Concat(key.Select((c, i) => i % 2 == 0 ? $"%{(int)c:x2}" : c.ToString()));
        foreach (var escaped in new[] { dashes, everyCharacter, lowerHex })
            Assert.Equal($"GET /v1/models?api_key={redacted}&x=1 401", ApiKeyFormat.Redact($"GET /v1/models?api_key={escaped}&x=1 401"));
        // Escapes of other characters end it, as the characters themselves do.
        Assert.Equal($"?k={redacted}%26x=%20y", ApiKeyFormat.Redact($"?k={dashes}%26x=%20y"));
        const string escapedPlain = "GET /v1/models?q=a%20b%2Dc";
        Assert.Equal(escapedPlain, ApiKeyFormat.Redact(escapedPlain));
    }

    /// <summary>A URL that each of its writers escaped again carries a '%' as %25, %2525, ...
    /// (`%2573` is `s` escaped twice): a key so escaped, to any depth and each character to its
    /// own, is cut to its id all the same, and its id shows unescaped.</summary>
    [Fact]
    public void Redacting_cuts_a_key_percent_encoded_any_number_of_times_to_its_id()
    {
        var (id, key) = ApiKeyFormat.Generate();
        var redacted = $"{ApiKeyFormat.Prefix}{id}[redacted]";
        static string Deeper(string text, int levels) => levels == 0 ? text : Deeper(text.Replace("%", "%25", StringComparison.Ordinal), levels - 1);
        var everyCharacter = string.Concat(key.Select(c => $"%{(int)c:X2}"));
        foreach (var levels in new[] { 1, 2, 5 })
        {
            Assert.Equal($"?api_key={redacted}&x=1", ApiKeyFormat.Redact($"?api_key={Deeper(everyCharacter, levels)}&x=1"));
            Assert.Equal($"/v1/{redacted}", ApiKeyFormat.Redact($"/v1/{Deeper(key.Replace("-", "%2D", StringComparison.Ordinal), levels)}"));
        }
        // Each character at a depth of its own.
        var mixed = string.Concat(key.Select((c, i) => i % 3 == 0 ? c.ToString() : Deeper($"%{(int)c:x2}", i % 4)));
        Assert.Equal($"[{redacted}]", ApiKeyFormat.Redact($"[{mixed}]"));
        // Other escapes, escaped again, stay as they were.
        const string escapedPlain = "GET /v1/models?q=a%2520b%25252F";
        Assert.Equal(escapedPlain, ApiKeyFormat.Redact(escapedPlain));
    }

    [Fact]
    public void Data_directory_prefers_the_flag_then_the_environment()
    {
        var saved = Environment.GetEnvironmentVariable(StratusHome.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(StratusHome.EnvironmentVariable, "/tmp/from-env");
            Assert.Equal(Path.GetFullPath("/tmp/from-flag"), StratusHome.Resolve("/tmp/from-flag"));
            Assert.Equal(Path.GetFullPath("/tmp/from-env"), StratusHome.Resolve());
            Environment.SetEnvironmentVariable(StratusHome.EnvironmentVariable, null);
            Assert.EndsWith(Path.DirectorySeparatorChar + "stratus", StratusHome.Resolve());
        }
        finally
        {
            Environment.SetEnvironmentVariable(StratusHome.EnvironmentVariable, saved);
        }
    }
}

public sealed class ApiKeyServiceOnSqliteTests() : ApiKeyServiceTests(TestDatabases.Sqlite);

public sealed class ApiKeyServiceOnPostgresTests(PostgresDatabase postgres) : ApiKeyServiceTests(new TestDatabases(postgres)), IClassFixture<PostgresDatabase>;
