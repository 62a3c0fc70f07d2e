// The form in which blocklists read text, so that a word written to look like a blocked one is
// one. Letters drawn in another form are read as the letters they show: full-width ("ｂｏｍｂ",
// as typed in a CJK input method's full-width mode), mathematical ("𝐛𝐨𝐦𝐛", "𝒷ℴ𝓂𝒷"), circled
// and squared ("ⓑⓞⓜⓑ", "🅑🅞🅜🅑"), superscript and subscript ("ᵇᵒᵐᵇ", "ₐ", "²"), half-width
// ("ｶﾞｽ" is "ガス") and the Latin ligatures ("ﬁ"); letters of Cyrillic, Greek, Armenian and
// Cherokee that Unicode's confusables draw as a Latin letter as that letter ("bоmb" with a
// Cyrillic о, "ВОМВ": LookAlikes); and a letter in the case
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
using System.Collections.Frozen;
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
    /// from), sized once. The providers of one check share one (IMatchingFormReader).</summary>
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
        // Whether a diacritic here may compose with the last character read (last): only marks
        // have come since (a format character, such as a zero-width space, parts them, as it parts
        // them on screen; not the half-width ﾞ ﾟ, which are drawn beside the kana, not on it, so
        // "ｶ\u200Bﾞ" looks as "ｶﾞ" does). Kept here rather than read back from chars, which the
        // first pass, measuring, does not write.
        var composable = false;
        var last = '\0';
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
                var shown = IsLeftOut(rune) ? 0 : Letters(rune, letters);
                read = shown > 0 ? letters[..shown] : text.AsSpan(start, runeLength);
                // A diacritic or voicing mark that Unicode composes with its letter is part of it:
                // the letter written decomposed is the letter written precomposed (n and U+0303
                // are ñ, カ and U+3099 are ガ, as are half-width ｶﾞ), which the form keeps.
                if ((composable || rune.Value is 0xFF9E or 0xFF9F) && read.Length == 1 && Compositions.Of(last, read[0]) is var composed and not '\0')
                {
                    folded = true;
                    last = composed;
                    if (!chars.IsEmpty) chars[length - 1] = LookAlike(composed) is var latinComposed and not '\0' ? latinComposed : composed;
                    continue;
                }
                if (IsLeftOut(rune))
                {
                    // Others (an overlay ̷, Zalgo's heaps) are left out.
                    folded = true;
                    composable &= IsMark(rune);
                    continue;
                }
                folded |= shown > 0;
            }
            composable = true;
            // What a diacritic after it composes with: the letter itself, not its look-alike, so
            // that "у" U+0306 is "ў" as the precomposed letter is (LookAlike reads both alike).
            last = read[^1];
            if (read.Length == 1 && LookAlike(read[0]) is var latin and not '\0')
            {
                letters[0] = latin;
                read = letters[..1];
                folded = true;
            }
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
    /// is held back whole. The half-width voicing marks ﾞ ﾟ are letters by their category, but
    /// read as the marks U+3099 and U+309A that compose with the kana before them ("ｶﾞ" is one
    /// "ガ"), so they take none either: a term of voiced kana written half-width is twice as long
    /// as the term.</summary>
    public static bool TakesNoRoom(Rune rune) => IsLeftOut(rune) || IsMark(rune) || rune.Value is 0xFF9E or 0xFF9F;

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
            case >= 0x1D6A8 and <= 0x1D7C9: // mathematical Greek: styles of Α-Ω, α-ω and their symbols
                letters[0] = MathematicalGreek[(c - 0x1D6A8) % MathematicalGreek.Length];
                return 1;
            case 0x1D6A4 or 0x1D6A5: // mathematical italic dotless ı and ȷ
                letters[0] = c == 0x1D6A4 ? '\u0131' : '\u0237';
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
                return Compatibility.TryGetValue(c, out var shown) ? Copy(shown, letters) : CasePartner(rune, letters);
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

    /// <summary>One style of U+1D6A8-U+1D7C9, five of them in a row, as NFKC reads them.</summary>
    const string MathematicalGreek = "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡϴΣΤΥΦΧΨΩ∇αβγδεζηθικλμνξοπρςστυφχψω∂ϵϑϰϕϱϖ";

    /// <summary>The Latin letter a letter of another script is drawn as, or '\0': Cyrillic "о"
    /// as "o", so "bоmb" and "ВОМВ" are "bomb" (LookAlikes). Letters already read as another
    /// (final ς as σ, math Greek as Greek) are looked up as that one.</summary>
    static char LookAlike(char letter) => letter >= '\u0370' && LookAlikes.TryGetValue(letter, out var latin) ? latin : '\0';

    /// <summary>The letters of Cyrillic, Greek, Armenian and Cherokee that Unicode's confusables
    /// (UTS #39, confusables.txt of Unicode 14.0) draw as one ASCII letter, small letter then the
    /// letter, each the small letter of its case pair: a capital that its table draws as "l" is
    /// read as the "I" it is (the skeleton reads Latin I as l), and a case pair that the table
    /// draws as two letters (Greek Ν as N, ν as v; Υ as Y, υ as u) is left as it is. A blocklist
    /// matches letters in either case, so a pair is read as one letter in both of its cases: В
    /// is drawn as B, and so в is b, though it looks like a small capital. Its digits (З as 3),
    /// marks and letters drawn as something other than one Latin letter (Б, Ы, θ) are left out.</summary>
    const string LookAlikeTable =
        "\u037ai\u03b1a\u03b2b\u03b3y\u03b5e\u03b6z\u03b7h\u03b9i\u03bak\u03bcm\u03bfo\u03c1p\u03c3o\u03c4t\u03c7x\u03d2y" +
        "\u03ddf\u03f1p\u03f2c\u03f3j\u03fbm\u0430a\u0432b\u0433r\u0435e\u043ak\u043cm\u043dh\u043eo\u0440p\u0441c\u0442t" +
        "\u0443y\u0445x\u044cb\u0455s\u0456i\u0458j\u0461w\u0475v\u04afy\u04bbh\u04bde\u04cfi\u0501d\u050dg\u051bq\u051dw" +
        "\u0561w\u0563q\u0566q\u0570h\u0578n\u057cn\u057du\u057fs\u0581g\u0584f\u0585o\u13fbg\u13fcb\ua647i\uab70d\uab71r" +
        "\uab72t\uab75i\uab79y\uab7aa\uab7bj\uab7ce\uab81r\uab83w\uab87m\uab8bh\uab8dy\uab90g\uab92h\uab93z\uab9fb\uaba2r" +
        "\uaba4w\uaba5s\uaba9v\uabaas\uabael\uabafc\uabb2p\uabb6k\uabb7d";

    /// <summary>LookAlikeTable for every letter of each case pair (a capital as the capital
    /// Latin letter), and each precomposed letter of such a letter and a diacritic as the Latin
    /// letter with that diacritic where Unicode has one (ё as ë, ό as ó), as UTS #39's skeleton
    /// reads it decomposed: so a letter reads alike however it is written (Compositions).</summary>
    static readonly FrozenDictionary<char, char> LookAlikes = BuildLookAlikes();

    /// <summary>The letters of LookAlikeTable's case pairs that confusables.txt itself draws as
    /// the Latin letter, in their own case (В as B, not в; σ as o, not Σ): the others are read so
    /// only because their other case is (ReadsLatinOnlyThroughCase).</summary>
    const string DrawnAsLatinTable =
        "\u037a\u037f\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039f\u03a1\u03a4\u03a7\u03b1\u03b3\u03b9\u03bf\u03c1\u03c3" +
        "\u03d2\u03dc\u03f1\u03f2\u03f3\u03f9\u03fa\u0405\u0406\u0408\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422" +
        "\u0423\u0425\u042c\u0430\u0433\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u0461\u0474\u0475\u04ae\u04af\u04bb" +
        "\u04bd\u04c0\u04cf\u0501\u050c\u051b\u051c\u051d\u054d\u054f\u0555\u0561\u0563\u0566\u0570\u0578\u057c\u057d\u0581\u0584" +
        "\u0585\u13a0\u13a1\u13a2\u13a5\u13a9\u13aa\u13ab\u13ac\u13b3\u13b7\u13bb\u13bd\u13c0\u13c2\u13c3\u13cf\u13d2\u13d4\u13d5" +
        "\u13d9\u13da\u13de\u13df\u13e2\u13e6\u13e7\u13f3\u13f4\ua647\uab75\uab81\uab83\uab93\uaba9\uabaa\uabaf";

    /// <summary>DrawnAsLatinTable, with each precomposed letter of such a letter and a diacritic.</summary>
    static readonly FrozenSet<char> DrawnAsLatin = BuildDrawnAsLatin();

    static FrozenSet<char> BuildDrawnAsLatin()
    {
        var drawn = DrawnAsLatinTable.ToHashSet();
        foreach (var (letter, _, composed) in Compositions.All)
            if (drawn.Contains(letter) && LookAlikes.ContainsKey(composed)) drawn.Add(composed);
        return drawn.ToFrozenSet();
    }

    /// <summary>Whether Text[start..end] has no letter written in Latin and a letter read as a
    /// Latin one only because its other case looks like it: "вот" (в as b, т as t) is no more
    /// "bot" to the eye than "вода" is "boda", while "ВОТ" and "bот" are. A term written in Latin
    /// does not match there (BlocklistTerms): as UTS #39 has it, a word of one script is suspect
    /// only when it is drawn whole with letters that look like another's.</summary>
    public bool ReadsLatinOnlyThroughCase(int start, int end)
    {
        var throughCase = false;
        for (var i = start; i < end; i++)
            switch (LookAlikeAt(i))
            {
                case LookAlikeKind.WrittenInLatin: return false;
                case LookAlikeKind.ThroughCase: throughCase = true; break;
            }
        return throughCase;
    }

    /// <summary>Whether every letter of Text is a Latin letter written as one (a term such as
    /// "bomb", not "вода" or "bоmb").</summary>
    public bool IsWrittenInLatin()
    {
        for (var i = 0; i < Text.Length; i++)
            if (char.IsLetter(Text[i]) && LookAlikeAt(i) != LookAlikeKind.WrittenInLatin) return false;
        return true;
    }

    enum LookAlikeKind { NotALatinLetter, WrittenInLatin, Drawn, ThroughCase }

    /// <summary>How the letter Text[index] came to be: a Latin letter written in Latin (or in
    /// another form of it, full-width, mathematical), a letter of another script that looks like
    /// it, one whose other case does, or none of these.</summary>
    LookAlikeKind LookAlikeAt(int index)
    {
        var read = Text[index];
        if (!char.IsLetter(read) || !(read < '\u0250' || read is >= '\u1E00' and <= '\u1EFF')) return LookAlikeKind.NotALatinLetter;
        if (starts is null) return LookAlikeKind.WrittenInLatin;
        // The letter as written, read as the other forms are but not yet as a look-alike.
        Rune.DecodeFromUtf16(Written.AsSpan(starts[index]), out var rune, out _);
        Span<char> letters = stackalloc char[3];
        var shown = IsLeftOut(rune) ? 0 : Letters(rune, letters);
        var written = shown == 1 ? letters[0] : shown == 0 && rune.IsBmp ? (char)rune.Value : '\0';
        return written == '\0' || LookAlike(written) == '\0' ? LookAlikeKind.WrittenInLatin
            : DrawnAsLatin.Contains(written) ? LookAlikeKind.Drawn : LookAlikeKind.ThroughCase;
    }

    static FrozenDictionary<char, char> BuildLookAlikes()
    {
        var small = new Dictionary<char, char>();
        for (var i = 0; i < LookAlikeTable.Length; i += 2) small.Add(LookAlikeTable[i], LookAlikeTable[i + 1]);
        var all = new Dictionary<char, char>();
        for (var c = '\u0370'; c < char.MaxValue; c++)
            if (small.TryGetValue(char.ToLowerInvariant(c), out var latin))
                all[c] = char.ToLowerInvariant(c) == c ? latin : char.ToUpperInvariant(latin);
        // A precomposed letter's letter may itself be precomposed (ἄ is ἀ and an acute): until none is added.
        for (var added = true; added;)
        {
            added = false;
            foreach (var (letter, diacritic, composed) in Compositions.All)
                if (!all.ContainsKey(composed) && all.TryGetValue(letter, out var latin) && Compositions.Of(latin, diacritic) is var latinComposed and not '\0')
                {
                    all.Add(composed, latinComposed);
                    added = true;
                }
        }
        return all.ToFrozenDictionary();
    }

    static int Copy(string shown, Span<char> letters)
    {
        shown.CopyTo(letters);
        return shown.Length;
    }

    /// <summary>Superscript and subscript letters, digits and signs (ᵇᵒᵐᵇ, ₐ, ², ⁺) and the
    /// half-width forms (katakana ｶ, Hangul ﾡ, ￩) as the characters they show: Unicode's &lt;super&gt;,
    /// &lt;sub&gt; and &lt;narrow&gt; compatibility mappings (UCD 14.0, from Python's unicodedata), which
    /// NFKC applies, less the signs it spells as letters (™ ℠ as TM SM, 🅪 🅫 🅬 as MC MD MR): a
    /// sign is not part of a word, and read as letters it would join the word it is written
    /// against, so "bomb™" would not be the term "bomb". Their voicing marks ﾞ ﾟ are U+3099 and
    /// U+309A, which compose with the kana before them (Compositions). A half-width Hangul letter
    /// is read as the compatibility jamo a Korean keyboard types (ﾡ as ㄱ), one step of its
    /// mapping, where NFKC goes on to the conjoining jamo (ᄀ) that no one types.</summary>
    static readonly FrozenDictionary<int, string> Compatibility = ParseMappings(
        "00AA:0061 00B2:0032 00B3:0033 00B9:0031 00BA:006F 02B0:0068 02B1:0266 02B2:006A 02B3:0072 02B4:0279 " +
        "02B5:027B 02B6:0281 02B7:0077 02B8:0079 02E0:0263 02E1:006C 02E2:0073 02E3:0078 02E4:0295 10FC:10DC " +
        "1D2C:0041 1D2D:00C6 1D2E:0042 1D30:0044 1D31:0045 1D32:018E 1D33:0047 1D34:0048 1D35:0049 1D36:004A " +
        "1D37:004B 1D38:004C 1D39:004D 1D3A:004E 1D3C:004F 1D3D:0222 1D3E:0050 1D3F:0052 1D40:0054 1D41:0055 " +
        "1D42:0057 1D43:0061 1D44:0250 1D45:0251 1D46:1D02 1D47:0062 1D48:0064 1D49:0065 1D4A:0259 1D4B:025B " +
        "1D4C:025C 1D4D:0067 1D4F:006B 1D50:006D 1D51:014B 1D52:006F 1D53:0254 1D54:1D16 1D55:1D17 1D56:0070 " +
        "1D57:0074 1D58:0075 1D59:1D1D 1D5A:026F 1D5B:0076 1D5C:1D25 1D5D:03B2 1D5E:03B3 1D5F:03B4 1D60:03C6 " +
        "1D61:03C7 1D62:0069 1D63:0072 1D64:0075 1D65:0076 1D66:03B2 1D67:03B3 1D68:03C1 1D69:03C6 1D6A:03C7 " +
        "1D78:043D 1D9B:0252 1D9C:0063 1D9D:0255 1D9E:00F0 1D9F:025C 1DA0:0066 1DA1:025F 1DA2:0261 1DA3:0265 " +
        "1DA4:0268 1DA5:0269 1DA6:026A 1DA7:1D7B 1DA8:029D 1DA9:026D 1DAA:1D85 1DAB:029F 1DAC:0271 1DAD:0270 " +
        "1DAE:0272 1DAF:0273 1DB0:0274 1DB1:0275 1DB2:0278 1DB3:0282 1DB4:0283 1DB5:01AB 1DB6:0289 1DB7:028A " +
        "1DB8:1D1C 1DB9:028B 1DBA:028C 1DBB:007A 1DBC:0290 1DBD:0291 1DBE:0292 1DBF:03B8 2070:0030 2071:0069 " +
        "2074:0034 2075:0035 2076:0036 2077:0037 2078:0038 2079:0039 207A:002B 207B:2212 207C:003D 207D:0028 " +
        "207E:0029 207F:006E 2080:0030 2081:0031 2082:0032 2083:0033 2084:0034 2085:0035 2086:0036 2087:0037 " +
        "2088:0038 2089:0039 208A:002B 208B:2212 208C:003D 208D:0028 208E:0029 2090:0061 2091:0065 2092:006F " +
        "2093:0078 2094:0259 2095:0068 2096:006B 2097:006C 2098:006D 2099:006E 209A:0070 209B:0073 209C:0074 " +
        "2C7C:006A 2C7D:0056 2D6F:2D61 3192:4E00 3193:4E8C 3194:4E09 3195:56DB " +
        "3196:4E0A 3197:4E2D 3198:4E0B 3199:7532 319A:4E59 319B:4E19 319C:4E01 319D:5929 319E:5730 319F:4EBA " +
        "A69C:044A A69D:044C A770:A76F A7F2:0043 A7F3:0046 A7F4:0051 A7F8:0126 A7F9:0153 AB5C:A727 AB5D:AB37 " +
        "AB5E:026B AB5F:AB52 AB69:028D FF61:3002 FF62:300C FF63:300D FF64:3001 FF65:30FB FF66:30F2 FF67:30A1 " +
        "FF68:30A3 FF69:30A5 FF6A:30A7 FF6B:30A9 FF6C:30E3 FF6D:30E5 FF6E:30E7 FF6F:30C3 FF70:30FC FF71:30A2 " +
        "FF72:30A4 FF73:30A6 FF74:30A8 FF75:30AA FF76:30AB FF77:30AD FF78:30AF FF79:30B1 FF7A:30B3 FF7B:30B5 " +
        "FF7C:30B7 FF7D:30B9 FF7E:30BB FF7F:30BD FF80:30BF FF81:30C1 FF82:30C4 FF83:30C6 FF84:30C8 FF85:30CA " +
        "FF86:30CB FF87:30CC FF88:30CD FF89:30CE FF8A:30CF FF8B:30D2 FF8C:30D5 FF8D:30D8 FF8E:30DB FF8F:30DE " +
        "FF90:30DF FF91:30E0 FF92:30E1 FF93:30E2 FF94:30E4 FF95:30E6 FF96:30E8 FF97:30E9 FF98:30EA FF99:30EB " +
        "FF9A:30EC FF9B:30ED FF9C:30EF FF9D:30F3 FF9E:3099 FF9F:309A FFA0:3164 FFA1:3131 FFA2:3132 FFA3:3133 " +
        "FFA4:3134 FFA5:3135 FFA6:3136 FFA7:3137 FFA8:3138 FFA9:3139 FFAA:313A FFAB:313B FFAC:313C FFAD:313D " +
        "FFAE:313E FFAF:313F FFB0:3140 FFB1:3141 FFB2:3142 FFB3:3143 FFB4:3144 FFB5:3145 FFB6:3146 FFB7:3147 " +
        "FFB8:3148 FFB9:3149 FFBA:314A FFBB:314B FFBC:314C FFBD:314D FFBE:314E FFC2:314F FFC3:3150 FFC4:3151 " +
        "FFC5:3152 FFC6:3153 FFC7:3154 FFCA:3155 FFCB:3156 FFCC:3157 FFCD:3158 FFCE:3159 FFCF:315A FFD2:315B " +
        "FFD3:315C FFD4:315D FFD5:315E FFD6:315F FFD7:3160 FFDA:3161 FFDB:3162 FFDC:3163 FFE8:2502 FFE9:2190 " +
        "FFEA:2191 FFEB:2192 FFEC:2193 FFED:25A0 FFEE:25CB 10781:02D0 10782:02D1 10783:00E6 10784:0299 " +
        "10785:0253 10787:02A3 10788:AB66 10789:02A5 1078A:02A4 1078B:0256 1078C:0257 1078D:1D91 1078E:0258 " +
        "1078F:025E 10790:02A9 10791:0264 10792:0262 10793:0260 10794:029B 10795:0127 10796:029C 10797:0267 " +
        "10798:0284 10799:02AA 1079A:02AB 1079B:026C 1079C:1DF04 1079D:A78E 1079E:026E 1079F:1DF05 " +
        "107A0:028E 107A1:1DF06 107A2:00F8 107A3:0276 107A4:0277 107A5:0071 107A6:027A 107A7:1DF08 " +
        "107A8:027D 107A9:027E 107AA:0280 107AB:02A8 107AC:02A6 107AD:AB67 107AE:02A7 107AF:0288 107B0:2C71 " +
        "107B2:028F 107B3:02A1 107B4:02A2 107B5:0298 107B6:01C0 107B7:01C1 107B8:01C2 107B9:1DF0A " +
        "107BA:1DF1E ");

    /// <summary>The characters of the BMP read as an ASCII digit by the mapping above (², ₃),
    /// which the PII detector looks for as it looks for digits.</summary>
    internal static IEnumerable<char> DigitForms =>
        Compatibility.Where(e => e.Key <= char.MaxValue && e.Value is [var digit] && char.IsAsciiDigit(digit)).Select(e => (char)e.Key);

    /// <summary>"source:target" code points in hex, a target of several joined by '.', entries
    /// separated by spaces.</summary>
    static FrozenDictionary<int, string> ParseMappings(string table) =>
        table.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(entry => entry.Split(':')).ToFrozenDictionary(
            entry => int.Parse(entry[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture),
            entry => string.Concat(entry[1].Split('.').Select(point => char.ConvertFromUtf32(int.Parse(point, NumberStyles.HexNumber, CultureInfo.InvariantCulture)))));

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
