// What the trainer needs from an optimizer, whether it runs alone (AdamW), replicated over
// data-parallel ranks (DataParallelAdamW) or sharded over them (ShardedAdamW, ZeRO-1). A step is
// always: backward on every micro-batch, ReduceGradients, ClipGradientNorm, Step, ZeroGrad.
using Stratus.Formats;
using static TorchSharp.torch;

namespace Stratus.Training;

public interface IOptimizer : IDisposable
{
    /// <summary>Combines the gradients of all ranks after a step's last backward pass (nothing to
    /// do in a world of one). Every rank must call it.</summary>
    void ReduceGradients();

    /// <summary>Scales the (reduced) gradients so their global L2 norm is at most maxNorm (0: only
    /// measure); returns the norm before clipping, the same on every rank, as a float32 scalar on
    /// the model's device (reading it waits for the GPU) that belongs to the caller's dispose
    /// scope.</summary>
    Tensor ClipGradientNorm(double maxNorm);

    void Step(double learningRate);

    void ZeroGrad();

    /// <summary>The full optimizer state (moments by parameter name and "step"), as a single
    /// process would hold it, so checkpoints do not depend on the world size. Under ZeRO-1 this
    /// is a collective that every rank must call, and only the main rank gets the moments (the
    /// others get "step" alone); tensors it creates belong to the caller's dispose scope.</summary>
    Dictionary<string, Tensor> StateDict();

    /// <summary>Loads a state written by <see cref="StateDict"/> with any world size, from its
    /// file, a tensor at a time (a whole GPT-2's moments are a gigabyte).</summary>
    void LoadStateDict(SafeTensors.Reader state);

    /// <summary>Bytes of optimizer moments this rank holds.</summary>
    long StateBytes { get; }
}
