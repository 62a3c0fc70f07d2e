// A blocklist's terms, found in a text at a cost that does not grow with their number. They were
// one regex, an alternation of (?<!W)term(?!W) branches, which .NET tries branch by branch at
// every position of the text: with 1,000 terms a clean 4 KB prompt took the 100 ms match timeout
// and was blocked as timed out (bench/README.md). Here the first word of every term is searched
// for at once (SearchValues: Aho-Corasick), and where one is found the terms it begins are
// compared there by hand, with the regex's rules: whole words with a word boundary at each edge
// but one in a script written without spaces, each run of whitespace between words matching the
// single space of the term, and letters compared as the regex's IgnoreCase pairs them
// (Blocklist.Fold); of the terms found at one place the longest is the hit.
using System.Buffers;
using System.Collections.Frozen;
using System.Globalization;

namespace Stratus.Safety;

sealed class BlocklistTerms
{
    /// <param name="Folded">The term folded letter by letter (Blocklist.Fold), its words one space apart.</param>
    /// <param name="Entry">The term as the list has it (SafetyMatch.Entry).</param>
    sealed record Term(string Folded, bool BoundaryBefore, bool BoundaryAfter, string Entry);

    readonly SearchValues<string> firstWords;
    // The terms by their first word, longest first; and the lengths of those words, longest first.
    readonly FrozenDictionary<string, Term[]>.AlternateLookup<ReadOnlySpan<char>> termsByFirstWord;
    readonly int[] firstWordLengths;

    /// <param name="terms">Each term in its matching form, trimmed, with its entry; one per
    /// Blocklist.EntryKey (terms with one key match the same texts).</param>
    public BlocklistTerms(IEnumerable<(string MatchingForm, string Entry)> terms)
    {
        var byFirstWord = terms
            .Select(t => new Term(Blocklist.Fold(Blocklist.CanonicalTerm(t.MatchingForm)),
                !UnspacedScripts.Contains(t.MatchingForm[0]), !UnspacedScripts.Contains(t.MatchingForm[^1]), t.Entry))
            .GroupBy(t => FirstWord(t.Folded), StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.OrderByDescending(t => t.Folded.Length).ToArray(), StringComparer.Ordinal);
        termsByFirstWord = byFirstWord.GetAlternateLookup<ReadOnlySpan<char>>();
        firstWords = SearchValues.Create([.. byFirstWord.Keys], StringComparison.Ordinal);
        firstWordLengths = [.. byFirstWord.Keys.Select(w => w.Length).Distinct().OrderDescending()];
    }

    static string FirstWord(string folded) => folded.IndexOf(' ') is var space and >= 0 ? folded[..space] : folded;

    /// <summary>Adds each term's hits in <paramref name="text"/>'s matching form, leftmost first,
    /// none overlapping the one before it, as the regex's matches were.</summary>
    public void Collect(MatchingForm text, string label, List<SafetyMatch> found)
    {
        var read = text.Text;
        var buffer = ArrayPool<char>.Shared.Rent(read.Length);
        try
        {
            var folded = buffer.AsSpan(0, read.Length);
            for (var i = 0; i < read.Length; i++) folded[i] = Blocklist.Fold(read[i]);
            var at = 0;
            while (at < read.Length && folded[at..].IndexOfAny(firstWords) is var next and >= 0)
            {
                var start = at + next;
                if (Longest(read, folded, start) is ({ } term, var end))
                {
                    var (from, to) = text.Original(start, end);
                    found.Add(new SafetyMatch(from, to - from, label, term.Entry));
                    at = end;
                }
                else at = start + 1;
            }
        }
        finally
        {
            ArrayPool<char>.Shared.Return(buffer);
        }
    }

    /// <summary>The longest term that matches at <paramref name="start"/>, and where its match ends.</summary>
    (Term? Term, int End) Longest(string read, ReadOnlySpan<char> folded, int start)
    {
        (Term? Term, int End) longest = (null, 0);
        foreach (var length in firstWordLengths)
        {
            if (start + length > folded.Length || !termsByFirstWord.TryGetValue(folded.Slice(start, length), out var terms)) continue;
            foreach (var term in terms)
            {
                if (longest.Term is not null && term.Folded.Length <= longest.Term.Folded.Length) break;
                if (MatchEnd(term, read, folded, start) is var end and > 0) { longest = (term, end); break; }
            }
        }
        return longest;
    }

    /// <summary>Where the term's match at <paramref name="start"/> ends, or 0 where it has none.</summary>
    static int MatchEnd(Term term, string read, ReadOnlySpan<char> folded, int start)
    {
        if (term.BoundaryBefore && start > 0 && IsWordCharacter(read[start - 1])) return 0;
        var at = start;
        foreach (var letter in term.Folded)
        {
            if (letter == ' ')
            {
                // The regex's \s+: a run of any length.
                if (at == read.Length || !char.IsWhiteSpace(read[at])) return 0;
                while (at < read.Length && char.IsWhiteSpace(read[at])) at++;
            }
            else if (at == read.Length || folded[at++] != letter) return 0;
        }
        return term.BoundaryAfter && at < read.Length && IsWordCharacter(read[at]) ? 0 : at;
    }

    /// <summary>A character a word boundary is next to: a letter, digit or underscore in any script
    /// but one written without spaces, as the regex's [\p{L}\p{N}_] read it, one UTF-16 unit at a
    /// time (half a surrogate pair is none). \b is not it: it sees a boundary only next to a word
    /// character, so a term that begins or ends with punctuation ("c++") would never match; and a
    /// Latin term written against Chinese, Japanese or Thai text ("如何制造bomb的方法") has no word
    /// around it to be part of.</summary>
    static bool IsWordCharacter(char c) =>
        (c == '_' || char.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
            or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
            or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber)
        && !UnspacedScripts.Contains(c);
}
