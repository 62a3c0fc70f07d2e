using Stratus.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests.Distributed;

public sealed class ParameterShardingTests
{
    [Fact]
    public void Parameters_and_gradients_live_in_the_flat_buffers()
    {
        torch.manual_seed(5);
        using var model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1));
        var before = model.parameters().Select(p => p.detach().clone()).ToArray();
        using var sharding = new ParameterSharding(model.parameters(), new SingleProcessCommunicator());
        Assert.Equal(21, sharding.Layout.TotalElements);
        Assert.Equal(21, sharding.ParameterShard.numel());
        foreach (var (old, now) in before.Zip(model.parameters()))
            Assert.True(old.allclose(now, rtol: 0, atol: 0), "moving into the flat buffer changed a parameter");

        sharding.ZeroGradients();
        model.call(ones(2, 3)).sum().backward();
        sharding.ReduceScatterGradients(ReduceOp.Average);
        using var expectedGradients = cat(model.parameters().Select(p => p.grad!.flatten()).ToArray());
        Assert.True(expectedGradients.allclose(sharding.GradientShard, rtol: 0, atol: 0));

        // An optimizer step on the shard is a step on the model.
        using (no_grad())
            sharding.ParameterShard.add_(sharding.GradientShard, alpha: -0.1);
        sharding.AllGatherParameters();
        foreach (var (old, now) in before.Zip(model.parameters()))
            Assert.True((old - 0.1 * now.grad!).allclose(now));
    }

    [Fact]
    public void Rejects_non_float32_parameters()
    {
        using var model = nn.Linear(2, 2).to(ScalarType.Float64);
        Assert.Throws<StratusUserException>(() => new ParameterSharding(model.parameters(), new SingleProcessCommunicator()));
    }
}
