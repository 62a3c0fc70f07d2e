// The serving engine for one model: requests queue up, and a dedicated thread loops
// schedule -> execute -> update. Between two decode steps newly admitted sequences are
// prefilled and join the running batch (iteration-level, "continuous" batching); finished and
// cancelled sequences leave it and free their KV blocks at once. A model call that fails fails
// the requests it was running, not the engine. Knows nothing about HTTP.
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

public sealed class InferenceEngine : IDisposable
{
    readonly CausalLanguageModel model;
    readonly KvBlockPool pool;
    readonly Scheduler scheduler;
    readonly ModelRunner runner;
    readonly SemaphoreSlim wakeUp = new(0);
    readonly CancellationTokenSource stopping = new();
    readonly Thread thread;
    readonly IReadOnlyList<int> endOfGeneration;
    /// <summary>Read at the first request with a JSON schema (JSON mode included): most engines never need it.</summary>
    readonly Lazy<JsonVocabulary> jsonVocabulary;
    /// <summary>The ids tokens are drawn from, which logit_bias may name (LogitsSampler.DrawableTokens).</summary>
    readonly int drawableTokens;
    readonly List<Sequence> group = [];
    GeneratedToken[] chosen = new GeneratedToken[16];
    long nextId;
    volatile Exception? failure;
    /// <summary>Model calls (decode batches, prefill groups) that failed since the last one that
    /// succeeded.</summary>
    int failedCalls;

    /// <summary>Failed model calls in a row that stop the engine. A bad input or a transient
    /// out-of-memory fails one call, and under any other traffic the next call succeeds and
    /// starts the count again; on an idle server the request's own retries are the next calls,
    /// and OpenAI's SDKs retry a 503 two (Python, Node) or three (.NET) times, so a request that
    /// fails every time fails up to 4 calls in a row: 5 lets it fail alone. A broken model or
    /// device fails every call, and then the engine stops after 5 of them (a few steps' time), as
    /// it always did after one, rather than answer every request with an error while /ready
    /// says it is ready.</summary>
    const int MaxFailedCallsInARow = 5;

    public InferenceEngine(CausalLanguageModel model, ITokenizer tokenizer, EngineOptions? options = null)
    {
        options ??= new EngineOptions();
        options.Validate();
        this.model = model;
        Tokenizer = tokenizer;
        model.eval();
        model.DecodeWeights = options.DecodeWeights;
        var config = model.Config;
        var blocksPerContext = (config.BlockSize + options.BlockSize - 1) / options.BlockSize;
        var bytesPerBlock = KvBlockPool.BytesPerBlock(config.NLayer, model.KvHeads, config.HeadDim, options.BlockSize, model.ComputeDtype);
        var blocks = options.KvBlocks ?? (int)Math.Max(blocksPerContext, Math.Min((long)options.MaxBatchSize * blocksPerContext, options.MaxKvCacheBytes / bytesPerBlock));
        Options = options;
        pool = new KvBlockPool(config.NLayer, model.KvHeads, config.HeadDim, blocks, options.BlockSize, model.ComputeDtype, model.Device, options.PrefixCaching);
        scheduler = new Scheduler(Options, pool.Allocator);
        drawableTokens = LogitsSampler.DrawableTokens(model, tokenizer);
        runner = new ModelRunner(model, pool, drawableTokens);
        endOfGeneration = tokenizer.EndOfGenerationIds;
        jsonVocabulary = new(() => new JsonVocabulary(tokenizer, drawableTokens));
        thread = new Thread(Loop) { IsBackground = true, Name = "stratus-engine" };
        thread.Start();
    }

    public EngineOptions Options { get; }
    public ITokenizer Tokenizer { get; }
    public ModelConfig ModelConfig => model.Config;
    public int ContextLength => model.Config.BlockSize;

    public int Running => scheduler.Running;
    public int Waiting => scheduler.Waiting;
    public int KvBlocksUsed => pool.Allocator.UsedBlocks;
    public int KvBlocksTotal => pool.Allocator.BlockCount;
    /// <summary>Fraction of KV blocks held by sequences (0 to 1).</summary>
    public double KvCacheUsage => (double)KvBlocksUsed / KvBlocksTotal;
    public bool IsHealthy => failure is null && !stopping.IsCancellationRequested;

    /// <summary>Queues a request. Its tokens arrive on the sequence's channel; cancelling
    /// <paramref name="cancellation"/> drops the sequence before the next decode step.</summary>
    /// <exception cref="EngineOverloadedException">The waiting queue is full.</exception>
    public Sequence Submit(GenerationRequest request, CancellationToken cancellation = default) => SubmitAll([request], cancellation)[0];

    /// <summary>Queues the sequences of one API request (its prompts and choices) all together
    /// or none of them, so that concurrent many-choice requests cannot each take part of the
    /// waiting queue and all be refused. When a model call fails one of them, they all end with
    /// its <see cref="EngineStepFailedException"/>: the request has failed.</summary>
    /// <exception cref="EngineOverloadedException">The waiting queue has no room for all of them.</exception>
    public Sequence[] SubmitAll(IReadOnlyList<GenerationRequest> requests, CancellationToken cancellation = default)
    {
        if (!IsHealthy) throw new EngineUnavailableException("the engine has stopped", failure);
        foreach (var request in requests) Validate(request);
        var sequences = new Sequence[requests.Count];
        for (var i = 0; i < sequences.Length; i++)
        {
            var sequence = sequences[i] = new Sequence(Interlocked.Increment(ref nextId), requests[i], model.Config.VocabSize, endOfGeneration, requests[i].Schema is null ? null : jsonVocabulary.Value);
            // Registered before the sequence is queued, so the engine can always release it when
            // the sequence ends, however it ends.
            if (cancellation.CanBeCanceled)
            {
                sequence.CancellationRegistration = cancellation.UnsafeRegister(static (state, _) =>
                {
                    var (s, engine) = ((Sequence, InferenceEngine))state!;
                    s.Cancel();
                    engine.wakeUp.Release();
                }, (sequence, this));
            }
        }
        foreach (var sequence in sequences) sequence.SubmittedWith = sequences;
        bool queued;
        try
        {
            if (sequences.Length > Options.MaxWaiting)
                throw new StratusUserException($"the request needs {sequences.Length} sequences (prompts times n) and the server queues at most {Options.MaxWaiting}; send fewer prompts or choices per request");
            queued = scheduler.TryEnqueue(sequences);
        }
        catch
        {
            foreach (var sequence in sequences) sequence.CancellationRegistration.Dispose();
            throw;
        }
        if (!queued)
        {
            foreach (var sequence in sequences) sequence.CancellationRegistration.Dispose();
            throw new EngineOverloadedException($"the server is busy: {scheduler.Waiting} sequences are already waiting (at most {Options.MaxWaiting}); retry shortly", TimeSpan.FromSeconds(1));
        }
        wakeUp.Release();
        return sequences;
    }

    /// <summary>Refuses a request the engine cannot run, whoever built it (the HTTP API first
    /// checks with its own messages): a bad setting would otherwise fail the engine for all its
    /// callers.</summary>
    void Validate(GenerationRequest request)
    {
        request.Sampling.Validate();
        // In float32, as the sampler applies them: 1e39 is infinite there, and -inf + inf NaN.
        if (!float.IsFinite((float)request.PresencePenalty) || !float.IsFinite((float)request.FrequencyPenalty))
            throw new StratusUserException($"presence and frequency penalties must be numbers within float32's range, got {request.PresencePenalty} and {request.FrequencyPenalty}");
        if (!(request.RepetitionPenalty > 0 && float.IsFinite((float)request.RepetitionPenalty)))
            throw new StratusUserException($"repetition_penalty must be above 0 and within float32's range, got {request.RepetitionPenalty}");
        if (request.Stop.Any(stop => stop.Length == 0)) throw new StratusUserException("a stop sequence must not be empty");
        var count = request.PromptTokens.Count;
        if (count == 0) throw new StratusUserException("the prompt has no tokens");
        if (request.MaxTokens < 0) throw new StratusUserException($"max_tokens must be 0 or more, got {request.MaxTokens}");
        if (count + request.MaxTokens > ContextLength)
            throw new StratusUserException($"the prompt ({count} tokens) plus max_tokens ({request.MaxTokens}) is over the model's context of {ContextLength} tokens");
        RequireInVocabulary(request.PromptTokens, model.Config.VocabSize);
        if (request.LogitBias is { } bias)
            foreach (var (token, value) in bias)
            {
                if ((uint)token >= (uint)drawableTokens) throw new StratusUserException($"logit_bias names token {token}, outside the vocabulary of {drawableTokens}");
                if (!float.IsFinite(value)) throw new StratusUserException("logit_bias values must be numbers");
            }
        // One that no row holds ends nothing: in JSON mode a whole object would be left no token.
        foreach (var token in request.StopTokens)
            if ((uint)token >= (uint)drawableTokens) throw new StratusUserException($"stop token {token} is outside the vocabulary of {drawableTokens}");
        if (request.Schema is { } schema && jsonVocabulary.Value.MissingFor(schema, Sequence.EndTokensOf(request, endOfGeneration)) is { Length: > 0 } missing)
            throw new StratusUserException($"{(schema == JsonSchema.AnyObject ? "JSON mode" : "the JSON schema")} needs a token that does not end the generation for each character it may have to write to finish a document, and this model's vocabulary has none for {missing}");
    }

    /// <summary>Refuses a prompt token the model has no row for (its tokenizer spells more than
    /// it has), which the model's lookup would fail on.</summary>
    internal static void RequireInVocabulary(IReadOnlyList<int> tokens, int vocab)
    {
        foreach (var t in tokens)
            if ((uint)t >= (uint)vocab) throw new StratusUserException($"token id {t} is outside the vocabulary of {vocab}");
    }

    void Loop()
    {
        using var noGrad = no_grad();
        try
        {
            while (!stopping.IsCancellationRequested)
            {
                if (!scheduler.HasWork)
                {
                    wakeUp.Wait(TimeSpan.FromMilliseconds(200));
                    continue;
                }
                Step();
            }
            scheduler.FailAll(new EngineUnavailableException("the engine stopped"));
        }
        catch (Exception e)
        {
            // A model that fails every call, or a bug in the engine: fail every sequence rather
            // than leave callers hanging.
            failure = e;
            var cause = failedCalls >= MaxFailedCallsInARow ? $"{failedCalls} model steps in a row failed, the last with: {Reason(e)}" : Reason(e);
            scheduler.FailAll(new EngineUnavailableException($"the engine failed: {cause}", e));
        }
    }

    /// <summary>What went wrong, in one line: an allocation that failed as OutOfMemory describes
    /// it, anything else by its message up to the first line break (libtorch's go on with a C++
    /// stack trace, no part of an error a client is told).</summary>
    static string Reason(Exception e)
    {
        if (OutOfMemory.Is(e)) return OutOfMemory.Describe(e);
        var message = e.Message.Trim();
        var end = message.AsSpan().IndexOfAny('\r', '\n');
        return end < 0 ? message : message[..end].TrimEnd();
    }

    void Step()
    {
        var (prefill, decode) = scheduler.Schedule();
        if (decode.Count > 0 && Call(decode, prefill: false))
            for (var i = 0; i < decode.Count; i++) Update(decode[i], chosen[i]);
        // Prompt chunks of equal length are prefilled together, one length at a time. Cancelled
        // sequences are skipped here and released by the next Schedule.
        prefill.Sort(ByChunk);
        for (var start = 0; start < prefill.Count;)
        {
            var length = prefill[start].PrefillChunk;
            group.Clear();
            for (; start < prefill.Count && prefill[start].PrefillChunk == length; start++)
                if (!prefill[start].CancelRequested) group.Add(prefill[start]);
            if (group.Count == 0) continue;
            // Prefill even for max_tokens 0: it scores the prompt when prompt logprobs are asked.
            if (!Call(group, prefill: true)) continue;
            for (var g = 0; g < group.Count; g++)
            {
                if (group[g].CachedTokens < group[g].PromptLength) continue; // more chunks to come
                scheduler.Prefilled(group[g]);
                if (group[g].Request.MaxTokens == 0) scheduler.Release(group[g], FinishReason.Length);
                else Update(group[g], chosen[g]);
            }
        }
    }

    /// <summary>One model call: the decode step of <paramref name="rows"/> or the prefill of
    /// their next chunks. Returns whether tokens were chosen for them in <see cref="chosen"/>
    /// (a prefill chooses only for prompts it completes); false when the call threw, which ends
    /// their requests (FailCall). Past MaxFailedCallsInARow the exception goes on to Loop, which
    /// stops the engine.</summary>
    bool Call(List<Sequence> rows, bool prefill)
    {
        if (chosen.Length < rows.Count) chosen = new GeneratedToken[Math.Max(rows.Count, chosen.Length * 2)];
        try
        {
            var completed = true;
            if (prefill) completed = runner.Prefill(rows, chosen);
            else runner.Decode(rows, chosen);
            failedCalls = 0;
            return completed;
        }
        catch (Exception e) when (++failedCalls < MaxFailedCallsInARow)
        {
            FailCall(rows, e);
            return false;
        }
    }

    /// <summary>Ends the sequences of a model call that threw, and the other sequences of their
    /// requests, and frees their blocks; the engine goes on with the rest. Nothing the call half
    /// wrote stays reachable: a sequence's CachedTokens, all that Release registers in the prefix
    /// cache, moves only once the model call for those tokens has returned (ModelRunner), so
    /// the blocks the call was writing return to the pool unregistered; and the runner, its
    /// cache and the decode step set up each call's buffers afresh. On a GPU, an error that
    /// leaves the CUDA context unusable (an illegal memory access) fails every later call too,
    /// so the engine stops at <see cref="MaxFailedCallsInARow"/>.</summary>
    void FailCall(List<Sequence> rows, Exception cause)
    {
        var error = new EngineStepFailedException($"the model step failed: {Reason(cause)}; a retry may succeed", cause);
        foreach (var sequence in rows) Fail(sequence, error);
    }

    /// <summary>Ends a sequence whose model step failed, and its request with it.</summary>
    void Fail(Sequence sequence, EngineStepFailedException error)
    {
        // The request's other prompts and choices end before the next step, wherever they are:
        // left running for nobody, the same bad input would fail their own calls too, each
        // counting towards stopping the engine.
        foreach (var other in sequence.SubmittedWith)
            if (other != sequence) other.Cancel(error);
        scheduler.Release(sequence, FinishReason.Cancelled, error);
    }

    static readonly Comparison<Sequence> ByChunk = (a, b) => a.PrefillChunk.CompareTo(b.PrefillChunk);

    /// <summary>Appends a chosen token and ends the sequence when it is done.</summary>
    void Update(Sequence sequence, GeneratedToken token)
    {
        var request = sequence.Request;
        var isEnd = Array.IndexOf(sequence.EndTokens, token.Token) >= 0;
        // End markers are counted as generated (as vLLM does) but never shown as text.
        if (!sequence.Append(token, emit: !isEnd))
            // That request fails, not the engine with every other caller's.
            Fail(sequence, new EngineStepFailedException($"the model step failed: its logits are not all numbers (token {token.Token} was drawn though the response format ruled it out)"));
        else if (isEnd) scheduler.Release(sequence, FinishReason.Stop);
        // JSON mode with no token to end on: the object's closing brace ends the generation.
        else if (sequence.Json.IsComplete && sequence.EndTokens.Length == 0) scheduler.Release(sequence, FinishReason.Stop);
        else if (sequence.Generated >= request.MaxTokens || sequence.Length >= ContextLength) scheduler.Release(sequence, FinishReason.Length);
    }

    public void Dispose()
    {
        if (stopping.IsCancellationRequested) return;
        stopping.Cancel();
        wakeUp.Release();
        thread.Join();
        // wakeUp is left to the GC: a late cancellation callback may still Release it.
        pool.Dispose();
    }
}
