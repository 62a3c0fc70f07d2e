// The loss of a model over a whole split: every target token scored once, in windows that tile
// it (the last one ending at the split's end). Training's
// evaluation estimates the same number from eval_iters random batches (nanoGPT's way), which
// moves by about ±0.015 from draw to draw for the CPU config; this is the figure without that
// noise, at the cost of reading the whole split.
using Stratus.Data;
using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Training;

/// <param name="Loss">Mean cross-entropy (nats) over the predicted tokens.</param>
/// <param name="Tokens">Tokens predicted (masked chat targets excluded).</param>
/// <param name="Windows">Windows of block_size tokens read (the last may score fewer).</param>
public sealed record SplitLoss(double Loss, long Tokens, long Windows)
{
    public double Perplexity => Math.Exp(Loss);

    /// <summary>Measures <paramref name="model"/> on every token of <paramref name="split"/> but the
    /// first (which nothing precedes), a batch of tiled windows at a time; reports (batches done,
    /// batches in all) after each.</summary>
    public static SplitLoss Measure(CausalLanguageModel model, BatchSampler sampler, Split split, IProgress<(long Done, long Total)>? progress = null)
    {
        model.eval();
        using var noGrad = no_grad();
        var windows = sampler.TiledWindows(split);
        var batches = (windows + sampler.BatchSize - 1) / sampler.BatchSize;
        double sum = 0;
        long tokens = 0;
        for (var batch = 0L; batch < batches; batch++)
        {
            using var scope = NewDisposeScope();
            var (inputs, targets) = sampler.Tiled(split, batch, model.Device);
            var logits = model.Forward(inputs);
            sum += nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1), reduction: nn.Reduction.Sum).item<float>();
            tokens += targets.ne(-100).sum().item<long>();
            progress?.Report((batch + 1, batches));
        }
        if (tokens == 0) throw new StratusUserException($"the {split.ToString().ToLowerInvariant()} split has no token to predict (a chat dataset without assistant turns there)");
        return new SplitLoss(sum / tokens, tokens, windows);
    }
}
