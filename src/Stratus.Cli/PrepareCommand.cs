// `stratus prepare --input <file|dir|jsonl> --out <dataset-dir> --tokenizer char|gpt2`
// `stratus prepare --input <text> --out <dataset-dir> --tokenizer-from <model>`
// `stratus prepare --input chat.jsonl --format chat --tokenizer-from <model> --out <dataset-dir> [--chat-template <file.jinja>]`
using System.CommandLine;
using Stratus.Data;
using Stratus.Training;

namespace Stratus.Cli;

static class PrepareCommand
{
    public static Command Create()
    {
        var input = PathOptions.Option("--input", "a text file, a folder of .txt/.md files, or a JSONL file with a \"text\" field (with --format chat: {\"messages\": [...]} per line, with \"tools\": [...] where a conversation offers tools)", required: true);
        var output = OutputPaths.Folder("--out", "dataset folder to write (train.bin, val.bin, meta.json, tokenizer.json)", required: true);
        var tokenizer = new Option<string>("--tokenizer") { Description = "char or gpt2", DefaultValueFactory = _ => "char" };
        tokenizer.AcceptOnlyFromAmong("char", "gpt2");
        var tokenizerFrom = PathOptions.Option("--tokenizer-from", "use the tokenizer (and, for chat, the chat template) of this model (run or checkpoint folder)");
        var format = new Option<string>("--format") { Description = "text, or chat for supervised fine-tuning (loss only on assistant turns)", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "chat");
        var valFraction = new Option<double>("--val-fraction") { Description = "share of tokens (chat: of conversations) held out for validation", DefaultValueFactory = _ => 0.1 };
        var chatTemplate = PathOptions.Option("--chat-template", "with --format chat: render the conversations with this Jinja chat template file instead of the model's; a model fine-tuned on the data is served with it");
        var overwrite = new Option<bool>("--overwrite") { Description = "replace a dataset of other text or settings in --out (a run trained on it can then no longer resume); without it such a folder is refused, and one prepared from the same source with the same settings is left as it is" };
        var command = new Command("prepare", "Tokenize a corpus into train and val token shards.") { input, output, tokenizer, tokenizerFrom, format, valFraction, chatTemplate, overwrite };
        command.SetAction(result =>
        {
            var model = result.GetValue(tokenizerFrom);
            if (model is not null && result.GetResult(tokenizer) is { Implicit: false })
                throw new StratusUserException("--tokenizer and --tokenizer-from cannot be used together: --tokenizer-from takes the model's own tokenizer");
            if (result.GetValue(format) == "chat")
            {
                var chatModel = model ?? throw new StratusUserException("--format chat needs --tokenizer-from <model>: the model whose chat template and tokenizer to use");
                var chat = WithProgress(progress => ChatDatasetPreparer.Prepare(result.GetValue(input)!, result.GetValue(output)!, chatModel, result.GetValue(valFraction), progress, result.GetValue(chatTemplate), result.GetValue(overwrite)));
                if (chat.UpToDate) Console.WriteLine(UpToDate(chat.Directory));
                else Console.WriteLine($"prepared {chat.Directory}: {chat.TrainExamples:N0} train and {chat.ValExamples:N0} val conversations, " +
                    $"{chat.TrainTokens:N0} train tokens of which {chat.SupervisedTokens:N0} are learned (assistant turns), {chat.ValTokens:N0} val tokens");
                return 0;
            }
            if (result.GetValue(chatTemplate) is not null)
                throw new StratusUserException("--chat-template applies to --format chat: it renders conversations for fine-tuning");
            var from = model is null ? null : Checkpoint.Open(Checkpoint.Resolve(model)).Tokenizer;
            var dataset = WithProgress(progress => DatasetPreparer.Prepare(result.GetValue(input)!, result.GetValue(output)!, result.GetValue(tokenizer)!, result.GetValue(valFraction), from, progress,
                overwrite: result.GetValue(overwrite)));
            if (dataset.UpToDate) Console.WriteLine(UpToDate(dataset.Directory));
            else Console.WriteLine($"prepared {dataset.Directory}: tokenizer {dataset.Tokenizer.Kind} (vocab {dataset.Tokenizer.VocabSize:N0}), " +
                $"{dataset.TrainTokens:N0} train and {dataset.ValTokens:N0} val tokens, source sha256 {dataset.SourceSha256}");
            return 0;
        });
        return command;
    }

    static string UpToDate(string directory) =>
        $"{directory} is up to date: it holds this source prepared with these settings; nothing to do (--overwrite prepares it again)";

    /// <summary>Runs <paramref name="prepare"/>, showing each phase's progress in bytes of the
    /// corpus read, with the tokens made so far.</summary>
    static T WithProgress<T>(Func<IProgress<PrepareProgress>, T> prepare) =>
        PhaseProgress.Show(bytes: true, progress => prepare(new InlineProgress<PrepareProgress>(p =>
            progress.Report(p.Phase, p.BytesDone, p.BytesTotal, p.Tokens > 0 ? $"{p.Tokens:N0} tokens" : null))));
}
