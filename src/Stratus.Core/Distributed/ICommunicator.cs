// The collective operations that data-parallel and ZeRO training need, over TorchSharp tensors.
// Every operation works on the tensor's own memory (no staging copies): tensors must be
// contiguous CPU tensors of a supported dtype (see TensorBuffer). All ranks must call the same
// operations in the same order with tensors of the same size, as with any MPI collective.
using static TorchSharp.torch;

namespace Stratus.Distributed;

/// <summary>How values from all ranks are combined.</summary>
public enum ReduceOp
{
    Sum,
    /// <summary>Sum divided by the world size (floating-point dtypes only).</summary>
    Average,
    Max,
}

/// <summary>A group of cooperating processes (ranks). Disposing it ends the group (MPI_Finalize).</summary>
public interface ICommunicator : IDisposable
{
    /// <summary>This process's index, 0 .. WorldSize - 1.</summary>
    int Rank { get; }

    int WorldSize { get; }

    /// <summary>True on rank 0, the rank that logs and writes checkpoints (every rank evaluates its
    /// share of the batches).</summary>
    bool IsMain { get; }

    /// <summary>Combines <paramref name="tensor"/> across all ranks, in place.</summary>
    void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum);

    /// <summary>
    /// Starts an in-place all-reduce and returns at once, so that several can be in flight together
    /// (GradientBuckets starts every bucket's after backward, then waits for all: TorchSharp has no
    /// hook to start one during backward). The tensor must stay alive and untouched until the
    /// returned operation has completed.
    /// </summary>
    IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum);

    /// <summary>
    /// Reduces <paramref name="input"/> (WorldSize equal chunks) across ranks and leaves chunk
    /// <see cref="Rank"/> of the result in <paramref name="output"/>. The caller pads the input
    /// so that its length is exactly WorldSize * output length.
    /// </summary>
    void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum);

    /// <summary>
    /// Concatenates every rank's <paramref name="input"/> into <paramref name="output"/> in rank
    /// order. <paramref name="input"/> may be this rank's own chunk of <paramref name="output"/>
    /// (the ZeRO layout), which then gathers in place.
    /// </summary>
    void AllGather(Tensor input, Tensor output);

    /// <summary>
    /// Concatenates every rank's <paramref name="input"/> into <paramref name="output"/> on rank
    /// <paramref name="root"/> only, in rank order; the other ranks pass no output and receive
    /// nothing. As with <see cref="AllGather"/>, the input may be the root's own chunk of the
    /// output. Saving ZeRO state uses it so that only the rank that writes holds a full copy.
    /// </summary>
    void Gather(Tensor input, Tensor? output, int root = 0);

    /// <summary>Copies <paramref name="tensor"/> from rank <paramref name="root"/> to all ranks, in place.</summary>
    void Broadcast(Tensor tensor, int root = 0);
}

/// <summary>A collective started by <see cref="ICommunicator.StartAllReduce"/>.</summary>
public interface IPendingCollective
{
    /// <summary>True once the operation has finished and its result is in the tensor (does not block).</summary>
    bool Test();

    /// <summary>Blocks until the operation has finished and its result is in the tensor.</summary>
    void Wait();
}
