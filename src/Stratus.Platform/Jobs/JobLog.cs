// What a job's log and run folder say of how its training ended, in the reason a job records:
// the same words whichever executor ran it. The database keeps one text a job, in the CLI's words
// (older Stratus versions read it too); the API shows it with the hints it names (how to continue
// the run, a longer time limit) spelled in the API's (ReasonOn), each composed by the one function here.
using System.Globalization;
using System.Text.RegularExpressions;
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

public static class JobLog
{
    /// <summary>Train saves a last checkpoint when SIGTERM stops it after a step; a forced cancel's
    /// SIGKILL (exit <paramref name="exitCode"/> 137, as a shell reports it) ends it at once, its
    /// run where its last checkpoint left it.</summary>
    public static string CancelledReason(Job job, int? exitCode) => exitCode == 128 + 9
        ? Resumable(job, "cancelled at once (forced), its training's last step unsaved", "cancelled at once (forced), before its first checkpoint")
        : Resumable(job, "cancelled after a last checkpoint", "cancelled before its first checkpoint");

    /// <summary><paramref name="stopped"/> and how to continue the run where it saved a
    /// checkpoint, else <paramref name="unsaved"/>.</summary>
    public static string Resumable(Job job, string stopped, string unsaved) =>
        Directory.Exists(Path.Combine(job.Arguments.Out, "checkpoints", "last"))
            ? $"{stopped}; continue it with {ContinueRun(job, Surface.Cli)}"
            : unsaved;

    /// <summary>The reason of a job its executor refused to start: the refusal's message, in the CLI's words.</summary>
    public static string NotStarted(string refusal) => NotStartedPrefix + refusal;

    const string NotStartedPrefix = "could not be started: ";

    /// <summary>The submission's fields whose options an executor's refusal names (give a --partition
    /// the cluster takes, or submit with --executor local: SlurmJobExecutor's).</summary>
    static readonly string[] SubmissionFields = ["executor", "partition", "time", "ranks", "cpus_per_rank"];

    /// <summary>The job's <see cref="Job.Reason"/> in <paramref name="surface"/>'s words: the hints
    /// it was recorded with in the CLI's (<see cref="ContinueRun"/>, <see cref="LongerTimeLimit"/>,
    /// the options an executor's refusal to start it names, and in train's own error line the option
    /// of each of <paramref name="configKeys"/>, the config keys train takes, --max-iters being the
    /// override 'overrides.max_iters') spelled again, from the same job, in the surface's. A command
    /// the error line quotes (`stratus train --resume ... --learning-rate ...`) is left whole: a
    /// command of the server's host, not a request's fields. The keys are the engine's
    /// (TrainConfig.Keys), which this library does not reference.</summary>
    public static string? ReasonOn(Job job, Surface surface, IReadOnlyCollection<string> configKeys) => job.Reason is not { } reason ? null
        : reason.StartsWith(NotStartedPrefix, StringComparison.Ordinal)
            ? SubmissionFields.Aggregate(reason, (text, field) => Regex.Replace(text, OptionPattern(Regex.Escape(Surface.OptionOf(field))), surface.Option(field)))
        : reason.StartsWith(TrainFailedPrefix, StringComparison.Ordinal)
            ? Regex.Replace(reason, "`[^`]*`|" + OptionPattern("--[a-z][a-z0-9-]*"), word => !word.Value.StartsWith('`') && configKeys.Contains(Surface.FieldOf(word.Value))
                ? surface.Option(Surface.OverridesPrefix + Surface.FieldOf(word.Value)) : word.Value)
            : reason.Replace(ContinueRun(job, Surface.Cli), ContinueRun(job, surface), StringComparison.Ordinal)
                .Replace(LongerTimeLimit(Surface.Cli), LongerTimeLimit(surface), StringComparison.Ordinal);

    /// <summary>An option (a pattern of options) as a word of its own: --init-from not within --init-from-version.</summary>
    static string OptionPattern(string option) => $@"(?<![\w-]){option}(?![\w-])";

    /// <summary>What a job that reached its time limit is submitted again with.</summary>
    public static string LongerTimeLimit(Surface surface) => $"submit with a longer {surface.Option("time")}";

    /// <summary>What continues <paramref name="job"/>'s run from its last checkpoint: on the CLI,
    /// the commands, as a job and in a shell of its own; on the API, the submission (POST /api/jobs,
    /// the dashboard's form) and its fields. A Slurm job's run goes on as a Slurm job: jobs submit's
    /// executor is local unless told, and a training in a shell would run on the login node; what
    /// it asked of Slurm is asked again (each that differs from jobs submit's default), as Slurm
    /// does not keep it. A Slurm job recorded before that was kept names the options instead.</summary>
    public static string ContinueRun(Job job, Surface surface)
    {
        var quoted = TrainArguments.ShellLine([job.Arguments.Out]);
        if (job.Executor != SlurmJobExecutor.ExecutorName) return surface.Pick($"`stratus jobs submit --resume {quoted}` (a job) or `stratus train --resume {quoted}`", $"a job of {surface.Option("resume")} {job.Arguments.Out} (POST /api/jobs)");
        var fields = new[] { "partition", "time", "ranks", "cpus_per_rank" };
        if (job.Resources is not { } asked)
        {
            var needs = $"with the {string.Join(", ", fields[..^1].Select(surface.Option))} and {surface.Option(fields[^1])} it needs";
            return surface.Pick($"`stratus jobs submit --executor slurm --resume {quoted}` ({needs})",
                $"a job of {surface.Option("executor")} slurm and {surface.Option("resume")} {job.Arguments.Out}, {needs} (POST /api/jobs)");
        }
        List<(string Field, string Value)> sizing = [];
        if (asked.Partition is { } partition) sizing.Add(("partition", partition));
        if (asked.Time is { } time) sizing.Add(("time", time));
        if (asked.Ranks != SlurmOptions.Default.Ranks) sizing.Add(("ranks", asked.Ranks.ToString(CultureInfo.InvariantCulture)));
        if (asked.CpusPerRank != SlurmOptions.Default.CpusPerRank) sizing.Add(("cpus_per_rank", asked.CpusPerRank.ToString(CultureInfo.InvariantCulture)));
        List<(string Field, string Value)> given = [("executor", SlurmJobExecutor.ExecutorName), .. sizing, ("resume", job.Arguments.Out)];
        return surface.Pick($"`{TrainArguments.ShellLine(["stratus", "jobs", "submit", .. given.SelectMany(g => new[] { Surface.OptionOf(g.Field), g.Value })])}`",
            $"a job of {string.Join(", ", given[..^1].Select(g => $"{surface.Option(g.Field)} {g.Value}"))} and {surface.Option(given[^1].Field)} {given[^1].Value} (POST /api/jobs)");
    }

    /// <summary>The training's own one-line error where its log ends with one, else its exit code.</summary>
    public static string FailureReason(Job job, int code)
    {
        var last = LastLines(job.LogFile).LastOrDefault(line => line.StartsWith("error: ", StringComparison.Ordinal));
        return last is not null ? $"{TrainFailedPrefix}{code}: {last["error: ".Length..]}" : $"{TrainFailedPrefix}{code}; see {job.LogFile}";
    }

    const string TrainFailedPrefix = "train exited with ";

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
