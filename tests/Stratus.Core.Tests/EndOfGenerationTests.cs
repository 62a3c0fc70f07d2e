// A Hugging Face model may list several ids that end a generation (generation_config.json's and
// config.json's eos_token_id): an imported model stops at each of them, in the engine and in
// `stratus sample`, unless ignore_eos; fine-tuned runs and exports keep the list, and a bad
// value is refused in one line.
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class EndOfGenerationTests
{
    // WriteHfLlama's vocabulary: 96 characters, then <|im_start|> (96) and <|im_end|> (97), its eos_token.
    const int ImStart = 96, ImEnd = 97;

    static void WriteGenerationConfig(string hf, JsonNode? eosTokenId) =>
        File.WriteAllText(Path.Combine(hf, "generation_config.json"), new JsonObject { ["bos_token_id"] = 1, ["eos_token_id"] = eosTokenId }.ToJsonString());

    static void SetConfigEos(string hf, JsonNode? eosTokenId)
    {
        var path = Path.Combine(hf, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["eos_token_id"] = eosTokenId;
        File.WriteAllText(path, config.ToJsonString());
    }

    /// <summary>Tokens the engine generates for "ab" with <paramref name="forced"/> made certain by logit_bias.</summary>
    static async Task<(List<int> Tokens, string? FinishReason)> Generate(InferenceEngine engine, int forced, bool ignoreEos)
    {
        var sequence = engine.Submit(new GenerationRequest
        {
            PromptTokens = engine.Tokenizer.Encode("ab"), MaxTokens = 5, IgnoreEos = ignoreEos,
            Sampling = new SamplingOptions { Temperature = 0 }, LogitBias = new Dictionary<int, float> { [forced] = 100 },
        });
        var tokens = new List<int>();
        await foreach (var token in sequence.Output.ReadAllAsync()) tokens.Add(token.Token);
        return (tokens, sequence.FinishReason);
    }

    [Fact]
    public async Task The_engine_stops_at_every_id_generation_config_lists_unless_ignore_eos()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        HuggingFaceTests.WriteHfLlama(hf, shards: 1);
        WriteGenerationConfig(hf, new JsonArray(ImEnd, ImStart, 65));
        SetConfigEos(hf, ImEnd);
        var imported = HuggingFace.Import(hf, temp.File("run"));
        Assert.Equal([ImEnd, ImStart, 65], imported.Tokenizer.EndOfGenerationIds);

        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(temp.File("run")));
        using var model = checkpoint.CreateModel();
        using var engine = new InferenceEngine(model, checkpoint.Tokenizer);
        foreach (var id in new[] { ImStart, 65 })
        {
            // The end token counts as generated but is not emitted (as with the tokenizer's eos).
            var (tokens, reason) = await Generate(engine, id, ignoreEos: false);
            Assert.Empty(tokens);
            Assert.Equal(FinishReason.Stop, reason);
            (tokens, reason) = await Generate(engine, id, ignoreEos: true);
            Assert.Equal(Enumerable.Repeat(id, 5), tokens);
            Assert.Equal(FinishReason.Length, reason);
        }
    }

    [Fact]
    public void Sample_stops_at_an_id_generation_config_lists()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        HuggingFaceTests.WriteHfLlama(hf, shards: 1);
        HuggingFace.Import(hf, temp.File("plain"));
        var plain = Checkpoint.Open(Checkpoint.Resolve(temp.File("plain")));
        using var plainModel = plain.CreateModel();
        var greedy = string.Concat(new TextGenerator(plainModel, plain.Tokenizer).Generate("ab", 4, new SamplingOptions { Temperature = 0 }));
        Assert.NotEmpty(greedy);

        // The token greedy sampling draws first, listed as an end of generation, ends it at once.
        WriteGenerationConfig(hf, new JsonArray(ImEnd, plain.Tokenizer.Encode(greedy[..1])[0]));
        HuggingFace.Import(hf, temp.File("listed"));
        var listed = Checkpoint.Open(Checkpoint.Resolve(temp.File("listed")));
        using var listedModel = listed.CreateModel();
        Assert.Equal("", string.Concat(new TextGenerator(listedModel, listed.Tokenizer).Generate("ab", 4, new SamplingOptions { Temperature = 0 })));
    }

    [Fact]
    public void Export_writes_the_ids_and_a_re_import_and_a_fine_tuned_run_keep_them()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        HuggingFaceTests.WriteHfLlama(hf, shards: 1);
        WriteGenerationConfig(hf, ImStart);
        SetConfigEos(hf, new JsonArray(ImEnd, 65));
        HuggingFace.Import(hf, temp.File("run"));

        HuggingFace.Export(temp.File("run"), temp.File("out"));
        var config = JsonNode.Parse(File.ReadAllText(temp.File("out/config.json")))!;
        var generation = JsonNode.Parse(File.ReadAllText(temp.File("out/generation_config.json")))!;
        Assert.Equal("[97,96,65]", config["eos_token_id"]!.ToJsonString());
        Assert.Equal("[97,96,65]", generation["eos_token_id"]!.ToJsonString());
        Assert.Equal(ImEnd, (int)generation["bos_token_id"]!); // the vocabulary has no bos_token: eos, as config.json says
        Assert.Equal([ImEnd, ImStart, 65], HuggingFace.Import(temp.File("out"), temp.File("again")).Tokenizer.EndOfGenerationIds);

        // A run fine-tuned from it (its data prepared with its tokenizer) carries them to its checkpoints.
        File.WriteAllLines(temp.File("chat.jsonl"), Enumerable.Range(0, 20).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"n {i}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"m {i}" }),
        }.ToJsonString()));
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("run"));
        var train = TrainConfig.Load(null, [new("block_size", "16"), new("batch_size", "2"), new("max_iters", "1"), new("eval_interval", "1"), new("eval_iters", "1")]);
        using (var trainer = Trainer.Start(train, temp.File("data"), temp.File("tuned"), initFrom: temp.File("run"))) trainer.Run();
        Assert.Equal([ImEnd, ImStart, 65], Checkpoint.Open(Checkpoint.Resolve(temp.File("tuned"), preferBest: false)).Tokenizer.EndOfGenerationIds);
    }

    [Fact]
    public void One_eos_id_exports_as_a_number_and_a_tokenizer_without_others_is_stored_as_before()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        HuggingFaceTests.WriteHfLlama(hf, shards: 1);
        WriteGenerationConfig(hf, ImEnd);
        var imported = HuggingFace.Import(hf, temp.File("run"));
        Assert.Equal([ImEnd], imported.Tokenizer.EndOfGenerationIds);
        Assert.Null(imported.Tokenizer.ToJson()["eos_token_ids"]);
        HuggingFace.Export(temp.File("run"), temp.File("out"));
        Assert.Equal(ImEnd, (int)JsonNode.Parse(File.ReadAllText(temp.File("out/config.json")))!["eos_token_id"]!);
        Assert.Equal(ImEnd, (int)JsonNode.Parse(File.ReadAllText(temp.File("out/generation_config.json")))!["eos_token_id"]!);
    }

    [Theory]
    [InlineData("generation_config.json", "\"x\"", "\"x\"")]
    [InlineData("generation_config.json", "[97, 98]", "[97,98]")]
    [InlineData("generation_config.json", "[97, null]", "[97,null]")]
    [InlineData("generation_config.json", "-1", "-1")]
    [InlineData("config.json", "1.5", "1.5")]
    [InlineData("config.json", "{\"id\": 3}", "{\"id\":3}")]
    public void A_bad_eos_token_id_is_refused_in_one_line(string file, string value, string shown)
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        HuggingFaceTests.WriteHfLlama(hf, shards: 1);
        var eos = JsonNode.Parse(value);
        if (file == "config.json") SetConfigEos(hf, eos);
        else WriteGenerationConfig(hf, eos);
        var message = Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File("run"))).Message;
        Assert.Equal($"{Path.Combine(hf, file)}: eos_token_id must be a token id (0 to 97) or a list of them, got {shown}", message);
    }

    [Fact]
    public void A_damaged_stored_list_is_refused_in_one_line()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        HuggingFaceTests.WriteHfLlama(hf, shards: 1);
        WriteGenerationConfig(hf, new JsonArray(ImEnd, ImStart));
        var json = HuggingFace.Import(hf, temp.File("run")).Tokenizer.ToJson();
        Assert.Equal("[97,96]", json["eos_token_ids"]!.ToJsonString());
        json["eos_token_ids"] = "96";
        Assert.Equal("tokenizer.json: eos_token_ids must be a list of token ids, got \"96\"",
            Assert.Throws<StratusUserException>(() => TokenizerStore.FromJson(json)).Message);
    }
}
