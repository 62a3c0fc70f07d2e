// One explicit training configuration with nanoGPT's names (snake_case in JSON, kebab-case on
// the command line) and its defaults. Loaded from a JSON file, overridden key by key, validated
// once, and stored with every checkpoint.
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Stratus.Models;
using Stratus.Safety;

namespace Stratus.Training;

public sealed record TrainConfig
{
    /// <summary>The model's shape. In JSON and on the command line its keys sit at the top level
    /// next to the training keys, as in nanoGPT: all of <see cref="ModelConfig"/>'s but vocab_size
    /// (the dataset's) and lora (the lora_* keys below).</summary>
    [JsonIgnore]
    public ModelConfig Model { get; init; } = new();

    /// <summary>LoRA fine-tuning: adapter rank (0: off, every weight trains), alpha, and the
    /// linear layers to adapt, comma-separated (empty: the architecture's default, see
    /// <see cref="Lora.DefaultTargets"/>).</summary>
    public int LoraRank { get; init; }
    public double LoraAlpha { get; init; } = 16;
    public string LoraTargets { get; init; } = "";

    public int BatchSize { get; init; } = 12;
    public int GradientAccumulationSteps { get; init; } = 1;
    public double LearningRate { get; init; } = 6e-4;
    public double MinLr { get; init; } = 6e-5;
    public int MaxIters { get; init; } = 600000;
    public int LrDecayIters { get; init; } = 600000;
    public int WarmupIters { get; init; } = 2000;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double GradClip { get; init; } = 1.0;
    public bool DecayLr { get; init; } = true;

    public int EvalInterval { get; init; } = 250;
    public int EvalIters { get; init; } = 200;
    public int LogInterval { get; init; } = 10;
    /// <summary>Steps between `last` checkpoints (0: only at evaluations and at the end).</summary>
    public int CheckpointInterval { get; init; } = 250;
    public long Seed { get; init; } = 1337;
    /// <summary>libtorch's deterministic algorithms (<see cref="Determinism"/>): a run on a GPU
    /// then repeats itself bit for bit, resumed or not, at some cost in speed. Runs on the CPU
    /// repeat themselves either way.</summary>
    public bool Deterministic { get; init; }
    /// <summary>"float32" or "bfloat16" (bf16 matmuls, fp32 master weights and optimizer).</summary>
    public string Dtype { get; init; } = "float32";
    /// <summary>0: every rank keeps the full optimizer state; 1: ZeRO-1 sharding.</summary>
    public int ZeroStage { get; init; }
    /// <summary>Where the model trains: "cpu", "cuda" or "cuda:N" (nanoGPT's device). Not part of
    /// what a resumed run keeps: a run begun on the CPU may go on on a GPU and back (the same
    /// losses step for step are promised only on the same device).</summary>
    public string Device { get; init; } = ComputeDevice.Cpu;

    /// <summary>The most context a GPT-2 may be given (learned positions cost memory per
    /// position); a model loaded with --init-from caps it at its own block size. A Llama's rotary
    /// positions learn nothing: its context is capped only as every model's is
    /// (<see cref="ModelConfig.Validate"/>), so that one of 128k positions may train on 64k.</summary>
    public const int MaxBlockSize = 32768;

    /// <summary>Field by field, without <see cref="FlatJson"/>.</summary>
    static readonly JsonSerializerOptions Fields = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        WriteIndented = true,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        // "lora_targets": null is an error to report, not a null to crash on later.
        RespectNullableAnnotations = true,
    };

    /// <summary>How configs are read and written: one flat object with model and training keys.</summary>
    public static readonly JsonSerializerOptions Json = new(Fields) { Converters = { new FlatJson() } };

    static string[] KeysOf(Type type) => type
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.CanWrite && p.GetCustomAttribute<JsonIgnoreAttribute>() is null)
        .Select(p => JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Name)).ToArray();

    static readonly string[] ModelKeys = KeysOf(typeof(ModelConfig)).Except(["vocab_size", "lora"]).ToArray();

    /// <summary>Config keys in snake_case, as in the JSON file: the model's, then training's.</summary>
    public static IReadOnlyList<string> Keys { get; } = [.. ModelKeys, .. KeysOf(typeof(TrainConfig))];

    public ModelConfig ToModelConfig(int vocabSize) => Model with { VocabSize = vocabSize, Lora = LoraConfigFor(Model.Architecture) };

    /// <summary>Splits the flat object into the model's keys and training's on reading, and joins
    /// them on writing. (System.Text.Json cannot flatten a nested object by itself.)</summary>
    sealed class FlatJson : JsonConverter<TrainConfig>
    {
        public override TrainConfig Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            var training = JsonNode.Parse(ref reader) as JsonObject ?? throw new JsonException("a training config must be a JSON object");
            var model = new JsonObject();
            foreach (var key in ModelKeys)
                if (training.Remove(key, out var value)) model[key] = value;
            return training.Deserialize<TrainConfig>(Fields)! with { Model = model.Deserialize<ModelConfig>(Fields)! };
        }

        public override void Write(Utf8JsonWriter writer, TrainConfig value, JsonSerializerOptions options)
        {
            var model = JsonSerializer.SerializeToNode(value.Model, Fields)!.AsObject();
            var json = new JsonObject();
            foreach (var key in ModelKeys)
                if (model.Remove(key, out var node)) json[key] = node;
            foreach (var (key, node) in JsonSerializer.SerializeToNode(value, Fields)!.AsObject().ToList())
                json[key] = node?.DeepClone();
            json.WriteTo(writer, options);
        }
    }

    /// <summary>The LoRA adapters to put on a model of <paramref name="architecture"/>, or null.</summary>
    public LoraConfig? LoraConfigFor(string architecture)
    {
        if (LoraRank == 0) return null;
        var targets = LoraTargets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return new LoraConfig(LoraRank, LoraAlpha, targets.Length > 0 ? targets : Lora.DefaultTargets(architecture));
    }

    [JsonIgnore]
    public TorchSharp.torch.ScalarType ComputeDtype => Dtype switch
    {
        "float32" or "fp32" => TorchSharp.torch.ScalarType.Float32,
        "bfloat16" or "bf16" => TorchSharp.torch.ScalarType.BFloat16,
        _ => throw new StratusUserException($"dtype must be float32 or bfloat16, got '{Dtype}'"),
    };

    /// <summary>Reads a config file and applies overrides given as (key, value) pairs, keys in
    /// snake_case or kebab-case. <paramref name="initFrom"/> is the model `--init-from` starts
    /// from: block_size, where neither the file nor an override gives it, is then
    /// <see cref="InitBlockSize"/> of it rather than the fixed default, and warmup_iters 0.</summary>
    public static TrainConfig Load(string? path, IEnumerable<KeyValuePair<string, string>> overrides, ModelConfig? initFrom = null) =>
        FromJson(ReadFile(path), path ?? "command line", overrides, initFrom).RequireLoraRankForTargets();

    /// <summary><see cref="Load"/> for a run --init-from the model that <paramref name="openModel"/>
    /// opens, the file read once (`--config &lt;(...)`, a pipe, has nothing left to read a second
    /// time). What can be is checked before the model is opened (every file of it is hashed:
    /// seconds for a large one): the keys, their values and the training settings; the model keys,
    /// which are the model's, against it once it is open, not against the default model's shape.</summary>
    public static TrainConfig LoadInitFrom(string? path, IEnumerable<KeyValuePair<string, string>> overrides, Func<ModelConfig> openModel)
    {
        var file = ReadFile(path);
        var source = path ?? "command line";
        // Read applies the overrides to the object it is given.
        var (config, keysGiven, _) = Read(file.DeepClone().AsObject(), source, overrides);
        FineTuneDefaults(config, keysGiven, initFrom: null).RequireLoraRankForTargets().ValidateTraining();
        return FromJson(file, source, overrides, openModel());
    }

    /// <summary>Refuses a new run's lora_targets without a lora_rank: at rank 0 LoRA is off, and
    /// every weight trained in full, the layers named left without adapters and nothing said. (Not
    /// in <see cref="Validate"/>: a config a checkpoint stored reads as it was saved.)</summary>
    TrainConfig RequireLoraRankForTargets() => LoraRank == 0 && !string.IsNullOrWhiteSpace(LoraTargets)
        ? throw new StratusUserException(s => $"lora_targets {LoraTargets} names layers to adapt, but lora_rank is 0 (LoRA off: every weight would train); " +
            $"pass {s.Option(Surface.OverridesPrefix + "lora_rank")} 8 (or another rank) to train adapters on them, or leave lora_targets out to train every weight") { Param = "lora_targets" }
        : this;

    static JsonObject ReadFile(string? path)
    {
        if (path is null) return [];
        if (!File.Exists(path)) throw new StratusUserException($"config file {path} does not exist; see configs/ for examples");
        var options = new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, AllowDuplicateProperties = false };
        return JsonText.ParseFile(path, options, namedByUser: true) as JsonObject ?? throw new StratusUserException($"{path} must hold a JSON object");
    }

    /// <summary>The block_size a run from <paramref name="initFrom"/> trains with when none is
    /// given: the model's context, capped at the default 1024, as Hugging Face's run_clm.py sets
    /// it (a small model's context is often under 1024, a large one's far over what fits).</summary>
    static int InitBlockSize(ModelConfig initFrom) => Math.Min(new ModelConfig().BlockSize, initFrom.BlockSize);

    /// <summary>This config with overrides given as (key, value) pairs applied, checked again.</summary>
    public TrainConfig With(IEnumerable<KeyValuePair<string, string>> overrides) =>
        FromJson(JsonSerializer.SerializeToNode(this, Json)!.AsObject(), "command line", overrides);

    /// <summary>Keys that define the trained model (every model key but dropout, which only acts
    /// while training, and the LoRA rank, alpha and targets) whose values differ between this config and
    /// <paramref name="other"/>.</summary>
    public IReadOnlyList<string> ModelDefiningKeysChangedFrom(TrainConfig other)
    {
        JsonObject mine = JsonSerializer.SerializeToNode(this, Json)!.AsObject(), theirs = JsonSerializer.SerializeToNode(other, Json)!.AsObject();
        return ModelKeys.Where(k => k != "dropout").Concat(["lora_rank", "lora_alpha", "lora_targets"])
            .Where(k => !JsonNode.DeepEquals(mine[k], theirs[k])).ToList();
    }

    /// <summary>The config in <paramref name="json"/> (read from <paramref name="source"/>) with
    /// command-line <paramref name="overrides"/> (kebab- or snake-case keys) applied, checked;
    /// block_size given by neither defaults to <see cref="InitBlockSize"/> of <paramref name="initFrom"/> where there is one
    /// (and warmup_iters to 0), whose
    /// other model keys the config then takes (<see cref="Training"/>): one given otherwise is refused.</summary>
    public static TrainConfig FromJson(JsonObject json, string source, IEnumerable<KeyValuePair<string, string>>? overrides = null, ModelConfig? initFrom = null)
    {
        var (config, keysGiven, origin) = Read(json, source, overrides);
        if (initFrom is not null)
        {
            config = FineTuneDefaults(config, keysGiven, initFrom);
            // A shape key other than the base model's would otherwise be dropped without a word.
            var training = config.Training(initFrom);
            JsonObject mine = JsonSerializer.SerializeToNode(config, Json)!.AsObject(), its = JsonSerializer.SerializeToNode(training, Json)!.AsObject();
            // All of them at once: a config file written for a model of its own (configs/*.json)
            // differs in several, which one refusal each would have the user find one by one.
            var changed = config.ModelDefiningKeysChangedFrom(training).Where(keysGiven.Contains).ToList();
            string Value(JsonObject settings, string key) => settings[key]?.ToJsonString() ?? "null";
            if (changed.Count > 0)
                throw new StratusUserException(s => string.Join("; ", changed.GroupBy(key => origin(s, key)).Select(keys =>
                        $"{keys.Key}: {Listed(keys.Select(key => $"{key} {Value(mine, key)}"))} {(keys.Count() == 1 ? "differs" : "differ")} from the {s.Option("init_from")} model's {Listed(keys.Select(key => Value(its, key)))}")) +
                    $"; a fine-tune keeps the shape of the model it starts from (only block_size and dropout may change): leave {Listed(changed)} out")
                    // The first key at fault, which the API names as the field that gave it.
                    { Param = changed[0] };
            config = training;
        }
        config.Validate();
        return config;
    }

    /// <summary><paramref name="config"/> with a fine-tune's defaults for the keys not given:
    /// block_size <see cref="InitBlockSize"/> of <paramref name="initFrom"/> (where it is open
    /// yet) and warmup_iters 0.</summary>
    static TrainConfig FineTuneDefaults(TrainConfig config, IReadOnlyList<string> keysGiven, ModelConfig? initFrom)
    {
        if (initFrom is not null && !keysGiven.Contains("block_size")) config = config with { Model = config.Model with { BlockSize = InitBlockSize(initFrom) } };
        // Trained weights start at learning_rate, as in Hugging Face's Trainer (warmup_steps 0)
        // and nanoGPT's finetune_shakespeare.py (no schedule): nanoGPT's default warm-up of
        // 2000 steps is a pre-training run's, and would outlast most fine-tunes.
        return keysGiven.Contains("warmup_iters") ? config : config with { WarmupIters = 0 };
    }

    /// <summary>The config in <paramref name="json"/> with <paramref name="overrides"/> applied,
    /// unchecked; the keys given by either, and where a key's value came from (the option that
    /// overrode it, as the surface showing the message names it, else <paramref name="source"/>),
    /// for messages.</summary>
    static (TrainConfig Config, IReadOnlyList<string> KeysGiven, Func<Surface, string, string> Origin) Read(JsonObject json, string source, IEnumerable<KeyValuePair<string, string>>? overrides)
    {
        foreach (var (key, _) in json) CheckKey(key, _ => source);
        var overridden = new HashSet<string>();
        foreach (var (rawKey, value) in overrides ?? [])
        {
            var key = KeyOf(rawKey);
            CheckKey(key, s => s.Pick("command line", "'overrides'"));
            json[key] = ParseValue(value);
            overridden.Add(key);
        }
        string Origin(Surface surface, string key) => overridden.Contains(key) ? surface.Option(Surface.OverridesPrefix + key) : source;
        try { return (json.Deserialize<TrainConfig>(Json)!, json.Select(setting => setting.Key).ToList(), Origin); }
        catch (JsonException e)
        {
            var key = e.Path?.TrimStart('$', '.') ?? "";
            // "The JSON value could not be converted to a whole number." -> "n_layer must be a whole number, got ..."
            var reason = StratusUserException.InUsersWords(e);
            var wanted = reason.Split("converted to ");
            var present = json.TryGetPropertyValue(key, out var given);
            throw new StratusUserException(s => present && given is null ? $"{Origin(s, key)}: {key} must not be null; leave it out for its default"
                : wanted.Length == 2 && given is not null ? $"{Origin(s, key)}: {key} must be {wanted[1].TrimEnd('.')}, got {given.ToJsonString()}"
                : $"{Origin(s, key)}: {reason} (at {e.Path})") { Param = key.Length > 0 ? key : null };
        }
    }

    /// <summary>This config training <paramref name="model"/> (a run's --init-from): the model
    /// keys are its, but for block_size (the windows trained on, up to its context) and dropout,
    /// which acts only while training; the adapters are the lora_* keys'.</summary>
    public TrainConfig Training(ModelConfig model) => this with { Model = model with { BlockSize = Model.BlockSize, Dropout = Model.Dropout, Lora = null } };

    /// <summary>"a", "a and b", "a, b and c".</summary>
    static string Listed(IEnumerable<string> items)
    {
        var list = items.ToList();
        return list.Count == 1 ? list[0] : $"{string.Join(", ", list.SkipLast(1))} and {list[^1]}";
    }

    /// <summary>The config key an override names, given in kebab- or snake-case, with or without
    /// the option's dashes (--max-iters, max-iters and max_iters are max_iters): the field an
    /// option names (<see cref="Surface.FieldOf"/>).</summary>
    public static string KeyOf(string given) => Surface.FieldOf(given);

    /// <param name="source">Where the key was given (a config file, the command line, the API's
    /// overrides), in the words of the surface that shows the message.</param>
    static void CheckKey(string key, Func<Surface, string> source)
    {
        if (Keys.Contains(key)) return;
        var suggestion = Spelling.Nearest(key, Keys) is { } nearest ? $"; did you mean '{nearest}'?" : ";";
        throw new StratusUserException(s => $"unknown config key '{key}' in {source(s)}{suggestion} Valid keys: {string.Join(", ", Keys)}") { Param = key };
    }

    static JsonNode? ParseValue(string value)
    {
        if (bool.TryParse(value, out var b)) return b;
        if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l)) return l;
        // NaN and Infinity stay text: JSON has no such numbers, and no key accepts them.
        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d)) return d;
        return value;
    }

    public void Validate()
    {
        ToModelConfig(1).Validate(Model.Architecture == "gpt2" ? MaxBlockSize : null);
        ValidateTraining();
    }

    /// <summary>The keys but the model's.</summary>
    void ValidateTraining()
    {
        Require(BatchSize > 0, "batch_size", $"batch_size must be positive, got {BatchSize}");
        Require(GradientAccumulationSteps > 0, "gradient_accumulation_steps", $"gradient_accumulation_steps must be positive, got {GradientAccumulationSteps}");
        Require(LearningRate > 0, "learning_rate", $"learning_rate must be positive, got {LearningRate}");
        Require(MinLr >= 0, "min_lr", $"min_lr must be non-negative, got {MinLr}");
        Require(MaxIters >= 0, "max_iters", $"max_iters must be non-negative, got {MaxIters}");
        Require(WarmupIters >= 0, "warmup_iters", $"warmup_iters must be non-negative, got {WarmupIters}");
        // Only the decay reads them: nanoGPT's own fine-tune (finetune_shakespeare.py) trains at a
        // constant learning_rate of 3e-5, min_lr left at its default 6e-5.
        if (DecayLr)
        {
            if (MinLr > LearningRate)
                throw new StratusUserException(s => $"min_lr ({MinLr}) is above learning_rate ({LearningRate}): the cosine decay would raise the learning rate; " +
                    $"pass {s.Option(Surface.OverridesPrefix + "min_lr")} at most {LearningRate} (nanoGPT's is a tenth of learning_rate), or {s.Option(Surface.OverridesPrefix + "decay_lr")} false for a constant rate") { Param = "min_lr" };
            Require(LrDecayIters >= WarmupIters, "lr_decay_iters", $"lr_decay_iters ({LrDecayIters}) must be at least warmup_iters ({WarmupIters})");
        }
        Require(WeightDecay >= 0, "weight_decay", $"weight_decay must be non-negative, got {WeightDecay}");
        Require(Beta1 is >= 0 and < 1, "beta1", $"beta1 must be in [0, 1), got {Beta1}");
        Require(Beta2 is >= 0 and < 1, "beta2", $"beta2 must be in [0, 1), got {Beta2}");
        Require(GradClip >= 0, "grad_clip", $"grad_clip must be non-negative (0 turns clipping off), got {GradClip}");
        Require(EvalInterval > 0, "eval_interval", $"eval_interval must be positive, got {EvalInterval}");
        Require(EvalIters > 0, "eval_iters", $"eval_iters must be positive, got {EvalIters}");
        Require(LogInterval > 0, "log_interval", $"log_interval must be positive, got {LogInterval}");
        Require(CheckpointInterval >= 0, "checkpoint_interval", $"checkpoint_interval must be non-negative, got {CheckpointInterval}");
        Require(ZeroStage is 0 or 1, "zero_stage", $"zero_stage must be 0 or 1, got {ZeroStage}");
        Require(LoraRank >= 0, "lora_rank", $"lora_rank must be 0 (off) or positive, got {LoraRank}");
        _ = ComputeDtype;
        // Its form only: a config naming a GPU stays readable on a machine without one.
        ComputeDevice.Validate(Device);
    }

    /// <summary>The <paramref name="key"/> at fault is the error's Param: a job submission names
    /// the override that gave it ('overrides.max_iters'), or its config.</summary>
    static void Require(bool condition, string key, string message)
    {
        if (!condition) throw new StratusUserException(message) { Param = key };
    }
}

/// <summary>Linear warm-up to learning_rate, cosine decay to min_lr at lr_decay_iters, then
/// min_lr (nanoGPT's get_lr).</summary>
public static class LearningRateSchedule
{
    public static double At(TrainConfig c, long step)
    {
        if (!c.DecayLr) return c.LearningRate;
        if (step < c.WarmupIters) return c.LearningRate * (step + 1) / (c.WarmupIters + 1);
        if (step > c.LrDecayIters) return c.MinLr;
        var ratio = c.LrDecayIters == c.WarmupIters ? 1.0 : (double)(step - c.WarmupIters) / (c.LrDecayIters - c.WarmupIters);
        var coefficient = 0.5 * (1.0 + Math.Cos(Math.PI * ratio));
        return c.MinLr + coefficient * (c.LearningRate - c.MinLr);
    }

    /// <summary>Why the run never trains at learning_rate, or null: its warm-up lasts as long as
    /// it does (a short run keeping nanoGPT's 2000 steps of warm-up).</summary>
    public static string? WarmupOutlastingTheRun(TrainConfig c) =>
        c.DecayLr && c.MaxIters > 0 && c.WarmupIters >= c.MaxIters
            ? $"warmup_iters ({c.WarmupIters}) is not under max_iters ({c.MaxIters}): the learning rate rises for the whole run, to {100 * At(c, c.MaxIters - 1) / c.LearningRate:0.#}% " +
              $"of learning_rate {c.LearningRate}; pass --warmup-iters under {c.MaxIters} (0 for none)"
            : null;
}
