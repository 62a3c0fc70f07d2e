// A world of one process: every collective leaves its data as it is. Lets the trainer use one
// code path whether or not it was started under mpirun.
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class SingleProcessCommunicator : ICommunicator
{
    public int Rank => 0;

    public int WorldSize => 1;

    public bool IsMain => true;

    // The same checks as MPI so that a tensor which would fail on a cluster fails on a laptop too.
    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => TensorBuffer.Of(tensor, op, nameof(AllReduce));

    public IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        AllReduce(tensor, op);
        return CompletedCollective.Instance;
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        var source = TensorBuffer.Of(input, op, nameof(ReduceScatter));
        var target = TensorBuffer.Of(output, op, nameof(ReduceScatter));
        TensorBuffer.RequireChunks(source, target, 1, nameof(ReduceScatter));
        if (source.Address != target.Address)
            output.copy_(input);
    }

    public void AllGather(Tensor input, Tensor output)
    {
        var source = TensorBuffer.Of(input, nameof(AllGather));
        var target = TensorBuffer.Of(output, nameof(AllGather));
        TensorBuffer.RequireChunks(target, source, 1, nameof(AllGather));
        if (source.Address != target.Address)
            output.copy_(input);
    }

    public void Gather(Tensor input, Tensor? output, int root = 0)
    {
        RequireRoot(root, nameof(Gather));
        AllGather(input, output ?? throw new ArgumentNullException(nameof(output), "the root of a Gather needs an output tensor"));
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        TensorBuffer.Of(tensor, nameof(Broadcast));
        RequireRoot(root, nameof(Broadcast));
    }

    private static void RequireRoot(int root, string operation)
    {
        if (root != 0)
            throw new StratusUserException($"{operation} root {root} is outside a world of 1 rank.");
    }

    public void Dispose()
    {
    }

    private sealed class CompletedCollective : IPendingCollective
    {
        public static readonly CompletedCollective Instance = new();

        public bool Test() => true;

        public void Wait()
        {
        }
    }
}
