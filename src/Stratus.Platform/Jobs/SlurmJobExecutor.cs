// Runs jobs through a Slurm cluster's scheduler. Launch hands sbatch a batch script that runs the
// job's `stratus train` (one process, or N MPI ranks through `srun --mpi=pmix`) with its output
// appended to the job's log in the run folder, as the local executor's; the Slurm job id is the
// executor's reference. What became of a job is Slurm's word: `scontrol show job` while the
// controller remembers it (MinJobAge after its end), then sacct where accounting is kept; a job
// neither knows ends failed, saying so, rather than reading running for ever. Cancel cancels a
// pending job and sends a running one's training SIGTERM, which train answers with a last
// checkpoint, as the local executor's cancel does (scancel's own kill would follow its SIGTERM with
// SIGKILL after KillWait, cutting a long checkpoint short). The Slurm commands are found on the
// PATH and the cluster through their usual configuration (SLURM_CONF, else /etc/slurm).
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

/// <summary>What sbatch is asked for: the <paramref name="Partition"/> (null: the cluster's
/// default), the time limit (<paramref name="Time"/>, in sbatch's forms: minutes, MM:SS, HH:MM:SS,
/// D-HH[:MM[:SS]], UNLIMITED; null: the partition's default) and the number of MPI ranks to train on.</summary>
public sealed partial record SlurmOptions(string? Partition, string? Time, int Ranks)
{
    public static readonly SlurmOptions Default = new(null, null, 1);

    /// <summary>Checked here, before the job is recorded: sbatch would refuse it only once the job
    /// is, and it fails then.</summary>
    /// <exception cref="TrustUserException">Not one of sbatch's forms.</exception>
    public string? Time { get; } = Time is null || TimeLimit().IsMatch(Time) ? Time
        : throw new TrustUserException($"--time {Time} is not a time limit sbatch takes: give minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED");

    [GeneratedRegex(@"^([0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}|(?i:UNLIMITED|INFINITE))\z")]
    private static partial Regex TimeLimit();
}

/// <summary>A job as Slurm reports it: its state (PENDING, RUNNING, COMPLETED, FAILED, ...), its
/// batch script's exit code and the signal that ended it (ExitCode=code:signal), when it started
/// (null before), and the number of tasks it was given.</summary>
public sealed record SlurmJobRecord(string State, int ExitCode, int Signal, DateTimeOffset? StartTime, int Tasks);

/// <param name="stratusCommand">The command that runs the Stratus CLI on the cluster's nodes: its
/// executable, or `dotnet` and stratus.dll, at a path the nodes see.</param>
public sealed partial class SlurmJobExecutor(IReadOnlyList<string> stratusCommand, SlurmOptions options) : IJobExecutor
{
    public const string ExecutorName = "slurm";

    /// <summary>How long a Slurm command may take: the controller answers in milliseconds, and
    /// one that does not (down, unreachable) is retried by the client for about MessageTimeout.
    /// Tests shorten it to meet a command that hangs.</summary>
    internal static TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(60);

    public string Name => ExecutorName;

    public string Launch(Job job)
    {
        // --no-requeue: a job Slurm requeued (its node failed, an admin's scontrol requeue) would
        // run its script again, whose train, without --resume, refuses a run folder that holds a
        // checkpoint; it ends NODE_FAIL instead, its reason saying how to resume it.
        List<string> arguments = ["--parsable", "--no-requeue", $"--job-name={job.Id}", $"--output={OutputPattern(job.LogFile)}", "--open-mode=append", $"--ntasks={options.Ranks}"];
        if (options.Partition is { } partition) arguments.Add($"--partition={partition}");
        if (options.Time is { } time) arguments.Add($"--time={time}");
        var (code, stdout, stderr) = Run("sbatch", arguments, BatchScript(job));
        if (code != 0)
        {
            var error = SlurmError(stderr, stdout, code);
            if (error.Contains("partition", StringComparison.OrdinalIgnoreCase) || error.Contains("time limit", StringComparison.OrdinalIgnoreCase))
                throw new TrustUserException($"sbatch refused the job: {error}; give a --partition and --time the cluster takes (sinfo lists its partitions and their time limits), or submit with --executor local");
            // A controller sbatch cannot reach, or a configuration it cannot find, is the cluster's
            // state, not the submission's fault.
            throw new JobExecutorUnavailableException($"sbatch refused the job: {error}; check that Slurm's commands reach the cluster (sinfo; SLURM_CONF names its slurm.conf), or submit with --executor local");
        }
        // --parsable prints "id" or, on a cluster of a federation, "id;cluster".
        var id = stdout.Trim().Split(';')[0];
        return long.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out _)
            ? id
            : throw new IOException($"sbatch printed no job id (it printed '{stdout.Trim()}')");
    }

    /// <summary>The batch script: it names the job in its log, as the local supervisor does, then
    /// becomes the training (exec), so a signal to the batch step is train's; N ranks are a step
    /// srun launches, whose tasks end together where one fails (--kill-on-bad-exit).</summary>
    internal string BatchScript(Job job)
    {
        IEnumerable<string> launcher = options.Ranks > 1 ? ["srun", "--mpi=pmix", "--kill-on-bad-exit=1", $"--ntasks={options.Ranks}"] : [];
        var command = TrainArguments.ShellLine([.. stratusCommand, .. job.Arguments.CommandLine()]);
        return $"""
            #!/bin/sh
            # Stratus training job {job.Id}, submitted by {TrainArguments.ShellLine([job.SubmittedBy])}.
            printf '%s (Slurm job %s): %s\n' {job.Id} "$SLURM_JOB_ID" {TrainArguments.ShellLine([command])}
            exec {TrainArguments.ShellLine(launcher)}{(options.Ranks > 1 ? " " : "")}{command}

            """;
    }

    public JobObservation? Observe(Job job)
    {
        // Just submitted, the submitter not having recorded the Slurm job yet (the job service ends
        // one whose submitter never does).
        if (job.ExecutorReference is not { } id) return null;
        (SlurmJobRecord? Record, string? Unknown)? slurm;
        try
        {
            slurm = Query(id);
        }
        catch (Exception e) when (e is TrustUserException or IOException)
        {
            // No Slurm commands here, or a controller that does not answer: the job is as recorded
            // (listing jobs must not fail for it); submitting or cancelling one says why.
            slurm = null;
        }
        if (slurm is null) return null;
        if (slurm.Value.Record is { } record) return Observation(record, job);
        return new JobEnd(JobState.Failed, null,
            $"Slurm no longer knows its job {id} (the controller forgets a finished job after MinJobAge) and keeps no accounting to ask ({slurm.Value.Unknown}): how it ended is unknown; see {job.LogFile}");
    }

    /// <summary>What Slurm's record of a job says of it: null while it waits (PENDING, or requeued),
    /// running, or how it ended.</summary>
    public static JobObservation? Observation(SlurmJobRecord record, Job job)
    {
        var slurmJob = $"Slurm job {job.ExecutorReference}";
        // A process a signal ended reads as a shell reports it.
        var exitCode = record.Signal != 0 ? 128 + record.Signal : record.ExitCode;
        string Resumable(string what) => JobLog.Resumable(job, what, $"{what}, before its first checkpoint");
        return record.State switch
        {
            "PENDING" or "CONFIGURING" or "REQUEUED" or "REQUEUE_HOLD" or "REQUEUE_FED" or "RESV_DEL_HOLD" => null,
            "RUNNING" or "COMPLETING" or "SUSPENDED" or "STOPPED" or "SIGNALING" or "STAGE_OUT" or "RESIZING" => JobObservation.Running(record.StartTime),
            "COMPLETED" => new JobObservation(record.StartTime, new JobEnd(JobState.Succeeded, 0, null)),
            // Train answers a cancel's SIGTERM with a last checkpoint and exit 143: Slurm's FAILED.
            "FAILED" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode,
                job.CancelRequestedAt is not null ? JobLog.CancelledReason(job) : JobLog.FailureReason(job, exitCode))),
            "CANCELLED" => new JobObservation(record.StartTime, new JobEnd(JobState.Cancelled, record.StartTime is null ? null : exitCode,
                record.StartTime is null ? "cancelled before its training started"
                : job.CancelRequestedAt is not null ? JobLog.CancelledReason(job)
                : Resumable($"{slurmJob} was cancelled in Slurm (scancel)"))),
            "TIMEOUT" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, Resumable($"{slurmJob} reached its time limit (TIMEOUT; submit with a longer --time)"))),
            "OUT_OF_MEMORY" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, $"{slurmJob} ran out of the memory it was given (OUT_OF_MEMORY); see {job.LogFile}")),
            "NODE_FAIL" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, Resumable($"{slurmJob}'s node failed (NODE_FAIL)"))),
            _ => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, $"{slurmJob} ended {record.State}; see {job.LogFile}")),
        };
    }

    public void Cancel(Job job)
    {
        // Not submitted to Slurm yet: the submitter is between recording the job and sbatch.
        if (job.ExecutorReference is not { } id) return;
        // Waiting: removed from the queue. Running: its training is signalled, as the batch step
        // (one process, exec'd by the script) or as srun's tasks (ranks; srun itself would answer
        // SIGTERM with SIGKILL to them). A job that starts between the two is signalled.
        Scancel(["--state=PENDING", id]);
        var ranks = Query(id)?.Record?.Tasks ?? 1;
        Scancel(ranks > 1 ? ["--state=RUNNING", "--signal=TERM", id] : ["--state=RUNNING", "--batch", "--signal=TERM", id]);
    }

    static void Scancel(IReadOnlyList<string> arguments)
    {
        // A job that has ended meanwhile is what the cancel asked for.
        var (code, stdout, stderr) = Run("scancel", arguments);
        // Anything else is Slurm's (its controller down or unreachable), not the cancel's: it
        // stands, and is sent again when the cancel is.
        if (code != 0 && !stderr.Contains("already completing or completed", StringComparison.Ordinal) && !stderr.Contains("Invalid job id", StringComparison.Ordinal))
            throw new JobExecutorUnavailableException($"scancel failed: {SlurmError(stderr, stdout, code)}; check that the Slurm controller answers (scontrol ping), then cancel the job again");
    }

    /// <summary>Slurm's record of job <paramref name="id"/>: from scontrol, else sacct; Unknown
    /// says why neither has one. Null where the controller or the accounting database cannot be
    /// asked now (down, unreachable): the job is then as recorded.</summary>
    static (SlurmJobRecord? Record, string? Unknown)? Query(string id)
    {
        var (code, stdout, stderr) = Run("scontrol", ["show", "job", "--oneliner", id]);
        if (code == 0 && ParseScontrol(stdout) is { } record) return (record, null);
        if (!stderr.Contains("Invalid job id", StringComparison.Ordinal)) return null;
        return Accounted(Run("sacct", ["--jobs", id, "--allocations", "--noheader", "--parsable2", "--format=State,ExitCode,Start"]));
    }

    /// <summary>What sacct's answer says of a job the controller no longer knows: its record;
    /// Unknown where there is none to be had (no such job, or a cluster that keeps no accounting);
    /// null where the accounting database cannot be asked now (slurmdbd down, unreachable), which
    /// is no reason to end the job.</summary>
    internal static (SlurmJobRecord? Record, string? Unknown)? Accounted((int Code, string Stdout, string Stderr) sacct)
    {
        if (sacct.Code == 0) return ParseSacct(sacct.Stdout) is { } accounted ? (accounted, null) : (null, "sacct has no record of it");
        var error = SlurmError(sacct.Stderr, sacct.Stdout, sacct.Code);
        return error.Contains("accounting storage is disabled", StringComparison.Ordinal) ? (null, "sacct: " + error) : null;
    }

    /// <summary>A job's record in `scontrol show job --oneliner`'s words (Key=Value pairs); null
    /// where the line has no JobState.</summary>
    public static SlurmJobRecord? ParseScontrol(string text)
    {
        string? Field(string key) => Regex.Match(text, $@"(?:^|\s){key}=(\S*)") is { Success: true } m ? m.Groups[1].Value : null;
        if (Field("JobState") is not { } state) return null;
        var (code, signal) = ParseExitCode(Field("ExitCode"));
        // A job cancelled while it waited has a StartTime (its end) but was given no node.
        var started = Field("NodeList") is { Length: > 0 } nodes && nodes != "(null)";
        return new SlurmJobRecord(state, code, signal, started ? ParseTime(Field("StartTime")) : null,
            int.TryParse(Field("NumTasks"), NumberStyles.None, CultureInfo.InvariantCulture, out var tasks) ? tasks : 1);
    }

    /// <summary>The job's allocation line of `sacct --parsable2 --format=State,ExitCode,Start`;
    /// its state may read "CANCELLED by 0" (the user who cancelled it).</summary>
    public static SlurmJobRecord? ParseSacct(string text)
    {
        var line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        if (line?.Split('|') is not [var state, var exit, var start, ..]) return null;
        state = state.Split(' ')[0];
        var (code, signal) = ParseExitCode(exit);
        return new SlurmJobRecord(state, code, signal, ParseTime(start), 1);
    }

    static (int Code, int Signal) ParseExitCode(string? text) =>
        text?.Split(':') is [var code, var signal] && int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out var c)
            && int.TryParse(signal, NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? (c, s) : (0, 0);

    /// <summary>Slurm writes times in the controller's local time, without an offset (Unknown or
    /// None where there is none).</summary>
    static DateTimeOffset? ParseTime(string? text) =>
        DateTime.TryParseExact(text, "yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var time)
            ? new DateTimeOffset(time) : null;

    /// <summary>A path as sbatch's --output takes it: % starts a pattern (%j the job id), %% is a %.</summary>
    static string OutputPattern(string path) => path.Replace("%", "%%", StringComparison.Ordinal);

    /// <summary>The last error a Slurm command printed (sacct prints some on stdout), without its
    /// "sbatch: error: " (or "fatal: ") prefix.</summary>
    static string SlurmError(string stderr, string stdout, int code)
    {
        var line = (stderr.Trim().Length > 0 ? stderr : stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
        return line is null ? $"it exited with {code}" : SlurmErrorPrefix().Replace(line, "");
    }

    [GeneratedRegex(@"^\w+: (error|fatal): ")]
    private static partial Regex SlurmErrorPrefix();

    /// <summary>Runs a Slurm command; one not on the PATH is the user's to install.</summary>
    static (int Code, string Stdout, string Stderr) Run(string command, IReadOnlyList<string> arguments, string? stdin = null)
    {
        var info = new ProcessStartInfo(command) { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        // sbatch hands its whole environment to the job (--export=ALL), which the controller keeps
        // in its state and ships to the nodes: serve's secret stays on this machine.
        info.Environment.Remove(OpenAIModerationOptions.ApiKeyVariable);
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (Win32Exception)
        {
            throw new TrustUserException($"{command} is not on the PATH: the slurm executor runs jobs through Slurm's commands; install them (Debian: apt-get install slurm-client) and set SLURM_CONF to the cluster's slurm.conf, or use --executor local");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                process.StandardInput.Write(stdin ?? "");
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // It ended without reading its input (sbatch with no cluster to submit to): its
                // exit code and error say why.
            }
            if (!process.WaitForExit(CommandTimeout))
            {
                process.Kill();
                throw new JobExecutorUnavailableException($"{command} did not answer within {CommandTimeout.TotalSeconds} s; check that the Slurm controller answers (scontrol ping), then try again");
            }
            return (process.ExitCode, stdout.Result, stderr.Result);
        }
    }
}
