// A content-safety provider that fails (an external moderation service down) stops the request
// as the server's 503 content_filter_unavailable, before anything it did not check is sent: a
// prompt, a whole completion, and a stream, which ends with the error event (and [DONE]) having
// sent only what was checked.
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

/// <summary>A moderation service that goes down in the middle of a stream: it answers the
/// prompt and the first two checks of the completion.</summary>
sealed class ModerationDownMidStream : IContentSafetyProvider
{
    int completionChecks;
    public string Name => "openai_moderation";
    public int StreamingWindow => 0;

    public ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken) =>
        direction == ContentDirection.Completion && Interlocked.Increment(ref completionChecks) > 2
            ? throw new HttpRequestException("Moderation provider answered 502: Bad Gateway")
            : ValueTask.FromResult<IReadOnlyList<CategoryResult>>([]);
}

public sealed class ModerationDownMidStreamServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { ExtraSafetyProviders = [new ModerationDownMidStream()] };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
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

public sealed class SafetyProviderFailureTests(PromptModerationDownServer prompts, CompletionModerationDownServer completions, ModerationDownMidStreamServer midStream)
    : IClassFixture<PromptModerationDownServer>, IClassFixture<CompletionModerationDownServer>, IClassFixture<ModerationDownMidStreamServer>
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

    [Fact]
    public async Task A_stream_the_provider_fails_in_the_middle_of_ends_with_the_error_event_and_done()
    {
        var body = new { model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = "hi" } }, max_tokens = 120, temperature = 1, seed = 1, n = 2,
            stream = true, stream_options = new { include_usage = true } };
        using var streamed = await midStream.Server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).ToList();
        Assert.Equal("[DONE]", events[^1]);
        Assert.Equal("content_filter_unavailable", (string)JsonNode.Parse(events[^2])!["error"]!["code"]!);
        // Checked text went out before it; nothing after it, not the usage chunk either.
        var chunks = events.SkipLast(2).Select(e => JsonNode.Parse(e)!).ToList();
        Assert.Contains(chunks, c => ((string?)c["choices"]![0]!["delta"]!["content"])?.Length > 0);
        Assert.All(chunks, c => Assert.Single(c["choices"]!.AsArray()));
    }
}
