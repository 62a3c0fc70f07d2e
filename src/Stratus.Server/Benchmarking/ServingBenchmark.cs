// A serving benchmark modelled on vLLM's benchmark_serving: streams completions from any
// OpenAI-compatible server at several concurrency levels and measures time to first token,
// time per output token, inter-token latency, end-to-end latency and throughput.
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Benchmarking;

public sealed record ServingBenchmarkOptions
{
    /// <summary>The server, with or without the /v1 suffix.</summary>
    public required Uri Url { get; init; }
    public required string Model { get; init; }
    public IReadOnlyList<int> Concurrency { get; init; } = [1, 4, 16, 64];
    public int Requests { get; init; } = 64;
    public int PromptTokens { get; init; } = 32;
    /// <summary>Leading prompt tokens every request shares (a system prompt; vLLM's
    /// --random-prefix-len); the rest of each prompt is its own, so a prefix cache can serve
    /// exactly these.</summary>
    public int SharedPrefixTokens { get; init; }
    public int MaxTokens { get; init; } = 32;
    public string? ApiKey { get; init; }
    /// <summary>How long to wait for a server whose /ready answers 503 (its models loading).</summary>
    public TimeSpan ReadyTimeout { get; init; } = TimeSpan.FromMinutes(10);

    public void Validate()
    {
        if (Concurrency.Count == 0 || Concurrency.Any(c => c < 1)) throw new StratusUserException("--concurrency needs positive levels, e.g. 1,4,16,64");
        if (Requests < 1) throw new StratusUserException("--requests must be at least 1");
        if (PromptTokens < 1) throw new StratusUserException("--prompt-tokens must be at least 1");
        if (SharedPrefixTokens < 0 || SharedPrefixTokens >= PromptTokens)
            throw new StratusUserException($"--shared-prefix-tokens must be at least 0 and less than --prompt-tokens ({PromptTokens}), got {SharedPrefixTokens}");
        if (MaxTokens < 1) throw new StratusUserException("--max-tokens must be at least 1");
        if (ReadyTimeout < TimeSpan.Zero) throw new StratusUserException($"--ready-timeout must be at least 0 seconds, got {ReadyTimeout.TotalSeconds:0.###}");
    }
}

/// <summary>Latency statistics in milliseconds.</summary>
public sealed record LatencyStats(double Mean, double P50, double P90, double P99)
{
    public static LatencyStats Of(List<double> values)
    {
        if (values.Count == 0) return new LatencyStats(double.NaN, double.NaN, double.NaN, double.NaN);
        values.Sort();
        return new LatencyStats(values.Average(), Percentile(values, 50), Percentile(values, 90), Percentile(values, 99));
    }

    /// <summary>The p-th percentile of sorted values: linear interpolation between closest ranks
    /// (numpy's default, as vLLM reports).</summary>
    public static double Percentile(List<double> sorted, double p)
    {
        var rank = p / 100 * (sorted.Count - 1);
        var low = (int)Math.Floor(rank);
        var high = Math.Min(low + 1, sorted.Count - 1);
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
    }
}

public sealed record ServingLevelResult(
    int Concurrency, int Requests, int Errors, double DurationSeconds, long OutputTokens,
    double RequestsPerSecond, double OutputTokensPerSecond, double? PrefixCacheHitRate,
    LatencyStats TtftMs, LatencyStats TpotMs, LatencyStats ItlMs, LatencyStats E2eMs, string? FirstError)
{
    public JsonObject ToJson()
    {
        var json = new JsonObject
        {
            ["concurrency"] = Concurrency,
            ["requests"] = Requests,
            ["errors"] = Errors,
            ["duration_s"] = DurationSeconds,
            ["output_tokens"] = OutputTokens,
            ["request_throughput"] = RequestsPerSecond,
            ["output_tokens_per_sec"] = OutputTokensPerSecond,
            ["prefix_cache_hit_rate"] = PrefixCacheHitRate,
        };
        foreach (var (name, stats) in new[] { ("ttft", TtftMs), ("tpot", TpotMs), ("itl", ItlMs), ("e2e", E2eMs) })
        {
            json[$"{name}_ms_mean"] = Number(stats.Mean);
            json[$"{name}_ms_p50"] = Number(stats.P50);
            json[$"{name}_ms_p90"] = Number(stats.P90);
            json[$"{name}_ms_p99"] = Number(stats.P99);
        }
        if (FirstError is not null) json["first_error"] = FirstError;
        return json;
    }

    static JsonNode? Number(double value) => double.IsNaN(value) ? null : JsonValue.Create(value);
}

public sealed class ServingBenchmark(ServingBenchmarkOptions options) : IDisposable
{
    readonly HttpClient http = CreateClient(options);

    static HttpClient CreateClient(ServingBenchmarkOptions options)
    {
        var root = options.Url.AbsoluteUri.TrimEnd('/');
        if (root.EndsWith("/v1", StringComparison.Ordinal)) root = root[..^3];
        var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
        {
            BaseAddress = new Uri(root + "/"),
            Timeout = TimeSpan.FromMinutes(10),
        };
        if (options.ApiKey is { Length: > 0 } key) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    /// <summary>Runs every concurrency level in turn (once the server is ready, after one warm-up request).</summary>
    public async Task<IReadOnlyList<ServingLevelResult>> RunAsync(IProgress<string>? progress = null, CancellationToken cancellation = default)
    {
        options.Validate();
        await WaitUntilReadyAsync(progress, cancellation);
        // One prompt per request of every level, plus the warm-up's: a server's prefix cache may
        // only ever serve the shared prefix.
        var prompts = await BuildPromptsAsync(1 + options.Requests * options.Concurrency.Count, cancellation);
        var warmup = await SendAsync(prompts[0], cancellation);
        if (warmup.Error is { } error) throw new StratusUserException($"the server at {http.BaseAddress} did not answer a completion: {error}");
        var results = new List<ServingLevelResult>();
        for (var l = 0; l < options.Concurrency.Count; l++)
        {
            var level = options.Concurrency[l];
            progress?.Report($"concurrency {level}: {options.Requests} requests ...");
            results.Add(await RunLevelAsync(level, prompts.AsMemory(1 + l * options.Requests, options.Requests), cancellation));
        }
        return results;
    }

    async Task<ServingLevelResult> RunLevelAsync(int concurrency, ReadOnlyMemory<JsonNode> prompts, CancellationToken cancellation)
    {
        var outcomes = new RequestOutcome[options.Requests];
        var next = -1;
        var clock = Stopwatch.StartNew();
        var workers = new Task[Math.Min(concurrency, options.Requests)];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < options.Requests) outcomes[i] = await SendAsync(prompts.Span[i], cancellation);
            }, cancellation);
        }
        await Task.WhenAll(workers);
        var seconds = clock.Elapsed.TotalSeconds;
        List<double> ttft = [], tpot = [], itl = [], e2e = [];
        long tokens = 0, promptTokens = 0, cachedTokens = 0;
        var errors = 0;
        var reportsCache = false;
        string? firstError = null;
        foreach (var outcome in outcomes)
        {
            if (outcome.Error is not null)
            {
                errors++;
                firstError ??= outcome.Error;
                continue;
            }
            tokens += outcome.OutputTokens;
            if (outcome is { PromptTokens: { } prompt, CachedTokens: { } cached })
            {
                (promptTokens, cachedTokens, reportsCache) = (promptTokens + prompt, cachedTokens + cached, true);
            }
            ttft.Add(outcome.TtftMs);
            e2e.Add(outcome.E2eMs);
            itl.AddRange(outcome.ItlMs);
            if (outcome.OutputTokens > 1) tpot.Add((outcome.E2eMs - outcome.TtftMs) / (outcome.OutputTokens - 1));
        }
        var ok = options.Requests - errors;
        return new ServingLevelResult(concurrency, options.Requests, errors, seconds, tokens, ok / seconds, tokens / seconds,
            reportsCache && promptTokens > 0 ? (double)cachedTokens / promptTokens : null, LatencyStats.Of(ttft), LatencyStats.Of(tpot), LatencyStats.Of(itl), LatencyStats.Of(e2e), firstError);
    }

    /// <summary>PromptTokens and CachedTokens as the server's usage reports them (null when it does not).</summary>
    sealed record RequestOutcome(double TtftMs, double E2eMs, List<double> ItlMs, int OutputTokens, string? Error, int? PromptTokens = null, int? CachedTokens = null);

    async Task<RequestOutcome> SendAsync(JsonNode prompt, CancellationToken cancellation)
    {
        var body = new JsonObject
        {
            ["model"] = options.Model,
            ["prompt"] = prompt.DeepClone(),
            ["max_tokens"] = options.MaxTokens,
            ["temperature"] = 0,
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            // vLLM's extension, honoured by Stratus: a fixed output length makes levels comparable.
            ["ignore_eos"] = true,
        };
        var start = Stopwatch.GetTimestamp();
        double ttft = 0;
        long last = 0;
        var itl = new List<double>();
        var chunks = 0;
        int? usageTokens = null, promptTokens = null, cachedTokens = null;
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = JsonContent.Create(body) };
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellation);
            if (!response.IsSuccessStatusCode)
                return Failed($"HTTP {(int)response.StatusCode}: {Shorten(await response.Content.ReadAsStringAsync(cancellation))}");
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellation));
            while (await reader.ReadLineAsync(cancellation) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
                var data = line.AsSpan(6);
                if (data.SequenceEqual("[DONE]")) break;
                using var json = JsonDocument.Parse(data.ToString());
                var root = json.RootElement;
                if (root.TryGetProperty("error", out var error)) return Failed(Shorten(error.ToString()));
                if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    usageTokens = usage.GetProperty("completion_tokens").GetInt32();
                    promptTokens = usage.GetProperty("prompt_tokens").GetInt32();
                    if (usage.TryGetProperty("prompt_tokens_details", out var details) && details.ValueKind == JsonValueKind.Object
                        && details.TryGetProperty("cached_tokens", out var cached) && cached.ValueKind == JsonValueKind.Number)
                        cachedTokens = cached.GetInt32();
                }
                if (!root.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0) continue;
                var text = choices[0].TryGetProperty("text", out var t) ? t.GetString() : null;
                if (string.IsNullOrEmpty(text)) continue;
                var now = Stopwatch.GetTimestamp();
                if (chunks == 0) ttft = Stopwatch.GetElapsedTime(start, now).TotalMilliseconds;
                else itl.Add(Stopwatch.GetElapsedTime(last, now).TotalMilliseconds);
                last = now;
                chunks++;
            }
            if (chunks == 0) return Failed("the stream held no text");
            return new RequestOutcome(ttft, Stopwatch.GetElapsedTime(start).TotalMilliseconds, itl, usageTokens ?? chunks, null, promptTokens, cachedTokens);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException or InvalidOperationException or TaskCanceledException && !cancellation.IsCancellationRequested)
        {
            return Failed(e.Message);
        }

        static RequestOutcome Failed(string error) => new(0, 0, [], 0, error);
    }

    /// <summary>Waits while the server's /ready answers 503 (a Stratus server listens while its
    /// models load), at most <see cref="ServingBenchmarkOptions.ReadyTimeout"/>, saying so at once and
    /// every ten seconds: measured then, every request is a 503, and /tokenize's 503 makes word
    /// prompts of the token-id ones. A server without /ready (404), one that answers it otherwise
    /// (a key it refuses) or none at the address is left to the warm-up request to name; one that
    /// never answers /ready is not ready.</summary>
    async Task WaitUntilReadyAsync(IProgress<string>? progress, CancellationToken cancellation)
    {
        var clock = Stopwatch.StartNew();
        TimeSpan? said = null;
        while (true)
        {
            string reason;
            // A server that takes the connection and never answers (wedged while loading) is
            // waited for no longer than the rest of the wait, not the client's ten minutes.
            using var answer = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            var rest = options.ReadyTimeout - clock.Elapsed;
            answer.CancelAfter(rest > ReadyAnswerTime ? rest : ReadyAnswerTime);
            try
            {
                using var response = await http.GetAsync("ready", answer.Token);
                if (response.StatusCode != HttpStatusCode.ServiceUnavailable) return;
                reason = ErrorMessage(await response.Content.ReadAsStringAsync(answer.Token)) ?? "HTTP 503";
            }
            catch (OperationCanceledException) when (answer.IsCancellationRequested && !cancellation.IsCancellationRequested)
            {
                reason = "its /ready did not answer";
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException && !cancellation.IsCancellationRequested)
            {
                return;
            }
            var waited = clock.Elapsed;
            if (waited >= options.ReadyTimeout)
                throw new StratusUserException($"the server at {http.BaseAddress} was not ready after {options.ReadyTimeout.TotalSeconds:0.###} s ({reason}); " +
                    "see its log, or wait longer with --ready-timeout <seconds>");
            if (said is null || waited - said >= ReadyProgressInterval)
            {
                progress?.Report($"waiting for the server to be ready ({reason}; {waited.TotalSeconds:0} s of {options.ReadyTimeout.TotalSeconds:0.###} s) ...");
                said = waited;
            }
            await Task.Delay(ReadyPollInterval, cancellation);
        }
    }

    /// <summary>ReadyAnswerTime: how long one /ready is waited for at least, so that --ready-timeout 0
    /// still takes a server's answer.</summary>
    static readonly TimeSpan ReadyPollInterval = TimeSpan.FromSeconds(1), ReadyProgressInterval = TimeSpan.FromSeconds(10),
        ReadyAnswerTime = TimeSpan.FromSeconds(5);

    /// <summary>The message of an OpenAI-shaped error body, without its final period; null for another body.</summary>
    static string? ErrorMessage(string body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            return json.RootElement.ValueKind == JsonValueKind.Object && json.RootElement.TryGetProperty("error", out var error)
                && error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String
                ? message.GetString()!.TrimEnd('.') : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Distinct prompts, each the shared prefix and then text of its own (its marker,
    /// then a scene): token ids, exactly the asked number, when the server has /tokenize
    /// (Stratus, vLLM), else about that many words.</summary>
    async Task<JsonNode[]> BuildPromptsAsync(int count, CancellationToken cancellation)
    {
        const string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n";
        var source = string.Concat(Enumerable.Repeat(text, Math.Max(1, options.PromptTokens / 8 + 1)));
        var (shared, own) = (options.SharedPrefixTokens, options.PromptTokens - options.SharedPrefixTokens);
        var prompts = new JsonNode[count];
        try
        {
            // The prompt starts as a text prompt does, with the special tokens the tokenizer adds
            // (a Llama's BOS); its own part is plain text that follows.
            var prefix = shared == 0 ? [] : (await TokenizeAsync("All:\n" + source, addSpecialTokens: true, cancellation))?[..shared];
            for (var i = 0; prefix is not null && i < count; i++)
            {
                if (await TokenizeAsync($"{Marker(i)}: {source}", addSpecialTokens: shared == 0, cancellation) is not { } tokens) break;
                prompts[i] = new JsonArray([.. prefix.Concat(tokens[..own]).Select(t => JsonValue.Create(t))]);
            }
            if (prompts[^1] is not null) return prompts;
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or InvalidOperationException)
        {
            // Not every server has /tokenize: fall back to words.
        }
        var words = source.Split(' ', '\n').Where(w => w.Length > 0).ToArray();
        for (var i = 0; i < count; i++)
            prompts[i] = JsonValue.Create(string.Join(' ', words.Take(shared).Append($"{Marker(i)}:").Concat(words.Take(own - 1))))!;
        return prompts;
    }

    /// <summary>A prompt's own start: i in base 26 as lowercase letters (a, b, ..., ba, bb, ...),
    /// which any vocabulary spells (a character-level one may have no digits).</summary>
    static string Marker(int i)
    {
        var letters = new Stack<char>();
        do letters.Push((char)('a' + i % 26)); while ((i /= 26) > 0);
        return new string([.. letters]);
    }

    /// <summary>The server's token ids for the text (at least --prompt-tokens of them), or null
    /// when it cannot say.</summary>
    async Task<int[]?> TokenizeAsync(string text, bool addSpecialTokens, CancellationToken cancellation)
    {
        using var response = await http.PostAsJsonAsync("tokenize", new { model = options.Model, prompt = text, add_special_tokens = addSpecialTokens }, cancellation);
        if (!response.IsSuccessStatusCode) return null;
        var tokens = (await response.Content.ReadFromJsonAsync<JsonObject>(cancellation))!["tokens"]!.AsArray().Select(t => (int)t!).ToArray();
        return tokens.Length >= options.PromptTokens ? tokens : null;
    }

    static string Shorten(string text) => text.Length > 300 ? text[..300] : text;

    public void Dispose() => http.Dispose();
}
