// Errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}: every failure a
// client can cause is thrown as an ApiException and written by ErrorMiddleware, so handlers
// never build error bodies themselves; one a handler or middleware answers rather than throws is
// an OpenAIErrorResult, written the same way. Azure OpenAI's content-filter refusal adds the
// status, an innererror and prompt_filter_results to that shape; quota refusals add headers.
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Metadata;
using Stratus.Safety;

namespace Stratus.Server.Api;

public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? status switch
    {
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    /// <summary>Seconds the client should wait before retrying (429 and 503).</summary>
    public int? RetryAfterSeconds { get; init; }
    /// <summary>Extra response headers (x-ratelimit-*).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];
    /// <summary>Azure's error.innererror (content_filter_result of a filtered prompt).</summary>
    public object? InnerError { get; init; }
    /// <summary>Azure's prompt_filter_results next to the error of a filtered prompt.</summary>
    public IReadOnlyList<PromptFilterResult>? PromptFilterResults { get; init; }

    public static ApiException Invalid(string message, string? param = null, string? code = null) => new(400, message, param, code);

    /// <summary>A user's error as a 400 in the API's words (its fields, not the CLI's options),
    /// with the parameter and code it names where it names one.</summary>
    public static ApiException Invalid(StratusUserException user) => Invalid(user.MessageOn(Surface.Api), user.Param, user.Code);

    public static ApiException ModelNotFound(string model) =>
        new(404, $"The model `{model}` does not exist.", "model", "model_not_found");
}

/// <summary>An error as a handler's or middleware's answer: written by ErrorMiddleware.WriteAsync,
/// as the server writes every error, with its status, headers and Azure's content-filter details.</summary>
public sealed class OpenAIErrorResult(ApiException error) : IResult, IStatusCodeHttpResult
{
    public int StatusCode => error.Status;
    int? IStatusCodeHttpResult.StatusCode => error.Status;
    /// <summary>The same error to throw where the server's ErrorMiddleware answers it.</summary>
    public ApiException Error => error;

    public Task ExecuteAsync(HttpContext httpContext) => Hosting.ErrorMiddleware.WriteAsync(httpContext, error);
}

public sealed record ErrorBody(
    [property: JsonPropertyName("error")] ErrorDetail Error,
    [property: JsonPropertyName("prompt_filter_results"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<PromptFilterResult>? PromptFilterResults = null);

public sealed record ErrorDetail(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code,
    [property: JsonPropertyName("status"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Status = null,
    [property: JsonPropertyName("innererror"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] object? InnerError = null);
