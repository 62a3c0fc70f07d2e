// What runs jobs: the local executor starts each as processes on this machine; a cluster's
// scheduler (Slurm: sbatch, sacct, scancel) would be another. The job service records the job and
// its audit entries; the executor starts it, says what became of one whose end nobody recorded,
// and stops one.
namespace Stratus.Platform.Jobs;

/// <summary>How a job that the database still calls queued or running ended, where the executor
/// finds that it did: <paramref name="ExitCode"/> where known, <paramref name="Reason"/> where it did not succeed.</summary>
public sealed record JobEnd(JobState State, int? ExitCode, string? Reason);

public interface IJobExecutor
{
    /// <summary>The executor's name, as jobs record it ("local").</summary>
    string Name { get; }

    /// <summary>Starts <paramref name="job"/> (recorded as queued) and returns at once, the job
    /// going on without the caller; returns the executor's reference to it (see
    /// <see cref="Job.ExecutorReference"/>).</summary>
    string Launch(Job job);

    /// <summary>Whether a job the database calls queued or running still is: null where it is (or
    /// may be: the executor cannot tell yet), else how it ended.</summary>
    JobEnd? Observe(Job job);

    /// <summary>Asks the job's training to stop (recorded as cancelled by whoever records its end);
    /// a job whose training has not started yet is stopped before it starts.</summary>
    void Cancel(Job job);
}
