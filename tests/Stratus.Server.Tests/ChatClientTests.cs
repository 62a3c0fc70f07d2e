// Microsoft.Extensions.AI's IChatClient over the engine: a .NET application chats with a
// Stratus model in-process, no HTTP involved.
using Microsoft.Extensions.AI;
using Stratus.Inference;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

public sealed class ChatClientTests
{
    [Fact]
    public async Task Chat_client_answers_and_streams_in_process()
    {
        var folder = Path.Combine(Path.GetTempPath(), $"stratus-chatclient-{Guid.NewGuid():N}");
        try
        {
            TinyModelServer.CreateCheckpoint(folder);
            using var served = ServedModel.Load(new ModelSpec(folder), new EngineOptions { BlockSize = 8 });
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
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }
}
