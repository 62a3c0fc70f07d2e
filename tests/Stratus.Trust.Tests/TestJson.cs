// Small helpers for reading OpenAI-shaped responses in tests.
using System.Text.Json;

namespace Stratus.Trust.Tests;

static class TestJson
{
    public static async Task<JsonElement> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>error.message of an OpenAI error body, asserting the shape on the way.</summary>
    public static async Task<JsonElement> ErrorAsync(HttpResponseMessage response)
    {
        var body = await ReadAsync(response);
        var error = body.GetProperty("error");
        Assert.Equal(JsonValueKind.String, error.GetProperty("message").ValueKind);
        Assert.True(error.TryGetProperty("type", out _));
        Assert.True(error.TryGetProperty("param", out _));
        Assert.True(error.TryGetProperty("code", out _));
        return error;
    }

    public static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : "";
}
