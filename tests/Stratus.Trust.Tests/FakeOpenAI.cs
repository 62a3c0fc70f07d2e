// A stand-in for the Stratus inference server's OpenAI surface: the same routes (/health, /ready,
// /metrics, /v1/models, /v1/completions, /v1/chat/completions, /tokenize, /detokenize) with a
// "model" that emits canned pieces, one token each. The chat handler calls the trust hooks the
// way the real handler must, streaming included, so it doubles as the integration example.
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Stratus.Safety;
using Stratus.Server.Trust;

namespace Stratus.Trust.Tests;

/// <summary>The fake model: emits Pieces in order, at most max_tokens of them.</summary>
sealed class FakeModel
{
    public IReadOnlyList<string> Pieces { get; set; } = [.. Enumerable.Range(0, 64).Select(i => $"word{i} ")];

    public static int CountTokens(string text) => text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;

    public IReadOnlyList<string> Generate(int maxTokens) => [.. Pieces.Take(maxTokens)];
}

sealed record ChatMessage([property: JsonPropertyName("role")] string Role, [property: JsonPropertyName("content")] string Content);

sealed record ChatRequest(
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("messages")] List<ChatMessage> Messages,
    [property: JsonPropertyName("max_tokens")] int? MaxTokens,
    [property: JsonPropertyName("stream")] bool Stream);

static class FakeOpenAI
{
    public static void MapFakeOpenAI(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health", () => Results.Text("ok"));
        app.MapGet("/ready", () => Results.Text("ready"));
        app.MapGet("/metrics", () => Results.Text("stratus_requests_total 0\n"));
        app.MapGet("/v1/models", () => Results.Json(new { @object = "list", data = new[] { new { id = TrustHost.Model, @object = "model", created = 0, owned_by = "stratus" } } }));
        app.MapGet("/v1/models/{model}", (string model) => Results.Json(new { id = model, @object = "model", created = 0, owned_by = "stratus" }));
        app.MapPost("/v1/completions", () => Results.Json(new { id = "cmpl-1", @object = "text_completion", choices = Array.Empty<object>() }));
        app.MapPost("/tokenize", () => Results.Json(new { tokens = Array.Empty<int>() }));
        app.MapPost("/detokenize", () => Results.Json(new { prompt = "" }));
        app.MapPost("/v1/chat/completions", ChatAsync);
    }

    static async Task<IResult> ChatAsync(HttpContext http, RequestTrust trust, FakeModel fake, CancellationToken ct)
    {
        var request = await TrustJson.ReadBodyAsync<ChatRequest>(http.Request, ct);
        // 1. The prompt through the deployment's safety policy (400 content_filter if blocked).
        var prompt = await trust.CheckPromptAsync(request.Model, string.Join("\n", request.Messages.Select(m => m.Content)), cancellationToken: ct);
        if (!prompt.Allowed) return prompt.Refusal!;
        // 2. Token admission once the prompt is counted (429 with headers if over the key's TPM).
        var promptTokens = FakeModel.CountTokens(prompt.Text);
        var maxTokens = request.MaxTokens ?? 16;
        if (trust.Admit(promptTokens, maxTokens) is { } refusal) return refusal;

        var completionTokens = 0;
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        PromptFilterResult[]? promptFilterResults = prompt.FilterResult is { } f ? [f] : null;
        try
        {
            var pieces = fake.Generate(maxTokens);
            if (!request.Stream)
            {
                completionTokens = pieces.Count;
                // 3a. A whole completion is checked before it is sent.
                var check = await trust.CheckCompletionAsync(request.Model, string.Concat(pieces), ct);
                return Results.Json(new
                {
                    id,
                    @object = "chat.completion",
                    created = 1_700_000_000,
                    model = request.Model,
                    choices = new[]
                    {
                        new
                        {
                            index = 0,
                            message = new { role = "assistant", content = check.Text },
                            finish_reason = check.FinishReason ?? (pieces.Count == maxTokens ? "length" : "stop"),
                            content_filter_results = check.FilterResults,
                        },
                    },
                    usage = new { prompt_tokens = promptTokens, completion_tokens = completionTokens, total_tokens = promptTokens + completionTokens },
                    prompt_filter_results = promptFilterResults,
                }, TrustJson.Options);
            }

            // 3b. A streamed completion goes through a guard: only what it releases is sent.
            var guard = await trust.GuardStreamAsync(request.Model, ct);
            http.Response.ContentType = "text/event-stream";
            // The prompt's annotations ride on the first chunk, the choice's role (serving.md).
            await SendAsync(http, new
            {
                id,
                @object = "chat.completion.chunk",
                created = 1_700_000_000,
                model = request.Model,
                choices = new[] { new { index = 0, delta = new { role = "assistant", content = "" }, finish_reason = (string?)null, content_filter_results = (ContentFilterResults?)null } },
                prompt_filter_results = promptFilterResults,
            }, ct);
            foreach (var piece in pieces)
            {
                completionTokens++;
                var step = await guard.PushAsync(piece, ct);
                if (step.Text.Length > 0) await SendDeltaAsync(http, id, request.Model, step.Text, null, null, ct);
                if (step.Blocked) break;
            }
            var last = await guard.FlushAsync(ct);
            if (last.Text.Length > 0) await SendDeltaAsync(http, id, request.Model, last.Text, null, null, ct);
            await SendDeltaAsync(http, id, request.Model, null, last.FinishReason ?? "stop", last.FilterResults, ct);
            await http.Response.WriteAsync("data: [DONE]\n\n", ct);
            return Results.Empty;
        }
        finally
        {
            // 4. Correct the token charge and record usage, whatever happened.
            await trust.CompleteAsync(promptTokens, completionTokens, request.Model, CancellationToken.None);
        }
    }

    static Task SendDeltaAsync(HttpContext http, string id, string model, string? content, string? finishReason, ContentFilterResults? filter, CancellationToken ct) =>
        SendAsync(http, new
        {
            id,
            @object = "chat.completion.chunk",
            created = 1_700_000_000,
            model,
            choices = new[] { new { index = 0, delta = new { content }, finish_reason = finishReason, content_filter_results = filter } },
        }, ct);

    static async Task SendAsync(HttpContext http, object chunk, CancellationToken ct)
    {
        await http.Response.WriteAsync("data: " + System.Text.Json.JsonSerializer.Serialize(chunk, TrustJson.Options) + "\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }
}
