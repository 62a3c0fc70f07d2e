// `stratus jobs submit --executor slurm` end to end, on a real single-node cluster (SlurmCluster):
// a tiny training submitted through sbatch reads queued, running and succeeded as Slurm reports it;
// a cancel stops it after a last checkpoint, the run resumable; a failing training, a job Slurm no
// longer knows, a partition Slurm refuses and a machine without sbatch each read as what they are;
// `jobs list` and `jobs show` print JSON that scripts read.
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Stratus.Platform;
using Stratus.Platform.Jobs;

namespace Stratus.Slurm.Tests;

// Beside the namespace Stratus.Cli, the CLI tests' class that runs it.
using Cli = Stratus.Cli.Tests.Cli;
using TempDirectory = Stratus.Cli.Tests.TempDirectory;

/// <summary>xunit starts the class's cluster before its first test and disposes of it after its last.</summary>
public sealed partial class SlurmJobsTests(SlurmCluster cluster) : IClassFixture<SlurmCluster>
{
    static (int ExitCode, string Stdout, string Stderr) Jobs(TempDirectory temp, params string[] args) => Cli.Run(["jobs", .. args, "--data-dir", temp["home"]]);

    /// <summary>Submits through Slurm; returns the job's id and its Slurm job id.</summary>
    static (string Id, string SlurmJob) Submit(TempDirectory temp, params string[] args)
    {
        var (code, stdout, stderr) = Jobs(temp, ["submit", "--executor", "slurm", .. args]);
        Assert.True(code == 0, stdout + stderr);
        var match = Submitted().Match(stdout);
        Assert.True(match.Success, stdout);
        return (match.Groups[1].Value, match.Groups[2].Value);
    }

    static JsonObject Show(TempDirectory temp, string id)
    {
        var (code, stdout, stderr) = Jobs(temp, "show", id, "--json");
        Assert.True(code == 0, stderr);
        return JsonNode.Parse(stdout)!.AsObject();
    }

    static string State(JsonObject job) => (string)job["state"]!;

    /// <summary>The job once <paramref name="until"/> holds of it, and the states it was seen in.</summary>
    static (JsonObject Job, List<string> Seen) WaitFor(TempDirectory temp, string id, Func<JsonObject, bool> until)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        List<string> seen = [];
        while (true)
        {
            var job = Show(temp, id);
            if (seen.Count == 0 || seen[^1] != State(job)) seen.Add(State(job));
            if (until(job)) return (job, seen);
            Assert.True(DateTime.UtcNow < deadline, $"job {id} stayed {State(job)}: {job.ToJsonString()}");
            Thread.Sleep(300);
        }
    }

    static (JsonObject Job, List<string> Seen) Ended(TempDirectory temp, string id) => WaitFor(temp, id, job => State(job) is not ("queued" or "running"));

    static string SlurmState(string slurmJob) => Regex.Match(SlurmCluster.RunQuietly("scontrol", "show", "job", "--oneliner", slurmJob).Stdout, @"JobState=(\S+)").Groups[1].Value;

    [Fact]
    public void A_job_submitted_through_sbatch_runs_as_Slurm_says_and_ends_succeeded_with_exit_0_its_metrics_and_its_Slurm_job_id()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (id, slurmJob) = Submit(temp, "--cpus-per-rank", "2", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "6", "--lr-decay-iters", "6", "--warmup-iters", "0", "--eval-interval", "3");
        var (job, seen) = Ended(temp, id);
        Assert.True(State(job) == "succeeded", job.ToJsonString());
        Assert.Equal("COMPLETED", SlurmState(slurmJob));
        // Its two CPUs asked of Slurm, and its libtorch's threads as many.
        Assert.Contains(" CPUs/Task=2 ", SlurmCluster.RunQuietly("scontrol", "show", "job", "--oneliner", slurmJob).Stdout);
        Assert.Contains(" per rank on 2 threads\n", File.ReadAllText(Path.Combine(temp["run"], id + ".log")));
        Assert.Equal(0, (int)job["exit_code"]!);
        Assert.Equal(("slurm", slurmJob), ((string)job["executor"]!, (string)job["executor_reference"]!));
        // Seen running, or ended before the first look: either way it was recorded as started.
        Assert.NotNull(job["started_at"]);
        Assert.Subset(new HashSet<string> { "queued", "running", "succeeded" }, seen.ToHashSet());
        Assert.Equal(5, (long)job["last_step"]!["step"]!);
        Assert.True(File.Exists(Path.Combine(temp["run"], "checkpoints", "last", "model.safetensors")));
        // The job's log is the run folder's, as a local job's: its first line names both jobs.
        var log = File.ReadAllText(Path.Combine(temp["run"], id + ".log"));
        Assert.StartsWith($"{id} (Slurm job {slurmJob}): ", log);
        Assert.Contains("val loss", log);
        Assert.Contains($"executor:   slurm, Slurm job {slurmJob}\n", Jobs(temp, "show", id).Stdout);
        // Slurm's last word, kept as the job was seen to end: an ended job is not asked again, and
        // scontrol forgets it after MinJobAge.
        var slurm = Show(temp, id)["slurm"]!;
        // No limit asked, on a partition of MaxTime=INFINITE: slurmctld says UNLIMITED, or, for some
        // jobs, a year of minutes in its place (365-00:00:00; seen here and on production clusters:
        // aws/aws-parallelcluster#6760). Stratus shows Slurm's word as given.
        var timeLimit = (string?)slurm["time_limit"];
        Assert.Contains(timeLimit, (string[])["UNLIMITED", "365-00:00:00"]);
        Assert.Equal((slurmJob, "COMPLETED", null, "main", 1, 2), ((string)slurm["job_id"]!, (string?)slurm["state"], (string?)slurm["reason"], (string?)slurm["partition"], (int?)slurm["ranks"], (int?)slurm["cpus_per_rank"]));
        Assert.Equal(SlurmCluster.RunQuietly("hostname", "-s").Stdout.Trim(), (string?)slurm["nodes"]);
        Assert.Matches(@"^\d\d:\d\d:\d\d$", (string?)slurm["elapsed"]);
        Assert.Matches($@"\nslurm:      COMPLETED, partition main, time limit {timeLimit}, 1 rank of 2 CPUs, nodes \S+, ran \d\d:\d\d:\d\d\n", Jobs(temp, "show", id).Stdout);
        var list = JsonNode.Parse(Jobs(temp, "list", "--json").Stdout)!;
        Assert.Equal("list", (string)list["object"]!);
        Assert.Equal((id, "succeeded", slurmJob), ((string)list["data"]![0]!["id"]!, (string)list["data"]![0]!["state"]!, (string)list["data"]![0]!["slurm"]!["job_id"]!));
        Assert.Matches($@"│ {id}\s+│ succeeded\s+│ {slurmJob}\s+│", Jobs(temp, "list").Stdout);
        // --follow ends when the job does, having printed the whole log.
        Assert.Equal(log, Jobs(temp, "logs", id, "--follow").Stdout);
    }

    /// <summary>A job logs to the file it records, whatever its run folder's name holds: Slurm reads
    /// --output as a pattern, where % starts a replacement and a backslash escapes (one alone is
    /// dropped, and nothing is replaced). A run folder named run\1 logged to run1, which did not
    /// exist, and the job failed; one named with .\. parts would have logged outside the folder
    /// (and outside serve's --jobs-root, which its path was checked against).</summary>
    [Fact]
    public void A_run_folder_whose_name_holds_a_backslash_logs_to_the_jobs_own_log()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        foreach (var name in new[] { "run\\1", "run\\%j" })
        {
            var (id, slurmJob) = Submit(temp, "--config", config, "--data", data, "--out", temp[name], "--max-iters", "2", "--lr-decay-iters", "2", "--warmup-iters", "0", "--eval-interval", "1");
            var (job, _) = Ended(temp, id);
            Assert.True(State(job) == "succeeded", job.ToJsonString());
            Assert.StartsWith($"{id} (Slurm job {slurmJob}): ", File.ReadAllText(Path.Combine(temp[name], id + ".log")));
        }
    }

    [Fact]
    public void Cancel_stops_the_training_after_a_last_checkpoint_and_the_job_reads_cancelled_its_run_resumable()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (id, slurmJob) = Submit(temp, "--time", "30", "--cpus-per-rank", "2", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "1000000", "--checkpoint-interval", "0");
        WaitFor(temp, id, job => State(job) == "running" && job["last_step"] is JsonObject step && (long)step["step"]! >= 2);
        var cancel = Jobs(temp, "cancel", id);
        Assert.True(cancel.ExitCode == 0, cancel.Stderr);
        var (job, _) = Ended(temp, id);
        Assert.Equal("cancelled", State(job));
        // What it asked of Slurm, kept with the job, is asked again.
        Assert.Equal($"cancelled after a last checkpoint; continue it with `stratus jobs submit --executor slurm --time 30 --cpus-per-rank 2 --resume {temp["run"]}`", (string)job["reason"]!);
        Assert.Equal((null, "30", 1, 2), ((string?)job["arguments"]!["partition"], (string?)job["arguments"]!["time"], (int?)job["arguments"]!["ranks"], (int?)job["arguments"]!["cpus_per_rank"]));
        Assert.Contains("\nasked:      partition (the cluster's default), time limit 30, 1 rank of 2 CPUs\n", Jobs(temp, "show", id).Stdout);
        // train's SIGTERM exit, which Slurm would record as FAILED 143: the batch script ends its
        // job CANCELLED, and jobs show says so beside Stratus's cancelled.
        Assert.Equal(143, (int)job["exit_code"]!);
        Assert.Equal("CANCELLED", SlurmState(slurmJob));
        Assert.Matches(@"\nslurm:      CANCELLED, ", Jobs(temp, "show", id).Stdout);
        var last = (long)job["last_step"]!["step"]!;
        var resumed = Cli.Run("train", "--resume", temp["run"], "--max-iters", (last + 3).ToString());
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains($"training from step {last + 1} to {last + 3}", resumed.Stdout);
    }

    /// <summary>jobs cancel --force is Slurm's own cancel (SIGTERM, SIGKILL after KillWait): the
    /// job ends, Slurm's CANCELLED and Stratus's cancelled, a training it reached first saving its
    /// last checkpoint within KillWait.</summary>
    [Fact]
    public void A_forced_cancel_is_Slurms_own_cancel_and_the_job_reads_cancelled()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (id, slurmJob) = Submit(temp, "--time", "30", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "1000000", "--checkpoint-interval", "0");
        WaitFor(temp, id, job => State(job) == "running" && job["last_step"] is JsonObject step && (long)step["step"]! >= 2);
        var forced = Jobs(temp, "cancel", id, "--force");
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.Contains($"cancelling {id} in Slurm (scancel)", forced.Stdout);
        var (job, _) = Ended(temp, id);
        Assert.Equal("cancelled", State(job));
        Assert.Equal("CANCELLED", SlurmState(slurmJob));
    }

    /// <summary>A cancelled run continued as another Slurm job: the batch script runs train --resume,
    /// which goes on from the last checkpoint; the job records that it resumes the run.</summary>
    [Fact]
    public void A_cancelled_run_resumed_through_jobs_submit_resume_continues_from_its_last_checkpoint_under_Slurm()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (first, _) = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "1000000", "--checkpoint-interval", "0");
        WaitFor(temp, first, job => State(job) == "running" && job["last_step"] is JsonObject step && (long)step["step"]! >= 2);
        Assert.Equal(0, Jobs(temp, "cancel", first).ExitCode);
        var last = (long)Ended(temp, first).Job["last_step"]!["step"]!;
        var (id, slurmJob) = Submit(temp, "--resume", temp["run"], "--max-iters", (last + 3).ToString());
        var (job, _) = Ended(temp, id);
        Assert.True(State(job) == "succeeded", job.ToJsonString());
        Assert.Equal("COMPLETED", SlurmState(slurmJob));
        Assert.Equal((true, temp["run"]), ((bool)job["arguments"]!["resume"]!, (string?)job["arguments"]!["out"]));
        Assert.Equal(last + 2, (long)job["last_step"]!["step"]!);
        var log = File.ReadAllText(Path.Combine(temp["run"], id + ".log"));
        Assert.Contains($" train --resume={temp["run"]} --max-iters={last + 3}", log);
        Assert.Contains($"training from step {last + 1} to {last + 3}", log);
    }

    [Fact]
    public void A_job_cancelled_while_it_waits_for_the_cluster_never_starts()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // Every core taken: the next job waits in the queue (PENDING) until this one ends.
        var (code, blocker, stderr) = SlurmCluster.RunQuietly("sbatch", "--parsable", $"--ntasks={Environment.ProcessorCount}", "--output=/dev/null", "--wrap=sleep 300");
        Assert.True(code == 0, stderr);
        try
        {
            var (id, slurmJob) = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "6");
            Assert.Equal("queued", State(Show(temp, id)));
            Assert.True(Jobs(temp, "cancel", id).ExitCode == 0);
            var (job, _) = Ended(temp, id);
            Assert.Equal(("cancelled", "cancelled before its training started"), (State(job), (string?)job["reason"]));
            Assert.Equal("CANCELLED", SlurmState(slurmJob));
            Assert.Null(job["started_at"]);
            Assert.False(File.Exists(Path.Combine(temp["run"], "metrics.jsonl")));
        }
        finally
        {
            SlurmCluster.RunQuietly("scancel", blocker.Trim());
        }
    }

    [Fact]
    public void A_failing_training_ends_failed_with_trains_exit_code_and_error()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (id, slurmJob) = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--device", "cuda");
        var (job, _) = Ended(temp, id);
        Assert.Equal("failed", State(job));
        Assert.Equal(2, (int)job["exit_code"]!);
        Assert.StartsWith("train exited with 2: device cuda", (string)job["reason"]!);
        Assert.Equal("FAILED", SlurmState(slurmJob));
    }

    /// <summary>scontrol forgets a finished job after MinJobAge, and this cluster keeps no
    /// accounting for sacct: a job neither knows must not read running for ever.</summary>
    [Fact]
    public void A_job_Slurm_no_longer_knows_ends_failed_saying_its_end_is_unknown()
    {
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["home"]);
        var service = JobService.Open(temp["home"], ["/bin/false"]);
        var job = new Job("job-0000000f", Job.TrainKind, new TrainArguments(null, temp["data"], temp["run"], []), SlurmJobExecutor.ExecutorName, null, JobState.Queued,
            null, null, null, null, DateTimeOffset.UtcNow, null, null, null, "cli:test", Path.Combine(temp["run"], "job-0000000f.log"));
        service.Store.Insert(job, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference(job.Id, "4000000");
        service.Store.RecordStarted(job.Id, null, null);
        var shown = Show(temp, job.Id);
        Assert.Equal("failed", State(shown));
        Assert.Matches(@"^Slurm no longer knows its job 4000000 \(the controller forgets a finished job after MinJobAge\) and keeps no accounting to ask \(sacct: .*\): how it ended is unknown; see ", (string)shown["reason"]!);
    }

    [Fact]
    public void A_partition_Slurm_refuses_is_one_line_and_exit_2_and_the_job_reads_failed_with_slurms_reason()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (code, stdout, stderr) = Jobs(temp, "submit", "--executor", "slurm", "--partition", "nosuch", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Matches(@"^error: sbatch refused the job: .*[Ii]nvalid partition.*; give a --partition and --time the cluster takes \(sinfo lists its partitions and their time limits\), or submit with --executor local\n$", stderr);
        var job = JsonNode.Parse(Jobs(temp, "list", "--json").Stdout)!["data"]![0]!;
        Assert.Equal("failed", (string)job["state"]!);
        Assert.StartsWith("could not be started: sbatch refused the job: ", (string)job["reason"]!);
    }

    /// <summary>Ranks asking for more CPUs than the cluster's nodes have (the test cluster enforces
    /// its partition's limits at submit, EnforcePartLimits=ALL, as most do): sbatch's refusal is the
    /// submission's to change, said as such, not a cluster that cannot be reached.</summary>
    [Theory]
    [InlineData("--cpus-per-rank", 1)]
    [InlineData("--ranks", 1)]
    public void More_cpus_than_the_cluster_has_is_one_line_saying_what_to_ask_for_and_exit_2(string option, int beyond)
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var asked = Environment.ProcessorCount + beyond;
        var (code, stdout, stderr) = Jobs(temp, "submit", "--executor", "slurm", option, $"{asked}", "--gradient-accumulation-steps", $"{asked}", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, ""), (code, stdout));
        Assert.Matches(@"^error: sbatch refused the job: Batch job submission failed: (More processors requested than permitted|Requested node configuration is not available); ask for fewer --cpus-per-rank \(each rank's must fit on one node, with its memory\) or fewer --ranks \(sinfo -o '%P %D %c %m' lists each partition's nodes, their CPUs and memory\)\n$", stderr);
    }

    [Fact]
    public void Without_sbatch_on_the_PATH_or_a_cluster_it_reaches_submit_says_so_in_one_line_and_exits_2()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var info = Cli.StartInfo("jobs", "submit", "--executor", "slurm", "--config", config, "--data", data, "--out", temp["run"], "--data-dir", temp["home"]);
        info.Environment["PATH"] = temp["empty-path"];
        var (code, _, stderr) = Cli.Run(info);
        Assert.Equal(2, code);
        Assert.Equal("error: sbatch is not on the PATH: the slurm executor runs jobs through Slurm's commands; install them (Debian: apt-get install slurm-client) and set SLURM_CONF to the cluster's slurm.conf, or use --executor local\n", stderr);

        info = Cli.StartInfo("jobs", "submit", "--executor", "slurm", "--config", config, "--data", data, "--out", temp["run"], "--data-dir", temp["home"]);
        // A configuration naming no cluster (one missing, sbatch waits a minute for).
        File.WriteAllText(temp["empty-slurm.conf"], "");
        info.Environment["SLURM_CONF"] = temp["empty-slurm.conf"];
        var unreachable = Cli.Run(info);
        Assert.Equal(2, unreachable.ExitCode);
        Assert.Matches(@"^error: sbatch refused the job: Unable to process configuration file; check that Slurm's commands reach the cluster \(sinfo; SLURM_CONF names its slurm.conf\), or submit with --executor local\n$", unreachable.Stderr);
    }

    [Fact]
    public void Ranks_train_data_parallel_through_srun_and_a_count_that_does_not_divide_the_micro_batches_is_refused_at_submit()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var refused = Jobs(temp, "submit", "--executor", "slurm", "--ranks", "3", "--config", config, "--data", data, "--out", temp["run"], "--gradient-accumulation-steps", "2");
        Assert.Equal(2, refused.ExitCode);
        Assert.StartsWith("error: gradient_accumulation_steps (2) must be a multiple of the number of ranks (3)", refused.Stderr);
        var local = Jobs(temp, "submit", "--ranks", "2", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, "error: --partition, --time, --ranks and --cpus-per-rank ask Slurm for the job's resources: give them with --executor slurm\n"), (local.ExitCode, local.Stderr));
        Assert.False(Directory.Exists(temp["home"]), "a refused job was recorded");

        var (id, _) = Submit(temp, "--ranks", "2", "--config", config, "--data", data, "--out", temp["run"], "--gradient-accumulation-steps", "2", "--max-iters", "4", "--lr-decay-iters", "4", "--warmup-iters", "0", "--eval-interval", "2");
        var (job, _) = Ended(temp, id);
        Assert.True(State(job) == "succeeded", job.ToJsonString() + File.ReadAllText(Path.Combine(temp["run"], id + ".log")));
        Assert.Contains("data parallel: 2 ranks, 1 micro-batches each per step", File.ReadAllText(Path.Combine(temp["run"], id + ".log")));
        // One CPU a rank unless asked (--cpus-per-rank), and one libtorch thread, not one a core of the node.
        Assert.Contains(" per rank on 1 thread\n", File.ReadAllText(Path.Combine(temp["run"], id + ".log")));

        // Cancelled, both ranks get train's SIGTERM (srun's tasks, not srun, which would kill them)
        // and agree on a last checkpoint.
        var (longJob, _) = Submit(temp, "--ranks", "2", "--config", config, "--data", data, "--out", temp["long"], "--gradient-accumulation-steps", "2", "--max-iters", "1000000", "--checkpoint-interval", "0");
        WaitFor(temp, longJob, job => State(job) == "running" && job["last_step"] is JsonObject step && (long)step["step"]! >= 2);
        Assert.Equal(0, Jobs(temp, "cancel", longJob).ExitCode);
        var (cancelled, _) = Ended(temp, longJob);
        Assert.Equal(("cancelled", $"cancelled after a last checkpoint; continue it with `stratus jobs submit --executor slurm --ranks 2 --resume {temp["long"]}`", 143, "CANCELLED"),
            (State(cancelled), (string?)cancelled["reason"], (int?)cancelled["exit_code"], (string?)cancelled["slurm"]!["state"]));
    }

    /// <summary>What sbatch is asked for, read from the controller while the job waits: no requeue
    /// (a rerun script would train again into a folder that holds a checkpoint), the --time given,
    /// and an environment without serve's moderation key (sbatch exports all of its own). What
    /// Slurm says of it, why it waits among it, is what jobs show and list say; what was asked is
    /// in the audit log.</summary>
    [Fact]
    public async Task A_job_is_submitted_not_to_be_requeued_with_its_time_limit_and_without_the_moderation_key()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (code, blocker, stderr) = SlurmCluster.RunQuietly("sbatch", "--parsable", $"--ntasks={Environment.ProcessorCount}", "--output=/dev/null", "--wrap=sleep 300");
        Assert.True(code == 0, stderr);
        try
        {
            var info = Cli.StartInfo("jobs", "submit", "--executor", "slurm", "--time", "1-2:30", "--config", config, "--data", data, "--out", temp["run"], "--data-dir", temp["home"]);
            info.Environment["STRATUS_MODERATION_API_KEY"] = "sk-moderation-secret";
            var submitted = Cli.Run(info);
            Assert.True(submitted.ExitCode == 0, submitted.Stderr);
            var slurmJob = Submitted().Match(submitted.Stdout).Groups[2].Value;
            // One CPU a rank unless asked, said where the submitter looks first.
            Assert.Contains("\nasked of Slurm: partition (the cluster's default), time limit 1-2:30, 1 rank of 1 CPU (each rank training on a thread a CPU: --cpus-per-rank for more)\n", submitted.Stdout);
            // The cluster's node has more (sinfo): how to use them, in one line.
            Assert.Contains($"\nhint: the nodes of the cluster's default partition have {Environment.ProcessorCount} CPUs: --cpus-per-rank {Environment.ProcessorCount} would train each rank on {Environment.ProcessorCount} threads\n", submitted.Stdout);
            var shown = SlurmCluster.RunQuietly("scontrol", "show", "job", "--oneliner", slurmJob).Stdout;
            Assert.Contains(" Requeue=0 ", shown);
            Assert.Contains(" TimeLimit=1-02:30:00 ", shown);
            var environment = File.ReadAllText(Path.Combine(cluster.Folder, "state", $"hash.{long.Parse(slurmJob) % 10}", $"job.{slurmJob}", "environment"));
            Assert.Contains("SLURM_CONF=", environment);
            Assert.DoesNotContain("sk-moderation-secret", environment);

            var id = Submitted().Match(submitted.Stdout).Groups[1].Value;
            // Slurm gives no Reason until its scheduler has looked at the job.
            var slurm = WaitFor(temp, id, job => job["slurm"]?["reason"] is not null).Job["slurm"]!;
            Assert.Equal((slurmJob, "PENDING", "main", "1-02:30:00", null, 1, 1, null),
                ((string)slurm["job_id"]!, (string?)slurm["state"], (string?)slurm["partition"], (string?)slurm["time_limit"], (string?)slurm["nodes"], (int?)slurm["ranks"], (int?)slurm["cpus_per_rank"], (string?)slurm["unreachable"]));
            // Every core taken by the job before it: Slurm's word for why it waits (Priority until its
            // scheduler has looked at the job, then Resources).
            Assert.Contains((string)slurm["reason"]!, new[] { "Resources", "Priority" });
            Assert.Matches(@"\nslurm:      PENDING \((Resources|Priority)\), partition main, time limit 1-02:30:00, 1 rank of 1 CPU, nodes -\n", Jobs(temp, "show", id).Stdout);
            Assert.Matches($@"│ {id}\s+│ queued \((Resources|Priority)\)\s+│ {slurmJob}\s+│", Jobs(temp, "list").Stdout);
            var audited = (await PlatformStores.Open(temp["home"]).Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobSubmitted))).Single();
            var details = JsonNode.Parse(audited.Details)!;
            Assert.Equal(("slurm", null, "1-2:30", 1, 1), ((string?)details["executor"], (string?)details["partition"], (string?)details["time"], (int?)details["ranks"], (int?)details["cpus_per_rank"]));
        }
        finally
        {
            SlurmCluster.RunQuietly("scancel", blocker.Trim());
        }
    }

    [Fact]
    public void A_time_limit_sbatch_would_refuse_is_one_line_and_exit_2_and_nothing_is_recorded()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var refused = Jobs(temp, "submit", "--executor", "slurm", "--time", "90m", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, "error: --time 90m is not a time limit sbatch takes: give minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED\n"), (refused.ExitCode, refused.Stderr));
        // One sbatch takes, and wraps round to 19734 days.
        refused = Jobs(temp, "submit", "--executor", "slurm", "--time", "99999999", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, "error: --time 99999999 is longer than Slurm can hold (24855-03:13, about 68 years): give a shorter limit, or UNLIMITED for none\n"), (refused.ExitCode, refused.Stderr));
        // sbatch refuses it, but only once the job is recorded.
        refused = Jobs(temp, "submit", "--executor", "slurm", "--partition", "", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, "error: --partition '' is not a partition name: give one that sinfo lists, or leave --partition out for the cluster's default\n"), (refused.ExitCode, refused.Stderr));
        Assert.False(Directory.Exists(temp["home"]), "a refused job was recorded");
    }

    /// <summary>The controller forgets a finished job, and sacct, which would say how it ended,
    /// cannot reach its database for now: the job is as recorded, not failed for good.</summary>
    [Fact]
    public void A_job_Slurm_forgot_while_its_accounting_database_is_down_is_as_recorded()
    {
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["home"]);
        var service = JobService.Open(temp["home"], ["/bin/false"]);
        var job = new Job("job-0000000e", Job.TrainKind, new TrainArguments(null, temp["data"], temp["run"], []), SlurmJobExecutor.ExecutorName, null, JobState.Queued,
            null, null, null, null, DateTimeOffset.UtcNow, null, null, null, "cli:test", Path.Combine(temp["run"], "job-0000000e.log"));
        service.Store.Insert(job, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference(job.Id, "4000001");
        service.Store.RecordStarted(job.Id, null, null);
        // sacct as it answers while slurmdbd is down.
        Directory.CreateDirectory(temp["bin"]);
        File.WriteAllText(temp["bin/sacct"], "#!/bin/sh\necho 'sacct: error: There is a problem talking to the database: Connection refused.  Only local cluster communication is available, remove --cluster or contact your admin to resolve the problem.' >&2\nexit 1\n");
        Assert.Equal(0, SlurmCluster.RunQuietly("chmod", "755", temp["bin/sacct"]).ExitCode);
        var info = Cli.StartInfo("jobs", "show", job.Id, "--json", "--data-dir", temp["home"]);
        info.Environment["PATH"] = temp["bin"] + ":" + Environment.GetEnvironmentVariable("PATH");
        var (code, stdout, stderr) = Cli.Run(info);
        Assert.True(code == 0, stderr);
        var shown = JsonNode.Parse(stdout)!.AsObject();
        Assert.True(State(shown) == "running", shown.ToJsonString());
        Assert.Null(shown["reason"]);
    }

    /// <summary>scontrol retries a controller that is down for about 18 s: a listing asks it once,
    /// and its other Slurm jobs read as recorded without asking again, saying so.</summary>
    [Fact]
    public void With_the_controller_down_a_listing_asks_Slurm_once_and_says_its_jobs_are_as_last_recorded()
    {
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["home"]);
        var service = JobService.Open(temp["home"], ["/bin/false"]);
        foreach (var (id, slurmJob) in new[] { ("job-0000001a", "4000010"), ("job-0000001b", "4000011") })
        {
            var job = new Job(id, Job.TrainKind, new TrainArguments(null, temp["data"], temp[id], []), SlurmJobExecutor.ExecutorName, null, JobState.Queued,
                null, null, null, null, DateTimeOffset.UtcNow, null, null, null, "cli:test", Path.Combine(temp[id], id + ".log"));
            service.Store.Insert(job, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
            service.Store.SetExecutorReference(id, slurmJob);
            service.Store.RecordStarted(id, null, null);
        }
        // scontrol, counting its calls.
        Directory.CreateDirectory(temp["bin"]);
        File.WriteAllText(temp["bin/scontrol"], $"#!/bin/sh\necho \"$*\" >> '{temp["calls"]}'\nexec '{SlurmCluster.Which("scontrol")}' \"$@\"\n");
        Assert.Equal(0, SlurmCluster.RunQuietly("chmod", "755", temp["bin/scontrol"]).ExitCode);
        (int ExitCode, string Stdout, string Stderr) Read(params string[] args)
        {
            var info = Cli.StartInfo(["jobs", .. args, "--data-dir", temp["home"]]);
            info.Environment["PATH"] = temp["bin"] + ":" + Environment.GetEnvironmentVariable("PATH");
            return Cli.Run(info);
        }
        cluster.StopController();
        try
        {
            var (code, stdout, stderr) = Read("list");
            Assert.True(code == 0, stderr);
            Assert.Matches(@"\nSlurm's controller could not be asked \(scontrol: .+\): its Slurm jobs are as last recorded\.\n$", stdout);
            Assert.Single(File.ReadAllLines(temp["calls"]));
            var list = JsonNode.Parse(Read("list", "--json").Stdout)!["data"]!.AsArray();
            Assert.Equal(2, File.ReadAllLines(temp["calls"]).Length);
            Assert.All(list, job => Assert.Equal("running", (string)job!["state"]!));
            Assert.StartsWith("Slurm's controller could not be asked (scontrol: ", (string)list[0]!["slurm"]!["unreachable"]!);
            Assert.EndsWith("; not asked again for this job", (string)list[1]!["slurm"]!["unreachable"]!);
            Assert.Matches(@"\nslurm:      Slurm's controller could not be asked \(scontrol: .+\): the job is as last recorded\n", Read("show", "job-0000001a").Stdout);
        }
        finally
        {
            cluster.StartController();
        }
    }

    [GeneratedRegex(@"submitted (job-[0-9a-f]{8}) \(Slurm job (\d+)\)")]
    private static partial Regex Submitted();
}
