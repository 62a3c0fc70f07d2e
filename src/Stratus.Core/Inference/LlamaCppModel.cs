// A GGUF model run by llama.cpp (through LLamaSharp) on the CPU, fed token ids directly: the
// independent implementation that GGUF exports and imports are checked against (logits, greedy
// decoding, its own quantizer's files) and the speed peer of `stratus bench infer`.
using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Stratus.Inference;

public sealed class LlamaCppModel : IDisposable
{
    static readonly Lock LogSetup = new();
    static bool logsSilenced;

    readonly LLamaWeights weights;
    readonly LLamaContext context;
    readonly LLamaBatch batch = new();

    /// <param name="kvF32">Keep the KV cache in f32 (llama.cpp defaults to f16) so comparisons
    /// measure the model, not the cache's rounding.</param>
    public LlamaCppModel(string ggufPath, int contextSize, int threads, bool kvF32 = true)
    {
        SilenceLogs();
        var parameters = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize, GpuLayerCount = 0, Threads = threads, BatchThreads = threads,
            BatchSize = (uint)contextSize, UBatchSize = (uint)contextSize,
        };
        if (kvF32)
        {
            parameters.TypeK = GGMLType.GGML_TYPE_F32;
            parameters.TypeV = GGMLType.GGML_TYPE_F32;
            // CPU flash attention rounds queries to f16; the plain path keeps f32 throughout.
            parameters.FlashAttention = false;
        }
        try { weights = LLamaWeights.LoadFromFile(parameters); }
        catch (Exception e) when (e is not StratusUserException) { throw new StratusUserException($"llama.cpp could not load {ggufPath}: {e.Message}", e); }
        context = weights.CreateContext(parameters);
        VocabSize = weights.Vocab.Count;
    }

    public int VocabSize { get; }

    /// <summary>llama.cpp's quantizer (llama-quantize): <paramref name="type"/> is its name of a
    /// file type, such as Q4_0, Q2_K or Q4_K_M. The head (output.weight) is quantized too, as
    /// llama-quantize quantizes it unless told --leave-output-tensor (LLamaSharp's default leaves it
    /// f32, which no file of the Hugging Face Hub does): a Q4_K_M's head is q6_K.</summary>
    public static void Quantize(string source, string destination, string type, int threads)
    {
        SilenceLogs();
        // Loads llama.cpp through LLamaSharp's resolver, which the quantizer's first call does not.
        NativeApi.llama_empty_call();
        if (!LLamaQuantizer.Quantize(source, destination, Enum.Parse<LLamaFtype>($"MOSTLY_{type}"), threads, allowRequantize: true, quantizeOutputTensor: true))
            throw new InvalidOperationException($"llama.cpp could not quantize {source} to {type}");
    }

    static void SilenceLogs()
    {
        lock (LogSetup)
        {
            if (logsSilenced) return;
            // llama.cpp logs every tensor it loads; only errors matter here.
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                if (level == LLamaLogLevel.Error) Console.Error.Write(message);
            });
            logsSilenced = true;
        }
    }

    /// <summary>llama.cpp's own tokenization of text, to check an exported vocabulary; with
    /// <paramref name="addSpecialTokens"/> (llama.cpp's add_special) a prompt's BOS/EOS as the
    /// file's add_bos_token / add_eos_token say.</summary>
    public int[] Tokenize(string text, bool addSpecialTokens = false) => context.Tokenize(text, addBos: addSpecialTokens, special: true).Select(t => (int)t).ToArray();

    /// <summary>Logits after the last prompt token, from an empty cache.</summary>
    public float[] LastLogits(IReadOnlyList<int> prompt)
    {
        context.NativeHandle.MemoryClear();
        Evaluate(prompt, 0);
        return context.NativeHandle.GetLogitsIth(batch.TokenCount - 1).ToArray();
    }

    /// <summary>Greedy continuation: the prompt in one batch, then one token at a time.</summary>
    public List<int> Greedy(IReadOnlyList<int> prompt, int count)
    {
        context.NativeHandle.MemoryClear();
        Evaluate(prompt, 0);
        var result = new List<int>();
        var position = prompt.Count;
        for (var i = 0; i < count; i++)
        {
            var next = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
            result.Add(next);
            if (i == count - 1) break;
            Evaluate([next], position++);
        }
        return result;
    }

    /// <summary>Prefill tokens/s over the prompt and single-stream decode tokens/s over
    /// <paramref name="decodeTokens"/> greedy steps.</summary>
    public (double Prefill, double Decode) Measure(IReadOnlyList<int> prompt, int decodeTokens)
    {
        context.NativeHandle.MemoryClear();
        var clock = Stopwatch.StartNew();
        Evaluate(prompt, 0);
        var prefill = prompt.Count / clock.Elapsed.TotalSeconds;
        var next = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
        clock.Restart();
        for (var i = 0; i < decodeTokens; i++)
        {
            Evaluate([next], prompt.Count + i);
            next = ArgMax(context.NativeHandle.GetLogitsIth(0));
        }
        return (prefill, decodeTokens / clock.Elapsed.TotalSeconds);
    }

    void Evaluate(IReadOnlyList<int> tokens, int start)
    {
        batch.Clear();
        for (var i = 0; i < tokens.Count; i++) batch.Add(tokens[i], start + i, LLamaSeqId.Zero, i == tokens.Count - 1);
        var result = context.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
    }

    static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    public void Dispose()
    {
        context.Dispose();
        weights.Dispose();
    }
}
