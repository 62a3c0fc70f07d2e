// Reduced-precision compute: causal attention in bf16 (run in fp32 inside where libtorch's CPU
// kernel is slow in bf16, in bf16 beyond) matches fp32 attention, keeps the caller's dtype and
// passes gradients back.
using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class MatmulPrecisionTests
{
    [Theory]
    [InlineData(64)]
    [InlineData(300)]
    public void Bf16_causal_attention_matches_fp32_and_keeps_its_dtype(int length)
    {
        torch.random.manual_seed(5);
        using var scope = NewDisposeScope();
        var (q, k, v) = (randn(2, 3, length, 16), randn(2, 3, length, 16), randn(2, 3, length, 16));
        var leaves = new[] { q, k, v }.Select(t => t.requires_grad_(true)).ToArray();
        var expected = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true);
        using var upstream = randn(expected.shape);
        expected.backward([upstream]);

        var reduced = new[] { q, k, v }.Select(t => t.detach().to(ScalarType.BFloat16).requires_grad_(true)).ToArray();
        var precision = new MatmulPrecision { Dtype = ScalarType.BFloat16 };
        var actual = precision.CausalAttention(reduced[0], reduced[1], reduced[2], dropout: 0);
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        var outputError = (actual.to(ScalarType.Float32) - expected).abs().max().item<float>();
        Assert.True(outputError < 0.05, $"output differs by {outputError}");
        actual.backward([upstream.to(ScalarType.BFloat16)]);
        for (var i = 0; i < 3; i++)
        {
            using var gradient = reduced[i].grad!;
            using var reference = leaves[i].grad!;
            Assert.Equal(ScalarType.BFloat16, gradient.dtype);
            var error = (gradient.to(ScalarType.Float32) - reference).abs().max().item<float>() / reference.abs().max().item<float>();
            Assert.True(error < 0.05, $"gradient {i} differs by {error:P1} of its largest entry");
        }
    }
}
