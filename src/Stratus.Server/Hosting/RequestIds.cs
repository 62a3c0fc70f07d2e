// x-request-id on every response, errors included, as OpenAI sends it: the SDKs hand it to the
// developer (Node's `request_id` from withResponse() and APIError's `requestID`, Python's
// `_request_id`) to quote when they report a failed request. It is the request's
// HttpContext.TraceIdentifier, which the error middleware's log lines and the access log name, so
// the operator finds the request the client quotes. Set here to a random one, as OpenAI's
// (`req_` and 32 hex digits): Kestrel's own is its connection counter, seeded with the clock when
// the process starts, so two servers started a millisecond apart give the same ids once one of them
// has taken 10,000 connections, and logs gathered from both would name two requests alike.
namespace Stratus.Server.Hosting;

public static class RequestIds
{
    public const string Header = "x-request-id";

    const string Prefix = "req_";

    /// <summary>Names the request (<see cref="HttpContext.TraceIdentifier"/>), and sets the header
    /// when the response starts, so that it survives the error middleware's Response.Clear().
    /// Before anything that reads the request's id.</summary>
    public static IApplicationBuilder UseRequestIds(this IApplicationBuilder app) => app.Use(static (context, next) =>
    {
        context.TraceIdentifier = NewId();
        context.Response.OnStarting(static state =>
        {
            var http = (HttpContext)state;
            http.Response.Headers[Header] = http.TraceIdentifier;
            return Task.CompletedTask;
        }, context);
        return next(context);
    });

    /// <summary>"req_" and a random version-4 GUID's 32 hex digits (122 random bits), in one string.</summary>
    static string NewId() => string.Create(Prefix.Length + 32, Guid.NewGuid(), static (id, guid) =>
    {
        Prefix.CopyTo(id);
        guid.TryFormat(id[Prefix.Length..], out _, "N");
    });
}
