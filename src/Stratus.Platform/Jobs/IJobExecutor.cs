// What runs jobs: the local executor starts each as processes on this machine; Slurm's (sbatch,
// scontrol, sacct, scancel) hands each to a cluster's scheduler. The job service records the job and
// its audit entries; the executor starts it, says what became of one whose start or end nobody
// recorded, and stops one.
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

/// <summary>How a job that the database still calls queued or running ended, where the executor
/// finds that it did: <paramref name="ExitCode"/> where known, <paramref name="Reason"/> where it did not succeed.</summary>
public sealed record JobEnd(JobState State, int? ExitCode, string? Reason);

/// <summary>What an executor finds of a job that the database calls queued or running: that its
/// training runs, since <paramref name="StartedAt"/> where the executor knows when it started, or
/// how it ended (<paramref name="End"/>); or, <see cref="AsRecorded"/>, that it is as recorded
/// (waiting in its scheduler's queue, or the scheduler could not be asked).</summary>
public sealed record JobObservation(DateTimeOffset? StartedAt, JobEnd? End)
{
    /// <summary>The job is as the database records it; <see cref="Slurm"/> says what Slurm said.</summary>
    public bool AsRecorded { get; private init; }

    /// <summary>What Slurm said of the job as it was read (null under the local executor).</summary>
    public SlurmStatus? Slurm { get; init; }

    public static JobObservation Running(DateTimeOffset? since) => new(since, null);

    public static JobObservation Recorded(SlurmStatus slurm) => new(null, null) { AsRecorded = true, Slurm = slurm };

    public static implicit operator JobObservation(JobEnd end) => new(null, end);
}

/// <summary>One reading of jobs (a listing, or a job shown): what an executor learnt in it that
/// holds for the rest of it.</summary>
public sealed class JobReading
{
    /// <summary>Why Slurm could not be asked, once it could not: the reading's other Slurm jobs are
    /// not asked again (scontrol retries a controller that is down for about 18 s a job).</summary>
    public string? SlurmUnreachable { get; set; }
}

/// <summary>The scheduler an executor hands jobs to cannot be asked now (Slurm's controller down
/// or unreachable, a command of its that does not answer): nothing the request did wrong, the
/// operator's to fix, and the same request may pass later. An IOException, as any failure of the
/// machine's is, so the CLI prints its one line (exit 2); the server answers 503, in the API's
/// words where the message names what the user may give instead (see Surface).</summary>
public sealed class JobExecutorUnavailableException(string message) : IOException(message)
{
    readonly Func<Surface, string>? worded;

    /// <summary>A message that names what the user may give (another executor), composed for the
    /// surface that shows it (<see cref="MessageOn"/>); <see cref="Exception.Message"/> is the CLI's.</summary>
    public JobExecutorUnavailableException(Func<Surface, string> message) : this(message(Surface.Cli)) => worded = message;

    /// <summary>The message in <paramref name="surface"/>'s words.</summary>
    public string MessageOn(Surface surface) => worded?.Invoke(surface) ?? Message;
}

public interface IJobExecutor
{
    /// <summary>The executor's name, as jobs record it ("local", "slurm").</summary>
    string Name { get; }

    /// <summary>Starts <paramref name="job"/> (recorded as queued) and returns at once, the job
    /// going on without the caller; returns the executor's reference to it (see
    /// <see cref="Job.ExecutorReference"/>).</summary>
    /// <exception cref="Stratus.Safety.TrustUserException">The executor refused the job for a
    /// reason its submitter can fix (Slurm's sbatch missing, a partition it does not have).</exception>
    string Launch(Job job);

    /// <summary>Whether a job the database calls queued or running still is: null where it is as
    /// recorded (or may be: the executor cannot tell yet), else that it runs now or how it ended.
    /// <paramref name="reading"/> is the listing (or the one job shown) it is read in.</summary>
    JobObservation? Observe(Job job, JobReading reading);

    /// <summary>Asks the job's training to stop after its step with a last checkpoint (SIGTERM), or,
    /// <paramref name="force"/>d, at once (SIGKILL; under Slurm, Slurm's own cancel); recorded as cancelled by whoever records its
    /// end. A job whose training has not started yet is stopped before it starts.</summary>
    /// <exception cref="JobExecutorUnavailableException">The scheduler could not be asked.</exception>
    void Cancel(Job job, bool force);
}
