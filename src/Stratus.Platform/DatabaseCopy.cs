// Copies a data directory's SQLite database (stratus.db) into an empty PostgreSQL Stratus database,
// for a team moving from one machine to a cluster's shared database: keys keep their hashes (clients
// keep their secrets), the audit log keeps its chain, and the registry, jobs, usage, blocklists and
// policies come along. The copy is driven by the two migrated schemas themselves (every table and
// column SQLite's and PostgreSQL's migrations made), not a list of its own that a new migration
// would leave behind: tables or columns the two do not share stop it before it writes anything.
// The source is read in one SQLite read transaction, a snapshot that a server writing meanwhile
// cannot tear (WAL: its writes go on, unseen); the target is written in one transaction, under the
// write lock, so a copy that fails or is cancelled leaves it as empty as it was. The source's schema
// is left as it was (an older one is migrated only where asked) and its log records the copy once
// the target committed.
using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Npgsql;
using NpgsqlTypes;
using Stratus.Safety;

namespace Stratus.Platform;

/// <summary>A table <see cref="DatabaseCopy.Copy"/> copied, and how many rows.</summary>
public sealed record CopiedTable(string Name, long Rows);

/// <summary>What <see cref="DatabaseCopy.Copy"/> copied: each table (in the order copied), the
/// copied audit chain's head (the genesis hash where it was empty), the target's entry recording
/// the copy, appended after that chain, and the source's entry recording it (null, with
/// <see cref="SourceUnrecorded"/> saying why, where the source could not take one).</summary>
public sealed record DatabaseCopyResult(string Source, string Target, IReadOnlyList<CopiedTable> Tables, string AuditHead, AuditEntry Audit,
    AuditEntry? SourceAudit, string? SourceUnrecorded);

public static class DatabaseCopy
{
    /// <summary>Copies every row of <paramref name="dataDir"/>'s stratus.db into the PostgreSQL
    /// database <paramref name="target"/> names (a URI or Npgsql's keywords, given as --to; null:
    /// the one STRATUS_DATABASE names), which must hold Stratus's tables and no rows (a new
    /// database: this creates the tables), and records the copy in both audit logs as
    /// <paramref name="actor"/>: the target's in the copy's transaction, the source's once the
    /// target committed. A stratus.db of an older schema is refused unless
    /// <paramref name="migrateSource"/> (then migrated in place first, as a server would on start):
    /// a copy leaves its source's schema as it found it, so the Stratus that uses it still opens it.
    /// <paramref name="cancellationToken"/> stops the copy: the server is told to cancel the
    /// statement it works on, and the target's transaction is rolled back.</summary>
    /// <exception cref="TrustUserException">No stratus.db in the folder, or one that is not
    /// Stratus's, holds nothing, or is from a newer (or, without <paramref name="migrateSource"/>,
    /// older) Stratus; a target that is missing, SQLite's, not Stratus's, newer, or holds rows
    /// already; a row of the source the target's constraints refuse. Nothing is written to the
    /// target then.</exception>
    /// <exception cref="PlatformStorageException">Either database cannot be used (locked, unreachable, ...).</exception>
    /// <exception cref="OperationCanceledException">Cancelled before the target committed; nothing was written to it.</exception>
    public static DatabaseCopyResult Copy(string dataDir, string? target, string actor, bool migrateSource = false, CancellationToken cancellationToken = default)
    {
        // Messages about the value name where it came from: the option, or the variable.
        var setting = target is null ? PlatformDatabase.VariableSetting : "--to";
        target ??= PlatformDatabase.Configured;
        if (string.IsNullOrWhiteSpace(target))
            throw new TrustUserException($"no PostgreSQL database to copy into: give --to postgresql://user@host/database (or set ${PlatformDatabase.DatabaseVariable}), " +
                "a new, empty database made for Stratus");
        // Npgsql's keywords always hold a '=', and a URI a "://": anything else is a path, SQLite's.
        var trimmed = target.Trim();
        if (trimmed.StartsWith("sqlite:", StringComparison.OrdinalIgnoreCase) || !trimmed.Contains('=', StringComparison.Ordinal) && !trimmed.Contains("://", StringComparison.Ordinal))
            throw new TrustUserException($"the database to copy into ({trimmed}, from {setting}) is a SQLite file, not PostgreSQL; the copy goes from a data directory's {PlatformDatabase.FileName} " +
                $"to PostgreSQL: give {setting} a PostgreSQL database such as postgresql://stratus@db.example.com/stratus");
        var file = Path.Combine(dataDir, PlatformDatabase.FileName);
        if (!File.Exists(dataDir) && !File.Exists(file))
            throw new TrustUserException($"no Stratus database to copy in {dataDir} (no {PlatformDatabase.FileName}); give --data-dir the folder that holds it");
        var source = OpenSource(dataDir, migrateSource);
        var destination = PlatformDatabase.Open(dataDir, target, lockTimeout: null, setting);
        List<CopiedTable> copied;
        string head;
        AuditEntry entry;
        try
        {
            (copied, head, entry) = destination.Write(transaction =>
            {
                var targetSchema = PostgresSchema(transaction);
                RequireEmpty(destination, transaction, targetSchema);
                using var cancel = CancelOnRequest(destination, transaction, cancellationToken);
                var copied = source.Use(connection =>
                {
                    // Deferred: a read transaction, whose first read fixes the snapshot every later one sees.
                    using var snapshot = ((SqliteConnection)connection).BeginTransaction(deferred: true);
                    RequireSameTables(source, destination, SqliteSchema(snapshot), targetSchema);
                    return targetSchema.Select(table => new CopiedTable(table.Name, CopyTable(snapshot, transaction, table, source, destination, cancellationToken))).ToList();
                });
                var head = AuditChain.GenesisHash;
                using (var last = PlatformDatabase.Command(transaction, "SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1"))
                    if (last.ExecuteScalar() is string hash) head = hash;
                var entry = new SqlAuditLog(destination).Append(transaction, new AuditRecord(actor, AuditActions.DatabaseCopied, Details("from", source.Name, copied, head)));
                return (copied, head, entry);
            });
        }
        // The statement the server cancelled on request: the transaction is rolled back as any
        // failed one is, and the caller learns it was stopped, not that the server failed.
        catch (PlatformStorageException e) when (cancellationToken.IsCancellationRequested && e.InnerException is PostgresException { SqlState: PostgresErrorCodes.QueryCanceled })
        {
            throw new OperationCanceledException($"the copy into {destination.Name} was cancelled; nothing was copied", e, cancellationToken);
        }
        // The source's log tells whoever audits the old store that its keys' hashes and log went
        // elsewhere, and when, as a backup's entry does: appended after the target committed (an
        // entry of a copy that was rolled back would be false), in a write of its own after the
        // snapshot's read ended. Entries a server appended meanwhile come before it, and after
        // the head it names, which the target does not hold. A source that cannot take it (locked
        // past the lock timeout, a read-only file) does not undo a copy that is whole: it is said.
        try
        {
            var recorded = PlatformDatabase.Completed(new SqlAuditLog(source).AppendAsync(actor, AuditActions.DatabaseCopied, Details("to", destination.Name, copied, head)));
            return new DatabaseCopyResult(source.Name, destination.Name, copied, head, entry, recorded, null);
        }
        catch (PlatformStorageException e)
        {
            return new DatabaseCopyResult(source.Name, destination.Name, copied, head, entry, null, e.Message);
        }
    }

    /// <summary>Has the server cancel the statement <paramref name="transaction"/> runs (a table's
    /// COPY, or the checks of its foreign keys at its end) once <paramref name="cancellationToken"/>
    /// fires: pg_cancel_backend, through a connection of its own, of the backend the transaction
    /// runs on (asked in it: behind PgBouncer the connection's own process id is the pooler's).
    /// Npgsql sends no cancel request for a COPY, and a client that only went away would leave the
    /// server working through the table, the write lock held, until it next writes to the client.
    /// A backend between statements has nothing to cancel: the copy checks the token at each
    /// table and row.</summary>
    static CancellationTokenRegistration CancelOnRequest(PlatformDatabase target, DbTransaction transaction, CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled) return default;
        using var ask = PlatformDatabase.Command(transaction, "SELECT pg_backend_pid()");
        var backend = Convert.ToInt32(ask.ExecuteScalar(), CultureInfo.InvariantCulture);
        return cancellationToken.Register(() =>
        {
            try
            {
                target.Use(connection =>
                {
                    using var cancel = PlatformDatabase.Command(connection, "SELECT pg_cancel_backend(@backend)", ("@backend", backend));
                    return cancel.ExecuteScalar();
                });
            }
            // A server that cannot be told now: the copy stops at its next row, when TCP keepalive
            // gives up on the connection, or at a second signal, which ends the process.
            catch (PlatformStorageException)
            {
            }
        });
    }

    /// <summary>An audit entry's details of the copy: the other database, and what was copied.</summary>
    static JsonObject Details(string direction, string other, List<CopiedTable> copied, string head)
    {
        var tables = new JsonObject();
        foreach (var table in copied) tables[table.Name] = table.Rows;
        return new JsonObject
        {
            [direction] = other,
            ["audit_entries"] = copied.Single(t => t.Name == AuditTable).Rows,
            ["audit_head"] = head,
            ["rows"] = tables,
        };
    }

    /// <summary>The data directory's stratus.db, refused where it holds nothing to copy or, unless
    /// <paramref name="migrate"/>, where this Stratus would migrate it (opening it through the
    /// stores does): an older Stratus refuses a file a newer one migrated, so a copy that
    /// migrated its source unasked would stop the deployment still using it from starting again.</summary>
    static PlatformDatabase OpenSource(string dataDir, bool migrate)
    {
        var (version, current) = PlatformDatabase.SqliteSchemaVersion(dataDir);
        var file = Path.Combine(dataDir, PlatformDatabase.FileName);
        if (version == 0)
            throw new TrustUserException($"{file} holds no Stratus data (it has no tables); give --data-dir the folder of the {PlatformDatabase.FileName} to copy");
        if (version < current && !migrate)
            throw new TrustUserException($"{file} has schema version {version}, older than this Stratus's {current}, and the copy leaves the database it copies as it is: " +
                "give --migrate-source to migrate it in place first, as a server of this Stratus would on start (the older Stratus then refuses it: " +
                "copy it first, with the older Stratus's backup verb or sqlite3's .backup, to keep one it opens)");
        return PlatformDatabase.Open(dataDir, connection: null, lockTimeout: null);
    }

    const string AuditTable = "audit_log";

    /// <summary>A table of the schema, with its columns as PostgreSQL types them.</summary>
    sealed record Table(string Name, IReadOnlyList<(string Name, string Type)> Columns);

    /// <summary>The target's tables but the version's, in an order that puts every table after
    /// those its foreign keys refer to (the registry's versions after its models, aliases after
    /// versions), so each table's rows find the rows they refer to already there.</summary>
    static List<Table> PostgresSchema(DbTransaction transaction)
    {
        var columns = new Dictionary<string, List<(string, string)>>(StringComparer.Ordinal);
        using (var command = PlatformDatabase.Command(transaction, """
                   SELECT table_name, column_name, data_type FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name <> 'stratus_schema' ORDER BY table_name, ordinal_position
                   """))
        using (var reader = command.ExecuteReader())
            while (reader.Read())
            {
                var table = reader.GetString(0);
                if (!columns.TryGetValue(table, out var list)) columns[table] = list = [];
                list.Add((reader.GetString(1), reader.GetString(2)));
            }
        var references = new List<(string Table, string Referenced)>();
        using (var command = PlatformDatabase.Command(transaction, """
                   SELECT c.relname, r.relname FROM pg_constraint f
                   JOIN pg_class c ON c.oid = f.conrelid JOIN pg_class r ON r.oid = f.confrelid
                   WHERE f.contype = 'f' AND f.connamespace = current_schema()::regnamespace
                   """))
        using (var reader = command.ExecuteReader())
            while (reader.Read()) references.Add((reader.GetString(0), reader.GetString(1)));
        var ordered = new List<Table>();
        var left = columns.Keys.Order(StringComparer.Ordinal).ToList();
        while (left.Count > 0)
        {
            var next = left.First(table => references.All(r => r.Table != table || r.Referenced == table || !left.Contains(r.Referenced)));
            ordered.Add(new Table(next, columns[next]));
            left.Remove(next);
        }
        return ordered;
    }

    /// <summary>The source's tables with their columns' names (SQLite's types are its own).</summary>
    static Dictionary<string, List<string>> SqliteSchema(DbTransaction snapshot)
    {
        var columns = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        using var command = PlatformDatabase.Command(snapshot, """
            SELECT t.name, c.name FROM sqlite_schema t, pragma_table_info(t.name) c
            WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite_%' ORDER BY t.name, c.cid
            """);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var table = reader.GetString(0);
            if (!columns.TryGetValue(table, out var list)) columns[table] = list = [];
            list.Add(reader.GetString(1));
        }
        return columns;
    }

    /// <summary>Both at this Stratus's schema, the two hold the same tables and columns; where they
    /// do not (a table added to stratus.db by hand, or to one dialect's migrations only), a copy
    /// would leave rows behind, so none is made.</summary>
    static void RequireSameTables(PlatformDatabase source, PlatformDatabase target, Dictionary<string, List<string>> sqlite, List<Table> postgres)
    {
        var inSource = sqlite.SelectMany(t => t.Value.Select(c => $"{t.Key}.{c}")).ToHashSet(StringComparer.Ordinal);
        var inTarget = postgres.SelectMany(t => t.Columns.Select(c => $"{t.Name}.{c.Name}")).ToHashSet(StringComparer.Ordinal);
        var onlySource = inSource.Except(inTarget).Order(StringComparer.Ordinal).ToList();
        var onlyTarget = inTarget.Except(inSource).Order(StringComparer.Ordinal).ToList();
        if (onlySource.Count == 0 && onlyTarget.Count == 0) return;
        throw new TrustUserException($"{source.Name} and {target.Name} do not hold the same tables at the same schema version " +
            $"({(onlySource.Count > 0 ? $"only in {PlatformDatabase.FileName}: {string.Join(", ", onlySource)}" : "")}" +
            $"{(onlySource.Count > 0 && onlyTarget.Count > 0 ? "; " : "")}{(onlyTarget.Count > 0 ? $"only in PostgreSQL: {string.Join(", ", onlyTarget)}" : "")}), " +
            "so a copy would leave rows behind; nothing was copied");
    }

    /// <summary>Refuses a target holding any row: copied rows would clash with its keys and audit
    /// chain, and merging two deployments' logs is no copy.</summary>
    static void RequireEmpty(PlatformDatabase target, DbTransaction transaction, List<Table> tables)
    {
        var held = new List<string>();
        foreach (var table in tables)
        {
            using var count = PlatformDatabase.Command(transaction, $"SELECT count(*) FROM {Quoted(table.Name)}");
            var rows = Convert.ToInt64(count.ExecuteScalar(), CultureInfo.InvariantCulture);
            if (rows > 0) held.Add($"{rows.ToString(CultureInfo.InvariantCulture)} in {table.Name}");
        }
        if (held.Count > 0)
            throw new TrustUserException($"{target.Name} already holds Stratus rows ({string.Join(", ", held)}); the copy goes into an empty database only: " +
                "create a new one (createdb, or CREATE DATABASE) and give --to that, or drop this one's tables if its rows are to go");
    }

    /// <summary>One table's rows, read in the source's snapshot and written with COPY, which
    /// fires the same triggers as INSERT: the audit log's append-only triggers (on UPDATE, DELETE
    /// and TRUNCATE) stay on and are not in its way, since the rows go in as they are, with the
    /// sequence numbers and hashes of their chain.</summary>
    static long CopyTable(DbTransaction snapshot, DbTransaction transaction, Table table, PlatformDatabase source, PlatformDatabase target, CancellationToken cancellationToken)
    {
        // Here and at each row: a backend between statements has nothing for the server to cancel.
        cancellationToken.ThrowIfCancellationRequested();
        var columns = string.Join(", ", table.Columns.Select(c => Quoted(c.Name)));
        var types = table.Columns.Select(c => TypeOf(table.Name, c)).ToArray();
        // The rowid names a row to correct in the sqlite3 shell, whatever its columns hold.
        using var read = PlatformDatabase.Command(snapshot, $"SELECT rowid, {columns} FROM {Quoted(table.Name)}");
        using var reader = read.ExecuteReader();
        try
        {
            using var import = ((NpgsqlConnection)transaction.Connection!).BeginBinaryImport($"COPY {Quoted(table.Name)} ({columns}) FROM STDIN (FORMAT BINARY)");
            // A table's COPY takes as long as its rows (a million audit entries about ten seconds
            // here), and the server answers its end only once it has taken them all and checked
            // their foreign keys: the command timeout, which bounds a request's statement, would
            // cancel it, as it would a migration (PostgresDialect.Change). A wait for another
            // session's lock is still bounded by the lock timeout the write transaction set, a
            // server gone silent by TCP keepalive (PostgresDialect), and the operator's patience
            // by the cancellation (CancelOnRequest).
            import.Timeout = TimeSpan.Zero;
            while (reader.Read())
            {
                cancellationToken.ThrowIfCancellationRequested();
                import.StartRow();
                for (var i = 0; i < types.Length; i++)
                {
                    var column = i + 1;
                    if (reader.IsDBNull(column))
                    {
                        import.WriteNull();
                        continue;
                    }
                    // SQLite's reader would hand over a value whose type is not the column's
                    // converted ('sixty' as 0, 60.5 as 60, bytes not UTF-8 as U+FFFD), which a copy
                    // that keeps the keys and the audit chain as they were must not do unseen.
                    var held = reader.GetFieldType(column);
                    if (types[i] == NpgsqlDbType.Bigint && held == typeof(long)) import.Write(reader.GetInt64(column), NpgsqlDbType.Bigint);
                    else if (types[i] == NpgsqlDbType.Bytea && held == typeof(byte[])) import.Write(reader.GetFieldValue<byte[]>(column), NpgsqlDbType.Bytea);
                    else if (types[i] == NpgsqlDbType.Text && held == typeof(string))
                    {
                        if (Text(reader, column, out var text) is { } unfit) throw Refused(unfit);
                        import.Write(text, NpgsqlDbType.Text);
                    }
                    else throw Refused($"{StorageClass(held)} where PostgreSQL's column is {(types[i] == NpgsqlDbType.Bigint ? "an integer" : types[i] == NpgsqlDbType.Bytea ? "bytea" : "text")}");

                    TrustUserException Refused(string why) => new(
                        $"{target.Name} cannot take {table.Name}.{table.Columns[i].Name} of the row whose rowid is {reader.GetInt64(0).ToString(CultureInfo.InvariantCulture)} in {source.Name}: " +
                        $"it holds {why}; nothing was copied: correct that row in {PlatformDatabase.FileName} and copy again");
                }
            }
            return checked((long)import.Complete());
        }
        // Class 23: a row the target's constraints refuse (an alias of a version not there, which
        // the sqlite3 shell, with foreign keys off unless asked, lets someone with the file leave).
        catch (PostgresException e) when (e.SqlState.StartsWith("23", StringComparison.Ordinal))
        {
            throw new TrustUserException($"{target.Name} refuses a row of {table.Name} in {source.Name} ({e.SqlState}: {e.MessageText.TrimEnd('.')}{(e.Detail is { } detail ? $": {detail.TrimEnd('.')}" : "")}); " +
                $"nothing was copied: correct that row in {PlatformDatabase.FileName} and copy again", e);
        }
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Why a TEXT value cannot go into PostgreSQL's text as it is, null where it can;
    /// <paramref name="text"/> is decoded from SQLite's own bytes, as its reader's string has bytes
    /// that are not UTF-8 replaced.</summary>
    static string? Text(DbDataReader reader, int column, out string text)
    {
        try
        {
            text = StrictUtf8.GetString(reader.GetFieldValue<byte[]>(column));
        }
        catch (DecoderFallbackException)
        {
            text = "";
            return "bytes that are not UTF-8, which PostgreSQL's text cannot hold";
        }
        return text.Contains('\0', StringComparison.Ordinal) ? "a NUL character, which PostgreSQL's text cannot hold" : null;
    }

    /// <summary>SQLite's storage class of a value, as its reader types it.</summary>
    static string StorageClass(Type held) =>
        held == typeof(long) ? "an integer" : held == typeof(double) ? "a real number" : held == typeof(byte[]) ? "a blob" : "text";

    /// <summary>The types the schema's columns have; one a migration adds beyond them is the copy's to learn.</summary>
    static NpgsqlDbType TypeOf(string table, (string Name, string Type) column) => column.Type switch
    {
        "bigint" => NpgsqlDbType.Bigint,
        "bytea" => NpgsqlDbType.Bytea,
        "text" => NpgsqlDbType.Text,
        _ => throw new InvalidOperationException($"{table}.{column.Name} is {column.Type}, which DatabaseCopy does not copy yet"),
    };

    static string Quoted(string name) => $"\"{name.Replace("\"", "\"\"", StringComparison.Ordinal)}\"";
}
