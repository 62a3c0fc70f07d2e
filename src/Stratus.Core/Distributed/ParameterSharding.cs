// ZeRO stage 1: every rank keeps the full parameters and gradients but optimizer state for only
// its own 1/N of them. All parameters live in one flat fp32 buffer (each Parameter's storage is
// moved into it), all gradients in another (each .grad is a view into it). A step is then:
//   backward                 -> gradients accumulate into FlatGradients
//   ReduceScatterGradients   -> GradientShard = this rank's slice of the gradients summed over ranks
//   optimizer on the shard   -> e.g. _fused_adamw_([ParameterShard], [GradientShard], [m], [v], ...)
//   AllGatherParameters      -> every rank's updated slice lands in every rank's parameters
// ParameterShard is a view of FlatParameters, so the optimizer updates the model's own weights in
// place and the all-gather needs no copy (MPI_IN_PLACE). Weight-decay groups are views of the
// shard cut along Layout.Segments.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class ParameterSharding : IDisposable
{
    private readonly ICommunicator _communicator;
    private readonly Parameter[] _parameters;
    private readonly Tensor[] _gradientViews;

    /// <summary>
    /// Moves the parameters into one flat buffer (values broadcast from rank 0 so all ranks start
    /// equal) and points their gradients into a second one. All parameters must be float32.
    /// </summary>
    public ParameterSharding(IEnumerable<Parameter> parameters, ICommunicator communicator)
    {
        _communicator = communicator;
        _parameters = parameters.Where(p => p.requires_grad).ToArray();
        foreach (var parameter in _parameters)
        {
            if (parameter.dtype != ScalarType.Float32)
                throw new StratusUserException($"ZeRO sharding keeps fp32 master weights; got a parameter of dtype {parameter.dtype} (cast the model to float32 and cast per step for bf16 compute).");
            if (parameter.device_type != DeviceType.CPU)
                throw new StratusUserException($"ZeRO sharding here needs CPU parameters; got one on {parameter.device}.");
        }
        Layout = ShardLayout.Compute(_parameters.Select(p => p.numel()).ToArray(), communicator.WorldSize, communicator.Rank);
        FlatParameters = zeros(Layout.PaddedElements, dtype: ScalarType.Float32);
        FlatGradients = zeros(Layout.PaddedElements, dtype: ScalarType.Float32);
        _gradientViews = new Tensor[_parameters.Length];
        using (no_grad())
        {
            for (var i = 0; i < _parameters.Length; i++)
            {
                var parameter = _parameters[i];
                using var values = FlatParameters.narrow(0, Layout.ParameterOffsets[i], parameter.numel()).view(parameter.shape);
                values.copy_(parameter);
                // The parameter now shares the flat buffer's storage: updates to the shard are
                // updates to the model.
                parameter.set_(values);
                _gradientViews[i] = FlatGradients.narrow(0, Layout.ParameterOffsets[i], parameter.numel()).view(parameter.shape);
                parameter.grad = _gradientViews[i];
            }
        }
        communicator.Broadcast(FlatParameters, root: 0);
        ParameterShard = FlatParameters.narrow(0, Layout.ShardStart, Layout.ShardElements);
        GradientShard = zeros(Layout.ShardElements, dtype: ScalarType.Float32);
    }

    public ShardLayout Layout { get; }

    /// <summary>All parameters, flat and padded; each Parameter's storage is a slice of it.</summary>
    public Tensor FlatParameters { get; }

    /// <summary>All gradients, flat and padded; each Parameter's .grad is a view into it.</summary>
    public Tensor FlatGradients { get; }

    /// <summary>This rank's slice of <see cref="FlatParameters"/> (a view: updating it updates the model).</summary>
    public Tensor ParameterShard { get; }

    /// <summary>This rank's slice of the reduced gradients, filled by <see cref="ReduceScatterGradients"/>.</summary>
    public Tensor GradientShard { get; }

    /// <summary>Zeroes all gradients in place, keeping .grad pointing into <see cref="FlatGradients"/>.</summary>
    public void ZeroGradients() => FlatGradients.zero_();

    /// <summary>Reduces gradients across ranks with <paramref name="op"/> into <see cref="GradientShard"/>. Call after backward on every rank.</summary>
    public void ReduceScatterGradients(ReduceOp op)
    {
        RequireGradientsInPlace();
        _communicator.ReduceScatter(FlatGradients, GradientShard, op);
    }

    /// <summary>Sends this rank's updated <see cref="ParameterShard"/> to all ranks, so every model is complete again.</summary>
    public void AllGatherParameters() => _communicator.AllGather(ParameterShard, FlatParameters);

    public void Dispose()
    {
        foreach (var view in _gradientViews)
            view.Dispose();
        GradientShard.Dispose();
        ParameterShard.Dispose();
        FlatGradients.Dispose();
        FlatParameters.Dispose();
    }

    // A gradient outside FlatGradients would be silently left out of the reduction.
    private void RequireGradientsInPlace()
    {
        for (var i = 0; i < _parameters.Length; i++)
        {
            using var grad = _parameters[i].grad;
            if (grad is null)
            {
                _gradientViews[i].zero_();
                _parameters[i].grad = _gradientViews[i];
            }
            else if (!SameMemory(grad, _gradientViews[i]))
            {
                _gradientViews[i].copy_(grad);
                _parameters[i].grad = _gradientViews[i];
            }
        }
    }

    private static bool SameMemory(Tensor a, Tensor b) =>
        a.is_contiguous() && a.dtype == b.dtype && TensorBuffer.Of(a, nameof(ParameterSharding)).Address == TensorBuffer.Of(b, nameof(ParameterSharding)).Address;
}
