// GET /health (the process answers) and GET /ready (every model is loaded and its engine
// running), for load balancers and orchestrators.
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Endpoints;

public static class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", () => Results.Text("ok"));
        app.MapGet("/ready", (ModelRegistry registry) => registry.AllHealthy
            ? Results.Text("ready")
            : throw new ApiException(503, "Models are not loaded or an engine has stopped.", code: "not_ready") { RetryAfterSeconds = 5 });
        return app;
    }
}
