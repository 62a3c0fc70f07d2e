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
    public void A_character_outside_the_BMP_is_one_char_token_with_its_own_bytes()
    {
        // An emoji, a CJK extension B ideograph and a mathematical letter: two UTF-16 units each.
        const string text = "a😀b𠀀 𝔸a";
        var tokenizer = CharTokenizer.FromCorpus(text);
        Assert.Equal(6, tokenizer.VocabSize);
        Assert.Equal(" ab𝔸😀𠀀", tokenizer.Vocabulary); // by scalar value: U+1D538, U+1F600 and U+20000 after every BMP character
        var ids = tokenizer.Encode(text);
        Assert.Equal([1, 4, 2, 5, 0, 3, 1], ids);
        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.Equal([0xF0, 0x9F, 0x98, 0x80], tokenizer.TokenBytes(tokenizer.Encode("😀").Single()));

        // Streamed, every token is a whole character.
        var decoder = new StreamingDecoder(tokenizer, skipSpecialTokens: true);
        Assert.Equal(["a", "😀", "b", "𠀀", " ", "𝔸", "a"], ids.Select(decoder.Push));

        // Stored and read back with the same ids.
        var json = tokenizer.ToJson();
        Assert.Equal("unicode_scalars", (string?)json["vocab_units"]);
        Assert.Equal(ids, TokenizerStore.FromJson(json).Encode(text));
    }

    [Fact]
    public void A_lone_surrogate_or_a_missing_character_is_named_in_one_line()
    {
        var tokenizer = CharTokenizer.FromCorpus("ab😀");
        // A .NET string from a client can hold half of a character.
        Assert.Equal([0xD83D, 0x1F601, 'z'], tokenizer.Unencodable("a\uD83Da😁z😀"));
        var error = Assert.Throws<StratusUserException>(() => tokenizer.Encode("a\uD83Da😁"));
        Assert.Equal("the text has characters outside this model's vocabulary: a lone UTF-16 surrogate U+D83D, '😁' (U+1F601)", error.Message);
        Assert.Throws<StratusUserException>(() => tokenizer.Encode("😀\uDE00"));
        // An invisible format character by number only: U+202E would turn the rest of the line around.
        Assert.EndsWith("vocabulary: U+202E, '\u00e9' (U+00E9)", Assert.Throws<StratusUserException>(() => tokenizer.Encode("a\u202E\u00e9")).Message);
        Assert.Contains("lone UTF-16 surrogate U+DE00", Assert.Throws<StratusUserException>(() => CharTokenizer.FromCorpus("ab\uDE00")).Message);
    }

    [Fact]
    public void A_text_counts_its_characters_as_a_python_str_does()
    {
        Assert.Equal(0, CodePoints.Count(""));
        Assert.Equal(3, CodePoints.Count("a😀b"));
        Assert.Equal(2, CodePoints.Count("😀😀"));
        // A lone half counts once, as CodePoints.At reads it: the low half of a pair out of order too.
        Assert.Equal(2, CodePoints.Count("a\uD83D"));
        Assert.Equal(3, CodePoints.Count("\uDE00\uD83Dx"));
    }

    [Fact]
    public void The_characters_outside_the_vocabulary_are_named_once_each_in_order_of_first_occurrence()
    {
        // A 1 MB request body holds a quarter of a million characters, none alike (they were
        // searched for in the list of those found so far: 2.4 s of CPU for one such request).
        var distinct = string.Concat(Enumerable.Range(0x20000, 300_000).Select(char.ConvertFromUtf32));
        var missing = CharTokenizer.FromCorpus("ab").Unencodable("a" + distinct + "b" + distinct);
        Assert.Equal(Enumerable.Range(0x20000, 300_000), missing);
        // The error names the first twenty and counts the rest (it named every one: megabytes in one line).
        var error = Assert.Throws<StratusUserException>(() => CharTokenizer.FromCorpus("ab").Encode(distinct)).Message;
        Assert.EndsWith($"'{char.ConvertFromUtf32(0x20000 + 19)}' (U+{0x20000 + 19:X4}) and 299,980 more", error);
    }

    [Fact]
    public void A_vocabulary_within_the_BMP_keeps_its_ids_and_its_stored_form()
    {
        // Characters on both sides of the surrogate range (private use, fullwidth, U+FFFD), whose
        // order by scalar value is their order by UTF-16 code unit.
        const string text = "zé\uE000ｱ\uFFFD東 a\n";
        var tokenizer = CharTokenizer.FromCorpus(text);
        var oldVocabulary = new string(text.Distinct().Order().ToArray());
        Assert.Equal(oldVocabulary, tokenizer.Vocabulary);
        Assert.Equal(text.Select(c => oldVocabulary.IndexOf(c)), tokenizer.Encode(text));
        Assert.Equal(new System.Text.Json.Nodes.JsonObject { ["type"] = "char", ["vocab"] = oldVocabulary }.ToJsonString(), tokenizer.ToJson().ToJsonString());
    }

    [Theory]
    [InlineData("ab\uD83D\uDE00\uDE01")] // "a😀b😁" by an older Stratus: one high half, the low halves sorted after it
    [InlineData("ab\uD83D\uDE00")] // "a😀b": well-formed, but its two halves were two ids
    public void A_vocabulary_an_older_Stratus_split_into_surrogate_halves_is_refused(string vocab)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["tokenizer.json"], new System.Text.Json.Nodes.JsonObject { ["type"] = "char", ["vocab"] = vocab }.ToJsonString());
        var error = Assert.Throws<StratusUserException>(() => TokenizerStore.Load(temp.Path));
        Assert.Contains("older Stratus", error.Message);
        Assert.Contains("prepare the dataset again", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("abca", "'a' (U+0061) twice (ids 0 and 3)")]
    [InlineData("a\U0001F600b\U0001F600", "'\U0001F600' (U+1F600) twice (ids 1 and 3)")]
    public void A_character_vocabulary_listing_a_character_twice_is_refused_naming_its_file(string vocab, string twice)
    {
        // The character encoded to its last id and decoded from both: a dataset or model whose
        // ids no longer round-trip, trained and sampled from without a word.
        using var temp = new TempDirectory();
        File.WriteAllText(temp["tokenizer.json"], new System.Text.Json.Nodes.JsonObject { ["type"] = "char", ["vocab"] = vocab, ["vocab_units"] = "unicode_scalars" }.ToJsonString());
        Assert.Equal($"{temp["tokenizer.json"]}: the character vocabulary lists {twice}; restore the file, or prepare the dataset again",
            Assert.Throws<StratusUserException>(() => TokenizerStore.Load(temp.Path)).Message);
    }

    [Fact]
    public void A_stored_scalar_vocabulary_with_half_a_character_or_an_unknown_unit_is_refused()
    {
        var halves = new System.Text.Json.Nodes.JsonObject { ["type"] = "char", ["vocab"] = "ab\uD83D", ["vocab_units"] = "unicode_scalars" };
        Assert.Contains("lone UTF-16 surrogate U+D83D", Assert.Throws<StratusUserException>(() => TokenizerStore.FromJson(halves)).Message);
        var unknown = new System.Text.Json.Nodes.JsonObject { ["type"] = "char", ["vocab"] = "ab", ["vocab_units"] = "graphemes" };
        Assert.Contains("'graphemes'", Assert.Throws<StratusUserException>(() => TokenizerStore.FromJson(unknown)).Message);
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
        var decoder = new StreamingDecoder(tokenizer, skipSpecialTokens: true);
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
        foreach (var (tokenizer, text) in new (ITokenizer, string)[] { (Gpt2Tokenizer.Instance, "✓ ok 😀<|endoftext|>"), (EveryByteTokenizer(), "✓ ok 😀<|endoftext|>"), (CharTokenizer.FromCorpus("✓ ok é😀"), "✓ ok é😀") })
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
