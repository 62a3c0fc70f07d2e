// A character a Hugging Face vocabulary cannot spell (no token for it or for one of its bytes)
// is spelled as Hugging Face's `tokenizers` spells it: byte-fallback tokens (<0xNN>) where the
// model has byte_fallback and all of its bytes, else the model's unk_token (one for a run of them
// with fuse_unk), else it cannot be encoded and is refused by name, as the character-level
// tokenizer refuses it, never silently dropped.
using System.Text.Json.Nodes;
using Stratus.Formats;
using Stratus.Tokenization;

namespace Stratus.Tests;

public sealed class UnknownCharactersTests
{
    const int EAcute = 0xE9, UUmlaut = 0xFC;

    /// <summary>A byte-level tokenizer.json (GPT-2 style) whose vocabulary has "a", "b", "ab",
    /// "Ġ" (space) and "Ã" (0xC3, the first byte of "é" and "ü") and no other byte.</summary>
    static HfTokenizer ByteLevelTokenizer(bool unknown = false, bool fuse = false) => HfTokenizer.FromHuggingFace((JsonObject)JsonNode.Parse($$"""
        {"added_tokens": [{"id": 5, "content": "<unk>", "special": true}],
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "decoder": {"type": "ByteLevel"},
         "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ã": 4, "<unk>": 5}, "merges": ["a b"],
                   "unk_token": {{(unknown ? "\"<unk>\"" : "null")}}, "fuse_unk": {{(fuse ? "true" : "false")}} } }
        """)!, null);

    /// <summary>A SentencePiece-style tokenizer.json (Llama 2 shaped) with "▁", "a", "b", "▁a" and
    /// the byte tokens of "é" (C3 A9) but not all of "ü" (C3 BC).</summary>
    static HfTokenizer SentencePieceTokenizer(bool unknown, bool byteFallback, bool fuse = false)
    {
        var json = (JsonObject)JsonNode.Parse($$"""
            {"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}],
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
             "pre_tokenizer": null, "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
             "model": {"type": "BPE", "unk_token": {{(unknown ? "\"<unk>\"" : "null")}}, "byte_fallback": {{(byteFallback ? "true" : "false")}},
                       "fuse_unk": {{(fuse ? "true" : "false")}},
                       "vocab": {"<unk>": 0, "<s>": 1, "▁": 2, "a": 3, "b": 4, "<0xC3>": 5, "<0xA9>": 6, "▁a": 7}, "merges": ["▁ a"]} }
            """)!;
        return HfTokenizer.FromHuggingFace(json, null);
    }

    [Fact]
    public void A_byte_level_vocabulary_without_an_unk_token_refuses_the_characters_it_cannot_spell()
    {
        var tokenizer = ByteLevelTokenizer();
        Assert.Equal([EAcute, UUmlaut], tokenizer.Unencodable("ab é ü é"));
        Assert.Empty(tokenizer.Unencodable("ab ab"));
        var error = Assert.Throws<StratusUserException>(() => tokenizer.Encode("ab é"));
        Assert.Equal("the text has characters outside this model's vocabulary: 'é' (U+00E9)", error.Message);
        // A character an added token spells is no problem.
        Assert.Equal([2, 5], tokenizer.Encode("ab<unk>"));
    }

    [Fact]
    public void A_byte_level_vocabulary_with_an_unk_token_spells_each_missing_byte_with_it()
    {
        // " é" is Ġ Ã and an unknown byte; "😀" four unknown bytes, one unk with fuse_unk
        // (within a word, as Hugging Face fuses them).
        Assert.Equal([2, 3, 4, 5, 5, 5, 5, 5], ByteLevelTokenizer(unknown: true).Encode("ab é😀"));
        Assert.Equal([2, 3, 4, 5, 5], ByteLevelTokenizer(unknown: true, fuse: true).Encode("ab é😀"));
        Assert.Empty(ByteLevelTokenizer(unknown: true).Unencodable("ab é😀"));
    }

    // Ids of SentencePieceTokenizer's tokens.
    const int Unk = 0, Space = 2, C3 = 5, A9 = 6, SpaceA = 7;

    [Fact]
    public void SentencePiece_falls_back_to_the_bytes_of_a_character_when_it_has_them_all_else_to_unk()
    {
        var ids = SentencePieceTokenizer(unknown: true, byteFallback: true).Encode("a é ü");
        // "ü" lacks its second byte token: the whole character is one <unk>, not <0xC3> and <unk>.
        Assert.Equal([SpaceA, Space, C3, A9, Space, Unk], ids);
        // Without an unk_token, byte fallback still spells "é"; "ü" cannot be spelled.
        var noUnknown = SentencePieceTokenizer(unknown: false, byteFallback: true);
        Assert.Equal([SpaceA, Space, C3, A9], noUnknown.Encode("a é"));
        Assert.Equal([UUmlaut], noUnknown.Unencodable("a é ü"));
        Assert.Equal("the text has characters outside this model's vocabulary: 'ü' (U+00FC)", Assert.Throws<StratusUserException>(() => noUnknown.Encode("a ü")).Message);
    }

    [Fact]
    public void SentencePiece_without_byte_fallback_spells_unknown_characters_as_unk_fused_with_fuse_unk_or_refuses_them()
    {
        Assert.Equal([SpaceA, Space, Unk, Unk], SentencePieceTokenizer(unknown: true, byteFallback: false).Encode("a éü"));
        Assert.Equal([SpaceA, Space, Unk], SentencePieceTokenizer(unknown: true, byteFallback: false, fuse: true).Encode("a éü"));
        var noUnknown = SentencePieceTokenizer(unknown: false, byteFallback: false);
        Assert.Equal([EAcute, UUmlaut], noUnknown.Unencodable("a éü"));
        Assert.Throws<StratusUserException>(() => noUnknown.Encode("a é"));
    }

    [Fact]
    public void A_character_model_exported_to_Hugging_Face_refuses_what_its_vocabulary_lacks()
    {
        // The export spells each character as one byte-level token and has no unk_token.
        var exported = HfTokenizer.FromHuggingFace(HuggingFace.TokenizerJson(BpeVocabulary.FromCharacters("abc ")), null);
        Assert.Equal([EAcute], exported.Unencodable("a bé"));
        Assert.Throws<StratusUserException>(() => exported.Encode("a bé"));
    }
}
