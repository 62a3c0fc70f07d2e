// Samples training windows from memory-mapped shards. The windows (and the dropout seed) of
// micro-batch m of step s are a pure function of (seed, s, m): no sampler state to save, exact resume by
// construction, and ranks of a distributed job can each take some of a step's micro-batches
// without changing what the whole job learns.
using System.Text.Json.Nodes;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Data;

public enum Split { Train, Val }

public sealed class BatchSampler : IDisposable
{
    readonly TokenShard train, val;
    readonly long[] buffer;
    readonly int batchSize, blockSize;
    readonly ulong seed;
    // Streams 0-3 are the train and val windows of training and of evaluation.
    const ulong DropoutStream = 4;

    public BatchSampler(string datasetDirectory, int batchSize, int blockSize, long seed)
    {
        if (!Directory.Exists(datasetDirectory))
            throw new StratusUserException($"dataset folder {datasetDirectory} does not exist; create it with `stratus prepare --input <text> --out {datasetDirectory}`");
        train = TokenShard.Open(Path.Combine(datasetDirectory, DatasetPreparer.TrainShard));
        val = TokenShard.Open(Path.Combine(datasetDirectory, DatasetPreparer.ValShard));
        Tokenizer = TokenizerStore.Load(datasetDirectory);
        foreach (var shard in new[] { train, val })
        {
            if (shard.Count <= blockSize)
                throw new StratusUserException($"{shard.Path} has {shard.Count} tokens, not more than block_size {blockSize}; use more text or a smaller --block-size");
        }
        this.batchSize = batchSize;
        this.blockSize = blockSize;
        this.seed = (ulong)seed;
        buffer = new long[batchSize * (blockSize + 1)];
    }

    public ITokenizer Tokenizer { get; }

    /// <summary>Inputs and next-token targets, each [batch, block] int64 on the device, for
    /// micro-batch <paramref name="index"/> of training step <paramref name="step"/> (or of the
    /// evaluation at that step: evaluation draws from its own stream).</summary>
    public (Tensor Inputs, Tensor Targets) Sample(Split split, long step, int index, Device device, bool evaluation = false)
    {
        var shard = split == Split.Train ? train : val;
        var stream = (ulong)split + (evaluation ? 2UL : 0UL);
        var random = new CounterRandom(seed, stream, (ulong)step, (ulong)index);
        var windows = (ulong)(shard.Count - blockSize);
        var span = buffer.AsSpan();
        for (var row = 0; row < batchSize; row++)
        {
            var start = (long)random.NextBelow(windows);
            shard.Read(start, span.Slice(row * (blockSize + 1), blockSize + 1));
        }
        using var all = torch.tensor(buffer, [batchSize, blockSize + 1], device: device);
        return (all[.., ..^1].contiguous(), all[.., 1..].contiguous());
    }

    /// <summary>The dropout seed for micro-batch <paramref name="index"/> of training step
    /// <paramref name="step"/>: like the windows, a pure function of (seed, step, micro-batch), so
    /// whichever rank runs a micro-batch drops the same units and resume needs no RNG state.</summary>
    public long DropoutSeed(long step, int index)
    {
        var random = new CounterRandom(seed, DropoutStream, (ulong)step, (ulong)index);
        return (long)(random.NextBelow(ulong.MaxValue) >> 1);
    }

    public void Dispose()
    {
        train.Dispose();
        val.Dispose();
    }

    /// <summary>SplitMix64 over a key mixed from the counters: cheap, stateless between calls.</summary>
    struct CounterRandom(ulong seed, ulong stream, ulong step, ulong micro)
    {
        ulong state = Mix(Mix(Mix(Mix(seed) ^ stream) ^ step) ^ micro);

        static ulong Mix(ulong z)
        {
            z += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public ulong NextBelow(ulong bound)
        {
            state = Mix(state);
            return (ulong)(((UInt128)state * bound) >> 64); // Lemire's multiply-shift: no modulo bias worth noting
        }
    }
}
