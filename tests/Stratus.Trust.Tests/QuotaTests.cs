// Per-key limits under concurrent load: requests per minute and tokens per minute admit exactly
// what fits, refusals carry OpenAI's 429 body and headers, successful responses carry the
// x-ratelimit-* headers too, new limits apply without a restart, a wall clock set back or forward
// changes no Retry-After, and the official OpenAI .NET SDK surfaces the 429.
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using Microsoft.Extensions.Time.Testing;
using OpenAI;
using OpenAI.Chat;
using Stratus.Platform;
using Stratus.Platform.Tests;

namespace Stratus.Trust.Tests;

public sealed class QuotaTests
{
    [Fact]
    public async Task Requests_per_minute_hold_under_concurrent_load_with_headers()
    {
        await using var host = await TrustHost.StartAsync();
        var key = await host.CreateKeyAsync("rpm5", ApiKeyScopes.Inference, new RateLimits(5, 0));
        await AssertAdmitsExactlyAsync(host, key, HttpMethod.Get, "/v1/models", null, sent: 24, admitted: 5, "requests", limit: 5, maxRemaining: 4);
    }

    [Fact]
    public async Task Tokens_per_minute_hold_under_concurrent_load_with_headers()
    {
        // The server's clock stands still on one day, so that a test run across midnight (UTC) records
        // the requests on that day too, not some on the next.
        var clock = new FakeTimeProvider(new DateTimeOffset(2026, 3, 5, 23, 59, 59, TimeSpan.Zero));
        await using var host = await TrustHost.StartAsync(time: clock);
        var key = await host.CreateKeyAsync("tpm100", ApiKeyScopes.Inference, new RateLimits(0, 100));
        // 5 prompt tokens + max_tokens 20 = 25 charged at admission; the fake model uses all 20,
        // so corrections free nothing and exactly 4 requests fit in 100 tokens.
        var body = TrustHost.Chat("one two three four five", maxTokens: 20);
        await AssertAdmitsExactlyAsync(host, key, HttpMethod.Post, "/v1/chat/completions", body, sent: 12, admitted: 4, "tokens", limit: 100, maxRemaining: 75);
        // The 4 admitted requests are recorded as usage on the server's day with their real token counts.
        var day = new DateOnly(2026, 3, 5);
        var usage = await host.Stores.Usage.QueryAsync(new UsageQuery((await host.Stores.KeyService().ListAsync()).Single(k => k.Name == "tpm100").Id, day, day));
        var row = Assert.Single(usage);
        Assert.Equal((4, 20, 80), (row.Requests, row.PromptTokens, row.CompletionTokens));
    }

    /// <summary>The windows are timed on the monotonic clock: a wall clock set back an hour (by
    /// hand, NTP) is no Retry-After of an hour, and one set forward forgives no request.</summary>
    [Fact]
    public async Task A_wall_clock_set_back_or_forward_changes_no_retry_after()
    {
        var clock = new TestClock(new DateTimeOffset(2026, 3, 5, 12, 0, 0, TimeSpan.Zero));
        await using var host = await TrustHost.StartAsync(time: clock);
        var key = await host.CreateKeyAsync("rpm1", ApiKeyScopes.Inference, new RateLimits(1, 0));
        using (var first = await host.SendAsync(HttpMethod.Get, "/v1/models", key))
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        clock.Advance(TimeSpan.FromSeconds(20));
        foreach (var step in new[] { TimeSpan.FromHours(-1), TimeSpan.FromHours(2) })
        {
            clock.StepWallClock(step);
            using var refused = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal(("40", "40s"), (TestJson.Header(refused, "Retry-After"), TestJson.Header(refused, "x-ratelimit-reset-requests")));
        }
        clock.Advance(TimeSpan.FromSeconds(40));
        using var after = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Token_charges_are_corrected_to_what_was_used()
    {
        await using var host = await TrustHost.StartAsync();
        host.Fake.Pieces = ["short ", "answer "];
        var key = await host.CreateKeyAsync("tpm60", ApiKeyScopes.Inference, new RateLimits(0, 60));
        // Each request reserves 2 + 40 tokens but uses 2 + 2: one at a time, all five fit (the
        // fifth needs 4 x 4 used + 42 reserved = 58). Without corrections the second would not.
        for (var i = 0; i < 5; i++)
        {
            using var response = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", key, TrustHost.Chat("hi there", maxTokens: 40));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        // A request that can never fit is refused without Retry-After, saying why.
        using var tooBig = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", key, TrustHost.Chat("hi", maxTokens: 500));
        Assert.Equal(HttpStatusCode.TooManyRequests, tooBig.StatusCode);
        Assert.Empty(TestJson.Header(tooBig, "Retry-After"));
        Assert.Contains("(lower max_tokens or n)", (await TestJson.ErrorAsync(tooBig)).GetProperty("message").GetString());
    }

    [Fact]
    public async Task New_limits_apply_to_the_next_request_without_a_restart()
    {
        await using var host = await TrustHost.StartAsync();
        var key = await host.CreateKeyAsync("adjustable", ApiKeyScopes.Inference, RateLimits.Unlimited);
        for (var i = 0; i < 3; i++)
        {
            using var r = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Empty(TestJson.Header(r, "x-ratelimit-limit-requests"));
        }
        using (var set = await host.SendAsync(HttpMethod.Put, "/v1/admin/keys/adjustable/limits", host.AdminKey, new { rpm = 4 }))
            Assert.Equal(HttpStatusCode.OK, set.StatusCode);
        // Three requests already in this minute: one more fits under 4.
        using (var fourth = await host.SendAsync(HttpMethod.Get, "/v1/models", key))
        {
            Assert.Equal(HttpStatusCode.OK, fourth.StatusCode);
            Assert.Equal("4", TestJson.Header(fourth, "x-ratelimit-limit-requests"));
        }
        using var fifth = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
        Assert.Equal(HttpStatusCode.TooManyRequests, fifth.StatusCode);
    }

    [Fact]
    public async Task The_OpenAI_SDK_surfaces_the_429()
    {
        await using var host = await TrustHost.StartAsync();
        var key = await host.CreateKeyAsync("sdk", ApiKeyScopes.Inference, new RateLimits(2, 0));
        var client = new ChatClient(TrustHost.Model, new ApiKeyCredential(key), new OpenAIClientOptions
        {
            Endpoint = new Uri(host.BaseAddress, "/v1"),
            // The SDK retries 429s by default, honouring Retry-After; this test wants the first one.
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
        });
        ChatCompletion completion = await client.CompleteChatAsync([new UserChatMessage("hello")]);
        Assert.StartsWith("word0", completion.Content[0].Text);
        await client.CompleteChatAsync([new UserChatMessage("hello again")]);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("once more")]));
        Assert.Equal(429, e.Status);
        Assert.Contains("Rate limit reached", e.Message);
        Assert.True(e.GetRawResponse()!.Headers.TryGetValue("Retry-After", out var retryAfter) && int.Parse(retryAfter!) >= 1);

        // A wrong key is a 401 the SDK reports as such.
        var wrong = new ChatClient(TrustHost.Model, new ApiKeyCredential("sk-wrong"), new OpenAIClientOptions { Endpoint = new Uri(host.BaseAddress, "/v1"), RetryPolicy = new ClientRetryPolicy(0) });
        var unauthorized = await Assert.ThrowsAsync<ClientResultException>(() => wrong.CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, unauthorized.Status);
    }

    /// <summary>Sends <paramref name="sent"/> requests at once and checks that exactly
    /// <paramref name="admitted"/> pass, each with the x-ratelimit-*-<paramref name="unit"/>
    /// headers, and that the rest get OpenAI's 429 (Retry-After, remaining 0, error type unit).</summary>
    static async Task AssertAdmitsExactlyAsync(TrustHost host, string key, HttpMethod method, string path, object? body,
        int sent, int admitted, string unit, int limit, int maxRemaining)
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, sent).Select(_ => host.SendAsync(method, path, key, body)));
        try
        {
            Assert.Equal(admitted, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
            Assert.Equal(sent - admitted, responses.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));
            foreach (var ok in responses.Where(r => r.StatusCode == HttpStatusCode.OK))
            {
                Assert.Equal(limit.ToString(), TestJson.Header(ok, $"x-ratelimit-limit-{unit}"));
                Assert.InRange(int.Parse(TestJson.Header(ok, $"x-ratelimit-remaining-{unit}")), 0, maxRemaining);
                Assert.NotEmpty(TestJson.Header(ok, $"x-ratelimit-reset-{unit}"));
            }
            foreach (var refused in responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests))
            {
                Assert.InRange(int.Parse(TestJson.Header(refused, "Retry-After")), 1, 60);
                Assert.Equal("0", TestJson.Header(refused, $"x-ratelimit-remaining-{unit}"));
                Assert.EndsWith("s", TestJson.Header(refused, $"x-ratelimit-reset-{unit}"));
                var error = await TestJson.ErrorAsync(refused);
                Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
                Assert.Equal(unit, error.GetProperty("type").GetString());
            }
        }
        finally
        {
            foreach (var r in responses) r.Dispose();
        }
    }
}
