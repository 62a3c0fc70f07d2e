// The tokenizer a GGUF file carries, as a Hugging Face tokenizer.json and tokenizer_config.json
// (as transformers' GGUF loading rebuilds one), read by Stratus's HfTokenizer:
// tokenizer.ggml.model "gpt2" is byte-level BPE (tokens, merges, the pre-tokenizer llama.cpp
// names in tokenizer.ggml.pre), "llama" SentencePiece-style BPE (tokens with scores, byte
// fallback tokens; its merges made from the scores, as transformers makes them). Control tokens
// become added special tokens, bos/eos/unk/pad ids the config's tokens, add_bos_token /
// add_eos_token what a prompt gets, eos/eot/eom ids where generation ends, and
// tokenizer.chat_template the chat template (with the named ones beside it, tool_use's).
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Formats;

static class GgufVocabulary
{
    // llama.cpp's token types (llama_token_type).
    const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Byte = 6;

    /// <summary>The tokens llama.cpp ends a generation at by their text, besides the ids the
    /// file names (llama-vocab.cpp): a chat model's file often names only its eos token.</summary>
    static readonly HashSet<string> EndOfGenerationTexts = ["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>"];

    public static HfTokenizer Tokenizer(GgufMetadata m, int rows)
    {
        var model = m.Text("tokenizer.ggml.model")
            ?? throw new StratusUserException($"{m.Path} has no tokenizer (tokenizer.ggml.model); import gguf needs the vocabulary a llama.cpp model file carries");
        var tokens = m.Strings("tokenizer.ggml.tokens") ?? throw m.Missing("tokenizer.ggml.tokens");
        var types = m.Ints("tokenizer.ggml.token_type") ?? Enumerable.Repeat(Normal, tokens.Length).ToArray();
        if (types.Length != tokens.Length)
            throw new StratusUserException($"{m.Path}: tokenizer.ggml.token_type has {types.Length} entries for {tokens.Length} tokens");
        var vocab = new JsonObject();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < tokens.Length; i++)
        {
            if (!ids.TryAdd(tokens[i], i))
                throw new StratusUserException($"{m.Path}: tokenizer.ggml.tokens lists \"{tokens[i]}\" twice, as tokens {ids[tokens[i]]} and {i}; a token's text names one token");
            vocab[tokens[i]] = i;
        }

        // A special id is a token of the vocabulary; it is a special token only where the file
        // marks it one: GGUF needs bos/eos ids even of a vocabulary without such tokens (a
        // character vocabulary, whose export names its token 0), and text is no special token.
        int? Id(string key) => m.Int(key) is { } id
            ? id >= 0 && id < tokens.Length ? id : throw new StratusUserException($"{m.Path}: {key} is {id}, outside the vocabulary of {tokens.Length} tokens")
            : null;
        bool Marked(int id) => types[id] is Control or UserDefined or Unknown;
        string? Special(string key) => Id(key) is { } id && Marked(id) ? tokens[id] : null;

        var added = new JsonArray();
        for (var i = 0; i < tokens.Length; i++)
        {
            if (!Marked(i)) continue;
            added.Add(new JsonObject
            {
                ["id"] = i, ["content"] = tokens[i], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false,
                ["special"] = types[i] != UserDefined,
            });
        }
        var sentencePiece = model switch
        {
            "llama" => true,
            "gpt2" => false,
            _ => throw new StratusUserException($"{m.Path}: tokenizer.ggml.model '{model}' is not supported; import gguf reads gpt2 (byte-level BPE) and llama (SentencePiece) vocabularies"),
        };
        var json = sentencePiece ? SentencePieceJson(m, tokens, types, ids, vocab, Id("tokenizer.ggml.unknown_token_id")) : ByteLevelJson(m, ids, vocab);
        json["version"] = "1.0";
        json["added_tokens"] = added;

        var config = new JsonObject { ["tokenizer_class"] = "PreTrainedTokenizerFast" };
        foreach (var (name, key) in new[] { ("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding") })
            if (Special($"tokenizer.ggml.{key}_token_id") is { } text) config[name] = text;
        // llama.cpp puts BOS before a SentencePiece prompt unless the file says otherwise.
        foreach (var (flag, token, fallback) in new[] { ("add_bos_token", "bos_token", sentencePiece), ("add_eos_token", "eos_token", false) })
        {
            var adds = m.Flag($"tokenizer.ggml.{flag}") ?? fallback;
            if (adds && config[token] is null)
                throw new StratusUserException($"{m.Path}: tokenizer.ggml.{flag} is true but the file names no control token as its {token} (tokenizer.ggml.{token}_id)");
            config[flag] = adds;
        }
        if (ChatTemplates(m) is { } templates) config["chat_template"] = templates;
        // Where a generation ends: the eos, eot and eom tokens (Llama 3's <|eot_id|> and
        // <|eom_id|>), and the special tokens llama.cpp knows as ends.
        var ends = new[] { "eos", "eot", "eom" }.Select(k => Id($"tokenizer.ggml.{k}_token_id")).OfType<int>()
            .Concat(Enumerable.Range(0, tokens.Length).Where(i => EndOfGenerationTexts.Contains(tokens[i]))).Where(Marked).Distinct().ToList();
        var where = $"{m.Path} (its tokenizer)";
        var tokenizer = HfTokenizer.FromHuggingFace(json, config, rows, ends, where, where);
        if (tokenizer.VocabSize > rows)
            throw new StratusUserException($"{m.Path}: tokenizer.ggml.merges make tokens that tokenizer.ggml.tokens does not list, such as \"{tokenizer.Vocabulary.Tokens[rows]}\"");
        return tokenizer;
    }

    /// <summary>tokenizer_config.json's chat_template: tokenizer.chat_template, or, where the file
    /// has named ones beside it (tokenizer.chat_template.tool_use), the list of them all, the
    /// default first, as transformers lists several; null for none. Each named one is read by its
    /// key, as llama.cpp looks one up (tokenizer.chat_templates lists the names, as a copy).</summary>
    static JsonNode? ChatTemplates(GgufMetadata m)
    {
        const string prefix = "tokenizer.chat_template.";
        var template = m.Text("tokenizer.chat_template");
        var named = m.File.Metadata.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && k.Length > prefix.Length).Order(StringComparer.Ordinal)
            .Select(k => (Name: k[prefix.Length..], Template: m.Text(k)!)).ToList();
        if (named.Count == 0) return template;
        var list = new JsonArray();
        if (template is not null) list.Add(new JsonObject { ["name"] = "default", ["template"] = template });
        foreach (var (name, source) in named) list.Add(new JsonObject { ["name"] = name, ["template"] = source });
        return list;
    }

    /// <summary>Byte-level BPE: the file's merges, and the pre-tokenizer llama.cpp names. The
    /// parts and results of merges that the tokens lack (the bytes of a multi-byte character
    /// of a character vocabulary, which llama.cpp merges as strings) are listed after the
    /// tokens, as Stratus's Hugging Face export lists them: Hugging Face's BPE needs them.</summary>
    static JsonObject ByteLevelJson(GgufMetadata m, Dictionary<string, int> ids, JsonObject vocab)
    {
        var merges = m.Strings("tokenizer.ggml.merges") ?? throw m.Missing("tokenizer.ggml.merges");
        var next = ids.Count;
        foreach (var merge in merges)
        {
            var space = merge.IndexOf(' ');
            if (space <= 0 || space == merge.Length - 1)
                throw new StratusUserException($"{m.Path}: tokenizer.ggml.merges holds \"{merge}\", which is not two tokens joined by a space");
            foreach (var piece in new[] { merge[..space], merge[(space + 1)..], merge.Remove(space, 1) })
                if (!vocab.ContainsKey(piece)) vocab[piece] = next++;
        }
        JsonObject ByteLevel(bool useRegex) => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = useRegex };
        JsonObject Split(string pattern) => new()
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                ByteLevel(useRegex: false)),
        };
        var pre = m.Text("tokenizer.ggml.pre") ?? "default";
        JsonObject preTokenizer = pre switch
        {
            // "default" is also what Stratus writes for a character vocabulary, whose merges
            // never cross a character: any split of the text gives its tokens.
            "gpt-2" or "default" => ByteLevel(useRegex: true),
            "llama-bpe" or "llama3" or "llama-v3" => Split(HfTokenizer.Llama3Pattern),
            "qwen2" => Split(HfTokenizer.Qwen2Pattern),
            "smollm" => new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }, ByteLevel(useRegex: true)),
            },
            _ => throw new StratusUserException($"{m.Path}: tokenizer.ggml.pre '{pre}' is not supported; import gguf splits text as gpt-2, llama-bpe, qwen2, smollm and default do"),
        };
        return new JsonObject
        {
            ["normalizer"] = null,
            ["pre_tokenizer"] = preTokenizer,
            ["post_processor"] = null,
            ["decoder"] = ByteLevel(useRegex: true),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab, ["merges"] = new JsonArray([.. merges.Select(merge => (JsonNode)merge)]),
            },
        };
    }

    /// <summary>SentencePiece-style BPE. llama.cpp merges the adjacent pair whose joined text is
    /// the token of highest score; as BPE, that is a merge for each way a normal token splits
    /// into two, ranked by the token's score (transformers' GGUF conversion does the same).</summary>
    static JsonObject SentencePieceJson(GgufMetadata m, string[] tokens, int[] types, Dictionary<string, int> ids, JsonObject vocab, int? unknown)
    {
        if (m.Flag("tokenizer.ggml.add_space_prefix") == false)
            throw new StratusUserException($"{m.Path}: tokenizer.ggml.add_space_prefix is false; Stratus's SentencePiece tokenizer always starts a text with a space (\"▁\")");
        var scores = m.Floats("tokenizer.ggml.scores") ?? throw m.Missing("tokenizer.ggml.scores");
        if (scores.Length != tokens.Length)
            throw new StratusUserException($"{m.Path}: tokenizer.ggml.scores has {scores.Length} entries for {tokens.Length} tokens");
        bool IsNormal(string piece) => ids.TryGetValue(piece, out var id) && types[id] == Normal;
        var merges = new List<(string Left, string Right, float Score)>();
        for (var i = 0; i < tokens.Length; i++)
        {
            if (types[i] != Normal) continue;
            var token = tokens[i];
            var splits = new List<(string Left, string Right)>();
            for (var at = 1; at < token.Length; at++)
            {
                // Not inside a surrogate pair: a token is whole characters.
                if (char.IsLowSurrogate(token[at])) continue;
                if (IsNormal(token[..at]) && IsNormal(token[at..])) splits.Add((token[..at], token[at..]));
            }
            merges.AddRange(splits.OrderBy(s => ids[s.Left]).ThenBy(s => ids[s.Right]).Select(s => (s.Left, s.Right, scores[i])));
        }
        var ranked = merges.OrderByDescending(merge => merge.Score).Select(merge => (JsonNode)$"{merge.Left} {merge.Right}");
        var hasBytes = types.Contains(Byte);
        return new JsonObject
        {
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = null,
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = unknown is { } u ? tokens[u] : null, ["byte_fallback"] = hasBytes, ["fuse_unk"] = true,
                ["vocab"] = vocab, ["merges"] = new JsonArray([.. ranked]),
            },
        };
    }
}
