// Serving metrics, labelled with the model name and exported as Prometheus text at /metrics
// through OpenTelemetry; vLLM's vllm:* set is the model (requests by outcome, TTFT, TPOT,
// end-to-end latency, running and waiting sequences, KV-cache usage, token counters), with what
// the engine learned of its device (the decode batch that fits, requests whose own call failed).
// The counters' totals are kept here too, for Snapshot (GET /api/serving, the dashboard's live
// figures): an instrument cannot be read back, and a browser should not parse Prometheus text.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Stratus.Server.Trust;

namespace Stratus.Server.Hosting;

public sealed class ServingMetrics : IDisposable
{
    public const string MeterName = "Stratus.Serving";

    // Seconds, from a few milliseconds (TPOT of a small model) to minutes (long generations).
    static readonly IReadOnlyList<double> LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160];

    readonly Meter meter;
    readonly Counter<long> requests, promptTokens, cachedPromptTokens, generationTokens;
    readonly Histogram<double> timeToFirstToken, timePerOutputToken, e2eLatency;
    readonly ServedModels servedModels;
    // By model name; "" holds the requests refused before they named a served model.
    readonly ConcurrentDictionary<string, Totals> totals = new(StringComparer.Ordinal);

    /// <summary>A model's counters since the server started.</summary>
    sealed class Totals
    {
        public long PromptTokens, CachedPromptTokens, GenerationTokens;
        public readonly ConcurrentDictionary<string, long> Requests = new(StringComparer.Ordinal);
    }

    public ServingMetrics(ServedModels servedModels)
    {
        this.servedModels = servedModels;
        meter = new Meter(MeterName);
        requests = meter.CreateCounter<long>("stratus.requests", description: "Requests by outcome: stop, length, cancelled, rejected (429, or 503 for a stopped engine), invalid (4xx of the serving API: /v1 but its admin paths, /tokenize, /detokenize), error (5xx, a failed model step, and a platform database the machine refuses).");
        promptTokens = meter.CreateCounter<long>("stratus.prompt_tokens", description: "Prompt tokens processed, of every request (those cancelled or failed too) whose prompt the model read whole.");
        cachedPromptTokens = meter.CreateCounter<long>("stratus.prefix_cache_hit_tokens", description: "Prompt tokens whose keys and values came from the prefix cache (counted in the prompt tokens too).");
        generationTokens = meter.CreateCounter<long>("stratus.generation_tokens", description: "Tokens generated, for every request (those cancelled or failed too).");
        var advice = new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets };
        timeToFirstToken = meter.CreateHistogram("stratus.time_to_first_token", "s", "Time from request to the first generated token.", advice: advice);
        timePerOutputToken = meter.CreateHistogram("stratus.time_per_output_token", "s", "Mean time between generated tokens of each choice of a request.", advice: advice);
        e2eLatency = meter.CreateHistogram("stratus.e2e_request_latency", "s", "Time from request to its last token, of the requests that ran to their end (not those cancelled or failed).", advice: advice);
        meter.CreateObservableGauge("stratus.num_requests_running", () => PerModel(servedModels, m => m.Engine.Running), description: "Sequences in the running batch.");
        meter.CreateObservableGauge("stratus.num_requests_waiting", () => PerModel(servedModels, m => m.Engine.Waiting), description: "Sequences waiting for a slot.");
        meter.CreateObservableGauge("stratus.kv_cache_usage_ratio", () => PerModel(servedModels, m => m.Engine.KvCacheUsage), description: "Fraction of KV-cache blocks in use (0 to 1).");
        meter.CreateObservableGauge("stratus.max_decode_batch_size", () => PerModel(servedModels, m => m.Engine.MaxDecodeBatchSize), description: "The most sequences one decode call runs: --max-batch-size until a decode call runs out of the device's memory, then the most that fitted (one more is tried after 50 decode steps that fit).");
        meter.CreateObservableCounter("stratus.requests_failed_alone", () => PerModel(servedModels, m => m.Engine.RequestsFailedAlone), description: "Requests whose own model call failed while the model runs a one-token probe (each a 503 model_step_failed: a prompt too large for the device's memory, an input the model fails on), the engine's health checks included.");
    }

    static IEnumerable<Measurement<T>> PerModel<T>(ServedModels servedModels, Func<ServedModel, T> read) where T : struct
    {
        foreach (var model in servedModels.All) yield return new Measurement<T>(read(model), new KeyValuePair<string, object?>("model", model.Name));
    }

    /// <summary>Whether a request to <paramref name="path"/> is the serving API's, whose outcomes
    /// stratus_requests_total counts: /v1 (but for its admin paths, /v1/admin and /v1/usage),
    /// /tokenize and /detokenize, as vLLM counts its serving requests alone. The platform's
    /// management (/api, the admin paths), the dashboard and /metrics itself are not: their
    /// 4xx answers are not the models' invalid requests.</summary>
    public static bool Counts(PathString path) =>
        (path.StartsWithSegments("/v1") || path.StartsWithSegments("/tokenize") || path.StartsWithSegments("/detokenize"))
        && TrustRoutes.ScopeForPath(path.Value!) == Stratus.Platform.ApiKeyScopes.Inference;

    public void RequestEnded(string model, string outcome)
    {
        requests.Add(1, new KeyValuePair<string, object?>("model", model), new KeyValuePair<string, object?>("outcome", outcome));
        TotalsOf(model).Requests.AddOrUpdate(outcome, 1, static (_, count) => count + 1);
    }

    Totals TotalsOf(string model) => totals.GetOrAdd(model, static _ => new Totals());

    /// <summary>Records a generation once it is over, however it ended: the tokens the model
    /// computed (a prompt once read whole, every token generated), its time to first token where
    /// one came, each choice's time per output token, and its end-to-end latency where it ran to
    /// its end (<paramref name="endTimestamp"/>; null for one its client left, an error or a
    /// stopping server ended).</summary>
    public void Generated(string model, long startTimestamp, long? firstTokenTimestamp, long? endTimestamp, int prompt, int cachedPrompt, int generated,
        IEnumerable<double> secondsPerOutputToken)
    {
        var tag = new KeyValuePair<string, object?>("model", model);
        promptTokens.Add(prompt, tag);
        cachedPromptTokens.Add(cachedPrompt, tag);
        generationTokens.Add(generated, tag);
        var total = TotalsOf(model);
        Interlocked.Add(ref total.PromptTokens, prompt);
        Interlocked.Add(ref total.CachedPromptTokens, cachedPrompt);
        Interlocked.Add(ref total.GenerationTokens, generated);
        if (endTimestamp is { } end) e2eLatency.Record(Stopwatch.GetElapsedTime(startTimestamp, end).TotalSeconds, tag);
        if (firstTokenTimestamp is { } first) timeToFirstToken.Record(Stopwatch.GetElapsedTime(startTimestamp, first).TotalSeconds, tag);
        foreach (var seconds in secondsPerOutputToken) timePerOutputToken.Record(seconds, tag);
    }

    /// <summary>The figures /metrics exports, as they stand now: each served model's engine and
    /// counters, and the requests of every model by outcome (those that named no served model too).
    /// Rates are the reader's to compute, from two snapshots' counters and times.</summary>
    public ServingSnapshot Snapshot()
    {
        var models = new List<ServedModelFigures>(servedModels.All.Count);
        foreach (var model in servedModels.All)
        {
            var total = TotalsOf(model.Name);
            var engine = model.Engine;
            models.Add(new ServedModelFigures(model.Name, model.RegisteredVersion, engine.Device, engine.ContextLength, engine.IsHealthy, engine.Running, engine.Waiting,
                engine.KvCacheUsage, engine.MaxDecodeBatchSize, engine.RequestsFailedAlone, Interlocked.Read(ref total.PromptTokens),
                Interlocked.Read(ref total.CachedPromptTokens), Interlocked.Read(ref total.GenerationTokens), Outcomes([total])));
        }
        return new ServingSnapshot(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0, servedModels.IsLoading, models, Outcomes(totals.Values));
    }

    static SortedDictionary<string, long> Outcomes(IEnumerable<Totals> of)
    {
        var sum = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var total in of)
            foreach (var (outcome, count) in total.Requests) sum[outcome] = sum.GetValueOrDefault(outcome) + count;
        return sum;
    }

    public void Dispose() => meter.Dispose();
}

/// <summary>GET /api/serving's answer (snake_case on the wire).</summary>
/// <param name="Time">Seconds since 1970 (UTC) when it was taken, for rates between two.</param>
/// <param name="Requests">Requests of every model by outcome, as stratus_requests_total counts them.</param>
public sealed record ServingSnapshot(double Time, bool Loading, IReadOnlyList<ServedModelFigures> Models, IReadOnlyDictionary<string, long> Requests)
{
    public string Object => "serving";
}

/// <param name="RegisteredVersion">NAME:VERSION of the registered version it was loaded from; left
/// out for a model served from a folder.</param>
/// <param name="Healthy">Whether its engine serves (false once stopped or failing every call: /health's 503).</param>
/// <param name="KvCacheUsage">The fraction of KV-cache blocks in use, 0 to 1.</param>
/// <param name="Requests">Its requests by outcome: stop, length, tool_calls, cancelled, rejected, invalid, error.</param>
public sealed record ServedModelFigures(string Id,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? RegisteredVersion, string Device, int ContextLength, bool Healthy, int Running, int Waiting, double KvCacheUsage,
    int MaxDecodeBatchSize, long RequestsFailedAlone, long PromptTokens, long PrefixCacheHitTokens, long GenerationTokens, IReadOnlyDictionary<string, long> Requests);
