// The serving engine for one model: requests queue up, and a dedicated thread loops
// schedule -> execute -> update. Between two decode steps newly admitted sequences are
// prefilled and join the running batch (iteration-level, "continuous" batching); finished and
// cancelled sequences leave it and free their KV blocks at once. A model call that fails is run
// again in smaller parts, so that it fails only the requests whose own call fails, and stops the
// engine only when the model cannot run at all; a decode batch too large for the device's memory
// is then run in parts of the size that fitted. A sampler that throws fails its own sequence
// alone. While every model call fails, a health check tells callers so (CheckHealthAsync).
// Knows nothing about HTTP.
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
    long nextId;
    /// <summary>What stopped the engine: a model that cannot run (FailAlone), or a bug in it.</summary>
    volatile EngineUnavailableException? failure;
    /// <summary>Set by <see cref="Drain"/>: the thread ends once the sequences it has are done.</summary>
    volatile bool draining;
    /// <summary>What the last sequence to fail its own model call threw, until a step in which a
    /// model call succeeded ends (<see cref="CheckHealthAsync"/>). Set before the sequence's
    /// caller is told, so that a health check the caller then asks for runs.</summary>
    volatile Exception? failingCalls;
    /// <summary>Whether one of this step's model calls succeeded.</summary>
    bool callSucceeded;
    /// <summary>The most sequences one decode call runs: the batch's limit until a decode call
    /// runs out of the device's memory, then what fitted (<see cref="LearnDecodeRows"/>).</summary>
    int decodeRowsThatFit;
    /// <summary>Decode steps since one ran out of memory or <see cref="decodeRowsThatFit"/> grew.</summary>
    int decodeStepsSinceOutOfMemory;
    // This step's decode calls: the most rows one ran, and the fewest (two or more) one ran out of
    // memory over, 0 when none did.
    int decodeRowsRun, decodeRowsOutOfMemory;
    /// <summary>Requests whose own model call failed (FailAlone), ever: one a request, as the
    /// failure ends its other sequences before they run a call of their own.</summary>
    long requestsFailedAlone;
    /// <summary>The small request <see cref="CheckHealthAsync"/> runs, and the one running (one at
    /// a time, however many callers ask).</summary>
    readonly GenerationRequest healthCheckRequest;
    readonly Lock healthCheckLock = new();
    Task<string?>? healthCheck;
    /// <summary>The running check's sequence, which the call that ends the streak cancels: the
    /// engine can serve then, and the check need not wait its turn behind the queue.</summary>
    Sequence? healthCheckSequence;

    /// <summary>Decode steps without running out of memory after which one decode call is tried a
    /// row larger than what fitted (<see cref="LearnDecodeRows"/>). Back at once, forward slowly,
    /// as SGLang: when a decode batch no longer fits its KV memory it retracts requests and makes
    /// its estimate of the memory a request needs cautious at once, then relaxes it a little at
    /// each decode step that fits (back over 600 steps by default); vLLM sizes its batch once,
    /// from a memory profile at start-up, and its engine dies when a step runs out. Here a device
    /// whose memory stays short fails one call in 50 steps (its halves run in the same step), and
    /// one whose memory came back (another process freed it, the allocator's cache was emptied)
    /// gains a row every 50 steps. Time is the only sign of that: the KV pool holds its memory
    /// from the start, so a sequence that ends frees none that a decode call could use.</summary>
    internal const int DecodeStepsBeforeGrowing = 50;

    public InferenceEngine(CausalLanguageModel model, ITokenizer tokenizer, EngineOptions? options = null)
    {
        options ??= new EngineOptions();
        options.Validate();
        this.model = model;
        Tokenizer = tokenizer;
        model.eval();
        // A kernel that already multiplies so is kept, with its bf16 copies and threads: stratus
        // sample makes an engine per sample, which would otherwise copy the weights again each time.
        if (model.DecodeWeights != options.DecodeWeights) model.DecodeWeights = options.DecodeWeights;
        var config = model.Config;
        var blocksPerContext = (config.BlockSize + options.BlockSize - 1) / options.BlockSize;
        var bytesPerBlock = KvBlockPool.BytesPerBlock(config.NLayer, model.KvHeads, config.HeadDim, options.BlockSize, model.ComputeDtype);
        var blocks = options.KvBlocks ?? (int)Math.Max(blocksPerContext, Math.Min((long)options.MaxBatchSize * blocksPerContext, options.MaxKvCacheBytes / bytesPerBlock));
        Options = options;
        Device = model.Device.ToString();
        pool = new KvBlockPool(config.NLayer, model.KvHeads, config.HeadDim, blocks, options.BlockSize, model.ComputeDtype, model.Device, options.PrefixCaching);
        scheduler = new Scheduler(Options, pool.Allocator);
        decodeRowsThatFit = options.MaxBatchSize;
        drawableTokens = LogitsSampler.DrawableTokens(model, tokenizer);
        runner = new ModelRunner(model, pool, drawableTokens);
        endOfGeneration = tokenizer.EndOfGenerationIds;
        jsonVocabulary = new(() => new JsonVocabulary(tokenizer, drawableTokens));
        // A prefill and a decode call, as TGI's health check runs: two prompt tokens, as a one-token
        // prefill may run as a decode step does (DecodeStep); token 0 is in every vocabulary.
        var checkPrompt = Math.Min(2, ContextLength);
        healthCheckRequest = new GenerationRequest { PromptTokens = new int[checkPrompt], MaxTokens = Math.Min(2, ContextLength - checkPrompt), IgnoreEos = true, Sampling = new() { Temperature = 0 } };
        thread = new Thread(Loop) { IsBackground = true, Name = "stratus-engine" };
        thread.Start();
    }

    public EngineOptions Options { get; }
    public ITokenizer Tokenizer { get; }
    public ModelConfig ModelConfig => model.Config;
    public int ContextLength => model.Config.BlockSize;
    /// <summary>Where the model runs, as libtorch names it ("cpu", "cuda:0"): read once, since
    /// the model's device is found through its parameters.</summary>
    public string Device { get; }

    public int Running => scheduler.Running;
    public int Waiting => scheduler.Waiting;
    public int KvBlocksUsed => pool.Allocator.UsedBlocks;
    public int KvBlocksTotal => pool.Allocator.BlockCount;
    /// <summary>Fraction of KV blocks held by sequences (0 to 1).</summary>
    public double KvCacheUsage => (double)KvBlocksUsed / KvBlocksTotal;
    /// <summary>The engine runs: it has not stopped, failed or been drained. It may still fail
    /// every model call (<see cref="CheckHealthAsync"/>).</summary>
    public bool IsHealthy => failure is null && !stopping.IsCancellationRequested && !draining;
    /// <summary>Requests whose own model call failed while the model ran a one-token probe
    /// (their 503 model_step_failed), ever, the small requests of <see cref="CheckHealthAsync"/> included.</summary>
    public long RequestsFailedAlone => Volatile.Read(ref requestsFailedAlone);
    /// <summary>The most sequences one decode call runs: <see cref="EngineOptions.MaxBatchSize"/>
    /// until a decode call runs out of the device's memory, then what fitted (<see cref="LearnDecodeRows"/>).</summary>
    public int MaxDecodeBatchSize => Volatile.Read(ref decodeRowsThatFit);

    /// <summary>Why the engine cannot serve, in one line; null when it can. It cannot once it has
    /// stopped. When no model call has succeeded since one failed a sequence on its own (a model
    /// that runs the one-token probe but fails every real call, a device whose memory another
    /// process holds, or only requests too large for the device), it runs a small request of its
    /// own, as TGI's health check does after a failed batch and SGLang's /health_generate: it
    /// can serve if that request runs, which ends the streak, and cannot if it fails too. So
    /// requests that fail for their own input never make it unhealthy, however many in a row,
    /// and one whose every call fails is healthy again by itself at its first call that runs.
    /// The check answers at that call, a request's or its own: it does not wait its turn behind
    /// requests that run (a probe's timeout is a second or so). Runs nothing otherwise, and one
    /// check at a time.</summary>
    public ValueTask<string?> CheckHealthAsync()
    {
        if (!IsHealthy) return ValueTask.FromResult<string?>(StoppedReason);
        if (failingCalls is null) return ValueTask.FromResult<string?>(null);
        lock (healthCheckLock)
        {
            if (healthCheck is not { IsCompleted: false }) healthCheck = RunHealthCheckAsync();
            return new ValueTask<string?>(healthCheck);
        }
    }

    async Task<string?> RunHealthCheckAsync()
    {
        try
        {
            var check = Submit(healthCheckRequest);
            // Exchanged, so that this and the engine's ending the streak (Step) cannot both miss
            // the other: a call may have run since CheckHealthAsync saw the streak.
            Interlocked.Exchange(ref healthCheckSequence, check);
            if (failingCalls is null) check.Cancel();
            // It runs, or is dropped as the streak has ended: either way the engine can serve.
            await foreach (var _ in check.Output.ReadAllAsync()) { }
            return null;
        }
        // Healthy after all if a call has run since; otherwise the streak's last failure, the check's own.
        catch (EngineStepFailedException) { return FailingReason(); }
        catch (EngineUnavailableException) { return StoppedReason; }
        // A full queue is no sign of failing calls: requests that fail leave it at once.
        catch (EngineOverloadedException) { return null; }
    }

    string StoppedReason => failure?.Message ?? "the engine has stopped";

    string? FailingReason() => failingCalls is { } last
        ? $"every model call fails, a small health-check request's too; the last with: {Reason(last)}"
        : null;

    /// <summary>Queues a request. Its tokens arrive on the sequence's channel; cancelling
    /// <paramref name="cancellation"/> drops the sequence before the next decode step.</summary>
    /// <exception cref="EngineOverloadedException">The waiting queue is full.</exception>
    public Sequence Submit(GenerationRequest request, CancellationToken cancellation = default) => SubmitAll([request], cancellation)[0];

    /// <summary>Queues the sequences of one API request (its prompts and choices) all together
    /// or none of them, so that concurrent many-choice requests cannot each take part of the
    /// waiting queue and all be refused. When one of them fails its model call, they all end with
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
            throw new StratusUserException($"{(schema == JsonSchema.AnyObject ? "JSON mode" : "the JSON schema")} needs a token that does not end the generation for each character it may have to write to finish a document, and this model's vocabulary has none for {missing}")
            {
                // The value is well formed; this model cannot follow it.
                Param = request.SchemaParam ?? (schema == JsonSchema.AnyObject ? "response_format" : "response_format.json_schema.schema"),
                Code = "unsupported_value",
            };
    }

    /// <summary>Refuses a prompt token the model has no row for (its tokenizer spells more than
    /// it has), which the model's lookup would fail on.</summary>
    internal static void RequireInVocabulary(IReadOnlyList<int> tokens, int vocab)
    {
        foreach (var t in tokens)
            if ((uint)t >= (uint)vocab) throw new StratusUserException($"token id {t} is outside the vocabulary of {vocab}");
    }

    /// <summary>Takes no more requests: the engine's thread ends once the sequences it has are done,
    /// disposed or not. For an engine that serves one caller's generation (TextGenerator), whose
    /// caller may stop reading without disposing anything.</summary>
    internal void Drain()
    {
        draining = true;
        wakeUp.Release();
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
                    if (draining) break;
                    wakeUp.Wait(TimeSpan.FromMilliseconds(200));
                    continue;
                }
                Step();
            }
            scheduler.FailAll(new EngineUnavailableException("the engine stopped"));
        }
        catch (Exception e)
        {
            // A model that cannot run (FailAlone), or a bug in the engine: fail every sequence
            // rather than leave callers hanging.
            var stopped = e as EngineUnavailableException ?? new EngineUnavailableException($"the engine failed: {Reason(e)}", e);
            failure = stopped;
            scheduler.FailAll(stopped);
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
        callSucceeded = false;
        var (prefill, decode) = scheduler.Schedule();
        if (decode.Count > 0) Decode(decode);
        // Prompt chunks of equal length are prefilled together, one length at a time. Cancelled
        // sequences are skipped here and released by the next Schedule.
        prefill.Sort(ByChunk);
        for (var start = 0; start < prefill.Count;)
        {
            var length = prefill[start].PrefillChunk;
            group.Clear();
            for (; start < prefill.Count && prefill[start].PrefillChunk == length; start++)
                if (!prefill[start].CancelRequested) group.Add(prefill[start]);
            // Prefill even for max_tokens 0: it scores the prompt when prompt logprobs are asked.
            if (group.Count > 0) Call(group, prefill: true);
        }
        if (callSucceeded && failingCalls is not null)
        {
            failingCalls = null;
            Interlocked.Exchange(ref healthCheckSequence, null)?.Cancel();
        }
    }

    /// <summary>The decode step of <paramref name="decode"/>, in calls of at most
    /// <see cref="decodeRowsThatFit"/> rows, the first of them a row larger when it is time to try
    /// (<see cref="LearnDecodeRows"/>). A row's logits do not depend on the other rows of its call
    /// (but for the rounding of libtorch's batched matmuls), so the parts choose what one call
    /// would, as Isolate's halves do.</summary>
    void Decode(List<Sequence> decode)
    {
        decodeRowsRun = decodeRowsOutOfMemory = 0;
        if (decode.Count <= decodeRowsThatFit) Call(decode, prefill: false);
        else
        {
            var size = decodeStepsSinceOutOfMemory >= DecodeStepsBeforeGrowing ? decodeRowsThatFit + 1 : decodeRowsThatFit;
            for (var next = 0; next < decode.Count; size = decodeRowsThatFit)
            {
                group.Clear();
                // As Isolate's second half: an earlier part's failures cancel their requests' other sequences.
                for (; next < decode.Count && group.Count < size; next++)
                    if (!decode[next].CancelRequested) group.Add(decode[next]);
                if (group.Count > 0) Call(group, prefill: false);
            }
        }
        LearnDecodeRows();
    }

    /// <summary>After a decode step, what it showed of the device's memory. When a call over two
    /// rows or more ran out of it, none of them then failing alone, other than the one tried a row
    /// larger than what fitted, the most rows a call ran in the step fit from then on, but fewer
    /// than the fewest that ran out (at least one): a batch of n that ran out runs in calls of n/2, the halves Isolate ran, from
    /// the next step on, so a device short of memory fails a call once, not at every step. A call
    /// of n rows may run and another of n run out in one step (what a call needs grows with its
    /// rows' lengths): n does not fit. The call tried a row larger fits from then on if it runs,
    /// and changes nothing if it runs out (<see cref="DecodeStepsBeforeGrowing"/>).</summary>
    void LearnDecodeRows()
    {
        if (decodeRowsOutOfMemory == 0)
        {
            if (decodeRowsRun > decodeRowsThatFit)
            {
                decodeRowsThatFit = decodeRowsRun;
                decodeStepsSinceOutOfMemory = 0;
            }
            // Saturates: a server up for 2^31 decode steps would otherwise wrap and never grow again.
            else if (decodeStepsSinceOutOfMemory < DecodeStepsBeforeGrowing) decodeStepsSinceOutOfMemory++;
            return;
        }
        if (decodeRowsOutOfMemory <= decodeRowsThatFit) decodeRowsThatFit = Math.Clamp(decodeRowsRun, 1, decodeRowsOutOfMemory - 1);
        decodeStepsSinceOutOfMemory = 0;
    }

    /// <summary>One model call, the decode step of <paramref name="rows"/> or the prefill of their
    /// next chunks, then the tokens it chose for them. A call that throws is run again in parts
    /// (Isolate); a row whose token the sampler cannot choose fails alone.</summary>
    void Call(List<Sequence> rows, bool prefill)
    {
        try
        {
            if (prefill) runner.Prefill(rows);
            else runner.Decode(rows);
        }
        catch (Exception e)
        {
            var failedAlone = requestsFailedAlone;
            Isolate(rows, prefill, e);
            // A call that ran out for a row whose own call runs out (a long context) says nothing
            // of how many rows fit: only one whose parts all ran counts.
            if (!prefill && rows.Count > 1 && OutOfMemory.Is(e) && requestsFailedAlone == failedAlone && (decodeRowsOutOfMemory == 0 || rows.Count < decodeRowsOutOfMemory))
                decodeRowsOutOfMemory = rows.Count;
            return;
        }
        callSucceeded = true;
        if (!prefill) decodeRowsRun = Math.Max(decodeRowsRun, rows.Count);
        for (var i = 0; i < rows.Count; i++)
        {
            var sequence = rows[i];
            // A prefill chooses only for the prompts it completes.
            if (!runner.Advance(sequence)) continue; // more chunks to come
            if (prefill)
            {
                scheduler.Prefilled(sequence);
                if (sequence.Request.MaxTokens == 0)
                {
                    scheduler.Release(sequence, FinishReason.Length);
                    continue;
                }
            }
            GeneratedToken token;
            try
            {
                token = runner.Choose(i, sequence);
            }
            catch (Exception e)
            {
                // The sampler's own failure (a bug, the process out of memory): the forward ran,
                // so the other rows' logits and random draws are as they would be without it.
                Fail(sequence, new EngineStepFailedException($"choosing the next token failed: {Reason(e)}", e));
                continue;
            }
            Update(sequence, token);
        }
    }

    /// <summary>A model call over <paramref name="rows"/> threw: one request's input, a batch too
    /// large for the device's memory, or a broken device. Runs it again over each half of the
    /// rows, down to single ones, so that only a sequence whose own call throws fails, and the
    /// others go on with the tokens they would have had (vLLM fails the whole engine instead).
    /// Running a call again is safe because one that throws changes nothing a later call reads:
    /// the runner moves CachedTokens and draws from a sequence's random generator only once the
    /// forward has returned (ModelRunner.Advance, Choose), so the new call writes the same KV slots again
    /// (never shared prefix blocks: those lie before CachedTokens), no block it half wrote joins
    /// the prefix cache, and each token is drawn once; and the runner, its cache and the decode
    /// step set up each call's buffers afresh. A call over n rows costs at most 2n - 1 calls,
    /// and a broken device stops the engine after the first log2(n) + 1 of them (FailAlone).
    /// Only this path allocates.</summary>
    void Isolate(List<Sequence> rows, bool prefill, Exception error)
    {
        if (rows.Count == 1)
        {
            FailAlone(rows[0], error);
            return;
        }
        var half = rows.Count / 2;
        CallUncancelled(rows.GetRange(0, half), prefill);
        // Read after the first half ran: its failures cancel their requests' other sequences.
        CallUncancelled(rows.GetRange(half, rows.Count - half), prefill);
    }

    /// <summary>Calls the rows not cancelled (their request failed, or its client went away);
    /// the next Schedule releases the others.</summary>
    void CallUncancelled(List<Sequence> rows, bool prefill)
    {
        rows.RemoveAll(static sequence => sequence.CancelRequested);
        if (rows.Count > 0) Call(rows, prefill);
    }

    /// <summary>A model call over one sequence threw. Whether it is the request's fault or the
    /// device's, a one-token probe of the model tells: when the probe fails too, other than for
    /// want of memory, the engine stops (every request would fail the same way); otherwise the
    /// sequence and its request fail, and the engine goes on, however many fail so in a row: were
    /// a count of them to stop it, any client could stop it for everyone by sending prompts too
    /// large for the device one after another. A model that fails every real call shows in
    /// <see cref="CheckHealthAsync"/> instead. On a GPU, an error that leaves the CUDA context
    /// unusable (an illegal memory access) fails the probe.</summary>
    void FailAlone(Sequence sequence, Exception error)
    {
        try
        {
            runner.Probe();
        }
        catch (Exception probeError)
        {
            // Out of memory even for one token, the device still runs: what another process
            // holds may be freed, and CheckHealthAsync tells callers while it is not.
            if (!OutOfMemory.Is(probeError))
                throw new EngineUnavailableException($"the engine failed: a model call failed, and then a one-token probe of the model too: {Reason(probeError)}", probeError);
        }
        failingCalls = error;
        Volatile.Write(ref requestsFailedAlone, requestsFailedAlone + 1);
        Fail(sequence, new EngineStepFailedException($"the model step failed: {Reason(error)}; a retry may succeed", error));
    }

    /// <summary>Ends a sequence whose model step failed, and its request with it.</summary>
    void Fail(Sequence sequence, EngineStepFailedException error)
    {
        // The request's other prompts and choices end before the next step, wherever they are:
        // left running for nobody, the same bad input would fail their own calls too.
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
