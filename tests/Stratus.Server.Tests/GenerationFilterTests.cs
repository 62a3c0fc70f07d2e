// The seam for policy (quotas, content safety): a filter can refuse a request before the
// engine sees it and rewrite generated text on its way out, streamed or not; it runs after the
// trust layer's own filter.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

/// <summary>Refuses users named "blocked", masks every 'e' in the output and lists no
/// alternative with an 'e'.</summary>
public sealed class MaskingFilter : IGenerationFilter
{
    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) =>
        context.User == "blocked" ? throw new ApiException(403, "This user may not use the model.", "user", "forbidden")
            : ValueTask.FromResult<IGenerationScope?>(new Scope());

    sealed class Scope : IGenerationScope
    {
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => null;
        public ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation) => ValueTask.FromResult(new FilteredText(text.Replace('e', '*')));
        public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) =>
            ValueTask.FromResult(!alternative.Contains('e'));
        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation) => ValueTask.FromResult(ChoiceEnd.None);
        public ValueTask CompleteAsync(int promptTokens, int completionTokens) => ValueTask.CompletedTask;
    }
}

public sealed class FilteredModelServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { ConfigureServices = services => services.AddSingleton<IGenerationFilter, MaskingFilter>() };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

/// <summary>A tiny model's server with one filter instance the tests can inspect.</summary>
public sealed class FilterServer<TFilter> : IAsyncLifetime where TFilter : class, IGenerationFilter, new()
{
    public TFilter Filter { get; } = new();
    public TinyModelServer Server { get; }
    public FilterServer() => Server = new() { ConfigureServices = services => services.AddSingleton<IGenerationFilter>(Filter) };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class GenerationFilterTests(FilteredModelServer fixture) : IClassFixture<FilteredModelServer>
{
    [Fact]
    public async Task Filters_refuse_requests_and_rewrite_output()
    {
        var http = fixture.Server.Http;
        using var refused = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "tiny", user = "blocked", messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("forbidden", (string)JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!);

        var body = new { model = "tiny", prompt = "eeee", max_tokens = 60, temperature = 1.5, seed = 3, logit_bias = new Dictionary<string, int> { ["70"] = 5 } };
        using var plain = await http.PostAsJsonAsync("/v1/completions", body);
        var text = (string)JsonNode.Parse(await plain.Content.ReadAsStringAsync())!["choices"]![0]!["text"]!;
        Assert.DoesNotContain('e', text);
        Assert.Contains('*', text);
    }

    [Fact]
    public async Task Logprobs_never_spell_text_a_filter_rewrote()
    {
        var http = fixture.Server.Http;
        var tokenizer = fixture.Server.Model.Tokenizer;
        object Body(char forced, bool stream) => new
        {
            model = "tiny", prompt = "ab", max_tokens = 4, logprobs = 1, stream,
            logit_bias = new Dictionary<string, int> { [tokenizer.Encode(forced.ToString())[0].ToString()] = 100 },
        };
        // Text a filter passes as it was keeps its logprobs; 'eeee' reaches the client as '****'.
        var untouched = JsonNode.Parse(await (await http.PostAsJsonAsync("/v1/completions", Body('a', stream: false))).Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.Equal("aaaa", (string)untouched["text"]!);
        Assert.Equal(4, untouched["logprobs"]!["tokens"]!.AsArray().Count);
        var masked = JsonNode.Parse(await (await http.PostAsJsonAsync("/v1/completions", Body('e', stream: false))).Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.Equal("****", (string)masked["text"]!);
        Assert.Null(masked["logprobs"]);
        var streamed = await (await http.PostAsJsonAsync("/v1/completions", Body('e', stream: true))).Content.ReadAsStringAsync();
        Assert.Contains("\"text\":\"*", streamed);
        Assert.DoesNotContain("\"tokens\"", streamed);
    }

    [Fact]
    public async Task Filters_judge_the_alternatives_logprobs_list()
    {
        var tokenizer = fixture.Server.Model.Tokenizer;
        // 'a' is written, 'e' is the runner-up at every position: a filter that keeps 'e' out of
        // the text keeps it out of the alternatives.
        var body = new
        {
            model = "tiny", prompt = "ab", max_tokens = 3, logprobs = 2,
            logit_bias = new Dictionary<string, int> { [tokenizer.Encode("a")[0].ToString()] = 100, [tokenizer.Encode("e")[0].ToString()] = 50 },
        };
        var choice = JsonNode.Parse(await (await fixture.Server.Http.PostAsJsonAsync("/v1/completions", body)).Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.Equal("aaa", (string)choice["text"]!);
        Assert.All(choice["logprobs"]!["top_logprobs"]!.AsArray(), top => Assert.Equal(["a"], top!.AsObject().Select(a => a.Key)));
        Assert.Equal(3, (int)choice["content_filter_results"]!["top_logprobs"]!["removed"]!);
    }
}

public sealed class RewrittenPromptTests
{
    [Fact]
    public void A_model_without_a_redaction_marker_s_brackets_gets_the_label_without_them()
    {
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("call me now PHONE");
        var (text, tokens) = GenerationRun.EncodeRewritten(tokenizer, "call [PHONE] now", addSpecialTokens: true);
        Assert.Equal("call PHONE now", text);
        Assert.Equal(text, tokenizer.Decode(tokens));
    }

    [Fact]
    public void A_marker_character_outside_the_BMP_is_dropped_whole_and_the_client_s_kept_whole()
    {
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("call me now PHONE😀");
        var (text, tokens) = GenerationRun.EncodeRewritten(tokenizer, "call 🔒[PHONE] 😀 now", addSpecialTokens: true);
        Assert.Equal("call PHONE 😀 now", text);
        Assert.Equal(text, tokenizer.Decode(tokens));
    }
}

/// <summary>Judges alternatives as a CPU-bound filter does, without looking at the cancellation
/// token (the safety pipeline's blocklists and PII detector do not); its first call waits until
/// the request has been cancelled.</summary>
public sealed class AbandonedAlternativesFilter : IGenerationFilter
{
    public TaskCompletionSource FirstCall { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public TaskCompletionSource Completed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public int Calls;

    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) => ValueTask.FromResult<IGenerationScope?>(new Scope(this));

    sealed class Scope(AbandonedAlternativesFilter filter) : IGenerationScope
    {
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => null;
        public ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation) => ValueTask.FromResult(new FilteredText(text));

        public async ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation)
        {
            if (Interlocked.Increment(ref filter.Calls) > 1) return true;
            filter.FirstCall.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
            return true;
        }

        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation) => ValueTask.FromResult(ChoiceEnd.None);

        public ValueTask CompleteAsync(int promptTokens, int completionTokens)
        {
            filter.Completed.TrySetResult();
            return ValueTask.CompletedTask;
        }
    }
}

public sealed class AbandonedAlternativesTests(FilterServer<AbandonedAlternativesFilter> fixture) : IClassFixture<FilterServer<AbandonedAlternativesFilter>>
{
    [Fact]
    public async Task A_cancelled_request_stops_screening_its_echoed_prompt_s_alternatives()
    {
        // 99 prompt positions with 5 alternatives each: screening them all after the client left
        // would be ~500 calls of work nobody reads.
        using var abandon = new CancellationTokenSource();
        var request = fixture.Server.Http.PostAsJsonAsync("/v1/completions",
            new { model = "tiny", prompt = new string('a', 100), max_tokens = 0, echo = true, logprobs = 5 }, abandon.Token);
        await fixture.Filter.FirstCall.Task.WaitAsync(TimeSpan.FromSeconds(30));
        abandon.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        await fixture.Filter.Completed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, fixture.Filter.Calls);
    }
}

/// <summary>Notes whether the request's end (CompleteAsync) came while one of its calls was in
/// hand or before one: choice 1's first piece is judged as a call that does not look at the
/// cancellation token (a blocklist's regexes, an audit write) ends, a second after the client left.</summary>
public sealed class SlowChoiceFilter : IGenerationFilter
{
    public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>Set by CompleteAsync: whether a call was in hand then.</summary>
    public TaskCompletionSource<bool> Completed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public volatile bool CalledAfterEnd;
    int inHand, entered;
    volatile bool ended;

    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) => ValueTask.FromResult<IGenerationScope?>(new Scope(this));

    sealed class Scope(SlowChoiceFilter filter) : IGenerationScope
    {
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => null;

        public async ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation)
        {
            Enter();
            try
            {
                if (choice == 1 && Interlocked.Exchange(ref filter.entered, 1) == 0)
                {
                    filter.Entered.TrySetResult();
                    await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
                    await Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None);
                }
                return new FilteredText(text);
            }
            finally { Interlocked.Decrement(ref filter.inHand); }
        }

        public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) => ValueTask.FromResult(true);

        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation)
        {
            Enter();
            Interlocked.Decrement(ref filter.inHand);
            return ValueTask.FromResult(ChoiceEnd.None);
        }

        public ValueTask CompleteAsync(int promptTokens, int completionTokens)
        {
            filter.ended = true;
            filter.Completed.TrySetResult(Volatile.Read(ref filter.inHand) > 0);
            return ValueTask.CompletedTask;
        }

        void Enter()
        {
            Interlocked.Increment(ref filter.inHand);
            if (filter.ended) filter.CalledAfterEnd = true;
        }
    }
}

public sealed class SlowChoiceTests(FilterServer<SlowChoiceFilter> fixture) : IClassFixture<FilterServer<SlowChoiceFilter>>
{
    /// <summary>With n &gt; 1 each choice is read on its own; a client that leaves stops the
    /// request's reader, and the filters are told the request ended (usage recorded) only once
    /// the choices' calls in hand have returned, none running beside it or after it.</summary>
    [Fact]
    public async Task A_client_that_leaves_an_n_2_request_has_its_end_told_after_the_filters_calls_in_hand()
    {
        using var abandon = new CancellationTokenSource();
        var request = fixture.Server.Http.PostAsJsonAsync("/v1/completions",
            new { model = "tiny", prompt = "abc", max_tokens = 40, n = 2, temperature = 1, seed = 1 }, abandon.Token);
        await fixture.Filter.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        abandon.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        Assert.False(await fixture.Filter.Completed.Task.WaitAsync(TimeSpan.FromSeconds(30)), "CompleteAsync ran while a choice's filter call was in hand");
        Assert.False(fixture.Filter.CalledAfterEnd);
    }
}
