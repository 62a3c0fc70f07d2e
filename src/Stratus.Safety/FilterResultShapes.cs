// System.Text.Json DTOs for the shapes clients already parse: Azure OpenAI's
// prompt_filter_results / content_filter_results and OpenAI's /v1/moderations request and
// response. Property names are fixed with attributes so no serializer options are needed.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Stratus.Safety;

public sealed record ContentFilterSeverityResult(
    [property: JsonPropertyName("filtered")] bool Filtered,
    [property: JsonPropertyName("severity")] string Severity);

public sealed record ContentFilterDetectedResult(
    [property: JsonPropertyName("filtered")] bool Filtered,
    [property: JsonPropertyName("detected")] bool Detected);

public sealed record ContentFilterPiiResult(
    [property: JsonPropertyName("filtered")] bool Filtered,
    [property: JsonPropertyName("detected")] bool Detected,
    [property: JsonPropertyName("redacted")] bool Redacted);

public sealed record ContentFilterBlocklistDetail(
    [property: JsonPropertyName("filtered")] bool Filtered,
    [property: JsonPropertyName("id")] string Id);

public sealed record ContentFilterBlocklistResults(
    [property: JsonPropertyName("filtered")] bool Filtered,
    [property: JsonPropertyName("details")] IReadOnlyList<ContentFilterBlocklistDetail> Details);

/// <summary>A Stratus extension: the alternatives of a choice's tokens (top_logprobs) that were
/// left out because the policy would have blocked or rewritten them as text.</summary>
public sealed record ContentFilterAlternativesResult(
    [property: JsonPropertyName("filtered")] bool Filtered,
    [property: JsonPropertyName("removed")] int Removed);

public sealed record ContentFilterResults(
    [property: JsonPropertyName("hate")] ContentFilterSeverityResult Hate,
    [property: JsonPropertyName("self_harm")] ContentFilterSeverityResult SelfHarm,
    [property: JsonPropertyName("sexual")] ContentFilterSeverityResult Sexual,
    [property: JsonPropertyName("violence")] ContentFilterSeverityResult Violence,
    [property: JsonPropertyName("jailbreak"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ContentFilterDetectedResult? Jailbreak,
    [property: JsonPropertyName("pii"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ContentFilterPiiResult? Pii,
    [property: JsonPropertyName("custom_blocklists"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ContentFilterBlocklistResults? CustomBlocklists)
{
    /// <summary>Set on a choice whose alternatives were screened (top_logprobs was asked for).</summary>
    [JsonPropertyName("top_logprobs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ContentFilterAlternativesResult? TopLogprobs { get; init; }
}

public sealed record PromptFilterResult(
    [property: JsonPropertyName("prompt_index")] int PromptIndex,
    [property: JsonPropertyName("content_filter_results")] ContentFilterResults ContentFilterResults);

/// <summary>POST /v1/moderations body: input is a string or an array of strings. Other fields
/// are let through, as OpenAI-compatible servers do: its clients send those of newer versions of
/// the API.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Skip)]
public sealed record ModerationRequest(
    [property: JsonPropertyName("input")] JsonElement Input,
    [property: JsonPropertyName("model"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Model = null)
{
    /// <exception cref="TrustUserException">Input is neither a string nor an array of strings.</exception>
    public IReadOnlyList<string> Inputs() => Input.ValueKind switch
    {
        JsonValueKind.String => [Input.GetString()!],
        JsonValueKind.Array when Input.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) && Input.GetArrayLength() > 0
            => [.. Input.EnumerateArray().Select(e => e.GetString()!)],
        _ => throw new TrustUserException("'input' must be a string or a non-empty array of strings."),
    };
}

public sealed record ModerationResult(
    [property: JsonPropertyName("flagged")] bool Flagged,
    [property: JsonPropertyName("categories")] IReadOnlyDictionary<string, bool> Categories,
    [property: JsonPropertyName("category_scores")] IReadOnlyDictionary<string, double> CategoryScores)
{
    public static string CategoryName(SafetyCategory category) => category == SafetyCategory.SelfHarm ? "self-harm" : category.WireName();
}

public sealed record ModerationResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("results")] IReadOnlyList<ModerationResult> Results);
