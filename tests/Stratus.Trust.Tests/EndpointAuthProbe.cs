// A reusable check that every mapped endpoint refuses requests without a valid API key. It
// enumerates the application's EndpointDataSource, turns each route pattern into a concrete
// path, and sends every declared method with no key, a garbage bearer token, a well-formed
// but unknown key, and a garbage api-key header. Point it at any app wired with
// UseStratusTrust (the real server included): pass its services and a client for its address.
using System.Net;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;
using Stratus.Platform;
using Stratus.Server.Trust;

namespace Stratus.Trust.Tests;

public static class EndpointAuthProbe
{
    /// <summary>One probe's outcome.</summary>
    public sealed record Probe(string Method, string Path, string Credential, HttpStatusCode Status);

    /// <summary>Probes every endpoint; returns all probes and the ones that were not refused
    /// with 401 (what TrustRoutes.IsAnonymous lets in is expected to answer without a key).</summary>
    public static async Task<(IReadOnlyList<Probe> All, IReadOnlyList<Probe> Unprotected)> RunAsync(IServiceProvider services, HttpClient client, CancellationToken cancellationToken = default)
    {
        var unknownKey = ApiKeyFormat.Generate().Key;
        (string Name, Action<HttpRequestMessage> Apply)[] credentials =
        [
            ("none", _ => { }),
            ("bearer garbage", r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer not-a-key")),
            ("unknown well-formed key", r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + unknownKey)),
            ("api-key garbage", r => r.Headers.TryAddWithoutValidation("api-key", "sk-garbage")),
        ];
        var all = new List<Probe>();
        var unprotected = new List<Probe>();
        foreach (var endpoint in services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            var path = ConcretePath(endpoint.RoutePattern);
            var methods = endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["GET"];
            foreach (var method in methods)
                foreach (var (name, apply) in credentials)
                {
                    using var request = new HttpRequestMessage(new HttpMethod(method), path);
                    apply(request);
                    using var response = await client.SendAsync(request, cancellationToken);
                    var probe = new Probe(method, path, name, response.StatusCode);
                    all.Add(probe);
                    var anonymous = TrustRoutes.IsAnonymous(method, path);
                    if (!anonymous && response.StatusCode != HttpStatusCode.Unauthorized) unprotected.Add(probe);
                }
        }
        return (all, unprotected);
    }

    /// <summary>"/v1/admin/keys/{nameOrId}/limits" → "/v1/admin/keys/probe/limits".</summary>
    public static string ConcretePath(RoutePattern pattern)
    {
        var segments = pattern.PathSegments.Select(segment => string.Concat(segment.Parts.Select(part => part switch
        {
            RoutePatternLiteralPart literal => literal.Content,
            RoutePatternSeparatorPart separator => separator.Content,
            RoutePatternParameterPart parameter => parameter.ParameterPolicies.Any(p => p.Content is "int" or "long") ? "1" : "probe",
            _ => "probe",
        })));
        return "/" + string.Join("/", segments);
    }
}
