// The trust layer's errors: each an ApiException (Api/ApiErrors.cs, the one error shape) as an
// OpenAIErrorResult, so handlers can return it as is and middleware that answers before any
// endpoint runs can write it; its Error is thrown where the server's ErrorMiddleware answers it.
using System.Text.Json.Serialization;
using Stratus.Safety;
using Stratus.Server.Api;

namespace Stratus.Server.Trust;

/// <summary>Azure's innererror for filtered prompts.</summary>
public sealed record ContentFilterInnerError(
    [property: JsonPropertyName("code")] string Code,
    [property: JsonPropertyName("content_filter_result")] ContentFilterResults ContentFilterResult);

public static class OpenAIErrors
{
    public const string InvalidRequest = "invalid_request_error";

    public static OpenAIErrorResult Create(int statusCode, string message, string type = InvalidRequest, string? code = null, string? param = null,
        IReadOnlyList<KeyValuePair<string, string>>? headers = null) =>
        new(new ApiException(statusCode, message, param, code, type) { Headers = headers ?? [] });

    /// <summary>401: no key, a malformed key, or a key that is wrong or revoked.</summary>
    public static OpenAIErrorResult InvalidApiKey(string message) =>
        Create(StatusCodes.Status401Unauthorized, message, code: "invalid_api_key",
            headers: [new("WWW-Authenticate", "Bearer realm=\"stratus\"")]);

    /// <summary>403: a valid key without the scope the endpoint needs.</summary>
    public static OpenAIErrorResult InsufficientScope(string message) =>
        Create(StatusCodes.Status403Forbidden, message, code: "insufficient_permissions");

    /// <summary>400 for anything the client can fix (TrustUserException and the like).</summary>
    public static OpenAIErrorResult BadRequest(string message, string? param = null) =>
        Create(StatusCodes.Status400BadRequest, message, param: param);

    /// <summary>412: a conditional write (If-Match) found what it would replace changed since
    /// the client read it; <paramref name="etag"/> is the current ETag, when there is one.</summary>
    public static OpenAIErrorResult PreconditionFailed(string message, string? etag) =>
        Create(StatusCodes.Status412PreconditionFailed, message, code: "precondition_failed", headers: etag is null ? null : [new("ETag", etag)]);

    /// <summary>A body Kestrel, binding or JsonBody refused (BadHttpRequestException, its status
    /// a 4xx), with the code of its status, as the server's ErrorMiddleware and the trust layer's
    /// own error handling both answer it: 413 request_too_large, 415 (a charset the server does
    /// not know) unsupported_content_type, as a body that is not JSON at all is refused.</summary>
    public static OpenAIErrorResult UnreadableBody(BadHttpRequestException e) => e.StatusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => Create(StatusCodes.Status413PayloadTooLarge, "The request body is too large.", code: "request_too_large"),
        StatusCodes.Status415UnsupportedMediaType => Create(StatusCodes.Status415UnsupportedMediaType, "The request could not be read: " + e.Message, code: "unsupported_content_type"),
        var status => Create(status is >= 400 and < 500 ? status : StatusCodes.Status400BadRequest, "The request could not be read: " + e.Message),
    };

    public static OpenAIErrorResult NotFound(string message, string? param = null) =>
        Create(StatusCodes.Status404NotFound, message, code: "not_found", param: param);

    /// <summary>409: the request clashes with work under way (a job already writing the run folder).</summary>
    public static OpenAIErrorResult Conflict(string message, string? param = null) =>
        Create(StatusCodes.Status409Conflict, message, code: "conflict", param: param);

    /// <summary>503 for a platform database the machine refuses (locked by another process, a
    /// full disk, a file that is not a database): the operator's to fix, and a lock is gone on a
    /// retry. It names no file, since clients have no business with the server's paths; whoever
    /// answers it logs the PlatformStorageException, which does.</summary>
    public static OpenAIErrorResult StorageUnavailable() =>
        Create(StatusCodes.Status503ServiceUnavailable,
            "The server cannot use its database of keys, usage and safety settings right now; try again later.",
            type: "server_error", code: "storage_unavailable", headers: [new("Retry-After", "5")]);

    /// <summary>503 for a content-safety provider that could not judge the text (an external
    /// moderation service down): the text is not let through unchecked, and a retry may pass.
    /// It names the provider, not the cause, which the server's log has.</summary>
    public static OpenAIErrorResult ContentFilterUnavailable(SafetyProviderUnavailableException e) =>
        Create(StatusCodes.Status503ServiceUnavailable,
            $"The content filter could not check this request (its provider '{e.Provider}' failed), so nothing unchecked was sent; try again later.",
            type: "server_error", code: "content_filter_unavailable", headers: [new("Retry-After", "5")]);

    /// <summary>The header with which OpenAI's Python and Node SDKs take an error as final: they
    /// retry 408, 409, 429 and 5xx otherwise.</summary>
    public static readonly KeyValuePair<string, string> DoNotRetry = new("x-should-retry", "false");

    /// <summary>429 with OpenAI's type naming the exhausted dimension ("requests" or "tokens").</summary>
    public static OpenAIErrorResult RateLimited(string message, string dimension, IReadOnlyList<KeyValuePair<string, string>> headers) =>
        Create(StatusCodes.Status429TooManyRequests, message, type: dimension, code: "rate_limit_exceeded", headers: headers);

    /// <summary>Azure OpenAI's 400 for a filtered prompt.</summary>
    public static OpenAIErrorResult ContentFiltered(SafetyVerdict verdict, int promptIndex, string param) =>
        new(new ApiException(StatusCodes.Status400BadRequest,
            $"The prompt was filtered by the deployment's content safety policy ({verdict.Reason}). Please modify your prompt and retry.",
            param, "content_filter", InvalidRequest)
        {
            InnerError = new ContentFilterInnerError("ResponsibleAIPolicyViolation", verdict.ToContentFilterResults()),
            PromptFilterResults = [verdict.ToPromptFilterResult(promptIndex)],
        });
}
