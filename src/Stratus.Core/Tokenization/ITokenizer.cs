// One tokenizer interface for training, sampling and serving. A tokenizer is stored with the
// dataset (meta.json) and with every checkpoint (tokenizer.json), so a model always carries the
// exact vocabulary it was trained on.
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Tokenization;

public interface ITokenizer
{
    /// <summary>"char", "gpt2" or "hf" (a Hugging Face tokenizer.json); the key under which <see cref="TokenizerStore"/> saves it.</summary>
    string Kind { get; }
    int VocabSize { get; }

    /// <summary>End-of-text token, when the vocabulary has one.</summary>
    int? EndOfTextId { get; }

    /// <summary>The tokens that end a generation, as vLLM stops at them: the end-of-text token and
    /// any others the model lists as eos_token_id (an imported model's generation_config.json and
    /// config.json: Llama 3.1 Instruct's &lt;|end_of_text|&gt;, &lt;|eom_id|&gt;, &lt;|eot_id|&gt;).
    /// Built anew on each read: callers keep it for the generation.</summary>
    IReadOnlyList<int> EndOfGenerationIds => EndOfTextId is { } eot ? [eot] : [];

    /// <summary>Token ids for text as plain text, nothing added around it (Hugging Face's
    /// add_special_tokens=False): training data, and a model's own chat template's rendering,
    /// which writes bos_token itself. Throws <see cref="StratusUserException"/> naming any characters the
    /// vocabulary cannot spell.</summary>
    int[] Encode(string text);

    /// <summary>Token ids for text; with <paramref name="addSpecialTokens"/> the text is a whole
    /// input, a raw prompt as the model expects it, and gets the special tokens the model's
    /// tokenizer puts around one (Hugging Face's add_special_tokens=True, the default of its
    /// tokenizer(text), as vLLM's completions and llama.cpp encode a prompt: Llama's BOS before
    /// it). A tokenizer that puts none there (character-level as nanoGPT, GPT-2) encodes the text
    /// alone.</summary>
    int[] Encode(string text, bool addSpecialTokens) => Encode(text);

    /// <summary>The tokens <see cref="Encode(string, bool)"/> puts before and after the text when
    /// it adds special tokens (a Llama's BOS before it). They are no part of the text; a prepared
    /// training document gets them as a prompt does, a conversation those before it.</summary>
    (IReadOnlyList<int> Before, IReadOnlyList<int> After) SpecialTokensAround => ([], []);

    /// <summary>Tokens of text that continues other text, for a text encoded in pieces (a chat's
    /// turns): as <see cref="Encode"/>, without what a tokenizer puts only at a text's start
    /// (SentencePiece's "▁"), so the pieces give the tokens the whole text gets.</summary>
    int[] EncodeContinuation(string text) => Encode(text);

    /// <summary>Characters of text the vocabulary cannot spell, as code points (a lone UTF-16
    /// surrogate as its own value; <see cref="CodePoints.At"/>), each once, in the
    /// order they first occur (empty when all can be).</summary>
    IReadOnlyList<int> Unencodable(string text);

    string Decode(IEnumerable<int> ids);

    /// <summary>The bytes of one token's text. A byte-level token can hold part of a character,
    /// which decoding it alone turns into U+FFFD; its bytes say exactly what it is.</summary>
    byte[] TokenBytes(int id);

    /// <summary>Whether the vocabulary spells the text as one token (e.g. ChatML markers).</summary>
    bool HasSpecialToken(string token);

    /// <summary>Whether the token is a control token rather than text: a Hugging Face added token
    /// marked special (&lt;s&gt;, &lt;|im_start|&gt;, &lt;|eot_id|&gt;), GPT-2's &lt;|endoftext|&gt;.
    /// Generated text leaves them out unless asked to keep them (vLLM's skip_special_tokens).</summary>
    bool IsSpecial(int id);

    /// <summary>The tokenizer's own description, stored as tokenizer.json.</summary>
    JsonObject ToJson();

    /// <summary>Where a long text may be cut into pieces that, encoded one after the other, give
    /// the tokens of the whole text (so a large corpus can be encoded piece by piece, in parallel).</summary>
    TextCuts Cuts { get; }
}

public enum TextCuts
{
    /// <summary>Encode a document whole (SentencePiece puts a prefix before every text it
    /// encodes; other pre-tokenizer expressions are unproven).</summary>
    Nowhere,
    /// <summary>After a newline between two characters that are not white space: GPT-2's
    /// pre-tokenizer (and Llama 3's, Qwen2's) never joins across such a newline, and BPE merges
    /// only within pre-tokens.</summary>
    BetweenLines,
    /// <summary>Between any two characters (one token per character), never between the two
    /// halves of a surrogate pair.</summary>
    Anywhere,
}

public static class TokenizerStore
{
    public const string FileName = "tokenizer.json";

    public static ITokenizer FromJson(JsonObject json) => (string?)json["type"] switch
    {
        "char" => CharTokenizer.FromJson(json),
        "gpt2" => Gpt2Tokenizer.Instance,
        "hf" => HfTokenizer.FromJson(json),
        var other => throw new StratusUserException($"unknown tokenizer type '{other}' in tokenizer.json; expected 'char', 'gpt2' or 'hf'"),
    };

    public static ITokenizer Create(string kind, string? corpusForVocabulary = null) => kind switch
    {
        "char" => CharTokenizer.FromCorpus(corpusForVocabulary ?? throw new ArgumentNullException(nameof(corpusForVocabulary))),
        "gpt2" => Gpt2Tokenizer.Instance,
        _ => throw new StratusUserException($"unknown tokenizer '{kind}'; use --tokenizer char or --tokenizer gpt2"),
    };

    public static void Save(ITokenizer tokenizer, string directory) =>
        AtomicFile.WriteJson(Path.Combine(directory, FileName), tokenizer.ToJson());

    /// <summary>Stages the tokenizer's file in <paramref name="files"/>, to replace the folder's with the rest.</summary>
    public static void Save(ITokenizer tokenizer, string directory, StagedFiles files) =>
        files.WriteJson(Path.Combine(directory, FileName), tokenizer.ToJson());

    /// <summary>The sha256 of the tokenizer as its file holds it: two tokenizers that number text
    /// alike have the same.</summary>
    public static string Sha256(ITokenizer tokenizer) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Utf8(tokenizer)));

    /// <summary>The tokenizer's file as compact UTF-8 (the bytes <see cref="Sha256"/> hashes),
    /// written without a string between: a large vocabulary's is hundreds of megabytes as UTF-16.</summary>
    public static byte[] Utf8(ITokenizer tokenizer) => JsonSerializer.SerializeToUtf8Bytes(tokenizer.ToJson());

    public static ITokenizer Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        // Its callers have found a model's or dataset's other files there, and tokenizer.json is
        // its tokenizer's one copy (a dataset's meta.json names only the kind).
        if (!File.Exists(path)) throw new StratusUserException($"no {FileName} in {directory}; {Fix}");
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var tokenizer = Read(path);
        // A large vocabulary (a Llama 3's 128k tokens and 280k merges) is read through twice the
        // memory it keeps, garbage the runtime keeps for its heap after a collection: given back
        // here, before the model's weights are read, it is not part of the process's peak (`sample`
        // of a model with such a vocabulary: 295 MB instead of 341 MB).
        if (GC.GetAllocatedBytesForCurrentThread() - allocated > LargeLoad) GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        return tokenizer;
    }

    /// <summary>What to do about a tokenizer.json that is missing or damaged.</summary>
    const string Fix = "prepare the dataset again, or restore the model's files";

    /// <summary>Bytes allocated by a load past which its garbage is given back at once.</summary>
    const long LargeLoad = 64 << 20;

    /// <summary>The tokenizer in the file; its JSON tree is garbage on return.</summary>
    static ITokenizer Read(string path)
    {
        var json = JsonText.ParseFile(path, new JsonDocumentOptions { AllowDuplicateProperties = false }, hint: $"To fix it, {Fix}.") as JsonObject
            ?? throw new StratusUserException($"{path} is not a JSON object; {Fix}");
        try { return FromJson(json); }
        // A field of the wrong kind (JsonNode's typed reads throw this).
        catch (InvalidOperationException e) { throw new StratusUserException($"{path} is damaged (a field holds the wrong kind of value); {Fix}", e); }
        // The tokenizers' own refusals name a field, not which of a run's or dataset's files holds it.
        catch (StratusUserException e) { throw new StratusUserException($"{path}: {e.Message}", e); }
    }
}
