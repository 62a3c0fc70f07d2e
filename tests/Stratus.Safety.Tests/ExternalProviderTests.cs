// The OpenAI-compatible moderation provider (against a fake HTTP handler) and the learned
// classifier adapter.
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Safety.Tests;

public sealed class ExternalProviderTests
{
    sealed class FakeHandler(HttpStatusCode status, string body) : HttpMessageHandler
    {
        public HttpRequestMessage? Request { get; private set; }
        public string? RequestBody { get; private set; }

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Request = request;
            RequestBody = await request.Content!.ReadAsStringAsync(cancellationToken);
            return new HttpResponseMessage(status) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        }
    }

    const string Response = """
        {"id":"modr-1","model":"omni-moderation-latest","results":[{"flagged":true,
          "categories":{"harassment":false,"hate":true,"sexual":false,"violence":false,"self-harm":false,"illicit":true},
          "category_scores":{"harassment":0.3,"hate":0.35,"hate/threatening":0.1,"sexual":0.01,"violence":0.92,"self-harm/intent":0.55,"illicit":0.99}}]}
        """;

    [Fact]
    public async Task Posts_to_v1_moderations_with_key_and_maps_categories()
    {
        var handler = new FakeHandler(HttpStatusCode.OK, Response);
        var provider = new OpenAIModerationProvider(new HttpClient(handler), OpenAIModerationOptions.Parse("http://mod.local:9000/", "secret-key", "omni-moderation-latest"));
        var results = await provider.AnalyzeAsync("some text", ContentDirection.Prompt, default);

        Assert.Equal(HttpMethod.Post, handler.Request!.Method);
        Assert.Equal("http://mod.local:9000/v1/moderations", handler.Request.RequestUri!.ToString());
        Assert.Equal("Bearer secret-key", handler.Request.Headers.Authorization!.ToString());
        var body = JsonNode.Parse(handler.RequestBody!)!;
        Assert.Equal("some text", body["input"]!.GetValue<string>());
        Assert.Equal("omni-moderation-latest", body["model"]!.GetValue<string>());

        var byCategory = results.ToDictionary(r => r.Category);
        // hate: flagged, so at least medium although its best score (0.35) alone would be low.
        Assert.Equal(Severity.Medium, byCategory[SafetyCategory.Hate].Severity);
        Assert.Equal(0.35, byCategory[SafetyCategory.Hate].Score);
        Assert.Equal(Severity.High, byCategory[SafetyCategory.Violence].Severity);
        Assert.Equal(Severity.Medium, byCategory[SafetyCategory.SelfHarm].Severity);
        Assert.Equal(Severity.Safe, byCategory[SafetyCategory.Sexual].Severity);
        Assert.Equal(4, byCategory.Count);
    }

    [Fact]
    public async Task Failures_surface_as_http_errors_naming_the_provider()
    {
        var failing = new OpenAIModerationProvider(new HttpClient(new FakeHandler(HttpStatusCode.Unauthorized, """{"error":"bad key"}""")),
            OpenAIModerationOptions.Parse("http://mod.local"));
        var e = await Assert.ThrowsAsync<HttpRequestException>(async () => await failing.AnalyzeAsync("x", ContentDirection.Prompt, default));
        Assert.Contains("401", e.Message);
        Assert.Contains("mod.local", e.Message);

        var garbage = new OpenAIModerationProvider(new HttpClient(new FakeHandler(HttpStatusCode.OK, "<html>")), OpenAIModerationOptions.Parse("http://mod.local"));
        await Assert.ThrowsAsync<HttpRequestException>(async () => await garbage.AnalyzeAsync("x", ContentDirection.Prompt, default));
    }

    [Fact]
    public void Invalid_urls_are_user_errors()
    {
        Assert.Throws<TrustUserException>(() => OpenAIModerationOptions.Parse("not a url"));
        Assert.Throws<TrustUserException>(() => OpenAIModerationOptions.Parse("ftp://x"));
    }

    /// <summary>A URL's user:password is never sent, and the URL goes into every failure the
    /// server logs: refused at once, and not echoed in the refusal.</summary>
    [Theory]
    [InlineData("https://user:hunter2@mod.local/v1")]
    [InlineData("http://hunter2@mod.local:9000/")]
    public void A_url_with_credentials_is_refused_without_echoing_them(string url)
    {
        var e = Assert.Throws<TrustUserException>(() => OpenAIModerationOptions.Parse(url));
        Assert.Contains("user name or password", e.Message);
        Assert.Contains("mod.local", e.Message);
        Assert.DoesNotContain("hunter2", e.Message);
    }

    /// <summary>A service that echoes the key it was given (a 401, or a proxy's error page) does
    /// not put it into the failure the server logs.</summary>
    [Theory]
    [InlineData(HttpStatusCode.Unauthorized, """{"error":{"message":"Incorrect API key provided: sk-live-0123456789abcdef"}}""")]
    [InlineData(HttpStatusCode.OK, "<html>Authorization: Bearer sk-live-0123456789abcdef</html>")]
    public async Task A_key_the_service_echoes_stays_out_of_the_error(HttpStatusCode status, string body)
    {
        var provider = new OpenAIModerationProvider(new HttpClient(new FakeHandler(status, body)), OpenAIModerationOptions.Parse("http://mod.local", "sk-live-0123456789abcdef"));
        var e = await Assert.ThrowsAsync<HttpRequestException>(async () => await provider.AnalyzeAsync("x", ContentDirection.Prompt, default));
        Assert.DoesNotContain("0123456789abcdef", e.Message);
        Assert.Contains("[API key]", e.Message);
    }

    /// <summary>The URL an OpenAI client is given ends in /v1; it names the same endpoint as the root.</summary>
    [Theory]
    [InlineData("https://api.openai.com", "https://api.openai.com/v1/moderations")]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com/v1/moderations")]
    [InlineData("https://api.openai.com/v1/", "https://api.openai.com/v1/moderations")]
    [InlineData("http://10.0.0.5:8080/guard/", "http://10.0.0.5:8080/guard/v1/moderations")]
    [InlineData("http://10.0.0.5:8080/guard/v1", "http://10.0.0.5:8080/guard/v1/moderations")]
    // A gateway's query (an API version, a tenant) belongs to every request, as OpenAI's clients keep it.
    [InlineData("https://gw.local/openai/v1?api-version=2024-10-01", "https://gw.local/openai/v1/moderations?api-version=2024-10-01")]
    [InlineData("https://gw.local/guard/?tenant=a&region=eu#docs", "https://gw.local/guard/v1/moderations?tenant=a&region=eu")]
    public async Task A_root_or_a_base_url_ending_in_v1_posts_to_v1_moderations_with_its_query(string url, string endpoint)
    {
        var handler = new FakeHandler(HttpStatusCode.OK, Response);
        await new OpenAIModerationProvider(new HttpClient(handler), OpenAIModerationOptions.Parse(url)).AnalyzeAsync("x", ContentDirection.Prompt, default);
        Assert.Equal(endpoint, handler.Request!.RequestUri!.ToString());
    }

    sealed class FakeClassifier : ISafetyClassifier
    {
        public string Name => "tiny-classifier";
        public ValueTask<IReadOnlyDictionary<SafetyCategory, double>> ScoreAsync(string text, ContentDirection direction, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IReadOnlyDictionary<SafetyCategory, double>>(new Dictionary<SafetyCategory, double>
            {
                [SafetyCategory.Sexual] = text.Contains("explicit") ? 0.85 : 0.05,
                [SafetyCategory.Hate] = 1.7,
            });
    }

    [Fact]
    public async Task Classifier_scores_become_severities_and_drive_blocking()
    {
        var provider = new ClassifierProvider(new FakeClassifier(), new SeverityThresholds(0.1, 0.5, 0.8));
        var results = (await provider.AnalyzeAsync("explicit", ContentDirection.Completion, default)).ToDictionary(r => r.Category);
        Assert.Equal(Severity.High, results[SafetyCategory.Sexual].Severity);
        Assert.Equal(1.0, results[SafetyCategory.Hate].Score);
        Assert.Equal("tiny-classifier", results[SafetyCategory.Sexual].Source);

        var pipeline = new SafetyPipeline(SafetyPolicy.Default("d") with { BlockAt = new Dictionary<SafetyCategory, Severity> { [SafetyCategory.Sexual] = Severity.High } }, [provider]);
        Assert.True((await pipeline.AnalyzeAsync("explicit", ContentDirection.Completion)).Blocked);
        var clean = await pipeline.AnalyzeAsync("fine", ContentDirection.Completion);
        Assert.False(clean.Blocked);
        Assert.Equal(Severity.Safe, clean.SeverityOf(SafetyCategory.Sexual));
    }
}
