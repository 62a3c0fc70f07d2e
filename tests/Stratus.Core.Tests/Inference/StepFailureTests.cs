// A model call that throws (a device out of memory in one prefill or a large batch, a libtorch
// error for one input) is run again in halves: it fails only the requests whose own call fails,
// the others go on with the tokens they would have had, nothing the call half wrote is reused,
// only a model that cannot run stops the engine, and one whose every call fails is unhealthy.
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;

namespace Stratus.Tests.Inference;

public sealed class StepFailureTests
{
    static GenerationRequest Greedy(ITokenizer tokenizer, string prompt, int maxTokens) => InferenceEngineTests.Greedy(tokenizer, prompt, maxTokens);

    static async Task<List<GeneratedToken>> Read(Sequence sequence)
    {
        var tokens = new List<GeneratedToken>();
        await foreach (var token in sequence.Output.ReadAllAsync()) tokens.Add(token);
        return tokens;
    }

    /// <summary>The tokens each request gets run alone on an engine of its own, without failures:
    /// what a request must get when others fail beside it.</summary>
    static async Task<List<int[]>> TokensAlone(CausalLanguageModel model, ITokenizer tokenizer, EngineOptions options, GenerationRequest[] requests)
    {
        var alone = new List<int[]>();
        using var fresh = new InferenceEngine(model, tokenizer, options);
        foreach (var request in requests) alone.Add([.. (await Read(fresh.Submit(request))).Select(t => t.Token)]);
        return alone;
    }

    /// <summary>Runs <paramref name="requests"/> alone, then queued together (so all decode in
    /// every step) on a device whose calls <paramref name="runOutOfMemory"/> says run out of it:
    /// each must get the tokens it got alone (compared by token: batched rows draw from logits
    /// that round differently), and the engine stay healthy with its KV blocks freed. Returns how
    /// many calls failed.</summary>
    static async Task<int> FailedCallsWhileEachDrawsAsAlone(int context, Func<ITokenizer, GenerationRequest[]> requestsFor, Func<long[], long[], bool> runOutOfMemory)
    {
        var options = new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch };
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel(context: context);
        var requests = requestsFor(tokenizer);
        var alone = await TokensAlone(freshModel, tokenizer, options, requests);

        var (model, _) = InferenceEngineTests.TinyModel(context: context);
        var failures = new FailingForward(model, runOutOfMemory);
        using var engine = new InferenceEngine(model, tokenizer, options);
        var sequences = engine.SubmitAll(requests);
        for (var i = 0; i < sequences.Length; i++)
            Assert.Equal(alone[i], (await Read(sequences[i])).Select(t => t.Token));
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
        return failures.Failures;
    }

    /// <summary>Tokens with their log-probabilities, to compare runs exactly.</summary>
    static (int, float)[] Spelled(List<GeneratedToken> tokens) => [.. tokens.Select(t => (t.Token, t.Logprob))];

    static async Task Fails(Sequence sequence, string reason = FailingForward.OutOfMemoryDescribed) =>
        Assert.Equal($"the model step failed: {reason}; a retry may succeed", (await Assert.ThrowsAsync<EngineStepFailedException>(() => Read(sequence))).Message);

    [Fact]
    public async Task A_failed_prefill_fails_its_request_alone_and_leaves_no_half_written_block_in_the_prefix_cache()
    {
        // Prompts are prefilled 16 tokens a step, so the failing prompt's first two chunks
        // succeed and its third, holding the '?', fails after layer 0 stored its keys and values.
        var options = new EngineOptions { BlockSize = 8, MaxPrefillTokensPerStep = 16 };
        const string running = "hello there, how are you";
        const string failing = "to be or not to be, that is the question?";
        const string sharing = "to be or not to be, that is the question.";
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel();
        List<GeneratedToken> runningAlone, sharingAlone;
        using (var fresh = new InferenceEngine(freshModel, tokenizer, options))
        {
            runningAlone = await Read(fresh.Submit(Greedy(tokenizer, running, 30)));
            sharingAlone = await Read(fresh.Submit(Greedy(tokenizer, sharing, 20)));
        }

        var (model, _) = InferenceEngineTests.TinyModel();
        var failures = FailingForward.OnToken(model, tokenizer.Encode("?")[0]);
        using var engine = new InferenceEngine(model, tokenizer, options);
        var first = engine.Submit(Greedy(tokenizer, running, 30));
        Assert.True(await first.Output.WaitToReadAsync()); // decoding while the other prompt fails
        var second = engine.Submit(Greedy(tokenizer, failing, 10));
        await Fails(second);
        Assert.Equal(Spelled(runningAlone), Spelled(await Read(first)));
        Assert.Equal(1, failures.Failures);
        Assert.True(engine.IsHealthy);

        // The failed prompt's two whole chunks (4 blocks) were computed and are reused; the
        // block its failed chunk was writing is not, though the next prompt begins with its
        // tokens too: it gets the tokens a fresh engine gives, to the last digit.
        var third = engine.Submit(Greedy(tokenizer, sharing, 20));
        Assert.Equal(Spelled(sharingAlone), Spelled(await Read(third)));
        Assert.Equal(32, third.CachedPromptTokens);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_failed_decode_step_fails_only_the_sequence_whose_own_step_fails_and_the_other_draws_the_tokens_it_draws_alone()
    {
        // Decode steps through libtorch's layers, which the failure hooks; while armed, every
        // decode step (no prompt position 0) that computes position 20 fails, batched or alone.
        var options = new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch };
        const string prompt = "hello there";
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel();
        // Sampled with a seed: a token drawn in the failed step, or twice, would change the rest.
        var bystander = new GenerationRequest { PromptTokens = tokenizer.Encode("the quick brown fox jumps"), MaxTokens = 38, Sampling = new() { Temperature = 1, Seed = 5 } };
        List<GeneratedToken> alone, bystanderAlone;
        using (var fresh = new InferenceEngine(freshModel, tokenizer, options))
        {
            alone = await Read(fresh.Submit(Greedy(tokenizer, prompt, 30)));
            bystanderAlone = await Read(fresh.Submit(bystander));
        }

        var (model, _) = InferenceEngineTests.TinyModel();
        var armed = true;
        var failures = new FailingForward(model, (_, positions) => Volatile.Read(ref armed) && !positions.Contains(0) && positions.Contains(20));
        using var engine = new InferenceEngine(model, tokenizer, options);
        // Decoding at positions 25 to 62: in the batch when the other reaches 20.
        var other = engine.Submit(bystander);
        var reaching = engine.Submit(Greedy(tokenizer, prompt, 30));
        var streamed = new List<GeneratedToken>();
        var error = await Assert.ThrowsAsync<EngineStepFailedException>(async () =>
        {
            await foreach (var token in reaching.Output.ReadAllAsync()) streamed.Add(token);
        });
        Volatile.Write(ref armed, false);
        Assert.Equal($"the model step failed: {FailingForward.OutOfMemoryDescribed}; a retry may succeed", error.Message);
        // Its prefill chose a token and decode steps at positions 11-19 nine more (batched, so
        // their log-probabilities round differently): then the step at 20 failed, batched and
        // again alone.
        Assert.Equal(alone.Select(t => t.Token).Take(10), streamed.Select(t => t.Token));
        Assert.Equal(bystanderAlone.Select(t => t.Token), (await Read(other)).Select(t => t.Token));
        Assert.Equal(2, failures.Failures);
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);

        Assert.Equal(Spelled(alone), Spelled(await Read(engine.Submit(Greedy(tokenizer, prompt, 30)))));
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_prefill_that_fails_for_one_prompt_of_its_group_is_run_again_without_it_and_the_other_draws_what_it_draws_alone()
    {
        var options = new EngineOptions { BlockSize = 8 };
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel();
        // Of equal length, so prefilled in one call when admitted in one step.
        var innocent = new GenerationRequest { PromptTokens = tokenizer.Encode("what a day it is"), MaxTokens = 20, Sampling = new() { Temperature = 1, Seed = 9 }, Logprobs = 2 };
        const string poisoned = "what is the day?";
        List<GeneratedToken> alone;
        using (var fresh = new InferenceEngine(freshModel, tokenizer, options))
            alone = await Read(fresh.Submit(innocent));

        var (model, _) = InferenceEngineTests.TinyModel();
        var question = tokenizer.Encode("?")[0];
        // The first call, the bystander's prefill, waits until both prompts are queued.
        using var entered = new ManualResetEventSlim();
        using var queued = new ManualResetEventSlim();
        var failures = new FailingForward(model, (tokens, _) =>
        {
            entered.Set();
            queued.Wait();
            return tokens.Contains(question);
        });
        using var engine = new InferenceEngine(model, tokenizer, options);
        var bystander = engine.Submit(Greedy(tokenizer, "hello", 30));
        entered.Wait();
        var bad = engine.Submit(Greedy(tokenizer, poisoned, 10));
        var good = engine.Submit(innocent);
        queued.Set();
        await Fails(bad);
        // Their prefill failed, then the poisoned prompt's alone; the other's alone did not.
        Assert.Equal(2, failures.Failures);
        // Alone, as in a fresh engine; decoded in managed code, row by row: to the last digit.
        Assert.Equal(Spelled(alone), Spelled(await Read(good)));
        Assert.Equal(30, (await Read(bystander)).Count);
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_decode_batch_too_large_for_the_device_is_run_in_halves_and_each_sequence_draws_what_it_draws_alone()
    {
        // As a device whose memory holds the decode step of two sequences but not of four.
        var failures = await FailedCallsWhileEachDrawsAsAlone(context: 64, tokenizer => [.. new[] { "one fish", "two fish", "red fish", "blue fish" }.Select((prompt, i) =>
                new GenerationRequest { PromptTokens = tokenizer.Encode(prompt), MaxTokens = 24, IgnoreEos = true, Sampling = new() { Temperature = 1, Seed = i } })],
            (_, positions) => !positions.Contains(0) && positions.Length > 2);
        // The first step after the prefill ran out over four rows; the other 22 ran in calls of
        // the two that fitted.
        Assert.Equal(1, failures);
    }

    [Fact]
    public async Task A_decode_batch_that_ran_out_of_memory_runs_in_calls_that_fit_and_tries_a_row_more_after_50_steps()
    {
        // As a device whose memory holds the decode step of three sequences but not of four; the
        // prefill chooses each one's first token, the decode steps the others.
        const int steps = 2 * InferenceEngine.DecodeStepsBeforeGrowing + 20;
        var failures = await FailedCallsWhileEachDrawsAsAlone(context: 160, tokenizer => [.. "abcdefgh".Select((c, i) =>
                new GenerationRequest { PromptTokens = tokenizer.Encode($"{c}{c} fish"), MaxTokens = steps + 1, IgnoreEos = true, Sampling = new() { Temperature = 1, Seed = i } })],
            (_, positions) => !positions.Contains(0) && positions.Length > 3);
        // The first decode step ran out over the eight rows and over each half of four, whose
        // halves of two ran: the next 50 steps ran in calls of two. Then a call of three ran, and
        // the next 50 in calls of three; then a call of four ran out (its halves ran), and the
        // last 17 steps ran in calls of three. Every step failed three calls before.
        Assert.Equal(4, failures);
    }

    [Fact]
    public async Task A_decode_call_size_that_ran_out_of_memory_in_a_step_is_not_kept_because_another_call_of_that_size_ran()
    {
        // As a device whose memory holds the decode step of three short sequences, or of two
        // long ones, but not of three with a long one among them: four short rows run while
        // four long ones run out in the same step.
        var options = new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch };
        var (model, tokenizer) = InferenceEngineTests.TinyModel(context: 160);
        const string longPrompt = "a long prompt, so that its positions reach forty";
        GenerationRequest[] requests = [.. new[] { "aa fish", "bb fish", "cc fish", "dd fish", "e" + longPrompt, "f" + longPrompt, "g" + longPrompt, "h" + longPrompt }.Select((prompt, i) =>
            new GenerationRequest { PromptTokens = tokenizer.Encode(prompt), MaxTokens = 31, IgnoreEos = true, Sampling = new() { Temperature = 1, Seed = i } })];
        var failures = new FailingForward(model, (_, positions) => !positions.Contains(0) && positions.Length > 2 && positions.Max() >= 40);
        using var engine = new InferenceEngine(model, tokenizer, options);
        var sequences = engine.SubmitAll(requests);
        foreach (var sequence in sequences) Assert.Equal(31, (await Read(sequence)).Count);
        // The first decode step ran out over the eight rows and over the four long ones (the four
        // short ones ran): a call of four is not what fits. The second, in calls of three, ran
        // out over two long rows and a short one; from the third on, calls of two ran. Keeping
        // four, as a call of four ran, fails a call at each of the 30 steps.
        Assert.Equal(3, failures.Failures);
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_row_that_runs_out_of_memory_alone_does_not_shrink_the_decode_calls_of_the_others()
    {
        // As a request whose own decode step is too large for the device, whatever runs with it:
        // the calls over it ran out because of it, not of how many rows they had.
        var options = new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch };
        var (model, tokenizer) = InferenceEngineTests.TinyModel(context: 160);
        GenerationRequest Request(string prompt) => new() { PromptTokens = tokenizer.Encode(prompt), MaxTokens = 10, IgnoreEos = true, Sampling = new() { Temperature = 1, Seed = 1 } };
        GenerationRequest[] requests = [.. "abcdefg".Select(c => Request($"{c}{c} fish")), Request("a long prompt, so that its positions reach forty")];
        var lastDecodeRows = 0;
        var failures = new FailingForward(model, (_, positions) =>
        {
            if (positions.Contains(0)) return false;
            Volatile.Write(ref lastDecodeRows, positions.Length);
            return positions.Max() >= 40;
        });
        using var engine = new InferenceEngine(model, tokenizer, options);
        var sequences = engine.SubmitAll(requests[..7]);
        var tooLarge = engine.Submit(requests[7]);
        await Fails(tooLarge);
        foreach (var sequence in sequences) Assert.Equal(10, (await Read(sequence)).Count);
        // The seven others' last step ran in one call, as before the long one failed.
        Assert.Equal(7, Volatile.Read(ref lastDecodeRows));
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    /// <summary>Draws as <paramref name="draws"/> does, but throws at its draw <paramref name="failAt"/>.</summary>
    sealed class FailingRandom(Random draws, int failAt) : Random
    {
        int count;

        public override double NextDouble() => ++count == failAt ? throw new InvalidOperationException($"the generator failed at its draw {failAt}") : draws.NextDouble();
    }

    [Fact]
    public async Task A_sampler_that_throws_for_one_row_fails_its_request_alone_and_the_other_rows_draw_what_they_draw_undisturbed()
    {
        var options = new EngineOptions { BlockSize = 8 };
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel();
        // Prompts of three lengths, each prefilled alone, then decoded in managed code, row by
        // row: each row's logits are those of any other run to the last digit.
        GenerationRequest Sampled(string prompt, int seed) =>
            new() { PromptTokens = tokenizer.Encode(prompt), MaxTokens = 30, IgnoreEos = true, Sampling = new() { Temperature = 1, Seed = seed }, Logprobs = 2 };
        GenerationRequest[] requests = [Sampled("hello", 1), Sampled("to be or not", 2), Sampled("the quick brown fox", 3)];
        var undisturbed = new List<GeneratedToken>[requests.Length];
        using (var fresh = new InferenceEngine(freshModel, tokenizer, options))
        {
            var run = requests.Select(request => fresh.Submit(request)).ToArray();
            for (var i = 0; i < run.Length; i++) undisturbed[i] = await Read(run[i]);
        }

        var (model, _) = InferenceEngineTests.TinyModel();
        // The first call, the first prompt's prefill, waits until the second sequence draws with
        // a generator that fails at its fifth draw: in a decode step of all three, between the others.
        using var entered = new ManualResetEventSlim();
        using var armed = new ManualResetEventSlim();
        _ = new FailingForward(model, (_, _) =>
        {
            entered.Set();
            armed.Wait();
            return false;
        });
        using var engine = new InferenceEngine(model, tokenizer, options);
        var first = engine.Submit(requests[0]);
        entered.Wait();
        var failing = engine.Submit(requests[1]);
        var last = engine.Submit(requests[2]);
        failing.Random = new FailingRandom(failing.Random, failAt: 5);
        armed.Set();
        var streamed = new List<GeneratedToken>();
        var error = await Assert.ThrowsAsync<EngineStepFailedException>(async () =>
        {
            await foreach (var token in failing.Output.ReadAllAsync()) streamed.Add(token);
        });
        Assert.Equal("choosing the next token failed: the generator failed at its draw 5", error.Message);
        Assert.Equal(Spelled(undisturbed[1])[..4], Spelled(streamed));
        Assert.Equal(Spelled(undisturbed[0]), Spelled(await Read(first)));
        Assert.Equal(Spelled(undisturbed[2]), Spelled(await Read(last)));
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_failed_call_fails_the_other_sequences_of_its_request_before_they_run_and_no_one_else_s()
    {
        var options = new EngineOptions { BlockSize = 8 };
        const string bystander = "hello there, how are you";
        const string poisoned = "to be or not to be, that is the question?";
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel();
        List<GeneratedToken> alone;
        using (var fresh = new InferenceEngine(freshModel, tokenizer, options))
            alone = await Read(fresh.Submit(Greedy(tokenizer, bystander, 30)));

        var (model, _) = InferenceEngineTests.TinyModel();
        var failures = FailingForward.OnToken(model, tokenizer.Encode("?")[0]);
        using var engine = new InferenceEngine(model, tokenizer, options);
        var running = engine.Submit(Greedy(tokenizer, bystander, 30));
        Assert.True(await running.Output.WaitToReadAsync());
        // One request: three choices of the poisoned prompt (the prefix cache has the second and
        // third wait for the first's prefill) and a shorter prompt, prefilled first in the same
        // step, which has its first token by the time the poisoned prefill fails.
        var request = engine.SubmitAll([Greedy(tokenizer, "short", 20), Greedy(tokenizer, poisoned, 10), Greedy(tokenizer, poisoned, 10), Greedy(tokenizer, poisoned, 10)]);
        foreach (var sequence in request) await Fails(sequence);
        Assert.Equal(1, failures.Failures);
        Assert.Equal(Spelled(alone), Spelled(await Read(running)));
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task Logits_that_are_not_numbers_fail_the_other_sequences_of_their_request_too()
    {
        var (model, tokenizer) = InferenceEngineTests.JsonModel();
        // The JSON choice draws a token its schema rules out; the plain one would run to its end.
        using (TorchSharp.torch.no_grad())
            foreach (var parameter in model.parameters()) parameter.fill_(float.NaN);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var request = engine.SubmitAll([Greedy(tokenizer, "a", 60) with { JsonObject = true }, Greedy(tokenizer, "a", 60) with { IgnoreEos = true }]);
        foreach (var sequence in request)
            Assert.Contains("its logits are not all numbers", (await Assert.ThrowsAsync<EngineStepFailedException>(() => Read(sequence))).Message);
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_model_that_cannot_run_stops_the_engine_at_its_first_failed_call_with_the_probe_s_cause()
    {
        // As a CUDA context lost to a kernel's fault: every call fails from then on.
        const string reason = "CUDA error: an illegal memory access was encountered";
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var failures = new FailingForward(model, (_, _) => true, reason);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var sequences = engine.SubmitAll([Greedy(tokenizer, "all is well", 5), Greedy(tokenizer, "all is good", 5)]);
        const string cause = $"the engine failed: a model call failed, and then a one-token probe of the model too: {reason}";
        foreach (var sequence in sequences)
            Assert.Equal(cause, (await Assert.ThrowsAsync<EngineUnavailableException>(() => Read(sequence))).Message);
        // The two rows' call, the first row's alone, the probe.
        Assert.Equal(3, failures.Failures);
        Assert.False(engine.IsHealthy);
        Assert.Equal(cause, Assert.Throws<EngineUnavailableException>(() => engine.Submit(Greedy(tokenizer, "all is well", 5))).InnerException!.Message);
    }

    [Fact]
    public async Task A_device_out_of_memory_even_for_the_probe_fails_the_request_and_the_engine_goes_on()
    {
        // Another process holds the memory: it may free it.
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var full = true;
        var failures = new FailingForward(model, (_, _) => Volatile.Read(ref full));
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        await Fails(engine.Submit(Greedy(tokenizer, "all is well", 5)));
        // Its call and the probe.
        Assert.Equal(2, failures.Failures);
        Assert.True(engine.IsHealthy);
        Volatile.Write(ref full, false);
        Assert.Equal(5, (await Read(engine.Submit(Greedy(tokenizer, "all is well", 5)))).Count);
    }

    [Fact]
    public async Task Requests_that_fail_their_own_call_one_after_another_never_stop_the_engine()
    {
        // As prompts each too large for the device, sent one after another to an otherwise idle
        // engine: 100 in a row stopped it for every user. Any libtorch error, told by its first
        // line: the rest is libtorch's C++ stack trace.
        const string reason = "shape '[1, 11, 2, 16]' is invalid for input of size 300";
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var failures = FailingForward.OnToken(model, tokenizer.Encode("?")[0], reason);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });

        // A step each, and a one-token probe after each, which runs.
        const int bad = 150;
        for (var i = 0; i < bad; i++) await Fails(engine.Submit(Greedy(tokenizer, "what is it?", 5)), reason);
        Assert.Equal(bad, failures.Failures);
        Assert.True(engine.IsHealthy);
        Assert.Equal(5, (await Read(engine.Submit(Greedy(tokenizer, "all is well", 5)))).Count);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task Requests_that_fail_their_own_call_are_counted_and_leave_the_engine_healthy_as_its_small_request_runs()
    {
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var failures = FailingForward.OnToken(model, tokenizer.Encode("?")[0]);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        Assert.Null(await engine.CheckHealthAsync());
        // Three requests, the second with three choices: one failure each.
        await Fails(engine.Submit(Greedy(tokenizer, "what is it?", 5)));
        foreach (var sequence in engine.SubmitAll([.. Enumerable.Repeat(Greedy(tokenizer, "and this?", 5), 3)])) await Fails(sequence);
        await Fails(engine.Submit(Greedy(tokenizer, "why?", 5)));
        Assert.Equal(3, engine.RequestsFailedAlone);

        // No call has run since the last failed: the engine runs its small request, which does.
        Assert.Null(await engine.CheckHealthAsync());
        Assert.Equal(3, failures.Failures);
        Assert.Equal(3, engine.RequestsFailedAlone);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_model_that_runs_the_probe_but_fails_every_call_is_unhealthy_with_the_reason_until_a_call_runs()
    {
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        // Every call but one token at position 0, which is what the probe runs.
        var broken = true;
        var failures = new FailingForward(model, (_, positions) => Volatile.Read(ref broken) && positions is not [0]);
        // Decode steps through libtorch's layers, which the failure hooks.
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch });
        await Fails(engine.Submit(Greedy(tokenizer, "all is well", 5)));
        const string unhealthy = $"every model call fails, a small health-check request's too; the last with: {FailingForward.OutOfMemoryDescribed}";
        Assert.Equal(unhealthy, await engine.CheckHealthAsync());
        // Asked again, it checks again: the request's call, then each check's prefill.
        Assert.Equal(unhealthy, await engine.CheckHealthAsync());
        Assert.Equal(3, failures.Failures);
        // The engine runs on, and the requests' calls count, the checks' too.
        Assert.True(engine.IsHealthy);
        Assert.Equal(3, engine.RequestsFailedAlone);

        // Healthy again once a call runs, a request's.
        Volatile.Write(ref broken, false);
        Assert.Equal(5, (await Read(engine.Submit(Greedy(tokenizer, "all is well", 5)))).Count);
        Assert.Null(await engine.CheckHealthAsync());
        Assert.Equal(3, failures.Failures);
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_health_check_asked_during_a_failing_streak_answers_at_the_first_call_that_runs_not_at_its_turn_behind_the_queue()
    {
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var question = tokenizer.Encode("?")[0];
        // Prefills of a prompt holding '?' fail. The long request's calls (its prompt ends at
        // position 10, its decode steps come after) each wait for a permit, so the test decides
        // when they run.
        using var permits = new SemaphoreSlim(0);
        _ = new FailingForward(model, (tokens, positions) =>
        {
            if (positions[0] == 0 && tokens.Contains(question)) return true;
            if (positions[^1] >= 10) permits.Wait();
            return false;
        });
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, MaxBatchSize = 1, DecodeWeights = DecodeWeights.Torch });
        try
        {
            // On an idle engine: no call has run since this one failed.
            await Fails(engine.Submit(Greedy(tokenizer, "what is it?", 5)));
            // A request that generates for long takes the one row; the check waits behind it,
            // as behind a long queue of them, and the streak lasts until its prefill runs.
            var running = engine.Submit(Greedy(tokenizer, "all is well", 20));
            var check = engine.CheckHealthAsync().AsTask();
            permits.Release();
            // Its prefill ran: the engine can serve, whatever the rest of its generation takes.
            Assert.Null(await check.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(0, engine.Waiting);
            Assert.False(running.Output.Completion.IsCompleted);
            permits.Release(20);
            Assert.Equal(20, (await Read(running)).Count);
        }
        finally
        {
            permits.Release(100);
        }
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_device_out_of_memory_even_for_the_probe_is_unhealthy_until_its_memory_is_back_and_the_check_runs()
    {
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var full = true;
        _ = new FailingForward(model, (_, _) => Volatile.Read(ref full));
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        await Fails(engine.Submit(Greedy(tokenizer, "all is well", 5)));
        Assert.Equal($"every model call fails, a small health-check request's too; the last with: {FailingForward.OutOfMemoryDescribed}", await engine.CheckHealthAsync());
        Volatile.Write(ref full, false);
        // No request since: the check's own request runs, and ends the streak.
        Assert.Null(await engine.CheckHealthAsync());
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public async Task An_engine_that_stopped_is_unhealthy_with_the_reason_it_stopped()
    {
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        _ = new FailingForward(model, (_, _) => true, "CUDA error: an illegal memory access was encountered");
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        await Assert.ThrowsAsync<EngineUnavailableException>(() => Read(engine.Submit(Greedy(tokenizer, "all is well", 5))));
        Assert.Equal("the engine failed: a model call failed, and then a one-token probe of the model too: CUDA error: an illegal memory access was encountered", await engine.CheckHealthAsync());

        var (other, _) = InferenceEngineTests.TinyModel();
        var disposed = new InferenceEngine(other, tokenizer, new EngineOptions { BlockSize = 8 });
        disposed.Dispose();
        Assert.Equal("the engine has stopped", await disposed.CheckHealthAsync());
    }
}
