// What the platform database does differently on SQLite, the default: one file, stratus.db, in
// the data directory, in WAL mode so readers (verification, usage queries) never block the
// request path's writes. The schema is versioned with PRAGMA user_version: created on first open,
// and an older file migrated forward on open. A file of another application's (a data directory
// given by mistake) is refused before anything is written to it.
using System.Data.Common;
using System.Globalization;
using Microsoft.Data.Sqlite;
using Stratus.Safety;

namespace Stratus.Platform;

sealed class SqliteDialect : DatabaseDialect
{
    /// <summary>Migrations[v] takes the schema from version v to v + 1; a new file runs them all,
    /// so it is made exactly as an old one is migrated. A change to the schema adds a migration
    /// here and one to PostgresDialect.Migrations: the stores run the same SQL on both.</summary>
    static readonly string[] Migrations =
    [
        SchemaVersion1,
        "ALTER TABLE api_keys ADD COLUMN expires_at TEXT;",
        // Key rotation: the secret a rotation replaced, and when it stops working.
        "ALTER TABLE api_keys ADD COLUMN previous_salt BLOB; ALTER TABLE api_keys ADD COLUMN previous_hash BLOB; ALTER TABLE api_keys ADD COLUMN previous_expires_at TEXT;",
        ModelRegistrySchema,
        // Training jobs (Jobs/).
        Jobs.SqlJobStore.Migration,
        Jobs.SqlJobStore.SlurmMigration,
        // A version's lineage: the registered version its run started from (train --init-from NAME@ALIAS).
        ModelRegistry.ParentMigration,
        // Who asked for a job's cancel, beside when.
        Jobs.SqlJobStore.CancelRequestedByMigration,
    ];
    internal static int SchemaVersion => Migrations.Length;

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

    readonly string connectionString;
    readonly string connectionPragmas;

    public SqliteDialect(string path, TimeSpan lockTimeout)
    {
        // Microsoft.Data.Sqlite retries a busy statement until its command timeout, in whole
        // seconds, and SQLite's busy handler waits busy_timeout inside each try: both are the one
        // bound, so SQLite does the waiting (backing off from 1 ms, not the driver's 150 ms
        // sleeps) and the driver gives up when it returns, instead of trying again.
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

    public override string Name => FilePath;

    /// <summary>The file SQLite keeps the data in, with its -wal and -shm beside it:
    /// <see cref="FilePath"/>, or the file it leads to where it is a link.</summary>
    public string DataFile => new FileInfo(FilePath) is { LinkTarget: not null } link ? link.ResolveLinkTarget(returnFinalTarget: true)!.FullName : FilePath;

    /// <summary>Opened synchronously either way: Microsoft.Data.Sqlite's asynchronous methods
    /// run synchronously (the file is local), so there is no I/O to wait for without a thread.</summary>
    public override ValueTask<DbConnection> ConnectAsync(bool synchronously, CancellationToken cancellationToken) => ValueTask.FromResult(Open());

    DbConnection Open()
    {
        var connection = new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            PlatformDatabase.Execute(connection, connectionPragmas);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>An IMMEDIATE transaction: SQLite takes the write lock at BEGIN, before the first read.</summary>
    public override ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, bool synchronously, CancellationToken cancellationToken) =>
        ValueTask.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: false));

    public override void Migrate(DbConnection connection)
    {
        var sqlite = (SqliteConnection)connection;
        // Before WAL mode, which the file keeps: another application's database, or a newer
        // Stratus's, is left as it was.
        var version = Version(sqlite);
        PlatformDatabase.Execute(connection, "PRAGMA journal_mode=WAL;");
        if (version < SchemaVersion)
        {
            // Under the write lock, read again: of processes opening an old file at once, the
            // first migrates it and the others find it done.
            using var transaction = BeginWrite(connection);
            version = UserVersion(sqlite, transaction);
            if (version < SchemaVersion)
            {
                for (; version < SchemaVersion; version++) PlatformDatabase.Execute(connection, Migrations[version], transaction);
                PlatformDatabase.Execute(connection, $"PRAGMA user_version = {SchemaVersion};", transaction);
            }
            transaction.Commit();
        }
        // A newer Stratus that migrated it meanwhile.
        if (version > SchemaVersion) throw Newer(version);
    }

    /// <summary>The file's schema version, read without changing the file: 0 for an empty one (a
    /// new database), older ones below <see cref="SchemaVersion"/>, which Migrate would migrate;
    /// another application's file and a newer Stratus's are refused.</summary>
    internal int Version(SqliteConnection connection)
    {
        EnsureStratusOrEmpty(connection, FilePath);
        var version = UserVersion(connection, null);
        return version > SchemaVersion ? throw Newer(version) : version;
    }

    TrustUserException Newer(int version) => new($"{FilePath} has schema version {version}; this Stratus understands up to {SchemaVersion}. Upgrade Stratus.");

    /// <summary>Refuses a database that neither is empty (SQLite's new file, or the empty one
    /// Open makes) nor Stratus's: tables at schema version 0, which Stratus never leaves (it sets
    /// the version in the transaction that makes them), or a version without Stratus's first
    /// table. Migrating would add Stratus's tables to another application's file. Stratus's own
    /// tables at version 0 are a copy that lost its version, which migrating would fail on.</summary>
    static void EnsureStratusOrEmpty(SqliteConnection connection, string file)
    {
        var tables = new List<string>();
        using (var command = PlatformDatabase.Command(connection, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name;"))
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

    public override bool HoldsStratus(DbConnection connection) => UserVersion((SqliteConnection)connection, null) > 0;

    static int UserVersion(SqliteConnection connection, DbTransaction? transaction)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA user_version;";
        command.Transaction = (SqliteTransaction?)transaction;
        return Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    // SQLITE_CONSTRAINT (a unique index, here).
    public override bool IsUniqueViolation(DbException e) => e is SqliteException { SqliteErrorCode: 19 };

    public override string SameIgnoringCase(string column, string parameter) => $"lower({column}) = lower({parameter})";

    /// <summary>The column itself: its collation (NOCASE) makes the primary key case-insensitive.</summary>
    public override string CaseInsensitiveKey(string column) => column;

    public override string? Describe(DbException e) => e is SqliteException sqlite ? Describe(FilePath, sqlite) : null;

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
