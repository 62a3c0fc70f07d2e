// The access log (`stratus serve --access-log <file>`, `-` for stdout): one JSON object per
// request and line, as nginx's and Envoy's JSON access logs and Azure OpenAI's request logs give
// it, for shipping with standard tools (jq, Vector, Fluent Bit, Filebeat). Who called (client
// address, key id and name, never the secret), what (method, path, model), how it went (status,
// error code, tokens, duration, time to first token of a stream, whether the client went away)
// and the request id (the x-request-id every response carries, RequestIds). Never a prompt or
// completion text.
//
// A request only hands its entry to a bounded queue; one writer drains it, so a slow or full
// disk never holds a request up: past the queue's capacity lines are dropped and counted
// (stratus_access_log_dropped_lines_total, and a warning in the server's log at most once a
// minute, LogThrottle). The writer opens
// the file for each batch of lines and appends at its end, so a file renamed or deleted (logrotate,
// `mv`) is followed by a new one at the path at the next line, and one truncated in place
// (logrotate's copytruncate) is written from its new end. On Linux the file is opened for
// appending (O_APPEND), as nginx opens its logs: the kernel puts each batch at the end the file
// has as it writes, so neither another process appending to the file nor a truncation just before
// the write is written over or leaves a hole. The first batch after a failed write, which a full
// disk may have cut short mid-line, ends that line first, so that its own lines parse. A pipe (a
// FIFO, /dev/stdout in a container) is held open and written in order, as standard output is.
//
// Not Microsoft.AspNetCore.HttpLogging: its W3CLogger writes W3C's space-separated format with a
// fixed set of fields (no model, tokens or key), into dated files it rotates itself, and stops
// appending at a size limit (10 MiB by default); HttpLoggingMiddleware writes through ILogger,
// which has no file sink in the box and wraps each event in an envelope of its own (the console's
// JSON formatter), and its interceptor adds fields when the response starts, before a stream's
// tokens are known.
using System.Buffers;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Stratus.Platform;

namespace Stratus.Server.Hosting;

/// <summary>One request's line, filled in as the request goes (the trust layer adds the key, the
/// generation its tokens, the error writers the error code) and queued when it ends. It is the
/// request's feature: <see cref="Of"/> finds it, null when the access log is off.</summary>
public sealed class AccessLogEntry
{
    internal AccessLogEntry(DateTime time, long started, IPAddress? client, string method, string path, string requestId)
    {
        Time = time;
        Started = started;
        Client = client;
        Method = method;
        Path = path;
        RequestId = requestId;
    }

    /// <summary>When the request arrived (UTC).</summary>
    public DateTime Time { get; }
    /// <summary>Its Stopwatch timestamp, from which the durations count.</summary>
    internal long Started { get; }
    public IPAddress? Client { get; }
    public string Method { get; }
    public string Path { get; }
    /// <summary>The request's TraceIdentifier: its x-request-id (RequestIds) and the name the
    /// server's error log lines give it.</summary>
    public string RequestId { get; }
    /// <summary>The key that called, or that the key check refused for its scope or rate; null
    /// for a request without a valid key, and under --insecure-no-auth.</summary>
    public ApiKeyRecord? Key { get; set; }
    public string? Model { get; internal set; }
    public int Status { get; internal set; }
    /// <summary>The error's code (its type where it has none); null for a success.</summary>
    public string? Error { get; private set; }
    public bool Stream { get; private set; }
    /// <summary>Tokens of a generation (as its usage counts them); null for other requests.</summary>
    public int? PromptTokens { get; private set; }
    public int? CompletionTokens { get; private set; }
    /// <summary>When the first token was generated (Stopwatch); 0: none.</summary>
    internal long FirstToken { get; private set; }
    internal long Ended { get; set; }
    /// <summary>The client went away before the response ended.</summary>
    public bool Aborted { get; internal set; }

    public TimeSpan Duration => Stopwatch.GetElapsedTime(Started, Ended);
    /// <summary>From arrival to the first generated token, for a stream that had one.</summary>
    public TimeSpan? TimeToFirstToken => Stream && FirstToken != 0 ? Stopwatch.GetElapsedTime(Started, FirstToken) : null;

    /// <summary>The request's entry; null when the access log is off.</summary>
    public static AccessLogEntry? Of(HttpContext context) => context.Features.Get<AccessLogEntry>();

    /// <summary>Notes the error a response carries, from whichever writes it.</summary>
    public static void NoteError(HttpContext context, string? code, string type)
    {
        if (Of(context) is { } entry) entry.Error = code ?? type;
    }

    /// <summary>Notes a generation's tokens (prompts once, choices' completions together) and
    /// when its first token came (a Stopwatch timestamp, 0 for none).</summary>
    public static void NoteGeneration(HttpContext context, bool stream, int promptTokens, int completionTokens, long firstToken)
    {
        if (Of(context) is not { } entry) return;
        (entry.Stream, entry.PromptTokens, entry.CompletionTokens, entry.FirstToken) = (stream, promptTokens, completionTokens, firstToken);
    }
}

public sealed partial class AccessLog : IAsyncDisposable
{
    /// <summary>The path that means standard output.</summary>
    public const string StandardOutput = "-";
    /// <summary>Lines waiting for the writer at most (a few MB of entries): a burst larger than
    /// this while the disk stalls is dropped, not held in memory or in the requests.</summary>
    public const int DefaultCapacity = 8192;

    /// <summary>Owner read and write, group read (a log shipper in the group), as Debian keeps
    /// web servers' logs: it names keys and clients, though never secrets or text.</summary>
    const UnixFileMode CreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;
    /// <summary>Lines written with one open and write.</summary>
    const int MaxBatch = 256;

    static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };

    /// <summary>The file's path; null for standard output.</summary>
    readonly string? path;
    /// <summary>Where the lines go when it is a stream held open (standard output, a pipe); null:
    /// the file at <see cref="path"/>, opened for each batch.</summary>
    readonly Stream? stream;
    readonly ILogger logger;
    readonly Channel<AccessLogEntry> queue;
    readonly Meter meter;
    readonly Task writer;
    readonly LogThrottle drops;
    long dropped, droppedReported;
    bool failing;

    AccessLog(string? path, Stream? stream, int capacity, ILogger logger, TimeProvider? time)
    {
        this.path = path;
        this.stream = stream;
        this.logger = logger;
        Time = time ?? TimeProvider.System;
        drops = new LogThrottle(Time);
        // Wait mode only makes TryWrite say false when full (nothing waits): that line is counted.
        queue = Channel.CreateBounded<AccessLogEntry>(new BoundedChannelOptions(capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        meter = new Meter(ServingMetrics.MeterName);
        meter.CreateObservableCounter("stratus.access_log.dropped_lines", () => Dropped,
            description: "Access log lines lost: the queue was full (the log is written slower than requests end) or the file could not be written.");
        writer = Task.Run(WriteAllAsync);
    }

    /// <summary>Lines lost so far: dropped from a full queue, or in a write that failed.</summary>
    public long Dropped => Interlocked.Read(ref dropped);

    /// <summary>The clock a line's time is read from (the server's: the system's unless a test sets it).</summary>
    public TimeProvider Time { get; }

    /// <summary>Opens the log at <paramref name="path"/> (created with mode 0640 where it does
    /// not exist, else appended to), or standard output for "-"; its lines dated by <paramref name="time"/>.</summary>
    /// <exception cref="StratusUserException">The file cannot be opened for writing.</exception>
    public static AccessLog Open(string path, ILogger logger, int capacity = DefaultCapacity, TimeProvider? time = null)
    {
        if (path == StandardOutput) return new AccessLog(null, Console.OpenStandardOutput(), capacity, logger, time);
        FileStream file;
        try
        {
            // Here, so that a path that cannot be written is refused at start, not line by line.
            file = OpenFile(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new StratusUserException($"cannot write the access log {path}: {e.Message.TrimEnd('.')}; give --access-log a file in a folder that exists and this user may write, or - for standard output", e);
        }
        if (file.CanSeek)
        {
            file.Dispose();
            return new AccessLog(path, null, capacity, logger, time);
        }
        // A pipe (a FIFO a shipper reads, /dev/stdout in a container) is held open and written
        // in order, as standard output is: it has no end to find (asking stopped the writer at the
        // first line, for good), and a FIFO's reader would meet its end at each batch's close.
        if (OperatingSystem.IsLinux()) WaitOnWrites(file.SafeFileHandle);
        return new AccessLog(path, file, capacity, logger, time);
    }

    /// <summary>The file at <paramref name="path"/>, open for writing only: a log this user may
    /// write but not read (mode 0200, or 0620 of another owner) is a log it can keep, and a FIFO
    /// opened for reading too kept a reader of its own, so that with the shipper gone no write
    /// failed: the pipe filled and the writer waited for ever, the server's stop with it.</summary>
    static FileStream OpenFile(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.OpenOrCreate,
                Access = FileAccess.Write,
                // Others may read it (tail -F, a shipper) and rename or delete it (logrotate) meanwhile.
                Share = FileShare.ReadWrite | FileShare.Delete,
                BufferSize = 0,
            };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = CreateMode;
            return new FileStream(path, options);
        }
        // open(2) itself: .NET's FileMode.Append does not set O_APPEND (it writes at the length it
        // read when it opened the file), and O_APPEND set only once the file is open is too late
        // for a file marked append-only (chattr +a), which refuses any other open for writing.
        // Not waiting for a reader (O_NONBLOCK): a FIFO that has none is ENXIO at once.
        const int Flags = OWriteOnly | OCreate | OAppend | ONonBlock | OCloseOnExec;
        var descriptor = open(path, Flags, (uint)CreateMode);
        if (descriptor == -1 && Marshal.GetLastPInvokeError() == NoSuchDeviceOrAddress)
        {
            // A FIFO nobody reads yet (its shipper starts after the server): opened with a reader
            // of this process's own for a moment, so that it opens without waiting. Its lines are
            // lost, counted, until a reader comes, and then reach it.
            var reader = open(path, OReadOnly | ONonBlock | OCloseOnExec, 0);
            if (reader != -1)
            {
                descriptor = open(path, Flags, (uint)CreateMode);
                var error = Marshal.GetLastPInvokeError();
                close(reader);
                Marshal.SetLastPInvokeError(error);
            }
        }
        if (descriptor == -1)
        {
            var error = Marshal.GetLastPInvokeError();
            var message = Marshal.GetPInvokeErrorMessage(error);
            throw error is PermissionDenied or NotPermitted ? new UnauthorizedAccessException(message) : new IOException(message);
        }
        return new FileStream(new SafeFileHandle(descriptor, ownsHandle: true), FileAccess.Write, bufferSize: 0);
    }

    // Linux's values (x86-64 and arm64 alike).
    const int OReadOnly = 0, OWriteOnly = 0x1, OCreate = 0x40, OAppend = 0x400, ONonBlock = 0x800, OCloseOnExec = 0x80000;
    const int GetStatusFlags = 3, SetStatusFlags = 4;
    const int NotPermitted = 1, NoSuchDeviceOrAddress = 6, PermissionDenied = 13;

    /// <summary>Clears the O_NONBLOCK the file was opened with: a write to a full pipe then waits
    /// for its reader rather than failing with part of a line written.</summary>
    static void WaitOnWrites(SafeFileHandle file)
    {
        var flags = fcntl(file, GetStatusFlags, 0);
        if (flags == -1 || fcntl(file, SetStatusFlags, flags & ~ONonBlock) == -1)
            throw new IOException(Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError()));
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int descriptor);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle file, int command, int argument);

    /// <summary>Queues a request's line; never waits. A full queue drops it, counted.</summary>
    public void Write(AccessLogEntry entry)
    {
        if (!queue.Writer.TryWrite(entry)) Interlocked.Increment(ref dropped);
    }

    async Task WriteAllAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        using var json = new Utf8JsonWriter(buffer, JsonOptions);
        var reader = queue.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            buffer.ResetWrittenCount();
            // Sent ahead of the lines only after a failed write left the file mid-line (WriteBatch).
            buffer.Write("\n"u8);
            var lines = 0;
            while (lines < MaxBatch && reader.TryRead(out var entry))
            {
                json.Reset(buffer);
                Format(json, entry);
                json.Flush();
                buffer.Write("\n"u8);
                lines++;
            }
            WriteBatch(buffer.WrittenMemory, lines);
            ReportDrops(stopping: false);
        }
        ReportDrops(stopping: true);
    }

    void WriteBatch(ReadOnlyMemory<byte> bytes, int lines)
    {
        try
        {
            if (stream is not null)
            {
                stream.Write(bytes.Span[1..]);
                stream.Flush();
            }
            else
            {
                // Opened for each batch: the lines go to whatever file is at the path now (a new
                // one after a rotation), at its end (a file truncated in place is not written at
                // the old offset, which would leave a hole of zeros before the line). On Linux
                // O_APPEND puts them at the end the file has when they are written, past a
                // truncation or another writer's lines since the length was read; elsewhere the
                // length read is where they go.
                using var file = OpenFile(path!);
                // After a failed write, which a full disk may have cut short mid-line, that line
                // is ended first: the lines would otherwise join it, and neither would parse.
                // Only then: another server appending to the file may be mid-line at any time.
                var start = failing && EndsMidLine(path!) ? 0 : 1;
                RandomAccess.Write(file.SafeFileHandle, bytes.Span[start..], RandomAccess.GetLength(file.SafeFileHandle));
            }
            if (failing) logger.LogWarning("access log {Path}: writing again", Where);
            failing = false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Interlocked.Add(ref dropped, lines);
            // Once per outage, not per line: the server goes on serving either way.
            if (!failing) logger.LogError("access log {Path}: lines are lost until it can be written again: {Reason}", Where, e.Message);
            failing = true;
        }
    }

    /// <summary>Whether the file at <paramref name="path"/> ends mid-line. Read apart from the
    /// write, which needs no right to read; a file this user may not read is taken to: an empty
    /// line costs less than two lines that do not parse.</summary>
    static bool EndsMidLine(string path)
    {
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var length = RandomAccess.GetLength(file);
            Span<byte> last = stackalloc byte[1];
            return length > 0 && RandomAccess.Read(file, last, length - 1) == 1 && last[0] != (byte)'\n';
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return true;
        }
    }

    string Where => path ?? "(standard output)";

    /// <summary>Says how many lines were lost since it last said so: at once, then at most once a
    /// minute while lines go on being lost, and what is left unsaid when the server stops.</summary>
    void ReportDrops(bool stopping)
    {
        var total = Dropped;
        var lost = drops.Add(total - droppedReported);
        droppedReported = total;
        if (stopping) lost += drops.End() ?? 0;
        if (lost > 0) logger.LogWarning("access log {Path}: {Count} lines lost ({Total} since the server started)", Where, lost, total);
    }

    static void Format(Utf8JsonWriter json, AccessLogEntry entry)
    {
        json.WriteStartObject();
        json.WriteString("time", entry.Time);
        json.WriteString("request_id", entry.RequestId);
        if (entry.Client is { } client) json.WriteString("client", (client.IsIPv4MappedToIPv6 ? client.MapToIPv4() : client).ToString());
        else json.WriteNull("client");
        WriteStringOrNull(json, "key_id", entry.Key?.Id);
        WriteStringOrNull(json, "key_name", entry.Key?.Name);
        json.WriteString("method", entry.Method);
        json.WriteString("path", entry.Path);
        WriteStringOrNull(json, "model", entry.Model);
        json.WriteNumber("status", entry.Status);
        WriteStringOrNull(json, "error", entry.Error);
        json.WriteBoolean("stream", entry.Stream);
        WriteNumberOrNull(json, "prompt_tokens", entry.PromptTokens);
        WriteNumberOrNull(json, "completion_tokens", entry.CompletionTokens);
        json.WriteNumber("duration_ms", Math.Round(entry.Duration.TotalMilliseconds, 3));
        if (entry.TimeToFirstToken is { } ttft) json.WriteNumber("ttft_ms", Math.Round(ttft.TotalMilliseconds, 3));
        else json.WriteNull("ttft_ms");
        json.WriteBoolean("aborted", entry.Aborted);
        json.WriteEndObject();
    }

    static void WriteStringOrNull(Utf8JsonWriter json, string name, string? value)
    {
        if (value is null) json.WriteNull(name);
        else json.WriteString(name, value);
    }

    static void WriteNumberOrNull(Utf8JsonWriter json, string name, int? value)
    {
        if (value is { } number) json.WriteNumber(name, number);
        else json.WriteNull(name);
    }

    /// <summary>Writes the lines still queued, then stops: call once the server has stopped
    /// (lines of requests ending after that are dropped, counted).</summary>
    public async ValueTask DisposeAsync()
    {
        queue.Writer.TryComplete();
        await writer.ConfigureAwait(false);
        stream?.Dispose();
        meter.Dispose();
    }
}

/// <summary>Gives each request its access log entry, and queues it when the request ends: after
/// the whole response, a stream's last event included, or the client's leaving. Outermost, so that
/// it sees the status every other part of the pipeline set.</summary>
public sealed class AccessLogMiddleware(RequestDelegate next, AccessLog log)
{
    /// <summary>nginx's status for a request whose client closed the connection before any answer.</summary>
    public const int ClientClosedRequest = 499;

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        // A key sent where none belongs (a path a client built from it, percent-encoded or not: the
        // path is decoded here) is cut to its id, as in the server's own log.
        var entry = new AccessLogEntry(log.Time.GetUtcNow().UtcDateTime, Stopwatch.GetTimestamp(), context.Connection.RemoteIpAddress, request.Method, ApiKeyFormat.Redact(request.Path.Value ?? "/"), context.TraceIdentifier);
        context.Features.Set(entry);
        var completed = false;
        try
        {
            await next(context);
            completed = true;
        }
        finally
        {
            entry.Ended = Stopwatch.GetTimestamp();
            entry.Model = context.Items[ErrorMiddleware.ModelItem] as string;
            var response = context.Response;
            entry.Aborted = context.RequestAborted.IsCancellationRequested;
            // Nothing sent: the client left before any answer (nginx's 499), or an error got past
            // every handler and Kestrel answers 500.
            entry.Status = response.HasStarted ? response.StatusCode : entry.Aborted ? ClientClosedRequest : completed ? response.StatusCode : StatusCodes.Status500InternalServerError;
            log.Write(entry);
        }
    }
}
