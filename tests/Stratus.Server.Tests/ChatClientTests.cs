// Microsoft.Extensions.AI's IChatClient over the engine: a .NET application chats with a
// Stratus model in-process, no HTTP involved.
using Microsoft.Extensions.AI;
using Stratus.Inference;
using Stratus.Tokenization;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

public sealed class ChatClientTests
{
    /// <summary>Runs <paramref name="test"/> on a tiny model served in-process from a folder of its
    /// own (written by <paramref name="save"/>, else TinyModelServer's checkpoint), removed after.</summary>
    internal static async Task WithChatClient(Func<ServedModel, string, Task> test, Action<string>? save = null)
    {
        var folder = Path.Combine(Path.GetTempPath(), $"stratus-chatclient-{Guid.NewGuid():N}");
        try
        {
            (save ?? (f => TinyModelServer.CreateCheckpoint(f)))(folder);
            using var served = ServedModel.Load(new ModelSpec(folder), new EngineOptions { BlockSize = 8 });
            await test(served, folder);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public async Task Chat_client_answers_and_streams_in_process()
    {
        await WithChatClient(async (served, folder) =>
        {
            IChatClient client = served.ChatClient;
            var options = new ChatOptions { MaxOutputTokens = 10, Temperature = 0 };
            var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello")], options);
            Assert.Equal(10, response.Text.Length);
            Assert.Equal(ChatFinishReason.Length, response.FinishReason);
            Assert.Equal(10, response.Usage!.OutputTokenCount);

            var streamed = new System.Text.StringBuilder();
            await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Hello")], options)) streamed.Append(update.Text);
            Assert.Equal(response.Text, streamed.ToString());
            Assert.Equal(Path.GetFileName(folder), client.GetService<ChatClientMetadata>()!.DefaultModelId);
            Assert.NotNull(response.ResponseId);

            // Instructions reach the model as a system message.
            var withInstructions = options.Clone();
            withInstructions.Instructions = "Be brief.";
            var instructed = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello")], withInstructions);
            var asSystem = await client.GetResponseAsync([new ChatMessage(ChatRole.System, "Be brief."), new ChatMessage(ChatRole.User, "Hello")], options);
            Assert.Equal(asSystem.Usage!.InputTokenCount, instructed.Usage!.InputTokenCount);
            Assert.NotEqual(response.Usage.InputTokenCount, instructed.Usage.InputTokenCount);

            // What the sampler cannot use, or Stratus cannot honour, is refused, and the engine lives on.
            foreach (var bad in new[] { new ChatOptions { Temperature = -0.5f }, new ChatOptions { Temperature = float.NaN }, new ChatOptions { TopP = 0 }, new ChatOptions { StopSequences = [""] } })
                await Assert.ThrowsAsync<StratusUserException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello")], bad));
            // A schema with a keyword Stratus does not enforce is refused, naming it.
            var schema = ChatResponseFormat.ForJsonSchema(System.Text.Json.JsonDocument.Parse("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", \"format\": \"email\"}}}").RootElement);
            var unenforced = await Assert.ThrowsAsync<StratusUserException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello")], new ChatOptions { ResponseFormat = schema }));
            Assert.StartsWith("ChatOptions.ResponseFormat.Schema.properties.a.format is not supported", unenforced.Message);
            // Tools with ToolMode Auto (null) need the model's tool-call parser, which its plain template does not name.
            var auto = await Assert.ThrowsAsync<StratusUserException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello")], new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] }));
            Assert.Contains("ChatToolMode.RequireAny", auto.Message);
            Assert.True(served.Engine.IsHealthy);
            Assert.Equal(response.Text, (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hello")], options)).Text);
        });
    }

    [Fact]
    public async Task Chat_client_json_format_answers_the_beginning_of_a_json_object_and_a_whole_one_when_it_stops()
    {
        await WithChatClient(async (served, _) =>
        {
            IChatClient client = served.ChatClient;
            // The random model may or may not close its object in 12 tokens, seed by seed: either
            // way the text begins one, and is a whole one exactly when it stopped.
            for (var seed = 0; seed < 6; seed++)
            {
                var options = new ChatOptions { MaxOutputTokens = 12, Temperature = 1, Seed = seed, ResponseFormat = ChatResponseFormat.Json };
                var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Answer in JSON.")], options);
                var json = new JsonGrammar();
                Assert.True(json.Accept(System.Text.Encoding.UTF8.GetBytes(response.Text)), response.Text);
                Assert.Equal(json.IsComplete, response.FinishReason == ChatFinishReason.Stop);
                var streamed = new System.Text.StringBuilder();
                await foreach (var update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Answer in JSON.")], options)) streamed.Append(update.Text);
                Assert.Equal(response.Text, streamed.ToString());
            }
        });
    }

    public sealed record Person(string Name, int Age);

    public enum Mood { Happy, Sad }

    /// <summary>Booleans and enums only: every value is a literal the grammar finishes, so even the
    /// random model's document is whole within a few hundred tokens.</summary>
    public sealed record Verdict(bool Guilty, Mood Mood, Mood? Before);

    [Fact]
    public async Task A_typed_answer_comes_through_the_json_schema_format_by_default()
    {
        await WithChatClient(save: folder => TinyModelServer.SaveGpt(folder, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 512), test: async (served, _) =>
        {
            IChatClient client = served.ChatClient;
            // GetResponseAsync<T>'s default asks for ChatResponseFormat.ForJsonSchema(T's schema):
            // the answer is a T.
            for (var seed = 0; seed < 3; seed++)
            {
                var verdict = await client.GetResponseAsync<Verdict>("Is Romeo guilty?", new ChatOptions { MaxOutputTokens = 400, Temperature = 1, Seed = seed });
                Assert.Equal(ChatFinishReason.Stop, verdict.FinishReason);
                Assert.True(verdict.TryGetResult(out var result), verdict.Text);
                Assert.Contains(result!.Mood, new[] { Mood.Happy, Mood.Sad });
            }
            // A record with strings and numbers, which the random model may not finish in time:
            // what it writes is the beginning of one, and a whole one when it stops.
            var person = await client.GetResponseAsync<Person>("Who is Romeo?", new ChatOptions { MaxOutputTokens = 40, Temperature = 1, Seed = 1 });
            var json = new JsonGrammar(JsonSchema.Compile(AIJsonUtilities.CreateJsonSchema(typeof(Person))));
            Assert.True(json.Accept(System.Text.Encoding.UTF8.GetBytes(person.Text)), person.Text);
            Assert.Equal(json.IsComplete, person.FinishReason == ChatFinishReason.Stop);
            Assert.True(served.Engine.IsHealthy);
        });
    }

    /// <summary>What .NET applications ask models for: dates and ids, whose schemas carry a
    /// "format", and a char (minLength and maxLength 1); each was a 400.</summary>
    public sealed record Appointment(DateTime At, Guid Id, DateOnly Day, char Room);

    [Fact]
    public async Task A_typed_answer_with_dates_ids_and_a_char_comes_through_the_json_schema_format()
    {
        await WithChatClient(save: folder => TinyModelServer.SaveGpt(folder, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 512), test: async (served, _) =>
        {
            IChatClient client = served.ChatClient;
            // The values have fixed shapes, which the grammar walks to their ends: even the random
            // model's document is whole in a few hundred tokens.
            for (var seed = 0; seed < 2; seed++)
            {
                var appointment = await client.GetResponseAsync<Appointment>("When?", new ChatOptions { MaxOutputTokens = 400, Temperature = 1, Seed = seed });
                Assert.Equal(ChatFinishReason.Stop, appointment.FinishReason);
                Assert.True(appointment.TryGetResult(out var result), appointment.Text);
                Assert.InRange(result!.Day.Year, 1000, 9998);
            }
            Assert.True(served.Engine.IsHealthy);
        });
    }

    [Fact]
    public async Task A_typed_answer_asked_without_a_schema_format_comes_in_json_mode()
    {
        // Room for the schema that GetResponseAsync<T> adds to the messages, and its "\r\n".
        var tokenizer = CharTokenizer.FromCorpus(TinyModelServer.Corpus + "\r");
        await WithChatClient(save: folder => TinyModelServer.SaveGpt(folder, tokenizer, context: 512, chatTemplate: ChatTemplate.For(tokenizer).Source), test: async (served, _) =>
        {
            IChatClient client = served.ChatClient;
            // useJsonSchemaResponseFormat: false asks for ChatResponseFormat.Json with T's schema in
            // a message: the random model's answer begins an object, and is one when it stops.
            for (var seed = 0; seed < 4; seed++)
            {
                var options = new ChatOptions { MaxOutputTokens = 30, Temperature = 1, Seed = seed };
                var response = await client.GetResponseAsync<Person>("Who is Romeo?", options, useJsonSchemaResponseFormat: false);
                var json = new JsonGrammar();
                Assert.True(json.Accept(System.Text.Encoding.UTF8.GetBytes(response.Text)), response.Text);
                Assert.Equal(json.IsComplete, response.FinishReason == ChatFinishReason.Stop);
            }
            Assert.True(served.Engine.IsHealthy);
        });
    }

    /// <summary>A template written for these tests that writes what it reads of each message.</summary>
    const string EchoTemplate = "{% for m in messages %}{{ m.role }}|{{ m.name }}|{{ m.reasoning_content }}|{{ m.content }};{% endfor %}";

    [Fact]
    public async Task A_message_s_AuthorName_and_an_assistant_s_reasoning_reach_the_template_as_name_and_reasoning()
    {
        await WithChatClient(save: folder => TinyModelServer.SaveGpt(folder, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 512, chatTemplate: EchoTemplate), test: async (served, _) =>
        {
            ChatMessage[] messages =
            [
                new(ChatRole.User, "Hi") { AuthorName = "ada" },
                new(ChatRole.Assistant, [new TextReasoningContent("why"), new TextContent("A")]),
                new(ChatRole.User, "Go"),
            ];
            var response = await served.ChatClient.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 1 });
            Assert.Equal("user|ada||Hi;assistant||why|A;user|||Go;".Length, response.Usage!.InputTokenCount);
        });
    }

    /// <summary>A message of several TextContents is several text parts, as Microsoft.Extensions.AI's
    /// OpenAI client sends it: a template that loops over content gets each part, another their
    /// text joined by line breaks, as vLLM renders such a request (not run together).</summary>
    [Theory]
    [InlineData(EchoTemplate, "user|||Hi\nthere;")]
    [InlineData(PartsTemplateServer.Template, "<user>[Hi][there]<assistant>")]
    public async Task A_message_s_text_contents_reach_the_template_as_text_parts(string template, string rendered)
    {
        await WithChatClient(save: folder => TinyModelServer.SaveGpt(folder, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 512, chatTemplate: template), test: async (served, _) =>
        {
            var response = await served.ChatClient.GetResponseAsync([new ChatMessage(ChatRole.User, [new TextContent("Hi"), new TextContent("there")])], new ChatOptions { MaxOutputTokens = 1 });
            Assert.Equal(rendered.Length, response.Usage!.InputTokenCount);
        });
    }
}
