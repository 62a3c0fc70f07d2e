// Character-level tokenizer (nanoGPT's shakespeare_char): the vocabulary is the sorted set of
// characters in the corpus, so a token is exactly one UTF-16 code unit.
using System.Text;
using System.Text.Json.Nodes;

namespace Stratus.Tokenization;

public sealed class CharTokenizer : ITokenizer
{
    readonly string vocabulary;
    readonly Dictionary<char, int> ids;

    CharTokenizer(string vocabulary)
    {
        if (vocabulary.Length == 0) throw new StratusUserException("a character vocabulary cannot be empty: the corpus has no text");
        this.vocabulary = vocabulary;
        ids = new Dictionary<char, int>(vocabulary.Length);
        for (var i = 0; i < vocabulary.Length; i++) ids[vocabulary[i]] = i;
    }

    public static CharTokenizer FromCorpus(string corpus) =>
        new(new string(corpus.Distinct().Order().ToArray()));

    public static CharTokenizer FromJson(JsonObject json) =>
        new((string?)json["vocab"] ?? throw new StratusUserException("char tokenizer.json has no 'vocab'"));

    public string Kind => "char";
    public TextCuts Cuts => TextCuts.Anywhere;
    public int VocabSize => vocabulary.Length;
    public int? EndOfTextId => null;
    public string Vocabulary => vocabulary;

    public int[] Encode(string text)
    {
        var result = new int[text.Length];
        for (var i = 0; i < text.Length; i++)
        {
            if (!ids.TryGetValue(text[i], out result[i]))
                throw new StratusUserException($"the text has characters outside this model's vocabulary: {Describe(Unencodable(text))}");
        }
        return result;
    }

    public IReadOnlyList<char> Unencodable(string text) => text.Where(c => !ids.ContainsKey(c)).Distinct().ToArray();

    public string Decode(IEnumerable<int> tokens)
    {
        var builder = new StringBuilder();
        foreach (var id in tokens)
        {
            if ((uint)id >= (uint)vocabulary.Length) throw new StratusUserException($"token id {id} is outside the vocabulary of {vocabulary.Length}");
            builder.Append(vocabulary[id]);
        }
        return builder.ToString();
    }

    // A character outside the Basic Multilingual Plane is two tokens (its UTF-16 halves), and a
    // half has no UTF-8 of its own: it comes out as U+FFFD's bytes.
    public byte[] TokenBytes(int id) => Encoding.UTF8.GetBytes(Decode([id]));

    public bool HasSpecialToken(string token) => false;

    public JsonObject ToJson() => new() { ["type"] = Kind, ["vocab"] = vocabulary };

    public static string Describe(IEnumerable<char> characters) =>
        string.Join(", ", characters.Select(c => char.IsControl(c) || char.IsWhiteSpace(c) ? $"U+{(int)c:X4}" : $"'{c}' (U+{(int)c:X4})"));
}
