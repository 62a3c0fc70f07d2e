// The vocabulary of content safety: categories, severities, which side of a conversation text is
// on, and the wire names used by Azure's content_filter_results and the policy store.
namespace Stratus.Safety;

public enum SafetyCategory { Hate, Sexual, Violence, SelfHarm, Jailbreak, Pii }

/// <summary>Ordered so that comparisons mean "at least as severe as".</summary>
public enum Severity { Safe, Low, Medium, High }

public enum ContentDirection { Prompt, Completion }

public static class SafetyNames
{
    public static IReadOnlyList<SafetyCategory> AllCategories { get; } = Enum.GetValues<SafetyCategory>();

    public static string WireName(this SafetyCategory category) => category switch
    {
        SafetyCategory.Hate => "hate",
        SafetyCategory.Sexual => "sexual",
        SafetyCategory.Violence => "violence",
        SafetyCategory.SelfHarm => "self_harm",
        SafetyCategory.Jailbreak => "jailbreak",
        SafetyCategory.Pii => "pii",
        _ => throw new ArgumentOutOfRangeException(nameof(category)),
    };

    public static string WireName(this Severity severity) => severity switch
    {
        Severity.Safe => "safe",
        Severity.Low => "low",
        Severity.Medium => "medium",
        Severity.High => "high",
        _ => throw new ArgumentOutOfRangeException(nameof(severity)),
    };

    public static SafetyCategory ParseCategory(string name)
    {
        var key = name.Trim().ToLowerInvariant().Replace('-', '_');
        foreach (var category in AllCategories)
            if (category.WireName() == key) return category;
        throw new TrustUserException($"Unknown safety category '{name}'; expected one of {string.Join(", ", AllCategories.Select(c => c.WireName()))}.");
    }

    public static Severity ParseSeverity(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        "safe" => Severity.Safe,
        "low" => Severity.Low,
        "medium" => Severity.Medium,
        "high" => Severity.High,
        _ => throw new TrustUserException($"Unknown severity '{name}'; expected safe, low, medium or high."),
    };
}
