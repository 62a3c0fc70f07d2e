// SentencePiece-style BPE from a Hugging Face tokenizer.json (Llama 2, Mistral, TinyLlama):
// "▁" for spaces with a leading one, byte fallback for unknown characters, and llama.cpp
// tokenizing the GGUF export of the same vocabulary identically.
using System.Text.Json.Nodes;
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class SentencePieceTests
{
    /// <summary>A Llama 2-shaped tokenizer.json: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, 256 byte tokens,
    /// single characters, then merged pieces in merge order (as SentencePiece numbers them), and
    /// Llama 2's post-processor, which puts &lt;s&gt; before an input.</summary>
    internal const string Llama2PostProcessor = """
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
        """;

    internal static JsonObject Llama2StyleTokenizerJson()
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (var b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        foreach (var c in "▁abcdefghijklmnopqrstuvwxyz.,!?") vocab[c.ToString()] = vocab.Count;
        string[][] merges = [["▁", "t"], ["h", "e"], ["▁t", "he"], ["a", "t"], ["▁", "c"], ["▁c", "at"], ["▁", "▁"], ["o", "n"], ["▁", "s"], ["▁s", "at"], ["▁", "on"], ["▁", "a"]];
        foreach (var m in merges) vocab[m[0] + m[1]] = vocab.Count;
        JsonObject Special(int id, string content) => new() { ["id"] = id, ["content"] = content, ["special"] = true, ["normalized"] = false };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(Special(0, "<unk>"), Special(1, "<s>"), Special(2, "</s>")),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = JsonNode.Parse(Llama2PostProcessor),
            ["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = new JsonArray(new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" }) },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["unk_token"] = "<unk>", ["byte_fallback"] = true, ["fuse_unk"] = true, ["vocab"] = vocab,
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)$"{m[0]} {m[1]}").ToArray()),
            },
        };
    }

    internal static HfTokenizer Tokenizer() => HfTokenizer.FromHuggingFace(Llama2StyleTokenizerJson(), new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>" });

    [Fact]
    public void Spaces_become_the_metaspace_and_unknown_characters_fall_back_to_bytes()
    {
        var tokenizer = Tokenizer();
        var ids = tokenizer.Encode("the cat  sat é");
        var pieces = ids.Select(id => tokenizer.Vocabulary.Tokens[id]).ToArray();
        // BPE merges by rank: "at" (rank 3) forms before "▁▁" (6), which leaves no "▁s" + "at".
        Assert.Equal(["▁the", "▁cat", "▁▁", "s", "at", "▁", "<0xC3>", "<0xA9>"], pieces);
        Assert.Equal(" the cat  sat é", tokenizer.Decode(ids));
        Assert.Equal(2, tokenizer.EndOfTextId);
        Assert.Equal(1, tokenizer.BosId);
    }

    [Fact]
    public void A_token_shaped_like_a_byte_token_without_hex_digits_decodes_as_text()
    {
        var json = Llama2StyleTokenizerJson();
        var vocab = json["model"]!["vocab"]!.AsObject();
        var id = vocab.Count;
        vocab["<0xZZ>"] = id;
        var tokenizer = HfTokenizer.FromHuggingFace(json, null);
        Assert.Equal("<0xZZ> é", tokenizer.Decode([id, .. tokenizer.Encode("é")]));
    }

    [Fact]
    public void Llama_cpp_tokenizes_the_exported_vocabulary_identically()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenizer();
        var config = new ModelConfig { Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 32, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false };
        using var model = CausalLanguageModel.Create(config);
        Checkpoint.Save(temp.File("model"), model, tokenizer);
        GgufExport.Write(temp.File("model"), temp.File("spm.gguf"), GgmlType.F32);
        Assert.Equal("llama", GgufFile.Read(temp.File("spm.gguf")).Metadata["tokenizer.ggml.model"]);
        using var reference = new LlamaCppModel(temp.File("spm.gguf"), 32, 2);
        // Special tokens are taken out first and the text after one starts a word again, as a
        // chat template's "<s>" before each turn needs.
        foreach (var text in new[] { "the cat sat on a cat", "a  cat, é!", "hello there", "<s>the cat</s><s> sat on</s>" })
            Assert.Equal(tokenizer.Encode(text), reference.Tokenize(text));
        Assert.Equal(["<s>", "▁the", "▁cat", "</s>"], tokenizer.Encode("<s>the cat</s>").Select(id => tokenizer.Vocabulary.Tokens[id]));
    }
}
