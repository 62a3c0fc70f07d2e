// ggml's tensor types back to f32 values, block by block, as llama.cpp's dequantize_row_* read
// them (ggml-quants.c; the block layouts in ggml-common.h): floats (f32, f16, bf16), the 32-value
// blocks of one scale (q8_0, q4_0, q5_0) or a scale and a minimum (q4_1, q5_1), and the k-quants'
// 256-value super-blocks of 16 or 8 sub-blocks whose scales are themselves quantized (q2_K to
// q6_K). Each value is the product llama.cpp computes in f32, so an import holds the very weights
// llama.cpp multiplies by.
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Stratus.Formats;

public static class GgmlDequantize
{
    /// <summary>The types Stratus reads; llama.cpp's other ones (the i-quants, ternary and
    /// 8-bit intermediate types) are refused by name.</summary>
    public static readonly IReadOnlyList<GgmlType> Readable =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
    ];

    /// <summary>Writes the values <paramref name="data"/> (whole blocks of <paramref name="type"/>) holds.</summary>
    public static void ToFloat(GgmlType type, ReadOnlySpan<byte> data, Span<float> values)
    {
        var (blockValues, blockBytes) = GgmlTypes.Block(type);
        if (data.Length % blockBytes != 0 || data.Length / blockBytes * blockValues != values.Length)
            throw new ArgumentException($"{data.Length} bytes of {GgmlTypes.Name(type)} are not {values.Length} values");
        Action<ReadOnlySpan<byte>, Span<float>>? block = null;
        switch (type)
        {
            case GgmlType.F32:
                // Little-endian, as every machine Stratus runs on (GgufWriter copies f32 values so too).
                MemoryMarshal.Cast<byte, float>(data).CopyTo(values);
                return;
            case GgmlType.F16:
                for (var i = 0; i < values.Length; i++) values[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(data[(i * 2)..]);
                return;
            case GgmlType.BF16:
                // The top half of an f32's bits.
                for (var i = 0; i < values.Length; i++) values[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(data[(i * 2)..]) << 16);
                return;
            case GgmlType.Q8_0: block = Q8_0; break;
            case GgmlType.Q4_0: block = Q4_0; break;
            case GgmlType.Q4_1: block = Q4_1; break;
            case GgmlType.Q5_0: block = Q5_0; break;
            case GgmlType.Q5_1: block = Q5_1; break;
            case GgmlType.Q2_K: block = Q2_K; break;
            case GgmlType.Q3_K: block = Q3_K; break;
            case GgmlType.Q4_K: block = Q4_K; break;
            case GgmlType.Q5_K: block = Q5_K; break;
            case GgmlType.Q6_K: block = Q6_K; break;
            default: throw new ArgumentOutOfRangeException(nameof(type), $"{GgmlTypes.Name(type)} cannot be read");
        }
        for (int b = 0, n = data.Length / blockBytes; b < n; b++)
            block(data.Slice(b * blockBytes, blockBytes), values.Slice(b * blockValues, blockValues));
    }

    static float Half(ReadOnlySpan<byte> data, int at) => (float)BinaryPrimitives.ReadHalfLittleEndian(data[at..]);

    // block_q8_0: f16 d, int8 q[32]; x = q * d.
    static void Q8_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = Half(block, 0);
        for (var j = 0; j < 32; j++) y[j] = (sbyte)block[2 + j] * d;
    }

    // block_q4_0: f16 d, 16 bytes of two 4-bit values each (the low nibbles are the first 16
    // values, the high ones the last 16); x = (q - 8) * d.
    static void Q4_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = Half(block, 0);
        var qs = block[2..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((qs[j] >> 4) - 8) * d;
        }
    }

    // block_q4_1: f16 d, f16 m, nibbles as q4_0; x = q * d + m.
    static void Q4_1(ReadOnlySpan<byte> block, Span<float> y)
    {
        var (d, m) = (Half(block, 0), Half(block, 2));
        var qs = block[4..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = (qs[j] & 0xF) * d + m;
            y[j + 16] = (qs[j] >> 4) * d + m;
        }
    }

    // block_q5_0: f16 d, 32 fifth bits (a little-endian uint32: bit j is value j's), nibbles as
    // q4_0; x = (q - 16) * d.
    static void Q5_0(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = Half(block, 0);
        var high = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
        var qs = block[6..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = ((qs[j] & 0xF | (int)((high >> j) & 1) << 4) - 16) * d;
            y[j + 16] = ((qs[j] >> 4 | (int)((high >> (j + 16)) & 1) << 4) - 16) * d;
        }
    }

    // block_q5_1: f16 d, f16 m, fifth bits and nibbles as q5_0; x = q * d + m.
    static void Q5_1(ReadOnlySpan<byte> block, Span<float> y)
    {
        var (d, m) = (Half(block, 0), Half(block, 2));
        var high = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
        var qs = block[8..];
        for (var j = 0; j < 16; j++)
        {
            y[j] = (qs[j] & 0xF | (int)((high >> j) & 1) << 4) * d + m;
            y[j + 16] = (qs[j] >> 4 | (int)((high >> (j + 16)) & 1) << 4) * d + m;
        }
    }

    // block_q2_K: 16 bytes of 4-bit scale and 4-bit minimum per 16 values, 64 bytes of 2-bit
    // values, f16 d, f16 dmin. Each 32 bytes of values hold 128 values, four 2-bit planes of 32,
    // each plane two sub-blocks of 16; x = d * scale * q - dmin * min.
    static void Q2_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var scales = block[..16];
        var d = Half(block, 80);
        var min = Half(block, 82);
        var at = 0;
        var sub = 0;
        for (var half = 0; half < 2; half++)
        {
            var q = block.Slice(16 + half * 32, 32);
            for (var shift = 0; shift < 8; shift += 2)
            {
                for (var part = 0; part < 2; part++, sub++)
                {
                    var dl = d * (scales[sub] & 0xF);
                    var ml = min * (scales[sub] >> 4);
                    for (var l = 0; l < 16; l++) y[at++] = dl * ((q[part * 16 + l] >> shift) & 3) - ml;
                }
            }
        }
    }

    // block_q3_K: 32 bytes of high bits (bit k of byte l: value 32k + l of its half), 64 bytes of
    // low 2-bit values (laid out as q2_K's), 12 bytes of sixteen 6-bit scales, f16 d;
    // x = d * (scale - 32) * (q - (high bit ? 0 : 4)).
    static void Q3_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var hmask = block[..32];
        var d = Half(block, 108);
        Span<int> scales = stackalloc int[16];
        var packed = block.Slice(96, 12);
        // The low nibbles of bytes 0-7 are scales 0-7's low 4 bits, their high nibbles scales
        // 8-15's; bytes 8-11 hold the top 2 bits of each, scale i's at bit 2 * (i / 4) of byte 8 + i % 4.
        for (var i = 0; i < 16; i++)
        {
            var low = i < 8 ? packed[i] & 0xF : packed[i - 8] >> 4;
            var high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
            scales[i] = (low | high << 4) - 32;
        }
        var at = 0;
        var sub = 0;
        var bit = 1;
        for (var half = 0; half < 2; half++)
        {
            var q = block.Slice(32 + half * 32, 32);
            for (var shift = 0; shift < 8; shift += 2, bit <<= 1)
            {
                for (var part = 0; part < 2; part++, sub++)
                {
                    var dl = d * scales[sub];
                    for (var l = 0; l < 16; l++)
                    {
                        var i = part * 16 + l;
                        y[at++] = dl * (((q[i] >> shift) & 3) - ((hmask[i] & bit) != 0 ? 0 : 4));
                    }
                }
            }
        }
    }

    /// <summary>The 6-bit scale and minimum of sub-block <paramref name="j"/> (of 8) from the
    /// 12 bytes q4_K and q5_K pack them in (ggml's get_scale_min_k4): the first four whole in
    /// bytes 0-7's low 6 bits, the last four as nibbles of bytes 8-11 with their top 2 bits in
    /// the top bits of bytes 0-7.</summary>
    static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> q, int j) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4, (q[j + 4] >> 4) | (q[j] >> 6) << 4);

    // block_q4_K: f16 d, f16 dmin, 12 bytes of scales and minimums, 128 bytes of nibbles: each 32
    // bytes hold 64 values, the low nibbles first; x = d * scale * q - dmin * min.
    static void Q4_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var (d, min) = (Half(block, 0), Half(block, 2));
        var scales = block.Slice(4, 12);
        var at = 0;
        for (var j = 0; j < 4; j++)
        {
            var q = block.Slice(16 + j * 32, 32);
            var (s1, m1) = ScaleMin(scales, 2 * j);
            var (s2, m2) = ScaleMin(scales, 2 * j + 1);
            var (d1, o1, d2, o2) = (d * s1, min * m1, d * s2, min * m2);
            for (var l = 0; l < 32; l++) y[at++] = d1 * (q[l] & 0xF) - o1;
            for (var l = 0; l < 32; l++) y[at++] = d2 * (q[l] >> 4) - o2;
        }
    }

    // block_q5_K: as q4_K with 32 bytes of fifth bits before the nibbles (bit 2j of byte l for
    // the low nibble of sub-block pair j, bit 2j + 1 for the high one).
    static void Q5_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var (d, min) = (Half(block, 0), Half(block, 2));
        var scales = block.Slice(4, 12);
        var qh = block.Slice(16, 32);
        var at = 0;
        for (var j = 0; j < 4; j++)
        {
            var q = block.Slice(48 + j * 32, 32);
            var (s1, m1) = ScaleMin(scales, 2 * j);
            var (s2, m2) = ScaleMin(scales, 2 * j + 1);
            var (d1, o1, d2, o2) = (d * s1, min * m1, d * s2, min * m2);
            var (u1, u2) = (1 << (2 * j), 2 << (2 * j));
            for (var l = 0; l < 32; l++) y[at++] = d1 * ((q[l] & 0xF) + ((qh[l] & u1) != 0 ? 16 : 0)) - o1;
            for (var l = 0; l < 32; l++) y[at++] = d2 * ((q[l] >> 4) + ((qh[l] & u2) != 0 ? 16 : 0)) - o2;
        }
    }

    // block_q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, sixteen int8 scales,
    // f16 d. Each half of 128 values takes 64 low bytes, 32 high bytes and 8 scales;
    // x = d * scale * (q - 32).
    static void Q6_K(ReadOnlySpan<byte> block, Span<float> y)
    {
        var d = Half(block, 208);
        for (var half = 0; half < 2; half++)
        {
            var ql = block.Slice(half * 64, 64);
            var qh = block.Slice(128 + half * 32, 32);
            var sc = block.Slice(192 + half * 8, 8);
            var o = y.Slice(half * 128, 128);
            for (var l = 0; l < 32; l++)
            {
                var s = l / 16;
                o[l] = d * (sbyte)sc[s] * (((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32);
                o[l + 32] = d * (sbyte)sc[s + 2] * (((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
                o[l + 64] = d * (sbyte)sc[s + 4] * (((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
                o[l + 96] = d * (sbyte)sc[s + 6] * (((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
            }
        }
    }
}
