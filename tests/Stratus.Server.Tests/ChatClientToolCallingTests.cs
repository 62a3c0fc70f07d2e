// Tool calling through the in-process IChatClient, as the HTTP API has it: ChatToolMode.RequireAny
// and RequireSpecific constrain the random tiny model to calls (FunctionCallContent) of the
// AIFunctionFactory functions with valid arguments whatever the seed, streamed or not; None
// shows the tools and calls nothing; Auto reads text with the template's parser; and
// Microsoft.Extensions.AI's FunctionInvokingChatClient calls the .NET function and feeds its
// result back through the chat template for the answer.
using System.Text.Json;
using Microsoft.Extensions.AI;
using Stratus.Inference;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

public sealed class ChatClientToolCallingTests
{
    public enum Mood { Happy, Sad }

    /// <summary>Booleans and enums only: values the grammar finishes, so even the random model's
    /// calls are whole within a few hundred tokens.</summary>
    static readonly AIFunction Door = AIFunctionFactory.Create((bool open, Mood mood) => open ? "opened" : "shut", "door", "Opens or shuts the door");
    static readonly AIFunction Light = AIFunctionFactory.Create((bool on) => on, "light");

    /// <summary>The tiny model with a Qwen2.5-style template that renders tools, calls and results
    /// (its parser: hermes), and room for them.</summary>
    static Task WithToolModel(Func<Hosting.ServedModel, Task> test) => ChatClientTests.WithChatClient((served, _) => test(served),
        save: folder => TinyModelServer.SaveGpt(folder, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 2048, chatTemplate: ChatTemplateTestsQwen.Template));

    static ChatMessage[] Ask(string text) => [new ChatMessage(ChatRole.User, text)];

    /// <summary>Whether <paramref name="call"/> is a call of door or light with valid arguments.</summary>
    static bool Valid(FunctionCallContent call)
    {
        if (call.Exception is not null || call.Arguments is null || !call.CallId.StartsWith("call_", StringComparison.Ordinal)) return false;
        var arguments = call.Arguments.ToDictionary(a => a.Key, a => (JsonElement)a.Value!);
        return call.Name switch
        {
            "door" => arguments.Keys.Order().SequenceEqual(["mood", "open"]) && arguments["open"].ValueKind is JsonValueKind.True or JsonValueKind.False
                && arguments["mood"].GetString() is "Happy" or "Sad",
            "light" => arguments.Keys.SequenceEqual(["on"]) && arguments["on"].ValueKind is JsonValueKind.True or JsonValueKind.False,
            _ => false,
        };
    }

    static string Describe(ChatResponse response) => string.Join(" | ", response.Messages.SelectMany(m => m.Contents).Select(c => c switch
    {
        FunctionCallContent call => $"{call.Name}({JsonSerializer.Serialize(call.Arguments)}) {call.Exception?.Message}",
        _ => c.ToString(),
    }));

    [Fact]
    public async Task Required_tool_modes_give_function_calls_with_valid_arguments_streamed_or_not()
    {
        await WithToolModel(async served =>
        {
            IChatClient client = served.ChatClient;
            foreach (var (mode, parallel) in new (ChatToolMode, bool?)[] { (ChatToolMode.RequireSpecific("door"), null), (ChatToolMode.RequireAny, false), (ChatToolMode.RequireAny, null) })
                for (var seed = 0; seed < 3; seed++)
                {
                    var options = new ChatOptions { Tools = [Door, Light], ToolMode = mode, AllowMultipleToolCalls = parallel, MaxOutputTokens = 400, Temperature = 1, Seed = seed };
                    var response = await client.GetResponseAsync(Ask("Open the door."), options);
                    var calls = response.Messages.Single().Contents.OfType<FunctionCallContent>().ToList();
                    Assert.True(calls.Count > 0 && calls.All(Valid), Describe(response));
                    Assert.Equal("", response.Text);
                    if (mode is RequiredChatToolMode { RequiredFunctionName: "door" })
                    {
                        // A named function's call finishes as "stop", as OpenAI's.
                        Assert.Equal("door", Assert.Single(calls).Name);
                        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
                    }
                    else
                    {
                        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
                        if (parallel == false) Assert.Single(calls);
                    }

                    // Streamed, the same calls, each in one update, as a function invoker reads them.
                    var updates = new List<ChatResponseUpdate>();
                    await foreach (var update in client.GetStreamingResponseAsync(Ask("Open the door."), options)) updates.Add(update);
                    var streamed = updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>().ToList();
                    Assert.Equal(calls.Select(c => (c.Name, JsonSerializer.Serialize(c.Arguments))), streamed.Select(c => (c.Name, JsonSerializer.Serialize(c.Arguments))));
                    Assert.Equal(response.FinishReason, updates[^1].FinishReason);
                }
            Assert.True(served.Engine.IsHealthy);
        });
    }

    [Fact]
    public async Task Tool_modes_none_and_auto_answer_in_text_with_the_tools_rendered()
    {
        await WithToolModel(async served =>
        {
            IChatClient client = served.ChatClient;
            Assert.Equal("hermes", served.ToolCallParser?.Name);
            var plain = new ChatOptions { MaxOutputTokens = 12, Temperature = 1, Seed = 3 };
            var without = await client.GetResponseAsync(Ask("Weather?"), plain);
            foreach (var mode in new ChatToolMode?[] { ChatToolMode.None, ChatToolMode.Auto, null })
            {
                var options = plain.Clone();
                options.Tools = [Door, Light];
                options.ToolMode = mode;
                var response = await client.GetResponseAsync(Ask("Weather?"), options);
                // The random model writes no call: its text is the answer.
                Assert.Empty(response.Messages.Single().Contents.OfType<FunctionCallContent>());
                Assert.Equal(12, response.Text.Length);
                Assert.Equal(ChatFinishReason.Length, response.FinishReason);
                // The prompt is the template's rendering with the tools, as the HTTP API's tools reach it.
                var definitions = new[] { Door, Light }.Select(f => JsonDocument.Parse(JsonSerializer.Serialize(new { type = "function", function = new { name = f.Name, description = f.Description.Length > 0 ? f.Description : null, parameters = f.JsonSchema } },
                    new JsonSerializerOptions { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull })).RootElement).ToList();
                var rendered = served.Template.Render([new ChatMessageText("user", "Weather?")], tools: definitions);
                Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"door\", \"description\": \"Opens or shuts the door\", \"parameters\": {", rendered);
                Assert.Equal(served.Tokenizer.Encode(rendered).Length, response.Usage!.InputTokenCount);
                Assert.True(response.Usage.InputTokenCount > without.Usage!.InputTokenCount);
            }
        });
    }

    [Fact]
    public async Task Tools_the_client_cannot_honour_are_refused_naming_what_to_change()
    {
        await WithToolModel(async served =>
        {
            IChatClient client = served.ChatClient;
            async Task<string> Refused(ChatOptions options) => (await Assert.ThrowsAsync<StratusUserException>(() => client.GetResponseAsync(Ask("Hi"), options))).Message;
            Assert.Contains("names no function in ChatOptions.Tools; name one of 'door', 'light'", await Refused(new ChatOptions { Tools = [Door, Light], ToolMode = ChatToolMode.RequireSpecific("window") }));
            Assert.Contains("two functions named 'door'", await Refused(new ChatOptions { Tools = [Door, Door] }));
            Assert.Contains("ChatOptions.Tools is empty", await Refused(new ChatOptions { ToolMode = ChatToolMode.RequireAny }));
            Assert.Contains("Stratus calls functions only", await Refused(new ChatOptions { Tools = [new HostedWebSearchTool()] }));
            var mail = AIFunctionFactory.CreateDeclaration("mail", null, JsonDocument.Parse("""{"type":"object","properties":{"to":{"type":"string","pattern":"@"}}}""").RootElement);
            Assert.StartsWith("ChatOptions.Tools[1].JsonSchema.properties.to.pattern is not supported", await Refused(new ChatOptions { Tools = [Door, mail] }));
            Assert.Contains("cannot be combined", await Refused(new ChatOptions { Tools = [Door], ToolMode = ChatToolMode.RequireAny, ResponseFormat = ChatResponseFormat.Json }));
            Assert.True(served.Engine.IsHealthy);
        });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_function_invoking_client_calls_the_function_and_answers_with_its_result_through_the_template(bool stream)
    {
        await WithToolModel(async served =>
        {
            var invoked = new List<(bool Open, Mood Mood)>();
            var door = AIFunctionFactory.Create((bool open, Mood mood) =>
            {
                invoked.Add((open, mood));
                return "the door is " + (open ? "open" : "shut");
            }, "door", "Opens or shuts the door");
            // How many tokens the prompt of each round of the loop was.
            var rounds = new List<long?>();
            var client = served.ChatClient.AsBuilder()
                .UseFunctionInvocation()
                .Use(inner => new PromptTokenRecorder(inner, rounds.Add))
                .Build();
            var options = new ChatOptions { Tools = [door], ToolMode = ChatToolMode.RequireSpecific("door"), MaxOutputTokens = 300, Temperature = 1, Seed = 5 };
            ChatResponse response;
            if (stream)
            {
                var updates = new List<ChatResponseUpdate>();
                await foreach (var update in client.GetStreamingResponseAsync(Ask("Open the door."), options)) updates.Add(update);
                response = updates.ToChatResponse();
            }
            else response = await client.GetResponseAsync(Ask("Open the door."), options);

            // The forced call ran the .NET function once; the loop then asked again, the call and
            // its result in the conversation, and the model answered in text.
            var (open, mood) = Assert.Single(invoked);
            Assert.Equal(2, rounds.Count);
            var call = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>().Single();
            var result = response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().Single();
            Assert.Equal(call.CallId, result.CallId);
            Assert.Equal(ChatRole.Assistant, response.Messages[^1].Role);
            Assert.NotEmpty(response.Messages[^1].Text);
            Assert.Empty(response.Messages[^1].Contents.OfType<FunctionCallContent>());

            // The second prompt is the template's rendering of the call (tool_calls, arguments as
            // an object) and of the result (a tool message answering its id), the tools shown.
            var arguments = JsonSerializer.Serialize(call.Arguments);
            var definitions = new[] { JsonDocument.Parse(JsonSerializer.Serialize(new { type = "function", function = new { name = "door", description = "Opens or shuts the door", parameters = door.JsonSchema } })).RootElement };
            var conversation = new List<ChatMessageText>
            {
                new("user", "Open the door."),
                new("assistant", "") { ToolCalls = [new ChatToolCall(call.CallId, "door", arguments)] },
                new("tool", $"\"the door is {(open ? "open" : "shut")}\"") { ToolCallId = call.CallId },
            };
            var rendered = served.Template.Render(conversation, tools: definitions);
            Assert.Contains("<tool_call>\n{\"name\": \"door\", \"arguments\": {\"", rendered);
            Assert.Contains($"<tool_response>\n\"the door is {(open ? "open" : "shut")}\"\n</tool_response>", rendered);
            Assert.Equal(served.Tokenizer.Encode(rendered).Length, rounds[1]);
            Assert.True(served.Engine.IsHealthy);
        });
    }

    /// <summary>A function's result of any type goes to the template as Microsoft.Extensions.AI's
    /// OpenAI client sends it as a tool message's content: a string as it is, null as "", another
    /// value as its JSON (AIJsonUtilities.DefaultOptions', indented), and one that cannot be written as JSON (an exception that was thrown: its
    /// TargetSite) as "", rather than failing the request.</summary>
    [Fact]
    public async Task Function_results_of_any_type_reach_the_template_as_the_OpenAI_client_sends_them()
    {
        await WithToolModel(async served =>
        {
            IChatClient client = served.ChatClient;
            Exception thrown;
            try { throw new InvalidOperationException("jammed"); }
            catch (InvalidOperationException e) { thrown = e; }
            var definitions = new[] { JsonDocument.Parse(JsonSerializer.Serialize(new { type = "function", function = new { name = "door", description = "Opens or shuts the door", parameters = Door.JsonSchema } })).RootElement };
            foreach (var (result, content) in new (object?, string)[] { ("shut", "shut"), (null, ""), (new Dictionary<string, object?> { ["temp"] = 21 }, "{\n  \"temp\": 21\n}"), (thrown, "") })
            {
                ChatMessage[] conversation =
                [
                    new(ChatRole.User, "Open the door."),
                    new(ChatRole.Assistant, [new FunctionCallContent("call_1", "door", new Dictionary<string, object?> { ["open"] = true, ["mood"] = "Happy" })]),
                    new(ChatRole.Tool, [new FunctionResultContent("call_1", result)]),
                ];
                var response = await client.GetResponseAsync(conversation, new ChatOptions { Tools = [Door], ToolMode = ChatToolMode.None, MaxOutputTokens = 1 });
                var rendered = served.Template.Render(
                [
                    new("user", "Open the door."),
                    new("assistant", "") { ToolCalls = [new ChatToolCall("call_1", "door", "{\"open\":true,\"mood\":\"Happy\"}")] },
                    new("tool", content) { ToolCallId = "call_1" },
                ], tools: definitions);
                Assert.Equal(served.Tokenizer.Encode(rendered).Length, response.Usage!.InputTokenCount);
            }
        });
    }

    /// <summary>Passes each response's prompt tokens (its usage's input tokens) to <paramref name="record"/>.</summary>
    sealed class PromptTokenRecorder(IChatClient inner, Action<long?> record) : DelegatingChatClient(inner)
    {
        public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var response = await base.GetResponseAsync(messages, options, cancellationToken);
            record(response.Usage?.InputTokenCount);
            return response;
        }

        public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            await foreach (var update in base.GetStreamingResponseAsync(messages, options, cancellationToken))
            {
                foreach (var usage in update.Contents.OfType<UsageContent>()) record(usage.Details.InputTokenCount);
                yield return update;
            }
        }
    }
}
