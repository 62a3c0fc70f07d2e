// tool_choice "auto"'s parsers over texts, through ToolCallReader as the endpoint uses it: hermes'
// several <tool_call> blocks after content, Llama 3's JSON with or without <|python_tag|>, and
// malformed calls or calls of unknown tools kept as content, as vLLM keeps them. The text is fed
// whole and one character at a time: the events, reassembled, are the same, and text that may
// begin a call is held back until it is known not to be one.
using System.Text;
using Stratus.Inference;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

public sealed class ToolCallParserTests
{
    static readonly ChatTools Auto = new([], new HashSet<string> { "weather", "time" }, ToolChoiceKind.Auto, null, null);

    /// <summary>The content (null where none), the calls (name, arguments) and the finish_reason
    /// the reader makes of <paramref name="pieces"/>.</summary>
    static (string? Content, List<(string Name, string Arguments)> Calls, string Finish) Read(ToolCallParser parser, IEnumerable<string> pieces, ChatTools? tools = null)
    {
        var reader = new ToolCallReader(tools ?? Auto, parser);
        var content = new StringBuilder();
        var anyContent = false;
        var calls = new List<(string Name, string Arguments)>();
        void Take(IEnumerable<ToolCallEvent> events)
        {
            foreach (var e in events)
            {
                if (e.Content is { } text) (anyContent, _) = (true, content.Append(text));
                else if (e.Id is not null)
                {
                    Assert.StartsWith("call_", e.Id);
                    Assert.Equal(calls.Count, e.Index);
                    calls.Add((e.Name!, e.Arguments!));
                }
                else calls[e.Index] = (calls[e.Index].Name, calls[e.Index].Arguments + e.Arguments);
            }
        }
        foreach (var piece in pieces) Take(reader.Add(piece));
        var (rest, finish) = reader.Finish("stop");
        Take(rest);
        return (anyContent ? content.ToString() : null, calls, finish);
    }

    static void AssertParses(ToolCallParser parser, string text, string? content, params (string, string)[] calls)
    {
        foreach (var pieces in new[] { [text], text.Select(c => c.ToString()) })
        {
            var (gotContent, gotCalls, finish) = Read(parser, pieces);
            Assert.Equal(content, gotContent);
            Assert.Equal(calls, gotCalls);
            Assert.Equal(calls.Length > 0 ? "tool_calls" : "stop", finish);
        }
    }

    [Fact]
    public void Without_parallel_tool_calls_only_the_first_of_several_calls_is_given()
    {
        var one = Auto with { Parallel = false };
        const string text = "<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>\n<tool_call>{\"name\": \"time\", \"arguments\": {}}</tool_call>";
        foreach (var pieces in new[] { [text], text.Select(c => c.ToString()) })
        {
            var (content, calls, finish) = Read(new HermesToolCallParser(), pieces, one);
            Assert.Null(content);
            Assert.Equal([("weather", "{\"city\": \"Paris\"}")], calls);
            Assert.Equal("tool_calls", finish);
        }
    }

    [Fact]
    public void Hermes_reads_several_calls_after_content()
    {
        AssertParses(new HermesToolCallParser(),
            "Let me check.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"time\", \"arguments\": {}}</tool_call>\n",
            "Let me check.\n", ("weather", "{\"city\": \"Paris\"}"), ("time", "{}"));
        // The last call may be left open where the output ends.
        AssertParses(new HermesToolCallParser(), "<tool_call>{\"name\": \"time\", \"arguments\": {\"utc\": 2}}", null, ("time", "{\"utc\": 2}"));
    }

    [Theory]
    [InlineData("<tool_call>{\"name\": \"weather\", \"arguments\": {\"city\": </tool_call>")]
    [InlineData("<tool_call>{\"name\": \"stocks\", \"arguments\": {}}</tool_call>")]
    [InlineData("<tool_call>{\"name\": \"time\", \"arguments\": 5}</tool_call>")]
    [InlineData("a <tool x> b")]
    [InlineData("ends with <tool_ca")]
    public void Hermes_keeps_what_is_no_call_of_a_tool_as_content(string text) => AssertParses(new HermesToolCallParser(), text, text);

    [Fact]
    public void Llama_3_reads_JSON_calls_with_or_without_the_python_tag()
    {
        AssertParses(new Llama3JsonToolCallParser(), "{\"name\": \"weather\", \"parameters\": {\"city\": \"Oslo\"}}", null, ("weather", "{\"city\": \"Oslo\"}"));
        AssertParses(new Llama3JsonToolCallParser(), "<|python_tag|>{\"name\": \"time\", \"parameters\": {}}; {\"name\": \"weather\", \"arguments\": {\"city\": \"Rome\"}}",
            null, ("time", "{}"), ("weather", "{\"city\": \"Rome\"}"));
    }

    [Theory]
    [InlineData("{\"name\": \"weather\", \"parameters\": {\"city\": ")]
    [InlineData("{\"name\": \"stocks\", \"parameters\": {}}")]
    [InlineData("{\"city\": \"Oslo\"}")]
    [InlineData("The weather is {\"name\": \"weather\", \"parameters\": {}}")]
    [InlineData("<|python")]
    public void Llama_3_keeps_what_is_no_call_of_a_tool_as_content(string text) => AssertParses(new Llama3JsonToolCallParser(), text, text);

    [Fact]
    public void Text_that_may_begin_a_call_is_held_back_until_it_is_known_not_to_be_one()
    {
        var reader = new ToolCallReader(Auto, new HermesToolCallParser());
        Assert.Equal(["Hello "], reader.Add("Hello <tool").Select(e => e.Content));
        Assert.Equal(["<tools!"], reader.Add("s!").Select(e => e.Content));
        Assert.Empty(reader.Add("<tool_call>{\"name\": \"time\", "));
        Assert.Equal([null, null], reader.Add("\"arguments\": {}}</tool_call>").Select(e => e.Content));

        var llama = new ToolCallReader(Auto, new Llama3JsonToolCallParser());
        Assert.Empty(llama.Add("  {\"name\""));
        Assert.Empty(llama.Add(": \"nope\"}"));
        Assert.Equal(("  {\"name\": \"nope\"}", "stop"), (llama.Finish("stop").Events.Single().Content, "stop"));
        // Content first: then no call follows, and text goes out as it comes.
        var talk = new ToolCallReader(Auto, new Llama3JsonToolCallParser());
        Assert.Equal(["Sure: {"], talk.Add("Sure: {").Select(e => e.Content));
    }

    [Theory]
    [InlineData("{%- if tools %}{{ '<tool_call>' }}{%- endif %}", "hermes")]
    [InlineData("{{- '<|python_tag|>' + tool_call.name }}", "llama3_json")]
    [InlineData("{{- '{\"name\": \"' + tool_call.name + '\", \"parameters\": ' }}", "llama3_json")]
    [InlineData("{% for message in messages %}{{ message['content'] }}{% endfor %}", null)]
    public void The_parser_is_the_one_the_chat_template_writes(string template, string? parser) =>
        Assert.Equal(parser, ToolCallParser.For(new ChatTemplate(template))?.Name);
}
