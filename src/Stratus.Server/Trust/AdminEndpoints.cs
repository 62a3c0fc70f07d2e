// The admin API (admin scope): API keys (create, list, revoke, set limits, all effective on the
// next request), custom blocklists, per-deployment safety policies, the audit log and its
// verification, and usage. Every change is audited with the calling key's id as the actor.
// Query values and bodies are parsed here rather than by parameter binding, so a bad value
// gets a 400 that says what is wrong instead of an empty one.
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
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
                body.ParseScopes(), new RateLimits(body.Rpm, body.Tpm), actor, ct);
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
                ? Json(BlocklistView.From(list))
                : OpenAIErrors.NotFound($"No blocklist named '{name}'.");
        });
        admin.MapPut("/blocklists/{name}", async (HttpContext http, string name, CancellationToken ct) =>
        {
            var (trust, actor) = Caller(http);
            var body = await TrustJson.ReadBodyAsync<BlocklistBody>(http.Request, ct);
            var category = body.Category is null ? SafetyCategory.Hate : SafetyNames.ParseCategory(body.Category);
            var list = new Blocklist(name, body.Terms ?? [], body.Patterns ?? [], category);
            await trust.Safety.UpsertBlocklistAsync(list, actor, ct);
            return Json(BlocklistView.From(list));
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
            return Json(new ListResponse<AuditEntryView>([.. (await trust.Stores.Audit.ReadAsync(query, ct)).Select(AuditEntryView.From)]));
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
            var query = UsageQuery.Days(keyId, Day(http, "from"), Day(http, "to"), Text(http, "model"));
            var rows = await trust.Stores.Usage.QueryAsync(query, ct);
            return Json(new ListResponse<UsageView>([.. rows.Select(UsageView.From)]));
        }).RequireStratusScope(ApiKeyScopes.Admin);

        return endpoints;
    }

    static (StratusTrust Trust, string Actor) Caller(HttpContext http) =>
        (http.RequestServices.GetRequiredService<StratusTrust>(), http.GetStratusTrust().KeyId);

    static IResult Json<T>(T value, int status = StatusCodes.Status200OK) => Results.Json(value, TrustJson.Options, statusCode: status);

    static string? Text(HttpContext http, string name) =>
        http.Request.Query.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v.ToString()) ? v.ToString() : null;

    static bool Flag(HttpContext http, string name) => Text(http, name) switch
    {
        null => false,
        var v when bool.TryParse(v, out var b) => b,
        "1" => true,
        "0" => false,
        var v => throw new TrustUserException($"Query parameter '{name}' must be true or false, not '{v}'."),
    };

    static long? Long(HttpContext http, string name) => Text(http, name) switch
    {
        null => null,
        var v when long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= 0 => n,
        var v => throw new TrustUserException($"Query parameter '{name}' must be a non-negative integer, not '{v}'."),
    };

    static DateOnly? Day(HttpContext http, string name) => Text(http, name) switch
    {
        null => null,
        var v when DateOnly.TryParseExact(v, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var d) => d,
        var v => throw new TrustUserException($"Query parameter '{name}' must be a date as yyyy-MM-dd, not '{v}'."),
    };

    static DateTimeOffset? Time(HttpContext http, string name) => Text(http, name) switch
    {
        null => null,
        var v when DateTimeOffset.TryParse(v, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t) => t,
        var v => throw new TrustUserException($"Query parameter '{name}' must be an ISO 8601 time (2026-01-31T12:00:00Z), not '{v}'."),
    };
}
