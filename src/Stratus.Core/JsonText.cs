// JSON that users give (request bodies, config and model files, JSONL corpora) read with one-line
// errors. The parser accepts strings it cannot read as text: it checks neither UTF-8 inside
// strings nor \u escapes of half a surrogate pair until a string is read, and then throws an
// InvalidOperationException (not a JsonException) wherever that read happens.
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace Stratus;

public static class JsonText
{
    /// <summary>Why the strings of a JSON document cannot be read as text, or null when they can:
    /// invalid UTF-8, or a \u escape that leaves a UTF-16 surrogate unpaired ("\ud800"). Every
    /// escaped string is decoded once here, before the document is parsed for its values.
    /// Malformed JSON gives null: the parser says where. <paramref name="options"/> are the
    /// parser's (comments, trailing commas), so that the check reads as far as it does.</summary>
    public static string? Problem(ReadOnlySpan<byte> json, JsonReaderOptions options = default)
    {
        // JSON is UTF-8 (RFC 8259); the parser would skip unchecked bytes inside ignored fields.
        if (!Utf8.IsValid(json)) return "it is not valid UTF-8";
        var reader = new Utf8JsonReader(json, options);
        try
        {
            while (reader.Read())
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
                    reader.GetString();
        }
        catch (JsonException) { return null; }
        catch (InvalidOperationException)
        {
            return "a string holds a \\u escape of an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text; escape characters outside the Basic Multilingual Plane as a surrogate pair";
        }
        return null;
    }

    /// <summary>The JSON document in the file at <paramref name="path"/> (a UTF-8 byte order mark
    /// is skipped, as editors on Windows write one), or a one-line <see cref="StratusUserException"/>
    /// naming the file when it is not valid JSON or holds strings that are not text.
    /// <paramref name="hint"/> says how to fix it. A file found in a folder must be a regular one;
    /// one the user named (<paramref name="namedByUser"/>: `--config &lt;(...)`) may be a pipe
    /// (see <see cref="FileBytes.ReadAll"/>).</summary>
    public static JsonNode? ParseFile(string path, JsonDocumentOptions options = default, string? hint = null, bool namedByUser = false)
    {
        ReadOnlySpan<byte> json = FileBytes.ReadAll(path, namedByUser);
        if (json.StartsWith("\uFEFF"u8)) json = json[3..];
        var readerOptions = new JsonReaderOptions { CommentHandling = options.CommentHandling, AllowTrailingCommas = options.AllowTrailingCommas, MaxDepth = options.MaxDepth };
        if (Problem(json, readerOptions) is { } problem) throw new StratusUserException($"{path}: {problem}.{(hint is null ? "" : " " + hint)}");
        try { return JsonNode.Parse(json, documentOptions: options); }
        catch (JsonException e) { throw StratusUserException.NotValidJson(path, e, hint: hint); }
    }

    /// <summary>Line <paramref name="lineNumber"/> of a JSONL file as JSON. Malformed JSON, or a
    /// string that is no text (an escaped lone surrogate, which the parser accepts and reading
    /// the string throws on), is refused naming the file and line.</summary>
    public static JsonNode? ParseLine(string path, int lineNumber, string line, string? hint = null) => ParseLine(path, lineNumber, line, hint, utf8 => JsonNode.Parse(utf8));

    /// <summary>As <see cref="ParseLine(string, int, string, string?)"/>, as a document, for a
    /// reader of JsonElements (a chat line read as a request's messages are).</summary>
    public static JsonDocument ParseLineDocument(string path, int lineNumber, string line, string? hint = null) => ParseLine(path, lineNumber, line, hint, utf8 => JsonDocument.Parse(utf8));

    static T ParseLine<T>(string path, int lineNumber, string line, string? hint, Func<byte[], T> parse)
    {
        var utf8 = System.Text.Encoding.UTF8.GetBytes(line);
        if (Problem(utf8) is { } problem) throw new StratusUserException($"{path}:{lineNumber}: {problem}");
        try { return parse(utf8); }
        catch (JsonException e) { throw StratusUserException.NotValidJson(path, e, lineNumber, hint); }
    }
}
