// The database file as the machine can spoil it: a file that is not a database (a wrong
// --data-dir, a damaged disk) is one IOException that names the file, from opening and from
// every store, which the CLI prints as one line instead of SQLite's stack trace. A lock another
// process holds makes a statement wait its lock timeout, no longer, and then fail as "locked".
using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Stratus.Safety;
using Stratus.Platform;

namespace Stratus.Platform.Tests;

public sealed class PlatformDatabaseTests : IDisposable
{
    readonly string directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));
    string DatabasePath => Path.Combine(directory, PlatformDatabase.FileName);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    /// <summary>Replaces the database with bytes SQLite does not recognise.</summary>
    void Spoil()
    {
        SqliteConnection.ClearAllPools();
        foreach (var file in Directory.GetFiles(directory, PlatformDatabase.FileName + "*")) File.Delete(file);
        File.WriteAllText(DatabasePath, new string('x', 8192));
    }

    static void AssertNamesTheFile(Exception? error, string path)
    {
        var io = Assert.IsAssignableFrom<IOException>(error);
        Assert.Contains(path, io.Message);
        Assert.Contains("is not a Stratus database", io.Message);
        Assert.DoesNotContain('\n', io.Message);
    }

    [Fact]
    public void Opening_a_file_that_is_not_a_database_names_it()
    {
        Directory.CreateDirectory(directory);
        Spoil();
        AssertNamesTheFile(Record.Exception(() => PlatformStores.OpenSqlite(directory)), DatabasePath);
    }

    [Fact]
    public async Task A_database_spoiled_while_open_is_the_same_error_from_every_store()
    {
        var stores = PlatformStores.OpenSqlite(directory);
        await stores.KeyService().CreateAsync("k", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        Spoil();
        Func<Task>[] uses =
        [
            () => stores.KeyService().ListAsync().AsTask(),
            () => stores.ApiKeys.FindAsync("abc").AsTask(),
            () => stores.Audit.VerifyAsync().AsTask(),
            () => stores.Usage.RecordAsync("k", "m", 1, 1, DateTimeOffset.UtcNow).AsTask(),
            () => stores.SafetyConfiguration().ListBlocklistsAsync().AsTask(),
            () => stores.Policies.GetAsync("m").AsTask(),
        ];
        foreach (var use in uses) AssertNamesTheFile(await Record.ExceptionAsync(use), DatabasePath);
    }

    /// <summary>Takes the write lock on another connection, as another process in a write
    /// transaction holds it; disposing the connection rolls back and releases it.</summary>
    SqliteConnection HoldWriteLock()
    {
        var holder = new SqliteConnection($"Data Source={DatabasePath};Pooling=False");
        holder.Open();
        using var begin = holder.CreateCommand();
        begin.CommandText = "BEGIN IMMEDIATE;";
        begin.ExecuteNonQuery();
        return holder;
    }

    [Fact]
    public async Task A_write_waits_for_another_process_lock_as_long_as_the_lock_timeout_and_no_longer()
    {
        var timeout = TimeSpan.FromSeconds(1);
        var stores = PlatformStores.OpenSqlite(directory, lockTimeout: timeout);
        using var holder = HoldWriteLock();
        // A plain statement, and writes that begin their own IMMEDIATE transaction.
        Func<Task>[] writes =
        [
            () => stores.Usage.RecordAsync("k", "m", 1, 1, DateTimeOffset.UtcNow).AsTask(),
            () => stores.Audit.AppendAsync("tests", "test.locked", new JsonObject()).AsTask(),
            () => stores.SafetyConfiguration().UpsertBlocklistAsync(new Blocklist("words", ["zanzibar"], [], SafetyCategory.Hate), "tests").AsTask(),
        ];
        foreach (var write in writes)
        {
            var watch = Stopwatch.StartNew();
            var error = await Record.ExceptionAsync(write);
            watch.Stop();
            var storage = Assert.IsType<PlatformStorageException>(error);
            Assert.Contains($"{DatabasePath} is locked by another process", storage.Message);
            // Before the fix the driver retried SQLite's own 10 s wait until its 30 s command timeout.
            // The upper bound is loose so a loaded machine cannot fail it; the old 30 s still would.
            Assert.InRange(watch.Elapsed, timeout * 0.9, timeout * 10);
        }
    }

    [Fact]
    public async Task A_write_waits_out_a_lock_released_within_the_lock_timeout()
    {
        var stores = PlatformStores.OpenSqlite(directory, lockTimeout: TimeSpan.FromSeconds(5));
        var holder = HoldWriteLock();
        _ = Task.Delay(300).ContinueWith(_ => holder.Dispose(), TaskScheduler.Default);
        await stores.Usage.RecordAsync("k", "m", 1, 1, DateTimeOffset.UtcNow);
        Assert.Single(await stores.Usage.QueryAsync(UsageQuery.Days("k", null, null, null)));
    }

    [Fact]
    public void A_lock_timeout_is_whole_seconds()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PlatformStores.OpenSqlite(directory, lockTimeout: TimeSpan.FromMilliseconds(1500)));
        Assert.Throws<ArgumentOutOfRangeException>(() => PlatformStores.OpenSqlite(directory, lockTimeout: TimeSpan.Zero));
    }
}
