// `stratus export hf --model <run-dir> --out <dir> [--dtype f32|f16|bf16]`
// `stratus export gguf --model <run-dir> --out <file.gguf> --type f32|f16|bf16|q8_0`
using System.CommandLine;
using Stratus.Formats;
using TorchSharp;

namespace Stratus.Cli;

static class ExportCommand
{
    public static Command Create()
    {
        var command = new Command("export", "Export a model to Hugging Face or GGUF (llama.cpp) format.");
        command.Subcommands.Add(Hf());
        command.Subcommands.Add(Gguf());
        return command;
    }

    static Command Hf()
    {
        var model = PathOptions.Option("--model", "run folder or checkpoint folder", required: true);
        var output = OutputPaths.Folder("--out", "folder to write config.json, model.safetensors, tokenizer.json, tokenizer_config.json into", required: true);
        var dtype = new Option<string>("--dtype") { Description = "weight dtype", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "f16", "bf16");
        var command = new Command("hf", "Write a Hugging Face model folder.") { model, output, dtype };
        command.SetAction(result =>
        {
            var type = result.GetValue(dtype) switch { "f16" => torch.ScalarType.Float16, "bf16" => torch.ScalarType.BFloat16, _ => torch.ScalarType.Float32 };
            HuggingFace.Export(result.GetValue(model)!, result.GetValue(output)!, type);
            Console.WriteLine($"wrote {result.GetValue(output)}");
            return 0;
        });
        return command;
    }

    static Command Gguf()
    {
        var model = PathOptions.Option("--model", "run folder or checkpoint folder", required: true);
        var output = OutputPaths.File("--out", "GGUF file to write", required: true);
        var type = new Option<string>("--type") { Description = "tensor type of the weight matrices", DefaultValueFactory = _ => "f16" };
        type.AcceptOnlyFromAmong("f32", "f16", "bf16", "q8_0");
        var command = new Command("gguf", "Write a GGUF file that llama.cpp loads.") { model, output, type };
        command.SetAction(result =>
        {
            var path = result.GetValue(output)!;
            var config = GgufExport.Write(result.GetValue(model)!, path, GgufExport.ParseType(result.GetValue(type)!));
            var file = GgufFile.Read(path);
            Console.WriteLine($"wrote {path}: {file.Metadata["general.architecture"]}, {file.Tensors.Count} tensors, {new FileInfo(path).Length / 1048576.0:F1} MiB");
            if (GgufExport.Difference(config) is { } difference) Console.WriteLine($"note: {difference}");
            return 0;
        });
        return command;
    }
}
