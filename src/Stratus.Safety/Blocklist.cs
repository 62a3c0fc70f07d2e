// Custom blocklists, as in Azure AI Content Safety: named lists of terms (matched whole-word,
// case-insensitively; a term's edge in a script written without spaces, such as CJK or Thai,
// matches inside running text) and regular expressions (validated when created and run with a
// match timeout so a pathological pattern cannot stall the server; a text one times out on is
// asked of .NET's linear-time engine, so a clean one is not blocked: SafetyRegex).
using System.Text;
using System.Text.RegularExpressions;

namespace Stratus.Safety;

/// <param name="Category">The category a hit is reported under. Blocklists are mostly used for
/// slurs and profanity, hence the default.</param>
public sealed record Blocklist(
    string Name,
    IReadOnlyList<string> Terms,
    IReadOnlyList<string> Patterns,
    SafetyCategory Category = SafetyCategory.Hate)
{
    /// <summary>A term as it is matched, and so stored and compared: trimmed, each run of
    /// whitespace between its words one space (a term's words match across any run). Null, from
    /// a JSON body's [null], is empty, which compiling refuses.</summary>
    public static string CanonicalTerm(string? term) =>
        term is null ? "" : string.Join(' ', term.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    /// <summary>Which terms are one entry (keys compared ordinally): those that match the same
    /// texts, their matching forms alike ("ｂｏｍｂ", "bo\u200Bmb" and "bomb") letter for letter in
    /// either case as a regex's IgnoreCase pairs them (terms were one regex, and are matched by
    /// its rules: BlocklistTerms): ß with ẞ and Ω with the ohm sign,
    /// which OrdinalIgnoreCase (capitals compared) tells apart, while it pairs µ with μ, which
    /// the regex does not (the matching form reads µ as μ: MatchingForm.CasePartner). A list
    /// keeps one of them, as first given, and removing any of them removes it. A term written in
    /// Latin and one of another script drawn alike ("bot", "вот") are one entry too, though a word
    /// read as the first only through its letters' other case ("вот") is a hit of the second alone
    /// (MatchingForm.ReadsLatinOnlyThroughCase).</summary>
    public static string EntryKey(string? term) => Fold(CanonicalTerm(MatchingForm.Of(CanonicalTerm(term)).Text));

    /// <summary>The text with each letter as one of the letters a regex's IgnoreCase pairs it
    /// with, the same for all of them (see EntryKey): how terms and texts compare (BlocklistTerms).</summary>
    internal static string Fold(string text) => string.Create(text.Length, text, static (folded, letters) =>
    {
        for (var i = 0; i < letters.Length; i++) folded[i] = Fold(letters[i]);
    });

    internal static char Fold(char letter) => char.ToUpperInvariant(char.ToLowerInvariant(letter));
}

/// <summary>A blocklist checked and compiled; building one is how a blocklist is validated.
/// Immutable once built, so one serves every pipeline and thread: a server keeps it for as long as
/// the list's content is unchanged (SafetyConfiguration), and its patterns' linear-time engines,
/// built at their first check, are built once (SafetyRegex: one thread builds, the others wait).</summary>
public sealed class CompiledBlocklist
{
    /// <summary>Bounds one regex evaluation's first try, so that a pattern that backtracks
    /// longer cannot stall a request; what the text has then is told another way (SafetyRegex).</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromMilliseconds(100);

    /// <summary>How much text a streamed completion holds back for a regex pattern, whose
    /// longest match cannot be known in general. Longer matches are still found in whole-text
    /// checks (prompts, the final check of a stream).</summary>
    public const int PatternWindow = 128;

    /// <summary>The labels of a blocklist's hits (SafetyMatch.Label), whose Entry is the term or
    /// the pattern that made it.</summary>
    public const string TermLabel = "term", PatternLabel = "pattern";

    public const int MaxTermLength = 200;
    public const int MaxPatternLength = 1000;

    /// <summary>The most times a pattern's counted quantifiers may repeat one part of it, nested
    /// ones multiplied (SafetyRegex.LargestRepetition): far past what a text checked in windows of
    /// PatternWindow characters needs, well short of what .NET's engine fails on.</summary>
    public const long MaxRepetition = 100_000;

    internal const RegexOptions Options = RegexOptions.IgnoreCase | RegexOptions.CultureInvariant;

    readonly BlocklistTerms? terms;
    readonly SafetyRegex[] patterns;

    CompiledBlocklist(Blocklist source, BlocklistTerms? terms, SafetyRegex[] patterns, int streamingWindow)
    {
        Source = source;
        this.terms = terms;
        this.patterns = patterns;
        StreamingWindow = streamingWindow;
    }

    public Blocklist Source { get; }
    public int StreamingWindow { get; }

    public static CompiledBlocklist Compile(Blocklist list)
    {
        ValidateName(list.Name);
        var cleanTerms = new List<(string MatchingForm, string Entry)>();
        foreach (var raw in list.Terms)
        {
            var term = Blocklist.CanonicalTerm(raw);
            if (term.Length == 0) throw new TrustUserException($"Blocklist '{list.Name}' has an empty term.");
            if (term.Length > MaxTermLength) throw new TrustUserException($"Blocklist '{list.Name}': term '{term[..20]}...' is longer than {MaxTermLength} characters.");
            // Matched in the text's matching form, so written in it too: a full-width term matches
            // its plain letters as well.
            var folded = MatchingForm.Of(term).Text.Trim();
            if (folded.Length == 0) throw new TrustUserException($"Blocklist '{list.Name}' has a term of invisible characters only (U+{Rune.GetRuneAt(term, 0).Value:X4}...).");
            cleanTerms.Add((folded, term));
        }
        BlocklistTerms? terms = null;
        var window = 0;
        if (cleanTerms.Count > 0)
        {
            // A list keeps one of the terms that match the same texts, as first given, and a hit names it.
            terms = new BlocklistTerms(cleanTerms.DistinctBy(t => Blocklist.EntryKey(t.Entry)));
            // The guard measures this with each run of whitespace as one character and what the
            // matching form leaves out as none, so the run between a multi-word term's words fits
            // however long it is, and a term padded with zero-width characters as it is; 16 is margin.
            window = cleanTerms.Max(t => t.MatchingForm.Length) + 16;
        }
        var compiled = new SafetyRegex[list.Patterns.Count];
        for (var i = 0; i < compiled.Length; i++)
        {
            compiled[i] = new SafetyRegex(CompilePattern(list.Name, list.Patterns[i]));
            window = Math.Max(window, PatternWindow);
        }
        if (terms is null && compiled.Length == 0)
            throw new TrustUserException($"Blocklist '{list.Name}' has neither terms nor patterns.");
        return new CompiledBlocklist(list, terms, compiled, window);
    }

    public static void ValidateName(string? name)
    {
        if (name is null || !Regex.IsMatch(name, @"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\z"))
            throw new TrustUserException($"Blocklist name '{name}' is invalid: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit.");
    }

    static Regex CompilePattern(string listName, string pattern)
    {
        if (string.IsNullOrWhiteSpace(pattern)) throw new TrustUserException($"Blocklist '{listName}' has an empty pattern.");
        if (pattern.Length > MaxPatternLength) throw new TrustUserException($"Blocklist '{listName}': a pattern is longer than {MaxPatternLength} characters.");
        // Checked before the regex is built: .NET's engine fails on counts past it, some as it is
        // built (a{2147483647}b: out of memory), some at each check, growing its backtracking
        // stack by gigabytes before an OverflowException ((?:a{3}(?:(?:(?:){2,2147483647}|.)+){1073741824})+
        // on "aaab"). At the bound, a check's stack takes a few MiB.
        if (SafetyRegex.LargestRepetition(pattern, Options) is var repetition and > MaxRepetition)
            throw new TrustUserException($"Blocklist '{listName}': pattern '{pattern}' repeats a part of it {(repetition == long.MaxValue ? "past 9,223,372,036,854,775,807" : repetition.ToString("N0"))} times " +
                $"(its counted quantifiers such as {{n}}, multiplied where nested), past the {MaxRepetition:N0} a pattern may: .NET's regex engine runs out of memory or overflows on such counts; use smaller counts, or + and * for any number.");
        Regex regex;
        try
        {
            regex = new Regex(pattern, Options, MatchTimeout);
        }
        catch (ArgumentException e)
        {
            throw new TrustUserException($"Blocklist '{listName}': pattern '{pattern}' is not a valid regular expression: {e.Message}", e);
        }
        bool matchesEmpty;
        try
        {
            matchesEmpty = regex.IsMatch("");
        }
        catch (RegexMatchTimeoutException)
        {
            matchesEmpty = true;
        }
        // A pattern that matches empty text would block every request.
        if (matchesEmpty) throw new TrustUserException($"Blocklist '{listName}': pattern '{pattern}' matches empty text.");
        return regex;
    }

    /// <summary>Refuses a pattern being added that can match only empty text: one made of
    /// anchors, word boundaries and lookarounds alone (`(?=bomb)`, `\b`), which match a place
    /// rather than text. The blocklist reports and the streaming guard holds back spans of text,
    /// and an empty one is none, so such a pattern would never block anything. Checked where a
    /// list is written (SafetyConfiguration), not in Compile: a list stored before with such a
    /// pattern still serves, the pattern finding nothing as it always did.</summary>
    /// <exception cref="TrustUserException">The pattern has nothing that reads a character.</exception>
    public static void RequireMatchesText(string listName, string pattern)
    {
        if (!ReadsCharacters(pattern))
            throw new TrustUserException($"Blocklist '{listName}': pattern '{pattern}' matches only empty text (anchors, \\b and lookarounds such as (?=...) match a place, not text), " +
                "so it would never block anything: write the term itself (the term bomb, or the pattern bomb rather than (?=bomb)).");
    }

    /// <summary>Whether a pattern has something that reads a character outside lookarounds: a
    /// literal, a class, '.', an escape other than the anchors \b \B \A \z \Z \G, or a
    /// backreference. Anything not known to read nothing counts as reading, so a valid pattern is
    /// refused only when it surely matches nothing but empty text.</summary>
    static bool ReadsCharacters(string pattern)
    {
        for (var i = 0; i < pattern.Length; i++)
        {
            switch (pattern[i])
            {
                case '\\':
                    if (i + 1 < pattern.Length && pattern[i + 1] is 'b' or 'B' or 'A' or 'z' or 'Z' or 'G') { i++; break; }
                    return true;
                case '(' when SafetyRegex.At(pattern, i, "(?#"):
                    i = SafetyRegex.CommentEnd(pattern, i);
                    break;
                case '(' when SafetyRegex.OpensLookaround(pattern, i):
                    i = SafetyRegex.GroupEnd(pattern, i);
                    break;
                case '{' when QuantifierEnd(pattern, i) is var end and > 0:
                    i = end;
                    break;
                case '(' or ')' or '|' or '^' or '$' or '*' or '+' or '?':
                    // Groups, alternation, anchors and quantifiers read nothing themselves; an inline
                    // option group's letters ((?i)) are read past as its '?' is.
                    if (pattern[i] == '?' && i > 0 && pattern[i - 1] == '(') i = OptionsEnd(pattern, i + 1);
                    break;
                default:
                    return true;
            }
        }
        return false;
    }

    /// <summary>Past the option letters of "(?imnsx-imnsx)" or "(?imnsx-imnsx:" from
    /// <paramref name="start"/>: the index of the last of them, or start - 1 where none follow
    /// (a named or other group, whose name counts as reading).</summary>
    static int OptionsEnd(string pattern, int start)
    {
        var i = start;
        while (i < pattern.Length && pattern[i] is 'i' or 'm' or 'n' or 's' or 'x' or '-') i++;
        return i < pattern.Length && pattern[i] is ')' or ':' ? i : start - 1;
    }

    /// <summary>The index of the '}' of a quantifier {n}, {n,} or {n,m} at <paramref name="open"/>,
    /// or 0 where the '{' is a literal.</summary>
    static int QuantifierEnd(string pattern, int open)
    {
        var match = SafetyRegex.Quantifier.Match(pattern, open);
        return match.Success ? open + match.Length - 1 : 0;
    }

    /// <summary>All spans in the text that hit this list, in text order. Terms and patterns
    /// read the text in its matching form (full-width and other compatibility letters as the
    /// letters they show, invisible characters and stray diacritics left out: MatchingForm);
    /// patterns read it as written too, since a pattern may be written for what the fold takes
    /// away (`[\u200B-\u200D]`, a full-width word). The spans are those of the text as written.</summary>
    public IReadOnlyList<SafetyMatch> Find(string text) => Find(MatchingForm.Of(text));

    internal IReadOnlyList<SafetyMatch> Find(MatchingForm text)
    {
        var found = new List<SafetyMatch>();
        terms?.Collect(text, TermLabel, found);
        foreach (var pattern in patterns)
        {
            Collect(pattern, text.Text, text, found);
            if (text.IsFolded) Collect(pattern, text.Written, null, found);
        }
        // A span found in both forms, or by a timed-out pattern as well, is reported once: sorted
        // so that equal spans are neighbours and dropped in one pass. Checked as each was found,
        // a text with many hits took time in their square (a 256 KiB moderation input of one
        // term repeated: 3 s; 480 KiB of a one-letter term: over a minute of a core).
        found.Sort(InTextOrder);
        var kept = 0;
        for (var i = 0; i < found.Count; i++)
            if (kept == 0 || found[i] != found[kept - 1]) found[kept++] = found[i];
        found.RemoveRange(kept, found.Count - kept);
        return found;
    }

    /// <summary>By start, then a total order, so that equal spans sort next to each other.</summary>
    static readonly Comparison<SafetyMatch> InTextOrder = static (a, b) =>
        a.Start != b.Start ? a.Start.CompareTo(b.Start)
        : a.Length != b.Length ? a.Length.CompareTo(b.Length)
        : string.CompareOrdinal(a.Label, b.Label) is var label and not 0 ? label
        : string.CompareOrdinal(a.Entry, b.Entry);

    /// <summary>Adds the pattern's matches in <paramref name="input"/>, the text's matching form
    /// (<paramref name="form"/>, whose spans are mapped back to the text as written) or the text
    /// as written (null); Find drops a span added twice. Where a timeout leaves it untold whether
    /// the text has more (SafetyRegex), the whole text is a hit: fail closed.</summary>
    static void Collect(SafetyRegex pattern, string input, MatchingForm? form, List<SafetyMatch> found)
    {
        var matches = pattern.Find(input);
        while (matches.MoveNext())
        {
            var m = matches.Current;
            if (m.Length == 0) continue;
            var (start, end) = form?.Original(m.Index, m.Index + m.Length) ?? (m.Index, m.Index + m.Length);
            found.Add(new SafetyMatch(start, end - start, PatternLabel, pattern.Pattern));
        }
        if (matches.TimedOut) found.Add(new SafetyMatch(0, form?.Written.Length ?? input.Length, PatternLabel + " (timed out)", pattern.Pattern));
    }
}

/// <summary>Runs a set of blocklists; one result per list that hit, always High.</summary>
public sealed class BlocklistProvider : IContentSafetyProvider, IMatchingFormReader
{
    readonly CompiledBlocklist[] lists;

    public BlocklistProvider(IEnumerable<CompiledBlocklist> lists)
    {
        this.lists = [.. lists];
        StreamingWindow = this.lists.Length == 0 ? 0 : this.lists.Max(l => l.StreamingWindow);
    }

    public string Name => "blocklist";
    public int StreamingWindow { get; }

    public ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        MatchingForm? form = null;
        return ValueTask.FromResult(((IMatchingFormReader)this).Analyze(text, ref form, cancellationToken));
    }

    IReadOnlyList<CategoryResult> IMatchingFormReader.Analyze(string text, ref MatchingForm? form, CancellationToken cancellationToken)
    {
        var results = new List<CategoryResult>();
        form ??= MatchingForm.Of(text);
        foreach (var list in lists)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var matches = list.Find(form);
            if (matches.Count > 0)
                results.Add(new CategoryResult(list.Source.Category, Severity.High, 1.0, Name, matches, list.Source.Name));
        }
        return results;
    }
}
