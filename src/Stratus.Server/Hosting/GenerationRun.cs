// Runs one API request's generations on the engine: one sequence per prompt and choice,
// submitted together (so a full queue refuses the whole request before anything is sent),
// read as one merged stream of pieces, with filter scopes (which may also rewrite the prompts,
// e.g. redact PII) and metrics applied on the way out. The alternatives that logprobs list
// (top_logprobs, the generated tokens' and an echoed prompt's) are screened by the same scopes:
// an alternative is text the model could have written, and a filter that keeps a word out of
// the text keeps it out of the alternatives too. Its tokens go to the access log when it ends.
// Both completion endpoints use it; the endpoints only translate to and from OpenAI's shapes.
using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Stratus.Inference;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Tokenization;

namespace Stratus.Server.Hosting;

/// <summary>A piece of one choice's output, or that choice's end (FinishReason set, with the
/// choice's content_filter_results when a filter gives them).</summary>
/// <param name="Tokens">The generated tokens whose text has been passed on by now (their
/// logprobs may be sent): a token whose text a filter holds back waits with it, and is dropped
/// with it when a filter stops the choice or rewrites its text (PII redaction), so logprobs
/// never spell out filtered text. The list is the choice's reader's own, refilled for its next
/// piece so that no token costs one: a caller that keeps the tokens copies them.</param>
/// <param name="TokensWithheld">On a choice's end: a filter stopped or rewrote it, so the tokens
/// passed on do not spell its text; a whole (not streamed) answer leaves its logprobs out.</param>
/// <remarks>The tokens' alternatives are those the filters let through (GenerationRun screens
/// them); FilterResults.TopLogprobs counts those left out.</remarks>
public readonly record struct ChoicePiece(int Choice, string Text, IReadOnlyList<GeneratedToken> Tokens, string? FinishReason, ContentFilterResults? FilterResults = null,
    bool TokensWithheld = false);

public sealed class GenerationRun : IAsyncDisposable
{
    readonly GenerationContext context;
    // An array: a foreach over a list interface would allocate an enumerator per token.
    readonly IGenerationScope[] scopes;
    readonly ServingMetrics metrics;
    readonly ServerShutdown shutdown;
    readonly GenerationStream[] streams;
    readonly CancellationTokenSource cancel;
    /// <summary>The client's request: aborted when it went away.</summary>
    readonly CancellationToken aborted;
    readonly long started = Stopwatch.GetTimestamp();
    /// <summary>When the engine produced the first token of any choice; 0 until then.</summary>
    long firstToken;
    /// <summary>When the last choice ended; 0 for a run that did not run to its end.</summary>
    long ended;
    /// <summary>Per choice: when its first and latest token came, and how many (written only by
    /// that choice's reader).</summary>
    readonly (long First, long Last, int Count)[] choiceTokens;
    /// <summary>Per choice: its prompt's log-probabilities with screened alternatives, set before
    /// the choice's first piece.</summary>
    readonly IReadOnlyList<GeneratedToken>?[] promptLogprobs;
    string outcome = FinishReason.Cancelled;
    /// <summary>Ends when every choice's own reader (Merge's, for n &gt; 1) has returned.</summary>
    Task choicesRead = Task.CompletedTask;

    GenerationRun(GenerationContext context, IGenerationScope[] scopes, ServingMetrics metrics, ServerShutdown shutdown, GenerationStream[] streams, CancellationTokenSource cancel, CancellationToken aborted)
    {
        this.context = context;
        this.shutdown = shutdown;
        this.aborted = aborted;
        this.scopes = scopes;
        this.metrics = metrics;
        this.streams = streams;
        this.cancel = cancel;
        choiceTokens = new (long, long, int)[streams.Length];
        promptLogprobs = new IReadOnlyList<GeneratedToken>?[streams.Length];
        PromptFilterResults = scopes.SelectMany(s => s.PromptFilterResults ?? []).ToArray() is { Length: > 0 } results ? results : null;
    }

    public IReadOnlyList<GenerationStream> Streams => streams;
    public int PromptTokens { get; private set; }
    public int CompletionTokens { get; private set; }
    /// <summary>Prompt tokens the prefix cache supplied, counted as PromptTokens is.</summary>
    public int CachedPromptTokens { get; private set; }
    /// <summary>Each prompt's tokens as the model got them: a filter may have rewritten them.</summary>
    public required IReadOnlyList<int[]> Prompts { get; init; }
    /// <summary>Each prompt's text as the model got it, which an echo returns: the client's, or a
    /// filter's rewrite (PII redaction). The special tokens the tokenizer put around a text
    /// prompt (a Llama's BOS) are in <see cref="Prompts"/>, not in this text.</summary>
    public required IReadOnlyList<string> PromptTexts { get; init; }
    /// <summary>The filters' prompt annotations; null when none gave any.</summary>
    public IReadOnlyList<PromptFilterResult>? PromptFilterResults { get; }

    /// <summary>A choice's prompt tokens' log-probabilities (GenerationRequest.PromptLogprobs),
    /// with the alternatives the filters let through; available once the choice's first piece
    /// has been read.</summary>
    public IReadOnlyList<GeneratedToken>? PromptLogprobs(int choice) => promptLogprobs[choice];

    /// <summary>The text of each of a prompt's tokens in its echo (text_offset counts them): as
    /// the prompt's text is decoded token by token, the way vLLM's incremental detokenizer gives
    /// them: a token that holds only part of a character has none, and the one that completes it
    /// the whole character (decoded alone, each part would read U+FFFD). Nothing for what the
    /// client did not write and <see cref="PromptTexts"/> does not hold: a special token the
    /// tokenizer put around a text prompt (a Llama's BOS), the token an empty prompt starts from,
    /// or the space a SentencePiece tokenizer puts before a text (Llama 2's dummy prefix, "▁the"
    /// for "the"), which its token decodes with.</summary>
    public string[] EchoedTexts(int prompt)
    {
        var tokens = Prompts[prompt];
        var texts = new string[tokens.Length];
        Array.Fill(texts, "");
        var text = PromptTexts[prompt];
        if (text.Length == 0) return texts;
        var tokenizer = context.Model.Tokenizer;
        var around = tokenizer.SpecialTokensAround;
        var (before, after) = context.SpecialTokensAdded[prompt] ? (around.Before.Count, around.After.Count) : (0, 0);
        // The echo is the prompt decoded whole, special tokens included.
        var decoder = new StreamingDecoder(tokenizer, skipSpecialTokens: false);
        var last = tokens.Length - after - 1;
        // Where in the text the next token's text stands.
        var at = 0;
        string InText(string piece)
        {
            var rest = text.AsSpan(Math.Min(at, text.Length));
            if (piece.StartsWith(' ') && !rest.StartsWith(piece) && rest.StartsWith(piece.AsSpan(1))) piece = piece[1..];
            at += piece.Length;
            return piece;
        }
        for (var i = before; i <= last; i++) texts[i] = InText(decoder.Push(tokens[i]));
        // A prompt of token ids may end within a character: the text decoded whole ends with it.
        if (last >= before) texts[last] += InText(decoder.Flush());
        return texts;
    }

    /// <summary>A decoder that gives each of a choice's generated tokens, pushed in order, its
    /// text in the choice's text (text_offset counts it), as the choice's text was decoded: none
    /// for a part of a character, the whole character for the token that completes it, none for a
    /// special token the request leaves out of the text.</summary>
    public StreamingDecoder GeneratedTexts() => new(context.Model.Tokenizer, context.Request.SkipSpecialTokens);

    /// <summary>Begins the filters' scopes and submits every sequence; 429 when the engine's
    /// queue is full.</summary>
    /// <param name="cancellation">The client's request: cancelled when it went away.</param>
    /// <param name="shutdown">The server's: the run ends when a stopping server ends the
    /// requests still running, and counts as one of them until disposed.</param>
    public static async Task<GenerationRun> StartAsync(GenerationContext context, IReadOnlyList<int[]> promptTokens, IReadOnlyList<IGenerationFilter> filters,
        ServingMetrics metrics, CancellationToken cancellation, ServerShutdown shutdown)
    {
        // Counted from here, not once generating: a request still in its filters (a quota or
        // moderation check) when the server begins stopping is one the server waits for.
        shutdown.RequestStarted();
        try
        {
            return await SubmitAsync(context, promptTokens, filters, metrics, cancellation, shutdown);
        }
        catch
        {
            shutdown.RequestEnded();
            throw;
        }
    }

    static async Task<GenerationRun> SubmitAsync(GenerationContext context, IReadOnlyList<int[]> promptTokens, IReadOnlyList<IGenerationFilter> filters,
        ServingMetrics metrics, CancellationToken cancellation, ServerShutdown shutdown)
    {
        var scopes = new List<IGenerationScope>(filters.Count);
        try
        {
            foreach (var filter in filters)
                if (await filter.BeginAsync(context, cancellation) is { } scope) scopes.Add(scope);
        }
        catch
        {
            // A later filter refused: nothing was generated for the earlier ones' charges.
            await CompleteAllAsync(scopes, 0, 0);
            throw;
        }
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellation, shutdown.Ending);
        GenerationStream[] streams;
        var promptTexts = context.Prompts;
        try
        {
            foreach (var scope in scopes)
            {
                if (scope.Prompts is not { } rewritten) continue;
                var encoded = rewritten.Select((text, p) => EncodeRewritten(context.Model.Tokenizer, text, context.SpecialTokensAdded[p])).ToArray();
                (promptTexts, promptTokens) = ([.. encoded.Select(e => e.Text)], [.. encoded.Select(e => e.Tokens)]);
            }
            var requests = new GenerationRequest[promptTokens.Count * context.Choices];
            for (var p = 0; p < promptTokens.Count; p++)
            {
                // A rewritten prompt may be longer than the one max_tokens was checked against: the
                // completion gets the room that is left (max_tokens is an upper bound).
                var room = context.Model.ContextLength - promptTokens[p].Length;
                var maxTokens = room >= 1 ? Math.Min(context.Request.MaxTokens, room) : context.Request.MaxTokens;
                for (var i = 0; i < context.Choices; i++)
                {
                    // Choices of one request differ, yet a seed still reproduces all of them.
                    var sampling = context.Request.Sampling;
                    requests[p * context.Choices + i] = context.Request with { PromptTokens = promptTokens[p], MaxTokens = maxTokens, Sampling = sampling with { Seed = sampling.Seed + i } };
                }
            }
            var engine = context.Model.Engine;
            streams = [.. engine.SubmitAll(requests, cancel.Token).Select(sequence => new GenerationStream(engine.Tokenizer, sequence))];
        }
        catch (Exception e)
        {
            cancel.Cancel();
            cancel.Dispose();
            await CompleteAllAsync(scopes, 0, 0);
            throw e switch
            {
                EngineOverloadedException o => new ApiException(429, o.Message, code: "rate_limit_exceeded") { RetryAfterSeconds = (int)Math.Ceiling(o.RetryAfter.TotalSeconds) },
                EngineUnavailableException u => new ApiException(503, $"The model `{context.Model.Name}` is not available: {u.Message}.", code: "service_unavailable") { RetryAfterSeconds = 5 },
                StratusUserException s => ApiException.Invalid(s),
                _ => e,
            };
        }
        return new GenerationRun(context, [.. scopes], metrics, shutdown, streams, cancel, cancellation) { Prompts = promptTokens, PromptTexts = promptTexts };
    }

    /// <summary>A prompt a filter rewrote (PII replaced by "[LABEL]"), encoded as the prompt it
    /// replaces was (with or without the tokenizer's special tokens), and the text encoded. The
    /// client's text was encodable, so any character that is not came with the filter's
    /// markers: a model whose vocabulary lacks it (a character-level model without brackets)
    /// gets the marker without it, and the PII stays out either way.</summary>
    internal static (string Text, int[] Tokens) EncodeRewritten(ITokenizer tokenizer, string text, bool addSpecialTokens)
    {
        var unencodable = tokenizer.Unencodable(text);
        if (unencodable.Count == 0) return (text, tokenizer.Encode(text, addSpecialTokens));
        var dropped = unencodable.ToHashSet();
        var kept = new StringBuilder(text.Length);
        for (int i = 0, length; i < text.Length; i += length)
        {
            if (!dropped.Contains(CodePoints.At(text, i, out length))) kept.Append(text, i, length);
        }
        var encodable = kept.ToString();
        return (encodable, tokenizer.Encode(encodable, addSpecialTokens));
    }

    /// <summary>Pieces of all choices as they are generated, each choice ending with a piece
    /// that carries its finish reason.</summary>
    public async IAsyncEnumerable<ChoicePiece> ReadAllAsync()
    {
        var token = cancel.Token;
        // One choice (the common case) is read directly: merging would add a thread hop per token.
        var pieces = streams.Length == 1 ? ReadChoiceAsync(0, token) : Merge(token);
        await foreach (var piece in pieces.ConfigureAwait(false)) yield return piece;
        ended = Stopwatch.GetTimestamp();
        (PromptTokens, CompletionTokens, CachedPromptTokens, _) = Counts();
        outcome = streams.Length > 0 && Array.TrueForAll(streams, s => s.FinishReason == FinishReason.Stop) ? FinishReason.Stop : FinishReason.Length;
    }

    /// <summary>Each choice's time per output token after its first (vLLM's TPOT): choices are
    /// generated side by side, so dividing the request's time by all their tokens would read n
    /// times too fast. A choice cut short counts the tokens it had.</summary>
    IEnumerable<double> SecondsPerOutputToken() =>
        from c in choiceTokens where c.Count > 1 select Stopwatch.GetElapsedTime(c.First, c.Last).TotalSeconds / (c.Count - 1);

    /// <summary>Tokens used so far; a prompt's tokens are counted once, not per choice (OpenAI's
    /// usage): once any of its choices has read them (a client that left may have stopped the
    /// others before theirs), and cached as far as the prefix cache held them when it was first
    /// read: its other choices take its blocks from the cache (PrefixCaching), which saves the
    /// client nothing. Generated: all the model made, those no reader took included (see
    /// GenerationStream.GeneratedTokens), which /metrics counts as the work done.</summary>
    (int Prompt, int Completion, int CachedPrompt, int Generated) Counts()
    {
        int prompt = 0, completion = 0, cached = 0, generated = 0;
        // A prompt's choices are its streams p * Choices ... p * Choices + Choices - 1.
        for (var first = 0; first < streams.Length; first += context.Choices)
        {
            int read = 0, cachedWhenRead = int.MaxValue;
            for (var c = first; c < first + context.Choices; c++)
            {
                var stream = streams[c];
                completion += stream.CompletionTokens;
                generated += stream.GeneratedTokens;
                if (stream.PromptTokens == 0) continue;
                read = Math.Max(read, stream.PromptTokens);
                cachedWhenRead = Math.Min(cachedWhenRead, stream.CachedPromptTokens);
            }
            prompt += read;
            if (read > 0) cached += cachedWhenRead;
        }
        return (prompt, completion, cached, generated);
    }

    IAsyncEnumerable<ChoicePiece> Merge(CancellationToken cancellation)
    {
        var merged = Channel.CreateUnbounded<ChoicePiece>(new UnboundedChannelOptions { SingleReader = true });
        var pumps = new Task[streams.Length];
        for (var i = 0; i < streams.Length; i++) pumps[i] = Pump(i, merged.Writer, cancellation);
        choicesRead = Task.WhenAll(pumps);
        _ = choicesRead.ContinueWith(_ => merged.Writer.TryComplete(), TaskScheduler.Default);
        return merged.Reader.ReadAllAsync(cancellation);
    }

    async Task Pump(int choice, ChannelWriter<ChoicePiece> writer, CancellationToken cancellation)
    {
        try
        {
            // The choice's reader refills its piece's token list (empty or not) for the next piece
            // while this one waits in the channel: the piece takes a copy with it.
            await foreach (var piece in ReadChoiceAsync(choice, cancellation).ConfigureAwait(false))
                writer.TryWrite(piece with { Tokens = [.. piece.Tokens] });
        }
        catch (Exception e)
        {
            // A choice that fails fails the request at once: its reader throws, and disposing the
            // run cancels the other choices rather than leave them running for nobody.
            writer.TryComplete(e);
        }
    }

    async IAsyncEnumerable<ChoicePiece> ReadChoiceAsync(int choice, [EnumeratorCancellation] CancellationToken cancellation)
    {
        var stream = streams[choice];
        string? stoppedWith = null;
        // Tokens with the offset where their text ends, counted in generated characters, until
        // as many characters have been passed on. Without filters both counts move together.
        var pending = new Queue<(GeneratedToken Token, long End)>();
        long generated = 0, passed = 0;
        // The tokens each piece passes on, refilled for the next.
        var released = new List<GeneratedToken>();
        // Generated text not passed on yet. Filters hold text back and let it go unchanged, unless
        // they rewrite it: from then on no token spells what the client gets, and none is sent.
        var unpassed = new StringBuilder();
        var rewritten = false;
        // The choice's text so far, in which its tokens' alternatives are judged; kept only when
        // there are alternatives for filters to judge.
        var text = scopes.Length > 0 && context.Request.Logprobs > 0 ? new ArrayBufferWriter<char>() : null;
        var alternativesRemoved = 0;
        var promptScreened = false;
        await foreach (var chunk in stream.ReadAllAsync(cancellation).ConfigureAwait(false))
        {
            if (!promptScreened)
            {
                // The prompt's log-probabilities are there once the first chunk is.
                alternativesRemoved += await ScreenPromptAsync(choice, cancellation);
                promptScreened = true;
            }
            if (chunk.Token is { } generatedToken)
            {
                var now = Stopwatch.GetTimestamp();
                Interlocked.CompareExchange(ref firstToken, now, 0);
                var (firstOfChoice, _, count) = choiceTokens[choice];
                choiceTokens[choice] = (firstOfChoice == 0 ? now : firstOfChoice, now, count + 1);
                var token = generatedToken;
                // Once rewritten, no token of the choice is sent, nor are its alternatives.
                if (text is not null && !rewritten)
                {
                    (token, var removed) = await ScreenAsync(generatedToken, text.WrittenMemory, cancellation);
                    alternativesRemoved += removed;
                }
                pending.Enqueue((token, generated + chunk.Text.Length));
            }
            text?.Write(chunk.Text);
            generated += chunk.Text.Length;
            var output = chunk.Text;
            foreach (var scope in scopes)
            {
                var step = await scope.OnOutputAsync(choice, output, cancellation);
                output = step.Text;
                stoppedWith ??= step.FinishReason;
            }
            passed += output.Length;
            rewritten = rewritten || !PassesOn(unpassed.Append(chunk.Text), output);
            if (rewritten) pending.Clear();
            yield return new ChoicePiece(choice, output, Release(pending, passed, released), null);
            // Leaving the loop drops the sequence from the engine (GenerationStream.ReadAllAsync).
            if (stoppedWith is not null) break;
        }
        if (!promptScreened) alternativesRemoved += await ScreenPromptAsync(choice, cancellation);
        // Each scope's held-back tail still passes through the scopes after it.
        var tail = "";
        ContentFilterResults? filterResults = null;
        foreach (var scope in scopes)
        {
            if (tail.Length > 0)
            {
                var step = await scope.OnOutputAsync(choice, tail, cancellation);
                tail = step.Text;
                stoppedWith ??= step.FinishReason;
            }
            var end = await scope.OnChoiceEndAsync(choice, cancellation);
            tail += end.Text;
            stoppedWith ??= end.FinishReason;
            filterResults ??= end.FilterResults;
        }
        rewritten = rewritten || !PassesOn(unpassed, tail);
        // The choice's filter results say that its alternatives were screened, and how many were
        // left out, rather than let the lists just be shorter.
        if (filterResults is not null && (context.Request.Logprobs > 0 || context.Request.PromptLogprobs > 0))
            filterResults = filterResults with { TopLogprobs = new ContentFilterAlternativesResult(alternativesRemoved > 0, alternativesRemoved) };
        // A choice a filter stopped or rewrote keeps its held-back tokens to itself, like its text.
        var withheld = stoppedWith is not null || rewritten;
        IReadOnlyList<GeneratedToken> rest = withheld ? [] : Release(pending, long.MaxValue, released);
        if (tail.Length > 0 || rest.Count > 0) yield return new ChoicePiece(choice, tail, rest, null);
        yield return new ChoicePiece(choice, "", [], stoppedWith ?? stream.FinishReason ?? FinishReason.Length, filterResults, withheld);
    }

    /// <summary>Sets the choice's prompt log-probabilities (an echo's), each token's alternatives
    /// screened in the prompt before it as the model got it; returns how many were left out.</summary>
    async ValueTask<int> ScreenPromptAsync(int choice, CancellationToken cancellation)
    {
        var scored = streams[choice].PromptLogprobs;
        promptLogprobs[choice] = scored;
        if (scopes.Length == 0 || scored is null || context.Request.PromptLogprobs is not > 0) return 0;
        // The prompt's text as the echo's text offsets count it.
        var prompt = choice / context.Choices;
        var text = new StringBuilder();
        var ends = new int[Prompts[prompt].Length];
        var echoed = EchoedTexts(prompt);
        for (var i = 0; i < ends.Length; i++) ends[i] = text.Append(echoed[i]).Length;
        var before = text.ToString().AsMemory();
        var screened = new GeneratedToken[scored.Count];
        var removed = 0;
        for (var i = 0; i < scored.Count; i++)
        {
            // Entry i scores prompt token i + 1, which follows tokens 0..i.
            (screened[i], var n) = await ScreenAsync(scored[i], before[..ends[i]], cancellation);
            removed += n;
        }
        promptLogprobs[choice] = screened;
        return removed;
    }

    /// <summary>The token with the alternatives every filter lets through after
    /// <paramref name="before"/>, and how many it left out. The token itself stays among them
    /// when it is one: it is listed anyway, and its text is the choice's (or the prompt's).</summary>
    async ValueTask<(GeneratedToken Token, int Removed)> ScreenAsync(GeneratedToken token, ReadOnlyMemory<char> before, CancellationToken cancellation)
    {
        if (token.TopLogprobs is not { } alternatives) return (token, 0);
        List<TokenLogprob>? kept = null;
        for (var i = 0; i < alternatives.Length; i++)
        {
            if (alternatives[i].Token == token.Token || await AllowsAsync(before, alternatives[i].Token, cancellation)) kept?.Add(alternatives[i]);
            else kept ??= [.. alternatives[..i]];
        }
        return kept is null ? (token, 0) : (token with { TopLogprobs = [.. kept] }, alternatives.Length - kept.Count);
    }

    async ValueTask<bool> AllowsAsync(ReadOnlyMemory<char> before, int alternative, CancellationToken cancellation)
    {
        // The filters judging text (blocklists, PII) run to the end without looking at the token:
        // an echoed prompt's thousands of alternatives would still be judged after the client left.
        cancellation.ThrowIfCancellationRequested();
        var text = context.Model.Tokenizer.Decode([alternative]);
        foreach (var scope in scopes)
            if (!await scope.AllowsAlternativeAsync(before, text, cancellation)) return false;
        return true;
    }

    /// <summary>Whether <paramref name="text"/> is the start of the generated text not passed on
    /// yet (then it is taken off), or a filter changed it.</summary>
    static bool PassesOn(StringBuilder unpassed, string text)
    {
        if (text.Length > unpassed.Length) return false;
        for (var i = 0; i < text.Length; i++)
            if (unpassed[i] != text[i]) return false;
        unpassed.Remove(0, text.Length);
        return true;
    }

    /// <summary>Moves the pending tokens whose text ends within the first <paramref name="passed"/>
    /// characters into <paramref name="released"/>, which is refilled: the piece before it has
    /// been read.</summary>
    static List<GeneratedToken> Release(Queue<(GeneratedToken Token, long End)> pending, long passed, List<GeneratedToken> released)
    {
        released.Clear();
        while (pending.Count > 0 && pending.Peek().End <= passed) released.Add(pending.Dequeue().Token);
        return released;
    }

    static async ValueTask CompleteAllAsync(IReadOnlyList<IGenerationScope> scopes, int promptTokens, int completionTokens)
    {
        foreach (var scope in scopes) await scope.CompleteAsync(promptTokens, completionTokens);
    }

    public async ValueTask DisposeAsync()
    {
        // Whatever happened (client gone, error), the sequences leave the engine now, and the
        // filters learn what was used.
        await cancel.CancelAsync();
        // A reader that stopped before its choices ended (a client that left, a failed choice)
        // leaves n > 1 choices' readers running, each maybe inside a filter's call that does not
        // look at the token (a blocklist's regexes, an audit write): the tokens are counted and
        // the filters told of the end once those calls have returned, not while they run. A call
        // that never returns is waited for as long as the host waits for ended requests.
        await choicesRead.WaitAsync(ServerShutdown.EndingTime).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        cancel.Dispose();
        var (prompt, completion, cached, generated) = Counts();
        var first = Interlocked.Read(ref firstToken);
        // Here, whatever became of the run (a client that left, an error, a stopping server): the
        // tokens were computed all the same, as vLLM counts them.
        metrics.Generated(context.Model.Name, started, first == 0 ? null : first, ended == 0 ? null : ended, prompt, cached, generated, SecondsPerOutputToken());
        AccessLogEntry.NoteGeneration(context.Http, context.Stream, prompt, completion, first);
        try
        {
            await CompleteAllAsync(scopes, prompt, completion);
        }
        finally
        {
            // A run that neither ended nor lost its client failed: the exception on its way out is
            // counted by ErrorMiddleware, by its status, and must not be counted twice.
            if (outcome != FinishReason.Cancelled || aborted.IsCancellationRequested) metrics.RequestEnded(context.Model.Name, outcome);
            shutdown.RequestEnded();
        }
    }
}
