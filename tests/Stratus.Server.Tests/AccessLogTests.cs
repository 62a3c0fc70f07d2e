// The access log (--access-log): one JSON line per request with who called what and how it went,
// streamed requests' lines when the stream ends (a client that went away included), the key
// check's refusals, a file renamed or truncated by logrotate followed at the next line, and
// never a prompt's or a completion's text. Each test finds its own lines by their request id
// (the x-request-id of the response).
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Stratus.Platform;
using Stratus.Platform.Tests;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

/// <summary>Holds the first piece of every request from user "hold" until its client goes away,
/// and says which request it holds (its id, the x-request-id it would be answered with).</summary>
public sealed class HoldUntilAbortedFilter : IGenerationFilter
{
    public Channel<string> Held { get; } = Channel.CreateUnbounded<string>();

    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) =>
        ValueTask.FromResult<IGenerationScope?>(context.User == "hold" ? new Scope(this, context.Http.TraceIdentifier) : null);

    sealed class Scope(HoldUntilAbortedFilter filter, string requestId) : IGenerationScope
    {
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => null;

        public async ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation)
        {
            filter.Held.Writer.TryWrite(requestId);
            await Task.Delay(Timeout.Infinite, cancellation);
            return new FilteredText(text);
        }

        public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) => ValueTask.FromResult(true);
        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation) => ValueTask.FromResult(ChoiceEnd.None);
        public ValueTask CompleteAsync(int promptTokens, int completionTokens) => ValueTask.CompletedTask;
    }
}

public sealed class AccessLogServer : IAsyncLifetime
{
    public HoldUntilAbortedFilter Hold { get; } = new();
    public TinyModelServer Server { get; }

    /// <summary>The server's clock, at a set instant: a line's time is compared with it, not with
    /// the machine's wall clock, which may be stepped mid-test (NTP, an operator).</summary>
    internal TestClock Clock { get; } = new(new DateTimeOffset(2031, 5, 6, 7, 8, 9, 250, TimeSpan.Zero));

    public AccessLogServer() => Server = new TinyModelServer { WithAccessLog = true, Time = Clock, ConfigureServices = services => services.AddSingleton<IGenerationFilter>(Hold) };

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class AccessLogTests(AccessLogServer fixture) : IClassFixture<AccessLogServer>
{
    /// <summary>Every field a line has, and nothing else: no field holds text.</summary>
    static readonly string[] Fields =
        ["time", "request_id", "client", "key_id", "key_name", "method", "path", "model", "status", "error", "stream", "prompt_tokens", "completion_tokens", "duration_ms", "ttft_ms", "aborted"];

    TinyModelServer Server => fixture.Server;

    static HttpRequestMessage Chat(string content = "Hello", int maxTokens = 3, bool stream = false, string? user = null) =>
        new(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = JsonContent.Create(new
            {
                model = TinyModelServer.ModelName,
                messages = new[] { new { role = "user", content } },
                max_tokens = maxTokens,
                temperature = 0,
                stream,
                stream_options = stream ? new { include_usage = true } : null,
                user,
            }),
        };

    static string RequestId(HttpResponseMessage response) => response.Headers.GetValues(RequestIds.Header).Single();

    /// <summary>Sends a chat with the fixture's key; its status must be 200. Its request id.</summary>
    async Task<string> ChatAsync(HttpRequestMessage request)
    {
        using var response = await Server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await response.Content.ReadAsStringAsync();
        return RequestId(response);
    }

    /// <summary>The line of the request with <paramref name="requestId"/>, once the writer has
    /// written it to <paramref name="file"/> (default: the log's path).</summary>
    async Task<JsonObject> LineAsync(string requestId, string? file = null)
    {
        file ??= Server.AccessLogPath;
        for (var waited = 0; waited < 600; waited++)
        {
            if (File.Exists(file))
                foreach (var line in await File.ReadAllLinesAsync(file))
                    if (line.Contains(requestId, StringComparison.Ordinal))
                    {
                        var entry = JsonNode.Parse(line)!.AsObject();
                        Assert.Equal(Fields, entry.Select(field => field.Key));
                        if ((string?)entry["request_id"] == requestId) return entry;
                    }
            await Task.Delay(50);
        }
        throw new Xunit.Sdk.XunitException($"no access log line for request {requestId} in {file} after 30 s");
    }

    [Fact]
    public async Task A_requests_line_says_who_called_what_and_how_it_went()
    {
        using var response = await Server.Http.SendAsync(Chat());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var requestId = RequestId(response);
        var usage = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["usage"]!;
        var key = (await Server.Keys.ListAsync()).Single(k => k.Name == "tests");

        var line = await LineAsync(requestId);
        Assert.Equal(fixture.Clock.GetUtcNow().UtcDateTime, DateTime.Parse((string)line["time"]!, null, System.Globalization.DateTimeStyles.RoundtripKind));
        Assert.Equal("127.0.0.1", (string?)line["client"]);
        Assert.Equal((key.Id, "tests"), ((string?)line["key_id"], (string?)line["key_name"]));
        Assert.Equal(("POST", "/v1/chat/completions", TinyModelServer.ModelName), ((string?)line["method"], (string?)line["path"], (string?)line["model"]));
        Assert.Equal((200, null, false, false), ((int)line["status"]!, (string?)line["error"], (bool)line["stream"]!, (bool)line["aborted"]!));
        Assert.Equal(((int)usage["prompt_tokens"]!, (int)usage["completion_tokens"]!), ((int)line["prompt_tokens"]!, (int)line["completion_tokens"]!));
        Assert.True((double)line["duration_ms"]! > 0);
        Assert.Null(line["ttft_ms"]);

        // A stream's line has its time to first token, within its duration.
        using var stream = await Server.Http.SendAsync(Chat(maxTokens: 4, stream: true));
        var events = await stream.Content.ReadAsStringAsync();
        var streamed = await LineAsync(RequestId(stream));
        Assert.Equal((200, true, false), ((int)streamed["status"]!, (bool)streamed["stream"]!, (bool)streamed["aborted"]!));
        Assert.Contains($"\"completion_tokens\":{(int)streamed["completion_tokens"]!}", events);
        Assert.InRange((double)streamed["ttft_ms"]!, double.Epsilon, (double)streamed["duration_ms"]!);

        // A request that generates nothing has no model and no tokens.
        using var plain = await Server.Http.GetAsync("/v1/models");
        var models = await LineAsync(RequestId(plain));
        Assert.Equal(("GET", "/v1/models", 200), ((string?)models["method"], (string?)models["path"], (int)models["status"]!));
        Assert.Null(models["model"]);
        Assert.Null(models["prompt_tokens"]);
    }

    [Fact]
    public async Task A_stream_the_client_leaves_is_logged_when_it_ends_as_aborted()
    {
        string requestId;
        using (var cancel = new CancellationTokenSource())
        {
            using var response = await Server.Http.SendAsync(Chat(maxTokens: 50, stream: true, user: "hold"), HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            requestId = RequestId(response);
            Assert.Equal(requestId, await fixture.Hold.Held.Reader.ReadAsync());
            // Hang up mid-stream.
            cancel.Cancel();
        }
        var line = await LineAsync(requestId);
        // The status the client got, as the response had begun; the line says that it left.
        Assert.Equal((200, true, true), ((int)line["status"]!, (bool)line["stream"]!, (bool)line["aborted"]!));
        Assert.True((int)line["completion_tokens"]! >= 1);
        Assert.NotNull(line["ttft_ms"]);

        // A client that leaves before any answer is nginx's 499.
        string unanswered;
        using (var cancel = new CancellationTokenSource())
        {
            var request = Server.Http.SendAsync(Chat(maxTokens: 50, user: "hold"), cancel.Token);
            unanswered = await fixture.Hold.Held.Reader.ReadAsync();
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        }
        var left = await LineAsync(unanswered);
        Assert.Equal((AccessLogMiddleware.ClientClosedRequest, false, true), ((int)left["status"]!, (bool)left["stream"]!, (bool)left["aborted"]!));
    }

    [Fact]
    public async Task The_key_checks_refusals_are_logged_with_the_key_they_refused()
    {
        using var client = Server.AnonymousClient();
        async Task<JsonObject> RefusedAsync(string? key, HttpStatusCode status)
        {
            using var request = Chat();
            if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            using var response = await client.SendAsync(request);
            Assert.Equal(status, response.StatusCode);
            return await LineAsync(RequestId(response));
        }

        var wrong = await RefusedAsync(ApiKeyFormat.Generate().Key, HttpStatusCode.Unauthorized);
        Assert.Equal((401, "invalid_api_key", null, null), ((int)wrong["status"]!, (string?)wrong["error"], (string?)wrong["key_id"], (string?)wrong["key_name"]));
        var missing = await RefusedAsync(null, HttpStatusCode.Unauthorized);
        Assert.Equal((401, null), ((int)missing["status"]!, (string?)missing["key_name"]));

        var scraper = await Server.Keys.CreateAsync("scraper-" + Guid.NewGuid().ToString("N")[..8], ApiKeyScopes.Metrics, RateLimits.Unlimited, "tests");
        var forbidden = await RefusedAsync(scraper.Secret, HttpStatusCode.Forbidden);
        Assert.Equal((403, "insufficient_permissions", scraper.Key.Id, scraper.Key.Name), ((int)forbidden["status"]!, (string?)forbidden["error"], (string?)forbidden["key_id"], (string?)forbidden["key_name"]));
        Assert.Null(forbidden["prompt_tokens"]);

        var limited = await Server.Keys.CreateAsync("one-rpm-" + Guid.NewGuid().ToString("N")[..8], ApiKeyScopes.Inference, new RateLimits(1, 0), "tests");
        using (var first = Server.AnonymousClient())
        {
            first.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", limited.Secret);
            using var used = await first.GetAsync("/v1/models");
            Assert.Equal(HttpStatusCode.OK, used.StatusCode);
        }
        var throttled = await RefusedAsync(limited.Secret, (HttpStatusCode)429);
        Assert.Equal((429, "rate_limit_exceeded", limited.Key.Name), ((int)throttled["status"]!, (string?)throttled["error"], (string?)throttled["key_name"]));
    }

    /// <summary>A key a client put in a URL's path, as it is or percent-encoded to any depth (the
    /// path is logged decoded once, so %25252D is logged as %252D, a '-' escaped twice), is cut
    /// to its id in the line, as in the server's own log.</summary>
    [Fact]
    public async Task A_key_in_the_path_is_cut_to_its_id()
    {
        var (id, key) = ApiKeyFormat.Generate();
        var secret = key[(ApiKeyFormat.Prefix.Length + ApiKeyFormat.IdLength)..];
        using var client = Server.AnonymousClient();
        foreach (var sent in new[] { key, key.Replace("-", "%2D", StringComparison.Ordinal), key.Replace("-", "%25252D", StringComparison.Ordinal), key.Replace("s", "%252573", StringComparison.Ordinal) })
        {
            using var response = await client.GetAsync($"/v1/models/{sent}");
            var line = await LineAsync(RequestId(response));
            Assert.Equal($"/v1/models/{ApiKeyFormat.Prefix}{id}[redacted]", (string?)line["path"]);
            Assert.DoesNotContain(secret, line.ToJsonString());
        }
    }

    [Fact]
    public async Task A_file_rotated_away_or_truncated_is_followed_at_the_next_line()
    {
        var before = await ChatAsync(Chat());
        await LineAsync(before);

        // logrotate's default: the file is renamed; the next line makes a new one at the path.
        var rotated = Server.AccessLogPath + ".1";
        File.Move(Server.AccessLogPath, rotated, overwrite: true);
        var after = await ChatAsync(Chat());
        await LineAsync(after);
        Assert.DoesNotContain(after, await File.ReadAllTextAsync(rotated));
        Assert.Contains(before, await File.ReadAllTextAsync(rotated));
        Assert.DoesNotContain(before, await File.ReadAllTextAsync(Server.AccessLogPath));

        // copytruncate: the file is cut to nothing in place; the next line starts it, with no
        // hole of zeros where the old lines were.
        await using (File.Open(Server.AccessLogPath, FileMode.Truncate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete)) { }
        await LineAsync(await ChatAsync(Chat()));
        var text = await File.ReadAllTextAsync(Server.AccessLogPath);
        Assert.StartsWith("{", text);
        Assert.DoesNotContain('\0', text);
    }

    [Fact]
    public async Task Two_logs_appending_to_one_file_lose_none_of_each_others_lines()
    {
        // O_APPEND is Linux's: elsewhere each log writes at the length it read (serving.md says so).
        if (!OperatingSystem.IsLinux()) return;
        var path = Server.AccessLogPath + ".shared";
        const int rounds = 25, linesEach = 2000;
        long dropped = 0;
        for (var round = 0; round < rounds; round++)
        {
            AccessLog[] logs = [AccessLog.Open(path, NullLogger.Instance), AccessLog.Open(path, NullLogger.Instance)];
            // A line at a time, so that both writers write many small batches side by side: one
            // that writes at the length it read before the other's write lands writes over it.
            await Task.WhenAll(logs.Select((log, l) => Task.Run(() =>
            {
                for (var i = 0; i < linesEach; i++)
                {
                    log.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/v1/models", $"{round}-{l}-{i}"));
                    Thread.Yield();
                }
            })));
            foreach (var log in logs)
            {
                await log.DisposeAsync();
                dropped += log.Dropped;
            }
        }

        Assert.Equal(0, dropped);
        var lines = File.ReadAllLines(path);
        // Every line whole (none begun over another) and none missing.
        Assert.Equal(rounds * 2 * linesEach, lines.Select(line => (string)JsonNode.Parse(line)!["request_id"]!).Distinct().Count());
    }

    [Fact]
    public async Task A_line_a_failed_write_cut_short_is_ended_before_the_next_lines()
    {
        var path = Server.AccessLogPath + ".cut";
        var log = AccessLog.Open(path, NullLogger.Instance);
        // A folder in the file's place makes the next write fail (permissions would not: the tests
        // may run as root).
        File.Delete(path);
        Directory.CreateDirectory(path);
        log.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/health", "lost"));
        var waited = Stopwatch.StartNew();
        while (log.Dropped == 0 && waited.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(10);
        Assert.Equal(1, log.Dropped);
        // What a write that ran out of space leaves (measured: a tmpfs filled while serving): the
        // line after it was written on after it, and neither parsed.
        Directory.Delete(path);
        const string cut = "{\"time\":\"2026-11-27T08:15:04.1432638Z\",\"request_id\"";
        await File.WriteAllTextAsync(path, "{\"request_id\":\"whole\"}\n" + cut);
        foreach (var id in new[] { "after-the-cut", "next" })
        {
            log.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/health", id));
            // Each its own batch: the second has no cut line to end.
            await Task.Delay(50);
        }
        await log.DisposeAsync();

        var lines = await File.ReadAllLinesAsync(path);
        Assert.Equal(["whole", null, "after-the-cut", "next"], lines.Select(line => line == cut ? null : (string?)JsonNode.Parse(line)!["request_id"]));
        Assert.Equal(1, log.Dropped);
    }

    [Fact]
    public async Task A_pipe_gets_every_line()
    {
        // A FIFO that a shipper reads, or --access-log /dev/stdout in a container (a pipe): the
        // writer asked its length, which a pipe has not, and stopped at the first line for good,
        // counting nothing lost, and the server then crashed as it stopped.
        if (!OperatingSystem.IsLinux()) return;
        var fifo = Server.AccessLogPath + ".fifo";
        using (var mkfifo = Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
        // Opened for reading first: a FIFO's writer waits for a reader. Its open returns once the
        // log has opened the writing end; a line written before that meets no reader and is lost
        // (counted), as the test below has it, so the lines wait for the reader.
        var readerOpen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reading = Task.Run(async () =>
        {
            using var reader = new StreamReader(new FileStream(fifo, FileMode.Open, FileAccess.Read));
            readerOpen.SetResult();
            return await reader.ReadToEndAsync();
        });
        var log = AccessLog.Open(fifo, NullLogger.Instance);
        await readerOpen.Task.WaitAsync(TimeSpan.FromSeconds(30));
        for (var i = 0; i < 3; i++)
        {
            log.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/health", $"piped-{i}"));
            // Each its own batch.
            await Task.Delay(50);
        }
        // Bounded, as the read below: on a pipe the writer once stopped, or waited for a reader.
        await log.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, log.Dropped);
        // The log's handle is closed: the reader meets its end once this process holds no writer.
        // A timeout rather than a hang if not.
        var text = await reading.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(["piped-0", "piped-1", "piped-2"], text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => (string)JsonNode.Parse(line)!["request_id"]!));
    }

    [Fact]
    public async Task A_pipe_whose_reader_goes_away_loses_lines_counted_and_never_holds_the_server_up()
    {
        // The log held the FIFO open for reading too: with its reader gone (a shipper restarted)
        // the writes met no broken pipe, filled the pipe's 64 KiB and then waited for ever, and
        // the server with them as it stopped. Also nothing to wait for at the start: no reader yet.
        if (!OperatingSystem.IsLinux()) return;
        var fifo = Server.AccessLogPath + ".gone.fifo";
        using (var mkfifo = Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
        var log = await Task.Run(() => AccessLog.Open(fifo, NullLogger.Instance)).WaitAsync(TimeSpan.FromSeconds(30));
        var lines = 0;
        void Write(string id, int count)
        {
            for (var i = 0; i < count; i++) log.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/health", $"{id}-{lines++}"));
        }

        async Task<string> ReadLineAsync()
        {
            using var reader = new StreamReader(new FileStream(fifo, FileMode.Open, FileAccess.Read));
            Write("first", 1);
            return (await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)))!;
        }

        Assert.Contains("first-0", await Task.Run(ReadLineAsync));
        // The reader has gone: about 300 bytes a line, well past what a pipe holds.
        Write("unread", 1000);
        var waited = Stopwatch.StartNew();
        while (log.Dropped < 1000 && waited.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(10);
        Assert.Equal(1000, log.Dropped);
        // A reader that comes back gets the lines written from then on.
        Assert.Contains("first-1001", await Task.Run(ReadLineAsync));
        await log.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_file_marked_append_only_or_that_this_user_may_write_but_not_read_is_a_log_it_keeps()
    {
        // Opened to be read too, and O_APPEND set only once open: both refused at the start.
        if (!OperatingSystem.IsLinux()) return;
        async Task AssertKept(string path)
        {
            var log = AccessLog.Open(path, NullLogger.Instance);
            log.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/health", "kept"));
            await log.DisposeAsync();
            Assert.Equal(0, log.Dropped);
        }

        // chattr +a, as logs are hardened: the file can be opened for appending alone (root too).
        // Where the file system has no such mark, or this user may not set it, there is none to test.
        var appendOnly = Server.AccessLogPath + ".append-only";
        await File.WriteAllTextAsync(appendOnly, "{\"request_id\":\"before\"}\n");
        if (Succeeds("chattr", "+a", appendOnly))
        {
            try { await AssertKept(appendOnly); }
            finally { Succeeds("chattr", "-a", appendOnly); }
            Assert.Equal(["before", "kept"], (await File.ReadAllLinesAsync(appendOnly)).Select(line => (string)JsonNode.Parse(line)!["request_id"]!));
        }

        // Mode 0200 stops everyone but root, as whom CI runs.
        if (Environment.IsPrivilegedProcess) return;
        var writeOnly = Server.AccessLogPath + ".write-only";
        await File.WriteAllTextAsync(writeOnly, "");
        File.SetUnixFileMode(writeOnly, UnixFileMode.UserWrite);
        await AssertKept(writeOnly);
        File.SetUnixFileMode(writeOnly, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Contains("\"kept\"", await File.ReadAllTextAsync(writeOnly));

        static bool Succeeds(string program, params string[] arguments)
        {
            var start = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var argument in arguments) start.ArgumentList.Add(argument);
            try
            {
                using var process = Process.Start(start)!;
                process.WaitForExit();
                return process.ExitCode == 0;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return false; // no such program here
            }
        }
    }

    [Fact]
    public async Task No_prompt_or_completion_text_is_logged()
    {
        const string secret = "Zebra quartz 4417 harbour";
        using var response = await Server.Http.SendAsync(Chat(content: secret, maxTokens: 24));
        var completion = (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["choices"]![0]!["message"]!["content"]!;
        await LineAsync(RequestId(response));
        await LineAsync(await ChatAsync(Chat(content: secret, maxTokens: 24, stream: true)));

        var log = await File.ReadAllTextAsync(Server.AccessLogPath);
        Assert.DoesNotContain(secret, log);
        Assert.DoesNotContain("Zebra", log);
        // The completion's text is in no field either (only names, codes, numbers and paths are).
        foreach (var line in log.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            foreach (var (_, value) in JsonNode.Parse(line)!.AsObject())
                if (value?.GetValueKind() == JsonValueKind.String && completion.Trim().Length >= 4)
                    Assert.DoesNotContain(completion.Trim(), (string)value!);
    }
}
