// JSON for everything the trust layer writes and reads: its own options, so a naming policy the
// host sets for its endpoints cannot rename Azure and OpenAI fields (every DTO names its
// properties explicitly), and request bodies read with errors a client can act on.
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Stratus.Safety;
using Stratus.Server.Api;

namespace Stratus.Server.Trust;

public static class TrustJson
{
    // The resolver the serializer would pick itself, named so that RequireKnownFields can read a
    // type's fields before any body is deserialized.
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web) { TypeInfoResolver = new DefaultJsonTypeInfoResolver() };

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
        var shape = Options.GetTypeInfo(typeof(T));
        RequireFieldsOnce(bytes, shape);
        try
        {
            return JsonSerializer.Deserialize<T>(bytes, Options)
                ?? throw new TrustUserException("The request body is empty; send a JSON object.");
        }
        catch (JsonException e)
        {
            // The field at fault is the error's param, as for every other refusal of a field.
            var field = e.Path is { Length: > 2 } path ? path.TrimStart('$', '.') : null;
            // A record's field bound through its constructor is reported as the record ("could not be
            // converted to ...Request"): the field's own type says what it must be.
            var reason = StratusUserException.InUsersWords(e, shape.Properties.FirstOrDefault(p => string.Equals(p.Name, field, StringComparison.OrdinalIgnoreCase))?.PropertyType);
            throw new TrustUserException($"The request body is not valid JSON for this endpoint{(field is null ? "" : $" at '{field}'")}: {reason}", e) { Param = field };
        }
    }

    /// <summary>Refuses a top-level field given twice (the deserializer would take the last without
    /// a word), and one the request type does not have: ignored, a misspelt field would do other
    /// than asked (a job with "resumes" would train a new run, a key with "expire_in" never expire,
    /// a blocklist with "pattern" lose its patterns). A type that takes fields it does not know says
    /// so ([JsonUnmappedMemberHandling(Skip)]): an OpenAI-compatible request, whose clients send the
    /// fields of newer versions of that API. System.Text.Json's own refusals name the .NET type, not
    /// the fields a client may send.</summary>
    static void RequireFieldsOnce(ReadOnlySpan<byte> body, JsonTypeInfo shape)
    {
        var reader = new Utf8JsonReader(body);
        // Names compare as the deserializer matches them (the web defaults: case-insensitively).
        var given = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return; // the deserializer says what it must be
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString()!;
                if (!given.Add(name))
                    throw new TrustUserException($"'{name}' is given twice; give each field once.") { Param = name };
                if (shape.UnmappedMemberHandling != JsonUnmappedMemberHandling.Skip && !shape.Properties.Any(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)))
                {
                    var fields = shape.Properties.Select(p => p.Name).ToList();
                    throw new TrustUserException($"'{name}' is not a field of this request; its fields are {string.Join(", ", fields.SkipLast(1))} and {fields[^1]}.") { Param = name };
                }
                reader.Skip();
            }
        }
        // Malformed JSON: the deserializer says what is wrong and where.
        catch (JsonException) { }
    }
}
