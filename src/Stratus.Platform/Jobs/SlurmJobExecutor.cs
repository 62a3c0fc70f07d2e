// Runs jobs through a Slurm cluster's scheduler. Launch hands sbatch a batch script that runs the
// job's `stratus train` (one process, or N MPI ranks through `srun --mpi=pmix`) with its output
// appended to the job's log in the run folder, as the local executor's; the Slurm job id is the
// executor's reference. What became of a job is Slurm's word: `scontrol show job` while the
// controller remembers it (MinJobAge after its end), then sacct where accounting is kept; a job
// neither knows ends failed, saying so, rather than reading running for ever. Cancel cancels a
// pending job and sends a running one's training SIGTERM, which train answers with a last
// checkpoint, as the local executor's cancel does (scancel's own kill would follow its SIGTERM with
// SIGKILL after KillWait, cutting a long checkpoint short: what a forced cancel asks for). The Slurm commands are found on the
// PATH and the cluster through their usual configuration (SLURM_CONF, else /etc/slurm).
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

/// <summary>What sbatch is asked for: the <paramref name="Partition"/> (null: the cluster's
/// default), the time limit (<paramref name="Time"/>, in sbatch's forms: minutes, MM:SS, HH:MM:SS,
/// D-HH[:MM[:SS]], UNLIMITED; null: the partition's default), the number of MPI ranks to train on
/// and the CPUs each rank is given (sbatch --cpus-per-task), which is also the number of threads
/// its libtorch runs (OMP_NUM_THREADS). One CPU a rank by default: what Slurm gives a task unless
/// asked for more, so that a rank never runs more threads than it has cores.</summary>
public sealed partial record SlurmOptions(string? Partition = null, string? Time = null, int Ranks = 1, int CpusPerRank = 1)
{
    public static readonly SlurmOptions Default = new();

    /// <summary>The longest time limit Slurm holds, in minutes (24855-03:13): sbatch turns a limit
    /// into seconds in a signed 32-bit int, rounded up to minutes, and one beyond it wraps round to
    /// another limit (99999999 minutes reads 19734 days, 71582788 UNLIMITED) without a word.</summary>
    public const long LongestTimeMinutes = (int.MaxValue - 59) / 60;

    /// <summary>The resources a submission asks Slurm for (each null where not given): null for
    /// another executor, which has no use for them. The one check of them, for the CLI and the API
    /// alike, before the job is recorded: sbatch would refuse a value only once the job is, and it
    /// fails then, or take an absurd one as another. Jobs recorded before a check was added are read
    /// back as they were asked.</summary>
    /// <exception cref="TrustUserException">One is given for another executor (Param: the first
    /// given), or has a value sbatch would refuse or misread (Param: its field).</exception>
    public static SlurmOptions? Requested(string executor, string? partition, string? time, int? ranks, int? cpusPerRank)
    {
        if (executor == SlurmJobExecutor.ExecutorName)
        {
            // sbatch refuses an empty one only after the job is recorded ("Invalid partition name specified").
            if (partition is not null && (partition.Length == 0 || partition.Any(char.IsWhiteSpace) || partition.Any(char.IsControl)))
                throw new TrustUserException(s => $"{s.Option("partition")} '{partition}' is not a partition name: give one that sinfo lists, or leave {s.Option("partition")} out for the cluster's default") { Param = "partition" };
            if (time is not null && (TimeLimitMinutes(time) ?? throw new TrustUserException(s => $"{s.Option("time")} {time} is not a time limit sbatch takes: give minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED") { Param = "time" }) > LongestTimeMinutes)
                throw new TrustUserException(s => $"{s.Option("time")} {time} is longer than Slurm can hold (24855-03:13, about 68 years): give a shorter limit, or UNLIMITED for none") { Param = "time" };
            if (ranks < 1) throw new TrustUserException(s => $"{s.Option("ranks")} must be 1 or more, got {ranks}") { Param = "ranks" };
            if (cpusPerRank < 1) throw new TrustUserException(s => $"{s.Option("cpus_per_rank")} must be 1 or more, got {cpusPerRank}") { Param = "cpus_per_rank" };
            return new(partition, time, ranks ?? 1, cpusPerRank ?? 1);
        }
        var given = new (string Field, bool Given)[] { ("partition", partition is not null), ("time", time is not null), ("ranks", ranks is not null), ("cpus_per_rank", cpusPerRank is not null) };
        return given.FirstOrDefault(g => g.Given).Field is { } field
            ? throw new TrustUserException(s => $"{s.Option("partition")}, {s.Option("time")}, {s.Option("ranks")} and {s.Option("cpus_per_rank")} ask Slurm for the job's resources: give them with {s.Option("executor")} slurm") { Param = field }
            : null;
    }

    /// <summary>A time limit in sbatch's forms, in minutes as Slurm counts them (seconds rounded
    /// up; 0 for UNLIMITED, as Slurm reads a limit of 0); null where it is none of them. Slurm
    /// takes a field beyond its unit's range (1-99 is 5-03:00:00), as this does.</summary>
    static long? TimeLimitMinutes(string time)
    {
        var match = TimeLimit().Match(time);
        if (!match.Success) return null;
        if (match.Groups["unlimited"].Success) return 0;
        // A field of more digits than these is beyond Slurm's limit whatever its unit (and a long's).
        var numbers = match.Groups["fields"].Captures.Select(c => c.Value.Length <= 12 ? long.Parse(c.Value, CultureInfo.InvariantCulture) : (long?)null).ToArray();
        var days = match.Groups["days"] is { Success: true } d ? d.Value.Length <= 12 ? long.Parse(d.Value, CultureInfo.InvariantCulture) : (long?)null : 0;
        if (days is null || numbers.Any(n => n is null)) return long.MaxValue;
        long Field(int i) => i < numbers.Length ? numbers[i]!.Value : 0;
        // With days: HH, HH:MM or HH:MM:SS; without: minutes, MM:SS or HH:MM:SS.
        var seconds = match.Groups["days"].Success ? days.Value * 86400 + Field(0) * 3600 + Field(1) * 60 + Field(2)
            : numbers.Length switch { 1 => Field(0) * 60, 2 => Field(0) * 60 + Field(1), _ => Field(0) * 3600 + Field(1) * 60 + Field(2) };
        return (seconds + 59) / 60;
    }

    [GeneratedRegex(@"^((?<days>[0-9]+)-)?(?<fields>[0-9]+)(:(?<fields>[0-9]+)){0,2}\z|^(?<unlimited>(?i:UNLIMITED|INFINITE))\z")]
    private static partial Regex TimeLimit();
}

/// <summary>What Slurm said of a job when it was last read: from `scontrol show job` (or sacct),
/// its state, why it waits or ended (Reason: Priority, Resources, PartitionTimeLimit, NonZeroExitCode,
/// ...; null where Slurm gives none), its partition, time limit, nodes (null before it has any),
/// ranks (tasks), CPUs per rank and how long it has run (<paramref name="Elapsed"/>, Slurm's
/// RunTime, [D-]HH:MM:SS); or, where Slurm could not be asked (its controller down), why
/// (<paramref name="Unreachable"/>), the job being as last recorded. Read with a job that has not
/// ended; Slurm's last word on one, read as it was seen to end, is kept with it (the controller
/// forgets an ended job after MinJobAge).</summary>
public sealed partial record SlurmStatus(string JobId, string? State = null, string? Reason = null, string? Partition = null, string? TimeLimit = null,
    string? Nodes = null, int? Ranks = null, int? CpusPerRank = null, string? Unreachable = null, string? Elapsed = null)
{
    /// <summary>What was asked of Slurm for job <paramref name="jobId"/>, before Slurm was read.</summary>
    public static SlurmStatus Requested(string jobId, SlurmOptions options) =>
        new(jobId, Partition: options.Partition, TimeLimit: options.Time, Ranks: options.Ranks, CpusPerRank: options.CpusPerRank);

    /// <summary><see cref="Elapsed"/> as a span; null where Slurm gave none, or another form.</summary>
    public TimeSpan? RunTime => Elapsed is { } text && RunTimeForm().Match(text) is { Success: true } parts
        ? new TimeSpan(parts.Groups[1].Success ? int.Parse(parts.Groups[1].Value, CultureInfo.InvariantCulture) : 0,
            int.Parse(parts.Groups[2].Value, CultureInfo.InvariantCulture), int.Parse(parts.Groups[3].Value, CultureInfo.InvariantCulture), int.Parse(parts.Groups[4].Value, CultureInfo.InvariantCulture))
        : null;

    [GeneratedRegex(@"^(?:(\d+)-)?(\d+):(\d+):(\d+)$", RegexOptions.CultureInvariant)]
    private static partial Regex RunTimeForm();
}

/// <summary>A job as Slurm reports it: its state (PENDING, RUNNING, COMPLETED, FAILED, ...), its
/// batch script's exit code and the signal that ended it (ExitCode=code:signal), when it started
/// (null before), the number of tasks it was given, its partition, time limit, nodes and how long
/// it has run; from scontrol also why it waits and its CPUs per task (null from sacct, which is
/// not asked for them).</summary>
public sealed record SlurmJobRecord(string State, int ExitCode, int Signal, DateTimeOffset? StartTime, int Tasks,
    string? Reason = null, string? Partition = null, string? TimeLimit = null, string? Nodes = null, int? CpusPerTask = null, string? Elapsed = null);

/// <param name="stratusCommand">The command that runs the Stratus CLI on the cluster's nodes: its
/// executable, or `dotnet` and stratus.dll, at a path the nodes see.</param>
/// <param name="options">What sbatch is asked for where a job's submission asks nothing of its own
/// (<see cref="Job.Resources"/> null).</param>
public sealed partial class SlurmJobExecutor(IReadOnlyList<string> stratusCommand, SlurmOptions options) : IJobExecutor
{
    public const string ExecutorName = "slurm";

    /// <summary>What sbatch is asked for <paramref name="job"/>.</summary>
    public SlurmOptions ResourcesOf(Job job) => job.Resources ?? options;

    /// <summary>How long a Slurm command may take: the controller answers in milliseconds, and
    /// one that does not (down, unreachable) is retried by the client for about MessageTimeout.
    /// Tests shorten it to meet a command that hangs.</summary>
    internal static TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(60);

    public string Name => ExecutorName;

    public string Launch(Job job)
    {
        var resources = ResourcesOf(job);
        // --no-requeue: a job Slurm requeued (its node failed, an admin's scontrol requeue) would
        // run its script again, whose train, without --resume, refuses a run folder that holds a
        // checkpoint; it ends NODE_FAIL instead, its reason saying how to resume it.
        List<string> arguments = ["--parsable", "--no-requeue", $"--job-name={job.Id}", $"--output={OutputPattern(job.LogFile)}", "--open-mode=append", $"--ntasks={resources.Ranks}", $"--cpus-per-task={resources.CpusPerRank}"];
        if (resources.Partition is { } partition) arguments.Add($"--partition={partition}");
        if (resources.Time is { } time) arguments.Add($"--time={time}");
        var (code, stdout, stderr) = Run("sbatch", arguments, BatchScript(job));
        if (code != 0) throw SbatchRefusal(SlurmError(stderr, stdout, code));
        // --parsable prints "id" or, on a cluster of a federation, "id;cluster".
        var id = stdout.Trim().Split(';')[0];
        return long.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out _)
            ? id
            : throw new IOException($"sbatch printed no job id (it printed '{stdout.Trim()}')");
    }

    /// <summary>Why sbatch refused a job, in its <paramref name="error"/>'s words: the submission's
    /// fault (a partition or time limit the cluster does not take, more CPUs or memory than its
    /// nodes have), or the cluster's state (a controller sbatch cannot reach, a configuration it
    /// cannot find), which the same submission may pass later.</summary>
    internal static Exception SbatchRefusal(string error)
    {
        if (error.Contains("partition", StringComparison.OrdinalIgnoreCase) || error.Contains("time limit", StringComparison.OrdinalIgnoreCase))
            return new TrustUserException(s => $"sbatch refused the job: {error}; give a {s.Option("partition")} and {s.Option("time")} the cluster takes (sinfo lists its partitions and their time limits), or submit with {s.Option("executor")} local");
        // No node of the partition has the CPUs (or the memory, DefMemPerCPU a CPU) one rank asks
        // for, or the partition has not the CPUs all ranks ask for together.
        if (error.Contains("Requested node configuration is not available", StringComparison.Ordinal)
            || error.Contains("More processors requested than permitted", StringComparison.Ordinal))
            return new TrustUserException(s => $"sbatch refused the job: {error}; ask for fewer {s.Option("cpus_per_rank")} (each rank's must fit on one node, with its memory) or fewer {s.Option("ranks")} (sinfo -o '%P %D %c %m' lists each partition's nodes, their CPUs and memory)");
        return new JobExecutorUnavailableException(s => $"sbatch refused the job: {error}; check that Slurm's commands reach the cluster (sinfo; SLURM_CONF names its slurm.conf), or submit with {s.Option("executor")} local");
    }

    /// <summary>The fewest CPUs a node of <paramref name="partition"/> (null: the cluster's
    /// default; "a,b": either) has, as sinfo says (%c: "16", or "16+" where its nodes differ);
    /// null where sinfo cannot say (no such partition, no cluster it reaches).</summary>
    public static int? NodeCpus(string? partition)
    {
        (int Code, string Stdout, string Stderr) sinfo;
        try
        {
            sinfo = Run("sinfo", ["--noheader", "--format=%P|%c"]);
        }
        catch (Exception e) when (e is TrustUserException or IOException)
        {
            return null;
        }
        if (sinfo.Code != 0) return null;
        var named = partition?.Split(',');
        var cpus = sinfo.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split('|'))
            // The default partition's name ends in *.
            .Where(fields => fields.Length == 2 && (named is null ? fields[0].EndsWith('*') : named.Contains(fields[0].TrimEnd('*'))))
            .Select(fields => int.TryParse(fields[1].TrimEnd('+'), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : (int?)null)
            .Where(n => n is not null).ToList();
        return cpus.Count > 0 ? cpus.Min() : null;
    }

    /// <summary>The batch script: it names the job in its log, as the local supervisor does, then
    /// runs the training: one process, or N ranks as a step srun launches, whose tasks end together
    /// where one fails (--kill-on-bad-exit). Each rank's libtorch runs as many threads as the rank
    /// has CPUs (OMP_NUM_THREADS, which it reads; left alone it starts one a core of the node,
    /// oversubscribing the CPUs Slurm gave the rank). srun is given --cpus-per-task itself: Slurm
    /// 22.05 to 23.02 do not hand sbatch's on to it. A training that a cancel's SIGTERM stopped
    /// (exit 143, after its last checkpoint) ends its Slurm job CANCELLED, by scancel: Slurm would
    /// record the exit as FAILED, and show that beside a job Stratus calls cancelled. The script
    /// outlives that SIGTERM (a trap that does nothing: Cancel signals the script with the
    /// training), and a job Slurm ended otherwise (TIMEOUT, PREEMPTED) is left as it is: scancel
    /// changes only a running job.</summary>
    internal string BatchScript(Job job)
    {
        var resources = ResourcesOf(job);
        IEnumerable<string> launcher = resources.Ranks > 1 ? ["srun", "--mpi=pmix", "--kill-on-bad-exit=1", $"--ntasks={resources.Ranks}", $"--cpus-per-task={resources.CpusPerRank}"] : [];
        var command = TrainArguments.ShellLine([.. stratusCommand, .. job.Arguments.CommandLine()]);
        return $"""
            #!/bin/sh
            # Stratus training job {job.Id}, submitted by {TrainArguments.ShellLine([OneLine(job.SubmittedBy)])}.
            export OMP_NUM_THREADS={resources.CpusPerRank}
            printf '%s (Slurm job %s): %s\n' {job.Id} "$SLURM_JOB_ID" {TrainArguments.ShellLine([command])}
            trap : TERM
            {TrainArguments.ShellLine(launcher)}{(resources.Ranks > 1 ? " " : "")}{command}
            status=$?
            if [ "$status" -eq {CancelledExitCode} ]; then scancel "$SLURM_JOB_ID" 2>/dev/null; fi
            exit "$status"

            """;
    }

    /// <summary><paramref name="text"/> on one line, each control character (a newline, a carriage
    /// return) and line or paragraph separator written as \uXXXX: a comment of the batch script
    /// ends at its line, and sbatch reads a next line starting #SBATCH as its own option (an actor's
    /// name with a newline would choose the job's options, or hold it).</summary>
    internal static string OneLine(string text) => string.Concat(text.Select(c =>
        char.IsControl(c) || c is '\u2028' or '\u2029' ? $"\\u{(int)c:x4}" : c.ToString()));

    public JobObservation? Observe(Job job, JobReading reading)
    {
        // Just submitted, the submitter not having recorded the Slurm job yet (the job service ends
        // one whose submitter never does).
        if (job.ExecutorReference is not { } id) return null;
        // No Slurm commands here, or a controller (or accounting database) that does not answer:
        // the job is as recorded, saying why (listing jobs must not fail for it), and the jobs read
        // after it in the same listing do not wait for Slurm again.
        if (reading.SlurmUnreachable is { } known)
            return JobObservation.Recorded(new SlurmStatus(id, Unreachable: $"{known}; not asked again for this job"));
        (SlurmJobRecord? Record, string? Unknown) slurm;
        try
        {
            slurm = Query(id);
        }
        catch (Exception e) when (e is TrustUserException or IOException)
        {
            reading.SlurmUnreachable = e.Message;
            return JobObservation.Recorded(new SlurmStatus(id, Unreachable: e.Message));
        }
        if (slurm.Record is not { } record)
            return new JobEnd(JobState.Failed, null,
                $"Slurm no longer knows its job {id} (the controller forgets a finished job after MinJobAge) and keeps no accounting to ask ({slurm.Unknown}): how it ended is unknown; see {job.LogFile}");
        var status = new SlurmStatus(id, record.State, record.Reason, record.Partition, record.TimeLimit, record.Nodes, record.Tasks, record.CpusPerTask, Elapsed: record.Elapsed);
        return Observation(record, job) is { } seen ? seen with { Slurm = status } : JobObservation.Recorded(status);
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
                job.CancelRequestedAt is not null ? JobLog.CancelledReason(job, exitCode) : JobLog.FailureReason(job, exitCode))),
            "CANCELLED" => new JobObservation(record.StartTime, new JobEnd(JobState.Cancelled, record.StartTime is null ? null : exitCode,
                record.StartTime is null ? "cancelled before its training started"
                : job.CancelRequestedAt is not null ? JobLog.CancelledReason(job, exitCode)
                : Resumable($"{slurmJob} was cancelled in Slurm (scancel)"))),
            "TIMEOUT" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, Resumable($"{slurmJob} reached its time limit (TIMEOUT; {JobLog.LongerTimeLimit(Surface.Cli)})"))),
            "OUT_OF_MEMORY" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, $"{slurmJob} ran out of the memory it was given (OUT_OF_MEMORY); see {job.LogFile}")),
            "NODE_FAIL" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, Resumable($"{slurmJob}'s node failed (NODE_FAIL)"))),
            // A job of higher priority took its nodes (the cluster's PreemptMode): one that may not
            // be requeued is ended, its training given SIGTERM first, as a cancel's is.
            "PREEMPTED" => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, Resumable($"{slurmJob} was preempted for another job (PREEMPTED)"))),
            _ => new JobObservation(record.StartTime, new JobEnd(JobState.Failed, exitCode, $"{slurmJob} ended {record.State}; see {job.LogFile}")),
        };
    }

    /// <summary>Train's exit after a SIGTERM stopped it (128 + 15), a cancel's.</summary>
    const int CancelledExitCode = 143;

    public void Cancel(Job job, bool force)
    {
        // Not submitted to Slurm yet: the submitter is between recording the job and sbatch.
        if (job.ExecutorReference is not { } id) return;
        // Forced: Slurm's own cancel, which ends the job whatever it runs: SIGTERM to its processes,
        // SIGKILL after KillWait. A training a cancel's SIGTERM reached already takes this one as
        // its second, ending at once; another saves its last checkpoint if it can within KillWait.
        // (scancel --signal=KILL is this same cancel: Slurm never hands a job's processes a SIGKILL
        // of its own.)
        if (force)
        {
            Scancel([id]);
            return;
        }
        // Waiting: removed from the queue. Running: its training is signalled, as the batch step's
        // process (one: the script, which outlives it, and train, --full) or as srun's tasks (ranks;
        // srun itself would answer SIGTERM with SIGKILL to them). A job that starts between the two is signalled.
        Scancel(["--state=PENDING", id]);
        var ranks = Query(id).Record?.Tasks ?? 1;
        Scancel(ranks > 1 ? ["--state=RUNNING", "--signal=TERM", id] : ["--state=RUNNING", "--full", "--signal=TERM", id]);
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
    /// says why neither has one.</summary>
    /// <exception cref="JobExecutorUnavailableException">The controller or the accounting database
    /// cannot be asked now (down, unreachable): the job is then as recorded.</exception>
    static (SlurmJobRecord? Record, string? Unknown) Query(string id)
    {
        var (code, stdout, stderr) = Run("scontrol", ["show", "job", "--oneliner", id]);
        if (code == 0 && ParseScontrol(stdout) is { } record) return (record, null);
        if (!stderr.Contains("Invalid job id", StringComparison.Ordinal))
            throw new JobExecutorUnavailableException($"Slurm's controller could not be asked (scontrol: {SlurmError(stderr, stdout, code)})");
        var sacct = Run("sacct", ["--jobs", id, "--allocations", "--noheader", "--parsable2", "--format=State,ExitCode,Start,Elapsed,NodeList,Partition,Timelimit"]);
        return Accounted(sacct) ?? throw new JobExecutorUnavailableException($"Slurm's accounting could not be asked (sacct: {SlurmError(sacct.Stderr, sacct.Stdout, sacct.Code)})");
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
        // Slurm writes "None" or "(null)" where a field has no value.
        string? Given(string key) => Field(key) is { Length: > 0 } value && value is not ("None" or "(null)") ? value : null;
        var nodes = Given("NodeList");
        return new SlurmJobRecord(state, code, signal, nodes is not null ? ParseTime(Field("StartTime")) : null,
            int.TryParse(Field("NumTasks"), NumberStyles.None, CultureInfo.InvariantCulture, out var tasks) ? tasks : 1,
            Given("Reason"), Given("Partition"), Given("TimeLimit"), nodes,
            int.TryParse(Field("CPUs/Task"), NumberStyles.None, CultureInfo.InvariantCulture, out var cpus) ? cpus : null, Given("RunTime"));
    }

    /// <summary>The job's allocation line of `sacct --parsable2
    /// --format=State,ExitCode,Start,Elapsed,NodeList,Partition,Timelimit` (the first three alone
    /// where an older Stratus asked for them); its state may read "CANCELLED by 0" (the user who
    /// cancelled it), its nodes "None assigned".</summary>
    public static SlurmJobRecord? ParseSacct(string text)
    {
        var line = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).FirstOrDefault();
        if (line?.Split('|') is not [var state, var exit, var start, .. var rest]) return null;
        state = state.Split(' ')[0];
        var (code, signal) = ParseExitCode(exit);
        string? Given(int i) => i < rest.Length && rest[i] is { Length: > 0 } value && value is not ("None assigned" or "Unknown") ? value : null;
        return new SlurmJobRecord(state, code, signal, ParseTime(start), 1, Partition: Given(2), TimeLimit: Given(3), Nodes: Given(1), Elapsed: Given(0));
    }

    static (int Code, int Signal) ParseExitCode(string? text) =>
        text?.Split(':') is [var code, var signal] && int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out var c)
            && int.TryParse(signal, NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? (c, s) : (0, 0);

    /// <summary>Slurm writes times in the controller's local time, without an offset (Unknown or
    /// None where there is none).</summary>
    static DateTimeOffset? ParseTime(string? text) =>
        DateTime.TryParseExact(text, "yyyy-MM-dd'T'HH:mm:ss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var time)
            ? new DateTimeOffset(time) : null;

    /// <summary>A path as sbatch's --output takes it, which slurmstepd reads as a pattern (fname_create):
    /// % starts a replacement (%j the job id) and %% is a %; but a pattern with a backslash in it is
    /// taken as escaped, each backslash dropped but the second of a pair, and nothing replaced. So a
    /// path with one has its backslashes doubled and its % left as they are: left alone, a run folder
    /// named a\b logged to ab (the job failing where that was missing), and one of .\. parts to ..,
    /// outside the folder and the jobs root its path was checked against.</summary>
    static string OutputPattern(string path) => path.Contains('\\', StringComparison.Ordinal)
        ? path.Replace("\\", "\\\\", StringComparison.Ordinal)
        : path.Replace("%", "%%", StringComparison.Ordinal);

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
            throw new TrustUserException(s => $"{command} is not on the PATH: the slurm executor runs jobs through Slurm's commands; install them (Debian: apt-get install slurm-client) and set SLURM_CONF to the cluster's slurm.conf, or use {s.Option("executor")} local");
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
