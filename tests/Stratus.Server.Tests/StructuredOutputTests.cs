// response_format json_schema over HTTP (OpenAI's Structured Outputs): a choice that ends with stop
// is a document valid against the schema, streamed or not, on both generation endpoints; a
// malformed json_schema, a keyword that is not enforced, and a schema the vocabulary cannot spell
// are 400s in the API's error format, and the engine runs on.
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class StructuredOutputTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    /// <summary>Short keys, for the tiny model's context of 128.</summary>
    static readonly JsonNode Record = JsonNode.Parse("""
        {"type":"object","properties":{"n":{"type":"string"},"a":{"type":"integer"},"ok":{"type":["boolean","null"]},"t":{"type":"array","items":{"enum":["x","yz"]},"maxItems":2}},
        "required":["n","a","ok","t"],"additionalProperties":false}
        """)!;

    static object Format(JsonNode? schema, string? name = "record", bool? strict = true) => new { type = "json_schema", json_schema = new { name, schema, strict } };

    int Id(char c) => fixture.Model.Tokenizer.Encode(c.ToString()).Single();

    /// <summary>The random model's strings, numbers and whitespace run on: a bias to close them, as a trained model would.</summary>
    Dictionary<string, double> Closing => new()
    {
        [Id('"').ToString()] = 5, [Id(',').ToString()] = 4, [Id(']').ToString()] = 4, [Id('}').ToString()] = 4, [Id(' ').ToString()] = -10, [Id('\n').ToString()] = -10,
    };

    Dictionary<string, object?> Chat(object? responseFormat, bool stream = false, int n = 4) => new()
    {
        ["model"] = TinyModelServer.ModelName,
        ["messages"] = new[] { new { role = "user", content = "A record." } },
        ["max_tokens"] = 80, ["temperature"] = 1, ["seed"] = 5, ["n"] = n, ["stream"] = stream,
        ["logit_bias"] = Closing, ["response_format"] = responseFormat,
    };

    async Task<(HttpStatusCode Status, string Text)> Send(string path, object body)
    {
        using var response = await fixture.Http.PostAsJsonAsync(path, body);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Whether the text is a record as the schema describes it.</summary>
    static bool IsRecord(string text)
    {
        try
        {
            var root = JsonDocument.Parse(text).RootElement;
            return root.ValueKind == JsonValueKind.Object
                && root.EnumerateObject().Select(p => p.Name).SequenceEqual(["n", "a", "ok", "t"])
                && root.GetProperty("n").ValueKind == JsonValueKind.String
                && root.GetProperty("a").ValueKind == JsonValueKind.Number && root.GetProperty("a").GetRawText().All(c => c == '-' || char.IsAsciiDigit(c))
                && root.GetProperty("ok").ValueKind is JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null
                && root.GetProperty("t").GetArrayLength() <= 2 && root.GetProperty("t").EnumerateArray().All(v => v.GetString() is "x" or "yz");
        }
        catch (JsonException) { return false; }
    }

    [Fact]
    public async Task Chat_and_completions_choices_that_stop_follow_the_schema_streamed_or_not()
    {
        // The premise: the same request in free text gives no such record.
        var (_, free) = await Send("/v1/chat/completions", Chat(null));
        Assert.All(JsonNode.Parse(free)!["choices"]!.AsArray(), c => Assert.False(IsRecord((string)c!["message"]!["content"]!)));

        var (status, text) = await Send("/v1/chat/completions", Chat(Format(Record)));
        Assert.True(status == HttpStatusCode.OK, text);
        var choices = JsonNode.Parse(text)!["choices"]!.AsArray().Select(c => ((string)c!["message"]!["content"]!, (string)c["finish_reason"]!)).ToList();
        Assert.Contains(choices, c => c.Item2 == "stop");
        foreach (var (content, finish) in choices.Where(c => c.Item2 == "stop")) Assert.True(IsRecord(content), content);

        // Streamed: the same seed, the same texts.
        using var response = await fixture.Http.PostAsJsonAsync("/v1/chat/completions", Chat(Format(Record, strict: false), stream: true));
        var streamed = new StringBuilder[4].Select(_ => new StringBuilder()).ToArray();
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
            foreach (var choice in JsonNode.Parse(line["data: ".Length..])!["choices"]!.AsArray())
                streamed[(int)choice!["index"]!].Append((string?)choice["delta"]!["content"]);
        Assert.Equal(choices.Select(c => c.Item1), streamed.Select(s => s.ToString()));

        var (completionStatus, completion) = await Send("/v1/completions", new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName, ["prompt"] = "{", ["max_tokens"] = 80, ["n"] = 4, ["seed"] = 6,
            ["logit_bias"] = Closing, ["response_format"] = Format(Record),
        });
        Assert.True(completionStatus == HttpStatusCode.OK, completion);
        var texts = JsonNode.Parse(completion)!["choices"]!.AsArray().Where(c => (string?)c!["finish_reason"] == "stop").Select(c => (string)c!["text"]!).ToList();
        Assert.NotEmpty(texts);
        Assert.All(texts, t => Assert.True(IsRecord(t), t));
    }

    /// <summary>What openai's zodResponseFormat writes (zod 4) for z.object({t: z.number().int(),
    /// d: z.number().int().min(1).max(31), p: z.number().int().positive()}): JavaScript's safe
    /// integers as bounds, with the day's and positive's in their place.</summary>
    static readonly JsonNode ZodIntegers = JsonNode.Parse("""
        {"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"t":{"type":"integer","minimum":-9007199254740991,"maximum":9007199254740991},
        "d":{"type":"integer","minimum":1,"maximum":31},"p":{"type":"integer","exclusiveMinimum":0,"maximum":9007199254740991}},"required":["t","d","p"],"additionalProperties":false}
        """)!;

    /// <summary>The contents of the choices that stopped, of 8 answers to the schema under each of three
    /// seeds; at least one.</summary>
    async Task<List<string>> StoppedChoices(JsonNode schema)
    {
        var texts = new List<string>();
        foreach (var seed in new[] { 5, 6, 7 })
        {
            var body = Chat(Format(schema), n: 8);
            body["seed"] = seed;
            var (status, text) = await Send("/v1/chat/completions", body);
            Assert.True(status == HttpStatusCode.OK, text);
            texts.AddRange(JsonNode.Parse(text)!["choices"]!.AsArray().Where(c => (string?)c!["finish_reason"] == "stop").Select(c => (string)c!["message"]!["content"]!));
        }
        Assert.NotEmpty(texts);
        return texts;
    }

    [Fact]
    public async Task Zods_integer_schema_is_taken_and_every_choice_that_stops_keeps_to_its_bounds()
    {
        foreach (var text in await StoppedChoices(ZodIntegers))
        {
            var root = JsonDocument.Parse(text).RootElement;
            Assert.True(root.GetProperty("t").TryGetInt64(out var t) && Math.Abs(t) <= 9007199254740991, text);
            Assert.True(root.GetProperty("d").TryGetInt64(out var d) && d is >= 1 and <= 31, text);
            Assert.True(root.GetProperty("p").TryGetInt64(out var p) && p is > 0 and <= 9007199254740991, text);
        }
    }

    /// <summary>What pydantic writes (with the openai SDK's additionalProperties false) for
    /// r: confloat(ge=0, le=1), t: float = Field(gt=-273.15, lt=100, multiple_of=0.01),
    /// c: int = Field(ge=0, multiple_of=5).</summary>
    static readonly JsonNode PydanticNumbers = JsonNode.Parse("""
        {"properties":{"r":{"maximum":1,"minimum":0,"title":"R","type":"number"},"t":{"exclusiveMaximum":100,"exclusiveMinimum":-273.15,"multipleOf":0.01,"title":"T","type":"number"},
        "c":{"minimum":0,"multipleOf":5,"title":"C","type":"integer"}},"required":["r","t","c"],"title":"Reading","type":"object","additionalProperties":false}
        """)!;

    /// <summary>What openai's zodResponseFormat writes (zod 4) for z.object({s: z.number().min(0).max(1),
    /// p: z.number().positive().max(99.5), k: z.number().multipleOf(5), n: z.number().min(-0.5).lt(0.5)}).</summary>
    static readonly JsonNode ZodNumbers = JsonNode.Parse("""
        {"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"s":{"type":"number","minimum":0,"maximum":1},
        "p":{"type":"number","exclusiveMinimum":0,"maximum":99.5},"k":{"type":"number","multipleOf":5},"n":{"type":"number","minimum":-0.5,"exclusiveMaximum":0.5}},
        "required":["s","p","k","n"],"additionalProperties":false}
        """)!;

    public static TheoryData<string> NumberSchemas => ["pydantic", "zod"];

    [Theory]
    [MemberData(nameof(NumberSchemas))]
    public async Task Pydantic_and_zod_number_bounds_are_taken_and_every_choice_that_stops_keeps_to_them(string writer)
    {
        var schema = writer == "pydantic" ? PydanticNumbers : ZodNumbers;
        foreach (var text in await StoppedChoices(schema))
        {
            var root = JsonDocument.Parse(text).RootElement;
            decimal Value(string name) => root.GetProperty(name).GetDecimal();
            if (writer == "pydantic")
            {
                Assert.True(Value("r") is >= 0 and <= 1, text);
                Assert.True(Value("t") is > -273.15m and < 100 && Value("t") % 0.01m == 0, text);
                Assert.True(Value("c") >= 0 && Value("c") % 5 == 0 && root.GetProperty("c").TryGetInt64(out _), text);
            }
            else
            {
                Assert.True(Value("s") is >= 0 and <= 1, text);
                Assert.True(Value("p") is > 0 and <= 99.5m, text);
                Assert.True(Value("k") % 5 == 0, text);
                Assert.True(Value("n") is >= -0.5m and < 0.5m, text);
            }
        }
    }

    [Theory]
    [InlineData("""{"type":"json_schema"}""", "response_format.json_schema", "Missing required parameter")]
    [InlineData("""{"type":"json_schema","json_schema":"record"}""", "response_format.json_schema", "Invalid type")]
    [InlineData("""{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}""", "response_format.json_schema.name", "Missing required parameter")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"a record","schema":{"type":"object"}}}""", "response_format.json_schema.name", "must be 1 to 64 letters")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","schema":{"type":"object"}}}""", "response_format.json_schema.name", "must be 1 to 64 letters")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","strict":"yes","schema":{"type":"object"}}}""", "response_format.json_schema.strict", "Invalid type")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r"}}""", "response_format.json_schema.schema", "Missing required parameter")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":"object"}}""", "response_format.json_schema.schema", "Invalid type")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"a":{"$ref":"#/$defs/b"}}}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema.properties.a.$ref '#/$defs/b' cannot be resolved")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"ratio":{"type":"number","multipleOf":0.3}}}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema.properties.ratio.multipleOf 0.3 is not supported: Stratus enforces a multipleOf that is a whole number up to 1000000 or a power of ten below 1")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"score":{"type":"number","minimum":1,"maximum":0.5}}}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema.properties.score allows no number: minimum 1, maximum 0.5")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"qty":{"type":"integer","minimum":1,"maximum":4,"multipleOf":5}}}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema.properties.qty allows no multiple of 5: minimum 1, maximum 4")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"array"}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema must describe an object")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"d":{"type":"integer","minimum":5,"maximum":3}}}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema.properties.d allows no integer: minimum 5, maximum 3")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"at":{"anyOf":[{"type":"string","format":"date-time","pattern":"^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d+)?Z$"},{"type":"null"}]}},"required":["at"]}}}""", "response_format.json_schema.schema", "response_format.json_schema.schema.properties.at.anyOf[0].pattern is not supported: Stratus does not enforce it (the string's contents are free), and without that alternative only null would be left")]
    [InlineData("""{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"é":{"type":"string"}},"required":["é"]}}}""", "response_format.json_schema.schema", "vocabulary has none for é")]
    public async Task A_malformed_or_unenforceable_json_schema_is_a_400_naming_it_and_the_engine_runs_on(string format, string? param, string message)
    {
        foreach (var path in new[] { "/v1/chat/completions", "/v1/completions" })
            foreach (var stream in new[] { false, true })
            {
                var (status, text) = await fixture.PostWithResponseFormatAsync(path, format, stream);
                Assert.True(status == HttpStatusCode.BadRequest, $"{path}: {(int)status} {text}");
                var error = JsonNode.Parse(text)!["error"]!;
                Assert.Equal(("invalid_request_error", param), ((string?)error["type"], (string?)error["param"]));
                Assert.Contains(message, (string)error["message"]!);
                Assert.DoesNotContain("\n", (string)error["message"]!);
            }
        Assert.True(fixture.Model.Engine.IsHealthy);
        Assert.Equal(0, fixture.Model.Engine.KvBlocksUsed);
    }
}
