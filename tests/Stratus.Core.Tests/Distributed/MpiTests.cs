// Starts tests/Stratus.Mpi.TestHost as two MPI ranks and checks what only a real multi-process
// job can show. Skipped (with the reason) when Open MPI's mpirun is not installed.
using System.Diagnostics;

namespace Stratus.Tests.Distributed;

public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (MpiTests.MpiRun is null)
            Skip = "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)";
    }
}

public sealed class MpiTests
{
    public static readonly string? MpiRun = (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(folder => Path.Combine(folder, "mpirun"))
        .FirstOrDefault(File.Exists);

    [MpiFact]
    public void Collectives_agree_on_both_ranks()
    {
        var (exitCode, output) = Run("collectives", TimeSpan.FromSeconds(60));
        Assert.True(exitCode == 0, output);
        Assert.Contains("rank 0/2 collectives ok", output);
        Assert.Contains("rank 1/2 collectives ok", output);
    }

    [MpiFact]
    public void Bucketed_and_sharded_training_match_a_single_process_reference()
    {
        var (exitCode, output) = Run("training", TimeSpan.FromSeconds(60));
        Assert.True(exitCode == 0, output);
        Assert.Contains("rank 0/2 training ok", output);
        Assert.Contains("rank 1/2 training ok", output);
    }

    [MpiFact]
    public void Killing_one_rank_ends_the_job_with_an_error_within_ten_seconds()
    {
        var folder = Directory.CreateTempSubdirectory("stratus-mpi-");
        try
        {
            using var job = Start($"hang {folder.FullName}");
            var pidFiles = new[] { "rank0.pid", "rank1.pid" }.Select(name => Path.Combine(folder.FullName, name)).ToArray();
            var waiting = Stopwatch.StartNew();
            while (!pidFiles.All(File.Exists) && waiting.Elapsed < TimeSpan.FromSeconds(60) && !job.HasExited)
                Thread.Sleep(50);
            if (!pidFiles.All(File.Exists))
            {
                job.Kill(entireProcessTree: true);
                Assert.Fail("the ranks did not start: " + job.StandardOutput.ReadToEnd() + job.StandardError.ReadToEnd());
            }
            Thread.Sleep(300); // let rank 0 enter the all-reduce

            using var victim = Process.GetProcessById(int.Parse(File.ReadAllText(pidFiles[1])));
            var killed = Stopwatch.StartNew();
            victim.Kill(); // SIGKILL on Linux
            var ended = job.WaitForExit(TimeSpan.FromSeconds(10));
            if (!ended)
                job.Kill(entireProcessTree: true);
            Assert.True(ended, "mpirun was still running 10 s after a rank was killed");
            Assert.NotEqual(0, job.ExitCode);
            Assert.True(killed.Elapsed < TimeSpan.FromSeconds(10), $"took {killed.Elapsed}");
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    private static (int ExitCode, string Output) Run(string arguments, TimeSpan timeout)
    {
        using var job = Start(arguments);
        var stdout = job.StandardOutput.ReadToEndAsync();
        var stderr = job.StandardError.ReadToEndAsync();
        if (!job.WaitForExit(timeout))
        {
            job.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}\n{stdout.Result}{stderr.Result}");
        }
        return (job.ExitCode, stdout.Result + stderr.Result);
    }

    private static Process Start(string arguments)
    {
        var host = Path.Combine(AppContext.BaseDirectory, "Stratus.Mpi.TestHost.dll");
        // Rank processes get a pseudo-terminal from Open MPI; TERM=dumb keeps .NET from writing
        // terminal escape codes into the captured output.
        var info = new ProcessStartInfo(MpiRun!, $"--allow-run-as-root --oversubscribe -np 2 -x TERM=dumb dotnet {host} {arguments}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        return Process.Start(info)!;
    }
}
