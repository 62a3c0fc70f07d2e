// GET /api/serving: the serving figures /metrics exports, as JSON (ServingMetrics.Snapshot), for
// the dashboard, which would otherwise parse Prometheus text in the browser. Admin scope: it
// names the models, their devices and every request's outcome.
using Stratus.Platform;
using Stratus.Server.Api;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;

namespace Stratus.Server.Endpoints;

public static class ServingEndpoints
{
    public const string Path = "/api/serving";

    public static IEndpointRouteBuilder MapServing(this IEndpointRouteBuilder app)
    {
        app.MapGet(Path, (HttpContext http, ServingMetrics metrics) =>
            http.Response.WriteAsJsonAsync(metrics.Snapshot(), OpenAiJson.Options, http.RequestAborted)).RequireStratusScope(ApiKeyScopes.Admin);
        return app;
    }
}
