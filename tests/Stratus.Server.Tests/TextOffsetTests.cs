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

/// <summary>A tiny GPT with a byte-level Hugging Face tokenizer that spells "é" as one token but
/// also holds its two bytes as tokens of their own, which the model may write one at a time.</summary>
public sealed class SplitCharacterModelServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { CreateModel = CreateCheckpoint };

    static string CreateCheckpoint(string directory) => TinyModelServer.SaveGpt(directory,
        HfTokenizer.FromHuggingFace(Formats.HuggingFace.TokenizerJson(BpeVocabulary.FromCharacters("\n abé")), new JsonObject()), context: 64, layers: 1);

    /// <summary>The token of the byte alone.</summary>
    public int Byte(byte value)
    {
        var tokenizer = Server.Model.Tokenizer;
        return Enumerable.Range(0, tokenizer.VocabSize).Single(id => tokenizer.TokenBytes(id) is [var only] && only == value);
    }

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class SplitCharacterOffsetTests(SplitCharacterModelServer fixture) : IClassFixture<SplitCharacterModelServer>
{
    [Fact]
    public async Task A_character_split_over_tokens_is_counted_once_at_the_token_that_completes_it()
    {
        // "é" is 0xC3 0xA9. Decoded alone each byte reads U+FFFD, one character each: counted so,
        // "é" took two characters and every offset after it ran one further, past the text's end.
        // As vLLM's incremental detokenizer: the first byte adds nothing, the second "é".
        var (lead, trail) = (fixture.Byte(0xC3), fixture.Byte(0xA9));
        var a = fixture.Server.Model.Tokenizer.Encode("a").Single();
        foreach (var stream in new[] { false, true })
        {
            var body = new Dictionary<string, object?>
            {
                ["model"] = "tiny", ["prompt"] = new[] { lead, trail, a }, ["echo"] = true, ["logprobs"] = 0, ["max_tokens"] = 12,
                ["temperature"] = 1, ["seed"] = 2, ["stream"] = stream, ["logit_bias"] = new Dictionary<string, int> { [lead.ToString()] = 100, [trail.ToString()] = 100 },
            };
            using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions", body);
            var json = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, json);
            var (text, _, offsets) = CompletionChoices.First(json, stream);
            Assert.StartsWith("éa", text);
            // Drawn at random among the two bytes, they make "é" again somewhere (and U+FFFD elsewhere).
            Assert.Contains("é", text[2..]);
            Assert.Equal(15, offsets.Count);
            Assert.Equal([0, 0, 1, 2], offsets[..4]);
            Assert.All(offsets.Zip(offsets.Skip(1)), pair => Assert.True(pair.First <= pair.Second, string.Join(",", offsets)));
            Assert.InRange(offsets[^1], 0, text.EnumerateRunes().Count());
        }
    }
}
