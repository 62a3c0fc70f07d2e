// The shape of a decoder: everything needed to build the module and nothing about training.
using System.Text.Json.Serialization;

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

    [JsonIgnore] public int HeadDim => NEmbd / NHead;

    public void Validate(int? maxBlockSize = null)
    {
        Require(VocabSize > 0, "vocab_size must be positive");
        Require(NLayer > 0, "n_layer must be positive");
        Require(NHead > 0, "n_head must be positive");
        Require(NEmbd > 0, "n_embd must be positive");
        Require(NEmbd % NHead == 0, $"n_embd ({NEmbd}) must be divisible by n_head ({NHead}); pick n_embd as a multiple of n_head");
        Require(BlockSize > 0, "block_size must be positive");
        if (maxBlockSize is { } max)
            Require(BlockSize <= max, $"block_size {BlockSize} is over the model's maximum context of {max}; lower --block-size");
        Require(Dropout is >= 0 and < 1, $"dropout must be in [0, 1), got {Dropout}");
    }

    static void Require(bool condition, string message)
    {
        if (!condition) throw new StratusUserException(message);
    }
}
