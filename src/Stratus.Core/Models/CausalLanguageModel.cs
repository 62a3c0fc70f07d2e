// What every decoder in Stratus offers the trainer, the sampler and the serving engine.
using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Models;

public abstract class CausalLanguageModel : nn.Module
{
    protected CausalLanguageModel(string name, ModelConfig config) : base(name)
    {
        config.Validate();
        Config = config;
    }

    public ModelConfig Config { get; }

    /// <summary>Shared with every layer so one switch changes the precision of all matmuls.</summary>
    protected readonly MatmulPrecision Precision = new();

    /// <summary>The dtype of matrix multiplications. Parameters stay as they are (fp32 master
    /// weights in training) and are cast per use, because TorchSharp has no autocast.</summary>
    public ScalarType ComputeDtype
    {
        get => Precision.Dtype;
        set => Precision.Dtype = value;
    }

    /// <summary>The weights inference matmuls of up to DecodeKernel.MaxRows (8) rows read, through the decode kernels
    /// in DecodeKernel.cs (single-stream and small-batch decoding); larger batches, training and
    /// anything needing gradients keep libtorch. bf16 copies are made on first use, so set this
    /// again after changing the weights.</summary>
    public DecodeWeights DecodeWeights
    {
        get => Precision.Decode?.Weights ?? DecodeWeights.Torch;
        set => Precision.Decode = value == DecodeWeights.Torch ? null : new DecodeKernel(value);
    }

    /// <summary>The decode kernel itself, to keep one (and its bf16 copies) across switches.</summary>
    public DecodeKernel? DecodeKernel
    {
        get => Precision.Decode;
        set => Precision.Decode = value;
    }

    public Device Device => parameters().First().device;

    /// <summary>Logits [B, T, vocab] in fp32 for token ids [B, T]; with a cache, the tokens
    /// continue what the cache holds. A decode step (one token per row, up to the decode kernel's
    /// rows, its cache stored in place) runs whole in managed code (<see cref="Models.DecodeStep"/>).</summary>
    public Tensor Forward(Tensor tokens, IKvCache? cache = null)
    {
        var (rows, length) = ((int)tokens.size(0), (int)tokens.size(1));
        if (cache is null && length > Config.BlockSize)
            throw new StratusUserException($"sequence of {length} tokens is longer than block_size {Config.BlockSize}");
        using var threads = Precision.DecodeThreads(tokens);
        using var scope = NewDisposeScope();
        Tensor logits;
        if (cache is not null && DecodesInManagedCode(rows, length, cache))
        {
            Span<int> ids = stackalloc int[rows];
            using (var cpu = tokens.to(ScalarType.Int64).contiguous())
            {
                // An id beyond int is beyond any vocabulary: clamped, the step refuses it as such.
                var data = cpu.data<long>();
                for (var b = 0; b < rows; b++) ids[b] = (int)Math.Clamp(data[b], int.MinValue, int.MaxValue);
            }
            logits = empty(rows, 1, Config.VocabSize);
            Decode(ids, cache, MemoryMarshal.Cast<byte, float>(logits.bytes));
        }
        else
        {
            cache?.BeginStep(length);
            var positions = cache?.Positions ?? arange(length, dtype: ScalarType.Int64, device: tokens.device).unsqueeze(0);
            var hidden = FinalHiddenStates(tokens, positions, cache);
            // An untied head is a layer, which a LoRA adapter on lm_head adds to.
            logits = (LmHead is { } head ? Precision.Linear(hidden, head) : Precision.Linear(hidden, LmHeadWeight)).to(ScalarType.Float32);
            cache?.EndStep();
        }
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>A decode step run whole in managed code where it qualifies (see Forward): the
    /// logits [rows, vocab] of one token id per row continuing the cache's rows, written to
    /// <paramref name="logits"/> without making a tensor (the serving engine's per-token path).
    /// Returns false, the cache untouched, where the step needs libtorch: then call Forward.</summary>
    public bool TryDecode(ReadOnlySpan<int> tokens, IKvCache cache, Span<float> logits)
    {
        if (!DecodesInManagedCode(tokens.Length, 1, cache)) return false;
        // No libtorch op runs in the step, so libtorch's threads are left as they are (DecodeThreads).
        Decode(tokens, cache, logits);
        return true;
    }

    bool DecodesInManagedCode(int rows, int newTokens, IKvCache cache) =>
        ManagedDecodeStep && DecodeStep.Applies(rows, newTokens, cache, Precision.Decode, training && Config.Dropout > 0, LmHeadWeight, Precision.Adapters.Count > 0);

    void Decode(ReadOnlySpan<int> tokens, IKvCache cache, Span<float> logits)
    {
        cache.BeginStep(1);
        (decodeStep ??= NewDecodeStep()).Run(tokens, cache, Precision.Decode!, logits);
        cache.EndStep();
    }

    DecodeStep? decodeStep;

    /// <summary>Whether decode steps that qualify run whole in managed code (the default); when
    /// off, only their matmuls go through the decode kernel and libtorch runs the rest (what
    /// benchmarks and tests compare it with).</summary>
    public bool ManagedDecodeStep { get; set; } = true;

    /// <summary>The architecture's body: hidden states [B, T, n_embd] after the final norm, for
    /// tokens at positions [B or 1, T] (in a cache's step between its BeginStep and EndStep).</summary>
    protected abstract Tensor FinalHiddenStates(Tensor tokens, Tensor positions, IKvCache? cache);

    /// <summary>The architecture's whole-step decode in managed code.</summary>
    protected abstract DecodeStep NewDecodeStep();

    /// <summary>The LM head's [vocab, n_embd] weight (the token embedding when tied).</summary>
    protected abstract Tensor LmHeadWeight { get; }

    /// <summary>The LM head as a layer of its own, or null where it is tied to the token embedding.</summary>
    protected abstract TorchSharp.Modules.Linear? LmHead { get; }

    /// <summary>Key/value heads per layer (fewer than query heads with grouped-query attention).</summary>
    public int KvHeads => Config.KvHeads;

    public KvCache CreateCache(int batch, int capacity, ScalarType? dtype = null) =>
        new(Config.NLayer, batch, KvHeads, Config.HeadDim, Math.Min(capacity, Config.BlockSize), dtype ?? ComputeDtype, Device);

    /// <summary>Number of parameters; without the position embedding when nonEmbedding
    /// (nanoGPT's convention for FLOPs, since a lookup costs no multiply-adds).</summary>
    public abstract long ParameterCount(bool nonEmbedding = true);

    /// <summary>Training FLOPs per token (forward and backward), PaLM appendix B as nanoGPT:
    /// 6N + 12 * n_layer * n_head * head_dim * T, less 2 per frozen weight: LoRA freezes every
    /// weight but its adapters (Lora.Attach), and a frozen one costs its forward pass and the
    /// gradient it passes back (4 FLOPs a token), never a gradient of its own (2 more). Counted at
    /// 6, a LoRA run's MFU read half as high again as the work done.</summary>
    public double TrainingFlopsPerToken(int sequenceLength)
    {
        var frozen = Config.Lora is null ? 0 : ParameterCount() - named_parameters().Where(p => p.name.StartsWith("lora.", StringComparison.Ordinal)).Sum(p => p.parameter.numel());
        return 6.0 * ParameterCount() - 2.0 * frozen + 12.0 * Config.NLayer * Config.NHead * Config.HeadDim * sequenceLength;
    }

    /// <summary>Called by each architecture once its layers exist: adds LoRA adapters when the
    /// config asks for them.</summary>
    private protected void AttachAdapters(LayerFactory make)
    {
        if (Config.Lora is { } lora) Lora.Attach(this, lora, Precision, make);
    }

    /// <summary>Folds LoRA updates into the base weights (see Lora.Merge); a no-op without LoRA.
    /// The "lora." tensors that remain are zero and are left out of exports.</summary>
    public void MergeAdapters() => Lora.Merge(Precision);

    /// <summary>A model of <paramref name="config"/> with its parameters made on
    /// <paramref name="device"/> (the CPU by default); on torch.META they have shapes and no
    /// storage: the weights a config implies, by name and shape, for nothing.</summary>
    /// <param name="initialize">Whether the parameters get their initial values (random, for
    /// training); without, they are left as allocated, for <see cref="Load"/> to write.</param>
    public static CausalLanguageModel Create(ModelConfig config, Device? device = null, bool initialize = true) => config.Architecture switch
    {
        "gpt2" => new Gpt(config, device, initialize),
        "llama" => new Llama(config, device, initialize),
        _ => throw new StratusUserException($"unknown architecture '{config.Architecture}'; supported: gpt2, llama"),
    };

    /// <summary>A model of <paramref name="config"/> on the CPU holding the weights
    /// <paramref name="weights"/> writes, each into the parameter its state-dict name names. The
    /// parameters get no initial values first: the weights replace them all (an import drew
    /// random numbers twice per parameter for nothing, a quarter of its time). So a parameter no
    /// weight writes would hold whatever its memory held, and is refused, as a weight the model
    /// lacks is: whoever calls this has checked its file against <see cref="ImpliedWeights"/>.
    /// With <paramref name="initialize"/> the parameters get their initial values first, drawn as
    /// <see cref="Create"/> draws them, and those no weight writes keep them: a fine-tune's new
    /// LoRA adapters, the same for the same seed as before the base's weights were loaded.</summary>
    public static CausalLanguageModel Load(ModelConfig config, IEnumerable<(string Name, Action<Tensor> Write)> weights, bool initialize = false)
    {
        var model = Create(config, initialize: initialize);
        try
        {
            var unset = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
            using var noGrad = no_grad();
            foreach (var (name, write) in weights)
            {
                if (!unset.Remove(name, out var parameter)) throw new InvalidOperationException($"weight {name} is not a parameter of the {config.Architecture} model left to load");
                using var scope = NewDisposeScope();
                write(parameter);
            }
            if (unset.Count > 0 && !initialize)
                throw new InvalidOperationException($"{unset.Count} parameter(s) of the {config.Architecture} model were given no weight, such as {unset.Keys.Order(StringComparer.Ordinal).First()}; a model is loaded whole");
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The weights (state-dict names and shapes) a model of <paramref name="config"/>
    /// has, found without allocating them: what a file's header is checked against before a
    /// config read from a file (model.json, config.json) has its model built.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> ImpliedWeights(ModelConfig config)
    {
        using var implied = Create(config, META);
        return [.. implied.state_dict().Select(weight => (weight.Key, weight.Value.shape))];
    }
}

/// <summary>Makes a model's linear and embedding layers, its parameters almost all, on one
/// device: filled with initial values as TorchSharp's nn.Linear and nn.Embedding fill them (the
/// architecture then draws its own), or left as allocated where weights are about to replace
/// them (<see cref="CausalLanguageModel.Load"/>). On torch.META they have shapes and no storage.</summary>
sealed class LayerFactory(Device? device, bool initialize)
{
    public Device? Device => device;

    /// <summary>Whether the parameters get initial values: a META tensor has none to fill.</summary>
    public bool Initializes => initialize && device?.type != DeviceType.META;

    public Linear Linear(long inputs, long outputs, bool bias) => Initializes
        ? nn.Linear(inputs, outputs, hasBias: bias, device: device)
        : nn.Linear(new Parameter(empty(outputs, inputs, device: device)), bias ? new Parameter(empty(outputs, device: device)) : null);

    /// <summary>nn.Embedding(rows, width). TorchSharp's makes and fills its table on the CPU, then
    /// moves it: on torch.META that cost rows x width floats of memory (gigabytes for a config
    /// naming a large vocabulary and width, before any file was checked against it). Without
    /// initial values the table is made where it belongs, in a module made with an empty one:
    /// filling even one row drew from the seeded generator.</summary>
    public Embedding Embedding(long rows, long width)
    {
        if (Initializes) return nn.Embedding(rows, width, device: device);
        var embedding = nn.Embedding(0, 0);
        embedding.weight = new Parameter(empty(rows, width, device: device));
        return embedding;
    }
}

/// <summary>
/// The compute dtype of a model's matmuls. A plain object, not a module, so that layers can hold
/// it without it being registered as a submodule.
/// </summary>
public sealed class MatmulPrecision
{
    public ScalarType Dtype { get; set; } = ScalarType.Float32;

    /// <summary>The kernel for small-batch inference matmuls, or null for libtorch.</summary>
    public DecodeKernel? Decode { get; set; }

    /// <summary>x @ weight^T + bias in <see cref="Dtype"/>: casts the input and the (fp32 master)
    /// weight for the matmul; gradients flow back to the master weight through the cast.</summary>
    public Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (Decode is { } decode && DecodeKernel.Applies(x)) return decode.Apply(x, weight, bias);
        if (Dtype == weight.dtype && Dtype == x.dtype) return nn.functional.linear(x, weight, bias);
        return nn.functional.linear(x.to(Dtype), weight.to(Dtype), bias?.to(Dtype));
    }

    /// <summary>Opened around a forward pass whose matmuls the decode kernel takes (up to
    /// <see cref="DecodeKernel.MaxRows"/> tokens, no gradients, CPU): libtorch then runs the
    /// remaining small ops on the calling thread alone. Otherwise its OpenMP workers spin-wait
    /// after every op it parallelises (attention over the heads, ops on the logits) and take the
    /// cores the decode kernel's own threads need: measured here, GPT-2 124M single-stream
    /// decode went from 64 to 95 tok/s (bf16 weights) and from 31 to 47 tok/s (fp32).</summary>
    public IDisposable? DecodeThreads(Tensor tokens) =>
        Decode is not null && !is_grad_enabled() && tokens.device_type == DeviceType.CPU && tokens.numel() <= DecodeKernel.MaxRows
            ? new SingleThreadedTorch() : null;

    sealed class SingleThreadedTorch : IDisposable
    {
        readonly int previous = get_num_threads();

        public SingleThreadedTorch() => set_num_threads(1);

        public void Dispose() => set_num_threads(previous);
    }

    /// <summary>Causal self-attention over a whole sequence (no KV cache) through
    /// scaled_dot_product_attention, in <see cref="Dtype"/> except where that is slower: on the
    /// CPU, libtorch's flash-attention backward in bf16 runs its 32-query blocks as small bf16
    /// GEMMs with a fixed cost each, so below 256 positions fp32 is faster and more precise
    /// (measured here, forward + backward of 12 heads of 64 at batch 4: 5.7 ms bf16 vs 2.5 ms
    /// fp32 at 64 positions, 13.2 vs 7.7 ms at 128; about equal at 256; from 512 on bf16 wins).
    /// k and v may have fewer heads than q (grouped-query attention).</summary>
    public Tensor CausalAttention(Tensor q, Tensor k, Tensor v, double dropout)
    {
        (k, v) = (RepeatKvHeads(k, q.shape[1]), RepeatKvHeads(v, q.shape[1]));
        if (q.dtype == ScalarType.Float32 || q.device_type != DeviceType.CPU || q.shape[^2] >= ReducedPrecisionAttentionFrom)
            return nn.functional.scaled_dot_product_attention(q, k, v, p: dropout, is_casual: true);
        var y = nn.functional.scaled_dot_product_attention(q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32), p: dropout, is_casual: true);
        return y.to(q.dtype);
    }

    const int ReducedPrecisionAttentionFrom = 256;

    /// <summary>Grouped-query attention for libtorch's attention: each key/value head of
    /// <paramref name="x"/> [B, kv_heads, T, D] repeated for the query heads it serves.</summary>
    internal static Tensor RepeatKvHeads(Tensor x, long heads) =>
        x.shape[1] == heads ? x : x.repeat_interleave(heads / x.shape[1], dim: 1);

    /// <summary>LoRA adapters by the layer they adapt, with their scale (alpha / rank).</summary>
    public Dictionary<TorchSharp.Modules.Linear, (LoraAdapter Adapter, double Scale)> Adapters { get; } = [];

    /// <summary>Several layers applied to the same input: one fused pass of the decode kernel
    /// when it applies (and no layer has a LoRA adapter), otherwise one product each.</summary>
    public Tensor[] Linear(Tensor x, params TorchSharp.Modules.Linear[] layers)
    {
        if (Decode is { } decode && DecodeKernel.Applies(x) && !layers.Any(Adapters.ContainsKey))
            return decode.Apply(x, layers.Select(l => ((Tensor)l.weight!, (Tensor?)l.bias)).ToArray());
        return layers.Select(l => Linear(x, l)).ToArray();
    }

    public Tensor Linear(Tensor x, TorchSharp.Modules.Linear layer)
    {
        var y = Linear(x, layer.weight!, layer.bias);
        return Adapters.TryGetValue(layer, out var lora) ? y + lora.Adapter.Forward(x, this, lora.Scale).to(y.dtype) : y;
    }
}
