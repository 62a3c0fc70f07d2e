// Writes a Stratus model as a GGUF file that llama.cpp loads: the architecture's metadata
// ("gpt2" or "llama"), the tokenizer (byte-level BPE as tokenizer.ggml.model "gpt2", a
// character vocabulary as byte-level tokens with merges only inside multi-byte characters,
// SentencePiece-style BPE as "llama" with scores; whether a prompt gets BOS/EOS as the
// tokenizer adds them), and the weights under llama.cpp's tensor names. Two conventions differ from Stratus/Hugging Face:
// llama.cpp's llama graph rotates interleaved pairs (x0,x1),(x2,x3)... where HF rotates the
// two halves of a head, so q/k rows are permuted per head (as convert_hf_to_gguf.py does); and
// llama.cpp's gpt2 graph always has biases, so a bias-free model gets zero biases. The names of
// the weights both ways (TensorNames) are also what GgufImport reads.
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Formats;

public static class GgufExport
{
    public static GgmlType ParseType(string type) => type switch
    {
        "f32" => GgmlType.F32,
        "f16" => GgmlType.F16,
        "bf16" => GgmlType.BF16,
        "q8_0" => GgmlType.Q8_0,
        _ => throw new StratusUserException($"unknown GGUF type '{type}'; use f32, f16, bf16 or q8_0"),
    };

    /// <summary>Exports the checkpoint a run or checkpoint folder resolves to; returns its model's config.</summary>
    public static ModelConfig Write(string modelPath, string outputPath, GgmlType type)
    {
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(modelPath));
        using var model = checkpoint.CreateModel();
        model.MergeAdapters();
        Write(model, checkpoint.Tokenizer, ChatTemplate.Find(checkpoint.Directory), outputPath, type, Path.GetFileName(Path.GetFullPath(modelPath)));
        return checkpoint.ModelConfig;
    }

    /// <summary>What llama.cpp computes differently from Stratus for this model, or null. GGUF
    /// has no key for GPT-2's activation and llama.cpp's gpt2 graph always takes GELU's tanh
    /// approximation (GPT-2's own), while nanoGPT's models use the exact GELU.</summary>
    public static string? Difference(ModelConfig config) =>
        config.Architecture == "gpt2" && config.HiddenAct == "gelu"
            ? "this model uses the exact GELU (nanoGPT's); llama.cpp computes GPT-2's tanh approximation of it, so its logits differ slightly (within 6e-4 on a test model)"
            : null;

    public static void Write(CausalLanguageModel model, ITokenizer tokenizer, string? chatTemplate, string outputPath, GgmlType type, string name = "stratus")
    {
        var c = model.Config;
        var writer = new GgufWriter();
        var arch = c.Architecture;
        writer.Add("general.architecture", arch);
        writer.Add("general.name", name);
        writer.Add("general.alignment", (uint)GgufWriter.Alignment);
        writer.Add("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.BF16 => 32u, _ => 7u });
        writer.Add($"{arch}.context_length", (uint)c.BlockSize);
        writer.Add($"{arch}.embedding_length", (uint)c.NEmbd);
        writer.Add($"{arch}.feed_forward_length", (uint)c.MlpWidth);
        writer.Add($"{arch}.block_count", (uint)c.NLayer);
        writer.Add($"{arch}.attention.head_count", (uint)c.NHead);
        if (arch == "llama")
        {
            writer.Add("llama.attention.head_count_kv", (uint)c.KvHeads);
            writer.Add("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
            writer.Add("llama.rope.freq_base", (float)c.RopeTheta);
            writer.Add("llama.rope.dimension_count", (uint)c.HeadDim);
            writer.Add("llama.vocab_size", (uint)c.VocabSize);
        }
        else writer.Add("gpt2.attention.layer_norm_epsilon", (float)c.LayerNormEps);
        AddTokenizer(writer, tokenizer, c.VocabSize, chatTemplate);

        if (arch is not ("gpt2" or "llama")) throw new StratusUserException($"GGUF export does not support architecture '{arch}'");
        var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        var tensors = TensorNames(c).Select(t => t.PermutedHeads > 0 ? Permuted(weights, t.Gguf, t.Stratus, t.PermutedHeads)
            : weights.ContainsKey(t.Stratus) ? Take(weights, t.Gguf, t.Stratus) : ZeroBias(weights, t.Gguf, t.Stratus)).ToList();
        if (c.RopeScaling is { } scaling)
        {
            var divisors = scaling.FrequencyDivisors(c.RopeTheta, c.HeadDim).Select(d => (float)d).ToArray();
            tensors.Add((RopeFrequencies, [divisors.Length], () => divisors));
        }
        foreach (var (tensorName, shape, data) in tensors)
        {
            // Vectors (norms, biases, rope factors) stay f32 as llama.cpp's converter keeps them;
            // q8_0 needs rows that are whole blocks of 32, otherwise the matrix is stored in f16.
            var tensorType = shape.Length == 1 ? GgmlType.F32
                : type == GgmlType.Q8_0 && shape[^1] % GgufWriter.Q8Block != 0 ? GgmlType.F16 : type;
            writer.Add(new GgufTensor(tensorName, shape, data, tensorType));
        }
        writer.Write(outputPath);
    }

    static void AddTokenizer(GgufWriter writer, ITokenizer tokenizer, int modelVocab, string? chatTemplate)
    {
        var vocabulary = BpeVocabulary.From(tokenizer);
        if (vocabulary.Tokens.Count > modelVocab)
            throw new StratusUserException($"the tokenizer has {vocabulary.Tokens.Count} tokens but the model only {modelVocab}");
        // The embedding may be padded past the tokenizer (e.g. 50304 for 50257): llama.cpp needs
        // one token per row, so the padding rows become unused tokens, as convert_hf_to_gguf.py does.
        var tokens = vocabulary.Tokens.Concat(Enumerable.Range(vocabulary.Tokens.Count, modelVocab - vocabulary.Tokens.Count).Select(i => $"[PAD{i}]")).ToList();
        const int normal = 1, unknown = 2, control = 3, unused = 5, bytes = 6;
        var types = tokens.Select((token, i) =>
            i >= vocabulary.Tokens.Count ? unused
            : i == vocabulary.UnknownId ? unknown
            : vocabulary.Special.Contains(i) ? control
            : vocabulary.SentencePiece && token.Length == 6 && token.StartsWith("<0x") && token.EndsWith('>') ? bytes
            : normal).ToList();
        writer.Add("tokenizer.ggml.tokens", tokens);
        writer.Add("tokenizer.ggml.token_type", types);
        if (vocabulary.SentencePiece)
        {
            // llama.cpp's SentencePiece tokenizer merges the pair whose result scores highest;
            // SentencePiece BPE pieces are ranked by id (earlier merges first), so -id is that order.
            writer.Add("tokenizer.ggml.model", "llama");
            writer.Add("tokenizer.ggml.scores", tokens.Select((_, i) => -(float)i).ToList());
            writer.Add("tokenizer.ggml.add_space_prefix", true);
            if (vocabulary.UnknownId is { } unk) writer.Add("tokenizer.ggml.unknown_token_id", (uint)unk);
        }
        else
        {
            writer.Add("tokenizer.ggml.model", "gpt2");
            writer.Add("tokenizer.ggml.pre", vocabulary.PreTokenizer);
            writer.Add("tokenizer.ggml.merges", vocabulary.Merges);
        }
        // A vocabulary without special tokens (characters) still needs ids here: llama.cpp
        // defaults BPE's bos/eos to 11, which may not exist; token 0 always does.
        writer.Add("tokenizer.ggml.bos_token_id", (uint)(vocabulary.BosId ?? vocabulary.EosId ?? 0));
        writer.Add("tokenizer.ggml.eos_token_id", (uint)(vocabulary.EosId ?? 0));
        // Whether llama.cpp puts BOS before a prompt and EOS after it, as the tokenizer does
        // when it adds special tokens (an imported Llama's post-processor).
        writer.Add("tokenizer.ggml.add_bos_token", Adds(vocabulary.AddedBefore, vocabulary.BosId, "bos_token", "before"));
        writer.Add("tokenizer.ggml.add_eos_token", Adds(vocabulary.AddedAfter, vocabulary.EosId, "eos_token", "after"));
        if (chatTemplate is null) return;
        writer.Add("tokenizer.chat_template", chatTemplate);
        // The named templates beside it (tool_use, rag) as convert_hf_to_gguf.py writes them:
        // tokenizer.chat_template.NAME each, their names in tokenizer.chat_templates, a name's
        // characters outside letters, digits and _ made _ (llama.cpp looks a template up by
        // its name in the key).
        var named = ChatTemplate.NamedBeside(chatTemplate, tokenizer)
            .Select(t => (Name: new string([.. t.Name.Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_')]), t.Template)).ToList();
        foreach (var (templateName, template) in named) writer.Add($"tokenizer.chat_template.{templateName}", template);
        if (named.Count > 0) writer.Add("tokenizer.chat_templates", [.. named.Select(t => t.Name)]);
    }

    /// <summary>GGUF can say only that a prompt starts with bos_token or ends with eos_token.</summary>
    static bool Adds(IReadOnlyList<int> added, int? id, string token, string where) => added switch
    {
        [] => false,
        [var only] when only == id => true,
        _ => throw new StratusUserException($"GGUF cannot say that a prompt gets the tokens [{string.Join(", ", added)}] {where} it (only that it gets its {token}, {(id is { } i ? $"id {i}" : "which this tokenizer lacks")})"),
    };

    /// <summary>llama.cpp's name of Llama 3's rope scaling: each rotary frequency's divisor.</summary>
    internal const string RopeFrequencies = "rope_freqs.weight";

    /// <summary>The weights of a model of <paramref name="c"/> by their llama.cpp names and their
    /// Stratus (Hugging Face) ones, with the heads of the q/k rows llama.cpp's llama graph needs
    /// permuted (0 for the others): what export writes and import reads. GPT-2's biases are
    /// listed also for a model without them (llama.cpp's gpt2 graph always has them).</summary>
    internal static IEnumerable<(string Gguf, string Stratus, int PermutedHeads)> TensorNames(ModelConfig c)
    {
        if (c.Architecture == "gpt2")
        {
            yield return ("token_embd.weight", "transformer.wte.weight", 0);
            yield return ("position_embd.weight", "transformer.wpe.weight", 0);
            yield return ("output_norm.weight", "transformer.ln_f.weight", 0);
            yield return ("output_norm.bias", "transformer.ln_f.bias", 0);
            for (var i = 0; i < c.NLayer; i++)
            {
                foreach (var (gguf, stratus) in new[] { ("attn_norm", "ln_1"), ("attn_qkv", "attn.c_attn"), ("attn_output", "attn.c_proj"), ("ffn_norm", "ln_2"), ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj") })
                {
                    yield return ($"blk.{i}.{gguf}.weight", $"transformer.h.{i}.{stratus}.weight", 0);
                    yield return ($"blk.{i}.{gguf}.bias", $"transformer.h.{i}.{stratus}.bias", 0);
                }
            }
            yield break;
        }
        yield return ("token_embd.weight", "model.embed_tokens.weight", 0);
        yield return ("output_norm.weight", "model.norm.weight", 0);
        if (!c.TieWordEmbeddings) yield return ("output.weight", "lm_head.weight", 0);
        for (var i = 0; i < c.NLayer; i++)
        {
            var p = $"model.layers.{i}.";
            var b = $"blk.{i}.";
            yield return (b + "attn_norm.weight", p + "input_layernorm.weight", 0);
            foreach (var part in c.AttentionBias ? new[] { "weight", "bias" } : ["weight"])
            {
                yield return ($"{b}attn_q.{part}", $"{p}self_attn.q_proj.{part}", c.NHead);
                yield return ($"{b}attn_k.{part}", $"{p}self_attn.k_proj.{part}", c.KvHeads);
                yield return ($"{b}attn_v.{part}", $"{p}self_attn.v_proj.{part}", 0);
            }
            yield return (b + "attn_output.weight", p + "self_attn.o_proj.weight", 0);
            yield return (b + "ffn_norm.weight", p + "post_attention_layernorm.weight", 0);
            yield return (b + "ffn_gate.weight", p + "mlp.gate_proj.weight", 0);
            yield return (b + "ffn_up.weight", p + "mlp.up_proj.weight", 0);
            yield return (b + "ffn_down.weight", p + "mlp.down_proj.weight", 0);
        }
    }

    static (string, long[], Func<float[]>) Take(Dictionary<string, Tensor> w, string ggufName, string name)
    {
        var tensor = w[name];
        return (ggufName, tensor.shape, () => Values(tensor));
    }

    /// <summary>Zeros for a bias the model lacks, as many as its weight has rows (outputs).</summary>
    static (string, long[], Func<float[]>) ZeroBias(Dictionary<string, Tensor> w, string ggufName, string name)
    {
        var size = w[name[..^".bias".Length] + ".weight"].shape[0];
        return (ggufName, [size], () => new float[size]);
    }

    /// <summary>Rows of each head reordered from [first half, second half] to interleaved pairs:
    /// HF row h*D + s*D/2 + j becomes h*D + 2j + s.</summary>
    static (string, long[], Func<float[]>) Permuted(Dictionary<string, Tensor> w, string ggufName, string name, int heads)
    {
        var tensor = w[name];
        return (ggufName, tensor.shape, () =>
        {
            using var scope = NewDisposeScope();
            var rows = tensor.shape[0];
            var rest = tensor.shape.Skip(1).ToArray();
            var permuted = tensor.reshape([heads, 2, rows / heads / 2, .. rest]).transpose(1, 2).reshape(tensor.shape);
            return Values(permuted);
        });
    }

    static float[] Values(Tensor tensor)
    {
        using var f32 = tensor.detach().to(ScalarType.Float32).cpu().contiguous();
        return f32.data<float>().ToArray();
    }
}
