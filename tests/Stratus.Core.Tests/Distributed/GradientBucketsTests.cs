using Stratus.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests.Distributed;

public sealed class GradientBucketsTests
{
    private static nn.Module<Tensor, Tensor> Model()
    {
        torch.manual_seed(3);
        return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2));
    }

    private static Tensor Loss(nn.Module<Tensor, Tensor> model)
    {
        var generator = new Generator(11);
        return model.call(randn([4, 6], generator: generator)).square().mean();
    }

    [Fact]
    public void Each_bucket_is_one_all_reduce_in_reverse_parameter_order_within_the_size_limit()
    {
        using var model = Model();
        var world = new RecordingCommunicator();
        // Parameters: 30, 5, 10, 2 floats; 64 bytes fit 16 floats.
        using var buckets = new GradientBuckets(model.parameters(), world, bucketBytes: 64);
        Loss(model).backward();
        buckets.AllReduceGradients(ReduceOp.Average);
        Assert.Equal([12L, 5, 30], world.Calls.Where(c => c.Operation == nameof(ICommunicator.StartAllReduce)).Select(c => c.Elements));
    }

    [Fact]
    public void Backward_accumulates_into_the_bucket_memory()
    {
        using var reference = Model();
        Loss(reference).backward();
        using var model = Model();
        using var buckets = new GradientBuckets(model.parameters(), new SingleProcessCommunicator());
        var addresses = model.parameters().Select(p => { using var g = p.grad!; return TensorBuffer.Of(g, "test").Address; }).ToArray();

        for (var step = 0; step < 2; step++)
        {
            buckets.ZeroGradients();
            Loss(model).backward();
            // Checked before AllReduceGradients, which would re-point a replaced .grad: libtorch
            // itself added into the bucket views in place.
            Assert.Equal(addresses, model.parameters().Select(p => { using var g = p.grad!; return TensorBuffer.Of(g, "test").Address; }).ToArray());
            buckets.AllReduceGradients(ReduceOp.Average);
        }

        foreach (var (expected, actual) in reference.parameters().Zip(model.parameters()))
            Assert.True(expected.grad!.allclose(actual.grad!), "gradient differs from plain backward");
    }

    [Fact]
    public void Gradients_replaced_by_zero_grad_to_none_are_brought_back()
    {
        using var reference = Model();
        Loss(reference).backward();
        using var model = Model();
        using var buckets = new GradientBuckets(model.parameters(), new SingleProcessCommunicator());
        model.zero_grad(set_to_none: true);
        Loss(model).backward();
        buckets.AllReduceGradients(ReduceOp.Average);
        foreach (var (expected, actual) in reference.parameters().Zip(model.parameters()))
            Assert.True(expected.grad!.allclose(actual.grad!));
        // Zeroing the buckets zeroes the gradients the model sees.
        buckets.ZeroGradients();
        Assert.All(model.parameters(), p => Assert.Equal(0f, p.grad!.abs().sum().item<float>()));
    }
}
