// What a job's log and run folder say of how its training ended, in the reason a job records:
// the same words whichever executor ran it.
using System.Globalization;

namespace Stratus.Platform.Jobs;

public static class JobLog
{
    /// <summary>Train saves a last checkpoint when SIGTERM stops it after a step.</summary>
    public static string CancelledReason(Job job) => Resumable(job, "cancelled after a last checkpoint", "cancelled before its first checkpoint");

    /// <summary><paramref name="stopped"/> and how to continue the run where it saved a
    /// checkpoint, else <paramref name="unsaved"/>.</summary>
    public static string Resumable(Job job, string stopped, string unsaved) =>
        Directory.Exists(Path.Combine(job.Arguments.Out, "checkpoints", "last"))
            ? $"{stopped}; continue it with {ContinueRun(job)}"
            : unsaved;

    /// <summary>The commands that continue <paramref name="job"/>'s run from its last checkpoint:
    /// as a job, and in a shell of its own. A Slurm job's run goes on as a Slurm job: jobs submit's
    /// executor is local unless told, and a training in a shell would run on the login node; what
    /// it asked of Slurm is asked again (each that differs from jobs submit's default), as Slurm
    /// does not keep it. A Slurm job recorded before that was kept names the options instead.</summary>
    public static string ContinueRun(Job job)
    {
        var quoted = TrainArguments.ShellLine([job.Arguments.Out]);
        if (job.Executor != SlurmJobExecutor.ExecutorName) return $"`stratus jobs submit --resume {quoted}` (a job) or `stratus train --resume {quoted}`";
        if (job.Resources is not { } asked) return $"`stratus jobs submit --executor slurm --resume {quoted}` (with the --partition, --time, --ranks and --cpus-per-rank it needs)";
        List<string> sizing = [];
        if (asked.Partition is { } partition) sizing.AddRange(["--partition", partition]);
        if (asked.Time is { } time) sizing.AddRange(["--time", time]);
        if (asked.Ranks != SlurmOptions.Default.Ranks) sizing.AddRange(["--ranks", asked.Ranks.ToString(CultureInfo.InvariantCulture)]);
        if (asked.CpusPerRank != SlurmOptions.Default.CpusPerRank) sizing.AddRange(["--cpus-per-rank", asked.CpusPerRank.ToString(CultureInfo.InvariantCulture)]);
        return $"`{TrainArguments.ShellLine(["stratus", "jobs", "submit", "--executor", "slurm", .. sizing, "--resume", job.Arguments.Out])}`";
    }

    /// <summary>The training's own one-line error where its log ends with one, else its exit code.</summary>
    public static string FailureReason(Job job, int code)
    {
        var last = LastLines(job.LogFile).LastOrDefault(line => line.StartsWith("error: ", StringComparison.Ordinal));
        return last is not null ? $"train exited with {code}: {last["error: ".Length..]}" : $"train exited with {code}; see {job.LogFile}";
    }

    /// <summary>The lines of the last 8 KiB of <paramref name="file"/>; none where it cannot be read.</summary>
    static string[] LastLines(string file)
    {
        try
        {
            using var stream = File.OpenRead(file);
            stream.Seek(Math.Max(0, stream.Length - 8192), SeekOrigin.Begin);
            return new StreamReader(stream).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }
}
