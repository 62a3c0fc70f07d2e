// A JSON request body as UTF-8 bytes, for the API's and the trust layer's readers alike. A body
// whose Content-Type names another charset (`application/json; charset=utf-16`, as .NET's
// StringContent with Encoding.Unicode sends it) is transcoded from it, as ASP.NET Core's own
// ReadFromJsonAsync does: read as UTF-8, it was a 400 for bytes the client had described rightly.
// A charset .NET does not know is a 415 naming the fix, and bytes that are not text in the charset
// named a 400; both as BadHttpRequestException, which either error writer answers with its status.
using System.Text;
using Microsoft.Net.Http.Headers;

namespace Stratus.Server.Api;

public static class JsonBody
{
    /// <summary>The body of <paramref name="request"/>, in UTF-8 whatever charset its Content-Type
    /// names (none: UTF-8, as RFC 8259 has JSON), without the byte order mark it may begin with in
    /// any of them (as ASP.NET Core's ReadFromJsonAsync reads it). Kestrel caps its size while this
    /// reads it (413 past the limit); transcoded, it may then take up to twice that (ISO-8859-1's
    /// upper half is two bytes each in UTF-8; UTF-16's 1.5 times).</summary>
    /// <exception cref="BadHttpRequestException">An unknown charset (415), or bytes that are not
    /// text in the charset named (400).</exception>
    public static async Task<ReadOnlyMemory<byte>> ReadUtf8Async(HttpRequest request, CancellationToken cancellation)
    {
        var encoding = DeclaredEncoding(request.ContentType);
        var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, cancellation);
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        // RFC 8259 lets a parser ignore a byte order mark, and editors and PowerShell write one;
        // System.Text.Json's span reader refuses it, so it goes here, in UTF-8 as in the others.
        if (encoding is null) return bytes.Span.StartsWith(Encoding.UTF8.Preamble) ? bytes[Encoding.UTF8.Preamble.Length..] : bytes;
        string text;
        try
        {
            text = encoding.GetString(bytes.Span);
        }
        catch (DecoderFallbackException)
        {
            throw new BadHttpRequestException($"the body is not valid {encoding.WebName}, the charset its Content-Type names; send it as UTF-8 with 'Content-Type: application/json'.");
        }
        // Skipped in place: a copy of the text without it would be one more body-sized buffer.
        var start = text.StartsWith('\uFEFF') ? 1 : 0;
        return Encoding.UTF8.GetBytes(text, start, text.Length - start);
    }

    /// <summary>The encoding a Content-Type's charset names, or null for UTF-8 (named or not).</summary>
    static Encoding? DeclaredEncoding(string? contentType)
    {
        if (!MediaTypeHeaderValue.TryParse(contentType, out var mediaType) || !mediaType.Charset.HasValue) return null;
        // HeaderUtilities removes the quotes a charset may come in ("utf-16").
        var charset = HeaderUtilities.RemoveQuotes(mediaType.Charset).ToString();
        // `utf8`, which .NET does not know, is how MySQL and many clients spell it; read as UTF-8
        // before charsets were transcoded, it must not become a 415 now.
        if (charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || charset.Equals("utf8", StringComparison.OrdinalIgnoreCase)) return null;
        try
        {
            // Throwing on bytes that are not text: a replacement character in a prompt would hide the client's mistake.
            var encoding = Encoding.GetEncoding(charset, EncoderFallback.ExceptionFallback, DecoderFallback.ExceptionFallback);
            return encoding.CodePage == Encoding.UTF8.CodePage ? null : encoding;
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw new BadHttpRequestException($"the charset '{charset}' of 'Content-Type: {contentType}' is not one the server knows; " +
                "send the body as UTF-8 with 'Content-Type: application/json' (utf-16, utf-32, iso-8859-1 and us-ascii are transcoded too).", StatusCodes.Status415UnsupportedMediaType);
        }
    }
}
