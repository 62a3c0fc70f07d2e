// A checkpoint is a folder: model weights (safetensors), optimizer state (safetensors), the
// model and training configs, the tokenizer, the trainer state (step, best loss) and a
// manifest holding the sha256 of every file (the chat template too, where the model has one).
// It is written into a temporary sibling folder and renamed into place, so a crash mid-write
// leaves the previous checkpoint intact; loading verifies every hash, refuses a checkpoint file
// the manifest does not list, and refuses a corrupt or foreign folder with a clear message.
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Training;

public sealed class Checkpoint
{
    public const string Format = "stratus-checkpoint";
    public const int FormatVersion = 1;
    public const string ManifestFile = "manifest.json";
    public const string ModelFile = "model.safetensors";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string ModelConfigFile = "model.json";
    public const string TrainConfigFile = "train_config.json";
    public const string StateFile = "state.json";

    /// <summary>The files a checkpoint is made of: all that Save writes and that Stratus reads
    /// from a checkpoint folder. Anything else there (a .DS_Store, an editor's swap file) is
    /// never read, so it is neither listed nor refused.</summary>
    static readonly string[] Files = [ModelFile, OptimizerFile, ModelConfigFile, TrainConfigFile, StateFile, TokenizerStore.FileName, ChatTemplate.FileName];

    static readonly JsonSerializerOptions JsonOptions = new(TrainConfig.Json)
    {
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Skip,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    Checkpoint(string directory, ModelConfig model, TrainConfig? train, ITokenizer tokenizer, TrainerState? state, string contentHash)
    {
        Directory = directory;
        ContentHash = contentHash;
        ModelConfig = model;
        TrainConfig = train;
        Tokenizer = tokenizer;
        State = state;
    }

    public string Directory { get; }
    public ModelConfig ModelConfig { get; }
    public TrainConfig? TrainConfig { get; }
    public ITokenizer Tokenizer { get; }
    public TrainerState? State { get; }

    /// <summary>What the checkpoint holds: a hash of its manifest's sha256 of every file (not of
    /// when it was saved), so that copies of one checkpoint on several nodes have the same one,
    /// and a copy that was trained further, or otherwise, has another even at the same step.</summary>
    public string ContentHash { get; }

    /// <summary>Writes a checkpoint to <paramref name="directory"/> atomically, replacing any
    /// checkpoint there. Extra files (e.g. a chat template) are written as given.</summary>
    public static void Save(string directory, CausalLanguageModel model, ITokenizer tokenizer, TrainConfig? train = null,
        IReadOnlyDictionary<string, Tensor>? optimizerState = null, TrainerState? state = null, IReadOnlyDictionary<string, string>? extraFiles = null)
    {
        var target = Path.GetFullPath(directory);
        var parent = Path.GetDirectoryName(target)!;
        System.IO.Directory.CreateDirectory(parent);
        var temporary = AtomicFile.TemporaryFolderFor(target);
        System.IO.Directory.CreateDirectory(temporary);
        try
        {
            SafeTensors.Save(Path.Combine(temporary, ModelFile), model.state_dict(), new Dictionary<string, string> { ["format"] = "pt" });
            if (optimizerState is not null) SafeTensors.Save(Path.Combine(temporary, OptimizerFile), optimizerState);
            WriteJson(temporary, ModelConfigFile, JsonSerializer.SerializeToNode(model.Config, JsonOptions)!);
            if (train is not null) WriteJson(temporary, TrainConfigFile, JsonSerializer.SerializeToNode(train, TrainConfig.Json)!);
            if (state is not null) WriteJson(temporary, StateFile, JsonSerializer.SerializeToNode(state, JsonOptions)!);
            TokenizerStore.Save(tokenizer, temporary);
            foreach (var (name, content) in extraFiles ?? new Dictionary<string, string>()) AtomicFile.WriteAllText(Path.Combine(temporary, name), content);

            var files = new JsonObject();
            foreach (var file in System.IO.Directory.EnumerateFiles(temporary).Select(Path.GetFileName).Order(StringComparer.Ordinal))
            {
                // Open refuses only these when unlisted: a file read that is not among them could be put there unverified.
                if (!Files.Contains(file)) throw new InvalidOperationException($"a checkpoint file {file} is not one of Checkpoint.Files");
                files[file!] = FileHash.Sha256(Path.Combine(temporary, file!));
            }
            WriteJson(temporary, ManifestFile, new JsonObject { ["format"] = Format, ["version"] = FormatVersion, ["created_utc"] = DateTime.UtcNow.ToString("O"), ["files"] = files });

            var previous = Path.Combine(parent, $".old-{Path.GetFileName(target)}-{Guid.NewGuid():N}");
            if (System.IO.Directory.Exists(target)) System.IO.Directory.Move(target, previous);
            System.IO.Directory.Move(temporary, target);
            if (System.IO.Directory.Exists(previous)) System.IO.Directory.Delete(previous, recursive: true);
        }
        finally
        {
            if (System.IO.Directory.Exists(temporary)) System.IO.Directory.Delete(temporary, recursive: true);
        }
    }

    /// <summary>Reads and verifies a checkpoint folder (weights are loaded separately).</summary>
    public static Checkpoint Open(string directory)
    {
        directory = Recover(directory);
        var files = ListedFiles(directory);
        foreach (var (file, hash) in files)
        {
            var path = Path.Combine(directory, file);
            if (!File.Exists(path)) throw new StratusUserException($"checkpoint {directory} is incomplete: {file} is missing; {IfDamaged(directory)}");
            if (!(hash is JsonValue value && value.TryGetValue<string>(out var expected)) || FileHash.Sha256(path) != expected)
                throw new StratusUserException($"checkpoint {directory} is corrupt: {file} does not match its sha256 in {ManifestFile}; {IfDamaged(directory)}");
        }
        // And no checkpoint file is there unlisted: Save lists every one it writes, so one put
        // there since (a chat template or a state.json copied in) would be read unverified.
        foreach (var file in Files)
            if (!files.ContainsKey(file) && File.Exists(Path.Combine(directory, file)))
                throw new StratusUserException($"checkpoint {directory} holds {file}, which its {ManifestFile} does not list: it was added after the checkpoint was saved; remove it, or use another checkpoint");
        var model = ReadJson<ModelConfig>(directory, ModelConfigFile) ?? throw new StratusUserException($"checkpoint {directory} has no {ModelConfigFile}");
        model.Validate(file: Path.Combine(directory, ModelConfigFile));
        var trainPath = Path.Combine(directory, TrainConfigFile);
        TrainConfig? train = null;
        if (File.Exists(trainPath))
        {
            train = TrainConfig.FromJson(JsonText.ParseFile(trainPath) as JsonObject ?? throw new StratusUserException($"{trainPath} is corrupt: not a JSON object"), trainPath);
        }
        var state = ReadJson<TrainerState>(directory, StateFile);
        // Infinity is the best loss of a run not yet evaluated; NaN would never be beaten, so the
        // run would keep no best checkpoint again.
        if (state is not null && (state.Step < 0 || double.IsNaN(state.BestValLoss)))
            throw new StratusUserException($"{Path.Combine(directory, StateFile)} is corrupt: step {state.Step} and best_val_loss {state.BestValLoss} are no run's; {IfDamaged(directory)}");
        var tokenizer = TokenizerStore.Load(directory);
        // Token ids past the model's embedding table would abort libtorch when indexed.
        if (tokenizer.VocabSize > model.VocabSize)
            throw new StratusUserException($"checkpoint {directory} is inconsistent: its tokenizer has {tokenizer.VocabSize} tokens but the model embeds {model.VocabSize}; restore the checkpoint or train again");
        var contentHash = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(files.ToJsonString())));
        return new Checkpoint(directory, model, train, tokenizer, state, contentHash);
    }

    /// <summary>The files a checkpoint folder is made of: its manifest and the files that
    /// lists, by name (for a copy of the folder, which <see cref="Open"/> then verifies).</summary>
    public static IReadOnlyList<string> FileNames(string directory) => [ManifestFile, .. ListedFiles(directory).Select(file => file.Key)];

    /// <summary>The manifest's files and their hashes, each a file name of the folder; not yet
    /// compared with the files.</summary>
    static JsonObject ListedFiles(string directory)
    {
        var manifestPath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(manifestPath))
            throw new StratusUserException($"{directory} is not a Stratus checkpoint (no {ManifestFile}); pass a run folder or one of its checkpoints/last or checkpoints/best");
        // Through JsonText, as Open reads train_config.json: a string that is no text (half a
        // surrogate pair) would otherwise throw where it is read, naming neither file nor problem.
        var manifest = JsonText.ParseFile(manifestPath, hint: $"The checkpoint is corrupt; {IfDamaged(directory)}.") as JsonObject
            ?? throw new StratusUserException($"{manifestPath} is corrupt (not a JSON object); {IfDamaged(directory)}");
        if (!(manifest["format"] is JsonValue format && format.TryGetValue<string>(out var name) && name == Format))
            throw new StratusUserException($"{directory} is not a Stratus checkpoint (manifest format '{manifest["format"]}')");
        if (!(manifest["version"] is JsonValue version && version.TryGetValue<int>(out var number) && number == FormatVersion))
            throw new StratusUserException($"{directory} has checkpoint format version {manifest["version"]}; this Stratus reads version {FormatVersion}");
        // Every file read must be one the manifest vouches for.
        if (manifest["files"] is not JsonObject files || !files.ContainsKey(ModelFile))
            throw new StratusUserException($"{manifestPath} is corrupt (it lists no {ModelFile}); {IfDamaged(directory)}");
        foreach (var (file, _) in files)
        {
            // A file of this folder, by name: a path ("../x", "/dev/zero") would be hashed and read
            // from anywhere.
            if (Path.GetFileName(file) != file || file is "." or "..")
                throw new StratusUserException($"{manifestPath} is corrupt: it lists '{file}', which is not a file name of the checkpoint; {IfDamaged(directory)}");
        }
        return files;
    }

    /// <summary>What to do with a corrupt or incomplete checkpoint: a run's other one is there to
    /// use, and `stratus train --resume`, which takes a run folder, goes on from checkpoints/best
    /// only once checkpoints/last is out of the way; otherwise restore it or train again.</summary>
    static string IfDamaged(string directory)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        var checkpoints = Path.GetDirectoryName(full);
        if (Path.GetFileName(checkpoints) == "checkpoints")
        {
            var other = Path.GetFileName(full) switch { "last" => "best", "best" => "last", _ => null };
            if (other is not null && System.IO.Directory.Exists(Path.Combine(checkpoints!, other)))
            {
                // Without the slash a shell's completion leaves: `mv last/ last/.damaged` moves a folder into itself.
                var named = Path.TrimEndingDirectorySeparator(directory);
                var use = Path.Combine(Path.GetDirectoryName(named)!, other);
                return other == "best"
                    ? $"use {use} (to resume the run from it, move this one aside: `mv {named} {named}.damaged`), or train again"
                    : $"use {use}, or restore this one";
            }
        }
        return "restore the checkpoint or train again";
    }

    /// <summary>Finds the checkpoint a user means: a checkpoint folder, or a run folder's
    /// checkpoints/best (preferred for use) or checkpoints/last.</summary>
    public static string Resolve(string path, bool preferBest = true)
    {
        if (File.Exists(path)) throw new StratusUserException(s => $"{path} is a file; pass its folder: {RunOrCheckpointFolder(s)}");
        if (!System.IO.Directory.Exists(path)) throw new StratusUserException(s => $"{path} does not exist; pass {RunOrCheckpointFolder(s)}");
        if (File.Exists(Path.Combine(path, ManifestFile))) return path;
        var names = preferBest ? new[] { "best", "last" } : ["last", "best"];
        foreach (var name in names)
        {
            var candidate = Recover(Path.Combine(path, "checkpoints", name));
            if (System.IO.Directory.Exists(candidate)) return candidate;
        }
        throw new StratusUserException(s => DatasetFolder.DatasetIn(path) is { } dataset
            ? $"{path} holds {dataset}, not a model; pass {RunOrCheckpointFolder(s)}"
            : $"{path} has no checkpoint (expected {Path.Combine(path, "checkpoints", "last")}); train first, or pass a checkpoint folder");
    }

    static string RunOrCheckpointFolder(Stratus.Safety.Surface surface) => $"a run folder {surface.Pick("made by `stratus train`", "a training wrote")} or a checkpoint folder";

    /// <summary>Whether a run folder holds a checkpoint (best or last, or what a crash while
    /// saving one left).</summary>
    public static bool Exists(string runDirectory) =>
        new[] { "best", "last" }.Any(name => System.IO.Directory.Exists(Recover(Path.Combine(runDirectory, "checkpoints", name))));

    /// <summary>A crash between the two renames of <see cref="Save"/> leaves the previous
    /// checkpoint as .old-NAME-*; use it when NAME itself is missing.</summary>
    static string Recover(string directory)
    {
        if (System.IO.Directory.Exists(directory)) return directory;
        var parent = Path.GetDirectoryName(Path.GetFullPath(directory));
        if (parent is null || !System.IO.Directory.Exists(parent)) return directory;
        var old = System.IO.Directory.EnumerateDirectories(parent, $".old-{Path.GetFileName(directory)}-*").FirstOrDefault();
        return old ?? directory;
    }

    /// <summary>Refuses a dataset prepared with another tokenizer than this model's: its token
    /// ids would mean other text.</summary>
    public void RequireTokenizerOf(string dataDirectory, ITokenizer datasetTokenizer)
    {
        if (!TokenizerStore.Utf8(Tokenizer).AsSpan().SequenceEqual(TokenizerStore.Utf8(datasetTokenizer)))
            throw new StratusUserException(s => $"the tokenizer of {dataDirectory} differs from the model's in {Directory}; " + s.Pick($"prepare the data with `stratus prepare --tokenizer-from {Directory}`",
                // A job's submission prepares no data: its dataset is made on the server's host.
                $"give {s.Option("data")} a dataset prepared with the model's tokenizer (stratus prepare on the server's host, taking it from {Directory})"));
    }

    /// <summary>The checkpoint's model with its weights, built on the CPU and moved to
    /// <paramref name="device"/>; <paramref name="config"/> is its config trained otherwise (the
    /// dropout and adapters of a run resumed or begun from it). Its LoRA adapters carry over only
    /// into a model with the same adapters (resuming, sampling, a run that goes on training them);
    /// any other model (a full fine-tune with lora_rank 0, or adapters of another rank, alpha or
    /// targets) gets them merged into its base weights, as PEFT's merge_and_unload. The model is
    /// built without initial values (<see cref="CausalLanguageModel.Load"/>: serve, sample and
    /// eval drew random numbers for every weight the file replaced) unless it has adapters of its
    /// own, which get theirs as a new model's would.</summary>
    public CausalLanguageModel CreateModel(Device? device = null, ModelConfig? config = null)
    {
        RequireWeightsOfConfig();
        config ??= ModelConfig;
        using var reader = SafeTensors.Open(Path.Combine(Directory, ModelFile));
        var carried = ModelConfig.Lora?.Equals(config.Lora) ?? false;
        // Each write's tensors are freed by Load (a dispose scope per weight).
        var weights = CausalLanguageModel.ImpliedWeights(config).Where(w => carried || !w.Name.StartsWith("lora.", StringComparison.Ordinal))
            .Select(w => (w.Name, (Action<Tensor>)(parameter =>
            {
                if (!reader.Entries.ContainsKey(w.Name)) throw new StratusUserException($"checkpoint {Directory} has no weight '{w.Name}'; it was made for another model");
                var saved = reader.Read(w.Name);
                if (!saved.shape.SequenceEqual(parameter.shape))
                    throw new StratusUserException($"weight '{w.Name}' in {Directory} has shape [{string.Join(", ", saved.shape)}]; the model needs [{string.Join(", ", parameter.shape)}]");
                if (!carried && ModelConfig.Lora is { } lora && Lora.AdapterWeights(w.Name) is (var a, var b) && reader.Entries.ContainsKey(a))
                    saved.add_(Lora.Update(reader.Read(a), reader.Read(b), lora.Scale));
                parameter.copy_(saved);
            })));
        var model = CausalLanguageModel.Load(config, weights, initialize: config.Lora is not null && !carried);
        if (device is not null) model.to(device);
        return model;
    }

    /// <summary>Refuses a model.json that does not describe the checkpoint's weights before any
    /// model is built from it: each weight the config implies must be in model.safetensors with
    /// its shape, as the file's header gives it. Otherwise a model.json naming a larger model
    /// (its hash in a manifest anyone can write) had that model allocated and initialised first,
    /// gigabytes for a file of a few kilobytes. Here, not in <see cref="Open"/>, which reads the
    /// tokenizer without libtorch for `prepare --tokenizer-from`.</summary>
    void RequireWeightsOfConfig()
    {
        using var reader = SafeTensors.Open(Path.Combine(Directory, ModelFile));
        foreach (var (name, shape) in CausalLanguageModel.ImpliedWeights(ModelConfig))
        {
            if (!reader.Entries.TryGetValue(name, out var entry) || !entry.Shape.SequenceEqual(shape))
                throw new StratusUserException($"checkpoint {Directory} is inconsistent: its {ModelConfigFile} implies a weight '{name}' of shape [{string.Join(", ", shape)}], " +
                    $"but {ModelFile} {(entry is null ? "has none" : $"has it of shape [{string.Join(", ", entry.Shape)}]")}; {IfDamaged(Directory)}");
        }
    }

    public void LoadOptimizer(IOptimizer optimizer)
    {
        var path = Path.Combine(Directory, OptimizerFile);
        if (!File.Exists(path)) throw new StratusUserException(s => $"checkpoint {Directory} has no optimizer state; it cannot be resumed (use {s.Option("init_from")} to start a new run from it)");
        using var state = SafeTensors.Open(path);
        optimizer.LoadStateDict(state);
    }

    static void WriteJson(string directory, string name, JsonNode node) =>
        AtomicFile.WriteJson(Path.Combine(directory, name), node);

    static T? ReadJson<T>(string directory, string name) where T : class
    {
        var path = Path.Combine(directory, name);
        if (!File.Exists(path)) return null;
        FileBytes.RequireRegular(path);
        try { return JsonSerializer.Deserialize<T>(File.ReadAllText(path), JsonOptions); }
        catch (JsonException e) { throw new StratusUserException($"{path} is corrupt: {e.Message}"); }
    }
}
