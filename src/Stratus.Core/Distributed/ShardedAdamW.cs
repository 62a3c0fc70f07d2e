// ZeRO stage 1 with AdamW: every rank keeps all parameters and gradients but the two moments of
// only its 1/N of the flat parameter space (ParameterSharding). After a step's last backward pass
// the gradients are reduce-scattered (each rank receives the sum of its own shard), clipped by the
// global norm (each shard contributes its squared norm), updated by the fused AdamW kernel on this
// rank's shard only, and all-gathered back into every rank's parameters.
//
// Weight decay follows AdamW (matrices decay, vectors do not): the shard is cut into runs of
// consecutive parameters of one kind, and each kind gets one fused call over its runs.
// Checkpoints hold the full moments in AdamW's layout, gathered from all ranks, so a run resumes
// with any world size and is re-sharded on load.
using Stratus.Formats;
using Stratus.Training;
using AdamW = Stratus.Training.AdamW;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class ShardedAdamW : IOptimizer
{
    private readonly ICommunicator _communicator;
    private readonly ParameterSharding _sharding;
    private readonly string[] _names;
    private readonly long[][] _shapes;
    private readonly jit.CompilationUnit _kernels = AdamW.CompileKernels();
    private readonly Tensor _expAvg, _expAvgSq, _step;
    private readonly Group _decay, _noDecay;
    private readonly double _beta1, _beta2, _weightDecay, _eps;

    public ShardedAdamW(IReadOnlyList<(string Name, Parameter Parameter)> parameters, ICommunicator communicator,
        double beta1, double beta2, double weightDecay, double eps = 1e-8)
    {
        _communicator = communicator;
        (_beta1, _beta2, _weightDecay, _eps) = (beta1, beta2, weightDecay, eps);
        // ParameterSharding lays out the trainable parameters in this order; the names and
        // shapes follow the same indices.
        var trainable = parameters.Where(p => p.Parameter.requires_grad).ToArray();
        _names = trainable.Select(p => p.Name).ToArray();
        _shapes = trainable.Select(p => p.Parameter.shape).ToArray();
        var decays = trainable.Select(p => p.Parameter.dim() >= 2).ToArray();
        _sharding = new ParameterSharding(trainable.Select(p => p.Parameter), communicator);
        var layout = _sharding.Layout;
        _expAvg = zeros(layout.ShardElements, dtype: ScalarType.Float32);
        _expAvgSq = zeros(layout.ShardElements, dtype: ScalarType.Float32);
        _step = zeros([], ScalarType.Float32);

        // Segments are consecutive in the shard, so neighbours of the same kind merge into one run.
        var runs = new List<(long Offset, long Length, bool Decay)>();
        foreach (var segment in layout.Segments)
        {
            var decay = decays[segment.ParameterIndex];
            if (runs.Count > 0 && runs[^1].Decay == decay && runs[^1].Offset + runs[^1].Length == segment.ShardOffset)
                runs[^1] = runs[^1] with { Length = runs[^1].Length + segment.Length };
            else
                runs.Add((segment.ShardOffset, segment.Length, decay));
        }
        _decay = new Group(this, runs.Where(r => r.Decay).Select(r => (r.Offset, r.Length)));
        _noDecay = new Group(this, runs.Where(r => !r.Decay).Select(r => (r.Offset, r.Length)));
    }

    public ShardLayout Layout => _sharding.Layout;

    public long StateBytes => (_expAvg.numel() + _expAvgSq.numel()) * _expAvg.element_size();

    /// <summary>Sums, not averages, as in <see cref="DataParallelAdamW.ReduceGradients"/>.</summary>
    public void ReduceGradients() => _sharding.ReduceScatterGradients(ReduceOp.Sum);

    public Tensor ClipGradientNorm(double maxNorm)
    {
        // Padding in the last shard is zero and adds nothing to the norm.
        double squared;
        using (var local = _sharding.GradientShard.norm())
            squared = Math.Pow(local.item<float>(), 2);
        var total = Math.Sqrt(_communicator.SumOverRanks(squared)[0]);
        var coefficient = maxNorm / (total + 1e-6);
        if (maxNorm > 0 && coefficient < 1)
            _sharding.GradientShard.mul_(coefficient);
        return tensor((float)total);
    }

    public void Step(double learningRate)
    {
        _step.add_(1);
        foreach (var (group, weightDecay) in new[] { (_decay, _weightDecay), (_noDecay, 0.0) })
        {
            if (group.Params.Length == 0)
                continue;
            using var _ = _kernels.invoke<Tensor>("adamw", group.Params, group.Grads, group.ExpAvg, group.ExpAvgSq, group.Steps,
                learningRate, _beta1, _beta2, weightDecay, _eps);
        }
        _sharding.AllGatherParameters();
    }

    // The shard is overwritten by the next reduce-scatter; only the full gradients accumulate.
    public void ZeroGrad() => _sharding.ZeroGradients();

    public Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor> { ["step"] = _step };
        foreach (var (prefix, shard) in new[] { ("exp_avg", _expAvg), ("exp_avg_sq", _expAvgSq) })
        {
            // Only the main rank, which writes checkpoints, holds the full moments.
            var full = _communicator.IsMain ? zeros(Layout.PaddedElements, dtype: ScalarType.Float32) : null;
            _communicator.Gather(shard, full);
            if (full is null) continue;
            for (var i = 0; i < _names.Length; i++)
                state[$"{prefix}.{_names[i]}"] = full.narrow(0, Layout.ParameterOffsets[i], ShapeElements(_shapes[i])).view(_shapes[i]);
        }
        return state;
    }

    public void LoadStateDict(SafeTensors.Reader state)
    {
        using var noGrad = no_grad();
        using (var step = state.Read("step", _step.shape, _step.dtype, AdamW.StateMismatch)) _step.copy_(step);
        var segments = Layout.Segments.ToLookup(s => s.ParameterIndex);
        foreach (var (prefix, shard) in new[] { ("exp_avg", _expAvg), ("exp_avg_sq", _expAvgSq) })
        {
            // This rank's share of each parameter's moments, wherever the saving job cut its
            // shards; a parameter's saved moments are read when they are copied, one at a time.
            for (var i = 0; i < _names.Length; i++)
            {
                // Every rank refuses a state that one would: those of parameters in no segment of
                // this rank's shard are checked, not read.
                state.Require($"{prefix}.{_names[i]}", _shapes[i], _expAvg.dtype, AdamW.StateMismatch);
                if (!segments.Contains(i)) continue;
                using var saved = state.Read($"{prefix}.{_names[i]}", _shapes[i], _expAvg.dtype, AdamW.StateMismatch);
                using var flat = saved.reshape(-1);
                foreach (var segment in segments[i])
                {
                    using var source = flat.narrow(0, segment.ParameterOffset, segment.Length);
                    using var target = shard.narrow(0, segment.ShardOffset, segment.Length);
                    target.copy_(source);
                }
            }
        }
    }

    public void Dispose()
    {
        _decay.Dispose();
        _noDecay.Dispose();
        _kernels.Dispose();
        _expAvg.Dispose();
        _expAvgSq.Dispose();
        _step.Dispose();
        _sharding.Dispose();
    }

    private static long ShapeElements(long[] shape) => shape.Aggregate(1L, (product, size) => product * size);

    // Views of one weight-decay kind's runs in the parameter shard, the gradient shard and the
    // moments, as the fused kernel's tensor lists.
    private sealed class Group : IDisposable
    {
        public Group(ShardedAdamW owner, IEnumerable<(long Offset, long Length)> runs)
        {
            var list = runs.ToArray();
            Params = list.Select(r => owner._sharding.ParameterShard.narrow(0, r.Offset, r.Length)).ToArray();
            Grads = list.Select(r => owner._sharding.GradientShard.narrow(0, r.Offset, r.Length)).ToArray();
            ExpAvg = list.Select(r => owner._expAvg.narrow(0, r.Offset, r.Length)).ToArray();
            ExpAvgSq = list.Select(r => owner._expAvgSq.narrow(0, r.Offset, r.Length)).ToArray();
            // The fused kernel reads one step count per tensor; all share the one Step() increments.
            Steps = list.Select(_ => owner._step).ToArray();
        }

        public Tensor[] Params { get; }

        public Tensor[] Grads { get; }

        public Tensor[] ExpAvg { get; }

        public Tensor[] ExpAvgSq { get; }

        public Tensor[] Steps { get; }

        public void Dispose()
        {
            foreach (var view in Params.Concat(Grads).Concat(ExpAvg).Concat(ExpAvgSq))
                view.Dispose();
        }
    }
}
