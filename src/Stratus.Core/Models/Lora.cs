// LoRA (Hu et al. 2021): a frozen linear layer W gains a trainable low-rank update
// (alpha / rank) * B A, with A [rank, in] random and B [out, rank] zero so training starts from
// the unchanged model. Adapters live under "lora.<layer path, dots as underscores>" in the state
// dict (lora.model_layers_0_self_attn_q_proj.lora_A), so a LoRA checkpoint holds base and
// adapters together; export merges the update into W.
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Models;

/// <param name="Targets">Linear layers by their own name (Llama: q_proj, k_proj, v_proj, o_proj,
/// gate_proj, up_proj, down_proj, and lm_head where it is not tied to the token embedding;
/// GPT-2: c_attn, c_proj, c_fc).</param>
public sealed record LoraConfig(int Rank, double Alpha, IReadOnlyList<string> Targets)
{
    [System.Text.Json.Serialization.JsonIgnore] public double Scale => Alpha / Rank;

    /// <summary>The same adapters: rank, alpha and the set of target layers (a record would
    /// compare the target lists by reference).</summary>
    public bool Equals(LoraConfig? other) =>
        other is not null && Rank == other.Rank && Alpha == other.Alpha && Targets.ToHashSet(StringComparer.Ordinal).SetEquals(other.Targets);

    public override int GetHashCode() => HashCode.Combine(Rank, Alpha);

    /// <summary>What makes these settings unusable, or null (checked with the rest of the model's
    /// config, <see cref="ModelConfig.Validate"/>). A NaN alpha would pass "not positive" and make
    /// every adapted layer's output NaN.</summary>
    public string? Problem() =>
        Rank <= 0 ? $"lora_rank must be positive, got {Rank}"
        : !(double.IsFinite(Alpha) && Alpha > 0) ? $"lora_alpha must be a positive number, got {Alpha}"
        : Targets.Count == 0 ? "lora_targets names no layers; e.g. q_proj,v_proj"
        : null;
}

public sealed class LoraAdapter : nn.Module
{
    public readonly Parameter lora_A, lora_B;

    /// <summary>PEFT's initial values (A as nn.Linear's weight, B zero: the adapter adds nothing
    /// until trained) where <paramref name="make"/> gives them; else left as allocated, for a
    /// checkpoint's adapters to be loaded into.</summary>
    internal LoraAdapter(long inputs, long outputs, int rank, LayerFactory make) : base("lora")
    {
        lora_A = new Parameter(empty(rank, inputs, device: make.Device));
        lora_B = new Parameter(make.Initializes ? zeros(outputs, rank, device: make.Device) : empty(outputs, rank, device: make.Device));
        if (make.Initializes)
        {
            using (no_grad()) nn.init.kaiming_uniform_(lora_A, Math.Sqrt(5));
        }
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, MatmulPrecision precision, double scale) =>
        precision.Linear(precision.Linear(x, lora_A), lora_B) * scale;
}

/// <summary>The model's "lora" submodule: the adapters by the path of the layer each adapts. Not
/// TorchSharp's ModuleDict, whose two indexers (both "Item" to reflection) made Module.to throw
/// when a model moved to another device, e.g. a GPU to fine-tune on.</summary>
sealed class LoraAdapters : nn.Module
{
    public LoraAdapters() : base("lora") { }

    public void Add(string key, LoraAdapter adapter) => register_module(key, adapter);
}

public static class Lora
{
    /// <summary>The layers adapted when lora_targets names none: the attention input projections,
    /// as Hugging Face PEFT does (GPT-2's fused c_attn; Llama's q_proj and v_proj).</summary>
    public static IReadOnlyList<string> DefaultTargets(string architecture) =>
        architecture == "gpt2" ? ["c_attn"] : ["q_proj", "v_proj"];

    /// <summary>Adds adapters to the target layers, registers them as the model's "lora"
    /// submodule and freezes every other parameter.</summary>
    internal static void Attach(CausalLanguageModel model, LoraConfig config, MatmulPrecision precision, LayerFactory make)
    {
        var linears = model.named_modules().Where(m => m.module is Linear).Select(m => (Path: m.name, Layer: (Linear)m.module)).ToList();
        // A target that names no layer would train nothing there, silently.
        var layerNames = linears.Select(l => LayerName(l.Path)).Distinct().ToList();
        var unknown = config.Targets.Except(layerNames).ToList();
        if (unknown.Count > 0)
        {
            // A tied head is the token embedding: an adapter there could not be merged into it
            // (export) without changing the embedding too.
            var tied = unknown.Contains("lm_head") ? " (its lm_head is tied to the token embedding, which LoRA does not adapt)" : "";
            throw new StratusUserException($"lora_targets {string.Join(",", unknown)} match no linear layer of this {model.Config.Architecture} model{tied}; its layers: {string.Join(",", layerNames)}");
        }
        var adapters = new LoraAdapters();
        foreach (var (path, linear) in linears.Where(l => config.Targets.Contains(LayerName(l.Path))))
        {
            var adapter = new LoraAdapter(linear.weight!.shape[1], linear.weight.shape[0], config.Rank, make);
            adapters.Add(AdapterKey(path), adapter);
            precision.Adapters[linear] = (adapter, config.Scale);
        }
        foreach (var (_, parameter) in model.named_parameters()) parameter.requires_grad_(false);
        model.register_module("lora", adapters);
    }

    /// <summary>A linear layer's own name, which lora_targets uses: the last part of its path.</summary>
    static string LayerName(string layerPath) => layerPath.Split('.')[^1];

    /// <summary>The adapter of the linear layer at <paramref name="layerPath"/> is the model's
    /// "lora.&lt;key&gt;" submodule, its weights "lora.&lt;key&gt;.lora_A" and ".lora_B".</summary>
    static string AdapterKey(string layerPath) => layerPath.Replace('.', '_');

    /// <summary>The state-dict names of the A and B matrices of the adapter on the linear layer
    /// whose weight is <paramref name="weightName"/> ("….q_proj.weight"), or null for a name that
    /// is no layer's weight.</summary>
    public static (string A, string B)? AdapterWeights(string weightName)
    {
        if (!weightName.EndsWith(".weight", StringComparison.Ordinal)) return null;
        var prefix = $"lora.{AdapterKey(weightName[..^".weight".Length])}.";
        return (prefix + "lora_A", prefix + "lora_B");
    }

    /// <summary>What an adapter adds to its layer's weight: scale * B A.</summary>
    public static Tensor Update(Tensor a, Tensor b, double scale) => b.mm(a).mul_(scale);

    /// <summary>W += scale * B A for every adapter, then B = 0: the model computes the same and
    /// its base weights alone now hold the fine-tuned model (for export).</summary>
    internal static void Merge(MatmulPrecision precision)
    {
        using var noGrad = no_grad();
        foreach (var (linear, (adapter, scale)) in precision.Adapters)
        {
            using var update = Update(adapter.lora_A, adapter.lora_B, scale);
            linear.weight!.add_(update);
            adapter.lora_B.zero_();
        }
    }
}
