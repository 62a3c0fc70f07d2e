// Runs the real `stratus` CLI (the stratus.dll built next to the tests) as a child process, alone
// or as the ranks of an Open MPI job.
using System.Diagnostics;
using System.Text;

namespace Stratus.Cli.Tests;

static class Cli
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "stratus.dll");

    public static readonly string? MpiRun = (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(folder => Path.Combine(folder, "mpirun"))
        .FirstOrDefault(File.Exists);

    /// <summary>`mpirun -np ranks dotnet stratus.dll args`. As root, with more ranks than cores
    /// allowed; TERM=dumb because Open MPI gives each rank a pseudo-terminal; ranks waiting in a
    /// collective yield their core instead of spinning, since test machines are small and shared.</summary>
    public static ProcessStartInfo MpiStartInfo(int ranks, params string[] args)
    {
        var info = new ProcessStartInfo(MpiRun ?? throw new InvalidOperationException("mpirun is not installed"))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var arg in new[] { "--allow-run-as-root", "--oversubscribe", "-np", ranks.ToString(), "-x", "TERM=dumb", "--mca", "mpi_yield_when_idle", "1", "dotnet", Dll }.Concat(args))
            info.ArgumentList.Add(arg);
        info.Environment["TERM"] = "dumb";
        return info;
    }

    public static (int ExitCode, string Stdout, string Stderr) RunMpi(int ranks, params string[] args) => Run(MpiStartInfo(ranks, args));

    /// <summary>Two ranks started with their own arguments (mpirun's `-np 1 a : -np 1 b`), after
    /// the mpirun <paramref name="options"/>; a job still running after <paramref name="limit"/>
    /// is killed and reported as hanging.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunMpiPerRank(string[] rank0, string[] rank1, string[] options, TimeSpan limit)
    {
        var info = MpiStartInfo(1, rank0);
        var np = info.ArgumentList.IndexOf("-np");
        foreach (var option in options.Reverse()) info.ArgumentList.Insert(np, option);
        foreach (var arg in new[] { ":", "-np", "1", "dotnet", Dll }.Concat(rank1)) info.ArgumentList.Add(arg);
        return Run(info, limit);
    }

    /// <summary><see cref="RunMpi"/> with the TERM of a colour terminal, as a user's shell has it.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunMpiInColourTerminal(int ranks, params string[] args)
    {
        var info = MpiStartInfo(ranks, args);
        info.ArgumentList[info.ArgumentList.IndexOf("TERM=dumb")] = "TERM=xterm-256color";
        info.Environment["TERM"] = "xterm-256color";
        return Run(info);
    }

    public static ProcessStartInfo StartInfo(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Dll);
        foreach (var arg in args) info.ArgumentList.Add(arg);
        info.Environment["TERM"] = "dumb";
        return info;
    }

    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => Run(StartInfo(args));

    /// <summary><paramref name="info"/> started with SIGINT at its default, for a test that stops
    /// the CLI with Ctrl+C: a test run started in the background of a script (`dotnet test &`)
    /// ignores SIGINT, every process it starts inherits that, and .NET then leaves Ctrl+C ignored,
    /// as a program started with nohup expects; the test waited for a stop that never came.</summary>
    public static ProcessStartInfo WithCtrlC(ProcessStartInfo info)
    {
        info.ArgumentList.Insert(0, info.FileName);
        info.ArgumentList.Insert(0, "--default-signal=INT");
        info.FileName = "env";
        return info;
    }

    /// <summary>The CLI with its address space capped at <paramref name="kibibytes"/> (bash's
    /// `ulimit -v`): an allocation over the cap then fails at once, whether or not the machine
    /// overcommits memory (libtorch and .NET map about 4 GiB before they allocate anything).</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunWithMemoryCap(long kibibytes, params string[] args)
    {
        var info = StartInfo(args);
        info.FileName = "bash";
        info.ArgumentList.Insert(0, "-c");
        info.ArgumentList.Insert(1, $"ulimit -v {kibibytes} && exec dotnet \"$@\"");
        info.ArgumentList.Insert(2, "bash");
        return Run(info);
    }

    public static (int ExitCode, string Stdout, string Stderr) Run(ProcessStartInfo info, TimeSpan? limit = null)
    {
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit ?? TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{info.FileName} {string.Join(' ', info.ArgumentList)} did not finish");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>3,000 characters of a small alphabet: a corpus a tiny model learns in a few steps.</summary>
    public static string TinyCorpus()
    {
        var text = new StringBuilder();
        var random = new Random(1);
        for (var i = 0; i < 3000; i++) text.Append("abcdefgh ij\n"[random.Next(12)]);
        return text.ToString();
    }

    /// <summary>The tiny corpus prepared into temp["data"] and a tiny config in temp["tiny.json"].</summary>
    public static (string Data, string Config) PrepareTiny(TempDirectory temp)
    {
        File.WriteAllText(temp["corpus.txt"], TinyCorpus());
        var (code, _, stderr) = Run("prepare", "--input", temp["corpus.txt"], "--out", temp["data"]);
        Assert.True(code == 0, stderr);
        File.WriteAllText(temp["tiny.json"], """
            { "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "batch_size": 8, "bias": false,
              "learning_rate": 2e-3, "min_lr": 2e-4, "max_iters": 400, "lr_decay_iters": 400, "warmup_iters": 10,
              "eval_interval": 100, "eval_iters": 2, "checkpoint_interval": 10, "log_interval": 50, "seed": 5, "dropout": 0.1 }
            """);
        return (temp["data"], temp["tiny.json"]);
    }
}

/// <summary>A test that needs Open MPI; skipped, with the reason, where mpirun is missing
/// (.ci/run installs openmpi-bin).</summary>
sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (Cli.MpiRun is null)
            Skip = "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)";
    }
}

sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Directory.CreateDirectory(Path);
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"stratus-cli-test-{Guid.NewGuid():N}");
    public string this[string name] => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        EndProcessesNamingIt();
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }

    /// <summary>Kills what a test started that outlives it and names this folder on its command
    /// line: a job's supervisor and training run detached, and a test that fails before its job
    /// ends would leave them training (for ever, with --max-iters 1000000) on the shared machine.</summary>
    void EndProcessesNamingIt()
    {
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(System.IO.Path.GetFileName(entry), out var pid) || pid == Environment.ProcessId) continue;
            string commandLine;
            try { commandLine = File.ReadAllText(System.IO.Path.Combine(entry, "cmdline")); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (!commandLine.Split('\0').Any(argument => argument.Contains(Path, StringComparison.Ordinal))) continue;
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
                process.WaitForExit(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException) { }
        }
    }
}
