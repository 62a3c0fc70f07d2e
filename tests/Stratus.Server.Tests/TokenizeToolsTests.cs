// POST /tokenize with messages takes a chat's tools, as vLLM's does: the count is the chat
// request's prompt_tokens, tools and a conversation's tool calls and results rendered alike.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class TokenizeToolsTests(HermesTemplateServer hermes) : IClassFixture<HermesTemplateServer>
{
    async Task<JsonNode> Post(string path, object body, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var response = await hermes.Server.Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, text);
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task Tokenize_with_tools_counts_the_prompt_tokens_of_the_chat()
    {
        var call = new { id = "call_1", type = "function", function = new { name = "time", arguments = "{\"utc\": 1}" } };
        object[][] conversations =
        [
            [new { role = "user", content = "Weather?" }],
            [new { role = "user", content = "Time?" }, new { role = "assistant", content = (string?)null, tool_calls = new[] { call } }, new { role = "tool", content = "12", tool_call_id = "call_1" }],
        ];
        foreach (var messages in conversations)
        {
            var chat = await Post("/v1/chat/completions", new Dictionary<string, object?>
            {
                ["model"] = TinyModelServer.ModelName, ["messages"] = messages, ["max_tokens"] = 1, ["tools"] = ToolCallingTests.Tools, ["tool_choice"] = "none",
            });
            var promptTokens = (int)chat["usage"]!["prompt_tokens"]!;
            var tokenized = await Post("/tokenize", new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["messages"] = messages, ["tools"] = ToolCallingTests.Tools });
            Assert.Equal(promptTokens, (int)tokenized["count"]!);
            var withoutTools = await Post("/tokenize", new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["messages"] = messages });
            Assert.True((int)withoutTools["count"]! < promptTokens);
        }

        // Tools are checked as a chat's, and go with messages only.
        var error = (await Post("/tokenize", new Dictionary<string, object?>
        {
            ["model"] = TinyModelServer.ModelName, ["messages"] = conversations[0], ["tools"] = JsonNode.Parse("""[{"type":"function","function":{"name":"get weather"}}]"""),
        }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal(("tools[0].function.name", "invalid_value"), ((string)error["param"]!, (string)error["code"]!));
        error = (await Post("/tokenize", new Dictionary<string, object?> { ["model"] = TinyModelServer.ModelName, ["prompt"] = "Hi", ["tools"] = ToolCallingTests.Tools }, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal("tools", (string)error["param"]!);
    }
}
