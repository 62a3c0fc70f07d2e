// `stratus import gguf`: a GGUF file (llama.cpp's; most models on the Hugging Face Hub ship as
// Q4_K_M, Q5_K_M or Q8_0 ones) becomes a Stratus checkpoint, as Hugging Face transformers loads
// one (from_pretrained(..., gguf_file=...)): every tensor dequantized to f32, the model's config
// from the architecture's metadata, and a Hugging Face tokenizer rebuilt from the vocabulary the
// file carries (GgufVocabulary). Architectures: llama (Llama 2/3, Mistral, SmolLM, TinyLlama),
// qwen2 and gpt2, the ones `import hf` takes that GGUF names. llama.cpp's llama graph rotates
// interleaved pairs, so its q/k rows were permuted per head when the file was made (GgufExport,
// convert_hf_to_gguf.py); they are put back in Hugging Face's order. qwen2's were never permuted.
using System.Runtime.InteropServices;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Formats;

public static class GgufImport
{
    public static ImportedModel Import(string ggufPath, string runDirectory)
    {
        if (Directory.Exists(ggufPath)) throw new StratusUserException($"{ggufPath} is a folder; pass a .gguf file (a Hugging Face model folder is `import hf`'s)");
        var file = GgufFile.Read(ggufPath);
        var checkpoint = ImportedModel.CheckpointIn(runDirectory);
        var metadata = new GgufMetadata(file);
        var tensors = new Dictionary<string, (string Name, long[] Dims, GgmlType Type, long Offset)>(StringComparer.Ordinal);
        foreach (var tensor in file.Tensors)
            if (!tensors.TryAdd(tensor.Name, tensor)) throw new StratusUserException($"{ggufPath} is not a valid GGUF file: it lists tensor {tensor.Name} twice");

        var architecture = metadata.Text("general.architecture") ?? throw metadata.Missing("general.architecture");
        var config = ToModelConfig(metadata, architecture, tensors);
        var names = GgufExport.TensorNames(config).ToDictionary(t => t.Stratus, StringComparer.Ordinal);
        CheckTensors(file, config, architecture, names, tensors);
        var tokenizer = GgufVocabulary.Tokenizer(metadata, config.VocabSize);

        using var model = ReadModel(file, config, architecture == "llama", names, tensors);
        if (architecture == "gpt2" && tensors.TryGetValue("output.weight", out var head))
            TiedHead.Require(file.Path, model.state_dict()["transformer.wte.weight"], ("token_embd.weight", tensors["token_embd.weight"].Type), (head.Name, head.Type),
                (start, values) => file.ReadValues(head, values, start));
        var extra = new Dictionary<string, string>();
        if (tokenizer.ChatTemplate is { } template) extra[ChatTemplate.FileName] = template;
        Checkpoint.Save(checkpoint, model, tokenizer, extraFiles: extra);
        var types = string.Join(", ", file.Tensors.Select(t => t.Type).Distinct().Order().Select(GgmlTypes.Name));
        return new ImportedModel(checkpoint, config, tokenizer, $"GGUF {architecture} ({types})", extra.Count > 0);
    }

    static ModelConfig ToModelConfig(GgufMetadata m, string architecture, Dictionary<string, (string Name, long[] Dims, GgmlType Type, long Offset)> tensors)
    {
        var p = architecture + ".";
        int Int(string key) => m.Int(p + key) ?? throw m.Missing(p + key);
        // Every row of token_embd is a token of tokenizer.ggml.tokens (llama.cpp requires it).
        var tokens = m.Strings("tokenizer.ggml.tokens")?.Length;
        var vocab = m.Int(p + "vocab_size") ?? tokens ?? throw m.Missing("tokenizer.ggml.tokens");
        if (tokens is { } count && count != vocab)
            throw new StratusUserException($"{m.Path}: {p}vocab_size is {vocab} but tokenizer.ggml.tokens lists {count} tokens; the file's vocabulary does not describe its model");
        ModelConfig config;
        switch (architecture)
        {
            case "gpt2":
                config = new ModelConfig
                {
                    Architecture = "gpt2", VocabSize = vocab, BlockSize = Int("context_length"), NLayer = Int("block_count"), NHead = Int("attention.head_count"),
                    NEmbd = Int("embedding_length"), IntermediateSize = Int("feed_forward_length"), Bias = true,
                    // llama.cpp's gpt2 graph computes GELU's tanh approximation, GPT-2's own.
                    HiddenAct = "gelu_new", LayerNormEps = m.Number(p + "attention.layer_norm_epsilon") ?? 1e-5,
                };
                break;
            case "llama" or "qwen2":
                if (m.Int(p + "expert_count") is > 0 and var experts)
                    throw new StratusUserException($"{m.Path}: {p}expert_count is {experts}: mixture-of-experts models (Mixtral) are not supported");
                if (m.Text(p + "rope.scaling.type") is { } scalingType and not "none")
                    throw new StratusUserException($"{m.Path}: {p}rope.scaling.type '{scalingType}' is not supported (Llama 3's scaling, a rope_freqs tensor, is)");
                var heads = Int("attention.head_count");
                var embedding = Int("embedding_length");
                var ropeTheta = m.Number(p + "rope.freq_base") ?? 10000.0;
                // Llama 3's scaling travels as its result, each frequency's divisor: the settings
                // that give it are found again.
                RopeScaling? scaling = null;
                if (architecture == "llama" && tensors.TryGetValue(GgufExport.RopeFrequencies, out var freqs) && heads > 0)
                    scaling = FitRopeScaling(m.Path, ReadValues(m.File, freqs), ropeTheta, embedding / heads);
                config = new ModelConfig
                {
                    Architecture = "llama", VocabSize = vocab, BlockSize = Int("context_length"), NLayer = Int("block_count"), NHead = heads,
                    NKvHead = m.Int(p + "attention.head_count_kv") ?? heads, NEmbd = embedding, IntermediateSize = Int("feed_forward_length"), Bias = false,
                    RopeTheta = ropeTheta, RopeScaling = scaling, RmsNormEps = m.Number(p + "attention.layer_norm_rms_epsilon") ?? throw m.Missing(p + "attention.layer_norm_rms_epsilon"),
                    // A file without output.weight ties the head to the embeddings, as llama.cpp reads it.
                    TieWordEmbeddings = !tensors.ContainsKey("output.weight"), AttentionBias = tensors.ContainsKey("blk.0.attn_q.bias"),
                };
                break;
            default:
                throw new StratusUserException($"{m.Path}: architecture '{architecture}' is not supported; import gguf reads llama (Llama 2/3, Mistral, SmolLM, TinyLlama), qwen2 and gpt2");
        }
        // Before any size is used: a head count of 0 would divide by zero below.
        config.Validate(file: m.Path);
        if (config.Architecture == "llama")
        {
            foreach (var key in new[] { "rope.dimension_count", "attention.key_length", "attention.value_length" })
            {
                if (m.Int(p + key) is { } size && size != config.HeadDim)
                    throw new StratusUserException($"{m.Path}: {p}{key} is {size}, not the head size {config.HeadDim} (embedding_length / head_count); such models are not supported");
            }
        }
        return config;
    }

    /// <summary>Llama 3's rope_scaling from the divisors llama.cpp keeps (rope_freqs). The
    /// divisors fix factor (the largest) and, where some fall between 1 and it, the band's
    /// line; scaling original_max_position_embeddings, low_freq_factor and high_freq_factor
    /// together changes nothing. Llama 3's own low 1 and high 4 are tried first, then a fit of
    /// the band through two of its frequencies; the settings found must give every divisor.</summary>
    static RopeScaling FitRopeScaling(string path, float[] divisors, double theta, int headDim)
    {
        if (divisors.Length != headDim / 2)
            throw new StratusUserException($"{path}: {GgufExport.RopeFrequencies} has {divisors.Length} values, not one per rotary frequency ({headDim / 2})");
        var factor = (double)divisors.Max();
        double Wavelength(int i) => 2 * Math.PI * Math.Pow(theta, 2.0 * i / headDim);
        // smooth = (original / wavelength - low) / (high - low), from divisor = 1 / ((1 - smooth) / factor + smooth).
        double Smooth(int i) => (1 / divisors[i] - 1 / factor) / (1 - 1 / factor);
        var band = Enumerable.Range(0, divisors.Length).Where(i => divisors[i] > 1 + 1e-6 && divisors[i] < factor * (1 - 1e-6)).ToList();
        var candidates = new List<RopeScaling>();
        // Low 1 and high 4: original from a frequency in the band, else just past the longest kept wavelength.
        var original = band.Count > 0 ? (3 * Smooth(band[0]) + 1) * Wavelength(band[0])
            : Enumerable.Range(0, divisors.Length).Where(i => divisors[i] <= 1 + 1e-6).Select(i => 4 * Wavelength(i)).DefaultIfEmpty(0).Max() + 1;
        candidates.Add(new RopeScaling { Factor = factor, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = (int)Math.Round(original) });
        if (band.Count >= 2)
        {
            // smooth = a / wavelength + b with a = original / (high - low), b = -low / (high - low).
            var (i, j) = (band[0], band[^1]);
            var a = (Smooth(i) - Smooth(j)) / (1 / Wavelength(i) - 1 / Wavelength(j));
            var b = Smooth(i) - a / Wavelength(i);
            const int fitted = 8192;
            var width = fitted / a;
            candidates.Add(new RopeScaling { Factor = factor, LowFreqFactor = -b * width, HighFreqFactor = -b * width + width, OriginalMaxPositionEmbeddings = fitted });
        }
        foreach (var scaling in candidates)
        {
            if (scaling.Problem() is null && scaling.FrequencyDivisors(theta, headDim).Zip(divisors).All(d => Math.Abs(d.First - d.Second) <= 1e-5 * d.Second))
                return scaling;
        }
        throw new StratusUserException($"{path}: {GgufExport.RopeFrequencies} holds frequency divisors that are not Llama 3's rope scaling; such models are not supported");
    }

    /// <summary>Every weight the config implies must be in the file with its shape and of a type
    /// Stratus reads, and every tensor of the file must be read, before a model is allocated: a
    /// file whose metadata says less than its tensors hold would import cut down.</summary>
    static void CheckTensors(GgufFile file, ModelConfig config, string architecture, Dictionary<string, (string Gguf, string Stratus, int PermutedHeads)> names,
        Dictionary<string, (string Name, long[] Dims, GgmlType Type, long Offset)> tensors)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, shape) in CausalLanguageModel.ImpliedWeights(config))
        {
            var gguf = names[name].Gguf;
            used.Add(gguf);
            if (!tensors.TryGetValue(gguf, out var tensor))
                throw new StratusUserException($"{file.Path} has no tensor {gguf}, which its metadata implies (shape [{string.Join(", ", shape)}]); its metadata does not describe its tensors");
            // GGUF lists dimensions innermost first.
            var dims = tensor.Dims.Reverse().ToArray();
            if (!dims.SequenceEqual(shape))
                throw new StratusUserException($"{file.Path}: tensor {gguf} has shape [{string.Join(", ", dims)}] but the metadata implies [{string.Join(", ", shape)}]");
            if (!GgmlDequantize.Readable.Contains(tensor.Type))
                throw new StratusUserException($"{file.Path}: tensor {gguf} is {GgmlTypes.Name(tensor.Type)}, which Stratus cannot dequantize " +
                    $"(it reads {string.Join(", ", GgmlDequantize.Readable.Select(GgmlTypes.Name))}); use a file of those types, such as a Q4_K_M, Q5_K_M, Q6_K or Q8_0 one");
        }
        // Read otherwise: Llama 3's rope divisors (into the config), and the copy of GPT-2's
        // embeddings convert_hf_to_gguf.py writes as its head (TiedHead.Require).
        if (config.RopeScaling is not null) used.Add(GgufExport.RopeFrequencies);
        if (architecture == "gpt2" && tensors.TryGetValue("output.weight", out var head))
        {
            used.Add(head.Name);
            var embeddings = tensors["token_embd.weight"];
            if (!head.Dims.SequenceEqual(embeddings.Dims))
                throw new StratusUserException($"{file.Path}: tensor output.weight has shape [{string.Join(", ", head.Dims.Reverse())}], not token_embd.weight's [{string.Join(", ", embeddings.Dims.Reverse())}]; a GPT-2's head is its token embeddings");
            if (!GgmlDequantize.Readable.Contains(head.Type))
                throw new StratusUserException($"{file.Path}: tensor output.weight is {GgmlTypes.Name(head.Type)}, which Stratus cannot dequantize");
        }
        if (tensors.Keys.Where(n => !used.Contains(n)).Order(StringComparer.Ordinal).FirstOrDefault() is { } unused)
            throw new StratusUserException($"{file.Path}: tensor {unused} is not part of the {architecture} model its metadata describes; its metadata does not describe its tensors");
    }

    /// <summary>The model with the file's weights, dequantized into its parameters' memory (a
    /// permuted one through a tensor of its size).</summary>
    static CausalLanguageModel ReadModel(GgufFile file, ModelConfig config, bool permuted, Dictionary<string, (string Gguf, string Stratus, int PermutedHeads)> names,
        Dictionary<string, (string Name, long[] Dims, GgmlType Type, long Offset)> tensors) =>
        CausalLanguageModel.Load(config, names.Values.Select(n => (n.Stratus, (Action<Tensor>)(parameter =>
        {
            if (!(permuted && n.PermutedHeads > 0))
            {
                ReadInto(file, tensors[n.Gguf], parameter);
                return;
            }
            var value = empty(parameter.shape);
            ReadInto(file, tensors[n.Gguf], value);
            // GgufExport's permutation undone: per head, the interleaved pairs back into halves.
            var rows = value.shape[0];
            var rest = value.shape.Skip(1).ToArray();
            parameter.copy_(value.reshape([n.PermutedHeads, rows / n.PermutedHeads / 2, 2, .. rest]).transpose(1, 2).reshape(parameter.shape));
        }))));

    static float[] ReadValues(GgufFile file, (string Name, long[] Dims, GgmlType Type, long Offset) tensor)
    {
        var values = new float[tensor.Dims.Aggregate(1L, (a, b) => a * b)];
        file.ReadValues(tensor, values);
        return values;
    }

    /// <summary>A tensor of the file into a contiguous f32 CPU tensor of its size (a model's
    /// parameter as CausalLanguageModel.Create makes it), in pieces of whole rows that a span
    /// can hold (a large vocabulary's embeddings take more than 2 GB).</summary>
    static void ReadInto(GgufFile file, (string Name, long[] Dims, GgmlType Type, long Offset) tensor, Tensor into)
    {
        var rowLength = into.dim() == 1 ? into.numel() : into.numel() / into.shape[0];
        var rowsPerPiece = into.dim() == 1 ? 1 : Math.Max(1, (1 << 28) / rowLength);
        var rows = into.dim() == 1 ? 1 : into.shape[0];
        for (var row = 0L; row < rows; row += rowsPerPiece)
        {
            using var piece = into.dim() == 1 ? into.alias() : into.narrow(0, row, Math.Min(rowsPerPiece, rows - row));
            file.ReadValues(tensor, MemoryMarshal.Cast<byte, float>(piece.bytes), row * rowLength);
        }
    }
}

/// <summary>A GGUF file's metadata, each key read as the kind it must hold: absent is null,
/// another kind an error naming the file and the key.</summary>
sealed class GgufMetadata(GgufFile file)
{
    public GgufFile File => file;
    public string Path => file.Path;

    public string? Text(string key) => Read(key, "text", v => v as string);
    public bool? Flag(string key) => Read<bool?>(key, "true or false", v => v as bool?);

    public int? Int(string key) => Read<int?>(key, "a whole number", v => Whole(v) is { } n && n is >= int.MinValue and <= int.MaxValue ? (int)n : null);

    public double? Number(string key) => Read<double?>(key, "a number", v => v switch { float f => f, double d => d, _ => Whole(v) });

    public string[]? Strings(string key) => Read(key, "a list of text", v => v is object[] list && list.All(x => x is string) ? list.Cast<string>().ToArray() : null);
    public float[]? Floats(string key) => Read(key, "a list of numbers", v => v is object[] list && list.All(x => x is float) ? list.Cast<float>().ToArray() : null);
    public int[]? Ints(string key) => Read(key, "a list of whole numbers", v => v is object[] list && list.All(x => Whole(x) is >= int.MinValue and <= int.MaxValue) ? list.Select(x => (int)Whole(x)!.Value).ToArray() : null);

    public StratusUserException Missing(string key) => new($"{file.Path} has no {key}, which import gguf needs; it is not a complete llama.cpp model file");

    static long? Whole(object value) => value switch
    {
        byte b => b, sbyte b => b, ushort s => s, short s => s, uint u => u, int i => i, ulong u when u <= long.MaxValue => (long)u, long l => l,
        _ => null,
    };

    T? Read<T>(string key, string kind, Func<object, T?> convert)
    {
        if (!file.Metadata.TryGetValue(key, out var value)) return default;
        return convert(value) is { } read ? read : throw new StratusUserException($"{file.Path}: {key} must be {kind}, got {Shown(value)}");
    }

    static string Shown(object value)
    {
        var shown = value is object[] list ? $"a list of {list.Length}" : Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "";
        return shown.Length > 60 ? shown[..60] + "..." : shown;
    }
}
