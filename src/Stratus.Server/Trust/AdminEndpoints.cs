// The admin API (admin scope): API keys (create, list, revoke, set limits, all effective on the
// next request), custom blocklists (whole, with an ETag for conditional replacement, or item by
// item), per-deployment safety policies, the audit log and its verification, and usage. Every
// change is audited with the calling key's id as the actor.
// Query values and bodies are parsed here rather than by parameter binding, so a bad value
// gets a 400 that says what is wrong instead of an empty one.
using System.Globalization;
using Microsoft.Net.Http.Headers;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public static class AdminEndpoints
{
    public const string Prefix = "/v1/admin";

    public static IEndpointRouteBuilder MapTrustAdmin(this IEndpointRouteBuilder endpoints)
    {
        var admin = endpoints.MapGroup(Prefix).RequireStratusScope(ApiKeyScopes.Admin);

        admin.MapPost("/keys", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var body = await TrustJson.ReadBodyAsync<CreateKeyRequest>(http.Request, ct);
            var created = await trust.Keys.CreateAsync(body.Name ?? throw new TrustUserException("'name' is required."),
                body.ParseScopes(), new RateLimits(body.Rpm, body.Tpm), actor, body.ParseExpiry(), ct);
            return Json(new CreatedKeyView(created.Secret, KeyView.From(created.Key)), StatusCodes.Status201Created);
        });
        admin.MapGet("/keys", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            var all = Flag(http, "include_revoked");
            return Json(new ListResponse<KeyView>([.. (await trust.Keys.ListAsync(all, ct)).Select(KeyView.From)]));
        });
        admin.MapDelete("/keys/{nameOrId}", async (HttpContext http, string nameOrId, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            return Json(KeyView.From(await trust.RevokeKeyAsync(nameOrId, actor, ct)));
        });
        admin.MapPut("/keys/{nameOrId}/limits", async (HttpContext http, string nameOrId, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var body = await TrustJson.ReadBodyAsync<SetLimitsRequest>(http.Request, ct);
            return Json(KeyView.From(await trust.Keys.SetLimitsAsync(nameOrId, body.Rpm, body.Tpm, actor, ct)));
        });

        admin.MapGet("/blocklists", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            return Json(new ListResponse<BlocklistView>([.. (await trust.Safety.ListBlocklistsAsync(ct)).Select(BlocklistView.From)]));
        });
        admin.MapGet("/blocklists/{name}", async (HttpContext http, string name, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            return await trust.Safety.GetBlocklistAsync(name, ct) is { } list
                ? BlocklistResponse(http, list)
                : OpenAIErrors.NotFound($"No blocklist named '{name}'.");
        });
        admin.MapPut("/blocklists/{name}", async (HttpContext http, string name, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var ifMatch = IfMatch(http);
            var body = await TrustJson.ReadBodyAsync<BlocklistBody>(http.Request, ct);
            var category = body.Category is null ? SafetyCategory.Hate : SafetyNames.ParseCategory(body.Category);
            try
            {
                return BlocklistResponse(http, await trust.Safety.UpsertBlocklistAsync(new Blocklist(name, body.Terms ?? [], body.Patterns ?? [], category), actor, ifMatch, ct));
            }
            catch (BlocklistVersionMismatchException e)
            {
                return e.CurrentVersion is { } current
                    ? OpenAIErrors.PreconditionFailed($"Blocklist '{name}' has changed since the If-Match ETag was read (it is now {ETag(current)}): " +
                        "GET it again, redo the change and PUT it with the new ETag.", ETag(current))
                    : OpenAIErrors.PreconditionFailed($"Blocklist '{name}' does not exist, so it matches no If-Match ETag: " +
                        "it was deleted since it was read. PUT without If-Match to create it.", null);
            }
        });
        // Item-level changes, as Azure AI Content Safety's :addOrUpdateBlocklistItems and
        // :removeBlocklistItems: each is one transaction on the list as stored, so admins editing
        // one list at once keep each other's entries without an If-Match round trip.
        admin.MapPost("/blocklists/{name}:addOrUpdateBlocklistItems", async (HttpContext http, string name, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var body = await TrustJson.ReadBodyAsync<BlocklistBody>(http.Request, ct);
            var category = body.Category is null ? (SafetyCategory?)null : SafetyNames.ParseCategory(body.Category);
            return BlocklistResponse(http, await trust.Safety.AddToBlocklistAsync(name, body.Terms ?? [], body.Patterns ?? [], category, actor, ct));
        });
        admin.MapPost("/blocklists/{name}:removeBlocklistItems", async (HttpContext http, string name, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var body = await TrustJson.ReadBodyAsync<BlocklistBody>(http.Request, ct);
            if (body.Category is not null) throw new TrustUserException("'category' belongs to the list, not to its items: send only 'terms' and 'patterns' to remove.");
            return BlocklistResponse(http, await trust.Safety.RemoveFromBlocklistAsync(name, body.Terms ?? [], body.Patterns ?? [], actor, ct));
        });
        admin.MapDelete("/blocklists/{name}", async (HttpContext http, string name, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            await trust.Safety.DeleteBlocklistAsync(name, actor, ct);
            return Results.NoContent();
        });

        admin.MapGet("/policies", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            return Json(new ListResponse<SafetyPolicyDocument>([.. (await trust.Safety.ListPoliciesAsync(ct)).Select(p => p.ToDocument())]));
        });
        admin.MapGet("/policies/{deployment}", async (HttpContext http, string deployment, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            SafetyPolicy.ValidateDeploymentName(deployment);
            return Json((await trust.Safety.GetPolicyAsync(deployment, ct)).ToDocument());
        });
        admin.MapPut("/policies/{deployment}", async (HttpContext http, string deployment, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var body = await TrustJson.ReadBodyAsync<SafetyPolicyDocument>(http.Request, ct);
            if (body.Deployment is not null && body.Deployment != deployment)
                throw new TrustUserException($"The body names deployment '{body.Deployment}' but the path names '{deployment}'.");
            var policy = SafetyPolicy.FromDocument(body with { Deployment = deployment });
            await trust.Safety.SetPolicyAsync(policy, actor, ct);
            return Json(policy.ToDocument());
        });
        admin.MapDelete("/policies/{deployment}", async (HttpContext http, string deployment, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            await trust.Safety.DeletePolicyAsync(deployment, actor, ct);
            return Results.NoContent();
        });

        admin.MapGet("/audit", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            var query = new AuditQuery(
                Long(http, "after") ?? 0,
                (int)Math.Clamp(Long(http, "limit") ?? 100, 1, 10_000),
                Text(http, "action"),
                Text(http, "actor"),
                Time(http, "from"),
                Time(http, "to"));
            var entries = await trust.Stores.Audit.ReadAsync(query, ct);
            // Keys acting are named as `stratus keys list` names them, rather than by a request per key by each reader.
            var names = await ActorNames.ReadAsync(trust.Keys, ct);
            return Json(new ListResponse<AuditEntryView>([.. entries.Select(e => AuditEntryView.From(e, names.NameOf(e.Actor)))]));
        });
        admin.MapGet("/audit/verify", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            return Json(AuditVerificationView.From(await trust.Stores.Audit.VerifyAsync(ct)));
        });

        endpoints.MapGet("/v1/usage", async (HttpContext http, CancellationToken ct) =>
        {
            var (trust, _) = Caller(http);
            var keyId = await UsageQuery.KeyIdAsync(trust.Keys, Text(http, "key"), ct);
            var query = UsageQuery.Days(keyId, Day(http, "from"), Day(http, "to"), Text(http, "model"), trust.Time);
            var rows = await trust.Stores.Usage.QueryAsync(query, ct);
            return Json(new ListResponse<UsageView>([.. rows.Select(UsageView.From)]));
        }).RequireStratusScope(ApiKeyScopes.Admin);

        return endpoints;
    }

    static (StratusTrust Trust, string Actor) Caller(HttpContext http) =>
        (http.RequestServices.GetRequiredService<StratusTrust>(), http.GetStratusTrust().KeyId);

    static IResult Json<T>(T value, int status = StatusCodes.Status200OK) => Results.Json(value, TrustJson.Options, statusCode: status);

    /// <summary>A blocklist with its version as the ETag, for a later conditional PUT.</summary>
    static IResult BlocklistResponse(HttpContext http, Blocklist list)
    {
        http.Response.Headers.ETag = ETag(SafetyConfiguration.VersionOf(list));
        return Json(BlocklistView.From(list));
    }

    static string ETag(string version) => $"\"{version}\"";

    /// <summary>The versions an If-Match header accepts ("*": any); null without the header,
    /// which makes the write unconditional. Weak tags never match (If-Match compares strongly).</summary>
    /// <exception cref="TrustUserException">A header that is no list of ETags.</exception>
    static IReadOnlyCollection<string>? IfMatch(HttpContext http)
    {
        var values = http.Request.Headers.IfMatch;
        if (values.Count == 0) return null;
        if (!EntityTagHeaderValue.TryParseStrictList(values, out var tags) || tags.Count == 0)
            throw new TrustUserException($"If-Match must be the ETag a GET of the blocklist returned (a quoted string) or *, not '{values}'.");
        return [.. tags.Where(t => !t.IsWeak).Select(t => t.Equals(EntityTagHeaderValue.Any) ? "*" : t.Tag.ToString().Trim('"'))];
    }

    static string? Text(HttpContext http, string name) =>
        http.Request.Query.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v.ToString()) ? v.ToString() : null;

    static bool Flag(HttpContext http, string name) => Text(http, name) switch
    {
        null => false,
        var v when bool.TryParse(v, out var b) => b,
        "1" => true,
        "0" => false,
        var v => throw new TrustUserException($"Query parameter '{name}' must be true or false, not '{v}'.") { Param = name },
    };

    static long? Long(HttpContext http, string name) => Text(http, name) switch
    {
        null => null,
        var v when long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= 0 => n,
        var v => throw new TrustUserException($"Query parameter '{name}' must be a non-negative integer, not '{v}'.") { Param = name },
    };

    static DateOnly? Day(HttpContext http, string name) => Text(http, name) switch
    {
        null => null,
        var v when DateOnly.TryParseExact(v, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var d) => d,
        var v => throw new TrustUserException($"Query parameter '{name}' must be a date as yyyy-MM-dd, not '{v}'.") { Param = name },
    };

    static DateTimeOffset? Time(HttpContext http, string name) => Text(http, name) switch
    {
        null => null,
        var v when DateTimeOffset.TryParse(v, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) => t,
        var v => throw new TrustUserException($"Query parameter '{name}' must be an ISO 8601 time (2026-01-31T12:00:00Z), not '{v}'.") { Param = name },
    };
}
