// Jinja's {% macro %} (default and keyword arguments, recursion) and {% call %} with caller(), as
// Hermes 2 Pro's and 3's chat templates use them: a template written for these tests in their style
// renders tools, parallel calls and grouped results exactly as jinja2 renders it under
// transformers (the expected texts are jinja2 3.1.6's, an ImmutableSandboxedEnvironment with
// trim_blocks and lstrip_blocks and tojson as json.dumps, as transformers sets it up), and
// macros' scoping and faults follow jinja2's.
using Stratus.Tokenization;

namespace Stratus.Core.Tests;

public sealed class JinjaMacroTests
{
    /// <summary>Written for these tests in the style of Hermes 2 Pro's tool template: a recursive macro
    /// writes each parameter's JSON schema type as a Python type, a macro with a default argument
    /// writes a turn, a macro wraps its caller()'s text in a tag, and calls go in &lt;tool_call&gt;.</summary>
    const string HermesStyle = """
        {%- macro python_type(schema) %}
        {%- set scalars = {
            "boolean": "bool",
            "integer": "int",
            "null": "None",
            "number": "float",
            "string": "str"
        } %}

        {%- if scalars[schema.type] is defined %}
            {{- scalars[schema.type] }}
        {%- elif schema.type == "array" %}
            {{- "list[" + python_type(schema["items"]) + "]" }}
        {%- elif schema.type == "object" and schema.additionalProperties is defined %}
            {{- "dict[str, " + python_type(schema.additionalProperties) + "]" }}
        {%- elif schema.type == "object" %}
            {{- "dict" }}
        {%- elif schema.type is iterable %}
            {{- "Union[" }}
            {%- for member in schema.type %}
                {{- python_type({"type": member}) }}
                {%- if not loop.last %}{{- "," }}{%- endif %}
            {%- endfor %}
            {{- "]" }}
        {%- else %}
            {{- "Any" }}
        {%- endif %}
        {%- endmacro %}

        {%- macro turn(role, content, end="<|im_end|>\n") %}
            {{- "<|im_start|>" + role + "\n" + content + end }}
        {%- endmacro %}

        {%- macro tagged(name, newline=true) %}
            {{- "<" + name + ">" }}
            {%- if newline %}{{- "\n" }}{%- endif %}
            {{- caller() }}
            {%- if newline %}{{- "\n" }}{%- endif %}
            {{- "</" + name + ">" }}
        {%- endmacro %}

        {{- bos_token }}
        {%- if tools %}
            {{- '<|im_start|>system\nThe functions below are yours to call. Each is listed in <tools></tools> with a Python-like signature, then its JSON schema.\n<tools>\n' }}
            {%- for tool in tools %}
                {%- if tool.function is defined %}
                    {%- set tool = tool.function %}
                {%- endif %}
                {{- "* " + tool.name + "(" }}
                {%- for name, schema in tool.parameters.properties|items %}
                    {{- name + ": " + python_type(schema) }}
                    {%- if not loop.last %}{{- ", " }}{%- endif %}
                {%- endfor %}
                {{- "): " + tool.description + "\n" }}
                {%- for name, schema in tool.parameters.properties|items %}
                    {{- "    " + name + " (" + python_type(schema) + ") " + schema.description|default("no description")|trim + "\n" }}
                {%- endfor %}
                {{- "  schema: " }}
                {%- if tool.parameters.properties | length == 0 %}
                    {{- "{}" }}
                {%- else %}
                    {{- tool.parameters | tojson }}
                {%- endif %}
                {{- "\n" }}
            {%- endfor %}
            {{- "</tools>\nTo call one, write its name and arguments as a JSON object inside <tool_call></tool_call>.<|im_end|>\n" }}
        {%- endif %}
        {%- for message in messages %}
            {%- if message.role == "tool" %}
                {#- A run of results shares one tool turn. #}
                {%- if loop.previtem and loop.previtem.role != "tool" %}
                    {{- "<|im_start|>tool\n" }}
                {%- endif %}
                {%- call tagged("tool_response") %}{{ message.content }}{% endcall %}
                {%- if loop.last or loop.nextitem.role != "tool" %}
                    {{- "<|im_end|>\n" }}
                {%- else %}
                    {{- "\n" }}
                {%- endif %}
            {%- elif message.role == "assistant" and message.tool_calls is defined %}
                {{- "<|im_start|>assistant" }}
                {%- if message.content %}
                    {{- "\n" + message.content }}
                {%- endif %}
                {%- for tool_call in message.tool_calls %}
                    {{- "\n" }}
                    {%- call tagged("tool_call") %}
        {"name": "{{ tool_call.function.name }}", "arguments": {{ tool_call.function.arguments | tojson }}}
                    {%- endcall %}
                {%- endfor %}
                {{- "<|im_end|>\n" }}
            {%- else %}
                {{- turn(message.role, message.content) }}
            {%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}
            {{- turn("assistant", "", end="") }}
        {%- endif %}
        """;

    [Fact]
    public void A_Hermes_style_template_with_macros_renders_tools_calls_and_results_as_jinja2_does()
    {
        var tools = new[]
        {
            """{"type":"function","function":{"name":"get_weather","description":"Weather in a city.","parameters":{"type":"object","properties":{"city":{"type":"string","description":" The city, e.g. Paris "},"days":{"type":"integer"},"units":{"type":["string","null"]},"hours":{"type":"array","items":{"type":"number"}},"extra":{"type":"object","additionalProperties":{"type":"boolean"}}},"required":["city"]}}}""",
            """{"type":"function","function":{"name":"ping","description":"Checks the line.","parameters":{"type":"object","properties":{}}}}""",
        }.Select(t => System.Text.Json.JsonDocument.Parse(t).RootElement).ToList();
        List<ChatMessageText> messages =
        [
            new("system", "Be brief."), new("user", "Weather in Paris?"),
            new("assistant", "") { ToolCalls = [new("call_1", "get_weather", "{\"city\": \"Paris\", \"days\": 2}"), new("call_2", "ping", "{}")] },
            new("tool", "{\"temp\": 21}") { ToolCallId = "call_1" }, new("tool", "pong") { ToolCallId = "call_2" },
            new("user", "Thanks \u2014 and tomorrow?"),
        ];
        var template = new ChatTemplate(HermesStyle, "<s>", "</s>");
        Assert.Equal("<s><|im_start|>system\nThe functions below are yours to call. Each is listed in <tools></tools> with a Python-like signature, then its JSON schema.\n<tools>\n* get_weather(city: str, days: int, units: Union[str,None], hours: list[float], extra: dict[str, bool]): Weather in a city.\n    city (str) The city, e.g. Paris\n    days (int) no description\n    units (Union[str,None]) no description\n    hours (list[float]) no description\n    extra (dict[str, bool]) no description\n  schema: {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \" The city, e.g. Paris \"}, \"days\": {\"type\": \"integer\"}, \"units\": {\"type\": [\"string\", \"null\"]}, \"hours\": {\"type\": \"array\", \"items\": {\"type\": \"number\"}}, \"extra\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"boolean\"}}}, \"required\": [\"city\"]}\n* ping(): Checks the line.\n  schema: {}\n</tools>\nTo call one, write its name and arguments as a JSON object inside <tool_call></tool_call>.<|im_end|>\n<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call><|im_end|>\n<|im_start|>tool\n<tool_response>\n{\"temp\": 21}\n</tool_response>\n<tool_response>\npong\n</tool_response><|im_end|>\n<|im_start|>user\nThanks \u2014 and tomorrow?<|im_end|>\n<|im_start|>assistant\n", template.Render(messages, tools: tools));
        // Hermes writes its calls in <tool_call>: tool_choice "auto" reads them with that parser.
        Assert.Equal("hermes", Stratus.Inference.ToolCallParser.For(template)?.Name);
        Assert.Equal("<|im_end|>", template.EndOfTurn);
    }

    [Theory]
    // Defaults are evaluated at the call, after the parameters before them; a missing argument is undefined.
    [InlineData("{% macro m(a, b='d' ~ a, c=none) %}{{ a }}|{{ b }}|{{ c }}{% endmacro %}{{ m(1) }} {{ m(1, 2) }} {{ m(b=3, a=4) }} {{ m() }} {{ m(1, c=[1]) }}", "1|d1|None 1|2|None 4|3|None |d|None 1|d1|[1]")]
    // A macro reads the variables of where it was defined as they are when it is called...
    [InlineData("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}", "2")]
    // ...its {% set %} stays in it, a namespace's attributes do not...
    [InlineData("{% macro m() %}{% set y = 5 %}{{ y }}{% endmacro %}{% set y = 1 %}{{ m() }}{{ y }}", "51")]
    [InlineData("{% set ns = namespace(a=1) %}{% macro m() %}{% set ns.a = ns.a + 1 %}{% endmacro %}{{ m() }}{{ m() }}{{ ns.a }}", "3")]
    // ...and it does not see its caller's parameters; a macro may call one defined after it.
    [InlineData("{% macro a(x) %}{{ b() }}{% endmacro %}{% macro b() %}[{{ x }}]{% endmacro %}{{ a(1) }}", "[]")]
    [InlineData("{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n }}*{{ fact(n - 1) }}{% endif %}{% endmacro %}{{ fact(4) }}", "4*3*2*1")]
    // A macro is a defined value; what it returns is text.
    [InlineData("{% macro m(x) %}{{ x }}{% endmacro %}{{ m is defined }} {{ m }} {{ m('a') ~ 'b' }} {{ m('a') + 'b' }} {{ m('ab') | length }} {{ nope is defined }}", "True <Macro 'm'> ab ab 2 False")]
    // caller() renders the call block's body where the call is.
    [InlineData("{% macro box(t) %}[{{ t }}:{{ caller() }}]{% endmacro %}{% for i in [1, 2] %}{% call box('n') %}{{ i * 10 }}{% endcall %}{% endfor %}", "[n:10][n:20]")]
    // Whitespace control and trim_blocks / lstrip_blocks around the tags, as elsewhere.
    [InlineData("{%- macro m(a) -%}\n  {{ a }}\n{%- endmacro -%}\n<{{ m(1) }}>", "<1>")]
    [InlineData("{% macro m(a) %}\n  {{ a }}\n{% endmacro %}\n<{{ m(1) }}>", "<  1\n>")]
    [InlineData("{% for i in [1, 2] %}{% macro m() %}{{ i }}{% endmacro %}{{ m() }}{% endfor %}", "12")]
    // A tag ends at its closing delimiter outside string literals (the template above writes "}}").
    [InlineData("{{ '}}' ~ \"%}\" }}{% if '%}' %}y{% endif %}{{ 'a\\'}}' }}", "}}%}ya'}}")]
    public void Macros_render_as_jinja2_renders_them(string source, string expected) =>
        Assert.Equal(expected, new JinjaTemplate(source).Render(new Dictionary<string, object?>()));

    [Theory]
    // jinja2's TypeError, UndefinedError and RecursionError, each named.
    [InlineData("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", "macro 'm' takes not more than 1 argument(s)")]
    [InlineData("{% macro m(a) %}{% endmacro %}{{ m(c=2) }}", "macro 'm' takes no keyword argument 'c'")]
    [InlineData("{% macro m(a) %}{% endmacro %}{{ m(1, a=2) }}", "macro 'm' got multiple values for argument 'a'")]
    [InlineData("{{ m(1) }}{% macro m(a) %}{% endmacro %}", "'m' is undefined where it is called")]
    [InlineData("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "the macro 'f' is called more than 200 levels deep")]
    [InlineData("{% for n in [1] recursive %}{{ loop([1]) }}{% endfor %}", "the recursive loop is called more than 200 levels deep")]
    [InlineData("{% for n in [1] %}{{ loop([1]) }}{% endfor %}", "loop(...) calls the loop again only in a loop marked recursive")]
    public void Macro_calls_that_jinja2_refuses_are_refused(string source, string message)
    {
        var error = Assert.Throws<JinjaException>(() => new JinjaTemplate(source).Render(new Dictionary<string, object?>()));
        Assert.StartsWith(message, error.Message);
    }

    [Theory]
    // What stays unsupported is refused when the template is loaded, naming it.
    [InlineData("{% macro m() %}{% endmacro %}{% call(x m() %}{% endcall %}", "the parameters of caller() are not closed by ')'")]
    [InlineData("{% macro m() %}{% endmacro %}{% call(1) m() %}{% endcall %}", "'1' is not a parameter name in {% call(1) m() %}")]
    [InlineData("{% call range(3) %}{% endcall %}", "must call a macro the template defines")]
    [InlineData("{% macro m() %}{% endmacro %}{{ n() }}", "the function n() is not supported")]
    [InlineData("{% macro m( %}{% endmacro %}", "ends too early")]
    public void What_macros_cannot_do_here_is_refused_at_load(string source, string named)
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source));
        Assert.StartsWith("the chat template cannot be used", error.Message);
        Assert.Contains(named, error.Message);
    }
}
