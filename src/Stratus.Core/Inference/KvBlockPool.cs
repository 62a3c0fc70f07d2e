// The serving engine's key/value memory: one preallocated pool of fixed-size blocks per layer,
// handed out to sequences as they are admitted and taken back the moment they finish or are
// cancelled (vLLM's PagedAttention layout). Memory is bounded by the pool, never by traffic.
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

/// <summary>
/// Block bookkeeping without tensors, so the scheduler can be tested without a model; with
/// prefix caching (vLLM's automatic prefix caching), also which blocks hold the keys and values
/// of which prompt prefix. A full prompt block is known by a digest of every token up to its
/// end, so a later prompt that starts the same way takes those blocks instead of computing them
/// again. A block no sequence holds any more keeps its contents until it is needed: free blocks
/// are handed out first, then cached ones, least recently used first.
/// </summary>
public sealed class BlockAllocator
{
    readonly Stack<int> free;
    readonly int[] holders;
    readonly UInt128?[] prefixOf;
    readonly Dictionary<UInt128, int> cached = [];
    readonly LinkedList<int> evictable = new();
    readonly LinkedListNode<int>?[] evictableNode;
    int used;

    public BlockAllocator(int blockCount, int blockSize, bool prefixCaching = false)
    {
        if (blockCount < 1) throw new StratusUserException($"the KV cache needs at least one block, got {blockCount}");
        if (blockSize < 1) throw new StratusUserException($"the KV block size must be positive, got {blockSize}");
        BlockCount = blockCount;
        BlockSize = blockSize;
        PrefixCaching = prefixCaching;
        free = new Stack<int>(blockCount);
        // Pushed in reverse so block 0 is handed out first (easier to read in a debugger).
        for (var i = blockCount - 1; i >= 0; i--) free.Push(i);
        holders = new int[blockCount];
        prefixOf = new UInt128?[blockCount];
        evictableNode = new LinkedListNode<int>?[blockCount];
    }

    public int BlockCount { get; }
    public int BlockSize { get; }
    public bool PrefixCaching { get; }

    /// <summary>Blocks held by sequences. Read by metrics from other threads; written only by
    /// the engine thread.</summary>
    public int UsedBlocks => Volatile.Read(ref used);
    /// <summary>Blocks that can be handed out: free ones and cached ones no sequence holds.</summary>
    public int FreeBlocks => BlockCount - UsedBlocks;

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>Appends <paramref name="count"/> blocks to <paramref name="into"/>, or none at all.</summary>
    public bool TryAllocate(int count, List<int> into)
    {
        if (count > free.Count + evictable.Count) return false;
        for (var i = 0; i < count; i++)
        {
            int block;
            if (free.Count > 0) block = free.Pop();
            else
            {
                block = evictable.First!.Value;
                Forget(block);
            }
            holders[block] = 1;
            into.Add(block);
        }
        Volatile.Write(ref used, used + count);
        return true;
    }

    /// <summary>Lets go of the blocks; those no sequence holds any more become free, or stay
    /// cached until needed when they hold a prompt prefix.</summary>
    public void Free(List<int> blocks)
    {
        var released = 0;
        // Last block first, as vLLM does: a cached block is found only through the blocks before
        // it, so the later blocks of a prefix must be evicted before the ones they follow, or
        // they would stay cached where no lookup can reach them.
        for (var i = blocks.Count - 1; i >= 0; i--)
        {
            var block = blocks[i];
            if (--holders[block] > 0) continue;
            released++;
            if (prefixOf[block] is null) free.Push(block);
            else evictableNode[block] = evictable.AddLast(block);
        }
        Volatile.Write(ref used, used - released);
        blocks.Clear();
    }

    /// <summary>Takes the cached blocks that hold the longest run of whole blocks at the start of
    /// <paramref name="prompt"/>, appending them to <paramref name="into"/>; at least one prompt
    /// token is always left to compute (its logits choose the first new token). Returns the
    /// tokens they cover.</summary>
    public int AcquirePrefix(ReadOnlySpan<int> prompt, List<int> into)
    {
        if (!PrefixCaching) return 0;
        var key = default(UInt128);
        var blocks = (prompt.Length - 1) / BlockSize;
        for (var i = 0; i < blocks; i++)
        {
            key = PrefixKey(key, prompt.Slice(i * BlockSize, BlockSize));
            if (!cached.TryGetValue(key, out var block)) return i * BlockSize;
            if (holders[block]++ == 0)
            {
                evictable.Remove(evictableNode[block]!);
                evictableNode[block] = null;
                Volatile.Write(ref used, used + 1);
            }
            into.Add(block);
        }
        return blocks * BlockSize;
    }

    /// <summary>Records that <paramref name="blocks"/> hold the keys and values of
    /// <paramref name="tokens"/> (a prompt after its prefill, or all a sequence has computed
    /// when it ends), so later prompts can take their whole blocks.</summary>
    public void Register(ReadOnlySpan<int> tokens, IReadOnlyList<int> blocks)
    {
        if (!PrefixCaching) return;
        var key = default(UInt128);
        for (var i = 0; i < tokens.Length / BlockSize; i++)
        {
            key = PrefixKey(key, tokens.Slice(i * BlockSize, BlockSize));
            var block = blocks[i];
            if (prefixOf[block] is not null || !cached.TryAdd(key, block)) continue; // taken from the cache, or cached twice
            prefixOf[block] = key;
        }
    }

    void Forget(int block)
    {
        evictable.Remove(evictableNode[block]!);
        evictableNode[block] = null;
        cached.Remove(prefixOf[block]!.Value);
        prefixOf[block] = null;
    }

    /// <summary>The key of a block: a 128-bit digest (SHA-256, truncated) of the previous block's
    /// key and this block's tokens, so it names the whole prefix. A collision would hand a prompt
    /// another's keys and values, so the digest is cryptographic, as vLLM's sha256 option.</summary>
    static UInt128 PrefixKey(UInt128 previous, ReadOnlySpan<int> tokens)
    {
        var size = 16 + tokens.Length * sizeof(int);
        Span<byte> input = size <= 1024 ? stackalloc byte[size] : new byte[size];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt128LittleEndian(input, previous);
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens).CopyTo(input[16..]);
        Span<byte> digest = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(input, digest);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(digest);
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

    public KvBlockPool(int layers, int kvHeads, int headDim, int blockCount, int blockSize, ScalarType dtype, Device device, bool prefixCaching = false)
    {
        Allocator = new BlockAllocator(blockCount, blockSize, prefixCaching);
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
