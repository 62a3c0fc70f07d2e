// The outcome of checking one text under one policy, and its renderings: Azure OpenAI's
// content_filter_results / prompt_filter_results and OpenAI's /v1/moderations result.
namespace Stratus.Safety;

/// <param name="Results">Everything the providers found, filtered or not.</param>
/// <param name="Filtered">The results that block this text under the policy.</param>
/// <param name="Text">The text to use downstream: the input, or the input with PII replaced
/// when the policy redacts.</param>
public sealed record SafetyVerdict(
    SafetyPolicy Policy,
    ContentDirection Direction,
    IReadOnlyList<CategoryResult> Results,
    IReadOnlyList<CategoryResult> Filtered,
    string Text,
    bool Redacted)
{
    public bool Blocked => Filtered.Count > 0;

    public Severity SeverityOf(SafetyCategory category) =>
        Results.Where(r => r.Category == category && r.Blocklist is null).Select(r => r.Severity).DefaultIfEmpty(Severity.Safe).Max();

    public bool IsFiltered(SafetyCategory category) => Filtered.Any(r => r.Category == category && r.Blocklist is null);

    /// <summary>A one-line reason for logs and error bodies, naming categories but no content.</summary>
    public string Reason => Blocked
        ? "Content filtered: " + string.Join(", ", Filtered.Select(r => r.Blocklist is null ? $"{r.Category.WireName()} ({r.Severity.WireName()})" : $"blocklist {r.Blocklist}").Distinct())
        : "Content allowed.";

    /// <summary>Azure's content_filter_results object. Jailbreak appears for prompts only, as
    /// in Azure; pii (a Stratus extension) when the policy looks for PII; custom_blocklists
    /// when the policy has blocklists.</summary>
    public ContentFilterResults ToContentFilterResults()
    {
        ContentFilterSeverityResult Harm(SafetyCategory c) => new(IsFiltered(c), SeverityOf(c).WireName());
        var blocklistHits = Results.Where(r => r.Blocklist is not null).ToList();
        return new ContentFilterResults(
            Harm(SafetyCategory.Hate),
            Harm(SafetyCategory.SelfHarm),
            Harm(SafetyCategory.Sexual),
            Harm(SafetyCategory.Violence),
            Direction == ContentDirection.Prompt
                ? new ContentFilterDetectedResult(IsFiltered(SafetyCategory.Jailbreak), SeverityOf(SafetyCategory.Jailbreak) >= Severity.Medium)
                : null,
            Policy.Pii == PiiMode.Off
                ? null
                : new ContentFilterPiiResult(IsFiltered(SafetyCategory.Pii), SeverityOf(SafetyCategory.Pii) > Severity.Safe, Redacted),
            Policy.Blocklists.Count == 0
                ? null
                : new ContentFilterBlocklistResults(
                    blocklistHits.Count > 0,
                    [.. Policy.Blocklists.Select(name => new ContentFilterBlocklistDetail(blocklistHits.Any(h => string.Equals(h.Blocklist, name, StringComparison.OrdinalIgnoreCase)), name))]));
    }

    /// <summary>Azure's prompt_filter_results entry for the prompt at this index.</summary>
    public PromptFilterResult ToPromptFilterResult(int promptIndex = 0) => new(promptIndex, ToContentFilterResults());

    /// <summary>One entry of an OpenAI /v1/moderations response. OpenAI's names are used for
    /// the four harm categories (self-harm with a hyphen) so OpenAI clients read them;
    /// jailbreak and pii are Stratus additions. A category is flagged when the policy filters
    /// it; custom blocklist hits flag their category.</summary>
    public ModerationResult ToModerationResult()
    {
        var categories = new Dictionary<string, bool>();
        var scores = new Dictionary<string, double>();
        foreach (var category in SafetyNames.AllCategories)
        {
            var name = ModerationResult.CategoryName(category);
            categories[name] = Filtered.Any(r => r.Category == category);
            scores[name] = Results.Where(r => r.Category == category).Select(r => r.Score).DefaultIfEmpty(0).Max();
        }
        return new ModerationResult(Blocked, categories, scores);
    }
}
