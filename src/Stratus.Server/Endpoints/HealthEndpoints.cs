// GET /health and GET /ready: 200 while every model can serve, a 503 saying which cannot and why
// once one's engine has stopped or fails every model call (InferenceEngine.CheckHealthAsync), as
// vLLM's, TGI's and SGLang's /health answer. While the models load, /health (liveness: the
// process is alive) answers 200 and /ready (readiness) 503, as Kubernetes' probes expect; /ready
// also while no model is loaded, and from the moment the server begins stopping (SIGTERM, Ctrl+C)
// `draining`, so that a balancer whose probe got through takes the server out of rotation while
// /health still says the process lives. /ready also asks the platform database: while it cannot
// be used (a PostgreSQL server stopped or unreachable, a damaged stratus.db) requests fail with 503
// storage_unavailable, so /ready answers 503 `not_ready` (with keys, the probe's own key read fails
// first, as storage_unavailable; with --insecure-no-auth, nothing else would say it), and 200 again
// once the database answers. /health stays 200: a restart brings no database back.
// For load balancers and orchestrators: /health needs no key.
// Their 503s are answered, not thrown: ErrorMiddleware counts what it catches in
// stratus_requests_total, and a probe is not a request of the API (one every few seconds while
// the models load added to the rejected requests an operator alerts on).
using Microsoft.Extensions.Logging;
using Stratus.Server.Api;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;

namespace Stratus.Server.Endpoints;

public static class HealthEndpoints
{
    const string ReadyPath = "/ready";

    /// <summary>Whether <paramref name="path"/> is the readiness probe's (as routing matches it: any
    /// case, a trailing slash), which counts apart from the API's requests (StratusTrust's storage failures).</summary>
    internal static bool IsReadinessProbe(PathString path) => string.Equals(path.Value?.TrimEnd('/'), ReadyPath, StringComparison.OrdinalIgnoreCase);

    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", async (ServedModels servedModels, CancellationToken cancellation) =>
            await servedModels.CheckHealthAsync(cancellation) is { } reason ? Unavailable(reason, "unhealthy") : Results.Text("ok"));
        app.MapGet(ReadyPath, async (HttpContext http, ServedModels servedModels, ServerShutdown shutdown, StratusTrust trust, ILoggerFactory loggers, CancellationToken cancellation) =>
        {
            var reason = servedModels.IsLoading ? "the models are loading"
                : servedModels.All.Count == 0 ? "no model is loaded"
                : await servedModels.CheckHealthAsync(cancellation) ?? await DatabaseProblemAsync(http, trust, loggers, cancellation);
            // Asked last: a probe whose health check was running as the server began stopping says so too.
            if (shutdown.HasBegun) return Unavailable("it is shutting down", "draining");
            return reason is null ? Results.Text("ready") : Unavailable(reason, "not_ready");
        });
        return app;
    }

    /// <summary>Why the platform database cannot be used, null where it answers. Worded as
    /// storage_unavailable words it, without the database's path or host; the server's log says
    /// which database and why, as it does for the requests it fails.</summary>
    static async Task<string?> DatabaseProblemAsync(HttpContext http, StratusTrust trust, ILoggerFactory loggers, CancellationToken cancellation)
    {
        var logger = loggers.CreateLogger(typeof(HealthEndpoints).FullName!);
        if (await trust.Database.ProblemAsync(cancellation) is not { } problem)
        {
            // It answered a read: a balancer's probes say so once the database is back, before (or
            // without) any request that writes, as the server is out of rotation until they pass.
            trust.LogStorageAnswers(logger, wrote: false);
            return null;
        }
        trust.LogStorageFailure(logger, problem, http.Request.Path, http.TraceIdentifier);
        return "its database of keys, usage and safety settings cannot be used (the server's log says why); it is ready again once the database answers";
    }

    static IResult Unavailable(string reason, string code) =>
        new OpenAIErrorResult(new ApiException(503, $"The server cannot serve: {reason}.", code: code) { RetryAfterSeconds = 5 });
}
