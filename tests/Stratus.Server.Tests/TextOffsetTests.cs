// logprobs.text_offset on /v1/completions counts characters as vLLM's offsets do (Python's len
// of a str: code points), not C#'s UTF-16 code units: past an emoji every offset would otherwise
// be one more than vLLM's, and a Python client slicing the text with them would cut wrongly. The
// echo, whole answers, streams and n > 1 all count the same way.
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

/// <summary>A tiny char-level GPT whose vocabulary holds an emoji (outside the BMP: two UTF-16
/// code units, one character).</summary>
public sealed class EmojiModelServer : IAsyncLifetime
{
    public const string Emoji = "😀";

    public TinyModelServer Server { get; } = new() { CreateModel = CreateCheckpoint };

    static string CreateCheckpoint(string directory) => TinyModelServer.SaveGpt(directory, CharTokenizer.FromCorpus("ab \n" + Emoji), context: 64, layers: 1);

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class TextOffsetTests(EmojiModelServer fixture) : IClassFixture<EmojiModelServer>
{
    const string Prompt = "a" + EmojiModelServer.Emoji + "b";

    /// <summary>Echoes the prompt and draws 6 tokens among "a" and the emoji at random.</summary>
    Dictionary<string, object?> Body(int n = 1, bool stream = false)
    {
        var tokenizer = fixture.Server.Model.Tokenizer;
        var drawn = new[] { "a", EmojiModelServer.Emoji }.Select(t => tokenizer.Encode(t).Single().ToString());
        return new()
        {
            ["model"] = "tiny", ["prompt"] = Prompt, ["echo"] = true, ["logprobs"] = 0, ["max_tokens"] = 6, ["temperature"] = 1, ["seed"] = 4,
            ["n"] = n, ["stream"] = stream, ["logit_bias"] = drawn.ToDictionary(t => t, _ => 100),
        };
    }

    /// <summary>vLLM's offsets of a char model's text: each token is one character, at the index a
    /// Python str gives it.</summary>
    static void AssertPythonOffsets(string text, IReadOnlyList<string> tokens, IReadOnlyList<int> offsets)
    {
        var characters = text.EnumerateRunes().Select(r => r.ToString()).ToArray();
        Assert.Equal(Prompt.EnumerateRunes().Count() + 6, characters.Length);
        Assert.Equal(Enumerable.Range(0, characters.Length), offsets);
        Assert.Equal(characters, tokens);
        Assert.Contains(EmojiModelServer.Emoji, characters[3..]);
    }

    [Fact]
    public async Task Text_offsets_count_characters_as_python_does_in_a_whole_answer()
    {
        using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions", Body(n: 2));
        var json = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, json);
        foreach (var choice in JsonNode.Parse(json)!["choices"]!.AsArray())
        {
            var logprobs = choice!["logprobs"]!;
            AssertPythonOffsets((string)choice["text"]!, [.. logprobs["tokens"]!.AsArray().Select(t => (string)t!)],
                [.. logprobs["text_offset"]!.AsArray().Select(o => (int)o!)]);
        }
    }

    [Fact]
    public async Task Text_offsets_count_characters_as_python_does_in_a_stream()
    {
        using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions", Body(n: 2, stream: true));
        var chunks = (await response.Content.ReadAsStringAsync()).Split('\n')
            .Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .SelectMany(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray()).ToList();
        foreach (var index in new[] { 0, 1 })
        {
            var mine = chunks.Where(c => (int)c!["index"]! == index).ToList();
            var logprobs = mine.Where(c => c!["logprobs"] is JsonObject).Select(c => c!["logprobs"]!).ToList();
            AssertPythonOffsets(string.Concat(mine.Select(c => (string)c!["text"]!)),
                [.. logprobs.SelectMany(l => l["tokens"]!.AsArray().Select(t => (string)t!))],
                [.. logprobs.SelectMany(l => l["text_offset"]!.AsArray().Select(o => (int)o!))]);
        }
    }
}
