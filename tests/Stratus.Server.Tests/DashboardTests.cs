// The operators' dashboard as the server answers it: its files without a key, each under a
// Content Security Policy, and nothing else let in without one (paths beside or below it, other
// methods, a path that climbs out of it); and GET /api/serving, the figures the page draws:
// admin only, and counting a request once it was served; and GET /api/key, which tells any key of
// its own scopes and what they grant.
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Stratus.Platform;

namespace Stratus.Server.Tests;

public sealed class DashboardTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    [Fact]
    public async Task The_dashboard_files_are_served_without_a_key_under_a_content_security_policy()
    {
        using var anonymous = fixture.AnonymousClient();
        using var page = await anonymous.GetAsync("/dashboard/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("<script type=\"module\" src=\"dashboard.js\"></script>", await page.Content.ReadAsStringAsync());
        foreach (var (path, type) in new[] { ("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"), ("api.js", "text/javascript"), ("panels/index.js", "text/javascript") })
        {
            foreach (var method in new[] { HttpMethod.Get, HttpMethod.Head })
            {
                using var response = await anonymous.SendAsync(new HttpRequestMessage(method, "/dashboard/" + path));
                Assert.True(response.StatusCode == HttpStatusCode.OK, $"{method} /dashboard/{path}: {(int)response.StatusCode}");
                Assert.Equal(type, response.Content.Headers.ContentType?.MediaType);
                Assert.Contains("script-src 'self'", response.Headers.GetValues("Content-Security-Policy").Single());
                Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
                Assert.Equal("DENY", response.Headers.GetValues("X-Frame-Options").Single());
            }
        }
        Assert.Contains("default-src 'none'", page.Headers.GetValues("Content-Security-Policy").Single());

        // Revalidated on every load (a newer server's files are never stale), and the 304 that
        // confirms a cached copy carries the same policy.
        Assert.True(page.Headers.CacheControl?.NoCache);
        using var revalidate = new HttpRequestMessage(HttpMethod.Get, "/dashboard/");
        revalidate.Headers.IfNoneMatch.Add(page.Headers.ETag!);
        using var unchanged = await anonymous.SendAsync(revalidate);
        Assert.Equal(HttpStatusCode.NotModified, unchanged.StatusCode);
        Assert.Contains("frame-ancestors 'none'", unchanged.Headers.GetValues("Content-Security-Policy").Single());

        // /dashboard sends the browser to /dashboard/, below which the page's relative links resolve.
        using var noRedirects = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = fixture.Server.RootUrl };
        using var bare = await noRedirects.GetAsync("/dashboard");
        Assert.Equal(HttpStatusCode.Redirect, bare.StatusCode);
        Assert.Contains("frame-ancestors 'none'", bare.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Equal("DENY", bare.Headers.GetValues("X-Frame-Options").Single());
        Assert.Equal(new Uri(fixture.Server.RootUrl, "/dashboard/"), new Uri(new Uri(fixture.Server.RootUrl, "/dashboard"), bare.Headers.Location!));
    }

    [Fact]
    public async Task The_page_names_an_icon_of_its_own_that_is_served_without_a_key()
    {
        using var anonymous = fixture.AnonymousClient();
        var page = await anonymous.GetStringAsync("/dashboard/");
        // Without one a browser asks for /favicon.ico, which needs a key: a 401 in every console.
        var icon = System.Text.RegularExpressions.Regex.Match(page, "<link rel=\"icon\" href=\"([^\"]+)\"");
        Assert.True(icon.Success, "the page names no icon");
        using var response = await anonymous.GetAsync("/dashboard/" + icon.Groups[1].Value);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("image/svg+xml", response.Content.Headers.ContentType?.MediaType);
        // The page's own policy lets it load an image of this server.
        Assert.Contains("img-src 'self'", response.Headers.GetValues("Content-Security-Policy").Single());
    }

    [Theory]
    [InlineData("GET", "/dashboard/../v1/admin/keys")]
    [InlineData("GET", "/dashboard/%2e%2e/v1/admin/keys")]
    [InlineData("GET", "/dashboard/panels/../../api/serving")]
    [InlineData("GET", "/dashboardx")]
    [InlineData("GET", "/dashboard.js")]
    [InlineData("GET", "/dashboard/nothing.js")]
    [InlineData("GET", "/dashboard/panels/")]
    [InlineData("GET", "//dashboard/")]
    [InlineData("GET", "/dashboard//dashboard.js")]
    [InlineData("GET", "/dashboard%2Fdashboard.js")]
    [InlineData("GET", "/dashboard/dashboard.js;x")]
    [InlineData("GET", "/dashboard/dashboard.js.")]
    [InlineData("GET", "/dashboard/index.html/../../v1/admin/keys")]
    [InlineData("GET", "/dashboard/%2e%2e%2fv1/admin/keys")]
    [InlineData("GET", "/%64ashboard/../api/serving")]
    [InlineData("OPTIONS", "/dashboard/")]
    [InlineData("POST", "/dashboard/dashboard.js")]
    [InlineData("DELETE", "/dashboard/")]
    [InlineData("GET", "/api/serving")]
    [InlineData("GET", "/api/keys")]
    [InlineData("GET", "/v1/admin/keys")]
    [InlineData("GET", "/v1/models")]
    [InlineData("GET", "/favicon.ico")]
    public async Task Nothing_else_is_answered_without_a_key(string method, string rawPath)
    {
        // Sent as written: HttpClient would resolve the dot segments before the server saw them.
        Assert.Equal(401, await RawStatusAsync(method, rawPath));
    }

    [Fact]
    public async Task The_serving_figures_need_an_admin_key()
    {
        var secret = (await fixture.Keys.CreateAsync("inference-only", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests")).Secret;
        using var client = fixture.AnonymousClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secret);
        using var refused = await client.GetAsync("/api/serving");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Contains("'admin' scope", (string?)JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["message"]);
        using var anonymous = fixture.AnonymousClient();
        using var noKey = await anonymous.GetAsync("/api/serving");
        Assert.Equal(HttpStatusCode.Unauthorized, noKey.StatusCode);
    }

    /// <summary>GET /api/key tells any valid key of itself, for the dashboard to show it the panels its
    /// scopes allow: its id, name, scopes and what they grant (admin every scope, inference metrics
    /// too); without a key it is a 401, as every other request.</summary>
    [Theory]
    [InlineData(ApiKeyScopes.Training, "training", "training")]
    [InlineData(ApiKeyScopes.Inference, "inference", "inference,metrics")]
    [InlineData(ApiKeyScopes.Admin, "admin", "inference,training,admin,metrics")]
    [InlineData(ApiKeyScopes.Metrics, "metrics", "metrics")]
    public async Task The_key_endpoint_gives_any_key_its_own_scopes_and_what_they_grant(ApiKeyScopes scopes, string named, string granted)
    {
        var created = await fixture.Keys.CreateAsync("caller-" + Guid.NewGuid().ToString("N")[..8], scopes, RateLimits.Unlimited, "tests");
        using var client = fixture.AnonymousClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", created.Secret);
        using var response = await client.GetAsync("/api/key");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var key = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal(("api_key", created.Key.Id, created.Key.Name, named, granted),
            ((string?)key["object"], (string?)key["id"], (string?)key["name"], string.Join(",", key["scopes"]!.AsArray().Select(s => (string?)s)),
                string.Join(",", key["granted_scopes"]!.AsArray().Select(s => (string?)s))));
        using var anonymous = fixture.AnonymousClient();
        using var noKey = await anonymous.GetAsync("/api/key");
        Assert.Equal(HttpStatusCode.Unauthorized, noKey.StatusCode);
    }

    [Fact]
    public async Task The_serving_figures_count_a_request_once_it_was_served()
    {
        var before = await ServingAsync();
        using var completion = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "ab", max_tokens = 3, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
        var answer = JsonNode.Parse(await completion.Content.ReadAsStringAsync())!;
        var generated = (long)answer["usage"]!["completion_tokens"]!;
        var outcome = (string)answer["choices"]![0]!["finish_reason"]!;
        var after = await ServingAsync();

        Assert.Equal("serving", (string?)after["object"]);
        Assert.True((double)after["time"]! >= (double)before["time"]!);
        var model = Model(after);
        Assert.Equal(("cpu", 128, true), ((string)model["device"]!, (int)model["context_length"]!, (bool)model["healthy"]!));
        Assert.Equal(0, (int)model["running"]!);
        Assert.Equal(Generated(before) + generated, Generated(after));
        Assert.Equal((long)Model(before)["prompt_tokens"]! + 2, (long)model["prompt_tokens"]!);
        Assert.Equal(Count(Model(before)["requests"]!, outcome) + 1, Count(model["requests"]!, outcome));
        Assert.Equal(Count(before["requests"]!, outcome) + 1, Count(after["requests"]!, outcome));
        Assert.InRange((double)model["kv_cache_usage"]!, 0, 1);
        // Both models the fixture serves are listed, each once.
        Assert.Equal(2, after["models"]!.AsArray().Count);
    }

    async Task<JsonNode> ServingAsync() => JsonNode.Parse(await fixture.Http.GetStringAsync("/api/serving"))!;

    static JsonNode Model(JsonNode snapshot) => snapshot["models"]!.AsArray().Single(m => (string?)m!["id"] == TinyModelServer.ModelName)!;

    static long Generated(JsonNode snapshot) => (long)Model(snapshot)["generation_tokens"]!;

    static long Count(JsonNode requests, string outcome) => requests[outcome] is { } count ? (long)count : 0;

    /// <summary>The status of a request whose target is sent byte for byte as given.</summary>
    async Task<int> RawStatusAsync(string method, string target)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(fixture.Server.RootUrl.Host, fixture.Server.RootUrl.Port);
        await using var stream = tcp.GetStream();
        var length = method == "POST" ? "Content-Length: 0\r\n" : "";
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"{method} {target} HTTP/1.1\r\nHost: {fixture.Server.RootUrl.Authority}\r\n{length}Connection: close\r\n\r\n"));
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var statusLine = await reader.ReadLineAsync() ?? "";
        return int.Parse(statusLine.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }
}
