// A Hugging Face BPE tokenizer read from its own tokenizer.json, with tokenizer_config.json for
// the chat template and special tokens: byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) or
// SentencePiece-style BPE (Llama 2, Mistral, TinyLlama: spaces spelled "▁", a "▁" before the
// text, unknown characters as <0xXX> byte tokens). Encoding runs through Microsoft.ML.Tokenizers'
// BpeTokenizer; both files are kept verbatim inside the Stratus tokenizer.json, so export writes
// back exactly what was imported.
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Stratus.Tokenization;

public sealed class HfTokenizer : ITokenizer
{
    // Pre-tokenizer regexes llama.cpp knows by name (tokenizer.ggml.pre).
    internal const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    internal const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    readonly BpeTokenizer bpe;
    readonly string[] tokens;
    readonly Dictionary<string, int> added;
    readonly Dictionary<string, int> vocabularyIds;

    HfTokenizer(JsonObject tokenizerJson, JsonObject? tokenizerConfig)
    {
        TokenizerJson = tokenizerJson;
        TokenizerConfig = tokenizerConfig;
        var model = tokenizerJson["model"] as JsonObject ?? throw Unsupported("it has no \"model\"");
        if ((string?)model["type"] != "BPE") throw Unsupported($"its model type is '{model["type"]}', not BPE");
        sentencePiece = !IsByteLevel(tokenizerJson);
        if (sentencePiece && !((bool?)model["byte_fallback"] ?? false) && !Types(tokenizerJson["pre_tokenizer"]).Contains("Metaspace") && !ReplacesSpaces(tokenizerJson["normalizer"]))
            throw Unsupported("it is neither byte-level BPE nor SentencePiece-style BPE");
        var vocab = (model["vocab"] as JsonObject ?? throw Unsupported("it has no vocabulary")).ToDictionary(kv => kv.Key, kv => (int)kv.Value!);
        var merges = (model["merges"] as JsonArray ?? []).Select(m => m is JsonArray pair ? $"{pair[0]} {pair[1]}" : (string)m!).ToList();
        added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new HashSet<int>();
        foreach (var token in tokenizerJson["added_tokens"] as JsonArray ?? [])
        {
            var content = (string)token!["content"]!;
            var id = (int)token["id"]!;
            added[content] = id;
            if ((bool?)token["special"] ?? false) special.Add(id);
        }
        var size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Values.Max() + 1);
        tokens = new string[size];
        foreach (var (token, id) in vocab) tokens[id] = token;
        vocabularyIds = vocab;
        foreach (var (token, id) in added) tokens[id] = token;
        for (var i = 0; i < size; i++) tokens[i] ??= $"[PAD{i}]";

        var specialTokens = added.Count == 0 ? null : added;
        normalizeNfc = Types(tokenizerJson["normalizer"]).Contains("NFC");
        string pattern;
        if (sentencePiece)
        {
            // Words start at a "▁"; a run of "▁" stays with the word that follows, so pieces
            // such as "▁▁" remain reachable.
            pattern = "▁*[^▁]+|▁+";
            unknownId = (string?)model["unk_token"] is { } unk && vocab.TryGetValue(unk, out var u) ? u : null;
            byteFallback = (bool?)model["byte_fallback"] ?? false;
            bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                SpecialTokens = specialTokens,
                UnknownToken = (string?)model["unk_token"],
                PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), specialTokens),
            });
        }
        else
        {
            pattern = PreTokenizerPattern(tokenizerJson);
            bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                SpecialTokens = specialTokens,
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), specialTokens),
            });
        }

        BosId = SpecialId("bos_token");
        EndOfTextId = SpecialId("eos_token");
        var preName = pattern == BpeVocabulary.Gpt2Pattern ? "gpt-2" : pattern == Llama3Pattern ? "llama-bpe" : pattern == Qwen2Pattern ? "qwen2" : "default";
        Vocabulary = new BpeVocabulary(tokens, merges, special, BosId, EndOfTextId, preName) { SentencePiece = sentencePiece, UnknownId = unknownId };
        // GPT-2's, Llama 3's and Qwen2's expressions never put a newline that is followed by a
        // non-space character in the same word as that character (no alternative lets a newline
        // lead a word, and none looks behind), so a corpus may be cut there as for GPT-2. Others
        // are unproven, SentencePiece starts every text it encodes with a "▁", and a special token
        // spanning lines could be cut in two: those documents are encoded whole.
        Cuts = !sentencePiece && preName != "default" && !added.Keys.Any(t => t.Contains('\n')) ? TextCuts.BetweenLines : TextCuts.Nowhere;
    }

    readonly bool sentencePiece, byteFallback, normalizeNfc;
    readonly int? unknownId;

    public static HfTokenizer FromHuggingFace(JsonObject tokenizerJson, JsonObject? tokenizerConfig) => new(tokenizerJson, tokenizerConfig);

    public static HfTokenizer FromJson(JsonObject json) =>
        new(json["tokenizer"] as JsonObject ?? throw new StratusUserException("hf tokenizer.json has no 'tokenizer'"), json["config"] as JsonObject);

    /// <summary>Hugging Face's tokenizer.json, as imported.</summary>
    public JsonObject TokenizerJson { get; }
    /// <summary>Hugging Face's tokenizer_config.json (chat template, special tokens), when there was one.</summary>
    public JsonObject? TokenizerConfig { get; }
    public BpeVocabulary Vocabulary { get; }

    public string Kind => "hf";
    public TextCuts Cuts { get; }
    public int VocabSize => tokens.Length;
    public int? EndOfTextId { get; }
    public int? BosId { get; }

    /// <summary>The model's chat template from tokenizer_config.json (the "default" one when it
    /// lists several), or null.</summary>
    public string? ChatTemplate => TokenizerConfig?["chat_template"] switch
    {
        JsonValue value => (string?)value,
        JsonArray list => list.OfType<JsonObject>().FirstOrDefault(t => (string?)t["name"] == "default")?["template"]?.GetValue<string>(),
        _ => null,
    };

    /// <summary>bos_token / eos_token as text (tokenizer_config.json stores a string or an AddedToken object).</summary>
    public string? SpecialText(string key) => TokenizerConfig?[key] switch
    {
        JsonValue value => (string?)value,
        JsonObject token => (string?)token["content"],
        _ => null,
    };

    int? SpecialId(string key) => SpecialText(key) is { } text && added.TryGetValue(text, out var id) ? id : null;

    public int[] Encode(string text)
    {
        if (normalizeNfc) text = text.Normalize(NormalizationForm.FormC);
        if (!sentencePiece) return bpe.EncodeToIds(text).ToArray();
        // SentencePiece spells spaces "▁" and starts the text with one (Llama's "add dummy prefix").
        var normalized = text.Length == 0 ? "" : "▁" + text.Replace(' ', '▁');
        var result = new List<int>();
        foreach (var token in bpe.EncodeToTokens(normalized, out _))
        {
            if (token.Id != unknownId || !byteFallback) { result.Add(token.Id); continue; }
            // Byte fallback: a character outside the vocabulary becomes its UTF-8 bytes.
            var (offset, length) = token.Offset.GetOffsetAndLength(normalized.Length);
            foreach (var b in Encoding.UTF8.GetBytes(normalized.Substring(offset, length).Replace('▁', ' ')))
                result.Add(added.TryGetValue($"<0x{b:X2}>", out var id) || vocabularyIds.TryGetValue($"<0x{b:X2}>", out id) ? id : token.Id);
        }
        return result.ToArray();
    }

    public IReadOnlyList<char> Unencodable(string text) => [];

    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        var text = new StringBuilder();
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)tokens.Length) throw new StratusUserException($"token id {id} is outside the vocabulary of {tokens.Length}");
            var token = tokens[id];
            if (sentencePiece && !added.ContainsKey(token))
            {
                // The "▁" before the first word is kept as a space, so decoded pieces of a
                // stream join without losing the spaces between them.
                if (token.Length == 6 && token.StartsWith("<0x") && token.EndsWith('>')) bytes.Add(Convert.ToByte(token[3..5], 16));
                else bytes.AddRange(Encoding.UTF8.GetBytes(token.Replace('▁', ' ')));
                continue;
            }
            if (!added.ContainsKey(token) && ByteLevel.Decode(token) is { } raw)
            {
                bytes.AddRange(raw);
                continue;
            }
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
            bytes.Clear();
            text.Append(token);
        }
        return text.Append(Encoding.UTF8.GetString(bytes.ToArray())).ToString();
    }

    public bool HasSpecialToken(string token) => added.ContainsKey(token);

    public JsonObject ToJson() => new() { ["type"] = Kind, ["tokenizer"] = TokenizerJson.DeepClone(), ["config"] = TokenizerConfig?.DeepClone() };

    static bool IsByteLevel(JsonObject json) =>
        Types(json["pre_tokenizer"]).Contains("ByteLevel") || Types(json["decoder"]).Contains("ByteLevel");

    /// <summary>Llama 2's legacy normalizer: Replace(" ", "▁") (with Prepend("▁")).</summary>
    static bool ReplacesSpaces(JsonNode? normalizer) => normalizer switch
    {
        JsonObject o when o["normalizers"] is JsonArray list => list.Any(ReplacesSpaces),
        JsonObject o => (string?)o["type"] == "Replace" && (string?)o["content"] == "▁",
        _ => false,
    };

    static IEnumerable<string> Types(JsonNode? node) => node switch
    {
        JsonObject o when o["pretokenizers"] is JsonArray list => list.SelectMany(Types),
        JsonObject o when o["decoders"] is JsonArray list => list.SelectMany(Types),
        JsonObject o when o["normalizers"] is JsonArray list => list.SelectMany(Types),
        JsonObject o => [(string?)o["type"] ?? ""],
        _ => [],
    };

    /// <summary>The regex that splits text into words, from the pre_tokenizer: ByteLevel with
    /// its built-in GPT-2 regex, or a Split with its own regex (Llama 3, Qwen2), optionally
    /// after splitting digits one by one (SmolLM).</summary>
    static string PreTokenizerPattern(JsonObject json)
    {
        var steps = json["pre_tokenizer"] switch
        {
            JsonObject o when o["pretokenizers"] is JsonArray list => list.OfType<JsonObject>().ToList(),
            JsonObject o => [o],
            _ => throw Unsupported("it has no pre_tokenizer"),
        };
        string? pattern = null;
        var individualDigits = false;
        foreach (var step in steps)
        {
            switch ((string?)step["type"])
            {
                case "ByteLevel":
                    if ((bool?)step["add_prefix_space"] ?? false) throw Unsupported("its ByteLevel pre-tokenizer adds a prefix space");
                    if ((bool?)step["use_regex"] ?? true) pattern ??= BpeVocabulary.Gpt2Pattern;
                    break;
                case "Split":
                    pattern = pattern is null
                        ? (string?)step["pattern"]?["Regex"] ?? throw Unsupported("its Split pre-tokenizer has no regex")
                        : throw Unsupported("it has several Split pre-tokenizers");
                    break;
                case "Digits":
                    individualDigits = (bool?)step["individual_digits"] ?? false;
                    break;
                default:
                    throw Unsupported($"its pre-tokenizer '{step["type"]}' is not supported");
            }
        }
        pattern ??= BpeVocabulary.Gpt2Pattern;
        return individualDigits ? @"\p{N}|" + pattern.Replace(@" ?\p{N}+|", "") : pattern;
    }

    static StratusUserException Unsupported(string why) => new($"the Hugging Face tokenizer cannot be used: {why}");
}
