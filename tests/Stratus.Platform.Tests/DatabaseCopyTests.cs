// DatabaseCopy: a data directory's stratus.db, filled through the stores' public APIs, copied into
// an empty PostgreSQL database works there through the same APIs (a key with its old secret, the
// audit chain with its head and the next entry chained after it, the registry's alias, the next
// version and job, usage, blocklists, policies); every table of the schema is carried; and a target
// holding rows, a copy failing part way, a source that is not Stratus's or is newer, and a target
// that is SQLite's or missing are refused with nothing written. The source's audit log records the
// copy once the target committed; a bad --to is named as --to; a cancelled copy stops the server's
// statement and leaves the target empty and unlocked.
using System.Text.Json.Nodes;
using Npgsql;
using Stratus.Platform.Jobs;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public sealed class DatabaseCopyTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IDisposable
{
    readonly TempPlatform sqlite = new();

    public void Dispose() => sqlite.Dispose();

    /// <summary>The target's rows per table (every table of its schema but the version's).</summary>
    static Dictionary<string, long> Rows(string connection)
    {
        using var database = new NpgsqlConnection(connection);
        database.Open();
        var tables = new List<string>();
        using (var list = new NpgsqlCommand("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'stratus_schema'", database))
        using (var reader = list.ExecuteReader())
            while (reader.Read()) tables.Add(reader.GetString(0));
        return tables.ToDictionary(t => t, t =>
        {
            using var count = new NpgsqlCommand($"SELECT count(*) FROM {t}", database);
            return (long)count.ExecuteScalar()!;
        });
    }

    static long KeyCreatedEntries(string connection)
    {
        using var database = new NpgsqlConnection(connection);
        database.Open();
        using var count = new NpgsqlCommand($"SELECT count(*) FROM audit_log WHERE action = '{AuditActions.KeyCreated}'", database);
        return (long)count.ExecuteScalar()!;
    }

    ModelRegistry Registry(PlatformDatabase database) => ModelRegistry.Open(database, new ManifestFolders());

    static SqlJobStore Jobs(PlatformDatabase database) => new(database, new SqlAuditLog(database));

    [Fact]
    public async Task Keys_audit_registry_jobs_usage_and_safety_settings_work_on_postgresql_after_the_copy()
    {
        var keys = sqlite.Stores.KeyService();
        var kept = await keys.CreateAsync("ci-bot", ApiKeyScopes.Inference | ApiKeyScopes.Training, new RateLimits(60, 10_000), "alice", ApiKeyExpiry.In(TimeSpan.FromDays(30)));
        var rotated = await keys.CreateAsync("svc", ApiKeyScopes.Inference, RateLimits.Unlimited, "alice");
        var newSecret = await keys.RotateAsync("svc", TimeSpan.FromDays(1), "alice");
        var revoked = await keys.CreateAsync("gone", ApiKeyScopes.Admin, RateLimits.Unlimited, "alice");
        await keys.RevokeAsync("gone", "alice");
        var day = new DateTimeOffset(2026, 11, 20, 12, 0, 0, TimeSpan.Zero);
        await sqlite.Stores.Usage.RecordAsync(kept.Key.Id, "shk", 10, 5, day);
        await sqlite.Stores.Usage.RecordAsync(kept.Key.Id, "shk", 1, 2, day);
        var safety = sqlite.Stores.SafetyConfiguration();
        await safety.AddToBlocklistAsync("words", ["sarin"], [@"proj-\d+"], null, "alice");
        await safety.SetPolicyAsync(SafetyPolicy.Default("shk") with { Blocklists = ["words"] }, "alice");
        var run = Path.Combine(sqlite.Directory, "run");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "manifest.json"), "{}");
        var registry = Registry(sqlite.Database);
        registry.Register(run, "shk", "first", "production", "alice");
        registry.Register(run, "shk", null, null, "alice");
        registry.Delete("shk", 2, "alice");
        var jobs = Jobs(sqlite.Database);
        var job = new Job("job-0000abcd", Job.TrainKind, new TrainArguments(null, "/data", "/runs/a", [new("max_iters", "5")]), SlurmJobExecutor.ExecutorName, null,
            JobState.Queued, null, null, null, null, jobs.Now, null, null, null, "cli:alice", "/runs/a/job-0000abcd.log") { Resources = new SlurmOptions("gpu", "2:00:00", 4, 8) };
        jobs.Insert(job, new AuditRecord("cli:alice", AuditActions.JobSubmitted, []));
        jobs.SetExecutorReference(job.Id, "4242");
        jobs.RecordStarted(job.Id, null, null);
        jobs.RecordEnd(job.Id, new JobEnd(JobState.Failed, 1, "NODE_FAIL"));
        var before = await sqlite.Stores.Audit.VerifyAsync();
        Assert.True(before.Valid, before.Problem);

        var target = postgres.NewSchema();
        var copy = DatabaseCopy.Copy(sqlite.Directory, target, "cli:bob");

        var copied = PlatformDatabase.Open(sqlite.Directory, target, null);
        var stores = PlatformStores.Open(copied);
        var onPostgres = stores.KeyService();
        Assert.Equal(kept.Key.Id, (await onPostgres.AuthenticateAsync(kept.Secret)).Key?.Id);
        var found = await onPostgres.FindAsync("ci-bot");
        Assert.Equal((kept.Key.Scopes, kept.Key.Limits, kept.Key.ExpiresAt), (found.Scopes, found.Limits, found.ExpiresAt));
        // The rotated key: its new secret, and its old one through the overlap.
        Assert.True((await onPostgres.AuthenticateAsync(newSecret.Secret)).Succeeded);
        Assert.True((await onPostgres.AuthenticateAsync(rotated.Secret)).Succeeded);
        Assert.Equal(AuthenticationFailure.Revoked, (await onPostgres.AuthenticateAsync(revoked.Secret)).Failure);

        // The chain verifies with the source's entries and head, then the copy's entry after them.
        var after = await stores.Audit.VerifyAsync();
        Assert.True(after.Valid, after.Problem);
        Assert.Equal(before.EntriesChecked + 1, after.EntriesChecked);
        Assert.Equal(before.HeadHash, copy.AuditHead);
        var entries = await stores.Audit.ReadAsync(new AuditQuery(Limit: 1000));
        Assert.Equal(before.HeadHash, entries[^2].Hash);
        // The source's entries, but its own record of the copy (after the chain copied).
        Assert.Equal((await sqlite.Stores.Audit.ReadAsync(new AuditQuery(Limit: 1000))).Take(entries.Count - 1).ToList(), entries.Take(entries.Count - 1).ToList());
        var recorded = entries[^1];
        Assert.Equal((before.EntriesChecked + 1, "cli:bob", AuditActions.DatabaseCopied), (recorded.Sequence, recorded.Actor, recorded.Action));
        var details = JsonNode.Parse(recorded.Details)!;
        Assert.Equal((sqlite.DatabasePath, before.EntriesChecked, before.HeadHash), ((string?)details["from"], (long)details["audit_entries"]!, (string?)details["audit_head"]));
        Assert.Equal(recorded, copy.Audit);
        var next = await stores.Audit.AppendAsync("carol", AuditActions.PolicyChanged);
        Assert.Equal(before.EntriesChecked + 2, next.Sequence);
        Assert.True((await stores.Audit.VerifyAsync()).Valid);

        // The alias resolves to the version recorded, its path as registered; the next version is
        // 3, as on SQLite (2 was deleted, and a version's number is never given again).
        var onRegistry = Registry(copied);
        var production = onRegistry.Resolve(ModelReference.Parse("shk@production"));
        Assert.Equal((1, Path.GetFullPath(run), "first"), (production.Version, production.Checkpoint.Directory, production.Description));
        Assert.Equal(3, onRegistry.Register(run, "shk", null, null, "carol").Version);

        var onJobs = Jobs(copied);
        var ended = onJobs.Get(job.Id)!;
        Assert.Equal((JobState.Failed, "4242", 1, "NODE_FAIL", "/runs/a", SlurmJobExecutor.ExecutorName),
            (ended.State, ended.ExecutorReference, ended.ExitCode, ended.Reason, ended.Arguments.Out, ended.Executor));
        var onSqlite = jobs.Get(job.Id)!;
        Assert.Equal((onSqlite.SubmittedAt, onSqlite.StartedAt, onSqlite.EndedAt, new SlurmOptions("gpu", "2:00:00", 4, 8), onSqlite.Arguments.Overrides.Single()),
            (ended.SubmittedAt, ended.StartedAt, ended.EndedAt, ended.Resources, ended.Arguments.Overrides.Single()));
        onJobs.Insert(job with { Id = "job-0000abce", Arguments = job.Arguments with { Out = "/runs/b" } }, new AuditRecord("cli:carol", AuditActions.JobSubmitted, []));
        Assert.Equal(2, onJobs.List(10).Jobs.Count);

        var usage = Assert.Single(await stores.Usage.QueryAsync(UsageQuery.Days(kept.Key.Id, DateOnly.FromDateTime(day.UtcDateTime), DateOnly.FromDateTime(day.UtcDateTime), null)));
        Assert.Equal((2, 11, 7), (usage.Requests, usage.PromptTokens, usage.CompletionTokens));
        var onSafety = stores.SafetyConfiguration();
        var words = (await onSafety.GetBlocklistAsync("WORDS"))!;
        Assert.Equal(["sarin"], words.Terms);
        Assert.Equal([@"proj-\d+"], words.Patterns);
        Assert.Equal(["words"], (await onSafety.GetPolicyAsync("shk")).Blocklists);

        Assert.Equal(new Dictionary<string, long>
        {
            ["api_keys"] = 3, ["audit_log"] = before.EntriesChecked, ["blocklists"] = 1, ["jobs"] = 1, ["model_aliases"] = 1,
            ["model_versions"] = 1, ["registered_models"] = 1, ["safety_policies"] = 1, ["usage_daily"] = 1,
        }, copy.Tables.ToDictionary(t => t.Name, t => t.Rows));
    }

    /// <summary>The copy carries every table PostgreSQL's schema has, and every one SQLite's has:
    /// a table a migration adds to both is copied, and one added to either alone stops the copy.</summary>
    [Fact]
    public void Every_table_of_the_schema_is_carried()
    {
        var target = postgres.NewSchema();
        var copy = DatabaseCopy.Copy(sqlite.Directory, target, "tests");

        Assert.Equal(Rows(target).Keys.Order(), copy.Tables.Select(t => t.Name).Order());
        var inSqlite = new List<string>();
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={sqlite.DatabasePath}"))
        {
            connection.Open();
            using var command = new Microsoft.Data.Sqlite.SqliteCommand("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", connection);
            using var reader = command.ExecuteReader();
            while (reader.Read()) inSqlite.Add(reader.GetString(0));
        }
        Assert.Equal(inSqlite.Order(), copy.Tables.Select(t => t.Name).Order());
        // Referenced tables first: the registry's models, then versions, then aliases.
        var order = copy.Tables.Select(t => t.Name).ToList();
        Assert.True(order.IndexOf("registered_models") < order.IndexOf("model_versions") && order.IndexOf("model_versions") < order.IndexOf("model_aliases"), string.Join(", ", order));
    }

    /// <summary>A server creating keys while the copy runs: the copy reads api_keys before
    /// audit_log, so read outside one snapshot it finds entries of keys it did not copy. In one
    /// snapshot every key it copies has its entry, and every entry its key.</summary>
    [Fact]
    public async Task A_copy_taken_while_keys_are_created_holds_each_key_with_its_audit_entry()
    {
        var server = PlatformStores.Open(sqlite.OpenDatabase()).KeyService();
        using var stop = new CancellationTokenSource();
        var writes = Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
                await server.CreateAsync($"key{i}", ApiKeyScopes.Inference, RateLimits.Unlimited, "server");
        });
        try
        {
            for (var copies = 0; copies < 5; copies++)
            {
                var target = postgres.NewSchema();
                var copy = DatabaseCopy.Copy(sqlite.Directory, target, "tests");
                var rows = copy.Tables.ToDictionary(t => t.Name, t => t.Rows);
                var created = KeyCreatedEntries(target);
                Assert.Equal(rows["api_keys"], created);
                // Beside the keys' entries, the source's records of the copies before this one.
                Assert.Equal(rows["audit_log"], created + copies);
                Assert.NotNull(copy.SourceAudit);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await writes;
        }
    }

    [Fact]
    public void A_table_or_column_only_one_side_has_stops_the_copy_onSqliteit_writes()
    {
        sqlite.Sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes VALUES (1, 'x'); ALTER TABLE jobs ADD COLUMN priority INTEGER;");
        var target = postgres.NewSchema();

        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.Contains("only in stratus.db: jobs.priority, notes.id, notes.text", error.Message);
        Assert.All(Rows(target).Values, rows => Assert.Equal(0, rows));
    }

    [Fact]
    public async Task A_target_that_holds_rows_is_refused_and_left_as_it_was()
    {
        await sqlite.Stores.KeyService().CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var target = postgres.NewSchema();
        await PlatformStores.Open(PlatformDatabase.Open(sqlite.Directory, target, null)).KeyService().CreateAsync("b", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");

        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.StartsWith($"the PostgreSQL database {postgres.Name} on {postgres.Cluster.Folder}", error.Message);
        Assert.Contains("already holds Stratus rows (1 in api_keys, 1 in audit_log); the copy goes into an empty database only", error.Message);
        Assert.Equal(1, Rows(target)["api_keys"]);
    }

    /// <summary>One transaction: a row the target refuses (an alias of a version that is not there,
    /// which the sqlite3 shell, where foreign keys are off by default, lets someone with the file leave) stops the copy after the tables before it were
    /// copied, and none of them keeps a row; once the row is corrected, the copy goes through.</summary>
    [Fact]
    public async Task A_copy_that_fails_part_way_leaves_the_target_empty()
    {
        await sqlite.Stores.KeyService().CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var run = Path.Combine(sqlite.Directory, "run");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "manifest.json"), "{}");
        Registry(sqlite.Database).Register(run, "shk", null, null, "tests");
        sqlite.Sql("PRAGMA foreign_keys = OFF; INSERT INTO model_aliases (name, alias, version, updated_at) VALUES ('shk', 'staging', 7, '2026-11-27T00:00:00.0000000Z')");
        var target = postgres.NewSchema();

        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.Contains($"refuses a row of model_aliases in {sqlite.DatabasePath} (23503:", error.Message);
        Assert.EndsWith("nothing was copied: correct that row in stratus.db and copy again", error.Message);
        Assert.All(Rows(target).Values, rows => Assert.Equal(0, rows));

        sqlite.Sql("UPDATE model_aliases SET version = 1");
        var copy = DatabaseCopy.Copy(sqlite.Directory, target, "tests");
        Assert.Equal(1, copy.Tables.Single(t => t.Name == "model_aliases").Rows);
    }

    [Fact]
    public void A_source_that_is_missing_another_applications_or_newer_is_refused()
    {
        var target = postgres.NewSchema();
        var empty = Path.Combine(sqlite.Directory, "empty");
        Directory.CreateDirectory(empty);
        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(empty, target, "tests"));
        Assert.Equal($"no Stratus database to copy in {empty} (no stratus.db); give --data-dir the folder that holds it", error.Message);
        Assert.False(File.Exists(Path.Combine(empty, PlatformDatabase.FileName)));

        var other = Path.Combine(sqlite.Directory, "other");
        Directory.CreateDirectory(other);
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(other, PlatformDatabase.FileName)}"))
        {
            connection.Open();
            using var command = new Microsoft.Data.Sqlite.SqliteCommand("CREATE TABLE invoices (id INTEGER)", connection);
            command.ExecuteNonQuery();
        }
        Assert.Contains("is not a Stratus database (it holds the tables invoices)", Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(other, target, "tests")).Message);

        sqlite.Sql("PRAGMA user_version = 99");
        Assert.Contains("has schema version 99; this Stratus understands up to", Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests")).Message);
        Assert.Empty(Rows(target));
    }

    [Theory]
    [InlineData(" ")]
    [InlineData("/srv/stratus/stratus.db")]
    [InlineData("sqlite:///srv/stratus/stratus.db")]
    public void A_target_that_is_not_postgresql_is_refused(string target)
    {
        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.Contains(target == " " ? "no PostgreSQL database to copy into: give --to" : "is a SQLite file, not PostgreSQL", error.Message);
    }

    [Theory]
    [InlineData("postgresql://db.example.com", "--to is not a PostgreSQL database to use (it names no database)")]
    [InlineData("Host=db.example.com;Port=x;Database=stratus", "--to is not a PostgreSQL database to use (its Port is not a port from 1 to 65535")]
    [InlineData("/srv/stratus/stratus.db", "the database to copy into (/srv/stratus/stratus.db, from --to) is a SQLite file, not PostgreSQL")]
    public void A_bad_to_is_named_as_to(string target, string message)
    {
        var error = Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.StartsWith(message, error.Message);
        Assert.DoesNotContain(PlatformDatabase.DatabaseVariable, error.Message);
        Assert.DoesNotContain("unset it", error.Message);
    }

    [Fact]
    public void A_login_refused_names_to_where_the_password_came_from()
    {
        var target = new NpgsqlConnectionStringBuilder(postgres.NewSchema()) { Password = "wrong" }.ConnectionString;
        var error = Assert.Throws<PlatformStorageException>(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests"));
        Assert.Contains("check the user and password in --to, PGPASSWORD or ~/.pgpass", error.Message);
        Assert.DoesNotContain(PlatformDatabase.DatabaseVariable, error.Message);
    }

    static long Copied(IReadOnlyList<AuditEntry> entries) => entries.Count(e => e.Action == AuditActions.DatabaseCopied);

    /// <summary>The source's log says where its data went, after the chain the target holds; a
    /// copy that did not commit (a target holding rows) says nothing there.</summary>
    [Fact]
    public async Task The_source_records_a_copy_once_the_target_committed_it()
    {
        await sqlite.Stores.KeyService().CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var used = postgres.NewSchema();
        await PlatformStores.Open(PlatformDatabase.Open(sqlite.Directory, used, null)).KeyService().CreateAsync("b", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        Assert.Throws<TrustUserException>(() => DatabaseCopy.Copy(sqlite.Directory, used, "tests"));
        Assert.Equal(0, Copied(await sqlite.Stores.Audit.ReadAsync(new AuditQuery(Limit: 1000))));

        var target = postgres.NewSchema();
        var copy = DatabaseCopy.Copy(sqlite.Directory, target, "cli:bob");

        var entries = await sqlite.Stores.Audit.ReadAsync(new AuditQuery(Limit: 1000));
        var recorded = entries[^1];
        Assert.Equal(recorded, copy.SourceAudit);
        Assert.Null(copy.SourceUnrecorded);
        Assert.Equal((2L, "cli:bob", AuditActions.DatabaseCopied, copy.AuditHead), (recorded.Sequence, recorded.Actor, recorded.Action, entries[^2].Hash));
        var details = JsonNode.Parse(recorded.Details)!;
        Assert.Equal((copy.Target, 1L, copy.AuditHead, 1L), ((string?)details["to"], (long)details["audit_entries"]!, (string?)details["audit_head"], (long)details["rows"]!["api_keys"]!));
        Assert.True((await sqlite.Stores.Audit.VerifyAsync()).Valid);
        // The target's chain holds the source's one entry, then its own record of the copy.
        Assert.Equal(1, Rows(target)["api_keys"]);
        Assert.Equal(2, Rows(target)["audit_log"]);
    }

    /// <summary>A source that cannot take its entry (a write lock another process holds past the
    /// lock timeout) does not undo a copy that committed: the result says why it is unrecorded.</summary>
    [Fact]
    public async Task A_source_that_cannot_record_the_copy_leaves_it_whole_and_says_why()
    {
        await sqlite.Stores.KeyService().CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var target = postgres.NewSchema();
        using var holder = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={sqlite.DatabasePath};Pooling=False");
        holder.Open();
        using var locked = holder.BeginTransaction(deferred: false);

        var copy = DatabaseCopy.Copy(sqlite.Directory, target, "tests");

        Assert.Null(copy.SourceAudit);
        Assert.Contains($"{sqlite.DatabasePath} is locked by another process", copy.SourceUnrecorded);
        Assert.Equal(1, Rows(target)["api_keys"]);
        locked.Rollback();
        Assert.Equal(0, Copied(await sqlite.Stores.Audit.ReadAsync(new AuditQuery(Limit: 1000))));
    }

    /// <summary>Cancelled while the server works on a table, the copy has the server stop: its
    /// statement is not left running with the write lock held, and the target keeps no row.</summary>
    [Fact]
    public async Task A_cancelled_copy_stops_the_servers_statement_and_leaves_the_target_empty()
    {
        await sqlite.Stores.KeyService().CreateAsync("a", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        var target = postgres.NewSchema();
        SlowCopyTarget.Create(sqlite.Directory, target);
        using var stop = new CancellationTokenSource();

        var copying = Task.Run(() => DatabaseCopy.Copy(sqlite.Directory, target, "tests", cancellationToken: stop.Token));
        SlowCopyTarget.WaitUntilCopying(target, () => copying.IsCompleted);
        await stop.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => copying);
        Assert.Equal((0, 0, 0), (SlowCopyTarget.Count(target, SlowCopyTarget.Sleeping), SlowCopyTarget.Count(target, SlowCopyTarget.AdvisoryLocks), Rows(target)["api_keys"]));
        Assert.Equal(0, Copied(await sqlite.Stores.Audit.ReadAsync(new AuditQuery(Limit: 1000))));
    }
}
