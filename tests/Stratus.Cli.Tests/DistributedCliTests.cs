// Data-parallel training through the real CLI under Open MPI: two ranks must learn exactly what
// one rank learns with the same global batch (gradient accumulation), checkpoints must not depend
// on the world size, and a dead rank must end the job. Skipped where mpirun is missing.
using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Stratus.Cli.Tests;

public sealed class DistributedCliTests
{
    // The tiny CLI config (dropout 0.1, so per-micro-batch dropout seeds are checked too) with
    // four micro-batches per step: one rank runs all four, each of two ranks runs two.
    static string[] Train(string config, string data, string run, int maxIters, params string[] more) => Train(config, data, run, maxIters, maxIters, more);

    static string[] Train(string config, string data, string run, int maxIters, int lrDecayIters, params string[] more) =>
        ["train", "--config", config, "--data", data, "--out", run, "--max-iters", maxIters.ToString(), "--lr-decay-iters", lrDecayIters.ToString(),
         "--gradient-accumulation-steps", "4", "--eval-interval", "50", "--eval-iters", "3", "--checkpoint-interval", "10", .. more];

    static void AssertSameLosses(List<(long Step, double Loss)> expected, List<(long Step, double Loss)> actual, string what)
    {
        Assert.Equal(expected.Select(e => e.Step), actual.Select(a => a.Step));
        for (var i = 0; i < expected.Count; i++)
        {
            var relative = Math.Abs(expected[i].Loss - actual[i].Loss) / Math.Abs(expected[i].Loss);
            Assert.True(relative <= 1e-5, $"{what}, step {expected[i].Step}: {expected[i].Loss} vs {actual[i].Loss} (relative {relative:E2})");
        }
    }

    static List<(long Step, double Loss)> ValLosses(string run) =>
        File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(m => m["val_loss"] is not null).Select(m => ((long)m["step"]!, (double)m["val_loss"]!)).ToList();

    [MpiFact]
    public void Two_ranks_give_the_losses_of_one_rank_with_accumulation_with_and_without_ZeRO()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var single = Cli.Run(Train(config, data, temp["one"], 100));
        Assert.True(single.ExitCode == 0, single.Stderr);
        var expected = CliTests.Losses(temp["one"]);
        Assert.Equal(100, expected.Count);

        foreach (var zero in new[] { "0", "1" })
        {
            var run = temp[$"two-zero{zero}"];
            var (code, stdout, stderr) = Cli.RunMpi(2, Train(config, data, run, 100, "--zero", zero));
            Assert.True(code == 0, stdout + stderr);
            Assert.Contains($"data parallel: 2 ranks, 2 micro-batches each per step, {(zero == "1" ? "ZeRO-1" : "replicated optimizer")}", stdout);
            // Rank 0 alone writes: one line per step and per evaluation, one copy of the console.
            AssertSameLosses(expected, CliTests.Losses(run), $"zero {zero}");
            AssertSameLosses(ValLosses(temp["one"]), ValLosses(run), $"zero {zero}, evaluation");
            Assert.Single(stdout.Split('\n'), line => line.StartsWith("step 100:"));
        }
    }

    [MpiFact]
    public void A_ranks_console_is_plain_text_whatever_terminal_it_is_given()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // mpirun gives each rank a pseudo-terminal, and its output often ends in a log file: the
        // loss plot that ends training was written in colour codes there.
        var (code, stdout, stderr) = Cli.RunMpiInColourTerminal(2, Train(config, data, temp["run"], 10));
        Assert.True(code == 0, stdout + stderr);
        Assert.Contains("train loss", stdout);
        // No escape code at all: .NET also switched the terminal's keypad mode (ESC[?1h ESC=) at
        // the start of the log, and again after the stop signal.
        Assert.DoesNotContain('\u001b', stdout + stderr);
    }

    [MpiFact]
    public void Tasks_their_launcher_did_not_connect_through_MPI_are_refused_before_anything_is_written()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // A task of `srun -n 2` without a PMI plugin MPI can use: its MPI_Init makes a world of its
        // own. Each such task trained the whole model as rank 0, into the same run folder.
        var info = Cli.StartInfo(Train(config, data, temp["run"], 20));
        foreach (var (name, value) in new[] { ("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_NTASKS", "2"), ("SLURM_STEP_ID", "0"), ("SLURM_JOB_ID", "42") })
            info.Environment[name] = value;
        var (code, stdout, stderr) = Cli.Run(info);
        Assert.True(code == 2, stdout + stderr);
        Assert.Contains("error: Started as one of 2 ranks, but MPI sees a world of 1: the launcher did not connect the ranks to each other; under srun pass --mpi=pmix", stderr);
        Assert.False(Directory.Exists(temp["run"]));
    }

    [MpiFact]
    public void The_one_task_of_srun_n_1_trains_as_a_single_process()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // What `srun -n 1` (srun's default: no PMI plugin) gives its task. It was taken for one of
        // 1 ranks, and Open MPI's MPI_Init aborted it: "The application appears to have been direct
        // launched using "srun", but OMPI was not built with SLURM support".
        var info = Cli.StartInfo(Train(config, data, temp["run"], 4, "--warmup-iters", "0"));
        foreach (var (name, value) in new[] { ("SLURM_JOB_ID", "42"), ("SLURM_NODELIST", "localhost"), ("SLURM_STEP_ID", "0"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"), ("SLURM_STEP_NUM_TASKS", "1"), ("SLURM_NTASKS", "1") })
            info.Environment[name] = value;
        var (code, stdout, stderr) = Cli.Run(info);
        Assert.True(code == 0, stdout + stderr);
        Assert.DoesNotContain("data parallel", stdout);
        Assert.Equal(4, CliTests.Losses(temp["run"]).Count);
    }

    /// <summary>Every rank resolves train's --init-from; only rank 0 prints, the warning that a folder
    /// of the working directory shadows a registered name included.</summary>
    [MpiFact]
    public void Under_mpirun_only_rank_0_warns_that_an_init_from_folder_shadows_a_registered_name()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var trained = Cli.Run(Train(config, data, temp["base"], 10));
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        var name = "shadow" + Guid.NewGuid().ToString("N")[..12];
        Assert.Equal(0, Cli.Run("models", "register", temp["base"], "--name", name, "--data-dir", temp["home"]).ExitCode);
        // The ranks' working directory is this process's.
        var shadow = Directory.CreateDirectory(Path.Combine(Environment.CurrentDirectory, name));
        try
        {
            foreach (var file in Directory.GetFiles(Stratus.Training.Checkpoint.Resolve(temp["base"])))
                File.Copy(file, Path.Combine(shadow.FullName, Path.GetFileName(file)));
            var (code, stdout, stderr) = Cli.RunMpi(2, "train", "--init-from", name, "--data", data, "--out", temp["ft"], "--max-iters", "2",
                "--gradient-accumulation-steps", "2", "--eval-interval", "50", "--eval-iters", "1", "--data-dir", temp["home"]);
            Assert.True(code == 0, stdout + stderr);
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(stdout + stderr, "is a folder here and a registered model's reference"));
        }
        finally
        {
            shadow.Delete(recursive: true);
        }
    }

    /// <summary>Rank 0 alone asks the registry for train's --init-from and tells the other ranks what
    /// it resolved: a rank whose node does not see the registry (rank 1's --data-dir holds none)
    /// trains all the same, from the version rank 0 resolved, which the run records.</summary>
    [MpiFact]
    public void Under_mpirun_rank_0_alone_resolves_a_registered_init_from_and_the_other_ranks_load_what_it_resolved()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var trained = Cli.Run(Train(config, data, temp["base"], 10));
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        Assert.Equal(0, Cli.Run("models", "register", temp["base"], "--name", "chat", "--alias", "production", "--data-dir", temp["home"]).ExitCode);
        string[] FineTune(string home) => ["train", "--init-from", "chat@production", "--data", data, "--out", temp["ft"], "--max-iters", "2",
            "--gradient-accumulation-steps", "2", "--eval-interval", "50", "--eval-iters", "1", "--data-dir", home];
        var (code, stdout, stderr) = Cli.RunMpiPerRank(FineTune(temp["home"]), FineTune(temp["elsewhere"]), [], TimeSpan.FromSeconds(90));
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal("chat:1", (string?)JsonNode.Parse(File.ReadAllText(Path.Combine(temp["ft"], "run.json")))!["init_from_version"]);
        Assert.False(Directory.Exists(temp["elsewhere"]), "rank 1 opened a registry");
    }

    [MpiFact]
    public void Accumulation_steps_that_do_not_divide_among_the_ranks_are_refused()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (code, stdout, stderr) = Cli.RunMpi(2, "train", "--config", config, "--data", data, "--out", temp["run"], "--gradient-accumulation-steps", "3");
        Assert.NotEqual(0, code);
        // The line names the fix: the nearest multiple above, or a world size that divides it.
        Assert.Contains("gradient_accumulation_steps (3) must be a multiple of the number of ranks (2): it counts the micro-batches of the whole job per optimizer step, " +
            "each rank runs an equal share; pass --gradient-accumulation-steps 4, or run on a number of ranks that divides 3", stdout + stderr);
    }

    [MpiFact]
    public void Ranks_started_with_different_settings_are_refused_by_every_rank_before_anything_is_written()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // Rank 1 would train 10 steps longer and wait for rank 0 for ever; a wider model on rank 1
        // gathered into rank 0's buffers corrupted the heap; another seed silently drew other batches.
        var (code, stdout, stderr) = Cli.RunMpiPerRank(
            Train(config, data, temp["run"], 20),
            Train(config, data, temp["run"], 30, 20, "--n-embd", "48", "--seed", "6"), [], TimeSpan.FromSeconds(90));
        Assert.True(code == 2, stdout + stderr);
        Assert.Contains("error: the ranks were started with different settings: n_embd (rank 1 differs from rank 0); max_iters (rank 1 differs from rank 0); seed (rank 1 differs from rank 0); " +
            "start every rank with the same command, dataset and run folder", stderr);
        Assert.False(Directory.Exists(temp["run"]));
    }

    [MpiFact]
    public void Ranks_resuming_different_copies_of_a_run_at_the_same_step_are_refused_and_copies_alike_resume()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // Each node's own copy of the run folder, both at step 10: node 1's was trained with another
        // seed, and both resume with one seed, so that every setting agrees. Rank 1 loaded its
        // copy's optimizer moments and trained on with them.
        foreach (var (node, seed) in new[] { ("node0", "5"), ("node1", "6") })
        {
            var trained = Cli.Run(Train(config, data, temp[node], 10, 20, "--seed", seed));
            Assert.True(trained.ExitCode == 0, trained.Stderr);
        }
        var metrics = File.ReadAllText(Path.Combine(temp["node0"], "metrics.jsonl"));
        string[] Resume(string run) => ["train", "--resume", run, "--max-iters", "20", "--seed", "5"];
        var (code, stdout, stderr) = Cli.RunMpiPerRank(Resume(temp["node0"]), Resume(temp["node1"]), [], TimeSpan.FromSeconds(90));
        Assert.True(code == 2, stdout + stderr);
        Assert.Contains("error: the ranks were started with different settings: resumed checkpoint (rank 1 differs from rank 0); " +
            "each rank resumed the copy of the run folder its node holds, and they differ: copy the same run folder to every node, or use a shared file system", stderr);
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(temp["node0"], "metrics.jsonl")));

        // A copy of the same run is the same checkpoint, wherever and whenever it was copied.
        CopyDirectory(temp["node0"], temp["node1-copy"]);
        var resumed = Cli.RunMpiPerRank(Resume(temp["node0"]), Resume(temp["node1-copy"]), [], TimeSpan.FromSeconds(90));
        Assert.True(resumed.ExitCode == 0, resumed.Stdout + resumed.Stderr);
        Assert.Equal(20, CliTests.Losses(temp["node0"]).Count);
    }

    [MpiFact]
    public void A_rank_starting_a_new_run_while_another_resumes_is_told_to_start_them_alike_not_that_copies_differ()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var trained = Cli.Run(Train(config, data, temp["run"], 10, 20));
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        var metrics = File.ReadAllText(Path.Combine(temp["run"], "metrics.jsonl"));
        // Every training key agrees (max_iters 20, lr_decay_iters 20): only --resume differs.
        var (code, stdout, stderr) = Cli.RunMpiPerRank(["train", "--resume", temp["run"], "--max-iters", "20"], Train(config, data, temp["new"], 20), [], TimeSpan.FromSeconds(90));
        Assert.True(code == 2, stdout + stderr);
        // It was "resumed step (...); resumed checkpoint (...); each rank resumed the copy of the
        // run folder its node holds, and they differ: ...", of a rank that resumed nothing.
        Assert.Contains("error: the ranks were started with different settings: --resume (rank 1 differs from rank 0); start every rank with the same command, dataset and run folder", stderr);
        Assert.DoesNotContain("copy", stderr);
        Assert.False(Directory.Exists(temp["new"]));
        Assert.Equal(metrics, File.ReadAllText(Path.Combine(temp["run"], "metrics.jsonl")));
    }

    [MpiFact]
    public void An_error_on_one_rank_ends_the_job_where_the_launcher_would_let_the_others_wait()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // Only rank 0 sees the dataset (a folder on one node's local disk). srun by default
        // (KillOnBadExit=0) does not end a job whose task exits non-zero; this makes mpirun do the same.
        var (code, stdout, stderr) = Cli.RunMpiPerRank(
            Train(config, data, temp["run"], 20), Train(config, temp["elsewhere"], temp["run"], 20),
            ["--mca", "orte_abort_on_non_zero_status", "0"], TimeSpan.FromSeconds(60));
        Assert.True(code == 2, stdout + stderr);
        // Which rank and node: the folder exists where the job was started.
        Assert.Contains($"rank 1 on {Environment.MachineName}: error: dataset folder {temp["elsewhere"]} does not exist", stderr);
    }

    /// <summary>An exception Program does not handle (a bug, a failure no message describes) on
    /// rank 0 once training has begun, with the launcher letting rank 1 wait as srun does by
    /// default: the job ends with the stack trace printed once, as a single process ends.</summary>
    [MpiFact]
    public void An_unexpected_exception_on_one_rank_ends_the_job_where_the_launcher_would_let_the_others_wait()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var hook = typeof(StartupHook).Assembly.Location;
        var (code, stdout, stderr) = Cli.RunMpiPerRank(Train(config, data, temp["run"], 20), Train(config, data, temp["run"], 20),
            ["--mca", "orte_abort_on_non_zero_status", "0", "-x", $"DOTNET_STARTUP_HOOKS={hook}", "-x", "STRATUS_TEST_CONSOLE_FAILS_ON_RANK=0"], TimeSpan.FromSeconds(120));
        Assert.True(code == 134, $"exit code {code}\n{stdout}{stderr}");
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(stderr, "Unhandled exception. System.InvalidOperationException: injected failure"));
        Assert.Contains("   at ", stderr);

        // A single process ends as .NET ends it, as before: the stack trace once, SIGABRT's status.
        var single = Cli.StartInfo(Train(config, data, temp["single"], 20));
        single.Environment["DOTNET_STARTUP_HOOKS"] = hook;
        single.Environment["STRATUS_TEST_CONSOLE_FAILS_ON_RANK"] = "0";
        var (singleCode, _, singleStderr) = Cli.Run(single);
        Assert.True(singleCode == 134, $"exit code {singleCode}\n{singleStderr}");
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(singleStderr, "Unhandled exception. System.InvalidOperationException: injected failure"));
    }

    [MpiFact]
    public void An_error_every_rank_meets_is_printed_once()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // Every rank checks the settings and refuses them; each printed the line (4 copies,
        // interleaved mid-line at times) before the first MPI_Abort ended the others.
        var (code, stdout, stderr) = Cli.RunMpi(4, "train", "--config", config, "--data", data, "--out", temp["run"], "--gradient-accumulation-steps", "3");
        Assert.True(code == 2, stdout + stderr);
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(stdout + stderr, "error: gradient_accumulation_steps"));
    }

    [MpiFact]
    public void Data_parallel_training_on_a_gpu_is_refused_before_anything_is_written()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (code, stdout, stderr) = Cli.RunMpi(2, "train", "--config", config, "--data", data, "--out", temp["run"], "--gradient-accumulation-steps", "2", "--device", "cuda");
        Assert.NotEqual(0, code);
        Assert.Contains("device cuda: data-parallel training runs on the CPU, its collectives go through host MPI", stdout + stderr);
        Assert.False(Directory.Exists(temp["run"]));
    }

    [MpiFact]
    public void A_checkpoint_written_by_two_ZeRO_ranks_resumes_on_one_rank_and_on_two_with_the_uninterrupted_losses()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var full = Cli.Run(Train(config, data, temp["full"], 40));
        Assert.True(full.ExitCode == 0, full.Stderr);

        // Stop at step 20 (lr schedule of the 40-step run), then continue in two copies.
        var first = Cli.RunMpi(2, Train(config, data, temp["split1"], 20, 40, "--zero", "1"));
        Assert.True(first.ExitCode == 0, first.Stdout + first.Stderr);
        CopyDirectory(temp["split1"], temp["split2"]);
        var onOne = Cli.Run("train", "--resume", temp["split1"], "--max-iters", "40");
        Assert.True(onOne.ExitCode == 0, onOne.Stderr);
        var onTwo = Cli.RunMpi(2, "train", "--resume", temp["split2"], "--max-iters", "40");
        Assert.True(onTwo.ExitCode == 0, onTwo.Stdout + onTwo.Stderr);

        var expected = CliTests.Losses(temp["full"]);
        Assert.Equal(40, expected.Count);
        AssertSameLosses(expected, CliTests.Losses(temp["split1"]), "resumed on 1 rank");
        AssertSameLosses(expected, CliTests.Losses(temp["split2"]), "resumed on 2 ranks");
    }

    /// <summary>A two-rank training job far from its end, once it has logged 5 steps in temp["run"].</summary>
    static (Process Job, Task<string> Stdout, Task<string> Stderr) RunningJob(TempDirectory temp)
    {
        var (data, config) = Cli.PrepareTiny(temp);
        var job = Process.Start(Cli.MpiStartInfo(2, Train(config, data, temp["run"], 100_000)))!;
        var output = (job, job.StandardOutput.ReadToEndAsync(), job.StandardError.ReadToEndAsync());
        try { CliTests.WaitForSteps(job, temp["run"], 5); }
        catch
        {
            job.Kill(entireProcessTree: true);
            throw;
        }
        return output;
    }

    [MpiFact]
    public void Killing_one_rank_ends_the_training_job_with_an_error_within_ten_seconds()
    {
        using var temp = new TempDirectory();
        var (job, stdout, stderr) = RunningJob(temp);
        using var _ = job;
        try
        {
            var victim = RankProcess(job.Id, rank: 1) ?? throw new InvalidOperationException("rank 1 not found among mpirun's children");

            var killed = Stopwatch.StartNew();
            victim.Kill(); // SIGKILL
            var ended = job.WaitForExit(TimeSpan.FromSeconds(10));
            Assert.True(ended, "mpirun was still running 10 s after rank 1 was killed");
            Assert.NotEqual(0, job.ExitCode);
            Assert.True(killed.Elapsed < TimeSpan.FromSeconds(10), $"took {killed.Elapsed}");
            Assert.Contains("exited on signal 9", stdout.Result + stderr.Result);
        }
        finally
        {
            if (!job.HasExited) job.Kill(entireProcessTree: true);
        }
    }

    [MpiFact]
    public async Task SIGUSR1_to_mpirun_stops_every_rank_after_a_last_checkpoint()
    {
        using var temp = new TempDirectory();
        var (job, stdout, stderr) = RunningJob(temp);
        using var _ = job;
        try
        {
            CliTests.Signal(job.Id, "USR1"); // mpirun forwards it to every rank
            Assert.True(job.WaitForExit(TimeSpan.FromMinutes(2)), "the job did not stop");
            // mpirun ends with the first non-zero code a rank ends with: 128 + SIGUSR1, or 130 from
            // a rank that agreed to stop before mpirun's forwarded signal reached it (exit 0 before).
            Assert.True(job.ExitCode is 138 or 130, $"exit {job.ExitCode}: {await stdout}{await stderr}");
            var stopped = long.Parse(System.Text.RegularExpressions.Regex.Match(await stdout, @"stopped at step (\d+)").Groups[1].Value);
            var state = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp["run"], "checkpoints", "last", "state.json")))!;
            Assert.Equal(stopped, (long)state["step"]!); // saved at the stop, not only at the last multiple of 10
        }
        finally
        {
            if (!job.HasExited) job.Kill(entireProcessTree: true);
        }
    }

    // The child of mpirun whose environment says OMPI_COMM_WORLD_RANK=rank (Linux /proc).
    static Process? RankProcess(int mpirun, int rank)
    {
        foreach (var folder in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(folder), out var pid)) continue;
            try
            {
                var stat = File.ReadAllText(Path.Combine(folder, "stat"));
                var parent = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[1]);
                if (parent != mpirun) continue;
                if (File.ReadAllText(Path.Combine(folder, "environ")).Split('\0').Contains($"OMPI_COMM_WORLD_RANK={rank}"))
                    return Process.GetProcessById(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { } // a process that ended meanwhile
        }
        return null;
    }

    static void CopyDirectory(string from, string to)
    {
        foreach (var directory in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(directory.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, file.Replace(from, to));
    }
}
