// Stratus's Jinja against jinja2 itself: each case of JinjaDifferentialCases.cs is what jinja2
// 3.1.6 renders (or refuses), set up as transformers sets it up; make_cases.py beside this file
// writes them. Scoping, operator precedence, whitespace control and line endings, loop.*, macros'
// varargs and kwargs, str.format, number literals, case mappings, Markup, undefined values,
// {% raw %}, recursive loops, caller() arguments, {% filter %} blocks, and chat templates in the
// style of real models' with tool calls.
using System.Text.Json;
using Stratus.Tokenization;

namespace Stratus.Core.Tests;

public sealed class JinjaDifferentialTests
{
    /// <summary>The time make_cases.py gives strftime_now: 2026-03-05 15:04:05 local.</summary>
    sealed class FixedClock : TimeProvider
    {
        static readonly DateTimeOffset Now = new(2026, 3, 5, 15, 4, 5, TimeSpan.Zero);
        public override DateTimeOffset GetUtcNow() => Now;
        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }

    public static TheoryData<string, string, string, string?, string?> Cases => JinjaDifferentialCases.Cases;

    /// <summary>A render's variables from a JSON object, its members' values as templates read them.</summary>
    internal static Dictionary<string, object?> Variables(string json) =>
        JsonDocument.Parse(json).RootElement.EnumerateObject().ToDictionary(p => p.Name, p => JinjaTemplate.FromJson(p.Value));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Renders_as_jinja2_does(string name, string template, string variables, string? expected, string? refusal)
    {
        _ = name; // names the case in the test's display
        var values = Variables(variables);
        string Render() => new JinjaTemplate(template).Render(values, new FixedClock());
        if (refusal is not null) Assert.Contains(refusal, Assert.Throws<JinjaException>(Render).Message);
        else if (expected is null) Assert.Throws<JinjaException>(Render);
        else Assert.Equal(expected, Render());
    }
}
