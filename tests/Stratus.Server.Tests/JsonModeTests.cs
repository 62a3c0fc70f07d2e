// response_format json_object over HTTP: a choice that ends with stop is one JSON object, streamed
// or not, n at a time, on both generation endpoints; one cut by max_tokens (length) is the
// beginning of one; an unknown format is refused. The tiny model's vocabulary has no end-of-generation
// token, so its objects end at their closing brace.
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Inference;

namespace Stratus.Server.Tests;

public sealed class JsonModeTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    static readonly object JsonObject = new { type = "json_object" };

    int Id(char c) => fixture.Model.Tokenizer.Encode(c.ToString()).Single();

    /// <summary>A random model left alone rarely closes an object: this bias makes it write
    /// quotes and close braces, which unconstrained is no JSON object at all.</summary>
    Dictionary<string, double> Closing => new() { [Id('"').ToString()] = 10, [Id('}').ToString()] = 9, [Id(':').ToString()] = 9 };

    Dictionary<string, object?> Chat(object? responseFormat, int maxTokens = 100, int n = 2, bool stream = false, Dictionary<string, double>? bias = null, object? stop = null) => new()
    {
        ["model"] = TinyModelServer.ModelName,
        ["messages"] = new[] { new { role = "user", content = "Answer in JSON." } },
        ["max_tokens"] = maxTokens,
        ["temperature"] = 1,
        ["seed"] = 3,
        ["n"] = n,
        ["stream"] = stream,
        ["logit_bias"] = bias,
        ["stop"] = stop,
        ["response_format"] = responseFormat,
    };

    async Task<JsonNode> Post(string path, object body, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await fixture.Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(expected == response.StatusCode, $"{(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!;
    }

    /// <summary>Each choice's content and finish_reason, read from a stream of chunks.</summary>
    async Task<(string Text, string Finish)[]> Stream(object body, int choices)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var texts = new StringBuilder[choices];
        var finish = new string[choices];
        for (var i = 0; i < choices; i++) texts[i] = new StringBuilder();
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
            foreach (var choice in JsonNode.Parse(line["data: ".Length..])!["choices"]!.AsArray())
            {
                var index = (int)choice!["index"]!;
                texts[index].Append((string?)choice["delta"]!["content"]);
                if ((string?)choice["finish_reason"] is { } reason) finish[index] = reason;
            }
        return [.. texts.Select((t, i) => (t.ToString(), finish[i]))];
    }

    static bool IsObject(string text)
    {
        try { return JsonDocument.Parse(text).RootElement.ValueKind == JsonValueKind.Object; }
        catch (JsonException) { return false; }
    }

    static (bool Viable, bool Complete) Read(string text)
    {
        var json = new JsonGrammar();
        return json.Accept(Encoding.UTF8.GetBytes(text)) ? (true, json.IsComplete) : (false, false);
    }

    [Fact]
    public async Task Json_object_chat_completions_are_json_objects_streamed_or_not()
    {
        // The premise: the same request in free text is no JSON object.
        var free = await Post("/v1/chat/completions", Chat(null, bias: Closing));
        Assert.All(free["choices"]!.AsArray(), c => Assert.False(IsObject((string)c!["message"]!["content"]!)));

        var answer = await Post("/v1/chat/completions", Chat(JsonObject, bias: Closing));
        var choices = answer["choices"]!.AsArray();
        Assert.Equal(2, choices.Count);
        foreach (var choice in choices)
        {
            Assert.True(IsObject((string)choice!["message"]!["content"]!), (string)choice["message"]!["content"]!);
            Assert.Equal("stop", (string?)choice["finish_reason"]);
        }
        // The same seed streams the same objects.
        var streamed = await Stream(Chat(JsonObject, bias: Closing, stream: true), 2);
        Assert.Equal(choices.Select(c => ((string)c!["message"]!["content"]!, "stop")), streamed);
    }

    [Fact]
    public async Task Unbiased_choices_are_whole_objects_exactly_when_they_end_with_stop()
    {
        // Left alone the random model may or may not close its object in 12 tokens: whichever it
        // does, the text is the beginning of one, and a whole one exactly when it stopped.
        foreach (var stream in new[] { false, true })
        {
            var body = Chat(JsonObject, maxTokens: 12, n: 8, stream: stream);
            var choices = stream ? await Stream(body, 8)
                : [.. (await Post("/v1/chat/completions", body))["choices"]!.AsArray().Select(c => ((string)c!["message"]!["content"]!, (string)c["finish_reason"]!))];
            foreach (var (text, finish) in choices)
            {
                Assert.Equal((true, finish == "stop"), Read(text));
                if (finish == "stop") Assert.True(IsObject(text), text);
            }
        }
    }

    [Fact]
    public async Task Completions_take_response_format_too_and_stop_sequences_still_cut()
    {
        var completion = await Post("/v1/completions", new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName, ["prompt"] = "{", ["max_tokens"] = 100, ["n"] = 2, ["seed"] = 4,
            ["logit_bias"] = Closing, ["response_format"] = JsonObject,
        });
        Assert.All(completion["choices"]!.AsArray(), c => Assert.True(IsObject((string)c!["text"]!), (string)c["text"]!));

        // A stop sequence ends the text where it occurs, as it does in free text, whole object or not.
        var cut = await Post("/v1/chat/completions", Chat(JsonObject, n: 1, bias: Closing, stop: ":"));
        var text = (string)cut["choices"]![0]!["message"]!["content"]!;
        Assert.Equal(("stop", (true, false)), ((string?)cut["choices"]![0]!["finish_reason"], Read(text)));
        Assert.DoesNotContain(':', text);
    }

    [Fact]
    public async Task Another_format_is_refused_in_the_api_s_error_format()
    {
        var yaml = (await Post("/v1/chat/completions", Chat(new { type = "yaml" }), HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal(("response_format", "unsupported_parameter"), ((string?)yaml["param"], (string?)yaml["code"]));
        Assert.Contains("json_object", (string)yaml["message"]!);
        Assert.Contains("json_schema", (string)yaml["message"]!);
    }

    [Fact]
    public async Task A_response_format_that_is_not_an_object_with_a_type_is_a_400_and_the_engine_runs_on()
    {
        // OpenAI answers {} with "Missing required parameter: 'response_format.type'": read as
        // text it gave free text to a client that meant to ask for a format.
        var formats = new (string Json, string Param)[]
        {
            ("{}", "response_format.type"), ("{\"json_object\":true}", "response_format.type"), ("\"json_object\"", "response_format"),
            ("[{\"type\":\"json_object\"}]", "response_format"), ("5", "response_format"),
            // A type that is not a string is named as OpenAI names it.
            ("{\"type\":5}", "response_format.type"), ("{\"type\":null}", "response_format.type"), ("{\"type\":[\"json_object\"]}", "response_format.type"),
        };
        foreach (var (format, param) in formats)
            foreach (var path in new[] { "/v1/chat/completions", "/v1/completions" })
                foreach (var stream in new[] { false, true })
                {
                    var (status, text) = await fixture.PostWithResponseFormatAsync(path, format, stream);
                    Assert.True(status == HttpStatusCode.BadRequest, $"{path} {format}: {(int)status} {text}");
                    var error = JsonNode.Parse(text)!["error"]!;
                    Assert.Equal(("invalid_request_error", param), ((string?)error["type"], (string?)error["param"]));
                    Assert.False(string.IsNullOrEmpty((string?)error["message"]));
                }
        Assert.True(fixture.Model.Engine.IsHealthy);
        Assert.Equal(0, fixture.Model.Engine.KvBlocksUsed);
    }

    /// <summary>A model whose vocabulary cannot close an object cannot follow JSON mode: the 400
    /// names response_format and a code, as OpenAI's own 400s do (both were null).</summary>
    [Fact]
    public async Task Json_mode_for_a_model_that_cannot_write_an_object_is_a_400_naming_response_format()
    {
        var server = new TinyModelServer { CreateModel = folder => TinyModelServer.SaveGpt(folder, Tokenization.CharTokenizer.FromCorpus("ab{: "), context: 32) };
        await server.InitializeAsync();
        try
        {
            foreach (var stream in new[] { false, true })
            {
                var (status, text) = await server.PostWithResponseFormatAsync("/v1/completions", """{"type":"json_object"}""", stream);
                Assert.True(status == HttpStatusCode.BadRequest, $"{(int)status} {text}");
                var error = JsonNode.Parse(text)!["error"]!;
                Assert.Equal(("invalid_request_error", "response_format", "unsupported_value"), ((string?)error["type"], (string?)error["param"], (string?)error["code"]));
                Assert.StartsWith("JSON mode needs a token", (string)error["message"]!);
            }
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
