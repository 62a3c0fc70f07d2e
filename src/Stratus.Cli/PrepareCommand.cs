// `stratus prepare --input <file|dir|jsonl> --out <dataset-dir> --tokenizer char|gpt2`
using System.CommandLine;
using Stratus.Data;

namespace Stratus.Cli;

static class PrepareCommand
{
    public static Command Create()
    {
        var input = new Option<string>("--input") { Description = "a text file, a folder of .txt/.md files, or a JSONL file with a \"text\" field", Required = true };
        var output = new Option<string>("--out") { Description = "dataset folder to write (train.bin, val.bin, meta.json, tokenizer.json)", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "char or gpt2", DefaultValueFactory = _ => "char" };
        tokenizer.AcceptOnlyFromAmong("char", "gpt2");
        var valFraction = new Option<double>("--val-fraction") { Description = "share of tokens held out for validation", DefaultValueFactory = _ => 0.1 };
        var command = new Command("prepare", "Tokenize a corpus into train and val token shards.") { input, output, tokenizer, valFraction };
        command.SetAction(result =>
        {
            var dataset = DatasetPreparer.Prepare(result.GetValue(input)!, result.GetValue(output)!, result.GetValue(tokenizer)!, result.GetValue(valFraction));
            Console.WriteLine($"prepared {dataset.Directory}: tokenizer {dataset.Tokenizer.Kind} (vocab {dataset.Tokenizer.VocabSize:N0}), " +
                $"{dataset.TrainTokens:N0} train and {dataset.ValTokens:N0} val tokens, source sha256 {dataset.SourceSha256}");
            return 0;
        });
        return command;
    }
}
