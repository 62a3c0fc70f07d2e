// `stratus eval --model <run> --data <dataset> [--split val|train] [--batch-size N] [--json file]`:
// a model's loss and perplexity over every token of a whole split (nanoGPT's eval_only, without
// the noise of a few random batches), with a progress bar for large splits.
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Training;

namespace Stratus.Cli;

static class EvalCommand
{
    public static Command Create()
    {
        var model = PathOptions.Option("--model", "run folder or checkpoint folder", required: true);
        var data = PathOptions.Option("--data", "dataset folder made by `stratus prepare` with the model's tokenizer", required: true);
        var split = new Option<string>("--split") { Description = "which split to measure", DefaultValueFactory = _ => "val" };
        split.AcceptOnlyFromAmong("val", "train");
        var batchSize = new Option<int>("--batch-size") { Description = "windows per forward pass (memory, not the result)", DefaultValueFactory = _ => 32 };
        var blockSize = new Option<int?>("--block-size") { Description = "tokens per window (default: the block size the model was trained with)" };
        var json = OutputPaths.File("--json", "also write the result to this JSON file");
        var device = new DeviceOption();
        var command = new Command("eval", "Measure a model's loss over a whole dataset split.") { model, data, split, batchSize, blockSize, json, device.Option };
        command.SetAction(result =>
        {
            if (result.GetValue(batchSize) < 1) throw new StratusUserException($"--batch-size must be at least 1, got {result.GetValue(batchSize)}");
            var checkpoint = Checkpoint.Open(Checkpoint.Resolve(result.GetValue(model)!));
            var block = result.GetValue(blockSize) ?? checkpoint.TrainConfig?.Model.BlockSize ?? checkpoint.ModelConfig.BlockSize;
            if (block < 1 || block > checkpoint.ModelConfig.BlockSize)
                throw new StratusUserException($"--block-size must be between 1 and the model's context of {checkpoint.ModelConfig.BlockSize}, got {block}");
            var dataDirectory = result.GetValue(data)!;
            var splitName = result.GetValue(split)!;
            var which = splitName == "train" ? Split.Train : Split.Val;
            using var sampler = new BatchSampler(dataDirectory, result.GetValue(batchSize), block, seed: 0, only: which);
            checkpoint.RequireTokenizerOf(dataDirectory, sampler.Tokenizer);
            using var network = checkpoint.CreateModel(device.Open(result));
            var clock = Stopwatch.StartNew();
            var measured = PhaseProgress.Show(bytes: false, progress =>
                SplitLoss.Measure(network, sampler, which, new InlineProgress<(long Done, long Total)>(p =>
                    progress.Report($"{splitName}: batches of {result.GetValue(batchSize)} windows of {block} tokens", p.Done, p.Total))));
            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"{splitName} loss {measured.Loss:F4} (perplexity {measured.Perplexity:F2}) over all {measured.Tokens:N0} predicted tokens " +
                $"({measured.Windows:N0} windows of {block} tokens) in {seconds:F1} s, {measured.Tokens / seconds:N0} tokens/s");
            if (result.GetValue(json) is { } path)
            {
                var report = new JsonObject
                {
                    ["model"] = checkpoint.Directory, ["data"] = dataDirectory, ["split"] = splitName, ["block_size"] = block,
                    ["loss"] = measured.Loss, ["perplexity"] = measured.Perplexity, ["tokens"] = measured.Tokens, ["windows"] = measured.Windows, ["seconds"] = seconds,
                };
                AtomicFile.WriteJson(path, report);
                Console.WriteLine($"wrote {path}");
            }
            return 0;
        });
        return command;
    }
}
