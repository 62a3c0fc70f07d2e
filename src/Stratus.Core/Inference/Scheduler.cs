// Decides, before every engine step, which sequences run: it admits waiting sequences in
// arrival order while the batch, the tokens in flight and the KV blocks allow, and drops
// cancelled ones at once, returning their blocks. It knows nothing about tensors, so it can be
// tested without a model (vLLM's scheduler / model runner split).
namespace Stratus.Inference;

public sealed class Scheduler(EngineOptions options, BlockAllocator blocks)
{
    readonly long tokenLimit = Math.Min(options.MaxTokensInFlight ?? long.MaxValue, (long)blocks.BlockCount * blocks.BlockSize);
    readonly LinkedList<Sequence> waiting = new();
    readonly object waitingLock = new();
    readonly List<Sequence> running = [];
    readonly List<Sequence> prefill = [];
    readonly List<Sequence> decode = [];
    // Counts are read by metrics from other threads.
    int waitingCount, runningCount;
    long tokensInFlight;
    // Set by FailAll under waitingLock: a sequence queued after it would wait forever.
    Exception? closedBy;

    public int Running => Volatile.Read(ref runningCount);
    public int Waiting => Volatile.Read(ref waitingCount);

    /// <summary>Queues all the sequences, or none when the waiting queue has no room for all.</summary>
    /// <exception cref="EngineUnavailableException">The engine has stopped or failed.</exception>
    public bool TryEnqueue(IReadOnlyList<Sequence> sequences)
    {
        foreach (var sequence in sequences)
            if (sequence.ReservedTokens > tokenLimit)
                throw new StratusUserException($"the request needs {sequence.ReservedTokens} tokens of KV cache, more than the engine holds ({tokenLimit}); lower max_tokens");
        lock (waitingLock)
        {
            if (closedBy is not null) throw new EngineUnavailableException("the engine has stopped", closedBy);
            if (waitingCount + sequences.Count > options.MaxWaiting) return false;
            foreach (var sequence in sequences) waiting.AddLast(sequence);
            waitingCount += sequences.Count;
        }
        return true;
    }

    public bool HasWork => Running > 0 || Waiting > 0;

    /// <summary>Sequences to prefill this step (each with its <see cref="Sequence.PrefillChunk"/>:
    /// prompts left unfinished by earlier steps first, then newly admitted ones) and to decode
    /// (running, prompt done). Prompt tokens computed per step stay within
    /// MaxPrefillTokensPerStep: a longer prompt is prefilled over several steps (chunked prefill,
    /// as vLLM), so a long prompt never stalls the running sequences for long. The lists are
    /// reused: read them before the next call.</summary>
    public (List<Sequence> Prefill, List<Sequence> Decode) Schedule()
    {
        prefill.Clear();
        decode.Clear();
        for (var i = running.Count - 1; i >= 0; i--)
        {
            if (running[i].CancelRequested) Release(running[i], FinishReason.Cancelled, running[i].CancelledWith);
        }
        DropCancelledWaiting();

        var budget = options.MaxPrefillTokensPerStep;
        foreach (var sequence in running)
        {
            if (sequence.CachedTokens >= sequence.PromptLength) decode.Add(sequence);
            else if (budget > 0) budget -= PlanChunk(sequence, budget);
        }
        while (running.Count < options.MaxBatchSize && budget > 0)
        {
            Sequence next;
            lock (waitingLock)
            {
                if (waiting.First is null) break;
                next = waiting.First.Value;
                if (tokensInFlight + next.ReservedTokens > tokenLimit) break;
                // Prompt log-probabilities are scored in one forward over the whole prompt: such a
                // prompt is not chunked, so it waits for a step with room for it (or the first).
                var whole = next.Request.PromptLogprobs is not null;
                if (whole && prefill.Count > 0 && next.PromptLength > budget) break;
                // The same prompt already being prefilled (n choices, repeated requests): wait a
                // step and take its blocks from the prefix cache instead of computing them again.
                if (!whole && blocks.PrefixCaching && IsBeingPrefilled(next)) break;
                // They also need every prompt position computed: no cached prefix.
                var cachedTokens = whole ? 0 : blocks.AcquirePrefix(next.Tokens[..next.PromptLength], next.Blocks);
                if (!blocks.TryAllocate(blocks.BlocksFor(next.ReservedTokens) - next.Blocks.Count, next.Blocks))
                {
                    blocks.Free(next.Blocks);
                    break;
                }
                next.CachedTokens = next.CachedPromptTokens = cachedTokens;
                waiting.RemoveFirst();
                waitingCount--;
            }
            tokensInFlight += next.ReservedTokens;
            running.Add(next);
            budget -= PlanChunk(next, budget);
        }
        Volatile.Write(ref runningCount, running.Count);
        return (prefill, decode);
    }

    bool IsBeingPrefilled(Sequence next)
    {
        if ((next.PromptLength - 1) / blocks.BlockSize == 0) return false; // no whole block to share
        var prompt = next.Tokens[..next.PromptLength];
        foreach (var sequence in prefill)
            if (sequence.Request.PromptLogprobs is null && sequence.Tokens[..sequence.PromptLength].SequenceEqual(prompt)) return true;
        return false;
    }

    /// <summary>Adds a sequence whose prompt is unfinished to this step's prefill with as many of
    /// its remaining prompt tokens as the budget allows (all of them when it must be whole).</summary>
    int PlanChunk(Sequence sequence, int budget)
    {
        var remaining = sequence.PromptLength - sequence.CachedTokens;
        sequence.PrefillChunk = sequence.Request.PromptLogprobs is not null ? remaining : Math.Min(remaining, budget);
        prefill.Add(sequence);
        return sequence.PrefillChunk;
    }

    /// <summary>After a sequence's last prefill chunk: its whole prompt blocks join the prefix cache.</summary>
    public void Prefilled(Sequence sequence) => blocks.Register(sequence.Tokens[..sequence.PromptLength], sequence.Blocks);

    /// <summary>Ends a running sequence and returns its blocks to the pool.</summary>
    public void Release(Sequence sequence, string reason, Exception? error = null)
    {
        if (running.Remove(sequence))
        {
            tokensInFlight -= sequence.ReservedTokens;
            // Generated tokens' blocks join the prefix cache too: a conversation's next turn
            // begins with this one's prompt and reply.
            blocks.Register(sequence.Tokens[..sequence.CachedTokens], sequence.Blocks);
            blocks.Free(sequence.Blocks);
            Volatile.Write(ref runningCount, running.Count);
        }
        if (error is null) sequence.Finish(reason);
        else sequence.Fail(error);
    }

    /// <summary>Ends every sequence with an error (the engine failed or is shutting down).</summary>
    public void FailAll(Exception error)
    {
        foreach (var sequence in running.ToArray()) Release(sequence, FinishReason.Cancelled, error);
        lock (waitingLock)
        {
            closedBy = error;
            foreach (var sequence in waiting) sequence.Fail(error);
            waiting.Clear();
            waitingCount = 0;
        }
    }

    void DropCancelledWaiting()
    {
        lock (waitingLock)
        {
            for (var node = waiting.First; node is not null;)
            {
                var next = node.Next;
                if (node.Value.CancelRequested)
                {
                    waiting.Remove(node);
                    waitingCount--;
                    if (node.Value.CancelledWith is { } error) node.Value.Fail(error);
                    else node.Value.Finish(FinishReason.Cancelled);
                }
                node = next;
            }
        }
    }
}
