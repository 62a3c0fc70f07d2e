// AdamW through libtorch's fused CPU/GPU kernel (`_fused_adamw_`), reached by TorchScript since
// TorchSharp exposes no fused or foreach option. TorchSharp's stock AdamW runs one small op per
// parameter per moment: on the 85 M-parameter GPT-2 shape it took 720-770 ms a step and glibc's
// allocator kept its temporaries (RSS grew ~400 MB a step); the fused kernel takes ~46 ms with
// flat memory (../shared/notes/PLATFORM.md). Weight decay applies to matrices (embeddings and
// Linear weights) only, not to biases and LayerNorm gains, as in nanoGPT.
using Stratus.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Training;

public sealed class AdamW : IOptimizer
{
    const string Script = """
        def adamw(params: List[Tensor], grads: List[Tensor], exp_avgs: List[Tensor], exp_avg_sqs: List[Tensor], steps: List[Tensor], lr: float, beta1: float, beta2: float, weight_decay: float, eps: float) -> Tensor:
            torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps, amsgrad=False, maximize=False)
            return steps[0]

        def clip_grad_norm(grads: List[Tensor], max_norm: float) -> Tensor:
            norms = torch._foreach_norm(grads, 2.0)
            total = torch.norm(torch.stack(norms), 2.0)
            if max_norm > 0.0:
                coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
                torch._foreach_mul_(grads, coef)
            return total

        def zero(grads: List[Tensor]) -> Tensor:
            torch._foreach_zero_(grads)
            return grads[0]

        """;

    readonly jit.CompilationUnit compiled = CompileKernels();
    readonly Group decay, noDecay;
    readonly Tensor step;
    Tensor[]? allGrads;

    public AdamW(IEnumerable<(string Name, Tensor Parameter)> parameters, double beta1, double beta2, double weightDecay, double eps = 1e-8)
    {
        var list = parameters.ToList();
        Beta1 = beta1;
        Beta2 = beta2;
        WeightDecay = weightDecay;
        Eps = eps;
        var device = list[0].Parameter.device;
        step = zeros([], ScalarType.Float32, device);
        decay = new Group(list.Where(p => p.Parameter.dim() >= 2).ToList(), step);
        noDecay = new Group(list.Where(p => p.Parameter.dim() < 2).ToList(), step);
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double WeightDecay { get; }
    public double Eps { get; }

    /// <summary>Optimizer steps taken so far.</summary>
    public long Steps => (long)step.item<float>();

    IEnumerable<Group> Groups => [decay, noDecay];

    /// <summary>The TorchScript functions above (adamw, clip_grad_norm, zero), for optimizers that
    /// run the same kernels on other tensors (ZeRO-1 shards).</summary>
    internal static jit.CompilationUnit CompileKernels() => jit.compile(Script);

    public long StateBytes => Groups.Sum(g => g.ExpAvg.Concat(g.ExpAvgSq).Sum(t => t.numel() * t.element_size()));

    /// <summary>A single process has every gradient already.</summary>
    public void ReduceGradients()
    {
    }

    /// <summary>Gradient tensors of all parameters, in order. Gradients are zeroed in place and
    /// never set to None, so their storage (and these handles) stay valid across steps.</summary>
    public Tensor[] Gradients => allGrads ??= Groups.SelectMany(g => g.Grads).ToArray();

    /// <summary>Scales gradients so their global L2 norm is at most maxNorm (0: only measure);
    /// returns the norm before clipping.</summary>
    public Tensor ClipGradientNorm(double maxNorm) => compiled.invoke<Tensor>("clip_grad_norm", Gradients, maxNorm);

    public void Step(double learningRate)
    {
        step.add_(1);
        foreach (var group in Groups)
        {
            if (group.Params.Length == 0) continue;
            var wd = ReferenceEquals(group, decay) ? WeightDecay : 0.0;
            using var _ = compiled.invoke<Tensor>("adamw", group.Params, group.Grads, group.ExpAvg, group.ExpAvgSq, group.Steps,
                learningRate, Beta1, Beta2, wd, Eps);
        }
    }

    public void ZeroGrad()
    {
        if (Gradients.Length > 0) using (compiled.invoke<Tensor>("zero", new object[] { Gradients })) { }
    }

    /// <summary>Moments by parameter name plus the step count, for checkpoints.</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor> { ["step"] = step };
        foreach (var group in Groups)
        {
            for (var i = 0; i < group.Names.Length; i++)
            {
                state[$"exp_avg.{group.Names[i]}"] = group.ExpAvg[i];
                state[$"exp_avg_sq.{group.Names[i]}"] = group.ExpAvgSq[i];
            }
        }
        return state;
    }

    public void LoadStateDict(SafeTensors.Reader state)
    {
        using var noGrad = no_grad();
        foreach (var (name, tensor) in StateDict())
        {
            using var saved = state.Read(name, tensor.shape, tensor.dtype, StateMismatch);
            tensor.copy_(saved);
        }
    }

    /// <summary>What an optimizer state without a tensor the model's parameters need, or with
    /// one of another shape or type, means.</summary>
    internal const string StateMismatch = "the optimizer state does not match this model; restore the checkpoint, or start a new run from its weights with --init-from";

    public void Dispose()
    {
        compiled.Dispose();
        foreach (var group in Groups) group.Dispose();
        step.Dispose();
    }

    sealed class Group : IDisposable
    {
        public Group(List<(string Name, Tensor Parameter)> parameters, Tensor step)
        {
            Names = parameters.Select(p => p.Name).ToArray();
            Params = parameters.Select(p => p.Parameter).ToArray();
            ExpAvg = Params.Select(p => zeros_like(p)).ToArray();
            ExpAvgSq = Params.Select(p => zeros_like(p)).ToArray();
            // The fused kernel reads one step count per parameter; they all share one tensor,
            // which Step() increments once.
            Steps = Params.Select(_ => step).ToArray();
        }

        public string[] Names { get; }
        public Tensor[] Params { get; }
        public Tensor[] ExpAvg { get; }
        public Tensor[] ExpAvgSq { get; }
        public Tensor[] Steps { get; }

        Tensor[]? grads;

        // Kept for the optimizer's lifetime, so taken out of any dispose scope open at first use.
        public Tensor[] Grads => grads ??= Params.Select(p => (p.grad ?? throw new InvalidOperationException("gradients are read after the first backward pass")).DetachFromDisposeScope()).ToArray();

        public void Dispose()
        {
            foreach (var t in ExpAvg) t.Dispose();
            foreach (var t in ExpAvgSq) t.Dispose();
        }
    }
}
