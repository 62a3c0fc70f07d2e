// Writes OpenAI's streaming format: `data: <json>` events, flushed one by one, ending with
// `data: [DONE]`.
using System.Buffers;
using System.Text.Json;

namespace Stratus.Server.Api;

public sealed class ServerSentEvents(HttpResponse response)
{
    static readonly byte[] Prefix = "data: "u8.ToArray();
    static readonly byte[] Separator = "\n\n"u8.ToArray();
    static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public async Task StartAsync(CancellationToken cancellation)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        // Proxies such as nginx would otherwise hold events back.
        response.Headers["X-Accel-Buffering"] = "no";
        await response.StartAsync(cancellation);
    }

    public async Task WriteAsync<T>(T value, CancellationToken cancellation)
    {
        var body = response.BodyWriter;
        body.Write(Prefix);
        using (var writer = new Utf8JsonWriter(body)) JsonSerializer.Serialize(writer, value, OpenAiJson.Options);
        body.Write(Separator);
        await body.FlushAsync(cancellation);
    }

    public async Task DoneAsync(CancellationToken cancellation)
    {
        response.BodyWriter.Write(Done);
        await response.BodyWriter.FlushAsync(cancellation);
    }
}
