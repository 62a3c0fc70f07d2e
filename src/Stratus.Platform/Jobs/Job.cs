// A job: one `stratus train` the platform runs on the user's behalf, outside the process that
// submitted it, with what it was asked to do and what became of it. The state moves one way:
// queued (recorded, its executor starting it) → running (the training process exists) → one of
// succeeded, failed or cancelled, which never change again.
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

public enum JobState { Queued, Running, Succeeded, Failed, Cancelled }

public static class JobStates
{
    /// <summary>The state as the database, the CLI and the API write it.</summary>
    public static string WireName(this JobState state) => state switch
    {
        JobState.Queued => "queued",
        JobState.Running => "running",
        JobState.Succeeded => "succeeded",
        JobState.Failed => "failed",
        JobState.Cancelled => "cancelled",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    public static JobState Parse(string name) => name switch
    {
        "queued" => JobState.Queued,
        "running" => JobState.Running,
        "succeeded" => JobState.Succeeded,
        "failed" => JobState.Failed,
        "cancelled" => JobState.Cancelled,
        _ => throw new InvalidDataException($"unknown job state '{name}'"),
    };

    /// <summary>Whether the job has ended, for good.</summary>
    public static bool HasEnded(this JobState state) => state is JobState.Succeeded or JobState.Failed or JobState.Cancelled;
}

/// <summary>What `stratus train` is given, as the submitter gave it (paths made absolute, since the
/// job may run from another folder): the config file (null: the defaults), the dataset (null: a
/// resumed run's own), the run folder and the config keys overridden, in snake_case, each with its
/// value as text. <paramref name="Resume"/>: the job continues the run in Out from its last
/// checkpoint (train --resume), with its own config; <paramref name="InitFrom"/>: a new run starts
/// from that model's weights (train --init-from, a run or checkpoint folder); <paramref name="InitFromVersion"/>:
/// the registered version (NAME:VERSION) InitFrom is the checkpoint of, where the submission named the
/// model by reference, or by that version's folder holding the files it was registered with: resolved once, at submission, so that an alias moved later does not change
/// what the job starts from, and handed to train for the run to record as its parent;
/// <paramref name="InitFromManifest"/>: that version's manifest hash, which train checks the checkpoint
/// against when the job starts (a version registered without --copy is a run's folder, which the run,
/// still training, saves again at any moment).</summary>
public sealed record TrainArguments(string? Config, string? Data, string Out, IReadOnlyList<KeyValuePair<string, string>> Overrides, bool Resume = false, string? InitFrom = null,
    string? InitFromVersion = null, string? InitFromManifest = null)
{
    /// <summary>The run folder without a trailing separator: runs/a/ is runs/a, the folder that one
    /// unfinished job at a time may write.</summary>
    public string Out { get; init; } = Path.TrimEndingDirectorySeparator(Out);

    /// <summary>The arguments of `stratus train` that run this job. Each value is joined to its
    /// option (`--key=value`), so train's parser reads it as that option's value whatever it holds:
    /// a value of its own (`--lora-targets --resume`) would be read as another option, and one
    /// starting with @ as a response file to read arguments from.</summary>
    public IReadOnlyList<string> CommandLine()
    {
        List<string> line = ["train"];
        if (Resume) line.Add("--resume=" + Out);
        if (Config is not null) line.Add("--config=" + Config);
        if (InitFrom is not null) line.Add("--init-from=" + InitFrom);
        if (InitFromVersion is not null) line.Add("--init-from-version=" + InitFromVersion);
        if (InitFromManifest is not null) line.Add("--init-from-manifest=" + InitFromManifest);
        if (Data is not null) line.Add("--data=" + Data);
        if (!Resume) line.Add("--out=" + Out);
        // The key as train's TrainConfig reads it: leading dashes trimmed, "-" and "_" alike.
        foreach (var (key, value) in Overrides) line.Add($"{Surface.OptionOf(Surface.FieldOf(key))}={value}");
        return line;
    }

    /// <summary><paramref name="words"/> as a shell line that runs them again: a word with a space,
    /// quote or $ in it single-quoted.</summary>
    public static string ShellLine(IEnumerable<string> words) => string.Join(' ', words.Select(word =>
        word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '/' or '_' or '-' or '+' or ',' or ':' or '@' or '=') ? word : $"'{word.Replace("'", "'\\''", StringComparison.Ordinal)}'"));
}

/// <param name="Id">The job's name in the CLI and the API (job-xxxxxxxx).</param>
/// <param name="Kind">What the job runs: "train".</param>
/// <param name="Executor">What runs it: "local" (a process on this machine) or "slurm" (a batch
/// job of a Slurm cluster).</param>
/// <param name="ExecutorReference">The executor's own name for the job: the local executor's
/// supervisor process (pid and start time), Slurm's job id; null until the executor has given one.</param>
/// <param name="Reason">Why a job failed or was cancelled, in a line; null otherwise.</param>
/// <param name="Pid">The training process, once it runs on this machine (none under Slurm).</param>
/// <param name="PidStart">When that process started, in the system's own measure (on Linux the
/// clock ticks since boot in /proc), so a later process given the same pid is not taken for it.</param>
/// <param name="CancelRequestedAt">When a cancel was asked for: the job ends cancelled, whatever its
/// training process's exit code.</param>
/// <param name="SubmittedBy">The actor, as the audit log names actors (cli:user, a key's id).</param>
/// <param name="LogFile">The training process's standard output and error.</param>
public sealed record Job(
    string Id,
    string Kind,
    TrainArguments Arguments,
    string Executor,
    string? ExecutorReference,
    JobState State,
    string? Reason,
    int? Pid,
    long? PidStart,
    int? ExitCode,
    DateTimeOffset SubmittedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? EndedAt,
    DateTimeOffset? CancelRequestedAt,
    string SubmittedBy,
    string LogFile)
{
    public const string TrainKind = "train";

    /// <summary>What was asked of Slurm for a Slurm job: sbatch's arguments, recorded with the job,
    /// as Slurm's own record (<see cref="Slurm"/>) is gone once the controller forgets the ended job.
    /// Null for a job another executor runs, and for a Slurm job recorded before they were kept.</summary>
    public SlurmOptions? Resources { get; init; }

    /// <summary>Who asked for the cancel <see cref="CancelRequestedAt"/> records (the first, which
    /// signalled), as the audit log names actors and <see cref="SubmittedBy"/> does (cli:user, a key's
    /// id); null where no cancel was asked, or for one asked before this was kept.</summary>
    public string? CancelRequestedBy { get; init; }

    /// <summary>What Slurm said of the job: when it was read, for a Slurm job that had not ended;
    /// for one that has, as it was seen to end (recorded with its end; null where Slurm had no
    /// record of it then, or for a job that ended before it was kept).</summary>
    public SlurmStatus? Slurm { get; init; }

    /// <summary>How long the job has run, as of <paramref name="now"/>; null before it started. For a
    /// Slurm job, Slurm's own RunTime where it gave one: the job's started and ended are when Stratus
    /// read it so, which can be long after Slurm started or ended it (the dashboard's Duration keeps
    /// the same rule).</summary>
    public TimeSpan? Duration(DateTimeOffset now) => StartedAt is { } started ? Slurm?.RunTime ?? (EndedAt ?? now) - started : null;
}
