// `stratus jobs`: a training submitted as a job runs on after `jobs submit` returns, under a
// detached supervisor that records how it ended; its state reads true however it ended (finished,
// failed, cancelled, or its supervisor killed with SIGKILL), and arguments train would refuse are
// refused at submit with train's own error, nothing recorded.
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Stratus.Cli.Tests;

public sealed partial class JobsCliTests
{
    static (int ExitCode, string Stdout, string Stderr) Jobs(TempDirectory temp, params string[] args) => Cli.Run(["jobs", .. args, "--data-dir", temp["home"]]);

    /// <summary><see cref="Jobs"/> run as the launcher script runs the CLI, having been run as <paramref name="invoked"/>.</summary>
    static (int ExitCode, string Stdout, string Stderr) JobsAs(string invoked, TempDirectory temp, params string[] args)
    {
        var info = Cli.StartInfo(["jobs", .. args, "--data-dir", temp["home"]]);
        info.Environment["STRATUS_COMMAND"] = invoked;
        return Cli.Run(info);
    }

    static string Submit(TempDirectory temp, params string[] args)
    {
        var (code, stdout, stderr) = Jobs(temp, ["submit", .. args]);
        Assert.True(code == 0, stdout + stderr);
        return JobId().Match(stdout).Groups[1].Value;
    }

    /// <summary>`jobs show`'s "state:" line once <paramref name="until"/> holds of it.</summary>
    static string WaitForState(TempDirectory temp, string id, Func<string, bool> until)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (true)
        {
            var show = Jobs(temp, "show", id);
            Assert.True(show.ExitCode == 0, show.Stderr);
            var state = show.Stdout.Split('\n').Single(line => line.StartsWith("state:", StringComparison.Ordinal))["state:".Length..].Trim();
            if (until(state)) return show.Stdout;
            Assert.True(DateTime.UtcNow < deadline, $"job {id} stayed {state}");
            Thread.Sleep(200);
        }
    }

    static string Ended(TempDirectory temp, string id) => WaitForState(temp, id, state => !state.StartsWith("queued", StringComparison.Ordinal) && !state.StartsWith("running", StringComparison.Ordinal));

    static int TrainingPid(string show) => int.Parse(TrainingProcess().Match(show).Groups[1].Value);

    static bool Alive(int pid) => File.Exists($"/proc/{pid}/stat") && File.ReadAllText($"/proc/{pid}/stat").Split(')')[^1].Trim()[0] is not ('Z' or 'X');

    /// <summary>The tiny dataset and config, and a model trained on them in temp["base"] (to resume or
    /// fine-tune from).</summary>
    static (string Data, string Config) PrepareWithBaseRun(TempDirectory temp, int iterations)
    {
        var (data, config) = Cli.PrepareTiny(temp);
        var based = Cli.Run("train", "--config", config, "--data", data, "--out", temp["base"], "--max-iters", iterations.ToString(System.Globalization.CultureInfo.InvariantCulture), "--eval-interval", "2");
        Assert.True(based.ExitCode == 0, based.Stderr);
        return (data, config);
    }

    /// <summary>Each argument list, given to `train` and to `jobs submit`: the same one-line error on
    /// stderr, exit 2 and nothing on stdout.</summary>
    static void AssertSubmitRefusesAsTrainDoes(TempDirectory temp, IEnumerable<string[]> argumentLists)
    {
        foreach (var args in argumentLists)
        {
            var train = Cli.Run(["train", .. args]);
            var submit = Jobs(temp, ["submit", .. args]);
            Assert.Equal(2, train.ExitCode);
            Assert.Equal((2, "", train.Stderr), (submit.ExitCode, submit.Stdout, submit.Stderr));
            Assert.Single(submit.Stderr.TrimEnd('\n').Split('\n'));
        }
    }

    [Fact]
    public void A_submitted_job_runs_on_after_submit_returns_and_ends_succeeded_with_its_checkpoint_metrics_and_audit_entry()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var id = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "6", "--lr-decay-iters", "6", "--warmup-iters", "0", "--eval-interval", "3");
        var show = Ended(temp, id);
        Assert.Contains("state:      succeeded\n", show);
        Assert.Contains("exit code 0", show);
        Assert.Contains("last step:  5, training loss", show);
        Assert.True(File.Exists(Path.Combine(temp["run"], "checkpoints", "last", "model.safetensors")));
        Assert.Equal(6, CliTests.Losses(temp["run"]).Count);
        Assert.Contains("val loss", File.ReadAllText(Path.Combine(temp["run"], id + ".log")));
        var list = Jobs(temp, "list");
        Assert.Matches($@"{id}\s+│ succeeded │ .* │ {Regex.Escape(temp["run"])}\s+│ 5\s+│ \d\.\d{{4}}", list.Stdout);
        // A local job's Slurm job column is empty.
        Assert.Matches($@"│ Slurm job │ .*\n(.*\n)*.*{id}\s+│ succeeded │\s+│ \d{{4}}-", list.Stdout);
        Assert.Null(System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", id, "--json").Stdout)!["slurm"]);
        var audit = Cli.Run("audit", "list", "--data-dir", temp["home"]);
        Assert.Contains("job.submitted", audit.Stdout);
    }

    /// <summary>What a Slurm job asks sbatch for is in its submission's audit entry, sbatch or no
    /// sbatch (here none: the job is recorded failed); asked of a local job, or out of range, it is refused.</summary>
    [Fact]
    public async Task A_Slurm_jobs_partition_time_ranks_and_cpus_are_audited_and_refused_for_a_local_job()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var local = Jobs(temp, "submit", "--cpus-per-rank", "2", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, "error: --partition, --time, --ranks and --cpus-per-rank ask Slurm for the job's resources: give them with --executor slurm\n"), (local.ExitCode, local.Stderr));
        var none = Jobs(temp, "submit", "--executor", "slurm", "--cpus-per-rank", "0", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal((2, "error: --cpus-per-rank must be 1 or more, got 0\n"), (none.ExitCode, none.Stderr));
        Assert.False(Directory.Exists(temp["home"]), "a refused job was recorded");

        var info = Cli.StartInfo("jobs", "submit", "--executor", "slurm", "--partition", "cpu", "--time", "30", "--ranks", "2", "--cpus-per-rank", "3",
            "--config", config, "--data", data, "--out", temp["run"], "--gradient-accumulation-steps", "2", "--data-dir", temp["home"]);
        info.Environment["PATH"] = temp["empty-path"];
        Assert.Equal(2, Cli.Run(info).ExitCode);
        var audited = (await Stratus.Platform.PlatformStores.Open(temp["home"]).Audit.ReadAsync(new Stratus.Platform.AuditQuery(Action: Stratus.Platform.AuditActions.JobSubmitted))).Single();
        var details = System.Text.Json.Nodes.JsonNode.Parse(audited.Details)!;
        Assert.Equal(("slurm", "cpu", "30", 2, 3), ((string?)details["executor"], (string?)details["partition"], (string?)details["time"], (int?)details["ranks"], (int?)details["cpus_per_rank"]));
    }

    /// <summary>A Slurm job's duration is Slurm's RunTime, as `jobs show`'s "ran" and the dashboard
    /// say, not the span between Stratus's reads of its start and end (a job Slurm ran 2 s read 17 s).</summary>
    [Fact]
    public void Jobs_list_gives_a_Slurm_jobs_duration_as_Slurm_ran_it()
    {
        using var temp = new TempDirectory();
        var store = Stratus.Platform.Jobs.JobService.Open(temp["home"], ["/bin/false"]).Store;
        const string Id = "job-00005e17";
        var ended = store.Now;
        store.Insert(new(Id, Stratus.Platform.Jobs.Job.TrainKind, new(null, temp["data"], temp["run"], []), Stratus.Platform.Jobs.SlurmJobExecutor.ExecutorName, null,
            Stratus.Platform.Jobs.JobState.Queued, null, null, null, null, ended.AddSeconds(-20), null, null, null, "cli:test", Path.Combine(temp["run"], Id + ".log")),
            new Stratus.Platform.AuditRecord("cli:test", Stratus.Platform.AuditActions.JobSubmitted, []));
        store.SetExecutorReference(Id, "4242");
        store.RecordStarted(Id, null, null, ended.AddSeconds(-17));
        Assert.True(store.RecordEnd(Id, new(Stratus.Platform.Jobs.JobState.Succeeded, 0, null), new("4242", "COMPLETED", Elapsed: "00:00:02")));
        Assert.Contains(", ran 00:00:02", Jobs(temp, "show", Id).Stdout);
        Assert.Matches($@"{Id}\s+│ succeeded │ 4242\s+│ [\d: -]+ │ 2s\s+│", Jobs(temp, "list").Stdout);
    }

    [Fact]
    public void A_value_that_reads_as_an_option_or_a_response_file_reaches_train_as_the_value_it_is()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // lora_targets is text that submit accepts whatever it names (the layers are the model's,
        // which train builds); the supervisor's train must get it as that key's value, not as
        // --device cuda or a file of arguments, and refuses it as a layer of no model.
        foreach (var (value, run) in new[] { ("--device=cuda", "run-option"), ("@" + temp["args.rsp"], "run-rsp") })
        {
            File.WriteAllText(temp["args.rsp"], "--device cuda");
            var id = Submit(temp, "--config", config, "--data", data, "--out", temp[run], "--max-iters", "2", "--lr-decay-iters", "2", "--warmup-iters", "0",
                "--eval-interval", "2", "--lora-rank", "1", "--lora-targets=" + value);
            var show = Ended(temp, id);
            Assert.Contains($"state:      failed: train exited with 2: lora_targets {value} match no linear layer of this gpt2 model", show);
            // The command shown runs the job again, pasted into a shell.
            Assert.Contains($" --lora-targets={value} --", show);
        }
        File.WriteAllText(temp["with space.json"], File.ReadAllText(config));
        var quoted = Submit(temp, "--config", temp["with space.json"], "--data", data, "--out", temp["run-quoted"], "--max-iters", "1");
        Assert.Contains($"command:    stratus train '--config={temp["with space.json"]}' --data=", Jobs(temp, "show", quoted).Stdout);
    }

    /// <summary>The commands jobs' hints spell out are spelled as the user runs the CLI, as every
    /// other verb's are: pasted from a clone's `./stratus`, `stratus jobs logs ...` finds no command.</summary>
    [Fact]
    public void Jobs_hints_name_the_command_as_the_launcher_script_was_run()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("keys", "create", "--name", "app", "--data-dir", temp["home"]).ExitCode);
        var empty = JobsAs("./stratus", temp, "list");
        Assert.Equal("No jobs. Submit one: ./stratus jobs submit --config <file.json> --data <dataset> --out <run>", empty.Stdout.Trim());
        var submit = JobsAs("./stratus", temp, "submit", "--config", config, "--data", data, "--out", temp["run"], "--device", "cuda");
        Assert.True(submit.ExitCode == 0, submit.Stderr);
        var id = JobId().Match(submit.Stdout).Groups[1].Value;
        Assert.Contains($"follow it with `./stratus jobs logs {id} --follow`, see it with `./stratus jobs show {id}`, stop it with `./stratus jobs cancel {id}`", submit.Stdout);
        Ended(temp, id);
        Assert.Contains("command:    ./stratus train --config=", JobsAs("./stratus", temp, "show", id).Stdout);
    }

    [Fact]
    public void A_job_whose_training_fails_ends_failed_with_its_exit_code_its_error_and_its_log()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // The device is the machine's that trains (a cluster's node has the GPU, not the submitter),
        // so it is found missing when training starts, as train finds it.
        var id = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--device", "cuda");
        var show = Ended(temp, id);
        Assert.Matches(@"state:      failed: train exited with 2: device cuda", show);
        Assert.Contains("exit code 2", show);
        var logs = Jobs(temp, "logs", id);
        Assert.Contains("error: device cuda", logs.Stdout);
    }

    [Fact]
    public void Cancel_stops_a_long_job_after_a_last_checkpoint_its_process_gone_and_a_second_job_into_its_folder_is_refused_meanwhile()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var id = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "1000000", "--checkpoint-interval", "0");
        var running = WaitForState(temp, id, state => state == "running" && File.Exists(Path.Combine(temp["run"], "metrics.jsonl")) && CliTests.Losses(temp["run"]).Count >= 3);
        var pid = TrainingPid(running);
        var second = Jobs(temp, "submit", "--config", config, "--data", data, "--out", temp["run"]);
        Assert.Equal(2, second.ExitCode);
        Assert.Equal($"error: {temp["run"]} is the run folder of job {id}, which has not ended; wait for it (stratus jobs show {id}), cancel it, or train into another --out\n", second.Stderr);
        var cancel = JobsAs("./stratus", temp, "cancel", id);
        Assert.True(cancel.ExitCode == 0, cancel.Stderr);
        Assert.Contains($"(continue it with `./stratus jobs submit --resume {temp["run"]}` (a job) or `./stratus train --resume {temp["run"]}`;", cancel.Stdout);
        var show = Ended(temp, id);
        Assert.Contains($"state:      cancelled: cancelled after a last checkpoint; continue it with `stratus jobs submit --resume {temp["run"]}` (a job) or `stratus train --resume {temp["run"]}`", show);
        Assert.Contains($"continue it with `./stratus jobs submit --resume {temp["run"]}` (a job) or `./stratus train --resume {temp["run"]}`", JobsAs("./stratus", temp, "show", id).Stdout);
        // --json is the API's view of the job, its reason in the CLI's words (the API's says POST /api/jobs).
        Assert.Equal($"cancelled after a last checkpoint; continue it with `stratus jobs submit --resume {temp["run"]}` (a job) or `stratus train --resume {temp["run"]}`",
            (string?)System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", id, "--json").Stdout)!["reason"]);
        Assert.Contains("exit code 143", show);
        Assert.False(Alive(pid), "the training process is still there");
        Assert.True(Directory.Exists(Path.Combine(temp["run"], "checkpoints", "last")));
        Assert.Contains("job.cancelled", Cli.Run("audit", "list", "--data-dir", temp["home"]).Stdout);
        Assert.Equal(2, Jobs(temp, "cancel", id).ExitCode);
    }

    /// <summary>A cancel asked for again sends nothing (a second SIGTERM, which train takes as "end
    /// at once", would lose the step's last checkpoint) and says the job is being cancelled;
    /// --force ends the training at once, and its reason says so.</summary>
    [Fact]
    public void A_second_cancel_waits_for_the_first_and_force_ends_the_training_at_once()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // The evaluation before step 0 outlasts the test: the first cancel waits for it.
        var id = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--eval-iters", "100000000");
        WaitForState(temp, id, state => state == "running" && File.Exists(Path.Combine(temp["run"], id + ".log"))
            && File.ReadAllText(Path.Combine(temp["run"], id + ".log")).Contains("training from step 0", StringComparison.Ordinal));
        var first = Jobs(temp, "cancel", id);
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Contains("stops after the current step with a last checkpoint", first.Stdout);
        Assert.Contains($"`stratus jobs cancel {id} --force` ends it at once", first.Stdout);
        Thread.Sleep(1000);
        var second = Jobs(temp, "cancel", id);
        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.Contains($"{id} is being cancelled already", second.Stdout);
        Thread.Sleep(1000);
        Assert.Contains("state:      running", Jobs(temp, "show", id).Stdout);
        var forced = Jobs(temp, "cancel", id, "--force");
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.Contains($"ending {id} at once", forced.Stdout);
        var show = Ended(temp, id);
        Assert.Contains("state:      cancelled: cancelled at once (forced), before its first checkpoint", show);
        Assert.Contains("exit code 137", show);
    }

    /// <summary>A cancel asked again says who asked first, as `jobs show` says it: a key (the dashboard's,
    /// the API's) by its name with its id beside it, as the audit API names keys (the job records the
    /// id, which stays true of the key whatever its name), the CLI's user as cli:user; `jobs show
    /// --json` gives the key's name beside the id it records.</summary>
    [Fact]
    public async Task A_second_cancel_and_jobs_show_say_who_asked_first_a_key_by_its_name()
    {
        using var temp = new TempDirectory();
        var key = (await Stratus.Platform.PlatformStores.Open(temp["home"]).KeyService()
            .CreateAsync("ops", Stratus.Platform.ApiKeyScopes.Training, Stratus.Platform.RateLimits.Unlimited, "tests")).Key;
        // Supervisors that record nothing and outlive the test's commands: the jobs stay queued.
        var service = Stratus.Platform.Jobs.JobService.Open(temp["home"], ["/bin/sh", "-c", "sleep 30"]);
        string Queued(string run, string actor)
        {
            Directory.CreateDirectory(temp[run]);
            return service.Submit(new Stratus.Platform.Jobs.TrainArguments(null, temp[run], temp[run], []), actor).Id;
        }

        var byKey = Queued("a", key.Id);
        service.Cancel(byKey, key.Id);
        var again = Jobs(temp, "cancel", byKey);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Matches($@"^{byKey} is being cancelled already \(asked at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC by ops \({key.Id}\)\): ", again.Stdout);
        var show = Jobs(temp, "show", byKey).Stdout;
        Assert.Matches($@"state:      queued \(cancelling since [^)]+ by ops \({key.Id}\)\)\n", show);
        Assert.Matches($@"submitted:  [^\n]+ by ops \({key.Id}\)\n", show);
        var json = System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", byKey, "--json").Stdout)!;
        Assert.Equal((key.Id, "ops", key.Id, "ops"), ((string?)json["cancel_requested_by"], (string?)json["cancel_requested_by_name"], (string?)json["submitted_by"], (string?)json["submitted_by_name"]));
        // The audit log names the key that submitted the job as the jobs commands do.
        Assert.Matches($@"│ ops \({key.Id}\)\s+│ job\.submitted", Cli.Run("audit", "list", "--data-dir", temp["home"]).Stdout);

        var byCli = Queued("b", key.Id);
        Assert.Equal(0, Jobs(temp, "cancel", byCli).ExitCode);
        var second = Jobs(temp, "cancel", byCli);
        Assert.Contains($" UTC by cli:{Environment.UserName}): ", second.Stdout);
        Assert.Contains($"(cancelling since ", Jobs(temp, "show", byCli).Stdout);
        Assert.Null(System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", byCli, "--json").Stdout)!["cancel_requested_by_name"]);
    }

    /// <summary>A job whose cancel was asked for stays running while its training finishes its step
    /// and saves a last checkpoint: jobs show and jobs list say it is being cancelled, and since when,
    /// as Kubernetes' Terminating does, and its JSON gives when the cancel was asked.</summary>
    [Fact]
    public void A_job_being_cancelled_says_so_and_since_when_in_show_list_and_json()
    {
        using var temp = new TempDirectory();
        // A training that takes its SIGTERM and goes on, as one finishing its step does.
        using var training = Process.Start("/bin/sh", ["-c", "trap '' TERM; while :; do sleep 0.05; done"])!;
        try
        {
            var store = Stratus.Platform.Jobs.JobService.Open(temp["home"], ["/bin/false"]).Store;
            const string Id = "job-0000ca2c";
            store.Insert(new(Id, Stratus.Platform.Jobs.Job.TrainKind, new(null, temp["data"], temp["run"], []), Stratus.Platform.Jobs.LocalJobExecutor.ExecutorName, null,
                Stratus.Platform.Jobs.JobState.Queued, null, null, null, null, store.Now, null, null, null, "cli:test", Path.Combine(temp["run"], Id + ".log")),
                new Stratus.Platform.AuditRecord("cli:test", Stratus.Platform.AuditActions.JobSubmitted, []));
            store.RecordStarted(Id, training.Id, null);
            Assert.DoesNotContain("cancelling", Jobs(temp, "show", Id).Stdout);
            Assert.Null(System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", Id, "--json").Stdout)!["cancel_requested_at"]);

            var cancel = Jobs(temp, "cancel", Id);
            Assert.True(cancel.ExitCode == 0, cancel.Stderr);
            var asked = store.Get(Id)!.CancelRequestedAt!.Value;
            string At(string format) => asked.UtcDateTime.ToString(format, System.Globalization.CultureInfo.InvariantCulture);
            // By whom, as the audit entry names the CLI's user.
            Assert.Contains($"state:      running (cancelling since {At("yyyy-MM-dd HH:mm:ss")} UTC by cli:{Environment.UserName})\n", Jobs(temp, "show", Id).Stdout);
            Assert.Matches($@"{Id}\s+│ running \(cancelling since {At("HH:mm:ss")}\)\s+│", Jobs(temp, "list").Stdout);
            var shown = System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", Id, "--json").Stdout)!;
            Assert.Equal(("running", asked, $"cli:{Environment.UserName}"), ((string?)shown["state"], (DateTimeOffset)shown["cancel_requested_at"]!, (string?)shown["cancel_requested_by"]));
            var listed = System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "list", "--json").Stdout)!["data"]![0]!;
            Assert.Equal(asked, (DateTimeOffset)listed["cancel_requested_at"]!);
        }
        finally
        {
            training.Kill();
        }
    }

    /// <summary>jobs list shows the newest --limit jobs (1,000 unless told) and says how to list
    /// the ones after them; --after lists those.</summary>
    [Fact]
    public void Jobs_list_pages_with_limit_and_after()
    {
        using var temp = new TempDirectory();
        var store = Stratus.Platform.Jobs.JobService.Open(temp["home"], ["/bin/true"]).Store;
        foreach (var (id, n) in new[] { ("job-0000000a", 0), ("job-0000000b", 1) })
            store.Insert(new Stratus.Platform.Jobs.Job(id, Stratus.Platform.Jobs.Job.TrainKind, new Stratus.Platform.Jobs.TrainArguments(null, "/data", temp[id], []),
                "elsewhere", null, Stratus.Platform.Jobs.JobState.Queued, null, null, null, null, store.Now.AddSeconds(-n), null, null, null, "cli:test", Path.Combine(temp[id], "x.log")),
                new Stratus.Platform.AuditRecord("cli:test", Stratus.Platform.AuditActions.JobSubmitted, []));
        var first = Jobs(temp, "list", "--limit", "1");
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Contains("job-0000000a", first.Stdout);
        Assert.DoesNotContain("job-0000000b", first.Stdout);
        Assert.Contains("more jobs follow: stratus jobs list --after job-0000000a", first.Stdout);
        var next = Jobs(temp, "list", "--limit", "1", "--after", "job-0000000a");
        Assert.Contains("job-0000000b", next.Stdout);
        Assert.DoesNotContain("more jobs follow", next.Stdout);
        var both = Jobs(temp, "list");
        Assert.Contains("job-0000000a", both.Stdout);
        Assert.Contains("job-0000000b", both.Stdout);
    }

    [Fact]
    public void A_job_whose_supervisor_and_training_were_killed_with_SIGKILL_reads_failed_not_running()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var id = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "1000000", "--checkpoint-interval", "0");
        var pid = TrainingPid(WaitForState(temp, id, state => state == "running"));
        // The supervisor leads the job's process group (its own session), the training in it.
        var group = File.ReadAllText($"/proc/{pid}/stat").Split(')')[^1].Trim().Split(' ')[2];
        using (var kill = Process.Start("kill", ["-KILL", "--", "-" + group])!) kill.WaitForExit();
        var show = Ended(temp, id);
        Assert.Matches(@"state:      failed: its supervisor \(pid \d+\) ended without recording how the training \(pid \d+\) ended \(killed\?\)", show);
    }

    [Fact]
    public void A_tests_folder_once_disposed_leaves_none_of_its_jobs_processes_running()
    {
        int pid;
        using (var temp = new TempDirectory())
        {
            var (data, config) = Cli.PrepareTiny(temp);
            var id = Submit(temp, "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "1000000", "--checkpoint-interval", "0");
            pid = TrainingPid(WaitForState(temp, id, state => state == "running"));
        }
        Assert.False(Alive(pid), $"the training process {pid} outlived its test");
    }

    [Fact]
    public void Arguments_train_would_refuse_are_refused_at_submit_with_trains_error_and_nothing_recorded()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        File.WriteAllText(temp["unknown.json"], """{ "n_layer": 1, "n_layers": 2 }""");
        Assert.Equal(0, Cli.Run("keys", "create", "--name", "me", "--data-dir", temp["home"]).ExitCode);
        AssertSubmitRefusesAsTrainDoes(temp, new string[][]
        {
            ["--config", temp["unknown.json"], "--data", data, "--out", temp["run"]],
            ["--config", config, "--data", data, "--out", temp["run"], "--learning-rate", "fast"],
            ["--config", config, "--data", temp["missing"], "--out", temp["run"]],
            ["--config", config, "--data", data, "--out", temp["run"], "--block-size", "100000"],
        });
        Assert.False(Directory.Exists(temp["run"]));
        Assert.StartsWith("No jobs.", Jobs(temp, "list").Stdout);
    }

    /// <summary>Train's exact-resume promise kept through jobs: a job cancelled after a last
    /// checkpoint and continued by `jobs submit --resume` logs the losses of an uninterrupted job,
    /// step for step; the resumed job says what it continues, and `jobs list` shows its steps.</summary>
    [Fact]
    public async Task A_job_cancelled_then_resumed_through_jobs_submit_resume_reaches_the_losses_of_an_uninterrupted_run()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        string[] settings = ["--config", config, "--data", data, "--lr-decay-iters", "60", "--warmup-iters", "2", "--eval-interval", "1000", "--checkpoint-interval", "0"];
        var first = Submit(temp, [.. settings, "--out", temp["run"], "--max-iters", "1000000"]);
        WaitForState(temp, first, state => state == "running" && File.Exists(Path.Combine(temp["run"], "metrics.jsonl")) && CliTests.Losses(temp["run"]).Count >= 3);
        var inUse = Jobs(temp, "submit", "--resume", temp["run"]);
        Assert.Equal((2, $"error: {temp["run"]} is the run folder of job {first}, which has not ended; wait for it (stratus jobs show {first}), cancel it, or train into another --out\n"), (inUse.ExitCode, inUse.Stderr));
        Assert.Equal(0, Jobs(temp, "cancel", first).ExitCode);
        var cancelled = Ended(temp, first);
        Assert.Contains($"continue it with `stratus jobs submit --resume {temp["run"]}` (a job) or `stratus train --resume {temp["run"]}`", cancelled);
        var stopped = CliTests.Losses(temp["run"]).Count;
        var end = (stopped + 5).ToString();

        var resumed = Submit(temp, "--resume", temp["run"], "--max-iters", end);
        var show = Ended(temp, resumed);
        Assert.Contains("state:      succeeded\n", show);
        Assert.Contains($"command:    stratus train --resume={temp["run"]} --max-iters={end}\n", show);
        Assert.Contains($"training from step {stopped} to {end}", File.ReadAllText(Path.Combine(temp["run"], resumed + ".log")));
        var json = System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", resumed, "--json").Stdout)!;
        Assert.Equal((true, null, temp["run"]), ((bool)json["arguments"]!["resume"]!, (string?)json["arguments"]!["init_from"], (string?)json["arguments"]!["out"]));
        Assert.Equal(stopped + 4, (long)json["last_step"]!["step"]!);
        Assert.Matches($@"{resumed}\s+│ succeeded │ .* │ {Regex.Escape(temp["run"])}\s+│ {stopped + 4}\s+│", Jobs(temp, "list").Stdout);
        var submitted = (await Stratus.Platform.PlatformStores.Open(temp["home"]).Audit.ReadAsync(new Stratus.Platform.AuditQuery(Action: Stratus.Platform.AuditActions.JobSubmitted)))
            .Select(e => System.Text.Json.Nodes.JsonNode.Parse(e.Details)!).Single(d => (string?)d["job"] == resumed);
        Assert.Equal((true, temp["run"]), ((bool)submitted["resume"]!, (string?)submitted["out"]));

        var whole = Submit(temp, [.. settings, "--out", temp["whole"], "--max-iters", end]);
        Assert.Contains("state:      succeeded\n", Ended(temp, whole));
        var expected = CliTests.Losses(temp["whole"]);
        var actual = CliTests.Losses(temp["run"]);
        Assert.Equal(expected.Select(e => e.Step), actual.Select(a => a.Step));
        for (var i = 0; i < expected.Count; i++)
            Assert.True(Math.Abs(expected[i].Loss - actual[i].Loss) <= 1e-6, $"step {expected[i].Step}: {expected[i].Loss} vs {actual[i].Loss}");
    }

    /// <summary>Fine-tuning as a job: `jobs submit --init-from` starts a new run from the model's
    /// weights, as train --init-from does, and records the model it started from.</summary>
    [Fact]
    public void A_job_submitted_with_init_from_fine_tunes_from_the_models_weights_and_records_it()
    {
        using var temp = new TempDirectory();
        var (data, config) = PrepareWithBaseRun(temp, iterations: 4);
        var id = Submit(temp, "--init-from", temp["base"], "--data", data, "--out", temp["ft"], "--max-iters", "3", "--eval-interval", "3");
        var show = Ended(temp, id);
        Assert.Contains("state:      succeeded\n", show);
        Assert.Contains($"command:    stratus train --init-from={temp["base"]} --data={data} --out={temp["ft"]} --max-iters=3 --eval-interval=3\n", show);
        var run = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp["ft"], "run.json")))!;
        Assert.StartsWith(Path.Combine(temp["base"], "checkpoints") + "/", (string?)run["init_from"]);
        var json = System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", id, "--json").Stdout)!;
        Assert.Equal((false, temp["base"]), ((bool)json["arguments"]!["resume"]!, (string?)json["arguments"]!["init_from"]));
        Assert.Equal(3, CliTests.Losses(temp["ft"]).Count);
    }

    /// <summary>A folder given as one that is a registered version's checkpoint, holding the files it
    /// was registered with, is that version as its reference is: the run records it as its parent,
    /// which `models register` of the run shows, and a job records it at submission. A copy of those
    /// files elsewhere is a folder of no version.</summary>
    [Fact]
    public void Init_from_a_registered_versions_folder_records_that_version_as_the_runs_parent()
    {
        using var temp = new TempDirectory();
        var (data, _) = PrepareWithBaseRun(temp, iterations: 4);
        Assert.Equal(0, Cli.Run("models", "register", temp["base"], "--name", "chat", "--data-dir", temp["home"]).ExitCode);
        string[] FineTune(string model, string output) => ["--init-from", model, "--data", data, "--out", output, "--max-iters", "1", "--eval-interval", "1", "--data-dir", temp["home"]];
        var train = Cli.Run(["train", .. FineTune(temp["base"], temp["ft"])]);
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Equal(0, Cli.Run("models", "register", temp["ft"], "--name", "chat-tuned", "--data-dir", temp["home"]).ExitCode);
        Assert.Contains("\n  parent:       chat:1 (the version its run started from)\n", Cli.Run("models", "show", "chat-tuned", "--data-dir", temp["home"]).Stdout);

        var id = Submit(temp, FineTune(temp["base"], temp["job"])[..^2]);
        var show = Ended(temp, id);
        Assert.Contains("state:      succeeded\n", show);
        Assert.Contains($"init from:  model chat:1, {Stratus.Training.Checkpoint.Resolve(temp["base"])} (resolved at submission)\n", show);
        Assert.Equal("chat:1", (string?)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp["job"], "run.json")))!["init_from_version"]);

        var copy = Directory.CreateDirectory(temp["copy"]);
        foreach (var file in Directory.GetFiles(Stratus.Training.Checkpoint.Resolve(temp["base"]))) File.Copy(file, Path.Combine(copy.FullName, Path.GetFileName(file)));
        var fromCopy = Cli.Run(["train", .. FineTune(copy.FullName, temp["from-copy"])]);
        Assert.True(fromCopy.ExitCode == 0, fromCopy.Stderr);
        Assert.Null(System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp["from-copy"], "run.json")))!["init_from_version"]);
    }

    /// <summary>Fine-tuning a registered model: train and jobs submit take --init-from NAME@ALIAS as
    /// serve takes --model, start from that version's weights (the first step's loss is that of a run
    /// from its folder), and record the version: the run as its parent, the job as resolved at
    /// submission, so that moving the alias after it does not change the job.</summary>
    [Fact]
    public void Init_from_a_registered_alias_starts_from_its_weights_and_a_job_keeps_the_version_it_resolved()
    {
        using var temp = new TempDirectory();
        var (data, config) = PrepareWithBaseRun(temp, iterations: 4);
        var other = Cli.Run("train", "--config", config, "--data", data, "--out", temp["other"], "--max-iters", "2", "--eval-interval", "2");
        Assert.True(other.ExitCode == 0, other.Stderr);
        foreach (var (run, alias) in new[] { (temp["base"], "production"), (temp["other"], "staging") })
        {
            var register = Cli.Run("models", "register", run, "--name", "chat", "--alias", alias, "--copy", "--data-dir", temp["home"]);
            Assert.True(register.ExitCode == 0, register.Stderr);
        }
        string[] FineTune(string model, string output) => ["--init-from", model, "--data", data, "--out", output, "--max-iters", "1", "--eval-interval", "1", "--data-dir", temp["home"]];
        foreach (var (model, output) in new[] { (temp["base"], temp["by-path"]), ("chat@production", temp["by-alias"]) })
        {
            var train = Cli.Run(["train", .. FineTune(model, output)]);
            Assert.True(train.ExitCode == 0, train.Stderr);
        }
        Assert.Equal(CliTests.Losses(temp["by-path"])[0], CliTests.Losses(temp["by-alias"])[0]);
        var byAlias = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp["by-alias"], "run.json")))!;
        var version1 = Path.Combine(temp["home"], "models", "chat", "1");
        Assert.Equal(("chat:1", version1), ((string?)byAlias["init_from_version"], (string?)byAlias["init_from"]));
        // Registered, the run shows its lineage.
        Assert.Equal(0, Cli.Run("models", "register", temp["by-alias"], "--name", "chat-tuned", "--data-dir", temp["home"]).ExitCode);
        Assert.Contains("\n  parent:       chat:1 (the version its run started from)\n", Cli.Run("models", "show", "chat-tuned", "--data-dir", temp["home"]).Stdout);
        var listed = System.Text.Json.Nodes.JsonNode.Parse(Cli.Run("models", "list", "--json", "--name", "chat-tuned", "--data-dir", temp["home"]).Stdout)!;
        Assert.Equal("chat:1", (string?)listed["data"]![0]!["versions"]![0]!["parent"]);

        var id = Submit(temp, FineTune("chat@production", temp["job"])[..^2]);
        Assert.Equal(0, Cli.Run("models", "alias", "chat", "2", "production", "--data-dir", temp["home"]).ExitCode);
        var show = Ended(temp, id);
        Assert.Contains("state:      succeeded\n", show);
        Assert.Contains($"init from:  model chat:1, {version1} (resolved at submission)\n", show);
        var json = System.Text.Json.Nodes.JsonNode.Parse(Jobs(temp, "show", id, "--json").Stdout)!;
        Assert.Equal(("chat:1", version1), ((string?)json["arguments"]!["init_from_version"], (string?)json["arguments"]!["init_from"]));
        var jobRun = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(temp["job"], "run.json")))!;
        Assert.Equal("chat:1", (string?)jobRun["init_from_version"]);
        Assert.Equal(CliTests.Losses(temp["by-path"])[0], CliTests.Losses(temp["job"])[0]);

        // Nothing registered by that reference: one line naming it and where to look, exit 2, from train and submit alike.
        foreach (var (reference, problem) in new[]
        {
            ("chat@nightly", "chat@nightly is not a folder, and model 'chat' has no alias 'nightly'; see its versions and aliases with `stratus models show chat` or `stratus models list --name chat`"),
            ("nothing@production", "nothing@production is not a folder, and no model named 'nothing' is registered; see the registered names with `stratus models list`"),
        })
            foreach (var (verb, (code, stdout, stderr)) in new[] { ("train", Cli.Run(["train", .. FineTune(reference, temp["refused"])])), ("submit", Jobs(temp, ["submit", .. FineTune(reference, temp["refused"])[..^2]])) })
                Assert.Equal((verb, 2, "", $"error: {problem}\n"), (verb, code, stdout, stderr));
        Assert.False(Directory.Exists(temp["refused"]));

        // The version a job recorded, deleted since with its copy: its training says so.
        var gone = Cli.Run(["train", .. FineTune(temp["deleted"], temp["refused"]), "--init-from-version", "chat:1"]);
        Assert.Equal((2, $"error: {temp["deleted"]}, the checkpoint of model chat:1 when the job was submitted, is missing: the version was deleted or its folder moved; " +
            "submit the job again from a registered version (see them with `stratus models list`)\n"), (gone.ExitCode, gone.Stderr));
    }

    /// <summary>A version registered without --copy is its run's folder, which the run saves again
    /// while it trains: a job resolved at submission starts from the files its submission verified,
    /// and refuses, in one line, a checkpoint saved over since (else it would fine-tune other weights
    /// and record the version as their parent).</summary>
    [Fact]
    public void A_job_from_a_version_whose_run_saved_its_checkpoint_again_since_submission_refuses_to_start()
    {
        using var temp = new TempDirectory();
        var (data, config) = PrepareWithBaseRun(temp, iterations: 2);
        var other = Cli.Run("train", "--config", config, "--data", data, "--out", temp["other"], "--max-iters", "4", "--eval-interval", "2");
        Assert.True(other.ExitCode == 0, other.Stderr);
        Assert.Equal(0, Cli.Run("models", "register", temp["base"], "--name", "chat", "--data-dir", temp["home"]).ExitCode);
        var id = Submit(temp, "--init-from", "chat", "--data", data, "--out", temp["job"], "--max-iters", "1", "--eval-interval", "1");
        var show = Ended(temp, id);
        Assert.Contains("state:      succeeded\n", show);
        // The job's own command, as its executor runs it, once the version's folder holds another
        // checkpoint (its run, trained on, saved there again).
        var command = show.Split('\n').Single(line => line.StartsWith("command:    stratus ", StringComparison.Ordinal))["command:    stratus ".Length..].Split(' ');
        var folder = command.Single(word => word.StartsWith("--init-from=", StringComparison.Ordinal))["--init-from=".Length..];
        foreach (var file in Directory.GetFiles(Stratus.Training.Checkpoint.Resolve(temp["other"])))
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
        var again = Cli.Run([.. command.Select(word => word == "--out=" + temp["job"] ? "--out=" + temp["again"] : word)]);
        Assert.Equal((2, "", $"error: {folder}, the checkpoint of model chat:1 when the job was submitted, changed since"),
            (again.ExitCode, again.Stdout, again.Stderr.Split(" (a new manifest")[0]));
        Assert.False(File.Exists(Path.Combine(temp["again"], "run.json")));
    }

    /// <summary>--resume and --init-from are checked at submit as train checks them: train's own
    /// one-line error, exit 2, nothing recorded.</summary>
    [Fact]
    public void Resume_and_init_from_that_train_would_refuse_are_refused_at_submit_with_trains_error_and_nothing_recorded()
    {
        using var temp = new TempDirectory();
        var (data, config) = PrepareWithBaseRun(temp, iterations: 2);
        Directory.CreateDirectory(temp["nothing"]);
        Assert.Equal(0, Cli.Run("keys", "create", "--name", "me", "--data-dir", temp["home"]).ExitCode);
        AssertSubmitRefusesAsTrainDoes(temp, new string[][]
        {
            ["--resume", temp["base"], "--config", config],
            ["--resume", temp["base"], "--out", temp["other"]],
            ["--resume", temp["nothing"]],
            ["--resume", temp["base"], "--n-layer", "3"],
            ["--resume", temp["base"], "--data", temp["missing"]],
            ["--resume", temp["base"], "--init-from", temp["base"]],
            ["--resume", temp["base"]],
            ["--resume", temp["base"], "--max-iters", "1"],
            ["--init-from", temp["missing"], "--data", data, "--out", temp["ft"]],
            ["--init-from", temp["base"], "--data", data, "--out", temp["ft"], "--n-layer", "3"],
            ["--init-from", temp["base"], "--data", data],
        });
        Assert.False(Directory.Exists(temp["ft"]));
        Assert.StartsWith("No jobs.", Jobs(temp, "list").Stdout);
        // A run already at max_iters used to be a job that "succeeded" at once, having trained nothing.
        Assert.Equal($"error: max_iters is 2 and the checkpoint of {temp["base"]} is at step 2: nothing to train; resume with --max-iters above 2 to train on\n", Jobs(temp, "submit", "--resume", temp["base"]).Stderr);
    }

    [GeneratedRegex(@"submitted (job-[0-9a-f]{8})")]
    private static partial Regex JobId();

    [GeneratedRegex(@"training process (\d+)")]
    private static partial Regex TrainingProcess();
}
