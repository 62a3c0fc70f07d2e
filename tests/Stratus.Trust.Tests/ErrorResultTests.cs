// The trust layer's refusals and the admin API's errors, written as OpenAIErrorResults by
// ErrorMiddleware.WriteAsync: the same Content-Type as every JSON answer of the server, and what
// the host's own middleware put on the response before them kept.
using System.Net;
using Microsoft.AspNetCore.Http;
using Stratus.Platform;
using Stratus.Server.Trust;

namespace Stratus.Trust.Tests;

public sealed class ErrorResultTests
{
    const string JsonUtf8 = "application/json; charset=utf-8";

    [Fact]
    public async Task Refusals_and_admin_errors_are_json_with_its_charset_as_the_servers_other_answers()
    {
        await using var host = await TrustHost.StartAsync();
        var scraper = await host.CreateKeyAsync("scraper", ApiKeyScopes.Metrics, RateLimits.Unlimited);
        var cases = new (string Path, string? Key, HttpStatusCode Status)[]
        {
            ("/v1/models", null, HttpStatusCode.Unauthorized),
            ("/v1/models", "sk-stratus-wrong", HttpStatusCode.Unauthorized),
            ("/v1/models", scraper, HttpStatusCode.Forbidden),
            ("/v1/admin/blocklists/missing", host.AdminKey, HttpStatusCode.NotFound),
        };
        foreach (var (path, key, status) in cases)
        {
            using var response = await host.SendAsync(HttpMethod.Get, path, key);
            Assert.Equal(status, response.StatusCode);
            Assert.Equal(JsonUtf8, response.Content.Headers.ContentType!.ToString());
        }
        // The answers that succeed say the same.
        using var ok = await host.SendAsync(HttpMethod.Get, "/v1/admin/keys", host.AdminKey);
        Assert.Equal(JsonUtf8, ok.Content.Headers.ContentType!.ToString());
    }

    /// <summary>An error a handler returns (or middleware answers) is an answer like any other:
    /// a header the host set before it (a security header, a CORS header set directly) stays, as
    /// it did before the results were written by the error middleware's writer, which clears a
    /// response only for an exception caught mid-answer.</summary>
    [Fact]
    public async Task An_error_result_keeps_the_headers_the_host_set_before_it()
    {
        var context = new DefaultHttpContext();
        context.Response.Body = new MemoryStream();
        context.Response.Headers["X-Frame-Options"] = "DENY";
        await OpenAIErrors.InvalidApiKey("No API key provided.").ExecuteAsync(context);
        Assert.Equal(401, context.Response.StatusCode);
        Assert.Equal("DENY", context.Response.Headers["X-Frame-Options"].ToString());
        Assert.Equal("Bearer realm=\"stratus\"", context.Response.Headers.WWWAuthenticate.ToString());
        Assert.Equal(JsonUtf8, context.Response.ContentType);
    }
}
