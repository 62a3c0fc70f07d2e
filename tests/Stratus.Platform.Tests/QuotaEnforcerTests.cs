// Quotas: requests and tokens per minute per key in a sliding window, token charges corrected
// at completion, limits changed on the fly, exact under concurrent load, and the numbers the
// server turns into Retry-After and x-ratelimit-* headers.
using Stratus.Platform;

namespace Stratus.Platform.Tests;

public sealed class QuotaEnforcerTests
{
    static readonly DateTimeOffset Start = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    static ApiKeyRecord Key(int rpm, int tpm, string id = "key1") =>
        new(id, id, ApiKeyScopes.Inference, new RateLimits(rpm, tpm), Start, null);

    [Fact]
    public void Requests_per_minute_slide_and_report_when_to_retry()
    {
        var clock = new TestClock(Start);
        var quotas = new QuotaEnforcer(clock);
        var key = Key(rpm: 3, tpm: 0);
        for (var i = 0; i < 3; i++)
        {
            Assert.True(quotas.TryAdmit(key, 10, 10).Admitted);
            clock.Advance(TimeSpan.FromSeconds(10));
        }
        var refused = quotas.TryAdmit(key, 10, 10);
        Assert.False(refused.Admitted);
        // The first request (t=0) leaves the window at t=60; it is now t=30.
        Assert.Equal(TimeSpan.FromSeconds(30), refused.Status.RetryAfter);
        Assert.Equal(0, refused.Status.RemainingRequests);
        Assert.Equal(TimeSpan.FromSeconds(50), refused.Status.ResetRequests);

        clock.Advance(TimeSpan.FromSeconds(30));
        var admitted = quotas.TryAdmit(key, 10, 10);
        Assert.True(admitted.Admitted);
        Assert.Equal(0, admitted.Status.RemainingRequests);
    }

    /// <summary>The window is timed on the monotonic clock, not the wall clock: set back an hour,
    /// the wall clock neither holds a charge for that hour (Retry-After 3640 s) nor, set forward,
    /// forgets it at once.</summary>
    [Fact]
    public void A_wall_clock_set_back_or_forward_moves_no_window()
    {
        var clock = new TestClock(Start);
        var quotas = new QuotaEnforcer(clock);
        var key = Key(rpm: 1, tpm: 0);
        Assert.True(quotas.TryAdmit(key, 1, 1).Admitted);
        clock.Advance(TimeSpan.FromSeconds(20));

        clock.StepWallClock(TimeSpan.FromHours(-1));
        var back = quotas.TryAdmit(key, 1, 1);
        Assert.False(back.Admitted);
        Assert.Equal((TimeSpan.FromSeconds(40), TimeSpan.FromSeconds(40)), (back.Status.RetryAfter, back.Status.ResetRequests));

        clock.StepWallClock(TimeSpan.FromHours(2));
        var forward = quotas.TryAdmit(key, 1, 1);
        Assert.False(forward.Admitted);
        Assert.Equal((TimeSpan.FromSeconds(40), TimeSpan.FromSeconds(40)), (forward.Status.RetryAfter, forward.Status.ResetRequests));

        clock.Advance(TimeSpan.FromSeconds(40));
        Assert.True(quotas.TryAdmit(key, 1, 1).Admitted);
    }

    [Fact]
    public void A_request_that_can_never_fit_is_told_which_part_to_lower_with_the_counts_it_was_charged()
    {
        var quotas = new QuotaEnforcer(new TestClock(Start));
        var key = Key(rpm: 0, tpm: 1000);
        // What it may generate is max_tokens for each of its choices, whatever the endpoint's
        // default for max_tokens (16 for /v1/completions, the context's rest for a chat).
        var tooLong = quotas.TryAdmit(key, promptTokens: 100, maxTokens: 4 * 300);
        Assert.False(tooLong.Admitted);
        Assert.Equal("The request needs up to 1300 tokens (100 in its prompt and up to 1200 to generate: max_tokens for every choice), more than the key's limit of 1000 tokens per minute; ask for at most 900 tokens in all (lower max_tokens or n).", tooLong.Reason);
        // Lowering max_tokens can never fit a prompt over the limit.
        var tooLongPrompt = quotas.TryAdmit(key, promptTokens: 1500, maxTokens: 16);
        Assert.False(tooLongPrompt.Admitted);
        Assert.Equal("The request's prompt is 1500 tokens, more than the key's limit of 1000 tokens per minute; send a shorter prompt.", tooLongPrompt.Reason);
    }

    [Fact]
    public void Tokens_are_charged_at_admission_and_corrected_at_completion()
    {
        var clock = new TestClock(Start);
        var quotas = new QuotaEnforcer(clock);
        var key = Key(rpm: 0, tpm: 1000);
        var first = quotas.TryAdmit(key, promptTokens: 100, maxTokens: 400);
        Assert.True(first.Admitted);
        Assert.Equal(500, first.Status.RemainingTokens);
        Assert.Equal(500, first.Ticket!.EstimatedTokens);

        Assert.False(quotas.TryAdmit(key, 100, 500).Admitted);
        first.Ticket.Complete(150);
        Assert.Equal(850, quotas.StatusOf(key).RemainingTokens);
        first.Ticket.Complete(0);
        Assert.Equal(850, quotas.StatusOf(key).RemainingTokens);
        Assert.True(quotas.TryAdmit(key, 100, 500).Admitted);

        clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(1000, quotas.StatusOf(key).RemainingTokens);
    }

    [Fact]
    public void A_request_that_can_never_fit_is_told_so_and_costs_no_request()
    {
        var quotas = new QuotaEnforcer(new TestClock(Start));
        var key = Key(rpm: 2, tpm: 1000);
        var refused = quotas.TryAdmit(key, 200, 2000);
        Assert.False(refused.Admitted);
        Assert.Null(refused.Status.RetryAfter);
        Assert.Contains("max_tokens", refused.Reason);
        Assert.Equal(2, quotas.StatusOf(key).RemainingRequests);
    }

    [Fact]
    public void A_huge_token_estimate_is_refused_not_thrown()
    {
        var enforcer = new QuotaEnforcer();
        var key = new ApiKeyRecord("review-key-1", "review", ApiKeyScopes.Inference, new RateLimits(10, 1000), DateTimeOffset.UtcNow, null);
        Assert.False(enforcer.TryAdmit(key, 100, int.MaxValue).Admitted);
        Assert.Equal(10, enforcer.StatusOf(key).RemainingRequests);
        var refused = enforcer.TryAdmit(key, long.MaxValue, long.MaxValue);
        Assert.False(refused.Admitted);
        Assert.Contains("send a shorter prompt", refused.Reason);
        Assert.Equal(10, enforcer.StatusOf(key).RemainingRequests);
    }

    [Fact]
    public void Changed_limits_apply_to_the_next_request_and_keep_the_window()
    {
        var quotas = new QuotaEnforcer(new TestClock(Start));
        var key = Key(rpm: 2, tpm: 0);
        Assert.True(quotas.TryAdmit(key, 1, 1).Admitted);
        Assert.True(quotas.TryAdmit(key, 1, 1).Admitted);
        Assert.False(quotas.TryAdmit(key, 1, 1).Admitted);
        var raised = key with { Limits = new RateLimits(5, 0) };
        Assert.True(quotas.TryAdmit(raised, 1, 1).Admitted);
        Assert.Equal(2, quotas.StatusOf(raised).RemainingRequests);
        var lowered = key with { Limits = new RateLimits(1, 0) };
        Assert.False(quotas.TryAdmit(lowered, 1, 1).Admitted);
    }

    [Fact]
    public void Keys_are_limited_independently()
    {
        var quotas = new QuotaEnforcer(new TestClock(Start));
        Assert.True(quotas.TryAdmit(Key(1, 0, "a"), 1, 1).Admitted);
        Assert.False(quotas.TryAdmit(Key(1, 0, "a"), 1, 1).Admitted);
        Assert.True(quotas.TryAdmit(Key(1, 0, "b"), 1, 1).Admitted);
    }

    [Fact]
    public async Task Concurrent_load_with_corrections_keeps_exact_accounts()
    {
        var quotas = new QuotaEnforcer(new TestClock(Start));
        var key = Key(rpm: 500, tpm: 3000);
        var admitted = 0;
        var used = 0;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 200; i++)
            {
                var decision = quotas.TryAdmit(key, 2, 5);
                if (!decision.Admitted) continue;
                Interlocked.Increment(ref admitted);
                // Half the requests use fewer tokens than estimated, which frees room.
                var actual = i % 2 == 0 ? 7 : 3;
                decision.Ticket!.Complete(actual);
                Interlocked.Add(ref used, actual);
            }
        })));
        var status = quotas.StatusOf(key);
        Assert.True(admitted <= 500);
        Assert.Equal(500 - admitted, status.RemainingRequests);
        Assert.True(used <= 3000, $"{used} tokens charged against a limit of 3000");
        Assert.Equal(3000 - used, status.RemainingTokens);
        Assert.True(admitted > 3000 / 7, $"refunds should let more than {3000 / 7} requests in, got {admitted}");
    }

    [Fact]
    public async Task Concurrent_load_never_overshoots_requests()
    {
        var quotas = new QuotaEnforcer(new TestClock(Start));
        var key = Key(rpm: 777, tpm: 0);
        var admitted = 0;
        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 100; i++)
                if (quotas.TryAdmit(key, 1, 1).Admitted) Interlocked.Increment(ref admitted);
        })));
        Assert.Equal(777, admitted);
    }

    [Fact]
    public void Status_renders_openai_rate_limit_headers()
    {
        var status = new RateLimitStatus(60, 1000, 59, 250, TimeSpan.FromSeconds(1.5), TimeSpan.FromMinutes(6), TimeSpan.FromMilliseconds(2100));
        var headers = status.ToHeaders().ToDictionary(h => h.Key, h => h.Value);
        Assert.Equal("59", headers["x-ratelimit-remaining-requests"]);
        Assert.Equal("250", headers["x-ratelimit-remaining-tokens"]);
        Assert.Equal("1.5s", headers["x-ratelimit-reset-requests"]);
        Assert.Equal("6m0s", headers["x-ratelimit-reset-tokens"]);
        Assert.Equal("3", headers["Retry-After"]);
        Assert.Equal("60", headers["x-ratelimit-limit-requests"]);
        Assert.Equal("250ms", RateLimitStatus.FormatDuration(TimeSpan.FromMilliseconds(250)));
        var unlimited = new RateLimitStatus(0, 0, long.MaxValue, long.MaxValue, TimeSpan.Zero, TimeSpan.Zero);
        Assert.Empty(unlimited.ToHeaders());
    }

    [Fact]
    public async Task The_limiter_honours_the_RateLimiter_contract()
    {
        var clock = new TestClock(Start);
        using System.Threading.RateLimiting.RateLimiter limiter = new SlidingWindowLimiter(2, TimeSpan.FromMinutes(1), clock);
        Assert.True((await limiter.AcquireAsync(2)).IsAcquired);
        var refused = limiter.AttemptAcquire(1);
        Assert.False(refused.IsAcquired);
        Assert.True(refused.TryGetMetadata(System.Threading.RateLimiting.MetadataName.RetryAfter, out var wait));
        Assert.Equal(TimeSpan.FromMinutes(1), wait);
        var stats = limiter.GetStatistics()!;
        Assert.Equal(0, stats.CurrentAvailablePermits);
        Assert.Equal(1, stats.TotalSuccessfulLeases);
        Assert.Equal(1, stats.TotalFailedLeases);
        Assert.Null(limiter.IdleDuration);
    }
}
