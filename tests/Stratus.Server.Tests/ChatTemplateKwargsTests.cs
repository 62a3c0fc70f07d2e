// vLLM's chat_template_kwargs: a chat request's (and /tokenize's) more variables for the model's
// template, any JSON, as Qwen3's enable_thinking and gpt-oss's reasoning_effort are given; the
// names the rendering sets itself are refused or left to the request's own fields, as vLLM
// resolves them. The template here is written for these tests.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

public sealed class ThinkingTemplateServer() : ChatTemplateServer(Template)
{
    /// <summary>In the style of Qwen3's: an empty thinking block after the generation prompt where
    /// enable_thinking is false, an earlier turn's reasoning written back, a message's name; and
    /// variables written out.</summary>
    public const string Template =
        "{%- for m in messages %}{{- '<|im_start|>' + m.role }}{%- if m.name %}{{- ' ' + m.name }}{%- endif %}{{- '\n' }}" +
        "{%- if m.reasoning_content %}{{- '<think>' + m.reasoning_content + '</think>' }}{%- endif %}{{- m.content + '<|im_end|>\n' }}{%- endfor %}" +
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}{%- endif %}{%- endif %}" +
        "{%- if effort %}{{- 'effort=' + effort.level + ':' + (effort.tags | join(',')) }}{%- endif %}{%- if note %}{{- note }}{%- endif %}" +
        "{%- if reasoning_effort %}{{- 'reasoning=' + reasoning_effort }}{%- endif %}{%- if documents %}{%- for d in documents %}{{- '[' + d.title + ']' }}{%- endfor %}{%- endif %}{{- bos_token }}";
}

public sealed class ChatTemplateKwargsTests(ThinkingTemplateServer thinking) : IClassFixture<ThinkingTemplateServer>
{
    static readonly object[] Hi = [new { role = "user", content = "Hi" }];
    const string Asked = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";

    async Task<JsonNode> Post(string path, object body, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await thinking.Server.Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, text);
        return JsonNode.Parse(text)!;
    }

    /// <summary>The messages as /tokenize renders them with <paramref name="extra"/>, read back as text.</summary>
    async Task<string> Rendered(Dictionary<string, object?> extra)
    {
        var body = new Dictionary<string, object?>(extra) { ["model"] = TinyModelServer.ModelName, ["messages"] = Hi };
        var tokens = (await Post("/tokenize", body))["tokens"]!;
        return (string)(await Post("/detokenize", new { model = TinyModelServer.ModelName, tokens }))["prompt"]!;
    }

    [Fact]
    public async Task Chat_template_kwargs_reach_the_template_as_variables_of_any_JSON()
    {
        Assert.Equal(Asked, await Rendered([]));
        var kwargs = new Dictionary<string, object?> { ["enable_thinking"] = false, ["effort"] = new { level = "high", tags = new[] { "a", "b" } } };
        var expected = Asked + "<think>\n\n</think>\n\neffort=high:a,b";
        Assert.Equal(expected, await Rendered(new() { ["chat_template_kwargs"] = kwargs }));
        Assert.Equal(Asked, await Rendered(new() { ["chat_template_kwargs"] = new { enable_thinking = true } }));
        Assert.Equal(Asked, await Rendered(new() { ["chat_template_kwargs"] = null }));

        // The chat's prompt is rendered with them too: its prompt_tokens are /tokenize's count.
        var chat = await Post("/v1/chat/completions", new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName, ["messages"] = Hi, ["max_tokens"] = 1, ["chat_template_kwargs"] = kwargs,
        });
        Assert.Equal(expected.Length, (int)chat["usage"]!["prompt_tokens"]!);
    }

    [Fact]
    public async Task The_request_s_own_fields_win_over_chat_template_kwargs_and_the_special_tokens_may_be_set_as_transformers_lets_them()
    {
        // vLLM merges add_generation_prompt and continue_final_message over chat_template_kwargs.
        Assert.Equal(Asked, await Rendered(new() { ["chat_template_kwargs"] = new { add_generation_prompt = false, continue_final_message = true } }));
        Assert.Equal(Asked[..^"<|im_start|>assistant\n".Length], await Rendered(new() { ["add_generation_prompt"] = false, ["chat_template_kwargs"] = new { add_generation_prompt = true } }));
        Assert.Equal(Asked + "B", await Rendered(new() { ["chat_template_kwargs"] = new { bos_token = "B" } }));
    }

    [Fact]
    public async Task Chat_template_kwargs_that_are_no_object_or_set_what_the_rendering_sets_are_a_400_naming_them()
    {
        foreach (var path in new[] { "/v1/chat/completions", "/tokenize" })
        {
            foreach (var (kwargs, code) in new (object, string)[]
            {
                ("enable_thinking", "invalid_type"), (new[] { 1 }, "invalid_type"), (3, "invalid_type"),
                (new { messages = Hi }, "invalid_value"), (new { tools = Array.Empty<object>() }, "invalid_value"),
                (new { chat_template = "{{ 'x' }}" }, "invalid_value"), (new { tokenize = false }, "invalid_value"),
            })
            {
                var body = new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["messages"] = Hi, ["max_tokens"] = 1, ["chat_template_kwargs"] = kwargs };
                var error = (await Post(path, body, HttpStatusCode.BadRequest))["error"]!;
                Assert.Equal(("chat_template_kwargs", code), ((string?)error["param"], (string?)error["code"]));
                Assert.Contains("chat_template_kwargs", (string)error["message"]!);
            }
        }
        // /tokenize's prompt is no chat: kwargs beside it are refused, as tools are.
        var beside = (await Post("/tokenize", new { model = TinyModelServer.ModelName, prompt = "Hi", chat_template_kwargs = new { enable_thinking = false } }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal("chat_template_kwargs", (string?)beside["param"]);
    }

    [Fact]
    public async Task The_chat_client_takes_them_as_ChatOptions_AdditionalProperties()
    {
        await ChatClientTests.WithChatClient(save: folder => TinyModelServer.SaveGpt(folder, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 512, chatTemplate: ThinkingTemplateServer.Template), test: async (served, _) =>
        {
            ChatOptions Options(object? kwargs) => new() { MaxOutputTokens = 1, AdditionalProperties = new() { ["chat_template_kwargs"] = kwargs } };
            ChatMessage[] hi = [new(ChatRole.User, "Hi")];
            var plain = await served.ChatClient.GetResponseAsync(hi, Options(null));
            Assert.Equal(Asked.Length, plain.Usage!.InputTokenCount);
            var thinkingOff = await served.ChatClient.GetResponseAsync(hi, Options(new Dictionary<string, object?> { ["enable_thinking"] = false }));
            Assert.Equal((Asked + "<think>\n\n</think>\n\n").Length, thinkingOff.Usage!.InputTokenCount);
            var reserved = await Assert.ThrowsAsync<StratusUserException>(() => served.ChatClient.GetResponseAsync(hi, Options(new Dictionary<string, object?> { ["messages"] = "x" })));
            Assert.Contains("'messages'", reserved.Message);
            await Assert.ThrowsAsync<StratusUserException>(() => served.ChatClient.GetResponseAsync(hi, Options("enable_thinking")));
        });
    }

    /// <summary>What a request gives the template beside its messages' content (a message's name, an
    /// assistant's reasoning, chat_template_kwargs' values) reaches the model as much as the content:
    /// a blocklisted word there refuses the request, and PII redaction rewrites it.</summary>
    static object[] Carrying(string where, string text) => where switch
    {
        "name" => [new { role = "user", content = "Hi", name = text }],
        "reasoning" => [new { role = "user", content = "Hi" }, new { role = "assistant", content = "A", reasoning = text }, new { role = "user", content = "Go" }],
        _ => Hi,
    };

    static Dictionary<string, object?> Chat(string where, string text) => new()
    {
        ["model"] = TinyModelServer.ModelName, ["max_tokens"] = 1, ["messages"] = Carrying(where, text),
        ["chat_template_kwargs"] = where == "kwargs" ? new { note = new[] { text } } : null,
    };

    async Task WithPolicy(object policy, Func<Task> test)
    {
        using var set = await thinking.Server.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}", policy);
        Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
        try { await test(); }
        finally
        {
            using var reset = await thinking.Server.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
                new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = Array.Empty<string>() });
        }
    }

    [Theory]
    [InlineData("name")]
    [InlineData("reasoning")]
    [InlineData("kwargs")]
    public async Task A_blocklisted_word_in_a_name_reasoning_or_template_variable_is_checked_as_prompt_text(string where)
    {
        using var list = await thinking.Server.Http.PutAsJsonAsync("/v1/admin/blocklists/kwargs", new { terms = new[] { "frobnicate" }, category = "hate" });
        Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        await WithPolicy(new { block_at = new { hate = "medium", violence = "medium" }, pii = "off", blocklists = new[] { "kwargs" } }, async () =>
        {
            await Post("/v1/chat/completions", Chat(where, "fine"));
            var error = (await Post("/v1/chat/completions", Chat(where, "frobnicate"), HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal("content_filter", (string)error["code"]!);
        });
    }

    [Theory]
    [InlineData("name")]
    [InlineData("reasoning")]
    [InlineData("kwargs")]
    public async Task With_pii_redaction_the_model_gets_a_name_reasoning_and_template_variables_redacted(string where)
    {
        await WithPolicy(new { block_at = new { hate = "medium" }, pii = "redact", blocklists = Array.Empty<string>() }, async () =>
        {
            async Task<int> PromptTokens(string text) => (int)(await Post("/v1/chat/completions", Chat(where, text)))["usage"]!["prompt_tokens"]!;
            Assert.Equal(await PromptTokens("[EMAIL]"), await PromptTokens("john.doe@example.com"));
        });
    }

    /// <summary>vLLM merges a chat's reasoning_effort and documents over chat_template_kwargs.</summary>
    [Fact]
    public async Task A_chat_s_reasoning_effort_and_documents_reach_the_template_over_chat_template_kwargs()
    {
        async Task<int> PromptTokens(Dictionary<string, object?> extra) => (int)(await Post("/v1/chat/completions",
            new Dictionary<string, object?>(extra) { ["model"] = TinyModelServer.ModelName, ["messages"] = Hi, ["max_tokens"] = 1 }))["usage"]!["prompt_tokens"]!;
        Assert.Equal((Asked + "reasoning=high").Length, await PromptTokens(new() { ["reasoning_effort"] = "high", ["chat_template_kwargs"] = new { reasoning_effort = "low" } }));
        Assert.Equal((Asked + "reasoning=low").Length, await PromptTokens(new() { ["chat_template_kwargs"] = new { reasoning_effort = "low" } }));
        Assert.Equal((Asked + "[a][bc]").Length, await PromptTokens(new() { ["documents"] = new[] { new { title = "a", text = "x" }, new { title = "bc", text = "y" } } }));
        foreach (var (field, value) in new (string, object)[] { ("reasoning_effort", 3), ("documents", "a"), ("documents", new[] { new { title = 1 } }) })
        {
            var error = (await Post("/v1/chat/completions", new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["messages"] = Hi, [field] = value }, HttpStatusCode.BadRequest))["error"]!;
            Assert.Equal((field, "invalid_type"), ((string?)error["param"], (string?)error["code"]));
        }
    }
}
