// A blocklist's terms, found in a text in time linear in the text, whatever their number and
// lengths. They were one regex, an alternation of (?<!W)term(?!W) branches, which .NET tries branch
// by branch at every position of the text: with 1,000 terms a clean 4 KB prompt took the 100 ms
// match timeout and was blocked as timed out (bench/README.md). Its rules are kept: whole words
// with a word boundary at each edge but one in a script written without spaces, each run of
// whitespace between words matching the single space of the term, letters compared as the regex's
// IgnoreCase pairs them (Blocklist.Fold), and of the terms that match at the leftmost place the
// longest is the hit, the next hit searched for after it.
//
// The text is read once, from its end, by an Aho-Corasick automaton of the terms written
// backwards, which knows at each place the longest term that begins there; then once from its
// start, taking the leftmost of those, the next after its end, and so on. Read forwards, an
// automaton finds where terms end, and the longest that begins at a place could only be told by
// reading on past it as far as the longest term reaches, again from each place; looking the text
// up at each length of the terms a first word found there begins did as much (89 terms "a x",
// "a a y", ... of up to 199 characters: 0.5 s on 256 KiB of "a "). A term's edges
// are read as symbols of their own: the text has an "end of word" symbol before each character
// that is no word character (and at its end), and a term that needs a boundary after it ends
// with one, so what follows a term is read with it; the boundary before a term is asked of the
// character before the place, the same for every term that can begin there (their first
// letters are one letter, of one script). A term written in Latin is no hit on a word of another
// script that only its letters' other case draws as it (MatchingForm.ReadsLatinOnlyThroughCase).
using System.Buffers;
using System.Globalization;

namespace Stratus.Safety;

sealed class BlocklistTerms
{
    /// <param name="Folded">The term folded letter by letter (Blocklist.Fold), its words one space apart.</param>
    /// <param name="Entry">The term as the list has it (SafetyMatch.Entry).</param>
    /// <param name="WrittenInLatin">Whether its letters are Latin ones as written, so that a
    /// word of another script matches it only if it is drawn as it is (MatchingForm.ReadsLatinOnlyThroughCase).</param>
    sealed record Term(string Folded, bool BoundaryBefore, bool WrittenInLatin, string Entry);

    /// <summary>The symbol before a character that is no word character, and after the text: a
    /// term that needs a word boundary after it ends with it. Past every UTF-16 unit.</summary>
    const int WordEnd = char.MaxValue + 1;

    readonly Term[] terms;
    // The automaton's states, 0 the start: each state's transitions by symbol, keyed by state and
    // symbol together (Key); the state its failure leads to; and the longest term (its index + 1,
    // 0 for none) that ends, backwards, at the state: the longest that begins where the text is.
    readonly Dictionary<long, int> transitions;
    readonly int[] failure;
    readonly int[] longestTerm;

    /// <param name="terms">Each term in its matching form, trimmed, with its entry; one per
    /// Blocklist.EntryKey (terms with one key match the same texts).</param>
    public BlocklistTerms(IEnumerable<(string MatchingForm, string Entry)> terms)
    {
        var given = terms.ToList();
        this.terms = [.. given.Select(t => new Term(Blocklist.Fold(Blocklist.CanonicalTerm(t.MatchingForm)),
            !UnspacedScripts.Contains(t.MatchingForm[0]), MatchingForm.Of(t.Entry).IsWrittenInLatin(), t.Entry))];
        // The trie of the terms' symbols, each term written backwards, with each state's parent,
        // the symbol that leads to it and its depth, for the failures below.
        transitions = new Dictionary<long, int>(this.terms.Sum(t => t.Folded.Length + 2));
        List<int> ends = [0], parents = [0], symbolsTo = [0], depths = [0];
        var symbols = new List<int>();
        for (var index = 0; index < this.terms.Length; index++)
        {
            Symbols(this.terms[index].Folded, !UnspacedScripts.Contains(given[index].MatchingForm[^1]), symbols);
            var state = 0;
            for (var i = symbols.Count - 1; i >= 0; i--)
            {
                if (!transitions.TryGetValue(Key(state, symbols[i]), out var next))
                {
                    transitions.Add(Key(state, symbols[i]), next = ends.Count);
                    ends.Add(0);
                    parents.Add(state);
                    symbolsTo.Add(symbols[i]);
                    depths.Add(depths[state] + 1);
                }
                state = next;
            }
            // One term per entry key, so two end at one state only if they read alike: the first stays.
            if (ends[state] == 0) ends[state] = index + 1;
        }
        failure = new int[ends.Count];
        longestTerm = [.. ends];
        // Failures by depth, so that a state's failure and its longest term are known before its
        // children's: a state with no term of its own has that of its failure, the longest term
        // ending there being the longest of those that end at a suffix of what it read.
        var byDepth = Enumerable.Range(1, ends.Count - 1).OrderBy(s => depths[s]);
        foreach (var state in byDepth)
        {
            failure[state] = parents[state] == 0 ? 0 : Step(failure[parents[state]], symbolsTo[state]);
            if (longestTerm[state] == 0) longestTerm[state] = longestTerm[failure[state]];
        }
    }

    static readonly SearchValues<char> AsciiWordCharacters = SearchValues.Create("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz");

    static long Key(int state, int symbol) => ((long)state << 17) | (uint)symbol;

    /// <summary>The symbols of a term as the text has them around it: an end of word before each
    /// character that is no word character but the first (the space between words among them),
    /// and after the last when the term needs a boundary after it.</summary>
    static void Symbols(string folded, bool boundaryAfter, List<int> symbols)
    {
        symbols.Clear();
        for (var i = 0; i < folded.Length; i++)
        {
            if (i > 0 && !IsWordCharacter(folded[i])) symbols.Add(WordEnd);
            symbols.Add(folded[i]);
        }
        if (boundaryAfter) symbols.Add(WordEnd);
    }

    int Step(int state, int symbol)
    {
        while (true)
        {
            if (transitions.TryGetValue(Key(state, symbol), out var next)) return next;
            if (state == 0) return 0;
            state = failure[state];
        }
    }

    /// <summary>Adds each term's hits in <paramref name="text"/>'s matching form, leftmost first,
    /// none overlapping the one before it, as the regex's matches were.</summary>
    public void Collect(MatchingForm text, string label, List<SafetyMatch> found)
    {
        var read = text.Text;
        // Per place of the text, the longest term (index + 1) that begins there.
        var longest = ArrayPool<int>.Shared.Rent(read.Length);
        try
        {
            longest.AsSpan(0, read.Length).Clear();
            var state = Step(0, WordEnd);
            for (var at = read.Length - 1; at >= 0; at--)
            {
                var c = read[at];
                // A term ends, backwards, with an end of word or a letter of a script written
                // without spaces: in the start state the letters, digits and '_' of ASCII before
                // this place lead nowhere, and no term begins at them.
                if (state == 0 && char.IsAsciiLetterOrDigit(c) | c == '_')
                {
                    at = read.AsSpan(0, at).LastIndexOfAnyExcept(AsciiWordCharacters) + 1;
                    continue;
                }
                if (char.IsWhiteSpace(c))
                {
                    // The regex's \s+: a run of any length is the term's one space.
                    while (at > 0 && char.IsWhiteSpace(read[at - 1])) at--;
                    state = Step(Step(state, ' '), WordEnd);
                    continue;
                }
                state = Step(state, Blocklist.Fold(c));
                longest[at] = longestTerm[state];
                if (!IsWordCharacter(c)) state = Step(state, WordEnd);
            }
            for (var at = 0; at < read.Length && longest.AsSpan(at, read.Length - at).IndexOfAnyExcept(0) is var next and >= 0;)
            {
                var start = at + next;
                var term = terms[longest[start] - 1];
                // Every term that begins here has this boundary (their first letters are one), so none matches if this one does not.
                if (term.BoundaryBefore && start > 0 && IsWordCharacter(read[start - 1]))
                {
                    at = start + 1;
                    continue;
                }
                var end = End(term, read, start);
                if (term.WrittenInLatin && text.ReadsLatinOnlyThroughCase(start, end))
                {
                    at = start + 1;
                    continue;
                }
                var (from, to) = text.Original(start, end);
                found.Add(new SafetyMatch(from, to - from, label, term.Entry));
                at = end;
            }
        }
        finally
        {
            // Where terms begin in the user's text: the process's next renter of the array must not read it.
            ArrayPool<int>.Shared.Return(longest, clearArray: true);
        }
    }

    /// <summary>Where the term, which the text has at <paramref name="start"/> with each run of
    /// whitespace one space, ends there.</summary>
    static int End(Term term, string read, int start)
    {
        var end = start;
        foreach (var letter in term.Folded)
            if (letter != ' ') end++;
            else while (char.IsWhiteSpace(read[end])) end++;
        return end;
    }

    /// <summary>A character a word boundary is next to: a letter, digit or underscore in any script
    /// but one written without spaces, as the regex's [\p{L}\p{N}_] read it, one UTF-16 unit at a
    /// time (half a surrogate pair is none). \b is not it: it sees a boundary only next to a word
    /// character, so a term that begins or ends with punctuation ("c++") would never match; and a
    /// Latin term written against Chinese, Japanese or Thai text ("如何制造bomb的方法") has no word
    /// around it to be part of. A letter and the letter Blocklist.Fold reads it as are both word
    /// characters or both not, and of one script, so terms and text, read folded or not, agree.</summary>
    internal static bool IsWordCharacter(char c) =>
        (c == '_' || char.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
            or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
            or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber)
        && !UnspacedScripts.Contains(c);
}
