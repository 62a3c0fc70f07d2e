// The engine's promises: continuous batching gives the same greedy tokens as decoding alone,
// cancelled and finished sequences free their KV blocks, and a full queue refuses work.
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests.Inference;

public sealed class InferenceEngineTests
{
    /// <summary>A tiny random-weight GPT (seed 7) over a vocabulary that can spell JSON, with '~'
    /// free to serve as an end marker.</summary>
    internal static (CausalLanguageModel Model, CharTokenizer Tokenizer) JsonModel()
    {
        torch.manual_seed(7);
        var tokenizer = CharTokenizer.FromCorpus(" \"',:{}[]0123456789abcdefghijklmnopqrstuvwxyz~\n");
        return (CausalLanguageModel.Create(new ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 64, NLayer = 1, NHead = 2, NEmbd = 16, Bias = false }), tokenizer);
    }

    /// <param name="width">32 by default; 256 makes each layer's MLP products (GPT-2's 1024 x 256,
    /// Llama's gate and up together) large enough for the decode kernel to split over its threads.</param>
    internal static (CausalLanguageModel Model, CharTokenizer Tokenizer) TinyModel(string architecture = "gpt2", int context = 64, int width = 32)
    {
        torch.manual_seed(7);
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrstuvwxyz .,!?\n");
        // The Llama shape has grouped-query attention (4 query heads over 2 key/value heads).
        var config = architecture == "gpt2"
            ? new ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = context, NLayer = 2, NHead = 2, NEmbd = width, Bias = false }
            : new ModelConfig { Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = context, NLayer = 2, NHead = 4, NKvHead = 2, NEmbd = width, IntermediateSize = 2 * width, Bias = false };
        var model = CausalLanguageModel.Create(config);
        // Weights at 10x their initial scale, so attention is sharp and a key at the wrong position
        // (or rotated for another one) changes the prediction: at the initial scale every score is
        // near zero and attention averages whatever it is given.
        using (torch.no_grad())
            foreach (var parameter in model.parameters()) parameter.mul_(10);
        return (model, tokenizer);
    }

    /// <summary>The tiny model in eval mode with a model runner over a small block pool (the
    /// caller disposes the pool and opens no_grad).</summary>
    static (CausalLanguageModel Model, CharTokenizer Tokenizer, KvBlockPool Pool, ModelRunner Runner) TinyRunner(string architecture = "gpt2", int width = 32)
    {
        var (model, tokenizer) = TinyModel(architecture, width: width);
        model.eval();
        var pool = new KvBlockPool(model.Config.NLayer, model.KvHeads, model.Config.HeadDim, blockCount: 64, blockSize: 8, ScalarType.Float32, torch.CPU);
        return (model, tokenizer, pool, new ModelRunner(model, pool, tokenizer.VocabSize));
    }

    /// <summary>A sequence for the request with the pool blocks its tokens need.</summary>
    static Sequence Admit(KvBlockPool pool, GenerationRequest request, int vocabSize)
    {
        var sequence = new Sequence(0, request, vocabSize) { PrefillChunk = request.PromptTokens.Count };
        Assert.True(pool.Allocator.TryAllocate(pool.Allocator.BlocksFor(sequence.ReservedTokens), sequence.Blocks));
        return sequence;
    }

    /// <summary>What the engine does after a call over <paramref name="rows"/>: each row's cache
    /// takes the call's tokens, and each row whose prompt is done gets its next token.</summary>
    static bool Choose(ModelRunner runner, List<Sequence> rows, Span<GeneratedToken> chosen)
    {
        var any = false;
        for (var b = 0; b < rows.Count; b++)
        {
            if (!runner.Advance(rows[b])) continue;
            chosen[b] = runner.Choose(b, rows[b]);
            any = true;
        }
        return any;
    }

    /// <summary>A greedy request that also reports its two best tokens at each step (see AssertSameGreedy).</summary>
    internal static GenerationRequest Greedy(ITokenizer tokenizer, string prompt, int maxTokens) =>
        new() { PromptTokens = tokenizer.Encode(prompt), MaxTokens = maxTokens, Sampling = new() { Temperature = 0 }, Logprobs = 2 };

    static async Task<int[]> Collect(Sequence sequence) => (await Generate(sequence)).Tokens;

    /// <summary>The tokens, and at each the margin between the best and second-best token.</summary>
    static async Task<(int[] Tokens, float[] Margins)> Generate(Sequence sequence)
    {
        var generated = new List<GeneratedToken>();
        await foreach (var token in sequence.Output.ReadAllAsync()) generated.Add(token);
        return ([.. generated.Select(t => t.Token)], [.. generated.Select(t => t.TopLogprobs is [var best, var next, ..] ? best.Logprob - next.Logprob : float.PositiveInfinity)]);
    }

    /// <summary>Greedy tokens equal to the reference's, except that where the reference itself
    /// nearly tied (under 0.01 nats between its two best tokens) rounding in another batch or
    /// chunk may pick the other, and the texts part there. With sharp test weights the logits are
    /// in the hundreds, so such rounding is real; a wrong key or position moves them by far more.</summary>
    static void AssertSameGreedy((int[] Tokens, float[] Margins) reference, int[] actual, bool mayStopEarly = false)
    {
        var first = Enumerable.Range(0, Math.Min(reference.Tokens.Length, actual.Length)).FirstOrDefault(i => reference.Tokens[i] != actual[i], -1);
        if (first >= 0) Assert.True(reference.Margins[first] < 0.01f, $"the tokens part at {first}, where the reference's margin was {reference.Margins[first]}");
        if (!mayStopEarly) Assert.Equal(reference.Tokens.Length, actual.Length);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public async Task Greedy_tokens_are_the_same_batched_as_alone(string architecture)
    {
        var (model, tokenizer) = TinyModel(architecture);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        string[] prompts = ["hello there", "a", "the quick brown fox jumps", "to be or not to be, that is", "xyz", "good night, sweet prince"];
        var alone = new List<(int[] Tokens, float[] Margins)>();
        foreach (var prompt in prompts) alone.Add(await Generate(engine.Submit(Greedy(tokenizer, prompt, 30))));

        // All at once, with staggered arrivals, so sequences join a running batch mid-way, and
        // each prompt twice in a row, so the second takes the first's blocks from the prefix cache.
        var batched = new List<Task<int[]>>();
        foreach (var prompt in prompts)
        {
            batched.Add(Collect(engine.Submit(Greedy(tokenizer, prompt, 30))));
            batched.Add(Collect(engine.Submit(Greedy(tokenizer, prompt, 30))));
            await Task.Delay(3);
        }
        var results = await Task.WhenAll(batched);
        for (var i = 0; i < results.Length; i++) AssertSameGreedy(alone[i / 2], results[i]);
        Assert.All(alone, run => Assert.Equal(30, run.Tokens.Length));
        Assert.Equal(0, engine.KvBlocksUsed);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Model_runner_chooses_the_same_greedy_tokens_for_a_row_in_a_batch_as_alone(string architecture)
    {
        var (_, tokenizer, pool, runner) = TinyRunner(architecture);
        using var _ = pool;
        using var noGrad = torch.no_grad();
        Sequence Make(string prompt) => Admit(pool, Greedy(tokenizer, prompt, 20), tokenizer.VocabSize);
        int[] Run(List<Sequence> rows, int row)
        {
            var chosen = new GeneratedToken[rows.Count];
            var tokens = new List<int>();
            runner.Prefill(rows);
            Choose(runner, rows, chosen);
            for (var step = 0; step < 20; step++)
            {
                for (var b = 0; b < rows.Count; b++) rows[b].Append(chosen[b], emit: false);
                tokens.Add(chosen[row].Token);
                runner.Decode(rows);
                Choose(runner, rows, chosen);
            }
            return [.. tokens];
        }
        // Equal lengths share one prefill; the decode batch then mixes them.
        var first = Run([Make("to be or not")], 0);
        var second = Run([Make("hello world!")], 0);
        Assert.Equal(first, Run([Make("to be or not"), Make("hello world!")], 0));
        Assert.Equal(second, Run([Make("to be or not"), Make("hello world!")], 1));
    }

    /// <summary>The engine's per-token path (schedule, a decode step of up to the decode kernel's
    /// rows on the CPU, sampling, appending the token) runs from and into buffers it keeps: it
    /// made tensors, arrays and closures worth 8-12 KB a token. What is left is TorchSharp's:
    /// each read of an Embedding's weight makes a 48-byte wrapper, 3 or 4 of them a step. At
    /// width 256 the kernel splits the MLP's products over two threads: through Parallel.For that
    /// cost 3.7-7.3 KB a token here, so the bytes counted are every thread's.</summary>
    [Theory]
    [InlineData("gpt2", 1, 32)]
    [InlineData("gpt2", 4, 32)]
    [InlineData("llama", 1, 32)]
    [InlineData("llama", 4, 32)]
    [InlineData("gpt2", 1, 256)]
    [InlineData("gpt2", 4, 256)]
    [InlineData("llama", 1, 256)]
    public void A_decode_step_allocates_next_to_nothing_per_token(string architecture, int streams, int width)
    {
        var (model, tokenizer, pool, runner) = TinyRunner(architecture, width);
        using var _ = pool;
        using var noGrad = torch.no_grad();
        // fp32 is the engine's default; two threads whatever libtorch's count on this machine.
        model.DecodeKernel = new DecodeKernel(DecodeWeights.Float32, threads: 2);
        var scheduler = new Scheduler(new EngineOptions(), pool.Allocator);
        var chosen = new GeneratedToken[streams];
        // Bytes all threads allocate over `steps` engine steps after the prompts' prefill.
        long Steps(int steps)
        {
            var sequences = new Sequence[streams];
            for (var i = 0; i < streams; i++)
            {
                var sampling = new SamplingOptions { Temperature = 0.8, TopK = 5, TopP = 0.9, Seed = i };
                sequences[i] = new Sequence(i, new GenerationRequest { PromptTokens = tokenizer.Encode("hello"), MaxTokens = 50, Sampling = sampling }, tokenizer.VocabSize);
            }
            Assert.True(scheduler.TryEnqueue(sequences));
            var prefill = scheduler.Schedule().Prefill;
            runner.Prefill(prefill);
            Assert.True(Choose(runner, prefill, chosen));
            for (var i = 0; i < streams; i++)
            {
                scheduler.Prefilled(sequences[i]);
                sequences[i].Append(chosen[i], emit: false);
            }
            // Other threads allocate too, the finalizer's most (it runs earlier tests' tensors'
            // finalizers): it starts with none to run.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var step = 0; step < steps; step++)
            {
                var decode = scheduler.Schedule().Decode;
                runner.Decode(decode);
                Choose(runner, decode, chosen);
                // Not emitted: the output channel's queue grows with unread tokens, and no reader reads here.
                for (var b = 0; b < decode.Count; b++) decode[b].Append(chosen[b], emit: false);
            }
            var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            foreach (var sequence in sequences) scheduler.Release(sequence, FinishReason.Length);
            return allocated;
        }
        Steps(10);
        // Another thread's bytes can only add to a count: the least of three counts each.
        long Least(int steps) => Enumerable.Range(0, 3).Min(_ => Steps(steps));
        var perToken = (Least(40) - Least(10)) / (30.0 * streams);
        Assert.True(perToken < 256, $"{perToken:F0} bytes a token");
    }

    [Theory]
    [InlineData("gpt2", DecodeWeights.Torch)]
    [InlineData("llama", DecodeWeights.Torch)]
    [InlineData("gpt2", DecodeWeights.Float32)] // decode steps run whole in managed code
    [InlineData("llama", DecodeWeights.Float32)]
    public void Paged_decoding_predicts_what_a_full_forward_predicts(string architecture, DecodeWeights weights)
    {
        var (model, tokenizer, pool, runner) = TinyRunner(architecture);
        model.DecodeWeights = weights;
        using var _ = pool;
        using var noGrad = torch.no_grad();
        // Two rows of different lengths, so the rows' blocks and positions differ in every step.
        string[] prompts = ["to be or not", "hello, world. good night"];
        var rows = prompts.Select(prompt => Admit(pool, Greedy(tokenizer, prompt, 24) with { Logprobs = 0 }, tokenizer.VocabSize)).ToList();
        var chosen = new GeneratedToken[1];
        var generated = new List<GeneratedToken>[] { [], [] };
        for (var b = 0; b < 2; b++)
        {
            List<Sequence> row = [rows[b]];
            runner.Prefill(row);
            Choose(runner, row, chosen);
            rows[b].Append(chosen[0], emit: false);
            generated[b].Add(chosen[0]);
        }
        var both = new GeneratedToken[2];
        for (var step = 0; step < 20; step++)
        {
            runner.Decode(rows);
            Choose(runner, rows, both);
            for (var b = 0; b < 2; b++)
            {
                rows[b].Append(both[b], emit: false);
                generated[b].Add(both[b]);
            }
        }
        for (var b = 0; b < 2; b++)
        {
            // The reference: the whole sequence through the model without a cache, every step.
            var context = tokenizer.Encode(prompts[b]).Select(t => (long)t).ToList();
            foreach (var token in generated[b])
            {
                using var logits = model.Forward(torch.tensor(context.ToArray(), [1, context.Count]));
                using var logSoftmax = logits[0, -1].log_softmax(-1);
                Assert.Equal((int)logSoftmax.argmax().item<long>(), token.Token);
                Assert.Equal(logSoftmax[token.Token].item<float>(), token.Logprob, 1e-4f);
                context.Add(token.Token);
            }
        }
    }

    [Fact]
    public async Task An_end_marker_that_ends_a_choice_counts_as_generated_but_is_not_shown()
    {
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var end = tokenizer.Encode("z")[0];
        // The marker is forced first: nothing is shown, and it is the one token generated.
        var stream = new GenerationStream(engine, Greedy(tokenizer, "to be", 6) with { StopTokens = [end], LogitBias = new Dictionary<int, float> { [end] = 100 } });
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in stream.ReadAllAsync()) text.Append(chunk.Text);
        Assert.Equal(("", FinishReason.Stop, 1), (text.ToString(), stream.FinishReason, stream.CompletionTokens));
    }

    [Fact]
    public async Task Json_mode_ends_at_an_end_token_once_the_object_is_whole_or_at_its_closing_brace_where_none_ends_it()
    {
        // Initial weights: their logits are small beside the bias, which then decides.
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        int Id(char c) => tokenizer.Encode(c.ToString()).Single();
        var end = Id('~');
        var bias = new Dictionary<int, float> { [Id('"')] = 50, [Id('{')] = 45, [Id(':')] = 40, [Id('}')] = 30 };
        var request = new GenerationRequest { PromptTokens = tokenizer.Encode("a"), MaxTokens = 40, Sampling = new() { Temperature = 0 }, JsonObject = true, LogitBias = bias };
        // The end marker is favoured most, and is text a string could hold: it must wait for the
        // object, then come (counted, not shown). Without one, the closing brace ends the text.
        foreach (var (ending, generated) in new[] { (request with { StopTokens = [end], LogitBias = new Dictionary<int, float>(bias) { [end] = 100 } }, 8), (request, 7) })
        {
            var stream = new GenerationStream(engine, ending);
            var text = new System.Text.StringBuilder();
            await foreach (var chunk in stream.ReadAllAsync()) text.Append(chunk.Text);
            Assert.Equal(("{\"\":\"\"}", FinishReason.Stop, generated), (text.ToString(), stream.FinishReason, stream.CompletionTokens));
        }
    }

    [Fact]
    public void Json_mode_is_refused_for_a_vocabulary_that_cannot_close_an_object()
    {
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var error = Assert.Throws<StratusUserException>(() => engine.Submit(Greedy(tokenizer, "a", 4) with { JsonObject = true }));
        Assert.EndsWith("vocabulary has none for {}\":0", error.Message); // no '[', so no ']' needed
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public void Json_mode_is_refused_when_the_tokens_that_close_an_object_would_end_the_generation()
    {
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        // A template whose turns end at '}' and '"': after '{' only whitespace would be left, then
        // no token at all (the sampler would draw a ruled-out one, which Sequence.Append rejects).
        var stops = new[] { tokenizer.Encode("}")[0], tokenizer.Encode("\"")[0] };
        var error = Assert.Throws<StratusUserException>(() => engine.Submit(Greedy(tokenizer, "a", 40) with { JsonObject = true, StopTokens = stops }));
        Assert.EndsWith("vocabulary has none for }\"", error.Message);
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public async Task Json_mode_runs_on_under_penalties_that_overflow_float32()
    {
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        int Id(char c) => tokenizer.Encode(c.ToString()).Single();
        // Penalties as large as a float32 holds (an IChatClient passes ChatOptions' as given): a
        // token used once was lowered by their sum, +inf, to -inf. The key's quote was used to
        // open it, so the key could not close; once it had used every character, every token was
        // ruled out, the sampler drew one anyway, and the engine failed for all its callers.
        var request = new GenerationRequest
        {
            PromptTokens = tokenizer.Encode("a"), MaxTokens = 60, Sampling = new() { Temperature = 0 }, JsonObject = true,
            PresencePenalty = float.MaxValue, FrequencyPenalty = float.MaxValue,
            LogitBias = new Dictionary<int, float> { [Id('"')] = 50, [Id('{')] = 45 },
        };
        var stream = new GenerationStream(engine, request);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in stream.ReadAllAsync()) text.Append(chunk.Text);
        Assert.True(engine.IsHealthy);
        Assert.Equal((FinishReason.Length, 60), (stream.FinishReason, stream.CompletionTokens));
        var json = new JsonGrammar();
        Assert.True(json.Accept(System.Text.Encoding.UTF8.GetBytes(text.ToString())), text.ToString());
    }

    [Fact]
    public async Task A_model_whose_logits_are_not_numbers_fails_its_json_request_not_the_engine()
    {
        var (model, tokenizer) = JsonModel();
        // NaN logits (weights broken outside Stratus, an overflow): the mask's -inf leaves NaN
        // rows the sampler draws a ruled-out token from, once the whitespace bound has run out.
        using (torch.no_grad())
            foreach (var parameter in model.parameters()) parameter.fill_(float.NaN);
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var stream = new GenerationStream(engine, Greedy(tokenizer, "a", 60) with { JsonObject = true });
        // A failed model step for the server (a 503 naming it), not an unexplained 500.
        var error = await Assert.ThrowsAsync<EngineStepFailedException>(async () => { await foreach (var _ in stream.ReadAllAsync()) { } });
        Assert.Contains("its logits are not all numbers", error.Message);
        Assert.True(engine.IsHealthy);
        // The engine goes on serving: a request without JSON mode still runs to its end.
        var next = new GenerationStream(engine, Greedy(tokenizer, "a", 5));
        await foreach (var _ in next.ReadAllAsync()) { }
        Assert.Equal((FinishReason.Length, 5), (next.FinishReason, next.CompletionTokens));
    }

    const string RecordSchema = """
        {"type":"object","properties":{"n":{"type":"string"},"a":{"type":"integer"},"o":{"type":"boolean"},"t":{"type":"array","items":{"enum":["a","bc",1]},"maxItems":2},"k":{"anyOf":[{"type":"null"},{"const":"x"}]}},"required":["n","a","o","t","k"]}
        """;

    [Fact]
    public async Task Choices_under_a_json_schema_that_stop_are_valid_documents_greedy_or_sampled()
    {
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var schema = JsonSchema.Compile(System.Text.Json.JsonDocument.Parse(RecordSchema).RootElement);
        int Id(char c) => tokenizer.Encode(c.ToString()).Single();
        // The random model's strings, numbers and whitespace run on: a bias to close them, as a
        // trained model would, within the tiny context.
        var bias = new Dictionary<int, float> { [Id('"')] = 4, [Id(',')] = 3, [Id(']')] = 3, [Id('}')] = 3, [Id(' ')] = -10, [Id('\n')] = -10 };
        var stopped = 0;
        for (var seed = 0; seed < 12; seed++)
        {
            var request = new GenerationRequest
            {
                PromptTokens = tokenizer.Encode("a"), MaxTokens = 60, Schema = schema, LogitBias = bias, StopTokens = [Id('~')],
                Sampling = new() { Temperature = seed == 0 ? 0 : 1, Seed = seed },
            };
            var stream = new GenerationStream(engine, request);
            var text = new System.Text.StringBuilder();
            await foreach (var chunk in stream.ReadAllAsync()) text.Append(chunk.Text);
            var json = new JsonGrammar(schema);
            Assert.True(json.Accept(System.Text.Encoding.UTF8.GetBytes(text.ToString())), text.ToString());
            Assert.Equal(stream.FinishReason == FinishReason.Stop, json.IsComplete);
            if (!json.IsComplete) continue;
            Assert.True(JsonSchemaTests.Validate(System.Text.Json.JsonDocument.Parse(RecordSchema).RootElement, System.Text.Json.JsonDocument.Parse(text.ToString()).RootElement), text.ToString());
            stopped++;
        }
        Assert.InRange(stopped, 6, 12);
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public void A_json_schema_is_refused_where_the_vocabulary_cannot_spell_what_a_document_may_need()
    {
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        // Upper-case letters and '_' are not in the vocabulary: a key, an enum value and a const need them.
        var schema = JsonSchema.Compile(System.Text.Json.JsonDocument.Parse("""
            {"type":"object","properties":{"Name":{"type":"string"},"mood":{"enum":["Sad","ok"]},"opt":{"type":"object","properties":{"x_y":{"type":"integer"}}}},"required":["Name","mood"]}
            """).RootElement);
        var error = Assert.Throws<StratusUserException>(() => engine.Submit(Greedy(tokenizer, "a", 40) with { Schema = schema }));
        Assert.StartsWith("the JSON schema needs a token", error.Message);
        Assert.EndsWith("vocabulary has none for NS_", error.Message);
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public void An_integer_bounded_below_zero_is_refused_where_the_vocabulary_has_no_minus()
    {
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var schema = JsonSchema.Compile(System.Text.Json.JsonDocument.Parse("""
            {"type":"object","properties":{"t":{"type":"integer","minimum":-40,"maximum":-1}},"required":["t"]}
            """).RootElement);
        var error = Assert.Throws<StratusUserException>(() => engine.Submit(Greedy(tokenizer, "a", 40) with { Schema = schema }));
        Assert.EndsWith("vocabulary has none for -", error.Message);
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public void Stop_tokens_outside_the_vocabulary_are_refused()
    {
        var (model, tokenizer) = JsonModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        // A stop token no row holds can never end a sequence: in JSON mode, once the object was
        // whole every token but it was ruled out, the sampler drew one anyway, and the engine
        // failed for all its callers.
        foreach (var stop in new[] { tokenizer.VocabSize, -1 })
        {
            var request = new GenerationRequest { PromptTokens = tokenizer.Encode("a"), MaxTokens = 40, JsonObject = true, StopTokens = [stop] };
            Assert.Contains($"stop token {stop}", Assert.Throws<StratusUserException>(() => engine.Submit(request)).Message);
        }
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public void Penalties_past_float32_s_range_are_refused()
    {
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        // Finite as doubles, infinite as the float32 the sampler computes in: -inf + inf is NaN.
        foreach (var request in new[]
        {
            Greedy(tokenizer, "a", 4) with { PresencePenalty = -1e39, FrequencyPenalty = 1e39 },
            Greedy(tokenizer, "a", 4) with { RepetitionPenalty = 1e39 },
        })
            Assert.Throws<StratusUserException>(() => engine.Submit(request));
        Assert.True(engine.IsHealthy);
    }

    [Fact]
    public async Task Equal_prompts_submitted_together_are_prefilled_once()
    {
        // n choices of one prompt: the first computes it, the others wait a step and take its
        // whole blocks (20 tokens: two blocks of 8) from the prefix cache.
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var choices = Enumerable.Range(0, 3).Select(_ => engine.Submit(Greedy(tokenizer, "to be or not to be, ", 6))).ToList();
        var runs = await Task.WhenAll(choices.Select(Generate));
        Assert.Equal([0, 16, 16], choices.Select(c => c.CachedPromptTokens));
        foreach (var run in runs.Skip(1)) AssertSameGreedy(runs[0], run.Tokens);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public async Task Chunked_prefill_gives_the_same_tokens_as_whole_prompts(string architecture)
    {
        var (model, tokenizer) = TinyModel(architecture);
        string[] prompts = ["to be or not to be, that is the question", "a", "good night, sweet prince, and flights", "hello there"];
        async Task<List<(int[] Tokens, float[] Margins)>> Run(int maxPrefillTokensPerStep)
        {
            using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, MaxPrefillTokensPerStep = maxPrefillTokensPerStep, PrefixCaching = false });
            // Staggered, so long prompts are prefilled in chunks while others decode.
            var running = new List<Task<(int[], float[])>>();
            foreach (var prompt in prompts)
            {
                running.Add(Generate(engine.Submit(Greedy(tokenizer, prompt, 16))));
                await Task.Delay(2);
            }
            var results = (await Task.WhenAll(running)).ToList();
            // Prompt log-probabilities come from one forward over the whole prompt: never chunked.
            var scored = engine.Submit(Greedy(tokenizer, prompts[0], 1) with { PromptLogprobs = 0 });
            results.Add(await Generate(scored));
            Assert.Equal(tokenizer.Encode(prompts[0]).Length - 1, scored.PromptLogprobs!.Count);
            Assert.Equal(0, engine.KvBlocksUsed);
            return results;
        }
        var whole = await Run(maxPrefillTokensPerStep: 512);
        var chunked = await Run(maxPrefillTokensPerStep: 5);
        for (var i = 0; i < whole.Count; i++) AssertSameGreedy(whole[i], chunked[i].Tokens);
    }

    [Fact]
    public async Task Under_mixed_load_every_greedy_request_gets_the_tokens_it_gets_alone()
    {
        // Prompts that share starts of several lengths, arriving in bursts, some cancelled, some
        // scoring their prompt, through prefix caching, chunked prefill, the managed decode step
        // and a pool small enough to evict: each request must match a run of its own on an
        // engine without any of that, and every block must come back.
        var (model, tokenizer) = TinyModel("llama");
        var random = new Random(5);
        string[] starts = ["to be or not to be, ", "to be or not ", "hello there, ", "good night, sweet "];
        var requests = Enumerable.Range(0, 40).Select(i =>
        {
            var prompt = starts[random.Next(starts.Length)] + new string(Enumerable.Range(0, random.Next(1, 12)).Select(_ => (char)('a' + random.Next(26))).ToArray());
            var request = Greedy(tokenizer, prompt, random.Next(1, 20));
            return random.Next(8) == 0 ? request with { PromptLogprobs = 0 } : request;
        }).ToList();

        // The reference: each request alone on an engine with none of that.
        List<(int[] Tokens, float[] Margins)> expected;
        using (var alone = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, PrefixCaching = false, DecodeWeights = DecodeWeights.Torch, MaxBatchSize = 1 }))
            expected = [.. requests.Select(r => Generate(alone.Submit(r)).GetAwaiter().GetResult())];

        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, KvBlocks = 40, MaxPrefillTokensPerStep = 7, MaxBatchSize = 6 });
        var cancellations = new List<CancellationTokenSource>();
        var runs = new List<(int Index, Task<int[]> Tokens, bool Cancelled)>();
        for (var i = 0; i < requests.Count; i++)
        {
            var cancel = new CancellationTokenSource();
            cancellations.Add(cancel);
            var cancelled = random.Next(6) == 0;
            runs.Add((i, Collect(engine.Submit(requests[i], cancel.Token)), cancelled));
            if (cancelled) cancel.CancelAfter(random.Next(0, 5));
            if (random.Next(4) == 0) await Task.Delay(random.Next(1, 4));
        }
        foreach (var (index, tokens, cancelled) in runs) AssertSameGreedy(expected[index], await tokens, mayStopEarly: cancelled);
        Assert.Equal(0, engine.KvBlocksUsed);
        Assert.Equal(0, engine.Running);
        foreach (var cancel in cancellations) cancel.Dispose();
    }

    [Fact]
    public async Task Cancelled_sequences_free_their_blocks()
    {
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, MaxBatchSize = 8 });
        var sources = new List<CancellationTokenSource>();
        var sequences = new List<Sequence>();
        for (var i = 0; i < 20; i++)
        {
            var source = new CancellationTokenSource();
            sources.Add(source);
            sequences.Add(engine.Submit(Greedy(tokenizer, "once upon a time", 40), source.Token));
        }
        await sequences[0].Output.ReadAsync();
        foreach (var source in sources) source.Cancel();
        // Drain: a channel's Completion waits for its unread tokens too.
        foreach (var sequence in sequences) await foreach (var _ in sequence.Output.ReadAllAsync()) { }
        Assert.Equal(0, engine.KvBlocksUsed);
        Assert.Equal(0, engine.Running);
        Assert.Equal(0, engine.Waiting);
    }

    [Fact]
    public async Task A_cancelled_stream_ends_at_its_next_read_without_the_text_the_engine_made_ahead()
    {
        // An IChatClient caller cancelling a streamed answer got every update the engine had made
        // ahead of it (50-odd from a small model) before the cancellation showed.
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var sequence = engine.Submit(Greedy(tokenizer, "to be", 20));
        while (sequence.FinishReason is null) await Task.Delay(10); // every token made before any is read
        using var cancel = new CancellationTokenSource();
        await using var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync(cancel.Token).GetAsyncEnumerator();
        Assert.True(await chunks.MoveNextAsync());
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await chunks.MoveNextAsync());
    }

    [Fact]
    public void A_KV_cache_memory_limit_of_zero_or_less_is_refused()
    {
        // serve --kv-cache-mb 0 or -5 was taken silently (as one context's worth of blocks).
        var (model, tokenizer) = TinyModel();
        foreach (var megabytes in new[] { 0L, -5L })
            Assert.Equal($"KV cache memory must be positive, got {megabytes} MiB",
                Assert.Throws<StratusUserException>(() => new InferenceEngine(model, tokenizer, new EngineOptions { MaxKvCacheBytes = megabytes << 20 })).Message);
    }

    [Fact]
    public void A_full_waiting_queue_refuses_requests()
    {
        var (model, tokenizer) = TinyModel();
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, MaxBatchSize = 1, MaxWaiting = 2 });
        using var cancel = new CancellationTokenSource();
        var accepted = 0;
        Assert.Throws<EngineOverloadedException>(() =>
        {
            for (var i = 0; i < 50; i++)
            {
                engine.Submit(Greedy(tokenizer, "abc", 60), cancel.Token);
                accepted++;
            }
        });
        Assert.InRange(accepted, 2, 4);
        cancel.Cancel();
    }

    [Fact]
    public void The_prefix_cache_hands_a_prompt_the_whole_blocks_an_earlier_prompt_began_with()
    {
        var allocator = new BlockAllocator(blockCount: 8, blockSize: 4, prefixCaching: true);
        int[] first = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        var firstBlocks = new List<int>();
        Assert.Equal(0, allocator.AcquirePrefix(first, firstBlocks));
        Assert.True(allocator.TryAllocate(3, firstBlocks));
        allocator.Register(first, firstBlocks);
        var (block0, block1) = (firstBlocks[0], firstBlocks[1]);
        allocator.Free(firstBlocks);
        Assert.Equal(0, allocator.UsedBlocks);
        Assert.Equal(8, allocator.FreeBlocks); // cached blocks nobody holds still count as free

        var same = new List<int>();
        Assert.Equal(8, allocator.AcquirePrefix([1, 2, 3, 4, 5, 6, 7, 8, 42, 43], same)); // two whole blocks
        Assert.Equal([block0, block1], same);
        Assert.Equal(2, allocator.UsedBlocks);
        var sharedFirst = new List<int>();
        Assert.Equal(4, allocator.AcquirePrefix([1, 2, 3, 4, 0, 6, 7, 8, 9], sharedFirst)); // the second block differs
        Assert.Equal(2, allocator.UsedBlocks); // block 0 is held twice, counted once
        // A prompt that is exactly two cached blocks takes one: its last token must be computed.
        var exact = new List<int>();
        Assert.Equal(4, allocator.AcquirePrefix([1, 2, 3, 4, 5, 6, 7, 8], exact));
        // A block is known by everything before it too: the same tokens after another first block miss.
        var other = new List<int>();
        Assert.Equal(0, allocator.AcquirePrefix([9, 9, 9, 9, 5, 6, 7, 8, 9], other));
        foreach (var held in new[] { same, sharedFirst, exact, other }) allocator.Free(held);
        Assert.Equal(0, allocator.UsedBlocks);

        // Cached blocks are handed out only when no free block is left, least recently used first.
        var lru = new BlockAllocator(blockCount: 4, blockSize: 4, prefixCaching: true);
        foreach (var prompt in new[] { new[] { 1, 2, 3, 4, 5 }, [6, 7, 8, 9, 10] })
        {
            var promptBlocks = new List<int>();
            Assert.True(lru.TryAllocate(2, promptBlocks));
            lru.Register(prompt, promptBlocks);
            lru.Free(promptBlocks); // its first block stays cached, its second is free again
        }
        var taken = new List<int>();
        Assert.True(lru.TryAllocate(3, taken)); // two free blocks, then the older cached one
        Assert.Equal(0, lru.AcquirePrefix([1, 2, 3, 4, 5], []));
        var kept = new List<int>();
        Assert.Equal(4, lru.AcquirePrefix([6, 7, 8, 9, 10], kept));
        Assert.False(lru.TryAllocate(1, taken));

        // A prefix is evicted from its end: the blocks that remain are still reachable.
        var chain = new BlockAllocator(blockCount: 3, blockSize: 4, prefixCaching: true);
        int[] threeBlocks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        var chainBlocks = new List<int>();
        Assert.True(chain.TryAllocate(3, chainBlocks));
        chain.Register(threeBlocks, chainBlocks);
        chain.Free(chainBlocks);
        Assert.True(chain.TryAllocate(1, []));
        Assert.Equal(8, chain.AcquirePrefix(threeBlocks, []));

        // Without prefix caching nothing is matched.
        var plain = new BlockAllocator(blockCount: 8, blockSize: 4);
        var blocks = new List<int>();
        Assert.True(plain.TryAllocate(3, blocks));
        plain.Register(first, blocks);
        plain.Free(blocks);
        Assert.Equal(0, plain.AcquirePrefix(first, []));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public async Task Prefix_caching_gives_the_same_tokens_as_computing_every_prompt(string architecture)
    {
        var (model, tokenizer) = TinyModel(architecture);
        const string system = "you are terse. answer shortly.\n";
        string[] questions = ["what is the time?", "where is the sun?", "who are you, friend?", "why?"];
        async Task<(int[] Tokens, float[] Margins, int Cached)[]> Run(bool prefixCaching)
        {
            using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8, PrefixCaching = prefixCaching });
            // The first prompt alone fills the cache; the others then arrive together.
            // 48 prompt tokens and 12 generated: its last whole block (tokens 48-55) holds reply tokens.
            var first = engine.Submit(Greedy(tokenizer, system + questions[0], 12));
            var firstRun = await Generate(first);
            var results = new List<(int[], float[], int)> { (firstRun.Tokens, firstRun.Margins, first.CachedPromptTokens) };
            var rest = questions.Skip(1).Select(q => engine.Submit(Greedy(tokenizer, system + q, 8))).ToList();
            foreach (var sequence in rest)
            {
                var run = await Generate(sequence);
                results.Add((run.Tokens, run.Margins, sequence.CachedPromptTokens));
            }
            // A next turn: the first prompt, its reply and more; the reply's blocks were cached when it ended.
            int[] nextTurn = [.. tokenizer.Encode(system + questions[0]), .. results[0].Item1, .. tokenizer.Encode("\n?")];
            var followUp = engine.Submit(new GenerationRequest { PromptTokens = nextTurn, MaxTokens = 2, Sampling = new() { Temperature = 0 }, Logprobs = 2 });
            var followUpRun = await Generate(followUp);
            results.Add((followUpRun.Tokens, followUpRun.Margins, followUp.CachedPromptTokens));
            // Prompt log-probabilities need the whole prompt computed: such a request takes no cached block.
            var scored = engine.Submit(Greedy(tokenizer, system + questions[0], 2) with { PromptLogprobs = 0 });
            await Collect(scored);
            Assert.Equal(0, scored.CachedPromptTokens);
            Assert.Equal(0, engine.KvBlocksUsed);
            return [.. results];
        }
        var computed = await Run(prefixCaching: false);
        var cached = await Run(prefixCaching: true);
        Assert.All(computed, r => Assert.Equal(0, r.Cached));
        Assert.Equal(0, cached[0].Cached);
        // Each later prompt takes the whole blocks it shares with the first (one character, one token).
        // The next turn takes every whole block the first request computed: its prompt and all its
        // reply but the last token (sampled, never fed back).
        var firstComputed = tokenizer.Encode(system + questions[0]).Length + cached[0].Tokens.Length - 1;
        Assert.Equal(firstComputed / 8 * 8, cached[^1].Cached);
        for (var i = 1; i < questions.Length; i++)
        {
            var (firstPrompt, prompt) = (system + questions[0], system + questions[i]);
            var shared = 0;
            while (firstPrompt[shared] == prompt[shared]) shared++;
            Assert.Equal(shared / 8 * 8, cached[i].Cached);
        }
        Assert.True(cached[1].Cached >= 24);
        for (var i = 0; i < computed.Length - 1; i++) AssertSameGreedy((computed[i].Tokens, computed[i].Margins), cached[i].Tokens);
        // The next turn's prompt holds the first reply, so it is compared only when the replies agree.
        if (computed[0].Tokens.SequenceEqual(cached[0].Tokens)) AssertSameGreedy((computed[^1].Tokens, computed[^1].Margins), cached[^1].Tokens);
    }

    [Fact]
    public void Long_prompts_are_prefilled_in_chunks_while_running_sequences_decode()
    {
        var allocator = new BlockAllocator(blockCount: 16, blockSize: 4);
        var scheduler = new Scheduler(new EngineOptions { MaxBatchSize = 4, MaxPrefillTokensPerStep = 5 }, allocator);
        Sequence Queue(int promptLength)
        {
            var sequence = new Sequence(promptLength, new GenerationRequest { PromptTokens = [.. Enumerable.Range(0, promptLength)], MaxTokens = 4, Sampling = new() { Temperature = 0 } }, vocabSize: 16);
            Assert.True(scheduler.TryEnqueue([sequence]));
            return sequence;
        }
        var decoding = new List<Sequence>();
        List<(Sequence, int)> Step()
        {
            var (prefill, decode) = scheduler.Schedule();
            decoding = [.. decode];
            var planned = prefill.Select(s => (s, s.PrefillChunk)).ToList();
            foreach (var sequence in prefill) sequence.CachedTokens += sequence.PrefillChunk; // as the runner does
            return planned;
        }
        var shortPrompt = Queue(3);
        Assert.Equal([(shortPrompt, 3)], Step());
        var longPrompt = Queue(12);
        var later = Queue(2);
        // 5 prompt tokens a step: the long prompt in 5 + 5 + 2, the next prompt once there is room.
        // The short prompt's sequence decodes in every one of these steps.
        Assert.Equal([(longPrompt, 5)], Step());
        Assert.Equal([shortPrompt], decoding);
        Assert.Equal([(longPrompt, 5)], Step());
        Assert.Equal([shortPrompt], decoding);
        Assert.Equal([(longPrompt, 2), (later, 2)], Step());
        Assert.Equal([shortPrompt], decoding);
        var (_, decode) = scheduler.Schedule();
        Assert.Equal([shortPrompt, longPrompt, later], decode);
    }

    [Fact]
    public void A_request_s_sequences_are_queued_all_together_or_not_at_all()
    {
        var scheduler = new Scheduler(new EngineOptions { MaxWaiting = 3 }, new BlockAllocator(blockCount: 16, blockSize: 4));
        static Sequence New(int id) => new(id, new GenerationRequest { PromptTokens = [0, 1], MaxTokens = 2, Sampling = new() { Temperature = 0 } }, vocabSize: 2);
        Assert.True(scheduler.TryEnqueue([New(0), New(1)]));
        Assert.False(scheduler.TryEnqueue([New(2), New(3)])); // one place left: neither is queued
        Assert.Equal(2, scheduler.Waiting);
        Assert.True(scheduler.TryEnqueue([New(4)]));
        Assert.Equal(3, scheduler.Waiting);

        // Once the engine has stopped, nothing more is queued to wait for it forever.
        scheduler.FailAll(new EngineUnavailableException("the engine stopped"));
        Assert.Throws<EngineUnavailableException>(() => scheduler.TryEnqueue([New(5)]));
        Assert.Equal(0, scheduler.Waiting);
    }

    [Fact]
    public void Scheduler_admits_in_order_within_the_block_pool_and_frees_blocks_on_release()
    {
        var allocator = new BlockAllocator(blockCount: 4, blockSize: 4);
        var scheduler = new Scheduler(new EngineOptions { MaxBatchSize = 3, MaxTokensInFlight = 1000 }, allocator);
        var sequences = new Sequence[3];
        for (var i = 0; i < 3; i++)
        {
            // 2 prompt + 4 generated tokens: 2 blocks of 4 each.
            sequences[i] = new Sequence(i, new GenerationRequest { PromptTokens = [0, 1], MaxTokens = 4, Sampling = new() { Temperature = 0 } }, vocabSize: 2);
            Assert.True(scheduler.TryEnqueue([sequences[i]]));
        }
        var (prefill, decode) = scheduler.Schedule();
        Assert.Equal([sequences[0], sequences[1]], prefill);
        Assert.Empty(decode);
        Assert.Equal(4, allocator.UsedBlocks);
        Assert.Equal(1, scheduler.Waiting);
        foreach (var sequence in prefill) sequence.CachedTokens = sequence.PromptLength; // as the model runner's prefill does

        scheduler.Release(sequences[0], FinishReason.Length);
        (prefill, decode) = scheduler.Schedule();
        Assert.Equal([sequences[2]], prefill);
        Assert.Equal([sequences[1]], decode);

        sequences[1].Cancel();
        scheduler.Schedule();
        Assert.Equal(2, allocator.UsedBlocks);
        Assert.Equal(FinishReason.Cancelled, sequences[1].FinishReason);
    }

    [Fact]
    public async Task A_vocabulary_padded_past_the_tokenizer_is_never_sampled_nor_offered_as_an_alternative()
    {
        // Imported models pad vocab_size past their tokenizer (Qwen2.5: 151,936 rows for 151,665
        // tokens); those ids have no text. Here most of the vocabulary is padding.
        torch.manual_seed(7);
        var tokenizer = CharTokenizer.FromCorpus("ab");
        var model = CausalLanguageModel.Create(new ModelConfig { VocabSize = 64, BlockSize = 32, NLayer = 1, NHead = 2, NEmbd = 16, Bias = false });
        using var engine = new InferenceEngine(model, tokenizer, new EngineOptions { BlockSize = 8 });
        var request = new GenerationRequest
        {
            PromptTokens = tokenizer.Encode("ab"), MaxTokens = 20, Logprobs = 5, IgnoreEos = true,
            Sampling = new() { Temperature = 1, Seed = 3 },
        };
        var stream = new GenerationStream(engine, request);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in stream.ReadAllAsync())
        {
            text.Append(chunk.Text);
            Assert.True(chunk.Token!.Value.Token < tokenizer.VocabSize);
            Assert.All(chunk.Token.Value.TopLogprobs!, alternative => Assert.True(alternative.Token < tokenizer.VocabSize));
        }
        Assert.Equal(20, text.Length);

        var generated = string.Concat(new TextGenerator(model, tokenizer).Generate("ab", 20, new SamplingOptions { Seed = 3 }));
        Assert.Equal(20, generated.Length);
    }
}
