// The server's log lines as a test reads them: a logger provider that keeps every line it is given
// (Debug and up, whatever the server's minimum level), with its level, category and exception.
using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Stratus.Server.Tests;

public sealed record LogLine(string Category, LogLevel Level, string Message, Exception? Exception);

public sealed class LogCapture : ILoggerProvider
{
    readonly ConcurrentQueue<LogLine> lines = new();

    public IReadOnlyList<LogLine> Lines => [.. lines];

    /// <summary>Adds the capture to a server's services, taking Debug lines too.</summary>
    public void AddTo(IServiceCollection services)
    {
        services.AddSingleton<ILoggerProvider>(this);
        services.Configure<LoggerFilterOptions>(filter => filter.Rules.Add(new LoggerFilterRule(typeof(LogCapture).FullName, null, LogLevel.Debug, null)));
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    sealed class Logger(LogCapture capture, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            capture.lines.Enqueue(new LogLine(category, logLevel, formatter(state, exception), exception));
    }
}
