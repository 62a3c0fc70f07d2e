using Stratus.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests.Distributed;

public sealed class SingleProcessCommunicatorTests
{
    private readonly SingleProcessCommunicator _communicator = new();

    [Fact]
    public void Is_a_world_of_one_main_rank()
    {
        Assert.Equal(0, _communicator.Rank);
        Assert.Equal(1, _communicator.WorldSize);
        Assert.True(_communicator.IsMain);
    }

    [Fact]
    public void Collectives_leave_values_unchanged()
    {
        using var values = arange(6, dtype: ScalarType.Float32);
        _communicator.AllReduce(values, ReduceOp.Average);
        _communicator.StartAllReduce(values).Wait();
        _communicator.Broadcast(values);
        Assert.Equal([0f, 1, 2, 3, 4, 5], values.data<float>().ToArray());

        using var gathered = zeros(6);
        _communicator.AllGather(values, gathered);
        using var scattered = zeros(6);
        _communicator.ReduceScatter(gathered, scattered);
        Assert.Equal(values.data<float>().ToArray(), scattered.data<float>().ToArray());
        using var atRoot = zeros(6);
        _communicator.Gather(values, atRoot);
        Assert.Equal(values.data<float>().ToArray(), atRoot.data<float>().ToArray());
        Assert.Throws<StratusUserException>(() => _communicator.Gather(values, atRoot, root: 1));
    }

    [Fact]
    public void Rejects_non_contiguous_tensors()
    {
        using var matrix = zeros(3, 4);
        using var transposed = matrix.t();
        var error = Assert.Throws<StratusUserException>(() => _communicator.AllReduce(transposed));
        Assert.Contains("not contiguous", error.Message);
    }

    [Fact]
    public void Rejects_unsupported_dtypes()
    {
        using var half = zeros(4, dtype: ScalarType.BFloat16);
        var error = Assert.Throws<StratusUserException>(() => _communicator.AllReduce(half));
        Assert.Contains("BFloat16", error.Message);
    }

    [Fact]
    public void Rejects_averaging_integers()
    {
        using var counts = zeros(4, dtype: ScalarType.Int64);
        _communicator.AllReduce(counts);
        Assert.Throws<StratusUserException>(() => _communicator.AllReduce(counts, ReduceOp.Average));
    }

    [Fact]
    public void Reduce_scatter_needs_world_size_chunks()
    {
        using var input = zeros(5);
        using var output = zeros(4);
        var error = Assert.Throws<StratusUserException>(() => _communicator.ReduceScatter(input, output));
        Assert.Contains("pad", error.Message);
    }

    [Fact]
    public void Tensor_address_includes_the_view_offset()
    {
        using var backing = zeros(10);
        using var view = backing.narrow(0, 3, 4);
        var start = TensorBuffer.Of(backing, "test").Address;
        Assert.Equal(start + 3 * sizeof(float), TensorBuffer.Of(view, "test").Address);
    }
}
