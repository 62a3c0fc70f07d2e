// Limits of one engine: how many sequences decode together, how much KV memory it holds and
// how many requests may wait. Everything that bounds memory or latency under load is here.
using Stratus.Models;

namespace Stratus.Inference;

public sealed record EngineOptions
{
    /// <summary>Sequences decoded together in one step.</summary>
    public int MaxBatchSize { get; init; } = 64;
    /// <summary>Tokens per KV block.</summary>
    public int BlockSize { get; init; } = 16;
    /// <summary>KV blocks in the pool; null: enough for a full batch of full-context sequences,
    /// capped by <see cref="MaxKvCacheBytes"/>.</summary>
    public int? KvBlocks { get; init; }
    public long MaxKvCacheBytes { get; init; } = 1L << 30;
    /// <summary>Prompt plus max_tokens summed over running sequences; null: the pool's capacity.</summary>
    public int? MaxTokensInFlight { get; init; }
    /// <summary>Sequences that may wait for a slot (an API request queues one per prompt and
    /// choice, all at once); a request that does not fit is refused (HTTP 429).</summary>
    public int MaxWaiting { get; init; } = 256;
    /// <summary>Prompt tokens computed in one step: a longer prompt is prefilled over several
    /// steps (chunked prefill) while the running sequences keep decoding, so a long prompt never
    /// stalls them for more than one such chunk (GPT-2 124M here: about a second per 512 tokens).</summary>
    public int MaxPrefillTokensPerStep { get; init; } = 512;
    /// <summary>What steps of up to <see cref="DecodeKernel.MaxRows"/> rows (decoding, short
    /// prefills) multiply with: the fp32 weights in place through Stratus's decode kernel
    /// (default; served GPT-2-small shape here: +31% output tokens/s at 1 stream, +38% at 4, +10%
    /// at 8, and on par with libtorch for a 0.8 M-parameter model), bf16 copies of them (faster
    /// again, bf16 rounding), or libtorch's matmul.</summary>
    public DecodeWeights DecodeWeights { get; init; } = DecodeWeights.Float32;
    /// <summary>Reuse the keys and values of whole KV blocks that an earlier prompt began with
    /// (a shared system prompt, a conversation's earlier turns) instead of computing them again,
    /// as vLLM's automatic prefix caching. Requests that ask for prompt log-probabilities are
    /// computed in full.</summary>
    public bool PrefixCaching { get; init; } = true;

    public void Validate()
    {
        if (MaxBatchSize < 1) throw new StratusUserException($"max batch size must be at least 1, got {MaxBatchSize}");
        if (BlockSize < 1) throw new StratusUserException($"KV block size must be at least 1, got {BlockSize}");
        if (KvBlocks is < 1) throw new StratusUserException($"KV blocks must be at least 1, got {KvBlocks}");
        if (MaxKvCacheBytes < 1) throw new StratusUserException($"KV cache memory must be positive, got {MaxKvCacheBytes / 1048576.0:0.##} MiB");
        if (MaxTokensInFlight is < 1) throw new StratusUserException($"max tokens in flight must be at least 1, got {MaxTokensInFlight}");
        if (MaxWaiting < 1) throw new StratusUserException($"max waiting must be at least 1 (every request waits for its first step), got {MaxWaiting}");
        if (MaxPrefillTokensPerStep < 1) throw new StratusUserException($"max prefill tokens per step must be at least 1, got {MaxPrefillTokensPerStep}");
    }
}
