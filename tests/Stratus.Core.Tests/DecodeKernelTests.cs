// The decode kernels: fp32 equal to libtorch's matmul up to summation order, bf16 equal to a
// matmul with bf16-rounded weights, and a model decoding through them agrees with itself.
using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class DecodeKernelTests
{
    [Theory]
    [InlineData(DecodeWeights.Float32, 1, 100, 768)]
    [InlineData(DecodeWeights.Float32, 3, 257, 70)]
    [InlineData(DecodeWeights.BFloat16, 1, 100, 768)]
    [InlineData(DecodeWeights.BFloat16, 3, 257, 70)]
    [InlineData(DecodeWeights.BFloat16, 16, 64, 32)]
    public void Kernels_match_a_matmul(DecodeWeights weights, int rows, int outputs, int inputs)
    {
        torch.random.manual_seed(3);
        using var noGrad = no_grad();
        using var weight = randn(outputs, inputs);
        using var bias = randn(outputs);
        using var x = randn(2, rows, inputs);
        using var reference = weights == DecodeWeights.BFloat16 ? weight.to(ScalarType.BFloat16).to(ScalarType.Float32) : weight.alias();
        using var expected = nn.functional.linear(x, reference, bias);
        using var actual = new DecodeKernel(weights).Apply(x, weight, bias);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.allclose(actual, rtol: 1e-4, atol: 1e-4), $"max difference {(expected - actual).abs().max().item<float>()}");
    }

    /// <summary>Products over a megabyte of weights split their outputs over the kernel's
    /// threads, fused products together (a split's range crosses from one product into the next).</summary>
    [Theory]
    [InlineData(DecodeWeights.Float32)]
    [InlineData(DecodeWeights.BFloat16)]
    public void Fused_products_split_over_threads_match_matmuls(DecodeWeights weights)
    {
        torch.random.manual_seed(5);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = randn(3, 256);
        var layers = new[] { (randn(700, 256), (Tensor?)randn(700)), (randn(300, 256), (Tensor?)null), (randn(500, 256), (Tensor?)randn(500)) };
        var outputs = new DecodeKernel(weights, threads: 3).Apply(x, layers);
        for (var l = 0; l < layers.Length; l++)
        {
            var (weight, bias) = layers[l];
            var reference = weights == DecodeWeights.BFloat16 ? weight.to(ScalarType.BFloat16).to(ScalarType.Float32) : weight;
            var expected = nn.functional.linear(x, reference, bias);
            Assert.True(expected.allclose(outputs[l], rtol: 1e-4, atol: 1e-4), $"product {l}: max difference {(expected - outputs[l]).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData(DecodeWeights.Float32, 128)]
    [InlineData(DecodeWeights.Float32, 70)]
    [InlineData(DecodeWeights.BFloat16, 128)]
    [InlineData(DecodeWeights.BFloat16, 70)]
    public void A_row_comes_out_the_same_alone_and_in_a_batch(DecodeWeights weights, int inputs)
    {
        torch.random.manual_seed(4);
        using var noGrad = no_grad();
        using var weight = randn(200, inputs);
        using var x = randn(5, inputs);
        var kernel = new DecodeKernel(weights);
        using var batched = kernel.Apply(x, weight, null);
        for (var r = 0; r < 5; r++)
        {
            using var alone = kernel.Apply(x[r..(r + 1)], weight, null);
            using var row = batched[r..(r + 1)];
            Assert.True(alone.eq(row).all().item<bool>(), $"row {r} differs by {(alone - row).abs().max().item<float>()}");
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama-untied-bias-rope-scaling")]
    public void A_model_decoding_through_the_kernels_agrees_with_libtorch(string architecture)
    {
        using var model = ParityTests.RandomModel(ParityTests.Config(architecture));
        var tokens = new[] { 10, 200, 3000, 42 };
        var torchLogits = ParityTests.StratusLastLogits(model, tokens);
        var torchGreedy = ParityTests.StratusGreedy(model, tokens, 6);
        model.DecodeWeights = DecodeWeights.Float32;
        Assert.Equal(torchGreedy, ParityTests.StratusGreedy(model, tokens, 6));
        model.DecodeWeights = DecodeWeights.BFloat16;
        var bf16 = ParityTests.StratusLastLogits(model, tokens);
        Assert.True(torchLogits.Zip(bf16, (a, b) => Math.Abs(a - b)).Max() < 0.05 * torchLogits.Max(Math.Abs));
    }

    [Theory]
    [InlineData("gpt2", DecodeWeights.Float32)]
    [InlineData("gpt2-exact-gelu-no-bias", DecodeWeights.Float32)]
    [InlineData("llama-untied-bias-rope-scaling", DecodeWeights.Float32)]
    [InlineData("llama-gqa-tied", DecodeWeights.BFloat16)]
    public void A_whole_decode_step_in_managed_code_matches_libtorch_layers(string architecture, DecodeWeights weights)
    {
        var config = architecture == "gpt2-exact-gelu-no-bias" ? ParityTests.Config("gpt2") with { HiddenAct = "gelu", Bias = false } : ParityTests.Config(architecture);
        using var model = ParityTests.RandomModel(config);
        model.DecodeWeights = weights;
        using var noGrad = no_grad();
        using var tokens = randint(0, config.VocabSize, [3, 12], dtype: ScalarType.Int64);
        // Three rows prefilled with 6 tokens, then 6 decode steps: the logits of every decode step.
        Tensor Decode()
        {
            using var cache = model.CreateCache(3, 16);
            model.Forward(tokens[.., ..6], cache).Dispose();
            var steps = new List<Tensor>();
            for (var t = 6; t < 12; t++) steps.Add(model.Forward(tokens[.., t..(t + 1)], cache));
            using var _ = NewDisposeScope();
            return cat(steps, 1).MoveToOuterDisposeScope();
        }
        using var managed = Decode();
        // The reference: libtorch's layers around the same kernel's matmuls.
        model.ManagedDecodeStep = false;
        using var reference = Decode();
        var (difference, largest) = ((managed - reference).abs().max().item<float>(), reference.abs().max().item<float>());
        Assert.True(difference <= 1e-5f * largest, $"max difference {difference}, largest logit {largest}");

        // And the managed step is what ran: a decode step over this cache qualifies.
        model.ManagedDecodeStep = true;
        using var cache = model.CreateCache(3, 16);
        model.Forward(tokens[.., ..6], cache).Dispose();
        Assert.True(DecodeStep.Applies(rows: 3, newTokens: 1, cache, model.DecodeKernel, dropoutActive: false, model.parameters().First()));
        // A token id past the vocabulary is refused, as libtorch's embedding lookup does, not read
        // from past the table's end.
        using var outside = tensor(new long[] { 1, config.VocabSize, 2 }, [3, 1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward(outside, cache));
    }

    [Fact]
    public void A_decode_step_gives_libtorch_its_threads_back()
    {
        using var model = ParityTests.RandomModel(ParityTests.Config("gpt2"));
        model.DecodeWeights = DecodeWeights.Float32;
        var threads = torch.get_num_threads();
        try
        {
            torch.set_num_threads(2);
            using var noGrad = no_grad();
            using var cache = model.CreateCache(1, 8);
            using var tokens = torch.tensor(new long[] { 10, 200 }, [1, 2]);
            using (model.Forward(tokens, cache)) { }
            Assert.Equal(2, torch.get_num_threads());
        }
        finally { torch.set_num_threads(threads); }
    }
}
