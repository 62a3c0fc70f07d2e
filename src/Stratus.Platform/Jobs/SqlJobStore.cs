// The jobs table of the platform database. Each change is one write transaction that reads what it
// changes, so a job's submitter, its supervisor (another process) and a reader that finds its
// processes gone never overwrite each other: an end is recorded once, by whoever comes first, and a
// cancel and the training process's start meet in one order or the other, never missing each other.
using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform.Jobs;

/// <summary>A cancel as recorded: the job, and whether the cancel was its first (a later one, unless
/// forced, sends nothing).</summary>
public sealed record JobCancel(Job Job, bool First);

/// <summary>A page of jobs, and whether more follow it.</summary>
public sealed record JobPage(IReadOnlyList<Job> Jobs, bool HasMore);

public sealed class SqlJobStore(PlatformDatabase database, SqlAuditLog audit, TimeProvider? time = null)
{
    readonly TimeProvider clock = time ?? TimeProvider.System;

    /// <summary>The migration that adds the table (PlatformDatabase.Migrations).</summary>
    internal const string Migration = """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            arguments TEXT NOT NULL,
            out_dir TEXT NOT NULL,
            executor TEXT NOT NULL,
            executor_ref TEXT,
            state TEXT NOT NULL,
            reason TEXT,
            pid INTEGER,
            pid_start INTEGER,
            exit_code INTEGER,
            submitted_at TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            cancel_requested_at TEXT,
            submitted_by TEXT NOT NULL,
            log_file TEXT NOT NULL
        );
        CREATE INDEX jobs_submitted_at ON jobs (submitted_at);
        """;

    /// <summary>The migration that keeps Slurm's last word on a job as it was seen to end (JSON,
    /// <see cref="SlurmStatus"/>'s fields in snake_case), for its controller forgets an ended job.</summary>
    internal const string SlurmMigration = "ALTER TABLE jobs ADD COLUMN slurm TEXT;";

    /// <summary>The migration that keeps who asked for a job's cancel beside when (the audit log's
    /// job.cancelled has it too, but a job's reader would have to search the log for it).</summary>
    internal const string CancelRequestedByMigration = "ALTER TABLE jobs ADD COLUMN cancel_requested_by TEXT;";

    public DateTimeOffset Now => ParseTime(FormatTime(clock.GetUtcNow()));

    /// <summary>Records <paramref name="job"/> as queued, with its audit entry.</summary>
    /// <exception cref="TrustUserException">(Conflict) A job that has not ended writes the same run folder.</exception>
    public void Insert(Job job, AuditRecord entry) => database.Write(transaction =>
    {
        var connection = transaction.Connection!;
        RequireNoJobWriting(job.Arguments.Out, transaction);
        using var insert = Command(connection, """
            INSERT INTO jobs (id, kind, arguments, out_dir, executor, state, submitted_at, submitted_by, log_file)
            VALUES (@id, @kind, @arguments, @out, @executor, @state, @submitted, @by, @log)
            """,
            ("@id", job.Id), ("@kind", job.Kind), ("@arguments", WriteArguments(job.Arguments, job.Resources)), ("@out", job.Arguments.Out), ("@executor", job.Executor),
            ("@state", job.State.WireName()), ("@submitted", FormatTime(job.SubmittedAt)), ("@by", job.SubmittedBy), ("@log", job.LogFile));
        insert.Transaction = transaction;
        insert.ExecuteNonQuery();
        audit.Append(transaction, entry);
        return true;
    });

    /// <summary>Refuses <paramref name="runFolder"/> while a job that has not ended writes it: a
    /// new run, a resumed one or a fine-tune there would write among its checkpoints; or while one
    /// writes a folder inside it or around it: a run inside another's (its checkpoints/last) is
    /// replaced whole by that run's next checkpoint, and one around it (the folder above a run
    /// called checkpoints) saves its checkpoints among the other's files.</summary>
    /// <exception cref="TrustUserException">(Conflict) Naming that job.</exception>
    public void RequireNoJobWriting(string runFolder, DbTransaction? transaction = null)
    {
        if ((transaction is null ? UnfinishedJobWriting(runFolder) : UnfinishedJobWriting(transaction.Connection!, transaction, runFolder)) is not var (other, folder))
            return;
        var where = folder == runFolder ? "is the run folder" : $"{(folder.Length < runFolder.Length ? "is inside" : "holds")} {folder}, the run folder";
        throw new TrustUserException(s => $"{runFolder} {where} of job {other}, which has not ended; wait for it ({s.Pick($"stratus jobs show {other}", $"GET /api/jobs/{other}")}), cancel it{s.Pick("", $" (POST /api/jobs/{other}/cancel)")}, or train into another {s.Option("out")}") { Conflict = true };
    }

    /// <summary>The job recorded as not ended (queued or running) that writes <paramref name="runFolder"/>,
    /// a folder inside it or one around it, with the run folder it writes; null where none does.</summary>
    public (string Id, string RunFolder)? UnfinishedJobWriting(string runFolder) => database.Use(connection => UnfinishedJobWriting(connection, null, runFolder));

    static (string Id, string RunFolder)? UnfinishedJobWriting(DbConnection connection, DbTransaction? transaction, string runFolder)
    {
        // Run folders are recorded absolute, without a trailing separator (TrainArguments.Out): one is
        // around another where the other begins with it and a separator. The same folder first.
        using var busy = Command(connection, """
            SELECT id, out_dir FROM jobs WHERE state IN ('queued', 'running')
                AND (out_dir = @out OR substr(@out, 1, length(out_dir) + 1) = out_dir || @separator OR substr(out_dir, 1, length(@out) + 1) = @out || @separator)
            ORDER BY CASE WHEN out_dir = @out THEN 0 ELSE 1 END, submitted_at, id LIMIT 1
            """, ("@out", runFolder), ("@separator", Path.DirectorySeparatorChar.ToString()));
        busy.Transaction = transaction;
        using var reader = busy.ExecuteReader();
        return reader.Read() ? (reader.GetString(0), reader.GetString(1)) : null;
    }

    /// <summary>The ids of the jobs recorded as not ended (queued or running) that fine-tune from
    /// registry version <paramref name="version"/> (resolved at submission, as "chat:1"): a running
    /// one may not have read its weights yet (a Slurm job waits for its nodes), so both count.</summary>
    internal static IReadOnlyList<string> UnfinishedJobsStartingFrom(DbTransaction transaction, string version)
    {
        using var unfinished = Command(transaction.Connection!, "SELECT id, arguments FROM jobs WHERE state IN ('queued', 'running') ORDER BY submitted_at, id");
        unfinished.Transaction = transaction;
        using var reader = unfinished.ExecuteReader();
        var ids = new List<string>();
        while (reader.Read())
            if (ReadArguments(reader.GetString(1)).Arguments.InitFromVersion == version) ids.Add(reader.GetString(0));
        return ids;
    }

    public Job? Get(string id) => database.Use(connection => Get(connection, id));

    static Job? Get(DbConnection connection, string id)
    {
        using var command = Command(connection, $"SELECT {Columns} FROM jobs WHERE id = @id", ("@id", id));
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>The most jobs a page holds (GET /api/jobs's limit, `jobs list --limit`).</summary>
    public const int MaxPage = 1000;

    /// <summary>At most <paramref name="limit"/> jobs, newest first (by submission, then id: an order
    /// that a job submitted later never changes for those before it), from the one after the job
    /// <paramref name="after"/> on (null: the newest); and whether more follow.</summary>
    /// <exception cref="TrustUserException">No job <paramref name="after"/> (Param: after).</exception>
    public JobPage List(int limit = MaxPage, string? after = null) => database.Use(connection =>
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var from = after is null ? "" : """
            WHERE submitted_at < (SELECT submitted_at FROM jobs a WHERE a.id = @after)
                OR (submitted_at = (SELECT submitted_at FROM jobs a WHERE a.id = @after) AND id > @after)
            """;
        if (after is not null && Get(connection, after) is null)
            throw new TrustUserException(s => $"{s.Option("after")} {after} is no job; give the id of the last job a page listed") { Param = "after" };
        using var command = Command(connection, $"SELECT {Columns} FROM jobs {from} ORDER BY submitted_at DESC, id LIMIT @limit",
            after is null ? [("@limit", limit + 1)] : [("@limit", limit + 1), ("@after", after)]);
        using var reader = command.ExecuteReader();
        var jobs = new List<Job>();
        while (reader.Read()) jobs.Add(Read(reader));
        return jobs.Count > limit ? new JobPage(jobs[..limit], HasMore: true) : new JobPage(jobs, HasMore: false);
    });

    public void SetExecutorReference(string id, string reference) => Update("UPDATE jobs SET executor_ref = @ref WHERE id = @id", ("@id", id), ("@ref", reference));

    /// <summary>Records that the training runs: its process where this machine runs it
    /// (<paramref name="pid"/>; null under a cluster's scheduler), since <paramref name="startedAt"/>
    /// (null: now). Returns whether a cancel was asked for before this (whoever records the start
    /// then stops it), false too for a job that has ended.</summary>
    public bool RecordStarted(string id, int? pid, long? pidStart, DateTimeOffset? startedAt = null) => database.Write(transaction =>
    {
        using var command = Command(transaction.Connection!, """
            UPDATE jobs SET state = 'running', pid = @pid, pid_start = @start, started_at = @now
            WHERE id = @id AND state = 'queued' RETURNING CASE WHEN cancel_requested_at IS NULL THEN 0 ELSE 1 END
            """, ("@id", id), ("@pid", pid), ("@start", pidStart), ("@now", FormatTime(startedAt ?? Now)));
        command.Transaction = transaction;
        return command.ExecuteScalar() is { } cancelled and not DBNull && Convert.ToInt64(cancelled, CultureInfo.InvariantCulture) != 0;
    });

    /// <summary>Records how the job ended, once, with what Slurm said of it then
    /// (<paramref name="slurm"/>, for a Slurm job): false where its end was recorded already. A job
    /// whose cancel was asked for ends cancelled unless it succeeded (it finished first).</summary>
    public bool RecordEnd(string id, JobEnd end, SlurmStatus? slurm = null) => database.Write(transaction =>
    {
        using var command = Command(transaction.Connection!, """
            UPDATE jobs SET state = CASE WHEN cancel_requested_at IS NULL OR @state = 'succeeded' THEN @state ELSE 'cancelled' END,
                exit_code = @exit, reason = @reason, ended_at = @now, slurm = @slurm
            WHERE id = @id AND state IN ('queued', 'running')
            """, ("@id", id), ("@state", end.State.WireName()), ("@exit", end.ExitCode), ("@reason", end.Reason), ("@now", FormatTime(Now)),
            ("@slurm", slurm is null ? null : WriteSlurm(slurm)));
        command.Transaction = transaction;
        return command.ExecuteNonQuery() == 1;
    });

    /// <summary>Records that a cancel was asked for, with its audit entry, and returns the job as it
    /// now is and whether this cancel is the first (the caller then signals its training process, if
    /// it has one). Decided in the write transaction, which holds the database's write lock from its
    /// read on (SQLite's and PostgreSQL's alike): of cancels that come together, one is the first. A
    /// cancel of a job being cancelled already changes nothing, and is not audited again, unless it
    /// is <paramref name="force"/>d (audited so).</summary>
    /// <exception cref="TrustUserException">No such job (NotFound), or it has ended (Conflict).</exception>
    public JobCancel RequestCancel(string id, string actor, bool force = false) => database.Write(transaction =>
    {
        var connection = transaction.Connection!;
        Job? job;
        using (var read = Command(connection, $"SELECT {Columns} FROM jobs WHERE id = @id", ("@id", id)))
        {
            read.Transaction = transaction;
            using var reader = read.ExecuteReader();
            job = reader.Read() ? Read(reader) : null;
        }
        if (job is null) throw UnknownJob(id);
        if (job.State.HasEnded()) throw new TrustUserException($"job {id} has already ended ({job.State.WireName()}); there is nothing to cancel") { Conflict = true };
        var first = job.CancelRequestedAt is null;
        if (!first && !force) return new JobCancel(job, First: false);
        var now = Now;
        if (first)
        {
            using var update = Command(connection, "UPDATE jobs SET cancel_requested_at = @now, cancel_requested_by = @actor WHERE id = @id",
                ("@id", id), ("@now", FormatTime(now)), ("@actor", actor));
            update.Transaction = transaction;
            update.ExecuteNonQuery();
        }
        // The run it stops, as its job.submitted names it: the folder, and whether it continued that run or started from a model;
        // and what runs it, by the executor's own name for it (Slurm's job id, which job.submitted,
        // written before sbatch gave one, cannot hold; null where the job was not handed over yet).
        var details = new JsonObject
        {
            ["job"] = id, ["state"] = job.State.WireName(), ["out"] = job.Arguments.Out, ["resume"] = job.Arguments.Resume, ["init_from"] = job.Arguments.InitFrom,
            ["executor"] = job.Executor, ["executor_reference"] = job.ExecutorReference,
        };
        if (force) details["force"] = true;
        audit.Append(transaction, new AuditRecord(actor, AuditActions.JobCancelled, details));
        return new JobCancel(first ? job with { CancelRequestedAt = now, CancelRequestedBy = actor } : job, first);
    });

    /// <summary>Takes back a cancel recorded at <paramref name="requestedAt"/> that never reached
    /// the job (its executor could not be asked): the job's end is then not read as cancelled, and
    /// the next cancel is a first one.</summary>
    public void WithdrawCancel(string id, DateTimeOffset requestedAt) =>
        Update("UPDATE jobs SET cancel_requested_at = NULL, cancel_requested_by = NULL WHERE id = @id AND cancel_requested_at = @at", ("@id", id), ("@at", FormatTime(requestedAt)));

    public static TrustUserException UnknownJob(string id) =>
        new(s => $"no job '{id}'; list the jobs with {s.Pick("stratus jobs list", "GET /api/jobs")}") { NotFound = true };

    void Update(string sql, params (string Name, object? Value)[] parameters) => database.Write(transaction =>
    {
        using var command = Command(transaction.Connection!, sql, parameters);
        command.Transaction = transaction;
        return command.ExecuteNonQuery();
    });

    const string Columns = "id, kind, arguments, executor, executor_ref, state, reason, pid, pid_start, exit_code, submitted_at, started_at, ended_at, cancel_requested_at, submitted_by, log_file, slurm, cancel_requested_by";

    static Job Read(DbDataReader r)
    {
        string? Text(int column) => r.IsDBNull(column) ? null : r.GetString(column);
        long? Number(int column) => r.IsDBNull(column) ? null : r.GetInt64(column);
        DateTimeOffset? Time(int column) => Text(column) is { } text ? ParseTime(text) : null;
        var (arguments, resources) = ReadArguments(r.GetString(2));
        return new Job(r.GetString(0), r.GetString(1), arguments, r.GetString(3), Text(4), JobStates.Parse(r.GetString(5)), Text(6),
            (int?)Number(7), Number(8), (int?)Number(9), ParseTime(r.GetString(10)), Time(11), Time(12), Time(13), r.GetString(14), r.GetString(15))
        { Resources = resources, Slurm = Text(16) is { } slurm ? ReadSlurm(slurm) : null, CancelRequestedBy = Text(17) };
    }

    static string WriteSlurm(SlurmStatus slurm) => new JsonObject
    {
        ["job_id"] = slurm.JobId, ["state"] = slurm.State, ["reason"] = slurm.Reason, ["partition"] = slurm.Partition, ["time_limit"] = slurm.TimeLimit,
        ["nodes"] = slurm.Nodes, ["ranks"] = slurm.Ranks, ["cpus_per_rank"] = slurm.CpusPerRank, ["elapsed"] = slurm.Elapsed,
    }.ToJsonString();

    static SlurmStatus ReadSlurm(string json)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        string? Text(string key) => node[key]?.GetValue<string>();
        return new SlurmStatus(Text("job_id")!, Text("state"), Text("reason"), Text("partition"), Text("time_limit"), Text("nodes"),
            node["ranks"]?.GetValue<int>(), node["cpus_per_rank"]?.GetValue<int>(), Elapsed: Text("elapsed"));
    }

    /// <summary>The arguments column: train's arguments and, for a Slurm job, what was asked of
    /// sbatch ("slurm"), which Slurm itself forgets once the job has ended a while (MinJobAge).</summary>
    static string WriteArguments(TrainArguments arguments, SlurmOptions? resources)
    {
        var json = new JsonObject
        {
            ["config"] = arguments.Config,
            ["data"] = arguments.Data,
            ["out"] = arguments.Out,
            ["overrides"] = new JsonArray([.. arguments.Overrides.Select(o => (JsonNode)new JsonArray(o.Key, o.Value))]),
            ["resume"] = arguments.Resume,
            ["init_from"] = arguments.InitFrom,
            ["init_from_version"] = arguments.InitFromVersion,
            ["init_from_manifest_sha256"] = arguments.InitFromManifest,
        };
        if (resources is not null)
            json["slurm"] = new JsonObject
            {
                ["partition"] = resources.Partition, ["time"] = resources.Time, ["ranks"] = resources.Ranks, ["cpus_per_rank"] = resources.CpusPerRank,
            };
        return json.ToJsonString();
    }

    static (TrainArguments Arguments, SlurmOptions? Resources) ReadArguments(string json)
    {
        var node = JsonNode.Parse(json)!.AsObject();
        // Jobs recorded before resume and init_from were kept have neither: they started new runs.
        var arguments = new TrainArguments(node["config"]?.GetValue<string>(), node["data"]?.GetValue<string>(), node["out"]!.GetValue<string>(),
            [.. node["overrides"]!.AsArray().Select(pair => new KeyValuePair<string, string>(pair![0]!.GetValue<string>(), pair[1]!.GetValue<string>()))],
            node["resume"]?.GetValue<bool>() ?? false, node["init_from"]?.GetValue<string>(), node["init_from_version"]?.GetValue<string>(),
            node["init_from_manifest_sha256"]?.GetValue<string>());
        // Slurm jobs recorded before their resources were kept have none: what they asked is unknown.
        var slurm = node["slurm"]?.AsObject();
        return (arguments, slurm is null ? null
            : new SlurmOptions(slurm["partition"]?.GetValue<string>(), slurm["time"]?.GetValue<string>(), slurm["ranks"]!.GetValue<int>(), slurm["cpus_per_rank"]!.GetValue<int>()));
    }
}
