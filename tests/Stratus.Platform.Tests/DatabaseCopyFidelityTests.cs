// DatabaseCopy and SQLite's dynamic types: a column of stratus.db holds whatever a hand with the
// sqlite3 shell put there (text in an INTEGER column, a REAL, a blob or bytes that are not UTF-8
// in a TEXT column, a NUL character), which PostgreSQL's typed columns either refuse (a NUL in
// text) or would take changed (the reader's conversions: 'sixty' read as 0, 60.5 as 60, bytes not
// UTF-8 as U+FFFD). Each is refused naming the table, column and row, with nothing written; what
// does fit (64-bit extremes, text beyond the BMP) arrives exactly. A table whose COPY outlasts the
// command timeout that bounds a request is copied all the same.
using Npgsql;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public sealed class DatabaseCopyFidelityTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IDisposable
{
    readonly TempPlatform sqlite = new();

    public void Dispose() => sqlite.Dispose();

    static long Count(string connection, string table)
    {
        using var database = new NpgsqlConnection(connection);
        database.Open();
        using var count = new NpgsqlCommand($"SELECT count(*) FROM {table}", database);
        return (long)count.ExecuteScalar()!;
    }

    [Theory]
    [InlineData("UPDATE api_keys SET rpm = 'sixty'", "api_keys.rpm", "text where PostgreSQL's column is an integer")]
    [InlineData("UPDATE api_keys SET rpm = 60.5", "api_keys.rpm", "a real number where PostgreSQL's column is an integer")]
    [InlineData("UPDATE api_keys SET name = X'6B6579'", "api_keys.name", "a blob where PostgreSQL's column is text")]
    [InlineData("UPDATE api_keys SET name = CAST(X'6BFF6579' AS TEXT)", "api_keys.name", "bytes that are not UTF-8")]
    [InlineData("UPDATE api_keys SET name = 'k' || char(0) || 'ey'", "api_keys.name", "a NUL character, which PostgreSQL's text cannot hold")]
    public async Task A_value_postgresql_would_refuse_or_change_stops_the_copy_naming_its_row(string edit, string column, string why)
    {
        await sqlite.Stores.KeyService().CreateAsync("key", ApiKeyScopes.Inference, new RateLimits(60, 1000), "tests");
        sqlite.Sql(edit);
        var target = postgres.NewSchema();

        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.Contains($"{column} of the row whose rowid is 1 in {sqlite.DatabasePath}: it holds {why}", error.Message);
        Assert.EndsWith("nothing was copied: correct that row in stratus.db and copy again", error.Message);
        Assert.Equal(0, Count(target, "api_keys"));
    }

    static List<string> Tables(string connection)
    {
        using var database = new NpgsqlConnection(connection);
        database.Open();
        using var list = new NpgsqlCommand("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()", database);
        using var reader = list.ExecuteReader();
        var tables = new List<string>();
        while (reader.Read()) tables.Add(reader.GetString(0));
        return tables;
    }

    [Fact]
    public async Task Values_that_fit_arrive_exactly()
    {
        await sqlite.Stores.KeyService().CreateAsync("key", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        sqlite.Sql("UPDATE api_keys SET name = 'ключ-🦀', rpm = 9223372036854775807, tpm = -9223372036854775808");
        var target = postgres.NewSchema();

        DatabaseCopy.Copy(sqlite.Directory, target, "tests");

        using var database = new NpgsqlConnection(target);
        database.Open();
        using var read = new NpgsqlCommand("SELECT name, rpm, tpm FROM api_keys", database);
        using var reader = read.ExecuteReader();
        Assert.True(reader.Read());
        Assert.Equal(("ключ-🦀", long.MaxValue, long.MinValue), (reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2)));
    }

    /// <summary>A stratus.db of schema version 1 (before key expiry and rotation, the registry and
    /// jobs), as a first Stratus left it: the copy refuses it as it is (migrating it would lock out
    /// the Stratus still using it), leaving its schema and rows untouched; with --migrate-source it
    /// migrates it and carries its key, which then authenticates on PostgreSQL, and its audit
    /// entry, whose hash verifies there.</summary>
    [Fact]
    public async Task A_stratus_db_of_schema_version_1_is_refused_as_it_is_and_copied_once_migrating_it_is_asked()
    {
        var old = Path.Combine(sqlite.Directory, "old");
        Directory.CreateDirectory(old);
        var (id, secret) = ApiKeyFormat.Generate();
        var salt = ApiKeyFormat.NewSalt();
        var time = new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero);
        const string details = """{"name":"old"}""";
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(old, PlatformDatabase.FileName)};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = PlatformDatabaseTests.ApiKeysVersion1 + """
                INSERT INTO api_keys (id, name, salt, hash, scopes, rpm, tpm, created_at, revoked_at)
                VALUES ($id, 'old', $salt, $hash, 1, 5, 0, '2025-06-01T00:00:00.0000000Z', NULL);
                INSERT INTO audit_log VALUES (1, '2025-06-01T00:00:00.0000000Z', 'cli:alice', 'key.created', $details, $chain);
                """;
            command.Parameters.AddWithValue("$id", id);
            command.Parameters.AddWithValue("$salt", salt);
            command.Parameters.AddWithValue("$hash", ApiKeyFormat.Hash(salt, secret));
            command.Parameters.AddWithValue("$details", details);
            command.Parameters.AddWithValue("$chain", AuditChain.ComputeHash(AuditChain.GenesisHash, 1, time, "cli:alice", "key.created", details));
            command.ExecuteNonQuery();
        }
        var target = postgres.NewSchema();
        var file = Path.Combine(old, PlatformDatabase.FileName);
        var before = File.ReadAllBytes(file);

        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(old, target, "tests"));
        Assert.StartsWith($"{file} has schema version 1, older than this Stratus's ", error.Message);
        Assert.Contains("give --migrate-source to migrate it in place first", error.Message);
        Assert.Equal(before, File.ReadAllBytes(file));
        Assert.Empty(Tables(target));

        var copy = DatabaseCopy.Copy(old, target, "tests", migrateSource: true);

        var stores = PlatformStores.Open(PlatformDatabase.Open(old, target, null));
        Assert.Equal(("old", 5, (DateTimeOffset?)null), ((await stores.KeyService().AuthenticateAsync(secret)).Key is { } key ? (key.Name, key.Limits.RequestsPerMinute, key.ExpiresAt) : default));
        var verified = await stores.Audit.VerifyAsync();
        Assert.True(verified.Valid, verified.Problem);
        Assert.Equal((2, copy.Audit.Hash), (verified.EntriesChecked, verified.HeadHash));
    }

    /// <summary>The COPY of a table the server takes longer over than the command timeout that
    /// bounds a request (here a second, a trigger sleeping two): a million rows take about ten
    /// seconds on one transaction, which a timeout of six would cancel.</summary>
    [Fact]
    public async Task A_table_whose_copy_outlasts_the_command_timeout_is_copied()
    {
        await sqlite.Stores.KeyService().CreateAsync("key", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var target = postgres.NewSchema();
        PlatformDatabase.Open(sqlite.Directory, target, null);
        using (var database = new NpgsqlConnection(target))
        {
            database.Open();
            using var slow = new NpgsqlCommand("""
                CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;
                CREATE TRIGGER slow_insert BEFORE INSERT ON api_keys FOR EACH ROW EXECUTE FUNCTION slow_insert();
                """, database);
            slow.ExecuteNonQuery();
        }

        var copy = DatabaseCopy.Copy(sqlite.Directory, $"{target};Command Timeout=1", "tests");

        Assert.Equal(1, copy.Tables.Single(t => t.Name == "api_keys").Rows);
        Assert.Equal(1, Count(target, "api_keys"));
    }
}
