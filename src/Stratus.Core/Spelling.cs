// "Did you mean": the name a user probably meant by one the program does not know (a config key,
// a verb, an option), so that the error names the fix.
namespace Stratus;

public static class Spelling
{
    /// <summary>The candidate fewest single-character edits away from <paramref name="word"/>, or
    /// null where even that one differs in more than a third of the word's characters (at least
    /// two): a word that far from every name is not a misspelling of one, and suggesting the
    /// least unlike name would only mislead.</summary>
    public static string? Nearest(string word, IEnumerable<string> candidates)
    {
        var nearest = candidates.Select(candidate => (Candidate: candidate, Distance: Distance(word, candidate))).MinBy(c => c.Distance);
        return nearest.Candidate is not null && nearest.Distance <= Math.Max(2, word.Length / 3) ? nearest.Candidate : null;
    }

    /// <summary>Levenshtein distance: insertions, deletions and substitutions.</summary>
    static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++) d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
            for (var j = 1; j <= b.Length; j++)
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
        return d[a.Length, b.Length];
    }
}
