// Key/value caches for incremental decoding. The model talks to a cache only through
// IKvCache, so a simple contiguous cache (`bench infer`'s, the tests') and the serving
// engine's block pool (which `stratus sample` runs on too) plug into the same attention code.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Models;

public interface IKvCache
{
    /// <summary>Called once per forward with the number of new tokens per row.</summary>
    void BeginStep(int newTokens);

    /// <summary>Between BeginStep and EndStep: the absolute positions of the new tokens, shape
    /// [B, T] (int64, on the model's device). Made on first use, so that a decode step run whole
    /// in managed code (which reads them from <see cref="InPlace"/>) makes no tensor.</summary>
    Tensor Positions { get; }

    /// <summary>Stores the new keys k and values v of one layer ([B, KV, T, D]) and returns the
    /// attention of the new queries q ([B, H, T, D], H a multiple of KV: grouped-query attention)
    /// over everything the cache holds for their rows, [B, H, T, D] in the queries' dtype.
    /// Inference only: no dropout.</summary>
    Tensor Attend(int layer, Tensor q, Tensor k, Tensor v);

    /// <summary>Called after the last layer: the new tokens become part of the context.</summary>
    void EndStep();

    /// <summary>Between BeginStep and EndStep of a step of one new token per row over fp32 buffers
    /// on the CPU: where each row's keys and values lie (the new token's slot is each row's last
    /// position), so that a whole decode step can store and attend in place (DecodeStep); null
    /// for any other step.</summary>
    OneTokenAttention? InPlace { get; }

    /// <summary>Whether steps of one new token per row get <see cref="InPlace"/> (fp32 buffers on
    /// the CPU): known before BeginStep, which a step that then cannot run must not have begun.</summary>
    bool AttendsInPlace { get; }

    /// <summary>The key and value buffers of a layer, as <see cref="InPlace"/>'s offsets index them.</summary>
    (Tensor Keys, Tensor Values) Buffers(int layer);
}

/// <summary>
/// A contiguous cache for B rows that advance together (`bench infer`, tests): one
/// preallocated [B, H, capacity, D] buffer per layer for keys and one for values, so decoding
/// allocates no cache memory per token.
/// </summary>
public sealed class KvCache : IKvCache, IDisposable
{
    readonly Tensor[] keys, values;
    readonly Device device;
    int pending;

    public KvCache(int layers, int batch, int kvHeads, int headDim, int capacity, ScalarType dtype, Device device)
    {
        this.device = device;
        Capacity = capacity;
        keys = new Tensor[layers];
        values = new Tensor[layers];
        for (var l = 0; l < layers; l++)
        {
            keys[l] = zeros(batch, kvHeads, capacity, headDim, dtype, device);
            values[l] = zeros(batch, kvHeads, capacity, headDim, dtype, device);
        }
    }

    public int Capacity { get; }

    /// <summary>Tokens already in the cache (the position of the next token).</summary>
    public int Length { get; private set; }

    public void Reset() => Length = 0;

    public void BeginStep(int newTokens)
    {
        if (Length + newTokens > Capacity)
            throw new StratusUserException($"the context would grow to {Length + newTokens} tokens, over the model's maximum of {Capacity}; shorten the prompt or --max-tokens");
        pending = newTokens;
        // Reset here too, not only at EndStep: a forward that failed after making its positions
        // never reached EndStep, and its dispose scope has released them.
        positions = null;
        InPlace = newTokens == 1 && AttendsInPlace ? PlaceOneToken() : null;
    }

    // Made in the forward's dispose scope, which releases it.
    Tensor? positions;

    public Tensor Positions => positions ??= arange(Length, Length + pending, dtype: ScalarType.Int64, device: device).unsqueeze(0);

    public OneTokenAttention? InPlace { get; private set; }

    public bool AttendsInPlace => OneTokenAttention.Applies(device, keys[0].dtype);

    public (Tensor Keys, Tensor Values) Buffers(int layer) => (keys[layer], values[layer]);

    public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v)
    {
        var end = Length + pending;
        keys[layer].narrow(2, Length, pending).copy_(k);
        values[layer].narrow(2, Length, pending).copy_(v);
        if (InPlace is { } step) return step.Compute(q, keys[layer], values[layer]);
        var allKeys = keys[layer].narrow(2, 0, end);
        var allValues = values[layer].narrow(2, 0, end);
        if (Length == 0 || pending == 1) return CachedAttention.Compute(q, allKeys, allValues, null); // causal from empty; one token sees all
        // Several new tokens after a context: token i sees the context and new tokens <= i.
        var query = arange(Length, end, device: device).unsqueeze(1);
        var key = arange(0, end, device: device).unsqueeze(0);
        return CachedAttention.Compute(q, allKeys, allValues, key.le(query).unsqueeze(0).unsqueeze(0));
    }

    // One new token per row in fp32 on the CPU (a decode step): the cache's own
    // [B, KV, capacity, D] buffers, read in place. A position's offset depends only on its row
    // and index, so each is written once, when a step first reaches it.
    readonly OneTokenAttention oneToken = new();
    int offsetsWritten;

    OneTokenAttention PlaceOneToken()
    {
        var (batch, kvHeads, dim) = ((int)keys[0].shape[0], (int)keys[0].shape[1], (int)keys[0].shape[3]);
        oneToken.Begin(batch, Capacity, kvHeads, headStride: (long)Capacity * dim);
        for (var b = 0; b < batch; b++)
        {
            oneToken.Lengths[b] = Length + 1;
            for (var s = offsetsWritten; s <= Length; s++) oneToken.Offsets[b * Capacity + s] = ((long)b * kvHeads * Capacity + s) * dim;
        }
        offsetsWritten = Math.Max(offsetsWritten, Length + 1);
        return oneToken;
    }

    public void EndStep()
    {
        Length += pending;
        pending = 0;
        positions = null;
        InPlace = null;
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}

/// <summary>
/// Attention of one new token per row over cached fp32 keys and values on the CPU, in managed
/// code that reads the cache in place: softmax(q . k_s / sqrt(D)) weighting v_s over a row's
/// positions. Through libtorch this decode step is a gather of the cache (the paged pool), a
/// mask and a dozen small ops per layer, and the paged gather grows with every running
/// sequence's length. A cache sets it up with <see cref="Begin"/> and fills
/// <see cref="Lengths"/> and <see cref="Offsets"/> (the element offset of each position's key
/// for key/value head 0; heads lie <see cref="HeadStride"/> apart); a row's last position is
/// its new token's slot.
/// </summary>
public sealed unsafe class OneTokenAttention
{
    int[] lengths = [];
    long[] offsets = [];
    float[] scores = [];

    /// <summary>Positions each row attends over, its new token included.</summary>
    public int[] Lengths => lengths;
    /// <summary>[row * PositionsPerRow + position].</summary>
    public long[] Offsets => offsets;
    public int Rows { get; private set; }
    public int PositionsPerRow { get; private set; }
    public int KvHeads { get; private set; }
    public long HeadStride { get; private set; }

    /// <summary>Whether a cache's one-token steps can attend through it: a float32 cache on the CPU.</summary>
    public static bool Applies(Device device, ScalarType cacheDtype) =>
        device.type == DeviceType.CPU && cacheDtype == ScalarType.Float32;

    public void Begin(int rows, int positionsPerRow, int kvHeads, long headStride)
    {
        // Grown by doubling: a serving batch's longest row grows by a position every step.
        if (lengths.Length < rows) lengths = new int[rows];
        if (offsets.Length < (long)rows * positionsPerRow) offsets = new long[Math.Max(rows * positionsPerRow, 2 * offsets.Length)];
        if (scores.Length < positionsPerRow) scores = new float[Math.Max(positionsPerRow, 2 * scores.Length)];
        (Rows, PositionsPerRow, KvHeads, HeadStride) = (rows, positionsPerRow, kvHeads, headStride);
    }

    /// <summary>q [B, H, 1, D] attending over the fp32 buffers <paramref name="keys"/> and
    /// <paramref name="values"/>, whose new token's keys and values are already stored; returns
    /// [B, H, 1, D] in q's dtype.</summary>
    public Tensor Compute(Tensor q, Tensor keys, Tensor values)
    {
        var (heads, dim) = ((int)q.shape[1], (int)q.shape[3]);
        using var queries = q.to(ScalarType.Float32).contiguous();
        var output = empty(Rows, heads, 1, dim);
        Attend((float*)DecodeKernel.Address(queries), heads * dim, (float*)DecodeKernel.Address(keys), (float*)DecodeKernel.Address(values),
            (float*)DecodeKernel.Address(output), heads * dim, heads, dim);
        return q.dtype == ScalarType.Float32 ? output : output.to(q.dtype);
    }

    /// <summary>Writes each row's new keys and values (k and v: KvHeads heads of D per row, rows
    /// <paramref name="rowStride"/> floats apart) into its slot of the buffers.</summary>
    public void Store(float* k, float* v, int rowStride, float* keys, float* values, int dim)
    {
        for (var b = 0; b < Rows; b++)
        {
            var slot = offsets[b * PositionsPerRow + lengths[b] - 1];
            for (var h = 0; h < KvHeads; h++)
            {
                var target = slot + h * HeadStride;
                new Span<float>(k + (long)b * rowStride + h * dim, dim).CopyTo(new Span<float>(keys + target, dim));
                new Span<float>(v + (long)b * rowStride + h * dim, dim).CopyTo(new Span<float>(values + target, dim));
            }
        }
    }

    /// <summary>The attention of each row's queries (H heads of D, rows <paramref name="qRowStride"/>
    /// floats apart) over its positions, written to y (H heads of D per row, <paramref name="yRowStride"/>
    /// apart). Compiled fully optimized from the start, as the decode kernel's loops.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Attend(float* qs, int qRowStride, float* ks, float* vs, float* ys, int yRowStride, int heads, int dim)
    {
        var group = heads / KvHeads;
        var scale = 1f / MathF.Sqrt(dim);
        for (var b = 0; b < Rows; b++)
        {
            var rowOffsets = offsets.AsSpan(b * PositionsPerRow, lengths[b]);
            for (var h = 0; h < heads; h++)
            {
                var head = h / group * HeadStride;
                var qh = qs + (long)b * qRowStride + h * dim;
                var yh = ys + (long)b * yRowStride + h * dim;
                var max = float.NegativeInfinity;
                for (var s = 0; s < rowOffsets.Length; s++)
                {
                    scores[s] = Dot(qh, ks + rowOffsets[s] + head, dim) * scale;
                    max = MathF.Max(max, scores[s]);
                }
                var sum = 0f;
                for (var s = 0; s < rowOffsets.Length; s++) sum += scores[s] = MathF.Exp(scores[s] - max);
                new Span<float>(yh, dim).Clear();
                for (var s = 0; s < rowOffsets.Length; s++) AddScaled(yh, vs + rowOffsets[s] + head, scores[s] / sum, dim);
            }
        }
    }

    static float Dot(float* a, float* b, int n)
    {
        var i = 0;
        var sum = Vector256<float>.Zero;
        for (; i + 8 <= n; i += 8) sum = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), sum);
        var total = Vector256.Sum(sum);
        for (; i < n; i++) total += a[i] * b[i];
        return total;
    }

    static void AddScaled(float* y, float* x, float weight, int n)
    {
        var i = 0;
        var w = Vector256.Create(weight);
        for (; i + 8 <= n; i += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + i), w, Vector256.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += x[i] * weight;
    }
}

/// <summary>Attention of new queries over cached keys and values through libtorch, with the
/// caches' mask rules: a null mask is causal over the new tokens when S == T and sees every
/// position for a single new token.</summary>
public static class CachedAttention
{
    public static Tensor Compute(Tensor q, Tensor keys, Tensor values, Tensor? mask)
    {
        var (b, heads, t, dim) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var kvHeads = keys.shape[1];
        keys = keys.to(q.dtype);
        values = values.to(q.dtype);
        var causal = mask is null && t > 1;
        if (kvHeads == heads) return nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask: mask, is_casual: causal);
        var group = heads / kvHeads;
        if (causal)
            return nn.functional.scaled_dot_product_attention(q, MatmulPrecision.RepeatKvHeads(keys, heads), MatmulPrecision.RepeatKvHeads(values, heads), is_casual: true);
        // Grouped-query attention without copying the cache per query head: the query heads that
        // share a key/value head become extra rows of one attention (rows g * t + i), and the
        // mask is repeated to match.
        var grouped = q.reshape(b, kvHeads, group * t, dim);
        return nn.functional.scaled_dot_product_attention(grouped, keys, values, attn_mask: mask?.repeat(1, 1, group, 1)).reshape(b, heads, t, dim);
    }
}
