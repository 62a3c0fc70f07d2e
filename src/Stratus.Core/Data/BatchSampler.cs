// Samples training windows from memory-mapped shards. The windows (and the dropout seed) of
// micro-batch m of step s are a pure function of (seed, s, m): no sampler state to save, exact resume by
// construction, and ranks of a distributed job can each take some of a step's micro-batches
// without changing what the whole job learns. A chat (SFT) dataset adds loss masks: targets
// outside assistant turns become -100, cross_entropy's ignore index, and a window with nothing
// to learn is redrawn from the same counter stream (so determinism is kept).
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Safety;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Data;

public enum Split { Train, Val }

public sealed partial class BatchSampler : IDisposable
{
    /// <summary>Redraws of a window with no supervised target before it is kept anyway.</summary>
    const int MaxRedraws = 64;

    /// <summary>The target of a token that is not scored: cross_entropy's default ignore_index.</summary>
    const long IgnoreIndex = -100;

    readonly TokenShard train, val;
    readonly TokenShard? trainMask, valMask;
    readonly long[] buffer, maskBuffer, starts;
    readonly int batchSize, blockSize;
    readonly ulong seed;
    // Streams 0-3 are the train and val windows of training and of evaluation.
    const ulong DropoutStream = 4;

    /// <summary>Far above what fits in memory with any model's activations; keeps the window
    /// buffers' sizes within an int.</summary>
    const long MaxTokensPerBatch = 1 << 28;

    static long? Count(JsonNode? node) => node is JsonValue value && value.TryGetValue<long>(out var count) ? count : null;

    /// <param name="only">The one split that will be read (`stratus eval` measures one); the
    /// other may then be empty or shorter than a window. Null: both, as training reads them.</param>
    public BatchSampler(string datasetDirectory, int batchSize, int blockSize, long seed, Split? only = null)
    {
        if (!Directory.Exists(datasetDirectory))
            throw new StratusUserException(s => $"dataset folder {datasetDirectory} does not exist; create it with {s.Pick($"`stratus prepare --input <text> --out {datasetDirectory}`", "stratus prepare on the server's host")}");
        if (DatasetFolder.ModelIn(datasetDirectory) is { } model)
            throw new StratusUserException(s => $"{datasetDirectory} holds {model}, not a dataset; pass the folder that {s.Pick("`stratus prepare --out`", "stratus prepare")} wrote");
        // meta.json is written last (DatasetFolder): without it, the files there are those of a
        // preparation that did not finish, or no dataset's. `prepare` asks for --overwrite where
        // they hold a train.bin: said here at once.
        var meta = DatasetPreparer.ReadMeta(datasetDirectory)
            ?? throw new StratusUserException(s => $"{datasetDirectory} holds no complete dataset (no {DatasetPreparer.MetaFile}, which `stratus prepare` writes last); prepare it with " +
                s.Pick($"`stratus prepare --input <text> --out {datasetDirectory}{(DatasetFolder.DatasetIn(datasetDirectory) is null ? "" : " --overwrite")}`", "stratus prepare on the server's host"));
        train = TokenShard.Open(Path.Combine(datasetDirectory, DatasetPreparer.TrainShard));
        val = TokenShard.Open(Path.Combine(datasetDirectory, DatasetPreparer.ValShard));
        Tokenizer = TokenizerStore.Load(datasetDirectory);
        if (File.Exists(Path.Combine(datasetDirectory, ChatDatasetPreparer.TrainMask)))
        {
            trainMask = TokenShard.Open(Path.Combine(datasetDirectory, ChatDatasetPreparer.TrainMask));
            valMask = TokenShard.Open(Path.Combine(datasetDirectory, ChatDatasetPreparer.ValMask));
            if (trainMask.Count != train.Count || valMask.Count != val.Count)
                throw new StratusUserException($"the loss masks in {datasetDirectory} do not match its token shards; prepare the data again");
        }
        // Shard sizes that disagree with meta.json mean files of two preparations were mixed.
        const string Mixed = "(files of two preparations were mixed); run `stratus prepare` for this folder again";
        if (Count(meta["train_tokens"]) != train.Count || Count(meta["val_tokens"]) != val.Count)
            throw new StratusUserException($"{datasetDirectory}: meta.json lists {meta["train_tokens"]} train and {meta["val_tokens"]} val tokens but the shards hold {train.Count} and {val.Count} {Mixed}");
        if (train.VocabSize != Tokenizer.VocabSize || val.VocabSize != Tokenizer.VocabSize)
            throw new StratusUserException($"{datasetDirectory}: the shards were tokenized for a vocabulary of {train.VocabSize} and {val.VocabSize} tokens but its tokenizer.json has {Tokenizer.VocabSize} {Mixed}");
        foreach (var (split, shard) in new[] { (Split.Train, train), (Split.Val, val) })
        {
            if (only is not null && split != only) continue;
            if (shard.Count == 0)
                throw new StratusUserException(split == Split.Train
                    ? $"{shard.Path} is empty: the --val-fraction it was prepared with left no tokens to train on; prepare the data again with a smaller --val-fraction, e.g. 0.1"
                    : $"{shard.Path} is empty{(only is null ? " (training evaluates on both splits)" : "")}; prepare the data again with a --val-fraction above 0, e.g. 0.1");
            // A small val split (a chat file's few held-out conversations) grows with --val-fraction,
            // not with more text alone.
            if (shard.Count <= blockSize)
                throw new StratusUserException(s => $"{shard.Path} has {shard.Count} tokens, not more than block_size {blockSize}; " + (split == Split.Val
                    ? $"prepare the data again with a larger --val-fraction (or more text), or give a smaller {s.Option(Surface.OverridesPrefix + "block_size")}"
                    : $"use more text or a smaller {s.Option(Surface.OverridesPrefix + "block_size")}"));
        }
        // What the tokens are, not where or when they were prepared: copies of one dataset on
        // several nodes are the same dataset.
        Content = $"{train.Count} train and {val.Count} val tokens{(IsMasked ? " with loss masks" : "")} of source {meta["source"]?["sha256"]}";
        this.batchSize = batchSize;
        this.blockSize = blockSize;
        this.seed = (ulong)seed;
        if ((long)batchSize * (blockSize + 1) > MaxTokensPerBatch)
            throw new StratusUserException(s => $"batch_size {batchSize} x block_size {blockSize} is over {MaxTokensPerBatch:N0} tokens per micro-batch; lower {s.Option(Surface.OverridesPrefix + "batch_size")} (gradient_accumulation_steps adds micro-batches per step)");
        buffer = new long[batchSize * (blockSize + 1)];
        maskBuffer = new long[trainMask is null ? 0 : batchSize * blockSize];
        starts = new long[batchSize];
    }

    /// <summary>Whether targets are masked (a chat dataset for supervised fine-tuning).</summary>
    public bool IsMasked => trainMask is not null;

    public ITokenizer Tokenizer { get; }

    /// <summary>What the tokens are in brief (token counts, source hash), not where or how they
    /// are stored: what a run records of its data, to resume on the same. The tokenizer is not in
    /// it: a resume checks it against the checkpoint's, and a hash of how this version writes a
    /// tokenizer would refuse every recorded run once a later version writes it otherwise.</summary>
    public string Content { get; }

    /// <summary><see cref="Content"/> and a hash of the tokenizer, for the ranks of one job (one
    /// version of Stratus) to check they train on the same data. Made when first asked for: only
    /// training compares it, and a large tokenizer is serialized for its hash (a tenth of a second
    /// for 128k tokens), which checking that a folder holds a whole dataset does not need.</summary>
    public string Identity => field ??= $"{Content}, tokenizer {TokenizerStore.Sha256(Tokenizer)}";

    /// <summary>The parts of a <see cref="Content"/>, as the constructor writes it.</summary>
    [System.Text.RegularExpressions.GeneratedRegex("^(?<tokens>.+) of source (?<source>.*)$")]
    private static partial System.Text.RegularExpressions.Regex ContentParts();

    /// <summary>What sets this dataset apart from the one of content <paramref name="recorded"/>,
    /// in words: its tokens or its source text (the two whole records, a hash of 64 digits after
    /// counts, are for a machine to compare, not a reader).</summary>
    public string DifferenceFrom(string recorded)
    {
        var (ours, theirs) = (ContentParts().Match(Content), ContentParts().Match(recorded));
        if (!theirs.Success) return $"{Content} (the run's: {recorded})";
        string Part(System.Text.RegularExpressions.Match content, string name) => content.Groups[name].Value;
        static string Short(string hash) => hash.Length > 12 ? hash[..12] + "…" : hash.Length == 0 ? "none" : hash;
        var differences = new List<string>();
        if (Part(ours, "tokens") != Part(theirs, "tokens")) differences.Add($"{Part(ours, "tokens")} (the run's: {Part(theirs, "tokens")})");
        if (Part(ours, "source") != Part(theirs, "source")) differences.Add($"source sha256 {Short(Part(ours, "source"))} (the run's: {Short(Part(theirs, "source"))})");
        return string.Join(", ", differences);
    }

    /// <summary>Windows per batch.</summary>
    public int BatchSize => batchSize;

    /// <summary>Inputs and next-token targets, each [batch, block] int64 on the device, for
    /// micro-batch <paramref name="index"/> of training step <paramref name="step"/> (or of the
    /// evaluation at that step: evaluation draws from its own stream), and how many targets are
    /// scored (not -100), counted on the host: reading it from a GPU would wait for every kernel
    /// queued before.</summary>
    public (Tensor Inputs, Tensor Targets, long ScoredTargets) Sample(Split split, long step, int index, Device device, bool evaluation = false)
    {
        var scored = Draw(split, step, index, evaluation, starts);
        ReadTokens(split, starts);
        var (inputs, targets) = Batch(batchSize, IsMasked, device);
        return (inputs, targets, scored);
    }

    /// <summary>Draws the windows of training micro-batch <paramref name="index"/> of
    /// <paramref name="step"/> as <see cref="Sample"/> draws them, without making its tensors:
    /// their starts into <paramref name="windows"/> (<see cref="BatchSize"/> of them), and how many
    /// of their targets are scored. A step of a chat dataset weighs its micro-batches by the total
    /// before the first forward, then reads each at these starts (<see cref="Read"/>).</summary>
    public long DrawTraining(long step, int index, Span<long> windows) => Draw(Split.Train, step, index, evaluation: false, windows);

    /// <summary>Inputs and targets, as <see cref="Sample"/> makes them, of the training windows
    /// that <see cref="DrawTraining"/> drew.</summary>
    public (Tensor Inputs, Tensor Targets) Read(ReadOnlySpan<long> windows, Device device)
    {
        ReadTokens(Split.Train, windows);
        for (var row = 0; row < batchSize; row++) trainMask?.Read(windows[row] + 1, maskBuffer.AsSpan(row * blockSize, blockSize));
        return Batch(batchSize, IsMasked, device);
    }

    /// <summary>Draws the windows of micro-batch <paramref name="index"/>: their starts into
    /// <paramref name="windows"/> and, in a chat dataset, their targets' masks into the mask
    /// buffer; returns how many of their targets are scored.</summary>
    long Draw(Split split, long step, int index, bool evaluation, Span<long> windows)
    {
        var shard = split == Split.Train ? train : val;
        var stream = (ulong)split + (evaluation ? 2UL : 0UL);
        var random = new CounterRandom(seed, stream, (ulong)step, (ulong)index);
        var count = (ulong)(shard.Count - blockSize);
        var mask = split == Split.Train ? trainMask : valMask;
        for (var row = 0; row < batchSize; row++)
        {
            var start = (long)random.NextBelow(count);
            if (mask is not null)
            {
                // The targets of window [start, start + block] are tokens start+1 .. start+block.
                var targetMask = maskBuffer.AsSpan(row * blockSize, blockSize);
                mask.Read(start + 1, targetMask);
                for (var redraw = 0; redraw < MaxRedraws && !targetMask.ContainsAnyExcept(0L); redraw++)
                {
                    start = (long)random.NextBelow(count);
                    mask.Read(start + 1, targetMask);
                }
            }
            windows[row] = start;
        }
        var scored = (long)batchSize * blockSize;
        if (mask is not null) scored -= maskBuffer.AsSpan(0, batchSize * blockSize).Count(0L);
        return scored;
    }

    /// <summary>Reads the tokens of the windows starting at <paramref name="windows"/> into the buffer.</summary>
    void ReadTokens(Split split, ReadOnlySpan<long> windows)
    {
        var shard = split == Split.Train ? train : val;
        for (var row = 0; row < batchSize; row++) shard.Read(windows[row], buffer.AsSpan(row * (blockSize + 1), blockSize + 1));
    }

    /// <summary>How many windows of block_size + 1 tokens cover the split, each starting on the
    /// last token of the one before and the last one ending at the split's end: every token but
    /// the first is a target once.</summary>
    public long TiledWindows(Split split) => ((split == Split.Train ? train : val).Count - 1 + blockSize - 1) / blockSize;

    /// <summary>Batch <paramref name="index"/> of the tiled windows (the last batch may be
    /// shorter), to measure a whole split; masked targets are -100 as in <see cref="Sample"/>,
    /// but no window is skipped. Where the targets do not fill a last window, it ends at the
    /// split's end and keeps a full window of context, as Hugging Face's strided perplexity does:
    /// its targets that the window before scored are -100 too.</summary>
    public (Tensor Inputs, Tensor Targets) Tiled(Split split, long index, Device device)
    {
        var shard = split == Split.Train ? train : val;
        var mask = split == Split.Train ? trainMask : valMask;
        var first = index * batchSize;
        var windows = TiledWindows(split);
        var rows = (int)Math.Min(batchSize, windows - first);
        if (rows <= 0) throw new ArgumentOutOfRangeException(nameof(index), $"batch {index} is past the {windows} tiled windows");
        var lastStart = shard.Count - 1 - blockSize;
        for (var row = 0; row < rows; row++)
        {
            var start = Math.Min((first + row) * blockSize, lastStart);
            shard.Read(start, buffer.AsSpan(row * (blockSize + 1), blockSize + 1));
            mask?.Read(start + 1, maskBuffer.AsSpan(row * blockSize, blockSize));
        }
        var (inputs, targets) = Batch(rows, mask is not null, device);
        var scoredBefore = (first + rows - 1) * blockSize - lastStart;
        if (scoredBefore > 0)
        {
            using var scored = targets[rows - 1, ..(int)scoredBefore];
            scored.fill_(IgnoreIndex);
        }
        return (inputs, targets);
    }

    /// <summary>The first <paramref name="rows"/> windows in the buffers as inputs and targets
    /// (rows past them hold an earlier batch and are cut off).</summary>
    (Tensor Inputs, Tensor Targets) Batch(int rows, bool masked, Device device)
    {
        using var buffered = OnDevice(buffer, [batchSize, blockSize + 1], device);
        using var all = buffered[..rows];
        // A copy, never a view: with one row the slice is already contiguous, and masking it in
        // place would write -100 into the inputs too.
        var targets = all[.., 1..].clone();
        if (masked)
        {
            using var learn = OnDevice(maskBuffer, [batchSize, blockSize], device);
            using var ignored = learn[..rows].eq(0);
            targets.masked_fill_(ignored, IgnoreIndex);
        }
        return (all[.., ..^1].contiguous(), targets);
    }

    /// <summary>The buffer's tokens as a tensor on <paramref name="device"/>. To a GPU they go
    /// through page-locked memory without waiting: a copy from ordinary memory makes the CPU wait
    /// until the GPU has run every kernel queued before it (nanoGPT pins its batches for this).
    /// libtorch keeps the pinned block from reuse until its copy is done.</summary>
    static Tensor OnDevice(long[] values, long[] shape, Device device)
    {
        if (device.type != DeviceType.CUDA) return torch.tensor(values, shape, device: device);
        using var host = torch.tensor(values, shape);
        using var pinned = host.pin_memory();
        return pinned.to(device, non_blocking: true);
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
        trainMask?.Dispose();
        valMask?.Dispose();
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
