// A GPT-2's head checked against its token embeddings, by the two importers whose files may hold
// the head apart: import gguf (convert_hf_to_gguf.py writes a copy as output.weight) and import
// hf (a config.json with tie_word_embeddings false reads lm_head.weight as a head of its own).
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Stratus.Formats;

static class TiedHead
{
    /// <summary>Refuses a GPT-2 whose head is not its token embeddings. Stratus's GPT-2 ties the
    /// two, as transformers' GPT2LMHeadModel does by default; a file whose head was trained apart
    /// would import as another model, with no word said. A copy may be stored in another type than
    /// the embeddings (a Q4_K_M's head is q6_K, its embeddings q4_K), so the two differ by their
    /// types' rounding: a relative difference (RMS over RMS) within twice the two types' worst
    /// rounding measured (<see cref="RoundingError"/>) is a copy; an untied head of the same scale
    /// differs by about 1.4 (√2), and one fine-tuned apart by what it learned.
    /// <paramref name="readHead"/> fills its span with the head's values from the flat index
    /// given (a piece at a time: a quantized head is dequantized as it is read).</summary>
    public static void Require(string path, Tensor embeddings, (string Name, GgmlType Type) embeddingsStored, (string Name, GgmlType Type) head, Action<long, Span<float>> readHead)
    {
        var (rows, width) = (embeddings.shape[0], embeddings.shape[1]);
        var rowsPerPiece = Math.Max(1, (1 << 24) / width);
        var values = new float[Math.Min(rows, rowsPerPiece) * width];
        double difference = 0, size = 0;
        for (var row = 0L; row < rows; row += rowsPerPiece)
        {
            var count = Math.Min(rowsPerPiece, rows - row);
            using var piece = embeddings.narrow(0, row, count);
            var expected = MemoryMarshal.Cast<byte, float>(piece.bytes);
            var actual = values.AsSpan(0, expected.Length);
            readHead(row * width, actual);
            for (var i = 0; i < expected.Length; i++)
            {
                var d = (double)actual[i] - expected[i];
                difference += d * d;
                size += (double)expected[i] * expected[i];
            }
        }
        var tolerance = 2 * (RoundingError(embeddingsStored.Type) + RoundingError(head.Type)) + 1e-4;
        // Written so that a NaN is refused and two heads of zeros are the same.
        if (!(difference <= tolerance * tolerance * size))
            throw new StratusUserException($"{path}: its GPT-2 head ({head.Name}, {GgmlTypes.Name(head.Type)}) is not a copy of its token embeddings ({embeddingsStored.Name}, {GgmlTypes.Name(embeddingsStored.Type)}): " +
                $"they differ by {Math.Sqrt(difference / size):G3} of their size, where rounding to those types leaves a copy within {tolerance:G3}; Stratus's GPT-2 ties its head to the token embeddings, " +
                "so a head of its own is not supported: use a GPT-2 whose head is its token embeddings");
    }

    /// <summary>A safetensors dtype as the ggml type of the same rounding (what
    /// <see cref="RoundingError"/> knows); null for one no model's weights are stored in.</summary>
    public static GgmlType? Stored(ScalarType dtype) => dtype switch
    {
        // f64 rounds less than f32, whose copy is exact.
        ScalarType.Float32 or ScalarType.Float64 => GgmlType.F32,
        ScalarType.Float16 => GgmlType.F16,
        ScalarType.BFloat16 => GgmlType.BF16,
        _ => null,
    };

    /// <summary>The largest relative rounding error (RMS over RMS) measured of each type: llama.cpp's
    /// quantizer on GPT-2 embeddings 256 wide, normal and with rows of differing norms and three
    /// dimensions 20 times as wide (as GPT-2's own), rounded up.</summary>
    static double RoundingError(GgmlType type) => type switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 0.0003,
        // Not a type of llama.cpp's quantizer: 8 bits of mantissa against f16's 11.
        GgmlType.BF16 => 0.003,
        GgmlType.Q8_0 => 0.012,
        GgmlType.Q6_K => 0.034,
        GgmlType.Q5_1 => 0.053,
        GgmlType.Q5_K => 0.051,
        GgmlType.Q5_0 => 0.091,
        GgmlType.Q4_K => 0.1,
        GgmlType.Q4_1 => 0.11,
        GgmlType.Q4_0 => 0.152,
        GgmlType.Q3_K => 0.153,
        GgmlType.Q2_K => 0.29,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };
}
