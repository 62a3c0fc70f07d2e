// A Hugging Face BPE tokenizer read from its own tokenizer.json, with tokenizer_config.json for
// the chat template and special tokens: byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) or
// SentencePiece-style BPE (Llama 2, Mistral, TinyLlama: spaces spelled "▁", a "▁" before the
// text, unknown characters as <0xXX> byte tokens). Encoding runs through Microsoft.ML.Tokenizers'
// BpeTokenizer. A character the vocabulary cannot spell is spelled as Hugging Face's BPE spells
// it (byte-fallback tokens, else the unk_token) or, where it has neither, refused by name: never
// dropped. A prompt gets the special tokens the files say go around an input (the
// post_processor's template, or tokenizer_config.json's add_bos_token / add_eos_token: Llama's
// BOS). Both files are kept verbatim inside the Stratus tokenizer.json, so export writes back
// exactly what was imported, beside the ids the model's configs list as eos_token_id (which
// travel with the tokenizer wherever it goes: datasets, checkpoints, fine-tuned runs).
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using System.Text.Unicode;
using Microsoft.ML.Tokenizers;

namespace Stratus.Tokenization;

public sealed class HfTokenizer : ITokenizer
{
    // Pre-tokenizer regexes llama.cpp knows by name (tokenizer.ggml.pre).
    internal const string Llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    internal const string Qwen2Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // Microsoft.ML.Tokenizers drops a character its vocabulary lacks unless it has an unknown
    // token to put there. It is given this one, which no text can produce (no merge makes it, and
    // no pre-tokenizer word holds a "▁" after other characters or, byte-level, either character),
    // so that each such place comes back marked and is spelled as Hugging Face spells it.
    const string NotInVocabulary = "\uFFFF▁";
    const int NotInVocabularyId = -1;

    readonly BpeTokenizer bpe;
    readonly string[] tokens;
    readonly Dictionary<string, int> added;
    /// <summary>The ids of the added tokens marked special (control tokens, not text).</summary>
    readonly HashSet<int> special;

    HfTokenizer(JsonObject tokenizerJson, JsonObject? tokenizerConfig, int? modelVocabSize, IReadOnlyList<int>? endOfGenerationIds, string tokenizerFile, string configFile)
    {
        this.tokenizerFile = tokenizerFile;
        this.configFile = configFile;
        tokenizerText = JsonSerializer.SerializeToUtf8Bytes(tokenizerJson, Unescaped);
        TokenizerConfig = tokenizerConfig;
        var model = tokenizerJson["model"] as JsonObject ?? throw Unsupported("it has no \"model\"");
        if (Text(model["type"], "model.type") != "BPE") throw Unsupported($"its model type is '{model["type"]}', not BPE");
        sentencePiece = !IsByteLevel(tokenizerJson);
        byteFallback = Flag(model["byte_fallback"], "model.byte_fallback") ?? false;
        if (sentencePiece && !byteFallback && !Types(tokenizerJson["pre_tokenizer"], "pre_tokenizer").Contains("Metaspace") && !ReplacesSpaces(tokenizerJson["normalizer"], "normalizer"))
            throw Unsupported("it is neither byte-level BPE nor SentencePiece-style BPE");
        if (model["vocab"] is not JsonObject) throw Unsupported("it has no vocabulary");
        var vocab = Vocab();
        hasMerges = model["merges"] switch
        {
            null => false,
            JsonArray => true,
            var other => throw Malformed("model.merges", "a list", other),
        };
        added = new Dictionary<string, int>(StringComparer.Ordinal);
        special = [];
        var addedTokens = tokenizerJson["added_tokens"] switch
        {
            null => [],
            JsonArray list => list,
            var other => throw Malformed("added_tokens", "a list", other),
        };
        for (var i = 0; i < addedTokens.Count; i++)
        {
            var where = $"added_tokens[{i}]";
            var token = addedTokens[i] as JsonObject ?? throw Malformed(where, "an object", addedTokens[i]);
            // An empty token would match everywhere: Microsoft.ML.Tokenizers splits text at its
            // every occurrence, and never gets past the first.
            var content = Text(token["content"], $"{where}.content") is { Length: > 0 } text ? text : throw Malformed($"{where}.content", "non-empty text", token["content"]);
            var id = Id(token["id"], $"{where}.id");
            // Quoted as written: JsonSerializer would escape the "<" of "<s>".
            if (added.TryGetValue(content, out var earlier) && earlier != id)
                throw new StratusUserException($"{tokenizerFile}: added_tokens lists \"{content}\" twice, with ids {earlier} and {id}");
            added[content] = id;
            if (Flag(token["special"], $"{where}.special") ?? false) special.Add(id);
        }
        // Ids number the tokens the file lists (a few may be missing, padded below); a larger id
        // would have this table grow to it, a few bytes in the file asking for gigabytes.
        var listed = vocab.Count + addedTokens.Count;
        foreach (var (token, id) in vocab.Concat(added))
        {
            if (id < 0 || id >= listed)
                throw new StratusUserException($"{tokenizerFile}: token {JsonSerializer.Serialize(token)} has id {id}, but the file lists {listed} tokens, so ids run from 0 to {listed - 1}");
        }
        var size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Values.Max() + 1);
        tokens = new string[size];
        foreach (var (token, id) in vocab)
        {
            if (tokens[id] is { } other) throw new StratusUserException($"{tokenizerFile}: model.vocab gives id {id} to both {JsonSerializer.Serialize(other)} and {JsonSerializer.Serialize(token)}");
            tokens[id] = token;
        }
        foreach (var (token, id) in added)
        {
            // Hugging Face gives an added token the id of the same text in the vocabulary, never
            // another token's: taken here, that token would decode as the added one's text.
            // (Its loader warns and gives the added token a new id, a row the model never
            // trained for it; refused here instead, so the file is mended rather than guessed at.)
            if (tokens[id] is { } other && other != token)
                throw new StratusUserException($"{tokenizerFile}: the added token \"{token}\" has id {id}, which is \"{other}\"'s; " +
                    "give it the id the model was trained with for it in added_tokens (Hugging Face would warn and give it a new one)");
            tokens[id] = token;
        }
        for (var i = 0; i < size; i++) tokens[i] ??= $"[PAD{i}]";
        // Tokens past the model's rows are taken for pieces of characters (BpeVocabulary.Pieces,
        // as Stratus exports a character vocabulary) where each is one: a byte-level token that
        // is not whole UTF-8 text. Otherwise the tokenizer is larger than the model, for the
        // caller to refuse.
        VocabSize = modelVocabSize is { } rows && rows < size && !sentencePiece
            && tokens.Skip(rows).All(t => vocab.ContainsKey(t) && !added.ContainsKey(t) && ByteLevel.Decode(t) is { } bytes && !Utf8.IsValid(bytes))
            ? rows : size;

        var specialTokens = added.Count == 0 ? null : added;
        normalizeNfc = Types(tokenizerJson["normalizer"], "normalizer").Contains("NFC");
        // Hugging Face's BPE looks the unk_token up in the model's vocabulary only when a character
        // needs it, and fails then: one missing here leaves such characters unspellable, refused
        // when they come.
        unknownId = Text(model["unk_token"], "model.unk_token") is { } unknown && vocab.TryGetValue(unknown, out var u) ? u : null;
        fuseUnknown = Flag(model["fuse_unk"], "model.fuse_unk") ?? false;
        if (byteFallback)
        {
            byteTokens = new int?[256];
            for (var b = 0; b < 256; b++) byteTokens[b] = added.TryGetValue($"<0x{b:X2}>", out var id) || vocab.TryGetValue($"<0x{b:X2}>", out id) ? id : null;
        }
        var everyByte = sentencePiece
            ? byteTokens is not null && Array.TrueForAll(byteTokens, id => id is not null)
            : Enumerable.Range(0, 256).All(b => vocab.ContainsKey(ByteLevel.Encode([(byte)b])));
        // A piece past the model's rows is no token of the model's (see VocabSize).
        spellsEveryCharacter = unknownId is not null || (everyByte && VocabSize == size);
        string pattern;
        // Read no further once given to Microsoft.ML.Tokenizers, which makes its own: the file's
        // vocabulary is not copied for it (tens of megabytes for a large one).
        vocab[NotInVocabulary] = NotInVocabularyId;
        var options = new BpeOptions(vocab)
        {
            Merges = Merges(), SpecialTokens = specialTokens, UnknownToken = NotInVocabulary, FuseUnknownTokens = fuseUnknown,
        };
        if (sentencePiece)
        {
            // Words start at a "▁"; a run of "▁" stays with the word that follows, so pieces
            // such as "▁▁" remain reachable.
            pattern = "▁*[^▁]+|▁+";
        }
        else
        {
            pattern = PreTokenizerPattern(tokenizerJson);
            options.ByteLevel = true;
        }
        options.PreTokenizer = new RegexPreTokenizer(PreTokenizerRegex(pattern), specialTokens);
        // Microsoft.ML.Tokenizers checks the merges against the vocabulary.
        try { bpe = BpeTokenizer.Create(options); }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new StratusUserException($"{tokenizerFile}: its BPE model is inconsistent: {e.Message}", e);
        }

        addedTokenPattern = added.Count == 0 ? null
            : new Regex(string.Join("|", added.Keys.OrderByDescending(t => t.Length).Select(Regex.Escape)), RegexOptions.CultureInvariant);
        BosId = SpecialId("bos_token");
        EndOfTextId = SpecialId("eos_token");
        EndOfGenerationIds = (EndOfTextId is { } eot ? [eot] : Array.Empty<int>()).Concat(endOfGenerationIds ?? []).Distinct().ToArray();
        (addedBefore, addedAfter) = ReadSpecialTokensAround(tokenizerJson["post_processor"]);
        preTokenizerName = pattern == BpeVocabulary.Gpt2Pattern ? "gpt-2" : pattern == Llama3Pattern ? "llama-bpe" : pattern == Qwen2Pattern ? "qwen2" : "default";
        // Only export needs it, and its merges (a large vocabulary's hundreds of thousands of
        // strings) are read from the text again then rather than kept for as long as the
        // tokenizer. (A lambda over a local of this constructor would keep them all alive.)
        vocabulary = new(ExportedVocabulary);
        // GPT-2's, Llama 3's and Qwen2's expressions never put a newline that is followed by a
        // non-space character in the same word as that character (no alternative lets a newline
        // lead a word, and none looks behind), so a corpus may be cut there as for GPT-2. Others
        // are unproven, SentencePiece starts every text it encodes with a "▁", and a special token
        // spanning lines could be cut in two: those documents are encoded whole.
        Cuts = !sentencePiece && preTokenizerName != "default" && !added.Keys.Any(t => t.Contains('\n')) ? TextCuts.BetweenLines : TextCuts.Nowhere;
    }

    /// <summary>Hugging Face's tokenizer.json as compact UTF-8 text. A JsonNode tree of it, as
    /// imported or read from a file, took two to three times the file's size for as long as the
    /// tokenizer lived, though only <see cref="ToJson"/> and export read it again.</summary>
    readonly byte[] tokenizerText;
    readonly Lazy<BpeVocabulary> vocabulary;
    /// <summary>llama.cpp's name of the pre-tokenizer (<see cref="BpeVocabulary.PreTokenizer"/>).</summary>
    readonly string preTokenizerName;

    /// <summary>JSON text as it is kept, not shown: unescaped, so a byte-level token ("Ġthe")
    /// takes its own length rather than six bytes for each character outside ASCII.</summary>
    static readonly JsonSerializerOptions Unescaped = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Whether model.merges is there (a list).</summary>
    readonly bool hasMerges;
    readonly bool sentencePiece, byteFallback, normalizeNfc, fuseUnknown;
    /// <summary>Whether every character has a spelling (the unk_token, byte fallback with every
    /// byte, or a byte-level vocabulary with every byte among the model's tokens), so none needs
    /// looking for.</summary>
    readonly bool spellsEveryCharacter;
    /// <summary>With byte_fallback, the &lt;0xNN&gt; token of each byte the vocabulary has.</summary>
    readonly int?[]? byteTokens;
    /// <summary>The added tokens as one alternation, longest first; null when there are none.</summary>
    readonly Regex? addedTokenPattern;
    /// <summary>The unk_token's id, where the vocabulary has it.</summary>
    readonly int? unknownId;
    /// <summary>The special tokens a whole input gets before and after it (add_special_tokens).</summary>
    readonly int[] addedBefore, addedAfter;

    /// <param name="modelVocabSize">config.json's vocab_size, the rows of the model the
    /// tokenizer is for: the tokens the file lists past them may be pieces of characters.</param>
    /// <param name="endOfGenerationIds">The ids the model's configs list as eos_token_id, which
    /// end a generation besides the tokenizer's eos_token.</param>
    /// <param name="tokenizerFile">What refusals name tokenizer.json by: the path it was read from.</param>
    /// <param name="configFile">What refusals name tokenizer_config.json by.</param>
    public static HfTokenizer FromHuggingFace(JsonObject tokenizerJson, JsonObject? tokenizerConfig, int? modelVocabSize = null, IReadOnlyList<int>? endOfGenerationIds = null,
        string tokenizerFile = TokenizerFileName, string configFile = ConfigFileName) =>
        new(tokenizerJson, tokenizerConfig, modelVocabSize, endOfGenerationIds, tokenizerFile, configFile);

    /// <summary>The names of Hugging Face's two files, by which refusals name them where no path was given.</summary>
    const string TokenizerFileName = "tokenizer.json", ConfigFileName = "tokenizer_config.json";

    // Kept beside the two files only where the tokenizer lists pieces past the model's tokens.
    const string ModelVocabSizeField = "vocab_size";
    // Kept only where the model lists end-of-generation ids besides the tokenizer's eos_token, so
    // that a tokenizer without them is stored as before.
    const string EndOfGenerationField = "eos_token_ids";

    /// <summary>The tokenizer kept in a Stratus tokenizer.json (<see cref="ToJson"/>), whose
    /// reader names the file's path before what is refused.</summary>
    public static HfTokenizer FromJson(JsonObject json) =>
        new(json["tokenizer"] as JsonObject ?? throw new StratusUserException("hf tokenizer.json has no 'tokenizer'"), json["config"] as JsonObject,
            json[ModelVocabSizeField] is { } rows ? WholeNumber(rows, ModelVocabSizeField, TokenizerStore.FileName) : null,
            json[EndOfGenerationField] switch
            {
                null => null,
                JsonArray ids => ids.Select((id, i) => WholeNumber(id, $"{EndOfGenerationField}[{i}]", TokenizerStore.FileName)).ToArray(),
                var other => throw MalformedIn(TokenizerStore.FileName, EndOfGenerationField, "a list of token ids", other),
            }, TokenizerFileName, ConfigFileName);

    /// <summary>Hugging Face's tokenizer.json, as imported: a copy of its own for each read.</summary>
    public JsonObject TokenizerJson => (JsonObject)JsonNode.Parse(tokenizerText)!;
    /// <summary>Hugging Face's tokenizer_config.json (chat template, special tokens), when there was one.</summary>
    public JsonObject? TokenizerConfig { get; }
    public BpeVocabulary Vocabulary => vocabulary.Value;

    BpeVocabulary ExportedVocabulary() => new(tokens[..VocabSize], [.. Merges()], special, BosId, EndOfTextId, preTokenizerName)
    {
        SentencePiece = sentencePiece, UnknownId = unknownId, AddedBefore = addedBefore, AddedAfter = addedAfter, Pieces = tokens[VocabSize..],
    };

    public string Kind => "hf";
    public TextCuts Cuts { get; }
    /// <summary>The tokens text may encode to: those the file lists, less any pieces of characters past the model's rows.</summary>
    public int VocabSize { get; }
    public int? EndOfTextId { get; }
    public IReadOnlyList<int> EndOfGenerationIds { get; }
    public int? BosId { get; }

    /// <summary>The model's chat template from tokenizer_config.json (the "default" one when it
    /// lists several), or null.</summary>
    public string? ChatTemplate => TokenizerConfig?["chat_template"] switch
    {
        JsonArray list => Named(list, "default"),
        var value => Text(value, "chat_template", configFile),
    };

    /// <summary>The templates tokenizer_config.json names besides "default" where it lists several
    /// (Hermes 2 Pro's and 3's "tool_use", which transformers and vLLM render a chat with tools
    /// in; Command-R's "tool_use" and "rag"), in its order; empty where it lists none.</summary>
    public IReadOnlyList<(string Name, string Template)> NamedChatTemplates => TokenizerConfig?["chat_template"] is JsonArray list
        ? [.. list.OfType<JsonObject>().Select(t => (Name: Text(t["name"], "chat_template[].name", configFile), Template: Text(t["template"], "chat_template[].template", configFile)))
            .Where(t => t.Name is not (null or "default") && t.Template is not null).Select(t => (t.Name!, t.Template!))]
        : [];

    string? Named(JsonArray list, string name) =>
        list.OfType<JsonObject>().FirstOrDefault(t => Text(t["name"], "chat_template[].name", configFile) == name) is { } named
            ? Text(named["template"], "chat_template[].template", configFile)
            : null;

    /// <summary>bos_token / eos_token as text (tokenizer_config.json stores a string or an AddedToken object).</summary>
    public string? SpecialText(string key) => TokenizerConfig?[key] switch
    {
        JsonObject token => Text(token["content"], $"{key}.content", configFile),
        var value => Text(value, key, configFile),
    };

    int? SpecialId(string key) => SpecialText(key) is { } text && added.TryGetValue(text, out var id) ? id : null;

    public int[] Encode(string text) => EncodeText(text, start: true);

    public int[] Encode(string text, bool addSpecialTokens) =>
        addSpecialTokens && addedBefore.Length + addedAfter.Length > 0 ? [.. addedBefore, .. Encode(text), .. addedAfter] : Encode(text);

    public (IReadOnlyList<int> Before, IReadOnlyList<int> After) SpecialTokensAround => (addedBefore, addedAfter);

    public int[] EncodeContinuation(string text) => EncodeText(text, start: false);

    int[] EncodeText(string text, bool start)
    {
        var unspellable = new List<int>();
        var ids = EncodeText(text, start, unspellable);
        return unspellable.Count == 0 ? ids : throw CodePoints.OutsideVocabulary(unspellable.Distinct());
    }

    /// <summary>The text's tokens; the characters nothing spells are added to
    /// <paramref name="unspellable"/> (as often as they occur) and left out.</summary>
    int[] EncodeText(string text, bool start, List<int> unspellable)
    {
        try { return EncodeWords(text, start, unspellable); }
        catch (RegexMatchTimeoutException e)
        {
            throw new StratusUserException($"the tokenizer's pre-tokenizer pattern took more than {e.MatchTimeout.TotalSeconds:0.#} s to split this text into words " +
                "(a pattern that backtracks catastrophically); fix the Split regex in the model's tokenizer.json", e);
        }
    }

    int[] EncodeWords(string text, bool start, List<int> unspellable)
    {
        if (normalizeNfc) text = text.Normalize(NormalizationForm.FormC);
        var result = new List<int>();
        if (!sentencePiece)
        {
            int[] ids = [.. bpe.EncodeToIds(text)];
            if (ids.AsSpan().IndexOfAnyExceptInRange(0, VocabSize - 1) < 0) return ids;
            // Rarely, something has no token of the model's: the tokens' offsets say what.
            EncodePiece(text, result, unspellable);
            return [.. result];
        }
        // SentencePiece spells spaces "▁" and starts text with one (Llama's "add dummy prefix").
        // Added tokens (<s>, </s>) are taken out first and the prefix goes before each stretch of
        // text that starts the input or follows one, as Hugging Face's Prepend normalizer and
        // llama.cpp put it: "<s>the" is <s> ▁the, not ▁ <s> t he.
        var prefix = start;
        var at = 0;
        if (addedTokenPattern is not null)
        {
            foreach (var match in addedTokenPattern.EnumerateMatches(text))
            {
                if (match.Index > at) EncodePiece(Metaspace(text[at..match.Index], prefix), result, unspellable);
                result.Add(added[text.Substring(match.Index, match.Length)]);
                prefix = true;
                at = match.Index + match.Length;
            }
        }
        if (at < text.Length) EncodePiece(Metaspace(text[at..], prefix), result, unspellable);
        return [.. result];
    }

    static string Metaspace(string text, bool prefix) => (prefix ? "▁" : "") + text.Replace(' ', '▁');

    /// <summary>Text (SentencePiece's spelled with "▁" already) through the BPE model; what the
    /// model has no token for is spelled as Hugging Face's BPE spells it, or else noted in
    /// <paramref name="unspellable"/>.</summary>
    void EncodePiece(string text, List<int> result, List<int> unspellable)
    {
        foreach (var token in bpe.EncodeToTokens(text, out _))
        {
            if ((uint)token.Id < (uint)VocabSize) { result.Add(token.Id); continue; }
            var (offset, length) = token.Offset.GetOffsetAndLength(text.Length);
            var end = offset + Math.Max(length, 1);
            if (!sentencePiece)
            {
                // Byte-level BPE marks each byte it has no token for (with fuse_unk, a run of
                // them) at the character holding it, and a piece of a character past the model's
                // rows is no token of the model either: only the unk_token can stand there.
                if (unknownId is { } unknown) result.Add(unknown);
                else
                {
                    for (int i = offset, characterLength; i < end; i += characterLength)
                        unspellable.Add(CodePoints.At(text, i, out characterLength));
                }
                continue;
            }
            // SentencePiece marks each character it has no token for (with fuse_unk, a run of
            // them): byte_fallback spells a character whose bytes all have tokens with those,
            // the unk_token any other (one for a run of them with fuse_unk).
            var afterUnknown = false;
            for (int i = offset, characterLength; i < end; i += characterLength)
            {
                var codePoint = CodePoints.At(text, i, out characterLength);
                if (AddBytes(text.Substring(i, characterLength), result)) afterUnknown = false;
                else if (unknownId is { } unknown)
                {
                    if (!(afterUnknown && fuseUnknown)) result.Add(unknown);
                    afterUnknown = true;
                }
                else unspellable.Add(codePoint);
            }
        }
    }

    /// <summary>With byte_fallback, adds the byte tokens of a character when there is one for
    /// each of its bytes ("▁" is a space).</summary>
    bool AddBytes(string character, List<int> result)
    {
        if (byteTokens is null) return false;
        var bytes = Encoding.UTF8.GetBytes(character.Replace('▁', ' '));
        if (!Array.TrueForAll(bytes, b => byteTokens[b] is not null)) return false;
        foreach (var b in bytes) result.Add(byteTokens[b]!.Value);
        return true;
    }

    public IReadOnlyList<int> Unencodable(string text)
    {
        if (spellsEveryCharacter) return [];
        var unspellable = new List<int>();
        EncodeText(text, start: true, unspellable);
        // Distinct, in order of first occurrence, by a set: a text may hold a quarter of a million characters, none alike.
        return [.. unspellable.Distinct()];
    }

    // The tokens' bytes joined, then read as UTF-8: a character split across byte-level or
    // byte-fallback tokens comes out whole.
    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (var id in ids) bytes.AddRange(TokenBytes(id));
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    public byte[] TokenBytes(int id)
    {
        if ((uint)id >= (uint)VocabSize) throw new StratusUserException($"token id {id} is outside the vocabulary of {VocabSize}");
        var token = tokens[id];
        if (added.ContainsKey(token)) return Encoding.UTF8.GetBytes(token);
        if (sentencePiece)
        {
            // The "▁" before the first word is kept as a space, so decoded pieces of a stream
            // join without losing the spaces between them. A vocabulary token merely shaped like
            // a byte token ("<0xZZ>") is text, as Hugging Face's ByteFallback decoder reads it.
            return token.Length == 6 && token.StartsWith("<0x") && token.EndsWith('>')
                && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var value)
                ? [value] : Encoding.UTF8.GetBytes(token.Replace('▁', ' '));
        }
        return ByteLevel.Decode(token) ?? Encoding.UTF8.GetBytes(token);
    }

    public bool HasSpecialToken(string token) => added.ContainsKey(token);

    // As Hugging Face's decode(skip_special_tokens=True): added tokens not marked special are text.
    public bool IsSpecial(int id) => special.Contains(id);

    public JsonObject ToJson()
    {
        var json = new JsonObject { ["type"] = Kind, ["tokenizer"] = TokenizerJson, ["config"] = TokenizerConfig?.DeepClone() };
        if (VocabSize < tokens.Length) json[ModelVocabSizeField] = VocabSize;
        if (EndOfGenerationIds.Count > (EndOfTextId is null ? 0 : 1)) json[EndOfGenerationField] = new JsonArray([.. EndOfGenerationIds.Select(id => (JsonNode)id)]);
        return json;
    }

    /// <summary>What add_special_tokens puts before and after a text, as transformers decides it:
    /// tokenizer_config.json's add_bos_token / add_eos_token where it gives them (transformers
    /// then rebuilds the template from them, bos_token before, eos_token after), else the
    /// post_processor's template (Llama 2's [&lt;s&gt;, $A], Llama 3's [&lt;|begin_of_text|&gt;, $A];
    /// GPT-2's ByteLevel post-processor and none add nothing).</summary>
    (int[] Before, int[] After) ReadSpecialTokensAround(JsonNode? postProcessor)
    {
        var (before, after) = Template(postProcessor, "post_processor");
        if (Flag(TokenizerConfig?["add_bos_token"], "add_bos_token", configFile) is { } addBos) before = addBos ? [ConfiguredSpecial("bos_token", "add_bos_token")] : [];
        if (Flag(TokenizerConfig?["add_eos_token"], "add_eos_token", configFile) is { } addEos) after = addEos ? [ConfiguredSpecial("eos_token", "add_eos_token")] : [];
        return (before, after);
    }

    int ConfiguredSpecial(string key, string flag) => SpecialId(key)
        ?? throw new StratusUserException($"{configFile}: {flag} is true, but {key} ({(SpecialText(key) is { } text ? $"\"{text}\"" : "none")}) is not one of {tokenizerFile}'s added tokens");

    /// <summary>The special tokens a post-processor puts around a single text ("$A"). A
    /// Sequence applies its processors in turn, each template around what the last gave.</summary>
    (int[] Before, int[] After) Template(JsonNode? node, string field)
    {
        if (node is null) return ([], []);
        var processor = node as JsonObject ?? throw Malformed(field, "an object", node);
        switch (Text(processor["type"], $"{field}.type"))
        {
            case "ByteLevel":
                // Only trims offsets: no tokens.
                return ([], []);
            case "Sequence":
                var steps = processor["processors"] as JsonArray ?? throw Malformed($"{field}.processors", "a list", processor["processors"]);
                (int[] Before, int[] After) around = ([], []);
                for (var i = 0; i < steps.Count; i++)
                {
                    var (before, after) = Template(steps[i], $"{field}.processors[{i}]");
                    around = ([.. before, .. around.Before], [.. around.After, .. after]);
                }
                return around;
            case "TemplateProcessing":
                return SingleTemplate(processor, field);
            case var other:
                throw Unsupported($"its post_processor '{other}' is not supported (TemplateProcessing, ByteLevel and a Sequence of them are)");
        }
    }

    /// <summary>TemplateProcessing's "single" template: special tokens (each standing for the ids
    /// "special_tokens" lists under its name) around the text, the Sequence "A".</summary>
    (int[] Before, int[] After) SingleTemplate(JsonObject processor, string field)
    {
        var single = processor["single"] as JsonArray ?? throw Malformed($"{field}.single", "a list", processor["single"]);
        var specials = processor["special_tokens"] switch
        {
            null => new JsonObject(),
            JsonObject o => o,
            var other => throw Malformed($"{field}.special_tokens", "an object", other),
        };
        List<int> before = [], after = [];
        var text = false;
        for (var i = 0; i < single.Count; i++)
        {
            var where = $"{field}.single[{i}]";
            switch (single[i])
            {
                case JsonObject piece when piece["Sequence"] is JsonObject sequence:
                    if (Text(sequence["id"], $"{where}.Sequence.id") != "A" || text)
                        throw Unsupported($"its post_processor's single template must hold the text (Sequence \"A\") once; {where} is {Shown(piece)}");
                    text = true;
                    break;
                case JsonObject piece when piece["SpecialToken"] is JsonObject token:
                    var name = Text(token["id"], $"{where}.SpecialToken.id") ?? throw Malformed($"{where}.SpecialToken.id", "text", null);
                    // Quoted as written: JsonSerializer would escape the "<" of "<s>".
                    var entry = specials[name] as JsonObject
                        ?? throw new StratusUserException($"{tokenizerFile}: {where} names the special token \"{name}\", which {field}.special_tokens does not list");
                    var ids = entry["ids"] as JsonArray ?? throw Malformed($"{field}.special_tokens[\"{name}\"].ids", "a list", entry["ids"]);
                    for (var j = 0; j < ids.Count; j++)
                    {
                        var id = Id(ids[j], $"{field}.special_tokens[\"{name}\"].ids[{j}]");
                        if ((uint)id >= (uint)VocabSize)
                            throw new StratusUserException($"{tokenizerFile}: {field} adds token id {id}, outside the vocabulary of {VocabSize}");
                        (text ? after : before).Add(id);
                    }
                    break;
                default:
                    throw Malformed(where, "a SpecialToken or a Sequence", single[i]);
            }
        }
        if (!text) throw Unsupported("its post_processor's single template has no place for the text (Sequence \"A\")");
        return ([.. before], [.. after]);
    }

    bool IsByteLevel(JsonObject json) =>
        Types(json["pre_tokenizer"], "pre_tokenizer").Contains("ByteLevel") || Types(json["decoder"], "decoder").Contains("ByteLevel");

    /// <summary>Llama 2's legacy normalizer: Replace(" ", "▁") (with Prepend("▁")).</summary>
    bool ReplacesSpaces(JsonNode? normalizer, string field) => normalizer switch
    {
        JsonObject o when o["normalizers"] is JsonArray list => list.Select((n, i) => ReplacesSpaces(n, $"{field}.normalizers[{i}]")).Any(replaces => replaces),
        JsonObject o => Text(o["type"], $"{field}.type") == "Replace" && Text(o["content"], $"{field}.content") == "▁",
        _ => false,
    };

    IEnumerable<string> Types(JsonNode? node, string field) => node switch
    {
        JsonObject o when o["pretokenizers"] is JsonArray list => list.SelectMany((n, i) => Types(n, $"{field}.pretokenizers[{i}]")),
        JsonObject o when o["decoders"] is JsonArray list => list.SelectMany((n, i) => Types(n, $"{field}.decoders[{i}]")),
        JsonObject o when o["normalizers"] is JsonArray list => list.SelectMany((n, i) => Types(n, $"{field}.normalizers[{i}]")),
        JsonObject o => [Text(o["type"], $"{field}.type") ?? ""],
        _ => [],
    };

    /// <summary>The regex that splits text into words, from the pre_tokenizer: ByteLevel with
    /// its built-in GPT-2 regex, or a Split with its own regex (Llama 3, Qwen2), optionally
    /// after splitting digits one by one (SmolLM).</summary>
    string PreTokenizerPattern(JsonObject json)
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
            switch (Text(step["type"], "pre_tokenizer.type"))
            {
                case "ByteLevel":
                    if (Flag(step["add_prefix_space"], "pre_tokenizer.add_prefix_space") ?? false) throw Unsupported("its ByteLevel pre-tokenizer adds a prefix space");
                    if (Flag(step["use_regex"], "pre_tokenizer.use_regex") ?? true) pattern ??= BpeVocabulary.Gpt2Pattern;
                    break;
                case "Split":
                    pattern = pattern is null
                        ? (step["pattern"] is JsonObject split ? Text(split["Regex"], "pre_tokenizer.pattern.Regex") : null) ?? throw Unsupported("its Split pre-tokenizer has no regex")
                        : throw Unsupported("it has several Split pre-tokenizers");
                    break;
                case "Digits":
                    individualDigits = Flag(step["individual_digits"], "pre_tokenizer.individual_digits") ?? false;
                    break;
                default:
                    throw Unsupported($"its pre-tokenizer '{step["type"]}' is not supported");
            }
        }
        pattern ??= BpeVocabulary.Gpt2Pattern;
        return individualDigits ? @"\p{N}|" + pattern.Replace(@" ?\p{N}+|", "") : pattern;
    }

    /// <summary>A word of catastrophic backtracking (a Split regex such as "(a|aa)+b") would
    /// take minutes; words of the expressions tokenizers use match in microseconds.</summary>
    static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(1);

    /// <summary>The regex that splits text into words, which may come from the file: limited
    /// in time per word (see <see cref="Encode"/>), refused clearly when it is not a regex.</summary>
    Regex PreTokenizerRegex(string pattern)
    {
        try { return new Regex(pattern, RegexOptions.Compiled, MatchTimeout); }
        catch (ArgumentException e) { throw new StratusUserException($"{tokenizerFile}: the pre-tokenizer's pattern is not a regular expression .NET can use: {e.Message}", e); }
    }

    // model.vocab and model.merges are most of a tokenizer.json (a 40 MB file is nearly all
    // theirs): read as JsonNodes, a node for every token and merge, they took 150 MB more. They
    // are read from the tokenizer's JSON text instead, token by token.

    /// <summary>model.vocab: token → id (the node is known to be an object).</summary>
    Dictionary<string, int> Vocab()
    {
        var reader = ModelField("vocab");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var token = reader.GetString()!;
            reader.Read();
            var id = reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out var number) ? number
                : throw Malformed($"model.vocab[{JsonSerializer.Serialize(token)}]", "a whole number", JsonNode.Parse(ref reader));
            // A token listed twice would take its last id without a word (as Hugging Face's
            // loader does), leaving the other id no token: refused, as added_tokens' are.
            if (vocab.TryGetValue(token, out var earlier) && earlier != id)
                throw new StratusUserException($"{tokenizerFile}: model.vocab lists {JsonSerializer.Serialize(token)} twice, with ids {earlier} and {id}");
            vocab[token] = id;
        }
        return vocab;
    }

    /// <summary>model.merges as "left right" strings ([left, right] pairs, as newer files write
    /// them, joined so), read as they are enumerated: Microsoft.ML.Tokenizers keeps its own
    /// table of them, so a list of them all would only be garbage the size of the table.</summary>
    IEnumerable<string> Merges()
    {
        if (!hasMerges) yield break;
        var reader = ModelField("merges");
        // A reader cannot live across a yield: each merge is read by one made where the last stopped.
        var (offset, state) = ((int)reader.BytesConsumed, reader.CurrentState);
        for (var index = 0; NextMerge(ref offset, ref state, index) is { } merge; index++) yield return merge;
    }

    /// <summary>The merge at <paramref name="offset"/> of the text, or null at the list's end.</summary>
    string? NextMerge(ref int offset, ref JsonReaderState state, int index)
    {
        var reader = new Utf8JsonReader(tokenizerText.AsSpan(offset), isFinalBlock: true, state);
        if (!reader.Read() || reader.TokenType == JsonTokenType.EndArray) return null;
        // A copy at the merge's start, to show the whole of one that is refused.
        var start = reader;
        string? merge = null;
        if (reader.TokenType == JsonTokenType.String) merge = reader.GetString() is { } text && text.Contains(' ') ? text : null;
        else if (reader.TokenType == JsonTokenType.StartArray && reader.Read() && reader.TokenType == JsonTokenType.String)
        {
            var left = reader.GetString();
            if (reader.Read() && reader.TokenType == JsonTokenType.String)
            {
                var right = reader.GetString();
                if (reader.Read() && reader.TokenType == JsonTokenType.EndArray) merge = $"{left} {right}";
            }
        }
        if (merge is null) throw Malformed($"model.merges[{index}]", "two tokens (\"left right\" or [\"left\", \"right\"])", JsonNode.Parse(ref start));
        (offset, state) = (offset + (int)reader.BytesConsumed, reader.CurrentState);
        return merge;
    }

    /// <summary>A reader of the tokenizer's text at the start of model.<paramref name="field"/>,
    /// which the constructor has found there.</summary>
    Utf8JsonReader ModelField(string field)
    {
        var reader = new Utf8JsonReader(tokenizerText);
        reader.Read();
        EnterProperty(ref reader, "model");
        EnterProperty(ref reader, field);
        return reader;

        // From an object's start to the start of its property's value. The text was written from
        // a JsonObject, so each name is there once.
        static void EnterProperty(ref Utf8JsonReader reader, string name)
        {
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var found = reader.ValueTextEquals(name);
                reader.Read();
                if (found) return;
                reader.Skip();
            }
            throw new InvalidOperationException($"the tokenizer's text has no {name}");
        }
    }

    /// <summary>What the refusals name tokenizer.json and tokenizer_config.json by: the paths
    /// they were read from.</summary>
    readonly string tokenizerFile, configFile;

    // Fields read as the kind they must hold, absent or null reading as null: a cast would throw
    // an InvalidOperationException naming neither the file nor the field.
    string? Text(JsonNode? node, string field, string? file = null) =>
        node is null ? null : node is JsonValue value && value.TryGetValue<string>(out var text) ? text : throw Malformed(field, "text", node, file);

    bool? Flag(JsonNode? node, string field, string? file = null) =>
        node is null ? null : node is JsonValue value && value.TryGetValue<bool>(out var flag) ? flag : throw Malformed(field, "true or false", node, file);

    int Id(JsonNode? node, string field) => WholeNumber(node, field, tokenizerFile);

    static int WholeNumber(JsonNode? node, string field, string file) =>
        node is JsonValue value && value.TryGetValue<int>(out var id) ? id : throw MalformedIn(file, field, "a whole number", node);

    StratusUserException Malformed(string field, string kind, JsonNode? node, string? file = null) => MalformedIn(file ?? tokenizerFile, field, kind, node);

    static StratusUserException MalformedIn(string file, string field, string kind, JsonNode? node) =>
        new($"{file}: {field} must be {kind}, got {Shown(node)}");

    static string Shown(JsonNode? node)
    {
        var shown = node?.ToJsonString() ?? "null";
        return shown.Length > 60 ? shown[..60] + "..." : shown;
    }

    StratusUserException Unsupported(string why) => new($"{tokenizerFile}: the Hugging Face tokenizer cannot be used: {why}");
}
