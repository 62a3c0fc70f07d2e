// A content-safety regex (a blocklist pattern, a PII candidate, a prompt-injection signal) whose
// verdict does not depend on how busy the machine was, and whose common case, a text without a
// match, costs little. The spans the reports, redaction and the streaming guard are built on are
// those of .NET's backtracking engine (leftmost-first), bounded by a wall-clock match timeout so
// that a pathological pattern or text cannot stall a request. The text is first asked of .NET's
// linear-time engine (RegexOptions.NonBacktracking), whose time is linear in the text, whether it
// has a match at all: none, and it is clean without the backtracking engine reading it (most texts
// are clean: `stratus bench safety` measured PII and the prompt-injection signals 3-10x cheaper on
// clean text of 4-64 KiB; a streaming window of 128 characters with a match, where both engines
// read it, 1-5 µs dearer); one, and the backtracking engine finds the spans. Its timeout also
// fires on an ordinary text when the cores are busy (measured: one PII check in 3.47 million at
// load 19, a clean request refused), so a timeout is not taken as the answer: the rest of the
// text is asked of the linear-time engine again, and only where that has a match does the
// backtracking engine go on from where it stopped, with RetryTimeout. The caller fails closed only
// where that times out too, or where the linear-time engine cannot run the pattern
// (backreferences, atomic groups, conditionals, free-spacing mode, the options RightToLeft and
// ECMAScript, an automaton too large to build: nothing tells then; the backtracking engine alone
// reads such a pattern's texts) or could not tell within RetryTimeout itself.
//
// That engine runs the pattern with its lookarounds left out, which it cannot run: they only
// narrow where a match may be, so a text without a match of what is left has none of the pattern
// ((?<![\w-])[0-9]... as [0-9]...: every PII pattern has them). It is not asked for the spans:
// they are those of the pattern without its lookarounds, and it drops a match that a later one
// follows (dotnet/runtime#130176; the guard then released a settled hit). It is built at a
// pattern's first check, once: 0.1-1.3 MiB and 1-10 ms per pattern (a case-insensitive one with
// \b costs the most), where the backtracking engine takes a few KiB and 0.05 ms; the built-in
// patterns are built once a process (PiiDetector's, PromptInjectionDetector's default signals),
// an operator's blocklist patterns once per content of their list, which a server's pipelines
// share while it is unchanged (SafetyConfiguration; docs/trust.md).
using System.Text;
using System.Text.RegularExpressions;

namespace Stratus.Safety;

sealed class SafetyRegex
{
    /// <summary>Bounds the linear-time engine's answer and the backtracking engine's second try,
    /// which only a text that the first try timed out on and that has a match (or may, as far as
    /// the pattern without its lookarounds tells) waits for: ten times the blocklists' first
    /// bound, five times PII's and the prompt-injection signals'.</summary>
    public static readonly TimeSpan RetryTimeout = TimeSpan.FromSeconds(1);

    readonly Regex backtracking;
    readonly TimeProvider clock;
    // The other engines, each built at the first check that needs it, once: checks that come
    // together wait for one build (LazyInitializer, under `building`), and a build that failed
    // (out of memory) is tried again at the next check, which Lazy would have failed with the
    // same exception for as long as the pattern lived. Null where the linear-time engine cannot
    // run the pattern.
    Regex? linear, patient;
    bool linearBuilt;
    object? building;
    readonly Func<Regex?> buildLinear;
    readonly Func<Regex> buildPatient;

    /// <param name="backtracking">The pattern on the backtracking engine, its MatchTimeout the
    /// bound of the first try.</param>
    /// <param name="clock">Measures each try as a whole (Matches); tests set it.</param>
    /// <param name="build">Builds the other engines from a pattern, its options and timeout (new
    /// Regex); tests make it fail.</param>
    public SafetyRegex(Regex backtracking, TimeProvider? clock = null, Func<string, RegexOptions, TimeSpan, Regex>? build = null)
    {
        this.backtracking = backtracking;
        this.clock = clock ?? TimeProvider.System;
        build ??= static (pattern, options, timeout) => new Regex(pattern, options, timeout);
        buildLinear = () => Linear(backtracking, build);
        buildPatient = () => build(backtracking.ToString(), backtracking.Options, RetryTimeout);
    }

    Regex? LinearEngine() => LazyInitializer.EnsureInitialized(ref linear, ref linearBuilt, ref building, buildLinear);

    /// <summary>The backtracking engine of the second try, bounded by RetryTimeout.</summary>
    Regex PatientEngine() => LazyInitializer.EnsureInitialized(ref patient, ref building, buildPatient);

    /// <summary>The pattern as written.</summary>
    public string Pattern => backtracking.ToString();

    /// <summary>The pattern's matches in <paramref name="text"/>, in order, as the backtracking
    /// engine finds them; read with MoveNext and Current, then TimedOut.</summary>
    public Matches Find(string text) => new(this, text);

    /// <summary>Whether the text has a match from <paramref name="startat"/> on, as far as the
    /// linear-time engine tells; null where it cannot run the pattern or times out itself.</summary>
    bool? HasMatch(string text, int startat)
    {
        if (LinearEngine() is not { } engine) return null;
        try { return engine.IsMatch(text, startat); }
        catch (RegexMatchTimeoutException) { return null; }
    }

    static Regex? Linear(Regex backtracking, Func<string, RegexOptions, TimeSpan, Regex> build)
    {
        if (WithoutLookarounds(backtracking.ToString(), backtracking.Options) is not { } pattern) return null;
        try { return build(pattern, backtracking.Options | RegexOptions.NonBacktracking, RetryTimeout); }
        // A construct it cannot run, or an automaton too large (counted repetitions such as
        // a{100000}); options it refuses (RightToLeft, ECMAScript); a backreference to a
        // group that only a lookaround held.
        catch (Exception e) when (e is NotSupportedException or ArgumentException) { return null; }
    }

    /// <summary>The pattern with each lookaround an empty group, so that a quantifier after one
    /// still quantifies nothing; null in free-spacing mode, whose '#' comments may hold anything.
    /// It is read as .NET's parser reads it (RegexParser): a lookaround misplaced would leave out
    /// what is not one, and the linear-time engine would clear a text that has a match.</summary>
    internal static string? WithoutLookarounds(string pattern, RegexOptions options)
    {
        if (FreeSpacing(pattern, options)) return null;
        StringBuilder? without = null;
        for (var i = 0; i < pattern.Length; i++)
        {
            var end = pattern[i] switch
            {
                '\\' => EscapeEnd(pattern, i),
                '[' => ClassEnd(pattern, i),
                '(' when At(pattern, i, "(?#") => CommentEnd(pattern, i),
                _ => i,
            };
            if (OpensLookaround(pattern, i))
            {
                (without ??= new StringBuilder(pattern, 0, i, pattern.Length)).Append("(?:)");
                i = GroupEnd(pattern, i);
                continue;
            }
            without?.Append(pattern, i, end - i + 1);
            i = end;
        }
        return without?.ToString() ?? pattern;
    }

    /// <summary>Whether the pattern is read in free-spacing mode, all of it or a part: inline
    /// options are read in either case, so (?X) is free-spacing mode too.</summary>
    static bool FreeSpacing(string pattern, RegexOptions options) =>
        (options & RegexOptions.IgnorePatternWhitespace) != 0 || Regex.IsMatch(pattern, @"\(\?[imns-]*x", RegexOptions.IgnoreCase);

    /// <summary>The most times one part of the pattern is repeated by counted quantifiers ({n},
    /// {n,}, {n,m}, each by its larger bound) nested in one another: (?:a{3}){1000} repeats 'a'
    /// 3,000 times; 1 where it has none. Saturates at long.MaxValue. In free-spacing mode, the
    /// blanks and '#' comments between a part and its quantifier are read past, as .NET does.</summary>
    internal static long LargestRepetition(string pattern, RegexOptions options)
    {
        var freeSpacing = FreeSpacing(pattern, options);
        var largest = 1L;
        // A ')' that closes no group ends a sequence early; .NET refuses such a pattern anyway.
        for (var i = 0; i < pattern.Length;) largest = Math.Max(largest, Repetition(pattern, freeSpacing, ref i));
        return largest;
    }

    /// <summary>The largest repetition in the sequence from <paramref name="i"/> to the ')' that
    /// closes its group (left just past it) or the end of the pattern.</summary>
    static long Repetition(string pattern, bool freeSpacing, ref int i)
    {
        var largest = 1L;
        while (i < pattern.Length)
        {
            var part = 1L;
            switch (pattern[i])
            {
                case ')':
                    i++;
                    return largest;
                case '(' when At(pattern, i, "(?#"):
                    i = CommentEnd(pattern, i) + 1;
                    continue;
                case '#' when freeSpacing:
                    i = LineEnd(pattern, i) + 1;
                    continue;
                case '(':
                    i++;
                    part = Repetition(pattern, freeSpacing, ref i);
                    break;
                case '\\':
                    i = EscapeEnd(pattern, i) + 1;
                    break;
                case '[':
                    i = ClassEnd(pattern, i) + 1;
                    break;
                default:
                    i++;
                    break;
            }
            var next = freeSpacing ? PastBlanks(pattern, i) : i;
            if (Count(pattern, next) is ({ } count, var end))
            {
                part = part > long.MaxValue / count ? long.MaxValue : part * count;
                i = end + 1;
            }
            largest = Math.Max(largest, part);
        }
        return largest;
    }

    /// <summary>A quantifier {n}, {n,} or {n,m}; a '{' that does not begin one is a literal.</summary>
    internal static readonly Regex Quantifier = new(@"\G\{([0-9]+)(?:,([0-9]*))?\}", RegexOptions.CultureInvariant);

    /// <summary>The larger bound (at least 1) of the quantifier at <paramref name="open"/> and the
    /// index of its '}'; null where none begins there.</summary>
    static (long? Count, int End) Count(string pattern, int open)
    {
        if (open >= pattern.Length || pattern[open] != '{' || Quantifier.Match(pattern, open) is not { Success: true } quantifier) return (null, open);
        var count = Math.Max(Bound(quantifier.Groups[1].Value), Bound(quantifier.Groups[2].Value));
        return (Math.Max(count, 1), open + quantifier.Length - 1);
    }

    static long Bound(string digits) => digits.Length == 0 ? 0 : long.TryParse(digits, out var bound) ? bound : long.MaxValue;

    /// <summary>The index of the last character of the '#' comment at <paramref name="hash"/>:
    /// the end of its line or of the pattern.</summary>
    static int LineEnd(string pattern, int hash) => pattern.IndexOf('\n', hash) is var end and >= 0 ? end : pattern.Length - 1;

    /// <summary>The index of the first character from <paramref name="i"/> that is neither a
    /// blank nor in a '#' comment, as free-spacing mode reads them.</summary>
    static int PastBlanks(string pattern, int i)
    {
        while (i < pattern.Length && (char.IsWhiteSpace(pattern[i]) || pattern[i] == '#'))
            i = pattern[i] == '#' ? LineEnd(pattern, i) + 1 : i + 1;
        return i;
    }

    /// <summary>Whether a lookahead or lookbehind opens at <paramref name="i"/>.</summary>
    internal static bool OpensLookaround(string pattern, int i) =>
        At(pattern, i, "(?=") || At(pattern, i, "(?!") || At(pattern, i, "(?<=") || At(pattern, i, "(?<!");

    internal static bool At(string pattern, int i, string construct) => string.CompareOrdinal(pattern, i, construct, 0, construct.Length) == 0;

    /// <summary>The index of the ')' that closes the group opened at <paramref name="open"/>,
    /// past escapes and character classes, or the end of the pattern.</summary>
    internal static int GroupEnd(string pattern, int open)
    {
        var depth = 0;
        for (var i = open; i < pattern.Length; i++)
        {
            switch (pattern[i])
            {
                case '\\': i = EscapeEnd(pattern, i); break;
                case '[': i = ClassEnd(pattern, i); break;
                case '(' when At(pattern, i, "(?#"): i = CommentEnd(pattern, i); break;
                case '(': depth++; break;
                case ')' when --depth == 0: return i;
            }
        }
        return pattern.Length;
    }

    /// <summary>The index of the last character of the escape at <paramref name="backslash"/>,
    /// as far as it can hold what the readers here look for: a control character takes the
    /// character after its 'c' whatever it is (\c[ is ESC, \c] and \c\ are characters too), a
    /// property its braces (whose name may hold a '-', which in a class would read as a range),
    /// a hexadecimal or octal code its digits; or the end of the pattern.</summary>
    static int EscapeEnd(string pattern, int backslash)
    {
        var i = backslash + 1;
        if (i >= pattern.Length) return pattern.Length - 1;
        var end = pattern[i] switch
        {
            'c' => i + 1,
            'p' or 'P' when i + 1 < pattern.Length && pattern[i + 1] == '{' => pattern.IndexOf('}', i) is var close and >= 0 ? close : pattern.Length,
            'x' => i + 2,
            'u' => i + 4,
            >= '0' and <= '7' => OctalEnd(pattern, i),
            _ => i,
        };
        return Math.Min(end, pattern.Length - 1);
    }

    /// <summary>The last of up to three octal digits from <paramref name="first"/>.</summary>
    static int OctalEnd(string pattern, int first)
    {
        var i = first;
        while (i + 1 < pattern.Length && i - first < 2 && pattern[i + 1] is >= '0' and <= '7') i++;
        return i;
    }

    /// <summary>The index of the ']' that ends the character class opened at <paramref name="open"/>,
    /// or the end of the pattern. As RegexParser.ScanCharClass: a ']' first in it (after '^') is a
    /// literal; "-[" subtracts a class (which may start with ']' too) unless it ends a range
    /// ("[+--[x]" is '+' to '-', '[' and 'x').</summary>
    static int ClassEnd(string pattern, int open)
    {
        var i = open + 1;
        if (i < pattern.Length && pattern[i] == '^') i++;
        var inRange = false;
        for (var first = true; i < pattern.Length; i++, first = false)
        {
            var c = pattern[i];
            var escaped = c == '\\';
            if (c == ']' && !first) return i;
            if (escaped)
            {
                var letter = i + 1 < pattern.Length ? pattern[i + 1] : '\0';
                i = EscapeEnd(pattern, i);
                // A shorthand class or an escaped '-' starts no range (a '-' may end one).
                if (letter is 'd' or 'D' or 's' or 'S' or 'w' or 'W' or 'p' or 'P' or '-')
                {
                    inRange = false;
                    continue;
                }
            }
            if (inRange)
            {
                inRange = false;
                if (c == '[' && !escaped && !first) i = ClassEnd(pattern, i);
            }
            else if (i + 2 < pattern.Length && pattern[i + 1] == '-' && pattern[i + 2] != ']')
            {
                inRange = true;
                i++;
            }
            else if (c == '-' && !escaped && !first && i + 1 < pattern.Length && pattern[i + 1] == '[')
            {
                i = ClassEnd(pattern, i + 1);
            }
        }
        return pattern.Length - 1;
    }

    /// <summary>The index of the ')' that ends the comment "(?#" at <paramref name="open"/>: its
    /// first, as .NET reads it, whatever comes before it ('(', '\\', '['), or the end of the pattern.</summary>
    internal static int CommentEnd(string pattern, int open) => pattern.IndexOf(')', open) is var close and >= 0 ? close : pattern.Length - 1;

    /// <summary>The matches of one text: none where the linear-time engine finds that it has
    /// none; else the backtracking engine's, its first try bounded by its match timeout. After a
    /// timeout, the rest of the text is asked of the linear-time engine, and only where that finds
    /// a match of the rest, of the backtracking engine again within RetryTimeout, from the end of
    /// the last match found; TimedOut says that nothing could tell.
    /// Each bound is a try's as a whole, not each match's: the engine's own timeout restarts at
    /// every NextMatch, and a text of many matches, each found within it, took their number times
    /// it (200 KB of digit runs that stall the international phone pattern with a phone number
    /// between every hundred of them: 17 s of a core, RetryTimeout each).</summary>
    public struct Matches(SafetyRegex regex, string text)
    {
        Match? current;
        bool retried, done;
        // Whether the linear-time engine found a match in the text; null where it could not tell,
        // so that a timeout does not ask it again.
        bool? hasMatch;
        // When the try under way began (TimeProvider.GetTimestamp).
        long started;

        public readonly Match Current => current!;

        /// <summary>Whether the text may have matches beyond those found that nothing could find
        /// in time: the caller fails closed.</summary>
        public bool TimedOut { readonly get; private set; }

        public bool MoveNext()
        {
            if (done) return false;
            try
            {
                if (current is null)
                {
                    started = regex.clock.GetTimestamp();
                    // A text it clears is not read by the backtracking engine, and waits for no timeout.
                    hasMatch = regex.HasMatch(text, 0);
                    current = hasMatch == false ? Match.Empty : regex.backtracking.Match(text);
                }
                else current = OutOfTime() ? Resume() : current.NextMatch();
            }
            catch (RegexMatchTimeoutException)
            {
                current = Resume();
            }
            done = !current.Success;
            return !done;
        }

        /// <summary>Whether the try under way has had its bound; a pattern without a match timeout has none.</summary>
        readonly bool OutOfTime()
        {
            var bound = retried ? RetryTimeout : regex.backtracking.MatchTimeout;
            return bound != Regex.InfiniteMatchTimeout && regex.clock.GetElapsedTime(started) > bound;
        }

        /// <summary>After a timeout: the next match from the end of the last one found, where the
        /// text has one there and the backtracking engine finds it within RetryTimeout.</summary>
        Match Resume()
        {
            // NextMatch goes on one character past an empty match.
            var from = current is null ? 0 : current.Index + Math.Max(current.Length, 1);
            if (from > text.Length) return Match.Empty;
            if (retried || hasMatch is null || regex.HasMatch(text, from) is not { } hasMore)
            {
                TimedOut = true;
                return Match.Empty;
            }
            retried = true;
            if (!hasMore) return Match.Empty;
            started = regex.clock.GetTimestamp();
            try { return regex.PatientEngine().Match(text, from); }
            catch (RegexMatchTimeoutException)
            {
                TimedOut = true;
                return Match.Empty;
            }
        }
    }
}
