// GET /health and GET /ready: 200 while every model can serve, a 503 saying which cannot and why
// once one's engine has stopped or fails every model call (InferenceEngine.CheckHealthAsync), as
// vLLM's, TGI's and SGLang's /health answer. While the models load, /health (liveness: the
// process is alive) answers 200 and /ready (readiness) 503, as Kubernetes' probes expect; /ready
// also while no model is loaded. For load balancers and orchestrators: /health needs no key.
// Their 503s are answered, not thrown: ErrorMiddleware counts what it catches in
// stratus_requests_total, and a probe is not a request of the API (one every few seconds while
// the models load added to the rejected requests an operator alerts on).
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Endpoints;

public static class HealthEndpoints
{
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", async (ModelRegistry registry, CancellationToken cancellation) =>
            await registry.CheckHealthAsync(cancellation) is { } reason ? Unavailable(reason, "unhealthy") : Results.Text("ok"));
        app.MapGet("/ready", async (ModelRegistry registry, CancellationToken cancellation) =>
        {
            if (registry.IsLoading) return Unavailable("the models are loading", "not_ready");
            if (registry.All.Count == 0) return Unavailable("no model is loaded", "not_ready");
            return await registry.CheckHealthAsync(cancellation) is { } reason ? Unavailable(reason, "not_ready") : Results.Text("ready");
        });
        return app;
    }

    static IResult Unavailable(string reason, string code) =>
        new OpenAIErrorResult(new ApiException(503, $"The server cannot serve: {reason}.", code: code) { RetryAfterSeconds = 5 });
}
