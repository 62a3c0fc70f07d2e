// What one provider found in one text: a category, how severe, a score in [0, 1], and where in
// the text (spans are what redaction and the streaming guard work on).
namespace Stratus.Safety;

/// <summary>A span of the analysed text. Label names what matched: a PII kind (EMAIL), a
/// blocklist term or pattern, or an injection signal family.</summary>
/// <param name="Entry">For a blocklist's hit, the entry that made it: the term as the list has
/// it, or the pattern (what an audit of the blocked request names; the text matched is the
/// user's and is not). Null for other providers.</param>
public sealed record SafetyMatch(int Start, int Length, string Label, string? Entry = null)
{
    public int End => Start + Length;
}

/// <param name="Source">The provider's name, for logs and audit.</param>
/// <param name="Matches">Spans in the text; empty for providers that judge a text as a whole
/// (classifiers, external moderation).</param>
/// <param name="Blocklist">Set when a custom blocklist produced this result; such results are
/// always filtered, as Azure's custom blocklists are.</param>
public sealed record CategoryResult(
    SafetyCategory Category,
    Severity Severity,
    double Score,
    string Source,
    IReadOnlyList<SafetyMatch> Matches,
    string? Blocklist = null)
{
    /// <summary>A nominal score for rule-based providers that only know a severity.</summary>
    public static double ScoreFor(Severity severity) => severity switch
    {
        Severity.Safe => 0.0,
        Severity.Low => 0.3,
        Severity.Medium => 0.6,
        _ => 0.9,
    };
}
