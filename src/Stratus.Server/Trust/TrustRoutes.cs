// Which requests need which key scope. Served without a key: /health (load balancers probe it
// without credentials) and reading the dashboard's own files (DashboardEndpoints); everything
// else, including /ready, /metrics and paths that match no endpoint, needs a valid key. The
// scope comes from endpoint metadata when an endpoint declares one (RequireStratusScope), else
// from the matched route pattern, else from the request path; prefixes compare
// case-insensitively because routing does. /metrics needs the metrics scope, which a scraper's
// key holds alone (inference and admin keys have it too).
using Stratus.Platform;
using Stratus.Server.Endpoints;

namespace Stratus.Server.Trust;

/// <summary>Endpoint metadata naming the scope an endpoint needs; None: any valid key (GET
/// /api/key, which tells a key only of itself).</summary>
public sealed record StratusScopeMetadata(ApiKeyScopes Scope);

public static class TrustRoutes
{
    /// <summary>Paths answered without a key. Keep this list minimal: each entry is public.</summary>
    public static IReadOnlyList<string> AnonymousPaths { get; } = ["/health"];

    static readonly (string Prefix, ApiKeyScopes Scope)[] Rules =
    [
        ("/v1/admin", ApiKeyScopes.Admin),
        ("/v1/usage", ApiKeyScopes.Admin),
        ("/api/jobs", ApiKeyScopes.Training),
        // The rest of /api is the platform's management surface.
        ("/api", ApiKeyScopes.Admin),
        ("/metrics", ApiKeyScopes.Metrics),
    ];

    public static bool IsAnonymous(string method, string? path)
    {
        foreach (var anonymous in AnonymousPaths)
            if (string.Equals(path, anonymous, StringComparison.OrdinalIgnoreCase)) return true;
        // The dashboard's files hold no data: the page fetches what it shows from the API with the
        // key its operator pastes in, so a browser must load the page before it has a key.
        // Reading those exact paths only: nothing below or beside /dashboard, no other method.
        return (HttpMethods.IsGet(method) || HttpMethods.IsHead(method)) && DashboardEndpoints.IsFile(path);
    }

    /// <summary>The scope this request needs; Inference unless a rule says otherwise.</summary>
    public static ApiKeyScopes RequiredScope(HttpContext context)
    {
        var endpoint = context.GetEndpoint();
        if (endpoint?.Metadata.GetMetadata<StratusScopeMetadata>() is { } declared) return declared.Scope;
        var byPath = ScopeForPath(context.Request.Path.Value ?? "/");
        if (endpoint is RouteEndpoint { RoutePattern.RawText: { } pattern })
        {
            // The stricter of the two, so neither an odd request path nor an odd pattern can
            // lower what is required.
            var byPattern = ScopeForPath(pattern.StartsWith('/') ? pattern : "/" + pattern);
            return Strictness(byPattern) > Strictness(byPath) ? byPattern : byPath;
        }
        return byPath;
    }

    /// <summary>Higher for a scope fewer keys are granted: metrics (metrics, inference and admin
    /// keys), inference, training, then admin (admin keys alone). The flags' values do not say it:
    /// metrics, the weakest, is the highest bit.</summary>
    static int Strictness(ApiKeyScopes scope) => scope switch
    {
        ApiKeyScopes.Metrics => 0,
        ApiKeyScopes.Inference => 1,
        ApiKeyScopes.Training => 2,
        _ => 3,
    };

    public static ApiKeyScopes ScopeForPath(string path)
    {
        foreach (var (prefix, scope) in Rules)
            if (path.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && (path.Length == prefix.Length || path[prefix.Length] == '/'))
                return scope;
        return ApiKeyScopes.Inference;
    }

    /// <summary>Declares the scope an endpoint or group needs, overriding the path rules.</summary>
    public static TBuilder RequireStratusScope<TBuilder>(this TBuilder builder, ApiKeyScopes scope) where TBuilder : IEndpointConventionBuilder
    {
        builder.WithMetadata(new StratusScopeMetadata(scope));
        return builder;
    }
}
