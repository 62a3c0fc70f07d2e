// The shape of a decoder: everything needed to build the module and nothing about training.
using System.Text.Json.Serialization;
using Stratus.Safety;

namespace Stratus.Models;

public sealed record ModelConfig
{
    /// <summary>"gpt2" (learned positions, LayerNorm, GELU) or "llama" (RoPE, RMSNorm, SwiGLU).</summary>
    public string Architecture { get; init; } = "gpt2";
    public int VocabSize { get; init; } = 50304;
    public int BlockSize { get; init; } = 1024;
    public int NLayer { get; init; } = 12;
    public int NHead { get; init; } = 12;
    public int NEmbd { get; init; } = 768;
    public double Dropout { get; init; }
    public bool Bias { get; init; } = true;

    // Llama-family fields. Their defaults leave a GPT-2 config exactly as it was.

    /// <summary>Key/value heads (grouped-query attention); null means n_head (multi-head).</summary>
    public int? NKvHead { get; init; }
    /// <summary>Width of the MLP's hidden layer; null means 4 * n_embd (GPT-2) or Llama's
    /// SwiGLU rule (2/3 of 4 * n_embd, rounded up to a multiple of 256).</summary>
    public int? IntermediateSize { get; init; }
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Llama 3's frequency scaling of rotary embeddings; null for plain RoPE.</summary>
    public RopeScaling? RopeScaling { get; init; }
    public double RmsNormEps { get; init; } = 1e-5;
    /// <summary>Whether the LM head shares the token embedding matrix (always so for GPT-2).</summary>
    public bool TieWordEmbeddings { get; init; } = true;
    /// <summary>Biases on the q, k and v projections (Qwen2); Llama has none.</summary>
    public bool AttentionBias { get; init; }
    /// <summary>GPT-2's MLP activation: "gelu" (exact, as nanoGPT) or "gelu_new" (tanh
    /// approximation, as Hugging Face GPT-2 and llama.cpp).</summary>
    public string HiddenAct { get; init; } = "gelu";
    /// <summary>Epsilon of GPT-2's LayerNorms.</summary>
    public double LayerNormEps { get; init; } = 1e-5;
    /// <summary>LoRA adapters on some linear layers (the rest frozen); null for none.</summary>
    public LoraConfig? Lora { get; init; }

    [JsonIgnore] public int HeadDim => NEmbd / NHead;
    [JsonIgnore] public int KvHeads => NKvHead ?? NHead;

    [JsonIgnore]
    public int MlpWidth => IntermediateSize ?? (Architecture == "llama" ? (8 * NEmbd / 3 + 255) / 256 * 256 : 4 * NEmbd);

    /// <summary>Refuses sizes and values no model can be built from. <paramref name="file"/> names
    /// the file the config was read from (a checkpoint's model.json, Hugging Face's config.json):
    /// the error then says which file is wrong rather than which option to change.</summary>
    public void Validate(int? maxBlockSize = null, string? file = null)
    {
        // A fix that lowers a key names it as the surface showing the error does: train's --n-layer,
        // a job submission's 'overrides.n_layer'; the key at fault (the one lowered) is the error's Param.
        void Require(bool condition, string problem, string? fix = null, string? lower = null, string? key = null)
        {
            if (condition) return;
            if (file is not null) throw new StratusUserException($"{file} describes no model Stratus can build: {problem}");
            throw lower is null ? new StratusUserException(fix is null ? problem : $"{problem}; {fix}") { Param = key }
                : new StratusUserException(s => $"{problem}; lower {s.Option(Surface.OverridesPrefix + lower)}") { Param = lower };
        }

        Require(Architecture is "gpt2" or "llama", $"unknown architecture '{Architecture}'; supported: gpt2, llama", key: "architecture");
        Require(VocabSize > 0, "vocab_size must be positive");
        Require(NLayer > 0, "n_layer must be positive", key: "n_layer");
        Require(NHead > 0, "n_head must be positive", key: "n_head");
        Require(NEmbd > 0, "n_embd must be positive", key: "n_embd");
        // Far above any released model (Llama 3.1 405B: 126 layers, 16,384 wide); beyond them
        // sizes such as the MLP's width would overflow.
        Require(NLayer <= 1024, $"n_layer {NLayer} is over 1,024", lower: "n_layer");
        Require(NEmbd <= 65536, $"n_embd {NEmbd} is over 65,536", lower: "n_embd");
        // Checked before anything is built: a config from a file names these sizes, and tables
        // sized by them (embeddings, rotary angles) would be allocated before any weight is read.
        Require(VocabSize <= 1 << 22, $"vocab_size {VocabSize} is over 4,194,304");
        Require(BlockSize <= 1 << 20, $"block_size {BlockSize} is over 1,048,576 positions");
        Require(NEmbd % NHead == 0, $"n_embd ({NEmbd}) must be divisible by n_head ({NHead})", "pick n_embd as a multiple of n_head");
        Require(BlockSize > 0, "block_size must be positive", key: "block_size");
        if (maxBlockSize is { } max)
            Require(BlockSize <= max, $"block_size {BlockSize} is over the model's maximum context of {max}", lower: "block_size");
        Require(Dropout is >= 0 and < 1, $"dropout must be in [0, 1), got {Dropout}", key: "dropout");
        Require(KvHeads > 0 && NHead % KvHeads == 0, $"n_head ({NHead}) must be a multiple of n_kv_head ({KvHeads})", key: "n_kv_head");
        Require(MlpWidth > 0, "intermediate_size must be positive", key: "intermediate_size");
        // Finite too: a model.json may spell "NaN" or "Infinity", which every weight would then meet.
        Require(double.IsFinite(RopeTheta) && RopeTheta > 0, $"rope_theta must be a positive number, got {RopeTheta}", key: "rope_theta");
        Require(double.IsFinite(RmsNormEps) && RmsNormEps > 0 && double.IsFinite(LayerNormEps) && LayerNormEps > 0, "norm epsilons must be positive numbers");
        Require(HiddenAct is "gelu" or "gelu_new", $"hidden_act must be gelu or gelu_new, got '{HiddenAct}'", key: "hidden_act");
        if (Architecture == "llama") Require(HeadDim % 2 == 0, $"rotary embeddings need an even head size; n_embd / n_head is {HeadDim}");
        if (RopeScaling?.Problem() is { } rope) Require(false, rope);
        if (Lora?.Problem() is { } lora) Require(false, lora);
    }
}

/// <summary>Llama 3's "rope_scaling" (rope_type "llama3"): low frequencies are divided by
/// factor, high ones kept, and the band between interpolated smoothly.</summary>
public sealed record RopeScaling
{
    public string RopeType { get; init; } = "llama3";
    public double Factor { get; init; } = 8.0;
    public double LowFreqFactor { get; init; } = 1.0;
    public double HighFreqFactor { get; init; } = 4.0;
    public int OriginalMaxPositionEmbeddings { get; init; } = 8192;

    /// <summary>What makes these settings unusable, or null. Written so that NaN passes no test.</summary>
    public string? Problem() =>
        RopeType != "llama3" ? $"rope_scaling type '{RopeType}' is not supported; Stratus supports llama3"
        : !(double.IsFinite(Factor) && Factor > 0 && double.IsFinite(LowFreqFactor) && double.IsFinite(HighFreqFactor) && HighFreqFactor > LowFreqFactor && OriginalMaxPositionEmbeddings > 0)
            ? "rope_scaling needs factor > 0, high_freq_factor > low_freq_factor (finite numbers) and original_max_position_embeddings > 0"
            : null;

    /// <summary>The divisor of each rotary frequency (as llama.cpp's rope_freqs tensor and
    /// Hugging Face's _compute_llama3_parameters).</summary>
    public double[] FrequencyDivisors(double theta, int headDim)
    {
        var lowWavelength = OriginalMaxPositionEmbeddings / LowFreqFactor;
        var highWavelength = OriginalMaxPositionEmbeddings / HighFreqFactor;
        var result = new double[headDim / 2];
        for (var i = 0; i < result.Length; i++)
        {
            var frequency = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
            var wavelength = 2 * Math.PI / frequency;
            if (wavelength < highWavelength) result[i] = 1;
            else if (wavelength > lowWavelength) result[i] = Factor;
            else
            {
                var smooth = (OriginalMaxPositionEmbeddings / wavelength - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
                result[i] = 1 / ((1 - smooth) / Factor + smooth);
            }
        }
        return result;
    }
}
