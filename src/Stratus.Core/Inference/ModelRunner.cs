// Executes what the scheduler decided: a prefill forward over the next chunk of one or more
// prompts (rows whose chunks are of one length) and one batched decode forward over every
// running sequence whose prompt is done, each reading and writing the paged KV cache; then each
// row's next token is chosen on the CPU.
using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

public sealed class ModelRunner
{
    readonly CausalLanguageModel model;
    // CausalLanguageModel.Device walks the parameters: looked up once, not per step.
    readonly Device device;
    readonly PagedKvCache cache;
    readonly LogitsSampler sampler;
    readonly int vocab;
    // The leading logits of each row that tokens are drawn from (LogitsSampler.DrawableTokens).
    readonly int drawable;
    // Per-row buffers, grown to the largest batch seen and reused.
    float[] logits = [];
    int[] lengths = [], lastTokens = [];
    // Prompt tokens per row in the last Prefill, 1 after a Decode: what Advance adds to CachedTokens.
    int callTokens;
    IReadOnlyList<int>[] tables = [];

    public ModelRunner(CausalLanguageModel model, KvBlockPool pool, int drawable)
    {
        this.model = model;
        device = model.Device;
        cache = new PagedKvCache(pool);
        vocab = model.Config.VocabSize;
        this.drawable = drawable;
        sampler = new LogitsSampler(drawable);
    }

    /// <summary>Runs each row's next <see cref="Sequence.PrefillChunk"/> prompt tokens (as many
    /// in every row) through the model in one forward, after what its cache holds (a cached
    /// prefix, earlier chunks); then <see cref="Choose"/> gives a row whose prompt this completes
    /// its first generated token (n choices of one prompt, or a burst of equal prompts, share one
    /// prefill's fixed costs). Changes no row: one that throws may be run again over any of its
    /// rows (InferenceEngine.Isolate).</summary>
    public void Prefill(List<Sequence> rows)
    {
        var batch = rows.Count;
        var length = rows[0].PrefillChunk;
        EnsureCapacity(batch);
        var input = new long[batch * length];
        for (var b = 0; b < batch; b++)
        {
            var sequence = rows[b];
            if (sequence.PrefillChunk != length) throw new InvalidOperationException("a prefill batch needs chunks of one length");
            lengths[b] = sequence.CachedTokens;
            tables[b] = sequence.Blocks;
            var chunk = sequence.Tokens.Slice(sequence.CachedTokens, length);
            for (var i = 0; i < length; i++) input[b * length + i] = chunk[i];
        }
        cache.Prepare(batch, length, lengths, tables);
        using (var scope = NewDisposeScope())
        {
            var output = model.Forward(tensor(input, [batch, length], device: device), cache);
            CopyRows(output[.., -1, ..], batch);
            for (var b = 0; b < batch; b++)
            {
                // Such requests are neither cached nor chunked: the whole prompt is in this forward.
                if (rows[b].Request.PromptLogprobs is { } alternatives && length > 1)
                    rows[b].PromptLogprobs = ScorePrompt(output[b].narrow(0, 0, length - 1).narrow(-1, 0, drawable), input.AsSpan(b * length, length), alternatives);
            }
        }
        callTokens = length;
    }

    /// <summary>One decode step for all rows; then <see cref="Choose"/> gives each its next token.
    /// Changes no row, as Prefill. Up to the decode kernel's rows on the CPU it allocates nothing:
    /// the step runs in managed code from and into the runner's own buffers.</summary>
    public void Decode(List<Sequence> rows)
    {
        var batch = rows.Count;
        EnsureCapacity(batch);
        for (var b = 0; b < batch; b++)
        {
            var sequence = rows[b];
            lengths[b] = sequence.CachedTokens;
            tables[b] = sequence.Blocks;
            lastTokens[b] = sequence.LastToken;
        }
        cache.Prepare(batch, 1, lengths, tables);
        if (!model.TryDecode(lastTokens.AsSpan(0, batch), cache, logits.AsSpan(0, batch * vocab)))
        {
            using var scope = NewDisposeScope();
            var input = new long[batch];
            for (var b = 0; b < batch; b++) input[b] = lastTokens[b];
            var output = model.Forward(tensor(input, [batch, 1], device: device), cache);
            CopyRows(output.view(batch, vocab), batch);
        }
        callTokens = 1;
    }

    /// <summary>After a Prefill or Decode over a row has returned: its cache holds the call's
    /// tokens. Returns whether its prompt is done, so that <see cref="Choose"/> gives it its next
    /// token. Only here, once the forward has returned: a call that throws leaves CachedTokens as
    /// it was, so the blocks it was writing never join the prefix cache, and draws nothing, so
    /// running it again draws each token once.</summary>
    public bool Advance(Sequence sequence)
    {
        sequence.CachedTokens += callTokens;
        return sequence.CachedTokens >= sequence.PromptLength;
    }

    /// <summary>The next token of the last call's row <paramref name="row"/>, drawn from the
    /// sequence's random generator (after <see cref="Advance"/>). Reads that row's logits alone,
    /// so a row whose choice throws leaves the others' as they were.</summary>
    public GeneratedToken Choose(int row, Sequence sequence) => sampler.Choose(logits.AsSpan(row * vocab, drawable), sequence);

    /// <summary>Runs one token through the model, without a cache, and waits for its logits:
    /// throws when the model or its device cannot run at all (a CUDA context lost to an illegal
    /// memory access), not for what one request's input does. It needs no KV block, so a full
    /// pool cannot fail it, and changes nothing a call reads.</summary>
    public void Probe()
    {
        using var scope = NewDisposeScope();
        model.Forward(zeros(1, 1, dtype: ScalarType.Int64, device: device)).cpu();
    }

    /// <summary>Log-probability of each prompt token after the first, given the ones before it,
    /// computed on the model's device so only [T-1] and [T-1, k] values are copied back.</summary>
    static GeneratedToken[] ScorePrompt(Tensor logits, ReadOnlySpan<long> prompt, int alternatives)
    {
        var count = prompt.Length - 1;
        var logp = logits.log_softmax(-1);
        var targets = tensor(prompt[1..].ToArray(), [count, 1], device: logits.device);
        var chosen = logp.gather(1, targets).cpu().data<float>().ToArray();
        float[]? topValues = null;
        long[]? topIds = null;
        var k = Math.Min(alternatives, (int)logits.shape[^1]);
        if (k > 0)
        {
            var (values, indices) = logp.topk(k, dim: -1);
            topValues = values.cpu().data<float>().ToArray();
            topIds = indices.cpu().data<long>().ToArray();
        }
        var result = new GeneratedToken[count];
        for (var i = 0; i < count; i++)
        {
            TokenLogprob[]? top = null;
            if (topValues is not null)
            {
                top = new TokenLogprob[k];
                for (var j = 0; j < k; j++) top[j] = new TokenLogprob((int)topIds![i * k + j], topValues[i * k + j]);
            }
            result[i] = new GeneratedToken((int)prompt[i + 1], chosen[i], top);
        }
        return result;
    }

    void CopyRows(Tensor rows, int batch)
    {
        using var cpu = rows.to(ScalarType.Float32).cpu().contiguous();
        cpu.data<float>().CopyTo(logits.AsSpan(0, batch * vocab), 0, 0);
    }

    void EnsureCapacity(int batch)
    {
        if (lengths.Length >= batch) return;
        lengths = new int[batch];
        lastTokens = new int[batch];
        tables = new IReadOnlyList<int>[batch];
        logits = new float[batch * vocab];
    }
}
