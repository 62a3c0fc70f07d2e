using Stratus.Formats;
using Stratus.Tokenization;
using TorchSharp;

namespace Stratus.Tests;

public sealed class TokenizerTests
{
    [Fact]
    public void Char_tokenizer_round_trips_and_is_stored_with_its_vocabulary()
    {
        var tokenizer = CharTokenizer.FromCorpus("hello world");
        Assert.Equal(" dehlorw", tokenizer.Vocabulary);
        Assert.Equal("world hello", tokenizer.Decode(tokenizer.Encode("world hello")));
        var restored = TokenizerStore.FromJson(tokenizer.ToJson());
        Assert.Equal(tokenizer.Encode("hold"), restored.Encode("hold"));
        Assert.Equal(['Z', '!'], tokenizer.Unencodable("hello Z!"));
    }

    [Fact]
    public void Gpt2_tokenizer_matches_known_ids_and_end_of_text()
    {
        var tokenizer = Gpt2Tokenizer.Instance;
        Assert.Equal(new[] { 15496, 995 }, tokenizer.Encode("Hello world")); // ids from OpenAI's GPT-2 vocabulary
        Assert.Equal(50256, tokenizer.EndOfTextId);
        Assert.Equal(new[] { 15496, 50256 }, tokenizer.Encode("Hello<|endoftext|>"));
        Assert.Equal("naïve café ✓", tokenizer.Decode(tokenizer.Encode("naïve café ✓")));
    }

    [Fact]
    public void Streaming_decoder_never_emits_half_a_character()
    {
        var tokenizer = Gpt2Tokenizer.Instance;
        var ids = tokenizer.Encode("✓ ok 😀");
        var decoder = new StreamingDecoder(tokenizer);
        var pieces = ids.Select(decoder.Push).Append(decoder.Flush()).ToList();
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Equal("✓ ok 😀", string.Concat(pieces));
    }

    /// <summary>A Hugging Face byte-level BPE with one token per byte and an added end marker.</summary>
    static HfTokenizer EveryByteTokenizer()
    {
        var vocab = new System.Text.Json.Nodes.JsonObject();
        for (var b = 0; b < 256; b++) vocab[ByteLevel.Encode([(byte)b])] = b;
        var json = System.Text.Json.Nodes.JsonNode.Parse("""
            {"added_tokens": [{"id": 256, "content": "<|endoftext|>", "special": true}],
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "merges": []}}
            """)!.AsObject();
        json["model"]!["vocab"] = vocab;
        return HfTokenizer.FromHuggingFace(json, null);
    }

    [Fact]
    public void Token_bytes_spell_the_text_even_where_a_token_holds_part_of_a_character()
    {
        // A character tokenizer's tokens are UTF-16 code units: text outside the BMP has no bytes per token.
        foreach (var (tokenizer, text) in new (ITokenizer, string)[] { (Gpt2Tokenizer.Instance, "✓ ok 😀<|endoftext|>"), (EveryByteTokenizer(), "✓ ok 😀<|endoftext|>"), (CharTokenizer.FromCorpus("✓ ok é"), "✓ ok é") })
            Assert.Equal(System.Text.Encoding.UTF8.GetBytes(text), tokenizer.Encode(text).SelectMany(tokenizer.TokenBytes).ToArray());
        // GPT-2 spells the emoji in two tokens, neither of them a whole character.
        var emoji = Gpt2Tokenizer.Instance.Encode("😀");
        Assert.Equal(2, emoji.Length);
        Assert.All(emoji, id => Assert.False(System.Text.Unicode.Utf8.IsValid(Gpt2Tokenizer.Instance.TokenBytes(id))));
    }

    [Fact]
    public void Safetensors_round_trip_and_truncation_is_reported()
    {
        using var temp = new TempDirectory();
        using var a = torch.arange(6, dtype: torch.ScalarType.Float32).view(2, 3);
        using var b = torch.tensor(new long[] { 7, -8 });
        using var c = torch.ones(3).to(torch.ScalarType.BFloat16);
        SafeTensors.Save(temp["t.safetensors"], new Dictionary<string, torch.Tensor> { ["a"] = a, ["b"] = b, ["c"] = c });
        var loaded = SafeTensors.Load(temp["t.safetensors"]);
        Assert.True(loaded["a"].eq(a).all().item<bool>());
        Assert.True(loaded["b"].eq(b).all().item<bool>());
        Assert.Equal(torch.ScalarType.BFloat16, loaded["c"].dtype);
        var bytes = File.ReadAllBytes(temp["t.safetensors"]);
        File.WriteAllBytes(temp["t.safetensors"], bytes[..^4]);
        Assert.Contains("truncated", Assert.Throws<StratusUserException>(() => SafeTensors.Load(temp["t.safetensors"])).Message);
    }
}
