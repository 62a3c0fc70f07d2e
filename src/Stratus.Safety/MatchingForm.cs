// The form in which blocklists read text, so that a word written to look like a blocked one is
// one. Letters drawn in another form are read as the letters they show: full-width ("ｂｏｍｂ",
// as typed in a CJK input method's full-width mode), mathematical ("𝐛𝐨𝐦𝐛", "𝒷ℴ𝓂𝒷"), circled
// and squared ("ⓑⓞⓜⓑ", "🅑🅞🅜🅑") and the Latin ligatures ("ﬁ"); and a letter in the case
// the regex's IgnoreCase pairs with its other case (final ς as σ, Adlam small: CasePartner), so
// a term matches in any case whatever its script. Invisible characters are
// left out: format characters (zero-width space and joiners, soft hyphen, word joiner,
// bidirectional marks, tags), variation selectors, and the combining diacritics of the generic
// blocks (U+0300-U+036F and kin) written as characters of their own ("b̷o̷m̷b̷", Zalgo's heaps)
// unless Unicode composes one with its letter: a letter with an accent is a letter of its own
// however it is written, precomposed or decomposed ("año" and "an\u0303o" are not "ano": the
// composition, not the bare letter, is read; Compositions). The server runs with invariant
// globalization, where string.Normalize is a no-op, so the forms are mapped here rather than by
// NFKC, whose mappings these are (the negative circled and squared letters and the case
// partners aside, which NFKC leaves alone). Each character of the folded text knows the span of
// the original it came from, so a match is reported, held back and released as the text was
// written.
using System.Buffers;
using System.Globalization;
using System.Text;

namespace Stratus.Safety;

sealed class MatchingForm
{
    // Per character of Text, where in the text as written the character it came from starts;
    // null when Text is that text.
    readonly int[]? starts;

    MatchingForm(string text, string written, int[]? starts)
    {
        Text = text;
        Written = written;
        this.starts = starts;
    }

    public string Text { get; }

    /// <summary>The text as it was written, which a regex pattern also reads when the fold
    /// changed it (CompiledBlocklist.Find).</summary>
    public string Written { get; }

    /// <summary>Whether Text differs from what was written.</summary>
    public bool IsFolded => starts is not null;

    /// <summary>The span of the original text that Text[start..end] (not empty) came from, with
    /// what was left out after it up to the next character read (the marks on its last letter).
    /// So a match that touches the end of what was read touches the end of what was written.</summary>
    public (int Start, int End) Original(int start, int end)
    {
        if (starts is null) return (start, end);
        if (end >= Text.Length) return (starts[start], Written.Length);
        // Inside the letters of one character (a ligature's): that character ends it.
        var last = starts[end - 1];
        return (starts[start], starts[end] != last ? starts[end] : char.IsSurrogatePair(Written, last) ? last + 2 : last + 1);
    }

    /// <summary>The text's matching form. Its cost is on a streamed completion's path (every
    /// check of the guard's window): text that is its own form, most text, allocates nothing but
    /// this object, and a folded one its two arrays (the text and where each character came
    /// from), sized once.</summary>
    public static MatchingForm Of(string text)
    {
        var length = Read(text, [], []);
        if (length < 0) return new MatchingForm(text, text, null);
        var starts = new int[length];
        var folded = string.Create(length, (text, starts), static (chars, state) => Read(state.text, chars, state.starts));
        return new MatchingForm(folded, text, starts);
    }

    /// <summary>Reads <paramref name="text"/> in its matching form, writing it into
    /// <paramref name="chars"/> and where each of its characters came from into
    /// <paramref name="starts"/> when they are given (as long as that form); returns its length,
    /// or -1 when the text is its own form.</summary>
    static int Read(string text, Span<char> chars, Span<int> starts)
    {
        Span<char> letters = stackalloc char[3];
        var length = 0;
        var folded = false;
        // Whether a diacritic here may compose with the last character read: only marks have come
        // since (a format character, such as a zero-width space, parts them).
        var composable = false;
        for (var i = 0; i < text.Length;)
        {
            var start = i;
            scoped ReadOnlySpan<char> read;
            if (text[i] < '\u00A0' || Rune.DecodeFromUtf16(text.AsSpan(i), out var rune, out var runeLength) != OperationStatus.Done)
            {
                // Below U+00A0 nothing is folded; a lone surrogate (a stream cut inside a pair) is kept as it is.
                read = text.AsSpan(i++, 1);
            }
            else
            {
                i += runeLength;
                if (IsLeftOut(rune))
                {
                    // A diacritic that Unicode composes with its letter is part of it: the letter
                    // written decomposed is the letter written precomposed (n and U+0303 are ñ),
                    // which the form keeps. Others (an overlay ̷, Zalgo's heaps) are left out.
                    folded = true;
                    if (composable && !chars.IsEmpty && rune.IsBmp && Compositions.Of(chars[length - 1], (char)rune.Value) is var composed and not '\0')
                        chars[length - 1] = composed;
                    composable &= IsMark(rune);
                    continue;
                }
                var shown = Letters(rune, letters);
                folded |= shown > 0;
                read = shown > 0 ? letters[..shown] : text.AsSpan(start, runeLength);
            }
            composable = true;
            if (!chars.IsEmpty)
            {
                read.CopyTo(chars[length..]);
                starts.Slice(length, read.Length).Fill(start);
            }
            length += read.Length;
        }
        return folded ? length : -1;
    }

    /// <summary>Whether a character takes no room in the text a blocklist reads: one it leaves
    /// out, or a mark, which belongs to the letter before it. The streaming guard does not count
    /// them in its window (up to StreamingSafetyGuard.MaxRoomless), so a term padded with them
    /// is held back whole.</summary>
    public static bool TakesNoRoom(Rune rune) => IsLeftOut(rune) || IsMark(rune);

    static bool IsMark(Rune rune) => Rune.GetUnicodeCategory(rune) is UnicodeCategory.NonSpacingMark
        or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark;

    /// <summary>Format characters and variation selectors, which change how text is drawn but not
    /// what it says, and the generic combining diacritics. The marks of a script of its own (Thai
    /// vowels, Devanagari signs, the kana voicing marks) are kept: they spell.</summary>
    static bool IsLeftOut(Rune rune) =>
        Rune.GetUnicodeCategory(rune) == UnicodeCategory.Format
        || rune.Value is >= 0xFE00 and <= 0xFE0F or >= 0xE0100 and <= 0xE01EF
        || rune.Value is >= 0x0300 and <= 0x036F or >= 0x1AB0 and <= 0x1AFF or >= 0x1DC0 and <= 0x1DFF or >= 0x20D0 and <= 0x20FF or >= 0xFE20 and <= 0xFE2F;

    /// <summary>Writes the letters a character shows into <paramref name="letters"/> and returns
    /// how many; 0 when it is one of them itself.</summary>
    static int Letters(Rune rune, Span<char> letters)
    {
        var c = rune.Value;
        switch (c)
        {
            case >= 0xFF01 and <= 0xFF5E: // full-width ASCII
                letters[0] = (char)(c - 0xFEE0);
                return 1;
            case >= 0x24B6 and <= 0x24E9: // circled A-Z, a-z
                return Letter(c - 0x24B6, letters);
            case >= 0x1D400 and <= 0x1D6A3: // mathematical letters: styles of A-Z, a-z
                return Letter((c - 0x1D400) % 52, letters);
            case >= 0x2100 and <= 0x2149 when Letterlike[c - 0x2100] != '.': // the rest of those styles
                letters[0] = Letterlike[c - 0x2100];
                return 1;
            case >= 0x1D7CE and <= 0x1D7FF: // mathematical digits: styles of 0-9
                letters[0] = (char)('0' + (c - 0x1D7CE) % 10);
                return 1;
            case >= 0x1F130 and <= 0x1F149: // squared A-Z
                return Letter(c - 0x1F130, letters);
            case >= 0x1F150 and <= 0x1F169: // negative circled A-Z
                return Letter(c - 0x1F150, letters);
            case >= 0x1F170 and <= 0x1F189: // negative squared A-Z
                return Letter(c - 0x1F170, letters);
            case >= 0xFB00 and <= 0xFB06: // Latin ligatures
                var spelled = Ligatures[c - 0xFB00];
                spelled.CopyTo(letters);
                return spelled.Length;
            default:
                return CasePartner(rune, letters);
        }
    }

    /// <summary>A letter that the regex's IgnoreCase does not pair with its other case, as the
    /// one it does: .NET pairs each capital with one small letter, so the small letter's other
    /// forms (final ς, which is σ; the micro sign µ, which is μ; β's curled ϐ; ẛ) are read as
    /// that one, and it folds the case of UTF-16 characters only, so a letter past U+FFFF (Adlam,
    /// Deseret, Osage) is read small. Terms are read so too, so "κακός" blocks "ΚΑΚΌΣ" and a
    /// term's letters match in either case in every script, as Blocklist.EntryKey takes them.</summary>
    static int CasePartner(Rune rune, Span<char> letters)
    {
        var small = rune.IsBmp
            ? Rune.ToLowerInvariant(rune) == rune && Rune.ToUpperInvariant(rune) is var capital && capital != rune ? Rune.ToLowerInvariant(capital) : rune
            : Rune.ToLowerInvariant(rune);
        return small == rune ? 0 : small.EncodeToUtf16(letters);
    }

    static readonly string[] Ligatures = ["ff", "fi", "fl", "ffi", "ffl", "st", "st"];

    /// <summary>U+2100-U+2149 as the letters NFKC reads them ('.' where none): the letters of the
    /// mathematical alphabets that were encoded before them (script ℴ ℯ ℊ, italic ℎ, double-struck
    /// ℝ, fraktur ℭ), whose places in U+1D400-U+1D6A3 are left empty, so "𝒷ℴ𝓂𝒷" is how script
    /// "bomb" is written; and ℓ, the Kelvin sign, ⅆ.</summary>
    const string Letterlike = "..C.......gHHHh.IILl.N...PQRRR......Z...Z.K.BC.eEF.Mo....i...........Ddeij";

    /// <summary>The index-th of A-Z then a-z.</summary>
    static int Letter(int index, Span<char> letters)
    {
        letters[0] = (char)(index < 26 ? 'A' + index : 'a' + index - 26);
        return 1;
    }
}
