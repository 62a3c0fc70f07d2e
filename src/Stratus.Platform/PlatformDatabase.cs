// The database behind the platform's stores: SQLite's stratus.db in the data directory (the
// default), or PostgreSQL where STRATUS_DATABASE names one (a cluster's shared database). The
// stores speak ADO.NET's System.Data.Common and one SQL to both; what truly differs (the schema
// and its migrations, how a write takes the lock, how an error is told to the operator) is the
// dialect's (DatabaseDialect: SqliteDialect, PostgresDialect).
using System.Data.Common;
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

    /// <summary>How long a statement waits for another connection's lock before it fails as
    /// "locked". Every write here holds the lock for milliseconds (a row, an audit entry), so a
    /// lock held for seconds is another process stuck inside a transaction (an sqlite3 shell, a
    /// backup), which waiting longer does not cure; and the server waits this long on the request
    /// path before it answers 503, which should take seconds, not the half minute a client may
    /// give up after. The CLI waits as long: its verbs write as little.</summary>
    public static readonly TimeSpan DefaultLockTimeout = TimeSpan.FromSeconds(5);

    readonly DatabaseDialect dialect;

    PlatformDatabase(string dataDirectory, DatabaseDialect dialect)
    {
        DataDirectory = dataDirectory;
        this.dialect = dialect;
    }

    /// <summary>The data directory: the database's file where it is SQLite's, and in any case the
    /// jobs' logs and the registry's copies.</summary>
    public string DataDirectory { get; }

    /// <summary>The database as messages name it: stratus.db's path, or the PostgreSQL database
    /// (its host, port, database and user; never a password).</summary>
    public string Name => dialect.Name;

    /// <summary>SQLite's stratus.db in the data directory (where the database is SQLite's).</summary>
    public string FilePath => Path.Combine(DataDirectory, FileName);

    /// <summary>The file SQLite keeps the data in, with its -wal and -shm beside it:
    /// <see cref="FilePath"/>, or the file it leads to where it is a link (SQLite's database only).</summary>
    public string SqliteFile => ((SqliteDialect)dialect).DataFile;

    internal DatabaseDialect Dialect => dialect;

    /// <summary>The environment variable that names a PostgreSQL database to use instead of
    /// SQLite's stratus.db, read here alone, so the CLI, servers and jobs (which inherit it) agree.</summary>
    public const string DatabaseVariable = "STRATUS_DATABASE";

    /// <summary><see cref="DatabaseVariable"/> as messages name it, where its value is at fault.</summary>
    internal const string VariableSetting = "$" + DatabaseVariable;

    /// <summary>Opens (creating if needed) the database of a data directory: PostgreSQL's where
    /// <see cref="DatabaseVariable"/> names one, else SQLite's stratus.db in the folder.</summary>
    /// <param name="lockTimeout">How long a statement waits for another process's lock
    /// (whole seconds); <see cref="DefaultLockTimeout"/> when null.</param>
    /// <exception cref="PlatformStorageException">The database cannot be used (read-only,
    /// locked, not a database, a server that cannot be reached or refuses the login).</exception>
    /// <exception cref="TrustUserException">The data directory is a file, the variable names no
    /// database, or the database is another application's or from a newer Stratus.</exception>
    public static PlatformDatabase Open(string dataDir, TimeSpan? lockTimeout = null) => Open(dataDir, Configured, lockTimeout);

    /// <summary>Opens the database <paramref name="connection"/> names (a PostgreSQL URI or
    /// Npgsql's keywords; null or empty: SQLite's stratus.db in <paramref name="dataDir"/>), as
    /// <see cref="Open(string, TimeSpan?)"/> does with <see cref="DatabaseVariable"/>'s value.</summary>
    public static PlatformDatabase Open(string dataDir, string? connection, TimeSpan? lockTimeout) => Open(dataDir, connection, lockTimeout, VariableSetting);

    /// <summary><see cref="Open(string, string?, TimeSpan?)"/> of a value given by
    /// <paramref name="setting"/> (an option such as --to), which messages about the value name.</summary>
    internal static PlatformDatabase Open(string dataDir, string? connection, TimeSpan? lockTimeout, string setting)
    {
        var database = new PlatformDatabase(dataDir, ChooseDialect(dataDir, connection, lockTimeout, setting));
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
        if (database.dialect is SqliteDialect sqlite)
        {
            // Made here, empty (to SQLite a new database), since SQLite makes it readable by every user;
            // a stratus.db link that leads nowhere yet is the file it names, which SQLite would make.
            var file = sqlite.DataFile;
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
        }
        database.Use(connection =>
        {
            database.dialect.Migrate(connection);
            return true;
        });
        return database;
    }

    /// <summary>The schema version of the data directory's stratus.db, and this Stratus's, read
    /// without changing the file (<see cref="Open(string, TimeSpan?)"/> migrates an older one): 0
    /// where it holds no tables. One that is another application's or a newer Stratus's is refused
    /// as Open refuses it.</summary>
    /// <exception cref="TrustUserException">Another application's file, or a newer Stratus's.</exception>
    /// <exception cref="PlatformStorageException">The file cannot be read.</exception>
    internal static (int Version, int Current) SqliteSchemaVersion(string dataDir)
    {
        var sqlite = new SqliteDialect(Path.Combine(dataDir, FileName), DefaultLockTimeout);
        return new PlatformDatabase(dataDir, sqlite).Use(connection => (sqlite.Version((SqliteConnection)connection), SqliteDialect.SchemaVersion));
    }

    /// <summary>Whether the data directory's database (as <see cref="Open(string, TimeSpan?)"/>
    /// chooses it) holds Stratus's data already, asked without creating anything: for a verb that
    /// only reads, or a check that has nothing to find where there is none.</summary>
    /// <exception cref="PlatformStorageException">The chosen PostgreSQL server cannot be asked.</exception>
    public static bool Exists(string dataDir) => Exists(dataDir, Configured);

    internal static bool Exists(string dataDir, string? connection)
    {
        var dialect = ChooseDialect(dataDir, connection, null, VariableSetting);
        if (dialect is SqliteDialect) return File.Exists(Path.Combine(dataDir, FileName));
        return new PlatformDatabase(dataDir, dialect).Use(dialect.HoldsStratus);
    }

    /// <summary>The data directory's database as messages name it: stratus.db's path, or the
    /// PostgreSQL database <see cref="DatabaseVariable"/> names (without its password).</summary>
    public static string Describe(string dataDir) => ChooseDialect(dataDir, Configured, null, VariableSetting).Name;

    internal static string? Configured => Environment.GetEnvironmentVariable(DatabaseVariable);

    /// <summary>Whether <see cref="DatabaseVariable"/> chooses PostgreSQL (else SQLite's file).</summary>
    public static bool PostgresChosen => !string.IsNullOrWhiteSpace(Configured);

    static DatabaseDialect ChooseDialect(string dataDir, string? connection, TimeSpan? lockTimeout, string setting)
    {
        var timeout = lockTimeout ?? DefaultLockTimeout;
        if (timeout < TimeSpan.FromSeconds(1) || timeout.Ticks % TimeSpan.TicksPerSecond != 0)
            throw new ArgumentOutOfRangeException(nameof(lockTimeout), timeout, "The lock timeout is whole seconds, at least one.");
        return string.IsNullOrWhiteSpace(connection)
            ? new SqliteDialect(Path.Combine(dataDir, FileName), timeout)
            : PostgresDialect.Parse(connection, setting, timeout);
    }

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
    /// copy, taken first, ends one entry before it, and its chain verifies as the prefix it is.
    /// <paramref name="time"/> dates the entry (the system's clock unless a test sets it), as the
    /// stores' clock dates theirs.</remarks>
    public PlatformBackup BackupTo(string destination, string actor, TimeProvider? time = null)
    {
        var sqlite = dialect as SqliteDialect ?? throw new TrustUserException(
            $"{Name} is backed up with PostgreSQL's own tools, not stratus backup (which copies SQLite's stratus.db): " +
            $"pg_dump --format=custom --file=stratus-$(date +%F).dump {((PostgresDialect)dialect).ToolOptions}, restored (every Stratus process stopped) " +
            $"with pg_restore --clean {((PostgresDialect)dialect).ToolOptions} <file> (see docs/platform.md)");
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
            var database = sqlite.DataFile;
            var name = Path.GetFileName(database);
            var ownFile = File.Exists(Path.Combine(Path.GetDirectoryName(database)!, Path.GetFileName(partial)))
                ? SQLiteSuffixes.Select(suffix => name + suffix).FirstOrDefault(own => string.Equals(own, Path.GetFileName(target), StringComparison.OrdinalIgnoreCase))
                : null;
            if (ownFile is not null)
                throw new TrustUserException($"{target} is {(ownFile == name ? "the database itself" : "a file SQLite keeps beside the database")} " +
                    $"({sqlite.FilePath}{(database == sqlite.FilePath ? "" : $", a link to {database}")}); back it up to another file.");
            try
            {
                Use(connection =>
                {
                    using var command = Command(connection, "VACUUM INTO @file;", ("@file", partial));
                    return command.ExecuteNonQuery();
                });
            }
            catch (PlatformStorageException e) when (e.InnerException is SqliteException full && (full.SqliteErrorCode & 0xFF) == 13)
            {
                // SQLITE_FULL: VACUUM INTO writes the copy, not the database, so the full disk is
                // the destination's; the database's would send the operator to the wrong disk.
                throw new PlatformStorageException(SqliteDialect.Describe(target, full)!, full);
            }
            long bytes;
            string sha256;
            using (var copy = File.OpenRead(partial)) (bytes, sha256) = (copy.Length, Convert.ToHexStringLower(SHA256.HashData(copy)));
            var entry = Write(transaction =>
            {
                var appended = new SqlAuditLog(this, time).Append(transaction, new AuditRecord(actor, AuditActions.DatabaseBackedUp,
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
    /// database through here, so a failure the machine causes (the file or its folder read-only for
    /// this user, locked by another process, not a database, its schema altered outside Stratus, a
    /// full disk) becomes one PlatformStorageException naming the database; any other database
    /// error is a bug and stays as it is.</summary>
    internal T Use<T>(Func<DbConnection, T> work) =>
        Completed(UseAsync((connection, _, _) => ValueTask.FromResult(work(connection)), synchronously: true, CancellationToken.None));

    /// <summary><see cref="Use{T}"/> for the request path: on PostgreSQL the connection is opened
    /// and <paramref name="work"/> runs its commands with Npgsql's asynchronous I/O (it is given
    /// whether to run them synchronously: false), so a round trip to the server holds no thread;
    /// SQLite's driver completes them synchronously either way. <paramref name="writes"/>: the work
    /// writes (a statement that upserts a row), for its failure's <see cref="PlatformStorageException.Writing"/>.</summary>
    internal ValueTask<T> UseAsync<T>(Func<DbConnection, bool, CancellationToken, ValueTask<T>> work, CancellationToken cancellationToken, bool writes = false) =>
        UseAsync(work, synchronously: false, cancellationToken, writes);

    /// <summary>The one mechanism of <see cref="Use{T}"/> and its asynchronous twin: synchronously,
    /// every await in it finds its work done, so the sync callers get a completed ValueTask.</summary>
    async ValueTask<T> UseAsync<T>(Func<DbConnection, bool, CancellationToken, ValueTask<T>> work, bool synchronously, CancellationToken cancellationToken, bool writes = false)
    {
        try
        {
            using var connection = await dialect.ConnectAsync(synchronously, cancellationToken);
            return await work(connection, synchronously, cancellationToken);
        }
        catch (DbException e) when (dialect.Describe(e) is { } problem)
        {
            throw new PlatformStorageException(problem, e) { Writing = writes };
        }
    }

    /// <summary>Why the database cannot be used now, null where it answers: for a server's readiness
    /// probe, so that a balancer takes a server whose store is unreachable out of rotation while
    /// it is. It reads a row of api_keys, as authenticating a request does, so it fails where
    /// requests fail: a PostgreSQL server stopped or unreachable (within the connect timeout, the
    /// lock timeout and a second), a stratus.db damaged. A write lock another process holds fails
    /// it not, as reads go on under it.</summary>
    public async ValueTask<PlatformStorageException?> ProblemAsync(CancellationToken cancellationToken)
    {
        try
        {
            await UseAsync(async (connection, synchronously, cancellationToken) =>
            {
                using var command = Command(connection, "SELECT 1 FROM api_keys LIMIT 1");
                using var reader = await ReaderAsync(command, synchronously, cancellationToken);
                return await NextRowAsync(reader, synchronously, cancellationToken);
            }, cancellationToken);
            return null;
        }
        catch (PlatformStorageException e)
        {
            return e;
        }
    }

    /// <summary>Runs <paramref name="work"/> in one write transaction, committed when it returns
    /// and rolled back when it throws. It takes the write lock before the first read, so what the
    /// work reads stays so until it writes: a writer in another connection or process waits for
    /// this one instead of changing what it read in between.</summary>
    internal T Write<T>(Func<DbTransaction, T> work) =>
        Completed(WriteAsync((transaction, _, _) => ValueTask.FromResult(work(transaction)), synchronously: true, CancellationToken.None));

    /// <summary><see cref="Write{T}"/> for the request path, as <see cref="UseAsync{T}(Func{DbConnection, bool, CancellationToken, ValueTask{T}}, CancellationToken)"/> is <see cref="Use{T}"/>'s.</summary>
    internal ValueTask<T> WriteAsync<T>(Func<DbTransaction, bool, CancellationToken, ValueTask<T>> work, CancellationToken cancellationToken) =>
        WriteAsync(work, synchronously: false, cancellationToken);

    ValueTask<T> WriteAsync<T>(Func<DbTransaction, bool, CancellationToken, ValueTask<T>> work, bool synchronously, CancellationToken cancellationToken) =>
        UseAsync(async (connection, synchronously, cancellationToken) =>
        {
            using var transaction = await dialect.BeginWriteAsync(connection, synchronously, cancellationToken);
            var result = await work(transaction, synchronously, cancellationToken);
            if (synchronously) transaction.Commit();
            else await transaction.CommitAsync(cancellationToken);
            return result;
        }, synchronously, cancellationToken, writes: true);

    /// <summary>The result of work run synchronously, which completed its ValueTask before returning it.</summary>
    internal static T Completed<T>(ValueTask<T> work) => work.IsCompleted
        ? work.GetAwaiter().GetResult()
        : throw new InvalidOperationException("Work run synchronously returned before it was done: something in it awaited I/O it was told to do synchronously.");

    /// <summary>A command's rows affected, the command run synchronously or with the driver's asynchronous I/O.</summary>
    internal static async ValueTask<int> ExecuteAsync(DbCommand command, bool synchronously, CancellationToken cancellationToken) =>
        synchronously ? command.ExecuteNonQuery() : await command.ExecuteNonQueryAsync(cancellationToken);

    /// <summary>A command's reader, as <see cref="ExecuteAsync"/> runs it.</summary>
    internal static async ValueTask<DbDataReader> ReaderAsync(DbCommand command, bool synchronously, CancellationToken cancellationToken) =>
        synchronously ? command.ExecuteReader() : await command.ExecuteReaderAsync(cancellationToken);

    /// <summary>A reader's next row, as <see cref="ExecuteAsync"/> runs its command.</summary>
    internal static async ValueTask<bool> NextRowAsync(DbDataReader reader, bool synchronously, CancellationToken cancellationToken) =>
        synchronously ? reader.Read() : await reader.ReadAsync(cancellationToken);

    /// <summary>Whether <paramref name="e"/> is a unique index refusing a row.</summary>
    internal bool IsUniqueViolation(DbException e) => dialect.IsUniqueViolation(e);

    internal static void Execute(DbConnection connection, string sql, DbTransaction? transaction = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    /// <summary>A command with parameters named as both drivers read them (@name).</summary>
    internal static DbCommand Command(DbConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }
        return command;
    }

    /// <summary>A command in <paramref name="transaction"/>, on its connection.</summary>
    internal static DbCommand Command(DbTransaction transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = Command(transaction.Connection!, sql, parameters);
        command.Transaction = transaction;
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
    /// <summary>A write failed (a write transaction, a row upserted): some causes (a lock another
    /// process holds, a full disk) fail writes alone, reads going on, so a read that answers later
    /// is no sign that the cause is gone.</summary>
    public bool Writing { get; init; }
}
