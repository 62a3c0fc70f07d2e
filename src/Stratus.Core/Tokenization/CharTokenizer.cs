// Character-level tokenizer (nanoGPT's shakespeare_char): the vocabulary is the sorted set of
// characters in the corpus, a character being one Unicode scalar value as in a Python str, so
// an emoji or a CJK extension character is one token, not its two UTF-16 halves.
using System.Text;
using System.Text.Json.Nodes;

namespace Stratus.Tokenization;

public sealed class CharTokenizer : ITokenizer
{
    // Stratus once made a token of each UTF-16 code unit, so a tokenizer.json of a corpus with
    // characters outside the Basic Multilingual Plane holds their halves as tokens, sorted apart.
    // This field marks a vocabulary of scalars. It is written only where the vocabulary has a
    // character outside the BMP, the one case where the two readings differ, so every other
    // tokenizer.json (and Checkpoint's comparison of a run's tokenizer with its dataset's) stays
    // as it was.
    const string UnitsField = "vocab_units";
    const string Scalars = "unicode_scalars";

    readonly string vocabulary;
    readonly string[] characters; // by id
    // Ids of the vocabulary's characters in the BMP by code unit (-1: none), up to its last one
    // there: Encode reads an array per character, where a hash lookup made it a fifth slower.
    // The rarer characters outside the BMP are looked up by code point.
    readonly int[] bmpIds;
    readonly Dictionary<int, int> supplementaryIds = [];

    CharTokenizer(string vocabulary)
    {
        if (vocabulary.Length == 0) throw new StratusUserException("a character vocabulary cannot be empty: the corpus has no text");
        this.vocabulary = vocabulary;
        var texts = new List<string>(vocabulary.Length);
        bmpIds = new int[vocabulary.Max(c => char.IsSurrogate(c) ? 0 : c) + 1];
        Array.Fill(bmpIds, -1);
        for (int i = 0, length; i < vocabulary.Length; i += length)
        {
            var codePoint = CodePoints.At(vocabulary, i, out length);
            if (!Rune.IsValid(codePoint)) throw new StratusUserException($"a character vocabulary cannot hold {CodePoints.Describe([codePoint])}: it is half of a character, not text");
            // A character listed twice would encode to its last id and decode from both: text
            // would not come back as its ids' characters were trained.
            if (TryGetId(codePoint, out var earlier))
                throw new StratusUserException($"the character vocabulary lists {CodePoints.Describe([codePoint])} twice (ids {earlier} and {texts.Count}); restore the file, or prepare the dataset again");
            if (length == 1) bmpIds[codePoint] = texts.Count;
            else supplementaryIds[codePoint] = texts.Count;
            texts.Add(vocabulary.Substring(i, length));
        }
        characters = [.. texts];
    }

    public static CharTokenizer FromCorpus(string corpus)
    {
        var characters = new HashSet<int>();
        for (int i = 0, length; i < corpus.Length; i += length) characters.Add(CodePoints.At(corpus, i, out length));
        return FromCharacters(characters);
    }

    /// <summary>The vocabulary of these characters (code points), in ascending order: for text
    /// within the BMP the order of the UTF-16 code units, so those vocabularies keep their ids.</summary>
    public static CharTokenizer FromCharacters(IEnumerable<int> codePoints)
    {
        var vocabulary = new StringBuilder();
        // A lone surrogate is appended as itself, for the constructor to refuse.
        foreach (var codePoint in codePoints.Order())
            vocabulary.Append(Rune.IsValid(codePoint) ? new Rune(codePoint).ToString() : ((char)codePoint).ToString());
        return new(vocabulary.ToString());
    }

    public static CharTokenizer FromJson(JsonObject json)
    {
        var vocabulary = (string?)json["vocab"] ?? throw new StratusUserException("char tokenizer.json has no 'vocab'");
        var units = (string?)json[UnitsField];
        if (units is not null && units != Scalars)
            throw new StratusUserException($"char tokenizer.json has {UnitsField} '{units}', which this Stratus does not know (it reads '{Scalars}')");
        if (units is null && vocabulary.Any(char.IsSurrogate))
            throw new StratusUserException("this character vocabulary was written by an older Stratus, which made two tokens of each character outside the Basic Multilingual Plane (an emoji, say); prepare the dataset again with `stratus prepare` and train the model again on it");
        return new(vocabulary);
    }

    public string Kind => "char";
    public TextCuts Cuts => TextCuts.Anywhere;
    public int VocabSize => characters.Length;
    public int? EndOfTextId => null;
    /// <summary>The vocabulary's characters in id order, as one string.</summary>
    public string Vocabulary => vocabulary;

    public int[] Encode(string text)
    {
        // A character outside the BMP is one token for two code units: the tokens never outnumber the units.
        var result = new int[text.Length];
        var count = 0;
        for (int i = 0, length; i < text.Length; i += length)
        {
            if (!TryGetId(CodePoints.At(text, i, out length), out result[count++]))
                throw CodePoints.OutsideVocabulary(Unencodable(text));
        }
        return count == result.Length ? result : result[..count];
    }

    bool TryGetId(int codePoint, out int id)
    {
        if ((uint)codePoint < (uint)bmpIds.Length) return (id = bmpIds[codePoint]) >= 0;
        return supplementaryIds.TryGetValue(codePoint, out id);
    }

    public IReadOnlyList<int> Unencodable(string text)
    {
        var missing = new List<int>();
        var seen = new HashSet<int>(); // a text may have a quarter of a million distinct characters: no list search per character
        for (int i = 0, length; i < text.Length; i += length)
        {
            var codePoint = CodePoints.At(text, i, out length);
            if (!TryGetId(codePoint, out _) && seen.Add(codePoint)) missing.Add(codePoint);
        }
        return missing;
    }

    public string Decode(IEnumerable<int> tokens)
    {
        var builder = new StringBuilder();
        foreach (var id in tokens)
        {
            if ((uint)id >= (uint)characters.Length) throw new StratusUserException($"token id {id} is outside the vocabulary of {characters.Length}");
            builder.Append(characters[id]);
        }
        return builder.ToString();
    }

    // Every token is a whole character, so its text has UTF-8 bytes of its own.
    public byte[] TokenBytes(int id) => Encoding.UTF8.GetBytes(Decode([id]));

    public bool HasSpecialToken(string token) => false;

    public bool IsSpecial(int id) => false;

    public JsonObject ToJson()
    {
        var json = new JsonObject { ["type"] = Kind, ["vocab"] = vocabulary };
        if (characters.Length != vocabulary.Length) json[UnitsField] = Scalars;
        return json;
    }
}
