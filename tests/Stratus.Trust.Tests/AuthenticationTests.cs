// Keys at the door: every endpoint but /health refuses a request without a valid key, scopes
// follow the route, revoked keys are refused on their next request, and malformed credentials
// or oversized headers get a 4xx with a clear message, never a 500.
using System.Net;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Server.Trust;

namespace Stratus.Trust.Tests;

public sealed class AuthenticationTests
{
    [Fact]
    public async Task Every_mapped_endpoint_refuses_requests_without_a_valid_key_except_health()
    {
        await using var host = await TrustHost.StartAsync();
        var (all, unprotected) = await EndpointAuthProbe.RunAsync(host.App.Services, host.Client);
        Assert.Empty(unprotected);
        // The probe saw the trust endpoints and the server's own, not an empty list.
        foreach (var path in new[] { "/v1/chat/completions", "/v1/moderations", "/v1/admin/keys", "/v1/usage", "/metrics", "/ready", "/tokenize", "/health" })
            Assert.Contains(all, p => p.Path == path);
        Assert.All(all.Where(p => p.Path == "/health"), p => Assert.Equal(HttpStatusCode.OK, p.Status));
        // Paths that match no endpoint need a key too, so unmapped routes reveal nothing.
        using var unmapped = await host.SendAsync(HttpMethod.Get, "/no/such/path", null);
        Assert.Equal(HttpStatusCode.Unauthorized, unmapped.StatusCode);
    }

    [Fact]
    public async Task The_probe_reports_endpoints_served_without_the_trust_layer()
    {
        // The same app without UseStratusTrust: the probe must name its open endpoints, or an
        // empty result above would prove nothing.
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddSingleton<FakeModel>();
        await using var app = builder.Build();
        app.MapFakeOpenAI();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        using var client = new HttpClient { BaseAddress = new Uri(address) };
        var (_, unprotected) = await EndpointAuthProbe.RunAsync(app.Services, client);
        Assert.Contains(unprotected, p => p.Path == "/v1/models" && p.Credential == "none");
        Assert.Contains(unprotected, p => p.Path == "/metrics");
        Assert.DoesNotContain(unprotected, p => p.Path == "/health");
        await app.StopAsync();
    }

    [Fact]
    public async Task Valid_keys_pass_and_scopes_follow_the_route()
    {
        await using var host = await TrustHost.StartAsync();
        using var models = await host.SendAsync(HttpMethod.Get, "/v1/models", host.InferenceKey);
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);

        // Azure's api-key header works as well as a bearer token.
        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        request.Headers.Add("api-key", host.InferenceKey);
        using var metrics = await host.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);

        foreach (var path in new[] { "/v1/admin/keys", "/V1/ADMIN/keys", "/v1/usage", "/v1/admin/audit/verify" })
        {
            using var forbidden = await host.SendAsync(HttpMethod.Get, path, host.InferenceKey);
            Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
            Assert.Contains("admin", (await TestJson.ErrorAsync(forbidden)).GetProperty("message").GetString());
        }
        using var admin = await host.SendAsync(HttpMethod.Get, "/v1/admin/keys", host.AdminKey);
        Assert.Equal(HttpStatusCode.OK, admin.StatusCode);
        // Admin implies inference.
        using var adminModels = await host.SendAsync(HttpMethod.Get, "/v1/models", host.AdminKey);
        Assert.Equal(HttpStatusCode.OK, adminModels.StatusCode);
        // A training-only key cannot call inference endpoints.
        var training = await host.CreateKeyAsync("trainer", ApiKeyScopes.Training, RateLimits.Unlimited);
        using var trainingModels = await host.SendAsync(HttpMethod.Get, "/v1/models", training);
        Assert.Equal(HttpStatusCode.Forbidden, trainingModels.StatusCode);
    }

    [Fact]
    public async Task A_metrics_key_reads_metrics_and_nothing_else()
    {
        await using var host = await TrustHost.StartAsync();
        var scraper = await host.CreateKeyAsync("prometheus", ApiKeyScopes.Metrics, RateLimits.Unlimited);
        using (var metrics = await host.SendAsync(HttpMethod.Get, "/metrics", scraper))
            Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        // Every other endpoint, the models' first, is refused in OpenAI's error format.
        foreach (var (method, path, body) in new (HttpMethod, string, object?)[]
        {
            (HttpMethod.Post, "/v1/chat/completions", TrustHost.Chat("hello")),
            (HttpMethod.Post, "/v1/completions", new { model = TrustHost.Model, prompt = "hello" }),
            (HttpMethod.Post, "/v1/moderations", new { input = "hello" }),
            (HttpMethod.Get, "/v1/models", null),
            (HttpMethod.Post, "/tokenize", new { model = TrustHost.Model, prompt = "hello" }),
            (HttpMethod.Get, "/ready", null),
            (HttpMethod.Get, "/v1/admin/keys", null),
            (HttpMethod.Get, "/v1/usage", null),
        })
        {
            using var refused = await host.SendAsync(method, path, scraper, body);
            Assert.True(refused.StatusCode == HttpStatusCode.Forbidden, $"{method} {path}: {refused.StatusCode}");
            var error = await TestJson.ErrorAsync(refused);
            Assert.Equal("insufficient_permissions", error.GetProperty("code").GetString());
            Assert.Contains("it has metrics", error.GetProperty("message").GetString());
        }
        // Inference and admin keys read /metrics as before the metrics scope existed.
        foreach (var key in new[] { host.InferenceKey, host.AdminKey })
        {
            using var metrics = await host.SendAsync(HttpMethod.Get, "/metrics", key);
            Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        }
    }

    [Theory]
    // A catch-all route reached through /metrics needs what the route needs, not the weaker
    // metrics scope: the metrics flag's value is the highest, yet it is the weakest scope.
    [InlineData("/{**rest}", "/metrics", ApiKeyScopes.Inference)]
    [InlineData("/metrics", "/METRICS", ApiKeyScopes.Metrics)]
    [InlineData("/{**rest}", "/v1/admin/keys", ApiKeyScopes.Admin)]
    [InlineData("/v1/admin/{**rest}", "/metrics", ApiKeyScopes.Admin)]
    public void A_request_needs_the_stricter_scope_of_its_route_and_its_path(string pattern, string path, ApiKeyScopes scope)
    {
        var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        context.Request.Path = path;
        Microsoft.AspNetCore.Http.EndpointHttpContextExtensions.SetEndpoint(context, new Microsoft.AspNetCore.Routing.RouteEndpoint(_ => Task.CompletedTask, Microsoft.AspNetCore.Routing.Patterns.RoutePatternFactory.Parse(pattern), 0,
            Microsoft.AspNetCore.Http.EndpointMetadataCollection.Empty, pattern));
        Assert.Equal(scope, TrustRoutes.RequiredScope(context));
    }

    [Fact]
    public async Task A_revoked_key_is_refused_on_its_next_request()
    {
        await using var host = await TrustHost.StartAsync();
        var key = await host.CreateKeyAsync("short-lived", ApiKeyScopes.Inference, RateLimits.Unlimited);
        using (var before = await host.SendAsync(HttpMethod.Get, "/v1/models", key))
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        using (var revoke = await host.SendAsync(HttpMethod.Delete, "/v1/admin/keys/short-lived", host.AdminKey))
            Assert.Equal(HttpStatusCode.OK, revoke.StatusCode);
        using var after = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
        Assert.Equal(HttpStatusCode.Unauthorized, after.StatusCode);
        Assert.Equal("invalid_api_key", (await TestJson.ErrorAsync(after)).GetProperty("code").GetString());

        // Revoked by another process writing the same database (the CLI): refused just the same.
        var other = await host.CreateKeyAsync("other", ApiKeyScopes.Inference, RateLimits.Unlimited);
        using (var ok = await host.SendAsync(HttpMethod.Get, "/v1/models", other))
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        await host.Stores.KeyService().RevokeAsync("other", "cli:test");
        using var refused = await host.SendAsync(HttpMethod.Get, "/v1/models", other);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
    }

    [Theory]
    [InlineData("Authorization", "Bearer not-a-key", "Malformed API key")]
    [InlineData("Authorization", "Bearer sk-stratus-short", "Malformed API key")]
    [InlineData("Authorization", "Basic dXNlcjpwYXNz", "Unsupported authorization scheme")]
    [InlineData("Authorization", "Bearer ", "no key after 'Bearer'")]
    [InlineData("api-key", "", "No API key provided")]
    [InlineData("api-key", "sk-stratus-\u0001", "")]
    public async Task Malformed_credentials_get_a_401_with_a_clear_message(string header, string value, string message)
    {
        await using var host = await TrustHost.StartAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        request.Headers.TryAddWithoutValidation(header, value);
        using var response = await host.Client.SendAsync(request);
        // Control characters are refused by Kestrel itself (400); everything else by the middleware.
        Assert.True(response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.BadRequest, $"{response.StatusCode}");
        if (response.StatusCode == HttpStatusCode.Unauthorized)
        {
            var error = await TestJson.ErrorAsync(response);
            Assert.Contains(message, error.GetProperty("message").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Equal("invalid_api_key", error.GetProperty("code").GetString());
        }
    }

    [Fact]
    public async Task Long_and_repeated_credentials_and_huge_headers_get_a_4xx_never_a_500()
    {
        await using var host = await TrustHost.StartAsync();

        using var longKey = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        longKey.Headers.TryAddWithoutValidation("api-key", new string('k', 8_000));
        using var longResponse = await host.Client.SendAsync(longKey);
        Assert.Equal(HttpStatusCode.Unauthorized, longResponse.StatusCode);
        Assert.Contains("8000 characters", (await TestJson.ErrorAsync(longResponse)).GetProperty("message").GetString());

        using var twoKeys = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        twoKeys.Headers.TryAddWithoutValidation("api-key", [host.InferenceKey, host.InferenceKey]);
        using var twoResponse = await host.Client.SendAsync(twoKeys);
        Assert.Equal(HttpStatusCode.Unauthorized, twoResponse.StatusCode);
        Assert.Contains("one API key", (await TestJson.ErrorAsync(twoResponse)).GetProperty("message").GetString());

        // Beyond Kestrel's header limits: refused before any application code, still a 4xx.
        using var huge = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        huge.Headers.TryAddWithoutValidation("Authorization", "Bearer " + new string('x', 64 * 1024));
        using var hugeResponse = await host.Client.SendAsync(huge);
        Assert.InRange((int)hugeResponse.StatusCode, 400, 499);
    }

    [Fact]
    public async Task An_expired_key_is_a_401_that_says_when_it_expired_and_how_to_get_another()
    {
        await using var host = await TrustHost.StartAsync();
        // Made two days ago to last one day, by a service whose clock says so.
        var madeAt = DateTimeOffset.UtcNow.AddDays(-2);
        var key = (await host.Stores.KeyService(new FixedClock(madeAt)).CreateAsync("temp", ApiKeyScopes.Inference, RateLimits.Unlimited, "test",
            ApiKeyExpiry.In(TimeSpan.FromDays(1)))).Secret;
        using var refused = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("Bearer", TestJson.Header(refused, "WWW-Authenticate"));
        var error = await TestJson.ErrorAsync(refused);
        Assert.Equal(("invalid_request_error", "invalid_api_key"), (error.GetProperty("type").GetString(), error.GetProperty("code").GetString()));
        var message = error.GetProperty("message").GetString()!;
        Assert.Contains($"expired on {ApiKeyService.FormatExpiry(madeAt.AddDays(1))}", message);
        Assert.Contains("Ask an administrator of this server for a new key", message);

        // The same id with another secret is just a wrong key.
        using var guessed = await host.SendAsync(HttpMethod.Get, "/v1/models", key[..^1] + (key[^1] == 'A' ? 'B' : 'A'));
        Assert.DoesNotContain("expired", (await TestJson.ErrorAsync(guessed)).GetProperty("message").GetString());
    }

    [Fact]
    public async Task The_server_refuses_to_start_with_only_expired_keys()
    {
        var dataDir = TrustHost.NewDataDir();
        try
        {
            await PlatformStores.Open(dataDir).KeyService(new FixedClock(DateTimeOffset.UtcNow.AddDays(-2)))
                .CreateAsync("old", ApiKeyScopes.Admin, RateLimits.Unlimited, "test", ApiKeyExpiry.In(TimeSpan.FromDays(1)));
            var e = await Assert.ThrowsAsync<Stratus.Safety.TrustUserException>(() => TrustHost.StartAsync(createKeys: false, dataDir: dataDir));
            Assert.Contains("expired keys do not count", e.Message);
        }
        finally
        {
            TrustHost.Cleanup(dataDir);
        }
    }

    sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    [Fact]
    public async Task The_server_refuses_to_start_without_a_key()
    {
        var dataDir = TrustHost.NewDataDir();
        try
        {
            var e = await Assert.ThrowsAsync<Stratus.Safety.TrustUserException>(() => TrustHost.StartAsync(createKeys: false, dataDir: dataDir));
            Assert.Contains("stratus keys create --name <n> --scopes inference", e.Message);
        }
        finally
        {
            TrustHost.Cleanup(dataDir);
        }
    }

    [Fact]
    public async Task Insecure_no_auth_serves_loopback_without_keys()
    {
        await using var host = await TrustHost.StartAsync(createKeys: false, insecureNoAuth: true);
        using var models = await host.SendAsync(HttpMethod.Get, "/v1/models", null);
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
        using var chat = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", null, TrustHost.Chat("hello there"));
        Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
    }

    [Fact]
    public async Task Insecure_no_auth_refuses_to_start_on_a_non_loopback_address()
    {
        var dataDir = TrustHost.NewDataDir();
        try
        {
            var e = await Assert.ThrowsAsync<Stratus.Safety.TrustUserException>(() =>
                TrustHost.StartAsync(createKeys: false, insecureNoAuth: true, url: "http://0.0.0.0:0", dataDir: dataDir));
            Assert.Contains("loopback", e.Message);
            Assert.Contains("stratus keys create", e.Message);
        }
        finally
        {
            TrustHost.Cleanup(dataDir);
        }
    }

    [Theory]
    [InlineData("http://127.0.0.1:8000", true)]
    [InlineData("http://127.1.2.3:8000", true)]
    [InlineData("http://[::1]:8000", true)]
    [InlineData("http://localhost:5000", true)]
    [InlineData("https://LOCALHOST:5001/", true)]
    [InlineData("http://0.0.0.0:8000", false)]
    [InlineData("http://[::]:8000", false)]
    [InlineData("http://*:8000", false)]
    [InlineData("http://+:8000", false)]
    [InlineData("http://10.0.0.5:8000", false)]
    [InlineData("http://example.com:8000", false)]
    public void Loopback_addresses_are_recognised(string address, bool loopback) =>
        Assert.Equal(loopback, TrustStartupGuard.IsLoopback(address));
}
