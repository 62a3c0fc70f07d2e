using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;

namespace Stratus.Cli.Tests;

public sealed class CliTests
{
    internal static List<(long Step, double Loss)> Losses(string run) =>
        File.ReadLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(m => m["train_loss"] is not null).Select(m => ((long)m["step"]!, (double)m["train_loss"]!)).ToList();

    [Fact]
    public void Prepare_into_a_dataset_folder_refuses_other_text_in_one_line_unless_overwrite_and_leaves_the_same_source_as_it_is()
    {
        // A run trained on the dataset no longer resumed once `prepare` had silently replaced it.
        using var temp = new TempDirectory();
        var (data, _) = Cli.PrepareTiny(temp);
        File.WriteAllText(temp["other.txt"], Cli.TinyCorpus()[1..]);
        var refused = Cli.Run("prepare", "--input", temp["other.txt"], "--out", data);
        Assert.Equal(2, refused.ExitCode);
        Assert.Matches($"^error: {data} already holds a dataset prepared from other text: .*; pass --overwrite to replace it \\(a run trained on it can then no longer resume\\), or choose another --out\n$", refused.Stderr);
        var same = Cli.Run("prepare", "--input", temp["corpus.txt"], "--out", data);
        // After the progress of hashing it.
        Assert.Equal((0, $"{data} is up to date: it holds this source prepared with these settings; nothing to do (--overwrite prepares it again)"), (same.ExitCode, same.Stdout.TrimEnd('\n').Split('\n')[^1]));
        var replaced = Cli.Run("prepare", "--input", temp["other.txt"], "--out", data, "--overwrite");
        Assert.True(replaced.ExitCode == 0, replaced.Stderr);
        Assert.StartsWith($"prepared {data}: ", replaced.Stdout.TrimEnd('\n').Split('\n')[^1]);
    }

    [Fact]
    public void Resume_after_SIGKILL_reproduces_the_uninterrupted_losses()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var full = Cli.Run("train", "--config", config, "--data", data, "--out", temp["full"]);
        Assert.True(full.ExitCode == 0, full.Stderr);

        using (var victim = Process.Start(Cli.StartInfo("train", "--config", config, "--data", data, "--out", temp["killed"]))!)
        {
            victim.StandardOutput.ReadLineAsync(); // keep the pipes drained
            var metrics = Path.Combine(temp["killed"], "metrics.jsonl");
            var deadline = DateTime.UtcNow.AddMinutes(2);
            while (DateTime.UtcNow < deadline && !victim.HasExited)
            {
                if (File.Exists(metrics) && Losses(temp["killed"]).LastOrDefault().Step >= 25) break;
                Thread.Sleep(5);
            }
            Assert.False(victim.HasExited, "the run finished before it could be killed");
            victim.Kill(entireProcessTree: true); // SIGKILL: no chance to save anything
            victim.WaitForExit();
        }
        var resumed = Cli.Run("train", "--resume", temp["killed"]);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);

        var expected = Losses(temp["full"]);
        var actual = Losses(temp["killed"]);
        Assert.Equal(expected.Select(e => e.Step), actual.Select(a => a.Step));
        for (var i = 0; i < expected.Count; i++)
            Assert.True(Math.Abs(expected[i].Loss - actual[i].Loss) <= 1e-6, $"step {expected[i].Step}: {expected[i].Loss} vs {actual[i].Loss}");
    }

    /// <summary>Waits until a run has logged <paramref name="steps"/> training steps (or its process ended).</summary>
    internal static void WaitForSteps(Process process, string run, int steps)
    {
        var metrics = Path.Combine(run, "metrics.jsonl");
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (DateTime.UtcNow < deadline && !process.HasExited && !(File.Exists(metrics) && File.ReadLines(metrics).Count(l => l.Contains("\"train_loss\"")) >= steps))
            Thread.Sleep(20);
        Assert.False(process.HasExited, "the run ended before it could be signalled");
    }

    internal static void Signal(int pid, string signal)
    {
        using var kill = Process.Start("kill", ["-" + signal, pid.ToString()])!;
        kill.WaitForExit();
    }

    [Fact]
    public void A_run_stopped_before_its_first_step_is_not_sent_to_resume_a_checkpoint_it_never_saved()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var info = Cli.StartInfo("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "100000");
        info.Environment["DOTNET_STARTUP_HOOKS"] = typeof(StartupHook).Assembly.Location;
        info.Environment["STRATUS_TEST_SIGTERM_ON_OUTPUT"] = "training from step 0";
        var (code, stdout, stderr) = Cli.Run(info);
        Assert.True(code == 143, $"exit {code}: {stdout}{stderr}"); // 128 + SIGTERM: not a finished run
        // It said "stopped at step 0; continue with `stratus train --resume <run>`", which then
        // failed: the run has no checkpoint.
        Assert.True(stdout.Contains("stopped before the first step: nothing was trained or saved; start the run again with the same command"), stdout);
        Assert.DoesNotContain("--resume", stdout);
        Assert.False(Directory.Exists(Path.Combine(temp["run"], "checkpoints")));
        var again = Cli.Run("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "2", "--lr-decay-iters", "2", "--warmup-iters", "0");
        Assert.True(again.ExitCode == 0, again.Stdout + again.Stderr);
    }

    [Fact]
    public async Task SIGTERM_stops_training_after_a_last_checkpoint()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        using var run = Process.Start(Cli.StartInfo("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "100000", "--checkpoint-interval", "0"))!;
        var stdout = run.StandardOutput.ReadToEndAsync();
        var stderr = run.StandardError.ReadToEndAsync();
        try
        {
            WaitForSteps(run, temp["run"], 5);
            Signal(run.Id, "TERM");
            Assert.True(run.WaitForExit(TimeSpan.FromMinutes(2)), "training did not stop");
            // 128 + SIGTERM, as a shell reports a process the signal ended: `train && export`
            // must not go on to export a run that stopped before max_iters (it exited 0).
            Assert.True(run.ExitCode == 143, $"exit {run.ExitCode}: {await stdout}{await stderr}");
            Assert.Matches(@"stopped at step \d+", await stdout);
            Assert.True(Directory.Exists(Path.Combine(temp["run"], "checkpoints", "last")));
        }
        finally
        {
            if (!run.HasExited) run.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public void Bench_train_reports_the_median_step_and_the_rates_from_it()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var (code, _, stderr) = Cli.Run("bench", "train", "--config", config, "--data", data, "--steps", "2", "--json", temp["bench.json"], "--deterministic", "true");
        Assert.True(code == 0, stderr);
        var report = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp["bench.json"]))!;
        // What was measured says where and how.
        Assert.Equal("cpu", (string)report["device"]!);
        Assert.True((bool)report["deterministic"]!);
        double Field(string name) => (double)report[name]!;
        // Of two steps, the median is their mean; tokens/s follows from it.
        Assert.Equal((Field("ms_per_step_min") + Field("ms_per_step_max")) / 2, Field("ms_per_step_median"), 6);
        Assert.Equal(8 * 32 / (Field("ms_per_step_median") / 1000), Field("tokens_per_sec"), 0);
    }

    [Fact]
    public void Bench_blocklist_measures_each_list_size_and_finds_the_hits_it_plants()
    {
        using var temp = new TempDirectory();
        var (code, _, stderr) = Cli.Run("bench", "blocklist", "--terms", "3,20", "--patterns", "2", "--json", temp["blocklist.json"]);
        Assert.True(code == 0, stderr);
        var report = JsonNode.Parse(File.ReadAllText(temp["blocklist.json"]))!;
        var results = report["results"]!.AsArray();
        Assert.Equal([3, 20], results.Select(r => (int)r!["terms"]!));
        foreach (var row in results)
        {
            // Ordinary text holds none of the made-up terms; the text of one term repeated is all hits.
            Assert.Equal(0, (int)row!["clean_256kib"]!["hits"]!);
            Assert.True((int)row["hits_256kib"]!["hits"]! > 20_000);
            Assert.False((bool)row["hits_256kib"]!["timed_out"]!);
            // "the " repeated holds "the" but none of the terms that begin with it.
            Assert.Equal(0, (int)row["shared_first_word_256kib"]!["hits"]!);
            // "a " repeated holds the first words "a a ..." of the terms of many lengths, never their last.
            Assert.Equal(0, (int)row["many_lengths_256kib"]!["hits"]!);
        }
        // A server's pipeline rebuild with each list of terms, then with the list of patterns.
        var rebuilds = report["rebuilds"]!.AsArray();
        Assert.Equal(["3 terms", "20 terms", "2 patterns"], rebuilds.Select(r => (string)r!["list"]!));
        Assert.Equal(2, (int)rebuilds[2]!["patterns"]!);
        Assert.All(rebuilds, r => Assert.True((double)r!["first"]!["allocated_mib"]! > 0));
        var refused = Cli.Run("bench", "blocklist", "--terms", "10,ten");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--terms: 'ten' is not a positive whole number", refused.Stderr);
        refused = Cli.Run("bench", "blocklist", "--patterns", "0");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--patterns: '0' is not a positive whole number", refused.Stderr);
    }

    [Fact]
    public void Bench_safety_times_each_check_on_clean_text_and_on_text_with_cues()
    {
        using var temp = new TempDirectory();
        var (code, stdout, stderr) = Cli.Run("bench", "safety", "--sizes", "128,600", "--calls", "3", "--json", temp["safety.json"]);
        Assert.True(code == 0, stderr);
        Assert.Contains("median µs", stdout);
        var report = JsonNode.Parse(File.ReadAllText(temp["safety.json"]))!;
        Assert.Equal("safety", (string)report["benchmark"]!);
        Assert.Equal(3, (int)report["calls"]!);
        var results = report["results"]!.AsArray();
        // Every check on every text: 2 sizes x clean and cues x 3 checks.
        Assert.Equal(12, results.Count);
        Assert.Equal(["blocklist_patterns", "pii", "prompt_injection"], results.Select(r => (string)r!["check"]!).Distinct().Order());
        foreach (var row in results)
        {
            foreach (var field in new[] { "median_us", "p99_us", "calls_per_sec" })
                Assert.True((double)row![field]! > 0, $"{field} of {row.ToJsonString()}");
            Assert.True((long)row!["bytes_per_call"]! >= 0);
            Assert.True((double)row["p99_us"]! >= (double)row["median_us"]!);
            // Clean prose holds no cue; the text with cues begins with one of each check's.
            var matches = (int)row["matches"]!;
            if ((string)row["text"]! == "clean") Assert.Equal(0, matches);
            else Assert.True(matches > 0, row.ToJsonString());
        }
        Assert.Equal([128, 600], results.Select(r => (int)r!["chars"]!).Distinct());
        // What building the linear-time engines adds to a new instance's first check.
        var first = report["first_check"]!.AsArray();
        Assert.Equal(["prompt_injection", "blocklist_patterns"], first.Select(f => (string)f!["check"]!));
        Assert.All(first, f => Assert.True((double)f!["ms"]! > 0, f.ToJsonString()));
        Assert.Contains("first check on a new instance", stdout);
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--sizes", "128,big"], "error: --sizes: 'big' is not a positive whole number"),
            (["--calls", "0"], "error: --calls 0 is not a positive whole number"),
        })
        {
            var refused = Cli.Run(["bench", "safety", .. args]);
            Assert.Equal(2, refused.ExitCode);
            Assert.StartsWith(expected, refused.Stderr);
            Assert.Single(refused.Stderr.Trim().Split('\n'));
        }
    }

    [Fact]
    public void Bench_train_measures_data_without_a_val_split_which_it_never_evaluates()
    {
        using var temp = new TempDirectory();
        var (_, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("prepare", "--input", temp["corpus.txt"], "--out", temp["noval"], "--val-fraction", "0").ExitCode);
        // It was refused for its empty val.bin "(training evaluates on both splits)".
        var (code, _, stderr) = Cli.Run("bench", "train", "--config", config, "--data", temp["noval"], "--steps", "1", "--json", temp["bench.json"]);
        Assert.True(code == 0, stderr);
        Assert.Equal(1, (int)JsonNode.Parse(File.ReadAllText(temp["bench.json"]))!["steps"]!);
    }

    [Fact]
    public void Bad_input_gets_one_line_exit_code_2_and_no_stack_trace()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        File.WriteAllText(temp["empty.txt"], "");
        File.WriteAllText(temp["baseline.json"], """{"tokens_per_sec": """);
        File.WriteAllText(temp["lone.jsonl"], """{"text": "a\ud800b"}""");
        File.WriteAllText(temp["blank.txt"], " \n\t\n");
        Directory.CreateDirectory(temp["run/checkpoints"]);
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var takenPort = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString();
        var cases = new (string[] Args, string Expected)[]
        {
            // What would stop the demo's serving is found before it trains.
            (["demo", "--corpus", temp["corpus.txt"], "--out", temp["demo"], "--port", takenPort], $"port {takenPort} is not free"),
            (["demo", "--corpus", temp["corpus.txt"], "--out", temp["my demo"]], "names the served model"),
            (["demo", "--corpus", temp["corpus.txt"], "--out", Directory.CreateDirectory(temp["imported/checkpoints/best"]).Parent!.Parent!.FullName], "holds a model the demo did not train"),
            (["prepare", "--input", temp["empty.txt"], "--out", temp["x"]], "is empty"),
            (["prepare", "--input", temp["missing.txt"], "--out", temp["x"]], "does not exist"),
            (["prepare", "--input", temp["corpus.txt"], "--out", temp["x"], "--val-fraction", "NaN"], "--val-fraction must be in [0, 1), got NaN"),
            (["prepare", "--input", temp["lone.jsonl"], "--out", temp["x"]], $"{temp["lone.jsonl"]}:1: a string holds a \\u escape of an unpaired UTF-16 surrogate"),
            (["prepare", "--input", temp["corpus.txt"], "--out", temp["run"]], $"{temp["run"]} holds a training run (checkpoints/), and the dataset's files would be written among its own; pass a new folder for the dataset"),
            (["prepare", "--input", temp["blank.txt"], "--out", temp["new/data"]], "holds nothing but whitespace"),
            (["prepare", "--input", temp["corpus.txt"], "--out", ""], "no output folder given; pass --out <folder> for the dataset"),
            (["bench", "train", "--config", config, "--data", data, "--steps", "1", "--baseline-json", temp["baseline.json"]], $"{temp["baseline.json"]} is not valid JSON at line 1"),
            (["train", "--config", config, "--data", data, "--out", temp["r1"], "--n-embd", "33"], "divisible by n_head"),
            (["train", "--config", config, "--data", data, "--out", temp["r2"], "--learning-rate", "-0.1"], "learning_rate must be positive"),
            (["train", "--config", config, "--data", data, "--out", temp["r3"], "--block-size", "999999"], "maximum"),
            (["train", "--config", temp["missing.json"], "--data", data, "--out", temp["r4"]], "does not exist"),
            // Settings and arguments are checked before the base model is opened (its files hashed).
            (["train", "--init-from", temp["nothing"], "--data", data, "--out", temp["r5"], "--learning-rate", "-0.1"], "learning_rate must be positive"),
            (["train", "--init-from", temp["nothing"], "--data", data, "--out", temp["r5"], "--n-layer", "x"], "--n-layer: n_layer must be"),
            (["train", "--init-from", temp["nothing"], "--out", temp["r5"]], "--data is required"),
            (["train", "--resume", temp["nothing"]], "not a Stratus run"),
            (["sample", "--model", temp["nothing"]], "does not exist"),
            (["sample", "--model", temp["nothing"], "--temperature", "Infinity"], "temperature must be a finite number, 0 (greedy) or more, got Infinity"),
            (["sample", "--model", temp["nothing"], "--min-p", "1.5"], "min-p must be in [0, 1], got 1.5"),
            // Checked before the model is opened.
            (["serve", "--model", temp["nothing"], "--shutdown-grace-period", "-1"], "--shutdown-grace-period must be 0 to 86400 seconds, got -1"),
            (["serve", "--model", temp["nothing"], "--shutdown-grace-period", "soon"], "Cannot parse argument 'soon' for option '--shutdown-grace-period' as a whole number"),
            (["plot", data], "has no metrics.jsonl"),
            (["train", "--resume", temp["nothing"], "--config", config], "--config cannot be used with --resume"),
            (["prepare", "--input", temp["empty.txt"], "--out", temp["x"], "--tokenizer", "gpt2", "--tokenizer-from", temp["nothing"]], "cannot be used together"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, stderr) = Cli.Run(args);
            Assert.True(code == 2, $"{string.Join(' ', args)} exited {code}: {stderr}");
            Assert.Contains(expected, stderr);
            Assert.DoesNotContain("   at ", stderr);
            Assert.Single(stderr.Trim().Split('\n'));
        }
        // A refused prepare takes away the folders it made, and writes nothing into a run.
        Assert.False(Directory.Exists(temp["new"]));
        Assert.Equal(["checkpoints"], Directory.EnumerateFileSystemEntries(temp["run"]).Select(Path.GetFileName));

        File.WriteAllText(temp["unknown.json"], """{"n_layer": 1, "learnin_rate": 1}""");
        var unknown = Cli.Run("train", "--config", temp["unknown.json"], "--data", data, "--out", temp["r5"]);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("unknown config key 'learnin_rate'", unknown.Stderr);

        var parse = Cli.Run("sample", "--model", temp["nothing"], "--max-tokens", "many");
        Assert.Equal(2, parse.ExitCode);
        Assert.Contains("'many' for option '--max-tokens' as a whole number", parse.Stderr); // not "System.Int32"
        // A choice outside the allowed ones names them on the error's one line (the parser lists them one per line).
        var choice = Cli.Run("prepare", "--input", temp["corpus.txt"], "--out", temp["x"], "--tokenizer", "bpe");
        Assert.Equal(2, choice.ExitCode);
        Assert.Equal("error: Argument 'bpe' not recognized. Must be one of: 'char', 'gpt2'", choice.Stderr.Split('\n')[0]);

        // Where a verb would write is checked before it works (eval would otherwise lose its result).
        File.WriteAllText(temp["afile"], "");
        var folderForFile = Cli.Run("eval", "--model", temp["nothing"], "--data", data, "--json", temp.Path);
        Assert.Equal(2, folderForFile.ExitCode);
        Assert.Contains($"--json {temp.Path} is a folder", folderForFile.Stderr);
        var belowFile = Cli.Run("train", "--config", config, "--data", data, "--out", Path.Combine(temp["afile"], "run"));
        Assert.Equal(2, belowFile.ExitCode);
        Assert.Contains($"{temp["afile"]} is a file", belowFile.Stderr);
    }

    [Fact]
    public void A_batch_too_large_for_memory_gets_one_line_naming_the_allocation_and_the_fix()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // 400,000 windows of 32 tokens embed into 26 GB, over the 12 GB the process may map.
        var (code, _, stderr) = Cli.RunWithMemoryCap(12_000_000, "train", "--config", config, "--data", data, "--out", temp["run"], "--batch-size", "400000", "--n-embd", "512");
        Assert.True(code == 2, $"exited {code}: {stderr}");
        Assert.Matches(@"^error: out of memory: could not allocate [\d.]+ [GM]iB; a smaller --batch-size \(more --gradient-accumulation-steps keeps the tokens per step\), --block-size or model needs less, and so does --dtype bfloat16$", stderr.Trim());
    }

    [Fact]
    public void Version_prints_the_version_and_a_verb_alone_lists_what_can_follow_it()
    {
        // `stratus --version` printed the help, as `stratus` alone does.
        var version = Cli.Run("--version");
        Assert.Equal(0, version.ExitCode);
        Assert.Matches(@"^\d+\.\d+\.\d+\S*$", version.Stdout.Trim());
        foreach (var args in new[] { Array.Empty<string>(), ["keys"] })
        {
            var help = Cli.Run(args);
            Assert.Equal(0, help.ExitCode);
            Assert.Contains("Commands:", help.Stdout);
        }
    }

    [Fact]
    public void The_words_after_a_directive_are_its_own()
    {
        // dotnet-suggest's shell completion runs `stratus [suggest] <words>`: the words left over
        // after --version and --help are refused, but a directive's were refused too.
        var (code, stdout, stderr) = Cli.Run("[suggest]", "tr");
        Assert.True(code == 0, stderr);
        Assert.Equal("train", stdout.Trim());
    }

    [Fact]
    public void A_config_that_does_not_exist_is_refused_naming_the_ready_configs_where_they_are()
    {
        // Outside a clone, as the installed tool runs, "see configs/" named a folder the user has not.
        using var temp = new TempDirectory();
        var ready = Path.Combine(AppContext.BaseDirectory, "configs");
        foreach (var verb in new[] { new[] { "train", "--out", temp["run"] }, ["bench", "train"] })
        {
            var info = Cli.StartInfo([.. verb, "--config", "configs/shakespeare-char-cpu.json", "--data", temp["data"]]);
            info.WorkingDirectory = temp.Path;
            var (code, _, stderr) = Cli.Run(info);
            Assert.True(code == 2, stderr);
            Assert.Single(stderr.Trim().Split('\n'));
            Assert.StartsWith("error: --config configs/shakespeare-char-cpu.json does not exist; the ready configs are ", stderr);
            Assert.Contains("shakespeare-char-cpu.json", stderr[stderr.IndexOf("ready", StringComparison.Ordinal)..]);
            Assert.EndsWith($" in {ready}", stderr.Trim());
        }
    }

    [Fact]
    public void A_config_folder_is_refused_as_a_folder_and_a_projects_own_configs_are_not_called_the_ready_ones()
    {
        // In a project of the user's own with a configs/ folder, `--config configs` was said not
        // to exist, and the project's configs were listed as "the ready configs" in place of Stratus's.
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["configs"]);
        File.WriteAllText(temp["configs/shakespeare-char-cpu.json"], """{"not_a_key": 1}""");
        var ready = Path.Combine(AppContext.BaseDirectory, "configs");
        foreach (var (given, problem) in new[] { ("configs", "is a folder, not a config file"), ("configs/missing.json", "does not exist") })
        {
            var info = Cli.StartInfo("train", "--config", given, "--data", temp["data"], "--out", temp["run"]);
            info.WorkingDirectory = temp.Path;
            var (code, _, stderr) = Cli.Run(info);
            Assert.True(code == 2, stderr);
            Assert.Matches($@"^error: --config {given} {problem}; the ready configs are [^\n]*gpt2-124m\.json[^\n]* in {System.Text.RegularExpressions.Regex.Escape(ready)}$", stderr.Trim());
        }
        // The project's own file, given relative to where the user stands, is the one read.
        var own = Cli.StartInfo("train", "--config", "configs/shakespeare-char-cpu.json", "--data", temp["data"], "--out", temp["run"]);
        own.WorkingDirectory = temp.Path;
        var (ownCode, _, ownError) = Cli.Run(own);
        Assert.True(ownCode == 2, ownError);
        Assert.Contains("not_a_key", ownError);
    }

    /// <summary>sample without --prompt starts from a newline, as nanoGPT's sample.py does; a
    /// character vocabulary without one could not encode it, and the error blamed "the text" of a
    /// prompt the user never gave. It starts from the vocabulary's first character instead.</summary>
    [Fact]
    public void Sample_without_a_prompt_starts_from_the_first_character_of_a_vocabulary_without_a_newline()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["ckpt"], model, tokenizer);
        var (code, stdout, stderr) = Cli.Run("sample", "--model", temp["ckpt"], "--max-tokens", "5", "--seed", "1");
        Assert.True(code == 0, stderr);
        Assert.Equal("", stderr);
        // " " sorts first; five characters of the vocabulary follow it.
        Assert.Matches("^ [abc ]{5}\n$", stdout);
    }

    [Fact]
    public void A_named_pipe_among_a_models_files_is_one_line_and_exit_2_not_a_hang()
    {
        // Opening a FIFO waits for a writer: `sample` on a folder holding one hung for ever.
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var manifest = temp["manifest.json"];
        using (var mkfifo = Process.Start("mkfifo", manifest)!) mkfifo.WaitForExit();
        var (code, _, stderr) = Cli.Run(Cli.StartInfo("sample", "--model", temp.Path, "--prompt", "a"), TimeSpan.FromMinutes(1));
        Assert.True(code == 2, stderr);
        Assert.Equal($"error: {manifest} is a named pipe (FIFO), not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself", stderr.Trim());
    }

    [Fact]
    public void A_misspelt_verb_or_option_or_a_stray_word_gets_one_line_naming_it_and_the_nearest_name()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["weights.safetensors"], "");
        var cases = new (string[] Args, string Expected)[]
        {
            // The parser listed "5" as unrecognized too, and "Required command was not provided"
            // for a verb it did not know, each on its own line, then a line of advice.
            (["train", "--config", "c.json", "--max-iter", "5"], "error: unknown option '--max-iter' for `stratus train` (did you mean --max-iters?); see `stratus train --help`"),
            (["trian", "--config", "c.json"], "error: unknown verb 'trian' (did you mean train?); the verbs are prepare, train, sample, "),
            (["frobnicate"], "error: unknown verb 'frobnicate'; the verbs are "),
            // `help` (or a typo of it) was an unknown verb with nothing near it; the option is --help.
            (["help"], "error: unknown verb 'help' (did you mean --help?); the verbs are prepare, train, "),
            (["hlep"], "error: unknown verb 'hlep' (did you mean --help?); the verbs are "),
            (["keys", "help"], "error: unknown verb 'help' for `stratus keys` (did you mean --help?); the verbs are create, list, revoke, limits, rotate: see `stratus keys --help`"),
            // A word before a verb stands where a verb goes: it was "unexpected argument 'help' for
            // `stratus train` (put quotes around a value that has spaces)".
            (["help", "train"], "error: unknown verb 'help' (did you mean --help?); the verbs are prepare, train, "),
            (["keys", "lst", "create"], "error: unknown verb 'lst' for `stratus keys` (did you mean list?); the verbs are create, list, revoke, limits, rotate: see `stratus keys --help`"),
            // --version printed the version whatever followed it.
            (["--version", "extra"], "error: unexpected argument 'extra' after --version, which takes none; `stratus --version` alone prints the version"),
            (["bench", "trian"], "error: unknown verb 'trian' for `stratus bench` (did you mean train?); the verbs are train, serve, infer, blocklist, safety: see `stratus bench --help`"),
            (["sample", "--model", temp.Path, "--prompt", "To", "be"], "error: unexpected argument 'be' for `stratus sample` (put quotes around a value that has spaces)"),
            (["prepare"], "error: Option '--input' is required. Option '--out' is required."),
            // A file where a model folder belongs was said not to exist.
            (["sample", "--model", temp["weights.safetensors"]], $"error: {temp["weights.safetensors"]} is a file; pass its folder"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, stderr) = Cli.Run(args);
            Assert.True(code == 2, $"{string.Join(' ', args)} exited {code}: {stderr}");
            Assert.StartsWith(expected, stderr);
            Assert.Single(stderr.Trim().Split('\n'));
        }
    }

    [Fact]
    public void A_required_argument_left_out_is_named()
    {
        // "Required argument missing for command: 'revoke'." named the command, not what it lacks.
        using var temp = new TempDirectory();
        var cases = new (string[] Args, string Expected)[]
        {
            (["keys", "revoke"], "error: `stratus keys revoke` needs <name-or-id>. See `stratus keys revoke --help`."),
            (["keys", "limits", "--rpm", "5"], "error: `stratus keys limits` needs <name-or-id>. See `stratus keys limits --help`."),
            (["blocklist", "add", "--term", "x"], "error: `stratus blocklist add` needs <name>. See `stratus blocklist add --help`."),
            (["blocklist", "remove"], "error: `stratus blocklist remove` needs <name>. See `stratus blocklist remove --help`."),
            (["plot"], "error: `stratus plot` needs <runs>. See `stratus plot --help`."),
            (["import", "hf", "--out", temp["run"]], "error: `stratus import hf` needs <hf-dir>. See `stratus import hf --help`."),
            // An option given without its value: "Required argument missing for option: '--out'."
            (["import", "hf", temp.Path, "--out"], "error: `stratus import hf` needs a value after --out. See `stratus import hf --help`."),
            (["import", "gguf", "--out", temp["run"]], "error: `stratus import gguf` needs <file.gguf>. See `stratus import gguf --help`."),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, stderr) = Cli.Run(args);
            Assert.True(code == 2, $"{string.Join(' ', args)} exited {code}: {stderr}");
            Assert.Equal(expected, stderr.Trim());
        }
    }

    [Fact]
    public void A_path_given_after_an_equals_sign_with_a_tilde_is_in_the_home_folder()
    {
        // bash leaves `--out=~/data` as typed: the CLI made a folder named ~ where the user stood.
        using var temp = new TempDirectory();
        var work = Directory.CreateDirectory(temp["work"]).FullName;
        File.WriteAllText(temp["corpus.txt"], Cli.TinyCorpus());
        foreach (var args in new[] { new[] { "prepare", "--input=~/corpus.txt", "--out=~/data" }, ["keys", "create", "--name", "me", "--data-dir=~/home"] })
        {
            var info = Cli.StartInfo(args);
            info.Environment["HOME"] = temp.Path;
            info.WorkingDirectory = work;
            var (code, _, stderr) = Cli.Run(info);
            Assert.True(code == 0, stderr);
        }
        Assert.True(File.Exists(temp["data/train.bin"]));
        Assert.True(File.Exists(temp["home/stratus.db"]));
        Assert.Empty(Directory.EnumerateFileSystemEntries(work));
    }

    [Fact]
    public void A_path_the_file_system_refuses_gets_one_line_naming_it_the_cause_and_the_option_to_change()
    {
        // .NET's "Could not find a part of the path '...'." or "Read-only file system : '...'" said
        // neither why nor what to do. A path below a file is refused for root too.
        using var temp = new TempDirectory();
        File.WriteAllText(temp["afile"], "");
        var belowFile = Cli.Run("keys", "create", "--name", "me", "--data-dir", temp["afile/keys"]);
        Assert.Equal(2, belowFile.ExitCode);
        Assert.Equal($"error: {temp["afile/keys"]}: {temp["afile"]} is a file, so nothing can be written below it; choose another --data-dir", belowFile.Stderr.Trim());
        // .NET names the first folder it could not make, above the option's path, which was then
        // named as "another path". Nobody, root included, makes a folder in /sys (EPERM; EROFS
        // where it is mounted read-only).
        if (OperatingSystem.IsLinux() && Directory.Exists("/sys/kernel"))
        {
            var above = $"/sys/stratus-test-{Guid.NewGuid():N}";
            var sys = Cli.Run("keys", "create", "--name", "me", "--data-dir", $"{above}/keys");
            Assert.Equal(2, sys.ExitCode);
            Assert.Matches($"^error: (cannot write )?{above}: [a-z -]+; (check its permissions or )?choose another --data-dir$", sys.Stderr.Trim());
            // A file is written to a temporary sibling, which .NET named (/sys/kernel/.loss.svg.<pid>.<guid>.tmp),
            // with "another path".
            Directory.CreateDirectory(temp["run"]);
            File.WriteAllLines(temp["run/metrics.jsonl"], ["{\"step\": 1, \"train_loss\": 3.1}", "{\"step\": 2, \"train_loss\": 2.9}"]);
            var file = Cli.Run("plot", temp["run"], "--svg", "/sys/kernel/loss.svg");
            Assert.Equal(2, file.ExitCode);
            Assert.Matches("^error: (cannot write )?/sys/kernel/loss.svg: [a-z -]+; (check its permissions or )?choose another --svg$", file.Stderr.Trim());
        }
        // A folder without write permission (Unix modes) stops everyone but root, as whom CI runs.
        if (Environment.IsPrivilegedProcess || OperatingSystem.IsWindows()) return;
        File.WriteAllText(temp["corpus.txt"], Cli.TinyCorpus());
        var readOnly = Directory.CreateDirectory(temp["read-only"]);
        readOnly.UnixFileMode = UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        var denied = Cli.Run("prepare", "--input", temp["corpus.txt"], "--out", temp["read-only/data"]);
        Assert.Equal(2, denied.ExitCode);
        Assert.Equal($"error: {temp["read-only/data"]}: permission denied; check its permissions or choose another --out", denied.Stderr.Trim());
    }

    [Fact]
    public void A_chat_template_given_to_prepare_goes_into_the_fine_tuned_run_and_bad_ones_get_one_line()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("train", "--config", config, "--data", data, "--out", temp["base"], "--max-iters", "2").ExitCode);
        // A format the char model can spell: "ij <user>" and "a <assistant>" lines.
        const string Template = "{% for m in messages %}{% if m['role'] == 'user' %}{{ 'ij ' + m['content'] + '\\n' }}{% else %}{{ 'a ' + m['content'] + '\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'a ' }}{% endif %}";
        File.WriteAllText(temp["format.jinja"], Template);
        File.WriteAllLines(temp["chat.jsonl"], Enumerable.Range(0, 20).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "abc"[..(1 + i % 3)] }, new JsonObject { ["role"] = "assistant", ["content"] = "hgf"[..(1 + i % 3)] }),
        }.ToJsonString()));
        string[] PrepareChat(string template, string output) =>
            ["prepare", "--input", temp["chat.jsonl"], "--format", "chat", "--tokenizer-from", temp["base"], "--chat-template", template, "--out", output, "--val-fraction", "0.25"];
        var prepared = Cli.Run(PrepareChat(temp["format.jinja"], temp["sft"]));
        Assert.True(prepared.ExitCode == 0, prepared.Stderr);
        string[] FineTune(string output) => ["train", "--config", config, "--data", temp["sft"], "--out", output, "--init-from", temp["base"], "--max-iters", "2", "--block-size", "8"];
        var tuned = Cli.Run(FineTune(temp["ft"]));
        Assert.True(tuned.ExitCode == 0, tuned.Stderr);
        var checkpoint = Path.Combine(temp["ft"], "checkpoints", "last");
        Assert.Equal(Template, File.ReadAllText(Path.Combine(checkpoint, "chat_template.jinja")));
        Assert.NotNull(JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "manifest.json")))!["files"]!["chat_template.jinja"]);

        void Refused(string[] args, string expected)
        {
            var (code, _, stderr) = Cli.Run(args);
            Assert.True(code == 2, $"{string.Join(' ', args)} exited {code}: {stderr}");
            Assert.Contains(expected, stderr);
            Assert.Single(stderr.Trim().Split('\n'));
        }
        Refused(PrepareChat(temp["missing.jinja"], temp["x"]), $"--chat-template {temp["missing.jinja"]} does not exist");
        File.WriteAllText(temp["unclosed.jinja"], "{% for m in messages %}{{ m['content'] }}");
        Refused(PrepareChat(temp["unclosed.jinja"], temp["x"]), $"{temp["unclosed.jinja"]}: the chat template cannot be used: ");
        Refused(["prepare", "--input", temp["corpus.txt"], "--out", temp["x"], "--chat-template", temp["format.jinja"]], "--chat-template applies to --format chat");
        File.AppendAllText(Path.Combine(temp["sft"], "chat_template.jinja"), "{{ eos_token }}");
        Refused(FineTune(temp["ft2"]), "chat_template.jinja does not match its sha256 in meta.json");
    }

    [Fact]
    public void Fine_tuning_without_a_block_size_trains_on_the_models_context_and_a_given_one_is_kept_or_refused()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        // The config's 10 steps of warm-up outlast these 2, silently.
        var pretrained = Cli.Run("train", "--config", config, "--data", data, "--out", temp["base"], "--max-iters", "2");
        Assert.Equal(0, pretrained.ExitCode);
        Assert.StartsWith("warning: warmup_iters (10) is not under max_iters (2): ", pretrained.Stderr);
        Assert.Single(pretrained.Stderr.Trim().Split('\n'));
        int StoredBlockSize(string run) => (int)JsonNode.Parse(File.ReadAllText(Path.Combine(run, "checkpoints", "last", "train_config.json")))!["block_size"]!;
        string[] FineTune(string output, params string[] extra) =>
            ["train", "--init-from", temp["base"], "--data", data, "--out", output, "--max-iters", "2", "--batch-size", "2", "--eval-iters", "1", .. extra];

        // As the README's tour has it: no config file, no --block-size; the base's context is 32,
        // under the default 1024, which was refused.
        var tuned = Cli.Run(FineTune(temp["ft"]));
        Assert.True(tuned.ExitCode == 0, tuned.Stderr);
        // A fine-tune has no warm-up unless given one.
        Assert.Equal("", tuned.Stderr);
        Assert.Contains("block_size 32 tokens", tuned.Stdout);
        Assert.Equal(32, StoredBlockSize(temp["ft"]));
        var resumed = Cli.Run("train", "--resume", temp["ft"], "--max-iters", "3");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains("training from step 2 to 3 on windows of block_size 32 tokens", resumed.Stdout);
        Assert.Equal(32, StoredBlockSize(temp["ft"]));

        var shorter = Cli.Run(FineTune(temp["short"], "--block-size", "8"));
        Assert.True(shorter.ExitCode == 0, shorter.Stderr);
        Assert.Equal(8, StoredBlockSize(temp["short"]));
        var (code, _, stderr) = Cli.Run(FineTune(temp["long"], "--block-size", "64"));
        Assert.Equal(2, code);
        Assert.Equal("error: block_size 64 is over the model's maximum context of 32; lower --block-size", stderr.Trim());
        // A key equal to the base model's (32 wide, 2 heads) was checked against nanoGPT's default
        // 12 heads before the base model was opened, and refused as not divisible.
        var same = Cli.Run(FineTune(temp["same"], "--n-embd", "32"));
        Assert.True(same.ExitCode == 0, same.Stderr);
        // A shape of its own was ignored: the run trained the base model and recorded the other.
        (code, _, stderr) = Cli.Run(FineTune(temp["deeper"], "--n-layer", "3"));
        Assert.Equal(2, code);
        Assert.Equal("error: --n-layer: n_layer 3 differs from the --init-from model's 1; a fine-tune keeps the shape of the model it starts from (only block_size and dropout may change): leave n_layer out", stderr.Trim());
        Assert.False(Directory.Exists(temp["deeper"]));
    }

    [Fact]
    public void Fine_tuning_reads_a_config_given_through_process_substitution()
    {
        // `--config <(...)` is a pipe: --init-from read it twice, and the second read found it
        // empty ("not valid JSON").
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var pretrained = Cli.Run("train", "--config", config, "--data", data, "--out", temp["base"], "--max-iters", "2");
        Assert.True(pretrained.ExitCode == 0, pretrained.Stderr);
        var info = Cli.StartInfo();
        info.FileName = "bash";
        info.ArgumentList.Clear();
        foreach (var arg in new[] { "-c", """exec dotnet "$1" train --init-from "$2" --data "$3" --out "$4" --config <(printf '{"max_iters": 2, "batch_size": 2, "eval_iters": 1}')""", "bash", Cli.Dll, temp["base"], data, temp["ft"] })
            info.ArgumentList.Add(arg);
        var (code, stdout, stderr) = Cli.Run(info);
        Assert.True(code == 0, stderr);
        Assert.Contains("training from step 0 to 2", stdout);
    }

    [Fact]
    public void Import_warns_in_one_line_of_a_chat_template_Stratus_cannot_render_and_keeps_the_model()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("train", "--config", config, "--data", data, "--out", temp["base"], "--max-iters", "2").ExitCode);
        Assert.Equal(0, Cli.Run("export", "hf", "--model", temp["base"], "--out", temp["hf"]).ExitCode);
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(temp["hf"], "tokenizer_config.json")))!;
        tokenizerConfig["chat_template"] = "{% for m in messages %}{% include 'turn.jinja' %}{% endfor %}";
        File.WriteAllText(Path.Combine(temp["hf"], "tokenizer_config.json"), tokenizerConfig.ToJsonString());
        var hfConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(temp["hf"], "config.json")))!;
        hfConfig["eos_token_id"] = new JsonArray(3, 5);
        File.WriteAllText(Path.Combine(temp["hf"], "config.json"), hfConfig.ToJsonString());
        var imported = Cli.Run("import", "hf", temp["hf"], "--out", temp["m"]);
        Assert.True(imported.ExitCode == 0, imported.Stderr);
        Assert.Contains("; generation ends at token 3, 5", imported.Stdout); // the summary says where replies end
        var template = Path.Combine(temp["m"], "checkpoints", "best", "chat_template.jinja");
        Assert.StartsWith($"warning: {template}: the chat template cannot be used: the tag {{% include %}} is not supported; serve will refuse this model's chats (completions work)", imported.Stderr);
        Assert.Single(imported.Stderr.Trim().Split('\n'));
        // Fine-tuning on chats in it is refused in one line naming the file.
        File.WriteAllText(temp["chat.jsonl"], """{"messages": [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "cd"}]}""" + "\n");
        var prepared = Cli.Run("prepare", "--input", temp["chat.jsonl"], "--format", "chat", "--tokenizer-from", temp["m"], "--out", temp["sft"]);
        Assert.Equal(2, prepared.ExitCode);
        Assert.Contains($"{template}: the chat template cannot be used: the tag {{% include %}} is not supported", prepared.Stderr);
        Assert.Single(prepared.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void A_gguf_export_imports_as_a_model_that_samples_as_the_original_does()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("train", "--config", config, "--data", data, "--out", temp["base"], "--max-iters", "2", "--architecture", "llama", "--dropout", "0").ExitCode);
        Assert.Equal(0, Cli.Run("export", "gguf", "--model", temp["base"], "--out", temp["m.gguf"], "--type", "f32").ExitCode);
        var imported = Cli.Run("import", "gguf", temp["m.gguf"], "--out", temp["m"]);
        Assert.True(imported.ExitCode == 0, imported.Stderr);
        Assert.StartsWith("imported GGUF llama (f32) as llama: 1 layers, 2 heads (2 kv), 32 wide", imported.Stdout);
        Assert.Contains($"model: {Path.Combine(temp["m"], "checkpoints", "best")}", imported.Stdout);
        // The character vocabulary came back with the same ids, and the weights as they were.
        string[] sample = ["sample", "--prompt", "abc hij", "--max-tokens", "40", "--seed", "7"];
        var original = Cli.Run([.. sample, "--model", temp["base"]]);
        var again = Cli.Run([.. sample, "--model", temp["m"]]);
        Assert.True(original.ExitCode == 0 && again.ExitCode == 0, original.Stderr + again.Stderr);
        Assert.Contains("abc hij", original.Stdout);
        Assert.Equal(original.Stdout, again.Stdout);

        // Not a GGUF file, and a folder: one line, exit 2.
        var text = Cli.Run("import", "gguf", temp["corpus.txt"], "--out", temp["x"]);
        Assert.Equal((2, $"error: {temp["corpus.txt"]} is not a valid GGUF file: no GGUF magic at the start\n"), (text.ExitCode, text.Stderr));
        var folder = Cli.Run("import", "gguf", temp["base"], "--out", temp["x"]);
        Assert.Equal((2, $"error: {temp["base"]} is a folder; pass a .gguf file (a Hugging Face model folder is `import hf`'s)\n"), (folder.ExitCode, folder.Stderr));
        // Into a folder that holds a model already.
        var twice = Cli.Run("import", "gguf", temp["m.gguf"], "--out", temp["m"]);
        Assert.Equal((2, $"error: {temp["m"]} already holds a model in {Path.Combine(temp["m"], "checkpoints")}; choose another --out or remove {temp["m"]} first\n"), (twice.ExitCode, twice.Stderr));
    }

    [Fact]
    public void Eval_scores_every_token_of_the_val_split_once_and_says_how_many()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "2").ExitCode);
        var valTokens = (long)JsonNode.Parse(File.ReadAllText(Path.Combine(data, "meta.json")))!["val_tokens"]!;
        Assert.NotEqual(0, (valTokens - 1) % 32); // a tail shorter than a window of 32
        var eval = Cli.Run("eval", "--model", temp["run"], "--data", data, "--json", temp["eval.json"], "--batch-size", "1");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        var (targets, windows) = (valTokens - 1, (valTokens - 1 + 31) / 32);
        // In a log (output redirected), a line at each tenth of the batches and one at the end.
        var progress = eval.Stdout.Split('\n').Where(l => l.StartsWith("val: batches of 1 windows of 32 tokens: ", StringComparison.Ordinal)).ToList();
        Assert.Equal(10, progress.Count);
        Assert.Matches($@": 100% \({windows:N0} of {windows:N0}, [\d.,]+/s, [\d.]+ s\)$", progress[^1]);
        Assert.All(progress.SkipLast(1), l => Assert.EndsWith(" left)", l));
        Assert.Contains($"over all {targets:N0} predicted tokens ({windows:N0} windows of 32 tokens)", eval.Stdout);
        var report = JsonNode.Parse(File.ReadAllText(temp["eval.json"]))!;
        Assert.Equal((targets, windows), ((long)report["tokens"]!, (long)report["windows"]!));

        // Of data with no val split, the train split is measured; it was refused for its empty val.bin.
        Assert.Equal(0, Cli.Run("prepare", "--input", temp["corpus.txt"], "--out", temp["noval"], "--val-fraction", "0").ExitCode);
        var train = Cli.Run("eval", "--model", temp["run"], "--data", temp["noval"], "--split", "train");
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains($"over all {new FileInfo(temp["corpus.txt"]).Length - 1:N0} predicted tokens", train.Stdout);
        var noVal = Cli.Run("eval", "--model", temp["run"], "--data", temp["noval"]);
        Assert.Equal((2, $"error: {Path.Combine(temp["noval"], "val.bin")} is empty; prepare the data again with a --val-fraction above 0, e.g. 0.1\n"), (noVal.ExitCode, noVal.Stderr));
    }

    [Fact]
    public void In_a_log_prepare_shows_every_phase_by_tenths_with_rate_and_time_left()
    {
        using var temp = new TempDirectory();
        // Over 3 MiB: the corpus is read in 1 MiB pieces, so each pass reports several times.
        File.WriteAllText(temp["corpus.txt"], string.Concat(Enumerable.Repeat(Cli.TinyCorpus(), 1200)));
        var (code, stdout, stderr) = Cli.Run("prepare", "--input", temp["corpus.txt"], "--out", temp["data"]);
        Assert.True(code == 0, stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // Each pass over the corpus ends with its line at 100% and its time; Spectre's own
        // fallback printed the first phase's 25% and nothing more.
        foreach (var phase in new[] { "hashing", "reading characters", "tokenizing" })
            Assert.Single(lines, l => l.StartsWith(phase, StringComparison.Ordinal) && System.Text.RegularExpressions.Regex.IsMatch(l, @": 100% \(3\.6 of 3\.6 MB, [\d.,]+ MB/s, [\d.]+ s\)$"));
        var tokenizing = lines.Where(l => l.StartsWith("tokenizing (", StringComparison.Ordinal)).ToList();
        Assert.InRange(tokenizing.Count, 3, 10);
        Assert.All(tokenizing.SkipLast(1), l => Assert.Matches(@"tokens\): [1-9]\d% \([\d.]+ of 3\.6 MB, [\d.,]+ MB/s, \d\d:\d\d:\d\d left\)$", l));
        Assert.StartsWith("prepared ", lines[^1]);
        // Rates count each phase from its start, not from its first report (which came a 1 MiB
        // piece in and read over a million MB/s): no pass reads text at 100 GB/s.
        var rates = lines.Select(l => System.Text.RegularExpressions.Regex.Match(l, @"([\d.,]+) ([KMG]?)B/s")).Where(m => m.Success).ToList();
        Assert.NotEmpty(rates);
        Assert.All(rates, m => Assert.InRange(double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * Math.Pow(1000, "KMG".IndexOf(m.Groups[2].Value) + 1) / 1e6, 0.01, 100_000));

        // A small corpus's sizes in a unit that fits: they read "0.0 of 0.0 MB".
        foreach (var (size, shown) in new[] { (3000, @"3\.0 of 3\.0 KB"), (600, "600 of 600 B") })
        {
            File.WriteAllText(temp["small.txt"], Cli.TinyCorpus()[..size]);
            (code, stdout, stderr) = Cli.Run("prepare", "--input", temp["small.txt"], "--out", temp[$"small{size}"]);
            Assert.True(code == 0, stderr);
            Assert.Matches($@"(?m)^hashing: 100% \({shown}, [\d.,]+ [KMG]?B/s, [\d.]+ s\)$", stdout);
        }
    }

    [Fact]
    public void Sampling_with_one_seed_prints_the_same_text_another_seed_other_text_and_long_prompts_are_refused()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var training = Cli.Run("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "20");
        Assert.Equal(0, training.ExitCode);
        Assert.Contains($"image: {Path.Combine(temp["run"], "loss.svg")}", training.Stdout); // after the loss curves
        var plot = Cli.Run("plot", temp["run"]);
        Assert.Contains("val loss", plot.Stdout);
        Assert.Matches(@"0 +step +20\n", plot.Stdout); // the step axis
        var finished = Cli.Run("train", "--resume", temp["run"]);
        Assert.Equal((2, "", $"error: max_iters is 20 and the checkpoint of {temp["run"]} is at step 20: nothing to train; resume with --max-iters above 20 to train on\n"), finished);
        var compared = Cli.Run("plot", temp["run"], temp["run"]); // several runs: each one's val loss, by folder name
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(compared.Stdout, @"^run \d\.\d{4} ± \d\.\d{4} at step 20 ", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        var first = Cli.Run("sample", "--model", temp["run"], "--prompt", "abc", "--max-tokens", "40", "--seed", "9", "--temperature", "1.0");
        var second = Cli.Run("sample", "--model", temp["run"], "--prompt", "abc", "--max-tokens", "40", "--seed", "9", "--temperature", "1.0");
        Assert.Equal(0, first.ExitCode);
        Assert.Equal(first.Stdout, second.Stdout);
        Assert.StartsWith("abc", first.Stdout);
        var otherSeed = Cli.Run("sample", "--model", temp["run"], "--prompt", "abc", "--max-tokens", "40", "--seed", "10", "--temperature", "1.0");
        Assert.NotEqual(first.Stdout, otherSeed.Stdout);
        // min-p 1 keeps only the most likely token: greedy, whatever the seed and temperature.
        var greedy = Cli.Run("sample", "--model", temp["run"], "--prompt", "abc", "--max-tokens", "40", "--temperature", "0");
        Assert.Equal(greedy.Stdout, Cli.Run("sample", "--model", temp["run"], "--prompt", "abc", "--max-tokens", "40", "--seed", "9", "--temperature", "1.0", "--min-p", "1").Stdout);
        var tooLong = Cli.Run("sample", "--model", temp["run"], "--prompt", new string('a', 40));
        Assert.Equal(2, tooLong.ExitCode);
        Assert.Contains("context of 32", tooLong.Stderr);
    }

    /// <summary>The demo's samples are those `stratus sample` prints for its seed and settings
    /// (2 samples of 300 tokens from "\n", temperature 0.8, top-k 200, seed 1337), through the
    /// same --decode-weights and its one default. (At this size the fp32 kernel and libtorch's
    /// matmul happen to pick the same tokens, so the samples alone cannot show which the demo used.)</summary>
    [Fact]
    public void The_demo_prints_the_samples_stratus_sample_prints_for_its_seed_and_decode_weights()
    {
        using var temp = new TempDirectory();
        // 900 val tokens: enough for windows of 320, so all 300 tokens decode within the context.
        File.WriteAllText(temp["corpus.txt"], string.Concat(Enumerable.Repeat(Cli.TinyCorpus(), 3)));
        string DemoSamples(string run, params string[] extra)
        {
            var (code, stdout, stderr) = Cli.Run(["demo", "--corpus", temp["corpus.txt"], "--out", run, "--no-serve", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
                "--block-size", "320", "--batch-size", "4", "--max-iters", "30", "--learning-rate", "0.01", "--warmup-iters", "0", "--lr-decay-iters", "30", "--eval-iters", "1", .. extra]);
            Assert.True(code == 0, stderr);
            var start = stdout.IndexOf(":\n\n", stdout.IndexOf("\nsamples from ", StringComparison.Ordinal), StringComparison.Ordinal) + 3;
            return stdout[start..stdout.IndexOf("\nmore: ", start, StringComparison.Ordinal)];
        }
        string Sampled(string run, params string[] extra)
        {
            var (code, stdout, stderr) = Cli.Run(["sample", "--model", run, "--prompt", "\n", "--max-tokens", "300", "--seed", "1337", "--num-samples", "2", .. extra]);
            Assert.True(code == 0, stderr);
            return stdout;
        }
        var demo = DemoSamples(temp["demo"]);
        Assert.Equal(Sampled(temp["demo"]), demo);
        var bf16 = DemoSamples(temp["demo-bf16"], "--decode-weights", "bf16");
        Assert.Equal(Sampled(temp["demo-bf16"], "--decode-weights", "bf16"), bf16);
        // One default for every verb that decodes: the engine's.
        string DecodeWeightsHelp(string verb) => System.Text.RegularExpressions.Regex.Replace(
            Cli.Run(verb, "--help").Stdout.Split('\n').Single(l => l.TrimStart().StartsWith("--decode-weights", StringComparison.Ordinal)), @"\s+", " ").Trim();
        Assert.EndsWith("[default: fp32]", DecodeWeightsHelp("sample"));
        Assert.Equal(DecodeWeightsHelp("sample"), DecodeWeightsHelp("demo"));
        Assert.Equal(DecodeWeightsHelp("sample"), DecodeWeightsHelp("serve"));
    }

    [Fact]
    public void Device_cpu_changes_nothing_and_a_gpu_asked_of_this_cpu_build_gets_one_line_saying_how_to_build_for_one()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var trained = Cli.Run("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "2");
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        Assert.Contains(", float32 on cpu\n", trained.Stdout);
        string[] sample = ["sample", "--model", temp["run"], "--prompt", "abc", "--max-tokens", "30", "--seed", "3"];
        string[] eval = ["eval", "--model", temp["run"], "--data", data];
        var sampled = Cli.Run(sample);
        Assert.True(sampled.ExitCode == 0, sampled.Stderr);
        Assert.Equal(sampled.Stdout, Cli.Run([.. sample, "--device", "cpu"]).Stdout);
        Assert.Equal(0, Cli.Run([.. eval, "--json", temp["eval.json"]]).ExitCode);
        Assert.Equal(0, Cli.Run([.. eval, "--json", temp["eval-cpu.json"], "--device", "cpu"]).ExitCode);
        Assert.Equal((double)JsonNode.Parse(File.ReadAllText(temp["eval.json"]))!["loss"]!, (double)JsonNode.Parse(File.ReadAllText(temp["eval-cpu.json"]))!["loss"]!);

        void Refused(string[] args, string expected)
        {
            var (code, _, stderr) = Cli.Run(args);
            Assert.True(code == 2, $"{string.Join(' ', args)} exited {code}: {stderr}");
            Assert.StartsWith(expected, stderr);
            Assert.Single(stderr.Trim().Split('\n'));
        }
        const string NoCuda = "this Stratus is built with the CPU-only libtorch; build it with -p:StratusTorchBackend=cuda for NVIDIA GPUs (README, Building), or use --device cpu";
        Refused([.. sample, "--device", "cuda"], $"error: device cuda: {NoCuda}");
        Refused([.. eval, "--device", "cuda:0"], $"error: device cuda:0: {NoCuda}");
        Refused(["serve", "--model", temp["run"], "--port", "0", "--device", "cuda"], $"error: device cuda: {NoCuda}");
        Refused(["train", "--config", config, "--data", data, "--out", temp["gpu"], "--device", "cuda"], $"error: device cuda: {NoCuda}");
        Assert.False(Directory.Exists(temp["gpu"]));
        // Where a run trains is no part of what resuming keeps: refused for the build, not as a change.
        Refused(["train", "--resume", temp["run"], "--max-iters", "4", "--device", "cuda:1"], $"error: device cuda:1: {NoCuda}");
        Refused([.. sample, "--device", "gpu"], "error: device must be cpu, cuda or cuda:N (an NVIDIA GPU by its index), got 'gpu'");
        Refused(["train", "--config", config, "--data", data, "--out", temp["gpu"], "--device", "mps"], "error: device must be cpu, cuda or cuda:N (an NVIDIA GPU by its index), got 'mps'");
        Refused([.. sample, "--device", "cuda", "--decode-weights", "bf16"],
            "error: --decode-weights bf16 picks Stratus's CPU decode kernel; on --device cuda every step runs through libtorch: leave --decode-weights out");
    }

    /// <summary>--shutdown-grace-period 0: a stopping server ends the requests still running at
    /// once, as a 503 server_shutting_down (a stream: an error event, then [DONE]), instead of
    /// letting them go on for the default 25 s.</summary>
    [Fact]
    public async Task Serve_with_a_shutdown_grace_period_of_0_ends_a_running_stream_at_once_when_stopped()
    {
        await ServeAsync(shutdownGracePeriod: 0, async (server, limit) =>
        {
            var (http, events) = await StreamALongCompletionAsync(server, limit);
            using (http)
            {
                var stopping = Stopwatch.StartNew();
                Signal(server.Id, "TERM");
                var rest = await events.ReadToEndAsync(limit);
                var ended = stopping.Elapsed;
                AssertEndedByShutdown(rest);
                Assert.True(ended < TimeSpan.FromSeconds(10), $"the stream ended {ended.TotalSeconds:0.0} s after SIGTERM");
            }
            Assert.True(server.WaitForExit(TimeSpan.FromSeconds(20)), "the server did not stop");
            Assert.True(server.ExitCode == 0, await server.StandardError.ReadToEndAsync());
        });
    }

    /// <summary>Ctrl+C with requests running says the server waits for them and how to stop
    /// waiting; a second Ctrl+C ends them as the grace period's end would, and the server exits
    /// at once instead of looking hung for the rest of the grace period.</summary>
    [Fact]
    public async Task A_second_Ctrl_C_while_a_stopping_server_waits_for_a_running_stream_ends_it_at_once()
    {
        await ServeAsync(shutdownGracePeriod: 600, async (server, limit) =>
        {
            var (http, events) = await StreamALongCompletionAsync(server, limit);
            using (http)
            {
                Signal(server.Id, "INT");
                var said = LineStartingAsync(server.StandardError, "stopping: ", limit);
                Assert.True(await Task.WhenAny(said, Task.Delay(TimeSpan.FromSeconds(30), limit)) == said, "Ctrl+C said nothing of the running request in 30 s");
                Assert.Equal("stopping: waiting up to 600 s for 1 running request; Ctrl+C again to end it now", await said);
                Signal(server.Id, "INT");
                // Far below the 600 s grace: the second Ctrl+C, not the grace period, ended the stream.
                var rest = events.ReadToEndAsync(limit);
                Assert.True(await Task.WhenAny(rest, Task.Delay(TimeSpan.FromSeconds(60), limit)) == rest, "the stream still ran 60 s after the second Ctrl+C");
                AssertEndedByShutdown(await rest);
                Assert.True(server.WaitForExit(TimeSpan.FromSeconds(60)), "the server did not stop after the second Ctrl+C");
                Assert.True(server.ExitCode == 0, await server.StandardError.ReadToEndAsync());
            }
        });
    }

    /// <summary>Ctrl+C with no request running stops the server at once and says nothing more.</summary>
    [Fact]
    public async Task Ctrl_C_stops_an_idle_server_at_once_whatever_its_grace_period()
    {
        await ServeAsync(shutdownGracePeriod: 600, async (server, limit) =>
        {
            Assert.NotNull(await BaseUrlAsync(server, limit));
            Signal(server.Id, "INT");
            Assert.True(server.WaitForExit(TimeSpan.FromSeconds(20)), "the idle server did not stop");
            Assert.Equal(0, server.ExitCode);
            Assert.Equal("", await server.StandardError.ReadToEndAsync(limit));
        });
    }

    /// <summary>An address `serve` cannot listen on is one line and exit 2, as a supervisor reads a
    /// refused start: the socket's refusal was thrown as it was, a stack trace and SIGABRT (134).</summary>
    [Fact]
    public void Serve_on_an_address_the_machine_lacks_says_so_in_one_line_and_exits_2()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        Assert.Equal(0, Cli.Run("keys", "create", "--name", "app", "--data-dir", temp["home"]).ExitCode);
        // 192.0.2.1 is TEST-NET-1 (RFC 5737): no machine's own.
        var (code, _, stderr) = Cli.Run("serve", "--model", temp["model"], "--host", "192.0.2.1", "--port", "0", "--data-dir", temp["home"]);
        Assert.True(code == 2, $"exited {code}: {stderr}");
        Assert.StartsWith("error: cannot listen on 192.0.2.1:0: no network interface of this machine has that address", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    /// <summary>`serve` checks its data directory before it loads any model (a bad $STRATUS_HOME was
    /// reported after the load): one line naming the path and the fix, exit 2, and no "loading".
    /// The model does not exist here, so its error would come first otherwise.</summary>
    [Fact]
    public void Serve_checks_a_data_directory_it_cannot_make_before_loading_the_models()
    {
        if (!Directory.Exists("/proc/self")) return;
        using var temp = new TempDirectory();
        var info = Cli.StartInfo("serve", "--model", temp["no-model"], "--port", "0");
        info.Environment["STRATUS_HOME"] = "/proc/stratus-home";
        var (code, stdout, stderr) = Cli.Run(info);
        Assert.True(code == 2, $"exited {code}: {stderr}");
        Assert.Equal("error: cannot create the data directory /proc/stratus-home (Could not find file '/proc/stratus-home': its file system makes no folders there); " +
            "give --data-dir (or $STRATUS_HOME) a folder this user may create", stderr.Trim());
        Assert.Equal("", stdout);
    }

    /// <summary>Runs <paramref name="test"/> against a <see cref="StartServing"/> server, with two
    /// minutes for it all (a hang fails the test), and kills the server if the test left it running.</summary>
    static async Task ServeAsync(int shutdownGracePeriod, Func<Process, CancellationToken, Task> test)
    {
        using var temp = new TempDirectory();
        using var server = StartServing(temp, shutdownGracePeriod);
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        try
        {
            await test(server, limit.Token);
        }
        finally
        {
            if (!server.HasExited) server.Kill(entireProcessTree: true);
        }
    }

    /// <summary>`stratus serve` of a random 3 M-parameter model: 4,000 tokens take seconds, far
    /// longer than a test takes from the first token to its signals (a larger model's weights only
    /// take longer to write and load: 25 M took 6 s in all).</summary>
    static Process StartServing(TempDirectory temp, int shutdownGracePeriod)
    {
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 4096, NLayer = 4, NHead = 4, NEmbd = 256, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        return Process.Start(Cli.WithCtrlC(Cli.StartInfo("serve", "--model", $"m={temp["model"]}", "--port", "0", "--insecure-no-auth", "--data-dir", temp["home"],
            "--shutdown-grace-period", shutdownGracePeriod.ToString(System.Globalization.CultureInfo.InvariantCulture))))!;
    }

    /// <summary>The server's OpenAI base URL once it serves (its stdout is drained from then on), or null when it ended first.</summary>
    static async Task<string?> BaseUrlAsync(Process server, CancellationToken limit)
    {
        if (await LineStartingAsync(server.StandardOutput, "OpenAI base URL: ", limit) is not { } line) return null;
        _ = server.StandardOutput.ReadToEndAsync(); // keep the pipe drained
        return line["OpenAI base URL: ".Length..].Split(' ')[0];
    }

    /// <summary>The next line of <paramref name="reader"/> that starts with <paramref name="prefix"/>; null at its end.</summary>
    static async Task<string?> LineStartingAsync(StreamReader reader, string prefix, CancellationToken limit)
    {
        string? line;
        while ((line = await reader.ReadLineAsync(limit)) is not null && !line.StartsWith(prefix, StringComparison.Ordinal)) { }
        return line;
    }

    /// <summary>Starts a 4000-token stream on <paramref name="server"/> and returns once a token
    /// has come, with the rest of its events to read (disposing the client ends it).</summary>
    static async Task<(HttpClient Http, StreamReader Events)> StreamALongCompletionAsync(Process server, CancellationToken limit)
    {
        var baseUrl = await BaseUrlAsync(server, limit);
        if (baseUrl is null) Assert.Fail(await server.StandardError.ReadToEndAsync(limit));
        var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, $"{baseUrl}/completions")
        {
            Content = new StringContent("""{"model": "m", "prompt": "ab", "max_tokens": 4000, "stream": true}""", Encoding.UTF8, "application/json"),
        };
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, limit);
        if (!response.IsSuccessStatusCode) Assert.Fail(await response.Content.ReadAsStringAsync(limit));
        var events = new StreamReader(await response.Content.ReadAsStreamAsync(limit));
        string? line;
        while ((line = await events.ReadLineAsync(limit)) is not null && !line.Contains("\"text\":", StringComparison.Ordinal)) { }
        Assert.NotNull(line); // the request is generating: a token has come
        return (http, events);
    }

    /// <summary>The rest of a stream a stopping server ended: OpenAI's error as an event, then [DONE].</summary>
    static void AssertEndedByShutdown(string rest)
    {
        Assert.Contains("\"code\":\"server_shutting_down\"", rest);
        Assert.EndsWith("data: [DONE]", rest.TrimEnd());
    }

    /// <summary>A model of a long context (an imported Llama 3 has 131,072 positions) sampled for
    /// a few tokens: the KV cache holds those tokens, not the whole context. This one's context
    /// would take 16 GiB of keys and values, over the 12 GB the process may map.</summary>
    [Fact]
    public void Sampling_a_few_tokens_of_a_long_context_model_takes_KV_memory_for_them_alone()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        // RoPE: nothing of the model's own grows with its context. 2 (keys, values) x 2 layers x
        // 4 heads x 256 x 4 bytes = 16 KiB per position.
        var config = new Models.ModelConfig { Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 1 << 20, NLayer = 2, NHead = 4, NKvHead = 4, NEmbd = 1024, IntermediateSize = 64, Bias = false };
        using (var model = new Models.Llama(config))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        var (code, stdout, stderr) = Cli.RunWithMemoryCap(12_000_000, "sample", "--model", temp["model"], "--prompt", "ab", "--max-tokens", "5", "--seed", "1");
        Assert.True(code == 0, $"exited {code}: {stderr}");
        Assert.StartsWith("ab", stdout);
    }

    /// <summary>`stratus sample --max-tokens <huge> | head -c 100`: once the reader of its output
    /// has gone, sample stops and exits as `yes` does in `yes | head` (141, nothing on stderr),
    /// rather than generating to --max-tokens for nobody (.NET's console ignores the broken pipe).
    /// Two billion tokens at this model's thousands a second would take days.</summary>
    [Fact]
    public async Task Sampling_stops_once_nobody_reads_its_output()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 16, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        using var process = Process.Start(Cli.StartInfo("sample", "--model", temp["model"], "--prompt", "ab", "--max-tokens", "2000000000", "--seed", "1"))!;
        var stderr = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.BaseStream;
        var buffer = new byte[100];
        for (var read = 0; read < buffer.Length;)
        {
            var n = await output.ReadAsync(buffer.AsMemory(read));
            if (n == 0) Assert.Fail($"sample ended before writing 100 bytes: {await stderr}");
            read += n;
        }
        // As head does once it has its bytes: the pipe's only reader closes it.
        output.Close();
        var stopped = process.WaitForExit(TimeSpan.FromSeconds(60));
        if (!stopped) process.Kill(entireProcessTree: true);
        Assert.True(stopped, "sample went on generating after its output's reader had gone");
        Assert.Equal((141, ""), (process.ExitCode, await stderr));
    }

    [Fact]
    public void Sampling_a_Hugging_Face_model_with_a_prompt_its_vocabulary_cannot_spell_is_one_error_line()
    {
        using var temp = new TempDirectory();
        // A byte-level tokenizer of a few characters and no unk_token: "é" has no spelling.
        var tokenizer = Tokenization.HfTokenizer.FromHuggingFace(Formats.HuggingFace.TokenizerJson(Tokenization.BpeVocabulary.FromCharacters(" abc")), null);
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 16, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        var (code, _, stderr) = Cli.Run("sample", "--model", temp["model"], "--prompt", "a café");
        Assert.Equal(2, code);
        Assert.Equal("error: the text has characters outside this model's vocabulary: 'f' (U+0066), 'é' (U+00E9)", stderr.TrimEnd());
    }
}
