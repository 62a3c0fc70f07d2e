// A blocklist's terms, found in a text at a cost that does not grow with their number. They were
// one regex, an alternation of (?<!W)term(?!W) branches, which .NET tries branch by branch at
// every position of the text: with 1,000 terms a clean 4 KB prompt took the 100 ms match timeout
// and was blocked as timed out (bench/README.md). Here the first word of every term is searched
// for at once (SearchValues: Aho-Corasick), and where one is found the text there is looked up
// among the terms it begins, by their whole text, with the regex's rules: whole words with a word boundary at each edge
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
    // The terms by their folded text; and by each first word, the lengths of the terms it begins,
    // longest first, so that where one is found each of them is one look-up of the text there,
    // however many terms share the word ("the a", "the b", ... 10,000 of them were each compared
    // at every "the" of a text: 256 KiB of "the " took 41 s).
    readonly FrozenDictionary<string, Term>.AlternateLookup<ReadOnlySpan<char>> termsByText;
    readonly FrozenDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> lengthsByFirstWord;
    // The lengths of the first words, longest first; and of the longest term.
    readonly int[] firstWordLengths;
    readonly int longest;

    /// <param name="terms">Each term in its matching form, trimmed, with its entry; one per
    /// Blocklist.EntryKey (terms with one key match the same texts).</param>
    public BlocklistTerms(IEnumerable<(string MatchingForm, string Entry)> terms)
    {
        var all = terms
            .Select(t => new Term(Blocklist.Fold(Blocklist.CanonicalTerm(t.MatchingForm)),
                !UnspacedScripts.Contains(t.MatchingForm[0]), !UnspacedScripts.Contains(t.MatchingForm[^1]), t.Entry))
            .ToList();
        termsByText = all.ToFrozenDictionary(t => t.Folded, StringComparer.Ordinal).GetAlternateLookup<ReadOnlySpan<char>>();
        var lengths = all
            .GroupBy(t => FirstWord(t.Folded), StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.Select(t => t.Folded.Length).Distinct().OrderDescending().ToArray(), StringComparer.Ordinal);
        lengthsByFirstWord = lengths.GetAlternateLookup<ReadOnlySpan<char>>();
        firstWords = SearchValues.Create([.. lengths.Keys], StringComparison.Ordinal);
        firstWordLengths = [.. lengths.Keys.Select(w => w.Length).Distinct().OrderDescending()];
        longest = all.Max(t => t.Folded.Length);
    }

    static string FirstWord(string folded) => folded.IndexOf(' ') is var space and >= 0 ? folded[..space] : folded;

    /// <summary>Adds each term's hits in <paramref name="text"/>'s matching form, leftmost first,
    /// none overlapping the one before it, as the regex's matches were.</summary>
    public void Collect(MatchingForm text, string label, List<SafetyMatch> found)
    {
        var read = text.Text;
        var buffer = ArrayPool<char>.Shared.Rent(read.Length + longest);
        try
        {
            var folded = buffer.AsSpan(0, read.Length);
            for (var i = 0; i < read.Length; i++) folded[i] = Blocklist.Fold(read[i]);
            var spaced = buffer.AsSpan(read.Length, longest);
            var at = 0;
            while (at < read.Length && folded[at..].IndexOfAny(firstWords) is var next and >= 0)
            {
                var start = at + next;
                if (Longest(read, folded, start, spaced) is ({ } term, var end))
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
            // The folded text is the user's: the process's next renter of the array must not read it.
            ArrayPool<char>.Shared.Return(buffer, clearArray: true);
        }
    }

    /// <summary>The longest term that matches at <paramref name="start"/>, and where its match
    /// ends: the folded text from there with each run of whitespace one space, as the terms are
    /// (written into <paramref name="spaced"/>), looked up at each length of a term that a first
    /// word found there begins.</summary>
    (Term? Term, int End) Longest(string read, ReadOnlySpan<char> folded, int start, Span<char> spaced)
    {
        (Term? Term, int End) longestHit = (null, 0);
        var count = 0;
        var end = start;
        foreach (var length in firstWordLengths)
        {
            if (start + length > folded.Length || !lengthsByFirstWord.TryGetValue(folded.Slice(start, length), out var termLengths)) continue;
            foreach (var termLength in termLengths)
            {
                if (longestHit.Term is not null && termLength <= longestHit.Term.Folded.Length) break;
                // The regex's \s+: a run of any length is the term's one space.
                for (; count < termLength && end < read.Length; end++)
                    if (!char.IsWhiteSpace(read[end])) spaced[count++] = folded[end];
                    else if (spaced[count - 1] != ' ') spaced[count++] = ' ';
                if (termLength > count || !termsByText.TryGetValue(spaced[..termLength], out var term)) continue;
                if (MatchEnd(term, read, start) is var matchEnd and > 0) { longestHit = (term, matchEnd); break; }
            }
        }
        return longestHit;
    }

    /// <summary>Where the term, whose folded text the text at <paramref name="start"/> has with
    /// each run of whitespace one space, ends there if its edges are word boundaries as it needs
    /// them, or 0.</summary>
    static int MatchEnd(Term term, string read, int start)
    {
        if (term.BoundaryBefore && start > 0 && IsWordCharacter(read[start - 1])) return 0;
        var end = start;
        foreach (var letter in term.Folded)
            if (letter != ' ') end++;
            else while (char.IsWhiteSpace(read[end])) end++;
        return term.BoundaryAfter && end < read.Length && IsWordCharacter(read[end]) ? 0 : end;
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
