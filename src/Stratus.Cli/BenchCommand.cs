// `stratus bench <what>`: speed and memory measurements, printed as a table and written as JSON.
// `bench train` under mpirun measures data-parallel training: every rank trains, rank 0 reports
// the job's tokens/s, the share of a step spent in communication and, given a one-rank result,
// the scaling efficiency.
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Stratus.Distributed;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Cli;

static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Measure training, inference and serving speed, and content-safety checks.");
        command.Subcommands.Add(Train());
        command.Subcommands.Add(ServeBenchCommand.Create());
        command.Subcommands.Add(Infer());
        command.Subcommands.Add(BlocklistBenchCommand.Create());
        command.Subcommands.Add(SafetyBenchCommand.Create());
        return command;
    }

    static Command Infer()
    {
        var model = PathOptions.Option("--model", "run or checkpoint folder; or a random-weight shape: gpt2-124m, llama-100m", required: true);
        var json = OutputPaths.File("--json", "also write the results to this JSON file");
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "prompt length for prefill", DefaultValueFactory = _ => 128 };
        var decodeTokens = new Option<int>("--decode-tokens") { Description = "greedy tokens decoded one at a time", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads") { Description = "threads for every engine", DefaultValueFactory = _ => Math.Min(Environment.ProcessorCount, 2) };
        var repeats = new Option<int>("--repeats") { Description = "timed repetitions (best is reported) after one warm-up", DefaultValueFactory = _ => 3 };
        var command = new Command("infer", "Prefill and single-stream decode tokens/s: Stratus vs llama.cpp on the same weights.") { model, json, promptTokens, decodeTokens, threads, repeats };
        command.SetAction(result =>
        {
            var name = result.GetValue(model)!;
            CausalLanguageModel network;
            ITokenizer tokenizer;
            if (name is "gpt2-124m" or "llama-100m" && !Directory.Exists(name))
            {
                TorchSharp.torch.random.manual_seed(1337);
                network = CausalLanguageModel.Create(InferenceBenchmark.Shape(name));
                tokenizer = Gpt2Tokenizer.Instance;
            }
            else
            {
                var checkpoint = Checkpoint.Open(Checkpoint.Resolve(name));
                network = checkpoint.CreateModel();
                tokenizer = checkpoint.Tokenizer;
            }
            using (network)
            {
                var options = new InferenceBenchmarkOptions
                {
                    PromptTokens = result.GetValue(promptTokens), DecodeTokens = result.GetValue(decodeTokens), Threads = result.GetValue(threads), Repeats = result.GetValue(repeats),
                };
                var c = network.Config;
                Console.WriteLine($"{name}: {c.Architecture}, {network.ParameterCount(nonEmbedding: false) / 1e6:F1} M parameters, vocab {c.VocabSize:N0}; " +
                    $"prompt {options.PromptTokens} tokens, decode {options.DecodeTokens} tokens, {options.Threads} threads");
                var loadBefore = BenchOutput.LoadAverage();
                var measurements = InferenceBenchmark.Run(network, tokenizer, options, stage => Console.Error.WriteLine($"{stage} ..."));
                var loadAfter = BenchOutput.LoadAverage();
                BenchOutput.PrintLoad(loadBefore, loadAfter);
                var table = new Table().AddColumn("engine").AddColumn("weights").AddColumn(new TableColumn("prefill tok/s").RightAligned()).AddColumn(new TableColumn("decode tok/s").RightAligned());
                foreach (var m in measurements) table.AddRow(Markup.Escape(m.Engine), m.Precision, m.PrefillTokensPerSecond.ToString("N1"), m.DecodeTokensPerSecond.ToString("N1"));
                BenchOutput.Print(table);
                if (result.GetValue(json) is { } path)
                {
                    var report = new JsonObject
                    {
                        ["benchmark"] = "infer", ["model"] = name, ["architecture"] = c.Architecture, ["parameters"] = network.ParameterCount(nonEmbedding: false),
                        ["prompt_tokens"] = options.PromptTokens, ["decode_tokens"] = options.DecodeTokens, ["threads"] = options.Threads, ["repeats"] = options.Repeats,
                        ["cores"] = Environment.ProcessorCount, ["load_average_before"] = loadBefore, ["load_average_after"] = loadAfter,
                        ["results"] = new JsonArray(measurements.Select(m => (JsonNode)new JsonObject
                        {
                            ["engine"] = m.Engine, ["weights"] = m.Precision, ["prefill_tokens_per_sec"] = m.PrefillTokensPerSecond, ["decode_tokens_per_sec"] = m.DecodeTokensPerSecond,
                        }).ToArray()),
                    };
                    BenchOutput.WriteJson(path, report);
                }
            }
            return 0;
        });
        return command;
    }

    static Command Train()
    {
        var config = ReadyConfigs.Option("training config to measure", required: true);
        var data = PathOptions.Option("--data", "dataset folder made by `stratus prepare`", required: true);
        var steps = new Option<int>("--steps") { Description = "timed optimizer steps (after 3 warm-up steps)", DefaultValueFactory = _ => 50 };
        var json = OutputPaths.File("--json", "also write the results to this JSON file");
        var baseline = PathOptions.Option("--baseline-json", "the --json of a one-rank run of the same config: adds speed-up and scaling efficiency");
        var command = new Command("train", "Time optimizer steps: tokens/s, ms/step, MFU, communication share and peak RSS.") { config, data, steps, json, baseline };
        var overrides = new ConfigOptions(command);
        command.SetAction(result =>
        {
            var count = result.GetValue(steps);
            if (count < 1) throw new StratusUserException("--steps must be at least 1");
            var trainConfig = TrainConfig.Load(result.GetValue(config), overrides.Overrides(result));
            // Read before measuring, so that a bad file is refused at once rather than after the run.
            var oneRank = result.GetValue(baseline) is { } baselinePath ? BaselineTokensPerSecond(baselinePath) : (double?)null;
            // Disposed only on success, as in `stratus train`.
            var communicator = Communicator.Create();
            var report = Measure(trainConfig, result.GetValue(data)!, count, result.GetValue(config)!, communicator);
            if (communicator.IsMain)
            {
                if (oneRank is { } baselineTokensPerSecond) AddScaling(report, baselineTokensPerSecond);
                Print(report);
                BenchOutput.WriteJson(result.GetValue(json), report);
            }
            communicator.Dispose();
            return 0;
        });
        return command;
    }

    static JsonObject Measure(TrainConfig config, string data, int steps, string configPath, ICommunicator communicator)
    {
        const int warmup = 3;
        var run = Path.Combine(Path.GetTempPath(), $"stratus-bench-{Guid.NewGuid():N}");
        try
        {
            // A benchmark never evaluates: data prepared with --val-fraction 0 is measured too.
            using var trainer = Trainer.Start(config with { MaxIters = warmup + steps }, data, run, communicator: communicator, evaluates: false);
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < warmup; i++) trainer.TrainStep(clock);
            var rssAfterWarmup = MachineMeasures.CurrentRssBytes();
            var times = new List<double>();
            double stepTotal = 0, communicationTotal = 0;
            var progress = Stopwatch.StartNew();
            for (var i = 0; i < steps; i++)
            {
                var step = trainer.TrainStep(clock);
                times.Add(step.StepSeconds);
                stepTotal += step.StepSeconds;
                communicationTotal += step.CommunicationSeconds;
                if (trainer.IsMain && !Console.IsOutputRedirected && progress.Elapsed.TotalSeconds > 1)
                {
                    var eta = TimeSpan.FromSeconds(times.Average() * (steps - i - 1));
                    Console.Write($"\rstep {i + 1}/{steps}, {times.Average() * 1000:F1} ms/step, eta {eta:mm\\:ss}   ");
                    progress.Restart();
                }
            }
            if (trainer.IsMain && !Console.IsOutputRedirected) Console.Write("\r\u001b[2K");
            times.Sort();
            // Of an even count, the mean of the two middle steps (the upper one alone biased tokens/s and MFU low).
            var median = Stratus.Server.Benchmarking.LatencyStats.Percentile(times, 50);
            var tokens = (double)config.BatchSize * config.Model.BlockSize * config.GradientAccumulationSteps;
            var achieved = trainer.FlopsPerStep / median;
            var ranks = trainer.WorldSize;
            // Both peaks are one process's (its threads); the job has `ranks` of them.
            var nominal = MachineMeasures.NominalPeak(trainer.Model.ComputeDtype, trainer.Model.Device) * ranks;
            var peak = trainer.PeakFlops * ranks;
            return new JsonObject
            {
                ["benchmark"] = "train",
                ["config"] = configPath,
                ["dtype"] = config.Dtype,
                ["device"] = config.Device,
                ["deterministic"] = config.Deterministic,
                ["parameters"] = trainer.Model.ParameterCount(nonEmbedding: false),
                ["batch_size"] = config.BatchSize,
                ["block_size"] = config.Model.BlockSize,
                ["gradient_accumulation_steps"] = config.GradientAccumulationSteps,
                ["steps"] = steps,
                ["ranks"] = ranks,
                ["zero_stage"] = config.ZeroStage,
                ["threads"] = TorchSharp.torch.get_num_threads(), // per rank
                ["ms_per_step_median"] = median * 1000,
                ["ms_per_step_min"] = times[0] * 1000,
                ["ms_per_step_max"] = times[^1] * 1000,
                ["tokens_per_sec"] = tokens / median,
                ["tokens_per_sec_per_rank"] = tokens / median / ranks,
                ["comm_share"] = communicationTotal / stepTotal,
                ["optimizer_state_mb_per_rank"] = trainer.OptimizerStateBytes / 1048576.0,
                ["achieved_gflops"] = achieved / 1e9,
                ["measured_peak_gflops"] = peak / 1e9,
                ["mfu_measured_peak"] = achieved / peak,
                ["nominal_peak_gflops"] = nominal / 1e9,
                ["mfu_nominal_peak"] = nominal is { } n ? achieved / n : null,
                ["rss_after_warmup_mb"] = rssAfterWarmup / 1048576.0,
                ["rss_end_mb"] = MachineMeasures.CurrentRssBytes() / 1048576.0,
                ["peak_rss_mb"] = MachineMeasures.PeakRssBytes() / 1048576.0,
            };
        }
        finally
        {
            if (Directory.Exists(run)) Directory.Delete(run, recursive: true);
        }
    }

    /// <summary>The tokens/s of the one-rank run whose --json is at <paramref name="path"/>.</summary>
    static double BaselineTokensPerSecond(string path)
    {
        if (!File.Exists(path)) throw new StratusUserException($"--baseline-json {path} does not exist; write it with `stratus bench train ... --json {path}` on one rank");
        var baseline = JsonText.ParseFile(path, hint: "Pass the --json of a one-rank `stratus bench train` run.", namedByUser: true);
        // Not 0 either: the speed-up would be infinite, which the --json report cannot hold.
        if ((baseline as JsonObject)?["tokens_per_sec"] is not JsonValue value || !value.TryGetValue<double>(out var oneRank) || !(oneRank > 0))
            throw new StratusUserException($"{path} has no positive tokens_per_sec; pass the --json of a one-rank `stratus bench train` run");
        return oneRank;
    }

    /// <summary>Speed-up over a one-rank run and its share of the ideal (ranks x one rank).</summary>
    static void AddScaling(JsonObject report, double oneRank)
    {
        var speedup = (double)report["tokens_per_sec"]! / oneRank;
        report["baseline_tokens_per_sec"] = oneRank;
        report["speedup"] = speedup;
        report["scaling_efficiency"] = speedup / (int)report["ranks"]!;
    }

    static void Print(JsonObject report)
    {
        var table = new Table().AddColumn("metric").AddColumn(new TableColumn("value").RightAligned());
        foreach (var (key, value) in report)
        {
            var text = value switch
            {
                null => "n/a",
                JsonValue v when v.TryGetValue<double>(out var d) && d != Math.Floor(d) => d.ToString(d < 1 ? "0.0000" : "N1"),
                JsonValue v when v.TryGetValue<long>(out var l) => l.ToString("N0"),
                _ => value.ToString(),
            };
            table.AddRow(Markup.Escape(key), Markup.Escape(text));
        }
        BenchOutput.Print(table);
    }
}
