// A chat request's messages as a model's template reads them, in the shape transformers'
// apply_chat_template and vLLM give them: an assistant's null content as none (DeepSeek R1's
// templates write a message's tool calls only then), the tool calls' arguments as the template
// takes them. The templates here are written for these tests.
using System.Text.Json;
using Stratus.Data;
using Stratus.Server.Api;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

public sealed class ChatMessageShapeTests
{
    /// <summary>Written for these tests in the style of DeepSeek R1's: an assistant's calls are
    /// written only where its content is none, each call's arguments as text between fences.</summary>
    const string CallsWhereContentIsNone =
        "{% for m in messages %}{% if m.role == 'assistant' and m.content is none %}{% for c in m.tool_calls %}<call>{{ c.function.name }}:{{ c.function.arguments }}</call>{% endfor %}" +
        "{% elif m.role == 'assistant' %}<reply>{{ m.content }}</reply>{% else %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}";

    static List<ChatMessageText> Messages(string json) => RequestParser.Messages(JsonSerializer.Deserialize<List<ChatMessageBody?>>(json, Json));

    [Fact]
    public void An_assistant_s_null_content_reaches_the_template_as_none_and_empty_content_as_empty()
    {
        var template = new ChatTemplate(CallsWhereContentIsNone);
        var messages = Messages("""
            [{"role": "user", "content": "Time?"},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
             {"role": "assistant", "content": ""}]
            """);
        Assert.Equal("<user>Time?<call>time:{}</call><tool>12:00<reply></reply>", template.Render(messages, addGenerationPrompt: false));
    }

    const string CallTurn = """
        [{"role": "user", "content": "Weather?"},
         {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Zürich\",  \"days\": 2}"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
        """;

    [Fact]
    public void A_template_that_adds_arguments_to_text_gets_their_JSON_text_and_one_that_writes_them_as_JSON_an_object()
    {
        // Written for this test in the style of DeepSeek's: the arguments between fences, as text.
        var asText = new ChatTemplate("{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}{{ '<call>' + c.function.name + '\n```json\n' + c.function.arguments + '\n```' }}{% endfor %}{% else %}{{ '<' + m.role + '>' + m.content }}{% endif %}{% endfor %}");
        Assert.Equal("<user>Weather?<call>weather\n```json\n{\"city\": \"Zürich\",  \"days\": 2}\n```<tool>sunny", asText.Render(Messages(CallTurn), addGenerationPrompt: false));
        // Written for this test in the style of Llama 3.1's: {"name", "parameters"} with tojson.
        var asJson = new ChatTemplate("{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}{{ {'name': c.function.name, 'parameters': c.function.arguments} | tojson }}{% endfor %}{% else %}{{ '<' + m.role + '>' + m.content }}{% endif %}{% endfor %}");
        Assert.Equal("<user>Weather?{\"name\": \"weather\", \"parameters\": {\"city\": \"Zürich\", \"days\": 2}}<tool>sunny", asJson.Render(Messages(CallTurn), addGenerationPrompt: false));
    }

    [Fact]
    public void A_template_that_adds_content_to_text_gets_empty_content_for_a_turn_of_calls_alone()
    {
        // Written for this test in the style of ChatML's, which knows nothing of calls.
        var template = new ChatTemplate("{% for m in messages %}{{ '[' + m.role + ']' + m.content + '\n' }}{% endfor %}");
        Assert.Equal("[user]Weather?\n[assistant]\n[tool]sunny\n", template.Render(Messages(CallTurn), addGenerationPrompt: false));
    }

    [Fact]
    public void Text_parts_reach_the_template_joined_by_a_line_break_as_vLLM_joins_them_for_templates_that_take_string_content()
    {
        var template = new ChatTemplate("{% for m in messages %}[{{ m.role }}]{% if m.content is not none %}{{ m.content }}{% endif %}{% endfor %}");
        var messages = Messages("""
            [{"role": "user", "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}]},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "time", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "12"}, {"type": "text", "text": "00"}]}]
            """);
        Assert.Equal("[user]First.\nSecond.[assistant][tool]12\n00", template.Render(messages, addGenerationPrompt: false));
    }

    [Fact]
    public void A_message_s_name_and_an_assistant_s_reasoning_reach_the_template_as_vLLM_passes_them()
    {
        // Written for this test in the style of Qwen3's, which writes an earlier turn's reasoning_content.
        var template = new ChatTemplate("{% for m in messages %}<{{ m.role }}{% if m.name %} name={{ m.name }}{% endif %}>" +
            "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}|{{ m.reasoning }}</think>{% endif %}{{ m.content }}{% endfor %}");
        var messages = Messages("""
            [{"role": "system", "content": "Be brief.", "name": "rules"},
             {"role": "user", "content": "Hi", "name": "ada"},
             {"role": "assistant", "content": "A", "reasoning_content": "r1", "name": "bot"},
             {"role": "user", "content": "Again"},
             {"role": "assistant", "content": "B", "reasoning": "r2"}]
            """);
        Assert.Equal("<system name=rules>Be brief.<user name=ada>Hi<assistant name=bot><think>r1|r1</think>A<user>Again<assistant><think>r2|r2</think>B",
            template.Render(messages, addGenerationPrompt: false));
    }

    [Fact]
    public void An_assistant_s_reasoning_given_twice_differently_is_refused_naming_it()
    {
        var refused = Assert.Throws<ApiException>(() => Messages("""
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A", "reasoning": "r1", "reasoning_content": "r2"}]
            """));
        Assert.Equal(400, refused.Status);
        Assert.Equal("messages[1].reasoning_content", refused.Param);
    }

    [Fact]
    public void A_conversation_with_names_and_reasoning_is_prepared_for_fine_tuning_as_the_server_renders_it_its_assistant_turns_learned()
    {
        // Written for this test in the style of Qwen3's: names in the headers, an assistant's
        // reasoning in front of its reply.
        const string Template = "{% for m in messages %}<{{ m.role }}{% if m.name %} name={{ m.name }}{% endif %}>" +
            "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}</{{ m.role }}>\n{% endfor %}" +
            "{% if add_generation_prompt %}<assistant>{% endif %}";
        const string Conversation = """
            [{"role": "system", "content": "Be brief.", "name": "rules"},
             {"role": "user", "content": "Hi", "name": "ada"},
             {"role": "assistant", "content": "A", "reasoning_content": "r1"},
             {"role": "user", "content": "Again", "name": "ada"},
             {"role": "assistant", "content": "B", "reasoning": "r2", "reasoning_content": "r2"}]
            """;
        var folder = Path.Combine(Path.GetTempPath(), $"stratus-prepare-shape-{Guid.NewGuid():N}");
        try
        {
            var tokenizer = CharTokenizer.FromCorpus(TinyModelServer.Corpus);
            TinyModelServer.SaveGpt(Path.Combine(folder, "model"), tokenizer, context: 64, layers: 1, chatTemplate: Template);
            var served = ChatTemplate.Load(Path.Combine(folder, "model"), tokenizer);
            var rendered = served.Render(Messages(Conversation), addGenerationPrompt: false);
            Assert.Contains("<user name=ada>Hi", rendered);
            Assert.Contains("<think>r2</think>B", rendered);

            var line = $"{{\"messages\": {Conversation.ReplaceLineEndings("")}}}";
            File.WriteAllLines(Path.Combine(folder, "chat.jsonl"), [line, line]);
            ChatDatasetPreparer.Prepare(Path.Combine(folder, "chat.jsonl"), Path.Combine(folder, "data"), Path.Combine(folder, "model"), valFraction: 0.5);
            var tokens = Shard(folder, DatasetPreparer.TrainShard);
            var mask = Shard(folder, ChatDatasetPreparer.TrainMask);
            Assert.Equal(tokenizer.Encode(rendered).Select(t => (long)t), tokens);
            // Learned: each assistant turn after its header, reasoning and end of turn included.
            Assert.Equal("<think>r1</think>A</assistant>\n<think>r2</think>B</assistant>\n",
                tokenizer.Decode(tokens.Where((_, i) => mask[i] == 1).Select(t => (int)t).ToArray()));
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    [Fact]
    public void A_conversation_with_tools_tool_calls_a_tool_result_and_text_parts_is_prepared_as_the_server_renders_it_the_assistant_s_turns_and_calls_learned()
    {
        // Written for this test in the style of Qwen2.5's: the tools listed first, content looped
        // over as parts (a tool's result as text), each call with its arguments as JSON.
        const string Template = "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}" +
            "{% for m in messages %}<{{ m.role }}>{% if m.role == 'tool' %}{{ m.tool_call_id }}={{ m.content }}{% else %}{% for p in m['content'] %}[{{ p.text }}]{% endfor %}{% endif %}" +
            "{% if m.tool_calls %}{% for c in m.tool_calls %}<call {{ c.id }}>{{ c.function.name }}{{ c.function.arguments | tojson }}</call>{% endfor %}{% endif %}</{{ m.role }}>\n{% endfor %}" +
            "{% if add_generation_prompt %}<assistant>{% endif %}";
        const string Tools = """[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]""";
        const string Conversation = """
            [{"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}]},
             {"role": "user", "content": "Weather in Paris?"},
             {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
             {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
             {"role": "assistant", "content": [{"type": "text", "text": "Sunny."}]}]
            """;
        var folder = Path.Combine(Path.GetTempPath(), $"stratus-prepare-tools-{Guid.NewGuid():N}");
        try
        {
            var tokenizer = CharTokenizer.FromCorpus(TinyModelServer.Corpus);
            TinyModelServer.SaveGpt(Path.Combine(folder, "model"), tokenizer, context: 64, layers: 1, chatTemplate: Template);
            var served = ChatTemplate.Load(Path.Combine(folder, "model"), tokenizer);
            using var tools = JsonDocument.Parse(Tools);
            var rendered = RequestParser.Chat(JsonSerializer.Deserialize<List<ChatMessageBody?>>(Conversation, Json), addGenerationPrompt: false, continueFinalMessage: null,
                ChatToolsParser.Parse(tools.RootElement)).Render(served);
            Assert.Equal("<tools>weather;</tools>\n<system>[Be brief.][Use tools.]</system>\n<user>[Weather in Paris?]</user>\n" +
                "<assistant><call call_1>weather{\"city\": \"Paris\"}</call></assistant>\n<tool>call_1=sunny</tool>\n<assistant>[Sunny.]</assistant>\n", rendered);

            var line = $"{{\"messages\": {Conversation.ReplaceLineEndings("")}, \"tools\": {Tools}}}";
            File.WriteAllLines(Path.Combine(folder, "chat.jsonl"), [line, line]);
            ChatDatasetPreparer.Prepare(Path.Combine(folder, "chat.jsonl"), Path.Combine(folder, "data"), Path.Combine(folder, "model"), valFraction: 0.5);
            var tokens = Shard(folder, DatasetPreparer.TrainShard);
            var mask = Shard(folder, ChatDatasetPreparer.TrainMask);
            Assert.Equal(RequestParser.Encode(tokenizer, rendered, "messages", served.AddSpecialTokens).Select(t => (long)t), tokens);
            // Learned: each assistant turn after its header, its call and end of turn included.
            Assert.Equal("<call call_1>weather{\"city\": \"Paris\"}</call></assistant>\n[Sunny.]</assistant>\n",
                tokenizer.Decode(tokens.Where((_, i) => mask[i] == 1).Select(t => (int)t).ToArray()));
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    static long[] Shard(string folder, string name)
    {
        using var shard = TokenShard.Open(Path.Combine(folder, "data", name));
        var values = new long[shard.Count];
        shard.Read(0, values);
        return values;
    }
}
