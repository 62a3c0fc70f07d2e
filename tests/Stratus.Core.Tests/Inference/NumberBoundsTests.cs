// Bounds and multipleOf on numbers in structured outputs (what pydantic's confloat(ge=0, le=1) and
// Field(multiple_of=...) and zod's z.number().min(0).max(1) and .multipleOf(5) write): the grammar
// accepts a number exactly where it is in range and has no more fraction digits than it writes,
// an exclusive bound excludes its value however it is written (1, 1.0, 1.50, -0), a bounded number
// has no exponent, random walks end only in values in range and never at a dead end, and a range
// that allows nothing or a multipleOf that cannot be enforced is refused naming where.
using System.Globalization;
using System.Text.Json;
using Stratus.Inference;

namespace Stratus.Tests.Inference;

public sealed class NumberBoundsTests
{
    static JsonSchema Schema(string type, string keywords) =>
        JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"x":{"type":""" + $"\"{type}\",{keywords}" + """}},"required":["x"]}""").RootElement);

    static bool Accepted(JsonSchema schema, string number) => GrammarWalk.Read(schema, $"{{\"x\":{number}}}") == (-1, true);

    static string Refusal(string schema) =>
        Assert.Throws<StratusUserException>(() => JsonSchema.Compile(JsonDocument.Parse(schema).RootElement)).Message;

    /// <summary>Whether a value keeps to JSON Schema bounds given as a JSON object's keywords (decimal, exact here).</summary>
    static bool InRange(decimal value, JsonElement bounds) => bounds.EnumerateObject().All(b => b.Name switch
    {
        "minimum" => value >= b.Value.GetDecimal(),
        "maximum" => value <= b.Value.GetDecimal(),
        "exclusiveMinimum" => value > b.Value.GetDecimal(),
        "exclusiveMaximum" => value < b.Value.GetDecimal(),
        "multipleOf" => value % b.Value.GetDecimal() == 0,
        _ => true,
    });

    public static TheoryData<string> NumberBounds =>
    [
        "\"minimum\":0,\"maximum\":1",
        "\"minimum\":-0.5,\"maximum\":0.5",
        "\"exclusiveMinimum\":-0.5,\"exclusiveMaximum\":0.5",
        "\"exclusiveMinimum\":0,\"exclusiveMaximum\":1",
        "\"exclusiveMinimum\":0",
        "\"exclusiveMaximum\":0",
        "\"minimum\":0.5",
        "\"exclusiveMinimum\":-1.25,\"maximum\":1e3",
        "\"minimum\":-1.25,\"exclusiveMaximum\":-0.75",
        "\"minimum\":0.5,\"maximum\":0.5",
        "\"minimum\":-3,\"maximum\":-3",
        "\"minimum\":0.1,\"maximum\":0.1000001",
        "\"exclusiveMinimum\":1.5,\"exclusiveMaximum\":2.25",
        "\"minimum\":12.34,\"maximum\":1234.5",
        "\"minimum\":-100,\"maximum\":-99.999",
    ];

    /// <summary>Texts around every bound: the bound written several ways, a step of each place
    /// either side, -0 forms, leading zeros, exponents, and too many fraction digits.</summary>
    static IEnumerable<string> Candidates(JsonElement bounds)
    {
        var texts = new HashSet<string> { "0", "-0", "-0.0", "0.0", "0.00", "1", "1.0", "1.50", "-1", "-1.0", "00", "01", "1e0", "0.5e1", "-0.5", "0.5", "0.50", "1000", "999.9999995", "1E2" };
        foreach (var bound in bounds.EnumerateObject())
        {
            var b = bound.Value.GetDecimal();
            foreach (var step in new[] { 0m, 1m, 0.1m, 0.01m, 0.001m, 0.000001m, 0.0000001m, 0.0000005m })
                foreach (var v in new[] { b - step, b + step })
                {
                    var text = v.ToString(CultureInfo.InvariantCulture);
                    texts.Add(text);
                    texts.Add(text.Contains('.') ? text + "0" : text + ".0");
                    texts.Add(text.Contains('.') ? text.TrimEnd('0').TrimEnd('.') : text);
                }
        }
        return texts;
    }

    /// <summary>Exactly what the grammar writes: a JSON number in range with at most 6 fraction
    /// digits (or the bounds' own, up to 15), no exponent, no leading zero, and never -0.</summary>
    static bool Writable(string text, JsonElement bounds, int fraction)
    {
        if (text.Contains('e', StringComparison.OrdinalIgnoreCase) || text.TrimStart('-') is ['0', '0' or >= '1' and <= '9', ..]) return false;
        var point = text.IndexOf('.');
        if (point >= 0 && text.Length - point - 1 > fraction) return false;
        var value = decimal.Parse(text, CultureInfo.InvariantCulture);
        return !(value == 0 && text.StartsWith('-')) && InRange(value, bounds);
    }

    [Theory]
    [MemberData(nameof(NumberBounds))]
    public void A_number_is_accepted_exactly_where_it_is_in_range(string keywords)
    {
        var schema = Schema("number", keywords);
        var bounds = JsonDocument.Parse($"{{{keywords}}}").RootElement;
        var fraction = keywords.Contains("0.1000001", StringComparison.Ordinal) ? 7 : 6;
        foreach (var text in Candidates(bounds))
            Assert.True(Accepted(schema, text) == Writable(text, bounds, fraction), $"{text} with {keywords}: accepted {Accepted(schema, text)}");
    }

    /// <summary>A differential over random decimal bounds (0 to 7 fraction digits, either sign,
    /// inclusive or exclusive, one side or both): every text around them is accepted exactly
    /// where <see cref="Writable"/> says, alone and as items of an array.</summary>
    [Fact]
    public void Acceptance_matches_a_direct_check_over_random_decimal_bounds()
    {
        var random = new Random(11);
        string Pick() => (random.Next(-20000, 20000) / (decimal)Math.Pow(10, random.Next(0, 8))).ToString(CultureInfo.InvariantCulture);
        for (var set = 0; set < 200; set++)
        {
            var keywords = new List<string>();
            var (a, b) = (Pick(), Pick());
            if (decimal.Parse(a, CultureInfo.InvariantCulture) > decimal.Parse(b, CultureInfo.InvariantCulture)) (a, b) = (b, a);
            if (random.Next(4) > 0) keywords.Add($"\"{(random.Next(2) == 0 ? "minimum" : "exclusiveMinimum")}\":{a}");
            if (random.Next(4) > 0 || keywords.Count == 0) keywords.Add($"\"{(random.Next(2) == 0 ? "maximum" : "exclusiveMaximum")}\":{b}");
            var text = string.Join(",", keywords);
            var bounds = JsonDocument.Parse($"{{{text}}}").RootElement;
            JsonSchema schema;
            try { schema = Schema("number", text); }
            catch (StratusUserException e)
            {
                // Only an exclusive pair on one value allows nothing.
                Assert.True(a == b && text.Contains("exclusive", StringComparison.Ordinal), $"{text}: {e.Message}");
                continue;
            }
            var items = JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"a":{"type":"array","items":{"type":"number",""" + text + """}}},"required":["a"]}""").RootElement);
            // The bounds' own fraction digits, trailing zeros aside, where more than 6.
            var fraction = bounds.EnumerateObject().Select(k => k.Value.GetRawText() is var raw && raw.Contains('.') ? raw.TrimEnd('0').Length - raw.IndexOf('.') - 1 : 0).Append(6).Max();
            foreach (var candidate in Candidates(bounds))
            {
                var expected = Writable(candidate, bounds, fraction);
                Assert.True(Accepted(schema, candidate) == expected, $"{candidate} with {text}: expected {expected}");
                Assert.True((GrammarWalk.Read(items, $"{{\"a\":[{candidate},{candidate}]}}") == (-1, true)) == expected, $"[{candidate},{candidate}] with {text}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(NumberBounds))]
    [InlineData("\"minimum\":0,\"maximum\":100,\"multipleOf\":0.01")]
    [InlineData("\"exclusiveMinimum\":-2,\"maximum\":2,\"multipleOf\":1e-2")]
    [InlineData("\"minimum\":-35,\"maximum\":1000,\"multipleOf\":5")]
    [InlineData("\"multipleOf\":0.1")]
    public void Random_walks_end_only_in_numbers_in_range(string keywords) => Walk(Schema("number", keywords), keywords);

    [Theory]
    [InlineData("\"multipleOf\":3")]
    [InlineData("\"minimum\":-100,\"maximum\":100,\"multipleOf\":7")]
    [InlineData("\"exclusiveMinimum\":10,\"exclusiveMaximum\":100,\"multipleOf\":45")]
    [InlineData("\"minimum\":1000,\"maximum\":1010,\"multipleOf\":1009")]
    [InlineData("\"minimum\":-9007199254740991,\"maximum\":9007199254740991,\"multipleOf\":1000000")]
    [InlineData("\"minimum\":1,\"multipleOf\":97")]
    public void Random_walks_end_only_in_multiples_in_range(string keywords) => Walk(Schema("integer", keywords), keywords);

    static void Walk(JsonSchema schema, string keywords)
    {
        var bounds = JsonDocument.Parse($"{{{keywords}}}").RootElement;
        var values = new HashSet<decimal>();
        for (var seed = 0; seed < 300; seed++)
        {
            var document = GrammarWalk.Write(schema, new Random(seed), digitOdds: 5);
            var x = JsonDocument.Parse(document).RootElement.GetProperty("x");
            Assert.DoesNotContain("e", x.GetRawText(), StringComparison.OrdinalIgnoreCase);
            Assert.True(InRange(x.GetDecimal(), bounds), $"{document} against {keywords}");
            values.Add(x.GetDecimal());
        }
        // Where the range holds more than one value, the walks find more than one.
        Assert.True(values.Count > 1 || keywords is "\"minimum\":0.5,\"maximum\":0.5" or "\"minimum\":-3,\"maximum\":-3" or "\"minimum\":1000,\"maximum\":1010,\"multipleOf\":1009", $"one value only: {string.Join(", ", values)}");
    }

    /// <summary>A differential: integers from -1300 to 1300 with multipleOf and random bounds are
    /// accepted exactly where a direct check puts them in range and a multiple.</summary>
    [Fact]
    public void Multiples_are_accepted_exactly_over_random_bounds()
    {
        var random = new Random(7);
        for (var set = 0; set < 150; set++)
        {
            var m = random.Next(3) switch { 0 => random.Next(2, 10), 1 => random.Next(10, 200), _ => random.Next(200, 2000) };
            var keywords = new List<string> { $"\"multipleOf\":{m}" };
            if (random.Next(4) > 0) keywords.Add($"\"{(random.Next(2) == 0 ? "minimum" : "exclusiveMinimum")}\":{random.Next(-1200, 600)}{(random.Next(3) == 0 ? ".5" : "")}");
            if (random.Next(4) > 0) keywords.Add($"\"{(random.Next(2) == 0 ? "maximum" : "exclusiveMaximum")}\":{random.Next(-600, 1200)}{(random.Next(3) == 0 ? ".5" : "")}");
            var text = string.Join(",", keywords);
            var bounds = JsonDocument.Parse($"{{{text}}}").RootElement;
            // Bounds lie within ±1200 and m below 2000: a side without one has a multiple within ±4000.
            var any = Enumerable.Range(-4000, 8001).Any(n => InRange(n, bounds));
            if (!any)
            {
                Assert.Contains("allows no", Assert.Throws<StratusUserException>(() => Schema("integer", text)).Message);
                continue;
            }
            var schema = Schema("integer", text);
            for (var n = -1300; n <= 1300; n++)
                Assert.True(Accepted(schema, n.ToString(CultureInfo.InvariantCulture)) == InRange(n, bounds), $"{n} with {text}");
        }
    }

    [Fact]
    public void A_power_of_ten_sets_the_fraction_digits_and_a_whole_multiple_makes_an_integer()
    {
        var cents = Schema("number", "\"minimum\":0,\"multipleOf\":0.01");
        Assert.True(Accepted(cents, "12.34"));
        Assert.True(Accepted(cents, "12.3"));
        Assert.True(Accepted(cents, "0.05"));
        Assert.False(Accepted(cents, "12.345"));
        Assert.False(Accepted(cents, "-0.01"));
        var tens = Schema("number", "\"multipleOf\":10");
        Assert.True(Accepted(tens, "-120"));
        Assert.True(Accepted(tens, "0"));
        Assert.False(Accepted(tens, "125"));
        Assert.False(Accepted(tens, "120.0"));
        // Every integer is a multiple of 0.1.
        Assert.True(Accepted(Schema("integer", "\"multipleOf\":0.1"), "7"));
        // A bounded number has no exponent; a free one still may.
        Assert.NotEqual(-1, GrammarWalk.Read(Schema("number", "\"minimum\":0"), "{\"x\":1e2}").Refused);
        Assert.Equal((-1, true), GrammarWalk.Read(Schema("number", "\"description\":\"free\""), "{\"x\":1e2}"));
        // The bounds' own fraction digits are written where they are more than 6.
        var fine = Schema("number", "\"minimum\":0.1,\"maximum\":0.1000001");
        Assert.True(Accepted(fine, "0.1000001"));
        Assert.True(Accepted(fine, "0.10000005") == false);
        Assert.False(Accepted(fine, "0.1000002"));
    }

    [Fact]
    public void An_untyped_bound_makes_a_number_and_bounds_beside_an_enum_filter_it_by_multipleOf_too()
    {
        var untyped = JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"x":{"minimum":2,"exclusiveMaximum":3}},"required":["x"]}""").RootElement);
        Assert.True(Accepted(untyped, "2.5"));
        Assert.False(Accepted(untyped, "3"));
        Assert.NotEqual(-1, GrammarWalk.Read(untyped, "{\"x\":\"a\"}").Refused);
        var listed = JsonSchema.Compile(JsonDocument.Parse("""{"type":"object","properties":{"x":{"enum":[3,4,4.5,9,10],"multipleOf":1.5,"maximum":9}},"required":["x"]}""").RootElement);
        Assert.True(Accepted(listed, "3"));
        Assert.True(Accepted(listed, "4.5"));
        Assert.True(Accepted(listed, "9"));
        Assert.False(Accepted(listed, "4"));
        Assert.False(Accepted(listed, "10"));
    }

    [Theory]
    [InlineData("number", "\"minimum\":5,\"maximum\":3", "schema.properties.x allows no number: minimum 5, maximum 3; give bounds with a number between them")]
    [InlineData("number", "\"exclusiveMinimum\":0.5,\"exclusiveMaximum\":0.5", "schema.properties.x allows no number: exclusiveMinimum 0.5, exclusiveMaximum 0.5")]
    [InlineData("number", "\"minimum\":0.1000000000000001,\"maximum\":0.1000000000000009", "schema.properties.x allows no number: minimum 0.1000000000000001, maximum 0.1000000000000009; give bounds with a number of at most 15 fraction digits between them")]
    [InlineData("number", "\"minimum\":5,\"maximum\":3,\"multipleOf\":10", "schema.properties.x allows no number: minimum 5, maximum 3; give bounds with a number between them")]
    [InlineData("number", "\"minimum\":0,\"maximum\":1,\"multipleOf\":0.3", "schema.properties.x.multipleOf 0.3 is not supported: Stratus enforces a multipleOf that is a whole number up to 1000000 or a power of ten below 1 (0.1, 0.01, ...)")]
    [InlineData("integer", "\"multipleOf\":2.5", "schema.properties.x.multipleOf 2.5 is not supported")]
    [InlineData("integer", "\"multipleOf\":1000001", "schema.properties.x.multipleOf 1000001 is not supported")]
    [InlineData("number", "\"multipleOf\":1e-16", "schema.properties.x.multipleOf 1e-16 is not supported: Stratus writes at most 15 fraction digits")]
    [InlineData("integer", "\"minimum\":1,\"maximum\":6,\"multipleOf\":7", "schema.properties.x allows no multiple of 7: minimum 1, maximum 6; give bounds with a multiple between them")]
    [InlineData("number", "\"exclusiveMinimum\":10,\"exclusiveMaximum\":20,\"multipleOf\":10", "schema.properties.x allows no multiple of 10: exclusiveMinimum 10, exclusiveMaximum 20")]
    [InlineData("number", "\"minimum\":0.001,\"maximum\":0.009,\"multipleOf\":0.01", "schema.properties.x allows no number: minimum 0.001, maximum 0.009")]
    [InlineData("integer", "\"multipleOf\":0", "schema.properties.x.multipleOf must be a number greater than 0, got 0")]
    [InlineData("number", "\"multipleOf\":-2", "schema.properties.x.multipleOf must be a number greater than 0, got -2")]
    [InlineData("number", "\"multipleOf\":\"2\"", "schema.properties.x.multipleOf must be a number, got \"2\"")]
    [InlineData("number", "\"maximum\":\"2\"", "schema.properties.x.maximum must be a number, got \"2\"")]
    [InlineData("number", "\"minimum\":1e25", "schema.properties.x is not supported: it allows only numbers of more than 19 digits")]
    public void Ranges_that_allow_nothing_and_multiples_that_cannot_be_enforced_are_refused_naming_them(string type, string keywords, string message) =>
        Assert.StartsWith(message, Refusal("""{"type":"object","properties":{"x":{"type":""" + $"\"{type}\",{keywords}" + "}}}"));
}
