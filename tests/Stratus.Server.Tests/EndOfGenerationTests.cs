// /v1/completions stops at every id a model lists as ending a generation (an imported model's
// generation_config.json eos_token_id), not only at its tokenizer's eos_token, with
// finish_reason "stop"; ignore_eos generates past all of them, as vLLM does.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Server.Tests;

/// <summary>A tiny GPT whose byte-level tokenizer's eos_token is &lt;|eot_id|&gt; and whose model
/// also lists &lt;|end_of_text|&gt; as an end of generation (Llama 3.1 Instruct's arrangement).</summary>
public sealed class EndOfGenerationModelServer : IAsyncLifetime
{
    public const int EndOfText = 28, EndOfTurn = 29;

    public TinyModelServer Server { get; } = new() { CreateModel = CreateCheckpoint };

    static string CreateCheckpoint(string directory)
    {
        var characters = BpeVocabulary.FromCharacters("\n abcdefghijklmnopqrstuvwxyz");
        var vocabulary = characters with { Tokens = [.. characters.Tokens, "<|end_of_text|>", "<|eot_id|>"], Special = new HashSet<int> { EndOfText, EndOfTurn } };
        var tokenizer = HfTokenizer.FromHuggingFace(Formats.HuggingFace.TokenizerJson(vocabulary), new JsonObject { ["eos_token"] = "<|eot_id|>" },
            endOfGenerationIds: [EndOfText, EndOfTurn]);
        torch.manual_seed(11);
        using var model = new Gpt(new ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 64, NLayer = 1, NHead = 2, NEmbd = 32, Bias = false });
        Checkpoint.Save(directory, model, tokenizer);
        return directory;
    }

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class EndOfGenerationTests(EndOfGenerationModelServer fixture) : IClassFixture<EndOfGenerationModelServer>
{
    async Task<JsonNode> Complete(bool ignoreEos)
    {
        var body = new Dictionary<string, object?>
        {
            ["model"] = "tiny", ["prompt"] = "ab", ["max_tokens"] = 5, ["ignore_eos"] = ignoreEos, ["logprobs"] = 0,
            ["logit_bias"] = new Dictionary<string, int> { [EndOfGenerationModelServer.EndOfText.ToString()] = 100 },
        };
        using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task A_completion_stops_at_an_end_of_generation_id_other_than_the_tokenizers_eos()
    {
        var stopped = await Complete(ignoreEos: false);
        Assert.Equal("stop", (string?)stopped["choices"]![0]!["finish_reason"]);
        Assert.Equal("", (string?)stopped["choices"]![0]!["text"]);
        Assert.Equal(1, (int)stopped["usage"]!["completion_tokens"]!);

        var ignored = (await Complete(ignoreEos: true))["choices"]![0]!;
        Assert.Equal("length", (string?)ignored["finish_reason"]);
        Assert.Equal(Enumerable.Repeat("<|end_of_text|>", 5), ignored["logprobs"]!["tokens"]!.AsArray().Select(t => (string)t!));
    }
}
