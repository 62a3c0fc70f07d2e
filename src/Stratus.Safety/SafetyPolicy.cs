// A deployment's safety policy: per category the severity from which content is blocked (below
// it results are only annotated), what to do with PII, which custom blocklists apply, and which
// directions are checked. SafetyPolicyDocument is its JSON form for the admin API and the store.
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Stratus.Safety;

/// <param name="BlockAt">Content of a category at or above this severity is blocked; a
/// category without an entry is only annotated. PII is governed by <paramref name="Pii"/>.</param>
public sealed record SafetyPolicy(
    string Deployment,
    IReadOnlyDictionary<SafetyCategory, Severity> BlockAt,
    PiiMode Pii,
    IReadOnlyList<string> Blocklists,
    bool CheckPrompts = true,
    bool CheckCompletions = true)
{
    /// <summary>Azure's defaults: the four harm categories and jailbreaks blocked from medium,
    /// PII annotated, no custom blocklists.</summary>
    public static SafetyPolicy Default(string deployment) => new(
        deployment,
        new Dictionary<SafetyCategory, Severity>
        {
            [SafetyCategory.Hate] = Severity.Medium,
            [SafetyCategory.Sexual] = Severity.Medium,
            [SafetyCategory.Violence] = Severity.Medium,
            [SafetyCategory.SelfHarm] = Severity.Medium,
            [SafetyCategory.Jailbreak] = Severity.Medium,
        },
        PiiMode.Annotate,
        []);

    public bool Checks(ContentDirection direction) => direction == ContentDirection.Prompt ? CheckPrompts : CheckCompletions;

    /// <summary>Whether this result blocks the content under this policy.</summary>
    public bool Filters(CategoryResult result)
    {
        if (result.Blocklist is not null) return true;
        if (result.Category == SafetyCategory.Pii) return Pii == PiiMode.Block && result.Severity > Severity.Safe;
        return result.Severity > Severity.Safe && BlockAt.TryGetValue(result.Category, out var threshold) && result.Severity >= threshold;
    }

    /// <exception cref="TrustUserException">The policy cannot be applied as written.</exception>
    public SafetyPolicy Validate()
    {
        ValidateDeploymentName(Deployment);
        foreach (var (category, severity) in BlockAt)
        {
            if (category == SafetyCategory.Pii)
                throw new TrustUserException("PII is governed by the policy's pii mode (off, annotate, redact, block), not by a severity threshold.");
            if (severity == Severity.Safe)
                throw new TrustUserException($"Blocking {category.WireName()} from 'safe' would block every request; use low, medium or high, or leave the category out to annotate only.");
        }
        foreach (var name in Blocklists) CompiledBlocklist.ValidateName(name);
        return this;
    }

    public static void ValidateDeploymentName(string deployment)
    {
        if (!Regex.IsMatch(deployment, @"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\z"))
            throw new TrustUserException($"Deployment name '{deployment}' is invalid: use 1-128 letters, digits, '_', '.', ':', '-'.");
    }

    public SafetyPolicyDocument ToDocument() => new(
        Deployment,
        BlockAt.OrderBy(kv => kv.Key).ToDictionary(kv => kv.Key.WireName(), kv => kv.Value.WireName()),
        Pii.ToString().ToLowerInvariant(),
        [.. Blocklists],
        CheckPrompts,
        CheckCompletions);

    /// <summary>The policy a document describes; a field it leaves out takes its default, as in
    /// <see cref="Default"/> (so a PUT that only names blocklists keeps the thresholds), while an
    /// empty <c>block_at</c> annotates every category.</summary>
    /// <exception cref="TrustUserException">Unknown names or an invalid policy.</exception>
    public static SafetyPolicy FromDocument(SafetyPolicyDocument document)
    {
        var defaults = Default(document.Deployment ?? "");
        var blockAt = document.BlockAt is null ? new Dictionary<SafetyCategory, Severity>(defaults.BlockAt) : [];
        foreach (var (category, severity) in document.BlockAt ?? [])
            blockAt[SafetyNames.ParseCategory(category)] = SafetyNames.ParseSeverity(severity);
        var pii = document.Pii is null ? defaults.Pii : document.Pii.Trim().ToLowerInvariant() switch
        {
            "off" => PiiMode.Off,
            "annotate" => PiiMode.Annotate,
            "redact" => PiiMode.Redact,
            "block" => PiiMode.Block,
            var other => throw new TrustUserException($"Unknown pii mode '{other}'; expected off, annotate, redact or block."),
        };
        return new SafetyPolicy(defaults.Deployment, blockAt, pii, [.. document.Blocklists ?? []], document.CheckPrompts, document.CheckCompletions).Validate();
    }

    public string ToJson() => JsonSerializer.Serialize(ToDocument());

    /// <exception cref="TrustUserException">Not a policy document.</exception>
    public static SafetyPolicy FromJson(string json)
    {
        SafetyPolicyDocument? document;
        try
        {
            document = JsonSerializer.Deserialize<SafetyPolicyDocument>(json);
        }
        catch (JsonException e)
        {
            throw new TrustUserException($"Safety policy is not valid JSON: {e.Message}", e);
        }
        return FromDocument(document ?? throw new TrustUserException("Safety policy is empty."));
    }
}

/// <summary>The wire and storage form of a policy: {"deployment": "gpt2", "block_at": {"hate":
/// "medium"}, "pii": "redact", "blocklists": ["profanity"], "check_prompts": true, ...}.</summary>
public sealed record SafetyPolicyDocument(
    [property: JsonPropertyName("deployment")] string? Deployment,
    [property: JsonPropertyName("block_at")] Dictionary<string, string>? BlockAt,
    [property: JsonPropertyName("pii")] string? Pii,
    [property: JsonPropertyName("blocklists")] List<string>? Blocklists,
    [property: JsonPropertyName("check_prompts")] bool CheckPrompts = true,
    [property: JsonPropertyName("check_completions")] bool CheckCompletions = true);
