// A model fine-tuned into a chat template whose end-of-turn marker its vocabulary has no token
// for (GPT-2 or a char model into ChatML) learned to write the marker as text: its reply ends
// there, without the marker, as at a client's stop sequence, rather than running on to max_tokens.
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

/// <summary>The tiny char model with a template that ends each turn with "#".</summary>
public sealed class EndOfTurnModelServer : IAsyncLifetime
{
    public const string Marker = "#";

    public TinyModelServer Server { get; } = new() { CreateModel = CreateCheckpoint };

    static string CreateCheckpoint(string directory) =>
        TinyModelServer.SaveGpt(directory, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 128,
            chatTemplate: "{% for message in messages %}{{ message['content'] + '" + Marker + "\\n' }}{% endfor %}");

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class EndOfTurnTests(EndOfTurnModelServer fixture) : IClassFixture<EndOfTurnModelServer>
{
    [Fact]
    public async Task A_reply_stops_before_the_end_of_turn_text_the_model_writes()
    {
        var marker = fixture.Server.Model.Tokenizer.Encode(EndOfTurnModelServer.Marker).Single();
        // The client's own stop sequences, as many as it may give, still hold beside the template's.
        var body = new Dictionary<string, object?>
        {
            ["model"] = "tiny", ["messages"] = new[] { new { role = "user", content = "Hello" } }, ["max_tokens"] = 8, ["temperature"] = 0,
            ["logit_bias"] = new Dictionary<string, int> { [marker.ToString()] = 100 }, ["stop"] = new[] { "w", "x", "y", "z" },
        };
        using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var answer = JsonNode.Parse(text)!;
        Assert.Equal("", (string)answer["choices"]![0]!["message"]!["content"]!);
        Assert.Equal("stop", (string)answer["choices"]![0]!["finish_reason"]!);
        Assert.Equal(1, (int)answer["usage"]!["completion_tokens"]!);

        body["stream"] = true;
        using var streamed = await fixture.Server.Http.PostAsJsonAsync("/v1/chat/completions", body);
        var choices = (await streamed.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .SelectMany(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray()).ToList();
        Assert.Equal("", string.Concat(choices.Select(c => (string?)c!["delta"]!["content"])));
        Assert.Equal("stop", (string)choices[^1]!["finish_reason"]!);
    }
}
