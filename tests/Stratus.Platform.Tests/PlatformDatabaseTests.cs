// The database file as the machine can spoil it: a file that is not a database (a wrong
// --data-dir, a damaged disk) is one IOException that names the file, from opening and from
// every store, which the CLI prints as one line instead of SQLite's stack trace.
using Microsoft.Data.Sqlite;
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
}
