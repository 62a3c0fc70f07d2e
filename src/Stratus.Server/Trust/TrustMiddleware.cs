// The trust layer's place in the request pipeline. TrustErrorMiddleware turns errors the client
// caused (TrustUserException, StratusUserException, bad HTTP input) into OpenAI-shaped 4xx
// responses instead of 500s, and a platform database the machine refuses or a content-safety
// provider that fails into a 503, for hosts
// without an error middleware of their own (StratusServer has one and leaves this out).
// TrustAuthenticationMiddleware authenticates the key (Authorization: Bearer, or Azure's
// api-key header), checks the scope the route needs, charges the request against the key's
// requests per minute, puts the x-ratelimit-* headers on every response, and hands the handler
// its RequestTrust; the key, let in or refused for its scope or rate, is named in the access log.
using System.Net;
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Trust;

public sealed class TrustErrorMiddleware(RequestDelegate next, StratusTrust trust, ILogger<TrustErrorMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (Exception e) when (e is TrustUserException or StratusUserException && !context.Response.HasStarted)
        {
            // In the API's words: its fields and requests, not the CLI's options and commands.
            // The field at fault is the error's param, as the server's own ErrorMiddleware answers it.
            var (message, param) = e is TrustUserException trust ? (trust.MessageOn(Surface.Api), trust.Param)
                : (((StratusUserException)e).MessageOn(Surface.Api), ((StratusUserException)e).Param);
            await (e switch
            {
                TrustUserException { NotFound: true } => OpenAIErrors.NotFound(message, param),
                TrustUserException { Conflict: true } => OpenAIErrors.Conflict(message, param),
                _ => OpenAIErrors.BadRequest(message, param),
            }).ExecuteAsync(context);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            // Kestrel and parameter binding report malformed input this way (body too large,
            // unreadable JSON); its status code is already a 4xx.
            logger.LogDebug(e, "Bad request");
            await OpenAIErrors.UnreadableBody(e).ExecuteAsync(context);
        }
        catch (PlatformStorageException e) when (!context.Response.HasStarted)
        {
            // The operator gets the file and SQLite's words; the client a 503 without them.
            trust.LogStorageFailure(logger, e, context.Request.Path, context.TraceIdentifier);
            await OpenAIErrors.StorageUnavailable().ExecuteAsync(context);
        }
        catch (SafetyProviderUnavailableException e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "A content-safety provider failed serving {Path}", context.Request.Path);
            await OpenAIErrors.ContentFilterUnavailable(e).ExecuteAsync(context);
        }
    }
}

/// <param name="shapeErrors">False where the host's own error middleware writes ApiExceptions
/// (StratusServer's ErrorMiddleware): refusals are thrown to it as ApiExceptions, so it writes and
/// counts them (/metrics) as every other error; true: written here.</param>
public sealed class TrustAuthenticationMiddleware(RequestDelegate next, StratusTrust trust, ILogger<TrustAuthenticationMiddleware> logger, ILogger<RequestTrust> requestLogger,
    bool shapeErrors = true)
{
    /// <summary>Azure OpenAI's key header, accepted besides Authorization: Bearer.</summary>
    public const string ApiKeyHeader = "api-key";

    /// <summary>Longer header values are refused before any parsing; keys are 66 characters.</summary>
    const int MaxCredentialLength = 1024;

    public async Task InvokeAsync(HttpContext context)
    {
        if (TrustRoutes.IsAnonymous(context.Request.Method, context.Request.Path.Value))
        {
            await next(context);
            return;
        }
        if (trust.Options.InsecureNoAuth)
        {
            await ServeWithoutKeyAsync(context);
            return;
        }

        var (presented, problem) = Credential(context.Request);
        if (problem is not null)
        {
            await RefuseAsync(context, OpenAIErrors.InvalidApiKey(problem));
            return;
        }
        var result = await trust.Keys.AuthenticateAsync(presented, context.RequestAborted);
        if (!result.Succeeded)
        {
            // Clients learn only what they can fix; wrong and revoked keys read alike, and only the
            // holder of an expired key's secret learns that it expired (of a rotated key's old
            // secret, that it was replaced).
            logger.LogInformation("Refused {Method} {Path}: {Failure}", context.Request.Method, context.Request.Path, result.Failure);
            await RefuseAsync(context, OpenAIErrors.InvalidApiKey(result.Failure switch
            {
                AuthenticationFailure.Missing => $"No API key provided. Send it as 'Authorization: Bearer <key>' or in the '{ApiKeyHeader}' header.",
                AuthenticationFailure.Malformed => $"Malformed API key: Stratus keys start with '{ApiKeyFormat.Prefix}' and are {ApiKeyFormat.Length} characters long.",
                AuthenticationFailure.Expired => $"This API key expired on {ApiKeyService.FormatExpiry(result.ExpiredAt!.Value)}. Ask an administrator of this server for a new key " +
                    "(stratus keys create, or POST /v1/admin/keys with an admin key).",
                AuthenticationFailure.Rotated => $"This API key's secret was replaced by a new one, and the old one stopped working on {ApiKeyService.FormatExpiry(result.ExpiredAt!.Value)}. " +
                    "Ask an administrator of this server for the new secret (stratus keys rotate prints it).",
                _ => "Incorrect API key provided, or the key was revoked.",
            }));
            return;
        }
        // The key's row was read: a database that failed reads answers them again.
        trust.LogStorageAnswers(logger, wrote: false);
        var key = result.Key!;
        // Named in the access log whether it is let in or refused below.
        AccessLogEntry.Of(context)?.Key = key;
        var scope = TrustRoutes.RequiredScope(context);
        if (!key.Allows(scope))
        {
            await RefuseAsync(context, OpenAIErrors.InsufficientScope(
                $"API key '{key.Name}' lacks the '{ApiKeyScopeNames.Format(scope)}' scope this endpoint needs (it has {ApiKeyScopeNames.Format(key.Scopes)})."));
            return;
        }

        var decision = trust.Quotas.AdmitRequest(key);
        if (!decision.Admitted)
        {
            var status = trust.Quotas.StatusOf(key, decision.Status.RetryAfter);
            await RefuseAsync(context, OpenAIErrors.RateLimited(
                $"Rate limit reached for key '{key.Name}' on requests per minute: limit {key.Limits.RequestsPerMinute}. " +
                $"Try again in {RateLimitStatus.FormatDuration(decision.Status.RetryAfter ?? status.ResetRequests)}.",
                "requests", status.ToHeaders()));
            return;
        }

        // Headers are computed when the response starts, so they include the token charge a
        // handler made in between.
        context.Response.OnStarting(() =>
        {
            foreach (var (name, value) in trust.Quotas.StatusOf(key).ToHeaders()) context.Response.Headers[name] = value;
            return Task.CompletedTask;
        });
        var requestTrust = new RequestTrust(trust, key, context.TraceIdentifier, requestLogger);
        context.Features.Set(requestTrust);
        try
        {
            await next(context);
        }
        finally
        {
            requestTrust.Settle();
        }
    }

    async Task ServeWithoutKeyAsync(HttpContext context)
    {
        // The startup guard allows this mode only on loopback addresses; refusing other peers
        // here as well covers the moments between binding and that check. Behind a proxy that
        // --forwarded-allow-ips lists, the client is the one it forwarded (ForwardedClients).
        if (context.Connection.RemoteIpAddress is { } remote && !IPAddress.IsLoopback(remote))
        {
            await RefuseAsync(context, OpenAIErrors.Create(StatusCodes.Status403Forbidden,
                "This server runs with --insecure-no-auth and answers loopback clients only.", code: "insecure_no_auth"));
            return;
        }
        // A proxy on this machine that is not listed makes every client a loopback peer; the
        // X-Forwarded-For it added (one a listed proxy vouched for is consumed) says so.
        if (context.Request.Headers.ContainsKey(Microsoft.AspNetCore.HttpOverrides.ForwardedHeadersDefaults.XForwardedForHeaderName))
        {
            await RefuseAsync(context, OpenAIErrors.Create(StatusCodes.Status403Forbidden,
                "This server runs with --insecure-no-auth and answers loopback clients only; this request came through a proxy that --forwarded-allow-ips does not list, " +
                "so its client is unknown. List the proxy there, so that the client it forwards is checked.", code: "insecure_no_auth"));
            return;
        }
        context.Features.Set(new RequestTrust(trust, null, context.TraceIdentifier, requestLogger));
        await next(context);
    }

    Task RefuseAsync(HttpContext context, OpenAIErrorResult refusal) =>
        shapeErrors ? refusal.ExecuteAsync(context) : throw refusal.Error;

    /// <summary>The presented key, or why none can be read. Authorization wins over api-key.</summary>
    static (string? Key, string? Problem) Credential(HttpRequest request)
    {
        var authorization = request.Headers.Authorization;
        var apiKey = request.Headers[ApiKeyHeader];
        if (authorization.Count > 1 || apiKey.Count > 1)
            return (null, "Send one API key, in a single 'Authorization' or 'api-key' header.");
        var raw = authorization.Count == 1 ? authorization[0] : apiKey.Count == 1 ? apiKey[0] : null;
        if (raw is { Length: > MaxCredentialLength })
            return (null, $"The API key header is {raw.Length} characters long; Stratus keys are {ApiKeyFormat.Length}.");
        // Proxies and clients join repeated headers with commas; keys never contain one.
        if (raw is not null && raw.Contains(','))
            return (null, "Send one API key, in a single 'Authorization' or 'api-key' header.");
        if (authorization.Count == 1 && raw is not null)
        {
            var value = raw.Trim();
            if (value.Equals("Bearer", StringComparison.OrdinalIgnoreCase))
                return (null, "The Authorization header has no key after 'Bearer'.");
            if (value.Contains(' ') && !value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
                return (null, "Unsupported authorization scheme: use 'Authorization: Bearer <key>'.");
        }
        return (ApiKeyFormat.FromHeader(raw), null);
    }
}
