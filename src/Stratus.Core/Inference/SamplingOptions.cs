// How the next token is drawn from a row of logits: temperature, top-k, top-p (nucleus), min-p,
// and a seed so the same settings give the same text. TextGenerator (`stratus sample`) and the
// serving engine (GenerationRequest.Sampling) both take these settings, and LogitsSampler
// applies them, so the two give the same tokens for the same logits and seed.
namespace Stratus.Inference;

public sealed record SamplingOptions
{
    /// <summary>0 picks the most likely token (greedy).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep only the k most likely tokens (0: all).</summary>
    public int TopK { get; init; }
    /// <summary>Keep the smallest set of tokens whose probability adds up to p (1: all).</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Drop tokens less likely than MinP times the most likely one (0: off).</summary>
    public double MinP { get; init; }
    /// <summary>Null: a different draw every time.</summary>
    public long? Seed { get; init; }

    /// <summary>Refuses settings the sampler cannot use: a NaN or a negative temperature would
    /// otherwise fail the engine for all its callers.</summary>
    /// <exception cref="StratusUserException">A setting is out of range.</exception>
    public void Validate()
    {
        if (!(Temperature >= 0 && double.IsFinite(Temperature)))
            throw new StratusUserException($"temperature must be a finite number, 0 (greedy) or more, got {Temperature}");
        if (TopK < 0) throw new StratusUserException($"top-k must be 0 (all tokens) or more, got {TopK}");
        if (TopP is not (> 0 and <= 1)) throw new StratusUserException($"top-p must be in (0, 1], got {TopP}");
        if (MinP is not (>= 0 and <= 1)) throw new StratusUserException($"min-p must be in [0, 1], got {MinP}");
    }

    /// <summary>The random generator for one generation's draws: from <see cref="Seed"/> when
    /// there is one, so the same seed draws the same tokens.</summary>
    public Random NewRandom() => Seed is { } seed ? new Random(SeedOf(seed)) : new Random();

    /// <summary>A 64-bit seed as System.Random's seed: every bit mixed in (SplitMix64's
    /// finaliser) and 31 of them kept, so that nearby seeds (n choices take seed, seed + 1, ...),
    /// negative ones and ones that differ only above bit 31 give unrelated draws (Random takes the
    /// absolute value of its seed, so a plain fold made -1 and 0, or 5 and 2^32 - 5, draw alike).</summary>
    static int SeedOf(long seed)
    {
        var z = unchecked((ulong)seed + 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return (int)((z ^ (z >> 31)) >> 33);
    }
}
