// A model's generated special tokens are left out of completion text and chat content as vLLM
// leaves them out (skip_special_tokens, true by default), while logprobs still name them; a
// request's skip_special_tokens: false keeps them. A character the model's Hugging Face
// vocabulary cannot spell (no byte token for it, no unk_token) is a 400 naming it, not dropped.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

/// <summary>A tiny GPT with a byte-level Hugging Face tokenizer of newline, space and a-z (no other byte, no
/// unk_token), &lt;|endoftext|&gt; (its eos_token), &lt;|extra|&gt; and &lt;|end_of_text|&gt;, all
/// special, the last listed by the model as an end of generation besides its eos (as Llama 3.1
/// Instruct's generation_config.json lists &lt;|end_of_text|&gt; besides its eos &lt;|eot_id|&gt;).</summary>
public sealed class ByteLevelModelServer : IAsyncLifetime
{
    public const int A = 2, EndOfText = 28, Extra = 29, ListedEnd = 30;

    public TinyModelServer Server { get; } = new() { CreateModel = CreateCheckpoint };

    public static HfTokenizer CreateTokenizer()
    {
        var characters = BpeVocabulary.FromCharacters("\n abcdefghijklmnopqrstuvwxyz");
        var vocabulary = characters with { Tokens = [.. characters.Tokens, "<|endoftext|>", "<|extra|>", "<|end_of_text|>"], Special = new HashSet<int> { EndOfText, Extra, ListedEnd } };
        return HfTokenizer.FromHuggingFace(Formats.HuggingFace.TokenizerJson(vocabulary), new JsonObject { ["eos_token"] = "<|endoftext|>" },
            endOfGenerationIds: [EndOfText, ListedEnd]);
    }

    static string CreateCheckpoint(string directory) => TinyModelServer.SaveGpt(directory, CreateTokenizer(), context: 64, layers: 1);

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class GeneratedSpecialTokensTests(ByteLevelModelServer fixture) : IClassFixture<ByteLevelModelServer>
{
    HttpClient Http => fixture.Server.Http;

    async Task<JsonNode> Post(string path, Dictionary<string, object?> body, HttpStatusCode status = HttpStatusCode.OK)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, text);
        return JsonNode.Parse(text)!;
    }

    /// <summary>A request that draws "a" and the special tokens at random (logit_bias), past the
    /// end-of-text token (ignore_eos).</summary>
    static Dictionary<string, object?> Drawing(params int[] tokens) => new()
    {
        ["model"] = "tiny", ["max_tokens"] = 16, ["temperature"] = 1, ["seed"] = 3, ["ignore_eos"] = true,
        ["logit_bias"] = tokens.ToDictionary(t => t.ToString(), _ => 100),
    };

    [Fact]
    public async Task A_completion_leaves_generated_special_tokens_out_of_its_text_and_logprobs_name_them()
    {
        var body = Drawing(ByteLevelModelServer.A, ByteLevelModelServer.EndOfText, ByteLevelModelServer.Extra);
        body["prompt"] = "ab";
        body["logprobs"] = 0;
        var choice = (await Post("/v1/completions", body))["choices"]![0]!;
        var tokens = choice["logprobs"]!["tokens"]!.AsArray().Select(t => (string)t!).ToArray();
        Assert.Contains("<|endoftext|>", tokens);
        Assert.Contains("<|extra|>", tokens);
        var text = (string)choice["text"]!;
        Assert.Equal(string.Concat(tokens.Where(t => t == "a")), text);
        // Each token's offset is where its text starts in the text: a left-out token takes no room.
        var offsets = choice["logprobs"]!["text_offset"]!.AsArray().Select(o => (int)o!);
        Assert.Equal(tokens.Select((t, i) => tokens.Take(i).Count(s => s == "a")), offsets);

        body["skip_special_tokens"] = false;
        var kept = (await Post("/v1/completions", body))["choices"]![0]!;
        Assert.Equal(string.Concat(tokens), (string)kept["text"]!);
    }

    [Fact]
    public async Task A_streamed_chat_leaves_generated_special_tokens_out_of_its_content()
    {
        // The chat ends at the eos token whatever ignore_eos says: only <|extra|> is drawn.
        async Task<string> Content(bool? skip)
        {
            var body = Drawing(ByteLevelModelServer.A, ByteLevelModelServer.Extra);
            body["messages"] = new[] { new { role = "user", content = "ab" } };
            body["stream"] = true;
            if (skip is not null) body["skip_special_tokens"] = skip;
            using var response = await Http.PostAsJsonAsync("/v1/chat/completions", body);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return string.Concat((await response.Content.ReadAsStringAsync()).Split('\n')
                .Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
                .Select(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray())
                .Where(choices => choices.Count > 0)
                .Select(choices => (string?)choices[0]!["delta"]!["content"]));
        }
        var kept = await Content(skip: false);
        Assert.Contains("<|extra|>", kept);
        Assert.Equal(kept.Replace("<|extra|>", ""), await Content(skip: null));
        Assert.Matches("^a+$", await Content(skip: true));
    }

    [Fact]
    public async Task A_character_the_vocabulary_cannot_spell_is_a_400_naming_it()
    {
        var completion = new Dictionary<string, object?> { ["model"] = "tiny", ["prompt"] = "a é", ["max_tokens"] = 1 };
        var error = (await Post("/v1/completions", completion, HttpStatusCode.BadRequest))["error"]!;
        Assert.Equal("unencodable_characters", (string?)error["code"]);
        Assert.Equal("The text has characters outside this model's vocabulary: 'é' (U+00E9).", (string?)error["message"]);
        var chat = new Dictionary<string, object?> { ["model"] = "tiny", ["messages"] = new[] { new { role = "user", content = "café" } }, ["max_tokens"] = 1 };
        Assert.Equal("unencodable_characters", (string?)(await Post("/v1/chat/completions", chat, HttpStatusCode.BadRequest))["error"]!["code"]);
        var tokenize = new Dictionary<string, object?> { ["model"] = "tiny", ["prompt"] = "é" };
        Assert.Equal("unencodable_characters", (string?)(await Post("/tokenize", tokenize, HttpStatusCode.BadRequest))["error"]!["code"]);
    }
}
