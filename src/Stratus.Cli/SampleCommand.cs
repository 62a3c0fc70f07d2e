// `stratus sample --model <run> --prompt <text> --max-tokens N --temperature T --top-k K --top-p P --min-p M --seed S`
using System.CommandLine;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Training;

namespace Stratus.Cli;

static class SampleCommand
{
    public static Command Create()
    {
        var model = PathOptions.Option("--model", "run folder or checkpoint folder", required: true);
        var prompt = new Option<string>("--prompt") { Description = "text to continue (default: a newline, or the vocabulary's first token where it has no newline)" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 500 };
        var temperature = new Option<double>("--temperature") { Description = "0 is greedy; higher is more random", DefaultValueFactory = _ => 0.8 };
        var topK = new Option<int>("--top-k") { Description = "sample from the k most likely tokens (0: all)", DefaultValueFactory = _ => 200 };
        var topP = new Option<double>("--top-p") { Description = "nucleus sampling threshold (1: off)", DefaultValueFactory = _ => 1.0 };
        var minP = new Option<double>("--min-p") { Description = "drop tokens less likely than this fraction of the most likely one (0: off)", DefaultValueFactory = _ => 0.0 };
        var seed = new Option<long?>("--seed") { Description = "same seed, same text" };
        var samples = new Option<int>("--num-samples") { Description = "how many samples", DefaultValueFactory = _ => 1 };
        var decodeWeights = new DecodeWeightsOption();
        var device = new DeviceOption();
        var command = new Command("sample", "Generate text from a trained model, streamed token by token.") { model, prompt, maxTokens, temperature, topK, topP, minP, seed, samples, decodeWeights.Option, device.Option };
        command.SetAction(result =>
        {
            var options = new SamplingOptions { Temperature = result.GetValue(temperature), TopK = result.GetValue(topK), TopP = result.GetValue(topP), MinP = result.GetValue(minP), Seed = result.GetValue(seed) };
            options.Validate();
            if (result.GetValue(samples) < 1) throw new StratusUserException($"--num-samples must be at least 1, got {result.GetValue(samples)}");
            var weights = decodeWeights.Value(result, device.Name(result));
            var checkpoint = Checkpoint.Open(Checkpoint.Resolve(result.GetValue(model)!));
            using var network = checkpoint.CreateModel(device.Open(result));
            network.DecodeWeights = weights;
            var generator = new TextGenerator(network, checkpoint.Tokenizer);
            Stream(generator, result.GetValue(prompt) ?? generator.DefaultPrompt, result.GetValue(maxTokens), options, result.GetValue(samples));
            return 0;
        });
        return command;
    }

    public static void Stream(TextGenerator generator, string prompt, int maxTokens, SamplingOptions options, int count)
    {
        for (var i = 0; i < count; i++)
        {
            var sampleOptions = options.Seed is { } s ? options with { Seed = s + i } : options;
            var pieces = generator.Generate(prompt, maxTokens, sampleOptions);
            Console.Write(prompt);
            foreach (var piece in pieces)
            {
                Console.Write(piece);
                Console.Out.Flush();
                StandardOutput.ThrowIfReaderGone();
            }
            Console.WriteLine();
            if (i < count - 1) Console.WriteLine("---------------");
        }
    }
}
