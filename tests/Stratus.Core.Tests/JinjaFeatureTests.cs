// The Jinja that chat templates on the Hugging Face Hub use beyond the basics: the attribute and
// select filters (Mistral v3 and Nemo, Llama 3.1), a dict's methods read before its keys
// (Command-R's spec.items), slicing with steps and loop controls (Qwen3), tuples, adjacent string
// literals, values printed as Python prints them, {% generation %} (SmolLM3). Every expected text is
// what jinja2 3.1.6 renders, set up as transformers sets it up (an ImmutableSandboxedEnvironment
// with trim_blocks, lstrip_blocks and the loopcontrols extension, tojson as json.dumps(ensure_ascii=False)).
using System.Text.Json;
using Stratus.Tokenization;

namespace Stratus.Core.Tests;

public sealed class JinjaFeatureTests
{
    static readonly Dictionary<string, object?> Variables = JinjaDifferentialTests.Variables("{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}, {\"role\": \"user\", \"content\": \"Hi\"}], \"spec\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"description\": \"A list.\"}}");

    [Theory]
    // Mistral v3 counts user turns
    [InlineData("{{ messages | selectattr(\"role\", \"equalto\", \"user\") | list | length }}", "2")]
    [InlineData("{{ messages | rejectattr(\"role\", \"equalto\", \"user\") | map(attribute=\"role\") | join(\",\") }}", "system,assistant")]
    // Mistral Nemo
    [InlineData("{{ messages | selectattr(\"tool_calls\", \"undefined\") | list | length }} {{ messages | selectattr(\"tool_calls\", \"defined\") | list | length }}", "4 0")]
    [InlineData("{{ messages | selectattr(\"role\", \"in\", [\"user\", \"system\"]) | map(attribute=\"content\") | join(\"|\") }}", "Be brief.|Hi|Hi")]
    [InlineData("{{ messages | selectattr(\"content\", \"string\") | selectattr(\"role\") | list | length }} {{ messages | selectattr(\"role\", \"ne\", \"user\") | list | length }}", "4 2")]
    [InlineData("{{ messages | map(attribute=\"content\") | list }} {{ messages | map(attribute=\"nope\", default=\"z\") | join }} {{ messages | map(attribute=\"content.0\") | join }}", "['Be brief.', 'Hi', 'Hello.', 'Hi'] zzzz BHHH")]
    [InlineData("{{ [\"a\", \"b\"] | map(\"upper\") | join }} {{ [[1, 2], [3]] | map(\"length\") | list }}", "AB [2, 1]")]
    [InlineData("{{ [1, none, \"x\"] | select(\"none\") | list }} {{ [1, none, \"x\"] | reject(\"none\") | list }} {{ [0, 1, 2] | select | list }} {{ [1, 5, 10] | select(\"gt\", 3) | list }}", "[None] [1, 'x'] [1, 2] [5, 10]")]
    // Llama 3.1's builtin tools
    [InlineData("{{ [\"code_interpreter\", \"brave_search\"] | reject(\"equalto\", \"code_interpreter\") | join(\", \") }}", "brave_search")]
    // a dict is iterable
    [InlineData("{{ spec is iterable }} {{ spec is sequence }} {{ spec is mapping }} {{ \"x\" is iterable }} {{ 3 is iterable }} {{ none is none }} {{ 1 is not none }}", "True True True True False True True")]
    [InlineData("{{ 10 is divisibleby 5 }} {{ 3 is in [1, 3] }} {{ 3 is gt 2 }} {{ \"a\" is ne \"b\" }} {{ \"ab\" is lower }} {{ spec.items is callable }} {{ 2.5 is float }}", "True True True True True True True")]
    // adjacent literals are joined
    [InlineData("{{ 'it''s' }} {{ \"a\" 'b' \"c\" }}", "its abc")]
    // tuples
    [InlineData("{{ ('a', 'b') }} {{ (1,) }} {{ 'a' in ('a', 'b') }} {{ (1, 2) == [1, 2] }} {{ (1, 2) == (1, 2) }}", "('a', 'b') (1,) True False True")]
    // spec.items is the method
    [InlineData("{{ spec.items is defined }} {{ spec[\"items\"] }} {{ spec.get(\"type\") }} {{ spec.keys() | list }} {{ spec.items() | list }} {{ spec.pop is defined }}", "True {'type': 'string'} array ['type', 'items', 'description'] [('type', 'array'), ('items', {'type': 'string'}), ('description', 'A list.')] False")]
    [InlineData("{% for k, v in spec.items() if k != \"description\" %}{{ k }}={{ v }};{% endfor %}", "type=array;items={'type': 'string'};")]
    // Qwen3 walks messages backwards
    [InlineData("{{ messages[::-1] | map(attribute=\"role\") | join(\",\") }} {{ [1,2,3,4,5][1::2] }} {{ \"abcdef\"[::-2] }} {{ [1,2,3,4,5][-1:0:-1] }} {{ [1,2,3,4,5,6][4:1:-1] }} {{ [1,2,3][:-5:-1] }} {{ [1,2,3][5:] }}", "user,assistant,user,system [2, 4] fdb [5, 4, 3, 2] [5, 4, 3] [3, 2, 1] []")]
    // Mistral v3 compares messages
    [InlineData("{{ messages[1] == messages[3] }} {{ messages[1] == {\"content\": \"Hi\", \"role\": \"user\"} }} {{ messages[1] == messages[2] }} {{ true == 1 }} {{ 1 == 1.0 }}", "True True False True True")]
    // str() of containers is Python's repr
    [InlineData("{{ spec }} {{ [\"it's\", 'say \"hi\"', \"both ' \\\"\", \"tab\\there\"] }} {{ [1.0, 2.5, 100.0, 0.0001, none, true] }} {{ {\"a\": [1, {\"b\": none}]} | string }}", "{'type': 'array', 'items': {'type': 'string'}, 'description': 'A list.'} [\"it's\", 'say \"hi\"', 'both \\' \"', 'tab\\there'] [1.0, 2.5, 100.0, 0.0001, None, True] {'a': [1, {'b': None}]}")]
    [InlineData("{{ 3 | float }} {{ \"2.5\" | float }} {{ \"x\" | float }} {{ -3 | abs }} {{ [1.5, 2] | tojson }}", "3.0 2.5 0.0 3 [1.5, 2]")]
    // |title and .title() differ
    [InlineData("{{ \"they're bill's-friends (x)\" | title }} {{ \"they're bill's-friends 1st\".title() }} {{ \"hello WORLD\" | capitalize }} {{ \"abc\".capitalize() }}", "They're Bill's-Friends (X) They'Re Bill'S-Friends 1St Hello world Abc")]
    [InlineData("{{ \"Hello\" | replace(\"l\", \"L\") }} {{ \"abc\" | reverse }} {{ [1, 2, 3] | reverse | list }} {{ \"<b>\" | safe }}", "HeLLo cba [3, 2, 1] <b>")]
    [InlineData("{{ \"a\\n\\nb\\n\" | indent }}|{{ \"a\\nb\" | indent(2, true) }}|{{ \"a\\n\\nb\" | indent(width=2, blank=true) }}", "a\n\n    b\n|  a\n  b|a\n  \n  b")]
    [InlineData("{{ \"a b  c\".split(none, 1) }} {{ \"  a   b c  \".split(none, 1) }} {{ \"a,b,c\".split(\",\", 1) }} {{ \"a,b,,c\".split(\",\") }} {{ \"abc\".endswith((\"x\", \"c\")) }} {{ \"abc\".startswith((\"x\",)) }}", "['a', 'b  c'] ['a', 'b c  '] ['a', 'b,c'] ['a', 'b', '', 'c'] True False")]
    // transformers enables loopcontrols
    [InlineData("{% for i in range(6) %}{% if i == 4 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}|{% for i in range(3) %}{% for j in range(3) %}{% if j == 1 %}{% break %}{% endif %}{{ i }}{{ j }}{% endfor %}{% endfor %}", "023|001020")]
    // SmolLM3's {% generation %}
    [InlineData("{% for m in messages %}{% generation %}<{{ m.role }}>{% endgeneration %}{% endfor %}", "<system><user><assistant><user>")]
    // a newline before a macro's name
    [InlineData("{% macro\n    m(a) %}[{{ a }}]{% endmacro %}{{ m(1) }}", "[1]")]
    public void Renders_as_jinja2_renders_it(string source, string expected) =>
        Assert.Equal(expected, new JinjaTemplate(source).Render(Variables));

    /// <summary>A template written for these tests in the style of Mistral's tool-calling templates:
    /// the system text folded into the last user turn, roles checked to alternate with a namespace
    /// counter (raise_exception otherwise), user turns found with selectattr and compared by value
    /// (turn == asked[-1]), calls and results skipped with rejectattr, the tool list written key by
    /// key from .items() with loop.last, calls written with tojson and a slice, results with |string.</summary>
    internal const string MistralStyleTools = """
        {#- The system text, if any, is set aside and folded into the last user turn. #}
        {%- set ns = namespace(turn=0, system="") %}
        {%- if messages and messages[0].role == "system" %}
            {%- set ns.system = messages[0].content %}
            {%- set chat = messages[1:] %}
        {%- else %}
            {%- set chat = messages %}
        {%- endif %}
        {%- if tools is not defined %}
            {%- set tools = none %}
        {%- endif %}
        {%- set asked = chat | selectattr("role", "equalto", "user") | list %}

        {#- Plain user and assistant turns alternate; calls and their results sit between them. #}
        {%- for turn in chat | rejectattr("role", "in", ["tool", "tool_results"]) %}
            {%- if turn.tool_calls is not defined or turn.tool_calls is none %}
                {%- if (turn.role == "user") != (ns.turn % 2 == 0) %}
                    {{- raise_exception("Turns must go user, assistant, user, ... once any system text is set aside.") }}
                {%- endif %}
                {%- set ns.turn = ns.turn + 1 %}
            {%- endif %}
        {%- endfor %}

        {{- bos_token }}
        {%- for turn in chat %}
            {%- if turn.role == "user" %}
                {#- Equal by value: an earlier user turn with the same text gets the toolbox too. #}
                {%- if tools is not none and turn == asked[-1] %}
                    {{- "[TOOLBOX]" }}
                    {%- for entry in tools %}
                        {%- set fn = entry.function %}
                        {{- '{"kind": "function", "spec": {' }}
                        {%- for key, val in fn.items() if key != "return" %}
                            {%- if val is string %}
                                {{- '"' + key + '": "' + val + '"' }}
                            {%- else %}
                                {{- '"' + key + '": ' + val|tojson }}
                            {%- endif %}
                            {%- if not loop.last %}
                                {{- ", " }}
                            {%- endif %}
                        {%- endfor %}
                        {{- "}}" }}
                        {%- if loop.last %}
                            {{- "[/TOOLBOX]" }}
                        {%- else %}
                            {{- "; " }}
                        {%- endif %}
                    {%- endfor %}
                {%- endif %}
                {%- if loop.last and ns.system %}
                    {{- "[ASK]" + ns.system + "\n--\n" + turn.content + "[/ASK]" }}
                {%- else %}
                    {{- "[ASK]" + turn.content + "[/ASK]" }}
                {%- endif %}
            {%- elif turn.tool_calls is defined and turn.tool_calls is not none %}
                {{- "[CALL]" }}
                {%- for call in turn.tool_calls %}
                    {%- if call.id is not defined or call.id|length != 9 %}
                        {{- raise_exception("Each tool call needs an id of nine letters or digits.") }}
                    {%- endif %}
                    {%- set body = call.function|tojson %}
                    {{- body[:-1] + ', "ref": "' + call.id + '"}' }}
                    {%- if loop.last %}
                        {{- "[/CALL]" + eos_token }}
                    {%- else %}
                        {{- " | " }}
                    {%- endif %}
                {%- endfor %}
            {%- elif turn.role == "assistant" %}
                {{- "[SAY]" + turn.content|trim + "[/SAY]" + eos_token }}
            {%- elif turn.role in ["tool", "tool_results"] %}
                {%- set result = turn.content.content if turn.content.content is defined else turn.content %}
                {%- if turn.tool_call_id is not defined or turn.tool_call_id|length != 9 %}
                    {{- raise_exception("Each tool result needs the nine-character id of its call.") }}
                {%- endif %}
                {{- '[RESULT ' + turn.tool_call_id + '] ' + result|string + ' [/RESULT]' }}
            {%- else %}
                {{- raise_exception("Unexpected role " + turn.role + ": only user, assistant and tool turns follow the system text.") }}
            {%- endif %}
        {%- endfor %}
        """;

    /// <summary>A template written for these tests in the style of Gemma's turn templates: no system
    /// turn, its text folded into the first user turn, roles checked to alternate by loop.index0,
    /// the assistant renamed with an inline if, content as text or a list of parts, trimmed.</summary>
    const string GemmaStyleTurns = """
        {{ bos_token }}
        {%- if messages[0]['role'] == 'system' -%}
            {%- if messages[0]['content'] is string -%}
                {%- set preface = messages[0]['content'] ~ '\n\n' -%}
            {%- else -%}
                {%- set preface = (messages[0]['content'] | first)['text'] ~ '\n\n' -%}
            {%- endif -%}
            {%- set turns = messages[1:] -%}
        {%- else -%}
            {%- set preface = '' -%}
            {%- set turns = messages -%}
        {%- endif -%}
        {%- for message in turns -%}
            {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
                {{ raise_exception('Turns must take turns: a user turn first, then the model, and so on.') }}
            {%- endif -%}
            {%- set speaker = 'model' if message['role'] == 'assistant' else message['role'] -%}
            {{ '<|turn:' ~ speaker ~ '|>\n' ~ (preface if loop.first else '') }}
            {%- if message['content'] is string -%}
                {{ message['content'] | trim }}
            {%- elif message['content'] is iterable -%}
                {%- for part in message['content'] -%}
                    {%- if part['type'] == 'image' -%}
                        {{ '<|picture|>' }}
                    {%- elif part['type'] == 'text' -%}
                        {{ part['text'] | trim }}
                    {%- endif -%}
                {%- endfor -%}
            {%- else -%}
                {{ raise_exception('A turn holds text or a list of parts.') }}
            {%- endif -%}
            {{ '<|/turn|>\n' }}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{ '<|turn:model|>\n' }}
        {%- endif -%}
        """;

    /// <summary>A template in Phi-4-mini's shape, written for these tests: tools as JSON in the system
    /// turn, with a Qwen3-style backwards search for the last user turn (messages[::-1] and
    /// {% break %}), a macro whose name follows a newline, adjacent literals, tuples and |title.</summary>
    const string Phi = """
        {%- macro
            turn(role, text) -%}
        {{ '<|' ~ role ~ '|>' ~ text ~ '<|end|>' }}
        {%- endmacro -%}
        {%- set ns = namespace(last_user=-1) -%}
        {%- for message in messages[::-1] -%}
            {%- if message.role == 'user' -%}
                {%- set ns.last_user = (messages | length - 1) - loop.index0 -%}
                {%- break -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for message in messages -%}
            {%- if message.role == 'system' and tools -%}
                {{ turn('system', message.content ~ '<|tool|>' ~ tools | map(attribute='function') | list | tojson ~ '<|/tool|>') }}
            {%- elif message.role == 'tool' -%}
                {{ turn('tool', message.content) }}
            {%- elif message.role == 'assistant' and message.tool_calls is defined -%}
                {{ turn('assistant', '<|tool_call|>' ~ message.tool_calls | map(attribute='function') | list | tojson ~ '<|/tool_call|>') }}
            {%- elif message.role in ('user', 'system', 'assistant') -%}
                {%- if loop.index0 == ns.last_user and message.content.startswith(('/think', '/no_think')) -%}
                    {{ turn(message.role, message.content.split(' ', 1)[-1] ~ ' (' 'mode: ' ~ message.content.split(' ', 1)[0][1:] | title ~ ')') }}
                {%- else -%}
                    {{ turn(message.role, message.content) }}
                {%- endif -%}
            {%- else -%}
                {{ raise_exception('Unknown role: ' ~ message.role) }}
            {%- endif -%}
        {%- endfor -%}
        {%- if add_generation_prompt -%}
            {{ '<|assistant|>' }}
        {%- else -%}
            {{ eos_token }}
        {%- endif -%}
        """;

    static readonly ChatMessageText[] Greeting = [new("user", "Hi")];
    static readonly ChatMessageText[] WithSystem = [new("system", "Be brief."), new("user", "Hi!"), new("assistant", " Hello. "), new("user", "Name a color.")];
    static readonly ChatMessageText[] ToolRound = [new("user", "Hi"), new("assistant", "Hello."), new("user", "Weather in Paris?"), new("assistant", "") { ToolCalls = [new("call00001", "get_weather", "{\"city\": \"Paris\", \"days\": 2}"), new("call00002", "get_time", "{}")] }, new("tool", "{\"temp\": 21.5}") { ToolCallId = "call00001" }, new("tool", "12:00") { ToolCallId = "call00002" }, new("assistant", "21.5 degrees at noon."), new("user", "Hi")];
    static readonly ChatMessageText[] Thinking = [new("system", "You answer."), new("user", "/think Why is the sky blue?"), new("assistant", "Rayleigh scattering."), new("user", "/no_think And sunsets?")];

    static readonly IReadOnlyList<JsonElement> Tools = JsonDocument.Parse("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city <é & 'quotes'>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}}, {\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"description\": \"The time.\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}]").RootElement.EnumerateArray().ToList();

    static readonly Dictionary<string, (string Source, string Bos, string Eos)> Templates = new()
    {
        [nameof(MistralStyleTools)] = (MistralStyleTools, "<s>", "</s>"),
        [nameof(GemmaStyleTurns)] = (GemmaStyleTurns, "<bos>", "<eos>"),
        [nameof(Phi)] = (Phi, "", "<|endoftext|>"),
    };

    static readonly Dictionary<string, ChatMessageText[]> Conversations = new()
    {
        [nameof(Greeting)] = Greeting, [nameof(WithSystem)] = WithSystem, [nameof(ToolRound)] = ToolRound, [nameof(Thinking)] = Thinking,
    };

    public static TheoryData<string, string, bool, bool, string> Renderings => new()
    {
        { nameof(MistralStyleTools), nameof(Greeting), false, true, "<s>[ASK]Hi[/ASK]" },
        { nameof(MistralStyleTools), nameof(WithSystem), false, false, "<s>[ASK]Hi![/ASK][SAY]Hello.[/SAY]</s>[ASK]Be brief.\n--\nName a color.[/ASK]" },
        { nameof(MistralStyleTools), nameof(ToolRound), true, true, "<s>[TOOLBOX]{\"kind\": \"function\", \"spec\": {\"name\": \"get_weather\", \"description\": \"Weather in a city <é & 'quotes'>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}}; {\"kind\": \"function\", \"spec\": {\"name\": \"get_time\", \"description\": \"The time.\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}[/TOOLBOX][ASK]Hi[/ASK][SAY]Hello.[/SAY]</s>[ASK]Weather in Paris?[/ASK][CALL]{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}, \"ref\": \"call00001\"} | {\"name\": \"get_time\", \"arguments\": {}, \"ref\": \"call00002\"}[/CALL]</s>[RESULT call00001] {\"temp\": 21.5} [/RESULT][RESULT call00002] 12:00 [/RESULT][SAY]21.5 degrees at noon.[/SAY]</s>[TOOLBOX]{\"kind\": \"function\", \"spec\": {\"name\": \"get_weather\", \"description\": \"Weather in a city <é & 'quotes'>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}}; {\"kind\": \"function\", \"spec\": {\"name\": \"get_time\", \"description\": \"The time.\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}[/TOOLBOX][ASK]Hi[/ASK]" },
        { nameof(MistralStyleTools), nameof(ToolRound), false, false, "<s>[ASK]Hi[/ASK][SAY]Hello.[/SAY]</s>[ASK]Weather in Paris?[/ASK][CALL]{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}, \"ref\": \"call00001\"} | {\"name\": \"get_time\", \"arguments\": {}, \"ref\": \"call00002\"}[/CALL]</s>[RESULT call00001] {\"temp\": 21.5} [/RESULT][RESULT call00002] 12:00 [/RESULT][SAY]21.5 degrees at noon.[/SAY]</s>[ASK]Hi[/ASK]" },
        { nameof(GemmaStyleTurns), nameof(Greeting), false, true, "<bos><|turn:user|>\nHi<|/turn|>\n<|turn:model|>\n" },
        { nameof(GemmaStyleTurns), nameof(WithSystem), false, true, "<bos><|turn:user|>\nBe brief.\n\nHi!<|/turn|>\n<|turn:model|>\nHello.<|/turn|>\n<|turn:user|>\nName a color.<|/turn|>\n<|turn:model|>\n" },
        { nameof(GemmaStyleTurns), nameof(WithSystem), false, false, "<bos><|turn:user|>\nBe brief.\n\nHi!<|/turn|>\n<|turn:model|>\nHello.<|/turn|>\n<|turn:user|>\nName a color.<|/turn|>\n" },
        { nameof(GemmaStyleTurns), nameof(Thinking), false, true, "<bos><|turn:user|>\nYou answer.\n\n/think Why is the sky blue?<|/turn|>\n<|turn:model|>\nRayleigh scattering.<|/turn|>\n<|turn:user|>\n/no_think And sunsets?<|/turn|>\n<|turn:model|>\n" },
        { nameof(Phi), nameof(Greeting), false, true, "<|user|>Hi<|end|><|assistant|>" },
        { nameof(Phi), nameof(WithSystem), true, false, "<|system|>Be brief.<|tool|>[{\"name\": \"get_weather\", \"description\": \"Weather in a city <é & 'quotes'>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}, {\"name\": \"get_time\", \"description\": \"The time.\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}]<|/tool|><|end|><|user|>Hi!<|end|><|assistant|> Hello. <|end|><|user|>Name a color.<|end|><|endoftext|>" },
        { nameof(Phi), nameof(ToolRound), true, true, "<|user|>Hi<|end|><|assistant|>Hello.<|end|><|user|>Weather in Paris?<|end|><|assistant|><|tool_call|>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}, {\"name\": \"get_time\", \"arguments\": {}}]<|/tool_call|><|end|><|tool|>{\"temp\": 21.5}<|end|><|tool|>12:00<|end|><|assistant|>21.5 degrees at noon.<|end|><|user|>Hi<|end|><|assistant|>" },
        { nameof(Phi), nameof(Thinking), true, true, "<|system|>You answer.<|tool|>[{\"name\": \"get_weather\", \"description\": \"Weather in a city <é & 'quotes'>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"The city\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}, {\"name\": \"get_time\", \"description\": \"The time.\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}]<|/tool|><|end|><|user|>/think Why is the sky blue?<|end|><|assistant|>Rayleigh scattering.<|end|><|user|>And sunsets? (mode: No_think)<|end|><|assistant|>" },
    };

    [Theory]
    [MemberData(nameof(Renderings))]
    public void Whole_templates_render_conversations_as_jinja2_does(string template, string conversation, bool tools, bool addGenerationPrompt, string expected)
    {
        var (source, bos, eos) = Templates[template];
        Assert.Equal(expected, new ChatTemplate(source, bos, eos).Render(Conversations[conversation], addGenerationPrompt, tools: tools ? Tools : null));
    }

    [Theory]
    [InlineData(nameof(MistralStyleTools), "the chat template could not render this conversation: Turns must go user, assistant, user, ... once any system text is set aside.")]
    [InlineData(nameof(GemmaStyleTurns), "the chat template could not render this conversation: Turns must take turns: a user turn first, then the model, and so on.")]
    public void A_template_raises_its_own_error_when_roles_do_not_alternate(string template, string message)
    {
        var (source, bos, eos) = Templates[template];
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source, bos, eos).Render([new("user", "a"), new("user", "b")]));
        Assert.Equal(message, error.Message);
    }

    [Theory]
    // A method printed would be an address in jinja2; a loop control outside a loop does not compile there.
    [InlineData("{{ spec.items }}", "the template writes the method .items of a mapping as text; call it: .items()")]
    [InlineData("{{ spec.items | tojson }}", "tojson cannot write a method")]
    [InlineData("{{ [1, 2] | select('nope') | list }}", "the test 'is nope' is not supported")]
    [InlineData("{{ [1, 2][::0] }}", "slice step cannot be zero")]
    public void What_jinja2_cannot_render_either_is_refused(string source, string message)
    {
        var error = Assert.Throws<JinjaException>(() => new JinjaTemplate(source).Render(Variables));
        Assert.Equal(message, error.Message);
    }

    [Theory]
    [InlineData("{% break %}", "{% break %} is outside a {% for %} loop")]
    [InlineData("{% for i in [1] %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}", "{% continue %} is outside a {% for %} loop")]
    [InlineData("{{ messages | xmlattr }}", "the filter '|xmlattr' is not supported")]
    public void What_stays_unsupported_is_refused_at_load(string source, string message)
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source));
        Assert.Equal($"the chat template cannot be used: {message}", error.Message);
    }

    [Theory]
    // An error names the line of the template it is on: a tag's or an output's, an inner block's
    // before the block around it, a macro's body where it is called, the opening tag of a block
    // left open; raise_exception's message is the template's own, as it wrote it, and a template
    // of one line names none.
    [InlineData("a\n{% if true %}\n  {{ 1 / 0 }}\n{% endif %}", "division by zero (line 3 of the template)")]
    [InlineData("a\nb\n{{ messages | nope }}", "the filter '|nope' is not supported (line 3 of the template)")]
    [InlineData("{% for m in messages %}\n\n{{ m }}", "missing {% endfor %} (line 1 of the template)")]
    [InlineData("x\r\ny\r\n{{ 1 +", "{{ is not closed by }} (line 3 of the template)")]
    [InlineData("{% macro m() %}\n{{ 1 // 0 }}\n{% endmacro %}\n\n{{ m() }}", "division by zero (line 2 of the template)")]
    [InlineData("{% if false %}\n{% elif 1 + %}\n{% endif %}", "expression ends too early (line 2 of the template)")]
    [InlineData("{# a comment\nof two lines #}\n{% endfor %}", "the tag {% endfor %} is not supported (line 3 of the template)")]
    [InlineData("\n\n{{ raise_exception('No tools here.') }}", "No tools here.")]
    [InlineData("{{ 1 / 0 }}", "division by zero")]
    public void An_error_names_the_line_of_the_template(string source, string message)
    {
        var error = Assert.Throws<JinjaException>(() => new JinjaTemplate(source).Render(Variables));
        Assert.Equal(message, error.Message);
    }
}
