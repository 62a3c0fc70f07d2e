// ShardedAdamW in a world of one must be AdamW exactly: same steps, same clipping, same state
// dict (names, shapes, values), so ZeRO-1's arithmetic and its checkpoint layout are checked
// without MPI. The two-rank comparison runs through the CLI (Stratus.Cli.Tests).
using Stratus.Distributed;
using Stratus.Formats;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;
using AdamW = Stratus.Training.AdamW;

namespace Stratus.Tests.Distributed;

public sealed class ShardedAdamWTests
{
    static nn.Module<Tensor, Tensor> Model()
    {
        torch.manual_seed(11);
        return nn.Sequential(("fc", nn.Linear(4, 3)), ("ln", nn.LayerNorm(3)), ("out", nn.Linear(3, 2)));
    }

    [Fact]
    public void On_one_rank_it_steps_clips_and_saves_like_AdamW()
    {
        using var plain = Model();
        using var sharded = Model();
        using var communicator = new SingleProcessCommunicator();
        using var reference = new AdamW(plain.named_parameters().Select(p => (p.name, (Tensor)p.parameter)), 0.9, 0.95, 0.1);
        using var zero = new ShardedAdamW(sharded.named_parameters().ToList(), communicator, 0.9, 0.95, 0.1);
        Assert.Equal(reference.StateBytes, zero.StateBytes);
        torch.manual_seed(3);
        using var input = torch.randn(5, 4);
        for (var step = 0; step < 4; step++)
        {
            foreach (var (model, optimizer) in new (nn.Module<Tensor, Tensor>, IOptimizer)[] { (plain, reference), (sharded, zero) })
            {
                using (var loss = model.call(input).square().sum() * (step + 1)) loss.backward();
                optimizer.ReduceGradients();
                float norm;
                using (var measured = optimizer.ClipGradientNorm(0.5)) norm = measured.item<float>();
                Assert.True(norm > 0.5, $"clipping should act (norm {norm})");
                optimizer.Step(1e-2);
                optimizer.ZeroGrad();
            }
            foreach (var (a, b) in plain.parameters().Zip(sharded.parameters()))
                Assert.True(a.allclose(b, rtol: 1e-6, atol: 1e-7), $"parameters differ after step {step + 1}");
        }

        using var scope = NewDisposeScope();
        var expected = reference.StateDict();
        var actual = zero.StateDict();
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            Assert.Equal(tensor.shape, actual[name].shape);
            Assert.True(tensor.allclose(actual[name], rtol: 1e-5, atol: 1e-8), $"{name} differs");
        }

        // Loading a state re-slices it into the shard: a second optimizer continues identically.
        using var temp = new TempDirectory();
        SafeTensors.Save(temp["optimizer.safetensors"], actual);
        using var third = Model();
        using var restored = new ShardedAdamW(third.named_parameters().ToList(), communicator, 0.9, 0.95, 0.1);
        using (var saved = SafeTensors.Open(temp["optimizer.safetensors"])) restored.LoadStateDict(saved);
        var again = restored.StateDict();
        foreach (var (name, tensor) in actual)
            Assert.True(tensor.allclose(again[name], rtol: 0, atol: 0), $"{name} did not survive a save and load");
    }
}
