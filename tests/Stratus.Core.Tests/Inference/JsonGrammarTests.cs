// JSON mode's recognizer: every prefix of a JSON object is viable and only the whole is complete;
// what RFC 8259 (or the top-level object, depth and whitespace bounds) rules out is rejected at
// the first byte that rules it out; and on texts System.Text.Json can judge, the two agree.
using System.Text;
using System.Text.Json;
using Stratus.Inference;

namespace Stratus.Tests.Inference;

public sealed class JsonGrammarTests
{
    static (bool Viable, bool Complete) Read(string text)
    {
        var json = new JsonGrammar();
        return json.Accept(Encoding.UTF8.GetBytes(text)) ? (true, json.IsComplete) : (false, false);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData(" \n{ }")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\": {\"b\": [1, 2.5, -0.1e+10, 0, -0, 1E5, 3e-2, 10.25E-0]}, \"c\": []}")]
    [InlineData("{\"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00 end\"}")]
    [InlineData("{\"t\": true, \"f\": false, \"n\": null, \"l\": [true,false,null]}")]
    [InlineData("{\"nested\": [[[]], {}, [{}], {\"x\": {\"y\": {}}}]}")]
    [InlineData("{\"é\": \"日本語 😀\"}")]
    [InlineData("{\n  \"a\" : 1 ,\r\n\t\"b\":2\n}")]
    public void Json_objects_are_complete_and_every_prefix_of_them_is_viable(string text)
    {
        Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);
        Assert.Equal((true, true), Read(text));
        var bytes = Encoding.UTF8.GetBytes(text);
        var json = new JsonGrammar();
        for (var i = 0; i < bytes.Length - 1; i++)
        {
            Assert.True(json.Accept(bytes[i]), $"rejected byte {i} of {text}");
            Assert.False(json.IsComplete, $"complete after {i + 1} bytes of {text}");
        }
    }

    [Fact]
    public void Pretty_printed_objects_are_complete()
    {
        var value = new { name = "Ada", tags = new[] { "a", "b" }, inner = new { depth = new[] { new { x = 1.5, y = (int?)null, z = true } } } };
        Assert.Equal((true, true), Read(JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true })));
        Assert.Equal((true, true), Read(JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true, IndentSize = 4 })));
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("\"x\"")]
    [InlineData("1")]
    [InlineData("true")]
    [InlineData("null")]
    [InlineData("{\"a\":1,}")]
    [InlineData("{\"a\":[1,]}")]
    [InlineData("{,}")]
    [InlineData("{\"a\":01}")]
    [InlineData("{\"a\":-01}")]
    [InlineData("{\"a\":00}")]
    [InlineData("{\"a\":1.}")]
    [InlineData("{\"a\":.5}")]
    [InlineData("{\"a\":+1}")]
    [InlineData("{\"a\":1e}")]
    [InlineData("{\"a\":1e+}")]
    [InlineData("{\"a\":-}")]
    [InlineData("{\"a\":1.5.2}")]
    [InlineData("{\"a\":\"x\ty\"}")]
    [InlineData("{\"a\":\"x\ny\"}")]
    [InlineData("{\"a\":\"\u0001\"}")]
    [InlineData("{\"a\":\"\\q\"}")]
    [InlineData("{\"a\":\"\\u12G4\"}")]
    [InlineData("{\"a\":tru}")]
    [InlineData("{\"a\":True}")]
    [InlineData("{\"a\":nul}")]
    [InlineData("{\"a\":NaN}")]
    [InlineData("{\"a\":Infinity}")]
    [InlineData("{a:1}")]
    [InlineData("{'a':1}")]
    [InlineData("{\"a\" 1}")]
    [InlineData("{\"a\"::1}")]
    [InlineData("{\"a\":1 \"b\":2}")]
    [InlineData("{\"a\":1]")]
    [InlineData("{\"a\":[1}")]
    [InlineData("{\"a\":1}}")]
    [InlineData("{\"a\":1} ")]
    [InlineData("{\"a\":1}{}")]
    [InlineData("{} x")]
    [InlineData("x{}")]
    public void What_is_not_the_beginning_of_one_json_object_is_rejected(string text) =>
        Assert.False(Read(text).Viable);

    [Theory]
    [InlineData("{")]
    [InlineData(" ")]
    [InlineData("{\"a\": [1, {\"b\": \"c")]
    [InlineData("{\"a\": 1")]
    [InlineData("{\"a\": \"\\u00")]
    [InlineData("{\"a\": fal")]
    [InlineData("{\"a\": -1.5e")]
    public void Unclosed_objects_are_viable_but_not_complete(string text) =>
        Assert.Equal((true, false), Read(text));

    [Fact]
    public void Nesting_is_bounded_at_the_max_depth()
    {
        static string Nested(int depth) => "{\"a\":" + new string('[', depth - 1) + new string(']', depth - 1) + "}";
        Assert.Equal((true, true), Read(Nested(JsonGrammar.MaxDepth)));
        Assert.False(Read(Nested(JsonGrammar.MaxDepth + 1)).Viable);
        Assert.False(Read(new string('{', 1) + string.Concat(Enumerable.Repeat("\"a\":{", JsonGrammar.MaxDepth))).Viable);
    }

    [Fact]
    public void Whitespace_between_tokens_is_bounded_and_whitespace_in_strings_is_not()
    {
        var most = new string(' ', JsonGrammar.MaxWhitespace);
        var tooMuch = most + "\n";
        Assert.Equal((true, true), Read(most + "{" + most + "\"a\"" + most + ":" + most + "1" + most + "}"));
        Assert.False(Read(tooMuch + "{}").Viable);
        Assert.False(Read("{" + tooMuch + "}").Viable);
        Assert.False(Read("{\"a\":1" + tooMuch + "}").Viable);
        Assert.False(Read("{\"a\":" + tooMuch + "1}").Viable);
        Assert.Equal((true, true), Read("{\"a\":\"" + new string(' ', 4 * JsonGrammar.MaxWhitespace) + "\"}"));
    }

    /// <summary>Random edits of JSON objects (ASCII, shallow, little whitespace, so within the
    /// bounds): the recognizer finds a whole object exactly where System.Text.Json parses one,
    /// but for the whitespace after it, which JSON mode never writes (once the object is whole
    /// only an end is allowed).</summary>
    [Fact]
    public void Agrees_with_System_Text_Json_on_edited_objects()
    {
        string[] seeds =
        [
            "{\"a\":1}", "{}", "{\"k\": [1, -2.5e3, true, null, \"s\\\"t\"], \"o\": {\"x\": false}}",
            "{\"a\": {\"b\": {\"c\": []}}, \"d\": 0.5}", "{\"u\": \"\\u00e9\\n\", \"e\": 1E-2}",
        ];
        const string alphabet = "{}[]\":,.-+eE0123456789 \n\ttfnrulasx\\/u";
        var random = new Random(5);
        var agreedValid = 0;
        for (var trial = 0; trial < 20_000; trial++)
        {
            var text = new StringBuilder(seeds[random.Next(seeds.Length)]);
            for (var edits = random.Next(1, 4); edits > 0; edits--)
            {
                var at = random.Next(text.Length + 1);
                var c = alphabet[random.Next(alphabet.Length)];
                switch (random.Next(3))
                {
                    case 0: text.Insert(at, c); break;
                    case 1 when at < text.Length: text.Remove(at, 1); break;
                    default: if (at < text.Length) text[at] = c; break;
                }
            }
            var candidate = text.ToString();
            bool parses;
            try { parses = JsonDocument.Parse(candidate).RootElement.ValueKind == JsonValueKind.Object; }
            catch (JsonException) { parses = false; }
            Assert.True(parses == Read(candidate.TrimEnd(' ', '\n', '\t')).Complete, $"System.Text.Json {(parses ? "parses" : "refuses")} {JsonSerializer.Serialize(candidate)}");
            if (parses) agreedValid++;
        }
        // Both sides of the comparison are exercised.
        Assert.InRange(agreedValid, 500, 19_500);
    }
}
