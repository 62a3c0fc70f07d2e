// What holds on PostgreSQL beyond the stores' behaviour, which the *OnPostgresTests run: the write
// lock reaches across processes (two handles with pools of their own append one chain, a held lock
// fails a write as "locked" within the timeout), the audit log refuses changes from plain SQL,
// a server that refuses the login, lacks the database or is down is one error naming host and
// database and never the password, another application's database and a newer Stratus's are
// refused, servers starting at once migrate once, and STRATUS_DATABASE's forms are read or
// refused in one line.
using System.Data.Common;
using System.Text.Json.Nodes;
using Npgsql;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public sealed class PostgresDatabaseTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IDisposable
{
    readonly string directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    PostgresCluster Cluster => postgres.Cluster;

    /// <summary>A second handle on the same schema with a pool of its own, as another process has.</summary>
    static string OtherProcess(string connection) => connection + ";Application Name=other-process";

    [Fact]
    public async Task Two_processes_appending_at_once_keep_one_valid_chain()
    {
        var connection = postgres.NewSchema();
        var first = PlatformStores.Open(PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(60)));
        var second = PlatformStores.Open(PlatformDatabase.Open(directory, OtherProcess(connection), TimeSpan.FromSeconds(60)));
        using var start = new Barrier(2);
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = new[] { first, second }.Select((stores, n) => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                for (var i = 0; i < 25; i++)
                    stores.Audit.AppendAsync($"process{n}", AuditActions.RequestFiltered, new JsonObject { ["i"] = i }).AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(errors);

        var result = await first.Audit.VerifyAsync();
        Assert.True(result.Valid, result.Problem);
        Assert.Equal(50, result.EntriesChecked);
        Assert.Equal(Enumerable.Range(1, 50).Select(i => (long)i), (await second.Audit.ReadAsync(new AuditQuery())).Select(e => e.Sequence));
    }

    [Theory]
    [InlineData("UPDATE audit_log SET actor = 'x' WHERE seq = 1")]
    [InlineData("DELETE FROM audit_log")]
    [InlineData("TRUNCATE audit_log")]
    public async Task The_audit_log_refuses_changes_made_in_plain_sql(string sql)
    {
        var platform = new TempPlatform(new TestDatabases(postgres));
        await platform.Stores.Audit.AppendAsync("alice", AuditActions.KeyCreated);
        var refused = Assert.ThrowsAny<DbException>(() => platform.Sql(sql));
        Assert.Contains("append-only", refused.Message);
        Assert.Equal(1, (await platform.Stores.Audit.VerifyAsync()).EntriesChecked);
        platform.Dispose();
    }

    /// <summary>A database created in a Unicode locale (what initdb gives a server whose machine
    /// runs in one, C.UTF-8 or en_US.UTF-8; the test cluster's own is C), and a data directory
    /// whose path has a capital beyond ASCII: lower() of a parameter then folds É, while lower()
    /// of the C-collated column folds only ASCII (as SQLite's does), so the check that another
    /// version still refers to a copy found none and the copy was removed under it.</summary>
    [Fact]
    public void A_copy_another_version_refers_to_is_kept_in_a_database_of_a_unicode_locale()
    {
        var database = "stratus_utf8_" + Guid.NewGuid().ToString("N")[..12];
        Cluster.Sql("postgres", $"CREATE DATABASE {database} LOCALE 'C.UTF-8' TEMPLATE template0");
        try
        {
            var data = Path.Combine(directory, "Émile");
            var registry = ModelRegistry.Open(PlatformDatabase.Open(data, Cluster.ConnectionString(database), null), new ManifestFolders());
            var run = Path.Combine(directory, "run");
            Directory.CreateDirectory(run);
            File.WriteAllText(Path.Combine(run, "manifest.json"), "{}");
            var copied = registry.Register(run, "shk", null, null, "t", copy: true);
            var sharing = registry.Register(copied.Checkpoint.Directory, "other", null, null, "t");

            registry.Delete("shk", 1, "t");

            Assert.True(File.Exists(Path.Combine(copied.Checkpoint.Directory, "manifest.json")));
            Assert.Null(registry.Check(sharing));
        }
        finally
        {
            Cluster.DropDatabase(database);
        }
    }

    [Fact]
    public async Task A_write_fails_as_locked_while_another_process_holds_the_lock_past_the_timeout()
    {
        var connection = postgres.NewSchema();
        var stores = PlatformStores.Open(PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(1)));
        // The other process: the same schema, holding the write lock in a transaction.
        var other = PlatformDatabase.Open(directory, OtherProcess(connection), null);
        using var holder = other.Dialect.Connect();
        using var held = other.Dialect.BeginWrite(holder);

        var error = await Assert.ThrowsAsync<PlatformStorageException>(() => stores.Audit.AppendAsync("alice", AuditActions.KeyCreated).AsTask());
        Assert.Contains("is locked by another process", error.Message);
        Assert.Contains(Cluster.Folder, error.Message);
        Assert.DoesNotContain(PostgresCluster.Password, error.Message);
        held.Rollback();
        await stores.Audit.AppendAsync("alice", AuditActions.KeyCreated);
    }

    /// <summary>Another session holding api_keys in ACCESS EXCLUSIVE mode, through plain SQL (as
    /// an administrator's ALTER TABLE or a stuck migration would), until disposed.</summary>
    static NpgsqlConnection LockApiKeys(string connection)
    {
        var holder = new NpgsqlConnection(OtherProcess(connection));
        holder.Open();
        using var command = new NpgsqlCommand("BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;", holder);
        command.ExecuteNonQuery();
        return holder;
    }

    [Fact]
    public async Task An_authentication_blocked_by_a_table_lock_fails_within_the_lock_timeout_as_the_storage_error()
    {
        var connection = postgres.NewSchema();
        var keys = PlatformStores.Open(PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(1))).KeyService();
        var created = await keys.CreateAsync("alice", ApiKeyScopes.Inference, RateLimits.Unlimited, "t");
        using (LockApiKeys(connection))
        {
            // Npgsql's own 30 s command timeout would pass this bound: the read waits for the lock
            // no longer than the lock timeout, as a write does.
            var error = await Assert.ThrowsAsync<PlatformStorageException>(() => keys.AuthenticateAsync(created.Secret).AsTask().WaitAsync(TimeSpan.FromSeconds(15)));
            Assert.Contains("is locked by another process (55P03:", error.Message);
        }
        Assert.True((await keys.AuthenticateAsync(created.Secret)).Succeeded);
    }

    [Fact]
    public async Task The_request_paths_calls_wait_for_the_server_without_holding_the_callers_thread()
    {
        var connection = postgres.NewSchema();
        var stores = PlatformStores.Open(PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(5)));
        var keys = stores.KeyService();
        var created = await keys.CreateAsync("alice", ApiKeyScopes.Inference, RateLimits.Unlimited, "t");
        // Both requests on one day, so that they add up in one row whenever the test runs.
        var at = new DateTimeOffset(2026, 3, 5, 23, 59, 59, TimeSpan.Zero);
        await stores.Usage.RecordAsync(created.Key.Id, "m", 1, 1, at);
        // Each call waits on a lock another session holds: one that ran synchronously would hold
        // this thread until the lock timeout and hand back a finished (failed) task.
        using (var holder = LockApiKeys(connection))
        {
            using (var lockUsage = new NpgsqlCommand("LOCK TABLE usage_daily IN ACCESS EXCLUSIVE MODE", holder)) lockUsage.ExecuteNonQuery();
            var other = PlatformDatabase.Open(directory, OtherProcess(connection), null);
            using var writer = other.Dialect.Connect();
            using var held = other.Dialect.BeginWrite(writer);

            var authenticated = keys.AuthenticateAsync(created.Secret);
            var recorded = stores.Usage.RecordAsync(created.Key.Id, "m", 2, 3, at);
            var appended = stores.Audit.AppendAsync("alice", AuditActions.RequestFiltered);
            Assert.Equal((false, false, false), (authenticated.IsCompleted, recorded.IsCompleted, appended.IsCompleted));

            held.Rollback();
            using var release = new NpgsqlCommand("COMMIT", holder);
            release.ExecuteNonQuery();
            Assert.True((await authenticated).Succeeded);
            await recorded;
            Assert.Equal("alice", (await appended).Actor);
        }
        var day = DateOnly.FromDateTime(at.UtcDateTime);
        var usage = Assert.Single(await stores.Usage.QueryAsync(UsageQuery.Days(null, day, day, null)));
        Assert.Equal((2L, 3L, 4L), (usage.Requests, usage.PromptTokens, usage.CompletionTokens));
    }

    [Theory]
    [InlineData("pg_cancel_backend", "cancelled the statement (57014:")]
    [InlineData("pg_terminate_backend", "is not taking connections (57P01:")]
    public async Task A_statement_cancelled_or_its_connection_ended_mid_use_is_the_storage_error_and_the_next_call_works(string function, string said)
    {
        var connection = postgres.NewSchema() + ";Application Name=stalled";
        var keys = PlatformStores.Open(PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(60))).KeyService();
        var created = await keys.CreateAsync("alice", ApiKeyScopes.Inference, RateLimits.Unlimited, "t");
        Task<AuthenticationResult> stalled;
        using (var holder = LockApiKeys(connection))
        {
            stalled = Task.Run(() => keys.AuthenticateAsync(created.Secret).AsTask());
            // The pooled connection waiting for the lock, ended from the holder's session.
            using var end = new NpgsqlCommand($"""
                SELECT {function}(pid) FROM pg_stat_activity
                WHERE application_name = 'stalled' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
                """, holder);
            for (var tries = 0; end.ExecuteScalar() is not true; tries++)
            {
                Assert.True(tries < 200, "the authentication never waited for the lock");
                await Task.Delay(50);
            }
            var error = await Assert.ThrowsAsync<PlatformStorageException>(() => stalled.WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains(said, error.Message);
        }
        Assert.True((await keys.AuthenticateAsync(created.Secret)).Succeeded);
    }

    [Fact]
    public async Task A_server_that_stopped_is_the_readiness_probes_problem_naming_the_database_and_none_once_it_answers_again()
    {
        // The cluster reached through a socket folder of the test's own, so that it can stop as its
        // clients see it stop (its socket gone, its sessions ended) and come back, for this test alone.
        var sockets = Directory.CreateDirectory(Path.Combine(directory, "sockets")).FullName;
        var socket = Path.Combine(sockets, $".s.PGSQL.{Cluster.Port}");
        var served = Path.Combine(Cluster.Folder, $".s.PGSQL.{Cluster.Port}");
        File.CreateSymbolicLink(socket, served);
        var connection = new NpgsqlConnectionStringBuilder(postgres.NewSchema()) { Host = sockets, ApplicationName = "probed" }.ConnectionString;
        var database = PlatformDatabase.Open(Path.Combine(directory, "data"), connection, TimeSpan.FromSeconds(2));
        Assert.Null(await database.ProblemAsync(default));

        File.Delete(socket);
        Cluster.Sql(postgres.Name, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'probed'");
        // The pooled connection found ended, then a new one refused.
        for (var probe = 0; probe < 2; probe++)
        {
            var problem = await database.ProblemAsync(default);
            Assert.NotNull(problem);
            Assert.Contains($"the PostgreSQL database {postgres.Name} on {sockets} (port {Cluster.Port})", problem.Message);
            Assert.DoesNotContain(PostgresCluster.Password, problem.Message);
        }

        File.CreateSymbolicLink(socket, served);
        Assert.Null(await database.ProblemAsync(default));
    }

    [Fact]
    public async Task A_migration_that_takes_longer_than_the_command_timeout_completes_on_a_first_start()
    {
        // A migration as slow as one rewriting a large audit log: creating api_keys takes 3 s, past
        // the 2 s that bound a request's statements under a 1 s lock timeout.
        var database = Cluster.CreateDatabase();
        try
        {
            Cluster.Sql(database, """
                CREATE FUNCTION slow_migration() RETURNS event_trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands() WHERE object_identity LIKE '%.api_keys') THEN PERFORM pg_sleep(3); END IF;
                END $$;
                CREATE EVENT TRIGGER slow_migration ON ddl_command_end EXECUTE FUNCTION slow_migration();
                """);
            var keys = PlatformStores.Open(PlatformDatabase.Open(directory, Cluster.ConnectionString(database), TimeSpan.FromSeconds(1))).KeyService();
            var created = await keys.CreateAsync("alice", ApiKeyScopes.Inference, RateLimits.Unlimited, "t");
            Assert.True((await keys.AuthenticateAsync(created.Secret)).Succeeded);
        }
        finally
        {
            Cluster.DropDatabase(database);
        }
    }

    [Fact]
    public void A_connection_waits_on_a_lock_or_a_silent_server_no_longer_than_the_lock_timeout_unless_told_otherwise()
    {
        var connection = postgres.NewSchema();
        var bounded = PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(3));
        using (var opened = (NpgsqlConnection)bounded.Dialect.Connect())
        {
            Assert.Equal((4, 4), (opened.ConnectionTimeout, opened.CommandTimeout));
            using var show = new NpgsqlCommand("SHOW lock_timeout", opened);
            Assert.Equal("3s", show.ExecuteScalar());
        }
        var operators = PlatformDatabase.Open(directory, connection + ";Timeout=20;Command Timeout=45", TimeSpan.FromSeconds(3));
        using var own = (NpgsqlConnection)operators.Dialect.Connect();
        Assert.Equal((20, 45), (own.ConnectionTimeout, own.CommandTimeout));
    }

    /// <summary>What no command timeout bounds (a migration, a copy's COPY) waits on the socket
    /// while the server works: TCP keepalive ends that wait where the server died or was cut off
    /// without closing the connection, which Linux's two hours of idle before a first probe would
    /// leave for ever. An operator's own keepalive settings are kept, and a Unix socket, which
    /// refuses them, has none.</summary>
    [Theory]
    [InlineData("postgresql://db.example.com/stratus", false, 30, 10)]
    [InlineData("Host=db.example.com;Database=stratus;Tcp Keepalive=true", true, 0, 0)]
    [InlineData("Host=db.example.com;Database=stratus;Tcp Keepalive Time=120", false, 120, 0)]
    [InlineData("postgresql:///stratus?host=/run/postgresql", false, 0, 0)]
    public void A_connection_probes_a_silent_server_with_tcp_keepalive_unless_told_otherwise(string value, bool keepAlive, int time, int interval)
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresDialect.Parse(value, PlatformDatabase.VariableSetting, TimeSpan.FromSeconds(1)).ConnectionString);
        Assert.Equal((keepAlive, time, interval), (builder.TcpKeepAlive, builder.TcpKeepAliveTime, builder.TcpKeepAliveInterval));
    }

    [Theory]
    [InlineData("40001", "gave up a transaction that clashed with another session's (40001:")]
    [InlineData("40P01", "gave up a transaction that clashed with another session's (40P01:")]
    [InlineData("57P02", "is not taking connections (57P02:")]
    [InlineData("57P03", "is not taking connections (57P03:")]
    [InlineData("08006", "lost the connection to the PostgreSQL server of the PostgreSQL database stratus on db.example.com:5432 (08006:")]
    [InlineData("08P01", "lost the connection to the PostgreSQL server of")]
    public void A_server_failure_worth_a_retry_is_described_as_the_operators_not_a_bug(string sqlState, string said)
    {
        var dialect = PostgresDialect.Parse("postgresql://db.example.com/stratus", PlatformDatabase.VariableSetting, TimeSpan.FromSeconds(1));
        var described = dialect.Describe(new PostgresException("it failed", "ERROR", "ERROR", sqlState));
        Assert.NotNull(described);
        Assert.Contains(said, described);
    }

    [Fact]
    public void A_wrong_password_is_one_error_naming_host_and_database_without_the_password()
    {
        const string Wrong = "not-the-password-42";
        var error = Assert.Throws<PlatformStorageException>(() => PlatformDatabase.Open(directory, Cluster.ConnectionString(postgres.Name, password: Wrong), null));
        Assert.StartsWith($"cannot log in to the PostgreSQL database {postgres.Name} on {Cluster.Folder} (port {Cluster.Port}) as postgres (28P01:", error.Message);
        Assert.Contains("PGPASSWORD or ~/.pgpass", error.Message);
        Assert.DoesNotContain(Wrong, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void No_password_for_a_server_that_wants_one_is_one_error_saying_where_to_give_it()
    {
        // No password in the value, and an empty password file (as a first try before ~/.pgpass is
        // written): Npgsql refuses before the server is asked, with no SQLSTATE.
        var passfile = Path.Combine(Directory.CreateDirectory(directory).FullName, "empty-pgpass");
        File.WriteAllText(passfile, "");
        var builder = new NpgsqlConnectionStringBuilder(Cluster.ConnectionString(postgres.Name)) { Password = null, Passfile = passfile };
        var error = Assert.Throws<PlatformStorageException>(() => PlatformDatabase.Open(directory, builder.ConnectionString, null));
        Assert.StartsWith($"cannot connect to the PostgreSQL database {postgres.Name} on {Cluster.Folder} (port {Cluster.Port}) as postgres (No password has been provided", error.Message);
        Assert.Contains("PGPASSWORD or ~/.pgpass", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_passfile_that_is_not_there_is_one_error_naming_the_setting_and_the_file()
    {
        // libpq passes over a missing passfile; Npgsql threw .NET's DirectoryNotFoundException,
        // which named neither the database nor the setting (and was a 500 on the request path).
        var missing = Path.Combine(directory, "no-such-folder", "pgpass");
        var value = $"postgresql://postgres@{Uri.EscapeDataString(Cluster.Folder)}:{Cluster.Port}/{postgres.Name}?passfile={Uri.EscapeDataString(missing)}";
        var error = Assert.Throws<PlatformStorageException>(() => PlatformDatabase.Open(directory, value, null));
        Assert.StartsWith($"cannot connect to the PostgreSQL database {postgres.Name} on {Cluster.Folder} (port {Cluster.Port}) as postgres: cannot read the file its passfile names (", error.Message);
        Assert.Contains(missing, error.Message);
        Assert.EndsWith("make passfile in $STRATUS_DATABASE name a file this user may read, or leave it out", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_missing_database_is_one_error_saying_to_create_it()
    {
        var error = Assert.Throws<PlatformStorageException>(() => PlatformDatabase.Open(directory, Cluster.ConnectionString("no_such_db"), null));
        Assert.StartsWith($"the PostgreSQL database no_such_db on {Cluster.Folder} (port {Cluster.Port}) as postgres does not exist (3D000:", error.Message);
        Assert.Contains("createdb", error.Message);
        Assert.DoesNotContain(PostgresCluster.Password, error.Message);
    }

    [Fact]
    public void A_server_that_is_down_is_one_error_naming_where_it_was_looked_for()
    {
        // No server listens on this port of the cluster's socket folder: as one stopped.
        var builder = new NpgsqlConnectionStringBuilder(Cluster.ConnectionString(postgres.Name)) { Port = Cluster.Port + 1, Timeout = 5 };
        var error = Assert.Throws<PlatformStorageException>(() => PlatformDatabase.Open(directory, builder.ConnectionString, null));
        Assert.StartsWith($"cannot reach the PostgreSQL server of the PostgreSQL database {postgres.Name} on {Cluster.Folder} (port {Cluster.Port + 1}) as postgres, or it did not answer in time (", error.Message);
        Assert.EndsWith("is it running, and does it listen there?", error.Message);
        Assert.DoesNotContain(PostgresCluster.Password, error.Message);
    }

    [Fact]
    public void Backup_is_refused_with_the_pg_dump_and_pg_restore_commands_that_reach_the_database()
    {
        // pg_dump given only a database's name would look on the local socket as the OS user.
        var database = PlatformDatabase.Open(directory, Cluster.ConnectionString(postgres.Name), null);
        var error = Assert.Throws<TrustUserException>(() => database.BackupTo(Path.Combine(directory, "backup.db"), "cli:test"));
        var options = $"--host={Cluster.Folder} --port={Cluster.Port} --username=postgres --dbname={postgres.Name}";
        Assert.Contains($"pg_dump --format=custom --file=stratus-$(date +%F).dump {options},", error.Message);
        Assert.Contains($"pg_restore --clean {options} <file>", error.Message);
        Assert.DoesNotContain(PostgresCluster.Password, error.Message);
    }

    [Fact]
    public void Another_applications_database_is_refused_and_left_as_it_was()
    {
        var connection = postgres.NewSchema();
        using (var other = new NpgsqlConnection(connection))
        {
            other.Open();
            using var command = new NpgsqlCommand("CREATE TABLE customers (id int); CREATE TABLE orders (id int);", other);
            command.ExecuteNonQuery();
        }
        var error = Assert.Throws<TrustUserException>(() => PlatformDatabase.Open(directory, connection, null));
        Assert.StartsWith($"the PostgreSQL database {postgres.Name} on {Cluster.Folder} (port {Cluster.Port}) as postgres is not a Stratus database (it holds the tables customers, orders)", error.Message);
        using var check = new NpgsqlConnection(connection);
        check.Open();
        using var tables = new NpgsqlCommand("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()", check);
        Assert.Equal(2L, tables.ExecuteScalar());
    }

    [Fact]
    public void A_database_of_a_newer_stratus_is_refused()
    {
        var connection = postgres.NewSchema();
        PlatformDatabase.Open(directory, connection, null);
        using (var other = new NpgsqlConnection(connection))
        {
            other.Open();
            using var command = new NpgsqlCommand("UPDATE stratus_schema SET version = 99", other);
            command.ExecuteNonQuery();
        }
        var error = Assert.Throws<TrustUserException>(() => PlatformDatabase.Open(directory, connection, null));
        Assert.Contains("has schema version 99; this Stratus understands up to", error.Message);
    }

    [Fact]
    public async Task Servers_starting_at_once_migrate_an_empty_database_once()
    {
        var connection = postgres.NewSchema();
        using var start = new Barrier(6);
        var opened = await Task.WhenAll(Enumerable.Range(0, 6).Select(n => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            return PlatformDatabase.Open(directory, $"{connection};Application Name=server{n}", TimeSpan.FromSeconds(60));
        }, TaskCreationOptions.LongRunning)));
        var stores = PlatformStores.Open(opened[3]);
        await stores.Audit.AppendAsync("alice", AuditActions.KeyCreated);
        using var check = new NpgsqlConnection(connection);
        check.Open();
        using var versions = new NpgsqlCommand("SELECT count(*) FROM stratus_schema", check);
        Assert.Equal(1L, versions.ExecuteScalar());
        Assert.True((await PlatformStores.Open(opened[5]).Audit.VerifyAsync()).Valid);
    }

    [Theory]
    [InlineData("postgresql://alice:s3cret%2Fpw@db.example.com:6432/stratus?sslmode=verify-full&application_name=x",
        "the PostgreSQL database stratus on db.example.com:6432 as alice")]
    [InlineData("postgres://db.example.com/stratus", "the PostgreSQL database stratus on db.example.com:5432")]
    [InlineData("postgresql:///stratus?host=/run/postgresql&user=bob", "the PostgreSQL database stratus on /run/postgresql (port 5432) as bob")]
    [InlineData("Host=db.example.com;Database=stratus;Username=alice;Password=s3cret/pw", "the PostgreSQL database stratus on db.example.com:5432 as alice")]
    [InlineData("postgresql://stratus@db1.example.com,db2.example.com:6432/stratus", "the PostgreSQL database stratus on db1.example.com:5432, db2.example.com:6432 as stratus")]
    [InlineData("postgresql://[::1]:6543/stratus", "the PostgreSQL database stratus on [::1]:6543")]
    [InlineData(" postgresql://db.example.com/stratus\n", "the PostgreSQL database stratus on db.example.com:5432")]
    public void A_connection_is_named_by_host_database_and_user_never_the_password(string value, string name)
    {
        var dialect = PostgresDialect.Parse(value, PlatformDatabase.VariableSetting, TimeSpan.FromSeconds(1));
        Assert.Equal(name, dialect.Name);
    }

    [Theory]
    [InlineData("postgresql://[::1]:6543/stratus", "::1", 6543)]
    [InlineData("postgresql://[2001:db8::7]/stratus", "2001:db8::7", 5432)]
    [InlineData("postgresql://primary.example.com,standby.example.com:6432/stratus", "primary.example.com:5432,standby.example.com:6432", 5432)]
    [InlineData("postgresql://[2001:db8::7]:6432,standby.example.com/stratus", "[2001:db8::7]:6432,standby.example.com:5432", 5432)]
    [InlineData("postgresql://primary.example.com:6432,standby.example.com:6432/stratus", "primary.example.com,standby.example.com", 6432)]
    [InlineData("postgresql://db.example.com/stratus?port=6432", "db.example.com", 6432)]
    [InlineData("postgresql://primary.example.com,standby.example.com/stratus?port=6432,6433", "primary.example.com:6432,standby.example.com:6433", 5432)]
    [InlineData("postgresql:///stratus?port=6432,6433&host=primary.example.com,::1", "primary.example.com:6432,[::1]:6433", 5432)]
    public void A_uri_reaches_npgsql_with_its_hosts_listed_and_ipv6_without_brackets(string value, string host, int port)
    {
        var builder = new NpgsqlConnectionStringBuilder(PostgresDialect.Parse(value, PlatformDatabase.VariableSetting, TimeSpan.FromSeconds(1)).ConnectionString);
        Assert.Equal((host, port), (builder.Host, builder.Port));
    }

    [Fact]
    public void The_commands_for_pg_dump_list_several_hosts_and_their_ports_as_libpq_takes_them()
    {
        var dialect = PostgresDialect.Parse("postgresql://stratus@[2001:db8::7]:6432,standby.example.com/stratus", PlatformDatabase.VariableSetting, TimeSpan.FromSeconds(1));
        Assert.Equal("--host=2001:db8::7,standby.example.com --port=6432,5432 --username=stratus --dbname=stratus", dialect.ToolOptions);
        Assert.Equal("the PostgreSQL database stratus on [2001:db8::7]:6432, standby.example.com:5432 as stratus", dialect.Name);
    }

    [Fact]
    public async Task A_uri_of_several_hosts_connects_to_the_first_that_answers()
    {
        var schema = new NpgsqlConnectionStringBuilder(postgres.NewSchema()).SearchPath;
        var socket = Uri.EscapeDataString(Cluster.Folder);
        var uri = $"postgresql://{PostgresCluster.User}:{PostgresCluster.Password}@{socket}:{Cluster.Port + 1},{socket}:{Cluster.Port}/{postgres.Name}?Search%20Path={schema}";
        var stores = PlatformStores.Open(PlatformDatabase.Open(directory, uri, null));
        await stores.Audit.AppendAsync("alice", AuditActions.KeyCreated);
        Assert.Equal(1, (await stores.Audit.VerifyAsync()).EntriesChecked);
    }

    [Theory]
    [InlineData("mysql://alice:s3cret@db/stratus", "its scheme is mysql://")]
    [InlineData("postgresql://alice:s3cret@db.example.com", "it names no database")]
    [InlineData("Host=db.example.com;Dtabase=stratus;Password=s3cret", "dtabase")]
    [InlineData("Database=stratus;Password=s3cret", "it names no host")]
    [InlineData("postgresql://alice:s3cret@db.example.com:99999/stratus", "its host db.example.com:99999 has no port from 1 to 65535")]
    [InlineData("postgresql://alice:s3cret@db.example.com,/stratus", "has an empty host")]
    [InlineData("postgresql://alice:s3cret@db.example.com/stratus?sslmode=sometimes", "")]
    [InlineData("postgresql://alice:s3cret%@db.example.com/stratus", "a % in it is not followed by two hex digits; write a % itself as %25")]
    [InlineData("postgresql://alice:s3cret@db.example.com/stra%tus", "a % in it is not followed by two hex digits")]
    [InlineData("postgresql://alice:s3cret@db.example.com/stratus?port=abc", "its port=abc is not a port from 1 to 65535, nor a list of them with one for each host")]
    [InlineData("postgresql://alice:s3cret@db.example.com/stratus?port=5432,5433", "its port=5432,5433 gives 2 ports for 1 host; give one port for all, or one for each host")]
    [InlineData("postgresql://alice:s3cret@db.example.com/stratus?connect_timeout=soon", "its connect_timeout=soon is not a value Npgsql takes for connect_timeout")]
    [InlineData("Host=db.example.com;Port=abc;Database=stratus;Password=s3cret", "its Port is not a port from 1 to 65535; hosts on ports of their own are given in Host, as Host=db1.example.com:5432,db2.example.com:5433")]
    [InlineData("Host=db.example.com;Port=5432,5433;Database=stratus;Password=s3cret", "its Port is not a port from 1 to 65535")]
    public void A_bad_value_is_one_line_with_an_example_and_without_the_password(string value, string why)
    {
        var error = Assert.Throws<TrustUserException>(() => PostgresDialect.Parse(value, PlatformDatabase.VariableSetting, TimeSpan.FromSeconds(1)));
        Assert.StartsWith("$STRATUS_DATABASE is not a PostgreSQL database to use (", error.Message);
        Assert.Contains(why, error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("postgresql://stratus@db.example.com:5432/stratus?sslmode=require", error.Message);
        Assert.DoesNotContain("s3cret", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Whether_stratus_data_is_there_is_asked_of_the_database_without_creating_any()
    {
        var connection = postgres.NewSchema();
        Assert.False(PlatformDatabase.Exists(directory, connection));
        Assert.False(Directory.Exists(directory));
        PlatformDatabase.Open(directory, connection, null);
        Assert.True(PlatformDatabase.Exists(directory, connection));
    }
}
