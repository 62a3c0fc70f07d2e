// The format of the server's own log (its warnings and errors; the access log is another thing),
// which .NET's console logger writes: text, the logger's "simple" lines (`warn: <category>[0]`,
// the message indented on the next line, a stack trace after it), or JSON, one object per line
// with the time (UTC), level, category, message and exception (its whole text, in one field), for
// a log collector to read as it reads the access log. `serve --log-format` picks it; without it
// the configuration key that picks any ASP.NET Core app's console format does
// (Logging__Console__FormatterName=json in the environment): CreateSlimBuilder sets the console's
// format to "simple" after the configuration is read, which left that key without effect.
//
// In either format an API key is cut to its id wherever it would show: the server never logs one,
// but ASP.NET Core's lines quote what a client sent where no key belongs (a URL's query string in
// the request lines at Information, a malformed request line or header in Kestrel's at Debug).
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Configuration;
using Stratus.Platform;

namespace Stratus.Server.Hosting;

public enum ServerLogFormat
{
    Text,
    Json,
}

public static class ServerLog
{
    const string FormatterKey = "Logging:Console:FormatterName";

    /// <summary>UTC to the tick, as the access log's `time` is written.</summary>
    const string TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'";

    static readonly string[] Formatters = [ConsoleFormatterNames.Simple, ConsoleFormatterNames.Json, ConsoleFormatterNames.Systemd];

    /// <summary>Sets the console's format (<see cref="Formatter"/>), and wraps each of the
    /// console logger's formats in a <see cref="KeyRedactingFormatter"/>, so call it after every
    /// AddConsole.</summary>
    /// <exception cref="StratusUserException">The configuration names a format the console logger lacks.</exception>
    internal static void Configure(WebApplicationBuilder builder, ServerLogFormat? format)
    {
        var formatter = Formatter(format, builder.Configuration);
        builder.Services.Configure<ConsoleLoggerOptions>(console => console.FormatterName = formatter);
        // The JSON formatter writes no time unless given a format; one the operator configured stays.
        builder.Services.Configure<JsonConsoleFormatterOptions>(json =>
        {
            if (json.TimestampFormat is not null) return;
            json.TimestampFormat = TimestampFormat;
            json.UseUtcTimestamp = true;
        });
        var services = builder.Services;
        for (var i = 0; i < services.Count; i++)
            if (services[i] is { ServiceType: var type, ImplementationType: { } wrapped } && type == typeof(ConsoleFormatter))
                services[i] = ServiceDescriptor.Singleton<ConsoleFormatter>(provider => new KeyRedactingFormatter((ConsoleFormatter)ActivatorUtilities.CreateInstance(provider, wrapped)));
    }

    /// <summary>Whether a server given <paramref name="format"/> will write its log as JSON lines,
    /// for a caller that writes beside it before it starts (serve's lines for a person, which then
    /// leave standard output to them): from the configuration the server will read.</summary>
    /// <exception cref="StratusUserException">The configuration names a format the console logger lacks.</exception>
    public static bool WritesJson(ServerLogFormat? format)
    {
        if (format is { } given) return given == ServerLogFormat.Json;
        using var configuration = StratusServer.CreateBuilder().Configuration;
        return Formatter(null, configuration) == ConsoleFormatterNames.Json;
    }

    /// <summary>The console's format: <paramref name="format"/>'s, else the configuration's, else
    /// text. A name the console logger lacks is refused: it would fall back to text without a word.</summary>
    static string Formatter(ServerLogFormat? format, IConfiguration configuration) => format switch
    {
        ServerLogFormat.Json => ConsoleFormatterNames.Json,
        ServerLogFormat.Text => ConsoleFormatterNames.Simple,
        _ => configuration[FormatterKey] is { Length: > 0 } configured
            ? Formatters.FirstOrDefault(known => string.Equals(known, configured, StringComparison.OrdinalIgnoreCase))
                ?? throw new StratusUserException($"{FormatterKey} (Logging__Console__FormatterName in the environment) is '{configured}', which the console logger lacks: " +
                    $"give it {string.Join(", ", Formatters)}, or give serve --log-format text|json")
            : ConsoleFormatterNames.Simple,
    };
}

/// <summary>Writes what <paramref name="inner"/> writes, under its name, with every API key in it
/// cut to its id (ApiKeyFormat.Redact).</summary>
sealed class KeyRedactingFormatter(ConsoleFormatter inner) : ConsoleFormatter(inner.Name), IDisposable
{
    /// <summary>The console logger formats on the thread that logs, into a writer of that thread's.</summary>
    [ThreadStatic] static StringWriter? buffer;

    public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
    {
        var text = buffer ??= new StringWriter();
        text.GetStringBuilder().Clear();
        inner.Write(logEntry, scopeProvider, text);
        textWriter.Write(ApiKeyFormat.Redact(text.ToString()));
    }

    // The formats hold a subscription to their options' changes.
    public void Dispose() => (inner as IDisposable)?.Dispose();
}
