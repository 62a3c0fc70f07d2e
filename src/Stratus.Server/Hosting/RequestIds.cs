// x-request-id on every response, errors included, as OpenAI sends it: the SDKs hand it to the
// developer (Node's `request_id` from withResponse() and APIError's `requestID`, Python's
// `_request_id`) to quote when they report a failed request. It is the request's
// HttpContext.TraceIdentifier, which ASP.NET Core's logging scope names RequestId and the
// error middleware's log lines name, so the operator finds the request the client quotes.
namespace Stratus.Server.Hosting;

public static class RequestIds
{
    public const string Header = "x-request-id";

    /// <summary>Sets the header when the response starts, so that it survives the error
    /// middleware's Response.Clear().</summary>
    public static IApplicationBuilder UseRequestIds(this IApplicationBuilder app) => app.Use(static (context, next) =>
    {
        context.Response.OnStarting(static state =>
        {
            var http = (HttpContext)state;
            http.Response.Headers[Header] = http.TraceIdentifier;
            return Task.CompletedTask;
        }, context);
        return next(context);
    });
}
