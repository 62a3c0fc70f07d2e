// Key/value caches for incremental decoding. The model talks to a cache only through
// IKvCache, so the sampler's simple contiguous cache and the serving engine's block pool
// plug into the same attention code.
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Models;

public interface IKvCache
{
    /// <summary>Called once per forward with the number of new tokens per row; returns the
    /// absolute positions of those tokens, shape [B, T] (int64, on the model's device).</summary>
    Tensor BeginStep(int newTokens);

    /// <summary>Stores the new keys and values of one layer ([B, H, T, D]) and returns what the
    /// new queries attend over: keys, values ([B, H, S, D]) and a boolean mask broadcastable to
    /// [B, H, T, S] (true = may attend), or null when no mask is needed: plain causal attention
    /// over the new tokens alone (S == T), or one new token per row that sees every position
    /// (T == 1).</summary>
    (Tensor Keys, Tensor Values, Tensor? Mask) Append(int layer, Tensor keys, Tensor values);

    /// <summary>Called after the last layer: the new tokens become part of the context.</summary>
    void EndStep();
}

/// <summary>
/// A contiguous cache for B rows that advance together (sampling, benchmarks): one
/// preallocated [B, H, capacity, D] buffer per layer for keys and one for values, so decoding
/// allocates no cache memory per token.
/// </summary>
public sealed class KvCache : IKvCache, IDisposable
{
    readonly Tensor[] keys, values;
    readonly Device device;
    int pending;

    public KvCache(int layers, int batch, int kvHeads, int headDim, int capacity, ScalarType dtype, Device device)
    {
        this.device = device;
        Capacity = capacity;
        keys = new Tensor[layers];
        values = new Tensor[layers];
        for (var l = 0; l < layers; l++)
        {
            keys[l] = zeros(batch, kvHeads, capacity, headDim, dtype, device);
            values[l] = zeros(batch, kvHeads, capacity, headDim, dtype, device);
        }
    }

    public int Capacity { get; }

    /// <summary>Tokens already in the cache (the position of the next token).</summary>
    public int Length { get; private set; }

    public void Reset() => Length = 0;

    public Tensor BeginStep(int newTokens)
    {
        if (Length + newTokens > Capacity)
            throw new StratusUserException($"the context would grow to {Length + newTokens} tokens, over the model's maximum of {Capacity}; shorten the prompt or --max-tokens");
        pending = newTokens;
        return arange(Length, Length + newTokens, dtype: ScalarType.Int64, device: device).unsqueeze(0);
    }

    public (Tensor Keys, Tensor Values, Tensor? Mask) Append(int layer, Tensor k, Tensor v)
    {
        var end = Length + pending;
        var kSlot = keys[layer].narrow(2, Length, pending);
        var vSlot = values[layer].narrow(2, Length, pending);
        kSlot.copy_(k);
        vSlot.copy_(v);
        var allKeys = keys[layer].narrow(2, 0, end);
        var allValues = values[layer].narrow(2, 0, end);
        if (Length == 0 || pending == 1) return (allKeys, allValues, null); // causal from empty; one token sees all
        // Several new tokens after a context: token i sees the context and new tokens <= i.
        var query = arange(Length, end, device: device).unsqueeze(1);
        var key = arange(0, end, device: device).unsqueeze(0);
        return (allKeys, allValues, key.le(query).unsqueeze(0).unsqueeze(0));
    }

    public void EndStep()
    {
        Length += pending;
        pending = 0;
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}
