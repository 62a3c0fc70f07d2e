// Calls any OpenAI-compatible moderation endpoint (POST {url}/v1/moderations, or
// {url}/moderations where the URL is a base URL ending in /v1, as OpenAI's clients take it) and maps its
// categories onto ours: hate and harassment -> hate, sexual -> sexual, violence and
// illicit/violent -> violence, self-harm -> self_harm. Categories with no counterpart (plain
// illicit) are dropped. A category the service flags is at least medium whatever its score.
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Stratus.Safety;

/// <param name="BaseUrl">The service root, to which "/v1/moderations" is appended, or its base
/// URL ending in /v1 (https://api.openai.com/v1), to which "/moderations" is.</param>
/// <param name="ApiKey">Sent as a bearer token when set.</param>
/// <param name="Model">Sent as "model" when set (e.g. omni-moderation-latest).</param>
public sealed record OpenAIModerationOptions(Uri BaseUrl, string? ApiKey = null, string? Model = null, SeverityThresholds? Thresholds = null)
{
    /// <summary>Where serve reads the service's API key: a secret of the server's, which the
    /// training jobs it submits must not carry off (SlurmJobExecutor).</summary>
    public const string ApiKeyVariable = "STRATUS_MODERATION_API_KEY";

    /// <exception cref="TrustUserException">The URL is not an absolute http(s) URL, or carries a
    /// user name or password.</exception>
    public static OpenAIModerationOptions Parse(string baseUrl, string? apiKey = null, string? model = null)
    {
        if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new TrustUserException($"Moderation provider URL '{baseUrl}' is not an absolute http or https URL.");
        // HttpClient never sends a URL's user:password, and the URL is written into errors and
        // logs: refused, without echoing it, so that the credentials go nowhere.
        if (uri.UserInfo.Length > 0)
            throw new TrustUserException($"Moderation provider URL {uri.Scheme}://...@{uri.Authority}{uri.AbsolutePath} carries a user name or password, which are never sent and would be logged: give the service's key as its API key instead.");
        return new OpenAIModerationOptions(uri, apiKey, model);
    }

    /// <summary>Where moderation requests are posted: an operator copies the base URL an OpenAI
    /// client is given (".../v1") as often as the service's root, and both mean one endpoint. The
    /// URL's query (a gateway's api-version or tenant) is kept; a fragment is never sent.</summary>
    public Uri Endpoint
    {
        get
        {
            var root = BaseUrl.GetLeftPart(UriPartial.Path).TrimEnd('/');
            return new Uri(root + (root.EndsWith("/v1", StringComparison.Ordinal) ? "/moderations" : "/v1/moderations") + BaseUrl.Query);
        }
    }
}

public sealed class OpenAIModerationProvider(HttpClient http, OpenAIModerationOptions options) : IContentSafetyProvider
{
    readonly Uri endpoint = options.Endpoint;
    readonly SeverityThresholds thresholds = options.Thresholds ?? new SeverityThresholds();

    public string Name => "openai_moderation";

    /// <summary>A remote call per streamed token would be far too slow; the service judges
    /// whatever text the guard hands it.</summary>
    public int StreamingWindow => 0;

    public static SafetyCategory? MapCategory(string openAiCategory)
    {
        var name = openAiCategory.ToLowerInvariant();
        if (name.StartsWith("hate") || name.StartsWith("harassment")) return SafetyCategory.Hate;
        if (name.StartsWith("sexual")) return SafetyCategory.Sexual;
        if (name.StartsWith("violence") || name == "illicit/violent") return SafetyCategory.Violence;
        if (name.StartsWith("self-harm") || name.StartsWith("self_harm")) return SafetyCategory.SelfHarm;
        return null;
    }

    /// <exception cref="HttpRequestException">The service failed or answered something that is
    /// not a moderation response.</exception>
    public async ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, endpoint)
        {
            Content = JsonContent.Create(new Dictionary<string, string?> { ["input"] = text, ["model"] = options.Model }
                .Where(kv => kv.Value is not null).ToDictionary()),
        };
        if (!string.IsNullOrEmpty(options.ApiKey)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", options.ApiKey);
        using var response = await http.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"Moderation provider {endpoint} answered {(int)response.StatusCode}: {Quote(body)}", null, response.StatusCode);
        try
        {
            return Parse(body);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new HttpRequestException($"Moderation provider {endpoint} answered something that is not a moderation response: {Quote(body)}", e);
        }
    }

    IReadOnlyList<CategoryResult> Parse(string body)
    {
        using var document = JsonDocument.Parse(body);
        var result = document.RootElement.GetProperty("results")[0];
        var scores = new Dictionary<SafetyCategory, double>();
        var flagged = new HashSet<SafetyCategory>();
        if (result.TryGetProperty("category_scores", out var scoreMap))
            foreach (var p in scoreMap.EnumerateObject())
                if (MapCategory(p.Name) is { } c) scores[c] = Math.Max(scores.GetValueOrDefault(c), p.Value.GetDouble());
        if (result.TryGetProperty("categories", out var flagMap))
            foreach (var p in flagMap.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.True && MapCategory(p.Name) is { } c) flagged.Add(c);
        var results = new List<CategoryResult>();
        foreach (var category in scores.Keys.Union(flagged))
        {
            var score = Math.Clamp(scores.GetValueOrDefault(category), 0, 1);
            var severity = thresholds.For(score);
            if (flagged.Contains(category) && severity < Severity.Medium) severity = Severity.Medium;
            results.Add(new CategoryResult(category, severity, score, Name, []));
        }
        return results;
    }

    /// <summary>The start of a body for an error, which the server's log keeps: without the API
    /// key, which a service may echo back (a 401 naming the key it was given).</summary>
    string Quote(string body)
    {
        if (!string.IsNullOrEmpty(options.ApiKey)) body = body.Replace(options.ApiKey, "[API key]", StringComparison.Ordinal);
        return body.Length <= 200 ? body : body[..200] + "...";
    }
}
