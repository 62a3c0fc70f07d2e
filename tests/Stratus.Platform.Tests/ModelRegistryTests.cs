// The registry's own rules, over a checkpoint reader that stands in for Core's (this project
// has no libtorch): references parsed in one place, names and aliases of a safe charset, and a
// database of schema version 3 (before the registry) migrated with its keys and audit chain kept;
// the registry's own copies (--copy): placed whole or not at all, removed with their version alone.
// Real checkpoints: Stratus.Server.Tests' ModelRegistryTests.
using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;
using Npgsql;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

/// <summary>A "checkpoint" is a folder with a manifest.json; its hash is the manifest's.</summary>
/// <param name="refuse">Paths whose reading fails as a damaged checkpoint's does.</param>
sealed class ManifestFolders(Func<string, bool>? refuse = null) : ICheckpointReader
{
    public RegisteredCheckpoint Read(string path)
    {
        if (refuse?.Invoke(path) == true) throw new TrustUserException($"checkpoint {path} is corrupt: model.safetensors does not match its sha256 in manifest.json");
        var manifest = Path.Combine(path, "manifest.json");
        if (!File.Exists(manifest)) throw new TrustUserException($"{path} is not a Stratus checkpoint (no manifest.json)");
        return new RegisteredCheckpoint(Path.GetFullPath(path), Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(manifest))), new ModelSummary("gpt2", 1234, 64, "char"));
    }

    /// <summary>Every file of the folder.</summary>
    public CheckpointFiles Locate(string path)
    {
        if (!File.Exists(Path.Combine(path, "manifest.json"))) throw new TrustUserException($"{path} is not a Stratus checkpoint (no manifest.json)");
        return new CheckpointFiles(Path.GetFullPath(path), [.. Directory.EnumerateFiles(path).Select(file => Path.GetFileName(file))]);
    }

    /// <summary>What a parent.txt beside the manifest says (a run's record, for these folders).</summary>
    public string? Parent(string path) => File.Exists(Path.Combine(path, "parent.txt")) ? File.ReadAllText(Path.Combine(path, "parent.txt")) : null;
}

public abstract class ModelRegistryTests(TestDatabases databases) : IDisposable
{
    readonly string? connection = databases.NewConnection();
    protected readonly string directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));

    protected ModelRegistry OpenRegistry(ICheckpointReader checkpoints) => ModelRegistry.Open(PlatformDatabase.Open(directory, connection, null), checkpoints);

    /// <summary>Runs SQL on the registry's database, as someone with its owner's rights would.</summary>
    void Sql(string sql)
    {
        SqliteConnection.ClearAllPools();
        using DbConnection other = connection is null ? new SqliteConnection($"Data Source={Path.Combine(directory, PlatformDatabase.FileName)}") : new NpgsqlConnection(connection);
        other.Open();
        using var command = other.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    protected string Checkpoint(string name, string manifest = "{}")
    {
        var folder = Path.Combine(directory, name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "manifest.json"), manifest);
        return folder;
    }

    [Theory]
    [InlineData("shk", "shk", null, null)]
    [InlineData("shk:3", "shk", 3, null)]
    [InlineData("gpt2-small_v1.5@production", "gpt2-small_v1.5", null, "production")]
    public void References_name_the_latest_a_version_or_an_alias(string text, string name, int? version, string? alias)
    {
        var reference = ModelReference.Parse(text);
        Assert.Equal(new ModelReference(name, version, alias), reference);
        Assert.Equal(text, reference.ToString());
    }

    [Theory]
    [InlineData("runs/shk")]
    [InlineData("two words")]
    [InlineData("shk:0")]
    [InlineData("shk:v2")]
    [InlineData("shk@")]
    [InlineData("shk@1")]
    [InlineData("shk:1@production")]
    [InlineData("..")]
    [InlineData("")]
    [InlineData("-shk")]
    [InlineData("_shk")]
    [InlineData(".shk")]
    [InlineData("shk@-production")]
    [InlineData("shk@.production")]
    public void What_is_no_reference_is_refused_in_one_line(string text)
    {
        var error = Assert.Throws<TrustUserException>(() => ModelReference.Parse(text));
        Assert.DoesNotContain('\n', error.Message);
        Assert.False(ModelReference.TryParse(text, out _));
    }

    /// <summary>A version records its lineage, the version its run started from, as registration
    /// found it (before a copy, which has no run around it): kept, listed and audited.</summary>
    [Fact]
    public void A_version_records_the_parent_its_run_started_from_and_keeps_it_through_a_copy()
    {
        var registry = OpenRegistry(new ManifestFolders());
        registry.Register(Checkpoint("base"), "chat", null, "production", "cli:test");
        var tuned = Checkpoint("tuned", """{"tuned": 1}""");
        File.WriteAllText(Path.Combine(tuned, "parent.txt"), "chat:1");
        registry.Register(tuned, "chat", null, null, "cli:test");
        registry.Register(tuned, "chat-copy", null, null, "cli:test", copy: true);

        var reopened = OpenRegistry(new ManifestFolders());
        Assert.Equal([("chat", 1, null), ("chat", 2, "chat:1"), ("chat-copy", 1, "chat:1")], reopened.List().Select(v => (v.Name, v.Version, v.Parent)));
        Assert.Equal("chat:1", reopened.Find(ModelReference.Parse("chat-copy")).Parent);
    }

    /// <summary>A folder is a registered version where the version refers to it (however the path
    /// is written: relative, a trailing slash) and it still holds the files registered (the manifest's
    /// hash): a job from it records the version, its folder and manifest as a reference's would.
    /// Saved again, or its files copied elsewhere, it is a folder of no version.</summary>
    [Fact]
    public void A_folder_is_the_version_that_refers_to_it_while_it_holds_the_files_registered()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var folder = Checkpoint("base", """{"v": 1}""");
        var version = registry.Register(folder, "chat", null, null, "cli:test");
        var copy = Checkpoint("copy", """{"v": 1}""");
        Assert.Equal("chat:1", registry.VersionAt(folder + Path.DirectorySeparatorChar)?.Reference);
        Assert.Equal("chat:1", registry.VersionAt(Path.GetRelativePath(Environment.CurrentDirectory, folder), version.Checkpoint.ManifestSha256)?.Reference);
        Assert.Null(registry.VersionAt(copy));
        var job = registry.WithFolderVersion(new Jobs.TrainArguments(null, "/data", "/runs/ft", [], InitFrom: folder + Path.DirectorySeparatorChar));
        Assert.Equal((version.Checkpoint.Directory, "chat:1", version.Checkpoint.ManifestSha256), (job.InitFrom, job.InitFromVersion, job.InitFromManifest));

        File.WriteAllText(Path.Combine(folder, "manifest.json"), """{"v": 2}""");
        Assert.Null(registry.VersionAt(folder));
        Assert.Null(registry.WithFolderVersion(new Jobs.TrainArguments(null, "/data", "/runs/ft", [], InitFrom: folder)).InitFromVersion);
    }

    /// <summary>A folder reached through a symbolic link (to the folder itself, or to a folder above
    /// it) is the version's folder too, and so is a version registered through a link, found from the
    /// folder it leads to: folders were compared as written, and a run started from the link
    /// recorded no parent. A link to a copy of the files is still a folder of no version.</summary>
    [Fact]
    public void A_folder_reached_through_a_symbolic_link_is_the_version_that_refers_to_it()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var folder = Checkpoint("base", """{"v": 1}""");
        var version = registry.Register(folder, "chat", null, null, "cli:test");
        var linked = Directory.CreateSymbolicLink(Path.Combine(directory, "latest"), folder).FullName;
        var above = Directory.CreateSymbolicLink(Path.Combine(directory, "home"), directory).FullName;
        foreach (var path in new[] { linked, linked + Path.DirectorySeparatorChar, Path.Combine(above, "base"), Path.Combine(above, "latest") })
        {
            Assert.Equal("chat:1", registry.VersionAt(path)?.Reference);
            Assert.Equal("chat:1", registry.VersionAt(path, version.Checkpoint.ManifestSha256)?.Reference);
            var job = registry.WithFolderVersion(new Jobs.TrainArguments(null, "/data", "/runs/ft", [], InitFrom: path));
            Assert.Equal((version.Checkpoint.Directory, "chat:1"), (job.InitFrom, job.InitFromVersion));
        }
        var copy = Checkpoint("copy", """{"v": 1}""");
        Assert.Null(registry.VersionAt(Directory.CreateSymbolicLink(Path.Combine(directory, "to-copy"), copy).FullName));

        // Registered through a link: the folder it leads to is that version.
        var other = Checkpoint("other", """{"v": 2}""");
        registry.Register(Directory.CreateSymbolicLink(Path.Combine(directory, "to-other"), other).FullName, "other", null, null, "cli:test");
        Assert.Equal("other:1", registry.VersionAt(other)?.Reference);
    }

    [Fact]
    public void A_name_past_64_characters_or_outside_the_charset_is_not_registered()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var path = Checkpoint("a");
        Assert.Contains("1-64 letters, digits", Assert.Throws<TrustUserException>(() => registry.Register(path, new string('a', 65), null, null, "t")).Message);
        Assert.Contains("not a valid model name", Assert.Throws<TrustUserException>(() => registry.Register(path, "shk;drop", null, null, "t")).Message);
        Assert.Equal(1, registry.Register(path, new string('a', 64), null, null, "t").Version);
    }

    [Fact]
    public void An_unknown_name_says_where_to_see_the_registered_ones()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var error = Assert.Throws<TrustUserException>(() => registry.Find(ModelReference.Parse("nope")));
        Assert.True(error.NotFound);
        Assert.Equal("no model named 'nope' is registered; see the registered names with `stratus models list`", error.Message);
        registry.Register(Checkpoint("a"), "shk", null, null, "t");
        Assert.StartsWith("model 'shk' has no version 7; see its versions", Assert.Throws<TrustUserException>(() => registry.Find(ModelReference.Parse("shk:7"))).Message);
    }

    [Fact]
    public void Changing_a_version_or_alias_that_is_not_there_is_not_found_for_a_known_name_and_an_unknown_one()
    {
        var registry = OpenRegistry(new ManifestFolders());
        registry.Register(Checkpoint("a"), "shk", null, null, "t");
        // Each verb finds the version or alias missing inside its write transaction, where the
        // message's own query must run too.
        var errors = new[]
        {
            Assert.Throws<TrustUserException>(() => registry.SetAlias("shk", 9, "production", "t")),
            Assert.Throws<TrustUserException>(() => registry.RemoveAlias("shk", "production", "t")),
            Assert.Throws<TrustUserException>(() => registry.Delete("shk", 9, "t")),
            Assert.Throws<TrustUserException>(() => registry.SetAlias("nope", 1, "production", "t")),
            Assert.Throws<TrustUserException>(() => registry.RemoveAlias("nope", "production", "t")),
            Assert.Throws<TrustUserException>(() => registry.Delete("nope", 1, "t")),
        };
        Assert.All(errors, error => Assert.True(error.NotFound));
        Assert.Equal([
            "model 'shk' has no version 9; see its versions and aliases with `stratus models show shk` or `stratus models list --name shk`",
            "model 'shk' has no alias 'production'; see its versions and aliases with `stratus models show shk` or `stratus models list --name shk`",
            "model 'shk' has no version 9; see its versions and aliases with `stratus models show shk` or `stratus models list --name shk`",
            "no model named 'nope' is registered; see the registered names with `stratus models list`",
            "no model named 'nope' is registered; see the registered names with `stratus models list`",
            "no model named 'nope' is registered; see the registered names with `stratus models list`",
        ], errors.Select(error => error.Message));
    }

    [Fact]
    public void A_version_is_immutable_in_the_database()
    {
        var registry = OpenRegistry(new ManifestFolders());
        registry.Register(Checkpoint("a"), "shk", null, null, "t");
        Assert.Contains("immutable", Assert.ThrowsAny<DbException>(() => Sql("UPDATE model_versions SET checkpoint = '/elsewhere'")).Message);
    }

    string Copies => Path.Combine(directory, ModelRegistry.CopiesFolder);

    /// <summary>Saves a "checkpoint" again as Core's Checkpoint.Save does: a new folder renamed
    /// over the old one, whose files are removed, not rewritten.</summary>
    void SaveAgain(string folder, string manifest)
    {
        var temporary = folder + ".tmp";
        Directory.CreateDirectory(temporary);
        File.WriteAllText(Path.Combine(temporary, "manifest.json"), manifest);
        File.WriteAllText(Path.Combine(temporary, "model.safetensors"), manifest + " weights");
        Directory.Move(folder, folder + ".old");
        Directory.Move(temporary, folder);
        Directory.Delete(folder + ".old", recursive: true);
    }

    [Fact]
    public void A_copied_version_outlives_its_folder_saved_again_and_goes_with_its_version()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var run = Checkpoint("run", """{"step": 1}""");
        File.WriteAllText(Path.Combine(run, "model.safetensors"), "step 1 weights");
        var copied = registry.Register(run, "shk", null, null, "t", copy: true);
        var inPlace = registry.Register(run, "shk", null, null, "t");
        Assert.Equal((true, Path.Combine(Copies, "shk", "1")), (copied.IsCopy, copied.Checkpoint.Directory));
        Assert.False(inPlace.IsCopy);
        Assert.Equal(["manifest.json", "model.safetensors"], Directory.EnumerateFiles(copied.Checkpoint.Directory).Select(Path.GetFileName).Order());
        Assert.Equal(["shk"], Directory.EnumerateFileSystemEntries(Copies).Select(Path.GetFileName));

        SaveAgain(run, """{"step": 2}""");
        Assert.Null(registry.Check(registry.Find(ModelReference.Parse("shk:1"))));
        Assert.Equal("step 1 weights", File.ReadAllText(Path.Combine(copied.Checkpoint.Directory, "model.safetensors")));
        Assert.NotNull(registry.Check(registry.Find(ModelReference.Parse("shk:2"))));

        registry.Delete("shk", 1, "t");
        Assert.False(Directory.Exists(copied.Checkpoint.Directory));
        // A folder of the user's stays.
        registry.Delete("shk", 2, "t");
        Assert.True(File.Exists(Path.Combine(run, "model.safetensors")));
    }

    /// <summary>A queued job reads the version it fine-tunes from when it starts: deleting that
    /// version first is refused, naming the job, until the job has ended; another version's jobs
    /// (chat:1 is not chat:10) do not hold it.</summary>
    [Fact]
    public void A_version_a_job_not_ended_fine_tunes_from_is_not_deleted_until_the_job_ends()
    {
        var registry = OpenRegistry(new ManifestFolders());
        for (var i = 1; i <= 10; i++) registry.Register(Checkpoint($"run{i}"), "shk", null, null, "t");
        var database = PlatformDatabase.Open(directory, connection, null);
        var jobs = new Jobs.SqlJobStore(database, new SqlAuditLog(database));
        Jobs.Job FineTune(string id, string version) => new(id, Jobs.Job.TrainKind,
            new Jobs.TrainArguments(null, "/data", "/runs/" + id, [], InitFrom: Path.Combine(directory, "run1"), InitFromVersion: version),
            Jobs.LocalJobExecutor.ExecutorName, null, Jobs.JobState.Queued, null, null, null, null, DateTimeOffset.UtcNow, null, null, null, "cli:test", "/runs/" + id + ".log");
        jobs.Insert(FineTune("job-00000001", "shk:1"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        jobs.Insert(FineTune("job-00000002", "shk:10"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));

        var refused = Assert.Throws<TrustUserException>(() => registry.Delete("shk", 1, "t"));
        Assert.True(refused.Conflict);
        Assert.Equal("model shk:1 is what job job-00000001 fine-tunes from, not ended yet; wait for it (stratus jobs show job-00000001) or cancel it first", refused.Message);
        Assert.NotNull(registry.Find(ModelReference.Parse("shk:1")));

        Assert.True(jobs.RecordEnd("job-00000001", new Jobs.JobEnd(Jobs.JobState.Cancelled, null, "cancelled")));
        registry.Delete("shk", 1, "t");
        Assert.Throws<TrustUserException>(() => registry.Find(ModelReference.Parse("shk:1")));
        Assert.Contains("job job-00000002 fine-tunes from", Assert.Throws<TrustUserException>(() => registry.Delete("shk", 10, "t")).Message);
    }

    [Fact]
    public void A_copy_another_version_refers_to_is_not_removed_with_its_own_version()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var copied = registry.Register(Checkpoint("run"), "shk", null, null, "t", copy: true);
        var sharing = registry.Register(copied.Checkpoint.Directory, "other", null, null, "t");
        Assert.False(sharing.IsCopy);
        registry.Delete("shk", 1, "t");
        Assert.True(File.Exists(Path.Combine(copied.Checkpoint.Directory, "manifest.json")));
        Assert.Null(registry.Check(sharing));
    }

    [Fact]
    public void A_register_that_died_mid_copy_leaves_nothing_that_blocks_the_name()
    {
        var registry = OpenRegistry(new ManifestFolders());
        // What registers killed at each step leave: a folder being filled (its lock released by
        // the system), one whose lock file was not made yet, and a copy renamed into place whose
        // transaction never committed (version 1 was never given).
        Directory.CreateDirectory(Path.Combine(Copies, ".incoming-killed"));
        File.WriteAllText(Path.Combine(Copies, ".incoming-killed.lock"), "");
        Directory.CreateDirectory(Path.Combine(Copies, ".incoming-unlocked"));
        Checkpoint(Path.Combine(ModelRegistry.CopiesFolder, "shk", "1"), "half");
        // And one still copying, which is left to its register.
        Directory.CreateDirectory(Path.Combine(Copies, ".incoming-live"));
        using (new FileStream(Path.Combine(Copies, ".incoming-live.lock"), FileMode.Create, FileAccess.ReadWrite, FileShare.None))
        {
            var version = registry.Register(Checkpoint("run", """{"whole": true}"""), "shk", null, null, "t", copy: true);
            Assert.Equal(1, version.Version);
            Assert.Equal("""{"whole": true}""", File.ReadAllText(Path.Combine(version.Checkpoint.Directory, "manifest.json")));
            Assert.Null(registry.Check(version));
        }
        Assert.Equal([".incoming-live", ".incoming-live.lock", "shk"], Directory.EnumerateFileSystemEntries(Copies).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_copy_that_does_not_verify_registers_nothing_and_leaves_no_folder()
    {
        var registry = OpenRegistry(new ManifestFolders(refuse: path => path.StartsWith(Copies, StringComparison.Ordinal)));
        var run = Checkpoint("run");
        var error = Assert.Throws<TrustUserException>(() => registry.Register(run, "shk", null, null, "t", copy: true));
        Assert.StartsWith($"{run} changed while it was copied (checkpoint ", error.Message);
        Assert.EndsWith("; register it again", error.Message);
        Assert.Empty(registry.List());
        Assert.Empty(Directory.EnumerateFileSystemEntries(Copies));
    }

    [Fact]
    public void A_linked_file_of_the_checkpoint_is_copied_as_the_file_it_leads_to_not_as_the_link()
    {
        var registry = OpenRegistry(new ManifestFolders());
        var run = Checkpoint("run");
        // Weights kept elsewhere (another disk, a shared store) and linked into the run.
        var weights = Path.Combine(directory, "store", "weights.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(weights)!);
        File.WriteAllText(weights, "step 1 weights");
        File.CreateSymbolicLink(Path.Combine(run, "model.safetensors"), weights);
        var copied = registry.Register(run, "shk", null, null, "t", copy: true);
        var file = new FileInfo(Path.Combine(copied.Checkpoint.Directory, "model.safetensors"));
        Assert.Null(file.LinkTarget);
        // The store rewritten, or gone: the registry's copy keeps what was registered.
        File.Delete(weights);
        Assert.Equal("step 1 weights", File.ReadAllText(file.FullName));
    }

    [Fact]
    public void A_link_put_in_place_of_a_name_s_folder_neither_receives_copies_nor_has_its_target_deleted()
    {
        var registry = OpenRegistry(new ManifestFolders());
        registry.Register(Checkpoint("run"), "shk", null, null, "t", copy: true);
        // Someone who may write the data directory points models/shk at a folder of their choosing.
        var elsewhere = Path.Combine(directory, "elsewhere");
        Directory.CreateDirectory(Path.Combine(elsewhere, "1"));
        File.WriteAllText(Path.Combine(elsewhere, "1", "precious"), "kept");
        Directory.Delete(Path.Combine(Copies, "shk"), recursive: true);
        Directory.CreateSymbolicLink(Path.Combine(Copies, "shk"), elsewhere);

        registry.Delete("shk", 1, "t");
        Assert.Equal("kept", File.ReadAllText(Path.Combine(elsewhere, "1", "precious")));
        var error = Assert.Throws<TrustUserException>(() => registry.Register(Checkpoint("run"), "shk", null, null, "t", copy: true));
        Assert.StartsWith($"{Path.Combine(Copies, "shk")} is a symbolic link", error.Message);
        Assert.Equal(["1"], Directory.EnumerateFileSystemEntries(elsewhere).Select(Path.GetFileName));
        Assert.Empty(registry.List());
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }
}

public sealed class ModelRegistryOnSqliteTests() : ModelRegistryTests(TestDatabases.Sqlite)
{
    /// <summary>Schema version 3 as Stratus before the registry left it: keys (with rotation's
    /// columns) and an audit chain.</summary>
    [Fact]
    public async Task A_database_of_schema_version_3_gains_the_registry_and_keeps_its_keys_and_audit_chain()
    {
        Directory.CreateDirectory(directory);
        var (id, secret) = ApiKeyFormat.Generate();
        var salt = ApiKeyFormat.NewSalt();
        var time = new DateTimeOffset(2025, 6, 1, 0, 0, 0, TimeSpan.Zero);
        const string Details = """{"key_id":"x"}""";
        var hash = AuditChain.ComputeHash(AuditChain.GenesisHash, 1, time, "cli:old", AuditActions.KeyCreated, Details);
        using (var old = new SqliteConnection($"Data Source={Path.Combine(directory, PlatformDatabase.FileName)}"))
        {
            old.Open();
            using var command = old.CreateCommand();
            command.CommandText = """
                CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL, scopes INTEGER NOT NULL,
                    rpm INTEGER NOT NULL, tpm INTEGER NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT,
                    expires_at TEXT, previous_salt BLOB, previous_hash BLOB, previous_expires_at TEXT);
                CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
                CREATE TABLE blocklists (name TEXT PRIMARY KEY COLLATE NOCASE, definition TEXT NOT NULL, updated_at TEXT NOT NULL);
                CREATE TABLE safety_policies (deployment TEXT PRIMARY KEY, policy TEXT NOT NULL, updated_at TEXT NOT NULL);
                CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, details TEXT NOT NULL, hash TEXT NOT NULL);
                CREATE TABLE usage_daily (key_id TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL,
                    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, PRIMARY KEY (key_id, day, model));
                INSERT INTO api_keys (id, name, salt, hash, scopes, rpm, tpm, created_at) VALUES ($id, 'old', $salt, $hash, 1, 5, 0, '2025-06-01T00:00:00.0000000Z');
                INSERT INTO audit_log VALUES (1, '2025-06-01T00:00:00.0000000Z', 'cli:old', 'key.created', $details, $chain);
                PRAGMA user_version = 3;
                """;
            command.Parameters.AddWithValue("$id", id);
            command.Parameters.AddWithValue("$salt", salt);
            command.Parameters.AddWithValue("$hash", ApiKeyFormat.Hash(salt, secret));
            command.Parameters.AddWithValue("$details", Details);
            command.Parameters.AddWithValue("$chain", hash);
            command.ExecuteNonQuery();
        }
        SqliteConnection.ClearAllPools();

        var registry = OpenRegistry(new ManifestFolders());
        Assert.Equal(1, registry.Register(Checkpoint("a"), "shk", null, "production", "cli:new").Version);
        var stores = PlatformStores.Open(directory);
        Assert.Equal("old", (await stores.KeyService().AuthenticateAsync(secret)).Key!.Name);
        var verification = await stores.Audit.VerifyAsync();
        Assert.True(verification.Valid, verification.Problem);
        Assert.Equal(3, verification.EntriesChecked);
        Assert.Equal([AuditActions.KeyCreated, AuditActions.ModelRegistered, AuditActions.ModelAliasSet],
            (await stores.Audit.ReadAsync(new AuditQuery())).Select(e => e.Action));
    }
}

public sealed class ModelRegistryOnPostgresTests(PostgresDatabase postgres) : ModelRegistryTests(new TestDatabases(postgres)), IClassFixture<PostgresDatabase>;
