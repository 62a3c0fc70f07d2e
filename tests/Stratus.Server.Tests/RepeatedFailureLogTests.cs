// A failure that repeats while its cause lasts is logged as a line at once, then at most a line a
// minute with how many times it happened since, and a line when it ends (LogThrottle): usage the
// database cannot record (a full disk failed every request, each with an error and its stack
// trace) and access log lines lost (a warning per batch).
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

public sealed class RepeatedFailureLogTests
{
    sealed class ManualClock : TimeProvider
    {
        long ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Interlocked.Read(ref ticks);
        public void Advance(TimeSpan by) => Interlocked.Add(ref ticks, by.Ticks);
    }

    static async Task<(TinyModelServer Server, LogCapture Log)> StartLoggedAsync()
    {
        var log = new LogCapture();
        var server = new TinyModelServer { ConfigureServices = log.AddTo };
        await server.InitializeAsync();
        return (server, log);
    }

    /// <summary>Another process's connection holding the database's write lock, as an sqlite3 shell
    /// left in BEGIN does, until it is disposed.</summary>
    static SqliteConnection HoldWriteLock(TinyModelServer server)
    {
        var holder = new SqliteConnection($"Data Source={Path.Combine(server.DataDir, PlatformDatabase.FileName)};Pooling=False");
        holder.Open();
        using var begin = holder.CreateCommand();
        begin.CommandText = "BEGIN EXCLUSIVE;";
        begin.ExecuteNonQuery();
        return holder;
    }

    [Fact]
    public void A_failure_is_named_at_once_then_once_an_interval_with_its_count_and_once_when_it_ends()
    {
        var clock = new ManualClock();
        var throttle = new LogThrottle(clock);
        Assert.Equal(0, throttle.Add(0));
        Assert.False(throttle.Failing);
        Assert.Equal(1, throttle.Add());
        Assert.True(throttle.Failing);
        // Within the interval: counted, not named.
        clock.Advance(LogThrottle.Interval - TimeSpan.FromSeconds(1));
        Assert.Equal(0, throttle.Add());
        Assert.Equal(0, throttle.Add(4));
        // Past it: the next occurrence names all five, or a check with none new (a batch without drops).
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(5, throttle.Add(0));
        Assert.Equal(0, throttle.Add(2));
        // The end names what no line has named; after it, the next occurrence is named at once.
        Assert.Equal(2, throttle.End());
        Assert.Null(throttle.End());
        Assert.False(throttle.Failing);
        Assert.Equal(1, throttle.Add());
    }

    /// <summary>Writes to the usage table fail, as they do on a full disk: one error line naming
    /// the cause, without a stack trace, for any number of requests within the minute, each
    /// request's exception at Debug; then a line when usage is recorded again, with the count the
    /// error line did not name.</summary>
    [Fact]
    public async Task Usage_that_cannot_be_recorded_is_one_line_naming_the_cause_not_a_stack_trace_per_request()
    {
        var (fixture, log) = await StartLoggedAsync();
        try
        {
            fixture.Sql("""
                CREATE TRIGGER usage_insert_fails BEFORE INSERT ON usage_daily BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
                CREATE TRIGGER usage_update_fails BEFORE UPDATE ON usage_daily BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;
                """);
            for (var i = 0; i < 3; i++) await ChatAsync(fixture);
            var usage = typeof(Trust.RequestTrust).FullName!;
            var perRequest = await LinesAsync(log, line => line.Category == usage && line.Level == LogLevel.Debug, 3);
            Assert.All(perRequest, line => Assert.IsType<SqliteException>(line.Exception));
            var error = Assert.Single(log.Lines, line => line.Level >= LogLevel.Warning && line.Category == usage);
            Assert.Equal((LogLevel.Error, null), (error.Level, error.Exception));
            Assert.Equal("Usage of 1 request(s) not recorded: SQLite Error 19: 'database or disk is full' (said at most once a minute while it lasts)", error.Message);

            fixture.Sql("DROP TRIGGER usage_insert_fails; DROP TRIGGER usage_update_fails;");
            await ChatAsync(fixture);
            var recovered = Assert.Single(await LinesAsync(log, line => line.Category == usage && line.Level == LogLevel.Warning, 1));
            Assert.Equal("Usage recorded again; 2 more request(s) had their usage lost since the last line", recovered.Message);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    /// <summary>A platform database that fails every request (here every write, for a lock another
    /// process holds, as an sqlite3 shell left in BEGIN does) was an error with its stack trace per request: now
    /// one error line naming the cause for any number of requests within the minute, each
    /// request's exception at Debug, and a line when the database takes a write again.</summary>
    [Fact]
    public async Task A_failing_database_is_one_line_naming_the_cause_not_a_stack_trace_per_request()
    {
        var (fixture, log) = await StartLoggedAsync();
        try
        {
            using (HoldWriteLock(fixture))
            {
                // Writes wait for it, for the lock timeout, then fail; in WAL mode reads go on.
                var requests = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => fixture.Http.PostAsJsonAsync("/v1/admin/keys", new { name = $"locked-out-{i}", scopes = "inference" })));
                Assert.All(requests, response => Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode));
            }
            var errorMiddleware = typeof(ErrorMiddleware).FullName!;
            var perRequest = await LinesAsync(log, line => line.Category == errorMiddleware && line.Level == LogLevel.Debug, 3);
            Assert.All(perRequest, line => Assert.IsType<PlatformStorageException>(line.Exception));
            var error = Assert.Single(log.Lines, line => line.Level >= LogLevel.Warning);
            Assert.Equal((LogLevel.Error, null), (error.Level, error.Exception));
            Assert.Matches(@"^The platform database failed 1 request\(s\): .*stratus\.db is locked by another process .*; try again once that process is done \(said at most once a minute while it lasts\)$", error.Message);

            using (var again = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "a", max_tokens = 1 }))
                Assert.Equal(HttpStatusCode.OK, again.StatusCode);
            var answers = Assert.Single(await LinesAsync(log, line => line.Level == LogLevel.Warning, 1));
            Assert.Equal("The platform database answers again; 2 more request(s) failed since the last line", answers.Message);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    /// <summary>/ready probes the database failed were counted among the failed requests, though a
    /// probe is not a request of the API (HealthEndpoints): a balancer's, once a second, made the
    /// count mostly probes. They are counted in lines of their own.</summary>
    [Fact]
    public async Task Readiness_probes_the_database_fails_are_not_counted_as_requests()
    {
        var (fixture, log) = await StartLoggedAsync();
        try
        {
            string[] tables = ["api_keys", "usage_daily", "safety_policies", "blocklists", "audit_log"];
            fixture.Sql(string.Concat(tables.Select(table => $"ALTER TABLE {table} RENAME TO {table}_away;")));
            for (var i = 0; i < 3; i++)
                using (var probe = await fixture.Http.GetAsync("/ready")) Assert.Equal(HttpStatusCode.ServiceUnavailable, probe.StatusCode);
            for (var i = 0; i < 2; i++)
                using (var refused = await fixture.Http.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            var errors = log.Lines.Where(line => line.Level >= LogLevel.Warning).Select(line => line.Message).ToList();
            Assert.Equal(2, errors.Count);
            Assert.StartsWith("The platform database failed 1 readiness probe(s) of /ready: ", errors[0]);
            Assert.StartsWith("The platform database failed 1 request(s): ", errors[1]);

            fixture.Sql(string.Concat(tables.Select(table => $"ALTER TABLE {table}_away RENAME TO {table};")));
            using (var completion = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "a", max_tokens = 1 }))
                Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
            var answers = Assert.Single(await LinesAsync(log, line => line.Level == LogLevel.Warning, 1));
            Assert.Equal("The platform database answers again; 1 more request(s) and 2 readiness probe(s) failed since the last line", answers.Message);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    /// <summary>A failure ended only when a request's usage was recorded (a write): a server that
    /// only read once its database was back (a balancer's probes, which keep it out of rotation
    /// until they pass; requests that record no usage) never said that it answered again, and the
    /// failure that came next was not said at once. A read that answers now ends a failure in which
    /// no write failed: /ready's check, or a request's key read.</summary>
    [Fact]
    public async Task A_database_back_is_said_at_the_first_read_that_answers_where_no_write_failed()
    {
        var (fixture, log) = await StartLoggedAsync();
        try
        {
            string[] tables = ["api_keys", "usage_daily", "safety_policies", "blocklists", "audit_log"];
            void Break() => fixture.Sql(string.Concat(tables.Select(table => $"ALTER TABLE {table} RENAME TO {table}_away;")));
            void Mend() => fixture.Sql(string.Concat(tables.Select(table => $"ALTER TABLE {table}_away RENAME TO {table};")));
            bool Said(LogLine line) => line.Level >= LogLevel.Warning;

            Break();
            for (var i = 0; i < 2; i++)
                using (var probe = await fixture.Http.GetAsync("/ready")) Assert.Equal(HttpStatusCode.ServiceUnavailable, probe.StatusCode);
            using (var refused = await fixture.Http.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Mend();
            // The balancer's next probe passes: the database answers again, said at once.
            using (var probe = await fixture.Http.GetAsync("/ready")) Assert.Equal(HttpStatusCode.OK, probe.StatusCode);
            var said = await LinesAsync(log, Said, 3);
            Assert.Equal("The platform database answers again; 0 more request(s) and 1 readiness probe(s) failed since the last line", said[2].Message);

            // Failing again is said at once, and a request that reads its key ends it.
            Break();
            using (var refused = await fixture.Http.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Mend();
            using (var read = await fixture.Http.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, read.StatusCode);
            said = await LinesAsync(log, Said, 5);
            Assert.StartsWith("The platform database failed 1 request(s): ", said[3].Message);
            Assert.Equal("The platform database answers again; 0 more request(s) failed since the last line", said[4].Message);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    /// <summary>A key read that succeeded ended the failure ("answers again"), but a lock another
    /// process holds fails writes alone (in WAL mode reads go on): a write refused, any request's
    /// key read, a write refused again gave an error and a warning a request, the line a request
    /// the throttle is there to stop. Now the failure ends when the database takes a write again
    /// (a request's usage recorded).</summary>
    [Fact]
    public async Task Reads_that_go_on_under_a_held_write_lock_do_not_end_a_failing_database()
    {
        var (fixture, log) = await StartLoggedAsync();
        try
        {
            using (HoldWriteLock(fixture))
            {
                for (var i = 0; i < 2; i++)
                {
                    using (var refused = await fixture.Http.PostAsJsonAsync("/v1/admin/keys", new { name = $"locked-out-{i}", scopes = "inference" }))
                        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
                    using (var read = await fixture.Http.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, read.StatusCode);
                }
            }
            var error = Assert.Single(log.Lines, line => line.Level >= LogLevel.Warning);
            Assert.Equal(LogLevel.Error, error.Level);
            // Its usage is written once the answer is out.
            using (var completion = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "a", max_tokens = 1 }))
                Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
            var answers = Assert.Single(await LinesAsync(log, line => line.Level == LogLevel.Warning, 1));
            Assert.Equal("The platform database answers again; 1 more request(s) failed since the last line", answers.Message);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    /// <summary>An access log that cannot be written loses every batch's lines: a warning per
    /// batch before; now one at once, and the rest counted in one when the log stops (or a minute on).</summary>
    [Fact]
    public async Task Access_log_lines_lost_batch_after_batch_are_one_warning_not_one_a_batch()
    {
        var log = new LogCapture();
        var path = Path.Combine(Path.GetTempPath(), $"stratus-access-{Guid.NewGuid():N}.log");
        var accessLog = AccessLog.Open(path, log.CreateLogger(typeof(AccessLog).FullName!));
        // A folder in the file's place makes every write fail (permissions would not stop root).
        File.Delete(path);
        Directory.CreateDirectory(path);
        try
        {
            for (var i = 1; i <= 4; i++)
            {
                accessLog.Write(new AccessLogEntry(DateTime.UtcNow, Stopwatch.GetTimestamp(), IPAddress.Loopback, "GET", "/health", $"lost-{i}"));
                var waited = Stopwatch.StartNew();
                // Each its own batch.
                while (accessLog.Dropped < i && waited.Elapsed < TimeSpan.FromSeconds(30)) await Task.Delay(10);
                Assert.Equal(i, accessLog.Dropped);
            }
            await accessLog.DisposeAsync();
        }
        finally
        {
            Directory.Delete(path);
        }
        Assert.Equal([$"access log {path}: 1 lines lost (1 since the server started)", $"access log {path}: 3 lines lost (4 since the server started)"],
            log.Lines.Where(line => line.Message.Contains("lines lost", StringComparison.Ordinal)).Select(line => line.Message));
    }

    static async Task ChatAsync(TinyModelServer fixture)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/chat/completions",
            new { model = TinyModelServer.ModelName, messages = new[] { new { role = "user", content = "a" } }, max_tokens = 2 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await response.Content.ReadAsStringAsync();
    }

    /// <summary>The lines <paramref name="match"/> takes, once there are <paramref name="count"/>
    /// (usage is recorded as the request ends, after its answer has gone).</summary>
    static async Task<IReadOnlyList<LogLine>> LinesAsync(LogCapture log, Func<LogLine, bool> match, int count)
    {
        for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(30); await Task.Delay(20))
            if (log.Lines.Count(match) >= count) break;
        var lines = log.Lines.Where(match).ToList();
        Assert.Equal(count, lines.Count);
        return lines;
    }
}
