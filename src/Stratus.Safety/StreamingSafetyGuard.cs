// Guards a completion streamed token by token: text reaches the client only after it has been
// checked, so a blocked term is never sent, not even its first letters. The guard holds back
// the last StreamingWindow characters (the longest match any provider can make), counting a run
// of whitespace as one character because a multi-word term matches across a run of any length;
// a match that could still grow into released text would have to be longer than that. Released
// text ends at a word boundary where one is available (whitespace, or any character of a script
// written without spaces unless a mark of that character follows), so clients do not see words
// cut in half, and never between the two
// halves of a surrogate pair, which a client would decode as two U+FFFD.
//
// A match touching the end of the text so far is inconclusive ("ass" may become "assist"), so
// it neither blocks nor is released until more text or the end of the stream settles it.
// Each check runs on the unreleased text plus StreamingWindow characters of context before it,
// so the cost per token does not grow with the length of the completion; a match that ends in
// that context was settled when its text was released.
using System.Globalization;
using System.Text;

namespace Stratus.Safety;

/// <param name="Released">Text to send to the client now (may be empty).</param>
/// <param name="BlockedBy">Set once the stream is blocked: stop generating and finish with
/// finish_reason "content_filter".</param>
public sealed record GuardStep(string Released, SafetyVerdict? BlockedBy)
{
    public bool Blocked => BlockedBy is not null;
}

public sealed class StreamingSafetyGuard
{
    const int MaxUnbrokenRun = 256;

    readonly SafetyPipeline pipeline;
    readonly StringBuilder text = new();
    readonly int holdBack;
    int released;

    internal StreamingSafetyGuard(SafetyPipeline pipeline)
    {
        this.pipeline = pipeline;
        holdBack = pipeline.StreamingWindow;
    }

    public SafetyVerdict? BlockedBy { get; private set; }

    /// <summary>Adds generated text; returns what may be sent now.</summary>
    public async ValueTask<GuardStep> AppendAsync(string chunk, CancellationToken cancellationToken = default)
    {
        if (BlockedBy is not null) return new GuardStep("", BlockedBy);
        text.Append(chunk);
        if (!pipeline.Policy.CheckCompletions) return new GuardStep(Take(text.Length, []), null);
        var releaseTo = ReleasePoint();
        if (releaseTo <= released) return new GuardStep("", null);

        var windowStart = Math.Max(0, released - holdBack);
        var window = text.ToString(windowStart, text.Length - windowStart);
        var found = await pipeline.RunProvidersAsync(window, ContentDirection.Completion, cancellationToken);
        var conclusive = Conclusive(found, released - windowStart, window.Length);
        var verdict = pipeline.Decide(window, ContentDirection.Completion, conclusive);
        if (verdict.Blocked)
        {
            BlockedBy = verdict;
            return new GuardStep("", verdict);
        }
        // Never cut through a span (inconclusive ones included): release up to its start.
        // Latest start first, so moving back past one span cannot land inside one already seen.
        var spans = found.SelectMany(r => r.Matches).Select(m => m with { Start = m.Start + windowStart }).OrderByDescending(m => m.Start);
        foreach (var span in spans)
            if (span.Start < releaseTo && releaseTo < span.End) releaseTo = Math.Max(released, span.Start);
        // A forced release through an unbroken run (emoji) can end between the halves of a
        // surrogate pair, and a regex pattern's span can start between them ("." and "[😀]"
        // match either half).
        releaseTo = WholeCharacters(releaseTo);
        var pii = SafetyPipeline.PiiSpans(conclusive).Select(m => m with { Start = m.Start + windowStart }).ToList();
        return new GuardStep(Take(releaseTo, pii), null);
    }

    /// <summary>Ends the stream: checks the whole completion once more (so providers that judge
    /// text as a whole see all of it) and releases the held-back tail unless that check blocks.
    /// The verdict is the completion's content_filter_results.</summary>
    public async ValueTask<(GuardStep Step, SafetyVerdict Verdict)> CompleteAsync(CancellationToken cancellationToken = default)
    {
        var all = text.ToString();
        if (BlockedBy is not null) return (new GuardStep("", BlockedBy), BlockedBy);
        var verdict = await pipeline.AnalyzeAsync(all, ContentDirection.Completion, cancellationToken);
        if (verdict.Blocked)
        {
            BlockedBy = verdict;
            return (new GuardStep("", verdict), verdict);
        }
        return (new GuardStep(Take(all.Length, SafetyPipeline.PiiSpans(verdict.Results)), null), verdict);
    }

    int ReleasePoint()
    {
        var limit = HeldBackFrom();
        if (limit <= released) return released;
        for (var i = limit; i > released; i--)
            if (EndsWord(text[i - 1]) && !(i < text.Length && IsCombiningMark(text[i]))) return i;
        // No word boundary in reach: holding back holdBack characters is what keeps the stream
        // safe, the boundary is only cosmetic, so a long unbroken run (code, base64) is
        // released anyway rather than buffered without end.
        return limit - released >= MaxUnbrokenRun ? limit : released;
    }

    /// <summary>Where the held-back tail of holdBack characters starts (see
    /// <see cref="WindowStart"/>); <see cref="released"/> when the unreleased text is not that long.</summary>
    int HeldBackFrom() => WindowStart(text, static (t, i) => t[i], released, text.Length, holdBack);

    /// <summary>Where the last <paramref name="window"/> characters of text[floor..end] start,
    /// a run of whitespace counting as one: a multi-word term's \s+ matches a run of any length,
    /// so measured in raw characters a long run would push the term's first word out of them.
    /// What a blocklist does not read (format characters such as the zero-width space, marks:
    /// MatchingForm) takes no room either, up to <see cref="MaxRoomless"/> of them, so a term
    /// padded with that many fits as it is; past that they count, or a stream of nothing else
    /// (a model repeating U+200B) would be held back, and checked again at every token, without end.
    /// Returns <paramref name="floor"/> when that text is not that long. The guard's held-back
    /// tail and an alternative's context (SafetyPipeline.FlagsAlternativeAsync) are measured so.</summary>
    internal static int WindowStart<TText>(TText text, Func<TText, int, char> charAt, int floor, int end, int window)
        where TText : allows ref struct
    {
        var start = end;
        var roomless = MaxRoomless;
        for (var counted = 0; counted < window; counted++)
        {
            start = SkipNoRoom(text, charAt, floor, start, ref roomless);
            if (start == floor) return floor;
            if (!char.IsWhiteSpace(charAt(text, --start))) continue;
            for (var before = SkipNoRoom(text, charAt, floor, start, ref roomless); before > floor && char.IsWhiteSpace(charAt(text, before - 1));
                 before = SkipNoRoom(text, charAt, floor, start, ref roomless))
                start = before - 1;
        }
        return start;
    }

    /// <summary>How many characters that take no room one window leaves uncounted: far more than
    /// any text spells a word with (Zalgo text puts a few dozen marks on a letter; Thai has a
    /// mark or two per letter and spaces between phrases), few enough that the held-back text
    /// stays short.</summary>
    internal const int MaxRoomless = 1024;

    /// <summary>Moves <paramref name="end"/> back over the characters before it that take no
    /// room in a window, a surrogate pair as the one character it is, while
    /// <paramref name="roomless"/> (what is left of the window's allowance) lasts.</summary>
    static int SkipNoRoom<TText>(TText text, Func<TText, int, char> charAt, int floor, int end, ref int roomless)
        where TText : allows ref struct
    {
        while (end > floor && roomless > 0)
        {
            var last = charAt(text, end - 1);
            var pair = char.IsLowSurrogate(last) && end - 1 > floor && char.IsHighSurrogate(charAt(text, end - 2));
            var noRoom = pair ? MatchingForm.TakesNoRoom(new Rune(charAt(text, end - 2), last)) : !char.IsSurrogate(last) && MatchingForm.TakesNoRoom(new Rune(last));
            if (!noRoom) return end;
            end -= pair ? 2 : 1;
            roomless--;
        }
        return end;
    }

    /// <summary>Moves a release point off the middle of a surrogate pair.</summary>
    int WholeCharacters(int end) => end > released && char.IsHighSurrogate(text[end - 1]) ? end - 1 : end;

    /// <summary>Whether a word can end after <paramref name="c"/>: whitespace, or a character of
    /// a script written without spaces between words (CJK ideographs, kana, CJK and full-width
    /// punctuation), where every character is a place to stop.</summary>
    static bool EndsWord(char c) => char.IsWhiteSpace(c) || UnspacedScripts.Contains(c);

    /// <summary>A vowel or tone mark (Thai, Khmer) belongs to the letter before it: a delta that
    /// began with one would be drawn on nothing.</summary>
    static bool IsCombiningMark(char c) => CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark
        or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark;

    /// <summary>The results that settle something: their spans that end in the unreleased text
    /// (after <paramref name="context"/>) and before the end of what was generated. A span that
    /// ends in the context was judged when that text was released, or is not a span at all: the
    /// context begins wherever StreamingWindow characters before the release point fall, often
    /// inside a word, and the end of "class" read from its "ass" would block a clean stream.</summary>
    static List<CategoryResult> Conclusive(IReadOnlyList<CategoryResult> found, int context, int length)
    {
        var kept = new List<CategoryResult>();
        foreach (var result in found)
        {
            if (result.Matches.Count == 0)
            {
                kept.Add(result);
                continue;
            }
            var settled = result.Matches.Where(m => m.End > context && m.End < length).ToList();
            if (settled.Count > 0) kept.Add(result with { Matches = settled });
        }
        return kept;
    }

    /// <summary>Releases text up to <paramref name="end"/>, redacting PII spans inside it when the
    /// policy redacts.</summary>
    string Take(int end, List<SafetyMatch> piiSpans)
    {
        var segment = text.ToString(released, end - released);
        if (pipeline.Policy.Pii == PiiMode.Redact)
        {
            var inside = piiSpans.Where(m => m.Start >= released && m.End <= end).Select(m => m with { Start = m.Start - released });
            segment = PiiDetector.Redact(segment, inside);
        }
        released = end;
        return segment;
    }
}
