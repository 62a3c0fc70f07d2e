// `stratus bench infer`: prefill tokens/s and single-stream greedy decode tokens/s of Stratus
// (libtorch fp32, and the decode kernels with fp32 or bf16 weights) and of llama.cpp on the
// same weights exported to GGUF (f32 and f16), side by side. The prompt is random token ids
// from a fixed seed, so every engine sees the same input. Engines are measured in turn within
// each repetition and the best repetition is kept, so a machine whose load changes over time
// (shared cores) disturbs all engines alike rather than whichever ran during a busy spell.
using System.Diagnostics;
using Stratus.Formats;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

/// <summary>One engine's result; Precision names the weights its matmuls read.</summary>
public sealed record InferenceMeasurement(string Engine, string Precision, double PrefillTokensPerSecond, double DecodeTokensPerSecond);

public sealed record InferenceBenchmarkOptions
{
    public int PromptTokens { get; init; } = 128;
    public int DecodeTokens { get; init; } = 64;
    public int Threads { get; init; } = 2;
    /// <summary>Timed repetitions after one warm-up; the best of them is reported.</summary>
    public int Repeats { get; init; } = 3;
    public bool IncludeLlamaCpp { get; init; } = true;
}

public static class InferenceBenchmark
{
    /// <summary>Random-weight models of the shapes the issue names, with GPT-2's vocabulary.</summary>
    public static ModelConfig Shape(string name) => name switch
    {
        "gpt2-124m" => new ModelConfig { Architecture = "gpt2", VocabSize = 50257, BlockSize = 1024, NLayer = 12, NHead = 12, NEmbd = 768, HiddenAct = "gelu_new" },
        "llama-100m" => new ModelConfig
        {
            Architecture = "llama", VocabSize = 50257, BlockSize = 1024, NLayer = 12, NHead = 12, NKvHead = 4, NEmbd = 768,
            IntermediateSize = 2048, Bias = false, TieWordEmbeddings = true,
        },
        _ => throw new StratusUserException($"unknown model shape '{name}'; use gpt2-124m or llama-100m"),
    };

    sealed record Engine(string Name, string Precision, Func<(double Prefill, double Decode)> Measure);

    public static List<InferenceMeasurement> Run(CausalLanguageModel model, ITokenizer tokenizer, InferenceBenchmarkOptions options, Action<string>? progress = null)
    {
        // Threads too: libtorch aborts the process on fewer than one, with no message the user can act on.
        if (options.PromptTokens < 1 || options.DecodeTokens < 1 || options.Threads < 1 || options.Repeats < 1)
            throw new StratusUserException($"prompt tokens, decode tokens, threads and repeats must be at least 1 (got {options.PromptTokens}, {options.DecodeTokens}, {options.Threads}, {options.Repeats})");
        // The last decode step's token sits at position prompt + decode - 1.
        if (options.PromptTokens + options.DecodeTokens > model.Config.BlockSize)
            throw new StratusUserException($"{options.PromptTokens} prompt + {options.DecodeTokens} decode tokens exceed the model's context of {model.Config.BlockSize}");
        var previousThreads = torch.get_num_threads();
        torch.set_num_threads(options.Threads);
        var prompt = RandomPrompt(options.PromptTokens, Math.Min(tokenizer.VocabSize, model.Config.VocabSize));
        var references = new List<LlamaCppModel>();
        var files = new List<string>();
        model.eval();
        try
        {
            var f32Kernel = new DecodeKernel(DecodeWeights.Float32, options.Threads);
            var bf16Kernel = new DecodeKernel(DecodeWeights.BFloat16, options.Threads);
            var engines = new List<Engine>
            {
                new("Stratus (TorchSharp)", "fp32, libtorch matmuls", () => MeasureStratus(model, null, prompt, options)),
                new("Stratus (TorchSharp)", "fp32, decode kernel", () => MeasureStratus(model, f32Kernel, prompt, options)),
                new("Stratus (TorchSharp)", "bf16, decode kernel", () => MeasureStratus(model, bf16Kernel, prompt, options)),
            };
            if (options.IncludeLlamaCpp)
            {
                foreach (var (type, name) in new[] { (GgmlType.F32, "f32"), (GgmlType.F16, "f16") })
                {
                    progress?.Invoke($"exporting GGUF {name} for llama.cpp");
                    var gguf = Path.Combine(Path.GetTempPath(), $"stratus-bench-{Guid.NewGuid():N}.gguf");
                    files.Add(gguf);
                    GgufExport.Write(model, tokenizer, null, gguf, type);
                    // llama.cpp as it runs by default (f16 KV cache, its own attention choice).
                    var reference = new LlamaCppModel(gguf, prompt.Length + options.DecodeTokens, options.Threads, kvF32: false);
                    references.Add(reference);
                    engines.Add(new("llama.cpp (LLamaSharp)", name, () => reference.Measure(prompt, options.DecodeTokens)));
                }
            }
            var best = engines.Select(_ => (Prefill: 0.0, Decode: 0.0)).ToArray();
            for (var repeat = 0; repeat <= options.Repeats; repeat++)
            {
                progress?.Invoke(repeat == 0 ? "warming up every engine" : $"repetition {repeat} of {options.Repeats}");
                for (var e = 0; e < engines.Count; e++)
                {
                    var (prefill, decode) = engines[e].Measure();
                    if (repeat > 0) best[e] = (Math.Max(best[e].Prefill, prefill), Math.Max(best[e].Decode, decode));
                }
            }
            return engines.Select((e, i) => new InferenceMeasurement(e.Name, e.Precision, best[i].Prefill, best[i].Decode)).ToList();
        }
        finally
        {
            model.DecodeKernel = null;
            foreach (var reference in references) reference.Dispose();
            foreach (var file in files) File.Delete(file);
            torch.set_num_threads(previousThreads);
        }
    }

    static int[] RandomPrompt(int length, int vocab)
    {
        var random = new Random(1234);
        return Enumerable.Range(0, length).Select(_ => random.Next(vocab)).ToArray();
    }

    /// <summary>Prefill with libtorch on all threads; then greedy decode, where a decode kernel
    /// (if any) splits the matmuls over the threads and libtorch's remaining small ops run on
    /// one thread (MatmulPrecision.DecodeThreads), as in sampling and serving.</summary>
    static (double Prefill, double Decode) MeasureStratus(CausalLanguageModel model, DecodeKernel? kernel, int[] prompt, InferenceBenchmarkOptions options)
    {
        using var noGrad = no_grad();
        model.DecodeKernel = kernel;
        using var cache = model.CreateCache(1, prompt.Length + options.DecodeTokens);
        using var promptTensor = torch.tensor(prompt.Select(t => (long)t).ToArray(), [1, prompt.Length], device: model.Device);
        var clock = Stopwatch.StartNew();
        Tensor next;
        using (var logits = model.Forward(promptTensor, cache)) next = logits[.., -1].argmax(-1, keepdim: true);
        var prefill = prompt.Length / clock.Elapsed.TotalSeconds;
        clock.Restart();
        for (var i = 0; i < options.DecodeTokens; i++)
        {
            using var logits = model.Forward(next, cache);
            next.Dispose();
            next = logits[.., -1].argmax(-1, keepdim: true);
        }
        _ = next.item<long>(); // the last token is really computed before the clock stops
        next.Dispose();
        return (prefill, options.DecodeTokens / clock.Elapsed.TotalSeconds);
    }
}
