// Chat templates written for these tests in the style of the model families' (their wire formats,
// our own wording and layout), rendered by Stratus's Jinja subset and compared with what jinja2
// renders for the same conversation as transformers' apply_chat_template sets it up.
using System.Text.Json.Nodes;
using Stratus.Formats;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class ChatTemplateTests
{
    /// <summary>ChatML, written for these tests.</summary>
    internal const string ChatMl = "{% for turn in messages %}{{ '<|im_start|>' + turn['role'] + '\\n' }}{{ turn['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    /// <summary>Written for these tests in the style of Llama 3's: BOS once, headers, trimmed content.</summary>
    const string Llama3 = "{% for turn in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}{% set header = '<|start_header_id|>' + turn['role'] + '<|end_header_id|>\\n\\n' %}{{ header + turn['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

    /// <summary>Written for these tests in the style of Llama 2's: the system text folded into the first [INST].</summary>
    const string Llama2 = "{% set turns = messages %}{% set system_text = false %}{% if messages[0]['role'] == 'system' %}{% set system_text = messages[0]['content'] %}{% set turns = messages[1:] %}{% endif %}{% for turn in turns %}{% if (turn['role'] == 'assistant') != (loop.index0 % 2 == 1) %}{{ raise_exception('After any system message, turns go user, assistant, user, ...') }}{% endif %}{% set text = turn['content'] %}{% if loop.first and system_text != false %}{% set text = '<<SYS>>\\n' + system_text + '\\n<</SYS>>\\n\\n' + text %}{% endif %}{% if turn['role'] == 'user' %}{{ bos_token + '[INST] ' + text.strip() + ' [/INST]' }}{% else %}{{ ' ' + text.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    /// <summary>Written for these tests in the style of Mistral's first: user and assistant turns only, alternating.</summary>
    const string Mistral = "{{ bos_token }}{% for turn in messages %}{% if turn['role'] not in ['user', 'assistant'] %}{{ raise_exception('This template takes user and assistant turns only, not ' + turn['role']) }}{% elif (turn['role'] == 'user') != (loop.index0 is even) %}{{ raise_exception('A user turn comes first, then turns alternate') }}{% elif turn['role'] == 'user' %}{{ '[INST] ' + turn['content'] + ' [/INST]' }}{% else %}{{ turn['content'] + eos_token }}{% endif %}{% endfor %}";

    /// <summary>Written for these tests in the style of Zephyr's: a tag a line, newlines left to trim_blocks.</summary>
    const string Zephyr = "{% for turn in messages %}\n{% if turn['role'] in ['system', 'user', 'assistant'] %}\n{{ '<|' + turn['role'] + '|>\\n' + turn['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

    /// <summary>Written for these tests in the style of Llama 3.1's: the date from strftime_now(), tools as
    /// indented JSON in the first user turn (or the system turn), one call as {"name", "parameters"}, results
    /// in an ipython turn.</summary>
    internal const string Llama31 = """
        {{- bos_token }}
        {#- Tools come as tools or as custom_tools, and by default with the first user turn. #}
        {%- if custom_tools is defined %}
            {%- set tools = custom_tools %}
        {%- endif %}
        {%- if not tools is defined %}
            {%- set tools = none %}
        {%- endif %}
        {%- if not tools_in_user_message is defined %}
            {%- set tools_in_user_message = true %}
        {%- endif %}
        {%- if not date_string is defined %}
            {%- if strftime_now is defined %}
                {%- set date_string = strftime_now("%d %b %Y") %}
            {%- else %}
                {%- set date_string = "01 Jan 2025" %}
            {%- endif %}
        {%- endif %}
        {%- set call_format = 'To use one, answer with nothing but {"name": <the function>, "parameters": <an object of argument values>}, every value written out.\n\n' %}

        {#- A leading system turn is taken out of the conversation and written after the date. #}
        {%- set system_text = "" %}
        {%- if messages[0]['role'] == 'system' %}
            {%- set system_text = messages[0]['content'] | trim %}
            {%- set messages = messages[1:] %}
        {%- endif %}
        {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
        {%- if tools is not none %}
            {{- "Tool runtime: ipython\n" }}
        {%- endif %}
        {{- "Trained on text up to: 2023-12\n" }}
        {{- "Date: " + date_string + "\n\n" }}
        {%- if tools is not none and not tools_in_user_message %}
            {{- "These functions are available. " + call_format }}
            {%- for function in tools %}
                {{- function | tojson(indent=4) + "\n\n" }}
            {%- endfor %}
        {%- endif %}
        {{- system_text + "<|eot_id|>" }}

        {#- Otherwise the tools open the first user turn, ahead of its text. #}
        {%- if tools_in_user_message and not tools is none %}
            {%- if messages | length == 0 %}
                {{- raise_exception("The tools go into the first user turn, and this conversation has none.") }}
            {%- endif %}
            {%- set first_user_text = messages[0]['content'] | trim %}
            {%- set messages = messages[1:] %}
            {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
            {{- "If one of the functions below answers the request, call it. " + call_format }}
            {%- for function in tools %}
                {{- function | tojson(indent=4) }}
                {{- "\n\n" }}
            {%- endfor %}
            {{- first_user_text + "<|eot_id|>" }}
        {%- endif %}

        {%- for message in messages %}
            {%- if message.role == 'tool' or message.role == 'ipython' %}
                {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
                {%- if message.content is mapping or message.content is iterable %}
                    {{- message.content | tojson }}
                {%- else %}
                    {{- message.content }}
                {%- endif %}
                {{- "<|eot_id|>" }}
            {%- elif 'tool_calls' in message %}
                {%- if message.tool_calls | length != 1 %}
                    {{- raise_exception("This format writes one tool call per assistant turn.") }}
                {%- endif %}
                {%- set call = message.tool_calls[0].function %}
                {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
                {{- '{"name": "' + call.name + '", "parameters": ' + call.arguments | tojson + '}' }}
                {{- "<|eot_id|>" }}
            {%- else %}
                {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
            {%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {%- endif %}

        """;

    /// <summary>Written for these tests in the style of Qwen2.5's: tools in the system turn with tojson,
    /// calls as &lt;tool_call&gt; blocks, tool results grouped in one user turn.</summary>
    internal const string QwenTools = """
        {%- set system_text = messages[0]['content'] if messages[0]['role'] == 'system' else none %}
        {%- if tools %}
            {{- '<|im_start|>system\n' }}
            {{- system_text if system_text is not none else 'You answer questions, using the tools below when they help.' }}
            {{- "\n\n# Tools\n\nThe functions you can call, one JSON signature a line:\n<tools>" }}
            {%- for tool in tools %}
                {{- "\n" }}
                {{- tool | tojson }}
            {%- endfor %}
            {{- "\n</tools>\n\nTo call any of them, write one block per call:\n<tool_call>\n{\"name\": <its name>, \"arguments\": <an object of its arguments>}\n</tool_call><|im_end|>\n" }}
        {%- elif system_text is not none %}
            {{- '<|im_start|>system\n' + system_text + '<|im_end|>\n' }}
        {%- endif %}
        {%- for message in messages %}
            {%- if message.role == "tool" %}
                {#- Consecutive results share one user turn. #}
                {%- if loop.index0 == 0 or messages[loop.index0 - 1].role != "tool" %}
                    {{- '<|im_start|>user' }}
                {%- endif %}
                {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
                {%- if loop.last or messages[loop.index0 + 1].role != "tool" %}
                    {{- '<|im_end|>\n' }}
                {%- endif %}
            {%- elif message.role == "assistant" and message.tool_calls %}
                {{- '<|im_start|>assistant' }}
                {%- if message.content %}
                    {{- '\n' + message.content }}
                {%- endif %}
                {%- for call in message.tool_calls %}
                    {%- if call.function is defined %}
                        {%- set call = call.function %}
                    {%- endif %}
                    {{- '\n<tool_call>\n{"name": "' + call.name + '", "arguments": ' }}
                    {{- call.arguments | tojson }}
                    {{- '}\n</tool_call>' }}
                {%- endfor %}
                {{- '<|im_end|>\n' }}
            {%- elif not (message.role == "system" and loop.first) %}
                {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
            {%- endif %}
        {%- endfor %}
        {%- if add_generation_prompt %}
            {{- '<|im_start|>assistant\n' }}
        {%- endif %}
        """;

    /// <summary>Two tools, one description with what JSON writers escape differently ('&lt;', '&amp;', "'", 'é').</summary>
    internal static readonly System.Text.Json.JsonElement[] WeatherTools = [.. System.Text.Json.JsonDocument.Parse("""
        [{"type":"function","function":{"name":"get_weather","description":"Weather in a city <\u00e9 & 'quotes'>","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"tags":{"type":"array","items":{}}},"required":["city"]}}},
        {"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}]
        """).RootElement.EnumerateArray()];

    static List<ChatMessageText> ToolConversation(bool twoCalls)
    {
        List<ChatToolCall> calls = [new("call_1", "get_weather", "{\"city\": \"Paris\", \"days\": 2}")];
        if (twoCalls) calls.Add(new("call_2", "get_time", "{}"));
        List<ChatMessageText> messages =
        [
            new("system", "Be brief."), new("user", "Weather in Paris?"), new("assistant", "") { ToolCalls = calls },
            new("tool", "{\"temp\": 20}") { ToolCallId = "call_1" },
        ];
        if (twoCalls) messages.Add(new("tool", "12:00") { ToolCallId = "call_2" });
        return messages;
    }

    /// <summary>What jinja2 renders, as transformers sets it up (tojson as json.dumps(ensure_ascii=False)), given
    /// the tools and the calls' arguments parsed, as vLLM passes them.</summary>
    [Fact]
    public void Llama_3_1_renders_tools_a_tool_call_and_its_result_as_transformers_does()
    {
        static string Today() => DateTime.Now.ToString("dd MMM yyyy", System.Globalization.CultureInfo.InvariantCulture);
        var before = Today();
        var text = new ChatTemplate(Llama31, "<|begin_of_text|>", "<|eot_id|>").Render(ToolConversation(twoCalls: false), tools: WeatherTools);
        string Expected(string date) => "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nTool runtime: ipython\nTrained on text up to: 2023-12\nDate: " + date + "\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nIf one of the functions below answers the request, call it. To use one, answer with nothing but {\"name\": <the function>, \"parameters\": <an object of argument values>}, every value written out.\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n        \"description\": \"Weather in a city <\u00e9 & 'quotes'>\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\"\n                },\n                \"days\": {\n                    \"type\": \"integer\"\n                },\n                \"tags\": {\n                    \"type\": \"array\",\n                    \"items\": {}\n                }\n            },\n            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}\n\n{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_time\",\n        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {}\n        }\n    }\n}\n\nWeather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\": 20}\"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        Assert.Contains(text, new[] { Expected(before), Expected(Today()) });
    }

    [Fact]
    public void A_Qwen_style_template_renders_tools_parallel_calls_and_grouped_results_as_transformers_does()
    {
        var text = new ChatTemplate(QwenTools).Render(ToolConversation(twoCalls: true), tools: WeatherTools);
        Assert.Equal("<|im_start|>system\nBe brief.\n\n# Tools\n\nThe functions you can call, one JSON signature a line:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city <\u00e9 & 'quotes'>\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}, \"tags\": {\"type\": \"array\", \"items\": {}}}, \"required\": [\"city\"]}}}\n{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}\n</tools>\n\nTo call any of them, write one block per call:\n<tool_call>\n{\"name\": <its name>, \"arguments\": <an object of its arguments>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp\": 20}\n</tool_response>\n<tool_response>\n12:00\n</tool_response><|im_end|>\n<|im_start|>assistant\n", text);
        // Without tools the template is told None, and renders its plain system message.
        Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user", new ChatTemplate(QwenTools).Render([new("system", "Be brief."), new("user", "Hi")]));
    }

    [Fact]
    public void Tool_call_arguments_that_are_not_JSON_are_refused()
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(QwenTools).Render([new("user", "Hi"), new("assistant", "") { ToolCalls = [new("call_9", "get_time", "{oops")] }]));
        Assert.Contains("call_9", error.Message);
    }

    [Theory]
    [InlineData("{{ x | tojson }}", "{\"a\": [1, {}, []], \"s\": \"<\u00e9>\\n\\\"\"}")]
    [InlineData("{{ x | tojson(indent=2) }}", "{\n  \"a\": [\n    1,\n    {},\n    []\n  ],\n  \"s\": \"<\u00e9>\\n\\\"\"\n}")]
    public void Tojson_writes_as_Pythons_json_dumps_without_ASCII_escapes(string source, string expected)
    {
        var x = JinjaTemplate.FromJson(System.Text.Json.JsonDocument.Parse("{\"a\":[1,{},[]],\"s\":\"<\u00e9>\\n\\\"\"}").RootElement);
        Assert.Equal(expected, new JinjaTemplate(source).Render(new Dictionary<string, object?> { ["x"] = x }));
    }

    static readonly (string, string)[] Conversation = [("system", "Be brief."), ("user", "Hi!"), ("assistant", "Hello."), ("user", "Name a color.")];

    [Fact]
    public void ChatML_renders_with_a_generation_prompt()
    {
        var text = new ChatTemplate(ChatMl).Render(Conversation, addGenerationPrompt: true);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n", text);
    }

    [Fact]
    public void Llama3_renders_headers_trimmed_content_and_bos_once()
    {
        var text = new ChatTemplate(Llama3, "<|begin_of_text|>", "<|eot_id|>").Render([("user", " Hi! "), ("assistant", "Hello.")], addGenerationPrompt: true);
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }

    [Fact]
    public void Llama2_folds_the_system_prompt_into_the_first_instruction()
    {
        var text = new ChatTemplate(Llama2, "<s>", "</s>").Render(Conversation, addGenerationPrompt: false);
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi! [/INST] Hello. </s><s>[INST] Name a color. [/INST]", text);
    }

    [Fact]
    public void Mistral_raises_the_templates_own_error_on_a_system_message()
    {
        var template = new ChatTemplate(Mistral, "<s>", "</s>");
        Assert.Equal("<s>[INST] Hi! [/INST]Hello.</s>[INST] Name a color. [/INST]", template.Render(Conversation[1..], addGenerationPrompt: false));
        var error = Assert.Throws<StratusUserException>(() => template.Render(Conversation, addGenerationPrompt: false));
        Assert.EndsWith("This template takes user and assistant turns only, not system", error.Message);
    }

    [Fact]
    public void Zephyr_relies_on_trim_blocks_for_its_newlines()
    {
        var text = new ChatTemplate(Zephyr, "<s>", "</s>").Render(Conversation[..2], addGenerationPrompt: true);
        Assert.Equal("<|system|>\nBe brief.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n", text);
    }

    [Fact]
    public void Llama_3_1_s_template_writes_today_s_date_as_transformers_strftime_now_does()
    {
        static string Today() => DateTime.Now.ToString("dd MMM yyyy", System.Globalization.CultureInfo.InvariantCulture);
        var template = new ChatTemplate(Llama31, "<|begin_of_text|>", "<|eot_id|>");
        var before = Today();
        var text = template.Render(Conversation[..2], addGenerationPrompt: true);
        string Expected(string date) => "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nTrained on text up to: 2023-12\nDate: " + date + "\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
        Assert.Contains(text, new[] { Expected(before), Expected(Today()) });
        Assert.Equal("<|eot_id|>", template.EndOfTurn);
    }

    sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now.ToUniversalTime();
        public override TimeZoneInfo LocalTimeZone { get; } = TimeZoneInfo.CreateCustomTimeZone("fixed", now.Offset, "fixed", "fixed");
    }

    [Fact]
    public void Strftime_now_formats_local_time_as_Python_does_in_the_C_locale()
    {
        // What Python's datetime(2026, 3, 5, 15, 4, 5).strftime gives for each format.
        var clock = new FixedClock(new DateTimeOffset(2026, 3, 5, 15, 4, 5, TimeSpan.FromHours(-7)));
        const string source = "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%-d %B %y') }}|" +
            "{{ strftime_now('%A %a %I:%M:%S %p %j %%') }}|{{ strftime_now is defined }}|{{ 'x' if strftime_now is not defined else 'y' }}";
        Assert.Equal("05 Mar 2026|2026-03-05|5 March 26|Thursday Thu 03:04:05 PM 064 %|True|y", new JinjaTemplate(source).Render(new Dictionary<string, object?>(), clock));
        var error = Assert.Throws<JinjaException>(() => new JinjaTemplate("{{ strftime_now('%d %Q') }}").Render(new Dictionary<string, object?>(), clock));
        Assert.Equal("strftime_now(\"%d %Q\"): the directive %Q is not supported", error.Message);
    }

    [Fact]
    public void Namespaces_loops_filters_and_whitespace_control_work()
    {
        const string source = "{%- set ns = namespace(found=false) -%}\n{%- for m in messages if m.role != 'system' -%}\n  {%- if m.role == 'user' %}{% set ns.found = true %}{% endif -%}\n  [{{ loop.index }}/{{ loop.length }}:{{ m['content'] | upper }}]\n{%- endfor -%}\n{{ ns.found }} {{ messages | length }} {{ (messages | last).content[:3] }} {{ 7 // 2 }} {{ 'x' if undefined_name is not defined else 'y' }} {{ ['a', 'b'] | join('-') }}";
        var text = new ChatTemplate(source).Render(Conversation, addGenerationPrompt: false);
        Assert.Equal("[1/3:HI!][2/3:HELLO.][3/3:NAME A COLOR.]True 4 Nam 3 x a-b", text);
    }

    [Fact]
    public void Indexes_out_of_range_are_undefined_and_modulo_follows_Python()
    {
        // Jinja's getitem turns Python's IndexError into an undefined value, for strings as for lists.
        const string source = "[{{ 'abc'[5] }}|{{ 'abc'[-4] }}|{{ 'abc'[-1] }}|{{ [1][3] }}|{{ 'abc'[9223372036854775807] }}|{{ 'a' * -2 }}|{{ 7 % -3 }}|{{ (-9223372036854775807 - 1) % -1 }}|{{ {'k': 1, 'k': 2}['k'] }}]";
        Assert.Equal("[||c||||-2|0|2]", new ChatTemplate(source).Render(Conversation, addGenerationPrompt: false));
    }

    [Theory]
    [InlineData("{{ 'abc'.startswith() }}", ".startswith() takes 1 argument, not 0")]
    [InlineData("{{ 'abc'.replace('a') }}", ".replace() takes 2 arguments, not 1")]
    [InlineData("{{ messages[0].get() }}", ".get() takes 1 or 2 arguments, not 0")]
    [InlineData("{{ 'abc'.replace('', 'x') }}", ".replace() of the empty string is not supported")]
    [InlineData("{{ 'abc'.split('') }}", ".split() with an empty separator")]
    [InlineData("{{ 'a' * 3000000000 }}", "the template builds a text of more than 8,388,608 characters")]
    [InlineData("{{ 'a' * 1000000000 }}", "the template builds a text of more than 8,388,608 characters")]
    [InlineData("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "the template builds a text of more than 8,388,608 characters")]
    [InlineData("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "the template builds a text of more than 8,388,608 characters")]
    [InlineData("{{ range(100000) | join('x' * 1000) }}", "the template builds a text of more than 8,388,608 characters")]
    [InlineData("{{ ('\\n' * 4000000) | indent(1000, blank=true) }}", "the template builds a text of more than 8,388,608 characters")]
    [InlineData("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "the template builds a list of more than 100,000 items")]
    [InlineData("{% for i in range(10, 0, 0) %}{% endfor %}", "range() step must not be zero")]
    [InlineData("{{ range(-9223372036854775807 - 1, 9223372036854775807) | length }}", "range() of 18,446,744,073,709,551,615 numbers is too large (at most 100,000")]
    [InlineData("{{ range() }}", "range() takes 1 to 3 integers, not 0")]
    [InlineData("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "the template does too much work")]
    [InlineData("{% set s = 'x' * 8000000 %}{% for i in range(100000) %}{% set t = s.upper() %}{% endfor %}", "the template does too much work")]
    [InlineData("{% set s = 'a' * 4000000 %}{{ (s ~ 'b' ~ s) in (s ~ s) }}", "the template does too much work")]
    [InlineData("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns | tojson }}", "the template nests deeper than 200 levels")]
    public void A_template_that_would_crash_or_run_away_fails_with_a_clear_error(string source, string expected)
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source).Render(Conversation, addGenerationPrompt: false));
        Assert.StartsWith($"the chat template could not render this conversation: {expected}", error.Message);
    }

    public static TheoryData<string, string> Unparseable => new()
    {
        { "{{ " + new string('(', 10_000) + "1" + new string(')', 10_000) + " }}", "the template nests deeper than 200 levels" },
        { "{{ " + string.Join(" + ", Enumerable.Repeat("1", 100_000)) + " }}", "the template nests deeper than 200 levels" },
        { "{{ " + string.Concat(Enumerable.Repeat("not ", 10_000)) + "1 }}", "the template nests deeper than 200 levels" },
        { "{{ " + string.Concat(Enumerable.Repeat("- ", 10_000)) + "1 }}", "the template nests deeper than 200 levels" },
        { "{{ " + string.Concat(Enumerable.Repeat("[", 10_000)) + string.Concat(Enumerable.Repeat("]", 10_000)) + " }}", "the template nests deeper than 200 levels" },
        { string.Concat(Enumerable.Repeat("{% if true %}", 10_000)) + string.Concat(Enumerable.Repeat("{% endif %}", 10_000)), "the template nests deeper than 200 levels" },
        { "{{ messages | }}", "expression ends too early" },
        { "{{ messages. }}", "expression ends too early" },
        { "{{ messages is }}", "expression ends too early" },
        { "{{-}}", "expression ends too early" },
        { "{{ 1abc }}", "'1abc' is not a number" },
        { "{{ 99999999999999999999 }}", "the integer 99999999999999999999 is beyond 64-bit integers" },
        { "{% for loop in messages %}{% endfor %}", "{% for %} cannot assign to the special variable 'loop'" },
    };

    [Theory]
    [MemberData(nameof(Unparseable))]
    public void A_template_that_would_crash_the_parser_is_refused_clearly(string source, string expected)
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source));
        Assert.StartsWith($"the chat template cannot be used: {expected}", error.Message);
    }

    [Fact]
    public void A_conversation_of_a_million_tokens_renders_within_the_limits()
    {
        // 4,000 turns of 1,000 characters: ChatML adds 28 characters to a user turn, 33 to an
        // assistant's, and 22 for the generation prompt.
        var turns = Enumerable.Range(0, 4000).Select(i => (i % 2 == 0 ? "user" : "assistant", new string((char)('a' + i % 26), 1000))).ToList();
        Assert.Equal(2000 * 1028 + 2000 * 1033 + 22, new ChatTemplate(ChatMl).Render(turns, addGenerationPrompt: true).Length);
    }

    [Fact]
    public void Nesting_deeper_than_templates_go_renders()
    {
        var nested = "{{ " + new string('(', 150) + "1" + new string(')', 150) + " }}" + string.Concat(Enumerable.Repeat("{% if true %}", 150)) + "!" + string.Concat(Enumerable.Repeat("{% endif %}", 150));
        Assert.Equal("1!", new ChatTemplate(nested).Render(Conversation, addGenerationPrompt: false));
    }

    /// <summary>A tiny run in temp/run whose best checkpoint stores this chat template.</summary>
    static (string Checkpoint, CharTokenizer Tokenizer) SaveRunWithTemplate(TempDirectory temp, string template)
    {
        var tokenizer = CharTokenizer.FromCorpus("hello");
        using var model = new Gpt(new ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false });
        var checkpoint = temp.File("run/checkpoints/best");
        Checkpoint.Save(checkpoint, model, tokenizer, extraFiles: new Dictionary<string, string> { [ChatTemplate.FileName] = template });
        return (checkpoint, tokenizer);
    }

    /// <summary>Serve, import and prepare have the checkpoint's tokenizer when they read its
    /// template: its tokenizer.json is not read again (a 128k-token vocabulary took a second and a
    /// full collection more for each model a server loads).</summary>
    [Fact]
    public void A_stored_template_takes_the_tokenizer_it_is_given_without_reading_the_checkpoints_again()
    {
        using var temp = new TempDirectory();
        var (checkpoint, tokenizer) = SaveRunWithTemplate(temp, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
        File.Delete(Path.Combine(checkpoint, TokenizerStore.FileName));
        var template = ChatTemplate.Load(temp.File("run"), tokenizer);
        Assert.Equal(ChatTemplate.Own, template.Kind);
        Assert.NotNull(ChatTemplate.TryLoad(temp.File("run"), tokenizer, out var unsupported));
        Assert.Null(unsupported);
    }

    [Fact]
    public void A_stored_template_that_cannot_be_used_is_refused_naming_its_file()
    {
        // serve --model a --model b, or prepare --tokenizer-from, would otherwise not say whose template it is.
        using var temp = new TempDirectory();
        var (checkpoint, tokenizer) = SaveRunWithTemplate(temp, "{% include 'turn.jinja' %}");
        var error = Assert.Throws<StratusUserException>(() => ChatTemplate.Load(temp.File("run"), tokenizer));
        Assert.Equal($"{Path.Combine(checkpoint, ChatTemplate.FileName)}: the chat template cannot be used: the tag {{% include %}} is not supported", error.Message);
    }

    [Fact]
    public void A_stored_template_that_cannot_be_used_comes_back_as_unsupported_for_import_and_serve()
    {
        using var temp = new TempDirectory();
        var (checkpoint, tokenizer) = SaveRunWithTemplate(temp, "{{ messages | xmlattr }}");
        Assert.Null(ChatTemplate.TryLoad(temp.File("run"), tokenizer: null, out var unsupported));
        Assert.Equal(new UnsupportedChatTemplate(Path.Combine(checkpoint, ChatTemplate.FileName), "the chat template cannot be used: the filter '|xmlattr' is not supported"), unsupported);
        // prepare --tokenizer-from still refuses it with the one line naming the file.
        Assert.Equal(unsupported!.Message, Assert.Throws<StratusUserException>(() => ChatTemplate.Load(temp.File("run"), tokenizer)).Message);
    }

    static readonly (string, string)[] Prefilled = [("user", "Hi!"), ("assistant", "The sky is ")];

    [Fact]
    public void Continuing_the_final_message_cuts_the_rendering_right_after_its_content_as_transformers_does()
    {
        // The template keeps the content's trailing space: so does the cut (transformers' "preserves spacing" case).
        Assert.Equal("<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nThe sky is ",
            new ChatTemplate(ChatMl).Render(Prefilled, addGenerationPrompt: false, continueFinalMessage: true));
        // Llama 3's template trims the content: the cut ends at the trimmed content, its <|eot_id|> left out.
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nThe sky is",
            new ChatTemplate(Llama3, "<|begin_of_text|>", "<|eot_id|>").Render(Prefilled, addGenerationPrompt: false, continueFinalMessage: true));
        // The last place the content appears is the final message's, not an earlier message that reads the same.
        Assert.Equal("<|im_start|>user\nok<|im_end|>\n<|im_start|>assistant\nok",
            new ChatTemplate(ChatMl).Render([("user", "ok"), ("assistant", "ok")], addGenerationPrompt: false, continueFinalMessage: true));
        // Content with whitespace at both ends: transformers compares the kept span with the whole
        // content, which never matches it, so the cut ends at the trimmed content even where the
        // template kept the trailing space (vLLM renders it so: the prompt tokens must be the same).
        Assert.Equal("<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n The sky is",
            new ChatTemplate(ChatMl).Render([("user", "Hi!"), ("assistant", " The sky is ")], addGenerationPrompt: false, continueFinalMessage: true));
    }

    [Fact]
    public void Continuing_is_refused_with_a_generation_prompt_or_when_the_template_does_not_write_the_content()
    {
        var both = Assert.Throws<StratusUserException>(() => new ChatTemplate(ChatMl).Render(Prefilled, addGenerationPrompt: true, continueFinalMessage: true));
        Assert.Equal("continue_final_message and add_generation_prompt cannot both be true: set add_generation_prompt to false to continue the final message", both.Message);
        var rolesOnly = new ChatTemplate("{% for m in messages %}{{ m['role'] }}:{% endfor %}");
        var missing = Assert.Throws<StratusUserException>(() => rolesOnly.Render(Prefilled, addGenerationPrompt: false, continueFinalMessage: true));
        Assert.StartsWith("continue_final_message is set but the final message does not appear in the chat", missing.Message);
    }

    [Theory]
    [InlineData("{% include 'turn.jinja' %}", "include")]
    [InlineData("{{ messages | xmlattr }}", "xmlattr")]
    [InlineData("{% for m in messages %}", "endfor")]
    public void An_unsupported_template_is_refused_clearly(string source, string named)
    {
        var error = Assert.Throws<StratusUserException>(() => new ChatTemplate(source));
        Assert.StartsWith("the chat template cannot be used", error.Message);
        Assert.Contains(named, error.Message);
    }

    /// <summary>A byte-level tokenizer of lowercase letters and the special tokens given, the
    /// bos and eos named by tokenizer_config.json.</summary>
    static HfTokenizer WithSpecialTokens(string bos, string eos, params string[] special)
    {
        var characters = BpeVocabulary.FromCharacters("abcdefghijklmnopqrstuvwxyz ");
        var vocabulary = characters with { Tokens = [.. characters.Tokens, .. special], Special = Enumerable.Range(characters.Tokens.Count, special.Length).ToHashSet() };
        return HfTokenizer.FromHuggingFace(HuggingFace.TokenizerJson(vocabulary), new JsonObject { ["bos_token"] = bos, ["eos_token"] = eos });
    }

    [Fact]
    public void ChatML_s_end_of_turn_is_a_stop_token_where_the_vocabulary_has_it()
    {
        var tokenizer = WithSpecialTokens("<|endoftext|>", "<|endoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>");
        int eos = tokenizer.Encode("<|endoftext|>").Single(), imEnd = tokenizer.Encode("<|im_end|>").Single();
        var own = ChatTemplate.Of(ChatMl, tokenizer);
        Assert.Equal("<|im_end|>", own.EndOfTurn);
        var (tokens, texts) = own.Stops(tokenizer);
        Assert.Equal([eos, imEnd], tokens);
        Assert.Empty(texts);
        // The ChatML derived from such a vocabulary ends at the same marker.
        Assert.Equal(ChatTemplate.ChatMl, ChatTemplate.For(tokenizer).Kind);
        Assert.Equal([imEnd], ChatTemplate.For(tokenizer).Stops(tokenizer).Tokens);
    }

    [Fact]
    public void ChatML_s_end_of_turn_is_a_stop_string_where_the_model_learned_it_as_text()
    {
        // GPT-2 or a character-level model fine-tuned with prepare --chat-template chatml.jinja.
        var gpt2 = Gpt2Tokenizer.Instance;
        var (tokens, texts) = ChatTemplate.Of(ChatMl, gpt2).Stops(gpt2);
        Assert.Equal([gpt2.EndOfTextId!.Value], tokens);
        Assert.Equal(["<|im_end|>"], texts);
        var chars = CharTokenizer.FromCorpus("<|>abcdefghijklmnopqrstuvwxyz_\n");
        (tokens, texts) = ChatTemplate.Of(ChatMl, chars).Stops(chars);
        Assert.Empty(tokens);
        Assert.Equal(["<|im_end|>"], texts);
    }

    [Fact]
    public void Llama3_ends_a_turn_at_eot_id_as_well_as_at_its_eos()
    {
        var tokenizer = WithSpecialTokens("<|begin_of_text|>", "<|end_of_text|>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>");
        var template = ChatTemplate.Of(Llama3, tokenizer);
        Assert.Equal("<|eot_id|>", template.EndOfTurn);
        var (tokens, texts) = template.Stops(tokenizer);
        Assert.Equal([tokenizer.Encode("<|end_of_text|>").Single(), tokenizer.Encode("<|eot_id|>").Single()], tokens);
        Assert.Empty(texts);
    }

    [Fact]
    public void Llama2_ends_a_turn_at_the_eos_it_writes()
    {
        var tokenizer = HfTokenizer.FromHuggingFace(SentencePieceTests.Llama2StyleTokenizerJson(), new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>" });
        var template = ChatTemplate.Of(Llama2, tokenizer);
        Assert.Equal("</s>", template.EndOfTurn);
        var (tokens, texts) = template.Stops(tokenizer);
        Assert.Equal([tokenizer.EndOfTextId!.Value], tokens);
        Assert.Empty(texts);
    }

    [Fact]
    public void The_plain_template_has_no_end_of_turn()
    {
        var chars = CharTokenizer.FromCorpus("abc\n");
        var template = ChatTemplate.For(chars);
        Assert.Equal(ChatTemplate.Plain, template.Kind);
        Assert.Equal("", template.EndOfTurn);
        var (tokens, texts) = template.Stops(chars);
        Assert.Empty(tokens);
        Assert.Empty(texts);
    }

    [Fact]
    public void A_template_that_cannot_render_a_user_message_and_a_reply_derives_no_end_of_turn()
    {
        const string source = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message comes first') }}{% endif %}{% for message in messages %}{{ message['content'] + '<|end|>' }}{% endfor %}";
        var tokenizer = WithSpecialTokens("<s>", "</s>", "<s>", "</s>", "<|end|>");
        var template = ChatTemplate.Of(source, tokenizer);
        Assert.Equal("", template.EndOfTurn);
        var (tokens, texts) = template.Stops(tokenizer);
        Assert.Equal([tokenizer.EndOfTextId!.Value], tokens);
        Assert.Empty(texts);
    }
}
