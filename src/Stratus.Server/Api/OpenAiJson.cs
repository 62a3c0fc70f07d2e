// One set of JSON settings for the API: snake_case names as OpenAI spells them, strict types
// (a string where a number belongs is a 400), unknown fields ignored as OpenAI does.
using System.Text.Json;
using System.Text.Unicode;
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
        // Kestrel caps the body size while this reads it (413 past the limit).
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, cancellation);
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (TextProblem(bytes) is { } problem)
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

    /// <summary>Why the strings of a JSON body cannot be read as text, or null when they can:
    /// invalid UTF-8, or a \u escape that leaves a UTF-16 surrogate unpaired ("\ud800"). The
    /// parser accepts both and fails only when a string is read, which for fields kept as
    /// JsonElement (prompts, messages, stop) happens long after parsing, outside its error
    /// handling; so every escaped string is decoded once here.</summary>
    public static string? TextProblem(ReadOnlySpan<byte> body)
    {
        // JSON is UTF-8 (RFC 8259); the parser would skip unchecked bytes inside ignored fields.
        if (!Utf8.IsValid(body)) return "it is not valid UTF-8";
        var reader = new Utf8JsonReader(body);
        try
        {
            while (reader.Read())
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
                    reader.GetString();
        }
        catch (JsonException) { return null; } // malformed: the deserializer says where
        catch (InvalidOperationException)
        {
            return "a string holds a \\u escape of an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text; escape characters outside the Basic Multilingual Plane as a surrogate pair";
        }
        return null;
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
