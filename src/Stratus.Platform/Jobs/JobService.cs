// The job service: submits a job (recorded as queued, with its audit entry, before its executor
// starts it), lists and shows jobs as they are (a job the database calls queued or running is
// checked with the executor that runs it, and one found started or ended without that being
// recorded is recorded so, once), and cancels one (audited, then signalled). The CLI and the
// server's /api/jobs both go through here; they check the training arguments first, as
// `stratus train` would (Trainer.CheckStart), which this library cannot: it does not reference the engine.
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

/// <param name="executors">The executors jobs may run under, by name; the first runs a job
/// submitted without naming one. A job recorded under a name not among them is shown as recorded.</param>
public sealed class JobService(SqlJobStore store, IReadOnlyList<IJobExecutor> executors)
{
    /// <summary>The jobs of <paramref name="dataDirectory"/>'s database, run on this machine (local,
    /// the default) or through Slurm (with <paramref name="slurm"/>'s options) by
    /// <paramref name="stratusCommand"/> (the CLI's own command line, see LocalJobExecutor).</summary>
    public static JobService Open(string dataDirectory, IReadOnlyList<string> stratusCommand, SlurmOptions? slurm = null, TimeProvider? time = null)
    {
        var database = PlatformDatabase.Open(dataDirectory);
        return new JobService(new SqlJobStore(database, new SqlAuditLog(database, time), time),
            [new LocalJobExecutor(stratusCommand, dataDirectory), new SlurmJobExecutor(stratusCommand, slurm ?? SlurmOptions.Default)]);
    }

    public SqlJobStore Store => store;

    /// <summary>The executor named <paramref name="name"/>; null where there is none.</summary>
    public IJobExecutor? Executor(string name) => executors.FirstOrDefault(e => e.Name == name);

    /// <summary>Records and starts a training job under <paramref name="executorName"/> (null: the
    /// first executor), a Slurm job with the <paramref name="resources"/> asked of Slurm (see
    /// <see cref="SlurmOptions.Requested"/>; null: the cluster's defaults, one rank); returns it as
    /// recorded (queued). One its executor refuses to start is recorded failed, with the executor's
    /// reason, and the refusal thrown.</summary>
    /// <exception cref="TrustUserException">(Conflict) A job that has not ended writes the same run
    /// folder; or the executor refused it.</exception>
    public Job Submit(TrainArguments arguments, string actor, string? executorName = null, SlurmOptions? resources = null)
    {
        var executor = executorName is null ? executors[0] : Executor(executorName)
            ?? throw new ArgumentException($"no job executor '{executorName}'", nameof(executorName));
        // The run folder (which holds the job's log) is made before the job is recorded: one that
        // cannot be (a file there, a name longer than the file system takes) is the submitter's to
        // fix, not a job that failed.
        try { Directory.CreateDirectory(arguments.Out); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TrustUserException(s => $"{s.Option("out")} {arguments.Out} cannot be made: {e.Message} Give a folder that can be.") { Param = "out" };
        }
        RequireNoJobWriting(arguments.Out);
        var id = "job-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var job = new Job(id, Job.TrainKind, arguments, executor.Name, null, JobState.Queued, null, null, null, null, store.Now, null, null, null, actor,
            Path.Combine(arguments.Out, $"{id}.log")) { Resources = resources };
        var audited = new JsonObject
        {
            ["job"] = id, ["kind"] = job.Kind, ["executor"] = job.Executor, ["config"] = arguments.Config, ["data"] = arguments.Data, ["out"] = arguments.Out,
            ["overrides"] = new JsonObject([.. arguments.Overrides.Select(o => new KeyValuePair<string, JsonNode?>(o.Key, o.Value))]),
            ["resume"] = arguments.Resume, ["init_from"] = arguments.InitFrom,
        };
        if (arguments.InitFromVersion is { } version) audited["init_from_version"] = version;
        // What is asked of Slurm is recorded with the job (the executor's defaults where the
        // submission asked nothing), and audited.
        var asked = (executor as SlurmJobExecutor)?.ResourcesOf(job);
        if (asked is not null)
        {
            job = job with { Resources = asked };
            audited["partition"] = asked.Partition;
            audited["time"] = asked.Time;
            audited["ranks"] = asked.Ranks;
            audited["cpus_per_rank"] = asked.CpusPerRank;
        }
        store.Insert(job, new AuditRecord(actor, AuditActions.JobSubmitted, audited));
        string reference;
        try
        {
            reference = executor.Launch(job);
        }
        catch (Exception e)
        {
            store.RecordEnd(id, new JobEnd(JobState.Failed, null, JobLog.NotStarted(e.Message)));
            throw;
        }
        store.SetExecutorReference(id, reference);
        // A cancel that came while the executor started the job found nothing to stop. A local
        // job's supervisor finds it when it records the training's pid (and signals it then); a
        // Slurm job, which records none, does not look.
        if (store.Get(id) is { CancelRequestedAt: not null, Pid: null } cancelled) executor.Cancel(cancelled, force: false);
        return job with { ExecutorReference = reference, Slurm = asked is null ? null : SlurmStatus.Requested(reference, asked) };
    }

    /// <summary>Refuses <paramref name="runFolder"/> while a job that has not ended writes it, a
    /// folder inside it or one around it (<see cref="SqlJobStore.RequireNoJobWriting"/>), naming the
    /// job. The job recorded there is observed first: one whose supervisor was killed still reads
    /// running in the database, and its run is the one to resume.</summary>
    /// <exception cref="TrustUserException">(Conflict) Naming that job.</exception>
    public void RequireNoJobWriting(string runFolder)
    {
        if (store.UnfinishedJobWriting(runFolder) is var (id, _) && store.Get(id) is { } job) Observed(job, new JobReading());
        store.RequireNoJobWriting(runFolder);
    }

    /// <exception cref="TrustUserException">(NotFound) No such job.</exception>
    public Job Get(string id) => Observed(store.Get(id) ?? throw SqlJobStore.UnknownJob(id), new JobReading());

    /// <summary>A page of the jobs, newest first (<see cref="SqlJobStore.List"/>), read together: a
    /// scheduler that could not be asked for one is not asked for the others.</summary>
    /// <exception cref="TrustUserException">No job <paramref name="after"/> (Param: after).</exception>
    public JobPage List(int limit = SqlJobStore.MaxPage, string? after = null)
    {
        var reading = new JobReading();
        var page = store.List(limit, after);
        return page with { Jobs = [.. page.Jobs.Select(job => Observed(job, reading))] };
    }

    /// <summary>Cancels a job that has not ended: its training stops after a last checkpoint (train's
    /// SIGTERM), or never starts; the job then ends cancelled. A cancel of a job being cancelled
    /// already sends nothing again (a client retrying one that timed out, two operators at once:
    /// train would take a second SIGTERM as "end at once", losing the step's checkpoint); a
    /// <paramref name="force"/>d one ends the training at once, the first cancel or not (SIGKILL, as
    /// kubectl delete --force --grace-period=0: a SIGTERM sent after another, which train would take
    /// so, may merge with it while both are pending); a Slurm job's is Slurm's own cancel (see
    /// SlurmJobExecutor.Cancel).</summary>
    /// <exception cref="TrustUserException">No such job (NotFound), or it has ended (Conflict).</exception>
    /// <exception cref="JobExecutorUnavailableException">Its executor could not be asked (Slurm's
    /// controller down): a first cancel is taken back, so that the job's end is not read as
    /// cancelled, and the next cancel is a first one (a last checkpoint).</exception>
    public JobCancel Cancel(string id, string actor, bool force = false)
    {
        var request = store.RequestCancel(id, actor, force);
        if (request.First || force)
            try
            {
                Executor(request.Job.Executor)?.Cancel(request.Job, force);
            }
            catch (JobExecutorUnavailableException) when (request.First)
            {
                store.WithdrawCancel(id, request.Job.CancelRequestedAt!.Value);
                throw;
            }
        return request with { Job = Get(id) };
    }

    /// <summary>How long <see cref="Submit"/> may take from recording a job to recording its
    /// executor's reference (milliseconds, where the executor answers at all): a job still without
    /// one after this was never started, its submitter having ended (killed) in between.</summary>
    public static readonly TimeSpan LaunchTimeout = TimeSpan.FromMinutes(1);

    /// <summary><paramref name="job"/> as it is: one its executor finds started or ended, or that its
    /// submitter never started, is recorded so (unless its supervisor recorded its end meanwhile) and read again.</summary>
    Job Observed(Job job, JobReading reading)
    {
        if (job.State.HasEnded() || Executor(job.Executor) is not { } executor) return job;
        var observed = executor.Observe(job, reading);
        // What Slurm said goes with the job as read, whatever it changed.
        var slurm = observed?.Slurm;
        var seen = observed is { AsRecorded: true } ? null : observed ?? (job is { ExecutorReference: null, Pid: null } && store.Now - job.SubmittedAt > LaunchTimeout
            ? new JobObservation(null, new JobEnd(JobState.Failed, null, "its submitter ended before it started the job; submit it again"))
            : null);
        if (seen is null || (seen.End is null && job.State == JobState.Running)) return job with { Slurm = slurm };
        // Started, or ended, while nobody watched: a job seen to end from queued ran too, where its
        // executor says when it started.
        if (job.State == JobState.Queued && (seen.End is null || seen.StartedAt is not null)) store.RecordStarted(job.Id, null, null, seen.StartedAt);
        // Slurm's last word on it is kept: its controller forgets it after MinJobAge.
        if (seen.End is { } end) store.RecordEnd(job.Id, end, slurm);
        return (store.Get(job.Id) ?? job) with { Slurm = slurm };
    }
}
