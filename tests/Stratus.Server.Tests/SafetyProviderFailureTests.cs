// A content-safety provider that fails (an external moderation service down) stops the request
// as the server's 503 content_filter_unavailable, before anything it did not check is sent: a
// prompt, a whole completion, and a stream, which ends with the error event having sent no text.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Server.Tests;

/// <summary>A moderation service that is down for prompts and times out (its HttpClient's own
/// timeout, a cancellation that is not the request's) for completions.</summary>
sealed class FailingModeration(ContentDirection failing) : IContentSafetyProvider
{
    public string Name => "openai_moderation";
    public int StreamingWindow => 0;

    public ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken) =>
        direction != failing ? ValueTask.FromResult<IReadOnlyList<CategoryResult>>([])
        : direction == ContentDirection.Prompt
            ? throw new HttpRequestException("Moderation provider http://moderation.local/v1/moderations answered 502: Bad Gateway", null, HttpStatusCode.BadGateway)
            : throw new TaskCanceledException("The request was canceled due to the configured HttpClient.Timeout of 100 seconds elapsing.", new TimeoutException());
}

public sealed class PromptModerationDownServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { ExtraSafetyProviders = [new FailingModeration(ContentDirection.Prompt)] };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class CompletionModerationDownServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { ExtraSafetyProviders = [new FailingModeration(ContentDirection.Completion)] };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class SafetyProviderFailureTests(PromptModerationDownServer prompts, CompletionModerationDownServer completions)
    : IClassFixture<PromptModerationDownServer>, IClassFixture<CompletionModerationDownServer>
{
    static object Completion(bool stream) => new { model = TinyModelServer.ModelName, prompt = "Hello there", max_tokens = 40, temperature = 1, seed = 3, stream };

    static async Task AssertUnavailable(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("content_filter_unavailable", (string)error["code"]!);
        Assert.Contains("openai_moderation", (string)error["message"]!);
        Assert.DoesNotContain("moderation.local", (string)error["message"]!);
        Assert.Equal("5", Assert.Single(response.Headers.GetValues("Retry-After")));
    }

    [Fact]
    public async Task A_prompt_the_provider_cannot_check_is_a_503()
    {
        using var response = await prompts.Server.Http.PostAsJsonAsync("/v1/completions", Completion(stream: false));
        await AssertUnavailable(response);
        using var moderation = await prompts.Server.Http.PostAsJsonAsync("/v1/moderations", new { input = "Hello there", model = TinyModelServer.ModelName });
        await AssertUnavailable(moderation);
    }

    [Fact]
    public async Task A_completion_the_provider_cannot_check_is_a_503_and_a_stream_sends_none_of_it()
    {
        using var whole = await completions.Server.Http.PostAsJsonAsync("/v1/completions", Completion(stream: false));
        await AssertUnavailable(whole);

        using var streamed = await completions.Server.Http.PostAsJsonAsync("/v1/completions", Completion(stream: true));
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e["data: ".Length..]).Where(d => d != "[DONE]").Select(d => JsonNode.Parse(d)!).ToList();
        var text = string.Concat(events.SelectMany(e => e["choices"]?.AsArray() ?? []).Select(c => (string?)c!["text"] ?? ""));
        Assert.Equal("", text);
        Assert.Equal("content_filter_unavailable", (string)events[^1]["error"]!["code"]!);
    }
}
