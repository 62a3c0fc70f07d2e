// One generation in flight: its tokens, its KV blocks, its random generator and the channel its
// tokens flow out through. Owned by the engine thread; other threads only read the channel,
// request cancellation and read the counters after completion.
using System.Threading.Channels;

namespace Stratus.Inference;

public sealed class Sequence
{
    readonly int[] tokens;
    readonly Channel<GeneratedToken> output = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    volatile bool cancelRequested;
    JsonGrammar json;
    // Where the request bounds its unread tokens (MaxUnreadTokens): the engine's thread waits on
    // this while that many are unread, and the reader wakes it. Null without a bound.
    readonly object? room;
    int unread;

    /// <param name="endOfGeneration">The model's end-of-generation tokens (<see cref="Tokenization.ITokenizer.EndOfGenerationIds"/>).</param>
    /// <param name="jsonVocabulary">The vocabulary's bytes, which a request with a JSON schema (JSON mode included) needs.</param>
    internal Sequence(long id, GenerationRequest request, int vocabSize, IReadOnlyList<int>? endOfGeneration = null, JsonVocabulary? jsonVocabulary = null)
    {
        Id = id;
        Request = request;
        PromptLength = request.PromptTokens.Count;
        tokens = new int[PromptLength + request.MaxTokens];
        for (var i = 0; i < PromptLength; i++) tokens[i] = request.PromptTokens[i];
        Length = PromptLength;
        Random = request.Sampling.NewRandom();
        if (request.UsesPenalties)
        {
            OutputCounts = new int[vocabSize];
            PromptTokenSet = new bool[vocabSize];
            foreach (var t in request.PromptTokens) PromptTokenSet[t] = true;
        }
        EndTokens = EndTokensOf(request, endOfGeneration ?? []);
        LogitBias = request.LogitBias is { } bias ? [.. bias.Select(b => (b.Key, b.Value))] : [];
        if (request.Schema is { } schema)
        {
            JsonVocabulary = jsonVocabulary ?? throw new ArgumentNullException(nameof(jsonVocabulary), "a request with a JSON schema needs the vocabulary's bytes");
            json = new JsonGrammar(schema);
        }
        if (request.MaxUnreadTokens > 0) room = new object();
    }

    public long Id { get; }
    public GenerationRequest Request { get; }

    public int PromptLength { get; }

    /// <summary>Prompt plus generated tokens so far.</summary>
    public int Length { get; private set; }
    public int Generated => Length - PromptLength;

    /// <summary>Tokens whose keys and values are in the cache.</summary>
    internal int CachedTokens { get; set; }

    /// <summary>Prompt tokens whose keys and values came from the prefix cache (set on admission).</summary>
    public int CachedPromptTokens { get; internal set; }

    /// <summary>Prompt tokens the scheduler gave this step's prefill (chunked prefill).</summary>
    internal int PrefillChunk { get; set; }
    internal List<int> Blocks { get; } = [];
    /// <summary>The sequences queued in one <see cref="InferenceEngine.SubmitAll"/> with this one
    /// (one API request's prompts and choices), itself included.</summary>
    internal IReadOnlyList<Sequence> SubmittedWith { get; set; } = [];
    internal CancellationTokenRegistration CancellationRegistration { get; set; }
    /// <summary>What the sampler draws this sequence's tokens with (set only by tests that make a
    /// draw fail).</summary>
    internal Random Random { get; set; }
    internal int[]? OutputCounts { get; }
    internal bool[]? PromptTokenSet { get; }
    internal int ReservedTokens => tokens.Length;

    /// <summary>The tokens that end this sequence: the model's end-of-generation tokens (unless
    /// ignore_eos) and the request's stop tokens.</summary>
    internal int[] EndTokens { get; }

    /// <inheritdoc cref="EndTokens"/>
    internal static int[] EndTokensOf(GenerationRequest request, IReadOnlyList<int> endOfGeneration) =>
        [.. (request.IgnoreEos ? [] : endOfGeneration).Union(request.StopTokens)];

    /// <summary>The request's logit_bias as an array: the sampler adds it at every token, and
    /// enumerating the dictionary would box its enumerator each time.</summary>
    internal (int Token, float Value)[] LogitBias { get; }

    /// <summary>The vocabulary's bytes when the request has a JSON schema (<see cref="GenerationRequest.Schema"/>), else null.</summary>
    internal JsonVocabulary? JsonVocabulary { get; }

    /// <summary>The schema's recognizer over the text generated so far (a copy).</summary>
    internal JsonGrammar Json => json;

    public ReadOnlySpan<int> Tokens => tokens.AsSpan(0, Length);
    public int LastToken => tokens[Length - 1];

    /// <summary>stop, length or cancelled once the sequence is over; null before.</summary>
    public string? FinishReason { get; private set; }

    public bool CancelRequested => cancelRequested;

    /// <summary>Log-probabilities of prompt tokens 1..n-1 when asked; set by the prefill before
    /// any token is written, so readers see it once a token or the end has arrived.</summary>
    public IReadOnlyList<GeneratedToken>? PromptLogprobs { get; internal set; }

    public ChannelReader<GeneratedToken> Output => output.Reader;

    /// <summary>Asks the engine to drop the sequence; it does so before its next step (an engine
    /// waiting for the reader to take a token stops waiting).</summary>
    public void Cancel()
    {
        cancelRequested = true;
        if (room is null) return;
        lock (room) Monitor.PulseAll(room);
    }

    /// <summary>The next token the engine has emitted, if there is one, taken off the channel:
    /// the reader's side of <see cref="GenerationRequest.MaxUnreadTokens"/>, which frees room for
    /// the engine. Allocates nothing.</summary>
    internal bool TryTake(out GeneratedToken token)
    {
        if (!output.Reader.TryRead(out token)) return false;
        if (room is null) return true;
        lock (room)
        {
            if (unread-- == Request.MaxUnreadTokens) Monitor.Pulse(room);
        }
        return true;
    }

    /// <summary>Drops the sequence before the next step with <paramref name="error"/> instead of
    /// as cancelled (another sequence of its request failed). Engine thread only.</summary>
    internal void Cancel(Exception error)
    {
        CancelledWith = error;
        cancelRequested = true;
    }

    /// <summary>The error a sequence dropped by <see cref="Cancel(Exception)"/> ends with; null
    /// when its caller cancelled it.</summary>
    internal Exception? CancelledWith { get; private set; }

    /// <returns>False when the schema's recognizer refuses the token, which is then not emitted and
    /// ends the sequence: the mask leaves the sampler such a token only where the model's logits
    /// are not numbers.</returns>
    internal bool Append(GeneratedToken token, bool emit)
    {
        tokens[Length++] = token.Token;
        if (OutputCounts is not null) OutputCounts[token.Token]++;
        // What is emitted is the text, which the schema constrains; an end marker is not part of it.
        if (emit && JsonVocabulary is { } vocabulary && !json.Accept(vocabulary[token.Token])) return false;
        if (!emit) return true;
        output.Writer.TryWrite(token);
        if (room is not null) WaitForRoom();
        return true;
    }

    /// <summary>After a token is emitted: while <see cref="GenerationRequest.MaxUnreadTokens"/>
    /// are unread, the engine's thread waits for the reader to take one, or for a cancellation
    /// (the reader disposed, or abandoned: ReaderAbandonment), which the next step acts on.</summary>
    void WaitForRoom()
    {
        lock (room!)
        {
            unread++;
            while (unread >= Request.MaxUnreadTokens && !cancelRequested) Monitor.Wait(room);
        }
    }

    internal void Finish(string reason)
    {
        FinishReason = reason;
        output.Writer.TryComplete();
        CancellationRegistration.Dispose();
    }

    internal void Fail(Exception error)
    {
        FinishReason = Inference.FinishReason.Cancelled;
        output.Writer.TryComplete(error);
        CancellationRegistration.Dispose();
    }
}
