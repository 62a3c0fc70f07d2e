// Hugging Face model folders in and out: config.json, model.safetensors (or sharded
// model-*.safetensors with model.safetensors.index.json), tokenizer.json, tokenizer_config.json
// and generation_config.json (its eos_token_id). Import builds a Stratus checkpoint
// (run-dir/checkpoints/best) for GPT2LMHeadModel and Llama-compatible models (Llama 2/3, SmolLM,
// TinyLlama, Mistral, Qwen2); export writes the same layout back. HF GPT-2 stores its
// projections as Conv1D ([in, out]), the transpose of nn.Linear, so those weights are transposed
// both ways.
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Formats;

public sealed record ImportedModel(string CheckpointDirectory, ModelConfig Config, ITokenizer Tokenizer, string SourceArchitecture, bool HasChatTemplate)
{
    /// <summary>Where an import into <paramref name="runDirectory"/> puts its model
    /// (checkpoints/best), refused where the folder holds a dataset or a model already: the
    /// import would replace checkpoints/best and leave the rest (a trained run's
    /// checkpoints/last), a folder holding two models that resume, sample and serve would each
    /// pick one of.</summary>
    public static string CheckpointIn(string runDirectory)
    {
        var checkpoints = Path.Combine(runDirectory, "checkpoints");
        DatasetFolder.RequireNoDatasetIn(runDirectory, "run");
        if (Checkpoint.Exists(runDirectory))
            throw new StratusUserException($"{runDirectory} already holds a model in {checkpoints}; choose another --out or remove {runDirectory} first");
        return Path.Combine(checkpoints, "best");
    }
}

public static class HuggingFace
{
    static readonly string[] Conv1DWeights = ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

    // ---------------- import ----------------

    public static ImportedModel Import(string hfDirectory, string runDirectory)
    {
        if (File.Exists(hfDirectory)) throw new StratusUserException($"{hfDirectory} is a file; pass the Hugging Face model folder that holds config.json, *.safetensors and tokenizer.json");
        if (!Directory.Exists(hfDirectory)) throw new StratusUserException($"{hfDirectory} does not exist; pass a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)");
        var checkpoint = ImportedModel.CheckpointIn(runDirectory);
        var hfConfig = ReadObject(hfDirectory, "config.json", required: true)!;
        var (config, architecture) = ToModelConfig(hfConfig, hfDirectory);
        var tokenizerJson = ReadObject(hfDirectory, "tokenizer.json", required: true)!;
        var tokenizerConfig = WithTemplateFiles(hfDirectory, ReadObject(hfDirectory, "tokenizer_config.json", required: false));
        var tokenizer = HfTokenizer.FromHuggingFace(tokenizerJson, tokenizerConfig, config.VocabSize,
            EndOfGenerationIds(hfDirectory, hfConfig, config.VocabSize), Path.Combine(hfDirectory, "tokenizer.json"), Path.Combine(hfDirectory, "tokenizer_config.json"));
        if (tokenizer.VocabSize > config.VocabSize)
            throw new StratusUserException($"{hfDirectory}: tokenizer.json has {tokenizer.VocabSize} tokens but config.json's vocab_size is {config.VocabSize} " +
                "(only pieces of characters, byte-level tokens that are not whole UTF-8 text, may be listed past it)");

        // transformers' GPT2LMHeadModel computes with lm_head.weight apart only where config.json
        // unties it; tied (its default), the stored head is replaced by the embeddings, as here.
        var ownHead = config.Architecture == "gpt2" && new ConfigValues(hfConfig, Path.Combine(hfDirectory, "config.json")).Flag("tie_word_embeddings") == false;
        using var model = ReadModel(hfDirectory, config, ownHead);

        var extra = new Dictionary<string, string>();
        if (tokenizer.ChatTemplate is { } template) extra[ChatTemplate.FileName] = template;
        Checkpoint.Save(checkpoint, model, tokenizer, extraFiles: extra);
        return new ImportedModel(checkpoint, config, tokenizer, architecture, extra.Count > 0);
    }

    /// <summary>tokenizer_config.json with the folder's template files in it, as transformers
    /// loads them (where save_pretrained has written templates since transformers 4.47):
    /// chat_template.jinja over its chat_template, and each additional_chat_templates/NAME.jinja
    /// a template named NAME beside it (tool_use: Hermes' and Command-R's chats with tools).</summary>
    static JsonObject? WithTemplateFiles(string hfDirectory, JsonObject? tokenizerConfig)
    {
        var additional = Path.Combine(hfDirectory, "additional_chat_templates");
        var named = Directory.Exists(additional) ? Directory.GetFiles(additional, "*.jinja").Order(StringComparer.Ordinal).ToList() : [];
        var own = ChatTemplate.Find(hfDirectory);
        if (own is null && named.Count == 0) return tokenizerConfig;
        var config = (JsonObject?)tokenizerConfig?.DeepClone() ?? [];
        if (own is not null) config["chat_template"] = own;
        if (named.Count == 0) return config;
        // A list of named templates, the default first, as tokenizer_config.json writes several.
        var templates = config["chat_template"] switch
        {
            JsonArray list => new JsonArray([.. list.Select(t => t?.DeepClone())]),
            JsonValue single => [new JsonObject { ["name"] = "default", ["template"] = single.DeepClone() }],
            _ => [],
        };
        foreach (var path in named)
        {
            FileBytes.RequireRegular(path);
            var name = Path.GetFileNameWithoutExtension(path);
            foreach (var same in templates.OfType<JsonObject>().Where(t => t["name"] is JsonValue v && v.TryGetValue<string>(out var n) && n == name).ToList()) templates.Remove(same);
            templates.Add(new JsonObject { ["name"] = name, ["template"] = File.ReadAllText(path) });
        }
        config["chat_template"] = templates;
        return config;
    }

    /// <summary>The ids that end a generation as vLLM reads them: generation_config.json's
    /// eos_token_id, then config.json's (each a token id or a list of them; Llama 3.1 Instruct
    /// lists &lt;|end_of_text|&gt;, &lt;|eom_id|&gt; and &lt;|eot_id|&gt;, while its tokenizer's
    /// eos_token is &lt;|eot_id|&gt; alone).</summary>
    static List<int> EndOfGenerationIds(string hfDirectory, JsonObject hfConfig, int vocabSize)
    {
        var ids = new List<int>();
        foreach (var (name, json) in new[] { ("generation_config.json", ReadObject(hfDirectory, "generation_config.json", required: false)), ("config.json", hfConfig) })
        {
            if (json is null) continue;
            foreach (var id in new ConfigValues(json, Path.Combine(hfDirectory, name)).TokenIds("eos_token_id", vocabSize))
                if (!ids.Contains(id)) ids.Add(id);
        }
        return ids;
    }

    static bool IsConv1D(string name) => Conv1DWeights.Any(name.EndsWith);

    /// <summary>Tensors Hugging Face files may hold besides the weights: buffers that the model
    /// computes (GPT-2's causal masks, Llama's rotary frequencies) and the output projection of a
    /// model that ties it to the token embeddings.</summary>
    static bool IsNonParameter(string name, ModelConfig config) =>
        name.EndsWith(".attn.bias", StringComparison.Ordinal) || name.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
        || name.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal)
        || (name == "lm_head.weight" && (config.Architecture == "gpt2" || config.TieWordEmbeddings));

    /// <summary>The model of <paramref name="config"/> with the folder's weights. Every weight the
    /// config implies is checked by name and shape against the safetensors headers before the
    /// model is allocated: a config.json that claims more layers or a wider model than its
    /// weights would otherwise have that model allocated first. A GPT-2 of
    /// <paramref name="ownHead"/> (tie_word_embeddings false) must hold its head, lm_head.weight,
    /// as a copy of its token embeddings: Stratus's GPT-2 ties the two (TiedHead.Require).</summary>
    static CausalLanguageModel ReadModel(string hfDirectory, ModelConfig config, bool ownHead)
    {
        const string Head = "lm_head.weight";
        using var reader = new ShardedReader(hfDirectory);
        bool Transposed(string name) => config.Architecture == "gpt2" && IsConv1D(name);
        string FileName(string name) => config.Architecture == "gpt2" ? reader.Gpt2Name(name) : name;
        var used = new HashSet<string>(StringComparer.Ordinal);
        var implied = CausalLanguageModel.ImpliedWeights(config);
        foreach (var (name, impliedShape) in implied)
        {
            var hfName = FileName(name);
            used.Add(hfName);
            var shape = Transposed(name) ? impliedShape.Reverse().ToArray() : impliedShape;
            if (reader.Entry(hfName) is not (var file, var entry))
                throw new StratusUserException($"{hfDirectory} has no weight '{hfName}', which config.json implies (shape [{string.Join(", ", shape)}]); config.json does not describe these weights");
            if (!entry.Shape.SequenceEqual(shape))
                throw new StratusUserException($"{hfDirectory}: weight '{hfName}' in {file} has shape [{string.Join(", ", entry.Shape)}] but config.json implies [{string.Join(", ", shape)}]");
        }
        var embeddingsName = FileName("transformer.wte.weight");
        GgmlType StoredType(string name) => reader.Entry(name)!.Value.Entry.DType is var dtype && TiedHead.Stored(dtype) is { } type ? type
            : throw new StratusUserException($"{hfDirectory}: weight '{name}' is {dtype}; a model's weights are float64, float32, float16 or bfloat16");
        // The two types the head is compared in, once the model holds the embeddings.
        (GgmlType Embeddings, GgmlType Head)? headTypes = null;
        if (ownHead)
        {
            used.Add(Head);
            var embeddings = reader.Entry(embeddingsName)!.Value.Entry;
            if (reader.Entry(Head) is not (var file, var entry))
                throw new StratusUserException($"{hfDirectory}: config.json sets tie_word_embeddings false but the safetensors files hold no '{Head}'; set it true if the model's head is its token embeddings");
            if (!entry.Shape.SequenceEqual(embeddings.Shape))
                throw new StratusUserException($"{hfDirectory}: weight '{Head}' in {file} has shape [{string.Join(", ", entry.Shape)}], not {embeddingsName}'s [{string.Join(", ", embeddings.Shape)}]; a GPT-2's head is its token embeddings");
            headTypes = (StoredType(embeddingsName), StoredType(Head));
        }
        // The other way round: weights the model would not read mean config.json describes a
        // smaller model than the files hold (fewer layers), which would import cut down.
        var unused = reader.Names.Where(n => !used.Contains(n) && !IsNonParameter(n, config)).Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw new StratusUserException($"{hfDirectory}: {unused.Count} weight(s) in the safetensors files are not part of the model config.json describes, such as '{unused[0]}' in {reader.Entry(unused[0])!.Value.File}; config.json does not describe these weights");
        var model = CausalLanguageModel.Load(config, implied.Select(w => (w.Name, (Action<Tensor>)(parameter =>
        {
            var saved = reader.Read(FileName(w.Name));
            parameter.copy_(Transposed(w.Name) ? saved.t() : saved);
        }))));
        if (headTypes is not { } types) return model;
        try
        {
            using var head = reader.Read(Head);
            using var flat = head.view(-1);
            TiedHead.Require(hfDirectory, model.state_dict()["transformer.wte.weight"], (embeddingsName, types.Embeddings), (Head, types.Head),
                (start, values) =>
                {
                    using var piece = flat.narrow(0, start, values.Length);
                    MemoryMarshal.Cast<byte, float>(piece.bytes).CopyTo(values);
                });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    static (ModelConfig Config, string Architecture) ToModelConfig(JsonObject json, string directory)
    {
        var path = Path.Combine(directory, "config.json");
        var c = new ConfigValues(json, path);
        var modelType = c.Text("model_type") ?? "";
        // A label only (messages and the import summary): a list that does not start with a name falls back to model_type.
        var architecture = (json["architectures"] as JsonArray)?.FirstOrDefault() is JsonValue first && first.TryGetValue<string>(out var name) ? name : modelType;
        int Int(string key, int? fallback = null) => c.Int(key) ?? fallback ?? throw new StratusUserException($"{directory}/config.json has no '{key}'");
        ModelConfig config;
        switch (modelType)
        {
            case "gpt2":
                var activation = c.Text("activation_function") ?? "gelu_new";
                if (activation is not ("gelu_new" or "gelu")) throw new StratusUserException($"{directory}: GPT-2 activation '{activation}' is not supported (gelu_new or gelu)");
                config = new ModelConfig
                {
                    Architecture = "gpt2", VocabSize = Int("vocab_size"), BlockSize = Int("n_positions"), NLayer = Int("n_layer"), NHead = Int("n_head"),
                    NEmbd = Int("n_embd"), Bias = true, IntermediateSize = c.Int("n_inner"), HiddenAct = activation,
                    LayerNormEps = c.Number("layer_norm_epsilon") ?? 1e-5,
                };
                break;
            case "llama" or "mistral" or "qwen2":
                if (modelType != "qwen2" && (c.Flag("attention_bias") ?? false))
                    throw new StratusUserException($"{directory}: attention_bias on a {modelType} model (biases on o_proj too) is not supported");
                if (c.Flag("mlp_bias") ?? false) throw new StratusUserException($"{directory}: mlp_bias is not supported");
                if (c.Text("hidden_act") is { } act && act != "silu") throw new StratusUserException($"{directory}: hidden_act '{act}' is not supported (silu)");
                var context = Int("max_position_embeddings", 2048);
                // Mistral's sliding window only matters beyond its width: cap the context there so
                // full attention is exactly what the model computes.
                if (c.Int("sliding_window") is { } window && window > 0 && (c.Flag("use_sliding_window") ?? true)) context = Math.Min(context, window);
                var heads = Int("num_attention_heads");
                config = new ModelConfig
                {
                    Architecture = "llama", VocabSize = Int("vocab_size"), BlockSize = context, NLayer = Int("num_hidden_layers"), NHead = heads,
                    NKvHead = Int("num_key_value_heads", heads), NEmbd = Int("hidden_size"), IntermediateSize = Int("intermediate_size"), Bias = false,
                    RopeTheta = c.Number("rope_theta") ?? 10000.0, RopeScaling = ParseRopeScaling(c.Object("rope_scaling"), directory),
                    RmsNormEps = c.Number("rms_norm_eps") ?? 1e-6, TieWordEmbeddings = c.Flag("tie_word_embeddings") ?? false,
                    AttentionBias = modelType == "qwen2",
                };
                break;
            default:
                throw new StratusUserException($"{directory}: unsupported architecture '{architecture}' (model_type '{modelType}'); supported: GPT2LMHeadModel and Llama-compatible models (llama, mistral, qwen2)");
        }
        // Before any size is used: a head count of 0 would divide by zero below, and sizes no
        // model has would be allocated.
        config.Validate(file: path);
        if (config.Architecture == "llama" && c.Int("head_dim") is { } headDim && headDim != config.HeadDim)
            throw new StratusUserException($"{directory}: head_dim {headDim} differs from hidden_size / num_attention_heads; such models are not supported");
        return (config, architecture);
    }

    static RopeScaling? ParseRopeScaling(ConfigValues? s, string directory)
    {
        if (s is null) return null;
        var type = s.Text("rope_type") ?? s.Text("type");
        if (type is "default" or null) return null;
        if (type != "llama3") throw new StratusUserException($"{directory}: rope_scaling type '{type}' is not supported (llama3 only)");
        return new RopeScaling
        {
            Factor = s.Number("factor") ?? 8, LowFreqFactor = s.Number("low_freq_factor") ?? 1, HighFreqFactor = s.Number("high_freq_factor") ?? 4,
            OriginalMaxPositionEmbeddings = s.Int("original_max_position_embeddings") ?? 8192,
        };
    }

    /// <summary>The values of a config.json object, each read as the type its key needs: absent or
    /// null is null, another type an error naming the file and the key (a cast would throw an
    /// InvalidOperationException that says neither).</summary>
    sealed class ConfigValues(JsonObject json, string path, string keyPrefix = "")
    {
        public int? Int(string key) => Read<int>(key, "a whole number", out var value) ? value : null;
        public double? Number(string key) => Read<double>(key, "a number", out var value) ? value : null;
        public bool? Flag(string key) => Read<bool>(key, "true or false", out var value) ? value : null;
        public string? Text(string key) => Read<string>(key, "text", out var value) ? value : null;

        /// <summary>A token id or a list of them (eos_token_id), each below <paramref name="vocabSize"/>; empty where absent.</summary>
        public int[] TokenIds(string key, int vocabSize)
        {
            if (json[key] is not { } node) return [];
            JsonNode?[] items = node is JsonArray list ? [.. list] : [node];
            var ids = new int[items.Length];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = items[i] is JsonValue value && value.TryGetValue<int>(out var id) && id >= 0 && id < vocabSize ? id
                    : throw new StratusUserException($"{path}: {keyPrefix}{key} must be a token id (0 to {vocabSize - 1}) or a list of them, got {node.ToJsonString()}");
            }
            return ids;
        }

        /// <summary>A nested object's values (rope_scaling), null where absent or null.</summary>
        public ConfigValues? Object(string key) => json[key] switch
        {
            null => null,
            JsonObject inner => new(inner, path, $"{keyPrefix}{key}."),
            var other => throw new StratusUserException($"{path}: {keyPrefix}{key} must be an object, got {other.ToJsonString()}"),
        };

        bool Read<T>(string key, string kind, [MaybeNullWhen(false)] out T value)
        {
            value = default;
            if (json[key] is not { } node) return false;
            if (node is JsonValue scalar && scalar.TryGetValue<T>(out var read))
            {
                value = read;
                return true;
            }
            throw new StratusUserException($"{path}: {keyPrefix}{key} must be {kind}, got {node.ToJsonString()}");
        }
    }

    static JsonObject? ReadObject(string directory, string name, bool required)
    {
        var path = Path.Combine(directory, name);
        if (!File.Exists(path))
            return required ? throw new StratusUserException($"{directory} is missing {name}; a Hugging Face model folder needs config.json, model.safetensors (or shards with their index) and tokenizer.json") : null;
        // Duplicate keys refused while parsing: JsonObject would throw on them later, outside this catch.
        return JsonText.ParseFile(path, new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject ?? throw new StratusUserException($"{path} is not a JSON object");
    }

    /// <summary>Tensors by name across model.safetensors or the shards its index lists.</summary>
    sealed class ShardedReader : IDisposable
    {
        readonly Dictionary<string, SafeTensors.Reader> byName = new(StringComparer.Ordinal);
        readonly List<SafeTensors.Reader> readers = [];

        public ShardedReader(string directory)
        {
            IEnumerable<string> files;
            var index = Path.Combine(directory, "model.safetensors.index.json");
            if (File.Exists(Path.Combine(directory, "model.safetensors"))) files = [Path.Combine(directory, "model.safetensors")];
            else if (File.Exists(index))
            {
                var map = ReadObject(directory, "model.safetensors.index.json", true)!["weight_map"] as JsonObject
                    ?? throw new StratusUserException($"{index} has no weight_map");
                var shards = new ConfigValues(map, index, "weight_map.");
                files = map.Select(kv => Path.Combine(directory, ShardName(index, kv.Key, shards.Text(kv.Key)))).Distinct();
                foreach (var file in files)
                    if (!File.Exists(file)) throw new StratusUserException($"{directory} is missing {Path.GetFileName(file)}, listed in model.safetensors.index.json");
            }
            else throw new StratusUserException($"{directory} is missing model.safetensors (or model.safetensors.index.json with its shards)");
            try
            {
                foreach (var file in files)
                {
                    var reader = SafeTensors.Open(file);
                    readers.Add(reader);
                    foreach (var name in reader.Names)
                    {
                        // Which of the two the model would get would depend on the order the shards are read in.
                        if (byName.TryGetValue(name, out var other))
                            throw new StratusUserException($"{directory}: weight '{name}' is in both {Path.GetFileName(other.Path)} and {Path.GetFileName(file)}; a weight belongs to one shard");
                        byName[name] = reader;
                    }
                }
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        /// <summary>The shard an index entry names: a file of the model's folder, by its name, as
        /// Hugging Face writes them. A path ("../../x", "/home/...") would read weights from
        /// anywhere, a model made of files the user never named.</summary>
        static string ShardName(string index, string weight, string? name)
        {
            if (name is null) throw new StratusUserException($"{index}: weight_map.{weight} names no file");
            if (name.Length == 0 || name is "." or ".." || Path.GetFileName(name) != name)
                throw new StratusUserException($"{index}: weight_map.{weight} names '{name}', which is not a file name; shards are files of the model's folder, listed by name");
            return name;
        }

        /// <summary>Every tensor name in the files.</summary>
        public IEnumerable<string> Names => byName.Keys;

        /// <summary>HF GPT-2 files name weights with or without the "transformer." prefix.</summary>
        public string Gpt2Name(string name) => byName.ContainsKey(name) ? name : name.StartsWith("transformer.") ? name["transformer.".Length..] : name;

        /// <summary>The file holding tensor <paramref name="name"/> and its header entry, or null.</summary>
        public (string File, SafeTensors.Entry Entry)? Entry(string name) =>
            byName.TryGetValue(name, out var reader) ? (Path.GetFileName(reader.Path), reader.Entries[name]) : null;

        /// <summary>Tensor <paramref name="name"/> in fp32 (checked present by <see cref="Entry"/>).</summary>
        public Tensor Read(string name)
        {
            using var raw = byName[name].Read(name);
            return raw.to(ScalarType.Float32);
        }

        public void Dispose()
        {
            foreach (var reader in readers) reader.Dispose();
        }
    }

    // ---------------- export ----------------

    /// <summary>Writes a Stratus model as a Hugging Face folder with weights in the given dtype. A
    /// dataset's, run's or checkpoint's folder is refused: its tokenizer.json or model.safetensors
    /// would be replaced. The files are staged and placed together, config.json (what makes a
    /// folder a model to transformers and vLLM) last: an export killed or out of disk space
    /// half way leaves no folder that looks like a model but is not, and an earlier export
    /// there as it was until the files are placed.</summary>
    public static void Export(string modelPath, string outputDirectory, ScalarType dtype = ScalarType.Float32)
    {
        DatasetFolder.RequireNoDatasetIn(outputDirectory, "exported model");
        DatasetFolder.RequireNoModelIn(outputDirectory, "exported model");
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(modelPath));
        var c = checkpoint.ModelConfig;
        using var model = checkpoint.CreateModel();
        model.MergeAdapters();
        var tokenizer = checkpoint.Tokenizer;
        var vocabulary = BpeVocabulary.From(tokenizer);
        var dtypeName = dtype switch { ScalarType.Float32 => "float32", ScalarType.Float16 => "float16", ScalarType.BFloat16 => "bfloat16", _ => throw new StratusUserException($"unsupported dtype {dtype}") };

        using var files = new StagedFiles();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var (name, value) in model.state_dict())
            {
                if (name.StartsWith("lora.", StringComparison.Ordinal)) continue; // merged above
                var converted = c.Architecture == "gpt2" && IsConv1D(name) ? value.t().contiguous().to(dtype) : value.to(dtype);
                tensors.Add(new(name, converted));
            }
            // HF GPT-2 always has biases: a bias-free Stratus GPT-2 exports zeros, which compute the same.
            if (c.Architecture == "gpt2" && !c.Bias) tensors.AddRange(ZeroGpt2Biases(c, dtype));
            SafeTensors.Save(files, Path.Combine(outputDirectory, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }

        var eos = vocabulary.EosId;
        var bos = vocabulary.BosId ?? eos;
        var endOfGeneration = tokenizer.EndOfGenerationIds;
        var config = Path.Combine(outputDirectory, "config.json");
        files.WriteJson(config, HfConfig(c, bos, EosTokenId(endOfGeneration), dtypeName));
        // What vLLM and transformers' generate() read the eos ids from first.
        files.WriteJson(Path.Combine(outputDirectory, "generation_config.json"), new JsonObject { ["bos_token_id"] = bos, ["eos_token_id"] = EosTokenId(endOfGeneration) });
        var tokenizerJson = tokenizer is HfTokenizer hf ? hf.TokenizerJson : TokenizerJson(vocabulary);
        files.WriteJson(Path.Combine(outputDirectory, "tokenizer.json"), tokenizerJson);
        var tokenizerConfig = tokenizer is HfTokenizer { TokenizerConfig: { } original } ? (JsonObject)original.DeepClone() : new JsonObject
        {
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["bos_token"] = bos is { } b ? vocabulary.Tokens[b] : null,
            ["eos_token"] = eos is { } e ? vocabulary.Tokens[e] : null,
            ["model_max_length"] = c.BlockSize,
        };
        // The imported list of named templates (default and tool_use) stays as it came while its
        // default is the model's; another template replaces it.
        if (ChatTemplate.Find(checkpoint.Directory) is { } template && template != (tokenizer as HfTokenizer)?.ChatTemplate) tokenizerConfig["chat_template"] = template;
        files.WriteJson(Path.Combine(outputDirectory, "tokenizer_config.json"), tokenizerConfig);
        files.CommitAround(config, obsolete: []);
    }

    static IEnumerable<KeyValuePair<string, Tensor>> ZeroGpt2Biases(ModelConfig c, ScalarType dtype)
    {
        yield return new("transformer.ln_f.bias", zeros(c.NEmbd, dtype));
        for (var i = 0; i < c.NLayer; i++)
        {
            var p = $"transformer.h.{i}.";
            yield return new(p + "ln_1.bias", zeros(c.NEmbd, dtype));
            yield return new(p + "ln_2.bias", zeros(c.NEmbd, dtype));
            yield return new(p + "attn.c_attn.bias", zeros(3 * c.NEmbd, dtype));
            yield return new(p + "attn.c_proj.bias", zeros(c.NEmbd, dtype));
            yield return new(p + "mlp.c_fc.bias", zeros(c.MlpWidth, dtype));
            yield return new(p + "mlp.c_proj.bias", zeros(c.NEmbd, dtype));
        }
    }

    /// <summary>eos_token_id as Hugging Face writes it: one id as a number, several as a list.</summary>
    static JsonNode? EosTokenId(IReadOnlyList<int> ids) => ids.Count switch
    {
        0 => null,
        1 => ids[0],
        _ => new JsonArray([.. ids.Select(id => (JsonNode)id)]),
    };

    static JsonObject HfConfig(ModelConfig c, int? bos, JsonNode? eos, string dtype) => c.Architecture switch
    {
        "gpt2" => new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"), ["model_type"] = "gpt2", ["vocab_size"] = c.VocabSize,
            ["n_positions"] = c.BlockSize, ["n_ctx"] = c.BlockSize, ["n_embd"] = c.NEmbd, ["n_layer"] = c.NLayer, ["n_head"] = c.NHead,
            ["n_inner"] = c.IntermediateSize, ["activation_function"] = c.HiddenAct, ["layer_norm_epsilon"] = c.LayerNormEps,
            ["tie_word_embeddings"] = true, ["bos_token_id"] = bos, ["eos_token_id"] = eos, ["torch_dtype"] = dtype,
        },
        _ => new JsonObject
        {
            // q/k/v biases without an o_proj bias are Qwen2's layout; HF Llama's attention_bias
            // would add an o_proj bias too.
            ["architectures"] = new JsonArray(c.AttentionBias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"),
            ["model_type"] = c.AttentionBias ? "qwen2" : "llama", ["vocab_size"] = c.VocabSize, ["hidden_size"] = c.NEmbd,
            ["intermediate_size"] = c.MlpWidth, ["num_hidden_layers"] = c.NLayer, ["num_attention_heads"] = c.NHead,
            ["num_key_value_heads"] = c.KvHeads, ["max_position_embeddings"] = c.BlockSize, ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_theta"] = c.RopeTheta, ["hidden_act"] = "silu", ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["rope_scaling"] = c.RopeScaling is { } s ? new JsonObject
            {
                ["rope_type"] = s.RopeType, ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor, ["high_freq_factor"] = s.HighFreqFactor,
                ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings,
            } : null,
            ["bos_token_id"] = bos, ["eos_token_id"] = eos, ["torch_dtype"] = dtype,
        },
    };

    /// <summary>A byte-level BPE tokenizer.json (as Hugging Face's GPT-2 tokenizer) for a
    /// vocabulary, its pieces after its tokens: past config.json's vocab_size, as Hugging Face
    /// allows a tokenizer to list more tokens than the model has rows.</summary>
    public static JsonObject TokenizerJson(BpeVocabulary vocabulary)
    {
        var vocab = new JsonObject();
        var added = new JsonArray();
        for (var i = 0; i < vocabulary.Tokens.Count; i++)
        {
            if (vocabulary.Special.Contains(i))
                added.Add(new JsonObject { ["id"] = i, ["content"] = vocabulary.Tokens[i], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
            vocab[vocabulary.Tokens[i]] = i;
        }
        for (var i = 0; i < vocabulary.Pieces.Count; i++) vocab[vocabulary.Pieces[i]] = vocabulary.Tokens.Count + i;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            // The vocabularies written so (characters, GPT-2) put no special tokens around a
            // prompt; an imported tokenizer is written back as it came, post_processor included.
            ["post_processor"] = null,
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab,
                ["merges"] = new JsonArray(vocabulary.Merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
    }
}
