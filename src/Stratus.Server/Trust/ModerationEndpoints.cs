// POST /v1/moderations in OpenAI's schema (results with flagged, categories, category_scores),
// answered by the same safety pipeline that guards completions. The request's model names the
// deployment whose policy applies; without one, TrustOptions.ModerationDeployment.
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public static class ModerationEndpoints
{
    /// <summary>More inputs than this in one request is refused, so one request cannot occupy
    /// the pipeline for long.</summary>
    public const int MaxInputs = 256;

    public static RouteHandlerBuilder MapModerations(this IEndpointRouteBuilder endpoints) =>
        endpoints.MapPost("/v1/moderations", async (HttpContext http, CancellationToken cancellationToken) =>
        {
            var trust = http.RequestServices.GetRequiredService<StratusTrust>();
            var request = await TrustJson.ReadBodyAsync<ModerationRequest>(http.Request, cancellationToken);
            var inputs = request.Inputs();
            if (inputs.Count > MaxInputs) throw new TrustUserException($"'input' has {inputs.Count} entries; send at most {MaxInputs} per request.");
            var deployment = string.IsNullOrWhiteSpace(request.Model) ? trust.Options.ModerationDeployment : request.Model;
            var pipeline = await trust.Pipelines.GetAsync(deployment, cancellationToken);
            var results = new List<ModerationResult>(inputs.Count);
            foreach (var input in inputs)
                results.Add((await pipeline.AnalyzeAsync(input, ContentDirection.Prompt, cancellationToken)).ToModerationResult());
            return Results.Json(new ModerationResponse($"modr-{Guid.NewGuid():N}", deployment, results), TrustJson.Options);
        }).RequireStratusScope(ApiKeyScopes.Inference);
}
