// The admin API end to end: keys, blocklists (invalid regexes refused with a clear 400),
// policies, the audit log and its verification, usage filtered by key and model, and bad
// input answered with 4xx bodies that say what to fix; a database the machine refuses is a 503
// that names none of the server's files.
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Stratus.Platform;

namespace Stratus.Trust.Tests;

public sealed class AdminApiTests
{
    [Fact]
    public async Task Keys_are_created_listed_limited_and_revoked_and_each_change_is_audited()
    {
        await using var host = await TrustHost.StartAsync();
        using var created = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "svc", scopes = new[] { "inference", "training" }, rpm = 10, tpm = 1000 });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await TestJson.ReadAsync(created);
        var secret = body.GetProperty("key").GetString()!;
        Assert.StartsWith(ApiKeyFormat.Prefix, secret);
        Assert.Equal(["inference", "training"], body.GetProperty("api_key").GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        using (var works = await host.SendAsync(HttpMethod.Get, "/v1/models", secret))
            Assert.Equal(HttpStatusCode.OK, works.StatusCode);

        using var list = await host.SendAsync(HttpMethod.Get, "/v1/admin/keys", host.AdminKey);
        var listed = (await TestJson.ReadAsync(list)).GetProperty("data").EnumerateArray().ToList();
        Assert.Contains(listed, k => k.GetProperty("name").GetString() == "svc" && k.GetProperty("rpm").GetInt32() == 10);
        Assert.DoesNotContain(secret, await list.Content.ReadAsStringAsync());

        using (var limits = await host.SendAsync(HttpMethod.Put, "/v1/admin/keys/svc/limits", host.AdminKey, new { tpm = 5 }))
        {
            var limited = await TestJson.ReadAsync(limits);
            Assert.Equal((10, 5), (limited.GetProperty("rpm").GetInt32(), limited.GetProperty("tpm").GetInt32()));
        }
        using (var revoked = await host.SendAsync(HttpMethod.Delete, "/v1/admin/keys/svc", host.AdminKey))
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);
        using (var again = await host.SendAsync(HttpMethod.Delete, "/v1/admin/keys/svc", host.AdminKey))
        {
            Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
            Assert.Contains("No active API key", (await TestJson.ErrorAsync(again)).GetProperty("message").GetString());
        }

        var adminId = (await host.Stores.KeyService().ListAsync()).Single(k => k.Name == "test-admin").Id;
        var actions = (await host.Stores.Audit.ReadAsync(new AuditQuery(Actor: adminId))).Select(e => e.Action).ToList();
        Assert.Equal([AuditActions.KeyCreated, AuditActions.KeyLimitsChanged, AuditActions.KeyRevoked], actions);
    }

    [Fact]
    public async Task Keys_are_created_with_an_expiry_that_lists_show_and_bad_expiries_are_a_400()
    {
        await using var host = await TrustHost.StartAsync();
        var before = DateTimeOffset.UtcNow;
        using (var created = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "month", scopes = "inference", expires_in = "30d" }))
        {
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var expiresAt = (await TestJson.ReadAsync(created)).GetProperty("api_key").GetProperty("expires_at").GetDateTimeOffset();
            Assert.InRange(expiresAt, before.AddDays(30), DateTimeOffset.UtcNow.AddDays(30));
        }
        using (var dated = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "dated", scopes = "inference", expires_at = "2999-01-31" }))
            Assert.Equal(new DateTimeOffset(2999, 1, 31, 0, 0, 0, TimeSpan.Zero),
                (await TestJson.ReadAsync(dated)).GetProperty("api_key").GetProperty("expires_at").GetDateTimeOffset());
        using (var list = await host.SendAsync(HttpMethod.Get, "/v1/admin/keys", host.AdminKey))
        {
            var keys = (await TestJson.ReadAsync(list)).GetProperty("data").EnumerateArray().ToDictionary(k => k.GetProperty("name").GetString()!);
            Assert.Equal(JsonValueKind.Null, keys["test-admin"].GetProperty("expires_at").ValueKind);
            Assert.Equal(2999, keys["dated"].GetProperty("expires_at").GetDateTimeOffset().Year);
        }

        foreach (var (body, message) in new (object, string)[]
        {
            (new { name = "a", scopes = "inference", expires_at = "2020-01-01" }, "which has passed"),
            (new { name = "b", scopes = "inference", expires_at = "soon" }, "'expires_at' must be an ISO 8601 time"),
            (new { name = "c", scopes = "inference", expires_in = "1 month" }, "'expires_in' must be a number and a unit"),
            (new { name = "d", scopes = "inference", expires_at = "2999-01-01", expires_in = "1d" }, "not both"),
        })
        {
            using var refused = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, body);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains(message, (await TestJson.ErrorAsync(refused)).GetProperty("message").GetString());
        }
        Assert.Equal(4, (await host.Stores.KeyService().ListAsync()).Count);
    }

    [Fact]
    public async Task Blocklists_and_policies_are_managed_and_invalid_regexes_refused_clearly()
    {
        await using var host = await TrustHost.StartAsync();
        using (var bad = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/codes", host.AdminKey, new { patterns = new[] { "secret-(\\d+" } }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            var message = (await TestJson.ErrorAsync(bad)).GetProperty("message").GetString()!;
            Assert.Contains("not a valid regular expression", message);
            Assert.Contains("secret-(\\d+", message);
        }
        using (var empty = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/codes", host.AdminKey, new { patterns = new[] { "a*" } }))
            Assert.Contains("matches empty text", (await TestJson.ErrorAsync(empty)).GetProperty("message").GetString());
        // Out of memory as the regex was built: a 500, not the 400 naming the pattern.
        using (var huge = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/codes", host.AdminKey, new { patterns = new[] { "a{2147483647}b" } }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, huge.StatusCode);
            Assert.Contains("pattern 'a{2147483647}b' repeats a part of it 2,147,483,647 times", (await TestJson.ErrorAsync(huge)).GetProperty("message").GetString());
        }
        using (var good = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/codes", host.AdminKey, new { terms = new[] { "project x" }, patterns = new[] { "secret-\\d+" }, category = "violence" }))
            Assert.Equal(HttpStatusCode.OK, good.StatusCode);
        using (var get = await host.SendAsync(HttpMethod.Get, "/v1/admin/blocklists/codes", host.AdminKey))
            Assert.Equal("violence", (await TestJson.ReadAsync(get)).GetProperty("category").GetString());
        using (var missing = await host.SendAsync(HttpMethod.Get, "/v1/admin/blocklists/nope", host.AdminKey))
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using (var deleteMissing = await host.SendAsync(HttpMethod.Delete, "/v1/admin/blocklists/nope", host.AdminKey))
            Assert.Equal(HttpStatusCode.NotFound, deleteMissing.StatusCode);

        using (var policy = await host.SendAsync(HttpMethod.Put, "/v1/admin/policies/fake", host.AdminKey, new { pii = "redact", blocklists = new[] { "codes" } }))
            Assert.Equal(HttpStatusCode.OK, policy.StatusCode);
        using (var unknownList = await host.SendAsync(HttpMethod.Put, "/v1/admin/policies/fake", host.AdminKey, new { blocklists = new[] { "nope" } }))
            Assert.Contains("does not exist", (await TestJson.ErrorAsync(unknownList)).GetProperty("message").GetString());
        using (var read = await host.SendAsync(HttpMethod.Get, "/v1/admin/policies/fake", host.AdminKey))
        {
            var stored = await TestJson.ReadAsync(read);
            Assert.Equal("redact", stored.GetProperty("pii").GetString());
            // block_at was left out of the PUT: the default thresholds stay.
            Assert.Equal("medium", stored.GetProperty("block_at").GetProperty("jailbreak").GetString());
        }
        using (var inUse = await host.SendAsync(HttpMethod.Delete, "/v1/admin/blocklists/codes", host.AdminKey))
            Assert.Contains("used by the safety policy", (await TestJson.ErrorAsync(inUse)).GetProperty("message").GetString());

        // PII is redacted from the prompt the model sees and the completion the client gets.
        host.Fake.Pieces = ["Write ", "to ", "jane.doe@example.com ", "today."];
        using var chat = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", host.InferenceKey, TrustHost.Chat("hello"));
        var content = (await TestJson.ReadAsync(chat)).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.DoesNotContain("jane.doe@example.com", content);
        Assert.StartsWith("Write to ", content);

        var changes = await host.Stores.Audit.ReadAsync(new AuditQuery());
        Assert.Contains(changes, e => e.Action == AuditActions.BlocklistChanged);
        Assert.Contains(changes, e => e.Action == AuditActions.PolicyChanged);
        Assert.Contains(changes, e => e.Action == AuditActions.ModelDeployed && e.Details.Contains("\"model\":\"fake\""));
    }

    [Fact]
    public async Task A_deleted_policy_returns_its_deployment_to_the_default_and_is_audited()
    {
        await using var host = await TrustHost.StartAsync();
        using (var put = await host.SendAsync(HttpMethod.Put, "/v1/admin/policies/fake", host.AdminKey, new { pii = "redact" }))
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        using (var delete = await host.SendAsync(HttpMethod.Delete, "/v1/admin/policies/fake", host.AdminKey))
            Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        using (var read = await host.SendAsync(HttpMethod.Get, "/v1/admin/policies/fake", host.AdminKey))
            Assert.Equal("annotate", (await TestJson.ReadAsync(read)).GetProperty("pii").GetString());
        using (var again = await host.SendAsync(HttpMethod.Delete, "/v1/admin/policies/fake", host.AdminKey))
        {
            Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
            Assert.Contains("default policy", (await TestJson.ErrorAsync(again)).GetProperty("message").GetString());
        }
        using (var notAdmin = await host.SendAsync(HttpMethod.Delete, "/v1/admin/policies/fake", host.InferenceKey))
            Assert.Equal(HttpStatusCode.Forbidden, notAdmin.StatusCode);
        var deleted = Assert.Single(await host.Stores.Audit.ReadAsync(new AuditQuery()), e => e.Action == AuditActions.PolicyChanged && e.Details.Contains("\"deleted\""));
        Assert.Contains("\"deployment\":\"fake\"", deleted.Details);
        Assert.True((await host.Stores.Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public async Task A_deployment_blocklist_or_key_name_ending_in_a_newline_is_a_400()
    {
        // The names' patterns ended in $, which matches before a final newline: "fake\n" was
        // stored as a policy no deployment has (a 200), and deleting it was a 404.
        await using var host = await TrustHost.StartAsync();
        using (var put = await host.SendAsync(HttpMethod.Put, "/v1/admin/policies/fake%0A", host.AdminKey, new { pii = "redact" }))
            Assert.Equal(HttpStatusCode.BadRequest, put.StatusCode);
        using (var delete = await host.SendAsync(HttpMethod.Delete, "/v1/admin/policies/fake%0A", host.AdminKey))
            Assert.Equal(HttpStatusCode.BadRequest, delete.StatusCode);
        using (var list = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/words%0A", host.AdminKey, new { terms = new[] { "heck" } }))
            Assert.Equal(HttpStatusCode.BadRequest, list.StatusCode);
        using (var key = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "me\n", scopes = new[] { "inference" } }))
            Assert.Equal(HttpStatusCode.BadRequest, key.StatusCode);
        using (var policies = await host.SendAsync(HttpMethod.Get, "/v1/admin/policies", host.AdminKey))
            Assert.Equal(0, (await TestJson.ReadAsync(policies)).GetProperty("data").GetArrayLength());
    }

    [Fact]
    public async Task A_put_with_a_stale_if_match_is_a_412_and_overwrites_nothing()
    {
        await using var host = await TrustHost.StartAsync();
        using (var created = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "alpha" } }))
            Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        // Two admins read the list, then each PUTs the list it read plus one term.
        string etag;
        using (var read = await host.SendAsync(HttpMethod.Get, "/v1/admin/blocklists/words", host.AdminKey))
            etag = Assert.Single(read.Headers.GetValues("ETag"));
        Assert.Matches("^\"[0-9a-f]{32}\"$", etag);

        using (var first = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "alpha", "beta" } }), etag)))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.NotEqual(etag, Assert.Single(first.Headers.GetValues("ETag")));
        }
        string current;
        using (var second = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "alpha", "gamma" } }), etag)))
        {
            Assert.Equal(HttpStatusCode.PreconditionFailed, second.StatusCode);
            var error = await TestJson.ErrorAsync(second);
            Assert.Equal("precondition_failed", error.GetProperty("code").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Contains("GET it again", error.GetProperty("message").GetString());
            current = Assert.Single(second.Headers.GetValues("ETag"));
        }
        using (var read = await host.SendAsync(HttpMethod.Get, "/v1/admin/blocklists/words", host.AdminKey))
        {
            Assert.Equal(["alpha", "beta"], (await TestJson.ReadAsync(read)).GetProperty("terms").EnumerateArray().Select(t => t.GetString()));
            Assert.Equal(current, Assert.Single(read.Headers.GetValues("ETag")));
        }
        // With the current ETag, or *, the PUT goes through; without If-Match it always does.
        using (var retried = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "alpha", "beta", "gamma" } }), current)))
            Assert.Equal(HttpStatusCode.OK, retried.StatusCode);
        using (var any = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "delta" } }), "*")))
            Assert.Equal(HttpStatusCode.OK, any.StatusCode);
        using (var unconditional = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "epsilon" } }))
            Assert.Equal(HttpStatusCode.OK, unconditional.StatusCode);
        // A list that is gone matches no ETag, not even *; a header that is no ETag is a 400.
        using (var gone = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/other", host.AdminKey, new { terms = new[] { "x" } }), "*")))
            Assert.Equal(HttpStatusCode.PreconditionFailed, gone.StatusCode);
        using (var garbage = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "x" } }), "not-quoted")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, garbage.StatusCode);
            Assert.Contains("If-Match", (await TestJson.ErrorAsync(garbage)).GetProperty("message").GetString());
        }

        Assert.Equal(["epsilon"], (await host.Stores.SafetyConfiguration().GetBlocklistAsync("words"))!.Terms);
        // The refused PUTs left no audit entry: created, then four replacements.
        Assert.Equal(5, (await host.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.BlocklistChanged))).Count);
    }

    /// <summary>A blocklist is a set: matching does not depend on the order of its terms or
    /// patterns, so neither does its ETag. A term removed and added back (by another admin, or
    /// in changes that raced) moves to the end of the list, and a PUT conditional on the ETag read
    /// before was refused with a 412 though the list was the same.</summary>
    [Fact]
    public async Task A_blocklists_etag_is_the_same_for_its_entries_in_another_order()
    {
        await using var host = await TrustHost.StartAsync();
        string etag;
        using (var created = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "alpha", "beta" }, patterns = new[] { "x+y", "z\\d" } }))
            etag = Assert.Single(created.Headers.GetValues("ETag"));
        foreach (var (action, terms, patterns) in new[] { ("remove", new[] { "alpha" }, new[] { "x+y" }), ("addOrUpdate", new[] { "alpha" }, new[] { "x+y" }) })
        {
            using var changed = await host.SendAsync(HttpMethod.Post, $"/v1/admin/blocklists/words:{action}BlocklistItems", host.AdminKey, new { terms, patterns });
            Assert.Equal(HttpStatusCode.OK, changed.StatusCode);
        }
        using (var read = await host.SendAsync(HttpMethod.Get, "/v1/admin/blocklists/words", host.AdminKey))
        {
            Assert.Equal(["beta", "alpha"], (await TestJson.ReadAsync(read)).GetProperty("terms").EnumerateArray().Select(t => t.GetString()));
            Assert.Equal(etag, Assert.Single(read.Headers.GetValues("ETag")));
        }
        using (var put = await host.Client.SendAsync(IfMatch(host.Request(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "alpha", "beta", "gamma" } }), etag)))
            Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        // What is stored is what counts: another spelling of a term is another version.
        using (var respelt = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/words", host.AdminKey, new { terms = new[] { "Alpha", "beta", "gamma" } }))
            Assert.NotEqual(etag, Assert.Single(respelt.Headers.GetValues("ETag")));
    }

    static HttpRequestMessage IfMatch(HttpRequestMessage request, string etag)
    {
        request.Headers.TryAddWithoutValidation("If-Match", etag);
        return request;
    }

    [Fact]
    public async Task Blocklist_items_are_added_and_removed_one_transaction_each_and_audited()
    {
        await using var host = await TrustHost.StartAsync();
        const string Add = "/v1/admin/blocklists/words:addOrUpdateBlocklistItems";
        // Admins adding at once: each add builds on the list as stored, so none is lost.
        var terms = Enumerable.Range(0, 8).Select(i => $"term{i}").ToList();
        var adds = await Task.WhenAll(terms.Select(t => host.SendAsync(HttpMethod.Post, Add, host.AdminKey, new { terms = new[] { t } })));
        Assert.All(adds, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        foreach (var r in adds) r.Dispose();
        using (var patterned = await host.SendAsync(HttpMethod.Post, Add, host.AdminKey, new { patterns = new[] { "proj-\\d+" }, category = "violence" }))
        {
            Assert.Equal(HttpStatusCode.OK, patterned.StatusCode);
            var list = await TestJson.ReadAsync(patterned);
            Assert.Equal(terms, list.GetProperty("terms").EnumerateArray().Select(t => t.GetString()).Order());
            Assert.Equal("violence", list.GetProperty("category").GetString());
            Assert.Single(patterned.Headers.GetValues("ETag"));
        }

        using (var removed = await host.SendAsync(HttpMethod.Post, "/v1/admin/blocklists/words:removeBlocklistItems", host.AdminKey, new { terms = new[] { "TERM0", "term1" }, patterns = new[] { "proj-\\d+" } }))
        {
            Assert.Equal(HttpStatusCode.OK, removed.StatusCode);
            var list = await TestJson.ReadAsync(removed);
            Assert.Equal(terms.Skip(2), list.GetProperty("terms").EnumerateArray().Select(t => t.GetString()).Order());
            Assert.Equal(0, list.GetProperty("patterns").GetArrayLength());
        }
        using (var lacking = await host.SendAsync(HttpMethod.Post, "/v1/admin/blocklists/words:removeBlocklistItems", host.AdminKey, new { terms = new[] { "term0" } }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, lacking.StatusCode);
            Assert.Contains("has no entry 'term0'", (await TestJson.ErrorAsync(lacking)).GetProperty("message").GetString());
        }
        using (var missing = await host.SendAsync(HttpMethod.Post, "/v1/admin/blocklists/nope:removeBlocklistItems", host.AdminKey, new { terms = new[] { "a" } }))
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using (var badRegex = await host.SendAsync(HttpMethod.Post, Add, host.AdminKey, new { patterns = new[] { "secret-(" } }))
            Assert.Contains("not a valid regular expression", (await TestJson.ErrorAsync(badRegex)).GetProperty("message").GetString());
        using (var nothing = await host.SendAsync(HttpMethod.Post, Add, host.AdminKey, new { terms = Array.Empty<string>() }))
            Assert.Contains("at least one term or pattern", (await TestJson.ErrorAsync(nothing)).GetProperty("message").GetString());

        var adminId = (await host.Stores.KeyService().ListAsync()).Single(k => k.Name == "test-admin").Id;
        var log = await host.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.BlocklistChanged, Actor: adminId));
        Assert.Equal(terms.Count + 2, log.Count);
        Assert.Single(log, e => e.Details.Contains("\"created\""));
    }

    [Fact]
    public async Task Audit_is_listed_and_verified_and_usage_filtered_by_key_model_and_dates()
    {
        // The server's clock stands still a second before midnight (UTC): every request is recorded
        // on that day, which is the server's today for a range that names no dates, whenever the test runs.
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 3, 5, 23, 59, 59, TimeSpan.Zero));
        await using var host = await TrustHost.StartAsync(time: clock);
        var a = await host.CreateKeyAsync("team-a", ApiKeyScopes.Inference, RateLimits.Unlimited);
        var b = await host.CreateKeyAsync("team-b", ApiKeyScopes.Inference, RateLimits.Unlimited);
        foreach (var (key, count) in new[] { (a, 2), (b, 1) })
            for (var i = 0; i < count; i++)
            {
                using var r = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", key, TrustHost.Chat("one two three", maxTokens: 4));
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            }
        using (var usage = await host.SendAsync(HttpMethod.Get, "/v1/usage?key=team-a&model=fake&from=2026-03-05&to=2026-03-05", host.AdminKey))
        {
            var row = Assert.Single((await TestJson.ReadAsync(usage)).GetProperty("data").EnumerateArray());
            Assert.Equal((2, 6, 8), (row.GetProperty("requests").GetInt32(), row.GetProperty("prompt_tokens").GetInt32(), row.GetProperty("completion_tokens").GetInt32()));
        }
        using (var all = await host.SendAsync(HttpMethod.Get, "/v1/usage", host.AdminKey))
            Assert.Equal(2, (await TestJson.ReadAsync(all)).GetProperty("data").GetArrayLength());
        using (var otherModel = await host.SendAsync(HttpMethod.Get, "/v1/usage?model=other", host.AdminKey))
            Assert.Equal(0, (await TestJson.ReadAsync(otherModel)).GetProperty("data").GetArrayLength());
        using (var badDate = await host.SendAsync(HttpMethod.Get, "/v1/usage?from=yesterday", host.AdminKey))
        {
            Assert.Equal(HttpStatusCode.BadRequest, badDate.StatusCode);
            Assert.Contains("yyyy-MM-dd", (await TestJson.ErrorAsync(badDate)).GetProperty("message").GetString());
        }
        using (var reversed = await host.SendAsync(HttpMethod.Get, "/v1/usage?from=2026-02-01&to=2026-01-01", host.AdminKey))
            Assert.Equal(HttpStatusCode.BadRequest, reversed.StatusCode);

        using (var audit = await host.SendAsync(HttpMethod.Get, "/v1/admin/audit?action=key.created&limit=2", host.AdminKey))
        {
            var entries = (await TestJson.ReadAsync(audit)).GetProperty("data").EnumerateArray().ToList();
            Assert.Equal(2, entries.Count);
            Assert.All(entries, e => Assert.Equal("key.created", e.GetProperty("action").GetString()));
        }
        using (var badLimit = await host.SendAsync(HttpMethod.Get, "/v1/admin/audit?limit=lots", host.AdminKey))
            Assert.Equal(HttpStatusCode.BadRequest, badLimit.StatusCode);
        using var verify = await host.SendAsync(HttpMethod.Get, "/v1/admin/audit/verify", host.AdminKey);
        var verification = await TestJson.ReadAsync(verify);
        Assert.True(verification.GetProperty("valid").GetBoolean());
        Assert.True(verification.GetProperty("entries_checked").GetInt32() >= 5);
        Assert.Equal(64, verification.GetProperty("head_hash").GetString()!.Length);
    }

    [Fact]
    public async Task An_audit_entry_names_the_key_that_acted_a_revoked_one_too_and_no_other_actor()
    {
        // The dashboard showed the actor's key id alone, which says nothing to a person.
        await using var host = await TrustHost.StartAsync();
        var ops = await host.CreateKeyAsync("ops-alice", ApiKeyScopes.Admin, RateLimits.Unlimited);
        using (var created = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", ops, new { name = "svc", scopes = new[] { "inference" } }))
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        using (var revoked = await host.SendAsync(HttpMethod.Delete, "/v1/admin/keys/ops-alice", host.AdminKey))
            Assert.Equal(HttpStatusCode.OK, revoked.StatusCode);

        using var audit = await host.SendAsync(HttpMethod.Get, "/v1/admin/audit?action=key.created", host.AdminKey);
        var entries = (await TestJson.ReadAsync(audit)).GetProperty("data").EnumerateArray().ToList();
        var opsId = (await host.Stores.KeyService().ListAsync(includeRevoked: true)).Single(k => k.Name == "ops-alice").Id;
        var byOps = Assert.Single(entries, e => e.GetProperty("actor").GetString() == opsId);
        Assert.Equal("ops-alice", byOps.GetProperty("actor_name").GetString());
        // The keys the host made at its start were created by "test", which is no key.
        var byOther = entries.First(e => e.GetProperty("actor").GetString() == "test");
        Assert.Equal(JsonValueKind.Null, byOther.GetProperty("actor_name").ValueKind);
    }

    [Fact]
    public async Task A_database_the_machine_refuses_is_a_503_with_retry_after_that_names_no_file()
    {
        await using var host = await TrustHost.StartAsync();
        // The file replaced by one that is not a database, as a wrong volume or a damaged disk leaves it.
        SqliteConnection.ClearAllPools();
        foreach (var file in Directory.GetFiles(host.DataDir, PlatformDatabase.FileName + "*")) File.Delete(file);
        File.WriteAllText(Path.Combine(host.DataDir, PlatformDatabase.FileName), new string('x', 8192));

        // Reading the key on the way in, and an admin write.
        foreach (var (method, path, body) in new (HttpMethod, string, object?)[]
                 {
                     (HttpMethod.Get, "/v1/admin/keys", null),
                     (HttpMethod.Put, "/v1/admin/blocklists/words", new { terms = new[] { "zanzibar" } }),
                 })
        {
            using var response = await host.SendAsync(method, path, host.AdminKey, body);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After: " + response.Headers.RetryAfter);
            var error = await TestJson.ErrorAsync(response);
            Assert.Equal("storage_unavailable", error.GetProperty("code").GetString());
            var text = error.GetProperty("message").GetString()!;
            Assert.DoesNotContain(host.DataDir, text);
            Assert.DoesNotContain(PlatformDatabase.FileName, text);
        }
    }

    [Fact]
    public async Task A_scrapers_key_is_created_with_the_metrics_scope()
    {
        await using var host = await TrustHost.StartAsync();
        using var scraper = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "prometheus", scopes = new[] { "metrics" } });
        Assert.Equal(HttpStatusCode.Created, scraper.StatusCode);
        var created = await TestJson.ReadAsync(scraper);
        Assert.Equal(["metrics"], created.GetProperty("api_key").GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        var secret = created.GetProperty("key").GetString();
        using (var metrics = await host.SendAsync(HttpMethod.Get, "/metrics", secret))
            Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        using (var models = await host.SendAsync(HttpMethod.Get, "/v1/models", secret))
            Assert.Equal(HttpStatusCode.Forbidden, models.StatusCode);
    }

    /// <summary>A field an admin request does not have is refused, naming it, with nothing changed:
    /// ignored, a misspelt one did other than asked without a word (a key made with "expire_in" never
    /// expired, one with "scope" got the default scope, a blocklist put with "pattern" lost its
    /// patterns, a policy put with "blocklist" used none).</summary>
    [Fact]
    public async Task A_field_an_admin_request_does_not_have_is_a_400_naming_it_with_nothing_changed()
    {
        await using var host = await TrustHost.StartAsync();
        var audited = (await host.Stores.Audit.ReadAsync(new AuditQuery())).Count;
        foreach (var (method, path, body, field) in new (HttpMethod, string, object, string)[]
        {
            (HttpMethod.Post, "/v1/admin/keys", new { name = "typo", scopes = "inference", expire_in = "1h" }, "expire_in"),
            (HttpMethod.Post, "/v1/admin/keys", new { name = "typo", scope = "metrics" }, "scope"),
            (HttpMethod.Put, "/v1/admin/keys/test-admin/limits", new { rpm = 5, tmp = 7 }, "tmp"),
            (HttpMethod.Put, "/v1/admin/blocklists/typo", new { terms = new[] { "x" }, pattern = new[] { "y+" } }, "pattern"),
            (HttpMethod.Post, "/v1/admin/blocklists/typo:addOrUpdateBlocklistItems", new { term = new[] { "x" } }, "term"),
            (HttpMethod.Put, "/v1/admin/policies/typo", new { blocklist = new[] { "x" } }, "blocklist"),
        })
        {
            using var response = await host.SendAsync(method, path, host.AdminKey, body);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var error = await TestJson.ErrorAsync(response);
            Assert.StartsWith($"'{field}' is not a field of this request; its fields are ", error.GetProperty("message").GetString());
            Assert.Equal(field, error.GetProperty("param").GetString());
        }
        Assert.DoesNotContain(await host.Stores.KeyService().ListAsync(), k => k.Name == "typo");
        Assert.Equal(RateLimits.Unlimited, (await host.Stores.KeyService().ListAsync()).Single(k => k.Name == "test-admin").Limits);
        Assert.Equal(audited, (await host.Stores.Audit.ReadAsync(new AuditQuery())).Count);
    }

    /// <summary>A field of the wrong type is refused saying what it must be: System.Text.Json names
    /// the request a field is bound to through its constructor, not the field's type, so each read
    /// "could not be converted to an object" ('rpm' must be a whole number, 'name' text). A field
    /// given twice is refused too: the last one was taken without a word.</summary>
    [Fact]
    public async Task A_field_of_the_wrong_type_or_given_twice_is_a_400_saying_what_it_must_be()
    {
        await using var host = await TrustHost.StartAsync();
        foreach (var (path, json, field, problem) in new[]
        {
            ("/v1/admin/keys", """{"name": "x", "rpm": "lots"}""", "rpm", "could not be converted to a whole number"),
            ("/v1/admin/keys", """{"name": "x", "tpm": 1e12}""", "tpm", "could not be converted to a whole number"),
            ("/v1/admin/keys", """{"name": 7}""", "name", "could not be converted to text"),
            ("/v1/admin/keys", """{"name": "x", "scopes": "metrics", "name": "y"}""", "name", "'name' is given twice"),
        })
        {
            using var response = await host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, path)
            {
                Headers = { { "Authorization", "Bearer " + host.AdminKey } },
                Content = new StringContent(json, Encoding.UTF8, "application/json"),
            });
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var error = await TestJson.ErrorAsync(response);
            Assert.Contains(problem, error.GetProperty("message").GetString());
            Assert.Equal(field, error.GetProperty("param").GetString());
        }
        Assert.Equal(["test-admin", "test-inference"], (await host.Stores.KeyService().ListAsync()).Select(k => k.Name).Order());
    }

    /// <summary>A bad query parameter is a 400 saying what it must be, with the parameter as the
    /// error's param, as a body's field at fault is and /api/jobs' metrics parameters are.</summary>
    [Fact]
    public async Task A_bad_query_parameter_is_a_400_naming_it_as_the_param()
    {
        await using var host = await TrustHost.StartAsync();
        foreach (var (query, parameter, problem) in new[]
        {
            ("/v1/admin/audit?limit=-1", "limit", "must be a non-negative integer"),
            ("/v1/admin/audit?after=1&after=2", "after", "must be a non-negative integer"),
            ("/v1/admin/audit?from=soon", "from", "must be an ISO 8601 time"),
            ("/v1/usage?to=2026-02-30", "to", "must be a date as yyyy-MM-dd"),
            ("/v1/admin/keys?include_revoked=maybe", "include_revoked", "must be true or false"),
        })
        {
            using var response = await host.SendAsync(HttpMethod.Get, query, host.AdminKey);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var error = await TestJson.ErrorAsync(response);
            Assert.Contains($"'{parameter}' {problem}", error.GetProperty("message").GetString());
            Assert.Equal(parameter, error.GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task Bad_bodies_and_names_get_a_400_that_says_what_to_fix()
    {
        await using var host = await TrustHost.StartAsync();
        using (var notJson = await host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/admin/keys")
               {
                   Headers = { { "Authorization", "Bearer " + host.AdminKey } },
                   Content = new StringContent("name=x", Encoding.UTF8, "text/plain"),
               }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, notJson.StatusCode);
            Assert.Contains("application/json", (await TestJson.ErrorAsync(notJson)).GetProperty("message").GetString());
        }
        using (var broken = await host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/admin/keys")
               {
                   Headers = { { "Authorization", "Bearer " + host.AdminKey } },
                   Content = new StringContent("{\"name\": ", Encoding.UTF8, "application/json"),
               }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, broken.StatusCode);
            Assert.Contains("not valid JSON", (await TestJson.ErrorAsync(broken)).GetProperty("message").GetString());
        }
        using (var wrongType = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "x", scopes = "inference", rpm = "lots" }))
        {
            var message = (await TestJson.ErrorAsync(wrongType)).GetProperty("message").GetString()!;
            Assert.Contains("at 'rpm'", message);
            Assert.DoesNotContain("Stratus.", message); // the field, not the server's type
            Assert.DoesNotContain("Path:", message);
        }
        // No scopes: the inference scope, as `stratus keys create` without --scopes; before, a 400
        // saying that 'scopes' must be a string, as if one had been sent.
        using (var plain = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "plain" }))
        {
            Assert.Equal(HttpStatusCode.Created, plain.StatusCode);
            Assert.Equal(["inference"], (await TestJson.ReadAsync(plain)).GetProperty("api_key").GetProperty("scopes").EnumerateArray().Select(s => s.GetString()));
        }
        using (var badScope = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "x", scopes = "inference,root" }))
            Assert.Contains("Unknown scope 'root'", (await TestJson.ErrorAsync(badScope)).GetProperty("message").GetString());
        using (var badName = await host.SendAsync(HttpMethod.Post, "/v1/admin/keys", host.AdminKey, new { name = "bad name!", scopes = "inference" }))
            Assert.Contains("invalid", (await TestJson.ErrorAsync(badName)).GetProperty("message").GetString());
        using (var badModel = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", host.InferenceKey, TrustHost.Chat("hi", model: "no such/model")))
        {
            Assert.Equal(HttpStatusCode.BadRequest, badModel.StatusCode);
            Assert.Contains("Deployment name", (await TestJson.ErrorAsync(badModel)).GetProperty("message").GetString());
        }

        // JSON nulls where names and severities belong, and strings that are not text.
        async Task<string> Refused(HttpMethod method, string path, string key, string json)
        {
            using var response = await host.Client.SendAsync(new HttpRequestMessage(method, path)
            {
                Headers = { { "Authorization", "Bearer " + key } },
                Content = new StringContent(json, Encoding.UTF8, "application/json"),
            });
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            return (await TestJson.ErrorAsync(response)).GetProperty("message").GetString()!;
        }
        Assert.Contains("empty term", await Refused(HttpMethod.Put, "/v1/admin/blocklists/b", host.AdminKey, """{"terms":[null]}"""));
        Assert.Contains("Unknown severity", await Refused(HttpMethod.Put, "/v1/admin/policies/fake", host.AdminKey, """{"block_at":{"hate":null}}"""));
        Assert.Contains("Blocklist name", await Refused(HttpMethod.Put, "/v1/admin/policies/fake", host.AdminKey, """{"blocklists":[null]}"""));
        Assert.Contains("surrogate", await Refused(HttpMethod.Post, "/v1/moderations", host.InferenceKey, """{"input":"a\ud800"}"""));
        Assert.Contains("surrogate", await Refused(HttpMethod.Put, "/v1/admin/blocklists/b", host.AdminKey, """{"terms":["\udc00"]}"""));
        using (var invalidUtf8 = await host.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/moderations")
               {
                   Headers = { { "Authorization", "Bearer " + host.InferenceKey } },
                   Content = new ByteArrayContent([.. "{\"input\":\"a"u8, 0xFF, .. "\"}"u8]) { Headers = { { "Content-Type", "application/json" } } },
               }))
        {
            Assert.Equal(HttpStatusCode.BadRequest, invalidUtf8.StatusCode);
            Assert.Contains("UTF-8", (await TestJson.ErrorAsync(invalidUtf8)).GetProperty("message").GetString());
        }
        // The default range ends at the first day there is, not before it.
        using (var earliest = await host.SendAsync(HttpMethod.Get, "/v1/usage?to=0001-01-15", host.AdminKey))
            Assert.Equal(HttpStatusCode.OK, earliest.StatusCode);
    }
}
