// A request whose model step fails gets OpenAI's error shape with a 503 (a retry may succeed),
// streamed or not, and fails whole however many sequences it has; the server stays ready, and
// stops being so only while every call of a model fails. /metrics counts such requests and shows
// the decode batch the device fits.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Server.Hosting;
using Stratus.Tests.Inference;
using Stratus.Tokenization;
using TorchSharp;

namespace Stratus.Server.Tests;

/// <summary>The tiny server with one more model, "failing": its prefills of a prompt holding '#'
/// fail, and so do its single-row decode steps at position <see cref="DecodeFailsAt"/>, and the
/// calls <see cref="Broken"/> and <see cref="DecodeRowsThatFit"/> say run out of memory.</summary>
public sealed class FailingModelServer : IAsyncLifetime
{
    public const string ModelName = "failing";
    public const int DecodeFailsAt = 20;

    public TinyModelServer Server { get; } = new() { ConfigureServices = services => services.AddSingleton<IGenerationFilter, StuckChoiceFilter>() };
    public InferenceEngine Engine { get; private set; } = null!;

    volatile bool broken;
    volatile int decodeRowsThatFit;

    /// <summary>While set, every call fails but one token at position 0, the probe's: a model that
    /// runs the probe but fails every real call.</summary>
    public bool Broken { get => broken; set => broken = value; }
    /// <summary>Decode calls over more rows than this run out of memory; 0: none do.</summary>
    public int DecodeRowsThatFit { get => decodeRowsThatFit; set => decodeRowsThatFit = value; }

    public async Task InitializeAsync()
    {
        await Server.InitializeAsync();
        var tokenizer = CharTokenizer.FromCorpus(TinyModelServer.Corpus);
        // Seeded as TinyModelServer.SaveGpt: the same weights, so the same tokens, every run.
        torch.manual_seed(11);
        var model = new Gpt(new ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 128, NLayer = 2, NHead = 2, NEmbd = 32, Bias = false });
        var hash = tokenizer.Encode("#")[0];
        // A prefill starts at position 0 (these prompts are too short to take cached blocks); decode steps never do.
        _ = new FailingForward(model, (tokens, positions) => positions.Contains(0) && tokens.Contains(hash) || positions is [DecodeFailsAt]
            || broken && positions is not [0]
            || decodeRowsThatFit > 0 && !positions.Contains(0) && positions.Length > decodeRowsThatFit);
        // Decode steps through libtorch's layers, which FailingForward hooks.
        Engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch });
        // Before any request: the registry is only read while serving.
        Server.Server.Models.Add(new ServedModel(ModelName, Engine, ChatTemplate.For(tokenizer)));
    }

    public Task DisposeAsync() => Server.DisposeAsync();
}

/// <summary>For requests from user "stuck-choice": choice 1 fails at its first piece while
/// choice 0 waits until the request is cancelled.</summary>
public sealed class StuckChoiceFilter : IGenerationFilter
{
    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) =>
        ValueTask.FromResult<IGenerationScope?>(context.User == "stuck-choice" ? new Scope() : null);

    sealed class Scope : IGenerationScope
    {
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => null;

        public async ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation)
        {
            if (choice == 1) throw new InvalidOperationException("the filter failed");
            await Task.Delay(Timeout.Infinite, cancellation);
            return new FilteredText(text);
        }

        public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) => ValueTask.FromResult(true);
        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation) => ValueTask.FromResult(ChoiceEnd.None);
        public ValueTask CompleteAsync(int promptTokens, int completionTokens) => ValueTask.CompletedTask;
    }
}

public sealed class StepFailureTests(FailingModelServer fixture) : IClassFixture<FailingModelServer>
{
    HttpClient Http => fixture.Server.Http;

    static object Completion(object prompt, int maxTokens, int n = 1) =>
        new { model = FailingModelServer.ModelName, prompt, max_tokens = maxTokens, temperature = 0, n, ignore_eos = true };

    static void AssertStepFailed(JsonNode? error)
    {
        Assert.Equal("server_error", (string?)error!["type"]);
        Assert.Equal("model_step_failed", (string?)error["code"]);
        Assert.Equal($"the model step failed: {FailingForward.OutOfMemoryDescribed}; a retry may succeed", (string?)error["message"]);
    }

    /// <summary>The failing model's value of <paramref name="metric"/> at /metrics; null when it has none.</summary>
    async Task<double?> Metric(string metric)
    {
        await Task.Delay(400); // past the exporter's 300 ms scrape cache
        var line = (await Http.GetStringAsync("/metrics")).Split('\n')
            .FirstOrDefault(l => l.StartsWith(metric + "{", StringComparison.Ordinal) && l.Contains($"model=\"{FailingModelServer.ModelName}\""));
        return line is null ? null : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The engine drops a failed request's other sequences at its next step, which may
    /// come just after the client has its answer.</summary>
    async Task AssertBlocksFreed()
    {
        for (var wait = 0; fixture.Engine.KvBlocksUsed > 0 && wait < 600; wait++) await Task.Delay(50);
        Assert.Equal(0, fixture.Engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_request_whose_model_step_fails_gets_a_503_to_retry_and_the_server_stays_ready()
    {
        var failedAlone = await Metric("stratus_requests_failed_alone_total");
        Assert.NotNull(failedAlone);
        var response = await Http.PostAsJsonAsync("/v1/completions", Completion("ab#cd", 5));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("1", response.Headers.GetValues("Retry-After").Single());
        AssertStepFailed(JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]);
        // An operator alerting on errors sees it: not counted with the refusals of a busy server.
        var metrics = await Http.GetStringAsync("/metrics");
        Assert.Contains(metrics.Split('\n'), l => l.StartsWith("stratus_requests_total{", StringComparison.Ordinal) && l.Contains($"model=\"{FailingModelServer.ModelName}\"") && l.Contains("outcome=\"error\""));
        Assert.DoesNotContain(metrics.Split('\n'), l => l.StartsWith("stratus_requests_total{", StringComparison.Ordinal) && l.Contains($"model=\"{FailingModelServer.ModelName}\"") && l.Contains("outcome=\"rejected\""));
        // And as a request whose own model call failed.
        Assert.Equal(failedAlone + 1, await Metric("stratus_requests_failed_alone_total"));

        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync("/ready")).StatusCode);
        var next = await Http.PostAsJsonAsync("/v1/completions", Completion("abcd", 5));
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        Assert.Equal(5, (int)JsonNode.Parse(await next.Content.ReadAsStringAsync())!["usage"]!["completion_tokens"]!);
        await AssertBlocksFreed();
    }

    [Fact]
    public async Task A_request_whose_model_step_fails_is_counted_once_as_an_error()
    {
        // Read at the meter: /metrics caches its answer for a moment.
        var outcomes = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == ServingMetrics.MeterName && instrument.Name == "stratus.requests") l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            string? model = null, outcome = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "model") model = tag.Value as string;
                else if (tag.Key == "outcome") outcome = tag.Value as string;
            }
            if (model == FailingModelServer.ModelName) outcomes.Enqueue(outcome!);
        });
        listener.Start();
        using var response = await Http.PostAsJsonAsync("/v1/completions", Completion("ab#cd", 5));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        // Counted by the error middleware only: the run's disposal counted it as cancelled too.
        Assert.Equal(["error"], outcomes);
    }

    /// <summary>The failing model's metered requests and tokens so far.</summary>
    async Task<(long Requests, long Tokens)> Used()
    {
        var usage = Platform.PlatformStores.Open(fixture.Server.DataDir).Usage;
        var records = (await usage.QueryAsync(Platform.UsageQuery.Days(null, null, null, FailingModelServer.ModelName))).ToList();
        return (records.Sum(r => r.Requests), records.Sum(r => r.TotalTokens));
    }

    [Fact]
    public async Task A_request_whose_prefill_fails_is_no_usage_and_gives_back_its_token_charge()
    {
        var before = await Used();
        using var response = await Http.PostAsJsonAsync("/v1/completions", Completion("ab#cd", 5));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        // The model read none of the prompt: the client is told to retry, and OpenAI's SDKs do,
        // each retry charged again where it is metered.
        Assert.Equal(before, await Used());
    }

    [Fact]
    public async Task Ten_bad_requests_in_a_row_fail_alone_the_server_stays_ready_and_only_the_good_request_after_them_is_usage()
    {
        // Five in a row stopped the engine for every user.
        var before = await Used();
        for (var i = 0; i < 10; i++)
        {
            using var bad = await Http.PostAsJsonAsync("/v1/completions", Completion("ab#cd", 5));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, bad.StatusCode);
            AssertStepFailed(JsonNode.Parse(await bad.Content.ReadAsStringAsync())!["error"]);
        }
        Assert.Equal(before, await Used());
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync("/ready")).StatusCode);
        // No call has run since the last failed: the engine's small request runs, and the model is healthy.
        using (var anonymous = fixture.Server.AnonymousClient())
            Assert.Equal("ok", await anonymous.GetStringAsync("/health"));

        using var good = await Http.PostAsJsonAsync("/v1/completions", Completion("abcd", 5));
        Assert.Equal(HttpStatusCode.OK, good.StatusCode);
        Assert.Equal(9, (int)JsonNode.Parse(await good.Content.ReadAsStringAsync())!["usage"]!["total_tokens"]!);
        // Recorded as the request ends, which may be just after the client has its answer.
        var after = await Used();
        for (var wait = 0; after == before && wait < 600; wait++)
        {
            await Task.Delay(50);
            after = await Used();
        }
        Assert.Equal((before.Requests + 1, before.Tokens + 9), after);
        Assert.True(fixture.Engine.IsHealthy);
        await AssertBlocksFreed();
    }

    [Fact]
    public async Task A_streamed_request_whose_decode_step_fails_after_its_first_chunks_ends_with_an_error_event()
    {
        // The prefill chooses a token, which sends the echo (the content filter holds the
        // generated text back); decode steps at positions 16-19 go on, and the one at 20 fails.
        const string prompt = "Once upon a time";
        var response = await Http.PostAsJsonAsync("/v1/completions", new
        {
            model = FailingModelServer.ModelName, prompt, max_tokens = 10, temperature = 0, stream = true, echo = true, ignore_eos = true,
        });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).ToList();
        Assert.Equal("data: [DONE]", events[^1]);
        var bodies = events.SkipLast(1).Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Contains(bodies, b => b["choices"] is JsonArray { Count: 1 } choices && (string?)choices[0]!["text"] == prompt);
        Assert.All(bodies.SkipLast(1), b => Assert.Null(b["error"]));
        AssertStepFailed(bodies[^1]["error"]);
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync("/ready")).StatusCode);
        await AssertBlocksFreed();
    }

    [Fact]
    public async Task When_one_prompt_of_a_request_fails_its_step_the_whole_request_fails()
    {
        var response = await Http.PostAsJsonAsync("/v1/completions", Completion(new[] { "ab#cd", "hello world" }, 5, n: 2));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        AssertStepFailed(JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]);
        await AssertBlocksFreed();
        Assert.True(fixture.Engine.IsHealthy);
    }

    [Fact]
    public async Task A_choice_that_fails_fails_its_request_at_once_and_cancels_the_others()
    {
        // Choice 0 would wait for ever: the request ends when choice 1 fails, or not at all.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var response = await Http.PostAsJsonAsync("/v1/completions",
            new { model = TinyModelServer.ModelName, prompt = "hello", max_tokens = 5, n = 2, user = "stuck-choice" }, timeout.Token);
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        var model = fixture.Server.Model.Engine;
        for (var wait = 0; model.KvBlocksUsed > 0 && wait < 600; wait++) await Task.Delay(50);
        Assert.Equal(0, model.KvBlocksUsed);
    }

    [Fact]
    public async Task While_every_call_of_a_model_fails_health_and_ready_answer_503_naming_it_and_why_until_a_call_runs()
    {
        using var anonymous = fixture.Server.AnonymousClient();
        fixture.Broken = true;
        try
        {
            using (var failed = await Http.PostAsJsonAsync("/v1/completions", Completion("abcd", 5)))
                AssertStepFailed(JsonNode.Parse(await failed.Content.ReadAsStringAsync())!["error"]);
            // Load balancers probe /health without a key; /ready takes one.
            foreach (var (client, path, code) in new[] { (anonymous, "/health", "unhealthy"), (Http, "/ready", "not_ready") })
            {
                using var response = await client.GetAsync(path);
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Equal("5", response.Headers.GetValues("Retry-After").Single());
                var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
                Assert.Equal(code, (string?)error["code"]);
                Assert.Equal($"The server cannot serve: model '{FailingModelServer.ModelName}': every model call fails, a small health-check request's too; the last with: {FailingForward.OutOfMemoryDescribed}.", (string?)error["message"]);
            }
        }
        finally
        {
            fixture.Broken = false;
        }
        // The engine ran on: the first request answered ends the streak.
        using var good = await Http.PostAsJsonAsync("/v1/completions", Completion("abcd", 5));
        Assert.Equal(HttpStatusCode.OK, good.StatusCode);
        Assert.Equal("ok", await anonymous.GetStringAsync("/health"));
        Assert.Equal("ready", await Http.GetStringAsync("/ready"));
        await AssertBlocksFreed();
    }

    [Fact]
    public async Task The_decode_batch_the_device_fits_shows_in_metrics_once_a_decode_call_ran_out_of_memory()
    {
        Assert.Equal(fixture.Engine.Options.MaxBatchSize, await Metric("stratus_max_decode_batch_size"));
        fixture.DecodeRowsThatFit = 2;
        try
        {
            // Four choices of a short prompt: prefilled in one call, then decoded in one of four
            // rows, which runs out of memory, and again in halves, which run.
            using var response = await Http.PostAsJsonAsync("/v1/completions", Completion("abc", 5, n: 4));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(4, JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]!.AsArray().Count);
        }
        finally
        {
            fixture.DecodeRowsThatFit = 0;
        }
        Assert.Equal(2, await Metric("stratus_max_decode_batch_size"));
        await AssertBlocksFreed();
    }
}
