// `stratus import hf <hf-dir> --out <run-dir>` and `stratus import gguf <file.gguf> --out <run-dir>`:
// a Hugging Face model folder or a llama.cpp GGUF file becomes a Stratus model
// (run-dir/checkpoints/best) that sample, train --init-from, eval, export and serve accept.
using System.CommandLine;
using Stratus.Formats;
using Stratus.Tokenization;

namespace Stratus.Cli;

static class ImportCommand
{
    public static Command Create()
    {
        var command = new Command("import", "Import a model from another format.");
        var hfSource = PathOptions.Argument("hf-dir", "Hugging Face model folder: config.json, model.safetensors (or shards and index), tokenizer.json, tokenizer_config.json, generation_config.json");
        var hfOutput = Output();
        var hf = new Command("hf", "Import a Hugging Face GPT-2 or Llama-family model (Llama 2/3, SmolLM, TinyLlama, Mistral, Qwen2).") { hfSource, hfOutput };
        hf.SetAction(result => Report(HuggingFace.Import(result.GetValue(hfSource)!, result.GetValue(hfOutput)!)));
        command.Subcommands.Add(hf);

        var ggufSource = PathOptions.Argument("file.gguf", "GGUF file (llama.cpp's): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 or k-quant (q2_K to q6_K) tensors");
        var ggufOutput = Output();
        var gguf = new Command("gguf", "Import a llama.cpp GGUF model (llama: Llama 2/3, Mistral, SmolLM, TinyLlama; qwen2; gpt2), its weights dequantized to f32.") { ggufSource, ggufOutput };
        gguf.SetAction(result => Report(GgufImport.Import(result.GetValue(ggufSource)!, result.GetValue(ggufOutput)!)));
        command.Subcommands.Add(gguf);
        return command;
    }

    static Option<string> Output() => OutputPaths.Folder("--out", "run folder to create (the model goes to <out>/checkpoints/best)", required: true);

    static int Report(ImportedModel imported)
    {
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
    }
}
