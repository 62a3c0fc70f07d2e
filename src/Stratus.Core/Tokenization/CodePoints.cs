// Text as Unicode characters (code points) rather than UTF-16 code units, and how the tokenizers
// name characters a vocabulary cannot spell: one place for the character tokenizer, Hugging Face
// tokenizers, dataset preparation and the server.
using System.Text;

namespace Stratus.Tokenization;

public static class CodePoints
{
    /// <summary>The character at <paramref name="index"/> as a code point, and how many UTF-16
    /// code units spell it: a Unicode scalar value, or the value of a lone surrogate (which a
    /// .NET string can hold, and no vocabulary does).</summary>
    public static int At(string text, int index, out int length)
    {
        var c = text[index];
        if (char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
        {
            length = 2;
            return char.ConvertToUtf32(c, text[index + 1]);
        }
        length = 1;
        return c;
    }

    /// <summary>The text of one code point, as Python's chr() gives it: a lone surrogate
    /// (U+D800 to U+DFFF) stays one, where <see cref="char.ConvertFromUtf32"/> refuses it.</summary>
    public static string Text(int codePoint) =>
        codePoint <= char.MaxValue ? ((char)codePoint).ToString() : char.ConvertFromUtf32(codePoint);

    /// <summary>How many characters (code points) the text holds, as Python's len counts a str
    /// and so vLLM's text offsets do: a surrogate pair is one character, as <see cref="At"/>
    /// reads it.</summary>
    public static int Count(ReadOnlySpan<char> text)
    {
        var count = text.Length;
        for (var i = 0; i + 1 < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && char.IsLowSurrogate(text[i + 1]))
            {
                count--;
                i++;
            }
        }
        return count;
    }

    /// <summary>The error for a text with these characters (code points) that a vocabulary cannot spell.</summary>
    public static StratusUserException OutsideVocabulary(IEnumerable<int> codePoints) =>
        new($"the text has characters outside this model's vocabulary: {Describe(codePoints)}");

    /// <summary>The characters by name, the first <see cref="NamedCharacters"/> of them: a 1 MB
    /// prompt may have a quarter of a million unknown ones, and the error must stay one line.</summary>
    public static string Describe(IEnumerable<int> codePoints)
    {
        var all = codePoints as IReadOnlyCollection<int> ?? [.. codePoints];
        var named = string.Join(", ", all.Take(NamedCharacters).Select(Describe));
        return all.Count <= NamedCharacters ? named : $"{named} and {all.Count - NamedCharacters:N0} more";
    }

    public const int NamedCharacters = 20;

    static string Describe(int codePoint)
    {
        if (!Rune.IsValid(codePoint)) return $"a lone UTF-16 surrogate U+{codePoint:X4}";
        var rune = new Rune(codePoint);
        // Invisible ones by number only: a format character (U+202E) would reverse the rest of the line.
        return Rune.IsControl(rune) || Rune.IsWhiteSpace(rune) || Rune.GetUnicodeCategory(rune) == System.Globalization.UnicodeCategory.Format
            ? $"U+{codePoint:X4}" : $"'{rune}' (U+{codePoint:X4})";
    }
}
