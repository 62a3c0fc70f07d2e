// Hugging Face folders in and out: the tokenizer.json Stratus writes encodes like GPT-2's
// tiktoken, export then import gives bit-identical weights, sharded bf16 checkpoints with a
// chat template import, and each kind of bad folder is refused with one clear message.
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class HuggingFaceTests
{
    [Fact]
    public void A_GPT2_tokenizer_json_encodes_and_decodes_like_tiktoken()
    {
        var hf = HfTokenizer.FromHuggingFace(HuggingFace.TokenizerJson(BpeVocabulary.From(Gpt2Tokenizer.Instance)), null);
        Assert.Equal(50257, hf.VocabSize);
        foreach (var text in new[] { "Hello world, it's 2024!", "  multiple   spaces\nand\ttabs", "naïve café 東京 🙂", "x<|endoftext|>y", "don't stop-believing 12345" })
        {
            Assert.Equal(Gpt2Tokenizer.Instance.Encode(text), hf.Encode(text));
            Assert.Equal(text, hf.Decode(hf.Encode(text)));
        }
    }

    /// <summary>The tokenizer keeps its tokenizer.json as text, nothing of the tree it was made
    /// from (a tree of a large vocabulary took two to three times the file's size for as long as
    /// the tokenizer lived); what it encodes, stores and exports is that file's, its merges
    /// written as "left right" strings or as [left, right] pairs.</summary>
    [Fact]
    public void A_Hugging_Face_tokenizer_keeps_its_json_as_text_not_the_tree_it_was_made_from()
    {
        var (tokenizer, tree) = MadeFromATree();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(tree.IsAlive);
        var gpt2 = BpeVocabulary.From(Gpt2Tokenizer.Instance);
        Assert.Equal(gpt2.Tokens, tokenizer.Vocabulary.Tokens);
        Assert.Equal(gpt2.Merges, tokenizer.Vocabulary.Merges);
        Assert.True(JsonNode.DeepEquals(HuggingFace.TokenizerJson(gpt2), tokenizer.TokenizerJson));

        var pairs = HuggingFace.TokenizerJson(gpt2);
        pairs["model"]!["merges"] = new JsonArray([.. gpt2.Merges.Select(merge => (JsonNode)new JsonArray([.. merge.Split(' ').Select(part => (JsonNode)part)]))]);
        var fromPairs = HfTokenizer.FromHuggingFace(pairs, null);
        Assert.Equal(gpt2.Merges, fromPairs.Vocabulary.Merges);

        using var temp = new TempDirectory();
        TokenizerStore.Save(tokenizer, temp.Path);
        var loaded = TokenizerStore.Load(temp.Path);
        Assert.Equal(TokenizerStore.Utf8(tokenizer), TokenizerStore.Utf8(loaded));
        foreach (var text in new[] { "Hello world, it's 2024!", "naïve café 東京 🙂", "x<|endoftext|>y" })
        {
            var expected = Gpt2Tokenizer.Instance.Encode(text);
            Assert.Equal(expected, fromPairs.Encode(text));
            Assert.Equal(expected, loaded.Encode(text));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static (HfTokenizer Tokenizer, WeakReference Tree) MadeFromATree()
    {
        var tree = HuggingFace.TokenizerJson(BpeVocabulary.From(Gpt2Tokenizer.Instance));
        return (HfTokenizer.FromHuggingFace(tree, null), new WeakReference(tree));
    }

    /// <summary>A byte-level tokenizer.json small enough to break one field at a time.</summary>
    const string SmallTokenizer = """
        {"added_tokens": [{"id": 4, "content": "<|end|>", "special": true}],
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "decoder": {"type": "ByteLevel"},
         "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]}}
        """;

    [Theory]
    [InlineData("\"b\": 1", "\"b\": \"1\"", "tokenizer.json: model.vocab[\"b\"] must be a whole number, got \"1\"")]
    [InlineData("\"b\": 1", "\"b\": -5", "tokenizer.json: token \"b\" has id -5, but the file lists 5 tokens, so ids run from 0 to 4")]
    [InlineData("\"b\": 1", "\"b\": 2147483647", "tokenizer.json: token \"b\" has id 2147483647, but the file lists 5 tokens")]
    [InlineData("\"b\": 1", "\"b\": 50000000", "tokenizer.json: token \"b\" has id 50000000, but the file lists 5 tokens")]
    [InlineData("\"ab\": 2", "\"ab\": 1", "tokenizer.json: model.vocab gives id 1 to both \"b\" and \"ab\"")]
    // A token listed twice took its last id without a word (Stratus before the vocabulary was
    // read as JSON text: an ArgumentException with a stack trace).
    [InlineData("\"ab\": 2", "\"b\": 2, \"ab\": 2", "tokenizer.json: model.vocab lists \"b\" twice, with ids 1 and 2")]
    [InlineData("\"content\": \"<|end|>\"", "\"content\": null", "tokenizer.json: added_tokens[0].content must be non-empty text, got null")]
    [InlineData("\"content\": \"<|end|>\"", "\"content\": \"\"", "tokenizer.json: added_tokens[0].content must be non-empty text, got \"\"")]
    [InlineData("\"id\": 4, ", "", "tokenizer.json: added_tokens[0].id must be a whole number, got null")]
    [InlineData("\"special\": true", "\"special\": \"yes\"", "tokenizer.json: added_tokens[0].special must be true or false, got \"yes\"")]
    [InlineData("[{\"id\"", "[7, {\"id\"", "tokenizer.json: added_tokens[0] must be an object, got 7")]
    [InlineData("\"type\": \"BPE\"", "\"type\": 5", "tokenizer.json: model.type must be text, got 5")]
    [InlineData("[\"a b\"]", "[5]", "tokenizer.json: model.merges[0] must be two tokens (\"left right\" or [\"left\", \"right\"]), got 5")]
    [InlineData("[\"a b\"]", "[[\"a\", 5]]", "tokenizer.json: model.merges[0] must be two tokens")]
    [InlineData("[\"a b\"]", "[\"a c\"]", "tokenizer.json: its BPE model is inconsistent: ")]
    [InlineData("\"use_regex\": true}", "\"use_regex\": 1}", "tokenizer.json: pre_tokenizer.use_regex must be true or false, got 1")]
    [InlineData("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}",
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}",
        "tokenizer.json: the pre-tokenizer's pattern is not a regular expression .NET can use: Invalid pattern '(unclosed'")]
    // Hugging Face gives an added token the id of the same text in the vocabulary, never another
    // token's: that token decoded as the added one's text, while its text still encoded to it.
    [InlineData("\"id\": 4, \"content\"", "\"id\": 1, \"content\"", "tokenizer.json: the added token \"<|end|>\" has id 1, which is \"b\"'s")]
    [InlineData("[{\"id\": 4", "[{\"id\": 4, \"content\": \"<|x|>\"}, {\"id\": 4", "tokenizer.json: the added token \"<|end|>\" has id 4, which is \"<|x|>\"'s")]
    [InlineData("[{\"id\": 4", "[{\"id\": 3, \"content\": \"<|end|>\"}, {\"id\": 4", "tokenizer.json: added_tokens lists \"<|end|>\" twice, with ids 3 and 4")]
    public void A_malformed_tokenizer_json_is_refused_naming_the_field(string from, string to, string expected)
    {
        Assert.Equal([2, 3, 0, 4], HfTokenizer.FromHuggingFace((JsonObject)JsonNode.Parse(SmallTokenizer)!, null).Encode("ab a<|end|>"));
        Assert.Contains(from, SmallTokenizer);
        var json = (JsonObject)JsonNode.Parse(SmallTokenizer.Replace(from, to))!;
        Assert.StartsWith(expected, Assert.Throws<StratusUserException>(() => HfTokenizer.FromHuggingFace(json, null)).Message);
        // The same file kept inside a Stratus checkpoint's tokenizer.json.
        var stored = new JsonObject { ["type"] = "hf", ["tokenizer"] = json.DeepClone() };
        Assert.StartsWith(expected, Assert.Throws<StratusUserException>(() => TokenizerStore.FromJson(stored)).Message);
    }

    [Fact]
    public void A_chat_with_tools_renders_in_the_template_tokenizer_config_names_tool_use_as_transformers_chooses_it()
    {
        // Written for this test: the default template knows nothing of tools, the tool_use one lists them.
        const string Default = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}";
        const string ForTools = "{% for t in tools %}<tool>{{ t.function.name }}</tool>{% endfor %}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}Call as <tool_call>{}</tool_call>";
        var tokenizer = HfTokenizer.FromHuggingFace((JsonObject)JsonNode.Parse(SmallTokenizer)!, new JsonObject
        {
            ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "default", ["template"] = Default }, new JsonObject { ["name"] = "tool_use", ["template"] = ForTools }),
        });
        var template = ChatTemplate.Of(tokenizer.ChatTemplate!, tokenizer);
        Assert.Equal("[user]Hi", template.Render([new ChatMessageText("user", "Hi")]));
        Assert.Equal("<tool>get_weather</tool><tool>get_time</tool>[user]HiCall as <tool_call>{}</tool_call>", template.Render([new ChatMessageText("user", "Hi")], tools: ChatTemplateTests.WeatherTools));
        // "auto" reads the model's text with the parser the template for tools calls for.
        Assert.IsType<Stratus.Inference.HermesToolCallParser>(Stratus.Inference.ToolCallParser.For(template));
        // A model fine-tuned into another template has no tool_use template of its base's.
        Assert.Equal("[user]Hi.", ChatTemplate.Of(Default + ".", tokenizer).Render([new ChatMessageText("user", "Hi")], tools: ChatTemplateTests.WeatherTools));
    }

    [Fact]
    public void A_malformed_tokenizer_config_json_is_refused_naming_the_field()
    {
        var json = (JsonObject)JsonNode.Parse(SmallTokenizer)!;
        Assert.Equal("tokenizer_config.json: eos_token.content must be text, got 5",
            Assert.Throws<StratusUserException>(() => HfTokenizer.FromHuggingFace(json, new JsonObject { ["eos_token"] = new JsonObject { ["content"] = 5 } })).Message);
        var tokenizer = HfTokenizer.FromHuggingFace(json, new JsonObject { ["chat_template"] = new JsonArray(new JsonObject { ["name"] = "default", ["template"] = true }) });
        Assert.Equal("tokenizer_config.json: chat_template[].template must be text, got true", Assert.Throws<StratusUserException>(() => tokenizer.ChatTemplate).Message);
    }

    [Fact]
    public void A_pre_tokenizer_regex_that_backtracks_catastrophically_times_out_with_a_clear_error()
    {
        var json = (JsonObject)JsonNode.Parse(SmallTokenizer)!;
        json["pre_tokenizer"] = JsonNode.Parse("""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(a|aa)+b|."}}, {"type": "ByteLevel", "use_regex": false}]}""");
        var tokenizer = HfTokenizer.FromHuggingFace(json, null);
        Assert.Equal([2, 0], tokenizer.Encode("aba"));
        // Each "a" matches (a|aa)+ in Fibonacci-many ways before the missing "b" fails it: minutes.
        var error = Assert.Throws<StratusUserException>(() => tokenizer.Encode(new string('a', 46)));
        Assert.StartsWith("the tokenizer's pre-tokenizer pattern took more than 1 s to split this text into words", error.Message);
    }

    /// <summary>An export that fails half way (here a folder in the way of tokenizer.json; a full
    /// disk, a kill) leaves no config.json, so no folder that transformers or serve would take for a
    /// model, and none of its temporary files; over an earlier export, that one's config.json is
    /// gone with it rather than kept beside new weights.</summary>
    [Fact]
    public void An_export_that_fails_half_way_leaves_no_folder_that_looks_like_a_model()
    {
        using var temp = new TempDirectory();
        var config = ParityTests.Config("gpt2") with { NLayer = 1 };
        using var model = ParityTests.RandomModel(config);
        Checkpoint.Save(temp.File("model"), model, Gpt2Tokenizer.Instance);
        foreach (var earlier in new[] { false, true })
        {
            var output = temp.File(earlier ? "again" : "hf");
            if (earlier) HuggingFace.Export(temp.File("model"), output);
            if (earlier) File.Delete(Path.Combine(output, "tokenizer.json"));
            Directory.CreateDirectory(Path.Combine(output, "tokenizer.json", "in-the-way"));
            Assert.ThrowsAny<IOException>(() => HuggingFace.Export(temp.File("model"), output));
            Assert.False(File.Exists(Path.Combine(output, "config.json")));
            Assert.Empty(Directory.EnumerateFiles(output, "*.tmp"));
        }
    }

    [Fact]
    public void Exporting_and_reimporting_GPT2_gives_bit_identical_weights()
    {
        using var temp = new TempDirectory();
        var config = ParityTests.Config("gpt2") with { NLayer = 1 };
        using var model = ParityTests.RandomModel(config);
        Checkpoint.Save(temp.File("model"), model, Gpt2Tokenizer.Instance);
        HuggingFace.Export(temp.File("model"), temp.File("hf"));

        using (var reader = SafeTensors.Open(temp.File("hf/model.safetensors")))
        {
            // Conv1D layout: [in, out].
            Assert.Equal(new long[] { 64, 192 }, reader.Entries["transformer.h.0.attn.c_attn.weight"].Shape);
        }
        var hfConfig = JsonNode.Parse(File.ReadAllText(temp.File("hf/config.json")))!;
        Assert.Equal("GPT2LMHeadModel", (string?)hfConfig["architectures"]![0]);
        // Written as Hugging Face writes it: "<|endoftext|>" and "Ġ" as themselves, not \u003C...\u003E.
        var tokenizerText = File.ReadAllText(temp.File("hf/tokenizer.json"));
        Assert.Contains("\"content\": \"<|endoftext|>\"", tokenizerText);
        Assert.Contains("\"Ġthe\":", tokenizerText);

        var imported = HuggingFace.Import(temp.File("hf"), temp.File("run"));
        Assert.Equal(Checkpoint.Resolve(temp.File("run")), imported.CheckpointDirectory);
        using var reloaded = Checkpoint.Open(imported.CheckpointDirectory).CreateModel();
        AssertSameWeights(model, reloaded);
        Assert.Equal(Gpt2Tokenizer.Instance.Encode("Round trip"), Checkpoint.Open(imported.CheckpointDirectory).Tokenizer.Encode("Round trip"));
    }

    [Fact]
    public void A_GPT2_folder_that_unties_its_head_imports_only_where_the_head_is_a_copy_of_its_embeddings()
    {
        // With tie_word_embeddings false transformers' GPT2LMHeadModel computes with
        // lm_head.weight; import hf read none, so a head of its own imported as another model.
        using var temp = new TempDirectory();
        var config = ParityTests.Config("gpt2") with { NLayer = 1 };
        using var model = ParityTests.RandomModel(config);
        Checkpoint.Save(temp.File("model"), model, Gpt2Tokenizer.Instance);
        using var embeddings = model.state_dict()["transformer.wte.weight"].clone();
        string Folder(string name, Tensor? head, bool tied = false)
        {
            var hf = temp.File(name);
            HuggingFace.Export(temp.File("model"), hf);
            var configPath = Path.Combine(hf, "config.json");
            var configText = File.ReadAllText(configPath);
            Assert.Contains("\"tie_word_embeddings\": true", configText);
            if (!tied) File.WriteAllText(configPath, configText.Replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"));
            var weights = SafeTensors.Load(Path.Combine(hf, "model.safetensors"));
            if (head is not null) weights["lm_head.weight"] = head;
            SafeTensors.Save(Path.Combine(hf, "model.safetensors"), weights);
            return hf;
        }
        string Refusal(string hf) => Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File(Guid.NewGuid().ToString("N")))).Message;

        // A copy imports, also one stored rounded to f16 or bf16 (the tolerances import gguf has for them).
        foreach (var (name, head) in new[] { ("copy", embeddings), ("f64", embeddings.to(ScalarType.Float64)), ("f16", embeddings.to(ScalarType.Float16)), ("bf16", embeddings.to(ScalarType.BFloat16)) })
        {
            var imported = HuggingFace.Import(Folder(name, head), temp.File(name + "-run"));
            using var reloaded = Checkpoint.Open(imported.CheckpointDirectory).CreateModel();
            AssertSameWeights(model, reloaded);
        }

        // A head of its own, or the embeddings fine-tuned apart by a tenth of their size, is refused.
        using var other = randn_like(embeddings) * embeddings.std();
        var untied = Folder("untied", other);
        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(untied)}: its GPT-2 head \(lm_head.weight, f32\) is not a copy of its token embeddings \(transformer.wte.weight, f32\): they differ by 1\.4\d of their size, where rounding to those types leaves a copy within 0\.0001; Stratus's GPT-2 ties its head to the token embeddings, so a head of its own is not supported: use a GPT-2 whose head is its token embeddings$",
            Refusal(untied));
        using var tuned = (embeddings + 0.1 * randn_like(embeddings) * embeddings.std()).to(ScalarType.BFloat16);
        Assert.Matches(@"\(lm_head.weight, bf16\) is not a copy of its token embeddings \(transformer.wte.weight, f32\): they differ by 0\.(09\d*|1\d*) of their size, where rounding to those types leaves a copy within 0\.0061;", Refusal(Folder("tuned", tuned)));
        Assert.Equal($"{temp.File("headless")}: config.json sets tie_word_embeddings false but the safetensors files hold no 'lm_head.weight'; set it true if the model's head is its token embeddings",
            Refusal(Folder("headless", null)));
        // A head in a type no weights are stored in; the refusal names each type a head may be in (f64 too).
        using var whole = embeddings.to(ScalarType.Int32);
        Assert.Equal($"{temp.File("int")}: weight 'lm_head.weight' is Int32; a model's weights are float64, float32, float16 or bfloat16", Refusal(Folder("int", whole)));
        using var narrow = embeddings.narrow(0, 0, 100).clone();
        Assert.StartsWith($"{temp.File("narrow")}: weight 'lm_head.weight' in model.safetensors has shape [100, 64], not transformer.wte.weight's [50257, 64]", Refusal(Folder("narrow", narrow)));

        // Tied (GPT-2's default), transformers replaces a stored head with the embeddings, as import hf does.
        var tiedImport = HuggingFace.Import(Folder("tied", other, tied: true), temp.File("tied-run"));
        using (var reloaded = Checkpoint.Open(tiedImport.CheckpointDirectory).CreateModel()) AssertSameWeights(model, reloaded);
    }

    [Theory]
    [InlineData("llama-gqa-tied", false)]
    [InlineData("llama-gqa-tied", true)]
    [InlineData("qwen2-untied", false)]
    [InlineData("qwen2-untied", true)]
    public void Llama_and_Qwen2_folders_import_their_head_untied_and_their_embeddings_as_it_tied(string name, bool tied)
    {
        using var temp = new TempDirectory();
        var config = ParityTests.Config(name) with { TieWordEmbeddings = tied, RopeScaling = null };
        using var model = ParityTests.RandomModel(config);
        Checkpoint.Save(temp.File("model"), model, Gpt2Tokenizer.Instance);
        HuggingFace.Export(temp.File("model"), temp.File("hf"));
        var hfConfig = JsonNode.Parse(File.ReadAllText(temp.File("hf/config.json")))!;
        Assert.Equal((name == "qwen2-untied" ? "qwen2" : "llama", tied), ((string)hfConfig["model_type"]!, (bool)hfConfig["tie_word_embeddings"]!));
        var weights = SafeTensors.Load(temp.File("hf/model.safetensors"));
        Assert.Equal(!tied, weights.ContainsKey("lm_head.weight"));
        // A tied model's stored head (some checkpoints carry one) is replaced by its embeddings, as transformers ties it.
        if (tied) weights["lm_head.weight"] = torch.zeros_like(weights["model.embed_tokens.weight"]);
        SafeTensors.Save(temp.File("hf/model.safetensors"), weights);

        var imported = HuggingFace.Import(temp.File("hf"), temp.File("run"));
        Assert.Equal(tied, imported.Config.TieWordEmbeddings);
        using var reloaded = Checkpoint.Open(imported.CheckpointDirectory).CreateModel();
        AssertSameWeights(model, reloaded);
        var tokens = Gpt2Tokenizer.Instance.Encode("Hello there");
        Assert.Equal(ParityTests.StratusLastLogits(model, tokens), ParityTests.StratusLastLogits(reloaded, tokens));
    }

    [Fact]
    public void A_character_model_with_multi_byte_characters_exports_a_tokenizer_that_loads_back_and_encodes_alike()
    {
        using var temp = new TempDirectory();
        // Two-, three- and four-byte characters, some sharing their first bytes (é ê, 😀 😁).
        var chars = CharTokenizer.FromCorpus("abc déêf\n!東😀😁");
        var config = new ModelConfig { Architecture = "llama", VocabSize = chars.VocabSize, BlockSize = 32, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false };
        using (var model = CausalLanguageModel.Create(config)) Checkpoint.Save(temp.File("chars"), model, chars);
        HuggingFace.Export(temp.File("chars"), temp.File("hf"));

        // Every part and result of a merge is in the vocabulary (Microsoft.ML.Tokenizers refused
        // the file otherwise, as Hugging Face's does): the pieces follow the model's tokens, past
        // config.json's vocab_size.
        var exported = JsonNode.Parse(File.ReadAllText(temp.File("hf/tokenizer.json")))!;
        var vocab = exported["model"]!["vocab"]!.AsObject().ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
        foreach (var merge in exported["model"]!["merges"]!.AsArray().Select(m => (string)m!))
            Assert.All(merge.Split(' ').Append(merge.Replace(" ", "")), part => Assert.True(vocab.ContainsKey(part), $"{merge}: {part}"));
        Assert.Equal(chars.VocabSize, (int)JsonNode.Parse(File.ReadAllText(temp.File("hf/config.json")))!["vocab_size"]!);
        Assert.True(vocab.Count > chars.VocabSize);

        var imported = HuggingFace.Import(temp.File("hf"), temp.File("run"));
        var tokenizer = Checkpoint.Open(imported.CheckpointDirectory).Tokenizer;
        Assert.Equal(chars.VocabSize, tokenizer.VocabSize);
        // No piece is left for text of the vocabulary: each character alone, all of them together,
        // and random strings of them encode to the character tokenizer's ids.
        var characters = chars.Decode(Enumerable.Range(0, chars.VocabSize));
        var random = new Random(3);
        var texts = characters.EnumerateRunes().Select(r => r.ToString())
            .Append(characters).Append("bad féé!\nfab😀 東ê😁")
            .Concat(Enumerable.Range(0, 50).Select(_ => chars.Decode(Enumerable.Range(0, 12).Select(_ => random.Next(chars.VocabSize)))));
        foreach (var text in texts)
        {
            Assert.Equal(chars.Encode(text), tokenizer.Encode(text));
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
        }
        // A character outside the vocabulary that starts with a character's bytes leaves a piece: refused, named.
        Assert.Equal([0xEB, 0x1F602], tokenizer.Unencodable("aëb😂"));
        Assert.Equal("the text has characters outside this model's vocabulary: 'ë' (U+00EB), '😂' (U+1F602)",
            Assert.Throws<StratusUserException>(() => tokenizer.Encode("aëb😂")).Message);
        // One whose bytes are no token or piece at all (an ASCII letter, a character whose lead
        // byte starts none of the vocabulary's) was dropped from the tokens without a word.
        Assert.Equal(['x', 0x20AC], tokenizer.Unencodable("axb€"));
        Assert.Equal("the text has characters outside this model's vocabulary: 'x' (U+0078), '€' (U+20AC)",
            Assert.Throws<StratusUserException>(() => tokenizer.Encode("axb€")).Message);

        // Exported again, the same tokenizer.json.
        HuggingFace.Export(temp.File("run"), temp.File("again"));
        Assert.Equal(exported.ToJsonString(), JsonNode.Parse(File.ReadAllText(temp.File("again/tokenizer.json")))!.ToJsonString());

        // Past vocab_size only pieces: a whole character there has no row in the model.
        var configPath = temp.File("again/config.json");
        File.WriteAllText(configPath, File.ReadAllText(configPath).Replace($"\"vocab_size\": {chars.VocabSize}", $"\"vocab_size\": {chars.VocabSize - 1}"));
        Assert.StartsWith($"{temp.File("again")}: tokenizer.json has {vocab.Count} tokens but config.json's vocab_size is {chars.VocabSize - 1} (only pieces of characters",
            Assert.Throws<StratusUserException>(() => HuggingFace.Import(temp.File("again"), temp.File("run2"))).Message);
    }

    [Fact]
    public void A_sharded_bf16_Llama_folder_imports_with_its_chat_template_and_round_trips()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        var (original, vocabulary) = WriteHfLlama(hf, shards: 2);
        // A shard index whose entry is not a file name is refused, naming it.
        var index = Path.Combine(hf, "model.safetensors.index.json");
        var indexJson = File.ReadAllText(index);
        File.WriteAllText(index, indexJson.Replace("\"model-00001-of-00002.safetensors\"", "1"));
        Assert.Contains("weight_map.", Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File("bad-index"))).Message);
        File.WriteAllText(index, indexJson);
        var imported = HuggingFace.Import(hf, temp.File("run"));
        Assert.True(imported.HasChatTemplate);
        var checkpoint = Checkpoint.Open(imported.CheckpointDirectory);
        Assert.Equal(2, checkpoint.ModelConfig.KvHeads);
        Assert.False(checkpoint.ModelConfig.TieWordEmbeddings);
        using (var model = checkpoint.CreateModel())
        {
            foreach (var (name, value) in model.state_dict())
                Assert.True(Same(value, original[name].to(ScalarType.Float32)), name);
        }
        var template = ChatTemplate.TryLoad(temp.File("run"))!;
        Assert.Equal("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", template.Render([("user", "hi")], addGenerationPrompt: true));
        Assert.Equal(vocabulary.Tokens.Count - 1, checkpoint.Tokenizer.EndOfTextId);

        // Back out in bf16: the very bytes that came in.
        HuggingFace.Export(temp.File("run"), temp.File("out"), ScalarType.BFloat16);
        using (var reader = SafeTensors.Open(temp.File("out/model.safetensors")))
        {
            foreach (var (name, value) in original)
            {
                using var exported = reader.Read(name);
                Assert.True(Same(exported, value), name);
            }
        }
        var config = JsonNode.Parse(File.ReadAllText(temp.File("out/tokenizer_config.json")))!;
        Assert.Equal(ChatTemplateTests.ChatMl, (string?)config["chat_template"]);
        foreach (var t in original.Values) t.Dispose();
    }

    [Fact]
    public void A_model_s_tool_use_template_is_imported_served_for_chats_with_tools_and_exported()
    {
        using var temp = new TempDirectory();
        var named = WriteHfLlamaWithToolUse(temp.File("hf"));
        HuggingFace.Import(temp.File("hf"), temp.File("run"));
        AssertRendersToolsInToolUse(temp.File("run"));
        HuggingFace.Export(temp.File("run"), temp.File("out"), ScalarType.BFloat16);
        Assert.True(JsonNode.DeepEquals(named, JsonNode.Parse(File.ReadAllText(temp.File("out/tokenizer_config.json")))!["chat_template"]));
    }

    [Fact]
    public void A_model_s_tool_use_template_goes_through_export_gguf_and_import_gguf_as_llama_cpp_names_it()
    {
        // export gguf wrote tokenizer.chat_template alone and import gguf read it alone: a
        // model imported from a GGUF file rendered a chat with tools in its default template.
        using var temp = new TempDirectory();
        WriteHfLlamaWithToolUse(temp.File("hf"));
        HuggingFace.Import(temp.File("hf"), temp.File("run"));
        GgufExport.Write(temp.File("run"), temp.File("m.gguf"), GgmlType.F32);

        // convert_hf_to_gguf.py's keys: the default, each named one by its name, and their names.
        var metadata = GgufFile.Read(temp.File("m.gguf")).Metadata;
        Assert.Equal(ChatTemplateTests.ChatMl, metadata["tokenizer.chat_template"]);
        Assert.Equal(ToolUseTemplate, metadata["tokenizer.chat_template.tool_use"]);
        Assert.Equal(["tool_use"], (object[])metadata["tokenizer.chat_templates"]);

        GgufImport.Import(temp.File("m.gguf"), temp.File("imported"));
        AssertRendersToolsInToolUse(temp.File("imported"));
    }

    /// <summary>Written for these tests in the style of Hermes 3's pair: ChatML, and ChatML with the tools first.</summary>
    const string ToolUseTemplate = "{{ '<tools>' + tools | map(attribute='function.name') | join(',') + '</tools>' }}" + ChatTemplateTests.ChatMl;

    /// <summary>A Hugging Face Llama folder whose tokenizer_config.json names a default and a
    /// tool_use template (<see cref="ToolUseTemplate"/>); the named list written.</summary>
    static JsonArray WriteHfLlamaWithToolUse(string hf)
    {
        var (original, _) = WriteHfLlama(hf, shards: 1);
        foreach (var t in original.Values) t.Dispose();
        var named = new JsonArray(new JsonObject { ["name"] = "default", ["template"] = ChatTemplateTests.ChatMl }, new JsonObject { ["name"] = "tool_use", ["template"] = ToolUseTemplate });
        var configPath = Path.Combine(hf, "tokenizer_config.json");
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        tokenizerConfig["chat_template"] = named.DeepClone();
        File.WriteAllText(configPath, tokenizerConfig.ToJsonString());
        return named;
    }

    /// <summary>The run chats in ChatML, and a chat with tools in the tool_use template.</summary>
    static void AssertRendersToolsInToolUse(string run)
    {
        var template = ChatTemplate.TryLoad(run)!;
        Assert.Equal("<|im_start|>user\nhi<|im_end|>\n", template.Render([("user", "hi")], addGenerationPrompt: false));
        Assert.Equal("<tools>get_weather,get_time</tools><|im_start|>user\nhi<|im_end|>\n", template.Render([new ChatMessageText("user", "hi")], addGenerationPrompt: false, tools: ChatTemplateTests.WeatherTools));
    }

    [Fact]
    public void Imports_draw_no_random_numbers_and_a_model_loaded_with_a_parameter_unset_is_refused()
    {
        // import hf and import gguf built their model with random weights, TorchSharp's layers'
        // and then the architecture's own, all of which the file's weights replaced: random
        // numbers drawn for nothing, most of an import's time.
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        var (original, _) = WriteHfLlama(hf, shards: 1);
        foreach (var t in original.Values) t.Dispose();
        torch.random.manual_seed(5);
        using var expected = torch.rand(8);
        torch.random.manual_seed(5);
        HuggingFace.Import(hf, temp.File("run"));
        using (var drawn = torch.rand(8)) Assert.True(Same(drawn, expected), "import hf drew random numbers");
        GgufExport.Write(temp.File("run"), temp.File("m.gguf"), GgmlType.F32);
        torch.random.manual_seed(5);
        GgufImport.Import(temp.File("m.gguf"), temp.File("gguf-run"));
        using (var drawn = torch.rand(8)) Assert.True(Same(drawn, expected), "import gguf drew random numbers");

        // So each parameter must be written: one left unset would hold whatever its memory held.
        var config = ParityTests.Config("gpt2") with { VocabSize = 16 };
        var weights = CausalLanguageModel.ImpliedWeights(config).Select(w => (w.Name, (Action<Tensor>)(p => p.fill_(1)))).ToList();
        using (var loaded = CausalLanguageModel.Load(config, weights))
            Assert.All(loaded.parameters(), p => Assert.True(p.eq(1).all().item<bool>()));
        Assert.Equal("1 parameter(s) of the gpt2 model were given no weight, such as transformer.h.0.attn.c_attn.bias; a model is loaded whole",
            Assert.Throws<InvalidOperationException>(() => CausalLanguageModel.Load(config, weights.Where(w => w.Name != "transformer.h.0.attn.c_attn.bias"))).Message);
        Assert.Equal("weight lm_head.weight is not a parameter of the gpt2 model left to load",
            Assert.Throws<InvalidOperationException>(() => CausalLanguageModel.Load(config, weights.Append(("lm_head.weight", _ => { })))).Message);
    }

    [Fact]
    public void A_folder_s_chat_template_jinja_is_the_template_over_tokenizer_config_s_as_transformers_loads_it()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        var (original, _) = WriteHfLlama(hf, shards: 1);
        foreach (var t in original.Values) t.Dispose();
        // save_pretrained writes the template beside tokenizer_config.json, which then has none.
        const string Own = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
        File.WriteAllText(Path.Combine(hf, "chat_template.jinja"), Own);
        // A named one beside it, as save_pretrained writes tool_use: what a chat with tools renders in.
        Directory.CreateDirectory(Path.Combine(hf, "additional_chat_templates"));
        File.WriteAllText(Path.Combine(hf, "additional_chat_templates", "tool_use.jinja"), "{{ tools | length }} tools|" + Own);
        var imported = HuggingFace.Import(hf, temp.File("run"));
        Assert.True(imported.HasChatTemplate);
        var template = ChatTemplate.TryLoad(temp.File("run"))!;
        Assert.Equal("<user>hi", template.Render([("user", "hi")], addGenerationPrompt: true));
        Assert.Equal("2 tools|<user>hi", template.Render([new ChatMessageText("user", "hi")], tools: ChatTemplateTests.WeatherTools));
    }

    [Fact]
    public void Bad_folders_are_refused_with_one_clear_message()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        WriteHfLlama(hf, shards: 1);
        string Error(Action act) => Assert.Throws<StratusUserException>(act).Message;

        // A file (an export's GGUF, the folder's model.safetensors) was said not to exist.
        var weights = Path.Combine(hf, "model.safetensors");
        Assert.Equal($"{weights} is a file; pass the Hugging Face model folder that holds config.json, *.safetensors and tokenizer.json",
            Error(() => HuggingFace.Import(weights, temp.File("run0"))));

        File.Move(Path.Combine(hf, "tokenizer.json"), temp.File("tokenizer.json"));
        Assert.Contains("missing tokenizer.json", Error(() => HuggingFace.Import(hf, temp.File("run1"))));
        File.Move(temp.File("tokenizer.json"), Path.Combine(hf, "tokenizer.json"));

        // The tokenizer's refusals named "tokenizer.json" alone, not which folder's.
        var tokenizerPath = Path.Combine(hf, "tokenizer.json");
        var tokenizerText = File.ReadAllText(tokenizerPath);
        var broken = JsonNode.Parse(tokenizerText)!;
        broken["model"]!["type"] = 5;
        File.WriteAllText(tokenizerPath, broken.ToJsonString());
        Assert.Equal($"{tokenizerPath}: model.type must be text, got 5", Error(() => HuggingFace.Import(hf, temp.File("run1"))));
        broken["model"]!["type"] = "WordPiece";
        File.WriteAllText(tokenizerPath, broken.ToJsonString());
        Assert.Equal($"{tokenizerPath}: the Hugging Face tokenizer cannot be used: its model type is 'WordPiece', not BPE", Error(() => HuggingFace.Import(hf, temp.File("run1"))));
        File.WriteAllText(tokenizerPath, tokenizerText);
        var tokenizerConfigPath = Path.Combine(hf, "tokenizer_config.json");
        var tokenizerConfigText = File.ReadAllText(tokenizerConfigPath);
        var brokenConfig = JsonNode.Parse(tokenizerConfigText)!;
        brokenConfig["add_bos_token"] = "yes";
        File.WriteAllText(tokenizerConfigPath, brokenConfig.ToJsonString());
        Assert.Equal($"{tokenizerConfigPath}: add_bos_token must be true or false, got \"yes\"", Error(() => HuggingFace.Import(hf, temp.File("run1"))));
        File.WriteAllText(tokenizerConfigPath, tokenizerConfigText);

        var configPath = Path.Combine(hf, "config.json");
        var good = File.ReadAllText(configPath);
        File.WriteAllText(configPath, good.Replace("\"llama\"", "\"bert\""));
        Assert.Contains("unsupported architecture", Error(() => HuggingFace.Import(hf, temp.File("run2"))));
        File.WriteAllText(configPath, good.Replace("\"intermediate_size\": 96", "\"intermediate_size\": 80"));
        Assert.Contains("in model.safetensors has shape [96, 64] but config.json implies [80, 64]", Error(() => HuggingFace.Import(hf, temp.File("run3"))));
        foreach (var (from, to, expected) in new[]
        {
            ("\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"x\"", "num_hidden_layers must be a whole number, got \"x\""),
            ("\"hidden_size\": 64", "\"hidden_size\": 1.5", "hidden_size must be a whole number, got 1.5"),
            ("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"tiny\"", "rms_norm_eps must be a number, got \"tiny\""),
            ("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", "tie_word_embeddings must be true or false, got 0"),
            ("\"hidden_act\": \"silu\"", "\"hidden_act\": [\"silu\"]", "hidden_act must be text, got [\"silu\"]"),
            ("\"rope_theta\"", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": \"8\"}, \"rope_theta\"", "rope_scaling.factor must be a number, got \"8\""),
            // Was taken for no scaling at all.
            ("\"rope_theta\"", "\"rope_scaling\": \"llama3\", \"rope_theta\"", "rope_scaling must be an object, got \"llama3\""),
        })
        {
            File.WriteAllText(configPath, good.Replace(from, to));
            Assert.Equal($"{configPath}: {expected}", Error(() => HuggingFace.Import(hf, temp.File("run5"))));
        }
        // Sizes no model has are refused before anything is allocated for them.
        File.WriteAllText(configPath, good.Replace("\"max_position_embeddings\": 128", "\"max_position_embeddings\": 2000000000"));
        Assert.Contains("block_size 2000000000 is over 1,048,576 positions", Error(() => HuggingFace.Import(hf, temp.File("run7"))));
        File.WriteAllText(configPath, good.Replace("\"hidden_size\": 64", "\"hidden_size\": 64, \"hidden_size\": 64"));
        Assert.Contains("Duplicate property 'hidden_size'", Error(() => HuggingFace.Import(hf, temp.File("run6"))));
        // Half a surrogate pair, which the parser takes and reading the string threw on (InvalidOperationException).
        File.WriteAllText(configPath, good.Replace("\"silu\"", "\"\\udc00\""));
        Assert.StartsWith($"{configPath}: a string holds a \\u escape of an unpaired UTF-16 surrogate", Error(() => HuggingFace.Import(hf, temp.File("run8"))));
        File.WriteAllText(configPath, good);

        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length - 100)]);
        Assert.Contains("is not a valid safetensors file: file is truncated", Error(() => HuggingFace.Import(hf, temp.File("run4"))));
    }

    [Theory]
    // No head: hidden_size / num_attention_heads divided by zero (a stack trace) when head_dim was given.
    [InlineData("\"num_attention_heads\": 4", "\"num_attention_heads\": 0, \"head_dim\": 16", "n_head must be positive")]
    [InlineData("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "n_head (4) must be a multiple of n_kv_head (3)")]
    [InlineData("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 100000", "n_layer 100000 is over 1,024")]
    [InlineData("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": -1", "norm epsilons must be positive numbers")]
    public void A_config_json_of_no_buildable_model_is_refused_naming_it(string from, string to, string expected)
    {
        // The refusal named neither the file nor anything but the options of `stratus train` ("lower --n-layer").
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        WriteHfLlama(hf, shards: 1);
        var configPath = Path.Combine(hf, "config.json");
        File.WriteAllText(configPath, File.ReadAllText(configPath).Replace(from, to));
        Assert.Equal($"{configPath} describes no model Stratus can build: {expected}", Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File("run"))).Message);
    }

    [Theory]
    [InlineData("../elsewhere/model-00001-of-00002.safetensors")]
    [InlineData("elsewhere")]
    [InlineData("sub/model-00001-of-00002.safetensors")]
    public void A_shard_index_naming_a_path_is_refused_rather_than_read_from_there(string shard)
    {
        // The weights were read from wherever the index pointed: another model's files, or any file
        // the user can read, the model folder's name standing for none of them.
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        WriteHfLlama(hf, shards: 2);
        WriteHfLlama(temp.File("elsewhere"), shards: 2);
        Directory.CreateDirectory(Path.Combine(hf, "sub"));
        File.Copy(Path.Combine(hf, "model-00001-of-00002.safetensors"), Path.Combine(hf, "sub", "model-00001-of-00002.safetensors"));
        if (shard == "elsewhere") shard = temp.File("elsewhere/model-00001-of-00002.safetensors");
        var index = Path.Combine(hf, "model.safetensors.index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace("\"model-00001-of-00002.safetensors\"", JsonSerializer.Serialize(shard)));
        Assert.Contains($"names '{shard}', which is not a file name; shards are files of the model's folder, listed by name",
            Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File("run"))).Message);
        Assert.False(Checkpoint.Exists(temp.File("run")));
    }

    [Fact]
    public void A_weight_in_two_shards_is_refused_rather_than_taken_from_the_last_read()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        var (weights, _) = WriteHfLlama(hf, shards: 2);
        var first = Path.Combine(hf, "model-00001-of-00002.safetensors");
        var second = Path.Combine(hf, "model-00002-of-00002.safetensors");
        string duplicate;
        using (var reader = SafeTensors.Open(first)) duplicate = reader.Names.First();
        Dictionary<string, Tensor> secondWeights;
        using (var reader = SafeTensors.Open(second)) secondWeights = reader.Names.ToDictionary(name => name, reader.Read);
        using var other = torch.zeros_like(weights[duplicate]);
        SafeTensors.Save(second, secondWeights.Append(new(duplicate, other)));
        Assert.Equal($"{hf}: weight '{duplicate}' is in both model-00001-of-00002.safetensors and model-00002-of-00002.safetensors; a weight belongs to one shard",
            Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File("run"))).Message);
        foreach (var t in secondWeights.Values.Concat(weights.Values)) t.Dispose();
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    [InlineData("llama-gqa-tied")]
    public void A_model_made_on_the_meta_device_has_its_configs_weights_without_storage(string name)
    {
        // What import checks a folder's headers against: every parameter, LoRA adapters too, on meta.
        var config = ParityTests.Config(name) with { Lora = new LoraConfig(2, 4, name == "gpt2" ? ["c_attn", "c_fc"] : ["q_proj", "down_proj"]) };
        using var real = CausalLanguageModel.Create(config);
        using var implied = CausalLanguageModel.Create(config, META);
        Assert.All(implied.state_dict().Values, weight => Assert.Equal(DeviceType.META, weight.device_type));
        Assert.Equal(real.state_dict().Select(w => (w.Key, string.Join(",", w.Value.shape))), implied.state_dict().Select(w => (w.Key, string.Join(",", w.Value.shape))));
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama-gqa-tied")]
    public void Finding_a_configs_weights_draws_nothing_from_the_seeded_generator(string name)
    {
        // The check that comes before a checkpoint's or a Hugging Face folder's model is built
        // drew from the generator (a 1 x 1 embedding filled on the CPU), so every draw after it
        // moved: a run --init-from a model began its new LoRA adapters from other weights than
        // its seed had given them.
        var config = ParityTests.Config(name) with { Lora = new LoraConfig(2, 4, name == "gpt2" ? ["c_attn"] : ["q_proj", "v_proj"]) };
        torch.random.manual_seed(5);
        using var expected = torch.rand(8);
        torch.random.manual_seed(5);
        Assert.NotEmpty(CausalLanguageModel.ImpliedWeights(config));
        using var drawn = torch.rand(8);
        Assert.True(Same(drawn, expected));
    }

    [Theory]
    [InlineData("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000",
        "has no weight 'model.layers.2.input_layernorm.weight', which config.json implies (shape [64]); config.json does not describe these weights")]
    [InlineData("\"hidden_size\": 64", "\"hidden_size\": 4096",
        "weight 'model.embed_tokens.weight' in model.safetensors has shape [98, 64] but config.json implies [98, 4096]")]
    [InlineData("\"intermediate_size\": 96", "\"intermediate_size\": 100000",
        "weight 'model.layers.0.mlp.gate_proj.weight' in model.safetensors has shape [96, 64] but config.json implies [100000, 64]")]
    // The largest sizes allowed: the check itself made the embedding table on the CPU (TorchSharp's
    // nn.Embedding does, whatever the device), 1 TiB asked of the allocator for a file of a few bytes.
    [InlineData("\"vocab_size\": 98, \"hidden_size\": 64", "\"vocab_size\": 4194304, \"hidden_size\": 65536",
        "weight 'model.embed_tokens.weight' in model.safetensors has shape [98, 64] but config.json implies [4194304, 65536]")]
    [InlineData("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1",
        "9 weight(s) in the safetensors files are not part of the model config.json describes, such as 'model.layers.1.input_layernorm.weight' in model.safetensors; config.json does not describe these weights")]
    public void A_config_other_than_its_weights_is_refused_before_the_model_is_allocated(string from, string to, string expected)
    {
        // Within the caps, but far larger than the weights: the model is not built to find out
        // (the message names the first weight that differs, found in the files' headers).
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        WriteHfLlama(hf, shards: 1);
        var configPath = Path.Combine(hf, "config.json");
        File.WriteAllText(configPath, File.ReadAllText(configPath).Replace(from, to));
        Assert.Equal($"{hf}{(expected.StartsWith("has") ? " " : ": ")}{expected}", Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, temp.File("run"))).Message);
        Assert.False(Checkpoint.Exists(temp.File("run")));
    }

    [Fact]
    public void Buffers_that_files_hold_besides_the_weights_are_not_taken_for_a_larger_model()
    {
        // Older Llama files carry each layer's rotary frequencies, GPT-2 files its causal masks.
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        var (weights, _) = WriteHfLlama(hf, shards: 1);
        using var frequencies = torch.ones(16);
        using var mask = torch.ones(1, 1, 4, 4);
        SafeTensors.Save(Path.Combine(hf, "model.safetensors"), weights.Append(new("model.layers.0.self_attn.rotary_emb.inv_freq", frequencies)).Append(new("model.layers.0.attn.masked_bias", mask)));
        var imported = HuggingFace.Import(hf, temp.File("run"));
        Assert.Equal(2, imported.Config.NLayer);
    }

    [Fact]
    public void Importing_into_a_folder_that_holds_a_model_is_refused_and_leaves_it_as_it_was()
    {
        using var temp = new TempDirectory();
        var hf = temp.File("hf");
        WriteHfLlama(hf, shards: 1);
        var run = temp.File("run");
        HuggingFace.Import(hf, run);
        var checkpoints = Path.Combine(run, "checkpoints");
        var refusal = $"{run} already holds a model in {checkpoints}; choose another --out or remove {run} first";
        Assert.Equal(refusal, Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, run)).Message);

        // A trained run: an import would put a best of another model beside its last.
        Directory.Move(Path.Combine(checkpoints, "best"), Path.Combine(checkpoints, "last"));
        var manifest = File.ReadAllText(Path.Combine(checkpoints, "last", Checkpoint.ManifestFile));
        Assert.Equal(refusal, Assert.Throws<StratusUserException>(() => HuggingFace.Import(hf, run)).Message);
        Assert.Equal(["last"], Directory.GetDirectories(checkpoints).Select(Path.GetFileName));
        Assert.Equal(manifest, File.ReadAllText(Path.Combine(checkpoints, "last", Checkpoint.ManifestFile)));
    }

    [Fact]
    public void Importing_into_a_dataset_folder_is_refused_and_leaves_it_as_it_was()
    {
        // The model's checkpoints/ would land among the dataset's files, as a run's would
        // (Trainer.Start refuses that folder too), and prepare would then refuse the folder.
        using var temp = new TempDirectory();
        WriteHfLlama(temp.File("hf"), shards: 1);
        var data = TestData.PrepareCharDataset(temp);
        var before = Directory.GetFileSystemEntries(data).Order().ToList();
        Assert.Equal($"{data} holds a dataset ({DatasetPreparer.MetaFile}, {DatasetPreparer.TrainShard}), and the run's files would be written among its own; pass a new folder for the run",
            Assert.Throws<StratusUserException>(() => HuggingFace.Import(temp.File("hf"), data)).Message);
        Assert.Equal(before, Directory.GetFileSystemEntries(data).Order().ToList());
    }

    [Fact]
    public void Exporting_into_a_dataset_a_run_or_a_checkpoint_folder_is_refused_and_leaves_it_as_it_was()
    {
        // The export's tokenizer.json replaced the dataset's (which then no longer loaded) and its
        // model.safetensors a checkpoint's (which then failed its manifest).
        using var temp = new TempDirectory();
        var (data, run) = TestData.TrainedRun(temp, steps: 2);
        var checkpoint = Path.Combine(run, "checkpoints", "last");
        var dataset = DataTests.Snapshot(data);
        var model = DataTests.Snapshot(run);
        Assert.Equal($"{data} holds a dataset ({DatasetPreparer.MetaFile}, {DatasetPreparer.TrainShard}), and the exported model's files would be written among its own; pass a new folder for the exported model",
            Assert.Throws<StratusUserException>(() => HuggingFace.Export(run, data)).Message);
        Assert.Equal($"{run} holds a training run (run.json, metrics.jsonl, checkpoints/), and the exported model's files would be written among its own; pass a new folder for the exported model",
            Assert.Throws<StratusUserException>(() => HuggingFace.Export(run, run)).Message);
        Assert.Equal($"{checkpoint} holds a checkpoint (manifest.json), and the exported model's files would be written among its own; pass a new folder for the exported model",
            Assert.Throws<StratusUserException>(() => HuggingFace.Export(run, checkpoint)).Message);
        Assert.Equal(dataset, DataTests.Snapshot(data));
        Assert.Equal(model, DataTests.Snapshot(run));
        Checkpoint.Open(checkpoint);
    }

    /// <summary>A tiny Llama in Hugging Face layout: bf16 weights (optionally in shards with an
    /// index), a byte-level BPE tokenizer.json with ChatML special tokens, and tokenizer_config.json.</summary>
    internal static (Dictionary<string, Tensor> Weights, BpeVocabulary Vocabulary) WriteHfLlama(string directory, int shards)
    {
        Directory.CreateDirectory(directory);
        var characters = BpeVocabulary.FromCharacters(new string(Enumerable.Range(32, 95).Select(c => (char)c).ToArray()) + "\n");
        var tokens = characters.Tokens.Concat(["<|im_start|>", "<|im_end|>"]).ToList();
        var vocabulary = characters with { Tokens = tokens, Special = new HashSet<int> { tokens.Count - 2, tokens.Count - 1 } };
        File.WriteAllText(Path.Combine(directory, "tokenizer.json"), HuggingFace.TokenizerJson(vocabulary).ToJsonString());
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"), new JsonObject
        {
            ["eos_token"] = "<|im_end|>", ["chat_template"] = ChatTemplateTests.ChatMl,
        }.ToJsonString());
        File.WriteAllText(Path.Combine(directory, "config.json"), $$"""
            {
              "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": {{tokens.Count}}, "hidden_size": 64,
              "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 128, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": false,
              "hidden_act": "silu", "torch_dtype": "bfloat16"
            }
            """);
        torch.random.manual_seed(7);
        var config = new ModelConfig { Architecture = "llama", VocabSize = tokens.Count, NLayer = 2, NHead = 4, NKvHead = 2, NEmbd = 64, IntermediateSize = 96, BlockSize = 128, TieWordEmbeddings = false };
        using var model = CausalLanguageModel.Create(config);
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => (kv.Value * 10).to(ScalarType.BFloat16));
        if (shards == 1) SafeTensors.Save(Path.Combine(directory, "model.safetensors"), weights);
        else
        {
            var names = weights.Keys.Order().ToList();
            var map = new JsonObject();
            for (var s = 0; s < shards; s++)
            {
                var file = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
                var part = names.Where((_, i) => i % shards == s).ToList();
                SafeTensors.Save(Path.Combine(directory, file), part.Select(n => new KeyValuePair<string, Tensor>(n, weights[n])));
                foreach (var n in part) map[n] = file;
            }
            File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        }
        return (weights, vocabulary);
    }

    /// <summary>Same dtype, shape and bits.</summary>
    internal static bool Same(Tensor a, Tensor b) => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static void AssertSameWeights(nn.Module expected, nn.Module actual)
    {
        var actualWeights = actual.state_dict();
        foreach (var (name, value) in expected.state_dict()) Assert.True(Same(value, actualWeights[name]), name);
    }
}
