// The wire format where the .NET SDK has no say: n > 1, the exact event stream, /completions,
// /tokenize, health, readiness, metrics, and greedy text that does not change under batching.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class HttpApiTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    HttpClient Http => fixture.Http;

    async Task<JsonNode> PostJson(string path, object body, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!;
    }

    static object ChatBody(int maxTokens, double temperature = 0, int n = 1, bool stream = false, long? seed = null, string content = "To be, or not") => new Dictionary<string, object?>
    {
        ["model"] = TinyModelServer.ModelName,
        ["messages"] = new[] { new { role = "system", content = "Be brief." }, new { role = "user", content } },
        ["max_tokens"] = maxTokens,
        ["temperature"] = temperature,
        ["n"] = n,
        ["stream"] = stream,
        ["seed"] = seed,
        ["stream_options"] = stream ? new { include_usage = true } : null,
        ["some_future_field"] = new { ignored = true },
    };

    [Fact]
    public async Task N_choices_differ_and_usage_counts_them_all()
    {
        var result = await PostJson("/v1/chat/completions", ChatBody(10, temperature: 1, n: 3, seed: 5));
        var choices = result["choices"]!.AsArray();
        Assert.Equal([0, 1, 2], choices.Select(c => (int)c!["index"]!).ToArray());
        Assert.Equal(3, choices.Select(c => (string)c!["message"]!["content"]!).Distinct().Count());
        Assert.Equal(30, (int)result["usage"]!["completion_tokens"]!);
        Assert.Equal((int)result["usage"]!["prompt_tokens"]! + 30, (int)result["usage"]!["total_tokens"]!);
    }

    [Fact]
    public async Task Stream_follows_openai_event_format()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(ChatBody(8, n: 2, stream: true)) };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n');
        var events = lines.Where(l => l.Length > 0).ToList();
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events.SkipLast(1).Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string)c["object"]!));
        // The prompt's annotations ride on the first chunk, choice 0's role; only the usage chunk
        // has no choice (OpenAI's own shape), so code reading `chunk.choices[0]` meets none before it.
        Assert.Equal(0, (int)chunks[0]["prompt_filter_results"]![0]!["prompt_index"]!);
        Assert.Equal(0, (int)chunks[0]["choices"]![0]!["index"]!);
        Assert.Equal(1, chunks.Count(c => c["prompt_filter_results"] is not null));
        Assert.All(chunks.SkipLast(1), c => Assert.NotEmpty(c["choices"]!.AsArray()));
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        Assert.Equal(16, (int)usage["usage"]!["completion_tokens"]!);
        foreach (var index in new[] { 0, 1 })
        {
            var mine = chunks.SkipLast(1).Select(c => c["choices"]![0]!).Where(c => (int)c["index"]! == index).ToList();
            Assert.Equal("assistant", (string)mine[0]["delta"]!["role"]!);
            Assert.Equal("length", (string)mine[^1]["finish_reason"]!);
            Assert.NotNull(mine[^1]["content_filter_results"]);
            Assert.All(mine.SkipLast(1), c => Assert.Null(c["finish_reason"]));
            Assert.Equal(8, string.Concat(mine.Select(c => (string?)c["delta"]!["content"] ?? "")).Length);
        }
    }

    [Fact]
    public async Task A_completions_stream_carries_the_prompt_annotations_on_its_first_choice()
    {
        var body = new { model = "tiny", prompt = new[] { "abc", "xyz" }, max_tokens = 3, temperature = 0, stream = true, stream_options = new { include_usage = true } };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(body) };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var chunks = (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {")).Select(l => JsonNode.Parse(l["data: ".Length..])!).ToList();
        var first = chunks[0];
        Assert.Equal([0, 1], first["prompt_filter_results"]!.AsArray().Select(r => (int)r!["prompt_index"]!).Order().ToArray());
        Assert.Single(first["choices"]!.AsArray());
        Assert.Equal(1, chunks.Count(c => c["prompt_filter_results"] is not null));
        Assert.All(chunks.SkipLast(1), c => Assert.NotEmpty(c["choices"]!.AsArray()));
        Assert.Equal(6, (int)chunks[^1]["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task Completions_echo_prompts_and_count_tokens()
    {
        var result = await PostJson("/v1/completions", new { model = "tiny", prompt = new[] { "abc", "xyz" }, max_tokens = 4, temperature = 0, echo = true, logprobs = 2 });
        var choices = result["choices"]!.AsArray();
        Assert.Equal(2, choices.Count);
        Assert.StartsWith("abc", (string)choices[0]!["text"]!);
        Assert.StartsWith("xyz", (string)choices[1]!["text"]!);
        Assert.Equal(7, ((string)choices[0]!["text"]!).Length);
        Assert.Equal(7, choices[0]!["logprobs"]!["tokens"]!.AsArray().Count);
        Assert.Equal(8, (int)result["usage"]!["completion_tokens"]!);
        Assert.Equal(6, (int)result["usage"]!["prompt_tokens"]!);
        Assert.Equal("text_completion", (string)result["object"]!);
    }

    [Fact]
    public async Task An_empty_prompt_echoes_as_nothing_and_the_token_it_starts_from_takes_no_characters()
    {
        // The model starts an empty prompt from a token of its own (end-of-text, or this char
        // model's newline), which the client did not write: like a BOS, it is listed among the
        // echo's tokens but is not in its text, so the offsets still slice the text.
        foreach (var prompt in new object[] { "", new[] { new int[0] } })
            foreach (var stream in new[] { false, true })
            {
                var body = new Dictionary<string, object?> { ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = 3, ["temperature"] = 0, ["echo"] = true, ["logprobs"] = 0, ["stream"] = stream };
                using var response = await Http.PostAsJsonAsync("/v1/completions", body);
                var json = await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, json);
                var (text, tokens, offsets) = CompletionChoices.First(json, stream);
                Assert.Equal(3, text.Length);
                Assert.Equal(["\n", .. text.Select(c => c.ToString())], tokens);
                Assert.Equal([0, 0, 1, 2], offsets);
            }
    }

    [Fact]
    public async Task Echo_with_logprobs_scores_the_prompt_as_generation_did()
    {
        var generated = await PostJson("/v1/completions", new { model = "tiny", prompt = "Good morrow", max_tokens = 5, temperature = 0, logprobs = 1 });
        var choice = generated["choices"]![0]!;
        var text = (string)choice["text"]!;
        var expected = choice["logprobs"]!["token_logprobs"]!.AsArray().Select(v => (double)v!).ToArray();

        var scored = await PostJson("/v1/completions", new { model = "tiny", prompt = "Good morrow" + text, max_tokens = 0, echo = true, logprobs = 1 });
        var logprobs = scored["choices"]![0]!["logprobs"]!;
        var values = logprobs["token_logprobs"]!.AsArray();
        Assert.Equal(("Good morrow" + text).Length, values.Count);
        Assert.Null(values[0]);
        Assert.Equal("Good morrow" + text, (string)scored["choices"]![0]!["text"]!);
        Assert.Equal("length", (string)scored["choices"]![0]!["finish_reason"]!);
        var tail = values.Skip(values.Count - 5).Select(v => (double)v!).ToArray();
        for (var i = 0; i < 5; i++) Assert.Equal(expected[i], tail[i], 3);
        // The likeliest token and the prompt's own: logprobs + 1 at most, as OpenAI's.
        var second = logprobs["top_logprobs"]![1]!.AsObject();
        Assert.InRange(second.Count, 1, 2);
        Assert.Equal((double)values[1]!, (double)second["o"]!);
    }

    [Fact]
    public async Task Legacy_top_logprobs_always_hold_the_chosen_token_as_OpenAI_documents()
    {
        // OpenAI's completions: "The API will always return the logprob of the sampled token, so
        // there may be up to logprobs+1 elements" (vLLM's too); an echoed prompt's token alike.
        // At temperature 2 on random weights the token drawn is rarely the likeliest one.
        foreach (var logprobs in new[] { 0, 1 })
        {
            var result = await PostJson("/v1/completions", new { model = "tiny", prompt = "Good morrow", max_tokens = 8, temperature = 2, seed = 3, echo = true, logprobs });
            var lp = result["choices"]![0]!["logprobs"]!;
            var tokens = lp["tokens"]!.AsArray().Select(t => (string)t!).ToList();
            var values = lp["token_logprobs"]!.AsArray();
            var top = lp["top_logprobs"]!.AsArray();
            Assert.Null(top[0]);
            for (var i = 1; i < tokens.Count; i++)
            {
                var alternatives = top[i]!.AsObject();
                Assert.InRange(alternatives.Count, 1, logprobs + 1);
                Assert.Equal((double)values[i]!, (double)alternatives[tokens[i]]!);
            }
        }
    }

    [Fact]
    public async Task A_repetition_penalty_near_zero_gives_log_probabilities_not_a_500()
    {
        // 1e-300 is in (0, 2] but 0 as a float32: a prompt token's positive logit divided by it
        // was +inf, its log-probability NaN, which JSON cannot write (a 500, or an error event
        // in the middle of a stream). In JSON mode too, where the mask leaves the tokens after it.
        foreach (var format in new object?[] { null, new { type = "json_object" } })
        {
            var body = new Dictionary<string, object?>
            {
                ["model"] = TinyModelServer.ModelName, ["prompt"] = "Good morrow", ["max_tokens"] = 4, ["temperature"] = 1, ["seed"] = 1,
                ["repetition_penalty"] = 1e-300, ["logprobs"] = 3, ["response_format"] = format,
            };
            var logprobs = (await PostJson("/v1/completions", body))["choices"]![0]!["logprobs"]!;
            Assert.All(logprobs["token_logprobs"]!.AsArray(), value => Assert.InRange((double)value!, double.MinValue, 0));
            Assert.All(logprobs["top_logprobs"]!.AsArray(), top => Assert.All(top!.AsObject(), pair => Assert.InRange((double)pair.Value!, double.MinValue, 0)));
        }
        Assert.True(fixture.Model.Engine.IsHealthy);
    }

    [Fact]
    public async Task Streamed_logprobs_count_text_offsets_from_the_start_of_the_echoed_text_as_a_whole_answer_does()
    {
        var body = new Dictionary<string, object?> { ["model"] = "tiny", ["prompt"] = "Good morrow", ["max_tokens"] = 5, ["temperature"] = 0, ["logprobs"] = 0, ["echo"] = true };
        var whole = (await PostJson("/v1/completions", body))["choices"]![0]!["logprobs"]!["text_offset"]!.AsArray().Select(o => (int)o!);
        body["stream"] = true;
        using var response = await Http.PostAsJsonAsync("/v1/completions", body);
        var streamed = (await response.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .Select(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray())
            .Where(choices => choices.Count > 0 && choices[0]!["logprobs"] is JsonObject)
            .SelectMany(choices => choices[0]!["logprobs"]!["text_offset"]!.AsArray().Select(o => (int)o!));
        Assert.Equal(whole, streamed);
        Assert.Equal("Good morrow".Length + 5, streamed.Count());
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip()
    {
        var tokens = await PostJson("/tokenize", new { model = "tiny", prompt = "Hi!" });
        Assert.Equal(3, (int)tokens["count"]!);
        Assert.Equal(128, (int)tokens["max_model_len"]!);
        var text = await PostJson("/detokenize", new { model = "tiny", tokens = tokens["tokens"]!.AsArray().Select(t => (int)t!).ToArray() });
        Assert.Equal("Hi!", (string)text["prompt"]!);
    }

    [Fact]
    public async Task Health_ready_and_metrics_answer()
    {
        Assert.Equal("ok", await Http.GetStringAsync("/health"));
        Assert.Equal("ready", await Http.GetStringAsync("/ready"));
        await PostJson("/v1/chat/completions", ChatBody(3));
        var metrics = await Http.GetStringAsync("/metrics");
        foreach (var name in new[] { "stratus_requests_total", "stratus_time_to_first_token_seconds_bucket", "stratus_time_per_output_token_seconds_bucket",
                     "stratus_e2e_request_latency_seconds_bucket", "stratus_num_requests_running", "stratus_num_requests_waiting",
                     "stratus_kv_cache_usage_ratio", "stratus_prompt_tokens_total", "stratus_generation_tokens_total" })
            Assert.Contains(name, metrics);
        Assert.Contains("model=\"tiny\"", metrics);
        Assert.Contains("service_name=\"stratus\"", metrics.Split('\n').Single(l => l.StartsWith("target_info", StringComparison.Ordinal)));

        // Time per output token is each choice's: n choices are n observations.
        async Task<long> Observations()
        {
            await Task.Delay(400); // past the exporter's 300 ms scrape cache
            var line = (await Http.GetStringAsync("/metrics")).Split('\n')
                .First(l => l.StartsWith("stratus_time_per_output_token_seconds_count") && l.Contains("model=\"tiny\""));
            return long.Parse(line[(line.LastIndexOf(' ') + 1)..]);
        }
        var before = await Observations();
        await PostJson("/v1/chat/completions", ChatBody(5, temperature: 1, n: 3, seed: 1));
        Assert.Equal(3, await Observations() - before);
    }

    [Fact]
    public async Task Greedy_text_is_the_same_under_concurrent_load()
    {
        string[] prompts = ["ROMEO:", "Once upon a time", "x", "The quick brown fox", "What light through yonder window breaks", "12345"];
        var alone = new List<string>();
        foreach (var prompt in prompts) alone.Add(Content(await PostJson("/v1/chat/completions", ChatBody(40, content: prompt))));
        var together = await Task.WhenAll(prompts.Concat(prompts).Select(p => PostJson("/v1/chat/completions", ChatBody(40, content: p))));
        for (var i = 0; i < together.Length; i++) Assert.Equal(alone[i % prompts.Length], Content(together[i]));
    }

    static string Content(JsonNode completion) => (string)completion["choices"]![0]!["message"]!["content"]!;

    [Fact]
    public async Task Unknown_routes_and_methods_answer_in_openai_error_shape()
    {
        using var missing = await Http.GetAsync("/v1/nothing-here");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.NotNull(JsonNode.Parse(await missing.Content.ReadAsStringAsync())!["error"]!["message"]);
        using var method = await Http.GetAsync("/v1/chat/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, method.StatusCode);
        Assert.NotNull(JsonNode.Parse(await method.Content.ReadAsStringAsync())!["error"]);
    }

    [Fact]
    public async Task The_serving_benchmark_sends_distinct_prompts_that_share_only_the_asked_prefix()
    {
        async Task<long> CacheHits()
        {
            await Task.Delay(400); // past the exporter's 300 ms scrape cache
            var line = (await Http.GetStringAsync("/metrics")).Split('\n')
                .FirstOrDefault(l => l.StartsWith("stratus_prefix_cache_hit_tokens_total") && l.Contains("model=\"tiny\""));
            return line is null ? 0 : long.Parse(line[(line.LastIndexOf(' ') + 1)..]);
        }
        var before = await CacheHits();
        using var benchmark = new Stratus.Server.Benchmarking.ServingBenchmark(new()
        {
            Url = fixture.Server.RootUrl, Model = TinyModelServer.ModelName, Concurrency = [1, 2], Requests = 3,
            PromptTokens = 30, SharedPrefixTokens = 17, MaxTokens = 3, ApiKey = fixture.ApiKey,
        });
        var levels = await benchmark.RunAsync();
        Assert.All(levels, level => Assert.Equal((0, 9L), (level.Errors, level.OutputTokens)));
        Assert.All(levels, level => Assert.Equal(16.0 / 30, level.PrefixCacheHitRate)); // from the responses' usage
        // The warm-up computes the shared 17 tokens; each of the 6 timed requests then takes their
        // two whole blocks of 8 from the cache, and nothing of its own part.
        Assert.Equal(6 * 16, await CacheHits() - before);
    }

    [Fact]
    public async Task Context_overflow_names_the_prompt_on_completions_and_the_messages_on_chat()
    {
        var completion = (await PostJson("/v1/completions", new { model = "tiny", prompt = "abc", max_tokens = 500 }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Contains("(3 in the prompt, 500 in the completion)", (string)completion["message"]!);
        Assert.Equal("context_length_exceeded", (string?)completion["code"]);
        var chat = (await PostJson("/v1/chat/completions", ChatBody(500), HttpStatusCode.BadRequest))["error"]!;
        Assert.Contains("in the messages, 500 in the completion", (string)chat["message"]!);
        Assert.Equal("max_tokens", (string?)chat["param"]);
        // The largest max_tokens a client can send: the sum it is told it asked for must not wrap around.
        var largest = (await PostJson("/v1/completions", new { model = "tiny", prompt = "abc", max_tokens = int.MaxValue }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Contains("you requested 2147483650 tokens (3 in the prompt, 2147483647 in the completion)", (string)largest["message"]!);
        // A prompt that fills the context alone is the prompt's fault, whatever max_tokens says.
        var full = (await PostJson("/v1/completions", new { model = "tiny", prompt = new string('a', 128), max_tokens = 1 }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal("prompt", (string?)full["param"]);
        Assert.Equal("prompt", (string?)(await PostJson("/v1/completions", new { model = "tiny", prompt = new string('a', 128) }, HttpStatusCode.BadRequest))["error"]!["param"]);
        // Unless nothing is to be generated: echo with max_tokens 0 scores a prompt that fills it.
        var scored = await PostJson("/v1/completions", new { model = "tiny", prompt = new string('a', 128), max_tokens = 0, echo = true, logprobs = 1 });
        Assert.Equal(new string('a', 128), (string)scored["choices"]![0]!["text"]!);
        Assert.Equal(128, scored["choices"]![0]!["logprobs"]!["token_logprobs"]!.AsArray().Count);
        Assert.Equal(0, (int)scored["usage"]!["completion_tokens"]!);
    }

    [Fact]
    public async Task Usage_counts_the_prompt_tokens_the_prefix_cache_supplied()
    {
        // A prompt no other test sends (the fixture's server is shared), 40 characters: five
        // whole KV blocks of 8, four of which a second prompt with the same start may take.
        var random = new Random();
        var start = new string(Enumerable.Range(0, 36).Select(_ => "abcdefghijklmnopqrstuvwxyz "[random.Next(27)]).ToArray());
        var first = await PostJson("/v1/completions", new { model = "tiny", prompt = start + "abcd", max_tokens = 2 });
        Assert.Equal(0, (int)first["usage"]!["prompt_tokens_details"]!["cached_tokens"]!);
        var second = await PostJson("/v1/completions", new { model = "tiny", prompt = start + "wxyz", max_tokens = 2 });
        Assert.Equal(40, (int)second["usage"]!["prompt_tokens"]!);
        Assert.Equal(32, (int)second["usage"]!["prompt_tokens_details"]!["cached_tokens"]!);
    }

    [Fact]
    public async Task Choices_of_one_prompt_count_its_cached_tokens_as_the_prompt_found_them_not_as_they_share_it()
    {
        // n choices read their prompt once (usage counts it once): choices after the first take
        // its blocks from the prefix cache, which saves the client nothing. The cached tokens
        // were the average over the choices: 21 of a prompt nothing had cached.
        var random = new Random();
        var prompt = new string(Enumerable.Range(0, 40).Select(_ => "abcdefghijklmnopqrstuvwxyz "[random.Next(27)]).ToArray());
        foreach (var (body, cached) in new[] { (new { model = "tiny", prompt, max_tokens = 2, n = 3 }, 0), (new { model = "tiny", prompt, max_tokens = 2, n = 3 }, 32) })
        {
            var usage = (await PostJson("/v1/completions", body))["usage"]!;
            Assert.Equal(40, (int)usage["prompt_tokens"]!);
            Assert.Equal(cached, (int)usage["prompt_tokens_details"]!["cached_tokens"]!);
        }
    }

    [Fact]
    public async Task A_message_of_a_role_OpenAI_lacks_is_a_400_naming_the_roles()
    {
        // The roles are Core's (ChatTemplate.Roles), which fine-tuning data is held to as well.
        var body = new { model = TinyModelServer.ModelName, messages = new[] { new { role = "wizard", content = "abc" } }, max_tokens = 2 };
        var error = (await PostJson("/v1/chat/completions", body, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal("Invalid value for 'messages[0].role': 'wizard'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.", (string?)error["message"]);
        Assert.Equal(("messages[0].role", "invalid_value"), ((string?)error["param"], (string?)error["code"]));
    }

    /// <summary>logit_bias keys are token ids as text: "05" names token 5 as "5" does, and
    /// two keys for one token are a 400 naming it rather than one bias silently dropped.</summary>
    [Fact]
    public async Task Two_logit_bias_keys_naming_one_token_are_a_400_naming_the_token()
    {
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions" })
        {
            Dictionary<string, object?> Body(string json)
            {
                var body = path.EndsWith("chat/completions", StringComparison.Ordinal) ? (Dictionary<string, object?>)ChatBody(2)
                    : new() { ["model"] = TinyModelServer.ModelName, ["prompt"] = "abc", ["max_tokens"] = 2 };
                body["logit_bias"] = JsonNode.Parse(json);
                return body;
            }
            var error = (await PostJson(path, Body("""{"5": 10, "05": -10}"""), HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal(("logit_bias", "invalid_value"), ((string?)error["param"], (string?)error["code"]));
            Assert.Equal("Invalid key in 'logit_bias': '05' names token 5, which another key names too; give each token one bias.", (string?)error["message"]);
            // Only digits make a token id, as OpenAI's examples write them: a sign or a space is refused.
            foreach (var key in new[] { " 5", "+5", "5 " })
                Assert.Equal("logit_bias", (string?)(await PostJson(path, Body($$"""{"{{key}}": 10}"""), HttpStatusCode.BadRequest))["error"]!["param"]);
            await PostJson(path, Body("""{"05": 10, "6": -10}"""));
        }
    }

    [Fact]
    public async Task Functions_unknown_formats_suffix_and_best_of_are_refused_not_ignored()
    {
        var tool = new[] { new { type = "function", function = new { name = "lookup", parameters = new { type = "object" } } } };
        async Task Refused(string path, Dictionary<string, object?> body, string param)
        {
            var error = (await PostJson(path, body, HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal(param, (string?)error["param"]);
            Assert.Equal("unsupported_parameter", (string?)error["code"]);
        }
        Dictionary<string, object?> Chat(string field, object value, string? extraField = null, object? extraValue = null)
        {
            var body = (Dictionary<string, object?>)ChatBody(2);
            body[field] = value;
            if (extraField is not null) body[extraField] = extraValue;
            return body;
        }
        await Refused("/v1/chat/completions", Chat("functions", new[] { new { name = "lookup" } }), "functions");
        await Refused("/v1/chat/completions", Chat("response_format", new { type = "yaml" }), "response_format");
        var notAnObject = (await PostJson("/v1/chat/completions", Chat("response_format", "json"), HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal(("response_format", "invalid_type"), ((string?)notAnObject["param"], (string?)notAnObject["code"]));
        var completion = new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["prompt"] = "abc", ["max_tokens"] = 2 };
        await Refused("/v1/completions", new(completion) { ["suffix"] = "xyz" }, "suffix");
        await Refused("/v1/completions", new(completion) { ["best_of"] = 3 }, "best_of");

        // What asks for nothing beyond plain text is served: no tools to call, text format, best_of = n.
        await PostJson("/v1/chat/completions", Chat("tools", tool, "tool_choice", "none"));
        await PostJson("/v1/chat/completions", Chat("response_format", new { type = "text" }));
        await PostJson("/v1/completions", new Dictionary<string, object?>(completion) { ["best_of"] = 1, ["suffix"] = "" });

        // An empty list of tools is refused, as OpenAI's API and vLLM refuse it (leave the field out),
        // whatever the tool_choice, and so is it beside /tokenize's messages.
        foreach (var choice in new object?[] { null, "none", "auto", "required" })
        {
            var empty = (await PostJson("/v1/chat/completions", Chat("tools", Array.Empty<object>(), "tool_choice", choice), HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal(("tools", "empty_array"), ((string?)empty["param"], (string?)empty["code"]));
        }
        var tokenized = (await PostJson("/tokenize", new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["messages"] = new[] { new { role = "user", content = "abc" } }, ["tools"] = Array.Empty<object>() }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal(("tools", "empty_array"), ((string?)tokenized["param"], (string?)tokenized["code"]));
    }

    [Fact]
    public async Task Audio_output_is_refused_not_ignored()
    {
        // The Node SDK's message.audio would be undefined in a reply that ignored them.
        var audio = new { voice = "alloy", format = "mp3" };
        foreach (var (field, value, param) in new (string, object, string)[] { ("modalities", new[] { "text", "audio" }, "modalities"), ("modalities", "audio", "modalities"), ("audio", audio, "audio") })
        {
            var body = (Dictionary<string, object?>)ChatBody(2);
            body[field] = value;
            var error = (await PostJson("/v1/chat/completions", body, HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal((param, "unsupported_parameter"), ((string?)error["param"], (string?)error["code"]));
        }
        // Text output is what is served.
        foreach (var modalities in new object?[] { new[] { "text" }, Array.Empty<string>(), null })
            await PostJson("/v1/chat/completions", new Dictionary<string, object?>((Dictionary<string, object?>)ChatBody(2)) { ["modalities"] = modalities, ["audio"] = null });
    }

    [Fact]
    public async Task A_chat_message_and_its_logprobs_carry_refusal_null_as_OpenAI_writes_them()
    {
        // The SDKs type both as string | null (Node: message.refusal, logprobs.refusal), so a
        // missing field reads as undefined there, where OpenAI's null would be.
        var body = (Dictionary<string, object?>)ChatBody(2);
        body["logprobs"] = true;
        var choice = (await PostJson("/v1/chat/completions", body))["choices"]![0]!.AsObject();
        var message = choice["message"]!.AsObject();
        Assert.True(message.ContainsKey("refusal") && message["refusal"] is null, message.ToJsonString());
        var logprobs = choice["logprobs"]!.AsObject();
        Assert.True(logprobs.ContainsKey("refusal") && logprobs["refusal"] is null, logprobs.ToJsonString());
        Assert.Equal(2, logprobs["content"]!.AsArray().Count);
    }

    [Fact]
    public async Task Every_response_names_its_request_in_x_request_id_as_OpenAI_does()
    {
        // The Node SDK hands it out as withResponse()'s request_id and APIError's requestID,
        // for a developer to quote when reporting a failure: successes, streams and errors alike.
        static string RequestId(HttpResponseMessage response)
        {
            Assert.True(response.Headers.TryGetValues("x-request-id", out var values), $"{(int)response.StatusCode} without x-request-id");
            var id = Assert.Single(values);
            Assert.False(string.IsNullOrWhiteSpace(id));
            return id;
        }
        var ids = new List<string>();
        using (var chat = await Http.PostAsJsonAsync("/v1/chat/completions", ChatBody(2))) { Assert.Equal(HttpStatusCode.OK, chat.StatusCode); ids.Add(RequestId(chat)); }
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(ChatBody(2, stream: true)) })
        using (var stream = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead)) { Assert.Equal(HttpStatusCode.OK, stream.StatusCode); ids.Add(RequestId(stream)); }
        using (var unknownModel = await Http.PostAsJsonAsync("/v1/chat/completions", new Dictionary<string, object?>((Dictionary<string, object?>)ChatBody(2)) { ["model"] = "no-such-model" }))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknownModel.StatusCode);
            ids.Add(RequestId(unknownModel));
        }
        using (var anonymous = fixture.AnonymousClient())
        using (var unauthorized = await anonymous.GetAsync("/v1/models")) { Assert.Equal(HttpStatusCode.Unauthorized, unauthorized.StatusCode); ids.Add(RequestId(unauthorized)); }
        using (var models = await Http.GetAsync("/v1/models")) ids.Add(RequestId(models));
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Fact]
    public async Task A_request_id_is_random_as_OpenAI_s_so_that_no_two_servers_give_the_same_one()
    {
        // Kestrel's TraceIdentifier is a connection counter seeded with the clock at start: two
        // replicas started a millisecond apart give the same ids once one has taken 10,000
        // connections, and their logs then name two requests alike.
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            // A connection each, as Kestrel counts them.
            using var client = fixture.AnonymousClient();
            using var response = await client.GetAsync("/health");
            ids.Add(Assert.Single(response.Headers.GetValues("x-request-id")));
        }
        Assert.All(ids, id => Assert.Matches("^req_[0-9a-f]{32}$", id));
        Assert.Equal(ids.Count, ids.Distinct().Count());
    }

    [Fact]
    public async Task Stream_options_without_stream_true_are_refused_as_OpenAI_refuses_them()
    {
        var completion = new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["prompt"] = "abc", ["max_tokens"] = 2 };
        var chat = (Dictionary<string, object?>)ChatBody(2);
        foreach (var (path, body) in new[] { ("/v1/completions", completion), ("/v1/chat/completions", chat) })
        {
            foreach (var stream in new object?[] { null, false })
            {
                var error = (await PostJson(path, new Dictionary<string, object?>(body) { ["stream"] = stream, ["stream_options"] = new { include_usage = true } }, HttpStatusCode.BadRequest))["error"]!;
                Assert.Equal("The 'stream_options' parameter is only allowed when 'stream' is enabled.", (string?)error["message"]);
                Assert.Equal(("invalid_request_error", "stream_options", null), ((string?)error["type"], (string?)error["param"], (string?)error["code"]));
            }
            // A null stream_options is no stream_options, as clients send it.
            await PostJson(path, new Dictionary<string, object?>(body) { ["stream"] = false, ["stream_options"] = null });
        }
    }

    [Fact]
    public async Task Cancelled_streams_return_kv_cache_usage_to_zero()
    {
        for (var wave = 0; wave < 10; wave++)
        {
            await Task.WhenAll(Enumerable.Range(0, 10).Select(async _ =>
            {
                using var cancel = new CancellationTokenSource();
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(ChatBody(100, temperature: 1, stream: true)) };
                using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
                // Read a few events, then hang up mid-stream.
                for (var i = 0; i < 4; i++) await reader.ReadLineAsync(cancel.Token);
                cancel.Cancel();
            }));
        }
        var engine = fixture.Model.Engine;
        // The last wave's sequences end as the engine notices their hang-ups, which a loaded
        // machine may take seconds to: half a minute, as the other waits for the cache here.
        for (var wait = 0; (engine.KvBlocksUsed > 0 || engine.Running > 0) && wait < 600; wait++) await Task.Delay(50);
        Assert.Equal(0, engine.KvBlocksUsed);
        Assert.Equal(0, engine.Running);
        Assert.Matches("stratus_kv_cache_usage_ratio\\{[^}]*model=\"tiny\"[^}]*\\} 0", await Http.GetStringAsync("/metrics"));
    }
}

public sealed class OverloadTests(BusyModelServer fixture) : IClassFixture<BusyModelServer>
{
    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after_is_no_usage_and_recovers()
    {
        var http = fixture.Server.Http;
        var usage = Platform.PlatformStores.Open(fixture.Server.DataDir).Usage;
        async Task<long> Requests() => (await usage.QueryAsync(Platform.UsageQuery.Days(null, null, null, null))).Sum(r => r.Requests);
        var before = await Requests();
        var body = new { model = "tiny", prompt = "abc", max_tokens = 100, temperature = 0 };
        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => http.PostAsJsonAsync("/v1/completions", body)));
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.NotEmpty(refused);
        Assert.All(responses, r => Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.TooManyRequests));
        Assert.NotNull(refused[0].Headers.RetryAfter);
        var error = JsonNode.Parse(await refused[0].Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("rate_limit_error", (string)error["type"]!);
        // A refused request used nothing: usage counts the answered ones only.
        Assert.Equal(responses.Length - refused.Count, await Requests() - before);
        using var after = await http.PostAsJsonAsync("/v1/completions", body with { });
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
        foreach (var r in responses) r.Dispose();
    }

    [Fact]
    public async Task A_request_with_more_choices_than_the_queue_holds_is_a_400_not_a_429_to_retry()
    {
        using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions", new { model = "tiny", prompt = "abc", max_tokens = 2, n = 2 });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("2 sequences", (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["message"]!);
        Assert.Equal(0, fixture.Server.Model.Engine.Waiting);
    }
}

public sealed class TokenSpellingTests
{
    [Fact]
    public void A_token_that_holds_part_of_a_character_is_named_by_its_bytes()
    {
        var gpt2 = Tokenization.Gpt2Tokenizer.Instance;
        var emoji = gpt2.Encode("😀");
        Assert.All(emoji, id => Assert.StartsWith("bytes:\\x", Api.TokenSpelling.Text(gpt2, id)));
        Assert.NotEqual(Api.TokenSpelling.Text(gpt2, emoji[0]), Api.TokenSpelling.Text(gpt2, emoji[1]));
        Assert.Equal(System.Text.Encoding.UTF8.GetBytes("😀").Select(b => (int)b), emoji.SelectMany(id => Api.TokenSpelling.Bytes(gpt2, id)));
        Assert.Equal(" ok", Api.TokenSpelling.Text(gpt2, gpt2.Encode(" ok")[0]));
    }
}
