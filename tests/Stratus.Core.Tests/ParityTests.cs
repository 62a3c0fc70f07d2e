// Parity with llama.cpp, an implementation nobody here wrote: a small Stratus model with random
// weights is exported to GGUF f32, loaded by llama.cpp through LLamaSharp, and both must give
// the same last-position logits (within 1e-3) and the same greedy continuations.
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class ParityTests
{
    static readonly string[] Prompts = ["Hello world, this is", "The quick brown fox", "1 2 3 4 5 6", "To be, or not to be: that is the"];

    public static TheoryData<string> Architectures => new() { "gpt2", "llama-gqa-tied", "llama-untied-bias-rope-scaling" };

    internal static ModelConfig Config(string name) => name switch
    {
        "gpt2" => new ModelConfig { Architecture = "gpt2", VocabSize = 50257, BlockSize = 64, NLayer = 2, NHead = 4, NEmbd = 64, HiddenAct = "gelu_new" },
        "llama-gqa-tied" => new ModelConfig { Architecture = "llama", VocabSize = 50257, BlockSize = 64, NLayer = 2, NHead = 4, NKvHead = 2, NEmbd = 64, IntermediateSize = 96, Bias = false },
        _ => new ModelConfig
        {
            Architecture = "llama", VocabSize = 50257, BlockSize = 64, NLayer = 2, NHead = 4, NKvHead = 1, NEmbd = 64, IntermediateSize = 128, Bias = false,
            TieWordEmbeddings = false, AttentionBias = true, RopeTheta = 50000, RmsNormEps = 1e-6,
            RopeScaling = new RopeScaling { Factor = 4, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 32 },
        },
    };

    /// <summary>A model whose weights are large enough that logits are well separated (so greedy
    /// choices are not decided by rounding) and whose norms and biases are not trivial. GPT-2's
    /// embeddings are smaller: llama.cpp's GELU looks its input up in an f16 table, a relative
    /// error of about 5e-4 that would exceed 1e-3 absolute on logits in the tens.</summary>
    internal static CausalLanguageModel RandomModel(ModelConfig config, long seed = 1234)
    {
        var embeddingStd = config.Architecture == "gpt2" ? 0.07 : 0.5;
        torch.random.manual_seed(seed);
        var model = CausalLanguageModel.Create(config);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            if (p.dim() == 1) p.copy_(name.Contains("norm") || name.Contains("ln_") ? 1 + 0.1 * randn_like(p) : 0.1 * randn_like(p));
            else p.copy_(randn_like(p) * (name.Contains("embed") || name.Contains("wte") || name.Contains("wpe") ? embeddingStd : 1.0 / Math.Sqrt(p.shape[1])));
        }
        model.eval();
        return model;
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void Llama_cpp_agrees_on_logits_and_greedy_continuations(string architecture)
    {
        using var temp = new TempDirectory();
        using var model = RandomModel(Config(architecture));
        var gguf = temp.File("model.gguf");
        GgufExport.Write(model, Gpt2Tokenizer.Instance, null, gguf, GgmlType.F32);
        using var reference = new LlamaCppModel(gguf, contextSize: 64, threads: 2);
        Assert.Equal(50257, reference.VocabSize);

        foreach (var prompt in Prompts)
        {
            var tokens = Gpt2Tokenizer.Instance.Encode(prompt);
            var expected = reference.LastLogits(tokens);
            var actual = StratusLastLogits(model, tokens);
            var maxDifference = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(maxDifference < 1e-3, $"{architecture} '{prompt}': max |logit difference| {maxDifference}, max |logit| {expected.Max(Math.Abs)}");

            var continuation = reference.Greedy(tokens, 12);
            Assert.Equal(continuation, StratusGreedy(model, tokens, 12));
        }
    }

    internal static float[] StratusLastLogits(CausalLanguageModel model, int[] tokens)
    {
        using var noGrad = no_grad();
        using var input = torch.tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        using var logits = model.Forward(input);
        using var last = logits[0, -1];
        return last.data<float>().ToArray();
    }

    internal static List<int> StratusGreedy(CausalLanguageModel model, int[] tokens, int count)
    {
        using var noGrad = no_grad();
        using var cache = model.CreateCache(1, tokens.Length + count);
        var result = new List<int>();
        var input = torch.tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        for (var i = 0; i < count; i++)
        {
            using var logits = model.Forward(input, cache);
            input.Dispose();
            var next = logits[0, -1].argmax().item<long>();
            result.Add((int)next);
            input = torch.tensor(new[] { next }, [1, 1]);
        }
        input.Dispose();
        return result;
    }
}
