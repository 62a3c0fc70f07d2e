// What the platform database does differently on PostgreSQL, which a cluster's servers, CLIs and
// jobs share (SQLite on NFS is not safe). The tables are Stratus's in the connection's schema, at a
// version kept in stratus_schema; a write takes a transaction-scoped advisory lock, as SQLite's
// IMMEDIATE transaction takes its file's lock, so read-then-write stays atomic across processes.
// The connection is named by STRATUS_DATABASE (or `database copy --to`), as a libpq URI or Npgsql's
// keywords; a password comes from there, PGPASSWORD or ~/.pgpass (Npgsql reads both) and is never
// shown. Messages about the value name the setting it came from, so the operator fixes that one.
using System.Data.Common;
using System.Globalization;
using System.Net.Sockets;
using Npgsql;
using Stratus.Safety;

namespace Stratus.Platform;

sealed class PostgresDialect : DatabaseDialect
{
    /// <summary>Migrations[v] takes the schema from version v to v + 1, as SqliteDialect.Migrations
    /// does for SQLite; the first is the whole schema as SQLite's migrations leave it. A change to
    /// the schema adds a migration here and one to SqliteDialect.Migrations: the stores run the
    /// same SQL on both. Text is TEXT COLLATE "C", compared and sorted by bytes as SQLite's is,
    /// whatever locale the database was created with; times stay the fixed-width UTC text the
    /// audit hash covers (PlatformDatabase.FormatTime), not timestamptz.</summary>
    static readonly string[] Migrations =
    [
        """
        CREATE TABLE api_keys (
            id TEXT COLLATE "C" PRIMARY KEY,
            name TEXT COLLATE "C" NOT NULL,
            salt BYTEA NOT NULL,
            hash BYTEA NOT NULL,
            scopes BIGINT NOT NULL,
            rpm BIGINT NOT NULL,
            tpm BIGINT NOT NULL,
            created_at TEXT COLLATE "C" NOT NULL,
            revoked_at TEXT COLLATE "C",
            expires_at TEXT COLLATE "C",
            previous_salt BYTEA,
            previous_hash BYTEA,
            previous_expires_at TEXT COLLATE "C"
        );
        CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

        -- A blocklist's name is one whatever its case, as SQLite's COLLATE NOCASE key makes it.
        CREATE TABLE blocklists (
            name TEXT COLLATE "C" PRIMARY KEY,
            definition TEXT NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL
        );
        CREATE UNIQUE INDEX blocklists_name_any_case ON blocklists (lower(name));

        CREATE TABLE safety_policies (
            deployment TEXT COLLATE "C" PRIMARY KEY,
            policy TEXT NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL
        );

        CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY,
            time TEXT COLLATE "C" NOT NULL,
            actor TEXT COLLATE "C" NOT NULL,
            action TEXT COLLATE "C" NOT NULL,
            details TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        -- Append-only for anyone using the application; the database's owner can drop these,
        -- which is what the hash chain is for.
        CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
        CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
            FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
        CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

        CREATE TABLE usage_daily (
            key_id TEXT COLLATE "C" NOT NULL,
            day TEXT COLLATE "C" NOT NULL,
            model TEXT COLLATE "C" NOT NULL,
            requests BIGINT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            PRIMARY KEY (key_id, day, model)
        );

        CREATE TABLE registered_models (
            name TEXT COLLATE "C" PRIMARY KEY,
            last_version BIGINT NOT NULL
        );
        CREATE TABLE model_versions (
            name TEXT COLLATE "C" NOT NULL REFERENCES registered_models (name),
            version BIGINT NOT NULL,
            checkpoint TEXT COLLATE "C" NOT NULL,
            manifest_sha256 TEXT NOT NULL,
            architecture TEXT NOT NULL,
            parameters BIGINT NOT NULL,
            context_length BIGINT NOT NULL,
            tokenizer TEXT NOT NULL,
            description TEXT,
            created_at TEXT COLLATE "C" NOT NULL,
            created_by TEXT NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE FUNCTION model_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'model versions are immutable'; END $$;
        CREATE TRIGGER model_versions_immutable BEFORE UPDATE ON model_versions
            FOR EACH ROW EXECUTE FUNCTION model_versions_immutable();
        CREATE TABLE model_aliases (
            name TEXT COLLATE "C" NOT NULL,
            alias TEXT COLLATE "C" NOT NULL,
            version BIGINT NOT NULL,
            updated_at TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (name, alias),
            FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
        );

        CREATE TABLE jobs (
            id TEXT COLLATE "C" PRIMARY KEY,
            kind TEXT NOT NULL,
            arguments TEXT NOT NULL,
            out_dir TEXT COLLATE "C" NOT NULL,
            executor TEXT NOT NULL,
            executor_ref TEXT,
            state TEXT COLLATE "C" NOT NULL,
            reason TEXT,
            pid BIGINT,
            pid_start BIGINT,
            exit_code BIGINT,
            submitted_at TEXT COLLATE "C" NOT NULL,
            started_at TEXT COLLATE "C",
            ended_at TEXT COLLATE "C",
            cancel_requested_at TEXT COLLATE "C",
            submitted_by TEXT NOT NULL,
            log_file TEXT NOT NULL
        );
        CREATE INDEX jobs_submitted_at ON jobs (submitted_at);
        """,
        Jobs.SqlJobStore.SlurmMigration,
        ModelRegistry.ParentMigration,
        Jobs.SqlJobStore.CancelRequestedByMigration,
    ];
    static int SchemaVersion => Migrations.Length;

    /// <summary>The table that keeps the schema's version, as SQLite's PRAGMA user_version does.</summary>
    const string VersionTable = "stratus_schema";

    /// <summary>The advisory lock every write takes ("Stratus!" in ASCII): one per database, so
    /// deployments in other databases of the server do not wait for each other.</summary>
    const long WriteLock = 0x5374726174757321;

    /// <summary>What Npgsql is given: <see cref="directConnectionString"/> until a pooler in front
    /// of the server refuses its startup options, <see cref="pooledConnectionString"/> from then on.</summary>
    volatile string connectionString;
    readonly string directConnectionString;
    readonly string pooledConnectionString;
    readonly long lockTimeoutMilliseconds;

    /// <summary>The setting the value came from, as messages name it: $STRATUS_DATABASE, or an
    /// option such as --to.</summary>
    readonly string setting;

    PostgresDialect(NpgsqlConnectionStringBuilder builder, string setting, TimeSpan lockTimeout)
    {
        this.setting = setting;
        // Every statement waits for a lock (a row, a table another session locked, the write
        // lock) no longer than the lock timeout, by the server's lock_timeout for the whole
        // session; and no connect or command waits on a server that answers nothing (hung, or
        // cut off behind a firewall) past a second more, where Npgsql's defaults would hold the
        // request for 15 s or 30 s. A Timeout or Command Timeout of the operator's own (one other
        // than Npgsql's default: its builder tells no value given from a default) is kept, as
        // are their Options.
        var bound = (int)lockTimeout.TotalSeconds + 1;
        if (builder.Timeout == NpgsqlDefaults.Timeout) builder.Timeout = bound;
        if (builder.CommandTimeout == NpgsqlDefaults.CommandTimeout) builder.CommandTimeout = bound;
        // What no command timeout bounds (a migration, a copy's COPY: minutes on a large table)
        // waits on the socket for as long as the server works. A server that died or was cut off
        // without closing the connection would leave that wait for ever, Linux's keepalive idle
        // being two hours: TCP keepalive probes after 30 s of silence, every 10 s, end it once the
        // system's probes (9 on Linux) go unanswered, in about two minutes. An operator's own
        // Tcp Keepalive settings are kept. A Unix socket (a host that is a folder) has no TCP to
        // probe, and refuses the options: the connection would fail, not a network cut it off.
        var hosts = Hosts(builder.Host!, builder.Port);
        if (!builder.TcpKeepAlive && builder.TcpKeepAliveTime == 0 && !hosts.Any(h => h.Host.StartsWith('/')))
        {
            builder.TcpKeepAliveTime = KeepAliveIdleSeconds;
            builder.TcpKeepAliveInterval = KeepAliveIntervalSeconds;
        }
        // PgBouncer (in transaction mode, the pooler many deployments put in front) refuses any
        // startup parameter options and keeps no session state, so the write lock sets its own
        // lock_timeout in its transaction (BeginWriteAsync) and the session's is only where the
        // server takes it: a connection refused for it is made again without it (ConnectAsync),
        // its statements then bounded by the command timeout.
        lockTimeoutMilliseconds = (long)lockTimeout.TotalMilliseconds;
        pooledConnectionString = builder.ConnectionString;
        builder.Options = $"{builder.Options} -c lock_timeout={lockTimeoutMilliseconds.ToString(CultureInfo.InvariantCulture)}".TrimStart();
        connectionString = directConnectionString = builder.ConnectionString;
        Name = $"the PostgreSQL database {builder.Database} on {string.Join(", ", hosts.Select(Where))}" +
            (builder.Username is { } user ? $" as {user}" : "");
        // libpq takes several hosts as a list, and their ports as a list of as many.
        var ports = hosts.Select(h => h.Port).Distinct().Count() == 1 ? [hosts[0].Port] : hosts.Select(h => h.Port);
        ToolOptions = $"--host={Quoted(string.Join(',', hosts.Select(h => h.Host)))} --port={string.Join(',', ports.Select(p => p.ToString(CultureInfo.InvariantCulture)))}" +
            (builder.Username is { } username ? $" --username={Quoted(username)}" : "") + $" --dbname={Quoted(builder.Database!)}";
    }

    /// <summary>Npgsql's Host (h1,h2, each maybe host:port or [IPv6]:port, as SetHosts writes a
    /// URI's) as hosts with their ports.</summary>
    static List<(string Host, int Port)> Hosts(string hostList, int port) => hostList.Split(',').Select(host =>
        host.StartsWith('[') && host.IndexOf("]:", StringComparison.Ordinal) is var close and > 0
            ? (host[1..close], int.Parse(host[(close + 2)..], CultureInfo.InvariantCulture))
        : !host.StartsWith('/') && host.Count(c => c == ':') == 1 && int.TryParse(host[(host.IndexOf(':') + 1)..], CultureInfo.InvariantCulture, out var own)
            ? (host[..host.IndexOf(':')], own)
        : (host, port)).ToList();

    /// <summary>A host with its port as messages name it: a socket folder's, an IPv6 address's in brackets.</summary>
    static string Where((string Host, int Port) at) =>
        at.Host.StartsWith('/') ? $"{at.Host} (port {at.Port})"
        : at.Host.Contains(':', StringComparison.Ordinal) ? $"[{at.Host}]:{at.Port}"
        : $"{at.Host}:{at.Port}";

    /// <summary>What Npgsql is given.</summary>
    internal string ConnectionString => connectionString;

    public override string Name { get; }

    /// <summary>libpq's options naming this database, for pg_dump and pg_restore to reach the
    /// database Stratus uses rather than their default (the local socket, the OS user's name);
    /// never the password, which they read from PGPASSWORD or ~/.pgpass as Stratus does.</summary>
    public string ToolOptions { get; }

    /// <summary><paramref name="value"/> as one word of a POSIX shell's command line.</summary>
    static string Quoted(string value) =>
        value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or '/' or ':' or ',') ? value : $"'{value.Replace("'", "'\\''", StringComparison.Ordinal)}'";

    static readonly NpgsqlConnectionStringBuilder NpgsqlDefaults = new();

    internal const int KeepAliveIdleSeconds = 30, KeepAliveIntervalSeconds = 10;

    /// <summary>The dialect for <paramref name="value"/>, a PostgreSQL URI
    /// (postgresql://user@host:5432/db?sslmode=require, or postgres://) or Npgsql's keywords
    /// (Host=...;Database=...).</summary>
    /// <param name="setting">Where the value came from, as messages name it
    /// (<see cref="PlatformDatabase.VariableSetting"/>, or an option such as --to).</param>
    /// <exception cref="TrustUserException">A value that names no PostgreSQL database, in one line
    /// that names <paramref name="setting"/>, shows no password and gives an example of a good value.</exception>
    public static PostgresDialect Parse(string value, string setting, TimeSpan lockTimeout)
    {
        NpgsqlConnectionStringBuilder builder;
        try
        {
            // Trimmed: a value read from a file or a secret often ends in a newline, which would
            // otherwise end the database's name.
            value = value.Trim();
            builder = value.Contains("://", StringComparison.Ordinal) ? FromUri(value) : new NpgsqlConnectionStringBuilder(value);
        }
        // Npgsql's keywords, a typed one given what it cannot take: "Couldn't set port", and no more.
        catch (ArgumentException e) when (e.ParamName is "port" && e.Message.StartsWith("Couldn't set", StringComparison.Ordinal))
        {
            throw Bad(setting, "its Port is not a port from 1 to 65535; hosts on ports of their own are given in Host, as Host=db1.example.com:5432,db2.example.com:5433");
        }
        catch (ArgumentException e) when (e.ParamName is { } keyword && e.Message.StartsWith("Couldn't set", StringComparison.Ordinal))
        {
            throw Bad(setting, $"its {keyword} is not a value Npgsql takes for it");
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            throw Bad(setting, e.Message.TrimEnd('.'));
        }
        if (string.IsNullOrEmpty(builder.Host)) throw Bad(setting, "it names no host");
        if (string.IsNullOrEmpty(builder.Database)) throw Bad(setting, "it names no database");
        return new PostgresDialect(builder, setting, lockTimeout);
    }

    /// <summary>Only the variable has SQLite to fall back on where it is unset; an option names
    /// PostgreSQL's database alone.</summary>
    static TrustUserException Bad(string setting, string why) =>
        new($"{setting} is not a PostgreSQL database to use ({why}); give a URI such as postgresql://stratus@db.example.com:5432/stratus?sslmode=require, " +
            $"or keywords such as Host=db.example.com;Database=stratus;Username=stratus{(setting == PlatformDatabase.VariableSetting ? " (unset it for SQLite in the data directory)" : "")}");

    /// <summary>libpq's URI form: postgresql://[user[:password]@][host][:port][,host[:port]...][/database][?name=value&amp;...],
    /// its query's names being libpq's (sslmode, host for a socket folder, ...) or Npgsql's keywords.
    /// Read here rather than by System.Uri, which takes neither several hosts (a primary and its
    /// standbys, which Npgsql tries in turn as libpq does) nor gives an IPv6 host without its brackets.</summary>
    static NpgsqlConnectionStringBuilder FromUri(string value)
    {
        var separator = value.IndexOf("://", StringComparison.Ordinal);
        var scheme = value[..separator].ToLowerInvariant();
        if (scheme is not ("postgresql" or "postgres"))
            throw new FormatException($"its scheme is {scheme}://, not postgresql:// or postgres://");
        var rest = value[(separator + 3)..];
        var question = rest.IndexOf('?', StringComparison.Ordinal);
        var query = question < 0 ? "" : rest[(question + 1)..];
        if (question >= 0) rest = rest[..question];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var authority = slash < 0 ? rest : rest[..slash];
        var builder = new NpgsqlConnectionStringBuilder();
        var at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            var userInfo = authority[..at];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Decoded(colon < 0 ? userInfo : userInfo[..colon]);
            if (colon >= 0) builder.Password = Decoded(userInfo[(colon + 1)..]);
            authority = authority[(at + 1)..];
        }
        if (authority.Length > 0) SetHosts(builder, authority);
        var database = slash < 0 ? "" : Decoded(rest[(slash + 1)..]);
        if (database.Length > 0) builder.Database = database;
        string? ports = null;
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var name = Decoded(equals < 0 ? pair : pair[..equals]);
            var setting = equals < 0 ? "" : Decoded(pair[(equals + 1)..]);
            // Once the hosts are all known (a host= may follow it), as libpq pairs them.
            if (name == "port")
            {
                ports = setting;
                continue;
            }
            try
            {
                builder[LibpqKeywords.GetValueOrDefault(name, name)] = name == "sslmode" ? setting.Replace("-", "", StringComparison.Ordinal) : setting;
            }
            // Npgsql's "Couldn't set timeout" names neither the URI's name nor the value. No
            // password is shown: Npgsql takes any text for one.
            catch (ArgumentException e) when (e.ParamName is not null)
            {
                throw new FormatException($"its {name}={setting} is not a value Npgsql takes for {name}", e);
            }
        }
        if (ports is not null) SetPorts(builder, ports);
        return builder;
    }

    /// <summary>libpq's port parameter: one port for every host, or a list of as many as there are
    /// hosts, each for its host.</summary>
    static void SetPorts(NpgsqlConnectionStringBuilder builder, string list)
    {
        var ports = list.Split(',').Select(port =>
            int.TryParse(port.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number is >= 1 and <= 65535 ? number
            : throw new FormatException($"its port={list} is not a port from 1 to 65535, nor a list of them with one for each host")).ToList();
        if (ports.Count == 1)
        {
            builder.Port = ports[0];
            return;
        }
        var hosts = string.IsNullOrEmpty(builder.Host) ? [] : Hosts(builder.Host, builder.Port);
        if (hosts.Count != ports.Count)
            throw new FormatException($"its port={list} gives {ports.Count} ports for {hosts.Count} host{(hosts.Count == 1 ? "" : "s")}; give one port for all, or one for each host");
        builder.Host = string.Join(',', hosts.Zip(ports, (at, port) => $"{(at.Host.Contains(':', StringComparison.Ordinal) ? $"[{at.Host}]" : at.Host)}:{port}"));
    }

    /// <summary><paramref name="part"/> of a URI percent-decoded, refused as libpq refuses it where a
    /// % is not two hex digits (never shown: it may be the password).</summary>
    static string Decoded(string part)
    {
        for (var i = part.IndexOf('%', StringComparison.Ordinal); i >= 0; i = part.IndexOf('%', i + 1))
            if (i + 2 >= part.Length || !char.IsAsciiHexDigit(part[i + 1]) || !char.IsAsciiHexDigit(part[i + 2]))
                throw new FormatException("a % in it is not followed by two hex digits; write a % itself as %25");
        return Uri.UnescapeDataString(part);
    }

    /// <summary>The URI's hosts, each host, [IPv6 address] or either with a :port, as Npgsql's Host
    /// (h1,h2) and Port; hosts on ports of their own as Npgsql's h1:5432,h2:5433.</summary>
    static void SetHosts(NpgsqlConnectionStringBuilder builder, string authority)
    {
        var hosts = authority.Split(',').Select(spec =>
        {
            var (host, port) = spec.StartsWith('[') && spec.IndexOf(']', StringComparison.Ordinal) is var close and > 0
                ? (spec[1..close], spec[(close + 1)..])
                : spec.IndexOf(':', StringComparison.Ordinal) is var colon and >= 0 ? (spec[..colon], spec[colon..]) : (spec, "");
            if (host.Length == 0) throw new FormatException($"its host list {authority} has an empty host");
            if (port.Length == 0) return (Host: Decoded(host), Port: (int?)null);
            if (!port.StartsWith(':') || !int.TryParse(port[1..], System.Globalization.NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
                throw new FormatException($"its host {spec} has no port from 1 to 65535 after the host");
            return (Host: Decoded(host), Port: (int?)number);
        }).ToList();
        var ports = hosts.Select(h => h.Port).Distinct().ToList();
        if (ports.Count == 1)
        {
            builder.Host = string.Join(',', hosts.Select(h => h.Host));
            if (ports[0] is { } port) builder.Port = port;
        }
        else
        {
            var defaultPort = builder.Port;
            builder.Host = string.Join(',', hosts.Select(h => $"{(h.Host.Contains(':', StringComparison.Ordinal) ? $"[{h.Host}]" : h.Host)}:{h.Port ?? defaultPort}"));
        }
    }

    /// <summary>libpq's names for what Npgsql names otherwise (sslmode's values lose their dash:
    /// verify-full is Npgsql's VerifyFull).</summary>
    static readonly Dictionary<string, string> LibpqKeywords = new(StringComparer.Ordinal)
    {
        ["sslmode"] = "SSL Mode",
        ["sslrootcert"] = "Root Certificate",
        ["sslcert"] = "SSL Certificate",
        ["sslkey"] = "SSL Key",
        ["connect_timeout"] = "Timeout",
        ["application_name"] = "Application Name",
        ["target_session_attrs"] = "Target Session Attributes",
        ["user"] = "Username",
        ["dbname"] = "Database",
    };

    public override async ValueTask<DbConnection> ConnectAsync(bool synchronously, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(connectionString);
        try
        {
            if (synchronously) connection.Open();
            else await connection.OpenAsync(cancellationToken);
            return connection;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.ProtocolViolation &&
            e.MessageText == "unsupported startup parameter: options" && connectionString == directConnectionString)
        {
            connection.Dispose();
            connectionString = pooledConnectionString;
            return await ConnectAsync(synchronously, cancellationToken);
        }
        catch (NpgsqlException e) when (e is not PostgresException && Describe(e) is null)
        {
            // Npgsql's own refusals before the server is asked anything: no password found (none
            // in the value, PGPASSWORD or ~/.pgpass) for a server that wants one, or an SSL mode
            // the server or this machine cannot meet. The operator's to fix, as a wrong password is.
            connection.Dispose();
            throw new PlatformStorageException($"cannot connect to {Name} ({e.Message.TrimEnd('.')}); check {setting}'s user and sslmode, " +
                "and give the password in it, PGPASSWORD or ~/.pgpass (0600, host:port:database:user:password)", e);
        }
        // A file the connection reads before it asks the server anything, where it is missing or
        // refused: the passfile (Npgsql throws where libpq would pass over a missing one), a client
        // certificate or key, a root certificate. .NET's words name the path, not the setting.
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            connection.Dispose();
            var settings = new NpgsqlConnectionStringBuilder(connectionString);
            var named = new (string Setting, string? File)[]
                {
                    ("passfile", settings.Passfile ?? Environment.GetEnvironmentVariable("PGPASSFILE")), ("sslcert", settings.SslCertificate),
                    ("sslkey", settings.SslKey), ("sslrootcert", settings.RootCertificate),
                }
                .FirstOrDefault(file => !string.IsNullOrEmpty(file.File) && e.Message.Contains(file.File, StringComparison.Ordinal)).Setting;
            throw new PlatformStorageException($"cannot connect to {Name}: cannot read the file {(named is null ? $"{setting} names" : $"its {named} names")} " +
                $"({e.Message.TrimEnd('.')}); make {named ?? "the setting"} in {setting} name a file this user may read, or leave it out", e);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>BEGIN, then the advisory lock, waiting no longer than the lock timeout (55P03 after
    /// it): what SQLite's BEGIN IMMEDIATE does with its busy timeout. The timeout is set for the
    /// transaction in the lock's own statement (CASE evaluates its condition first), so it holds
    /// behind a transaction pooler too, at no round trip more.</summary>
    public override async ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, bool synchronously, CancellationToken cancellationToken)
    {
        var npgsql = (NpgsqlConnection)connection;
        var transaction = synchronously ? npgsql.BeginTransaction() : await npgsql.BeginTransactionAsync(cancellationToken);
        try
        {
            using var command = PlatformDatabase.Command(transaction,
                $"SELECT CASE WHEN set_config('lock_timeout', '{lockTimeoutMilliseconds.ToString(CultureInfo.InvariantCulture)}', true) IS NOT NULL " +
                $"THEN pg_advisory_xact_lock({WriteLock.ToString(CultureInfo.InvariantCulture)}) END");
            await PlatformDatabase.ExecuteAsync(command, synchronously, cancellationToken);
            return transaction;
        }
        catch
        {
            transaction.Dispose();
            throw;
        }
    }

    /// <summary>Under the write lock, so of servers starting at once one migrates and the others
    /// find it done; PostgreSQL's DDL is transactional, so a migration that fails leaves nothing.</summary>
    public override void Migrate(DbConnection connection)
    {
        using var transaction = BeginWrite(connection);
        var tables = new List<string>();
        using (var command = PlatformDatabase.Command(transaction,
                   "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name"))
        using (var reader = command.ExecuteReader())
            while (reader.Read()) tables.Add(reader.GetString(0));
        var version = 0;
        if (tables.Count > 0)
        {
            if (!tables.Contains(VersionTable) || !tables.Contains("api_keys"))
            {
                const int Named = 5;
                var named = string.Join(", ", tables.Take(Named)) + (tables.Count > Named ? $" and {tables.Count - Named} more" : "");
                throw new TrustUserException($"{Name} is not a Stratus database (it holds the tables {named}), and Stratus does not add its own to another application's; " +
                    $"give {setting} a database of Stratus's own (an empty one to start)");
            }
            using var read = PlatformDatabase.Command(transaction, $"SELECT version FROM {VersionTable}");
            version = Convert.ToInt32(read.ExecuteScalar(), CultureInfo.InvariantCulture);
        }
        if (version > SchemaVersion)
            throw new TrustUserException($"{Name} has schema version {version}; this Stratus understands up to {SchemaVersion}. Upgrade Stratus.");
        if (version == SchemaVersion) return;
        if (version == 0) Change(transaction, $"CREATE TABLE {VersionTable} (version BIGINT NOT NULL); INSERT INTO {VersionTable} VALUES (0);");
        for (; version < SchemaVersion; version++) Change(transaction, Migrations[version]);
        Change(transaction, $"UPDATE {VersionTable} SET version = {SchemaVersion};");
        transaction.Commit();
    }

    /// <summary>Runs a migration's statements without the command timeout that bounds a request's
    /// (the lock timeout and a second): a migration's work grows with the data, and one that
    /// rewrites a table takes seconds a million rows (measured here: 8.9 s to add a column with a
    /// volatile default to an audit_log of 2 million entries, 7.6 s to change a column's type,
    /// 1.6 s to index one), which the timeout would cancel, failing the first start of a new
    /// version. Its wait for another session's lock is still bounded by the lock timeout that
    /// BeginWrite set for the transaction.</summary>
    static void Change(DbTransaction transaction, string sql)
    {
        using var command = PlatformDatabase.Command(transaction, sql);
        command.CommandTimeout = 0;
        command.ExecuteNonQuery();
    }

    public override bool HoldsStratus(DbConnection connection)
    {
        using var command = PlatformDatabase.Command(connection, $"SELECT to_regclass('{VersionTable}') IS NOT NULL");
        return command.ExecuteScalar() is true;
    }

    public override bool IsUniqueViolation(DbException e) => e is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    /// <summary>A parameter takes the database's collation, and in a Unicode locale (C.UTF-8,
    /// en_US.UTF-8) lower() of it folds É too, while lower() of a COLLATE "C" column folds ASCII
    /// alone: collated as the column is, the two fold alike (a path under /srv/Émile matches itself).</summary>
    public override string SameIgnoringCase(string column, string parameter) => $"lower({column}) = lower({parameter} COLLATE \"C\")";

    /// <summary>The unique index on lower(name) that the schema gives such a key.</summary>
    public override string CaseInsensitiveKey(string column) => $"(lower({column}))";

    public override string? Describe(DbException e)
    {
        var said = e.Message.TrimEnd('.');
        if (e is PostgresException postgres)
        {
            said = $"{postgres.SqlState}: {postgres.MessageText.TrimEnd('.')}";
            return postgres.SqlState switch
            {
                PostgresErrorCodes.InvalidPassword or PostgresErrorCodes.InvalidAuthorizationSpecification =>
                    $"cannot log in to {Name} ({said}); check the user and password in {setting}, PGPASSWORD or ~/.pgpass",
                PostgresErrorCodes.InvalidCatalogName =>
                    $"{Name} does not exist ({said}); create it (createdb, or CREATE DATABASE) or name another in {setting}",
                PostgresErrorCodes.InsufficientPrivilege =>
                    $"{Name} refuses this user ({said}); grant it the database's tables, or connect as their owner",
                PostgresErrorCodes.LockNotAvailable =>
                    $"{Name} is locked by another process ({said}); try again once that process is done",
                PostgresErrorCodes.DiskFull => $"the disk holding {Name} is full ({said})",
                PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.UndefinedColumn =>
                    $"{Name} lacks part of the Stratus schema ({said}): it was changed outside Stratus; restore it from a backup (pg_restore)",
                PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.TooManyConnections =>
                    $"the PostgreSQL server of {Name} is not taking connections ({said}); try again once it is",
                PostgresErrorCodes.QueryCanceled =>
                    $"{Name} cancelled the statement ({said}): it ran past a statement timeout, or an administrator cancelled it; try again",
                PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
                    $"{Name} gave up a transaction that clashed with another session's ({said}); try again",
                // Class 08: the connection failed or was refused while it was being made or used.
                _ when postgres.SqlState.StartsWith("08", StringComparison.Ordinal) =>
                    $"lost the connection to the PostgreSQL server of {Name} ({said}); try again once it is reachable",
                _ => null,
            };
        }
        // Npgsql's own: the server cannot be reached (refused, no such host or socket) or did not
        // answer in time.
        return e is NpgsqlException && (e.InnerException is SocketException or IOException or TimeoutException || e.IsTransient)
            ? $"cannot reach the PostgreSQL server of {Name}, or it did not answer in time ({said}); is it running, and does it listen there?"
            : null;
    }
}
