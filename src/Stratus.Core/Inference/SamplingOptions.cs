// How the next token is chosen from logits: temperature, top-k, top-p (nucleus), and a seed so
// the same request gives the same text.
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

public sealed record SamplingOptions
{
    /// <summary>0 picks the most likely token (greedy).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (0: all).</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of tokens whose probability adds up to p (1: all).</summary>
    public double TopP { get; init; } = 1.0;
    public long? Seed { get; init; }

    public void Validate()
    {
        if (Temperature < 0 || double.IsNaN(Temperature)) throw new StratusUserException($"temperature must be 0 or more, got {Temperature}");
        if (TopK < 0) throw new StratusUserException($"top-k must be 0 (off) or positive, got {TopK}");
        if (TopP is <= 0 or > 1 || double.IsNaN(TopP)) throw new StratusUserException($"top-p must be in (0, 1], got {TopP}");
    }
}

public static class TokenChooser
{
    /// <summary>Picks one token per row from logits [B, V] (fp32).</summary>
    public static Tensor Choose(Tensor logits, SamplingOptions options, Generator? generator)
    {
        using var scope = NewDisposeScope();
        if (options.Temperature == 0) return logits.argmax(-1, keepdim: true).MoveToOuterDisposeScope();
        // Shifted so the largest is 0 first: a tiny temperature would otherwise scale logits to
        // +-inf, whose softmax is NaN (the limit is greedy, which this gives).
        var scaled = (logits - logits.amax([-1], keepdim: true)) / options.Temperature;
        if (options.TopK > 0 && options.TopK < scaled.shape[^1])
        {
            var kth = scaled.topk(options.TopK, dim: -1).values[.., ^1..];
            scaled = scaled.masked_fill(scaled < kth, double.NegativeInfinity);
        }
        if (options.TopP < 1.0)
        {
            var (sorted, indices) = scaled.sort(dim: -1, descending: true);
            var cumulative = sorted.softmax(-1).cumsum(-1);
            // Drop a token when the tokens before it already reach top_p; the first always stays.
            var remove = (cumulative - sorted.softmax(-1)) >= options.TopP;
            var removeOriginal = zeros_like(remove).scatter(-1, indices, remove);
            scaled = scaled.masked_fill(removeOriginal, double.NegativeInfinity);
        }
        var probabilities = scaled.softmax(-1);
        return multinomial(probabilities, 1, generator: generator).MoveToOuterDisposeScope();
    }
}
