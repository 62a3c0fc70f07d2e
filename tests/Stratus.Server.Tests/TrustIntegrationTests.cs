// The trust layer in the real server: keys on every endpoint but /health, revocation taking
// effect on the next request, rate limits surfacing through the official SDK, and content
// safety on the real engine's output, streamed (a blocklisted word never reaches the client)
// and not, and on prompts; usage with the real counts, and answers left whole when it cannot
// be recorded.
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using OpenAI;
using OpenAI.Chat;
using Stratus.Platform;
using Stratus.Trust.Tests;

namespace Stratus.Server.Tests;

public sealed class TrustIntegrationTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    const string Prompt = "Hello there";

    HttpClient ClientWith(string key)
    {
        var client = fixture.AnonymousClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    static object ChatBody(int maxTokens, int n = 1, bool stream = false, double temperature = 0, long? seed = null, bool logprobs = false) => new
    {
        model = TinyModelServer.ModelName,
        messages = new[] { new { role = "user", content = Prompt } },
        max_tokens = maxTokens,
        temperature,
        seed,
        n,
        stream,
        stream_options = stream ? new { include_usage = true } : null,
        logprobs,
    };

    [Fact]
    public async Task Every_endpoint_but_health_refuses_without_a_valid_key()
    {
        using var anonymous = fixture.AnonymousClient();
        var (all, unprotected) = await EndpointAuthProbe.RunAsync(fixture.Server.Services, anonymous);
        Assert.True(unprotected.Count == 0, "answered without a valid key: " + string.Join(", ", unprotected.Select(p => $"{p.Method} {p.Path} ({p.Credential}) -> {(int)p.Status}")));
        var probed = all.Select(p => p.Path).ToHashSet();
        foreach (var path in new[] { "/metrics", "/ready", "/tokenize", "/detokenize", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/moderations", "/v1/usage" })
            Assert.Contains(path, probed);
        Assert.Equal("ok", await anonymous.GetStringAsync("/health"));
    }

    [Fact]
    public async Task A_metrics_key_scrapes_metrics_and_cannot_call_the_models()
    {
        var secret = (await fixture.Keys.CreateAsync("prometheus", ApiKeyScopes.Metrics, RateLimits.Unlimited, "tests")).Secret;
        using var scraper = ClientWith(secret);
        Assert.Contains("stratus_num_requests_running", await scraper.GetStringAsync("/metrics"));
        using var chat = await scraper.PostAsJsonAsync("/v1/chat/completions", ChatBody(maxTokens: 2));
        Assert.Equal(HttpStatusCode.Forbidden, chat.StatusCode);
        var error = JsonNode.Parse(await chat.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(("invalid_request_error", "insufficient_permissions"), ((string?)error["type"], (string?)error["code"]));
        Assert.Contains("'inference' scope", (string?)error["message"]);
    }

    [Fact]
    public async Task A_revoked_key_is_refused_on_its_next_request()
    {
        var secret = (await fixture.Keys.CreateAsync("revoke-me", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests")).Secret;
        using var client = ClientWith(secret);
        using (var allowed = await client.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        // Revoked as the CLI does it: another handle on the same data directory.
        await fixture.Keys.RevokeAsync("revoke-me", "tests");
        using var refused = await client.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal("invalid_api_key", (string)JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!);
    }

    /// <summary>A key rotated as the CLI rotates it (another handle on the data directory) while the
    /// server runs: the old and the new secret both serve from the next request, without a
    /// restart, until the overlap ends; then the old one is refused, told that it was replaced.</summary>
    [Fact]
    public async Task A_key_rotated_while_the_server_runs_serves_with_both_secrets_until_the_overlap_ends()
    {
        var created = await fixture.Keys.CreateAsync("rotate-me", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var rotated = await fixture.Keys.RotateAsync("rotate-me", TimeSpan.FromHours(1), "tests");
        foreach (var secret in new[] { created.Secret, rotated.Secret })
        {
            using var client = ClientWith(secret);
            using var allowed = await client.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }
        var again = await fixture.Keys.RotateAsync("rotate-me", TimeSpan.Zero, "tests");
        using (var old = ClientWith(rotated.Secret))
        {
            using var refused = await old.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("invalid_api_key", (string?)error["code"]);
            Assert.StartsWith("This API key's secret was replaced by a new one", (string?)error["message"]);
        }
        using var current = ClientWith(again.Secret);
        using (var allowed = await current.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    [Fact]
    public async Task The_sdk_surfaces_429_from_a_requests_per_minute_limit()
    {
        var secret = (await fixture.Keys.CreateAsync("one-rpm", ApiKeyScopes.Inference, new RateLimits(1, 0), "tests")).Secret;
        // The SDK retries 429s by default; the test wants to see the first one.
        var chat = new OpenAIClient(new ApiKeyCredential(secret), new OpenAIClientOptions { Endpoint = fixture.Server.BaseUrl, RetryPolicy = new ClientRetryPolicy(maxRetries: 0) })
            .GetChatClient(TinyModelServer.ModelName);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 2, Temperature = 0 };
        ChatCompletion first = await chat.CompleteChatAsync([new UserChatMessage(Prompt)], options);
        Assert.Equal(2, first.Usage.OutputTokenCount);
        var error = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage(Prompt)], options));
        Assert.Equal(429, error.Status);
        Assert.Contains("rate_limit_exceeded", error.Message);
        var headers = error.GetRawResponse()!.Headers;
        Assert.True(headers.TryGetValue("Retry-After", out _));
        Assert.True(headers.TryGetValue("x-ratelimit-limit-requests", out var limit));
        Assert.Equal("1", limit);
    }

    [Fact]
    public async Task Requests_the_key_check_refuses_are_counted_at_metrics_with_their_headers_kept()
    {
        var rejected = await RequestsEnded("rejected");
        var invalid = await RequestsEnded("invalid");
        var secret = (await fixture.Keys.CreateAsync("metered", ApiKeyScopes.Inference, new RateLimits(1, 0), "tests")).Secret;
        using var client = ClientWith(secret);
        using (var first = await client.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        using (var limited = await client.GetAsync("/v1/models"))
        {
            Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
            Assert.Equal("1", limited.Headers.GetValues("x-ratelimit-limit-requests").Single());
            Assert.NotNull(limited.Headers.RetryAfter);
            Assert.Equal("requests", (string)JsonNode.Parse(await limited.Content.ReadAsStringAsync())!["error"]!["type"]!);
        }
        using (var stranger = ClientWith("not-a-key"))
        using (var refused = await stranger.GetAsync("/v1/models"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
            Assert.Equal("invalid_api_key", (string)JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["code"]!);
        }
        // Before, the key check wrote its refusals itself and /metrics never saw them: a key
        // throttled all day read as no rejected requests at all.
        Assert.Equal(rejected + 1, await RequestsEnded("rejected"));
        Assert.Equal(invalid + 1, await RequestsEnded("invalid"));
    }

    [Fact]
    public async Task Prompt_tokens_and_max_tokens_over_the_tokens_per_minute_are_a_429_with_headers()
    {
        var secret = (await fixture.Keys.CreateAsync("small-tpm", ApiKeyScopes.Inference, new RateLimits(0, 100), "tests")).Secret;
        using var client = ClientWith(secret);
        // 12 prompt tokens ("Hello there\n") + 40 generated stay charged for the minute.
        using (var fits = await client.PostAsJsonAsync("/v1/chat/completions", ChatBody(40)))
            Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
        // 12 + 2 choices x 30 would fit an empty minute, not this one.
        using var refused = await client.PostAsJsonAsync("/v1/chat/completions", ChatBody(30, n: 2));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("100", refused.Headers.GetValues("x-ratelimit-limit-tokens").Single());
        Assert.NotNull(refused.Headers.RetryAfter);
        // A wait clears it: OpenAI's SDKs may retry, after Retry-After.
        Assert.False(refused.Headers.Contains("x-should-retry"));
        var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("rate_limit_exceeded", (string)error["code"]!);
        Assert.Equal("tokens", (string)error["type"]!);
    }

    [Fact]
    public async Task A_request_over_the_whole_tokens_per_minute_is_a_429_that_tells_SDKs_not_to_retry()
    {
        var secret = (await fixture.Keys.CreateAsync("tiny-tpm", ApiKeyScopes.Inference, new RateLimits(0, 50), "tests")).Secret;
        using var client = ClientWith(secret);
        // 12 prompt tokens + 2 x 30: no minute holds it. OpenAI's Node and Python SDKs retry a 429
        // twice unless told otherwise, each retry refused again (and charged to the key's requests).
        using var refused = await client.PostAsJsonAsync("/v1/chat/completions", ChatBody(30, n: 2));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("false", refused.Headers.GetValues("x-should-retry").Single());
        Assert.Null(refused.Headers.RetryAfter);
        var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(("rate_limit_exceeded", "tokens"), ((string?)error["code"], (string?)error["type"]));
        Assert.Contains("more than the key's limit of 50 tokens per minute", (string)error["message"]!);
    }

    [Fact]
    public async Task A_blocklisted_word_generated_mid_stream_never_reaches_the_client()
    {
        // Seeded sampling is deterministic (each choice has its own seed) and, unlike greedy
        // decoding of this random-weight model, which repeats one character, it writes words
        // between punctuation. See what the model says, then block a word from the middle.
        // The guard releases text up to whitespace, so the first seed whose text has a word well
        // after a space is used.
        object request = null!;
        string[] plain = [];
        var plainUsage = 0;
        string? word = null;
        long seed;
        for (seed = 1; seed <= 20 && word is null; seed++)
        {
            request = ChatBody(100, n: 2, stream: true, temperature: 1, seed: seed, logprobs: true);
            (plain, var plainFinish, _, plainUsage, _) = await StreamChatAsync(request);
            Assert.All(plainFinish, f => Assert.Equal("length", f));
            word = PickWord(plain[0]);
        }
        Assert.True(word is not null, "no seed gave a word to block");
        seed--;
        var at = WholeWord(word).Match(plain[0]).Index;

        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/stream-test", new { terms = new[] { word }, category = "hate" });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        // PII checks off: the guard then holds back only the term's length (+16), so text before
        // the word is released while the model still generates.
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium", violence = "medium" }, pii = "off", blocklists = new[] { "stream-test" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            var (received, finish, filterResults, usage, logprobTokens) = await StreamChatAsync(request);
            Assert.StartsWith(received[0], plain[0], StringComparison.Ordinal);
            Assert.True(received[0].Length <= at, $"sent '{received[0]}', past the start of '{word}' at {at}");
            Assert.True(received[0].Length > 0, $"nothing was released before '{word}' at {at} in {System.Text.Json.JsonSerializer.Serialize(plain[0])}");
            Assert.Equal("content_filter", finish[0]);
            Assert.True((bool)filterResults[0]!["custom_blocklists"]!["filtered"]!);
            // Logprobs come only with released text (char-level: a token per character), so
            // their tokens do not spell out the word either.
            Assert.Equal(received[0], logprobTokens[0]);
            // The blocked choice stopped generating.
            Assert.True(usage < plainUsage, $"completion tokens {usage}, unfiltered {plainUsage}");
            // The other choice has its own guard: cut only if it says the word too.
            var other = WholeWord(word).Match(plain[1]);
            if (other.Success)
            {
                Assert.StartsWith(received[1], plain[1], StringComparison.Ordinal);
                Assert.True(received[1].Length <= other.Index);
                Assert.Equal("content_filter", finish[1]);
            }
            else
            {
                Assert.Equal(plain[1], received[1]);
                Assert.Equal("length", finish[1]);
            }

            // Not streamed: the whole completion is checked before anything is sent.
            using var whole = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", ChatBody(100, temperature: 1, seed: seed));
            var choice = JsonNode.Parse(await whole.Content.ReadAsStringAsync())!["choices"]![0]!;
            Assert.Equal("content_filter", (string)choice["finish_reason"]!);
            Assert.Equal("", (string)choice["message"]!["content"]!);
            Assert.True((bool)choice["content_filter_results"]!["custom_blocklists"]!["filtered"]!);

            // A prompt with the word: Azure's 400 with the filter results.
            using var prompt = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = $"say {word} now", max_tokens = 4 });
            Assert.Equal(HttpStatusCode.BadRequest, prompt.StatusCode);
            var body = JsonNode.Parse(await prompt.Content.ReadAsStringAsync())!;
            Assert.Equal("content_filter", (string)body["error"]!["code"]!);
            Assert.True((bool)body["error"]!["innererror"]!["content_filter_result"]!["custom_blocklists"]!["filtered"]!);
            Assert.True((bool)body["prompt_filter_results"]![0]!["content_filter_results"]!["custom_blocklists"]!["filtered"]!);
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
            Assert.True(reset.IsSuccessStatusCode);
        }
    }

    [Fact]
    public async Task A_blocked_prompt_the_model_cannot_encode_or_fit_is_refused_and_audited_as_blocked()
    {
        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/unencodable-test", new { terms = new[] { "frobnicate" } });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}", new { blocklists = new[] { "unencodable-test" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            // 'é' is outside the tiny model's vocabulary: without the check first, each was told
            // "unencodable_characters", and the blocked text went unaudited.
            (string Path, object Body)[] blocked =
            [
                ("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "please frobnicate the café", max_tokens = 4 }),
                ("/v1/completions", new { model = TinyModelServer.ModelName, prompt = new[] { "a café", "then frobnicate" }, max_tokens = 4 }),
                ("/v1/chat/completions", new { model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = "frobnicate the café" } }, max_tokens = 4 }),
                // More tokens than the context holds: "context_length_exceeded", unaudited, before.
                ("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "please frobnicate", max_tokens = 100_000 }),
                ("/v1/chat/completions", new { model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = "frobnicate it" } }, max_tokens = 100_000 }),
            ];
            foreach (var (path, body) in blocked)
            {
                using var refused = await fixture.Http.PostAsJsonAsync(path, body);
                Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
                var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!;
                Assert.Equal("content_filter", (string?)error["code"]);
                var requestId = Assert.Single(refused.Headers.GetValues("x-request-id"));
                var audit = JsonNode.Parse(await fixture.Http.GetStringAsync("/v1/admin/audit?action=request.filtered&limit=10000"))!["data"]!.AsArray();
                Assert.Equal(requestId, (string)audit[^1]!["details"]!["request_id"]!);
            }
            // A clean one is still told what is wrong with it.
            using var clean = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "a café", max_tokens = 4 });
            Assert.Equal(HttpStatusCode.BadRequest, clean.StatusCode);
            Assert.Equal("unencodable_characters", (string?)JsonNode.Parse(await clean.Content.ReadAsStringAsync())!["error"]!["code"]);
            using var tooLong = await fixture.Http.PostAsJsonAsync("/v1/chat/completions",
                new { model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = "hello" } }, max_tokens = 100_000 });
            Assert.Equal("context_length_exceeded", (string?)JsonNode.Parse(await tooLong.Content.ReadAsStringAsync())!["error"]!["code"]);
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
            Assert.True(reset.IsSuccessStatusCode);
        }
    }

    [Fact]
    public async Task A_filtered_request_is_audited_with_the_request_id_its_client_was_given()
    {
        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/audit-test", new { terms = new[] { "frobnicate" } });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}", new { blocklists = new[] { "audit-test" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            using var refused = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "please frobnicate it", max_tokens = 4 });
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            var requestId = Assert.Single(refused.Headers.GetValues("x-request-id"));

            var audit = JsonNode.Parse(await fixture.Http.GetStringAsync("/v1/admin/audit?action=request.filtered&limit=10000"))!["data"]!.AsArray();
            var details = audit[^1]!["details"]!;
            Assert.Equal(requestId, (string)details["request_id"]!);
            Assert.Equal("prompt", (string)details["direction"]!);
            // The list and its term that matched, which are the operator's; not the prompt.
            Assert.Equal("audit-test", (string)details["filtered"]![0]!["blocklist"]!);
            Assert.Equal("frobnicate", (string)details["filtered"]![0]!["terms"]![0]!);
            Assert.DoesNotContain("please", details.ToJsonString());
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
            Assert.True(reset.IsSuccessStatusCode);
        }
    }

    [Fact]
    public async Task With_pii_redaction_the_model_gets_the_redacted_prompt()
    {
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium" }, pii = "redact", blocklists = Array.Empty<string>() });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            // Char-level: the prompt's token count is its length as the model got it.
            using var completion = await fixture.Http.PostAsJsonAsync("/v1/completions",
                new { model = TinyModelServer.ModelName, prompt = "mail me at john.doe@example.com please", max_tokens = 1 });
            var body = JsonNode.Parse(await completion.Content.ReadAsStringAsync())!;
            Assert.Equal("mail me at [EMAIL] please".Length, (int)body["usage"]!["prompt_tokens"]!);
            Assert.True((bool)body["prompt_filter_results"]![0]!["content_filter_results"]!["pii"]!["redacted"]!);
            // An echo is the prompt the model got, its tokens with their own log-probabilities.
            using var echoed = await fixture.Http.PostAsJsonAsync("/v1/completions",
                new { model = TinyModelServer.ModelName, prompt = "mail me at john.doe@example.com please", max_tokens = 0, echo = true, logprobs = 0 });
            var echo = JsonNode.Parse(await echoed.Content.ReadAsStringAsync())!["choices"]![0]!;
            Assert.Equal("mail me at [EMAIL] please", (string)echo["text"]!);
            Assert.Equal("mail me at [EMAIL] please", string.Concat(echo["logprobs"]!["tokens"]!.AsArray().Select(t => (string)t!)));

            // A chat's messages are redacted one by one and the chat rendered again.
            var chat = new { model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = "john.doe@example.com" } }, max_tokens = 1 };
            using var redacted = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", chat);
            var redactedTokens = (int)JsonNode.Parse(await redacted.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens"]!;
            using var plain = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", chat with { messages = [new { role = "user", content = "[EMAIL]" }] });
            Assert.Equal((int)JsonNode.Parse(await plain.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens"]!, redactedTokens);
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
            Assert.True(reset.IsSuccessStatusCode);
        }
    }

    /// <summary>Logit biases that make the model write spaces with <paramref name="alternative"/>
    /// as the runner-up at every position: the text stays clean while the alternative is
    /// among the top log-probabilities.</summary>
    Dictionary<string, int> SpacesWithRunnerUp(char alternative)
    {
        var tokenizer = fixture.Model.Tokenizer;
        return new() { [tokenizer.Encode(" ")[0].ToString()] = 100, [tokenizer.Encode(alternative.ToString())[0].ToString()] = 50 };
    }

    async Task WithBlocklistPolicyAsync(string term, Func<Task> body)
    {
        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/alternatives-test", new { terms = new[] { term }, category = "hate" });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium" }, pii = "off", blocklists = new[] { "alternatives-test" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            await body();
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
            Assert.True(reset.IsSuccessStatusCode);
        }
    }

    [Fact]
    public async Task A_blocklisted_alternative_is_left_out_of_top_logprobs_and_the_choice_says_so()
    {
        // Char-level: the one-character term "q" is a whole word after a space, and 'q' is the
        // runner-up after every space the model writes.
        var completion = new { model = TinyModelServer.ModelName, prompt = "Hello", max_tokens = 4, logprobs = 2, logit_bias = SpacesWithRunnerUp('q') };
        // Under the default policy (PII annotated) it is listed, and the choice says nothing was left out.
        var unfiltered = JsonNode.Parse(await (await fixture.Http.PostAsJsonAsync("/v1/completions", completion)).Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.All(unfiltered["logprobs"]!["top_logprobs"]!.AsArray(), alternatives => Assert.Equal([" ", "q"], alternatives!.AsObject().Select(a => a.Key)));
        Assert.False((bool)unfiltered["content_filter_results"]!["top_logprobs"]!["filtered"]!);
        await WithBlocklistPolicyAsync("q", async () =>
        {
            using var response = await fixture.Http.PostAsJsonAsync("/v1/completions", completion);
            var choice = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!;
            Assert.Equal("    ", (string)choice["text"]!);
            var top = choice["logprobs"]!["top_logprobs"]!.AsArray();
            Assert.Equal(4, top.Count);
            Assert.All(top, alternatives => Assert.Equal([" "], alternatives!.AsObject().Select(a => a.Key)));
            var reported = choice["content_filter_results"]!["top_logprobs"]!;
            Assert.True((bool)reported["filtered"]!);
            Assert.Equal(4, (int)reported["removed"]!);
            // The text itself was not filtered.
            Assert.False((bool)choice["content_filter_results"]!["custom_blocklists"]!["filtered"]!);
            Assert.Equal("length", (string)choice["finish_reason"]!);

            // Streamed chat: no chunk lists it either, and the last one says alternatives were left out.
            var chat = new
            {
                model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = Prompt } }, max_tokens = 4, stream = true,
                logprobs = true, top_logprobs = 2, logit_bias = SpacesWithRunnerUp('q'),
            };
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(chat) };
            using var streamed = await fixture.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var chunks = (await streamed.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
                .Select(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray()).SelectMany(c => c).ToList();
            var alternatives = chunks.SelectMany(c => c!["logprobs"]?["content"]?.AsArray() ?? []).SelectMany(t => t!["top_logprobs"]!.AsArray()).Select(a => (string)a!["token"]!).ToList();
            Assert.Equal(4, alternatives.Count);
            Assert.All(alternatives, a => Assert.Equal(" ", a));
            Assert.True((bool)chunks.Single(c => c!["finish_reason"] is not null)!["content_filter_results"]!["top_logprobs"]!["filtered"]!);
        });
    }

    [Fact]
    public async Task Alternatives_are_judged_in_the_text_they_would_continue()
    {
        // After a letter 'q' is no word of its own: "aq" does not contain the term, and the
        // runner-up stays listed (the filter would pass that text too).
        await WithBlocklistPolicyAsync("q", async () =>
        {
            var tokenizer = fixture.Model.Tokenizer;
            var bias = new Dictionary<string, int> { [tokenizer.Encode("a")[0].ToString()] = 100, [tokenizer.Encode("q")[0].ToString()] = 50 };
            using var response = await fixture.Http.PostAsJsonAsync("/v1/completions",
                new { model = TinyModelServer.ModelName, prompt = "Hello", max_tokens = 3, logprobs = 2, logit_bias = bias });
            var choice = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!;
            Assert.Equal("aaa", (string)choice["text"]!);
            var top = choice["logprobs"]!["top_logprobs"]!.AsArray();
            // The first 'q' would start the text, a word of its own; the later ones follow an 'a'.
            Assert.Equal(["a"], top[0]!.AsObject().Select(a => a.Key));
            Assert.Equal(["a", "q"], top[1]!.AsObject().Select(a => a.Key));
            Assert.Equal(["a", "q"], top[2]!.AsObject().Select(a => a.Key));
            Assert.Equal(1, (int)choice["content_filter_results"]!["top_logprobs"]!["removed"]!);
        });
    }

    [Fact]
    public async Task An_echoed_prompt_s_alternatives_are_judged_as_model_output()
    {
        // The model's guesses at each prompt position are its output, in the prompt's context.
        // See which it makes after a space, then block one of them that the prompt does not use.
        const string prompt = "a b c d e f g h i j";
        var request = new { model = TinyModelServer.ModelName, prompt, max_tokens = 0, echo = true, logprobs = 20 };
        var plain = JsonNode.Parse(await (await fixture.Http.PostAsJsonAsync("/v1/completions", request)).Content.ReadAsStringAsync())!["choices"]![0]!;
        var plainTop = plain["logprobs"]!["top_logprobs"]!.AsArray();
        // top_logprobs[i] are the guesses for prompt character i, after prompt[..i].
        var position = Enumerable.Range(1, prompt.Length - 1).First(i => prompt[i - 1] == ' ' &&
            plainTop[i]!.AsObject().Any(a => a.Key.Length == 1 && char.IsAsciiLetterLower(a.Key[0]) && !prompt.Contains(a.Key[0])));
        var term = plainTop[position]!.AsObject().First(a => a.Key.Length == 1 && char.IsAsciiLetterLower(a.Key[0]) && !prompt.Contains(a.Key[0])).Key;
        await WithBlocklistPolicyAsync(term, async () =>
        {
            var choice = JsonNode.Parse(await (await fixture.Http.PostAsJsonAsync("/v1/completions", request)).Content.ReadAsStringAsync())!["choices"]![0]!;
            Assert.Equal(prompt, (string)choice["text"]!);
            var top = choice["logprobs"]!["top_logprobs"]!.AsArray();
            Assert.DoesNotContain(term, top[position]!.AsObject().Select(a => a.Key));
            // Where it follows a space it would be a word of its own; after a letter it is not.
            for (var i = 1; i < prompt.Length; i++)
                if (prompt[i - 1] == ' ') Assert.DoesNotContain(term, top[i]!.AsObject().Select(a => a.Key));
                else Assert.Equal(plainTop[i]!.AsObject().Select(a => a.Key), top[i]!.AsObject().Select(a => a.Key));
            Assert.True((bool)choice["content_filter_results"]!["top_logprobs"]!["filtered"]!);

            // Streamed, the echo goes out with the choice's first piece, screened alike.
            using var streamed = await fixture.Http.PostAsJsonAsync("/v1/completions", new { request.model, prompt, max_tokens = 0, echo = true, logprobs = 20, stream = true });
            var echo = (await streamed.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
                .Select(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray()).SelectMany(c => c).First(c => c!["logprobs"] is JsonObject)!;
            Assert.DoesNotContain(term, echo["logprobs"]!["top_logprobs"]![position]!.AsObject().Select(a => a.Key));
        });
    }

    [Fact]
    public async Task Usage_is_recorded_with_the_real_token_counts()
    {
        var secret = (await fixture.Keys.CreateAsync("usage-check", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests")).Secret;
        using var client = ClientWith(secret);
        using var response = await client.PostAsJsonAsync("/v1/chat/completions", ChatBody(7, n: 2));
        var usage = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["usage"]!;
        using var report = await fixture.Http.GetAsync("/v1/usage?key=usage-check");
        var text = await report.Content.ReadAsStringAsync();
        Assert.True(report.IsSuccessStatusCode, text);
        Assert.Contains($"\"completion_tokens\":{(int)usage["completion_tokens"]!}", text);
        Assert.Contains($"\"prompt_tokens\":{(int)usage["prompt_tokens"]!}", text);
    }

    [Fact]
    public async Task A_usage_store_that_fails_leaves_answers_whole()
    {
        // Writes to the usage table fail, as they do once a locked or full database has made
        // them wait their limit; the answers were written by then.
        Sql("""
            CREATE TRIGGER usage_insert_fails BEFORE INSERT ON usage_daily BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
            CREATE TRIGGER usage_update_fails BEFORE UPDATE ON usage_daily BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
            """);
        try
        {
            using var whole = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", ChatBody(3));
            var body = await whole.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.OK, whole.StatusCode);
            Assert.Equal(3, (int)JsonNode.Parse(body)!["usage"]!["completion_tokens"]!);
            using var streamed = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", ChatBody(3, stream: true));
            var events = await streamed.Content.ReadAsStringAsync();
            Assert.DoesNotContain("\"error\"", events);
            Assert.Single(Regex.Matches(events, @"^data: \[DONE\]$", RegexOptions.Multiline));
        }
        finally
        {
            Sql("DROP TRIGGER usage_insert_fails; DROP TRIGGER usage_update_fails;");
        }
    }

    [Fact]
    public async Task A_locked_database_is_a_503_within_the_lock_timeout_that_names_no_file()
    {
        var before = await RequestsEnded("error");
        var rejectedBefore = await RequestsEnded("rejected");
        // Another process in a write transaction, as an sqlite3 shell left in BEGIN would be.
        using var holder = new SqliteConnection($"Data Source={Path.Combine(fixture.DataDir, PlatformDatabase.FileName)};Pooling=False");
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE;";
            begin.ExecuteNonQuery();
        }
        var watch = System.Diagnostics.Stopwatch.StartNew();
        using var response = await fixture.Http.PostAsJsonAsync("/v1/admin/keys", new { name = "locked-out", scopes = "inference" });
        watch.Stop();
        var body = await response.Content.ReadAsStringAsync();
        holder.Close();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        // Before, the driver retried SQLite's 10 s wait until its own 30 s command timeout.
        // Loose above, so a loaded machine cannot fail it; the old 30 s still would.
        Assert.InRange(watch.Elapsed, PlatformDatabase.DefaultLockTimeout * 0.9, TimeSpan.FromSeconds(20));
        Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After: " + response.Headers.RetryAfter);
        var error = JsonNode.Parse(body)!["error"]!;
        Assert.Equal(("storage_unavailable", "server_error"), ((string?)error["code"], (string?)error["type"]));
        Assert.DoesNotContain(fixture.DataDir, body);
        Assert.DoesNotContain(PlatformDatabase.FileName, body);
        // The admin API's answer: no request of the serving API, which /metrics counts alone.
        Assert.Equal(before, await RequestsEnded("error"));
        Assert.Equal(rejectedBefore, await RequestsEnded("rejected"));
    }

    /// <summary>The /metrics count of requests naming no model that ended with this outcome.</summary>
    async Task<double> RequestsEnded(string outcome)
    {
        await Task.Delay(400); // past the exporter's 300 ms scrape cache
        var line = (await fixture.Http.GetStringAsync("/metrics")).Split('\n')
            .FirstOrDefault(l => l.StartsWith("stratus_requests_total{", StringComparison.Ordinal) && l.Contains("model=\"\"") && l.Contains($"outcome=\"{outcome}\""));
        return line is null ? 0 : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Runs SQL on the server's database, as its operator (or a fault) would.</summary>
    void Sql(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(fixture.DataDir, PlatformDatabase.FileName)};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>A word of the output (a run of letters and digits), not in the prompt, with
    /// whitespace both more than the guard's hold-back (the word's length + 16) before it and
    /// soon after it: the guard checks when it can release up to whitespace, so text before the
    /// word is sent, and the word is caught while the model still generates. Null when the text
    /// has none.</summary>
    static string? PickWord(string text)
    {
        foreach (Match m in Regex.Matches(text, @"[\p{L}\p{N}_]+"))
        {
            if (m.Length is < 3 or > 12 || WholeWord(m.Value).IsMatch(Prompt)) continue;
            var at = WholeWord(m.Value).Match(text).Index;
            var end = at + m.Length;
            var before = text.LastIndexOfAny([' ', '\n'], Math.Max(0, at - 1));
            var after = text.IndexOfAny([' ', '\n'], end);
            if (before >= 0 && before + m.Length + 17 < at && after >= 0 && after + m.Length + 20 < text.Length) return m.Value;
        }
        return null;
    }

    /// <summary>The blocklist's own matching: whole word, case-insensitive.</summary>
    static Regex WholeWord(string word) => new($@"(?<![\p{{L}}\p{{N}}_]){Regex.Escape(word)}(?![\p{{L}}\p{{N}}_])", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    /// <summary>Streams a chat and returns per choice the text received, the finish reason and
    /// the content_filter_results of the last chunk, and the completion tokens of all.</summary>
    async Task<(string[] Text, string?[] Finish, JsonNode?[] FilterResults, int CompletionTokens, string[] LogprobTokens)> StreamChatAsync(object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        using var response = await fixture.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var events = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, events);
        var texts = new Dictionary<int, StringBuilder>();
        var finish = new Dictionary<int, string?>();
        var results = new Dictionary<int, JsonNode?>();
        var logprobTokens = new Dictionary<int, StringBuilder>();
        var completionTokens = -1;
        foreach (var line in events.Split('\n'))
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            var chunk = JsonNode.Parse(line["data: ".Length..])!;
            if (chunk["usage"] is { } usage) completionTokens = (int)usage["completion_tokens"]!;
            foreach (var choice in chunk["choices"]!.AsArray())
            {
                var index = (int)choice!["index"]!;
                if (!texts.TryGetValue(index, out var builder)) texts[index] = builder = new StringBuilder();
                builder.Append((string?)choice["delta"]!["content"] ?? "");
                if (!logprobTokens.TryGetValue(index, out var tokens)) logprobTokens[index] = tokens = new StringBuilder();
                foreach (var token in choice["logprobs"]?["content"]?.AsArray() ?? []) tokens.Append((string)token!["token"]!);
                if ((string?)choice["finish_reason"] is { } reason)
                {
                    finish[index] = reason;
                    results[index] = choice["content_filter_results"]?.DeepClone();
                }
            }
        }
        var n = texts.Count;
        return ([.. Enumerable.Range(0, n).Select(i => texts[i].ToString())], [.. Enumerable.Range(0, n).Select(i => finish.GetValueOrDefault(i))],
            [.. Enumerable.Range(0, n).Select(i => results.GetValueOrDefault(i))], completionTokens,
            [.. Enumerable.Range(0, n).Select(i => logprobTokens[i].ToString())]);
    }
}
