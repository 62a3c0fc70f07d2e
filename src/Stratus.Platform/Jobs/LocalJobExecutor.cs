// Runs jobs as processes on this machine, on Linux. A job's supervisor (`stratus jobs supervise
// <id>`) is started in a session of its own (setsid), stdin closed and its output appended to the
// job's log in the run folder, so it outlives the command or server that submitted it and no
// terminal's hang-up or Ctrl+C reaches it. It starts `stratus train` as its child, into the same
// log, records the training process (pid and start time) and, once it exits, its exit code and
// state. A job whose supervisor is gone without recording the end (kill -9, a reboot) is found so
// by whoever reads it next: neither the supervisor nor the training process is still the process
// recorded (a pid, once free, may be another process's, so its start time must match too).
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Stratus.Safety;

namespace Stratus.Platform.Jobs;

/// <param name="stratusCommand">The command that runs the Stratus CLI: its executable, or
/// `dotnet` and stratus.dll.</param>
/// <param name="dataDirectory">The data directory whose stratus.db records the jobs.</param>
public sealed partial class LocalJobExecutor(IReadOnlyList<string> stratusCommand, string dataDirectory) : IJobExecutor
{
    public const string ExecutorName = "local";

    /// <summary>The verb the supervisor runs as, hidden from `stratus jobs --help`.</summary>
    public const string SuperviseVerb = "supervise";

    const int SigTerm = 15;
    const int SigKill = 9;

    public string Name => ExecutorName;

    public string Launch(Job job)
    {
        if (!OperatingSystem.IsLinux()) throw new TrustUserException("the local job executor runs on Linux (it starts jobs with setsid and follows them through /proc)");
        Directory.CreateDirectory(Path.GetDirectoryName(job.LogFile)!);
        // sh starts the supervisor in the background with its own stdin and output, prints its pid
        // and exits: nothing of the submitter's (a terminal, a test's pipe) stays open in the job.
        // setsid, not a process group leader here, makes its session and execs: the pid is the supervisor's.
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var arg in (string[])["-c", "log=$1; shift; setsid \"$@\" </dev/null >>\"$log\" 2>&1 & echo $!", "sh", job.LogFile, .. stratusCommand, "jobs", SuperviseVerb, job.Id, "--data-dir", dataDirectory])
            info.ArgumentList.Add(arg);
        using var shell = Process.Start(info)!;
        shell.StandardInput.Close();
        var pidText = shell.StandardOutput.ReadToEnd().Trim();
        shell.WaitForExit();
        if (shell.ExitCode != 0 || !int.TryParse(pidText, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            throw new IOException($"could not start the job's supervisor (sh exited with {shell.ExitCode}); see {job.LogFile}");
        return Reference(pid, StartOf(pid));
    }

    public JobObservation? Observe(Job job, JobReading reading)
    {
        var supervisor = "its supervisor";
        if (job.ExecutorReference is { } reference)
        {
            var (pid, start) = ParseReference(reference);
            if (IsRunning(pid, start)) return null;
            supervisor = $"its supervisor (pid {pid})";
        }
        // Just submitted, the submitter not having recorded the supervisor yet (the job service
        // ends one whose submitter never does); or its submitter ended before recording it, the
        // training then being all there is to follow.
        else if (job.Pid is null) return null;
        // The training goes on without its supervisor: the job runs (and can be cancelled) until it ends.
        if (job.Pid is { } training && IsRunning(training, job.PidStart)) return null;
        return new JobEnd(JobState.Failed, null, job.Pid is null
            ? $"{supervisor} ended before it started the training; see {job.LogFile}"
            : $"{supervisor} ended without recording how the training (pid {job.Pid}) ended (killed?); see {job.LogFile}");
    }

    public void Cancel(Job job, bool force)
    {
        // Not started yet: the supervisor finds the cancel when it records the start, and stops it
        // then (with a SIGTERM, a forced cancel's too: a training at its first step has nothing to save).
        if (job.Pid is { } pid && IsRunning(pid, job.PidStart)) Signal(pid, force ? SigKill : SigTerm);
    }

    /// <summary>The supervisor's work (`stratus jobs supervise`): runs the queued job's training,
    /// records it running, waits for it and records how it ended. Returns the exit code to end with.</summary>
    public int Supervise(SqlJobStore store, string id)
    {
        var job = store.Get(id) ?? throw SqlJobStore.UnknownJob(id);
        if (job.State != JobState.Queued) return 0;
        Console.WriteLine($"job {id}: {TrainArguments.ShellLine(stratusCommand.Concat(job.Arguments.CommandLine()))}");
        if (job.CancelRequestedAt is not null)
        {
            store.RecordEnd(id, new JobEnd(JobState.Cancelled, null, "cancelled before its training started"));
            return 0;
        }
        var info = new ProcessStartInfo(stratusCommand[0]) { UseShellExecute = false };
        foreach (var arg in stratusCommand.Skip(1).Concat(job.Arguments.CommandLine())) info.ArgumentList.Add(arg);
        Process training;
        try
        {
            training = Process.Start(info)!;
        }
        catch (Win32Exception e)
        {
            store.RecordEnd(id, new JobEnd(JobState.Failed, null, $"could not start {stratusCommand[0]}: {e.Message}"));
            return 1;
        }
        using (training)
        {
            // A cancel that came first has found no process to signal: this one stops it.
            if (store.RecordStarted(id, training.Id, StartOf(training.Id))) Signal(training.Id, SigTerm);
            training.WaitForExit();
            var code = training.ExitCode;
            Console.Out.Flush();
            var cancelled = store.Get(id)?.CancelRequestedAt is not null;
            store.RecordEnd(id, code == 0 ? new JobEnd(JobState.Succeeded, 0, null)
                : new JobEnd(JobState.Failed, code, cancelled ? JobLog.CancelledReason(job, code) : JobLog.FailureReason(job, code)));
            return 0;
        }
    }

    static string Reference(int pid, long? start) => start is { } s ? $"{pid}:{s}" : pid.ToString(CultureInfo.InvariantCulture);

    static (int Pid, long? Start) ParseReference(string reference)
    {
        var parts = reference.Split(':');
        return (int.Parse(parts[0], CultureInfo.InvariantCulture), parts.Length > 1 ? long.Parse(parts[1], CultureInfo.InvariantCulture) : null);
    }

    /// <summary>Whether <paramref name="pid"/> is a live process that started at
    /// <paramref name="start"/> (any start where none was recorded).</summary>
    internal static bool IsRunning(int pid, long? start) => StartOf(pid) is { } now && (start is null || start == now);

    /// <summary>When the process started, in clock ticks since boot (field 22 of /proc/pid/stat);
    /// null where there is no such process, or it has ended and waits only to be reaped (a zombie,
    /// as a child of a container's init that reaps nothing stays).</summary>
    internal static long? StartOf(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        // The command name, in parentheses, may hold spaces and parentheses itself: the fields
        // after it start at state (field 3).
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        if (fields[0] is "Z" or "X") return null;
        return long.Parse(fields[22 - 3], CultureInfo.InvariantCulture);
    }

    static void Signal(int pid, int signal)
    {
        // ESRCH: it ended meanwhile, which is what the signal asked for.
        if (kill(pid, signal) != 0 && Marshal.GetLastPInvokeError() != 3)
            throw new Win32Exception(Marshal.GetLastPInvokeError(), $"could not signal process {pid}");
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
