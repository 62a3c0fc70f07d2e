// The job service: submits a job (recorded as queued, with its audit entry, before its executor
// starts it), lists and shows jobs as they are (a job the database calls queued or running is
// checked with its executor, and one found ended without a recorded end is recorded so, once), and
// cancels one (audited, then signalled). The CLI and the server's /api/jobs both go through here;
// they check the training arguments first, as `stratus train` would (Trainer.CheckStart), which
// this library cannot: it does not reference the engine.
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

public sealed class JobService(SqliteJobStore store, IJobExecutor executor)
{
    /// <summary>The jobs of <paramref name="dataDirectory"/>'s database, run on this machine by
    /// <paramref name="stratusCommand"/> (the CLI's own command line, see LocalJobExecutor).</summary>
    public static JobService OpenLocal(string dataDirectory, IReadOnlyList<string> stratusCommand, TimeProvider? time = null)
    {
        var database = PlatformDatabase.Open(dataDirectory);
        return new JobService(new SqliteJobStore(database, new SqliteAuditLog(database, time), time), new LocalJobExecutor(stratusCommand, dataDirectory));
    }

    public SqliteJobStore Store => store;

    public IJobExecutor Executor => executor;

    /// <summary>Records and starts a training job; returns it as recorded (queued).</summary>
    /// <exception cref="TrustUserException">(Conflict) A job that has not ended writes the same run folder.</exception>
    public Job Submit(TrainArguments arguments, string actor)
    {
        // The run folder (which holds the job's log) is made before the job is recorded: one that
        // cannot be (a file there, a name longer than the file system takes) is the submitter's to
        // fix, not a job that failed.
        try { Directory.CreateDirectory(arguments.Out); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TrustUserException($"'out' {arguments.Out} cannot be made: {e.Message} Give a folder that can be.");
        }
        var id = "job-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var job = new Job(id, Job.TrainKind, arguments, executor.Name, null, JobState.Queued, null, null, null, null, store.Now, null, null, null, actor,
            Path.Combine(arguments.Out, $"{id}.log"));
        store.Insert(job, new AuditRecord(actor, AuditActions.JobSubmitted, new JsonObject
        {
            ["job"] = id, ["kind"] = job.Kind, ["executor"] = job.Executor, ["config"] = arguments.Config, ["data"] = arguments.Data, ["out"] = arguments.Out,
            ["overrides"] = new JsonObject([.. arguments.Overrides.Select(o => new KeyValuePair<string, JsonNode?>(o.Key, o.Value))]),
        }));
        string reference;
        try
        {
            reference = executor.Launch(job);
        }
        catch (Exception e)
        {
            store.RecordEnd(id, new JobEnd(JobState.Failed, null, $"could not be started: {e.Message}"));
            throw;
        }
        store.SetExecutorReference(id, reference);
        return job with { ExecutorReference = reference };
    }

    /// <exception cref="TrustUserException">(NotFound) No such job.</exception>
    public Job Get(string id) => Observed(store.Get(id) ?? throw SqliteJobStore.UnknownJob(id));

    /// <summary>The jobs, newest first.</summary>
    public IReadOnlyList<Job> List() => [.. store.List().Select(Observed)];

    /// <summary>Cancels a job that has not ended: its training stops after a last checkpoint (train's
    /// SIGTERM), or never starts; the job then ends cancelled.</summary>
    /// <exception cref="TrustUserException">No such job (NotFound), or it has ended (Conflict).</exception>
    public Job Cancel(string id, string actor)
    {
        var job = store.RequestCancel(id, actor);
        executor.Cancel(job);
        return Get(id);
    }

    /// <summary>How long <see cref="Submit"/> may take from recording a job to recording its
    /// executor's reference (milliseconds, where the executor answers at all): a job still without
    /// one after this was never started, its submitter having ended (killed) in between.</summary>
    public static readonly TimeSpan LaunchTimeout = TimeSpan.FromMinutes(1);

    /// <summary><paramref name="job"/> as it is: one its executor finds ended, or that its submitter
    /// never started, is recorded so (unless its supervisor recorded its end meanwhile) and read again.</summary>
    Job Observed(Job job)
    {
        if (job.State.HasEnded()) return job;
        var end = executor.Observe(job) ?? (job is { ExecutorReference: null, Pid: null } && store.Now - job.SubmittedAt > LaunchTimeout
            ? new JobEnd(JobState.Failed, null, "its submitter ended before it started the job; submit it again")
            : null);
        if (end is null) return job;
        store.RecordEnd(job.Id, end);
        return store.Get(job.Id) ?? job;
    }
}
