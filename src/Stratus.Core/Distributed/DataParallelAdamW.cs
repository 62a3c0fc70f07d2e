// Data parallelism with replicated optimizer state, as PyTorch DDP with AdamW: every rank keeps all
// parameters and moments, the gradients of all ranks are summed in ~25 MB buckets
// (GradientBuckets) after a step's last backward pass, and every rank then takes the same fused
// AdamW step, so the replicas stay equal without sending parameters.
using Stratus.Formats;
using Stratus.Training;
using AdamW = Stratus.Training.AdamW;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class DataParallelAdamW : IOptimizer
{
    private readonly GradientBuckets _buckets;
    private readonly AdamW _adamW;

    public DataParallelAdamW(IReadOnlyList<(string Name, Parameter Parameter)> parameters, ICommunicator communicator,
        double beta1, double beta2, double weightDecay)
    {
        // Buckets first: they broadcast rank 0's weights and point every .grad into a bucket,
        // and AdamW then keeps those bucket views as its gradients.
        _buckets = new GradientBuckets(parameters.Select(p => p.Parameter), communicator);
        _adamW = new AdamW(parameters.Select(p => (p.Name, (Tensor)p.Parameter)), beta1, beta2, weightDecay);
    }

    public long StateBytes => _adamW.StateBytes;

    /// <summary>Sums, not averages: the trainer divides each micro-batch loss by the micro-batch
    /// count of the whole job, so the sum over ranks is the mean over the global batch.</summary>
    public void ReduceGradients() => _buckets.AllReduceGradients(ReduceOp.Sum);

    public Tensor ClipGradientNorm(double maxNorm) => _adamW.ClipGradientNorm(maxNorm);

    public void Step(double learningRate) => _adamW.Step(learningRate);

    public void ZeroGrad() => _buckets.ZeroGradients();

    public Dictionary<string, Tensor> StateDict() => _adamW.StateDict();

    public void LoadStateDict(SafeTensors.Reader state) => _adamW.LoadStateDict(state);

    public void Dispose()
    {
        _adamW.Dispose();
        _buckets.Dispose();
    }
}
