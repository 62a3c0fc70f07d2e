// A single-node Slurm cluster of its own for a test class, as docs/platform.md sets one up: munged
// (as user munge, on a socket of its own), slurmctld and slurmd in the foreground, their
// configuration, state, spool and logs in a temporary folder, on ports found free, so it meets no
// other cluster or munged on the machine. The Slurm commands the tests and the CLI run find it
// through SLURM_CONF, set for this process while the cluster runs. Dispose cancels its jobs and
// stops every daemon it started, whatever the tests did; a watchdog does where this process is
// killed before it can. A machine where it cannot start (Slurm not installed, not root) fails the
// tests, saying so: a test of the Slurm executor that passes without Slurm tests nothing.
using System.Diagnostics;

namespace Stratus.Slurm.Tests;

public sealed class SlurmCluster : IDisposable
{
    public string Folder { get; } = Path.Combine(Path.GetTempPath(), $"stratus-slurm-{Guid.NewGuid():N}");

    readonly string? previousConf = Environment.GetEnvironmentVariable("SLURM_CONF");
    readonly List<Process> daemons = [];
    Process? watchdog;
    Process? controller;
    string MungeFolder => Path.Combine(Folder, "munge");

    public SlurmCluster()
    {
        var missing = new[] { "munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel" }.Where(command => Which(command) is null).ToArray();
        if (missing.Length > 0)
            throw new InvalidOperationException($"the Slurm tests start a cluster of their own, and {string.Join(", ", missing)} is not installed: apt-get install slurmctld slurmd slurm-client munge (.ci/run does)");
        if (Environment.UserName != "root")
            throw new InvalidOperationException("the Slurm tests start a cluster of their own as root (slurmd runs jobs as their users); run them as root, as CI does");
        try
        {
            Start();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    void Start()
    {
        Directory.CreateDirectory(MungeFolder);
        // /tmp's own mode lets munged (user munge) reach its folder; that folder is munge's alone.
        Run("chmod", "755", Folder);
        Run("chown", "munge:munge", MungeFolder);
        Run("runuser", "-u", "munge", "--", Which("munged")!, $"--socket={MungeFolder}/munge.socket", $"--pid-file={MungeFolder}/munged.pid",
            $"--log-file={MungeFolder}/munged.log", $"--seed-file={MungeFolder}/munged.seed");

        var host = Run("hostname", "-s").Trim();
        var memory = Run(Which("slurmd")!, "-C").Split([' ', '\n']).Single(field => field.StartsWith("RealMemory=", StringComparison.Ordinal));
        var conf = Path.Combine(Folder, "slurm.conf");
        // Outside the ephemeral range: the daemons bind them after this process let them go.
        var ports = Stratus.Server.Tests.FreePorts.Take(2);
        var (controllerPort, nodePort) = (ports[0], ports[1]);
        File.WriteAllText(conf, $"""
            ClusterName=stratus-test
            SlurmctldHost={host}(127.0.0.1)
            SlurmctldPort={controllerPort}
            SlurmdPort={nodePort}
            SlurmUser=root
            SlurmdUser=root
            AuthType=auth/munge
            CredType=cred/munge
            AuthInfo=socket={MungeFolder}/munge.socket
            ProctrackType=proctrack/linuxproc
            TaskPlugin=task/none
            SelectType=select/cons_tres
            SelectTypeParameters=CR_Core_Memory
            DefMemPerCPU=1024
            SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
            EnforcePartLimits=ALL
            AccountingStorageType=accounting_storage/none
            JobCompType=jobcomp/none
            MpiDefault=none
            ReturnToService=2
            StateSaveLocation={Folder}/state
            SlurmdSpoolDir={Folder}/spool
            SlurmctldPidFile={Folder}/slurmctld.pid
            SlurmdPidFile={Folder}/slurmd.pid
            SlurmctldLogFile={Folder}/slurmctld.log
            SlurmdLogFile={Folder}/slurmd.log
            NodeName={host} CPUs={Environment.ProcessorCount} {memory} State=UNKNOWN
            PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP

            """);
        Directory.CreateDirectory(Path.Combine(Folder, "state"));
        Directory.CreateDirectory(Path.Combine(Folder, "spool"));
        Environment.SetEnvironmentVariable("SLURM_CONF", conf);
        watchdog = Watchdog(conf);
        daemons.Add(controller = Daemon("slurmctld", "-D", "-c", "-f", conf));
        daemons.Add(Daemon("slurmd", "-D", "-f", conf));
        WaitForIdleNode();
    }

    /// <summary>Stops the controller alone (slurmd and the jobs it runs go on), as an operator's
    /// restart or a crash would; <see cref="StartController"/> starts it again.</summary>
    public void StopController()
    {
        Run("scontrol", "shutdown", "slurmctld");
        if (!controller!.WaitForExit(TimeSpan.FromSeconds(30))) controller.Kill();
        daemons.Remove(controller);
        controller.Dispose();
    }

    /// <summary>Starts the controller again from its saved state (its jobs kept).</summary>
    public void StartController()
    {
        daemons.Add(controller = Daemon("slurmctld", "-D", "-f", Path.Combine(Folder, "slurm.conf")));
        WaitForIdleNode();
    }

    void WaitForIdleNode()
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        // Restarted, its node may be running jobs still.
        while (RunQuietly("sinfo", "--noheader", "--format=%t").Stdout.Trim() is not ("idle" or "mix" or "alloc"))
        {
            if (DateTime.UtcNow > deadline || daemons.Any(daemon => daemon.HasExited))
                throw new InvalidOperationException($"the test cluster's node did not become idle within a minute; its logs are in {Folder}: {Tail("slurmctld.log")} {Tail("slurmd.log")}");
            Thread.Sleep(200);
        }
    }

    /// <summary>Stops the cluster where this process ends without disposing of it (a test run
    /// killed midway, a debugger stopped): the daemons, started as its children, would otherwise
    /// run on, their jobs with them, and the next run would meet them.</summary>
    Process Watchdog(string conf)
    {
        var info = new ProcessStartInfo("sh") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "-c", """
            exec >/dev/null 2>&1 </dev/null
            tail --pid="$1" -f /dev/null
            export SLURM_CONF="$3"
            timeout 20 scancel --user=root
            timeout 20 scontrol shutdown
            sleep 5
            for pid in "$2/slurmctld.pid" "$2/slurmd.pid" "$2/munge/munged.pid"; do [ -f "$pid" ] && kill -9 "$(cat "$pid")"; done
            rm -rf "$2"
            """, "slurm-cluster-watchdog", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture), Folder, conf })
            info.ArgumentList.Add(argument);
        return Process.Start(info)!;
    }

    public void Dispose()
    {
        // Disposed of: this does what the watchdog would have.
        if (watchdog is { } dog)
        {
            dog.Kill(entireProcessTree: true);
            dog.WaitForExit();
            dog.Dispose();
        }
        if (daemons.Count > 0)
        {
            RunQuietly("scancel", "--user=root");
            RunQuietly("scontrol", "shutdown");
            foreach (var daemon in daemons)
            {
                if (!daemon.WaitForExit(TimeSpan.FromSeconds(20))) daemon.Kill(entireProcessTree: true);
                daemon.Dispose();
            }
        }
        if (File.Exists(Path.Combine(MungeFolder, "munged.pid"))
            && int.TryParse(File.ReadAllText(Path.Combine(MungeFolder, "munged.pid")).Trim(), out var munged))
        {
            try
            {
                using var process = Process.GetProcessById(munged);
                process.Kill();
                process.WaitForExit(TimeSpan.FromSeconds(10));
            }
            catch (ArgumentException) { } // gone already
        }
        Environment.SetEnvironmentVariable("SLURM_CONF", previousConf);
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }

    /// <summary>Runs a Slurm command against this cluster.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunQuietly(string command, params string[] arguments)
    {
        var info = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill();
            return (-1, "", $"{command} did not answer within a minute");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    static string Run(string command, params string[] arguments)
    {
        var (code, stdout, stderr) = RunQuietly(command, arguments);
        return code == 0 ? stdout : throw new InvalidOperationException($"{command} {string.Join(' ', arguments)} exited with {code}: {stderr.Trim()}");
    }

    Process Daemon(string command, params string[] arguments)
    {
        var info = new ProcessStartInfo(Which(command)!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        var process = Process.Start(info)!;
        // Their logs go to files too; the pipes are drained so they never block on a full one.
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    string Tail(string log) =>
        File.Exists(Path.Combine(Folder, log)) ? string.Join(" | ", File.ReadLines(Path.Combine(Folder, log)).TakeLast(5)) : $"(no {log})";

    public static string? Which(string command) => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Concat(["/usr/sbin", "/sbin"]).Select(folder => Path.Combine(folder, command)).FirstOrDefault(File.Exists);
}
