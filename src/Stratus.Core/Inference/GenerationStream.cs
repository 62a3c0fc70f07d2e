// Turns a sequence's tokens into text for a caller: decodes piece by piece (never splitting a
// character), ends at a stop string (which is not shown) and holds back text that might be the
// start of one. Both the HTTP API and the IChatClient read generations through this.
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;
using Stratus.Tokenization;

namespace Stratus.Inference;

/// <summary>A piece of generated text and the token that completed it (text may be empty when
/// the token only began a character or a possible stop string).</summary>
public readonly record struct GenerationChunk(string Text, GeneratedToken? Token);

public sealed class GenerationStream
{
    readonly Sequence sequence;
    // Cancels the sequence when the caller lets go of this stream, or of the enumerator reading
    // it, before its end without disposing the enumerator: it would otherwise run to max_tokens.
    readonly ReaderAbandonment abandonment;
    readonly OutputWait wait;
    readonly ITokenizer tokenizer;
    readonly IReadOnlyList<string> stops;
    readonly StreamingDecoder decoder;
    readonly StringBuilder held = new();
    // The held text copied out for the stop search, reused so that watching for a stop string
    // (every chat has its template's end-of-turn text as one) allocates nothing per token.
    char[] search = [];
    string? finishReason;

    public GenerationStream(InferenceEngine engine, GenerationRequest request, CancellationToken cancellation = default)
        : this(engine.Tokenizer, engine.Submit(request, cancellation))
    {
    }

    /// <summary>Reads a sequence already submitted (<see cref="InferenceEngine.SubmitAll"/>).</summary>
    public GenerationStream(ITokenizer tokenizer, Sequence sequence)
    {
        this.tokenizer = tokenizer;
        stops = sequence.Request.Stop;
        decoder = new StreamingDecoder(tokenizer, sequence.Request.SkipSpecialTokens);
        this.sequence = sequence;
        abandonment = new ReaderAbandonment(sequence);
        wait = new OutputWait(sequence.Output);
    }

    /// <summary>The prompt's tokens once the model has read them all (its prefill is done), else
    /// 0: a request whose prefill failed, or that was cancelled before it, used none of them.</summary>
    public int PromptTokens => sequence.CachedTokens >= sequence.PromptLength ? sequence.PromptLength : 0;
    public int CachedPromptTokens => sequence.CachedPromptTokens;
    /// <summary>Tokens generated so far, with the end marker that ended the sequence (up to a stop
    /// string: later ones are not counted).</summary>
    public int CompletionTokens { get; private set; }
    /// <summary>Tokens the model has generated for the sequence, read or not (an end marker
    /// included): a reader that stops early (a stop string, a client that left) leaves some that
    /// <see cref="CompletionTokens"/> does not count. Read while the engine still runs the
    /// sequence, it may lag the engine by the step in flight.</summary>
    public int GeneratedTokens => sequence.Generated;
    /// <summary>Prompt tokens' log-probabilities (GenerationRequest.PromptLogprobs), available
    /// once the first chunk or the end has been read.</summary>
    public IReadOnlyList<GeneratedToken>? PromptLogprobs => sequence.PromptLogprobs;

    /// <summary>stop or length once the stream has ended.</summary>
    public string? FinishReason => finishReason;

    /// <summary>Yields text as it is generated. Breaking out early or cancelling drops the
    /// sequence and frees its KV cache; so does letting go of the enumerator unfinished without
    /// disposing it, once the GC finds it unreachable. Once <paramref name="cancellation"/> is
    /// cancelled, the next read throws OperationCanceledException: the tokens the engine made
    /// ahead of a slower reader are not passed on, as <see cref="TextGenerator"/> does not.</summary>
    public async IAsyncEnumerable<GenerationChunk> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var reader = sequence.Output;
        var finished = false;
        try
        {
            while (await wait.WaitToReadAsync(cancellation).ConfigureAwait(false))
            {
                while (reader.TryRead(out var token))
                {
                    cancellation.ThrowIfCancellationRequested();
                    CompletionTokens++;
                    held.Append(decoder.Push(token.Token));
                    var stopAt = FindStop(out var holdBack);
                    if (stopAt >= 0)
                    {
                        finishReason = Inference.FinishReason.Stop;
                        var text = held.ToString(0, stopAt);
                        held.Clear();
                        finished = true;
                        sequence.Cancel();
                        yield return new GenerationChunk(text, token);
                        yield break;
                    }
                    var ready = held.Length - holdBack;
                    var piece = ready > 0 ? held.ToString(0, ready) : "";
                    held.Remove(0, ready);
                    yield return new GenerationChunk(piece, token);
                }
            }
            // Channel complete: the engine ended the sequence (an engine failure throws above). An
            // end marker that ended it was generated but never sent: it counts, as in vLLM's usage.
            finished = true;
            CompletionTokens = sequence.Generated;
            held.Append(decoder.Flush());
            finishReason = sequence.FinishReason == Inference.FinishReason.Stop ? Inference.FinishReason.Stop : Inference.FinishReason.Length;
            var rest = held.ToString();
            held.Clear();
            // A stop string can only be completed by the flushed tail if it was held back.
            var cut = IndexOfStop(rest);
            if (cut >= 0)
            {
                rest = rest[..cut];
                finishReason = Inference.FinishReason.Stop;
            }
            if (rest.Length > 0) yield return new GenerationChunk(rest, null);
        }
        finally
        {
            if (!finished) sequence.Cancel();
            abandonment.Dispose();
        }
    }

    /// <summary>Index in the held text where a stop string starts, or -1; otherwise how many
    /// trailing characters could still become one.</summary>
    int FindStop(out int holdBack)
    {
        holdBack = 0;
        if (stops.Count == 0) return -1;
        if (search.Length < held.Length) search = new char[Math.Max(held.Length, 2 * search.Length)];
        held.CopyTo(0, search, held.Length);
        var text = search.AsSpan(0, held.Length);
        var at = IndexOfStop(text);
        if (at >= 0) return at;
        // Indexed: a foreach over the list interface would allocate an enumerator per token.
        for (var s = 0; s < stops.Count; s++)
        {
            var stop = stops[s];
            for (var n = Math.Min(stop.Length - 1, text.Length); n > holdBack; n--)
            {
                if (text[^n..].SequenceEqual(stop.AsSpan(0, n))) { holdBack = n; break; }
            }
        }
        return -1;
    }

    int IndexOfStop(ReadOnlySpan<char> text)
    {
        var best = -1;
        for (var s = 0; s < stops.Count; s++)
        {
            var stop = stops[s];
            var i = text.IndexOf(stop.AsSpan());
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /// <summary>Waits for the sequence's next token for <see cref="ReadAllAsync"/>, allocating
    /// nothing, so that the channel holds this object and never the reader. A continuation
    /// awaited on the channel itself stays in the channel's reused wait after it has run (until
    /// the next wait), and with it the whole enumerator: the engine, holding the sequence,
    /// would keep an enumerator its caller let go of reachable, and <see cref="abandonment"/>
    /// would never cancel it. This forgets the reader's continuation once it has resumed it.
    /// The channel is waited on without the reader's cancellation token: with one, it makes a
    /// new wait and registers it with the token each time (about 100 bytes a token, and the
    /// server's token can always be cancelled); this wait registers itself with the token while
    /// it waits, in a registration the token's source reuses, and ends with an
    /// OperationCanceledException as the channel's did.</summary>
    sealed class OutputWait : IValueTaskSource<bool>
    {
        readonly ChannelReader<GeneratedToken> output;
        readonly Action channelReady;
        ManualResetValueTaskSourceCore<bool> core;
        ConfiguredValueTaskAwaitable<bool>.ConfiguredValueTaskAwaiter channelWait;
        CancellationToken cancellation;
        // The pending wait's, disposed when its result is taken: registered for the whole
        // reading, it would outlive a reader that lets go of the enumerator without disposing
        // it, and keep this wait, the channel and its tokens for as long as the token lives.
        CancellationTokenRegistration registration;
        // 1 while a wait is pending: the channel's signal and the cancellation race to end it,
        // and the first to take it does.
        int pending;

        public OutputWait(ChannelReader<GeneratedToken> output)
        {
            this.output = output;
            channelReady = ChannelReady;
        }

        /// <summary>The channel's WaitToReadAsync(cancellation).</summary>
        public ValueTask<bool> WaitToReadAsync(CancellationToken cancellation)
        {
            if (cancellation.IsCancellationRequested) return ValueTask.FromCanceled<bool>(cancellation);
            var next = output.WaitToReadAsync();
            if (next.IsCompleted) return next;
            var version = core.Version;
            channelWait = next.ConfigureAwait(false).GetAwaiter();
            this.cancellation = cancellation;
            Volatile.Write(ref pending, 1);
            channelWait.UnsafeOnCompleted(channelReady);
            // After the wait is pending: a token cancelled since the check above runs Cancel here.
            registration = cancellation.UnsafeRegister(static state => ((OutputWait)state!).Cancel(), this);
            return new ValueTask<bool>(this, version);
        }

        void ChannelReady()
        {
            // Cancelled first: the channel's wait ended later, and nobody waits for it now.
            if (Interlocked.Exchange(ref pending, 0) == 0) return;
            bool more;
            try
            {
                more = channelWait.GetResult();
            }
            catch (Exception e)
            {
                core.SetException(e);
                return;
            }
            core.SetResult(more);
        }

        void Cancel()
        {
            if (Interlocked.Exchange(ref pending, 0) == 0) return;
            // The reader resumes on the thread pool, as it did from the channel's own cancellation,
            // not inside the canceller's CancellationTokenSource.Cancel(): a shutdown ending every
            // request would otherwise run each reader's code in turn on its own thread. Allocates
            // only when a wait is cancelled.
            ThreadPool.UnsafeQueueUserWorkItem(static wait => wait.core.SetException(new OperationCanceledException(wait.cancellation)), this, preferLocal: false);
        }

        public bool GetResult(short token)
        {
            // The wait has ended: a Cancel that lost the race on another thread is waited for.
            registration.Dispose();
            try
            {
                return core.GetResult(token);
            }
            finally
            {
                core.Reset();
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            core.OnCompleted(continuation, state, token, flags);
    }
}
