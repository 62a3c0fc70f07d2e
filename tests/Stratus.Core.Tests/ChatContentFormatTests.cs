// A message's content as a template reads it: a list of text parts for a template that loops over
// it, a string for any other, found once from the template's syntax as vLLM finds it (its
// _detect_content_format, whose answers for these templates were checked by running the same rules
// over jinja2's syntax tree), and what each then renders, as jinja2 renders the messages vLLM gives.
// The templates are written for these tests.
using Stratus.Tokenization;

namespace Stratus.Tests;

public sealed class ChatContentFormatTests
{
    [Theory]
    [InlineData("{% for message in messages %}{{ message['content'] }}{% endfor %}", false)]
    [InlineData("{% for m in messages %}{% for p in m['content'] %}{{ p.text }}{% endfor %}{% endfor %}", true)]
    [InlineData("{% for m in messages %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endfor %}", true)]
    // The messages followed through {% set %}s, slices, filters and a loop's condition.
    [InlineData("{% set loop_messages = messages[1:] %}{% set rest = loop_messages | list %}{% for m in rest %}{% for p in m.content | selectattr('type', 'equalto', 'text') %}{{ p.text }}{% endfor %}{% endfor %}", true)]
    [InlineData("{% set messages = messages[1:] %}{% for message in messages %}{% for content in message['content'] %}{{ content }}{% endfor %}{% endfor %}", true)]
    [InlineData("{% for m in (messages | list)[1:] %}{% for p in (m['content']) %}{{ p }}{% endfor %}{% endfor %}", true)]
    [InlineData("{% for m in messages if m.role != 'system' %}{% for p in m['content'][1:] if p.type == 'text' %}{{ p }}{% endfor %}{% endfor %}", true)]
    [InlineData("{% macro turns() %}{% for m in messages %}{% for p in m.content %}{{ p }}{% endfor %}{% endfor %}{% endmacro %}{{ turns() }}", true)]
    // What vLLM does not follow: the content set to another name, one message picked by its
    // index, a macro's argument, a key of the content, a namespace's attribute.
    [InlineData("{% for m in messages %}{% set c = m['content'] %}{% for p in c %}{{ p }}{% endfor %}{% endfor %}", false)]
    [InlineData("{% for p in messages[0]['content'] %}{{ p }}{% endfor %}", false)]
    [InlineData("{% for message in others %}{% for p in message.content %}{{ p }}{% endfor %}{% endfor %}", false)]
    [InlineData("{% macro parts(message) %}{% for p in message.content %}{{ p }}{% endfor %}{% endmacro %}{% for m in messages %}{{ parts(m) }}{% endfor %}", false)]
    [InlineData("{% for m in messages %}{% for p in m.content.parts %}{{ p }}{% endfor %}{% endfor %}", false)]
    [InlineData("{% set ns = namespace(m=messages) %}{% for m in ns.m %}{% for p in m.content %}{{ p }}{% endfor %}{% endfor %}", false)]
    public void A_template_that_loops_over_a_message_s_content_reads_it_as_parts(string source, bool parts) =>
        Assert.Equal(parts, new JinjaTemplate(source).IteratesMessageContent);

    /// <summary>In the style of Llama 4's and vLLM's Llama 3.1 JSON template: content as text or
    /// as parts, each text part written apart; calls' arguments as JSON.</summary>
    const string Parts = """
        {%- for message in messages %}
            {{- '<' + message.role + '>' }}
            {%- if message.content is string %}
                {{- message.content }}
            {%- else %}
                {%- for part in message.content %}
                    {%- if part.type == 'text' %}{{- '[' + part.text + ']' }}{%- endif %}
                {%- endfor %}
            {%- endif %}
            {%- for call in message.tool_calls or [] %}
                {{- '<call>' + call.function.name + ' ' + call.function.arguments | tojson + '</call>' }}
            {%- endfor %}
        {%- endfor %}
        """;

    static readonly List<ChatMessageText> Conversation =
    [
        new("system", "Be brief."),
        new("user", "First.\nSecond.") { TextParts = ["First.", "Second."] },
        new("assistant", null) { ToolCalls = [new ChatToolCall("call_1", "time", "{\"zone\": \"UTC\"}")] },
        new("tool", "12\n00") { TextParts = ["12", "00"], ToolCallId = "call_1" },
        new("assistant", ""),
    ];

    [Fact]
    public void A_template_that_loops_over_parts_gets_each_text_part_a_string_as_one_and_no_content_as_none()
    {
        // What jinja2 renders for vLLM's "openai" messages: a string content is one part, an
        // assistant's null content no parts, a tool's result its text parts joined.
        Assert.Equal("<system>[Be brief.]<user>[First.][Second.]<assistant><call>time {\"zone\": \"UTC\"}</call><tool>12\n00<assistant>[]",
            new ChatTemplate(Parts).Render(Conversation, addGenerationPrompt: false));
    }

    [Fact]
    public void A_template_written_for_parts_alone_reads_a_string_content_as_one_part()
    {
        // In the style of SmolVLM's and Idefics3's, which loop over the parts without testing for a
        // string: a string's characters have no 'type', so its text was left out.
        var partsAlone = "{% for m in messages %}<{{ m.role }}>{% for line in m['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}{% endif %}{% endfor %}{% endfor %}";
        Assert.Equal("<system>Be brief.<user>First.Second.", new ChatTemplate(partsAlone).Render(Conversation[..2], addGenerationPrompt: false));
    }

    [Fact]
    public void A_template_that_does_not_loop_over_parts_gets_them_joined_by_line_breaks()
    {
        var joined = "{%- for message in messages %}{{- '<' + message.role + '>' + message.content }}{%- endfor %}";
        Assert.Equal("<system>Be brief.<user>First.\nSecond.<assistant><tool>12\n00<assistant>", new ChatTemplate(joined).Render(Conversation, addGenerationPrompt: false));
    }

    [Fact]
    public void A_final_message_of_parts_is_continued_after_its_last_text_part_as_transformers_finds_it()
    {
        List<ChatMessageText> prefilled = [new("user", "Hi"), new("assistant", "Sure,\nthe answer") { TextParts = ["Sure,", "the answer"] }];
        Assert.Equal("<user>[Hi]<assistant>[Sure,][the answer", new ChatTemplate(Parts).Render(prefilled, addGenerationPrompt: false, continueFinalMessage: true));
    }
}
