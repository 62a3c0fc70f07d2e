// A chat's text parts reach a template that loops over a message's content as parts, as vLLM gives
// them to a template of its "openai" content format, and PII redaction rewrites each part (the
// template reads the parts, not only their joined text). The template is written for these tests.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

public sealed class PartsTemplateServer() : ChatTemplateServer(Template)
{
    /// <summary>In the style of Llama 4's: content as text or as parts, each text part written apart.</summary>
    public const string Template =
        "{%- for m in messages %}{{- '<' + m.role + '>' }}{%- if m.content is string %}{{- m.content }}" +
        "{%- else %}{%- for part in m.content %}{%- if part.type == 'text' %}{{- '[' + part.text + ']' }}{%- endif %}{%- endfor %}{%- endif %}{%- endfor %}" +
        "{%- if add_generation_prompt %}{{- '<assistant>' }}{%- endif %}";
}

public sealed class ChatContentPartsTests(PartsTemplateServer parts) : IClassFixture<PartsTemplateServer>
{
    static object[] Messages(string secondPart) =>
        [new { role = "system", content = "Be brief." }, new { role = "user", content = new[] { new { type = "text", text = "Mail" }, new { type = "text", text = secondPart } } }];

    async Task<JsonNode> Post(string path, object body)
    {
        using var response = await parts.Server.Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task Text_parts_reach_a_template_that_loops_over_them_as_parts()
    {
        var tokens = (await Post("/tokenize", new { model = TinyModelServer.ModelName, messages = Messages("me") }))["tokens"]!;
        Assert.Equal("<system>[Be brief.]<user>[Mail][me]<assistant>", (string)(await Post("/detokenize", new { model = TinyModelServer.ModelName, tokens }))["prompt"]!);
    }

    [Fact]
    public async Task With_pii_redaction_the_model_gets_each_part_redacted()
    {
        using var set = await parts.Server.Http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}", new { block_at = new { hate = "medium" }, pii = "redact", blocklists = Array.Empty<string>() });
        Assert.True(set.IsSuccessStatusCode, await set.Content.ReadAsStringAsync());
        async Task<int> PromptTokens(string part) =>
            (int)(await Post("/v1/chat/completions", new { model = TinyModelServer.ModelName, max_tokens = 1, messages = Messages(part) }))["usage"]!["prompt_tokens"]!;
        Assert.Equal(await PromptTokens("[EMAIL]"), await PromptTokens("john.doe@example.com"));
    }
}
