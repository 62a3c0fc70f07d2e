// Structured outputs' recognizer: a document valid against the schema (in the subset written:
// keys in the schema's order, literals compact) is accepted byte by byte and complete only at its
// end; one that is not is refused at the first byte that makes it so; keywords not enforced are
// refused where they are, or drop the union alternative they sit on; and random walks through the
// grammar never meet a dead end and end in documents a validator of the schema accepts.
using System.Text;
using System.Text.Json;
using Stratus.Inference;

namespace Stratus.Tests.Inference;

public sealed class JsonSchemaTests
{
    /// <summary>What Microsoft.Extensions.AI 10.11's AIJsonUtilities.CreateJsonSchema writes for a
    /// record with a string, an int, a double, a bool, an enum, a nullable string, a list and a
    /// nested record.</summary>
    internal const string Person = """
        {"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
        "score":{"type":"number"},"alive":{"type":"boolean"},"mood":{"type":"string","enum":["Happy","Sad"]},"nick":{"type":["string","null"]},
        "tags":{"type":"array","items":{"type":"string"}},"home":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"integer"}},"required":["city","zip"]}},
        "required":["name","age","score","alive","mood","nick","tags","home"]}
        """;

    const string Tree = """
        {"type":"object","properties":{"name":{"type":"string"},"kids":{"type":["array","null"],"items":{"$ref":"#"}}},"required":["name","kids"]}
        """;

    const string Defs = """
        {"type":"object","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],"additionalProperties":false}},
        "properties":{"list":{"$ref":"#/$defs/node"},"colors":{"type":"array","items":{"enum":["red","green",1,12,null,{"a":[true]}]},"minItems":1,"maxItems":3}},"required":["list"]}
        """;

    const string Unions = """
        {"type":"object","properties":{"x":{"anyOf":[{"type":"string"},{"type":"integer"},{"type":"object","properties":{"k":{"const":"v"}},"required":["k"]},{"type":"array","maxItems":0},{"type":"boolean"}]},
        "id":{"type":["string","integer"],"pattern":"^-?(?:0|[1-9]\\d*)$"},"opt":{"type":"number"},"free":{},"map":{"type":"object","additionalProperties":{"type":"integer"}}},"required":["x","id","free"]}
        """;

    static JsonSchema Schema(string json, string path = "schema") => JsonSchema.Compile(JsonDocument.Parse(json).RootElement, path);

    /// <summary>The index of the first byte refused, or -1; and whether the text is a whole document.</summary>
    static (int Refused, bool Complete) Read(string schema, string text)
    {
        var json = new JsonGrammar(Schema(schema));
        var bytes = Encoding.UTF8.GetBytes(text);
        for (var i = 0; i < bytes.Length; i++)
            if (!json.Accept(bytes[i])) return (i, false);
        return (-1, json.IsComplete);
    }

    static void AssertValid(string schema, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var json = new JsonGrammar(Schema(schema));
        for (var i = 0; i < bytes.Length; i++)
        {
            Assert.False(json.IsComplete, $"complete after {i} bytes of {text}");
            Assert.True(json.Accept(bytes[i]), $"refused byte {i} ('{(char)bytes[i]}') of {text}");
        }
        Assert.True(json.IsComplete, text);
        Assert.True(Validate(JsonDocument.Parse(schema).RootElement, JsonDocument.Parse(text).RootElement), text);
    }

    /// <summary>Refused exactly at the byte where <paramref name="marked"/> has '¦' (which is taken out).</summary>
    static void AssertRefusedAt(string schema, string marked)
    {
        var at = Encoding.UTF8.GetByteCount(marked[..marked.IndexOf('¦')]);
        Assert.Equal((at, false), Read(schema, marked.Replace("¦", "")));
    }

    [Theory]
    [InlineData(Person, """{"name":"Ada","age":36,"score":-1.5e3,"alive":true,"mood":"Sad","nick":null,"tags":["a","b"],"home":{"city":"London","zip":0}}""")]
    [InlineData(Person, "{ \"name\" : \"\\u00e9\\\"\" ,\n \"age\":-7, \"score\":0, \"alive\":false, \"mood\":\"Happy\", \"nick\":\"x\", \"tags\":[], \"home\":{\"city\":\"\",\"zip\":12}}")]
    [InlineData(Tree, """{"name":"a","kids":[{"name":"b","kids":null},{"name":"c","kids":[{"name":"d","kids":[]}]}]}""")]
    [InlineData(Defs, """{"list":{"v":1,"next":null},"colors":[{"a":[true]},12 , 1]}""")]
    [InlineData(Defs, """{"list":{"v":0,"next":null}}""")]
    [InlineData(Unions, """{"x":"s","id":-12,"free":[1,{"a":null}],"map":{"a":1,"b":2}}""")]
    [InlineData(Unions, """{"x":{"k":"v"},"id":0,"opt":2.5,"free":"x"}""")]
    [InlineData(Unions, """{"x":[],"id":3,"free":{}}""")]
    [InlineData(Unions, """{"x":true,"id":3,"free":null}""")]
    public void Valid_documents_are_accepted_byte_by_byte_and_complete_only_at_their_end(string schema, string text) => AssertValid(schema, text);

    [Theory]
    // Keys in the schema's order, each required one present, no others.
    [InlineData(Person, """{"¦age":36}""")]
    [InlineData(Person, """{"name":"Ada"¦}""")]
    [InlineData(Person, """{"name":"Ada",¦}""")]
    [InlineData(Person, """{"name":"Ada","age":1¦.5}""")]
    [InlineData(Person, """{"name":"Ada","age":1¦e5}""")]
    [InlineData(Person, """{"name":¦1}""")]
    [InlineData(Person, """{"name":"Ada","age":1,"score":1,"alive":¦"yes"}""")]
    [InlineData(Person, """{"name":"Ada","age":1,"score":1,"alive":true,"mood":"H¦u"}""")]
    [InlineData(Person, """{"name":"Ada","age":1,"score":1,"alive":true,"mood":"Happy","nick":¦true}""")]
    [InlineData(Person, """{"name":"Ada","age":1,"score":1,"alive":true,"mood":"Happy","nick":null,"tags":[¦1]}""")]
    // Half of a surrogate pair, in a string or a key: System.Text.Json would not read it.
    [InlineData(Person, """{"name":"\ud800¦x""")]
    [InlineData(Person, """{"name":"\udbff\u¦0041""")]
    [InlineData(Person, """{"name":"\ud83d\ud¦83d""")]
    [InlineData(Person, """{"name":"\ud¦c00\ud800""")]
    [InlineData(Unions, """{"x":1,"id":1,"free":1,"map":{"\uD83D¦":1}}""")]
    [InlineData(Defs, """{"list":{"v":0,"next":null}}¦ """)]
    [InlineData(Defs, """{"list":{"v":0,"next":null¦,"extra":1}}""")]
    [InlineData(Defs, """{"list":{"v":0,"next":null},"colors":[¦]}""")]
    [InlineData(Defs, """{"list":{"v":1,"next":{"v":-2,"next":null}},"colors":["red",12,1¦,null]}""")]
    [InlineData(Defs, """{"list":{"v":0,"next":null},"colors":["¦blue"]}""")]
    [InlineData(Defs, """{"list":{"v":0,"next":null},"colors":[{"a":[true¦ ]}]}""")]
    [InlineData(Defs, """{"list":{"v":0,"next":null},"colors":[1¦3]}""")]
    [InlineData(Defs, """¦[]""")]
    // The string branch of a union carrying a pattern is dropped; the array branch takes no items.
    [InlineData(Unions, """{"x":"s","id":¦"12"}""")]
    [InlineData(Unions, """{"x":[¦1]}""")]
    [InlineData(Unions, """{"x":1,"id":1¦}""")]
    [InlineData(Unions, """{"x":1,"id":1,"free":1,"map":{"a":¦"b"}}""")]
    public void Invalid_documents_are_refused_at_the_first_byte_that_makes_them_so(string schema, string marked) => AssertRefusedAt(schema, marked);

    [Fact]
    public void Properties_not_required_may_be_skipped_and_keys_stay_in_order()
    {
        const string schema = """{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},"c":{"type":"integer"},"d":{"type":"integer"}},"required":["c"]}""";
        foreach (var text in new[] { """{"c":1}""", """{"a":1,"c":1}""", """{"b":1,"c":1,"d":2}""", """{"a":1,"b":2,"c":3,"d":4}""" }) AssertValid(schema, text);
        AssertRefusedAt(schema, """{¦}""");
        AssertRefusedAt(schema, """{"¦d":1}""");
        AssertRefusedAt(schema, """{"b":1,"¦a":1}""");
        AssertRefusedAt(schema, """{"c":1,"d":1¦,""");
    }

    [Fact]
    public void Nesting_is_bounded_and_recursion_stops_where_the_shortest_value_no_longer_fits()
    {
        // Each level of Tree is an object and an array: 16 objects fill the 32 levels, and the
        // 16th may not open its kids' array, whose object would be the 17th.
        var text = new StringBuilder();
        for (var level = 0; level < JsonGrammar.MaxDepth / 2 - 1; level++) text.Append("{\"name\":\"\",\"kids\":[");
        AssertValid(Tree, text + "{\"name\":\"\",\"kids\":[]}" + string.Concat(Enumerable.Repeat("]}", JsonGrammar.MaxDepth / 2 - 1)));
        var json = new JsonGrammar(Schema(Tree));
        Assert.True(json.Accept(Encoding.UTF8.GetBytes(text + "{\"name\":\"\",\"kids\":[")));
        Assert.False(json.Accept((byte)'{'));
        // A required recursion has no finite document at all.
        var endless = Assert.Throws<StratusUserException>(() => Schema("""{"type":"object","properties":{"again":{"$ref":"#"}},"required":["again"]}"""));
        Assert.Contains("has no valid document", endless.Message);
    }

    [Theory]
    [InlineData("""{"type":"object","properties":{"ratio":{"type":"number","multipleOf":0.3}}}""", "schema.properties.ratio.multipleOf 0.3 is not supported")]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","format":"email"}}}""", "schema.properties.s.format is not supported")]
    [InlineData("""{"type":"object","properties":{"s":{"format":"hostname"}}}""", "schema.properties.s.format is not supported")]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","format":"date","maxLength":8}}}""", "schema.properties.s.maxLength is not supported beside format \"date\", whose values have 10 to 10 characters")]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","maxLength":65536}}}""", "schema.properties.s.maxLength is not supported above 65535, got 65536")]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","minLength":-1}}}""", "schema.properties.s.minLength must be a whole number, 0 or more, got -1")]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","minLength":3,"maxLength":2}},"required":["s"]}""", "schema has no valid document")]
    [InlineData("""{"type":"object","properties":{"s":{"type":"string","format":"date","enum":["2024-02-30","today"]}},"required":["s"]}""", "schema has no valid document")]
    [InlineData("""{"type":"object","properties":{"s":{"oneOf":[{"type":"string"}]}}}""", "schema.properties.s.oneOf is not supported")]
    [InlineData("""{"type":"object","patternProperties":{"a":{}}}""", "schema.patternProperties is not supported")]
    [InlineData("""{"type":"object","properties":{"s":{"anyOf":[{"type":"string","pattern":"a"},{"type":"string","format":"email"}]}}}""", "schema.properties.s.anyOf[0].pattern is not supported")]
    [InlineData("""{"type":"object","properties":{"s":{"$ref":"#/$defs/missing"}}}""", "schema.properties.s.$ref '#/$defs/missing' cannot be resolved")]
    [InlineData("""{"type":"object","properties":{"s":{"$ref":"https://example.com/s.json"}}}""", "schema.properties.s.$ref 'https://example.com/s.json' cannot be resolved")]
    [InlineData("""{"type":"string"}""", "schema must describe an object")]
    [InlineData("""{"anyOf":[{"type":"object"},{"type":"array"}]}""", "schema must describe an object")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"text"}}}""", "schema.properties.a.type must be one of")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"array","minItems":2,"maxItems":1}},"required":["a"]}""", "schema has no valid document")]
    [InlineData("""{"type":"object","properties":{"a":{"enum":[]}},"required":["a"]}""", "schema has no valid document")]
    [InlineData("""[]""", "schema must be an object")]
    // Half of a surrogate pair is no text: System.Text.Json refuses to read it (or write the schema back).
    [InlineData("""{"type":"object","properties":{"a":{"enum":["ok","\ud800"]}}}""", "schema.properties.a.enum[1] holds half of a surrogate pair")]
    [InlineData("""{"type":"object","properties":{"a":{"const":{"k":["x\udc00"]}}}}""", "schema.properties.a.const.k[0] holds half of a surrogate pair")]
    [InlineData("""{"type":"object","properties":{"\udfff":{"type":"string"}}}""", "schema.properties has a key that holds half of a surrogate pair")]
    [InlineData("""{"type":"object","required":["\ud83d"]}""", "schema.required[0] holds half of a surrogate pair")]
    public void What_is_not_enforced_or_not_well_formed_is_refused_naming_where(string schema, string message) =>
        Assert.StartsWith(message, Assert.Throws<StratusUserException>(() => Schema(schema)).Message);

    /// <summary>What Microsoft.Extensions.AI 10.11's AIJsonUtilities.CreateJsonSchema writes for a
    /// record of a DateTime, a DateTimeOffset, a DateOnly, a TimeOnly, a Guid, a Uri, a char and a
    /// DateTime?: <see cref="Stamped"/>.</summary>
    const string Stamps = """
        {"type":"object","properties":{"at":{"type":"string","format":"date-time"},"offset":{"type":"string","format":"date-time"},"day":{"type":"string","format":"date"},
        "time":{"type":"string","format":"time"},"id":{"type":"string","format":"uuid"},"site":{"type":"string","format":"uri"},"c":{"type":"string","minLength":1,"maxLength":1},
        "maybe":{"type":["string","null"],"format":"date-time"}},"required":["at","offset","day","time","id","site","c","maybe"]}
        """;

    sealed record Stamped(DateTime At, DateTimeOffset Offset, DateOnly Day, TimeOnly Time, Guid Id, Uri Site, char C, DateTime? Maybe);

    static string One(string format) => $$$"""{"type":"object","properties":{"v":{"type":"string",{{{format}}}}},"required":["v"]}""";

    [Theory]
    [InlineData("\"format\":\"date-time\"", "2024-02-28T23:59:59Z")]
    [InlineData("\"format\":\"date-time\"", "1000-12-31T00:00:00.1234567+14:00")]
    [InlineData("\"format\":\"date-time\"", "9998-04-30T12:30:00.5-13:59")]
    [InlineData("\"format\":\"date\"", "2023-11-30")]
    [InlineData("\"format\":\"time\"", "20:05:09")]
    [InlineData("\"format\":\"time\"", "00:00:00.0000001")]
    [InlineData("\"format\":\"uuid\"", "0123abcd-4567-89EF-aBcD-0123456789ab")]
    [InlineData("\"format\":\"uri\"", "http://a")]
    [InlineData("\"format\":\"uri\"", "https://example.com/a/b_c~d.e-f/")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "ab")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "é€😀")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "\\n\\\"\\u00e9")]
    [InlineData("\"minLength\":1", "\\u0041")]
    [InlineData("\"minLength\":1,\"maxLength\":1", "\\ud83d\\uDE00")]
    [InlineData("\"maxLength\":0", "")]
    public void Strings_of_a_format_or_length_are_accepted(string keywords, string value) => AssertValid(One(keywords), $$"""{"v":"{{value}}"}""");

    [Theory]
    // Months 01-12, days to the month's last (February's 28th), hours 00-23, minutes and seconds 00-59.
    [InlineData("\"format\":\"date\"", "2024-1¦3-01")]
    [InlineData("\"format\":\"date\"", "2024-0¦0-01")]
    [InlineData("\"format\":\"date\"", "2024-02-¦30")]
    [InlineData("\"format\":\"date\"", "2023-02-2¦9")]
    [InlineData("\"format\":\"date\"", "2024-04-3¦1")]
    [InlineData("\"format\":\"date\"", "2024-12-3¦2")]
    [InlineData("\"format\":\"date\"", "2024-01-0¦0")]
    [InlineData("\"format\":\"date\"", "¦0999-01-01")]
    [InlineData("\"format\":\"date\"", "999¦9-01-01")]
    [InlineData("\"format\":\"date\"", "2024¦/01/01")]
    [InlineData("\"format\":\"date\"", "2024-01¦")]
    [InlineData("\"format\":\"date\"", "2024-01-01¦T00:00:00Z")]
    [InlineData("\"format\":\"date\"", "2024-1¦-1")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T2¦4:00:00Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:¦60:00Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:¦60Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01¦ 10:00:00Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00¦Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00¦")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00¦z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00.¦Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00.1234567¦8Z")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00+1¦5:00")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00+14:¦30")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00+01¦00")]
    [InlineData("\"format\":\"date-time\"", "2024-01-01T10:00:00Z¦ ")]
    [InlineData("\"format\":\"time\"", "2¦5:00:00")]
    [InlineData("\"format\":\"time\"", "10:00¦")]
    [InlineData("\"format\":\"time\"", "10:00:00¦Z")]
    [InlineData("\"format\":\"time\"", "¦\\u0031")]
    [InlineData("\"format\":\"uuid\"", "0123abc¦g-4567-89ef-abcd-0123456789ab")]
    [InlineData("\"format\":\"uuid\"", "0123abcd¦4567")]
    [InlineData("\"format\":\"uuid\"", "0123abcd-4567-89ef-abcd-0123456789a¦")]
    [InlineData("\"format\":\"uuid\"", "0123abcd-4567-89ef-abcd-0123456789ab¦c")]
    [InlineData("\"format\":\"uri\"", "¦ftp://a")]
    [InlineData("\"format\":\"uri\"", "http://¦/x")]
    [InlineData("\"format\":\"uri\"", "http://¦A")]
    [InlineData("\"format\":\"uri\"", "http://a¦ b")]
    [InlineData("\"format\":\"uri\"", "http://a.¦")]
    [InlineData("\"format\":\"uri\"", "http://a.¦.b")]
    [InlineData("\"format\":\"uri\"", "http:¦")]
    // Characters, counted as code points: an escape is the one it stands for.
    [InlineData("\"minLength\":2,\"maxLength\":3", "a¦")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "😀¦")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "abc¦d")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "é€😀¦ü")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "\\n\\t\\u0041¦\\n")]
    [InlineData("\"minLength\":2,\"maxLength\":3", "\\\\¦")]
    // A surrogate pair's escapes are one character; half of one is no character.
    [InlineData("\"maxLength\":1", "\\ud83d\\ude00¦a")]
    [InlineData("\"maxLength\":1", "\\ud83d¦a")]
    [InlineData("\"maxLength\":1", "\\ud¦c00")]
    [InlineData("\"maxLength\":0", "¦a")]
    public void Strings_of_a_format_or_length_are_refused_at_the_first_byte_that_breaks_them(string keywords, string marked) =>
        AssertRefusedAt(One(keywords), $$"""{"v":"{{marked}}"}""");

    /// <summary>Pieces of a string's text whose joins System.Text.Json reads or refuses: UTF-8
    /// whole, cut, overlong (C0 80, E0 80 80), of a surrogate (ED A0 80) or past U+10FFFF (F4 90),
    /// stray continuation bytes, and surrogate escapes paired, lone or in the wrong order.</summary>
    static readonly byte[][] StringPieces =
    [
        .. new[] { "a", "é", "😀", "\\ud83d", "\\uDE00", "\\udbff", "\\udfff", "\\u0041", "\\n" }.Select(Encoding.UTF8.GetBytes),
        .. new byte[] { 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xA9, 0xBF, 0xC0, 0xC3, 0xE0, 0xE2, 0xED, 0xF0, 0xF4, 0xF5, 0xFF }.Select(b => new[] { b }),
    ];

    /// <summary>Every string the grammar completes, free, a key or counted, System.Text.Json
    /// reads as text, and every one it refuses it refuses too, whatever the cuts between tokens.</summary>
    [Theory]
    [InlineData("""{"type":"object","properties":{"v":{"type":"string"}},"required":["v"]}""", "{\"v\":\"", "\"}")]
    [InlineData("""{"type":"object"}""", "{\"", "\":1}")]
    [InlineData("""{"type":"object","properties":{"v":{"type":"string","maxLength":64}},"required":["v"]}""", "{\"v\":\"", "\"}")]
    public void Strings_are_exactly_those_System_Text_Json_reads_as_text(string schemaText, string before, string after)
    {
        var schema = Schema(schemaText);
        var random = new Random(3);
        var (read, refused) = (0, 0);
        for (var trial = 0; trial < 4000; trial++)
        {
            var text = new List<byte>(Encoding.UTF8.GetBytes(before));
            for (var pieces = random.Next(1, 5); pieces > 0; pieces--) text.AddRange(StringPieces[random.Next(StringPieces.Length)]);
            text.AddRange(Encoding.UTF8.GetBytes(after));
            var bytes = text.ToArray();
            var json = new JsonGrammar(schema);
            var accepted = true;
            for (var at = 0; accepted && at < bytes.Length;)
            {
                var token = Math.Min(random.Next(1, 12), bytes.Length - at);
                accepted = json.Accept(bytes.AsSpan(at, token));
                at += token;
            }
            var reads = ReadsAsText(bytes);
            Assert.True(reads == (accepted && json.IsComplete), $"{Convert.ToHexString(bytes)}: System.Text.Json {(reads ? "reads" : "refuses")} it");
            if (reads) read++;
            else refused++;
        }
        Assert.True(read > 200 && refused > 200, $"{read} read, {refused} refused");
    }

    /// <summary>Whether System.Text.Json parses the document and reads each of its strings and keys.</summary>
    static bool ReadsAsText(byte[] document)
    {
        try
        {
            using var parsed = JsonDocument.Parse(document);
            foreach (var property in parsed.RootElement.EnumerateObject())
                _ = (property.Name, property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : null);
            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) { return false; }
    }

    /// <summary>Every date of a year, every hour and minute and every offset: the grammar
    /// accepts those .NET reads (but February's 29th) and nothing else.</summary>
    [Fact]
    public void Dates_and_times_are_accepted_exactly_where_they_are_valid()
    {
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        for (var month = 0; month < 100; month++)
            for (var day = 0; day < 100; day++)
            {
                var text = $"2024-{month:00}-{day:00}";
                var valid = DateOnly.TryParseExact(text, "yyyy-MM-dd", out _) && !(month == 2 && day == 29);
                Assert.True(valid == (Read(One("\"format\":\"date\""), $$"""{"v":"{{text}}"}""") == (-1, true)), text);
            }
        for (var hour = 0; hour < 100; hour++)
            for (var minute = 0; minute < 100; minute++)
            {
                var text = $"{hour:00}:{minute:00}:{minute:00}";
                var valid = TimeOnly.TryParseExact(text, "HH:mm:ss", invariant, System.Globalization.DateTimeStyles.None, out _);
                Assert.True(valid == (Read(One("\"format\":\"time\""), $$"""{"v":"{{text}}"}""") == (-1, true)), text);
                var offset = $"2024-01-01T00:00:00+{hour:00}:{minute:00}";
                valid = hour * 60 + minute <= 14 * 60 && minute < 60;
                Assert.True(valid == (Read(One("\"format\":\"date-time\""), $$"""{"v":"{{offset}}"}""") == (-1, true)), offset);
            }
    }

    /// <summary>Random walks through a record of every format end in documents System.Text.Json
    /// reads into the .NET types whose schemas carry the formats.</summary>
    [Fact]
    public void Random_walks_through_formats_end_in_values_dotnet_reads()
    {
        var schema = Schema(Stamps);
        // ASCII: a byte of a character's UTF-8 after another's beginning is not read as text.
        var alphabet = Enumerable.Range(0x20, 0x5F).Select(b => (byte)b).ToArray();
        var random = new Random(5);
        var read = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        for (var walk = 0; walk < 200; walk++)
        {
            var state = new JsonGrammar(schema);
            var text = new List<byte>();
            var budget = random.Next(0, 400);
            while (!state.IsComplete && text.Count < budget)
            {
                var options = alphabet.Where(b => b is not ((byte)' ' or (byte)'\n') && new Func<bool>(() => { var next = state; return next.Accept(b); })()).ToArray();
                Assert.NotEmpty(options);
                // Strings close now and then, not at the first chance.
                var b = options.Contains((byte)'"') && random.Next(4) == 0 ? (byte)'"' : options[random.Next(options.Length)];
                Assert.True(state.Accept(b));
                text.Add(b);
            }
            if (!state.IsComplete) text.AddRange(ShortestCompletion(state, alphabet));
            var document = Encoding.UTF8.GetString([.. text]);
            Assert.True(Validate(JsonDocument.Parse(Stamps).RootElement, JsonDocument.Parse(document).RootElement), document);
            var stamped = JsonSerializer.Deserialize<Stamped>(document, read)!;
            Assert.True(stamped.Site.IsAbsoluteUri, document);
        }
    }

    /// <summary>A string of a format, or one that must reach its minLength, needs the characters
    /// that finish it from wherever it may have got to; the vocabulary is asked for them.</summary>
    [Fact]
    public void What_a_format_or_a_minLength_needs_is_asked_of_the_vocabulary()
    {
        var all = Schema(Stamps).Needs(_ => true, opensArrays: false).ToHashSet();
        // The first of each choice in byte order: '1' begins a year, '0' the rest, '+' an offset
        // (before 'Z'); "http://", and the char's first letter.
        Assert.True(all.IsSupersetOf(["0", "1", "-", ":", "T", "+", "h", "t", "p", "/", "a"]), string.Join(" ", all));
        Assert.DoesNotContain("9", all);
        // A vocabulary without '1' begins a year with '2', which one with it need not spell.
        Assert.DoesNotContain("2", Schema(One("\"format\":\"date\"")).Needs(_ => true, opensArrays: false));
        Assert.Contains("2", Schema(One("\"format\":\"date\"")).Needs(c => c is not "1", opensArrays: false));
        // A string of one character at least takes whichever the vocabulary has.
        Assert.Contains("a", Schema(One("\"minLength\":1")).Needs(_ => true, opensArrays: false));
        Assert.Equal(["\"", "0", ":", "b", "c", "v", "{", "}"], Schema(One("\"minLength\":1")).Needs(c => c is not "a", opensArrays: false).Order(StringComparer.Ordinal));
        Assert.DoesNotContain("a", Schema(One("\"maxLength\":1")).Needs(_ => true, opensArrays: false));
        // A vocabulary that can write the escape of a surrogate pair's high half (\ud8) must
        // write the low half's (\udc, 'c' above); one that cannot write the one needs neither.
        Assert.Contains("C", Schema(One("\"maxLength\":1")).Needs(c => c is not ("c" or "d" or "e" or "f"), opensArrays: false));
        Assert.DoesNotContain("c", Schema(One("\"maxLength\":1")).Needs(c => c is not "\\", opensArrays: false));
        Assert.DoesNotContain("c", Schema(One("\"format\":\"date\"")).Needs(_ => true, opensArrays: false));
    }

    [Fact]
    public void Enum_and_const_strings_keep_to_the_format_and_length()
    {
        const string schema = """{"type":"object","properties":{"d":{"type":"string","format":"date","enum":["2024-02-30","2024-03-01","soon"]},"c":{"type":"string","maxLength":1,"enum":["ab","é"]}},"required":["d","c"]}""";
        AssertValid(schema, """{"d":"2024-03-01","c":"é"}""");
        AssertRefusedAt(schema, """{"d":"2024-0¦2-30""");
        AssertRefusedAt(schema, """{"d":"¦soon""");
        AssertRefusedAt(schema, """{"d":"2024-03-01","c":"¦ab"}""");
    }

    /// <summary>An element nested past System.Text.Json's default 64 levels (an IChatClient
    /// caller's own parse) failed as "could not be serialized" instead of compiling.</summary>
    [Fact]
    public void A_schema_element_deeper_than_the_serializers_default_compiles()
    {
        const int Levels = 40;
        var json = "{\"type\":\"object\",\"properties\":{\"a\":" + string.Concat(Enumerable.Repeat("{\"type\":\"array\",\"items\":", Levels))
            + "{\"type\":\"string\"}" + new string('}', Levels) + "}}";
        using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 1000 });
        var schema = JsonSchema.Compile(document.RootElement);
        var grammar = new JsonGrammar(schema);
        Assert.True(grammar.Accept("""{"a":[[[]]]}"""u8) && grammar.IsComplete);
    }

    /// <summary>A chain of $refs, each to the next definition, nests the compiler once per link:
    /// 5,000 of them (150 KB, under the server's 1 MiB body) overflowed the stack of a request
    /// thread, which ends the process.</summary>
    [Fact]
    public void A_long_chain_of_refs_is_refused_not_a_stack_overflow()
    {
        static string Chain(int links) =>
            $"{{\"type\":\"object\",\"properties\":{{\"a\":{{\"$ref\":\"#/$defs/d0\"}}}},\"$defs\":{{"
            + string.Concat(Enumerable.Range(0, links).Select(i => $"\"d{i}\":{{\"$ref\":\"#/$defs/d{i + 1}\"}},"))
            + $"\"d{links}\":{{\"type\":\"string\"}}}}}}";
        AssertValid(Chain(100), """{"a":"x"}""");
        Exception? error = null;
        // A thread pool thread's stack (1.5 MiB on Linux), less what the server had on it.
        var thread = new Thread(() => error = Record.Exception(() => Schema(Chain(5_000))), 1 << 20);
        thread.Start();
        thread.Join();
        Assert.StartsWith("schema.$defs.d", Assert.IsType<StratusUserException>(error).Message);
        Assert.Contains("nests more than 256 schemas", error.Message);
    }

    /// <summary>What the vocabulary must spell (JsonSchema.Needs, asked before every request):
    /// each of 30 nested levels a union of an object and an array that both need the next level
    /// doubled the work (22 levels took a minute, 30 hours, from a 5 KB schema).</summary>
    [Fact]
    public async Task What_a_schema_needs_is_worked_out_once_per_node()
    {
        const int levels = 30;
        var defs = string.Concat(Enumerable.Range(0, levels).Select(i =>
            $"\"l{i}\":{{\"anyOf\":[{{\"type\":\"object\",\"properties\":{{\"x{i}\":{{\"$ref\":\"#/$defs/l{i + 1}\"}}}},\"required\":[\"x{i}\"]}},{{\"type\":\"array\",\"minItems\":1,\"items\":{{\"$ref\":\"#/$defs/l{i + 1}\"}}}}]}},"));
        var schema = Schema($"{{\"type\":\"object\",\"properties\":{{\"a\":{{\"$ref\":\"#/$defs/l0\"}}}},\"required\":[\"a\"],\"$defs\":{{{defs}\"l{levels}\":{{\"const\":\"end\"}}}}}}");
        // Finished in 20 s or a TimeoutException.
        var needs = await Task.Run(() => schema.Needs(_ => true, opensArrays: true).ToHashSet()).WaitAsync(TimeSpan.FromSeconds(20));
        // The array of each level comes first (its first byte, '[', sorts before '{'), down to the const.
        Assert.Superset(new HashSet<string> { "[", "]", "e", "n", "d", "x", "9" }, needs);
    }

    /// <summary>Values that cannot be written (items false, additionalProperties whose schema
    /// nothing satisfies) need no characters: asking crashed on the empty set of their texts
    /// (a 500 for every such request), and the mask leaves such arrays and maps empty.</summary>
    [Theory]
    [InlineData("""{"type":"object","properties":{"a":{"type":"array","items":false}},"required":["a"]}""", """{"a":[]}""")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"object","additionalProperties":{"enum":[]}}},"required":["a"]}""", """{"a":{}}""")]
    public void Values_that_cannot_be_written_need_nothing(string schemaText, string only)
    {
        var schema = Schema(schemaText);
        Assert.DoesNotContain("[", schema.Needs(_ => true, opensArrays: true).Where(c => c != "[" || !only.Contains("[")));
        AssertValid(schemaText, only);
        AssertRefusedAt(schemaText, only.Replace("[]", "[¦1]").Replace("{}", "{¦\"k\":1}"));
    }

    /// <summary>A const or enum text is a path of its length in the literal trie, which Needs
    /// walked by recursion: a 200,000-character const overflowed a request thread's stack.</summary>
    [Fact]
    public void A_long_const_is_read_back_without_recursion()
    {
        var text = new string('a', 200_000);
        var schema = Schema($"{{\"type\":\"object\",\"properties\":{{\"a\":{{\"const\":\"{text}\"}},\"b\":{{\"enum\":[\"yz\",\"y\",\"x\"]}}}},\"required\":[\"a\",\"b\"]}}");
        HashSet<string>? needs = null;
        var thread = new Thread(() => needs = schema.Needs(_ => true, opensArrays: false).ToHashSet(), 1 << 20);
        thread.Start();
        thread.Join();
        Assert.Equal(new HashSet<string> { "{", "}", "\"", ":", "0", ",", "a", "b", "x", "y", "z" }, needs);
    }

    /// <summary>Each dropped anyOf alternative forgot what it compiled by copying every pointer
    /// and object compiled before: 20,000 alternatives, half of them dropped (a 500 KB request),
    /// allocated 8.7 GB and took 13 s (now 0.25 GB, under a second).</summary>
    [Fact]
    public void Dropping_anyOf_alternatives_costs_what_they_compiled()
    {
        var alternatives = string.Join(",", Enumerable.Range(0, 20_000).Select(i => i % 2 == 0 ? $"{{\"type\":\"string\",\"pattern\":\"{i}\"}}" : $"{{\"type\":\"object\",\"properties\":{{\"k{i}\":{{\"type\":\"integer\"}}}}}}"));
        var text = $"{{\"type\":\"object\",\"properties\":{{\"a\":{{\"anyOf\":[{alternatives}]}}}},\"required\":[\"a\"]}}";
        var before = GC.GetAllocatedBytesForCurrentThread();
        var schema = Schema(text);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 400L << 20);
        // Of the objects, which all begin with '{', the first is kept.
        AssertValid(text, """{"a":{"k1":5}}""");
        AssertRefusedAt(text, """{"a":{"k¦3":5}}""");
        AssertRefusedAt(text, """{"a":¦"1"}""");
        Assert.NotNull(schema);
    }

    [Fact]
    public void Annotations_are_ignored_and_compiled_schemas_are_shared_by_their_text()
    {
        const string annotated = """{"type":"object","title":"t","description":"d","$comment":"c","properties":{"a":{"type":"integer","description":"x","default":1,"examples":[2]}},"required":["a"]}""";
        AssertValid(annotated, """{"a":5}""");
        Assert.Same(Schema(annotated), Schema(JsonSerializer.Serialize(JsonDocument.Parse(annotated))));
        Assert.NotSame(Schema(annotated), Schema(Person));
        // JSON mode is the schema {"type": "object"}.
        Assert.Same(JsonSchema.AnyObject, Schema("""{"type":"object"}"""));
    }

    /// <summary>Compiled schemas are kept by the size of their tables: 256 were kept whatever
    /// their size, and one of 17 KB (600 optional properties) takes 12 MB, so a few megabytes of
    /// requests held gigabytes.</summary>
    [Fact]
    public void Compiled_schemas_are_kept_within_a_memory_bound()
    {
        static string Long(int v) => $"{{\"type\":\"object\",\"properties\":{{\"a\":{{\"const\":\"{v}{new string('a', 400_000)}\"}}}}}}";
        var first = Schema(Long(0));
        Assert.InRange(first.Footprint, 4L << 20, 16L << 20);
        Assert.Same(first, Schema(Long(0)));
        for (var v = 1; v <= (64L << 20) / first.Footprint + 1; v++) Schema(Long(v));
        Assert.NotSame(first, Schema(Long(0)));
    }

    /// <summary>Objects told apart by a first property of distinct consts (a discriminated
    /// union), beside a map that also begins with '{'.</summary>
    const string Shapes = """
        {"type":"object","properties":{"s":{"anyOf":[
        {"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"integer"}},"required":["kind","r"],"additionalProperties":false},
        {"type":"object","properties":{"kind":{"enum":["rect","square"]},"w":{"type":"integer"},"h":{"type":"integer"}},"required":["kind","w"],"additionalProperties":false},
        {"type":"object","properties":{"kind":{"const":"c"},"tag":{"type":"string"}},"required":["kind"],"additionalProperties":false},
        {"type":"object","additionalProperties":{"type":"integer"}}]}},"required":["s"]}
        """;

    [Theory]
    [InlineData(Shapes, """{"s":{"kind":"circle","r":2}}""")]
    [InlineData(Shapes, """{"s":{"kind":"rect","w":1,"h":3}}""")]
    [InlineData(Shapes, """{"s":{ "kind" : "square" , "w":1}}""")]
    [InlineData(Shapes, """{"s":{"kind":"c"}}""")]
    [InlineData(Shapes, """{"s":{"kind":"c","tag":"x"}}""")]
    public void A_discriminated_union_takes_each_object_its_first_property_selects(string schema, string text) => AssertValid(schema, text);

    [Theory]
    // Each object's own properties, once its discriminator is read: not the first object's only.
    [InlineData(Shapes, """{"s":{"kind":"circle","¦w":1}}""")]
    [InlineData(Shapes, """{"s":{"kind":"rect","¦r":1}}""")]
    [InlineData(Shapes, """{"s":{"kind":"rect"¦}}""")]
    [InlineData(Shapes, """{"s":{"kind":"c","tag":"x"¦,"r":1}}""")]
    [InlineData(Shapes, """{"s":{"kind":"¦triangle"}}""")]
    [InlineData(Shapes, """{"s":{"kind":"circl¦"}}""")]
    // The discriminator comes first and is required; the map alternative gives way to the objects.
    [InlineData(Shapes, """{"s":{¦}}""")]
    [InlineData(Shapes, """{"s":{"¦r":1}}""")]
    public void A_discriminated_union_refuses_what_no_selected_object_allows(string schema, string marked) => AssertRefusedAt(schema, marked);

    static JsonSchema ToolCalls(bool parallel, params (string Name, string? Parameters)[] tools) =>
        JsonSchema.ToolCalls([.. tools.Select(t => (t.Name, t.Parameters is null ? (JsonElement?)null : JsonDocument.Parse(t.Parameters).RootElement))], parallel);

    static readonly (string Name, string? Parameters)[] Tools =
    [
        ("get_weather", """{"type":"object","properties":{"city":{"type":"string","maxLength":6},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}"""),
        ("get_time", """{"type":"object","$defs":{"zone":{"type":"object","properties":{"utc":{"type":"integer"}},"required":["utc"]}},"properties":{"zone":{"$ref":"#/$defs/zone"}},"required":["zone"]}"""),
        ("ping", null),
    ];

    /// <summary>A tool_choice "required" answer: an array of calls, each naming one of the tools
    /// with arguments of that tool's schema (its $refs moved with it); without parallel calls,
    /// exactly one. Random walks end in such arrays only.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Tool_calls_choose_among_tools_each_with_its_own_arguments(bool parallel)
    {
        var schema = ToolCalls(parallel, Tools);
        static (int, bool) ReadCalls(JsonSchema schema, string text)
        {
            var json = new JsonGrammar(schema);
            var bytes = Encoding.UTF8.GetBytes(text);
            for (var i = 0; i < bytes.Length; i++)
                if (!json.Accept(bytes[i])) return (i, false);
            return (-1, json.IsComplete);
        }
        Assert.Equal((-1, true), ReadCalls(schema, """[{"name":"get_time","arguments":{"zone":{"utc":-2}}}]"""));
        Assert.Equal((-1, true), ReadCalls(schema, """[{"name":"ping","arguments":{}}]"""));
        Assert.Equal((-1, true), ReadCalls(schema, """[{"name":"get_weather","arguments":{"city":"Paris","unit":"c"}}]"""));
        var two = """[{"name":"ping","arguments":{}},{"name":"get_weather","arguments":{"city":"Oslo","unit":"f"}}]""";
        Assert.Equal(parallel ? (-1, true) : (two.IndexOf("},{", StringComparison.Ordinal) + 1, false), ReadCalls(schema, two));
        Assert.Equal((14, false), ReadCalls(schema, """[{"name":"get_x"}]"""));
        Assert.Equal((29, false), ReadCalls(schema, """[{"name":"ping","arguments":{"city":1}}]"""));
        Assert.Equal((34, false), ReadCalls(schema, """[{"name":"get_time","arguments":{"city":1}}]"""));
        Assert.Equal((1, false), ReadCalls(schema, """[]"""));

        var alphabet = Enumerable.Range(0x20, 0x5F).Select(b => (byte)b).ToArray();
        var random = new Random(5);
        var names = new HashSet<string>();
        for (var walk = 0; walk < 60; walk++)
        {
            var text = RandomWalk(schema, alphabet, random, maxBytes: 150);
            var calls = JsonDocument.Parse(text).RootElement;
            Assert.InRange(calls.GetArrayLength(), 1, parallel ? int.MaxValue : 1);
            foreach (var call in calls.EnumerateArray())
            {
                Assert.Equal(["name", "arguments"], call.EnumerateObject().Select(p => p.Name));
                var name = call.GetProperty("name").GetString()!;
                names.Add(name);
                var parameters = Tools.Single(t => t.Name == name).Parameters ?? JsonSchema.NoParameters;
                Assert.True(Validate(JsonDocument.Parse(parameters).RootElement, call.GetProperty("arguments")), call.GetRawText());
            }
        }
        // Every tool is chosen by some walk: not only the first alternative's.
        Assert.Equal(Tools.Select(t => t.Name).ToHashSet(), names);
    }

    /// <summary>Fifty tools whose names are prefixes of one another ("g", "get", "get_weather",
    /// "get-weather"...), their parameters objects, unions, enums and nested arrays: random walks
    /// over many seeds end in calls of known tools only, each with arguments valid against its
    /// own schema.</summary>
    [Fact]
    public void Tool_calls_among_fifty_tools_named_as_prefixes_of_each_other_are_always_valid()
    {
        string[] shapes =
        [
            """{"type":"object","properties":{"c":{"anyOf":[{"type":"string","maxLength":3},{"type":"integer"},{"type":"object","properties":{"k":{"enum":["a","b"]}},"required":["k"],"additionalProperties":false}]}},"required":["c"],"additionalProperties":false}""",
            """{"type":"object","properties":{"xs":{"type":"array","items":{"enum":[1,"1",null]},"maxItems":3}},"required":["xs"],"additionalProperties":false}""",
            """{"type":"object","properties":{"o":{"type":"object","properties":{"p":{"type":"boolean"}},"required":["p"],"additionalProperties":false}},"required":["o"],"additionalProperties":false}""",
        ];
        string[] stems = ["g", "get", "get_weather", "get-weather", "get_weather2"];
        var tools = Enumerable.Range(0, 50).Select(i => (Name: stems[i % stems.Length] + (i < stems.Length ? "" : "x" + i / stems.Length), Parameters: i % 4 == 3 ? null : shapes[i % 3])).ToArray();
        var schema = ToolCalls(true, tools);
        var alphabet = Enumerable.Range(0x20, 0x5F).Select(b => (byte)b).ToArray();
        var names = new HashSet<string>();
        for (var seed = 0; seed < 200; seed++)
        {
            var random = new Random(seed);
            var text = RandomWalk(schema, alphabet, random, maxBytes: 200);
            foreach (var call in JsonDocument.Parse(text).RootElement.EnumerateArray())
            {
                var name = call.GetProperty("name").GetString()!;
                names.Add(name);
                var parameters = tools.Single(t => t.Name == name).Parameters ?? JsonSchema.NoParameters;
                Assert.True(Validate(JsonDocument.Parse(parameters).RootElement, call.GetProperty("arguments")), call.GetRawText());
            }
        }
        Assert.True(names.Count > 10, string.Join(", ", names));
    }

    /// <summary>Random walks: at every step some byte continues; after a budget the walk takes
    /// the shortest way to a whole document, which must exist, and the document must parse and
    /// satisfy the schema.</summary>
    [Theory]
    [InlineData(Person)]
    [InlineData(Tree)]
    [InlineData(Defs)]
    [InlineData(Unions)]
    [InlineData(Stamps)]
    [InlineData("""{"type":"object"}""")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4},"é\"":{"const":"ü\n"}},"required":["a","é\""],"additionalProperties":false}""")]
    public void Random_walks_never_dead_end_and_close_into_valid_documents(string schemaText)
    {
        var schema = Schema(schemaText);
        var alphabet = Enumerable.Range(0x20, 0x5F).Select(b => (byte)b).Concat("\n"u8.ToArray()).Concat("éü\n"u8.ToArray()).Distinct().ToArray();
        var random = new Random(11);
        var valid = 0;
        for (var walk = 0; walk < 60; walk++)
        {
            var text = RandomWalk(schema, alphabet, random, maxBytes: 120);
            var document = text;
            Assert.True(Validate(JsonDocument.Parse(schemaText).RootElement, JsonDocument.Parse(document).RootElement), document);
            valid++;
        }
        Assert.Equal(60, valid);
    }

    /// <summary>A document the grammar accepts: a random walk over <paramref name="alphabet"/> of up to
    /// a random number of bytes below <paramref name="maxBytes"/> (never dead-ending: some byte is always
    /// accepted), then the shortest completion. Bytes that structure a document are favoured, so walks go
    /// deep, not only into strings.</summary>
    static string RandomWalk(JsonSchema schema, byte[] alphabet, Random random, int maxBytes)
    {
        var state = new JsonGrammar(schema);
        var text = new List<byte>();
        var budget = random.Next(0, maxBytes);
        while (!state.IsComplete && text.Count < budget)
        {
            var options = alphabet.Where(b => { var next = state; return next.Accept(b); }).ToArray();
            Assert.NotEmpty(options);
            var structural = options.Where(b => "{}[]\":,-0123456789tfn".Contains((char)b)).ToArray();
            var b = structural.Length > 0 && random.Next(3) > 0 ? structural[random.Next(structural.Length)] : options[random.Next(options.Length)];
            Assert.True(state.Accept(b));
            text.Add(b);
        }
        if (!state.IsComplete) text.AddRange(ShortestCompletion(state, alphabet));
        return Encoding.UTF8.GetString([.. text]);
    }

    /// <summary>The shortest bytes (no whitespace) that make the state a whole document, by breadth-first search.</summary>
    static byte[] ShortestCompletion(JsonGrammar start, byte[] alphabet)
    {
        var previous = new Dictionary<JsonGrammar, (JsonGrammar From, byte By)>();
        var queue = new Queue<JsonGrammar>([start]);
        previous[start] = default;
        while (queue.TryDequeue(out var state))
        {
            if (state.IsComplete)
            {
                var path = new List<byte>();
                for (var at = state; !at.Equals(start); at = previous[at].From) path.Add(previous[at].By);
                path.Reverse();
                return [.. path];
            }
            foreach (var b in alphabet)
            {
                if (b is (byte)' ' or (byte)'\n') continue;
                var next = state;
                if (next.Accept(b) && previous.TryAdd(next, (state, b))) queue.Enqueue(next);
            }
            Assert.True(previous.Count < 200_000, "no completion within reach: a dead end");
        }
        Assert.Fail("no completion: a dead end");
        return [];
    }

    /// <summary>Whether <paramref name="text"/> is of the format, as .NET's own parsers read
    /// RFC 3339's shapes (those of System.Text.Json's, with the offset RFC 3339 requires).</summary>
    static bool IsOf(string format, string text)
    {
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        var none = System.Globalization.DateTimeStyles.None;
        string[] fractions = ["", .. Enumerable.Range(1, 7).Select(n => "." + new string('F', n).Replace('F', 'f'))];
        return format switch
        {
            "date-time" => DateTimeOffset.TryParseExact(text, [.. fractions.SelectMany(f => new[] { $"yyyy-MM-dd'T'HH:mm:ss{f}'Z'", $"yyyy-MM-dd'T'HH:mm:ss{f}zzz" })], invariant, none, out _),
            "date" => DateOnly.TryParseExact(text, "yyyy-MM-dd", invariant, none, out _),
            "time" => TimeOnly.TryParseExact(text, [.. fractions.Select(f => $"HH:mm:ss{f}")], invariant, none, out _),
            "uuid" => Guid.TryParseExact(text, "D", out _),
            "uri" => Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https",
            _ => throw new ArgumentException(format),
        };
    }

    /// <summary>A validator of the subset, independent of the recognizer: types, properties,
    /// required, additionalProperties false, items, minItems, maxItems, minLength, maxLength,
    /// format, enum, const, anyOf and local $ref.</summary>
    internal static bool Validate(JsonElement root, JsonElement value) => Validate(root, root, value);

    static bool Validate(JsonElement root, JsonElement schema, JsonElement value)
    {
        if (schema.ValueKind == JsonValueKind.True) return true;
        if (schema.TryGetProperty("$ref", out var reference))
        {
            var target = root;
            foreach (var segment in reference.GetString()![1..].Split('/').Skip(1)) target = target.GetProperty(segment);
            return Validate(root, target, value);
        }
        if (schema.TryGetProperty("anyOf", out var anyOf)) return anyOf.EnumerateArray().Any(s => Validate(root, s, value));
        if (schema.TryGetProperty("enum", out var enumeration) && !enumeration.EnumerateArray().Any(e => JsonElement.DeepEquals(e, value))) return false;
        if (schema.TryGetProperty("const", out var constant) && !JsonElement.DeepEquals(constant, value)) return false;
        if (schema.TryGetProperty("type", out var type))
        {
            var types = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().Select(t => t.GetString()).ToList() : [type.GetString()];
            var kind = value.ValueKind switch
            {
                JsonValueKind.Object => "object", JsonValueKind.Array => "array", JsonValueKind.String => "string",
                JsonValueKind.Number => value.GetRawText().IndexOfAny(['.', 'e', 'E']) < 0 ? "integer" : "number", JsonValueKind.Null => "null", _ => "boolean",
            };
            if (!types.Contains(kind) && !(kind == "integer" && types.Contains("number"))) return false;
        }
        if (value.ValueKind == JsonValueKind.Object)
        {
            var properties = schema.TryGetProperty("properties", out var p) ? p : default;
            if (schema.TryGetProperty("required", out var required) && required.EnumerateArray().Any(r => !value.TryGetProperty(r.GetString()!, out _))) return false;
            foreach (var member in value.EnumerateObject())
            {
                if (properties.ValueKind == JsonValueKind.Object && properties.TryGetProperty(member.Name, out var sub)) { if (!Validate(root, sub, member.Value)) return false; }
                else if (schema.TryGetProperty("additionalProperties", out var extra) && (extra.ValueKind == JsonValueKind.False || (extra.ValueKind == JsonValueKind.Object && !Validate(root, extra, member.Value)))) return false;
            }
        }
        if (value.ValueKind == JsonValueKind.String)
        {
            var text = value.GetString()!;
            var characters = text.EnumerateRunes().Count();
            if (schema.TryGetProperty("minLength", out var min) && characters < min.GetInt32()) return false;
            if (schema.TryGetProperty("maxLength", out var max) && characters > max.GetInt32()) return false;
            if (schema.TryGetProperty("format", out var format) && !IsOf(format.GetString()!, text)) return false;
        }
        if (value.ValueKind == JsonValueKind.Array)
        {
            var count = value.GetArrayLength();
            if (schema.TryGetProperty("minItems", out var min) && count < min.GetInt32()) return false;
            if (schema.TryGetProperty("maxItems", out var max) && count > max.GetInt32()) return false;
            if (schema.TryGetProperty("items", out var items) && value.EnumerateArray().Any(v => !Validate(root, items, v))) return false;
        }
        return true;
    }
}
