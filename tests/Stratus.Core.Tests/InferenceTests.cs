using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
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
        Assert.Equal(greedy, string.Concat(generator.Generate("abc", 20, new SamplingOptions { Temperature = 1e-40, Seed = 1 })));
    }

    [Fact]
    public void Top_k_one_and_temperature_zero_are_greedy()
    {
        using var logits = torch.tensor(new float[] { 0.1f, 2f, 0.3f, 1.9f }, [1, 4]);
        using var generator = new Generator(1);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(1, TokenChooser.Choose(logits, new SamplingOptions { TopK = 1 }, generator).item<long>());
            Assert.Equal(1, TokenChooser.Choose(logits, new SamplingOptions { Temperature = 0 }, generator).item<long>());
        }
        // top_p keeps the smallest set reaching p: {1, 3} here, never 0 or 2.
        var seen = Enumerable.Range(0, 50).Select(_ => TokenChooser.Choose(logits, new SamplingOptions { TopP = 0.6 }, generator).item<long>()).ToHashSet();
        Assert.Subset(new HashSet<long> { 1, 3 }, seen);
    }
}
