// Upper, lower and title case as Python's str methods give them, which Jinja's filters call:
// Unicode's full mappings ('ß' upper is "SS", 'İ' lower is "i̇"), final sigma ('ΣΑΣ' lower is
// "σας"), and is-lower / is-upper by cased characters. .NET's invariant mappings are one character
// to one; JinjaCaseTables.cs holds the characters that map to several, or title-case otherwise.
using System.Globalization;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    static partial class Values
    {
        /// <summary>Python's str.upper(), which |upper calls.</summary>
        public static string Upper(string s)
        {
            if (System.Text.Ascii.IsValid(s)) return s.ToUpperInvariant();
            var text = new StringBuilder(s.Length);
            for (var i = 0; i < s.Length;)
            {
                var c = CodePoints.At(s, i, out var length);
                if (CaseTables.Upper.TryGetValue(c, out var several)) text.Append(several);
                else AppendMapped(text, s, i, length, upper: true);
                i += length;
            }
            return text.ToString();
        }

        /// <summary>Python's str.lower(), which |lower and the case-insensitive |sort, |unique,
        /// |dictsort, |min and |max use: 'İ' (U+0130) becomes "i̇" (i and a combining dot), and a
        /// capital sigma that ends a word 'ς', as Unicode's full mapping has them.</summary>
        public static string Lower(string s)
        {
            if (!s.AsSpan().ContainsAny('\u0130', '\u03a3')) return s.ToLowerInvariant();
            return AppendLower(new StringBuilder(s.Length + 1), s, 0).ToString();
        }

        /// <summary>The characters of <paramref name="s"/> from <paramref name="from"/> on in lower
        /// case, a sigma's place in a word read in the whole text, as Python reads it.</summary>
        static StringBuilder AppendLower(StringBuilder text, string s, int from)
        {
            for (var i = from; i < s.Length;)
            {
                CodePoints.At(s, i, out var length);
                AppendLower(text, s, i, length);
                i += length;
            }
            return text;
        }

        static void AppendLower(StringBuilder text, string s, int i, int length)
        {
            if (s[i] == '\u0130') text.Append("i\u0307");
            else if (s[i] == '\u03a3') text.Append(FinalSigma(s, i) ? 'ς' : 'σ');
            else AppendMapped(text, s, i, length, upper: false);
        }

        /// <summary>A character's title case, Python's: its upper case but for the digraphs
        /// ('ǆ' is 'ǅ'), ligatures ('ß' is "Ss") and the like.</summary>
        static string Title(string s, int i, int length)
        {
            var c = CodePoints.At(s, i, out _);
            return CaseTables.Title.TryGetValue(c, out var title) ? title : Upper(s.Substring(i, length));
        }

        /// <summary>Python's str.capitalize(), which |capitalize calls: the first character in
        /// title case, the rest in lower case.</summary>
        static string Capitalize(string s)
        {
            if (s.Length == 0) return "";
            CodePoints.At(s, 0, out var length);
            return AppendLower(new StringBuilder(s.Length + 1).Append(Title(s, 0, length)), s, length).ToString();
        }

        /// <summary>Jinja's |title: each word (after a space, '-', '(', '{', '[' or '&lt;') its
        /// first character in upper case (not title case: 'ß' is "SS") and the rest in lower case,
        /// unlike Python's str.title(), which capitalizes after an apostrophe too.</summary>
        static string TitleFilter(string s) =>
            string.Concat(System.Text.RegularExpressions.Regex.Split(s, @"([-\s({\[<]+)").Where(w => w.Length > 0).Select(w =>
            {
                CodePoints.At(w, 0, out var length);
                return Upper(w[..length]) + Lower(w[length..]);
            }));

        /// <summary>Python's str.title(): a character after a cased one in lower case, any other in title case.</summary>
        static string TitleMethod(string s)
        {
            var text = new StringBuilder(s.Length);
            var afterCased = false;
            for (var i = 0; i < s.Length;)
            {
                var c = CodePoints.At(s, i, out var length);
                if (afterCased) AppendLower(text, s, i, length);
                else text.Append(Title(s, i, length));
                afterCased = Cased(c);
                i += length;
            }
            return text.ToString();
        }

        /// <summary>Python's str.islower(): a lower case character, and none in upper or title case ('ß' and 'ᵐ' are lower).</summary>
        static bool IsLower(string s) => HasCase(s, upper: false);

        /// <summary>Python's str.isupper(): an upper case character, and none in lower or title case ('ß' is not upper, 'Ⓐ' is).</summary>
        static bool IsUpper(string s) => HasCase(s, upper: true);

        static bool HasCase(string s, bool upper)
        {
            var found = false;
            for (var i = 0; i < s.Length;)
            {
                var c = CodePoints.At(s, i, out var length);
                if ((upper ? LowerCase(c) : UpperCase(c)) || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter) return false;
                found |= upper ? UpperCase(c) : LowerCase(c);
                i += length;
            }
            return found;
        }

        /// <summary>Unicode's Lowercase property: a lowercase letter, or a character such as 'ᵐ' or 'ª' (Other_Lowercase).</summary>
        static bool LowerCase(int c) =>
            CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.LowercaseLetter || InRuns(CaseTables.OtherLowercase, c);

        /// <summary>Unicode's Uppercase property: an uppercase letter, or a character such as 'Ⅻ' or 'Ⓐ' (Other_Uppercase).</summary>
        static bool UpperCase(int c) =>
            CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.UppercaseLetter || InRuns(CaseTables.OtherUppercase, c);

        static bool InRuns((int First, int Last)[] runs, int c)
        {
            foreach (var (first, last) in runs)
            {
                if (c < first) return false;
                if (c <= last) return true;
            }
            return false;
        }

        /// <summary>One character (a UTF-16 unit or a surrogate pair) in .NET's invariant upper or lower case.</summary>
        static void AppendMapped(StringBuilder text, string s, int i, int length, bool upper)
        {
            if (length == 1) text.Append(upper ? char.ToUpperInvariant(s[i]) : char.ToLowerInvariant(s[i]));
            else
            {
                var rune = new Rune(s[i], s[i + 1]);
                Span<char> units = stackalloc char[2];
                text.Append(units[..(upper ? Rune.ToUpperInvariant(rune) : Rune.ToLowerInvariant(rune)).EncodeToUtf16(units)]);
            }
        }

        /// <summary>Unicode's Final_Sigma, as Python tests it: a cased character before the sigma
        /// and none after it, case-ignorable ones (marks, apostrophes) skipped.</summary>
        static bool FinalSigma(string s, int at)
        {
            var before = at - 1;
            while (before >= 0 && CaseIgnorable(s[before])) before--;
            if (before < 0 || !Cased(CodePoints.At(s, char.IsLowSurrogate(s[before]) && before > 0 ? before - 1 : before, out _))) return false;
            var after = at + 1;
            while (after < s.Length && CaseIgnorable(s[after])) after++;
            return after == s.Length || !Cased(CodePoints.At(s, after, out _));
        }

        /// <summary>Unicode's Cased property, as Python's str.title() and final sigma read it: upper
        /// or lower case (modifier letters such as 'ᵐ' too, and 'Ⓐ'), or a title case letter.</summary>
        static bool Cased(int c) =>
            LowerCase(c) || UpperCase(c) || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter;

        /// <summary>Unicode's Case_Ignorable: marks, format characters, modifiers, and the
        /// apostrophes and dots that may sit inside a word.</summary>
        static bool CaseIgnorable(char c) =>
            c is '\'' or '.' or ':' or '\u00b7' or '\u0387' or '\u05f4' or '\u2018' or '\u2019' or '\u2024' or '\u2027' or '\ufe13' or '\ufe52' or '\ufe55' or '\uff07' or '\uff0e' or '\uff1a'
            || CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
    }
}
