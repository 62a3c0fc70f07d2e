// The jobs table and what the job service reads from it: a database of schema version 3 (before
// jobs) keeps its keys and audit chain when migrated; a job whose processes are gone, or whose
// pid another process now has, reads failed rather than running for ever; one run folder has one
// unfinished job; a cancel is audited, and refused for an ended or unknown job.
using System.Diagnostics;
using Microsoft.Data.Sqlite;
using Stratus.Platform.Jobs;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public abstract class JobStoreTests(TestDatabases databases) : IDisposable
{
    protected readonly TempPlatform platform = new(databases);

    public void Dispose()
    {
        platform.Dispose();
    }

    protected JobService Service()
    {
        var database = platform.OpenDatabase();
        // Never launched here: the tests record jobs and their processes themselves.
        return new JobService(new SqlJobStore(database, new SqlAuditLog(database)), [new LocalJobExecutor(["/bin/false"], platform.Directory)]);
    }

    protected static Job Queued(string id, string output) =>
        new(id, Job.TrainKind, new TrainArguments(null, "/data", output, [new("max_iters", "5")]), LocalJobExecutor.ExecutorName, null, JobState.Queued,
            null, null, null, null, DateTimeOffset.UtcNow, null, null, null, "cli:test", Path.Combine(output, id + ".log"));

    static int DeadPid()
    {
        using var process = Process.Start("/bin/true")!;
        process.WaitForExit();
        return process.Id;
    }

    /// <summary>An override's key reaches train as train reads a config key (TrainConfig trims
    /// leading dashes): "--max-iters" from an API body is max_iters, not an option "----max-iters".</summary>
    [Theory]
    [InlineData("max_iters")]
    [InlineData("max-iters")]
    [InlineData("--max-iters")]
    public void An_override_key_reaches_train_as_the_config_key_it_names(string key)
    {
        var line = new TrainArguments(null, "/d", "/r", [new(key, "5")]).CommandLine();
        Assert.Equal(["train", "--data=/d", "--out=/r", "--max-iters=5"], line);
    }

    [Fact]
    public void A_running_job_whose_supervisor_and_training_are_gone_reads_failed_and_stays_so()
    {
        var service = Service();
        service.Store.Insert(Queued("job-00000002", "/runs/b"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference("job-00000002", DeadPid().ToString());
        Assert.False(service.Store.RecordStarted("job-00000002", DeadPid(), null));
        Assert.Equal(JobState.Running, service.Store.Get("job-00000002")!.State);

        var job = service.Get("job-00000002");
        Assert.Equal(JobState.Failed, job.State);
        Assert.Matches(@"^its supervisor \(pid \d+\) ended without recording how the training \(pid \d+\) ended", job.Reason);
        Assert.NotNull(job.EndedAt);
        Assert.Equal(JobState.Failed, service.Store.Get("job-00000002")!.State);
    }

    /// <summary>The run a job was writing when its supervisor and training were killed is the one
    /// to resume: the folder is free once the job is found ended, without anyone first showing the
    /// job (its row still reads running).</summary>
    [Fact]
    public void A_folder_whose_job_died_unobserved_is_taken_by_the_next_submission_and_the_dead_job_reads_failed()
    {
        var service = Service();
        var run = Path.Combine(platform.Directory, "runs", "c");
        service.Store.Insert(Queued("job-00000003", run), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference("job-00000003", DeadPid().ToString());
        service.Store.RecordStarted("job-00000003", DeadPid(), null);

        service.RequireNoJobWriting(run);
        Assert.Equal(JobState.Failed, service.Store.Get("job-00000003")!.State);
        service.Store.Insert(Queued("job-00000004", run) with { Arguments = new TrainArguments(null, null, run, [], Resume: true) },
            new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        // A job just submitted, being started, still holds it.
        var busy = Assert.Throws<TrustUserException>(() => service.RequireNoJobWriting(run));
        Assert.Contains("is the run folder of job job-00000004, which has not ended", busy.Message);
    }

    /// <summary>A run folder inside an unfinished job's, or one around it, is refused naming that job,
    /// as its own folder is: through the API, a job training into another's checkpoints/last had its
    /// whole run (model, metrics, log) replaced by the other's next checkpoint while it read
    /// succeeded, and one around a run called checkpoints would save among its files. A folder
    /// beside it whose name begins as its does is another folder.</summary>
    [Fact]
    public void A_run_folder_inside_or_around_an_unfinished_jobs_is_refused_naming_it()
    {
        var service = Service();
        var run = Path.Combine(platform.Directory, "runs", "g");
        service.Store.Insert(Queued("job-00000009", run), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        foreach (var (folder, words) in new[] { (Path.Combine(run, "checkpoints", "last"), $"is inside {run}, the run folder"), (Path.GetDirectoryName(run)!, $"holds {run}, the run folder") })
        {
            var busy = Assert.Throws<TrustUserException>(() => service.RequireNoJobWriting(folder));
            Assert.True(busy.Conflict);
            Assert.StartsWith($"{folder} {words} of job job-00000009, which has not ended", busy.Message);
            // Recorded in the same transaction as the check: a submission that raced past it is refused too.
            Assert.Throws<TrustUserException>(() => service.Store.Insert(Queued("job-0000000a", folder), new AuditRecord("cli:test", AuditActions.JobSubmitted, [])));
        }
        service.RequireNoJobWriting(run + "2");
        service.RequireNoJobWriting(Path.Combine(platform.Directory, "run"));
        Assert.Null(service.Store.Get("job-0000000a"));
    }

    [Fact]
    public void A_job_whose_submitter_died_before_starting_it_reads_failed_once_a_start_is_overdue_not_queued_for_ever()
    {
        var service = Service();
        // Recorded, then its submitter killed before it launched the supervisor.
        service.Store.Insert(Queued("job-00000008", "/runs/f") with { SubmittedAt = service.Store.Now - JobService.LaunchTimeout - TimeSpan.FromSeconds(1) },
            new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        var job = service.Get("job-00000008");
        Assert.Equal((JobState.Failed, "its submitter ended before it started the job; submit it again"), (job.State, job.Reason));
        // One just recorded is being started.
        service.Store.Insert(Queued("job-00000009", "/runs/g"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        Assert.Equal(JobState.Queued, service.Get("job-00000009").State);

        // Started, its submitter killed before it recorded the supervisor, then supervisor and training killed.
        service.Store.Insert(Queued("job-0000000a", "/runs/h"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.RecordStarted("job-0000000a", DeadPid(), null);
        job = service.Get("job-0000000a");
        Assert.Equal(JobState.Failed, job.State);
        Assert.Matches(@"^its supervisor ended without recording how the training \(pid \d+\) ended", job.Reason);
    }

    [Fact]
    public void A_pid_now_another_process_s_is_not_taken_for_the_job_s()
    {
        var service = Service();
        service.Store.Insert(Queued("job-00000003", "/runs/c"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        // This test's own process, alive, but not started when the job's processes were.
        var reused = Environment.ProcessId;
        var started = LocalJobExecutor.StartOf(reused)!.Value;
        service.Store.SetExecutorReference("job-00000003", $"{reused}:{started - 1}");
        service.Store.RecordStarted("job-00000003", reused, started - 1);
        Assert.Equal(JobState.Failed, service.Get("job-00000003").State);

        // The same pid with its own start time is the job's, still running.
        service.Store.Insert(Queued("job-00000004", "/runs/d"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference("job-00000004", $"{reused}:{started}");
        Assert.Equal(JobState.Queued, service.Get("job-00000004").State);
    }

    /// <summary>What was asked of Slurm is kept with the job, for Slurm forgets an ended job
    /// (MinJobAge), and its resume hint asks for it again; a job recorded without it (a local one,
    /// or a Slurm job recorded before it was kept) reads none.</summary>
    [Fact]
    public void A_Slurm_jobs_partition_time_ranks_and_cpus_per_rank_are_kept_and_asked_again_by_its_resume_hint()
    {
        var service = Service();
        var run = Path.Combine(platform.Directory, "runs", "sized run");
        var slurm = Queued("job-0000000b", run) with { Executor = SlurmJobExecutor.ExecutorName, Resources = new SlurmOptions("gpu", "1-12:00:00", 4, 8) };
        service.Store.Insert(slurm, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.RecordEnd(slurm.Id, new JobEnd(JobState.Failed, 143, "ended"));
        var kept = service.Store.Get(slurm.Id)!;
        Assert.Equal(new SlurmOptions("gpu", "1-12:00:00", 4, 8), kept.Resources);
        Assert.Equal($"`stratus jobs submit --executor slurm --partition gpu --time 1-12:00:00 --ranks 4 --cpus-per-rank 8 --resume '{run}'`", JobLog.ContinueRun(kept, Surface.Cli));
        // The API (and the dashboard's form) is told the submission's fields.
        Assert.Equal($"a job of 'executor' slurm, 'partition' gpu, 'time' 1-12:00:00, 'ranks' 4, 'cpus_per_rank' 8 and 'resume' {run} (POST /api/jobs)", JobLog.ContinueRun(kept, Surface.Api));
        // The cluster's defaults asked (no partition nor time, one rank of one CPU) are asked again by leaving them out.
        service.Store.Insert(Queued("job-0000000c", "/runs/j") with { Executor = SlurmJobExecutor.ExecutorName, Resources = SlurmOptions.Default },
            new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        Assert.Equal("`stratus jobs submit --executor slurm --resume /runs/j`", JobLog.ContinueRun(service.Store.Get("job-0000000c")!, Surface.Cli));
        Assert.Equal("a job of 'executor' slurm and 'resume' /runs/j (POST /api/jobs)", JobLog.ContinueRun(service.Store.Get("job-0000000c")!, Surface.Api));

        service.Store.Insert(Queued("job-0000000d", "/runs/k") with { Executor = SlurmJobExecutor.ExecutorName }, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        var unkept = service.Store.Get("job-0000000d")!;
        Assert.Null(unkept.Resources);
        Assert.Equal("`stratus jobs submit --executor slurm --resume /runs/k` (with the --partition, --time, --ranks and --cpus-per-rank it needs)", JobLog.ContinueRun(unkept, Surface.Cli));
        Assert.Equal("a job of 'executor' slurm and 'resume' /runs/k, with the 'partition', 'time', 'ranks' and 'cpus_per_rank' it needs (POST /api/jobs)", JobLog.ContinueRun(unkept, Surface.Api));
        service.Store.Insert(Queued("job-0000000e", "/runs/l"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        Assert.Null(service.Store.Get("job-0000000e")!.Resources);
    }

    /// <summary>An auditor ties a cancel to the Slurm job it stopped (job.submitted is written
    /// before sbatch gives an id); Slurm's last word on an ended job is kept, as its controller
    /// forgets the job after MinJobAge.</summary>
    [Fact]
    public async Task A_Slurm_jobs_cancel_is_audited_with_its_Slurm_job_id_and_its_last_Slurm_status_kept_with_its_end()
    {
        var service = Service();
        var job = Queued("job-00000010", "/runs/s") with { Executor = SlurmJobExecutor.ExecutorName, Resources = SlurmOptions.Default };
        service.Store.Insert(job, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference(job.Id, "4242");
        service.Store.RequestCancel(job.Id, "key-1");
        var details = System.Text.Json.Nodes.JsonNode.Parse(Assert.Single(await platform.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobCancelled))).Details)!;
        Assert.Equal(("slurm", "4242"), ((string?)details["executor"], (string?)details["executor_reference"]));

        var last = new SlurmStatus("4242", "CANCELLED", "None", "main", "30", "node1", 2, 4, Elapsed: "00:03:07");
        Assert.True(service.Store.RecordEnd(job.Id, new JobEnd(JobState.Cancelled, 143, "cancelled"), last));
        Assert.Equal(last, service.Store.Get(job.Id)!.Slurm);
        Assert.Equal(last, service.Get(job.Id).Slurm);
        Assert.Null(service.Store.Get("job-0000000e")?.Slurm);
    }

    /// <summary>Pages of the jobs, each after the last of the one before, are the whole list once
    /// each, newest first and jobs submitted in the same tick in id order, in either database's collation.</summary>
    [Fact]
    public void The_jobs_pages_after_one_another_are_the_whole_list_in_order()
    {
        var store = Service().Store;
        var now = store.Now;
        foreach (var (id, ago) in new[] { ("job-0000001a", 0), ("job-0000001c", 1), ("job-0000001b", 1), ("job-0000001d", 2) })
            store.Insert(Queued(id, "/runs/" + id) with { SubmittedAt = now.AddSeconds(-ago) }, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        List<string> paged = [];
        for (JobPage? page = null; page is null || page.HasMore; paged.AddRange(page.Jobs.Select(j => j.Id)))
            page = store.List(1, paged.Count == 0 ? null : paged[^1]);
        Assert.Equal(["job-0000001a", "job-0000001b", "job-0000001c", "job-0000001d"], paged);
        Assert.Equal(paged, store.List().Jobs.Select(j => j.Id));
        Assert.Equal("after", Assert.Throws<TrustUserException>(() => store.List(1, "job-nope")).Param);
    }

    /// <summary>What the executor was asked: each cancel's force.</summary>
    sealed class CountingExecutor : IJobExecutor
    {
        public readonly System.Collections.Concurrent.ConcurrentQueue<bool> Cancels = new();
        public string Name => LocalJobExecutor.ExecutorName;
        public string Launch(Job job) => throw new NotSupportedException();
        public JobObservation? Observe(Job job, JobReading reading) => null;
        public void Cancel(Job job, bool force) => Cancels.Enqueue(force);
    }

    /// <summary>Cancels that come together, each through a store of its own (as from the CLI and
    /// the server at once), reach the executor once: the first is decided in the write transaction.
    /// One asked for again later sends nothing, and a forced one is sent, audited as forced.</summary>
    [Fact]
    public async Task Of_cancels_that_come_together_one_is_the_first_and_reaches_the_executor()
    {
        var executor = new CountingExecutor();
        var services = Enumerable.Range(0, 4).Select(_ =>
        {
            var database = platform.OpenDatabase();
            return new JobService(new SqlJobStore(database, new SqlAuditLog(database)), [executor]);
        }).ToArray();
        services[0].Store.Insert(Queued("job-00000020", "/runs/c"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        services[0].Store.RecordStarted("job-00000020", 1, null);
        using var start = new Barrier(services.Length);
        var cancels = services.Select(service => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            return service.Cancel("job-00000020", "key-1");
        }, TaskCreationOptions.LongRunning)).ToArray();
        var answers = await Task.WhenAll(cancels);
        Assert.Single(answers, answer => answer.First);
        Assert.All(answers, answer => Assert.Equal(JobState.Running, answer.Job.State));
        Assert.Single(answers.Select(answer => answer.Job.CancelRequestedAt).Distinct());
        Assert.Equal([false], executor.Cancels);

        Assert.False(services[1].Cancel("job-00000020", "key-2").First);
        Assert.Equal([false], executor.Cancels);
        Assert.False(services[2].Cancel("job-00000020", "key-2", force: true).First);
        Assert.Equal([false, true], executor.Cancels);
        var entries = await platform.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobCancelled));
        Assert.Equal([("key-1", false), ("key-2", true)], entries.Select(e => (e.Actor, System.Text.Json.Nodes.JsonNode.Parse(e.Details)!["force"] is not null)));
    }

    /// <summary>Who asked for a cancel is kept beside when (it was only in the audit log): the first
    /// asker, whom a later cancel, forced or not, does not replace; a cancel taken back (its executor
    /// could not be asked) takes back both.</summary>
    [Fact]
    public void A_cancel_is_recorded_with_who_asked_for_it()
    {
        var store = Service().Store;
        store.Insert(Queued("job-00000030", "/runs/f"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        Assert.Null(store.Get("job-00000030")!.CancelRequestedBy);

        var first = store.RequestCancel("job-00000030", "key-1").Job;
        Assert.Equal("key-1", first.CancelRequestedBy);
        Assert.Equal((first.CancelRequestedAt, "key-1"), (store.Get("job-00000030")!.CancelRequestedAt, store.Get("job-00000030")!.CancelRequestedBy));
        Assert.Equal("key-1", store.RequestCancel("job-00000030", "cli:other").Job.CancelRequestedBy);
        Assert.Equal("key-1", store.RequestCancel("job-00000030", "cli:other", force: true).Job.CancelRequestedBy);
        Assert.Equal("key-1", store.Get("job-00000030")!.CancelRequestedBy);

        store.WithdrawCancel("job-00000030", first.CancelRequestedAt!.Value);
        Assert.Equal((null, null), (store.Get("job-00000030")!.CancelRequestedAt, store.Get("job-00000030")!.CancelRequestedBy));
        Assert.Equal("cli:other", store.RequestCancel("job-00000030", "cli:other").Job.CancelRequestedBy);
        Assert.Equal("cli:other", store.Get("job-00000030")!.CancelRequestedBy);
    }

    [Fact]
    public async Task One_run_folder_has_one_unfinished_job_and_cancels_are_audited_and_refused_once_a_job_ended()
    {
        var service = Service();
        var fineTune = Queued("job-00000005", "/runs/e");
        service.Store.Insert(fineTune with { Arguments = fineTune.Arguments with { InitFrom = "/models/base" } }, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        var busy = Assert.Throws<TrustUserException>(() => service.Store.Insert(Queued("job-00000006", "/runs/e"), new AuditRecord("cli:test", AuditActions.JobSubmitted, [])));
        Assert.True(busy.Conflict);
        Assert.Null(service.Store.Get("job-00000006"));
        // The same folder, written with a trailing separator.
        Assert.True(Assert.Throws<TrustUserException>(() => service.Store.Insert(Queued("job-00000007", "/runs/e/"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []))).Conflict);

        var cancelled = service.Cancel("job-00000005", "key-1").Job;
        Assert.NotNull(cancelled.CancelRequestedAt);
        // Its supervisor, starting now, finds the cancel and never starts the training.
        Assert.Equal(0, ((LocalJobExecutor)service.Executor(LocalJobExecutor.ExecutorName)!).Supervise(service.Store, "job-00000005"));
        Assert.Equal(JobState.Cancelled, service.Get("job-00000005").State);
        Assert.True(Assert.Throws<TrustUserException>(() => service.Cancel("job-00000005", "key-1")).Conflict);
        Assert.True(Assert.Throws<TrustUserException>(() => service.Cancel("job-nope", "key-1")).NotFound);
        var entries = await platform.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobCancelled));
        // What was cancelled, in the entry itself: the run, and the model it started from.
        Assert.Equal(("key-1", """{"job":"job-00000005","state":"queued","out":"/runs/e","resume":false,"init_from":"/models/base","executor":"local","executor_reference":null}"""), (Assert.Single(entries).Actor, entries[0].Details));

        // Ended, the folder is free for the next job.
        service.Store.Insert(Queued("job-00000006", "/runs/e"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
    }
}

public sealed class JobStoreOnSqliteTests() : JobStoreTests(TestDatabases.Sqlite)
{
    [Fact]
    public async Task A_schema_version_4_database_is_migrated_with_its_keys_and_audit_chain_kept()
    {
        var created = await platform.Stores.KeyService().CreateAsync("trainer", ApiKeyScopes.Training, new RateLimits(0, 0), "cli:test");
        // Version 4 is this schema without the jobs table, which the fifth migration adds alone (and
        // without model_versions.parent, which the sixth adds).
        platform.Sql("DROP TABLE jobs; ALTER TABLE model_versions DROP COLUMN parent; PRAGMA user_version = 4;");
        SqliteConnection.ClearAllPools();

        var reopened = PlatformStores.Open(platform.Directory);
        Assert.Equal(created.Key.Id, (await reopened.KeyService().AuthenticateAsync(created.Secret)).Key?.Id);
        var verification = await reopened.Audit.VerifyAsync();
        Assert.True(verification.Valid);
        Assert.Equal(1, verification.EntriesChecked);
        var service = Service();
        service.Store.Insert(Queued("job-00000001", "/runs/a"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        Assert.Equal(JobState.Queued, service.Store.Get("job-00000001")!.State);
        Assert.True((await reopened.Audit.VerifyAsync()).Valid);
    }

    /// <summary>A database of schema version 7 (before cancel_requested_by) gets the column; a
    /// cancel asked before it was kept is by no one known (the audit log has it).</summary>
    [Fact]
    public void A_schema_version_7_database_gets_who_asked_for_a_cancel()
    {
        var store = Service().Store;
        store.Insert(Queued("job-00000031", "/runs/g"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        store.RequestCancel("job-00000031", "key-1");
        platform.Sql("ALTER TABLE jobs DROP COLUMN cancel_requested_by; PRAGMA user_version = 7;");
        SqliteConnection.ClearAllPools();

        store = Service().Store;
        var job = store.Get("job-00000031")!;
        Assert.Equal((true, null), (job.CancelRequestedAt is not null, job.CancelRequestedBy));
        store.Insert(Queued("job-00000032", "/runs/h"), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        Assert.Equal("key-2", store.RequestCancel("job-00000032", "key-2").Job.CancelRequestedBy);
    }
}

public sealed class JobStoreOnPostgresTests(PostgresDatabase postgres) : JobStoreTests(new TestDatabases(postgres)), IClassFixture<PostgresDatabase>;
