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

    /// <summary>The api_keys table as schema version 1 (Stratus before key expiry) made it.</summary>
    internal const string ApiKeysVersion1 = """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            salt BLOB NOT NULL,
            hash BLOB NOT NULL,
            scopes INTEGER NOT NULL,
            rpm INTEGER NOT NULL,
            tpm INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
        CREATE TABLE blocklists (name TEXT PRIMARY KEY COLLATE NOCASE, definition TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE safety_policies (deployment TEXT PRIMARY KEY, policy TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, details TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE TABLE usage_daily (key_id TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, PRIMARY KEY (key_id, day, model));
        PRAGMA user_version = 1;
        """;

    [Fact]
    public async Task A_database_of_schema_version_1_is_migrated_on_open_and_keeps_its_keys()
    {
        Directory.CreateDirectory(directory);
        var (id, secret) = ApiKeyFormat.Generate();
        var salt = ApiKeyFormat.NewSalt();
        using (var old = new SqliteConnection($"Data Source={DatabasePath}"))
        {
            old.Open();
            using var command = old.CreateCommand();
            command.CommandText = ApiKeysVersion1 + """
                INSERT INTO api_keys (id, name, salt, hash, scopes, rpm, tpm, created_at, revoked_at)
                VALUES ($id, 'old', $salt, $hash, 1, 5, 0, '2025-06-01T00:00:00.0000000Z', NULL);
                """;
            command.Parameters.AddWithValue("$id", id);
            command.Parameters.AddWithValue("$salt", salt);
            command.Parameters.AddWithValue("$hash", ApiKeyFormat.Hash(salt, secret));
            command.ExecuteNonQuery();
        }
        SqliteConnection.ClearAllPools();

        var keys = PlatformStores.Open(directory).KeyService();
        var kept = (await keys.AuthenticateAsync(secret)).Key;
        Assert.NotNull(kept);
        Assert.Equal(("old", 5, (DateTimeOffset?)null), (kept.Name, kept.Limits.RequestsPerMinute, kept.ExpiresAt));
        var expiring = await keys.CreateAsync("new", ApiKeyScopes.Inference, RateLimits.Unlimited, "test", ApiKeyExpiry.In(TimeSpan.FromDays(30)));
        Assert.Equal(expiring.Key.ExpiresAt, (await keys.AuthenticateAsync(expiring.Secret)).Key!.ExpiresAt);

        // A key from before rotation existed rotates, its old secret working through the overlap.
        var rotated = await keys.RotateAsync("old", TimeSpan.FromHours(1), "test");
        Assert.True((await keys.AuthenticateAsync(secret)).Succeeded);
        Assert.Equal(rotated.Key.Id, (await keys.AuthenticateAsync(rotated.Secret)).Key!.Id);

        // Opening it again finds it migrated.
        Assert.Equal(2, (await PlatformStores.Open(directory).KeyService().ListAsync()).Count);
        using var check = new SqliteConnection($"Data Source={DatabasePath}");
        check.Open();
        using var version = check.CreateCommand();
        version.CommandText = "PRAGMA user_version;";
        Assert.Equal(8L, version.ExecuteScalar());
    }

    /// <summary>A --data-dir given by mistake whose stratus.db is another application's SQLite
    /// database was given Stratus's tables, and WAL mode, without a word. Refused in one line
    /// naming it, whether the application keeps a schema version (user_version) or not, and left
    /// byte for byte as it was.</summary>
    [Fact]
    public void Another_applications_database_is_refused_in_one_line_naming_it_and_left_as_it_was()
    {
        Directory.CreateDirectory(directory);
        foreach (var version in new[] { 0, 7 })
        {
            SqliteConnection.ClearAllPools();
            File.Delete(DatabasePath);
            using (var other = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
            {
                other.Open();
                using var command = other.CreateCommand();
                command.CommandText = $"CREATE TABLE notes (id INTEGER, body TEXT); CREATE TABLE tags (name TEXT); INSERT INTO notes VALUES (1, 'mine'); PRAGMA user_version = {version};";
                command.ExecuteNonQuery();
            }
            var before = File.ReadAllBytes(DatabasePath);

            var error = Assert.IsType<TrustUserException>(Record.Exception(() => PlatformStores.Open(directory)));
            Assert.Equal($"{DatabasePath} is not a Stratus database (it holds the tables notes, tags), and Stratus does not add its own to another application's; " +
                "give --data-dir (or $STRATUS_HOME) a folder of Stratus's own", error.Message);
            SqliteConnection.ClearAllPools();
            Assert.Equal(before, File.ReadAllBytes(DatabasePath));
            Assert.False(File.Exists(DatabasePath + "-wal"));
        }
    }

    /// <summary>Stratus's own tables without their schema version, as a copy made through sqlite3's
    /// .dump has them (it leaves PRAGMA user_version out): refused as another application's
    /// database, which named Stratus's own tables and sent the operator to another folder.</summary>
    [Fact]
    public async Task Stratuss_tables_without_their_schema_version_are_named_as_such_and_left_as_they_were()
    {
        await PlatformStores.Open(directory).KeyService().CreateAsync("kept", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        SqliteConnection.ClearAllPools();
        using (var dumped = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
        {
            dumped.Open();
            using var command = dumped.CreateCommand();
            command.CommandText = "PRAGMA user_version = 0;";
            command.ExecuteNonQuery();
        }
        var error = Assert.IsType<TrustUserException>(Record.Exception(() => PlatformStores.Open(directory)));
        Assert.Equal($"{DatabasePath} holds Stratus's tables without their schema version (PRAGMA user_version is 0, as in a copy made through sqlite3's .dump), " +
            "so Stratus cannot tell which changes it has; restore it from a copy that keeps the version (stratus backup, or sqlite3's .backup)", error.Message);
        SqliteConnection.ClearAllPools();
        using var check = new SqliteConnection($"Data Source={DatabasePath};Mode=ReadOnly;Pooling=False");
        check.Open();
        using var keys = check.CreateCommand();
        keys.CommandText = "SELECT name FROM api_keys;";
        Assert.Equal("kept", keys.ExecuteScalar());
    }

    /// <summary>A database with no tables (one the sqlite3 shell made, or Stratus's own empty
    /// file) is a new one, and becomes Stratus's.</summary>
    [Fact]
    public async Task A_database_without_tables_becomes_stratuss()
    {
        Directory.CreateDirectory(directory);
        using (var empty = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
        {
            empty.Open();
            using var command = empty.CreateCommand();
            command.CommandText = "PRAGMA page_size = 8192; VACUUM;";
            command.ExecuteNonQuery();
        }
        Assert.True(new FileInfo(DatabasePath).Length > 0);
        var keys = PlatformStores.Open(directory).KeyService();
        await keys.CreateAsync("k", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        Assert.Single(await PlatformStores.Open(directory).KeyService().ListAsync());
    }

    /// <summary>A data directory given as a file (a database's path, say): .NET said "The file
    /// '...' already exists", which named no option and no fix.</summary>
    [Fact]
    public void A_data_directory_that_is_a_file_is_named_as_one()
    {
        Directory.CreateDirectory(directory);
        var other = Path.Combine(directory, "other.db");
        File.WriteAllText(other, "");
        Assert.Equal($"{other} is a file; the data directory is a folder, where Stratus keeps {PlatformDatabase.FileName}: give --data-dir (or $STRATUS_HOME) a folder",
            Assert.IsType<TrustUserException>(Record.Exception(() => PlatformStores.Open(other))).Message);
        // The database's own path, for its folder.
        PlatformStores.Open(directory);
        Assert.Equal($"{DatabasePath} is a file; the data directory is a folder, where Stratus keeps {PlatformDatabase.FileName}: give --data-dir {directory}",
            Assert.IsType<TrustUserException>(Record.Exception(() => PlatformStores.Open(DatabasePath))).Message);
    }

    [Fact]
    public void Opening_a_file_that_is_not_a_database_names_it()
    {
        Directory.CreateDirectory(directory);
        Spoil();
        AssertNamesTheFile(Record.Exception(() => PlatformStores.Open(directory)), DatabasePath);
    }

    [Fact]
    public async Task A_database_spoiled_while_open_is_the_same_error_from_every_store()
    {
        var stores = PlatformStores.Open(directory);
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

    [Fact]
    public async Task A_table_dropped_outside_Stratus_is_one_error_naming_the_file_not_a_bug()
    {
        var stores = PlatformStores.Open(directory);
        await stores.KeyService().CreateAsync("k", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        // Someone with the file removes the audit log to hide what it holds.
        SqliteConnection.ClearAllPools();
        using (var connection = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "DROP TABLE audit_log;";
            command.ExecuteNonQuery();
        }
        Func<Task>[] uses =
        [
            () => stores.Audit.VerifyAsync().AsTask(),
            () => stores.Audit.ReadAsync(new AuditQuery()).AsTask(),
            () => stores.KeyService().CreateAsync("k2", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests").AsTask(),
        ];
        foreach (var use in uses)
        {
            var storage = Assert.IsType<PlatformStorageException>(await Record.ExceptionAsync(use));
            Assert.Contains($"{DatabasePath} lacks part of the Stratus schema", storage.Message);
            Assert.Contains("no such table: audit_log", storage.Message);
            Assert.DoesNotContain('\n', storage.Message);
        }
    }

    [Fact]
    public async Task A_backup_taken_while_the_database_is_in_use_holds_what_is_still_only_in_the_wal()
    {
        var stores = PlatformStores.Open(directory);
        var key = await stores.KeyService().CreateAsync("kept", ApiKeyScopes.Inference, new RateLimits(7, 0), "tests");
        await stores.Usage.RecordAsync(key.Key.Id, "m", 3, 4, DateTimeOffset.UtcNow);
        // The stores' pooled connections stay open, as a running server's do, so nothing has been
        // checkpointed: a copy of stratus.db alone would hold none of this.
        Assert.True(new FileInfo(DatabasePath + "-wal").Length > 0);
        var head = (await stores.Audit.VerifyAsync()).HeadHash;

        var backups = Path.Combine(directory, "backups");
        var backup = Path.Combine(backups, PlatformDatabase.FileName);
        PlatformDatabase.Open(directory).BackupTo(backup, "tests");
        Assert.Equal([backup], Directory.GetFiles(backups));

        // Restored: the backup as a data directory's stratus.db.
        var copy = PlatformStores.Open(backups);
        var restored = (await copy.KeyService().AuthenticateAsync(key.Secret)).Key;
        Assert.Equal(("kept", 7), (restored?.Name, restored?.Limits.RequestsPerMinute));
        var verified = await copy.Audit.VerifyAsync();
        Assert.Equal((true, head), (verified.Valid, verified.HeadHash));
        Assert.Equal(7, Assert.Single(await copy.Usage.QueryAsync(UsageQuery.Days(key.Key.Id, null, null, null))).TotalTokens);
        // The source goes on taking writes.
        await stores.KeyService().CreateAsync("after", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
    }

    /// <summary>A backup is recorded in the audit log as key changes are: who, when, the file, its
    /// size and sha256 (the copy's, so an auditor can tell which file a backup is). The log's chain
    /// still verifies, and so does the copy's, which ends just before that entry.</summary>
    [Fact]
    public async Task A_backup_is_audited_with_its_file_and_sha256_and_both_chains_verify()
    {
        var stores = PlatformStores.Open(directory);
        await stores.KeyService().CreateAsync("kept", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var before = await stores.Audit.VerifyAsync();
        var backups = Path.Combine(directory, "backups");
        var destination = Path.Combine(backups, PlatformDatabase.FileName);

        // Dated by the clock given, not compared with the machine's (which may be stepped meanwhile).
        var clock = new TestClock(new DateTimeOffset(2031, 5, 6, 7, 8, 9, TimeSpan.Zero));
        var backup = PlatformDatabase.Open(directory).BackupTo(destination, "cli:alice", clock);
        var entry = Assert.Single(await stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.DatabaseBackedUp)));
        Assert.Equal(("cli:alice", before.EntriesChecked + 1, clock.GetUtcNow()), (entry.Actor, entry.Sequence, entry.Time));
        var details = JsonNode.Parse(entry.Details)!;
        var sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(destination)));
        Assert.Equal((destination, new FileInfo(destination).Length, sha256), ((string?)details["file"], (long)details["bytes"]!, (string?)details["sha256"]));
        Assert.Equal((destination, sha256, entry), (backup.File, backup.Sha256, backup.Audit));

        var after = await stores.Audit.VerifyAsync();
        Assert.Equal((true, entry.Hash), (after.Valid, after.HeadHash));
        var copy = await PlatformStores.Open(backups).Audit.VerifyAsync();
        Assert.Equal((true, before.HeadHash), (copy.Valid, copy.HeadHash));
    }

    /// <summary>No copy of the keys' hashes is left without its audit entry: where the entry
    /// cannot be written (another process holds the write lock past the timeout), no file is.</summary>
    [Fact]
    public void A_backup_whose_audit_entry_cannot_be_written_leaves_no_copy()
    {
        PlatformStores.Open(directory);
        var destination = Path.Combine(directory, "backups", "nightly.db");
        using var holder = HoldWriteLock();
        var error = Record.Exception(() => PlatformDatabase.Open(directory, TimeSpan.FromSeconds(1)).BackupTo(destination, "tests"));
        Assert.Contains("is locked by another process", Assert.IsType<PlatformStorageException>(error).Message);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(destination)!));
    }

    /// <summary>No audit entry tells of a copy that is not there: where the copy cannot be put at
    /// its destination (a folder is there, as `--out /backups/` makes it), the entry is not written.</summary>
    [Fact]
    public async Task A_backup_that_cannot_be_put_at_its_destination_leaves_no_audit_entry()
    {
        var stores = PlatformStores.Open(directory);
        var folder = Directory.CreateDirectory(Path.Combine(directory, "backups")).FullName;
        Assert.NotNull(Record.Exception(() => PlatformDatabase.Open(directory).BackupTo(folder, "tests")));
        Assert.Empty(await stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.DatabaseBackedUp)));
        Assert.Empty(Directory.GetFileSystemEntries(folder));
        Assert.True((await stores.Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public async Task A_backup_replaces_the_file_at_its_destination_and_refuses_the_database_itself()
    {
        var stores = PlatformStores.Open(directory);
        var destination = Path.Combine(directory, "nightly.db");
        var database = PlatformDatabase.Open(directory);
        database.BackupTo(destination, "tests");
        await stores.KeyService().CreateAsync("later", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        database.BackupTo(destination, "tests");
        Assert.Equal(new[] { DatabasePath, destination }.Order(), Directory.GetFiles(directory, "*.db").Order());
        using (var connection = new SqliteConnection($"Data Source={destination};Mode=ReadOnly;Pooling=False"))
        {
            connection.Open();
            using var count = connection.CreateCommand();
            count.CommandText = "SELECT count(*) FROM api_keys WHERE name = 'later';";
            Assert.Equal(1L, count.ExecuteScalar());
        }
        var itself = Assert.IsType<TrustUserException>(Record.Exception(() => database.BackupTo(DatabasePath, "tests")));
        Assert.Contains("is the database itself", itself.Message);
        Assert.NotEmpty(await stores.KeyService().ListAsync());
    }

    [Fact]
    public async Task A_backup_refuses_the_databases_wal_and_shm_and_the_database_by_another_path()
    {
        var stores = PlatformStores.Open(directory);
        await stores.KeyService().CreateAsync("kept", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        // The pooled connections stay open, as a running server's do: the key is in the -wal only.
        var wal = new FileInfo(DatabasePath + "-wal");
        var walLength = wal.Length;
        Assert.True(walLength > 0);
        var database = PlatformDatabase.Open(directory);
        List<string> refused = [DatabasePath + "-wal", DatabasePath + "-shm"];
        // The data directory through a symlink, as /var/lib/stratus -> /data/stratus.
        if (!OperatingSystem.IsWindows())
            refused.Add(Path.Combine(Directory.CreateSymbolicLink(directory + "-link", directory).FullName, PlatformDatabase.FileName));
        try
        {
            foreach (var destination in refused)
            {
                // Before, the copy was moved over the file: over the -wal, the commits in it were
                // lost once the server holding the old one stopped; over the database, it read as
                // malformed.
                var error = Assert.IsType<TrustUserException>(Record.Exception(() => database.BackupTo(destination, "tests")));
                Assert.Contains($"{destination} is ", error.Message);
                Assert.Contains($"({DatabasePath}); back it up to another file", error.Message);
            }
        }
        finally
        {
            if (!OperatingSystem.IsWindows()) Directory.Delete(directory + "-link");
        }
        wal.Refresh();
        Assert.Equal(walLength, wal.Length);
        Assert.Empty(Directory.GetFiles(directory, "*.tmp", new EnumerationOptions { AttributesToSkip = 0 }));
        SqliteConnection.ClearAllPools();
        var reopened = PlatformStores.Open(directory);
        Assert.Equal("kept", Assert.Single(await reopened.KeyService().ListAsync()).Name);
        Assert.True((await reopened.Audit.VerifyAsync()).Valid);
    }

    /// <summary>A stratus.db that is a link to a file elsewhere (/var/lib/stratus/stratus.db ->
    /// /data/stratus.db): SQLite keeps the -wal and -shm beside the file it leads to. A backup
    /// moved over that file, or its -wal, under a server holding the latest commits in the WAL,
    /// left the database malformed or without them.</summary>
    [Fact]
    public async Task A_backup_refuses_the_file_a_linked_database_leads_to_and_its_wal()
    {
        if (OperatingSystem.IsWindows()) return;
        var elsewhere = Path.Combine(directory, "elsewhere");
        var dataDir = Path.Combine(directory, "data");
        Directory.CreateDirectory(elsewhere);
        Directory.CreateDirectory(dataDir);
        var real = Path.Combine(elsewhere, "real.db");
        File.WriteAllBytes(real, []);
        File.CreateSymbolicLink(Path.Combine(dataDir, PlatformDatabase.FileName), real);
        var stores = PlatformStores.Open(dataDir);
        await stores.KeyService().CreateAsync("kept", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        // The pooled connections stay open, as a running server's do: the key is in the -wal only.
        Assert.True(new FileInfo(real + "-wal").Length > 0);
        var database = PlatformDatabase.Open(dataDir);
        foreach (var destination in new[] { real, real + "-wal", real + "-shm" })
        {
            var error = Assert.IsType<TrustUserException>(Record.Exception(() => database.BackupTo(destination, "tests")));
            Assert.Contains($"{destination} is ", error.Message);
            Assert.Contains($"({database.FilePath}, a link to {real}); back it up to another file", error.Message);
        }
        SqliteConnection.ClearAllPools();
        var reopened = PlatformStores.Open(dataDir);
        Assert.Equal("kept", Assert.Single(await reopened.KeyService().ListAsync()).Name);
        Assert.True((await reopened.Audit.VerifyAsync()).Valid);
        // Beside the link, a file of that name is another file, and takes the backup.
        database.BackupTo(Path.Combine(dataDir, "real.db"), "tests");
    }

    [Fact]
    public void A_backup_to_a_full_disk_names_the_destination_not_the_database()
    {
        // A disk that is really full: a small tmpfs, which root may mount on Linux (CI runs as
        // root); elsewhere, or in a container that may not mount, there is none to fill.
        if (!OperatingSystem.IsLinux() || !Environment.IsPrivilegedProcess) return;
        var database = PlatformDatabase.Open(directory);
        var small = Directory.CreateDirectory(Path.Combine(directory, "small")).FullName;
        if (!Succeeds("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small)) return;
        try
        {
            // Less room than the database's 44 KB.
            File.WriteAllBytes(Path.Combine(small, "filler"), new byte[56 * 1024]);
            var destination = Path.Combine(small, "nightly.db");
            var full = Assert.IsType<PlatformStorageException>(Record.Exception(() => database.BackupTo(destination, "tests")));
            // Before, "the disk holding <data dir>/stratus.db is full": the other disk.
            Assert.StartsWith($"the disk holding {destination} is full", full.Message);
            Assert.Equal(["filler"], Directory.GetFiles(small).Select(Path.GetFileName));
        }
        finally
        {
            Succeeds("umount", small);
        }

        static bool Succeeds(string program, params string[] arguments)
        {
            var start = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var argument in arguments) start.ArgumentList.Add(argument);
            using var process = Process.Start(start)!;
            process.WaitForExit();
            return process.ExitCode == 0;
        }
    }

    [Fact]
    public async Task The_data_directory_and_files_stratus_makes_are_its_owners_alone_and_others_keep_their_modes()
    {
        if (OperatingSystem.IsWindows()) return; // Unix modes
        const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var dataDir = Path.Combine(directory, "home", "stratus");
        var stores = PlatformStores.Open(dataDir);
        await stores.KeyService().CreateAsync("k", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        // Before, 0755 and 0644 (under umask 022): key hashes, usage and blocklists readable by every user.
        Assert.Equal(OwnerOnly | UnixFileMode.UserExecute, File.GetUnixFileMode(dataDir));
        var database = Path.Combine(dataDir, PlatformDatabase.FileName);
        foreach (var file in new[] { database, database + "-wal", database + "-shm" })
            Assert.Equal((file, OwnerOnly), (file, File.GetUnixFileMode(file)));
        // The folder above, as mkdir -p makes it: it may hold more than Stratus's data.
        Assert.Equal(File.GetUnixFileMode(Directory.CreateDirectory(Path.Combine(directory, "sibling")).FullName), File.GetUnixFileMode(Path.GetDirectoryName(dataDir)!));
        var backup = Path.Combine(directory, "backups", "nightly.db");
        PlatformDatabase.Open(dataDir).BackupTo(backup, "tests");
        Assert.Equal(OwnerOnly, File.GetUnixFileMode(backup));

        // A stratus.db link that leads nowhere yet: SQLite made the file it names, readable by every user.
        var linked = Path.Combine(directory, "linked");
        Directory.CreateDirectory(linked);
        var target = Path.Combine(directory, "elsewhere.db");
        File.CreateSymbolicLink(Path.Combine(linked, PlatformDatabase.FileName), target);
        await PlatformStores.Open(linked).KeyService().CreateAsync("k", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        foreach (var file in new[] { target, target + "-wal", target + "-shm" })
            Assert.Equal((file, OwnerOnly), (file, File.GetUnixFileMode(file)));

        // A folder and database an operator shared with a group keep their modes, and the -wal
        // SQLite makes takes the database's.
        const UnixFileMode Group = UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
        SqliteConnection.ClearAllPools();
        File.SetUnixFileMode(dataDir, OwnerOnly | UnixFileMode.UserExecute | Group | UnixFileMode.GroupExecute);
        File.SetUnixFileMode(database, OwnerOnly | Group);
        await PlatformStores.Open(dataDir).KeyService().CreateAsync("k2", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        Assert.Equal(OwnerOnly | UnixFileMode.UserExecute | Group | UnixFileMode.GroupExecute, File.GetUnixFileMode(dataDir));
        Assert.Equal(OwnerOnly | Group, File.GetUnixFileMode(database));
        Assert.Equal(OwnerOnly | Group, File.GetUnixFileMode(database + "-wal"));
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
        var stores = PlatformStores.Open(directory, lockTimeout: timeout);
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
        var stores = PlatformStores.Open(directory, lockTimeout: TimeSpan.FromSeconds(5));
        var holder = HoldWriteLock();
        _ = Task.Delay(300).ContinueWith(_ => holder.Dispose(), TaskScheduler.Default);
        await stores.Usage.RecordAsync("k", "m", 1, 1, DateTimeOffset.UtcNow);
        Assert.Single(await stores.Usage.QueryAsync(UsageQuery.Days("k", null, null, null)));
    }

    [Fact]
    public void A_lock_timeout_is_whole_seconds()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PlatformStores.Open(directory, lockTimeout: TimeSpan.FromMilliseconds(1500)));
        Assert.Throws<ArgumentOutOfRangeException>(() => PlatformStores.Open(directory, lockTimeout: TimeSpan.Zero));
    }
}
