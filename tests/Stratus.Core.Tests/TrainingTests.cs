using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Models;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Tests;

public sealed class TrainingTests
{
    /// <summary>A char dataset in <paramref name="temp"/> and a 5-step run on it (temp["run"]).</summary>
    static List<(long Step, double Loss)> TrainLosses(string run) =>
        MetricsLog.Read(run).Where(m => m["train_loss"] is not null)
            .Select(m => ((long)m["step"]!, (double)m["train_loss"]!)).ToList();

    /// <summary>Points of the training-loss curve in the run's loss.svg.</summary>
    static int StepsDrawn(string run) =>
        System.Xml.Linq.XDocument.Load(Path.Combine(run, LossCurves.SvgFile)).Descendants()
            .Single(e => (string?)e.Attribute("data-series") == "train loss").Attribute("points")!.Value.Split(' ').Length;

    [Fact]
    public void The_whole_split_loss_scores_every_target_token_once_with_a_full_window_of_context()
    {
        using var temp = new TempDirectory();
        var input = temp["corpus.txt"];
        File.WriteAllText(input, TestData.Corpus(lines: 40));
        var data = temp["data"];
        DatasetPreparer.Prepare(input, data, "char");
        using var sampler = new BatchSampler(data, batchSize: 5, blockSize: 16, seed: 0);
        torch.random.manual_seed(3);
        using var model = CausalLanguageModel.Create(TestData.TinyConfig.ToModelConfig(sampler.Tokenizer.VocabSize));
        var measured = SplitLoss.Measure(model, sampler, Split.Val);

        // Directly: target t (tokens 1 .. n-1) is predicted from the 16-token window that starts at
        // 16 floor((t - 1) / 16), or from the last 16 tokens before the split's end where that
        // window would run past it.
        using var shard = TokenShard.Open(Path.Combine(data, DatasetPreparer.ValShard));
        var tokens = new long[shard.Count];
        shard.Read(0, tokens);
        var targets = shard.Count - 1;
        Assert.NotEqual(0, targets % 16); // the split's tail is shorter than a window
        var windows = (targets + 15) / 16;
        Assert.NotEqual(0, windows % 5); // the last batch is a short one
        double sum = 0;
        using (torch.no_grad())
        {
            for (var w = 0L; w < windows; w++)
            {
                using var scope = torch.NewDisposeScope();
                var start = Math.Min(16 * w, shard.Count - 17);
                var logProbabilities = torch.nn.functional.log_softmax(model.Forward(torch.tensor(tokens[(int)start..(int)(start + 16)], [1, 16])), -1);
                for (var t = start + 1; t <= start + 16; t++)
                    if (Math.Min(16 * ((t - 1) / 16), shard.Count - 17) == start) sum -= logProbabilities[0, t - start - 1, tokens[t]].item<float>();
            }
        }
        // The targets the batches score, in order, are the split's tokens after the first, each once.
        var batched = new List<long>();
        for (var batch = 0L; batch < (windows + 4) / 5; batch++)
        {
            var (_, scored) = sampler.Tiled(Split.Val, batch, torch.CPU);
            batched.AddRange(scored.data<long>().ToArray().Where(t => t != -100));
        }
        Assert.Equal(tokens[1..], batched);
        Assert.Equal((windows, targets), (measured.Windows, measured.Tokens));
        Assert.Equal(sum / targets, measured.Loss, 1e-5);
    }

    [Fact]
    public void The_whole_split_loss_of_one_split_needs_nothing_of_the_other()
    {
        // eval --split train of data prepared with --val-fraction 0 was refused because val.bin
        // was empty, "(training evaluates on both splits)", and eval of the val split because
        // train.bin was shorter than a window.
        using var temp = new TempDirectory();
        File.WriteAllText(temp["corpus.txt"], TestData.Corpus(lines: 40));
        DatasetPreparer.Prepare(temp["corpus.txt"], temp["noval"], "char", valFraction: 0);
        using (var sampler = new BatchSampler(temp["noval"], batchSize: 4, blockSize: 16, seed: 0, only: Split.Train))
        {
            using var model = CausalLanguageModel.Create(TestData.TinyConfig.ToModelConfig(sampler.Tokenizer.VocabSize));
            Assert.Equal(new FileInfo(temp["corpus.txt"]).Length - 1, SplitLoss.Measure(model, sampler, Split.Train).Tokens);
        }
        Assert.Equal($"{Path.Combine(temp["noval"], DatasetPreparer.ValShard)} is empty; prepare the data again with a --val-fraction above 0, e.g. 0.1",
            Assert.Throws<StratusUserException>(() => new BatchSampler(temp["noval"], 4, 16, seed: 0, only: Split.Val)).Message);

        // Nearly all held out: 2 train tokens, too few for a window; the val split is measured.
        DatasetPreparer.Prepare(temp["corpus.txt"], temp["mostly-val"], "char", valFraction: 1 - 2.5 / new FileInfo(temp["corpus.txt"]).Length);
        using (new BatchSampler(temp["mostly-val"], 4, 16, seed: 0, only: Split.Val)) { }
        Assert.Contains("train.bin has 2 tokens, not more than block_size 16", Assert.Throws<StratusUserException>(() => new BatchSampler(temp["mostly-val"], 4, 16, seed: 0)).Message);
    }

    [Fact]
    public void An_empty_train_split_is_blamed_on_a_val_fraction_too_large()
    {
        // It was refused with the advice for an empty val split: "a --val-fraction above 0".
        using var temp = new TempDirectory();
        File.WriteAllText(temp["corpus.txt"], "a few words\n");
        DatasetPreparer.Prepare(temp["corpus.txt"], temp["data"], "char", valFraction: 0.95);
        Assert.Equal($"{Path.Combine(temp["data"], DatasetPreparer.TrainShard)} is empty: the --val-fraction it was prepared with left no tokens to train on; prepare the data again with a smaller --val-fraction, e.g. 0.1",
            Assert.Throws<StratusUserException>(() => new BatchSampler(temp["data"], 1, 2, seed: 0)).Message);
    }

    [Fact]
    public void A_val_split_shorter_than_a_window_is_blamed_on_the_val_fraction()
    {
        // A 20-conversation chat file holds out 2 (--val-fraction 0.1), fewer tokens than a
        // 1024-token window: the advice was "use more text", which grows both splits alike.
        using var temp = new TempDirectory();
        File.WriteAllText(temp["corpus.txt"], TestData.Corpus(lines: 40));
        DatasetPreparer.Prepare(temp["corpus.txt"], temp["data"], "char", valFraction: 0.01);
        var blockSize = (int)(new FileInfo(temp["corpus.txt"]).Length / 20);
        var message = Assert.Throws<StratusUserException>(() => new BatchSampler(temp["data"], 1, blockSize, seed: 0)).Message;
        Assert.StartsWith(Path.Combine(temp["data"], DatasetPreparer.ValShard), message);
        Assert.EndsWith($"not more than block_size {blockSize}; prepare the data again with a larger --val-fraction (or more text), or give a smaller --block-size", message);
    }

    [Fact]
    public void Training_lowers_the_loss_and_writes_metrics_and_checkpoints()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var run = temp["run"];
        using (var trainer = Trainer.Start(TestData.TinyConfig with { MaxIters = 40, LrDecayIters = 40 }, data, run)) trainer.Run();
        var metrics = MetricsLog.Read(run).ToList();
        var steps = metrics.Where(m => m["train_loss"] is not null).ToList();
        Assert.Equal(40, steps.Count);
        foreach (var key in new[] { "step", "train_loss", "lr", "tokens_per_sec", "mfu", "elapsed_s" }) Assert.NotNull(steps[0][key]);
        var evals = metrics.Where(m => m["val_loss"] is not null).Select(m => (double)m["val_loss"]!).ToList();
        Assert.Equal(5, evals.Count); // steps 0, 10, 20, 30, 40
        Assert.True(evals[^1] < evals[0] - 0.3, $"val loss should fall: {string.Join(", ", evals)}");
        Assert.True(Directory.Exists(Path.Combine(run, "checkpoints", "last")));
        Assert.True(Directory.Exists(Path.Combine(run, "checkpoints", "best")));
        Assert.Equal(40, StepsDrawn(run));
    }

    [Fact]
    public void Evaluation_reports_the_standard_error_of_its_val_batches()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        // Eval batch i is a function of (seed, step, i): one batch is the first of two.
        using var one = Trainer.Start(TestData.TinyConfig with { EvalIters = 1 }, data, temp["one"]);
        using var two = Trainer.Start(TestData.TinyConfig with { EvalIters = 2 }, data, temp["two"]);
        var (_, first, none) = one.Evaluate();
        var (_, mean, standardError) = two.Evaluate();
        Assert.True(double.IsNaN(none));
        // Two values: the sample sd is |a - b| / sqrt(2), so the standard error is |a - b| / 2 = |mean - a|.
        Assert.Equal(Math.Abs(mean - first), standardError, 1e-6);
        Assert.True(standardError > 0);
    }

    [Fact]
    public void Resume_reproduces_the_uninterrupted_losses_with_dropout()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var config = TestData.TinyConfig with { Model = TestData.TinyConfig.Model with { Dropout = 0.1 }, GradientAccumulationSteps = 2 };
        var full = temp["full"];
        using (var trainer = Trainer.Start(config, data, full)) trainer.Run();

        var split = temp["split"];
        using (var trainer = Trainer.Start(config with { MaxIters = 10 }, data, split)) trainer.Run();
        using (var trainer = Trainer.Resume(split, [new("max_iters", "20")])) trainer.Run();

        var expected = TrainLosses(full);
        var actual = TrainLosses(split);
        Assert.Equal(expected.Select(e => e.Step), actual.Select(a => a.Step));
        Assert.Equal(expected.Count, StepsDrawn(split)); // the image keeps the steps from before the resume
        for (var i = 0; i < expected.Count; i++) Assert.True(Math.Abs(expected[i].Loss - actual[i].Loss) <= 1e-6, $"step {expected[i].Step}: {expected[i].Loss} vs {actual[i].Loss}");
    }

    /// <summary>A stop asked for during a step of many micro-batches ends the run between two of
    /// them, not after the whole step (with a large gradient_accumulation_steps, hours): the step
    /// is abandoned, its gradients dropped, and the last checkpoint is the step's start, from
    /// which a resume trains as the uninterrupted run did.</summary>
    [Fact]
    public void A_stop_within_a_step_of_many_micro_batches_abandons_it_and_resumes_as_the_uninterrupted_run()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var config = TestData.TinyConfig with { Model = TestData.TinyConfig.Model with { Dropout = 0.1 }, GradientAccumulationSteps = 64, MaxIters = 4, LrDecayIters = 4, EvalInterval = 2 };
        using (var trainer = Trainer.Start(config, data, temp["full"])) trainer.Run();

        var split = temp["split"];
        using var stop = new CancellationTokenSource();
        var completed = new List<long>();
        using (var trainer = Trainer.Start(config, data, split))
        {
            // Asked for once step 2 has been evaluated, as its first micro-batch is about to run.
            trainer.Evaluated += report => { if (report.Step == 2) stop.Cancel(); };
            trainer.StepCompleted += report => completed.Add(report.Step);
            trainer.Run(stop.Token);
            Assert.True(trainer.StoppedEarly);
        }
        Assert.Equal([0L, 1L], completed);
        Assert.Equal(2, Checkpoint.Open(Checkpoint.Resolve(split, preferBest: false)).State!.Step);
        using (var trainer = Trainer.Resume(split)) trainer.Run();

        var expected = TrainLosses(temp["full"]);
        var actual = TrainLosses(split);
        Assert.Equal(expected.Select(e => e.Step), actual.Select(a => a.Step));
        for (var i = 0; i < expected.Count; i++) Assert.True(Math.Abs(expected[i].Loss - actual[i].Loss) <= 1e-6, $"step {expected[i].Step}: {expected[i].Loss} vs {actual[i].Loss}");
    }

    [Theory]
    [InlineData("gpt2", "float32")]
    [InlineData("llama", "bfloat16")]
    public void Deterministic_mode_is_each_runs_own_and_changes_no_loss_on_the_cpu(string architecture, string dtype)
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        // Dropout, accumulation, clipping, fused AdamW, evaluations and checkpoints all run under
        // it: libtorch throws on an op that has no deterministic kernel.
        var config = TestData.TinyConfig with
        {
            Model = TestData.TinyConfig.Model with { Architecture = architecture, NKvHead = 1, IntermediateSize = 32, Dropout = 0.1 },
            GradientAccumulationSteps = 2, Dtype = dtype, LoraRank = architecture == "llama" ? 2 : 0,
        };
        using (var trainer = Trainer.Start(config.With([new("deterministic", "true")]), data, temp["on"]))
        {
            Assert.True(Determinism.Enabled);
            // The libtorch TorchSharp calls acts on it: it fills fresh memory with NaN then, as
            // PyTorch's fill_uninitialized_memory.
            using (var fresh = torch.empty(64)) Assert.True(fresh.isnan().all().item<bool>());
            trainer.Run();
        }
        // The flag is the process's: a run in the same process sets it to its own value.
        using (var trainer = Trainer.Start(config, data, temp["off"]))
        {
            Assert.False(Determinism.Enabled);
            trainer.Run();
        }
        Assert.Equal(MetricsLog.Read(temp["off"]).Select(Losses), MetricsLog.Read(temp["on"]).Select(Losses));
        // Stored with the run, so its resumption is deterministic too.
        using (Trainer.Resume(temp["on"], [new("max_iters", "25")])) Assert.True(Determinism.Enabled);
        using (Trainer.Resume(temp["off"], [new("max_iters", "25")])) Assert.False(Determinism.Enabled);

        static (double?, double?) Losses(JsonObject metrics) => ((double?)metrics["train_loss"], (double?)metrics["val_loss"]);
    }

    [Fact]
    public void A_corrupted_checkpoint_file_is_refused_with_a_clear_message()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var weights = Path.Combine(run, "checkpoints", "last", Checkpoint.ModelFile);
        var bytes = File.ReadAllBytes(weights);
        bytes[^3] ^= 0x40;
        File.WriteAllBytes(weights, bytes);
        var error = Assert.Throws<StratusUserException>(() => Checkpoint.Open(Checkpoint.Resolve(run, preferBest: false)));
        Assert.Contains("corrupt", error.Message);
        Assert.Contains("model.safetensors", error.Message);
        Assert.Throws<StratusUserException>(() => Trainer.Resume(run));
    }

    [Fact]
    public void An_optimizer_state_of_another_type_shape_or_tensors_is_refused_naming_its_file_and_tensor()
    {
        // A moment of the right shape but stored as F64 was converted where it was copied, without
        // a word; a missing or misshapen one was refused as "optimizer state", naming no file.
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp, steps: 2);
        var last = Path.Combine(run, "checkpoints", "last");
        var path = Path.Combine(last, Checkpoint.OptimizerFile);
        var saved = SafeTensors.Load(path);
        const string Moment = "exp_avg.transformer.wte.weight";
        var fix = "the optimizer state does not match this model; restore the checkpoint, or start a new run from its weights with --init-from";

        void Resave(Dictionary<string, torch.Tensor> state)
        {
            SafeTensors.Save(path, state);
            var manifestPath = Path.Combine(last, Checkpoint.ManifestFile);
            var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
            manifest["files"]![Checkpoint.OptimizerFile] = FileHash.Sha256(path);
            File.WriteAllText(manifestPath, manifest.ToJsonString());
        }

        var shape = string.Join(", ", saved[Moment].shape);
        Resave(new Dictionary<string, torch.Tensor>(saved) { [Moment] = saved[Moment].to(torch.ScalarType.Float64) });
        Assert.Equal($"{path}: tensor '{Moment}' is F64, where F32 is needed; {fix}", Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "3")])).Message);
        Resave(new Dictionary<string, torch.Tensor>(saved) { [Moment] = saved[Moment][..1] });
        Assert.Equal($"{path}: tensor '{Moment}' has shape [1, {string.Join(", ", saved[Moment].shape.Skip(1))}], where [{shape}] is needed; {fix}",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "3")])).Message);
        Resave(saved.Where(kv => kv.Key != Moment).ToDictionary());
        Assert.Equal($"{path} has no tensor '{Moment}'; {fix}", Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "3")])).Message);
        Resave(saved);
        using (Trainer.Resume(run, [new("max_iters", "3")])) { }
        foreach (var tensor in saved.Values) tensor.Dispose();
    }

    [Fact]
    public void Resuming_refuses_overrides_that_reshape_the_model_and_takes_the_rest()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var error = Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("n-layer", "2"), new("n_embd", "32"), new("max_iters", "9")]));
        Assert.StartsWith("n_layer, n_embd cannot change when resuming", error.Message);
        Assert.Contains("--init-from", error.Message);
        using var resumed = Trainer.Resume(run, [new("max_iters", "9"), new("dropout", "0.1")]);
        Assert.Equal((9, 0.1), (resumed.Config.MaxIters, resumed.Config.Model.Dropout));
    }

    [Fact]
    public void A_checkpoint_from_before_the_device_key_resumes_on_the_cpu_and_the_device_is_no_part_of_what_resume_keeps()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        // train_config.json as Stratus wrote it before the key existed, and the manifest's hash of it.
        var last = Path.Combine(run, "checkpoints", "last");
        var configPath = Path.Combine(last, Checkpoint.TrainConfigFile);
        var stored = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        Assert.Equal("cpu", (string)stored["device"]!);
        stored.Remove("device");
        File.WriteAllText(configPath, stored.ToJsonString());
        var manifestPath = Path.Combine(last, Checkpoint.ManifestFile);
        var manifest = JsonNode.Parse(File.ReadAllText(manifestPath))!;
        manifest["files"]![Checkpoint.TrainConfigFile] = FileHash.Sha256(configPath);
        File.WriteAllText(manifestPath, manifest.ToJsonString());

        // A GPU is refused for being absent from this build, not as a change to the model.
        if (!torch.cuda.is_available())
            Assert.StartsWith("device cuda: this Stratus is built with the CPU-only libtorch",
                Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "6"), new("device", "cuda")])).Message);
        using (var resumed = Trainer.Resume(run, [new("max_iters", "6")]))
        {
            Assert.Equal("cpu", resumed.Config.Device);
            resumed.Run();
        }
        Assert.Equal(6, TrainLosses(run).Count);
    }

    [Fact]
    public void A_foreign_folder_is_not_taken_for_a_checkpoint()
    {
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["other"]);
        File.WriteAllText(Path.Combine(temp["other"], Checkpoint.ManifestFile), """{"format":"something-else","version":1,"files":{}}""");
        var error = Assert.Throws<StratusUserException>(() => Checkpoint.Open(temp["other"]));
        Assert.Contains("not a Stratus checkpoint", error.Message);
    }

    [Fact]
    public void Starting_over_an_existing_run_asks_for_resume()
    {
        using var temp = new TempDirectory();
        var (data, run) = TestData.TrainedRun(temp);
        var error = Assert.Throws<StratusUserException>(() => Trainer.Start(TestData.TinyConfig, data, run));
        Assert.Contains("--resume", error.Message);
        // A folder with only a best checkpoint (as `import` makes) holds a model too.
        Directory.Delete(Path.Combine(run, "checkpoints", "last"), recursive: true);
        Assert.Contains("already holds a model", Assert.Throws<StratusUserException>(() => Trainer.Start(TestData.TinyConfig, data, run)).Message);
    }

    [Fact]
    public void A_run_resumed_at_or_past_max_iters_is_refused_naming_the_step_and_the_fix()
    {
        // It used to end at once, as if it had trained: whoever resumes a run wants more steps.
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp, steps: 5);
        var expected = $"max_iters is 5 and the checkpoint of {run} is at step 5: nothing to train; resume with --max-iters above 5 to train on";
        foreach (var refuse in new Func<object>[] { () => Trainer.Resume(run), () => Trainer.CheckResume(run, [], null) })
        {
            var error = Assert.Throws<StratusUserException>(refuse);
            Assert.Equal(expected, error.Message);
            Assert.Equal("max_iters", error.Param);
        }
        Assert.Contains("max_iters is 3 and the checkpoint", Assert.Throws<StratusUserException>(() => Trainer.CheckResume(run, [new("max_iters", "3")], null)).Message);
        Assert.False(File.Exists(Path.Combine(run, ".lock")));
        Trainer.CheckResume(run, [new("max_iters", "6")], null);
    }

    [Fact]
    public void A_dataset_folder_is_refused_as_the_run_folder()
    {
        // The run's files (run.json, metrics.jsonl, checkpoints/) would land among the dataset's.
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var before = Directory.GetFileSystemEntries(data).Order().ToList();
        Assert.Equal($"{data} holds a dataset ({DatasetPreparer.MetaFile}, {DatasetPreparer.TrainShard}), and the run's files would be written among its own; pass a new folder for the run",
            Assert.Throws<StratusUserException>(() => Trainer.Start(TestData.TinyConfig, data, data)).Message);
        Assert.Equal(before, Directory.GetFileSystemEntries(data).Order().ToList());
    }

    [Fact]
    public void A_dataset_and_a_run_taken_for_each_other_are_named_for_what_they_are()
    {
        // --resume of a dataset folder suggested `train --out` of that folder, which is refused;
        // --data of a run folder said only that its train.bin was missing, --init-from of a
        // dataset that it had no checkpoints/last.
        using var temp = new TempDirectory();
        var (data, run) = TestData.TrainedRun(temp, steps: 2);
        Assert.Equal($"{data} holds a dataset ({DatasetPreparer.MetaFile}, {DatasetPreparer.TrainShard}), not a run; resume the folder that `stratus train --out` wrote",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(data)).Message);
        Assert.Equal($"{run} holds a training run (run.json, metrics.jsonl, checkpoints/), not a dataset; pass the folder that `stratus prepare --out` wrote",
            Assert.Throws<StratusUserException>(() => Trainer.Start(TestData.TinyConfig, run, temp["other"])).Message);
        Assert.Equal($"{run} holds a training run (run.json, metrics.jsonl, checkpoints/), not a dataset; pass the folder that `stratus prepare --out` wrote",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "3")], dataDirectory: run)).Message);
        // A dataset as the model of --init-from (and of sample, eval, serve, export).
        Assert.Equal($"{data} holds a dataset ({DatasetPreparer.MetaFile}, {DatasetPreparer.TrainShard}), not a model; pass a run folder made by `stratus train` or a checkpoint folder",
            Assert.Throws<StratusUserException>(() => Trainer.Start(TestData.TinyConfig, data, temp["other"], initFrom: data)).Message);
    }

    [Fact]
    public void Resuming_refuses_a_dataset_prepared_again_with_another_vocabulary_and_follows_a_moved_one()
    {
        using var temp = new TempDirectory();
        var (data, run) = TestData.TrainedRun(temp);
        // The same text with upper and lower case swapped: as many characters, other ids.
        var swapped = new string(TestData.Corpus(20).Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)).ToArray());
        File.WriteAllText(temp["swapped.txt"], swapped);
        DatasetPreparer.Prepare(temp["swapped.txt"], temp["swapped"], "char");
        // The CLI's words: the command that prepares data in the model's tokenizer (the API names its 'data' field).
        var other = Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "6")], dataDirectory: temp["swapped"])).Message;
        Assert.Contains("differs from the model's in ", other);
        Assert.Contains("; prepare the data with `stratus prepare --tokenizer-from ", other);

        Directory.Move(data, temp["moved"]);
        Assert.Contains("pass its folder with --data", Assert.Throws<StratusUserException>(() => Trainer.Resume(run)).Message);
        using (var resumed = Trainer.Resume(run, [new("max_iters", "6")], dataDirectory: temp["moved"])) resumed.Run();
        using var again = Trainer.Resume(run, [new("max_iters", "7")]); // the run now names the new folder
        Assert.Equal(6, again.Step);
    }

    [Fact]
    public void Resuming_refuses_its_dataset_folder_prepared_again_from_other_text_in_the_same_vocabulary()
    {
        // The run went on training on the other text, and its val loss replaced checkpoints/best.
        using var temp = new TempDirectory();
        var (data, run) = TestData.TrainedRun(temp);
        var best = File.ReadAllText(Path.Combine(run, "checkpoints", "best", Checkpoint.StateFile));
        // The corpus's lines in reverse: the same characters and as many tokens, other text.
        File.WriteAllLines(temp["reversed.txt"], TestData.Corpus().Split('\n', StringSplitOptions.RemoveEmptyEntries).Reverse());
        DatasetPreparer.Prepare(temp["reversed.txt"], data, "char", overwrite: true);
        // The refusal names what differs: it printed both identities whole, two pairs of 64-digit
        // hashes in one 600-character line, for the reader to compare.
        Assert.Equal($"{data} holds other data than run {run} was trained on: source sha256 {FileHash.Sha256(temp["reversed.txt"])[..12]}… (the run's: {FileHash.Sha256(temp["corpus.txt"])[..12]}…); " +
            $"resume with the run's dataset (--data <folder>), or start a new run on this data from it with --init-from {run}",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "6")])).Message);
        Assert.Equal(best, File.ReadAllText(Path.Combine(run, "checkpoints", "best", Checkpoint.StateFile)));
        // Its own text split otherwise.
        var prepared = DatasetPreparer.Prepare(temp["corpus.txt"], temp["split"], "char", valFraction: 0.2);
        var trained = DatasetPreparer.Prepare(temp["corpus.txt"], temp["again"], "char");
        Assert.Contains($"was trained on: {prepared.TrainTokens} train and {prepared.ValTokens} val tokens (the run's: {trained.TrainTokens} train and {trained.ValTokens} val tokens); resume",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "6")], dataDirectory: temp["split"])).Message);

        // Prepared again from its own text, it is the same data, wherever it lies.
        using (var resumed = Trainer.Resume(run, [new("max_iters", "6")], dataDirectory: temp["again"])) resumed.Run();
    }

    [Fact]
    public void A_run_folder_in_training_is_refused_to_a_second_training_new_or_resumed_until_the_first_ends()
    {
        // Two trainings into one --out wrote their metrics and checkpoints over each other, and each ended "done".
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var run = temp["run"];
        var inUse = $"{run} is in use by another `stratus train`, which holds its .lock; wait for that training to end, or train into another --out";
        using (var first = Trainer.Start(TestData.TinyConfig with { MaxIters = 5 }, data, run))
        {
            Assert.Equal(inUse, Assert.Throws<StratusUserException>(() => Trainer.Start(TestData.TinyConfig with { Seed = 5 }, data, run)).Message);
            first.Run();
            Assert.Equal(inUse, Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "8")])).Message);
            // The refused ones wrote nothing there: one training's steps, each once.
            Assert.Equal(Enumerable.Range(0, 5).Select(step => (long)step), LossCurves.Read(run).Train.Select(point => point.Step));
        }
        // Its end (however it ends: the system releases the lock of a killed process) frees the folder.
        using (var resumed = Trainer.Resume(run, [new("max_iters", "8")])) resumed.Run();
        Assert.False(File.Exists(Path.Combine(run, ".lock")));
    }

    [Fact]
    public void A_run_begun_before_run_json_named_its_data_resumes_and_records_it()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var runFile = Path.Combine(run, Trainer.RunFile);
        var old = JsonNode.Parse(File.ReadAllText(runFile))!.AsObject();
        Assert.True(old.Remove("dataset"));
        File.WriteAllText(runFile, old.ToJsonString());
        using (var resumed = Trainer.Resume(run, [new("max_iters", "6")])) resumed.Run();
        // What the tokens are, and nothing of how this version writes a tokenizer (a resume checks
        // the tokenizer against the checkpoint's): a later version must still resume this run.
        var recorded = (string)JsonNode.Parse(File.ReadAllText(runFile))!["dataset"]!;
        Assert.Matches($"^[0-9]+ train and [0-9]+ val tokens of source {FileHash.Sha256(temp["corpus.txt"])}$", recorded);
        File.WriteAllLines(temp["reversed.txt"], TestData.Corpus().Split('\n', StringSplitOptions.RemoveEmptyEntries).Reverse());
        DatasetPreparer.Prepare(temp["reversed.txt"], temp["data"], "char", overwrite: true);
        Assert.Contains("holds other data than run", Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "7")])).Message);
    }

    [Fact]
    public void A_run_whose_loss_stops_being_a_number_ends_with_a_clear_error_and_its_checkpoints_intact()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var diverging = TestData.TinyConfig with { LearningRate = 1e30, MinLr = 0, GradClip = 0, MaxIters = 50, CheckpointInterval = 1 };
        using var trainer = Trainer.Start(diverging, data, temp["run"]);
        var error = Assert.Throws<StratusUserException>(() => trainer.Run());
        Assert.Contains("training diverged; lower --learning-rate", error.Message);
        // metrics.jsonl stays readable, and no checkpoint holds the diverged weights.
        Assert.NotEmpty(MetricsLog.Read(temp["run"]));
        foreach (var name in new[] { "best", "last" }.Where(n => Directory.Exists(Path.Combine(temp["run"], "checkpoints", n))))
        {
            using var model = Checkpoint.Open(Path.Combine(temp["run"], "checkpoints", name)).CreateModel();
            Assert.True(model.parameters().All(p => p.isfinite().all().item<bool>()), name);
        }
    }

    [Fact]
    public void A_run_that_diverges_before_its_first_checkpoint_is_told_to_start_again_not_to_resume()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var diverging = TestData.TinyConfig with { LearningRate = 1e30, MinLr = 0, GradClip = 0, MaxIters = 50, EvalInterval = 1000, CheckpointInterval = 0 };
        using var trainer = Trainer.Start(diverging, data, temp["run"]);
        var error = Assert.Throws<StratusUserException>(() => trainer.Run());
        Assert.False(Checkpoint.Exists(temp["run"]));
        // It said to resume from the last checkpoint, which --resume then said the run did not have.
        Assert.EndsWith("training diverged; lower --learning-rate or set --grad-clip, then start the run again: it has saved no checkpoint to resume from", error.Message);
    }

    /// <summary>A loss that is not a number before any training step is the model the run starts
    /// from (or its data), not a divergence: a lower learning rate would not help.</summary>
    [Fact]
    public void A_loss_that_is_not_a_number_before_any_step_blames_the_starting_model_not_divergence()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var config = TestData.TinyConfig with { MaxIters = 4 };
        var tokenizer = Tokenization.TokenizerStore.Load(data);
        using (var model = new Gpt(config.Model with { VocabSize = tokenizer.VocabSize }))
        {
            using (torch.no_grad()) model.parameters().First().fill_(double.NaN);
            Checkpoint.Save(temp["broken"], model, tokenizer);
        }
        using var trainer = Trainer.Start(config, data, temp["run"], Checkpoint.Open(temp["broken"]));
        var error = Assert.Throws<StratusUserException>(() => trainer.Run());
        Assert.StartsWith("the val loss is NaN at the evaluation of step 0, before any training step: the weights the run starts from or its data give a non-finite val loss, " +
            "which is no divergence", error.Message);
        Assert.DoesNotContain("diverged", error.Message);
    }

    [Fact]
    public void A_gradient_norm_that_stops_being_a_number_under_a_finite_loss_ends_the_run_with_a_clear_error_and_its_checkpoints_intact()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        // A learning rate of 1000 leaves weights that still give a finite loss at step 1, but
        // gradients that overflow: its norm is infinite, and AdamW's step makes the weights NaN.
        var diverging = TestData.TinyConfig with { LearningRate = 1e3, MinLr = 0, GradClip = 0, WarmupIters = 0, MaxIters = 50, CheckpointInterval = 1 };
        using var trainer = Trainer.Start(diverging, data, temp["run"]);
        var error = Assert.Throws<StratusUserException>(() => trainer.Run());
        // Named as metrics.jsonl counts and as the console does (it printed steps 1..n as "step k/50").
        var completed = MetricsLog.Read(temp["run"]).Count(entry => entry["train_loss"] is not null);
        Assert.Matches($@"^the gradient norm is \S+ in training step {completed + 1}/50 \(metrics.jsonl's step {completed}\): training diverged; lower --learning-rate", error.Message);
        Assert.All(MetricsLog.Read(temp["run"]), entry => Assert.DoesNotContain("Infinity", entry.ToJsonString()));
        using var model = Checkpoint.Open(Path.Combine(temp["run"], "checkpoints", "last")).CreateModel();
        Assert.True(model.parameters().All(p => p.isfinite().all().item<bool>()));
    }

    [Fact]
    public void A_damaged_run_file_or_manifest_is_refused_with_a_clear_message()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var runFile = Path.Combine(run, Trainer.RunFile);
        var saved = File.ReadAllText(runFile);
        File.WriteAllText(runFile, "{bad");
        Assert.Contains("run.json is not valid JSON", Assert.Throws<StratusUserException>(() => Trainer.Resume(run)).Message);
        File.WriteAllText(runFile, saved);
        var last = Path.Combine(run, "checkpoints", "last");
        var manifest = Path.Combine(last, Checkpoint.ManifestFile);
        var savedManifest = File.ReadAllText(manifest);

        // Edited files whose manifest was edited to match are still refused when they make no sense.
        void Vouch(string file, string content) => VouchFor(last, file, content);
        var trainConfig = File.ReadAllText(Path.Combine(last, Checkpoint.TrainConfigFile));
        Vouch(Checkpoint.TrainConfigFile, "[1, 2]");
        Assert.Contains("train_config.json is corrupt", Assert.Throws<StratusUserException>(() => Checkpoint.Open(last)).Message);
        Vouch(Checkpoint.TrainConfigFile, trainConfig);
        var tokenizer = File.ReadAllText(Path.Combine(last, "tokenizer.json"));
        Vouch("tokenizer.json", """{"type":"char","vocab":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?"}""");
        Assert.Contains("its tokenizer has 69 tokens but the model embeds", Assert.Throws<StratusUserException>(() => Checkpoint.Open(last)).Message);
        Vouch("tokenizer.json", tokenizer);
        Checkpoint.Open(last);

        // A manifest names files of its folder only: a path would be hashed (and read) from anywhere.
        var traversal = JsonNode.Parse(savedManifest)!;
        traversal["files"]!["../../run.json"] = "00";
        File.WriteAllText(manifest, traversal.ToJsonString());
        Assert.Contains("not a file name of the checkpoint", Assert.Throws<StratusUserException>(() => Checkpoint.Open(last)).Message);

        File.WriteAllText(manifest, """{"format":"stratus-checkpoint","version":1}""");
        Assert.Contains("lists no model.safetensors", Assert.Throws<StratusUserException>(() => Trainer.Resume(run)).Message);
    }

    /// <summary>Writes a checkpoint's file and its sha256 into the manifest: what anyone handing
    /// over a run folder can do, so what the manifest vouches for is no more trusted than the rest.</summary>
    static void VouchFor(string checkpoint, string file, string content)
    {
        File.WriteAllText(Path.Combine(checkpoint, file), content);
        var manifest = Path.Combine(checkpoint, Checkpoint.ManifestFile);
        var json = JsonNode.Parse(File.ReadAllText(manifest))!;
        json["files"]![file] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(checkpoint, file))));
        File.WriteAllText(manifest, json.ToJsonString());
    }

    [Fact]
    public void A_checkpoint_whose_files_make_no_model_or_run_is_refused_naming_the_file_before_a_model_is_built()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var last = Path.Combine(run, "checkpoints", "last");
        var best = Path.Combine(run, "checkpoints", "best");
        var modelFile = Path.Combine(last, Checkpoint.ModelConfigFile);
        var model = File.ReadAllText(modelFile);
        var vocabulary = Checkpoint.Open(last).ModelConfig.VocabSize;
        var fix = $"use {best} (to resume the run from it, move this one aside: `mv {last} {last}.damaged`), or train again";
        string Refusal() => Assert.Throws<StratusUserException>(() => Checkpoint.Open(last)).Message;
        string Built() => Assert.Throws<StratusUserException>(() => Checkpoint.Open(last).CreateModel().Dispose()).Message;
        JsonObject Edited(Action<JsonObject> edit)
        {
            var json = JsonNode.Parse(model)!.AsObject();
            edit(json);
            return json;
        }

        // A larger model than its weights was allocated and initialised by whatever built it
        // (sample, eval, serve, export, --resume) before its first weight was found missing: here
        // 65,536 wide, a first layer of 48 GiB; 1,024 layers 8,192 wide were 3 TB in 1 GiB pieces.
        VouchFor(last, Checkpoint.ModelConfigFile, Edited(m => m["n_embd"] = 65536).ToJsonString());
        var larger = $"checkpoint {last} is inconsistent: its {Checkpoint.ModelConfigFile} implies a weight 'transformer.wte.weight' of shape [{vocabulary}, 65536], " +
            $"but {Checkpoint.ModelFile} has it of shape [{vocabulary}, 16]; {fix}";
        Assert.Equal(larger, Built());
        Assert.Equal(larger, Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "6")])).Message);
        VouchFor(last, Checkpoint.ModelConfigFile, Edited(m => m["n_layer"] = 2).ToJsonString());
        Assert.Equal($"checkpoint {last} is inconsistent: its {Checkpoint.ModelConfigFile} implies a weight 'transformer.h.1.ln_1.weight' of shape [16], but {Checkpoint.ModelFile} has none; {fix}", Built());

        // Values no model has, named with the file: NaN (a model.json may spell "NaN") passed
        // "not positive" and made every output NaN.
        foreach (var (edit, problem) in new (Action<JsonObject>, string)[]
        {
            (m => m["lora"] = new JsonObject { ["rank"] = 2, ["alpha"] = "NaN", ["targets"] = new JsonArray("c_attn") }, "lora_alpha must be a positive number, got NaN"),
            (m => m["layer_norm_eps"] = "Infinity", "norm epsilons must be positive numbers"),
            (m => m["architecture"] = "bert", "unknown architecture 'bert'; supported: gpt2, llama"),
            (m => m["n_head"] = 0, "n_head must be positive"),
        })
        {
            VouchFor(last, Checkpoint.ModelConfigFile, Edited(edit).ToJsonString());
            Assert.Equal($"{modelFile} describes no model Stratus can build: {problem}", Refusal());
        }
        VouchFor(last, Checkpoint.ModelConfigFile, model);
        Checkpoint.Open(last);

        // A negative step ended `train --resume` in a stack trace; a NaN best loss is never beaten,
        // so the run would keep no best checkpoint again.
        var state = File.ReadAllText(Path.Combine(last, Checkpoint.StateFile));
        foreach (var (content, shown) in new[] { ("""{"step": -5, "best_val_loss": 1.5}""", "step -5 and best_val_loss 1.5"), ("""{"step": 5, "best_val_loss": "NaN"}""", "step 5 and best_val_loss NaN") })
        {
            VouchFor(last, Checkpoint.StateFile, content);
            Assert.Equal($"{Path.Combine(last, Checkpoint.StateFile)} is corrupt: {shown} are no run's; {fix}", Refusal());
        }
        VouchFor(last, Checkpoint.StateFile, state);

        // Half a surrogate pair in its JSON threw an InvalidOperationException where it was read.
        var trainConfig = File.ReadAllText(Path.Combine(last, Checkpoint.TrainConfigFile));
        VouchFor(last, Checkpoint.TrainConfigFile, trainConfig.Replace("\"float32\"", "\"\\ud800\""));
        Assert.StartsWith($"{Path.Combine(last, Checkpoint.TrainConfigFile)}: a string holds a \\u escape of an unpaired UTF-16 surrogate", Refusal());
        VouchFor(last, Checkpoint.TrainConfigFile, trainConfig);
        var manifest = Path.Combine(last, Checkpoint.ManifestFile);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"format\"", "\"form\\udc00\""));
        Assert.StartsWith($"{manifest}: a string holds a \\u escape of an unpaired UTF-16 surrogate", Refusal());
    }

    [Fact]
    public void A_damaged_last_checkpoint_names_how_to_resume_from_best()
    {
        // It said "use another checkpoint (e.g. checkpoints/best)", which --resume, taking a run
        // folder, could not be given.
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var last = Path.Combine(run, "checkpoints", "last");
        using (var weights = File.OpenWrite(Path.Combine(last, Checkpoint.ModelFile))) weights.Write([1, 2, 3]);
        Assert.Equal($"checkpoint {last} is corrupt: {Checkpoint.ModelFile} does not match its sha256 in {Checkpoint.ManifestFile}; " +
            $"use {Path.Combine(run, "checkpoints", "best")} (to resume the run from it, move this one aside: `mv {last} {last}.damaged`), or train again",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(run, [new("max_iters", "6")])).Message);
        // Named with the slash a shell's completion leaves, it was to be moved into itself: `mv last/ last/.damaged`.
        Assert.Contains($"`mv {last} {last}.damaged`", Assert.Throws<StratusUserException>(() => Checkpoint.Open(last + Path.DirectorySeparatorChar)).Message);
        Directory.Move(last, last + ".damaged");
        using (var resumed = Trainer.Resume(run, [new("max_iters", "6")])) resumed.Run();
        Assert.Equal(6, Checkpoint.Open(last).State!.Step);

        // A damaged best (what sample, eval and serve take of a run) points to last; a lone checkpoint has no other.
        File.Delete(Path.Combine(run, "checkpoints", "best", Checkpoint.StateFile));
        Assert.EndsWith($"{Checkpoint.StateFile} is missing; use {last}, or restore this one", Assert.Throws<StratusUserException>(() => Checkpoint.Open(Checkpoint.Resolve(run))).Message);
        Directory.Delete(last, recursive: true);
        Assert.EndsWith($"{Checkpoint.StateFile} is missing; restore the checkpoint or train again", Assert.Throws<StratusUserException>(() => Checkpoint.Open(Checkpoint.Resolve(run))).Message);
    }

    [Fact]
    public void Files_a_checkpoint_never_reads_do_not_stop_it_loading_but_an_unlisted_one_it_reads_does()
    {
        using var temp = new TempDirectory();
        var (_, run) = TestData.TrainedRun(temp);
        var last = Path.Combine(run, "checkpoints", "last");
        // What Finder, Windows Explorer, a copy from a Mac to a shared drive and an editor left there.
        foreach (var file in new[] { ".DS_Store", "Thumbs.db", "._model.safetensors", ".model.json.swp", "model.json~" })
            File.WriteAllText(Path.Combine(last, file), "x");
        Checkpoint.Open(last);
        using (var resumed = Trainer.Resume(run, [new("max_iters", "6")])) resumed.Run();

        // A file Stratus reads that the manifest does not vouch for is still refused.
        var manifest = Path.Combine(last, Checkpoint.ManifestFile);
        var json = JsonNode.Parse(File.ReadAllText(manifest))!;
        json["files"]!.AsObject().Remove(Checkpoint.StateFile);
        File.WriteAllText(manifest, json.ToJsonString());
        Assert.Equal($"checkpoint {last} holds {Checkpoint.StateFile}, which its {Checkpoint.ManifestFile} does not list: it was added after the checkpoint was saved; remove it, or use another checkpoint",
            Assert.Throws<StratusUserException>(() => Checkpoint.Open(last)).Message);
    }

    [Theory]
    [InlineData(0, 3e-3 * 1 / 3)]
    [InlineData(1, 3e-3 * 2 / 3)]
    [InlineData(2, 3e-3)]
    [InlineData(11, 3e-4 + 0.5 * (3e-3 - 3e-4))]
    [InlineData(20, 3e-4)]
    [InlineData(25, 3e-4)]
    public void Learning_rate_warms_up_linearly_then_decays_by_cosine(int step, double expected) =>
        Assert.Equal(expected, LearningRateSchedule.At(TestData.TinyConfig, step), 9);

    [Fact]
    public void A_warm_up_that_lasts_the_whole_run_is_named_with_its_fix()
    {
        var shortRun = TestData.TinyConfig with { MaxIters = 30, WarmupIters = 2000, LrDecayIters = 2000, LearningRate = 6e-4 };
        Assert.Equal("warmup_iters (2000) is not under max_iters (30): the learning rate rises for the whole run, to 1.5% of learning_rate 0.0006; pass --warmup-iters under 30 (0 for none)",
            LearningRateSchedule.WarmupOutlastingTheRun(shortRun));
        Assert.NotNull(LearningRateSchedule.WarmupOutlastingTheRun(shortRun with { WarmupIters = 30 }));
        // The last step reaches learning_rate; a run without a schedule has no warm-up.
        Assert.Null(LearningRateSchedule.WarmupOutlastingTheRun(shortRun with { WarmupIters = 29 }));
        Assert.Null(LearningRateSchedule.WarmupOutlastingTheRun(shortRun with { DecayLr = false }));
    }
}
