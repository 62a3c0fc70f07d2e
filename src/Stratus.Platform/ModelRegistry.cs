// The model registry, in the manner of MLflow's and Azure ML's: names for checkpoints, each name
// with versions numbered 1, 2, 3... (never reused, even after a delete) and aliases such as
// `production` that point at one version and move in one statement. A version refers to its
// checkpoint folder where it lies, as MLflow refers to a run's artifacts, or, registered with
// --copy, to the registry's own copy of it in the data directory (ModelCopies), as MLflow's
// log_model copies them into its store; either way it records the hash of its manifest:
// resolving a version reads the checkpoint again and refuses it when its files changed or
// vanished since registration. A version also keeps its parent, the version its run started from
// (train --init-from NAME@ALIAS, or the version's folder holding the files it was registered with). Every change is stored with its audit entry in one transaction
// (tables registered_models, model_versions, model_aliases of the platform database).
using System.Data.Common;
using System.Globalization;
using System.Text.Json.Nodes;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

/// <summary>An alias set on a version: the version it pointed at before (null: it is new).</summary>
public sealed record ModelAliasChange(ModelVersion Version, string Alias, int? PreviousVersion);

public sealed class ModelRegistry
{
    /// <summary>The command that lists the registered names, for errors to point at.</summary>
    public const string ListCommand = "stratus models list";
    /// <summary>The data directory's folder of the registry's copies (`models register --copy`).</summary>
    public const string CopiesFolder = "models";
    /// <summary>The migration that adds each version's parent (<see cref="ModelVersion.Parent"/>), the
    /// same SQL on SQLite and PostgreSQL.</summary>
    internal const string ParentMigration = "ALTER TABLE model_versions ADD COLUMN parent TEXT;";

    readonly PlatformDatabase database;
    readonly SqlAuditLog audit;
    readonly ICheckpointReader checkpoints;
    readonly TimeProvider clock;
    readonly ModelCopies copies;

    ModelRegistry(PlatformDatabase database, ICheckpointReader checkpoints, TimeProvider? time)
    {
        this.database = database;
        copies = new ModelCopies(Path.GetFullPath(database.DataDirectory));
        audit = new SqlAuditLog(database, time);
        this.checkpoints = checkpoints;
        clock = time ?? TimeProvider.System;
    }

    /// <summary>The registry in a data directory's database (created or migrated as
    /// <see cref="PlatformDatabase.Open"/> does).</summary>
    public static ModelRegistry Open(string dataDir, ICheckpointReader checkpoints, TimeProvider? time = null) =>
        new(PlatformDatabase.Open(dataDir), checkpoints, time);

    public static ModelRegistry Open(PlatformDatabase database, ICheckpointReader checkpoints, TimeProvider? time = null) =>
        new(database, checkpoints, time);

    /// <summary>The registry of a data directory for a lookup that only reads (<see cref="Locate"/>):
    /// null where the data directory holds no database, which then registers no names and is not
    /// created for the question (a train --init-from of a folder made ~/.local/share/stratus/stratus.db).</summary>
    /// <exception cref="PlatformStorageException">The database cannot be used.</exception>
    /// <exception cref="TrustUserException">The database is another application's or from a newer Stratus.</exception>
    public static ModelRegistry? OpenExisting(string dataDir, ICheckpointReader checkpoints) =>
        PlatformDatabase.Exists(dataDir) ? Open(dataDir, checkpoints) : null;

    /// <summary>Registers a run folder's checkpoints/best (else last), or a checkpoint folder, as
    /// the next version of <paramref name="name"/>, optionally with an alias pointing at it.</summary>
    /// <param name="copy">Keep the registry's own copy of the checkpoint (hard links where the
    /// file system allows), so that the version outlives its run training on; else refer to
    /// the folder where it is.</param>
    /// <exception cref="TrustUserException">A bad name or alias, or no verified checkpoint there.</exception>
    public ModelVersion Register(string path, string name, string? description, string? alias, string actor, bool copy = false)
    {
        ModelReference.ValidateName(name);
        if (alias is not null) ModelReference.ValidateAlias(alias);
        // Read from the run where it is, before a copy, which has no run around it.
        var parent = checkpoints.Parent(path);
        // Read (hashed) before the write lock is taken: a large checkpoint takes seconds to read.
        if (!copy) return Insert(checkpoints.Read(path), parent, copiedFrom: null, incoming: null, name, description, alias, actor);
        var source = checkpoints.Locate(path);
        using var incoming = copies.Begin();
        RegisteredCheckpoint copied;
        try
        {
            incoming.Place(source.Directory, source.Files);
            copied = checkpoints.Read(incoming.Directory);
        }
        // The run saved the checkpoint again while it was copied: some files of each, or a file
        // gone with the folder it replaced.
        catch (Exception e) when (e is TrustUserException or FileNotFoundException or DirectoryNotFoundException)
        {
            throw new TrustUserException($"{source.Directory} changed while it was copied ({e.Message.TrimEnd('.')}); register it again", e);
        }
        return Insert(copied, parent, source.Directory, incoming, name, description, alias, actor);
    }

    /// <summary>Adds the version: a checkpoint where it is, or one placed in
    /// <paramref name="incoming"/>, which is moved to the version's folder in the transaction
    /// (so that a crash leaves either both or neither).</summary>
    ModelVersion Insert(RegisteredCheckpoint checkpoint, string? parent, string? copiedFrom, ModelCopies.Incoming? incoming, string name, string? description, string? alias, string actor)
    {
        var now = clock.GetUtcNow();
        var version = database.Write(transaction =>
        {
            var connection = transaction.Connection!;
            Run(connection, transaction, "INSERT INTO registered_models (name, last_version) VALUES (@name, 1) ON CONFLICT (name) DO UPDATE SET last_version = registered_models.last_version + 1",
                ("@name", name));
            var number = Convert.ToInt32(Scalar(connection, transaction, "SELECT last_version FROM registered_models WHERE name = @name", ("@name", name)), CultureInfo.InvariantCulture);
            var directory = checkpoint.Directory;
            if (incoming is not null)
            {
                copies.NameFolder(name);
                directory = copies.FolderOf(name, number);
                // A number is given once: a folder there is what a register that died after its
                // rename, before its commit, left, and no version refers to. Compared without case:
                // where the file system ignores it (macOS, Windows), SHK's folder is shk's.
                if (Scalar(connection, transaction, $"SELECT 1 FROM model_versions WHERE {database.Dialect.SameIgnoringCase("checkpoint", "@checkpoint")}", ("@checkpoint", directory)) is null)
                    ModelCopies.Remove(directory);
                incoming.MoveTo(directory);
            }
            var summary = checkpoint.Summary;
            Run(connection, transaction, """
                INSERT INTO model_versions (name, version, checkpoint, manifest_sha256, architecture, parameters, context_length, tokenizer, description, created_at, created_by, parent)
                VALUES (@name, @version, @checkpoint, @hash, @architecture, @parameters, @context, @tokenizer, @description, @created, @by, @parent)
                """,
                ("@name", name), ("@version", number), ("@checkpoint", directory), ("@hash", checkpoint.ManifestSha256), ("@architecture", summary.Architecture),
                ("@parameters", summary.Parameters), ("@context", summary.ContextLength), ("@tokenizer", summary.Tokenizer), ("@description", description),
                ("@created", FormatTime(now)), ("@by", actor), ("@parent", parent));
            var details = new JsonObject
            {
                ["name"] = name,
                ["version"] = number,
                ["checkpoint"] = directory,
                ["manifest_sha256"] = checkpoint.ManifestSha256,
            };
            if (copiedFrom is not null) details["copied_from"] = copiedFrom;
            if (parent is not null) details["parent"] = parent;
            audit.Append(transaction, new AuditRecord(actor, AuditActions.ModelRegistered, details));
            if (alias is not null) MoveAlias(transaction, name, number, alias, actor);
            return number;
        });
        return Find(new ModelReference(name, version));
    }

    /// <summary>Every version, of one name or all, by name then version.</summary>
    public IReadOnlyList<ModelVersion> List(string? name = null) => database.Use(connection =>
    {
        if (name is not null) ModelReference.ValidateName(name);
        return Versions(connection, null, name is null ? "" : "WHERE v.name = @name", ("@name", name));
    });

    /// <summary>The version a reference names, as registered (its files are not read: see
    /// <see cref="Resolve"/>).</summary>
    /// <exception cref="TrustUserException">No such name, version or alias (NotFound).</exception>
    public ModelVersion Find(ModelReference reference) => database.Use(connection =>
    {
        if (reference.Alias is { } alias)
        {
            var found = Versions(connection, null, "WHERE v.name = @name AND v.version = (SELECT version FROM model_aliases WHERE name = @name AND alias = @alias)",
                ("@name", reference.Name), ("@alias", alias));
            return found.Count > 0 ? found[0] : throw Missing(connection, null, reference, $"model '{reference.Name}' has no alias '{alias}'");
        }
        var versions = Versions(connection, null, reference.Version is null
            ? "WHERE v.name = @name AND v.version = (SELECT MAX(version) FROM model_versions WHERE name = @name)"
            : "WHERE v.name = @name AND v.version = @version", ("@name", reference.Name), ("@version", reference.Version));
        return versions.Count > 0 ? versions[0] : throw Missing(connection, null, reference, $"model '{reference.Name}' has no version {reference.Version}");
    });

    /// <summary>The version a reference names, its checkpoint read again and found unchanged.</summary>
    /// <exception cref="TrustUserException">No such version, or its files changed or vanished.</exception>
    public ModelVersion Resolve(ModelReference reference)
    {
        var version = Find(reference);
        if (Check(version) is { } problem) throw new TrustUserException(problem);
        return version;
    }

    /// <summary>What a model given to a verb names, by the one rule the CLI's verbs share (serve,
    /// train, jobs submit; POST /api/jobs takes a relative value only as a reference, never a folder
    /// in the server's working directory): a path that exists is that path, whatever it reads as (<paramref name="warn"/> is told, with what the
    /// verb does with the folder, <paramref name="use"/>, when it also names a registered version);
    /// else a reference (NAME, NAME:VERSION, NAME@ALIAS) is its version's checkpoint, its files
    /// checked against the manifest it was registered with; anything else is a path, for its reader
    /// to refuse. <paramref name="registry"/> is opened only for what reads as a reference, and is
    /// null where no database exists (<see cref="OpenExisting"/>: no names are registered). For a
    /// folder the registry is asked only for the warning, so one that cannot be read (a newer
    /// Stratus's, a damaged file) does not stop the folder's use: the warning says so instead.</summary>
    /// <exception cref="TrustUserException">Neither a folder nor a registered version, or a version
    /// whose files changed.</exception>
    public static ModelSource Locate(string pathOrReference, Lazy<ModelRegistry?> registry, string use, Action<string>? warn = null)
    {
        if (!ModelReference.TryParse(pathOrReference, out var reference)) return new ModelSource(pathOrReference, null);
        if (Directory.Exists(pathOrReference) || File.Exists(pathOrReference))
        {
            if (warn is not null && Shadowed(registry, pathOrReference, reference!, use) is { } shadowed) warn(shadowed);
            return new ModelSource(pathOrReference, null);
        }
        try
        {
            var version = (registry.Value ?? throw NotRegistered(reference!.Name)).Resolve(reference!);
            return new ModelSource(version.Checkpoint.Directory, version);
        }
        catch (TrustUserException e) when (e.NotFound)
        {
            throw new TrustUserException(s => $"{pathOrReference} is not a folder, and {e.MessageOn(s)}", e);
        }
    }

    /// <summary>The registered version a checkpoint given as a folder is: one whose checkpoint is
    /// that folder (<paramref name="checkpointDirectory"/>, as <see cref="ICheckpointReader.Read"/>
    /// names it, however it is written: see <see cref="Folder"/>) and whose manifest hash is
    /// <paramref name="manifestSha256"/>, the files it was registered with (of several, the first by
    /// name and number); null where none is. A run started from it records it as its parent, as one
    /// started from the version's reference does.</summary>
    public ModelVersion? VersionAt(string checkpointDirectory, string manifestSha256)
    {
        var folder = new Folder(checkpointDirectory);
        return database.Use(connection => Versions(connection, null, "WHERE v.manifest_sha256 = @hash", ("@hash", manifestSha256)))
            .FirstOrDefault(version => folder.Is(version.Checkpoint.Directory));
    }

    /// <summary><see cref="VersionAt(string, string)"/> of the checkpoint a run or checkpoint folder
    /// means, hashed only where a version refers to its folder (a job's submission, which then records
    /// that version as a reference's submission does).</summary>
    /// <exception cref="TrustUserException">The folder is missing, holds no checkpoint, or one whose
    /// files do not match its manifest.</exception>
    public ModelVersion? VersionAt(string path)
    {
        var directory = checkpoints.Locate(path).Directory;
        var folder = new Folder(directory);
        var registered = database.Use(connection =>
        {
            using var command = Command(connection, "SELECT DISTINCT checkpoint FROM model_versions");
            using var reader = command.ExecuteReader();
            while (reader.Read())
                if (folder.Is(reader.GetString(0))) return true;
            return false;
        });
        return registered ? VersionAt(directory, checkpoints.Read(path).ManifestSha256) : null;
    }

    /// <summary>A checkpoint folder as a version records it: absolute, without a trailing separator.</summary>
    static string AsRegistered(string directory) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));

    /// <summary>A folder given to <see cref="VersionAt(string)"/>, compared with the folders versions
    /// record: the same where written alike (absolute, `.` and `..` taken, no trailing separator), or
    /// where both lead to one folder once links are followed (a run started from a link to a version's
    /// folder, or one through a linked parent such as a home folder on another disk). The links are
    /// followed only where the text differs, its own once.</summary>
    sealed class Folder(string directory)
    {
        readonly string written = AsRegistered(directory);
        readonly Lazy<string?> real = new(() => RealPath.Of(directory));

        public bool Is(string registered) => registered == written || RealPath.Of(registered) is { } resolved && resolved == real.Value;
    }

    /// <summary>A job's <paramref name="arguments"/>, where they start from a folder that is a
    /// registered version's checkpoint with the files it was registered with, as a submission by
    /// that version's reference records them: the version, its checkpoint folder and its manifest.
    /// The run records the version as its parent, and the job's training refuses the folder if its
    /// run saved it again meanwhile.</summary>
    public Jobs.TrainArguments WithFolderVersion(Jobs.TrainArguments arguments) =>
        arguments is { InitFrom: { } folder, InitFromVersion: null } && VersionAt(folder) is { } version
            ? arguments with { InitFrom = version.Checkpoint.Directory, InitFromVersion = version.Reference, InitFromManifest = version.Checkpoint.ManifestSha256 }
            : arguments;

    /// <summary>One line saying that <paramref name="given"/>, taken as a folder, also names a
    /// registered version, and how to name each; null where it names none.</summary>
    static string? Shadowed(Lazy<ModelRegistry?> registry, string given, ModelReference reference, string use)
    {
        ModelVersion version;
        try
        {
            if (registry.Value is not { } registered) return null;
            version = registered.Find(reference);
        }
        catch (TrustUserException e) when (e.NotFound)
        {
            return null;
        }
        // A registry this Stratus cannot read (a newer one's schema, another application's file, a
        // row edited by hand) or cannot reach: the folder is what the rule picks in any case.
        catch (Exception e) when (e is TrustUserException or PlatformStorageException or DbException or FormatException or InvalidCastException)
        {
            return $"{given} is a folder here, and the model registry could not be read to check whether it also names a registered version ({e.Message.TrimEnd('.')}); {use} the folder";
        }
        var others = new[] { version.Reference }.Concat(version.Aliases.Select(alias => $"{version.Name}@{alias}")).Where(other => other != given).ToArray();
        return $"{given} is a folder here and a registered model's reference ({version.Reference}); {use} the folder. Give ./{given} for the folder, " +
            (others.Length > 0 ? $"or {string.Join(" or ", others)} for the registered version" : "or rename the folder to use the registered version");
    }

    /// <summary>Null when the version's checkpoint still holds the files it was registered with;
    /// else one line naming the version, its folder and what changed.</summary>
    public string? Check(ModelVersion version)
    {
        try
        {
            return checkpoints.Read(version.Checkpoint.Directory).ManifestSha256 == version.Checkpoint.ManifestSha256 ? null : Changed(version);
        }
        catch (TrustUserException e)
        {
            return Changed(version, $"its files changed or vanished since it was registered ({e.Message.TrimEnd('.')})");
        }
    }

    /// <summary>One line naming a version whose checkpoint no longer holds the files it was
    /// registered with, and what to do; <paramref name="what"/> says what changed.</summary>
    public static string Changed(ModelVersion version, string what = "its files changed since it was registered (a new manifest)") =>
        $"model {version.Reference} refers to {version.Checkpoint.Directory}, but {what}; register the checkpoint again as a new version, or use another version";

    /// <summary>Points <paramref name="alias"/> of <paramref name="name"/> at
    /// <paramref name="version"/>, moving it from the version it pointed at.</summary>
    /// <exception cref="TrustUserException">A bad alias, or no such version.</exception>
    public ModelAliasChange SetAlias(string name, int version, string alias, string actor)
    {
        ModelReference.ValidateName(name);
        ModelReference.ValidateAlias(alias);
        var previous = database.Write(transaction =>
        {
            if (Versions(transaction.Connection!, transaction, "WHERE v.name = @name AND v.version = @version", ("@name", name), ("@version", version)).Count == 0)
                throw Missing(transaction.Connection!, transaction, new ModelReference(name, version), $"model '{name}' has no version {version}");
            return MoveAlias(transaction, name, version, alias, actor);
        });
        return new ModelAliasChange(Find(new ModelReference(name, version)), alias, previous);
    }

    /// <summary>Removes an alias; returns the version it pointed at.</summary>
    /// <exception cref="TrustUserException">The name has no such alias (NotFound).</exception>
    public int RemoveAlias(string name, string alias, string actor)
    {
        ModelReference.ValidateName(name);
        ModelReference.ValidateAlias(alias);
        return database.Write(transaction =>
        {
            var connection = transaction.Connection!;
            var version = Scalar(connection, transaction, "DELETE FROM model_aliases WHERE name = @name AND alias = @alias RETURNING version", ("@name", name), ("@alias", alias));
            if (version is null) throw Missing(connection, transaction, new ModelReference(name, Alias: alias), $"model '{name}' has no alias '{alias}'");
            var number = Convert.ToInt32(version, CultureInfo.InvariantCulture);
            audit.Append(transaction, new AuditRecord(actor, AuditActions.ModelAliasRemoved, new JsonObject { ["name"] = name, ["alias"] = alias, ["version"] = number }));
            return number;
        });
    }

    /// <summary>Deletes a version from the registry; its number is not given again. The
    /// registry's own copy of its checkpoint is removed with it (unless another version refers to
    /// that folder); a folder of the user's is left where it is.</summary>
    /// <exception cref="TrustUserException">No such version (NotFound), aliases point at it, or
    /// (Conflict) a job not ended fine-tunes from it.</exception>
    public ModelVersion Delete(string name, int version, string actor)
    {
        ModelReference.ValidateName(name);
        var (deleted, removeCopy) = database.Write(transaction =>
        {
            var connection = transaction.Connection!;
            var found = Versions(connection, transaction, "WHERE v.name = @name AND v.version = @version", ("@name", name), ("@version", version));
            if (found.Count == 0) throw Missing(connection, transaction, new ModelReference(name, version), $"model '{name}' has no version {version}");
            var deleted = found[0];
            if (deleted.Aliases.Count > 0)
                throw new TrustUserException($"model {deleted.Reference} is what {string.Join(", ", deleted.Aliases.Select(a => $"{name}@{a}"))} points at; " +
                    $"move {(deleted.Aliases.Count == 1 ? "that alias" : "those aliases")} to another version, or remove {(deleted.Aliases.Count == 1 ? "it" : "them")}, first");
            // A queued job reads the version's folder when it starts (and refuses one whose checkpoint changed).
            var waiting = Jobs.SqlJobStore.UnfinishedJobsStartingFrom(transaction, deleted.Reference);
            if (waiting.Count > 0)
                throw new TrustUserException(s => $"model {deleted.Reference} is what job{(waiting.Count == 1 ? "" : "s")} {string.Join(", ", waiting)} " +
                    $"fine-tune{(waiting.Count == 1 ? "s" : "")} from, not ended yet; wait for {(waiting.Count == 1 ? "it" : "them")} ({s.Pick($"stratus jobs show {waiting[0]}", $"GET /api/jobs/{waiting[0]}")}) or cancel {(waiting.Count == 1 ? "it" : "them")} first") { Conflict = true };
            Run(connection, transaction, "DELETE FROM model_versions WHERE name = @name AND version = @version", ("@name", name), ("@version", version));
            // A version registered without --copy from the folder of a copy refers to it too
            // (by another case of its name, where the file system ignores case).
            var shared = Scalar(connection, transaction, $"SELECT 1 FROM model_versions WHERE {database.Dialect.SameIgnoringCase("checkpoint", "@checkpoint")}", ("@checkpoint", deleted.Checkpoint.Directory)) is not null;
            // Nor one reached through a link put in place of its name's folder: that leads outside the registry's copies.
            var removeCopy = deleted.IsCopy && !shared && ModelCopies.InNameFolder(deleted.Checkpoint.Directory);
            audit.Append(transaction, new AuditRecord(actor, AuditActions.ModelVersionDeleted, new JsonObject
            {
                ["name"] = name,
                ["version"] = version,
                ["checkpoint"] = deleted.Checkpoint.Directory,
                ["copy_removed"] = removeCopy,
            }));
            return (deleted, removeCopy);
        });
        // After the commit: a crash between the two leaves a folder no version refers to, under a
        // number never given again, rather than a version whose files are gone.
        if (removeCopy) ModelCopies.Remove(deleted.Checkpoint.Directory);
        return deleted;
    }

    /// <summary>Sets or moves an alias in one statement, with its audit entry; returns the
    /// version it pointed at before.</summary>
    int? MoveAlias(DbTransaction transaction, string name, int version, string alias, string actor)
    {
        var connection = transaction.Connection!;
        var before = Scalar(connection, transaction, "SELECT version FROM model_aliases WHERE name = @name AND alias = @alias", ("@name", name), ("@alias", alias));
        int? previous = before is null ? null : Convert.ToInt32(before, CultureInfo.InvariantCulture);
        Run(connection, transaction, """
            INSERT INTO model_aliases (name, alias, version, updated_at) VALUES (@name, @alias, @version, @updated)
            ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at
            """, ("@name", name), ("@alias", alias), ("@version", version), ("@updated", FormatTime(clock.GetUtcNow())));
        audit.Append(transaction, new AuditRecord(actor, AuditActions.ModelAliasSet, new JsonObject
        {
            ["name"] = name,
            ["alias"] = alias,
            ["version"] = version,
            ["previous_version"] = previous,
        }));
        return previous;
    }

    /// <summary>Not found: the name unknown (with where to see the known ones), or the name's
    /// version or alias missing; asked in the transaction of the verb that found it missing, where there is one.</summary>
    static TrustUserException Missing(DbConnection connection, DbTransaction? transaction, ModelReference reference, string what)
    {
        var known = Scalar(connection, transaction, "SELECT 1 FROM model_versions WHERE name = @name LIMIT 1", ("@name", reference.Name)) is not null;
        return known
            ? new TrustUserException(s => $"{what}; see its versions and aliases with {s.Pick($"`stratus models show {reference.Name}` or `{ListCommand} --name {reference.Name}`", $"GET /api/models/{reference.Name}")}") { NotFound = true }
            : NotRegistered(reference.Name);
    }

    static TrustUserException NotRegistered(string name) =>
        new(s => $"no model named '{name}' is registered; see the registered names with {s.Pick($"`{ListCommand}`", "GET /api/models")}") { NotFound = true };

    List<ModelVersion> Versions(DbConnection connection, DbTransaction? transaction, string where, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(connection, $"""
            SELECT v.name, v.version, v.checkpoint, v.manifest_sha256, v.architecture, v.parameters, v.context_length, v.tokenizer, v.description, v.created_at, v.created_by,
                   (SELECT string_agg(alias, @newline) FROM (SELECT alias FROM model_aliases a WHERE a.name = v.name AND a.version = v.version ORDER BY alias) AS ordered),
                   v.parent
            FROM model_versions v {where} ORDER BY v.name, v.version
            """, [.. parameters, ("@newline", "\n")]);
        command.Transaction = transaction;
        using var reader = command.ExecuteReader();
        var versions = new List<ModelVersion>();
        while (reader.Read())
            versions.Add(new ModelVersion(reader.GetString(0), reader.GetInt32(1),
                new RegisteredCheckpoint(reader.GetString(2), reader.GetString(3), new ModelSummary(reader.GetString(4), reader.GetInt64(5), reader.GetInt32(6), reader.GetString(7))),
                reader.IsDBNull(8) ? null : reader.GetString(8), ParseTime(reader.GetString(9)), reader.GetString(10),
                reader.IsDBNull(11) ? [] : reader.GetString(11).Split('\n'),
                IsCopy: reader.GetString(2) == copies.FolderOf(reader.GetString(0), reader.GetInt32(1))) { Parent = reader.IsDBNull(12) ? null : reader.GetString(12) });
        return versions;
    }

    static void Run(DbConnection connection, DbTransaction transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(connection, sql, parameters);
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    static object? Scalar(DbConnection connection, DbTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = Command(connection, sql, parameters);
        command.Transaction = transaction;
        return command.ExecuteScalar() is var value && value is DBNull ? null : value;
    }
}
