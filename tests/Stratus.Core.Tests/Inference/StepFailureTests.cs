// A model call that throws (a device out of memory in one prefill, a libtorch error for one
// input) fails the requests it was running, not the engine: the other requests go on with the
// tokens they would have had, nothing the call half wrote is reused, and only a model failing
// call after call stops the engine.
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
    public async Task A_failed_decode_step_fails_the_sequences_it_was_decoding_and_the_next_step_decodes_as_a_fresh_engine()
    {
        // Decode steps through libtorch's layers, which the failure hooks; the first decode step
        // (a position per row, at most two rows here) that computes position 20 fails.
        var options = new EngineOptions { BlockSize = 8, DecodeWeights = DecodeWeights.Torch };
        const string prompt = "hello there";
        var (freshModel, tokenizer) = InferenceEngineTests.TinyModel();
        List<GeneratedToken> alone;
        using (var fresh = new InferenceEngine(freshModel, tokenizer, options))
            alone = await Read(fresh.Submit(Greedy(tokenizer, prompt, 30)));

        var (model, _) = InferenceEngineTests.TinyModel();
        var failed = 0;
        var failures = new FailingForward(model, (_, positions) => positions.Length <= 2 && positions.Contains(20) && Interlocked.Exchange(ref failed, 1) == 0);
        using var engine = new InferenceEngine(model, tokenizer, options);
        // Decoding at positions 25 to 62 alongside: in the batch when the other reaches 20.
        var other = engine.Submit(Greedy(tokenizer, "the quick brown fox jumps", 38));
        var reaching = engine.Submit(Greedy(tokenizer, prompt, 30));
        var streamed = new List<GeneratedToken>();
        var error = await Assert.ThrowsAsync<EngineStepFailedException>(async () =>
        {
            await foreach (var token in reaching.Output.ReadAllAsync()) streamed.Add(token);
        });
        Assert.Equal($"the model step failed: {FailingForward.OutOfMemoryDescribed}; a retry may succeed", error.Message);
        // Its prefill chose a token and decode steps at positions 11-19 nine more (batched, so
        // their log-probabilities round differently): then the step at 20 failed, with the
        // other sequence in its batch.
        Assert.Equal(alone.Select(t => t.Token).Take(10), streamed.Select(t => t.Token));
        await Fails(other);
        Assert.Equal(1, failures.Failures);
        Assert.True(engine.IsHealthy);
        Assert.Equal(0, engine.KvBlocksUsed);

        Assert.Equal(Spelled(alone), Spelled(await Read(engine.Submit(Greedy(tokenizer, prompt, 30)))));
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
    public async Task Five_model_calls_failing_in_a_row_stop_the_engine_and_a_success_between_them_starts_the_count_again()
    {
        // Any libtorch error, told by its first line: the rest is libtorch's C++ stack trace.
        const string reason = "shape '[1, 11, 2, 16]' is invalid for input of size 300";
        var (model, tokenizer) = InferenceEngineTests.TinyModel();
        var failures = FailingForward.OnToken(model, tokenizer.Encode("?")[0], reason);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        Task Fail() => Fails(engine.Submit(Greedy(tokenizer, "what is it?", 5)), reason);

        for (var i = 0; i < 4; i++) await Fail();
        Assert.True(engine.IsHealthy);
        Assert.Equal(5, (await Read(engine.Submit(Greedy(tokenizer, "all is well", 5)))).Count);
        for (var i = 0; i < 4; i++) await Fail();
        Assert.True(engine.IsHealthy);

        var error = await Assert.ThrowsAsync<EngineUnavailableException>(() => Read(engine.Submit(Greedy(tokenizer, "what is it?", 5))));
        Assert.Equal($"the engine failed: 5 model steps in a row failed, the last with: {reason}", error.Message);
        Assert.False(engine.IsHealthy);
        Assert.Equal(9, failures.Failures);
        Assert.Throws<EngineUnavailableException>(() => engine.Submit(Greedy(tokenizer, "all is well", 5)));
    }
}
