// The SQLite database behind the default stores: one file, stratus.db, in the data directory,
// in WAL mode so readers (verification, usage queries) never block the request path's writes.
// The schema is versioned with PRAGMA user_version: created on first open, and an older file
// migrated forward on open. A file of another application's (a data directory given by mistake)
// is refused before anything is written to it.
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Stratus.Safety;

namespace Stratus.Platform;

/// <summary>A backup <see cref="PlatformDatabase.BackupTo"/> wrote, and its audit entry.</summary>
public sealed record PlatformBackup(string File, long Bytes, string Sha256, AuditEntry Audit);

public sealed class PlatformDatabase
{
    public const string FileName = "stratus.db";
    /// <summary>Migrations[v] takes the schema from version v to v + 1; a new file runs them all,
    /// so it is made exactly as an old one is migrated.</summary>
    static readonly string[] Migrations =
    [
        SchemaVersion1,
        "ALTER TABLE api_keys ADD COLUMN expires_at TEXT;",
        // Key rotation: the secret a rotation replaced, and when it stops working.
        "ALTER TABLE api_keys ADD COLUMN previous_salt BLOB; ALTER TABLE api_keys ADD COLUMN previous_hash BLOB; ALTER TABLE api_keys ADD COLUMN previous_expires_at TEXT;",
        ModelRegistrySchema,
        // Training jobs (Jobs/).
        Jobs.SqliteJobStore.Migration,
    ];
    static int SchemaVersion => Migrations.Length;

    const string SchemaVersion1 = """
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

        CREATE TABLE blocklists (
            name TEXT PRIMARY KEY COLLATE NOCASE,
            definition TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE safety_policies (
            deployment TEXT PRIMARY KEY,
            policy TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY,
            time TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            details TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        -- Append-only for anyone using the application; someone with the file can drop these,
        -- which is what the hash chain is for.
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
            BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

        CREATE TABLE usage_daily (
            key_id TEXT NOT NULL,
            day TEXT NOT NULL,
            model TEXT NOT NULL,
            requests INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            PRIMARY KEY (key_id, day, model)
        );
        """;

    /// <summary>The model registry (ModelRegistry.cs): registered_models keeps each name's last
    /// version number, so a deleted version's is not given again; a version is immutable; an
    /// alias points at one version of its name. The foreign keys say what refers to what; SQLite
    /// checks them only where a connection asks, so ModelRegistry keeps them in its transactions.</summary>
    const string ModelRegistrySchema = """
        CREATE TABLE registered_models (
            name TEXT PRIMARY KEY,
            last_version INTEGER NOT NULL
        );
        CREATE TABLE model_versions (
            name TEXT NOT NULL REFERENCES registered_models (name),
            version INTEGER NOT NULL,
            checkpoint TEXT NOT NULL,
            manifest_sha256 TEXT NOT NULL,
            architecture TEXT NOT NULL,
            parameters INTEGER NOT NULL,
            context_length INTEGER NOT NULL,
            tokenizer TEXT NOT NULL,
            description TEXT,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE TRIGGER model_versions_immutable BEFORE UPDATE ON model_versions
            BEGIN SELECT RAISE(ABORT, 'model versions are immutable'); END;
        CREATE TABLE model_aliases (
            name TEXT NOT NULL,
            alias TEXT NOT NULL,
            version INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (name, alias),
            FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
        );
        """;

    /// <summary>How long a statement waits for another connection's lock before it fails as
    /// "locked". Every write here holds the lock for milliseconds (a row, an audit entry), so a
    /// lock held for seconds is another process stuck inside a transaction (an sqlite3 shell, a
    /// backup), which waiting longer does not cure; and the server waits this long on the request
    /// path before it answers 503, which should take seconds, not the half minute a client may
    /// give up after. The CLI waits as long: its verbs write as little.</summary>
    public static readonly TimeSpan DefaultLockTimeout = TimeSpan.FromSeconds(5);

    readonly string connectionString;
    readonly string connectionPragmas;

    PlatformDatabase(string path, TimeSpan lockTimeout)
    {
        // Microsoft.Data.Sqlite retries a busy statement until its command timeout, in whole
        // seconds, and SQLite's busy handler waits busy_timeout inside each try: both are the one
        // bound, so SQLite does the waiting (backing off from 1 ms, not the driver's 150 ms
        // sleeps) and the driver gives up when it returns, instead of trying again.
        if (lockTimeout < TimeSpan.FromSeconds(1) || lockTimeout.Ticks % TimeSpan.TicksPerSecond != 0)
            throw new ArgumentOutOfRangeException(nameof(lockTimeout), lockTimeout, "The lock timeout is whole seconds, at least one.");
        FilePath = path;
        connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = (int)lockTimeout.TotalSeconds,
        }.ToString();
        // WAL with synchronous=NORMAL is durable across application crashes; only an OS crash
        // can lose the last transactions, which is the usual trade for a request-path store.
        connectionPragmas = $"PRAGMA synchronous=NORMAL; PRAGMA busy_timeout={(long)lockTimeout.TotalMilliseconds};";
    }

    public string FilePath { get; }

    /// <summary>The file SQLite keeps the data in, with its -wal and -shm beside it:
    /// <see cref="FilePath"/>, or the file it leads to where it is a link.</summary>
    public string SqliteFile => new FileInfo(FilePath) is { LinkTarget: not null } link ? link.ResolveLinkTarget(returnFinalTarget: true)!.FullName : FilePath;

    /// <summary>Opens (creating if needed) the database in a data directory.</summary>
    /// <param name="lockTimeout">How long a statement waits for another process's lock
    /// (whole seconds); <see cref="DefaultLockTimeout"/> when null.</param>
    /// <exception cref="PlatformStorageException">The file cannot be used (read-only, locked,
    /// not a database).</exception>
    /// <exception cref="TrustUserException">The data directory is a file, or its database is
    /// another application's or from a newer Stratus.</exception>
    public static PlatformDatabase Open(string dataDir, TimeSpan? lockTimeout = null)
    {
        // .NET would say "The file '...' already exists", of the file given as a folder.
        if (File.Exists(dataDir))
            throw new TrustUserException($"{dataDir} is a file; the data directory is a folder, where Stratus keeps {FileName}" +
                (Path.GetFileName(dataDir) == FileName ? $": give --data-dir {Path.GetDirectoryName(Path.GetFullPath(dataDir))}" : ": give --data-dir (or $STRATUS_HOME) a folder"));
        try
        {
            CreateOwnerOnlyFolder(dataDir);
        }
        // mkdir's ENOENT, the folders above made first: a file system that makes no folders
        // (/proc). .NET says only "Could not find file '/proc/x'". (A file in the way, ENOTDIR, is
        // a DirectoryNotFoundException, which the CLI names as such.)
        catch (FileNotFoundException e)
        {
            throw new TrustUserException($"cannot create the data directory {dataDir} ({e.Message.TrimEnd('.')}: its file system makes no folders there); " +
                $"give --data-dir (or ${StratusHome.EnvironmentVariable}) a folder this user may create", e);
        }
        var database = new PlatformDatabase(Path.Combine(dataDir, FileName), lockTimeout ?? DefaultLockTimeout);
        // Made here, empty (to SQLite a new database), since SQLite makes it readable by every user;
        // a stratus.db link that leads nowhere yet is the file it names, which SQLite would make.
        var file = database.SqliteFile;
        if (!File.Exists(file))
        {
            try
            {
                CreateOwnerOnlyFile(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Another process made it first, or the folder refuses it: SQLite opens that one,
                // or says why it cannot as it does of every file it refuses.
            }
        }
        database.Use(connection =>
        {
            // Before WAL mode, which the file keeps: another application's database is left as it was.
            EnsureStratusOrEmpty(connection, database.FilePath);
            Execute(connection, "PRAGMA journal_mode=WAL;");
            var version = UserVersion(connection, null);
            if (version < SchemaVersion)
            {
                // Under the write lock, read again: of processes opening an old file at once, the
                // first migrates it and the others find it done.
                using var transaction = connection.BeginTransaction(deferred: false);
                version = UserVersion(connection, transaction);
                if (version < SchemaVersion)
                {
                    for (; version < SchemaVersion; version++) Execute(connection, Migrations[version], transaction);
                    Execute(connection, $"PRAGMA user_version = {SchemaVersion};", transaction);
                }
                transaction.Commit();
            }
            if (version > SchemaVersion)
                throw new TrustUserException($"{database.FilePath} has schema version {version}; this Stratus understands up to {SchemaVersion}. Upgrade Stratus.");
            return true;
        });
        return database;
    }

    /// <summary>Refuses a database that neither is empty (SQLite's new file, or the empty one
    /// Open makes) nor Stratus's: tables at schema version 0, which Stratus never leaves (it sets
    /// the version in the transaction that makes them), or a version without Stratus's first
    /// table. Migrating would add Stratus's tables to another application's file. Stratus's own
    /// tables at version 0 are a copy that lost its version, which migrating would fail on.</summary>
    static void EnsureStratusOrEmpty(SqliteConnection connection, string file)
    {
        var tables = new List<string>();
        using (var command = Command(connection, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name;"))
        using (var reader = command.ExecuteReader())
            while (reader.Read()) tables.Add(reader.GetString(0));
        var version = UserVersion(connection, null);
        if (tables.Count == 0 || version > 0 && tables.Contains(FirstTable)) return;
        // sqlite3's .dump leaves the version out: Stratus's tables at 0 are a copy made so.
        if (version == 0 && tables.Contains(FirstTable) && tables.Contains(AuditTable))
            throw new TrustUserException($"{file} holds Stratus's tables without their schema version (PRAGMA user_version is 0, as in a copy made through sqlite3's .dump), " +
                "so Stratus cannot tell which changes it has; restore it from a copy that keeps the version (stratus backup, or sqlite3's .backup)");
        const int Named = 5;
        var named = string.Join(", ", tables.Take(Named)) + (tables.Count > Named ? $" and {tables.Count - Named} more" : "");
        throw new TrustUserException($"{file} is not a Stratus database (it holds the tables {named}), and Stratus does not add its own to another application's; " +
            "give --data-dir (or $STRATUS_HOME) a folder of Stratus's own");
    }

    /// <summary>The table every version of the schema has had first, and the one no other
    /// application's database is likely to hold beside it.</summary>
    const string FirstTable = "api_keys", AuditTable = "audit_log";

    // The database holds key hashes, usage, the audit log and blocklists, so the data directory
    // and database Stratus makes are its owner's alone (on Unix), as gh, ssh and kubectl keep
    // credentials; SQLite gives the -wal and -shm it makes beside the database the database's
    // mode. A folder or database that exists keeps its mode: one shared with a group (the
    // server's user and an administrator's, docs/trust.md) was made so on purpose.
    const UnixFileMode OwnerOnlyFolder = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    const UnixFileMode OwnerOnlyFile = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Makes <paramref name="folder"/> if missing; .NET gives the mode to it alone (and
    /// leaves an existing one's), and the folders above it are made as mkdir -p makes them, since
    /// they may hold more than Stratus's data.</summary>
    static void CreateOwnerOnlyFolder(string folder)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(folder);
        else Directory.CreateDirectory(folder, OwnerOnlyFolder);
    }

    /// <summary>Makes an empty file that only its owner may read and write (on Unix).</summary>
    static void CreateOwnerOnlyFile(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = OwnerOnlyFile;
        new FileStream(path, options).Dispose();
    }

    /// <summary>Writes a consistent copy of the whole database to <paramref name="destination"/>,
    /// replacing a file there, while servers and other commands go on using it. Copying stratus.db
    /// alone meanwhile is no backup: in WAL mode the latest changes sit in stratus.db-wal until a
    /// checkpoint moves them, and a running server holds its connections open, so that can be
    /// hours. SQLite's VACUUM INTO reads one snapshot (WAL included, writers not blocked) into a
    /// fresh file beside the destination, which is then moved over it, so a destination is never
    /// a half-written copy. It holds what the database does, so it is made as Stratus makes the
    /// database: its owner's alone.</summary>
    /// <exception cref="TrustUserException">The destination is the database or a file SQLite
    /// keeps beside it (its -wal, -shm or -journal), by whatever path.</exception>
    /// <exception cref="IOException">The destination's folder refuses the file (made if missing);
    /// a PlatformStorageException naming the destination where its disk is full.</exception>
    /// <remarks>Each backup is recorded in the audit log, as key changes are: who
    /// (<paramref name="actor"/>), when, the file and its size and sha256. The entry is appended
    /// once the copy is whole, and the copy moved to <paramref name="destination"/> in the entry's
    /// transaction, so no copy of the keys' hashes is left without one (an entry that cannot be
    /// written leaves no copy) nor an entry without its copy (a move that fails writes none); the
    /// copy, taken first, ends one entry before it, and its chain verifies as the prefix it is.</remarks>
    public PlatformBackup BackupTo(string destination, string actor)
    {
        var target = Path.GetFullPath(destination);
        // Made here, empty, as VACUUM INTO accepts it, so a folder that refuses it is .NET's error
        // about a file there, not SQLite's worded as the database's. Named as Stratus.AtomicFile
        // names its temporary sibling (this assembly does not reference Core), so the CLI's
        // file system errors name the destination and its --out.
        var folder = Directory.CreateDirectory(Path.GetDirectoryName(target)!).FullName;
        var partial = Path.Combine(folder, $".{Path.GetFileName(target)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        CreateOwnerOnlyFile(partial);
        try
        {
            // Moved over the database, or over the -wal that holds its latest commits, the copy
            // would lose them or corrupt it under the servers using it; a stratus.db that is a
            // link is the file it leads to. The temporary file showing up beside that file proves
            // the folders one, whatever path (a symlink, a bind mount) reached it; names compare
            // as a case-insensitive file system (macOS, Windows) would find them.
            var database = SqliteFile;
            var name = Path.GetFileName(database);
            var ownFile = File.Exists(Path.Combine(Path.GetDirectoryName(database)!, Path.GetFileName(partial)))
                ? SQLiteSuffixes.Select(suffix => name + suffix).FirstOrDefault(own => string.Equals(own, Path.GetFileName(target), StringComparison.OrdinalIgnoreCase))
                : null;
            if (ownFile is not null)
                throw new TrustUserException($"{target} is {(ownFile == name ? "the database itself" : "a file SQLite keeps beside the database")} " +
                    $"({FilePath}{(database == FilePath ? "" : $", a link to {database}")}); back it up to another file.");
            try
            {
                Use(connection =>
                {
                    using var command = Command(connection, "VACUUM INTO $file;", ("$file", partial));
                    return command.ExecuteNonQuery();
                });
            }
            catch (PlatformStorageException e) when (e.InnerException is SqliteException full && (full.SqliteErrorCode & 0xFF) == 13)
            {
                // SQLITE_FULL: VACUUM INTO writes the copy, not the database, so the full disk is
                // the destination's; the database's would send the operator to the wrong disk.
                throw new PlatformStorageException(PlatformStorageException.Describe(target, full)!, full);
            }
            long bytes;
            string sha256;
            using (var copy = File.OpenRead(partial)) (bytes, sha256) = (copy.Length, Convert.ToHexStringLower(SHA256.HashData(copy)));
            var entry = Write(transaction =>
            {
                var appended = new SqliteAuditLog(this).Append(transaction, new AuditRecord(actor, AuditActions.DatabaseBackedUp,
                    new JsonObject { ["file"] = target, ["bytes"] = bytes, ["sha256"] = sha256 }));
                // Before the commit: a copy that cannot be put there (a folder in its place) rolls
                // its entry back, so no entry tells of a copy that is not there.
                File.Move(partial, target, overwrite: true);
                return appended;
            });
            return new PlatformBackup(target, bytes, sha256, entry);
        }
        finally
        {
            File.Delete(partial);
        }
    }

    /// <summary>What SQLite adds to the database's file name to name the files it keeps beside it.</summary>
    static readonly string[] SQLiteSuffixes = ["", "-wal", "-shm", "-journal"];

    /// <summary>Runs <paramref name="work"/> on a connection of its own. Every store reaches the
    /// file through here, so a failure the machine causes (the file or its folder read-only for
    /// this user, locked by another process, not a database, its schema altered outside Stratus, a
    /// full disk) becomes one
    /// PlatformStorageException naming the file; any other SQLite error is a bug and stays as it is.</summary>
    internal T Use<T>(Func<SqliteConnection, T> work)
    {
        try
        {
            using var connection = Connect();
            return work(connection);
        }
        catch (SqliteException e) when (PlatformStorageException.Describe(FilePath, e) is { } problem)
        {
            throw new PlatformStorageException(problem, e);
        }
    }

    /// <summary>Runs <paramref name="work"/> in one IMMEDIATE transaction, committed when it
    /// returns and rolled back when it throws. It takes the write lock before the first read, so
    /// what the work reads stays so until it writes: a writer in another connection or process
    /// waits for this one instead of changing what it read in between.</summary>
    internal T Write<T>(Func<SqliteTransaction, T> work) => Use(connection =>
    {
        using var transaction = connection.BeginTransaction(deferred: false);
        var result = work(transaction);
        transaction.Commit();
        return result;
    });

    SqliteConnection Connect()
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            Execute(connection, connectionPragmas);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    internal static void Execute(SqliteConnection connection, string sql, SqliteTransaction? transaction = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    static int UserVersion(SqliteConnection connection, SqliteTransaction? transaction)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA user_version;";
        command.Transaction = transaction;
        return Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    internal static SqliteCommand Command(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return command;
    }

    /// <summary>Timestamps are stored as fixed-width UTC text so they sort and compare as text
    /// and round-trip to the tick (the audit hash covers them).</summary>
    internal static string FormatTime(DateTimeOffset time) => time.UtcDateTime.ToString(TimeFormat, CultureInfo.InvariantCulture);

    const string TimeFormat = "yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'";
    const DateTimeStyles TimeStyles = DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal;

    internal static DateTimeOffset ParseTime(string text) =>
        new(DateTime.ParseExact(text, TimeFormat, CultureInfo.InvariantCulture, TimeStyles), TimeSpan.Zero);

    internal static bool TryParseTime(string text, out DateTimeOffset time)
    {
        var ok = DateTime.TryParseExact(text, TimeFormat, CultureInfo.InvariantCulture, TimeStyles, out var parsed);
        time = ok ? new DateTimeOffset(parsed, TimeSpan.Zero) : default;
        return ok;
    }
}

/// <summary>The platform database cannot be used for a reason of the machine's: the file or its
/// folder read-only for this user, a lock another process holds, a file that is not a database or
/// whose tables someone dropped, a full disk. The operator's to fix, not a bug: an IOException, as any path the system refuses
/// is, so the CLI prints its one line and exits with 2.</summary>
public sealed class PlatformStorageException(string message, Exception inner) : IOException(message, inner)
{
    /// <summary>What went wrong with <paramref name="file"/>, in the operator's terms; null for an
    /// error that is not the machine's (a bug).</summary>
    internal static string? Describe(string file, SqliteException e)
    {
        var sqlite = e.Message.TrimEnd('.');
        return (e.SqliteErrorCode & 0xFF) switch
        {
            // SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN
            3 or 8 or 14 => $"cannot open or write {file} ({sqlite}): SQLite writes it, and {Path.GetFileName(file)}-wal and -shm beside it, " +
                "even to read it; run as the user who owns the data directory, or give this one write access to it",
            // SQLITE_BUSY, SQLITE_LOCKED
            5 or 6 => $"{file} is locked by another process ({sqlite}); try again once that process is done",
            // SQLITE_CORRUPT, SQLITE_NOTADB
            11 or 26 => $"{file} is not a Stratus database or is damaged ({sqlite}); check --data-dir, or restore the file from a backup",
            // SQLITE_ERROR for a table or column of the schema this file's version promises: someone
            // with the file dropped or altered it (the audit log's table, say), which no Stratus does.
            1 when sqlite.Contains("no such table", StringComparison.Ordinal) || sqlite.Contains("no such column", StringComparison.Ordinal) =>
                $"{file} lacks part of the Stratus schema ({sqlite}): it was changed outside Stratus or is damaged; restore it from a backup",
            // SQLITE_FULL
            13 => $"the disk holding {file} is full ({sqlite})",
            // SQLITE_IOERR
            10 => $"reading or writing {file} failed ({sqlite})",
            _ => null,
        };
    }
}
