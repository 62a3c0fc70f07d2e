// The serving engine's key/value memory: one preallocated pool of fixed-size blocks per layer,
// handed out to sequences as they are admitted and taken back the moment they finish or are
// cancelled (vLLM's PagedAttention layout). Memory is bounded by the pool, never by traffic.
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

/// <summary>Block bookkeeping without tensors, so the scheduler can be tested without a model.</summary>
public sealed class BlockAllocator
{
    readonly Stack<int> free;
    int used;

    public BlockAllocator(int blockCount, int blockSize)
    {
        if (blockCount < 1) throw new StratusUserException($"the KV cache needs at least one block, got {blockCount}");
        if (blockSize < 1) throw new StratusUserException($"the KV block size must be positive, got {blockSize}");
        BlockCount = blockCount;
        BlockSize = blockSize;
        free = new Stack<int>(blockCount);
        // Pushed in reverse so block 0 is handed out first (easier to read in a debugger).
        for (var i = blockCount - 1; i >= 0; i--) free.Push(i);
    }

    public int BlockCount { get; }
    public int BlockSize { get; }

    /// <summary>Read by metrics from other threads; written only by the engine thread.</summary>
    public int UsedBlocks => Volatile.Read(ref used);
    public int FreeBlocks => BlockCount - UsedBlocks;

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>Appends <paramref name="count"/> blocks to <paramref name="into"/>, or none at all.</summary>
    public bool TryAllocate(int count, List<int> into)
    {
        if (count > free.Count) return false;
        for (var i = 0; i < count; i++) into.Add(free.Pop());
        Volatile.Write(ref used, used + count);
        return true;
    }

    public void Free(List<int> blocks)
    {
        foreach (var block in blocks) free.Push(block);
        Volatile.Write(ref used, used - blocks.Count);
        blocks.Clear();
    }
}

/// <summary>
/// Key and value tensors for every layer, each [blocks * blockSize, kvHeads, headDim]: a token's
/// slot is block * blockSize + offset, so a step writes its new tokens by slot, and reads whole
/// blocks through a [blocks, blockSize * kvHeads * headDim] view of the same memory.
/// </summary>
public sealed class KvBlockPool : IDisposable
{
    readonly Tensor[] keys, values, keyBlocks, valueBlocks;

    public KvBlockPool(int layers, int kvHeads, int headDim, int blockCount, int blockSize, ScalarType dtype, Device device)
    {
        Allocator = new BlockAllocator(blockCount, blockSize);
        Device = device;
        Dtype = dtype;
        keys = new Tensor[layers];
        values = new Tensor[layers];
        keyBlocks = new Tensor[layers];
        valueBlocks = new Tensor[layers];
        for (var l = 0; l < layers; l++)
        {
            keys[l] = zeros(blockCount * (long)blockSize, kvHeads, headDim, dtype, device);
            values[l] = zeros(blockCount * (long)blockSize, kvHeads, headDim, dtype, device);
            keyBlocks[l] = keys[l].view(blockCount, -1);
            valueBlocks[l] = values[l].view(blockCount, -1);
        }
    }

    public BlockAllocator Allocator { get; }
    public Device Device { get; }
    public ScalarType Dtype { get; }
    public int BlockSize => Allocator.BlockSize;

    /// <summary>[slots, kvHeads, headDim]: one row per token slot.</summary>
    public Tensor Keys(int layer) => keys[layer];
    public Tensor Values(int layer) => values[layer];
    /// <summary>[blocks, blockSize * kvHeads * headDim]: one row per block, the same memory.</summary>
    public Tensor KeyBlocks(int layer) => keyBlocks[layer];
    public Tensor ValueBlocks(int layer) => valueBlocks[layer];

    /// <summary>Bytes one block takes across all layers, keys and values.</summary>
    public static long BytesPerBlock(int layers, int kvHeads, int headDim, int blockSize, ScalarType dtype) =>
        2L * layers * kvHeads * headDim * blockSize * ElementSize(dtype);

    static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 => 8,
        ScalarType.Float16 or ScalarType.BFloat16 => 2,
        _ => 4,
    };

    public void Dispose()
    {
        foreach (var t in keyBlocks) t.Dispose();
        foreach (var t in valueBlocks) t.Dispose();
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}
