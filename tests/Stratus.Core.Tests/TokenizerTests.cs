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
