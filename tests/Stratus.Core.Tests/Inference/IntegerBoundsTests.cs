// Bounds on integers in structured outputs (minimum, maximum, exclusiveMinimum, exclusiveMaximum):
// the grammar accepts an integer exactly where it is in range, refuses at the first digit that
// leaves every integer in range behind, and random walks end only in integers in range; bounds
// that allow no integer are refused naming them (a number's bounds and multipleOf: NumberBoundsTests),
// and a nullable value whose other alternative is not enforced is refused instead of always null.
using System.Text.Json;
using Stratus.Inference;

namespace Stratus.Tests.Inference;

public sealed class IntegerBoundsTests
{
    static JsonSchema Schema(string bounds) =>
        JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"n":{"type":"integer",""" + bounds + """}},"required":["n"]}""").RootElement);

    static string Refusal(string schema) =>
        Assert.Throws<StratusUserException>(() => JsonSchema.Compile(JsonDocument.Parse(schema).RootElement)).Message;

    [Theory]
    [InlineData("\"minimum\":0", 0, long.MaxValue)]
    [InlineData("\"maximum\":-1", -long.MaxValue, -1)]
    [InlineData("\"minimum\":0,\"maximum\":9", 0, 9)]
    [InlineData("\"minimum\":10,\"maximum\":99", 10, 99)]
    [InlineData("\"minimum\":-100,\"maximum\":100", -100, 100)]
    [InlineData("\"minimum\":7,\"maximum\":7", 7, 7)]
    [InlineData("\"minimum\":0,\"maximum\":0", 0, 0)]
    [InlineData("\"minimum\":-1,\"maximum\":-1", -1, -1)]
    [InlineData("\"exclusiveMinimum\":9,\"exclusiveMaximum\":100", 10, 99)]
    [InlineData("\"exclusiveMinimum\":-1.5,\"maximum\":99.5", -1, 99)]
    [InlineData("\"minimum\":-1000,\"maximum\":-10", -1000, -10)]
    [InlineData("\"minimum\":95,\"maximum\":1005", 95, 1005)]
    [InlineData("\"minimum\":-9,\"exclusiveMaximum\":0", -9, -1)]
    [InlineData("\"minimum\":3,\"maximum\":50,\"exclusiveMaximum\":40", 3, 39)]
    // Bounds read from their digits, not rounded through decimal (28 digits) or double.
    [InlineData("\"minimum\":5.00000000000000000000000000001,\"maximum\":7", 6, 7)]
    [InlineData("\"minimum\":-3,\"exclusiveMaximum\":5.00000000000000000000000000001", -3, 5)]
    [InlineData("\"minimum\":1e-400,\"maximum\":3", 1, 3)]
    [InlineData("\"minimum\":-3,\"maximum\":-1e-400", -3, -1)]
    [InlineData("\"minimum\":0.05e2,\"maximum\":600E-2", 5, 6)]
    [InlineData("\"minimum\":-1e400,\"maximum\":-12.5e1", -long.MaxValue, -125)]
    public void An_integer_is_accepted_exactly_where_it_is_in_range(string bounds, long least, long most)
    {
        var schema = Schema(bounds);
        for (var n = -1300; n <= 1300; n++)
        {
            var (refused, complete) = GrammarWalk.Read(schema, $"{{\"n\":{n}}}");
            // One out of range is refused (at its first digit past every integer in range, or at the '}' after it).
            Assert.True(n >= least && n <= most ? (refused, complete) == (-1, true) : refused >= 0, $"{n} with {bounds}: refused at {refused}, complete {complete}");
        }
        // 0 is written as 0: never -0, nor with a leading zero.
        Assert.NotEqual(-1, GrammarWalk.Read(schema, "{\"n\":-0}").Refused);
        Assert.NotEqual(-1, GrammarWalk.Read(schema, "{\"n\":01}").Refused);
    }

    /// <summary>A differential: over many random bounds (small, around powers of ten, 19 and 20
    /// digits, at ±long.MaxValue, negative only, exclusive and fractional forms), every integer
    /// near a bound, near 0 or at a power of ten is accepted, alone and beside another value in an
    /// array, exactly where a direct comparison puts it in range (a side without a bound, or one
    /// past long's, stops at ±long.MaxValue).</summary>
    [Fact]
    public void Acceptance_matches_a_direct_range_check_over_random_bounds()
    {
        var random = new Random(46);
        decimal Pick()
        {
            var magnitude = random.Next(5) switch
            {
                0 => (decimal)random.Next(0, 30),
                1 => (decimal)Math.Pow(10, random.Next(0, 19)) + random.Next(-2, 3),
                2 => long.MaxValue - (decimal)random.Next(0, 3),
                3 => (decimal)random.NextInt64(0, long.MaxValue),
                _ => 1e19m + random.Next(-2, 3),
            };
            return random.Next(2) == 0 ? magnitude : -magnitude;
        }
        for (var set = 0; set < 400; set++)
        {
            var (a, b) = (Pick(), Pick());
            var (low, high) = (Math.Min(a, b), Math.Max(a, b));
            var keywords = new List<string>();
            decimal least = -long.MaxValue, most = long.MaxValue;
            switch (random.Next(4))
            {
                case 0: keywords.Add($"\"minimum\":{low}"); least = Math.Max(least, low); break;
                case 1: keywords.Add($"\"exclusiveMinimum\":{low}"); least = Math.Max(least, low + 1); break;
                case 2: keywords.Add($"\"minimum\":{low - 0.5m}"); least = Math.Max(least, low); break;
            }
            switch (random.Next(4))
            {
                case 0: keywords.Add($"\"maximum\":{high}"); most = Math.Min(most, high); break;
                case 1: keywords.Add($"\"exclusiveMaximum\":{high}"); most = Math.Min(most, high - 1); break;
                case 2: keywords.Add($"\"maximum\":{high + 0.5m}"); most = Math.Min(most, high); break;
            }
            if (keywords.Count == 0 || least > most || least > long.MaxValue || most < -long.MaxValue) continue;
            var bounds = string.Join(",", keywords);
            var schema = Schema(bounds);
            var items = JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer",""" + bounds + """}}},"required":["a"]}""").RootElement);
            var candidates = new HashSet<decimal>();
            foreach (var near in new[] { least, most, 0m, low, high, -long.MaxValue, long.MaxValue, 1e19m, -1e19m })
                for (var d = -2; d <= 2; d++) candidates.Add(near + d);
            for (var p = 0; p <= 19; p++)
                foreach (var edge in new[] { (decimal)Math.Pow(10, p), (decimal)Math.Pow(10, p) - 1 })
                {
                    candidates.Add(edge);
                    candidates.Add(-edge);
                }
            foreach (var n in candidates)
            {
                var inRange = n >= least && n <= most;
                var alone = GrammarWalk.Read(schema, $"{{\"n\":{n}}}");
                Assert.True(inRange ? alone == (-1, true) : alone.Refused >= 0, $"{n} with {bounds}: refused at {alone.Refused}");
                var inArray = GrammarWalk.Read(items, $"{{\"a\":[{n},{n}]}}");
                Assert.True(inRange ? inArray == (-1, true) : inArray.Refused >= 0, $"[{n},{n}] with {bounds}: refused at {inArray.Refused}");
            }
        }
    }

    [Fact]
    public void Refused_at_the_first_digit_that_leaves_the_range()
    {
        var schema = Schema("\"minimum\":10,\"maximum\":99");
        Assert.Equal((7, false), GrammarWalk.Read(schema, "{\"n\":100}")); // the third digit
        Assert.Equal((5, false), GrammarWalk.Read(schema, "{\"n\":0"));
        Assert.Equal((5, false), GrammarWalk.Read(schema, "{\"n\":-1"));
        // "1" may go on to 10..19; it may not end there.
        Assert.Equal((6, false), GrammarWalk.Read(schema, "{\"n\":1}"));
        Assert.Equal((5, false), GrammarWalk.Read(Schema("\"minimum\":200,\"maximum\":350"), "{\"n\":4"));
        Assert.Equal((6, false), GrammarWalk.Read(Schema("\"minimum\":200,\"maximum\":350"), "{\"n\":36"));
    }

    /// <summary>What zod writes for z.number().int(): JavaScript's safe integers, 16 digits.</summary>
    [Fact]
    public void Zods_safe_integer_bounds_allow_every_safe_integer_and_no_other()
    {
        var schema = Schema("\"minimum\":-9007199254740991,\"maximum\":9007199254740991");
        foreach (var n in new[] { "0", "-1", "42", "9007199254740991", "-9007199254740991", "9007199254740990", "999999999999999" })
            Assert.Equal((-1, true), GrammarWalk.Read(schema, $"{{\"n\":{n}}}"));
        Assert.Equal((20, false), GrammarWalk.Read(schema, "{\"n\":9007199254740992}"));
        Assert.Equal((22, false), GrammarWalk.Read(schema, "{\"n\":-90071992547409910"));
        Assert.Equal((21, false), GrammarWalk.Read(schema, "{\"n\":10000000000000000"));
        // A side without a bound stops at long's: 19 digits.
        var positive = Schema("\"minimum\":1");
        Assert.Equal((-1, true), GrammarWalk.Read(positive, $"{{\"n\":{long.MaxValue}}}"));
        Assert.Equal((23, false), GrammarWalk.Read(positive, "{\"n\":9223372036854775808}"));
    }

    [Theory]
    [InlineData("\"minimum\":0,\"maximum\":9")]
    [InlineData("\"minimum\":-100,\"maximum\":100")]
    [InlineData("\"exclusiveMinimum\":-1000,\"exclusiveMaximum\":-10")]
    [InlineData("\"minimum\":95,\"maximum\":1005")]
    [InlineData("\"minimum\":-9007199254740991,\"maximum\":9007199254740991")]
    [InlineData("\"minimum\":12345")]
    public void Random_walks_end_only_in_integers_in_range(string bounds)
    {
        var schema = Schema(bounds);
        var limits = JsonDocument.Parse($"{{{bounds}}}").RootElement;
        for (var seed = 0; seed < 300; seed++)
        {
            var document = GrammarWalk.Write(schema, new Random(seed), digitOdds: 4);
            var n = JsonDocument.Parse(document).RootElement.GetProperty("n").GetDecimal();
            foreach (var bound in limits.EnumerateObject())
            {
                var limit = bound.Value.GetDecimal();
                Assert.True(bound.Name switch { "minimum" => n >= limit, "maximum" => n <= limit, "exclusiveMinimum" => n > limit, _ => n < limit }, $"{document} against {bounds}");
            }
        }
    }

    [Theory]
    [InlineData("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":5,\"maximum\":3}}}", "schema.properties.n allows no integer: minimum 5, maximum 3; give bounds with an integer between them")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"exclusiveMinimum\":1,\"exclusiveMaximum\":2}}}", "schema.properties.n allows no integer: exclusiveMinimum 1, exclusiveMaximum 2")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":[\"integer\",\"null\"],\"minimum\":0.2,\"maximum\":0.8}}}", "schema.properties.n allows no integer: minimum 0.2, maximum 0.8")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":\"0\"}}}", "schema.properties.n.minimum must be a number, got \"0\"")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":1e25}}}", "schema.properties.n is not supported: it allows only integers of more than 19 digits")]
    [InlineData("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"multipleOf\":2.5}}}", "schema.properties.n.multipleOf 2.5 is not supported")]
    public void Bounds_that_allow_no_integer_or_an_unenforceable_multiple_are_refused_naming_them(string schema, string message) =>
        Assert.StartsWith(message, Refusal(schema));

    [Fact]
    public void Bounds_beside_an_enum_filter_its_numbers()
    {
        var schema = JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"x":{"type":"number","enum":[1.5,2.5,10,"a"],"exclusiveMinimum":1.5,"maximum":10}},"required":["x"]}""").RootElement);
        Assert.Equal((-1, true), GrammarWalk.Read(schema, "{\"x\":2.5}"));
        Assert.Equal((-1, true), GrammarWalk.Read(schema, "{\"x\":10}"));
        Assert.Equal((6, false), GrammarWalk.Read(schema, "{\"x\":1.5}"));
    }

    /// <summary>Where a type list or anyOf loses the alternative it cannot enforce and only null
    /// is left (zod's z.string().datetime().nullable(): format and pattern, or null), the value
    /// would be null every time: refused instead, naming the keyword.</summary>
    [Theory]
    [InlineData("""{"anyOf":[{"type":"string","format":"date-time","pattern":"^\\d{4}-\\d{2}-\\d{2}T.*Z$"},{"type":"null"}]}""", "schema.properties.v.anyOf[0].pattern is not supported: Stratus does not enforce it (the string's contents are free), and without that alternative only null would be left")]
    [InlineData("""{"anyOf":[{"type":"string","format":"email","pattern":"^[^@]+@[^@]+$"},{"type":"null"}]}""", "schema.properties.v.anyOf[0].format is not supported")]
    [InlineData("""{"type":["string","null"],"pattern":"^a+$"}""", "schema.properties.v.pattern is not supported: Stratus does not enforce it (the string's contents are free), and without it only null would be left")]
    public void A_value_that_could_only_be_null_is_refused(string value, string message)
    {
        var refusal = Refusal("""{"type":"object","properties":{"v":""" + value + """},"required":["v"]}""");
        Assert.StartsWith(message, refusal);
        Assert.EndsWith("only null would be left", refusal);
    }

    [Fact]
    public void An_alternative_beside_others_than_null_is_still_left_out()
    {
        // System.Text.Json's number read from strings: the integer stays, and so does a bounded one.
        var schema = JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"v":{"type":["string","integer","null"],"pattern":"^-?\\d+$","minimum":1}},"required":["v"]}""").RootElement);
        Assert.Equal((-1, true), GrammarWalk.Read(schema, "{\"v\":3}"));
        Assert.Equal((-1, true), GrammarWalk.Read(schema, "{\"v\":null}"));
        Assert.Equal((5, false), GrammarWalk.Read(schema, "{\"v\":\"3\"}"));
        Assert.Equal((5, false), GrammarWalk.Read(schema, "{\"v\":0}"));
    }
}
