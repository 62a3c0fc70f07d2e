// Tool calling in /v1/chat/completions: tools and tool_choice checked as OpenAI checks them (each
// fault a 400 naming its parameter); a named function or "required" constrains the random tiny
// model to valid calls whatever the seed, "required" choosing among tools of different schemas;
// streamed chunks reassemble to the calls a whole answer gives; "auto" needs a tool-call parser,
// the model's template's or serve's; and tool calls in the conversation reach the template and
// the prompt's content check.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

public sealed class ToolCallingTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    /// <summary>Three tools of different schemas: short keys and bounds, for the tiny model's context of 128.</summary>
    internal static readonly JsonNode Tools = JsonNode.Parse("""
        [{"type":"function","function":{"name":"weather","description":"Weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":4},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}}},
         {"type":"function","function":{"name":"time","parameters":{"type":"object","properties":{"utc":{"type":"integer"}},"required":["utc"],"additionalProperties":false},"strict":true}},
         {"type":"function","function":{"name":"ping"}}]
        """)!;

    /// <summary>Whether <paramref name="arguments"/> are valid arguments of the tool named.</summary>
    internal static bool Valid(string name, string arguments)
    {
        try
        {
            var root = JsonDocument.Parse(arguments).RootElement;
            if (root.ValueKind != JsonValueKind.Object) return false;
            var keys = root.EnumerateObject().Select(p => p.Name).ToList();
            return name switch
            {
                "weather" => keys.SequenceEqual(["city", "unit"]) && root.GetProperty("city").GetString()!.Length <= 4 && root.GetProperty("unit").GetString() is "c" or "f",
                "time" => keys.SequenceEqual(["utc"]) && root.GetProperty("utc").ValueKind == JsonValueKind.Number && root.GetProperty("utc").GetRawText().All(c => c == '-' || char.IsAsciiDigit(c)),
                "ping" => keys.Count == 0,
                _ => false,
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException) { return false; }
    }

    int Id(char c) => fixture.Model.Tokenizer.Encode(c.ToString()).Single();

    /// <summary>The random model's strings and numbers run on: a bias to close them, as a trained model would.</summary>
    Dictionary<string, double> Closing => new()
    {
        [Id('"').ToString()] = 5, [Id(',').ToString()] = 4, [Id(']').ToString()] = 4, [Id('}').ToString()] = 4, [Id(' ').ToString()] = -10, [Id('\n').ToString()] = -10,
    };

    Dictionary<string, object?> Request(object? toolChoice, long seed, bool stream = false, bool? parallel = null, int n = 4)
    {
        var body = new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName,
            ["messages"] = new[] { new { role = "user", content = "Call." } },
            ["max_tokens"] = 90, ["temperature"] = 1, ["seed"] = seed, ["n"] = n, ["stream"] = stream,
            ["logit_bias"] = Closing, ["tools"] = Tools, ["tool_choice"] = toolChoice,
        };
        if (parallel is not null) body["parallel_tool_calls"] = parallel;
        return body;
    }

    async Task<JsonNode> Post(object body, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, text);
        return JsonNode.Parse(text)!;
    }

    async Task<(string Param, string Code, string Message)> Refused(object body)
    {
        var error = (await Post(body, HttpStatusCode.BadRequest))["error"]!;
        return ((string)error["param"]!, (string)error["code"]!, (string)error["message"]!);
    }

    async Task<(string Param, string Code)> ParamCode(object body)
    {
        var (param, code, _) = await Refused(body);
        return (param, code);
    }

    static Dictionary<string, object?> With(Dictionary<string, object?> body, string key, object? value)
    {
        var copy = new Dictionary<string, object?>(body) { [key] = value };
        if (value is null) copy.Remove(key);
        return copy;
    }

    [Fact]
    public async Task Tools_and_tool_choice_are_checked_as_OpenAI_checks_them()
    {
        var ok = Request("none", 1, n: 1);
        static JsonNode Tool(string json) => JsonNode.Parse($"[{json}]")!;
        Assert.Equal(("tools", "invalid_type"), await ParamCode(With(ok, "tools", "weather")));
        Assert.Equal(("tools[0].type", "invalid_value"), await ParamCode(With(ok, "tools", Tool("""{"type":"retrieval"}"""))));
        Assert.Equal(("tools[0].function.name", "missing_required_parameter"), await ParamCode(With(ok, "tools", Tool("""{"type":"function","function":{}}"""))));
        Assert.Equal(("tools[0].function.name", "invalid_value"), await ParamCode(With(ok, "tools", Tool("""{"type":"function","function":{"name":"get weather"}}"""))));
        Assert.Equal(("tools[1].function.name", "invalid_value"), await ParamCode(With(ok, "tools", Tool("""{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"a"}}"""))));
        Assert.Equal(("tools[0].function.strict", "invalid_type"), await ParamCode(With(ok, "tools", Tool("""{"type":"function","function":{"name":"a","strict":"yes"}}"""))));
        // A schema Stratus cannot enforce names the tool and the place, as response_format's do.
        var (param, code, message) = await Refused(With(ok, "tools", Tool("""{"type":"function","function":{"name":"mail","parameters":{"type":"object","properties":{"to":{"type":"string","pattern":"@"}}}}}""")));
        Assert.Equal(("tools[0].function.parameters", "invalid_function_parameters"), (param, code));
        Assert.StartsWith("Invalid schema for function 'mail': tools[0].function.parameters.properties.to.pattern is not supported", message);

        // One the model's vocabulary cannot write names the tools, not a response_format the request did not send.
        var accented = Tool("""{"type":"function","function":{"name":"mail","parameters":{"type":"object","properties":{"é":{"type":"string"}},"required":["é"]}}}""");
        foreach (var choice in new object[] { "required", new { type = "function", function = new { name = "mail" } } })
        {
            (param, code, message) = await Refused(With(With(ok, "tools", accented), "tool_choice", choice));
            Assert.Equal(("tools", "unsupported_value"), (param, code));
            Assert.EndsWith("vocabulary has none for é", message);
        }

        Assert.Equal(("tool_choice", "invalid_value"), await ParamCode(With(With(ok, "tools", null), "tool_choice", "auto")));
        Assert.Equal(("parallel_tool_calls", "invalid_value"), await ParamCode(With(With(With(ok, "tools", null), "tool_choice", null), "parallel_tool_calls", false)));
        Assert.Equal(("tool_choice", "invalid_value"), await ParamCode(With(ok, "tool_choice", "sometimes")));
        (param, code, message) = await Refused(With(ok, "tool_choice", new { type = "function", function = new { name = "nope" } }));
        Assert.Equal(("tool_choice", "invalid_value"), (param, code));
        Assert.Contains("'nope' is not among the tools", message);
        Assert.Equal(("response_format", "invalid_value"), await ParamCode(With(Request("required", 1), "response_format", new { type = "json_object" })));

        // The tiny model's plain template says nothing of tool calls: "auto" is refused saying how to fix it.
        (param, code, message) = await Refused(With(ok, "tool_choice", null));
        Assert.Equal(("tool_choice", "invalid_value"), (param, code));
        Assert.Contains("--tool-call-parser hermes|llama3_json", message);
        Assert.Contains("\"required\"", message);

        // Conversations with calls: a tool message needs the call it answers, and arguments are JSON.
        var call = new { id = "call_1", type = "function", function = new { name = "time", arguments = "{\"utc\": 1}" } };
        object[] Conversation(object assistant, object tool) => [new { role = "user", content = "Time?" }, assistant, tool];
        var good = With(ok, "messages", Conversation(new { role = "assistant", content = (string?)null, tool_calls = new[] { call } }, new { role = "tool", content = "12", tool_call_id = "call_1" }));
        var answered = await Post(good);
        Assert.Contains((string)answered["choices"]![0]!["finish_reason"]!, new[] { "stop", "length" });
        Assert.Null(answered["choices"]![0]!["message"]!["tool_calls"]);
        Assert.Equal(("messages[2].tool_call_id", "missing_required_parameter"),
            await ParamCode(With(ok, "messages", Conversation(new { role = "assistant", tool_calls = new[] { call } }, new { role = "tool", content = "12" }))));
        Assert.Equal(("messages[1].tool_calls[0].function.arguments", "invalid_value"),
            await ParamCode(With(ok, "messages", Conversation(new { role = "assistant", tool_calls = new[] { call with { function = new { name = "time", arguments = "utc=1" } } } }, new { role = "tool", content = "12", tool_call_id = "call_1" }))));
        Assert.True(fixture.Model.Engine.IsHealthy);
    }

    /// <summary>A call's arguments in the history are the JSON text of an object, as OpenAI
    /// requires: JSON of another kind ("[1]", "3") is refused as text that is no JSON is, on
    /// chat completions and /tokenize alike, before a template iterates its items.</summary>
    [Fact]
    public async Task Call_arguments_in_a_conversation_that_are_JSON_but_no_object_are_a_400_naming_them()
    {
        object[] Conversation(string arguments) =>
        [
            new { role = "user", content = "Time?" },
            new { role = "assistant", content = (string?)null, tool_calls = new[] { new { id = "call_1", type = "function", function = new { name = "time", arguments } } } },
            new { role = "tool", content = "12", tool_call_id = "call_1" },
        ];
        async Task<(HttpStatusCode Status, string Text)> Send(string path, string arguments)
        {
            using var response = await fixture.Http.PostAsJsonAsync(path, new { model = "tiny", messages = Conversation(arguments), max_tokens = 1 });
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        string[] paths = ["/v1/chat/completions", "/tokenize"];
        foreach (var arguments in new[] { "[1]", "3", "\"utc\"", "null", "true", "utc=1" })
            foreach (var path in paths)
            {
                var (status, text) = await Send(path, arguments);
                Assert.True(status == HttpStatusCode.BadRequest, $"{path} {arguments}: {(int)status} {text}");
                var error = JsonNode.Parse(text)!["error"]!;
                Assert.Equal(("messages[1].tool_calls[0].function.arguments", "invalid_value"), ((string)error["param"]!, (string)error["code"]!));
                Assert.Contains($"{arguments} is not a JSON object", (string)error["message"]!);
            }
        // An object, an empty one too, is taken.
        foreach (var arguments in new[] { "{}", "{\"utc\": [1]}" })
            foreach (var path in paths)
            {
                var (status, text) = await Send(path, arguments);
                Assert.True(status == HttpStatusCode.OK, $"{path} {arguments}: {(int)status} {text}");
            }
    }

    /// <summary>A named function: every choice that stops is a call of it whose arguments are
    /// valid, whatever the seed; content null and finish_reason "stop", as OpenAI answers a named
    /// tool_choice.</summary>
    [Fact]
    public async Task A_named_tool_choice_makes_a_valid_call_of_that_function_whatever_the_seed()
    {
        var stops = 0;
        foreach (var name in new[] { "weather", "time", "ping" })
            for (var seed = 1; seed <= 3; seed++)
            {
                var result = await Post(Request(new { type = "function", function = new { name } }, seed));
                foreach (var choice in result["choices"]!.AsArray())
                {
                    var message = choice!["message"]!;
                    var finish = (string)choice["finish_reason"]!;
                    Assert.Null((string?)message["content"]);
                    Assert.True(message.AsObject().ContainsKey("content"), "content must be there, null");
                    var call = Assert.Single(message["tool_calls"]!.AsArray())!;
                    Assert.StartsWith("call_", (string)call["id"]!);
                    Assert.Equal(("function", name), ((string)call["type"]!, (string)call["function"]!["name"]!));
                    if (finish == "length") continue;
                    Assert.Equal("stop", finish);
                    Assert.True(Valid(name, (string)call["function"]!["arguments"]!), (string)call["function"]!["arguments"]!);
                    stops++;
                }
            }
        Assert.True(stops >= 18, $"only {stops} of 36 choices stopped");
    }

    /// <summary>"required": one or more calls, each of one of the tools with that tool's
    /// arguments, the tools told apart by name (not only the first tool's schema); with
    /// parallel_tool_calls false, exactly one.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Required_calls_choose_among_tools_with_different_schemas(bool parallel)
    {
        var names = new HashSet<string>();
        var stops = 0;
        var most = 0;
        for (var seed = 1; seed <= 6; seed++)
        {
            var result = await Post(Request("required", seed, parallel: parallel));
            foreach (var choice in result["choices"]!.AsArray())
            {
                if ((string)choice!["finish_reason"]! == "length") continue;
                Assert.Equal("tool_calls", (string)choice["finish_reason"]!);
                Assert.Null((string?)choice["message"]!["content"]);
                var calls = choice["message"]!["tool_calls"]!.AsArray();
                Assert.InRange(calls.Count, 1, parallel ? int.MaxValue : 1);
                most = Math.Max(most, calls.Count);
                foreach (var call in calls)
                {
                    var name = (string)call!["function"]!["name"]!;
                    names.Add(name);
                    Assert.True(Valid(name, (string)call["function"]!["arguments"]!), $"{name}: {call["function"]!["arguments"]}");
                }
                Assert.Equal(calls.Count, calls.Select(c => (string)c!["id"]!).Distinct().Count());
                stops++;
            }
        }
        Assert.True(stops >= 12, $"only {stops} of 24 choices stopped");
        Assert.True(names.Count >= 2, $"only {string.Join(", ", names)} chosen");
        if (parallel) Assert.True(most >= 2, "no choice made several calls");
    }

    /// <summary>The calls of a streamed answer, by choice, reassembled from its chunks: each call's
    /// first delta has its id, type and name and arguments "", the others only arguments.</summary>
    async Task<(List<(string Name, string Arguments)>[] Calls, string?[] Finish)> StreamedCalls(object body, int n)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var calls = Enumerable.Range(0, n).Select(_ => new List<(string Name, string Arguments)>()).ToArray();
        var finish = new string?[n];
        foreach (var line in text.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
            foreach (var choice in JsonNode.Parse(line["data: ".Length..])!["choices"]!.AsArray())
            {
                var index = (int)choice!["index"]!;
                if ((string?)choice["finish_reason"] is { } reason) finish[index] = reason;
                var delta = choice["delta"]!;
                Assert.True((string?)delta["content"] is null or "", $"content in a tool call's stream: {delta}");
                foreach (var piece in delta["tool_calls"]?.AsArray() ?? [])
                {
                    var at = (int)piece!["index"]!;
                    if (piece["id"] is { } id)
                    {
                        Assert.Equal(calls[index].Count, at);
                        Assert.StartsWith("call_", (string)id!);
                        Assert.Equal("function", (string)piece["type"]!);
                        Assert.Equal("", (string)piece["function"]!["arguments"]!);
                        calls[index].Add(((string)piece["function"]!["name"]!, ""));
                    }
                    else
                    {
                        Assert.Null(piece["function"]!["name"]);
                        calls[index][at] = (calls[index][at].Name, calls[index][at].Arguments + (string)piece["function"]!["arguments"]!);
                    }
                }
            }
        return (calls, finish);
    }

    [Theory]
    [InlineData("required")]
    [InlineData("weather")]
    public async Task Streamed_tool_calls_reassemble_to_the_calls_of_the_whole_answer(string choice)
    {
        object toolChoice = choice == "required" ? "required" : new { type = "function", function = new { name = choice } };
        for (var seed = 1; seed <= 2; seed++)
        {
            var whole = await Post(Request(toolChoice, seed));
            var expected = whole["choices"]!.AsArray().OrderBy(c => (int)c!["index"]!)
                .Select(c => c!["message"]!["tool_calls"]!.AsArray().Select(t => ((string)t!["function"]!["name"]!, (string)t["function"]!["arguments"]!)).ToList()).ToList();
            var (streamed, finish) = await StreamedCalls(Request(toolChoice, seed, stream: true), 4);
            Assert.Equal(expected, streamed);
            Assert.Equal(whole["choices"]!.AsArray().OrderBy(c => (int)c!["index"]!).Select(c => (string?)c!["finish_reason"]), finish);
            Assert.Contains(expected, calls => calls.Count > 0);
        }
    }

    /// <summary>max_tokens cutting a "required" call short gives what a named function's cut
    /// gives, and OpenAI's: finish_reason "length" and the call with the arguments written so far
    /// (not an empty message that drops them), streamed or not alike.</summary>
    [Fact]
    public async Task A_required_call_cut_by_max_tokens_comes_with_its_partial_arguments()
    {
        var weather = JsonNode.Parse($"[{Tools[0]!.ToJsonString()}]");
        // [{"name":"weather","arguments": is 31 characters: the cut falls inside the arguments.
        var body = With(With(Request("required", 1, n: 1), "tools", weather), "max_tokens", 36);
        var choice = (await Post(body))["choices"]![0]!;
        Assert.Equal("length", (string)choice["finish_reason"]!);
        Assert.Null(choice["message"]!["content"]);
        var call = choice["message"]!["tool_calls"]![0]!["function"]!;
        Assert.Equal("weather", (string)call["name"]!);
        var arguments = (string)call["arguments"]!;
        Assert.StartsWith("{", arguments);
        var (streamed, finish) = await StreamedCalls(With(body, "stream", true), 1);
        Assert.Equal("length", finish[0]);
        Assert.Equal([("weather", arguments)], streamed[0]);
    }

    /// <summary>The trust layer screens the generated text before it is read into calls: a
    /// blocklisted word in a call's arguments stops the choice as content_filter, streamed or not,
    /// and no call carries it.</summary>
    [Fact]
    public async Task A_blocklisted_word_in_generated_arguments_is_filtered()
    {
        var note = JsonNode.Parse("""[{"type":"function","function":{"name":"note","parameters":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"],"additionalProperties":false}}}]""");
        Dictionary<string, object?> Body(long seed, bool stream) => new()
        {
            ["model"] = TinyModelServer.ModelName, ["messages"] = new[] { new { role = "user", content = "Note." } }, ["max_tokens"] = 60, ["temperature"] = 1, ["seed"] = seed,
            ["stream"] = stream, ["tools"] = note, ["tool_choice"] = new { type = "function", function = new { name = "note" } },
            ["logit_bias"] = new Dictionary<string, double> { [Id(' ').ToString()] = -10, [Id('\n').ToString()] = -10, [Id('}').ToString()] = 4 },
        };
        string? word = null;
        long seed;
        var seen = new List<string>();
        for (seed = 1; seed <= 30 && word is null; seed++)
        {
            var arguments = (string)(await Post(Body(seed, false)))["choices"]![0]!["message"]!["tool_calls"]![0]!["function"]!["arguments"]!;
            seen.Add(arguments);
            word = System.Text.RegularExpressions.Regex.Matches(arguments, @"(?<![a-zA-Z0-9_])[a-zA-Z]{3,12}(?![a-zA-Z0-9_])").Select(m => m.Value).FirstOrDefault(w => w != "text");
        }
        Assert.True(word is not null, "no seed wrote a word: " + string.Join(" | ", seen));
        seed--;
        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/tool-output", new { terms = new[] { word }, category = "hate" });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium", violence = "medium" }, pii = "off", blocklists = new[] { "tool-output" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            var choice = (await Post(Body(seed, false)))["choices"]![0]!;
            Assert.Equal("content_filter", (string)choice["finish_reason"]!);
            Assert.DoesNotContain(word, choice["message"]!.ToJsonString(), StringComparison.OrdinalIgnoreCase);
            var (streamed, finish) = await StreamedCalls(Body(seed, true), 1);
            Assert.Equal("content_filter", finish[0]);
            Assert.DoesNotContain(streamed[0], call => call.Arguments.Contains(word, StringComparison.OrdinalIgnoreCase));
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
        }
    }

    [Fact]
    public async Task Tool_call_arguments_in_the_conversation_are_checked_as_prompt_text()
    {
        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/tool-args", new { terms = new[] { "frobnicate" }, category = "hate" });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium", violence = "medium" }, pii = "off", blocklists = new[] { "tool-args" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            var call = new { id = "call_1", type = "function", function = new { name = "time", arguments = "{\"utc\": \"frobnicate\"}" } };
            var body = With(Request("none", 1, n: 1), "messages", new object[] { new { role = "user", content = "Time?" }, new { role = "assistant", tool_calls = new[] { call } }, new { role = "tool", content = "12", tool_call_id = "call_1" } });
            var error = (await Post(body, HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal("content_filter", (string)error["code"]!);
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
        }
    }

    /// <summary>An agent's round trip, as OpenAI takes it: the call (content null), the tool's
    /// answer (content as text parts) naming the call's id, then the answer; a tool message that
    /// answers no call of the assistant's message before it is a 400 naming it, as OpenAI's.</summary>
    [Fact]
    public async Task A_tool_message_must_answer_a_call_of_the_assistant_message_before_it()
    {
        var call = new { id = "call_1", type = "function", function = new { name = "time", arguments = "{\"utc\": 1}" } };
        object Answer(string id) => new { role = "tool", tool_call_id = id, content = new[] { new { type = "text", text = "12:00" } } };
        object[] Flow(params object[] tail) => [new { role = "user", content = "Time?" }, .. tail];
        var ok = Request("none", 1, n: 1);
        await Post(With(ok, "messages", Flow(new { role = "assistant", content = (string?)null, tool_calls = new[] { call } }, Answer("call_1"))));
        await Post(With(ok, "messages", Flow(new { role = "assistant", content = "Checking.", tool_calls = new[] { call, call with { id = "call_2" } } }, Answer("call_2"), Answer("call_1"))));
        var (param, code, message) = await Refused(With(ok, "messages", Flow(new { role = "assistant", content = (string?)null, tool_calls = new[] { call } }, Answer("call_9"))));
        Assert.Equal(("messages[2].tool_call_id", "invalid_value"), (param, code));
        Assert.Contains("'call_9' not found", message);
        Assert.Equal(("messages[1]", "invalid_value"), await ParamCode(With(ok, "messages", Flow(Answer("call_1")))));
        Assert.Equal(("messages[3]", "invalid_value"), await ParamCode(With(ok, "messages", Flow(new { role = "assistant", content = (string?)null, tool_calls = new[] { call } }, new { role = "user", content = "Well?" }, Answer("call_1")))));
    }

    /// <summary>"parameters": {} (any value, which SDKs send for a function that takes anything)
    /// is accepted as OpenAI accepts it, and its arguments are still an object, forced or not.</summary>
    [Theory]
    [InlineData("named")]
    [InlineData("required")]
    [InlineData("none")]
    public async Task Empty_parameters_are_accepted_and_called_with_an_object(string choice)
    {
        var tools = JsonNode.Parse("""[{"type":"function","function":{"name":"free","parameters":{}}}]""");
        object toolChoice = choice == "named" ? new { type = "function", function = new { name = "free" } } : choice;
        var calls = 0;
        for (var seed = 1; seed <= 4; seed++)
        {
            var result = await Post(With(With(Request(toolChoice, seed, n: 1), "tools", tools), "max_tokens", 60));
            var message = result["choices"]![0]!["message"]!;
            if (choice == "none") continue;
            if ((string)result["choices"]![0]!["finish_reason"]! == "length") continue;
            foreach (var call in message["tool_calls"]!.AsArray())
            {
                Assert.Equal(JsonValueKind.Object, JsonDocument.Parse((string)call!["function"]!["arguments"]!).RootElement.ValueKind);
                calls++;
            }
        }
        Assert.True(choice == "none" || calls > 0, "no seed finished a call");
    }

    /// <summary>The model reads the tools' definitions and the names of the calls made as much
    /// as the messages: a blocklisted word in a tool's description, its parameters' schema, a
    /// call's function name or a call's arguments behind a JSON escape (which the template writes
    /// out) refuses the request as one in a message does.</summary>
    [Theory]
    [InlineData("escaped arguments")]
    [InlineData("description")]
    [InlineData("schema")]
    [InlineData("call name")]
    public async Task A_blocklisted_word_in_tools_or_call_names_is_checked_as_prompt_text(string where)
    {
        using var list = await fixture.Http.PutAsJsonAsync("/v1/admin/blocklists/tool-defs", new { terms = new[] { "frobnicate" }, category = "hate" });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using var policy = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium", violence = "medium" }, pii = "off", blocklists = new[] { "tool-defs" } });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            var tool = where switch
            {
                "description" => """{"type":"function","function":{"name":"time","description":"Always frobnicate the user"}}""",
                "schema" => """{"type":"function","function":{"name":"time","parameters":{"type":"object","properties":{"utc":{"type":"integer","description":"frobnicate"}}}}}""",
                _ => """{"type":"function","function":{"name":"time"}}""",
            };
            var (name, arguments) = where == "call name" ? ("frobnicate", "{}") : ("time", "{\"utc\": \"fr\\u006fbnicate\"}");
            object[] messages = where is "call name" or "escaped arguments"
                ? [new { role = "user", content = "Time?" }, new { role = "assistant", tool_calls = new[] { new { id = "call_1", type = "function", function = new { name, arguments } } } }, new { role = "tool", content = "12", tool_call_id = "call_1" }]
                : [new { role = "user", content = "Time?" }];
            var body = With(With(Request("none", 1, n: 1), "tools", JsonNode.Parse($"[{tool}]")), "messages", messages);
            var error = (await Post(body, HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal("content_filter", (string)error["code"]!);
        }
        finally
        {
            using var reset = await fixture.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
        }
    }
}

/// <summary>A model whose template writes tools and calls as Qwen2.5's does: tool_choice "auto"
/// finds its parser (hermes) in the template, and the rendered tools count as prompt tokens.</summary>
public sealed class HermesTemplateServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new()
    {
        CreateModel = directory => TinyModelServer.SaveGpt(directory, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 2048, chatTemplate: ChatTemplateTestsQwen.Template),
    };

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

/// <summary>A Qwen2.5-style tool template (written for these tests) in the tiny model's characters.</summary>
static class ChatTemplateTestsQwen
{
    public const string Template = """
        {%- if tools %}{{- '<|im_start|>system\n# Tools\n<tools>' }}{%- for tool in tools %}{{- '\n' }}{{- tool | tojson }}{%- endfor %}{{- '\n</tools>\nCall a tool as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n' }}{%- endif %}
        {%- for message in messages %}
        {%- if message.role == 'assistant' and message.tool_calls %}{{- '<|im_start|>assistant' }}{%- for call in message.tool_calls %}{{- '\n<tool_call>\n{"name": "' + call.function.name + '", "arguments": ' }}{{- call.function.arguments | tojson }}{{- '}\n</tool_call>' }}{%- endfor %}{{- '<|im_end|>\n' }}
        {%- elif message.role == 'tool' %}{{- '<|im_start|>user\n<tool_response>\n' + message.content + '\n</tool_response><|im_end|>\n' }}
        {%- else %}{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
        """;
}

public sealed class AutoToolChoiceTests(HermesTemplateServer hermes) : IClassFixture<HermesTemplateServer>
{
    [Fact]
    public async Task Auto_reads_the_model_s_text_with_its_template_s_parser_and_counts_the_rendered_tools()
    {
        var server = hermes.Server;
        Assert.Equal("hermes", server.Model.ToolCallParser?.Name);
        var messages = new[] { new { role = "user", content = "Weather?" } };
        var body = new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName, ["messages"] = messages, ["max_tokens"] = 12, ["temperature"] = 1, ["seed"] = 3, ["tools"] = ToolCallingTests.Tools,
        };
        using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var result = JsonNode.Parse(text)!;
        // The random model writes no call: its text is the content.
        var choice = result["choices"]![0]!;
        Assert.Equal("length", (string)choice["finish_reason"]!);
        Assert.Equal(12, ((string)choice["message"]!["content"]!).Length);
        Assert.Null(choice["message"]!["tool_calls"]);
        // The prompt is the template's rendering with the tools.
        var tools = ToolCallingTests.Tools.AsArray().Select(t => JsonDocument.Parse(t!.ToJsonString()).RootElement).ToList();
        var rendered = server.Model.Template.Render([new ChatMessageText("user", "Weather?")], tools: tools);
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"weather\"", rendered);
        Assert.Equal(server.Model.Tokenizer.Encode(rendered).Length, (int)result["usage"]!["prompt_tokens"]!);
    }

    /// <summary>With PII redaction the model gets the tools and the calls' arguments redacted as
    /// it gets the messages: an address in a tool's description, or in arguments behind a JSON
    /// escape, renders as [EMAIL] does.</summary>
    [Fact]
    public async Task With_pii_redaction_the_model_gets_the_tools_and_arguments_redacted()
    {
        var server = hermes.Server;
        using var policy = await server.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium" }, pii = "redact", blocklists = Array.Empty<string>() });
        Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());
        try
        {
            async Task<int> PromptTokens(string mail, string escapedMail)
            {
                var tools = JsonNode.Parse($$$"""[{"type":"function","function":{"name":"send","description":"Mail {{{mail}}}"}}]""");
                var call = new { id = "call_1", type = "function", function = new { name = "send", arguments = $$$"""{"to": "{{{escapedMail}}}"}""" } };
                var body = new Dictionary<string, object?>
                {
                    ["model"] = TinyModelServer.ModelName, ["max_tokens"] = 1, ["tools"] = tools, ["tool_choice"] = "none",
                    ["messages"] = new object[] { new { role = "user", content = "Mail." }, new { role = "assistant", tool_calls = new[] { call } }, new { role = "tool", tool_call_id = "call_1", content = "sent" } },
                };
                using var response = await server.Http.PostAsJsonAsync("/v1/chat/completions", body);
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, text);
                return (int)JsonNode.Parse(text)!["usage"]!["prompt_tokens"]!;
            }
            Assert.Equal(await PromptTokens("[EMAIL]", "[EMAIL]"), await PromptTokens("john.doe@example.com", "jane.roe\\u0040example.com"));
        }
        finally
        {
            using var reset = await server.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
        }
    }
}

/// <summary>The tiny model's plain template with serve's --tool-call-parser llama3_json.</summary>
public sealed class ParserOptionServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { ToolCallParser = Inference.ToolCallParser.Of("llama3_json") };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class ToolCallParserOptionTests(ParserOptionServer served) : IClassFixture<ParserOptionServer>
{
    [Fact]
    public async Task Serve_s_tool_call_parser_lets_auto_read_a_model_whose_template_says_nothing()
    {
        Assert.Equal("llama3_json", served.Server.Model.ToolCallParser?.Name);
        var body = new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName, ["messages"] = new[] { new { role = "user", content = "Hi" } }, ["max_tokens"] = 5, ["temperature"] = 1, ["seed"] = 2,
            ["tools"] = ToolCallingTests.Tools, ["tool_choice"] = "auto",
        };
        using var response = await served.Server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        Assert.Equal("length", (string)JsonNode.Parse(text)!["choices"]![0]!["finish_reason"]!);
    }
}
