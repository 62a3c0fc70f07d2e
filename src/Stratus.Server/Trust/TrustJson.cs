// JSON for everything the trust layer writes and reads: its own options, so a naming policy the
// host sets for its endpoints cannot rename Azure and OpenAI fields (every DTO names its
// properties explicitly), and request bodies read with errors a client can act on.
using System.Text.Json;
using Stratus.Safety;
using Stratus.Server.Api;

namespace Stratus.Server.Trust;

public static class TrustJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web);

    /// <summary>Reads a JSON body as <typeparamref name="T"/>.</summary>
    /// <exception cref="TrustUserException">Not JSON, not this shape, or empty.</exception>
    public static async ValueTask<T> ReadBodyAsync<T>(HttpRequest request, CancellationToken cancellationToken) where T : class
    {
        if (!request.HasJsonContentType())
            throw new TrustUserException("Send the request body as JSON with 'Content-Type: application/json'.");
        var bytes = (await JsonBody.ReadUtf8Async(request, cancellationToken)).Span;
        if (bytes.IsEmpty) throw new TrustUserException("The request body is empty; send a JSON object.");
        if (JsonText.Problem(bytes) is { } problem)
            throw new TrustUserException($"The request body is not valid JSON for this endpoint: {problem}.");
        try
        {
            return JsonSerializer.Deserialize<T>(bytes, Options)
                ?? throw new TrustUserException("The request body is empty; send a JSON object.");
        }
        catch (JsonException e)
        {
            var field = e.Path is { Length: > 2 } path ? $" at '{path.TrimStart('$', '.')}'" : "";
            var reason = StratusUserException.InUsersWords(e);
            throw new TrustUserException($"The request body is not valid JSON for this endpoint{field}: {reason}", e);
        }
    }
}
