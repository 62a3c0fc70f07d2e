// The special tokens a tokenizer puts around a raw prompt (Hugging Face's add_special_tokens):
// Llama 2's and Llama 3's post-processors put their BOS before it, GPT-2's and character-level
// tokenizers put nothing, tokenizer_config.json's add_bos_token / add_eos_token decide where
// they are given, a chat template that writes bos_token gets it once, sampling puts it before
// the prompt, prepared training text has them around each document, and GGUF and Hugging Face exports keep it (llama.cpp adds what Stratus adds).
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Tests;

public sealed class SpecialTokensTests
{
    const int Bos = 1, Eos = 2;

    static JsonObject Llama2Config() => new() { ["bos_token"] = "<s>", ["eos_token"] = "</s>" };

    static HfTokenizer Llama2(JsonObject? config = null, bool postProcessor = true)
    {
        var json = SentencePieceTests.Llama2StyleTokenizerJson();
        if (!postProcessor) json.Remove("post_processor");
        return HfTokenizer.FromHuggingFace(json, config ?? Llama2Config());
    }

    /// <summary>A Llama 3-shaped byte-level tokenizer: characters, then &lt;|begin_of_text|&gt; and
    /// &lt;|end_of_text|&gt;, then <paramref name="moreCharacters"/> (ASCII), with Llama 3's
    /// post-processor (ByteLevel, then a template).</summary>
    static HfTokenizer Llama3(string moreCharacters = "")
    {
        var characters = BpeVocabulary.FromCharacters("abcdefghijklmnopqrstuvwxyz ");
        var vocabulary = characters with
        {
            Tokens = [.. characters.Tokens, "<|begin_of_text|>", "<|end_of_text|>", .. BpeVocabulary.FromCharacters(moreCharacters).Tokens], Special = new HashSet<int> { 27, 28 },
        };
        var json = HuggingFace.TokenizerJson(vocabulary);
        json["post_processor"] = JsonNode.Parse("""
            {"type": "Sequence", "processors": [
              {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
              {"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
               "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [27], "tokens": ["<|begin_of_text|>"]}}}]}
            """);
        return HfTokenizer.FromHuggingFace(json, new JsonObject { ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = "<|end_of_text|>" });
    }

    [Fact]
    public void Llama_2_s_post_processor_puts_one_BOS_before_a_prompt_and_none_before_plain_text()
    {
        var tokenizer = Llama2();
        var text = tokenizer.Encode("the cat sat");
        Assert.DoesNotContain(Bos, text);
        Assert.Equal([Bos, .. text], tokenizer.Encode("the cat sat", addSpecialTokens: true));
        Assert.Equal(text, tokenizer.Encode("the cat sat", addSpecialTokens: false));
        // An empty prompt is the BOS alone, as Hugging Face's tokenizer("") gives [1].
        Assert.Equal([Bos], tokenizer.Encode("", addSpecialTokens: true));
        // Stored in a checkpoint and read back, the tokenizer still adds it.
        Assert.Equal([Bos, .. text], TokenizerStore.FromJson(tokenizer.ToJson()).Encode("the cat sat", addSpecialTokens: true));
    }

    [Fact]
    public void Llama_3_s_post_processor_puts_begin_of_text_before_a_prompt()
    {
        var tokenizer = Llama3();
        Assert.Equal([27, .. tokenizer.Encode("the cat")], tokenizer.Encode("the cat", addSpecialTokens: true));
        Assert.Equal(27, tokenizer.BosId);
    }

    [Fact]
    public void GPT_2_s_ByteLevel_post_processor_and_character_and_GPT_2_tokenizers_add_nothing()
    {
        var json = HuggingFace.TokenizerJson(BpeVocabulary.From(Gpt2Tokenizer.Instance));
        json["post_processor"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}""");
        ITokenizer[] tokenizers = [HfTokenizer.FromHuggingFace(json, new JsonObject { ["bos_token"] = "<|endoftext|>", ["eos_token"] = "<|endoftext|>" }),
            Gpt2Tokenizer.Instance, CharTokenizer.FromCorpus("the cat")];
        foreach (var tokenizer in tokenizers)
            Assert.Equal(tokenizer.Encode("the cat"), tokenizer.Encode("the cat", addSpecialTokens: true));
    }

    [Fact]
    public void Tokenizer_config_s_add_bos_token_and_add_eos_token_decide_where_given_as_transformers_does()
    {
        var text = Llama2().Encode("the cat");
        // They override the template (transformers rebuilds it from them)...
        Assert.Equal(text, Llama2(new JsonObject { ["bos_token"] = "<s>", ["add_bos_token"] = false }).Encode("the cat", addSpecialTokens: true));
        var withEos = Llama2(Llama2Config().With("add_eos_token", true));
        Assert.Equal([Bos, .. text, Eos], withEos.Encode("the cat", addSpecialTokens: true));
        // An echo leaves them out of the prompt's text.
        Assert.Equal([Bos], withEos.SpecialTokensAround.Before);
        Assert.Equal([Eos], withEos.SpecialTokensAround.After);
        var none = ((ITokenizer)CharTokenizer.FromCorpus("the cat")).SpecialTokensAround;
        Assert.Equal(0, none.Before.Count + none.After.Count);
        // ...and stand in for a missing one; without either, nothing is added.
        Assert.Equal([Bos, .. text], Llama2(Llama2Config().With("add_bos_token", true), postProcessor: false).Encode("the cat", addSpecialTokens: true));
        Assert.Equal(text, Llama2(postProcessor: false).Encode("the cat", addSpecialTokens: true));
    }

    [Theory]
    [InlineData("\"ids\": [1]", "\"ids\": [999]", "tokenizer.json: post_processor adds token id 999, outside the vocabulary of 302")]
    [InlineData("\"ids\": [1]", "\"ids\": 1", "tokenizer.json: post_processor.special_tokens[\"<s>\"].ids must be a list, got 1")]
    [InlineData("\"special_tokens\": {\"<s>\"", "\"special_tokens\": {\"<x>\"", "tokenizer.json: post_processor.single[0] names the special token \"<s>\", which post_processor.special_tokens does not list")]
    [InlineData("{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n \"pair\"", "{\"Sequence\": {\"id\": \"B\", \"type_id\": 0}}],\n \"pair\"",
        "tokenizer.json: the Hugging Face tokenizer cannot be used: its post_processor's single template must hold the text (Sequence \"A\") once")]
    [InlineData("\"TemplateProcessing\"", "\"RobertaProcessing\"", "tokenizer.json: the Hugging Face tokenizer cannot be used: its post_processor 'RobertaProcessing' is not supported")]
    [InlineData("{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n \"pair\"", "7],\n \"pair\"",
        "tokenizer.json: post_processor.single[0] must be a SpecialToken or a Sequence, got 7")]
    public void A_malformed_post_processor_is_refused_naming_the_field(string from, string to, string expected)
    {
        Assert.Contains(from, SentencePieceTests.Llama2PostProcessor);
        var json = SentencePieceTests.Llama2StyleTokenizerJson();
        json["post_processor"] = JsonNode.Parse(SentencePieceTests.Llama2PostProcessor.Replace(from, to));
        Assert.StartsWith(expected, Assert.Throws<StratusUserException>(() => HfTokenizer.FromHuggingFace(json, Llama2Config())).Message);
    }

    [Fact]
    public void Add_bos_token_without_a_bos_token_or_as_text_is_refused_clearly()
    {
        Assert.Equal("tokenizer_config.json: add_bos_token is true, but bos_token (none) is not one of tokenizer.json's added tokens",
            Assert.Throws<StratusUserException>(() => Llama2(new JsonObject { ["add_bos_token"] = true })).Message);
        Assert.Equal("tokenizer_config.json: add_eos_token must be true or false, got \"yes\"",
            Assert.Throws<StratusUserException>(() => Llama2(Llama2Config().With("add_eos_token", "yes"))).Message);
    }

    [Fact]
    public void A_chat_template_that_writes_bos_token_gives_exactly_one_BOS()
    {
        var tokenizer = Llama2();
        var template = new ChatTemplate("{{ bos_token }}{% for m in messages %}{{ m['content'] + ' ' }}{% endfor %}", "<s>", "</s>");
        var prompt = template.Render([new ChatMessageText("user", "the cat sat")]);
        // Encoded as Hugging Face's apply_chat_template and vLLM's chat encode it: no special tokens added.
        var tokens = tokenizer.Encode(prompt, addSpecialTokens: false);
        Assert.Equal(Bos, tokens[0]);
        Assert.Single(tokens, t => t == Bos);
    }

    [Fact]
    public void Fine_tuning_data_rendered_by_a_derived_template_starts_with_the_BOS_a_served_chat_gets()
    {
        var tokenizer = Llama2();
        var template = ChatTemplate.For(tokenizer);
        Assert.True(template.AddSpecialTokens);
        var (tokens, mask) = ChatDatasetPreparer.Encode(template, tokenizer, [new("user", "the cat"), new("assistant", "sat")]);
        Assert.Equal((Bos, (byte)0), (tokens[0], mask[0]));
        Assert.Single(tokens, t => t == Bos);
        // The unlearned part is the prompt a chat request for the reply gives the model.
        var served = tokenizer.Encode(template.Render([("user", "the cat")], addGenerationPrompt: true), template.AddSpecialTokens);
        Assert.Equal(served, tokens.TakeWhile((_, i) => mask[i] == 0));
    }

    [Fact]
    public void Prepared_text_gives_each_document_the_BOS_a_prompt_gets_once_however_many_pieces_it_is_read_in()
    {
        using var temp = new TempDirectory();
        const int BeginOfText = 27, EndOfText = 28;
        var tokenizer = Llama3("\n.");
        // Cut after every line: in pieces of 16 characters the first document is read in dozens.
        Assert.Equal(TextCuts.BetweenLines, tokenizer.Cuts);
        var first = string.Concat(Enumerable.Repeat("the cat sat.\nthe dog ran.\n", 20));
        File.WriteAllLines(temp.File("docs.jsonl"), [new JsonObject { ["text"] = first }.ToJsonString(), """{"text": "a fox"}"""]);
        DatasetPreparer.Prepare(temp.File("docs.jsonl"), temp.File("data"), "char", tokenizerFrom: tokenizer, pieceChars: 16);
        // As Hugging Face's run_clm.py encodes each document, joined by the end of text as before.
        Assert.Equal([BeginOfText, .. tokenizer.Encode(first), EndOfText, BeginOfText, .. tokenizer.Encode("a fox")], DataTests.PreparedTokens(temp.File("data")));
        var meta = JsonNode.Parse(File.ReadAllText(temp.File("data/meta.json")))!;
        Assert.Equal("""{"before":[27],"after":[]}""", meta["document_special_tokens"]!.ToJsonString());

        // A model with this tokenizer fine-tunes on the data.
        SaveLlama(temp.File("model"), tokenizer);
        var config = TrainConfig.Load(null, [new("block_size", "16"), new("batch_size", "2"), new("max_iters", "2"), new("eval_interval", "2"), new("eval_iters", "1")]);
        using (var trainer = Trainer.Start(config, temp.File("data"), temp.File("run"), initFrom: temp.File("model"))) trainer.Run();
        Assert.True(Checkpoint.Exists(temp.File("run")));
    }

    [Fact]
    public void Prepared_text_of_a_tokenizer_that_ends_a_text_itself_gets_no_separator_besides()
    {
        using var temp = new TempDirectory();
        var tokenizer = Llama2(Llama2Config().With("add_eos_token", true));
        File.WriteAllLines(temp.File("docs.jsonl"), ["""{"text": "the cat sat"}""", """{"text": ""}""", """{"text": "a  cat, é!"}"""]);
        DatasetPreparer.Prepare(temp.File("docs.jsonl"), temp.File("data"), "char", tokenizerFrom: tokenizer);
        // The empty document is skipped, as before: it adds no BOS-EOS pair.
        Assert.Equal([Bos, .. tokenizer.Encode("the cat sat"), Eos, Bos, .. tokenizer.Encode("a  cat, é!"), Eos], DataTests.PreparedTokens(temp.File("data")));
    }

    [Fact]
    public void Sampling_puts_the_BOS_before_the_prompt()
    {
        var tokenizer = Llama2();
        torch.manual_seed(5);
        using var model = CausalLanguageModel.Create(new ModelConfig { Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 16, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false });
        // Sharp attention (weights at 10x their initial scale), so what the prompt starts with shows.
        using (torch.no_grad()) foreach (var parameter in model.parameters()) parameter.mul_(10);
        model.eval();
        string Greedy(int[] prompt)
        {
            var tokens = prompt.Select(t => (long)t).ToList();
            using var noGrad = torch.no_grad();
            for (var i = 0; i < 6; i++)
            {
                using var scope = torch.NewDisposeScope();
                var next = model.Forward(torch.tensor(tokens.ToArray(), [1, tokens.Count]))[0, -1].argmax().item<long>();
                if (next == Eos) break; // where sampling stops
                tokens.Add(next);
            }
            return tokenizer.Decode(tokens.Skip(prompt.Length).Select(t => (int)t));
        }
        var withBos = Greedy(tokenizer.Encode("the cat", addSpecialTokens: true));
        Assert.NotEqual(Greedy(tokenizer.Encode("the cat")), withBos); // else this test could not tell
        Assert.Equal(withBos, string.Concat(new TextGenerator(model, tokenizer).Generate("the cat", 6, new SamplingOptions { Temperature = 0 })));
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void A_GGUF_export_makes_llama_cpp_add_what_the_tokenizer_adds(bool addBos, bool addEos)
    {
        using var temp = new TempDirectory();
        var tokenizer = Llama2(Llama2Config().With("add_bos_token", addBos).With("add_eos_token", addEos));
        SaveLlama(temp.File("model"), tokenizer);
        GgufExport.Write(temp.File("model"), temp.File("m.gguf"), GgmlType.F32);
        var metadata = GgufFile.Read(temp.File("m.gguf")).Metadata;
        Assert.Equal((addBos, addEos), ((bool)metadata["tokenizer.ggml.add_bos_token"], (bool)metadata["tokenizer.ggml.add_eos_token"]));
        using var reference = new LlamaCppModel(temp.File("m.gguf"), 32, 2);
        foreach (var text in new[] { "the cat sat", "a  cat, é!" })
            Assert.Equal(tokenizer.Encode(text, addSpecialTokens: true), reference.Tokenize(text, addSpecialTokens: true));
    }

    [Fact]
    public void A_byte_level_Llama_3_exported_to_GGUF_gets_its_begin_of_text_from_llama_cpp()
    {
        using var temp = new TempDirectory();
        var tokenizer = Llama3();
        SaveLlama(temp.File("model"), tokenizer);
        GgufExport.Write(temp.File("model"), temp.File("m.gguf"), GgmlType.F32);
        using var reference = new LlamaCppModel(temp.File("m.gguf"), 32, 2);
        Assert.Equal(tokenizer.Encode("the cat", addSpecialTokens: true), reference.Tokenize("the cat", addSpecialTokens: true));
    }

    [Fact]
    public void GGUF_export_refuses_added_tokens_it_cannot_express()
    {
        using var temp = new TempDirectory();
        // The template puts </s> before the text: GGUF can only say "bos_token first".
        var json = SentencePieceTests.Llama2StyleTokenizerJson();
        json["post_processor"] = JsonNode.Parse(SentencePieceTests.Llama2PostProcessor.Replace("\"ids\": [1]", "\"ids\": [2]"));
        SaveLlama(temp.File("model"), HfTokenizer.FromHuggingFace(json, Llama2Config()));
        Assert.Equal("GGUF cannot say that a prompt gets the tokens [2] before it (only that it gets its bos_token, id 1)",
            Assert.Throws<StratusUserException>(() => GgufExport.Write(temp.File("model"), temp.File("m.gguf"), GgmlType.F32)).Message);
    }

    [Fact]
    public void An_imported_Llama_exported_to_Hugging_Face_and_imported_again_keeps_its_BOS()
    {
        using var temp = new TempDirectory();
        SaveLlama(temp.File("model"), Llama2());
        HuggingFace.Export(temp.File("model"), temp.File("hf"));
        var imported = HuggingFace.Import(temp.File("hf"), temp.File("run"));
        Assert.Equal([Bos, .. imported.Tokenizer.Encode("the cat")], Checkpoint.Open(imported.CheckpointDirectory).Tokenizer.Encode("the cat", addSpecialTokens: true));
        GgufExport.Write(temp.File("run"), temp.File("m.gguf"), GgmlType.F32);
        Assert.True((bool)GgufFile.Read(temp.File("m.gguf")).Metadata["tokenizer.ggml.add_bos_token"]);
    }

    static void SaveLlama(string directory, ITokenizer tokenizer)
    {
        var config = new ModelConfig { Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 32, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false };
        using var model = CausalLanguageModel.Create(config);
        Checkpoint.Save(directory, model, tokenizer);
    }
}

static class JsonObjectWith
{
    public static JsonObject With(this JsonObject json, string key, JsonNode? value)
    {
        json[key] = value;
        return json;
    }
}
