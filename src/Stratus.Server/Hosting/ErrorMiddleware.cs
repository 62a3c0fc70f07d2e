// Every failure leaves the server as an OpenAI-shaped error: ApiExceptions with their status,
// oversized bodies as 413, malformed requests and user errors (StratusUserException, the trust
// layer's TrustUserException, in the API's words: its fields and requests, not the CLI's options
// and commands, see Surface) as 400, a stopped engine, a failed model step, a platform
// database the machine refuses (PlatformStorageException), a content-safety provider that failed
// (SafetyProviderUnavailableException), a job scheduler that cannot be asked
// (JobExecutorUnavailableException) or a request a stopping server ended (ServerShutdown) as
// 503, and anything unexpected as a 500 without internals (logged here, never sent). The one error middleware of the server: the
// trust layer's own is left out (UseStratusTrust(shapeErrors: false)). Also counts the serving API's
// refused and invalid requests for /metrics (ServingMetrics.Counts).
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Server.Api;
using Stratus.Server.Trust;

namespace Stratus.Server.Hosting;

public sealed class ErrorMiddleware(RequestDelegate next, ServingMetrics metrics, ServerShutdown shutdown, StratusTrust trust, ILogger<ErrorMiddleware> logger)
{
    /// <summary>HttpContext.Items key under which handlers note the model a request named.</summary>
    public const string ModelItem = "stratus.model";

    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; nobody is left to answer.
        }
        catch (Exception e)
        {
            // A stopping server ended the request (its client is still there): a retry reaches the next server.
            var ended = e is OperationCanceledException && shutdown.HasEnded;
            var error = e switch
            {
                ApiException api => api,
                BadHttpRequestException bad => OpenAIErrors.UnreadableBody(bad).Error,
                StratusUserException user => ApiException.Invalid(user),
                Stratus.Safety.TrustUserException { NotFound: true } missing => new ApiException(404, missing.MessageOn(Stratus.Safety.Surface.Api), missing.Param, "not_found"),
                Stratus.Safety.TrustUserException { Conflict: true } busy => new ApiException(409, busy.MessageOn(Stratus.Safety.Surface.Api), busy.Param, "conflict"),
                Stratus.Safety.TrustUserException user => ApiException.Invalid(user.MessageOn(Stratus.Safety.Surface.Api), user.Param),
                Stratus.Inference.EngineUnavailableException down => new ApiException(503, $"The model is not available: {down.Message}.", code: "service_unavailable") { RetryAfterSeconds = 5 },
                // The engine goes on without the request's sequences, so a retry may succeed.
                Stratus.Inference.EngineStepFailedException failed => new ApiException(503, failed.Message, code: "model_step_failed") { RetryAfterSeconds = 1 },
                PlatformStorageException => OpenAIErrors.StorageUnavailable().Error,
                // Slurm's controller down: the job is as it was, and the same request may pass later.
                Stratus.Platform.Jobs.JobExecutorUnavailableException scheduler => new ApiException(503, scheduler.MessageOn(Stratus.Safety.Surface.Api), code: "scheduler_unavailable") { RetryAfterSeconds = 30 },
                Stratus.Safety.SafetyProviderUnavailableException provider => OpenAIErrors.ContentFilterUnavailable(provider).Error,
                JsonException => ApiException.Invalid("We could not parse the JSON body of your request."),
                OperationCanceledException when ended => new ApiException(503, "The server is shutting down and ended this request; retry it.", code: "server_shutting_down") { RetryAfterSeconds = 1 },
                _ => null,
            };
            if (error is null) logger.LogError(e, "unhandled error serving {Path} (request {RequestId})", context.Request.Path, context.TraceIdentifier);
            // The client is told the cause's first line, or for the database nothing of the
            // server's paths; the operator gets all of it.
            else if (e is Stratus.Inference.EngineStepFailedException) logger.LogWarning(e, "a model step failed serving {Path} (request {RequestId}); the engine goes on", context.Request.Path, context.TraceIdentifier);
            // It fails every request while its cause lasts: a line a minute names the cause.
            else if (e is PlatformStorageException storage) trust.LogStorageFailure(logger, storage, context.Request.Path, context.TraceIdentifier);
            else if (e is Stratus.Platform.Jobs.JobExecutorUnavailableException) logger.LogWarning("the job scheduler could not be asked serving {Path} (request {RequestId}): {Cause}", context.Request.Path, context.TraceIdentifier, e.Message);
            else if (e is Stratus.Safety.SafetyProviderUnavailableException) logger.LogError(e, "a content-safety provider failed serving {Path} (request {RequestId})", context.Request.Path, context.TraceIdentifier);
            error ??= new ApiException(500, "The server had an error while processing your request.", code: "internal_error");
            if (ServingMetrics.Counts(context.Request.Path))
            {
                var model = context.Items[ModelItem] as string ?? "";
                // A failed model step, a refused database and a failed safety provider are the
                // server's errors, though 503s (a retry may succeed); a 503 otherwise is the server
                // declining the work.
                var serverFault = e is Stratus.Inference.EngineStepFailedException or PlatformStorageException or Stratus.Safety.SafetyProviderUnavailableException;
                metrics.RequestEnded(model, serverFault ? "error"
                    : ended ? Stratus.Inference.FinishReason.Cancelled
                    : error.Status switch { 429 or 503 => "rejected", < 500 => "invalid", _ => "error" });
            }
            if (context.Response.HasStarted)
            {
                // Mid-stream: the status line is gone, so end the event stream with the error.
                await TryWriteStreamError(context, error);
                return;
            }
            // What the failed part set (its status, headers, a buffered body) is not the answer.
            context.Response.Clear();
            await WriteAsync(context, error);
        }
    }

    /// <summary>The Content-Type of every error: that of the server's other JSON answers (ASP.NET
    /// Core's JSON results), so a client reads both alike.</summary>
    public const string ContentType = "application/json; charset=utf-8";

    /// <summary>Writes an error as the answer: its status, Retry-After and headers, beside those
    /// already set (the host's, the rate limits'); a caught exception's response is cleared first.</summary>
    public static async Task WriteAsync(HttpContext context, ApiException error)
    {
        AccessLogEntry.NoteError(context, error.Code, error.Type);
        context.Response.StatusCode = error.Status;
        if (error.RetryAfterSeconds is { } seconds) context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (name, value) in error.Headers) context.Response.Headers[name] = value;
        context.Response.ContentType = ContentType;
        await context.Response.WriteAsync(Serialize(error), CancellationToken.None);
    }

    public static string Serialize(ApiException error) =>
        JsonSerializer.Serialize(new ErrorBody(
            new ErrorDetail(error.Message, error.Type, error.Param, error.Code, error.InnerError is null ? null : error.Status, error.InnerError),
            error.PromptFilterResults));

    static async Task TryWriteStreamError(HttpContext context, ApiException error)
    {
        AccessLogEntry.NoteError(context, error.Code, error.Type);
        try
        {
            await context.Response.WriteAsync($"data: {Serialize(error)}\n\n", context.RequestAborted);
            await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
            // The connection is gone as well.
        }
    }
}

/// <summary>Refuses a body over the limit from its Content-Length before anything reads it;
/// a chunked body is cut off by Kestrel's own limit while being read.</summary>
public sealed class BodySizeMiddleware(RequestDelegate next, long maxBytes)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (context.Request.ContentLength > maxBytes)
            throw new ApiException(413, $"The request body is {context.Request.ContentLength} bytes, over the limit of {maxBytes}.", code: "request_too_large");
        return next(context);
    }
}
