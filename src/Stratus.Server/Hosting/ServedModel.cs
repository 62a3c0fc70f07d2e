// The models one server serves, by name: each a loaded checkpoint with its tokenizer, chat
// template and engine. A model's name defaults to its registered name (served by reference, see
// ModelSpec.ResolveRegistered), else its run folder's name.
using Stratus.Inference;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Server.Hosting;

/// <summary>A model to serve: a run or checkpoint folder, or a registered model's reference,
/// and optionally the name to serve it under.</summary>
/// <param name="Registered">The registered version <see cref="Path"/> is the checkpoint of
/// (<see cref="ResolveRegistered"/>): loading refuses the folder unless it still holds that
/// version's manifest, since the folder may be saved again between the check and the load.</param>
public sealed record ModelSpec(string Path, string? Name = null, ModelVersion? Registered = null)
{
    /// <summary>The spec with a registered reference (NAME, NAME:VERSION, NAME@ALIAS) in
    /// <see cref="Path"/> replaced by the version's checkpoint, its files checked against the
    /// manifest it was registered with, served under the registered name unless NAME= gave one,
    /// by the rule every verb that takes a model shares (<see cref="ModelRegistry.Locate"/>).</summary>
    /// <exception cref="StratusUserException">Neither a folder nor a registered version, or a
    /// version whose files changed.</exception>
    public ModelSpec ResolveRegistered(Lazy<ModelRegistry?> registry, Action<string>? warn = null)
    {
        try
        {
            var source = ModelRegistry.Locate(Path, registry, "serving", warn);
            return source.Version is { } version ? new ModelSpec(source.Path, Name ?? version.Name, version) : this;
        }
        catch (TrustUserException e)
        {
            throw new StratusUserException(e.Message, e);
        }
    }

    /// <summary>Parses the CLI's `--model dir` or `--model name=dir`.</summary>
    public static ModelSpec Parse(string value)
    {
        var equals = value.IndexOf('=');
        if (equals > 0 && !Directory.Exists(value)) return new ModelSpec(value[(equals + 1)..], value[..equals]);
        return new ModelSpec(value);
    }

    /// <summary>The run folder's name: the folder itself for a run, or the run above
    /// checkpoints/NAME for a checkpoint folder.</summary>
    public string ResolveName()
    {
        if (Name is { Length: > 0 }) return Name;
        var full = System.IO.Path.GetFullPath(Path).TrimEnd(System.IO.Path.DirectorySeparatorChar);
        var parent = System.IO.Path.GetDirectoryName(full);
        if (parent is not null && System.IO.Path.GetFileName(parent) == "checkpoints")
            return System.IO.Path.GetFileName(System.IO.Path.GetDirectoryName(parent)) ?? System.IO.Path.GetFileName(full);
        return System.IO.Path.GetFileName(full);
    }
}

public sealed class ServedModel : IDisposable
{
    readonly ChatTemplate? template;
    readonly StratusChatClient? chatClient;

    /// <param name="toolCallParser">How the model writes tool calls (null: as its template calls for, where it does).</param>
    /// <param name="registeredVersion">NAME:VERSION of the registered version it was loaded from, if any.</param>
    public ServedModel(string name, InferenceEngine engine, ChatTemplate template, string? checkpointDirectory = null, ToolCallParser? toolCallParser = null, string? registeredVersion = null)
        : this(name, engine, template, null, checkpointDirectory, toolCallParser, registeredVersion) { }

    ServedModel(string name, InferenceEngine engine, ChatTemplate? template, UnsupportedChatTemplate? unsupported, string? checkpointDirectory, ToolCallParser? toolCallParser,
        string? registeredVersion)
    {
        Name = name;
        RegisteredVersion = registeredVersion;
        Engine = engine;
        this.template = template;
        UnsupportedTemplate = unsupported;
        CheckpointDirectory = checkpointDirectory;
        ToolCallParser = toolCallParser ?? (template is null ? null : ToolCallParser.For(template));
        // The in-process client reads "auto"'s calls as the HTTP API does.
        if (template is not null) chatClient = new StratusChatClient(engine, template, name, ToolCallParser);
    }

    public string Name { get; }
    public InferenceEngine Engine { get; }
    /// <summary>The model's stored chat template when it uses what Stratus cannot render: the
    /// model is served for completions, and its chats are refused.</summary>
    public UnsupportedChatTemplate? UnsupportedTemplate { get; }
    /// <summary>The chat template; a 400 saying why and how to fix it when the model has one
    /// Stratus cannot render (every chat path asks for it here).</summary>
    public ChatTemplate Template => template ?? throw CannotChat();
    public string? CheckpointDirectory { get; }
    /// <summary>NAME:VERSION of the model registry's version this model was loaded from (`serve
    /// --model shk@production`), which its name alone does not say; null for a folder served as one.</summary>
    public string? RegisteredVersion { get; }
    public ITokenizer Tokenizer => Engine.Tokenizer;
    public int ContextLength => Engine.ContextLength;
    public long Created { get; } = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    /// <summary>The same model in-process, without HTTP.</summary>
    public StratusChatClient ChatClient => chatClient ?? throw CannotChat();
    /// <summary>How the model writes tool calls, for tool_choice "auto": serve's
    /// --tool-call-parser, else what its chat template calls for (ToolCallParser.For); null: not known.</summary>
    public ToolCallParser? ToolCallParser { get; }

    // The file's path stays on the server: a client learns what is unsupported and that completions work.
    ApiException CannotChat() => ApiException.Invalid(
        $"The chat template of model '{Name}' uses something Stratus does not support ({UnsupportedTemplate!.Reason}), so it cannot chat; " +
        $"/v1/completions works. To fix it, the server's operator can {UnsupportedChatTemplate.Fix}.", "messages", "unsupported_chat_template");

    /// <param name="device">Where the model is loaded (null: the CPU).</param>
    /// <param name="toolCallParser">serve's --tool-call-parser (null: the template's, where it calls for one).</param>
    public static ServedModel Load(ModelSpec spec, EngineOptions engineOptions, TorchSharp.torch.Device? device = null, ToolCallParser? toolCallParser = null)
    {
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(spec.Path));
        // What is loaded is what was verified here, not at ResolveRegistered: a run still
        // training saves checkpoints/best again, with a new manifest, at any moment.
        if (spec.Registered is { } registered && checkpoint.ContentHash != registered.Checkpoint.ManifestSha256)
            throw new StratusUserException(ModelRegistry.Changed(registered));
        // A template Stratus cannot render costs the model its chats only: completions need none.
        var template = ChatTemplate.TryLoad(checkpoint.Directory, checkpoint.Tokenizer, out var unsupported) ?? (unsupported is null ? ChatTemplate.For(checkpoint.Tokenizer) : null);
        var model = checkpoint.CreateModel(device);
        var engine = new InferenceEngine(model, checkpoint.Tokenizer, engineOptions);
        return new ServedModel(spec.ResolveName(), engine, template, unsupported, checkpoint.Directory, toolCallParser, spec.Registered?.Reference);
    }

    public void Dispose() => Engine.Dispose();
}

/// <summary>The models this server serves, by the names requests give (the platform's
/// ModelRegistry names checkpoints; serve loads a registered version under its name).</summary>
public sealed class ServedModels : IDisposable
{
    // Replaced whole by Add, never changed: requests (/metrics, /health) read them while a
    // starting server adds its models.
    volatile Dictionary<string, ServedModel> models = new(StringComparer.Ordinal);
    volatile ServedModel[] ordered = [];
    volatile bool loading;

    public IReadOnlyList<ServedModel> All => ordered;

    /// <summary>Whether the server is loading its models: /ready and every request that needs a
    /// model are answered 503 service_unavailable with Retry-After meanwhile.</summary>
    public bool IsLoading { get => loading; internal set => loading = value; }

    public void Add(ServedModel model)
    {
        if (models.TryGetValue(model.Name, out var served)) throw TwoNamed(model.Name, [Source(served), Source(model)]);
        models = new(models, StringComparer.Ordinal) { [model.Name] = model };
        ordered = [.. ordered, model];
    }

    /// <summary>Refuses two models of one name before any is loaded.</summary>
    public static void EnsureDistinctNames(IEnumerable<ModelSpec> specs)
    {
        if (specs.GroupBy(spec => spec.ResolveName(), StringComparer.Ordinal).FirstOrDefault(named => named.Count() > 1) is { } twice)
            throw TwoNamed(twice.Key, [.. twice.Select(spec => spec.Registered is { } version ? $"{version.Name}:{version.Version}" : spec.Path)]);
    }

    static string Source(ServedModel model) => model.RegisteredVersion ?? model.CheckpointDirectory ?? model.Name;

    // The models may be registered versions (two of one name, as shk@production and shk@staging),
    // not folders: the fix names them and spells a --model that serves the second apart.
    static StratusUserException TwoNamed(string name, string[] sources) =>
        new($"two models are named '{name}' ({string.Join(" and ", sources)}); give each a name of its own with --model NAME=MODEL, as --model {name}-2={sources[1]}");

    /// <summary>503 service_unavailable, with Retry-After, while the models load.</summary>
    public void EnsureLoaded()
    {
        if (loading) throw new ApiException(503, "The server is loading its models; retry shortly.", code: "service_unavailable") { RetryAfterSeconds = 5 };
    }

    /// <summary>The model a request names; 404 model_not_found when none has that name, 503
    /// while the models load.</summary>
    public ServedModel Get(string? name, bool allowDefault = false)
    {
        EnsureLoaded();
        if (name is null)
        {
            if (allowDefault && ordered.Length > 0) return ordered[0];
            throw ApiException.Invalid("Missing required parameter: 'model'.", "model", "missing_required_parameter");
        }
        return models.TryGetValue(name, out var model) ? model : throw ApiException.ModelNotFound(name.Length > 100 ? name[..100] + "..." : name);
    }

    /// <summary>Why a model cannot serve (InferenceEngine.CheckHealthAsync), naming it; null
    /// when every one can.</summary>
    public async Task<string?> CheckHealthAsync(CancellationToken cancellation)
    {
        foreach (var model in ordered)
            if (await model.Engine.CheckHealthAsync().AsTask().WaitAsync(cancellation) is { } reason) return $"model '{model.Name}': {reason}";
        return null;
    }

    public void Dispose()
    {
        foreach (var model in ordered) model.Dispose();
    }
}
