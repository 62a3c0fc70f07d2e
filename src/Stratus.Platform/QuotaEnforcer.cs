// Per-key quotas: requests per minute and tokens per minute, each a sliding one-minute window.
// A request is admitted only if both have room; its token charge is prompt tokens + max_tokens
// (the most it can use) and is corrected to the real count when it completes, as Azure OpenAI
// does. Limits come from the key record on every admission, so a changed limit applies to the
// next request without a restart. RateLimitStatus carries what the server needs for
// Retry-After and the x-ratelimit-* headers.
using System.Collections.Concurrent;
using System.Globalization;

namespace Stratus.Platform;

/// <param name="RetryAfter">Set when refused and waiting can help; null when the request can
/// never fit (its token estimate exceeds the per-minute limit).</param>
public sealed record RateLimitStatus(
    long LimitRequests,
    long LimitTokens,
    long RemainingRequests,
    long RemainingTokens,
    TimeSpan ResetRequests,
    TimeSpan ResetTokens,
    TimeSpan? RetryAfter = null)
{
    /// <summary>OpenAI's header set. Limits of 0 (unlimited) produce no headers for that
    /// dimension. Retry-After is whole seconds, rounded up.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> ToHeaders()
    {
        var headers = new List<KeyValuePair<string, string>>();
        if (LimitRequests > 0)
        {
            headers.Add(new("x-ratelimit-limit-requests", LimitRequests.ToString(CultureInfo.InvariantCulture)));
            headers.Add(new("x-ratelimit-remaining-requests", RemainingRequests.ToString(CultureInfo.InvariantCulture)));
            headers.Add(new("x-ratelimit-reset-requests", FormatDuration(ResetRequests)));
        }
        if (LimitTokens > 0)
        {
            headers.Add(new("x-ratelimit-limit-tokens", LimitTokens.ToString(CultureInfo.InvariantCulture)));
            headers.Add(new("x-ratelimit-remaining-tokens", RemainingTokens.ToString(CultureInfo.InvariantCulture)));
            headers.Add(new("x-ratelimit-reset-tokens", FormatDuration(ResetTokens)));
        }
        if (RetryAfter is { } wait)
            headers.Add(new("Retry-After", Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture)));
        return headers;
    }

    /// <summary>OpenAI's duration style: "250ms", "1.5s", "6m0s".</summary>
    public static string FormatDuration(TimeSpan span)
    {
        if (span <= TimeSpan.Zero) return "0s";
        if (span < TimeSpan.FromSeconds(1)) return $"{Math.Ceiling(span.TotalMilliseconds).ToString(CultureInfo.InvariantCulture)}ms";
        if (span < TimeSpan.FromMinutes(1)) return $"{Math.Round(span.TotalSeconds, 3).ToString(CultureInfo.InvariantCulture)}s";
        return $"{(int)span.TotalMinutes}m{span.Seconds}s";
    }
}

/// <summary>An admitted request's claim on its key's token budget.</summary>
public sealed class QuotaTicket
{
    readonly SlidingWindowLimiter.Lease tokens;
    int completed;

    internal QuotaTicket(SlidingWindowLimiter.Lease tokens, long estimatedTokens)
    {
        this.tokens = tokens;
        EstimatedTokens = estimatedTokens;
    }

    public long EstimatedTokens { get; }

    /// <summary>Corrects the token charge to what the request really used (prompt +
    /// completion tokens). Only the first call counts.</summary>
    public void Complete(long actualTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(actualTokens);
        if (Interlocked.Exchange(ref completed, 1) == 0) tokens.Correct(actualTokens);
    }
}

public sealed record QuotaDecision(bool Admitted, QuotaTicket? Ticket, RateLimitStatus Status, string? Reason);

public sealed class QuotaEnforcer(TimeProvider? time = null)
{
    static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    sealed class KeyLimiters(RateLimits limits, TimeProvider? time)
    {
        public readonly SlidingWindowLimiter Requests = new(limits.RequestsPerMinute, Minute, time);
        public readonly SlidingWindowLimiter Tokens = new(limits.TokensPerMinute, Minute, time);

        public void Apply(RateLimits limits)
        {
            Requests.Limit = limits.RequestsPerMinute;
            Tokens.Limit = limits.TokensPerMinute;
        }
    }

    readonly ConcurrentDictionary<string, KeyLimiters> byKey = new();

    /// <summary>Why a request over the whole limit is refused, in the counts it was charged: what
    /// it may generate is the caller's max_tokens for every choice, whichever default an endpoint
    /// put there, and a prompt over the limit cannot be helped by asking for fewer.</summary>
    static string NeverFits(long limit, long promptTokens, long maxTokens, long estimate) => promptTokens > limit
        ? $"The request's prompt is {promptTokens} tokens, more than the key's limit of {limit} tokens per minute; send a shorter prompt."
        : $"The request needs up to {estimate} tokens ({promptTokens} in its prompt and up to {maxTokens} to generate: max_tokens for every choice), more than the key's limit of {limit} tokens per minute; ask for at most {limit - promptTokens} tokens in all (lower max_tokens or n).";

    /// <summary>Admits a request of <paramref name="promptTokens"/> + <paramref name="maxTokens"/>
    /// tokens at most, or refuses it with the time to wait. The counts are long so that callers
    /// can pass sums and products of client-chosen numbers (max_tokens × n) without overflow.</summary>
    public QuotaDecision TryAdmit(ApiKeyRecord key, long promptTokens, long maxTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        // Saturates: a wrapped (negative) sum would throw after the request slot was charged.
        var estimate = maxTokens > long.MaxValue - promptTokens ? long.MaxValue : promptTokens + maxTokens;
        var limiters = LimitersFor(key);
        // Both windows are charged under one lock so concurrent requests of one key cannot
        // each pass one check and together overshoot the other.
        lock (limiters)
        {
            var request = limiters.Requests.TryCharge(1);
            if (!request.IsAcquired)
                return new(false, null, Status(key, limiters, RetryAfterOf(request)), "Requests per minute limit reached.");
            var tokens = limiters.Tokens.TryCharge(estimate);
            if (!tokens.IsAcquired)
            {
                request.Correct(0);
                var retry = RetryAfterOf(tokens);
                return new(false, null, Status(key, limiters, retry), retry is null ? NeverFits(key.Limits.TokensPerMinute, promptTokens, maxTokens, estimate) : "Tokens per minute limit reached.");
            }
            return new(true, new QuotaTicket(tokens, estimate), Status(key, limiters, null), null);
        }
    }

    /// <summary>Current remaining budget and reset times, for headers on any response.</summary>
    public RateLimitStatus StatusOf(ApiKeyRecord key) => Status(key, LimitersFor(key), null);

    /// <summary>Drops a key's windows (after revocation) so they do not linger in memory.</summary>
    public void Forget(string keyId) => byKey.TryRemove(keyId, out _);

    KeyLimiters LimitersFor(ApiKeyRecord key)
    {
        var limiters = byKey.GetOrAdd(key.Id, _ => new KeyLimiters(key.Limits, time));
        limiters.Apply(key.Limits);
        return limiters;
    }

    static RateLimitStatus Status(ApiKeyRecord key, KeyLimiters limiters, TimeSpan? retryAfter)
    {
        var (remainingRequests, resetRequests) = limiters.Requests.Peek();
        var (remainingTokens, resetTokens) = limiters.Tokens.Peek();
        return new RateLimitStatus(key.Limits.RequestsPerMinute, key.Limits.TokensPerMinute,
            remainingRequests, remainingTokens, resetRequests, resetTokens, retryAfter);
    }

    static TimeSpan? RetryAfterOf(SlidingWindowLimiter.Lease lease) =>
        lease.TryGetMetadata(System.Threading.RateLimiting.MetadataName.RetryAfter, out var wait) ? wait : null;
}
