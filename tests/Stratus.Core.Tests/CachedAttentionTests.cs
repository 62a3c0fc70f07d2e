// Attention over cached keys and values through libtorch, on every device this machine has: the
// output's memory layout is the kernel's choice (a GPU's fused attention returns the heads
// strided), and grouped-query attention must not depend on it.
using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class CachedAttentionTests
{
    public static TheoryData<string, ScalarType> DevicesAndDtypes()
    {
        var data = new TheoryData<string, ScalarType>();
        foreach (var device in torch.cuda.is_available() ? new[] { "cpu", "cuda" } : ["cpu"])
            foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
                data.Add(device, dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(DevicesAndDtypes))]
    public void Grouped_query_attention_over_a_cache_equals_attention_with_the_key_value_heads_repeated(string deviceName, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var device = torch.device(deviceName);
        using var generator = new Generator(3);
        const int heads = 4, kvHeads = 2, dim = 8, cached = 5;
        Tensor Random(params long[] shape) => randn(shape, generator: generator).to(device).to(dtype);
        var keys = Random(2, kvHeads, cached, dim);
        var values = Random(2, kvHeads, cached, dim);
        // One new token (decode: no mask) and three new tokens after a context (a mask).
        foreach (var (t, mask) in new[] { (1, (Tensor?)null), (3, arange(cached, device: device).le(arange(cached - 3, cached, device: device).unsqueeze(1)).view(1, 1, 3, cached)) })
        {
            var q = Random(2, heads, t, dim);
            var expected = nn.functional.scaled_dot_product_attention(q, MatmulPrecision.RepeatKvHeads(keys, heads), MatmulPrecision.RepeatKvHeads(values, heads), attn_mask: mask);
            var actual = CachedAttention.Compute(q, keys, values, mask);
            Assert.Equal(expected.shape, actual.shape);
            Assert.True(actual.to(ScalarType.Float32).allclose(expected.to(ScalarType.Float32), rtol: 0, atol: dtype == ScalarType.BFloat16 ? 2e-2 : 1e-5), $"t={t}");
        }
    }
}
