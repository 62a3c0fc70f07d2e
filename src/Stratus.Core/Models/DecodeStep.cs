// A whole decode step in managed code: one new token for each of up to DecodeKernel.MaxRows
// rows, every layer from the embedding lookup to the logits, over fp32 activations that never
// become tensors. Through libtorch the same step is a dozen small ops per layer (norms, views,
// residual adds, activations, cache writes), each costing microseconds of TorchSharp and
// dispatch overhead; for a small model that overhead was most of a token's time, and for GPT-2
// 124M it was about a fifth. The matmuls go through the decode kernel (fp32 or bf16 weights),
// attention through OneTokenAttention over the KV cache in place; the ops between them are
// vector loops here (TensorPrimitives where it has the operation), each row on its own, so a
// row's logits do not depend on the other rows of its batch.
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Models;

public abstract unsafe class DecodeStep
{
    // scratchFloatsPerRow: what a subclass's layers need per row besides the residual stream.
    readonly int width, vocab, blockSize, scratchFloatsPerRow;
    // Activation buffers, one set per concurrent step: a step takes the spare set or makes one.
    Scratch? spare;

    protected DecodeStep(ModelConfig config, int scratchFloatsPerRow) =>
        (width, vocab, blockSize, this.scratchFloatsPerRow) = (config.NEmbd, config.VocabSize, config.BlockSize, scratchFloatsPerRow);

    /// <summary>Whether the step can run here: a decode kernel, one new token per row for at most
    /// MaxRows rows, a cache that stores and attends in place, no gradients, no LoRA adapters
    /// (their extra products go through libtorch), no dropout to apply, fp32 parameters (one
    /// stands for all).</summary>
    public static bool Applies(int rows, int newTokens, IKvCache cache, DecodeKernel? kernel, bool dropoutActive, Tensor parameter, bool adapters = false) =>
        kernel is not null && newTokens == 1 && rows <= DecodeKernel.MaxRows && cache.AttendsInPlace
        && !is_grad_enabled() && !adapters && !dropoutActive
        && parameter.dtype == ScalarType.Float32 && parameter.device_type == DeviceType.CPU;

    /// <summary>Writes the logits [rows, vocab] of the token ids <paramref name="ids"/> (one per
    /// row) continuing the cache's rows to <paramref name="logits"/>; the cache must be between
    /// BeginStep and EndStep with <see cref="IKvCache.InPlace"/> set. Allocates nothing: a serving
    /// engine runs it for every token.</summary>
    public void Run(ReadOnlySpan<int> ids, IKvCache cache, DecodeKernel kernel, Span<float> logits)
    {
        var step = cache.InPlace!;
        var rows = step.Rows;
        if (ids.Length != rows || logits.Length != rows * vocab)
            throw new ArgumentException($"{rows} rows need {rows} token ids and {rows * vocab} logits, got {ids.Length} and {logits.Length}");
        var scratch = Interlocked.Exchange(ref spare, null) ?? new Scratch(width + scratchFloatsPerRow);
        try
        {
            Span<int> positions = stackalloc int[rows];
            for (var b = 0; b < rows; b++)
            {
                // The layers index tables with these: out of range they would read past them,
                // where libtorch's lookup throws.
                if ((uint)ids[b] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {ids[b]} is outside the vocabulary of {vocab}");
                if ((uint)(step.Lengths[b] - 1) >= (uint)blockSize) throw new ArgumentOutOfRangeException(nameof(cache), $"position {step.Lengths[b] - 1} is past the model's block_size {blockSize}");
                positions[b] = step.Lengths[b] - 1;
            }
            var x = scratch.Floats;
            fixed (float* output = logits)
                Layers(new Rows(rows, width, x, x + rows * width), ids, positions, cache, step, kernel, scratch.Temporaries, output);
        }
        finally
        {
            foreach (var t in scratch.Temporaries) t.Dispose();
            scratch.Temporaries.Clear();
            spare = scratch;
        }
    }

    /// <summary>The residual stream <see cref="X"/> [rows, width] and <c>rows * scratchFloatsPerRow</c>
    /// floats of scratch at <see cref="Free"/>.</summary>
    protected readonly struct Rows(int count, int width, float* x, float* free)
    {
        public int Count { get; } = count;
        public int Width { get; } = width;
        public float* X { get; } = x;
        public float* Free { get; } = free;

        public Span<float> Row(float* buffer, int row, int size) => new(buffer + (long)row * size, size);
    }

    /// <summary>The architecture's layers: from the token ids at their positions to the logits
    /// [rows, vocab].</summary>
    protected abstract void Layers(Rows rows, ReadOnlySpan<int> ids, ReadOnlySpan<int> positions, IKvCache cache, OneTokenAttention step,
        DecodeKernel kernel, List<Tensor> temporaries, float* logits);

    /// <summary>A contiguous fp32 CPU parameter, read in place.</summary>
    protected static float* Data(Tensor parameter) => (float*)DecodeKernel.Address(parameter);

    /// <summary>Stores the rows' new keys and values (rows <paramref name="kvRowStride"/> floats
    /// apart) in layer <paramref name="layer"/>'s buffers and writes the attention of the queries
    /// (rows <paramref name="qRowStride"/> apart) to <paramref name="y"/> (rows of heads * headDim).</summary>
    protected static void Attention(IKvCache cache, OneTokenAttention step, int layer, float* q, int qRowStride, float* k, float* v, int kvRowStride,
        float* y, int heads, int headDim)
    {
        var (keys, values) = cache.Buffers(layer);
        var keyData = (float*)DecodeKernel.Address(keys);
        var valueData = (float*)DecodeKernel.Address(values);
        step.Store(k, v, kvRowStride, keyData, valueData, headDim);
        step.Attend(q, qRowStride, keyData, valueData, y, heads * headDim, heads, headDim);
    }

    /// <summary>y = (x - mean) / sqrt(var + eps) * weight + bias for each row (biased variance, as libtorch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected static void LayerNorm(Rows rows, float* x, float* y, Tensor weight, Tensor? bias, double eps)
    {
        var w = new ReadOnlySpan<float>(Data(weight), rows.Width);
        var b = bias is null ? default : new ReadOnlySpan<float>(Data(bias), rows.Width);
        for (var r = 0; r < rows.Count; r++)
        {
            var input = rows.Row(x, r, rows.Width);
            var output = rows.Row(y, r, rows.Width);
            var mean = TensorPrimitives.Sum<float>(input) / rows.Width;
            TensorPrimitives.Subtract(input, mean, output);
            var variance = TensorPrimitives.SumOfSquares<float>(output) / rows.Width;
            TensorPrimitives.Multiply(output, (float)(1.0 / Math.Sqrt(variance + eps)), output);
            TensorPrimitives.Multiply(output, w, output);
            if (bias is not null) TensorPrimitives.Add(output, b, output);
        }
    }

    /// <summary>y = x / sqrt(mean(x^2) + eps) * weight for each row (Llama's RMSNorm).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected static void RmsNorm(Rows rows, float* x, float* y, Tensor weight, double eps)
    {
        var w = new ReadOnlySpan<float>(Data(weight), rows.Width);
        for (var r = 0; r < rows.Count; r++)
        {
            var input = rows.Row(x, r, rows.Width);
            var output = rows.Row(y, r, rows.Width);
            var meanSquare = TensorPrimitives.SumOfSquares<float>(input) / rows.Width;
            TensorPrimitives.Multiply(input, (float)(1.0 / Math.Sqrt(meanSquare + eps)), output);
            TensorPrimitives.Multiply(output, w, output);
        }
    }

    /// <summary>x += y over the residual stream.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected static void AddResidual(Rows rows, float* y)
    {
        var size = rows.Count * rows.Width;
        TensorPrimitives.Add(new ReadOnlySpan<float>(rows.X, size), new ReadOnlySpan<float>(y, size), new Span<float>(rows.X, size));
    }

    // The activations below take 8 floats at a time (Vector256.Exp, since .NET 9), then the rest
    // one by one through the same formulas: a scalar MathF loop over GPT-2 124M's 3,072 MLP
    // outputs per layer cost 21 us (erf) to 47 us (tanh) per token per layer, these 3.2-3.7 us.
    // These loops, like the decode kernel's, are compiled fully optimized from the start, their
    // helpers inlined: tiered compilation's first code runs vector operations as calls (20 us
    // for those 3,072), and a short generation never leaves it.

    /// <summary>GELU in place: exact (erf) or the tanh approximation (GPT-2's "gelu_new").</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected static void Gelu(float* x, int count, bool tanhApproximation)
    {
        var i = 0;
        for (; i + 8 <= count; i += 8)
        {
            var v = Vector256.Load(x + i);
            var inner = tanhApproximation ? Tanh(Vector256.Create(SqrtTwoOverPi) * (v + Vector256.Create(0.044715f) * v * v * v)) : Erf(v * Vector256.Create(OneOverSqrtTwo));
            (Vector256.Create(0.5f) * v * (Vector256<float>.One + inner)).Store(x + i);
        }
        for (; i < count; i++)
        {
            var v = Vector256.Create(x[i]);
            var inner = tanhApproximation ? Tanh(Vector256.Create(SqrtTwoOverPi) * (v + Vector256.Create(0.044715f) * v * v * v)) : Erf(v * Vector256.Create(OneOverSqrtTwo));
            x[i] = (Vector256.Create(0.5f) * v * (Vector256<float>.One + inner)).ToScalar();
        }
    }

    const float SqrtTwoOverPi = 0.7978845608f, OneOverSqrtTwo = 0.70710678f;

    /// <summary>tanh(u) = 1 - 2 / (exp(2u) + 1): exact at the limits (exp overflowing to infinity
    /// gives 1), absolute error near fp32's resolution elsewhere.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Tanh(Vector256<float> u) =>
        Vector256<float>.One - Vector256.Create(2f) / (Vector256.Exp(u + u) + Vector256<float>.One);

    /// <summary>erf(z) by Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7, about fp32's
    /// resolution of erf near 1): .NET has no erf, nor does TensorPrimitives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector256<float> Erf(Vector256<float> z)
    {
        var a = Vector256.Abs(z);
        var t = Vector256<float>.One / (Vector256<float>.One + Vector256.Create(0.3275911f) * a);
        var poly = t * (Vector256.Create(0.254829592f) + t * (Vector256.Create(-0.284496736f) + t * (Vector256.Create(1.421413741f)
            + t * (Vector256.Create(-1.453152027f) + t * Vector256.Create(1.061405429f)))));
        var magnitude = Vector256<float>.One - poly * Vector256.Exp(-(a * a));
        return Vector256.CopySign(magnitude, z);
    }

    /// <summary>gate = silu(gate) * up = gate / (1 + exp(-gate)) * up, element by element (Llama's SwiGLU).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected static void SwiGlu(float* gate, float* up, int count)
    {
        var i = 0;
        for (; i + 8 <= count; i += 8)
        {
            var g = Vector256.Load(gate + i);
            (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.Load(up + i)).Store(gate + i);
        }
        for (; i < count; i++) gate[i] = gate[i] / (1f + MathF.Exp(-gate[i])) * up[i];
    }

    sealed class Scratch
    {
        readonly float[] floats;

        public Scratch(int floatsPerRow) => floats = GC.AllocateUninitializedArray<float>(floatsPerRow * DecodeKernel.MaxRows, pinned: true);

        // Pinned at allocation: the address never moves.
        public float* Floats => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(floats));

        /// <summary>Copies of weights that are not fp32 and contiguous, made during a step and
        /// disposed at its end (usually none).</summary>
        public List<Tensor> Temporaries { get; } = [];
    }
}
