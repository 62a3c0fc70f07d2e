// `stratus import hf <hf-dir> --out <run-dir>`: a Hugging Face model folder becomes a Stratus
// model (run-dir/checkpoints/best) that sample, train --init-from, export and serve accept.
using System.CommandLine;
using Stratus.Formats;
using Stratus.Tokenization;

namespace Stratus.Cli;

static class ImportCommand
{
    public static Command Create()
    {
        var command = new Command("import", "Import a model from another format.");
        var source = PathOptions.Argument("hf-dir", "Hugging Face model folder: config.json, model.safetensors (or shards and index), tokenizer.json, tokenizer_config.json, generation_config.json");
        var output = OutputPaths.Folder("--out", "run folder to create (the model goes to <out>/checkpoints/best)", required: true);
        var hf = new Command("hf", "Import a Hugging Face GPT-2 or Llama-family model (Llama 2/3, SmolLM, TinyLlama, Mistral, Qwen2).") { source, output };
        hf.SetAction(result =>
        {
            var imported = HuggingFace.Import(result.GetValue(source)!, result.GetValue(output)!);
            var c = imported.Config;
            Console.WriteLine($"imported {imported.SourceArchitecture} as {c.Architecture}: {c.NLayer} layers, {c.NHead} heads ({c.KvHeads} kv), {c.NEmbd} wide, " +
                $"vocab {c.VocabSize:N0}, context {c.BlockSize:N0}; tokenizer {imported.Tokenizer.Kind} ({imported.Tokenizer.VocabSize:N0} tokens)" +
                (imported.HasChatTemplate ? ", chat template" : "") +
                (imported.Tokenizer.EndOfGenerationIds.Count > 0 ? $"; generation ends at token {string.Join(", ", imported.Tokenizer.EndOfGenerationIds)}" : ""));
            Console.WriteLine($"model: {imported.CheckpointDirectory}");
            // The weights are fine: the model is kept, and serve answers its completions.
            ChatTemplate.TryLoad(imported.CheckpointDirectory, imported.Tokenizer, out var unsupported);
            if (unsupported is not null)
                Console.Error.WriteLine(Invocation.Spell($"warning: {unsupported.Message}; serve will refuse this model's chats (completions work) until you {UnsupportedChatTemplate.Fix}"));
            return 0;
        });
        command.Subcommands.Add(hf);
        return command;
    }
}
