// Shared test fixtures: a throwaway data directory with its database (the clock tests move is
// TestClock.cs).
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Npgsql;
using Stratus.Platform;

namespace Stratus.Platform.Tests;

/// <summary>Where a test class's stores keep their data: SQLite's stratus.db in each platform's
/// folder (Sqlite), or a fresh schema of a PostgreSQL database of the class's own.</summary>
public sealed class TestDatabases(PostgresDatabase? postgres)
{
    public static readonly TestDatabases Sqlite = new(null);

    public bool IsPostgres => postgres is not null;

    /// <summary>A connection for a new platform's stores; null for SQLite (the default).</summary>
    public string? NewConnection() => postgres?.NewSchema();
}

public sealed class TempPlatform : IDisposable
{
    public TempPlatform(TimeProvider? time = null) : this(TestDatabases.Sqlite, time) { }

    public TempPlatform(TestDatabases databases, TimeProvider? time = null)
    {
        Directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));
        Clock = time;
        Connection = databases.NewConnection();
        Database = PlatformDatabase.Open(Directory, Connection, null);
        Stores = PlatformStores.Open(Database, time);
    }

    public string Directory { get; }
    public TimeProvider? Clock { get; }
    /// <summary>The PostgreSQL connection the stores use; null where they use SQLite's file.</summary>
    public string? Connection { get; }
    public PlatformDatabase Database { get; }
    public PlatformStores Stores { get; }
    public string DatabasePath => Path.Combine(Directory, PlatformDatabase.FileName);

    /// <summary>Another handle on the same database, as another process opens it.</summary>
    public PlatformDatabase OpenDatabase(TimeSpan? lockTimeout = null) => PlatformDatabase.Open(Directory, Connection, lockTimeout);

    /// <summary>Everything the database keeps, as text: the data directory's files (SQLite's),
    /// or every row of every table of the stores' schema (PostgreSQL's).</summary>
    public string StoredText()
    {
        SqliteConnection.ClearAllPools();
        if (Connection is null) return string.Concat(System.IO.Directory.GetFiles(Directory).Select(File.ReadAllBytes).Select(System.Text.Encoding.ASCII.GetString));
        using var connection = new NpgsqlConnection(Connection);
        connection.Open();
        var tables = new List<string>();
        using (var list = new NpgsqlCommand("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()", connection))
        using (var reader = list.ExecuteReader())
            while (reader.Read()) tables.Add(reader.GetString(0));
        // bytea as escape text keeps printable bytes as they are, as the file's bytes read as ASCII do.
        using (var format = new NpgsqlCommand("SET bytea_output = 'escape'", connection)) format.ExecuteNonQuery();
        return string.Concat(tables.Select(table =>
        {
            using var rows = new NpgsqlCommand($"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t", connection);
            return (string)rows.ExecuteScalar()!;
        }));
    }

    /// <summary>Runs SQL directly on the database, as someone tampering with it would.</summary>
    public void Sql(string sql) => Sql(sql, sql);

    /// <summary>Runs the SQL of the database the stores use (where the two differ).</summary>
    public void Sql(string sqlite, string postgres)
    {
        using DbConnection connection = Connection is null ? new SqliteConnection($"Data Source={DatabasePath}") : new NpgsqlConnection(Connection);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = Connection is null ? sqlite : postgres;
        command.ExecuteNonQuery();
    }

    /// <summary>Makes every audit entry fail to be written, as a failure between a change and its
    /// entry would; <see cref="RepairAuditAppends"/> undoes it.</summary>
    public void BreakAuditAppends() => Sql(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END;",
        """
        CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$;
        CREATE TRIGGER audit_down BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_down();
        """);

    public void RepairAuditAppends() => Sql("DROP TRIGGER audit_down;", "DROP TRIGGER audit_down ON audit_log;");

    /// <summary>What someone with the database's owner's rights does first to the audit log.</summary>
    public void DropAuditTriggers() => Sql("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
        "DROP TRIGGER audit_log_no_update_or_delete ON audit_log; DROP TRIGGER audit_log_no_truncate ON audit_log;");

    /// <summary>A write transaction of another connection, as another process's would be: it holds
    /// the write lock until it is committed or disposed (with its connection).</summary>
    public DbTransaction HoldWriteLock()
    {
        var connection = Database.Dialect.Connect();
        return Database.Dialect.BeginWrite(connection);
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        System.IO.Directory.Delete(Directory, recursive: true);
    }
}
