// GET /api/key: the key a request is made with, as its holder knows it already: its id, name and
// scopes, and what those grant (admin grants every scope, inference grants metrics too:
// ApiKeyScopeNames.Granted), so that a client such as the dashboard shows what the key may see
// instead of asking for what would be refused. Any valid key may ask (it learns only of itself);
// on a server run with --insecure-no-auth, where no key is asked for, every scope is granted.
using System.Text.Json.Serialization;
using Stratus.Platform;

namespace Stratus.Server.Trust;

/// <param name="Id">The key's id, as the audit log names it; "anonymous" without a key.</param>
/// <param name="Name">The key's name; null without a key.</param>
/// <param name="Scopes">The scopes the key was created with.</param>
/// <param name="GrantedScopes">What they let it do, every scope an endpoint may need among them.</param>
public sealed record CallerKeyView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("scopes")] IReadOnlyList<string> Scopes,
    [property: JsonPropertyName("granted_scopes")] IReadOnlyList<string> GrantedScopes)
{
    [JsonPropertyName("object")] public string Object => "api_key";

    public static CallerKeyView From(RequestTrust caller) => caller.Key is { } key
        ? new(key.Id, key.Name, Names(key.Scopes), Names(ApiKeyScopeNames.Granted(key.Scopes)))
        : new(caller.KeyId, null, [], Names(ApiKeyScopeNames.All));

    static string[] Names(ApiKeyScopes scopes) => ApiKeyScopeNames.Format(scopes).Split(',', StringSplitOptions.RemoveEmptyEntries);
}

public static class CallerKeyEndpoints
{
    public const string Path = "/api/key";

    public static IEndpointRouteBuilder MapCallerKey(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet(Path, (HttpContext http) => Results.Json(CallerKeyView.From(http.GetStratusTrust()), TrustJson.Options)).RequireStratusScope(ApiKeyScopes.None);
        return endpoints;
    }
}
