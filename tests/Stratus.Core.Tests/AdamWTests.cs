using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class AdamWTests
{
    [Fact]
    public void Fused_step_matches_the_AdamW_formula_and_skips_decay_on_vectors()
    {
        using var matrix = torch.tensor(new float[] { 1f, -2f, 3f, 0.5f }, [2, 2]).requires_grad_();
        using var vector = torch.tensor(new float[] { 0.25f, -1f }).requires_grad_();
        using (var loss = (matrix * matrix).sum() + (vector * 3).sum()) loss.backward();
        using var optimizer = new AdamW([("w", matrix), ("b", vector)], beta1: 0.9, beta2: 0.95, weightDecay: 0.1);
        const double lr = 0.01;
        optimizer.Step(lr);

        // One AdamW step from zero moments: m = (1-b1) g, v = (1-b2) g^2, bias-corrected update is
        // lr * g / (|g| + eps') with decoupled weight decay p *= (1 - lr * wd) first.
        float Expected(float p, float g, double wd) =>
            (float)(p * (1 - lr * wd) - lr * (g / (Math.Abs(g) + 1e-8 * Math.Sqrt(1 - 0.95) / 1)));
        var m = matrix.data<float>().ToArray();
        Assert.Equal(Expected(1f, 2f, 0.1), m[0], 5);
        Assert.Equal(Expected(-2f, -4f, 0.1), m[1], 5);
        var v = vector.data<float>().ToArray();
        Assert.Equal(Expected(0.25f, 3f, 0.0), v[0], 5);
        Assert.Equal(1, optimizer.Steps);
    }

    [Fact]
    public void Gradient_clipping_scales_to_the_max_norm_and_reports_the_original_norm()
    {
        using var p = torch.zeros(2).requires_grad_();
        using (var loss = (p * torch.tensor(new float[] { 3f, 4f })).sum()) loss.backward();
        using var optimizer = new AdamW([("p", p)], 0.9, 0.99, 0.0);
        using (var norm = optimizer.ClipGradientNorm(1.0)) Assert.Equal(5f, norm.item<float>(), 4);
        using var grad = p.grad!;
        Assert.Equal(new[] { 0.6f, 0.8f }, grad.data<float>().ToArray().Select(x => MathF.Round(x, 4)));
        optimizer.ZeroGrad();
        Assert.Equal(0f, grad.abs().sum().item<float>());
    }
}
