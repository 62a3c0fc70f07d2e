// GET /health and GET /ready: 200 while every model can serve, a 503 saying which cannot and why
// once one's engine has stopped or fails every model call (InferenceEngine.CheckHealthAsync), as
// vLLM's, TGI's and SGLang's /health answer. While the models load, /health (liveness: the
// process is alive) answers 200 and /ready (readiness) 503, as Kubernetes' probes expect; /ready
// also while no model is loaded. For load balancers and orchestrators: /health needs no key.
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Endpoints;

public static class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", async (ModelRegistry registry, CancellationToken cancellation) =>
            await registry.CheckHealthAsync(cancellation) is { } reason ? throw Unavailable(reason, "unhealthy") : Results.Text("ok"));
        app.MapGet("/ready", async (ModelRegistry registry, CancellationToken cancellation) =>
        {
            if (registry.IsLoading) throw Unavailable("the models are loading", "not_ready");
            if (registry.All.Count == 0) throw Unavailable("no model is loaded", "not_ready");
            return await registry.CheckHealthAsync(cancellation) is { } reason ? throw Unavailable(reason, "not_ready") : Results.Text("ready");
        });
        return app;
    }

    static ApiException Unavailable(string reason, string code) =>
        new(503, $"The server cannot serve: {reason}.", code: code) { RetryAfterSeconds = 5 };
}
