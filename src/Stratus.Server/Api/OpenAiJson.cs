// One set of JSON settings for the API: snake_case names as OpenAI spells them, strict types
// (a string where a number belongs is a 400), unknown fields ignored as OpenAI does.
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Stratus.Server.Api;

public static class OpenAiJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.Strict,
        ReadCommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
        MaxDepth = 32,
    };

    /// <summary>Reads the request body as <typeparamref name="T"/>; malformed JSON and wrong
    /// types become a 400 naming the field.</summary>
    public static async Task<T> ReadAsync<T>(HttpRequest request, CancellationToken cancellation) where T : class
    {
        // As OpenAI and vLLM: `curl -d` without a header sends a form, and reading it as JSON
        // anyway would hide that the client library is misused. A charset other than UTF-8 is transcoded (JsonBody).
        if (!request.HasJsonContentType())
        {
            var sent = request.ContentType is { Length: > 0 } type ? $"'{type}'" : "no Content-Type";
            throw ApiException.Invalid($"Unsupported content type: {sent}. Send the body as JSON with the header 'Content-Type: application/json'.", code: "unsupported_content_type");
        }
        var bytes = (await JsonBody.ReadUtf8Async(request, cancellation)).Span;
        // Fields kept as JsonElement (prompts, messages, stop) are read long after parsing, outside its error handling.
        if (JsonText.Problem(bytes) is { } problem)
            throw ApiException.Invalid($"We could not parse the JSON body of your request: {problem}.");
        T? value;
        try
        {
            value = JsonSerializer.Deserialize<T>(bytes, Options);
        }
        catch (JsonException e)
        {
            var param = e.Path is { Length: > 2 } path ? path.TrimStart('$', '.') : null;
            if (param is null && IsJson(bytes)) throw ApiException.Invalid("The request body must be a JSON object.");
            var reason = param is null ? "the body is not valid JSON" : $"'{param}' has the wrong type or is malformed";
            throw ApiException.Invalid($"We could not parse the JSON body of your request: {reason}. ({Describe(e)})", param);
        }
        return value ?? throw ApiException.Invalid("The request body must be a JSON object.");
    }

    /// <summary>The parser's reason without .NET type names or stack details.</summary>
    static string Describe(JsonException e)
    {
        var message = StratusUserException.InUsersWords(e);
        return message.Length > 200 ? message[..200] : message;
    }

    static bool IsJson(ReadOnlySpan<byte> bytes)
    {
        var reader = new Utf8JsonReader(bytes);
        try { return reader.Read() && reader.TrySkip() && !reader.Read(); }
        catch (JsonException) { return false; }
    }
}
