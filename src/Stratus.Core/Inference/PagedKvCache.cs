// IKvCache over the block pool for a batch of sequences that sit at different positions: each
// step writes the new keys/values into the sequences' own blocks; a decode step on the CPU then
// attends over the blocks in place (OneTokenAttention), any other step gathers every row's
// blocks into [B, H, S, D] with a mask that hides the padding past each row's length.
using TorchSharp;
using static TorchSharp.torch;
using Stratus.Models;

namespace Stratus.Inference;

public sealed class PagedKvCache(KvBlockPool pool) : IKvCache
{
    // Per-step inputs set by Prepare; the arrays grow to the largest batch seen and are reused.
    IReadOnlyList<int>[] blockTables = [];
    int[] lengths = [];
    int batch, newTokens;
    // Per-step tensors: created inside the model's forward dispose scope, so they are released
    // with its other temporaries.
    Tensor? writeSlots, readBlocks, mask, positionTensor;
    // Each new token's position and pool slot, [batch * newTokens] in front; grown, never shrunk.
    long[] positions = [], slots = [];
    int span, gathered;
    // Decode steps (one new token per row, fp32 pool on the CPU) attend through this instead of
    // gathering.
    readonly OneTokenAttention oneToken = new();

    public OneTokenAttention? InPlace { get; private set; }

    public (Tensor Keys, Tensor Values) Buffers(int layer) => (pool.Keys(layer), pool.Values(layer));

    /// <summary>Sets up the next forward: row b continues after lengths[b] cached tokens and
    /// owns blockTables[b], which must already cover lengths[b] + newTokens tokens.</summary>
    public void Prepare(int rows, int tokensPerRow, ReadOnlySpan<int> cachedLengths, ReadOnlySpan<IReadOnlyList<int>> tables)
    {
        if (lengths.Length < rows)
        {
            lengths = new int[rows];
            blockTables = new IReadOnlyList<int>[rows];
        }
        for (var b = 0; b < rows; b++)
        {
            lengths[b] = cachedLengths[b];
            blockTables[b] = tables[b];
            if (tables[b].Count * pool.BlockSize < cachedLengths[b] + tokensPerRow)
                throw new InvalidOperationException($"row {b} has {tables[b].Count} blocks for {cachedLengths[b] + tokensPerRow} tokens");
        }
        batch = rows;
        newTokens = tokensPerRow;
    }

    public bool AttendsInPlace => OneTokenAttention.Applies(pool.Device, pool.Dtype);

    public void BeginStep(int tokens)
    {
        if (tokens != newTokens) throw new InvalidOperationException($"prepared for {newTokens} new tokens per row, the model sent {tokens}");
        var blockSize = pool.BlockSize;
        if (positions.Length < batch * tokens) (positions, slots) = (new long[batch * tokens], new long[batch * tokens]);
        for (var b = 0; b < batch; b++)
        {
            for (var t = 0; t < tokens; t++)
            {
                var p = lengths[b] + t;
                positions[b * tokens + t] = p;
                slots[b * tokens + t] = Slot(b, p);
            }
        }
        var device = pool.Device;
        // The tensors of positions and slots are made on first use: a decode step that runs whole
        // in managed code (DecodeStep) stores through InPlace's offsets and needs neither.
        (positionTensor, writeSlots) = (null, null);
        if (tokens == 1 && AttendsInPlace)
        {
            // Decode: attend in place over the rows' own blocks, no gather.
            var (kvHeads, dim) = ((int)pool.Keys(0).size(1), (int)pool.Keys(0).size(2));
            var longest = 0;
            for (var b = 0; b < batch; b++) longest = Math.Max(longest, lengths[b] + 1);
            oneToken.Begin(batch, longest, kvHeads, headStride: dim);
            for (var b = 0; b < batch; b++)
            {
                oneToken.Lengths[b] = lengths[b] + 1;
                for (var p = 0; p <= lengths[b]; p++) oneToken.Offsets[b * longest + p] = Slot(b, p) * kvHeads * dim;
            }
            InPlace = oneToken;
            return;
        }
        InPlace = null;
        var blocksPerRow = 0;
        for (var b = 0; b < batch; b++) blocksPerRow = Math.Max(blocksPerRow, (lengths[b] + tokens + blockSize - 1) / blockSize);
        // Whole blocks are gathered (a few long copies instead of many short ones), so the
        // span is rounded up to a block; the mask hides what lies past each row's tokens.
        span = gathered = blocksPerRow * blockSize;
        var reads = new long[batch * blocksPerRow];
        for (var b = 0; b < batch; b++)
        {
            var used = (lengths[b] + tokens + blockSize - 1) / blockSize;
            // Padding reads block table[0]: any valid block will do, the mask hides it.
            for (var j = 0; j < blocksPerRow; j++) reads[b * blocksPerRow + j] = blockTables[b][j < used ? j : 0];
        }
        readBlocks = tensor(reads, device: device);
        // Prompts into empty caches attend only over themselves: plain causal attention over
        // the first `tokens` keys, without a mask (the faster kernel).
        var onlyCausal = true;
        for (var b = 0; b < batch; b++) onlyCausal &= lengths[b] == 0;
        if (onlyCausal) span = tokens;
        // Key s is visible to the query at position p when s <= p: causality and padding in one.
        mask = onlyCausal ? null : Positions.unsqueeze(-1).ge(arange(span, dtype: ScalarType.Int64, device: device).view(1, 1, span)).unsqueeze(1);
    }

    public Tensor Positions => positionTensor ??= tensor(positions.AsSpan(0, batch * newTokens).ToArray(), [batch, newTokens], device: pool.Device);

    /// <summary>The pool slot holding position <paramref name="position"/> of row <paramref name="row"/>.</summary>
    long Slot(int row, int position) => (long)blockTables[row][position / pool.BlockSize] * pool.BlockSize + position % pool.BlockSize;

    public Tensor Attend(int layer, Tensor q, Tensor k, Tensor v)
    {
        var (heads, dim) = (k.shape[1], k.shape[3]);
        var poolKeys = pool.Keys(layer);
        var poolValues = pool.Values(layer);
        writeSlots ??= tensor(slots.AsSpan(0, batch * newTokens).ToArray(), device: pool.Device);
        poolKeys.index_copy_(0, writeSlots, k.permute(0, 2, 1, 3).reshape(batch * newTokens, heads, dim).to(pool.Dtype));
        poolValues.index_copy_(0, writeSlots, v.permute(0, 2, 1, 3).reshape(batch * newTokens, heads, dim).to(pool.Dtype));
        if (InPlace is { } step) return step.Compute(q, poolKeys, poolValues);
        var keys = pool.KeyBlocks(layer).index_select(0, readBlocks!).view(batch, gathered, heads, dim).narrow(1, 0, span).permute(0, 2, 1, 3);
        var values = pool.ValueBlocks(layer).index_select(0, readBlocks!).view(batch, gathered, heads, dim).narrow(1, 0, span).permute(0, 2, 1, 3);
        return CachedAttention.Compute(q, keys, values, mask);
    }

    public void EndStep()
    {
        writeSlots = readBlocks = mask = positionTensor = null;
        InPlace = null;
    }
}
