// Shared test fixtures: a throwaway data directory with its database, and a clock tests move.
using Microsoft.Data.Sqlite;
using Stratus.Platform;

namespace Stratus.Platform.Tests;

sealed class TestClock(DateTimeOffset start) : TimeProvider
{
    DateTimeOffset now = start;
    readonly Lock gate = new();

    public override DateTimeOffset GetUtcNow() { lock (gate) return now; }

    public void Advance(TimeSpan by) { lock (gate) now += by; }
}

sealed class TempPlatform : IDisposable
{
    public TempPlatform(TimeProvider? time = null)
    {
        Directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));
        Clock = time;
        Stores = PlatformStores.OpenSqlite(Directory, time);
    }

    public string Directory { get; }
    public TimeProvider? Clock { get; }
    public PlatformStores Stores { get; }
    public string DatabasePath => Path.Combine(Directory, PlatformDatabase.FileName);

    /// <summary>Runs SQL directly on the file, as someone tampering with it would.</summary>
    public void Sql(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={DatabasePath}");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
