using System.Runtime.CompilerServices;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class InferenceTests
{
    static Gpt TinyModel(int vocab = 20)
    {
        torch.manual_seed(3);
        var model = new Gpt(new ModelConfig { VocabSize = vocab, BlockSize = 32, NLayer = 2, NHead = 2, NEmbd = 16, Bias = true });
        model.eval();
        return model;
    }

    [Fact]
    public void Cached_decoding_gives_the_same_logits_as_a_full_forward()
    {
        using var model = TinyModel();
        using var noGrad = no_grad();
        // Sharp attention (weights at 10x their initial scale): a wrong position or mask shows.
        foreach (var parameter in model.parameters()) parameter.mul_(10);
        using var tokens = torch.randint(0, 20, [1, 12], dtype: ScalarType.Int64);
        using var full = model.Forward(tokens);
        using var cache = model.CreateCache(1, 32);
        using var prefill = model.Forward(tokens[.., ..7], cache);
        Assert.True(prefill.allclose(full[.., ..7], rtol: 1e-4, atol: 1e-5));
        using var chunk = model.Forward(tokens[.., 7..10], cache); // several tokens after a context
        Assert.True(chunk.allclose(full[.., 7..10], rtol: 1e-4, atol: 1e-5));
        for (var t = 10; t < 12; t++)
        {
            using var step = model.Forward(tokens[.., t..(t + 1)], cache);
            Assert.True(step.allclose(full[.., t..(t + 1)], rtol: 1e-4, atol: 1e-5), $"position {t}");
        }
        Assert.Equal(12, cache.Length);
    }

    /// <summary>A forward that fails after the cache made its positions (here libtorch's
    /// embedding lookup refusing a token id) leaves the cache as it was: the next step gets
    /// positions of its own, not the failed step's, which its dispose scope released.</summary>
    [Fact]
    public void A_step_after_a_failed_one_gets_its_own_positions()
    {
        using var model = TinyModel();
        using var noGrad = no_grad();
        using var tokens = torch.tensor(new long[] { 1, 5, 9, 3 }, [1, 4]);
        using var expected = model.Forward(tokens);
        using var cache = model.CreateCache(1, 32);
        using var outside = torch.tensor(new long[] { 1, 20, 9 }, [1, 3]);
        Assert.ThrowsAny<Exception>(() => model.Forward(outside, cache));
        Assert.Equal(0, cache.Length);
        using var logits = model.Forward(tokens, cache);
        Assert.True(logits.allclose(expected, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void The_same_seed_gives_the_same_sample_and_another_seed_another()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var model = TinyModel(tokenizer.VocabSize);
        var generator = new TextGenerator(model, tokenizer);
        string Sample(long seed) => string.Concat(generator.Generate("abc", 25, new SamplingOptions { Temperature = 1.0, TopK = 10, TopP = 0.95, Seed = seed }));
        Assert.Equal(Sample(5), Sample(5));
        Assert.NotEqual(Sample(5), Sample(6));
        Assert.Equal(25, Sample(5).Length);
    }

    [Theory]
    [InlineData(1.0, 0, 1.0, 5)]
    [InlineData(0.8, 10, 0.9, 6)]
    [InlineData(1.5, 4, 1.0, -7)]
    [InlineData(0.0, 0, 1.0, 8)]
    public async Task The_generator_draws_the_tokens_the_serving_engine_draws_for_one_seed(double temperature, int topK, double topP, long seed)
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var model = TinyModel(tokenizer.VocabSize);
        var sampling = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, Seed = seed };
        // 3 prompt tokens and 29 generated fill the context of 32 (the engine's limit).
        var generated = string.Concat(new TextGenerator(model, tokenizer).Generate("abc", 29, sampling));
        using var engine = new InferenceEngine(model, tokenizer);
        var sequence = engine.Submit(new GenerationRequest { PromptTokens = tokenizer.Encode("abc"), MaxTokens = 29, Sampling = sampling });
        var served = new List<int>();
        await foreach (var token in sequence.Output.ReadAllAsync()) served.Add(token.Token);
        Assert.Equal(29, served.Count);
        Assert.Equal(tokenizer.Decode([.. served]), generated);
    }

    [Fact]
    public void Sampling_past_the_context_continues_from_the_last_block_size_tokens_as_nanoGPT_does()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var model = TinyModel(tokenizer.VocabSize);
        Assert.Equal(32, model.Config.BlockSize);
        var sampled = string.Concat(new TextGenerator(model, tokenizer).Generate("abc", 60, new SamplingOptions { Temperature = 0 }));
        Assert.Equal(60, sampled.Length);

        // nanoGPT's loop: no cache, each token from the last block_size tokens at most.
        var tokens = tokenizer.Encode("abc").Select(t => (long)t).ToList();
        using (torch.no_grad())
        {
            while (tokens.Count < 63)
            {
                using var scope = torch.NewDisposeScope();
                var window = tokens.Skip(Math.Max(0, tokens.Count - 32)).ToArray();
                tokens.Add(model.Forward(torch.tensor(window, [1, window.Length]))[0, -1].argmax().item<long>());
            }
        }
        Assert.Equal(tokenizer.Decode([.. tokens.Skip(3).Select(t => (int)t)]), sampled);
    }

    [Fact]
    public void Prompts_that_fill_the_context_or_cannot_be_spelled_are_refused()
    {
        var tokenizer = CharTokenizer.FromCorpus("ab");
        using var model = TinyModel(tokenizer.VocabSize);
        var generator = new TextGenerator(model, tokenizer);
        // Refused when called, before any text streams (the CLI prints the prompt only after the call).
        Assert.Contains("context of 32", Assert.Throws<StratusUserException>(() => generator.Generate(new string('a', 40), 5, new SamplingOptions())).Message);
        Assert.Contains("'z'", Assert.Throws<StratusUserException>(() => generator.Generate("abz", 5, new SamplingOptions())).Message);
    }

    [Fact]
    public void The_generator_and_the_engine_refuse_the_same_sampling_settings_with_the_same_words()
    {
        var tokenizer = CharTokenizer.FromCorpus("ab");
        using var model = TinyModel(tokenizer.VocabSize);
        var generator = new TextGenerator(model, tokenizer);
        using var engine = new InferenceEngine(model, tokenizer);
        SamplingOptions[] refused =
        [
            new() { Temperature = double.PositiveInfinity }, new() { Temperature = double.NaN }, new() { Temperature = -1 },
            new() { TopK = -1 }, new() { TopP = 0 }, new() { TopP = double.NaN }, new() { MinP = 1.5 },
        ];
        foreach (var sampling in refused)
        {
            var fromGenerator = Assert.Throws<StratusUserException>(() => generator.Generate("ab", 5, sampling)).Message;
            var fromEngine = Assert.Throws<StratusUserException>(() => engine.Submit(new GenerationRequest { PromptTokens = [0], MaxTokens = 1, Sampling = sampling })).Message;
            Assert.Equal(fromGenerator, fromEngine);
        }
    }

    /// <summary>A tokenizer that spells more tokens than the model has rows (a mismatched
    /// checkpoint): the generator refuses such a prompt as the engine that runs it does, in one
    /// line and before any text, not with libtorch's index error halfway through.</summary>
    [Fact]
    public void The_generator_and_the_engine_refuse_a_prompt_token_outside_the_model_s_vocabulary_with_the_same_words()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrstuvwxy");
        using var model = TinyModel(20);
        var generator = new TextGenerator(model, tokenizer);
        using var engine = new InferenceEngine(model, tokenizer);
        var fromGenerator = Assert.Throws<StratusUserException>(() => generator.Generate("aby", 5, new SamplingOptions())).Message;
        var fromEngine = Assert.Throws<StratusUserException>(() => engine.Submit(new GenerationRequest { PromptTokens = tokenizer.Encode("aby"), MaxTokens = 5 })).Message;
        Assert.Equal("token id 24 is outside the vocabulary of 20", fromEngine);
        Assert.Equal(fromEngine, fromGenerator);
    }

    /// <summary>Within the context the engine runs ahead of the caller: a cancellation ends the
    /// text at once there too, as past the context, not after the tokens the engine has made.</summary>
    [Fact]
    public void A_cancellation_ends_the_text_at_once_though_the_engine_ran_ahead()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var model = TinyModel(tokenizer.VocabSize);
        using var cancellation = new CancellationTokenSource();
        var pieces = 0;
        foreach (var _ in new TextGenerator(model, tokenizer).Generate("abc", 29, new SamplingOptions { Seed = 1 }, cancellation.Token))
        {
            if (++pieces > 1) continue;
            // Time for the engine to make the other 28 tokens (a few milliseconds here).
            Thread.Sleep(300);
            cancellation.Cancel();
        }
        Assert.Equal(1, pieces);
    }

    /// <summary>A tiny GPT with a long context whose every step, decode steps too (libtorch's, not
    /// the decode kernel's), runs <paramref name="onStep"/> on the engine's thread first.</summary>
    static Gpt SteppedModel(int vocab, int context, Action onStep)
    {
        torch.manual_seed(3);
        var model = new Gpt(new ModelConfig { VocabSize = vocab, BlockSize = context, NLayer = 1, NHead = 2, NEmbd = 16, Bias = true });
        model.DecodeWeights = DecodeWeights.Torch;
        ((Embedding)model.named_modules().Single(m => m.name == "transformer.wte").module).register_forward_pre_hook((_, input) =>
        {
            onStep();
            return input;
        });
        return model;
    }

    /// <summary>A caller that stops reading (`sample | less`, left open) holds the engine at
    /// <see cref="TextGenerator.ReadAhead"/> tokens it has not read, rather than letting it make
    /// the rest of the context for nobody; reading lets it go on, token for token.</summary>
    [Fact]
    public void The_engine_waits_for_a_caller_who_does_not_read()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        var steps = 0;
        using var model = SteppedModel(tokenizer.VocabSize, 512, () => Interlocked.Increment(ref steps));
        const int count = 400;
        using var pieces = new TextGenerator(model, tokenizer).Generate("abc", count, new SamplingOptions { Temperature = 0 }).GetEnumerator();
        Assert.True(pieces.MoveNext());
        // The prefill and a decode step for each token after the first: one read, ReadAhead unread.
        var held = TextGenerator.ReadAhead + 1;
        void AssertHeldAt(int expected)
        {
            Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref steps) >= expected, TimeSpan.FromSeconds(60)), $"{Volatile.Read(ref steps)} steps");
            Thread.Sleep(300); // time for a few hundred more steps, were the engine not waiting
            Assert.Equal(expected, Volatile.Read(ref steps));
        }
        AssertHeldAt(held);
        for (var i = 0; i < 10; i++) Assert.True(pieces.MoveNext());
        AssertHeldAt(held + 10);
        var read = 11;
        while (pieces.MoveNext()) read++;
        Assert.Equal(count, read);
        Assert.Equal(count, Volatile.Read(ref steps));
    }

    /// <summary>Generate's engine is the generation's own: a caller that stops reading and lets
    /// go of the enumerator without disposing it leaves no engine thread behind, and once the GC
    /// has found the enumerator unreachable the engine makes no more tokens for nobody.</summary>
    [Fact]
    public void An_abandoned_generation_ends_its_engine_s_thread()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        Thread? engineThread = null;
        var steps = 0;
        // Slowed, so that the 250 tokens would take 2.5 s.
        using var model = SteppedModel(tokenizer.VocabSize, 256, () =>
        {
            engineThread = Thread.CurrentThread;
            Interlocked.Increment(ref steps);
            Thread.Sleep(10);
        });
        ReadAndLetGo(new TextGenerator(model, tokenizer), pieces: 2);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.True(engineThread!.Join(TimeSpan.FromSeconds(30)), "the engine's thread is still running");
        Assert.InRange(Volatile.Read(ref steps), 2, 125);
    }

    /// <summary>Starts a generation of 250 tokens, reads <paramref name="pieces"/> of them and
    /// keeps no reference to it (a method of its own: a debug build keeps locals alive to the
    /// end of their method).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void ReadAndLetGo(TextGenerator generator, int pieces)
    {
        var enumerator = generator.Generate("abc", 250, new SamplingOptions { Seed = 1 }).GetEnumerator();
        for (var i = 0; i < pieces; i++) Assert.True(enumerator.MoveNext());
    }

    /// <summary>On an engine other requests share (a server's, an IChatClient's), a stream whose
    /// reader stops and lets go of its enumerator without disposing it is cancelled once the GC
    /// has found the enumerator unreachable, rather than generating to max_tokens for nobody.</summary>
    [Fact]
    public void An_abandoned_generation_stream_s_sequence_is_cancelled()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var gated = new GatedEngine(tokenizer);
        var (gate, engine) = (gated.Gate, gated.Engine);
        var sequence = engine.Submit(new GenerationRequest { PromptTokens = tokenizer.Encode("abc"), MaxTokens = 250, Sampling = new SamplingOptions { Seed = 1 } });
        ReadAndLetGo(() => new GenerationStream(engine.Tokenizer, sequence).ReadAllAsync(), items: 2);
        CollectStepByStep(gate, ended: () => sequence.FinishReason is not null);
        Assert.Equal(FinishReason.Cancelled, sequence.FinishReason);
        Assert.InRange(sequence.Generated, 2, 125);
    }

    /// <summary><see cref="An_abandoned_generation_stream_s_sequence_is_cancelled"/> through the
    /// IChatClient, whose streaming enumerator reads one.</summary>
    [Fact]
    public void An_abandoned_streaming_chat_stops_generating()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs \n");
        using var gated = new GatedEngine(tokenizer);
        var (gate, engine) = (gated.Gate, gated.Engine);
        var client = new StratusChatClient(engine, ChatTemplate.For(tokenizer), "tiny");
        ReadAndLetGo(() => client.GetStreamingResponseAsync([new Microsoft.Extensions.AI.ChatMessage(Microsoft.Extensions.AI.ChatRole.User, "abc")], new Microsoft.Extensions.AI.ChatOptions { MaxOutputTokens = 250, Seed = 1 }), items: 2);
        CollectStepByStep(gate, ended: () => engine.Running + engine.Waiting == 0);
        Assert.Equal(0, engine.Running + engine.Waiting);
        Assert.InRange(gate.Steps, 2, 125);
    }

    /// <summary>Collects garbage, runs its finalizers and lets the engine run one more step, until
    /// the generation has <paramref name="ended"/> (or the engine has made 100 more steps). One
    /// collection is not enough: the read that returned last was completed by a thread-pool
    /// thread that, until it has unwound, still holds the enumerator (a single collection right
    /// after the read missed it in 1 to 28 of 40 tries here, and then nothing else collected it
    /// before the engine made all 250 tokens). Step by step, the tokens made after the reader
    /// let go count collections, not how long a busy machine took to schedule that thread.</summary>
    static void CollectStepByStep(StepGate gate, Func<bool> ended)
    {
        for (var round = 0; round < 100 && !ended(); round++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            gate.Step(ended);
        }
    }

    /// <summary>An engine over a stepped model whose steps after the first 8 wait for
    /// <see cref="Gate"/>; disposes the engine before the model and the gate.</summary>
    sealed class GatedEngine : IDisposable
    {
        readonly Gpt model;
        public StepGate Gate { get; } = new(free: 8);
        public InferenceEngine Engine { get; }

        public GatedEngine(CharTokenizer tokenizer)
        {
            model = SteppedModel(tokenizer.VocabSize, 256, Gate.Enter);
            Engine = new InferenceEngine(model, tokenizer, new EngineOptions { DecodeWeights = DecodeWeights.Torch });
        }

        public void Dispose()
        {
            Engine.Dispose();
            model.Dispose();
            Gate.Dispose();
        }
    }

    /// <summary>Holds each model step after the first <paramref name="free"/> at its start until
    /// the test lets it run (<see cref="Step"/>), so that what the engine makes meanwhile does
    /// not depend on how fast the machine runs the test.</summary>
    sealed class StepGate(int free) : IDisposable
    {
        readonly SemaphoreSlim permits = new(0);
        int steps;

        /// <summary>Steps begun.</summary>
        public int Steps => Volatile.Read(ref steps);

        /// <summary>The model's hook, on the engine's thread. Held 30 s at most: a test that fails
        /// before it lets the engine go must not leave the engine's Dispose waiting forever.</summary>
        public void Enter()
        {
            if (Interlocked.Increment(ref steps) > free) permits.Wait(TimeSpan.FromSeconds(30));
        }

        /// <summary>Lets one held step run, and returns once the engine has begun the next one
        /// or the generation has <paramref name="ended"/>.</summary>
        public void Step(Func<bool> ended)
        {
            var before = Steps;
            permits.Release();
            Assert.True(SpinWait.SpinUntil(() => Steps > before || ended(), TimeSpan.FromSeconds(30)), "the engine neither stepped nor ended");
        }

        public void Dispose() => permits.Dispose();
    }

    /// <summary>Starts an asynchronous sequence, reads <paramref name="items"/> of it and keeps no
    /// reference to its enumerator, which it does not dispose (started here, not by the caller:
    /// see <see cref="ReadAndLetGo(TextGenerator, int)"/>).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static void ReadAndLetGo<T>(Func<IAsyncEnumerable<T>> start, int items)
    {
        var enumerator = start().GetAsyncEnumerator();
        for (var i = 0; i < items; i++) Assert.True(enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult());
    }

    /// <summary>Where the engine is the slower, the caller waits for it at nearly every token:
    /// a wait allocates nothing (each allocated a task), so reading a token costs what it costs
    /// when the engine has made all it may before the caller reads.</summary>
    [Fact]
    public void Waiting_for_the_engine_s_next_token_allocates_nothing()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        var slow = false;
        var steps = 0;
        using var model = SteppedModel(tokenizer.VocabSize, 512, () =>
        {
            Interlocked.Increment(ref steps);
            if (Volatile.Read(ref slow)) Thread.Sleep(1);
        });
        var generator = new TextGenerator(model, tokenizer);
        // Bytes this thread allocates reading a greedy generation's tokens after its first.
        long Read(int count, bool engineBehind)
        {
            Volatile.Write(ref slow, engineBehind);
            Volatile.Write(ref steps, 0);
            using var pieces = generator.Generate("abc", count + 1, new SamplingOptions { Temperature = 0 }).GetEnumerator();
            Assert.True(pieces.MoveNext());
            // Ahead: its prefill and as many decode steps as it may run ahead have begun before
            // reading does.
            if (!engineBehind) Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref steps) == Math.Min(count, TextGenerator.ReadAhead) + 1, TimeSpan.FromSeconds(60)));
            var read = 0;
            var before = GC.GetAllocatedBytesForCurrentThread();
            while (pieces.MoveNext()) read++;
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(count, read);
            return allocated;
        }
        double PerToken(bool engineBehind)
        {
            Read(50, engineBehind);
            return (Read(400, engineBehind) - Read(100, engineBehind)) / 300.0;
        }
        Assert.Equal(PerToken(engineBehind: false), PerToken(engineBehind: true), tolerance: 4);
    }

    /// <summary>Each Generate runs an engine of its own: the model's decode kernel, with its bf16
    /// copies of the weights and its thread count, is the one it had, not a new one per sample.</summary>
    [Fact]
    public void Generating_keeps_the_model_s_decode_kernel()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var model = TinyModel(tokenizer.VocabSize);
        var kernel = new DecodeKernel(DecodeWeights.BFloat16, threads: 1);
        model.DecodeKernel = kernel;
        Assert.Equal(5, string.Concat(new TextGenerator(model, tokenizer).Generate("abc", 5, new SamplingOptions { Temperature = 0 })).Length);
        Assert.Same(kernel, model.DecodeKernel);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-2)]
    public void The_inference_benchmark_refuses_fewer_than_one_thread(int threads)
    {
        var tokenizer = CharTokenizer.FromCorpus("ab");
        using var model = TinyModel(tokenizer.VocabSize);
        // Unchecked, libtorch's set_num_threads aborts the whole process.
        var options = new InferenceBenchmarkOptions { PromptTokens = 4, DecodeTokens = 2, Threads = threads, Repeats = 1, IncludeLlamaCpp = false };
        Assert.Contains("threads and repeats must be at least 1", Assert.Throws<StratusUserException>(() => InferenceBenchmark.Run(model, tokenizer, options)).Message);
    }

    [Fact]
    public void The_inference_benchmark_measures_up_to_the_whole_context()
    {
        var tokenizer = CharTokenizer.FromCorpus("ab");
        using var model = TinyModel(tokenizer.VocabSize);
        var options = new InferenceBenchmarkOptions { PromptTokens = 16, DecodeTokens = model.Config.BlockSize - 16, Threads = 1, Repeats = 1, IncludeLlamaCpp = false };
        Assert.NotEmpty(InferenceBenchmark.Run(model, tokenizer, options));
        Assert.Contains("exceed the model's context", Assert.Throws<StratusUserException>(() => InferenceBenchmark.Run(model, tokenizer, options with { DecodeTokens = options.DecodeTokens + 1 })).Message);
    }

    [Fact]
    public void Edge_values_of_max_tokens_and_temperature_sample_without_overflow()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var model = TinyModel(tokenizer.VocabSize);
        var generator = new TextGenerator(model, tokenizer);
        // As many tokens as one asks for: the cache is sized by the context, not prompt + max_tokens.
        Assert.Equal(5, generator.Generate("abc", int.MaxValue, new SamplingOptions { Temperature = 0 }).Take(5).Count());
        // A temperature too small for float32 divides to the greedy choice, not to a NaN softmax.
        var greedy = string.Concat(generator.Generate("abc", 20, new SamplingOptions { Temperature = 0 }));
        Assert.Equal(greedy, string.Concat(generator.Generate("abc", 20, new SamplingOptions { Temperature = 1e-30, Seed = 1 })));
        Assert.Equal(greedy, string.Concat(generator.Generate("abc", 20, new SamplingOptions { Temperature = 1e-40, Seed = 1 })));
    }

    /// <summary>The server reads every generation with a cancellable token (its request's, linked
    /// to shutdown), and a streaming reader usually waits for the engine's next token. Such a wait
    /// allocates nothing more than one without a token: the channel made a new wait, registered
    /// with the token, each time (96 bytes a token more here).</summary>
    [Fact]
    public void Waiting_for_a_token_with_a_cancellable_token_allocates_nothing_more()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var reading = new CancellationTokenSource();
        // Bytes all threads allocate while a reader waits for each of `count` tokens in turn (its
        // continuations run on the thread pool).
        long Read(int count, CancellationToken cancellation)
        {
            var sequence = new Sequence(1, new GenerationRequest { PromptTokens = [0], MaxTokens = count }, tokenizer.VocabSize);
            var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync(cancellation).GetAsyncEnumerator();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < count; i++)
            {
                var next = chunks.MoveNextAsync();
                Assert.False(next.IsCompleted);
                sequence.Append(new GeneratedToken(i % 19, 0, null), emit: true);
                while (!next.IsCompleted) Thread.Yield();
                Assert.True(next.GetAwaiter().GetResult());
            }
            var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            sequence.Finish(FinishReason.Length);
            while (chunks.MoveNextAsync().AsTask().GetAwaiter().GetResult()) { }
            return allocated;
        }
        // Another thread's bytes can only add to a count: the least of three counts each.
        double PerToken(CancellationToken cancellation)
        {
            long Least(int count) => Enumerable.Range(0, 3).Min(_ => Read(count, cancellation));
            Read(50, cancellation);
            return (Least(400) - Least(100)) / 300.0;
        }
        Assert.Equal(PerToken(CancellationToken.None), PerToken(reading.Token), tolerance: 4);
    }

    /// <summary>A stream waiting for its next token ends with an OperationCanceledException once
    /// its reader's token is cancelled, and cancels the sequence.</summary>
    [Fact]
    public async Task A_stream_waiting_for_a_token_ends_when_its_reader_s_token_is_cancelled()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        var sequence = new Sequence(1, new GenerationRequest { PromptTokens = [0], MaxTokens = 10 }, tokenizer.VocabSize);
        using var reading = new CancellationTokenSource();
        await using var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync(reading.Token).GetAsyncEnumerator();
        sequence.Append(new GeneratedToken(1, 0, null), emit: true);
        Assert.True(await chunks.MoveNextAsync());
        var next = chunks.MoveNextAsync();
        Assert.False(next.IsCompleted);
        reading.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await next);
        Assert.True(sequence.CancelRequested);
    }

    /// <summary>A cancelled reader resumes on the thread pool, as it did from the channel's own
    /// cancellation, not inside the canceller's Cancel(): a shutdown that cancels every request
    /// from one thread would run each reader's code in turn there.</summary>
    [Fact]
    public async Task A_cancelled_stream_resumes_its_reader_outside_the_canceller_s_cancel()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        var sequence = new Sequence(1, new GenerationRequest { PromptTokens = [0], MaxTokens = 10 }, tokenizer.VocabSize);
        using var reading = new CancellationTokenSource();
        await using var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync(reading.Token).GetAsyncEnumerator();
        var next = chunks.MoveNextAsync();
        Assert.False(next.IsCompleted);
        var cancelReturned = false;
        var resumedInsideCancel = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var awaiter = next.GetAwaiter();
        // On a thread with no synchronization context (the test's would take the continuation).
        await Task.Run(() =>
        {
            var cancellingThread = Environment.CurrentManagedThreadId;
            awaiter.OnCompleted(() => resumedInsideCancel.SetResult(Environment.CurrentManagedThreadId == cancellingThread && !Volatile.Read(ref cancelReturned)));
            reading.Cancel();
            Volatile.Write(ref cancelReturned, true);
        });
        Assert.False(await resumedInsideCancel.Task);
        Assert.ThrowsAny<OperationCanceledException>(() => awaiter.GetResult());
        Assert.True(sequence.CancelRequested);
    }

    /// <summary>A reader's token may outlive its stream (an IChatClient caller's, for the life of
    /// its application): a stream whose reader lets go of its enumerator unfinished without
    /// disposing it leaves nothing registered with that token, which would keep the stream's
    /// wait, its channel and the tokens in it for as long as the token lives.</summary>
    [Fact]
    public void An_abandoned_stream_leaves_nothing_registered_with_its_reader_s_token()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs ");
        using var reading = new CancellationTokenSource();
        var channel = ReadAStreamAndLetGo(tokenizer, reading.Token);
        for (var round = 0; round < 10 && channel.IsAlive; round++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.False(channel.IsAlive, "the abandoned stream's channel is still reachable");
    }

    /// <summary>Reads a stream's first token after waiting for it, then a second already there,
    /// and keeps no reference to the stream, its sequence or its enumerator; a weak reference to
    /// the sequence's channel comes back.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static WeakReference ReadAStreamAndLetGo(ITokenizer tokenizer, CancellationToken cancellation)
    {
        var sequence = new Sequence(1, new GenerationRequest { PromptTokens = [0], MaxTokens = 10 }, tokenizer.VocabSize);
        var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync(cancellation).GetAsyncEnumerator();
        var next = chunks.MoveNextAsync();
        Assert.False(next.IsCompleted);
        sequence.Append(new GeneratedToken(1, 0, null), emit: true);
        Assert.True(next.AsTask().GetAwaiter().GetResult());
        sequence.Append(new GeneratedToken(2, 0, null), emit: true);
        Assert.True(chunks.MoveNextAsync().AsTask().GetAwaiter().GetResult());
        return new WeakReference(sequence.Output);
    }

    /// <summary>A chat carries its template's end-of-turn text as a stop string, so watching for
    /// one is on every chat's per-token path: it must allocate nothing more than the text itself.</summary>
    [Fact]
    public void Watching_for_stop_strings_allocates_nothing_per_token()
    {
        var tokenizer = CharTokenizer.FromCorpus("abcdefghijklmnopqrs <|>_");
        // Bytes the reader allocates for the tokens of a finished sequence, all read on this thread.
        long Read(int count, IReadOnlyList<string> stop)
        {
            var sequence = new Sequence(1, new GenerationRequest { PromptTokens = [0], MaxTokens = count, Stop = stop }, tokenizer.VocabSize);
            var random = new Random(1);
            for (var i = 0; i < count; i++) sequence.Append(new GeneratedToken(random.Next(19), 0, null), emit: true);
            sequence.Finish(FinishReason.Length);
            var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync().GetAsyncEnumerator();
            var before = GC.GetAllocatedBytesForCurrentThread();
            while (chunks.MoveNextAsync().AsTask().GetAwaiter().GetResult()) { }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        double PerToken(IReadOnlyList<string> stop)
        {
            Read(50, stop);
            return (Read(500, stop) - Read(100, stop)) / 400.0;
        }
        Assert.Equal(PerToken([]), PerToken(["<|im_end|>", "w", "x", "y", "z"]), tolerance: 1);
    }

    /// <summary>A generated special token is left out of the text (skip_special_tokens) on the
    /// per-token path: doing so must allocate nothing, stop strings watched or not.</summary>
    [Fact]
    public void Leaving_out_generated_special_tokens_allocates_nothing_per_token()
    {
        var tokenizer = GeneratedSpecialTokensTests.EveryByteTokenizer();
        var special = Enumerable.Range(0, tokenizer.VocabSize).Where(tokenizer.IsSpecial).ToArray();
        long Read(int count, IReadOnlyList<string> stop)
        {
            var sequence = new Sequence(1, new GenerationRequest { PromptTokens = [0], MaxTokens = count, Stop = stop, IgnoreEos = true }, tokenizer.VocabSize);
            for (var i = 0; i < count; i++) sequence.Append(new GeneratedToken(special[i % special.Length], 0, null), emit: true);
            sequence.Finish(FinishReason.Length);
            var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync().GetAsyncEnumerator();
            var before = GC.GetAllocatedBytesForCurrentThread();
            while (chunks.MoveNextAsync().AsTask().GetAwaiter().GetResult()) { }
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        foreach (IReadOnlyList<string> stop in new[] { [], new[] { "<|im_end|>" } })
        {
            Read(50, stop);
            Assert.Equal(0, (Read(500, stop) - Read(100, stop)) / 400.0, tolerance: 1);
        }
    }
}
