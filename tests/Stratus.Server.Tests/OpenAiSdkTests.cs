// The official OpenAI .NET SDK against the server with only its endpoint changed: models,
// chat, streaming, stop sequences, seeds, usage and errors as the SDK's exceptions.
using System.ClientModel;
using System.Net.Http.Json;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace Stratus.Server.Tests;

public sealed class OpenAiSdkTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    OpenAIClient Client => new(new ApiKeyCredential(fixture.ApiKey), new OpenAIClientOptions { Endpoint = fixture.Server.BaseUrl });
    ChatClient Chat(string model = TinyModelServer.ModelName) => Client.GetChatClient(model);
    static readonly ChatMessage[] Hello = [new UserChatMessage("Hello there")];

    [Fact]
    public async Task Lists_models_by_name_including_the_run_folder_default()
    {
        OpenAIModelCollection models = await Client.GetOpenAIModelClient().GetModelsAsync();
        Assert.Equal(["tiny", "tiny-run"], models.Select(m => m.Id).ToArray());
        Assert.Equal("stratus", models[0].OwnedBy);
    }

    [Fact]
    public async Task Chat_completes_with_usage_and_length_finish()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync(Hello, new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 });
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.Equal("Hello there\n".Length, completion.Usage.InputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + 12, completion.Usage.TotalTokenCount);
        Assert.Equal(12, completion.Content[0].Text.Length); // char-level: one token, one character
        Assert.Equal("tiny", completion.Model);
    }

    [Fact]
    public async Task Streaming_gives_the_same_text_as_a_plain_greedy_call()
    {
        // A chunk per token needs a deployment that does not check completions: a checked stream
        // is released in checked pieces, ending at word boundaries (see TrustIntegrationTests).
        using (var policy = await fixture.Http.PutAsJsonAsync("/v1/admin/policies/tiny-run", new { pii = "annotate", blocklists = Array.Empty<string>(), check_completions = false }))
            Assert.True(policy.IsSuccessStatusCode);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 20, Temperature = 0 };
        ChatCompletion whole = await Chat("tiny-run").CompleteChatAsync(Hello, options);
        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        var updates = 0;
        await foreach (var update in Chat("tiny-run").CompleteChatStreamingAsync(Hello, options))
        {
            updates++;
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);
        Assert.Equal(20, usage!.OutputTokenCount);
        Assert.True(updates > 10, $"expected a chunk per token, got {updates}");
    }

    [Fact]
    public async Task Stop_sequence_ends_the_reply_before_it()
    {
        ChatCompletion free = await Chat().CompleteChatAsync(Hello, new ChatCompletionOptions { MaxOutputTokenCount = 30, Temperature = 0 });
        var text = free.Content[0].Text;
        var stop = text.Substring(5, 2);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 30, Temperature = 0 };
        options.StopSequences.Add(stop);
        ChatCompletion stopped = await Chat().CompleteChatAsync(Hello, options);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);

        var streamed = new System.Text.StringBuilder();
        await foreach (var update in Chat().CompleteChatStreamingAsync(Hello, options))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(stopped.Content[0].Text, streamed.ToString());
    }

    [Fact]
    public async Task Same_seed_same_text_and_another_seed_other_text()
    {
        ChatCompletionOptions Seeded(long seed) => new() { MaxOutputTokenCount = 24, Temperature = 1.0f, Seed = seed };
        ChatCompletion a = await Chat().CompleteChatAsync(Hello, Seeded(42));
        ChatCompletion b = await Chat().CompleteChatAsync(Hello, Seeded(42));
        ChatCompletion c = await Chat().CompleteChatAsync(Hello, Seeded(43));
        Assert.Equal(a.Content[0].Text, b.Content[0].Text);
        Assert.NotEqual(a.Content[0].Text, c.Content[0].Text);
    }

    [Fact]
    public async Task Logprobs_come_with_the_chosen_token_and_alternatives()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync(Hello,
            new ChatCompletionOptions { MaxOutputTokenCount = 5, Temperature = 0, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 });
        Assert.Equal(5, completion.ContentTokenLogProbabilities.Count);
        foreach (var token in completion.ContentTokenLogProbabilities)
        {
            Assert.True(token.LogProbability <= 0);
            Assert.Equal(3, token.TopLogProbabilities.Count);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(token.TopLogProbabilities[0].Token, token.Token);
        }
    }

    [Fact]
    public async Task Unknown_model_is_a_404_model_not_found()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => Chat("no-such-model").CompleteChatAsync(Hello));
        Assert.Equal(404, error.Status);
        Assert.Contains("model_not_found", error.Message);
    }

    [Fact]
    public async Task Prompt_plus_max_tokens_over_the_context_is_a_400()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat().CompleteChatAsync(Hello, new ChatCompletionOptions { MaxOutputTokenCount = 500 }));
        Assert.Equal(400, error.Status);
        Assert.Contains("context_length_exceeded", error.Message);
    }

    [Fact]
    public async Task Characters_outside_the_vocabulary_are_a_400_naming_them()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat().CompleteChatAsync([new UserChatMessage("café ☃ 😀")], new ChatCompletionOptions { MaxOutputTokenCount = 4 }));
        Assert.Equal(400, error.Status);
        Assert.Contains("U+00E9", error.Message);
        Assert.Contains("U+2603", error.Message);
        Assert.Contains("'😀' (U+1F600)", error.Message); // the character, not its two UTF-16 halves
    }

    [Fact]
    public async Task Out_of_range_temperature_is_a_400()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() =>
            Chat().CompleteChatAsync(Hello, new ChatCompletionOptions { Temperature = 3.5f }));
        Assert.Equal(400, error.Status);
        Assert.Contains("temperature", error.Message);
    }
}
