// `stratus train --config <file.json> --data <dataset> --out <run> [--<key> <value>]...`
// `stratus train --init-from <model> --data <dataset> --out <run> [--config <file.json>] [--<key> <value>]...`
// (the model a folder, or a registered version: NAME, NAME:VERSION, NAME@ALIAS, as serve takes it)
// `stratus train --resume <run>`
// Under `mpirun -np N` or `srun` every rank runs this command; they train one model together
// (data parallel, see docs/distributed.md) and only rank 0 prints; rank 0 alone resolves
// --init-from in the model registry, and tells the others what to load. A run that saves a checkpoint
// folder a registered version refers to (not a copy of) is warned of first: the version breaks.
using System.CommandLine;
using System.Data.Common;
using System.Text.Json;
using Stratus.Distributed;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Training;

namespace Stratus.Cli;

static class TrainCommand
{
    public static Command Create()
    {
        var config = ReadyConfigs.Option("training config (JSON, nanoGPT key names; keys left out keep their defaults: a GPT-2 124M); see configs/");
        var data = PathOptions.Option("--data", "dataset folder made by `stratus prepare` (with --resume: the run's dataset, when it moved)");
        var output = OutputPaths.Folder("--out", "run folder: metrics.jsonl and checkpoints/");
        var resume = PathOptions.Option("--resume", "continue the run in this folder from its last checkpoint");
        var initFrom = PathOptions.Option("--init-from", "start from the weights of a trained or imported model (run or checkpoint folder), or a registered one (NAME, NAME:VERSION, NAME@ALIAS)");
        var dataDir = TrustCommands.DataDirOption();
        var initFromVersion = InitFromVersionOption();
        var initFromManifest = new Option<string>("--init-from-manifest")
        {
            Description = "the manifest hash of the registered version --init-from-version names, as a job's submission resolved it",
            Hidden = true,
        };
        var command = new Command("train", "Train a model, or resume a run exactly where it stopped.") { config, data, output, resume, initFrom, dataDir, initFromVersion, initFromManifest };
        var overrides = new ConfigOptions(command);
        command.SetAction((result, cancellation) =>
        {
            // Not disposed on failure: MPI_Finalize would wait for ranks that wait for this one;
            // Program ends the whole job instead (Communicator.AbortJob).
            if (result.GetValue(resume) is not null) RequireResumeAlone(result, config, output, initFrom, initFromVersion, initFromManifest);
            var communicator = Communicator.Create();
            var exitCode = 0;
            using (var stop = new StopRequest())
            using (var trainer = result.GetValue(resume) is { } runDirectory
                ? Trainer.Resume(runDirectory, overrides.Overrides(result), communicator: communicator, dataDirectory: result.GetValue(data))
                : StartRun())
            {
                if (trainer.IsMain && RegisteredVersionsSavedAgain(trainer) is { } warning) Console.Error.WriteLine($"warning: {warning}");
                Run(trainer, stop.Token);
                if (trainer.StoppedEarly) exitCode = stop.ExitCode;
            }
            communicator.Dispose();
            return Task.FromResult(exitCode);

            Trainer StartRun()
            {
                var dataDirectory = Required(result, data);
                var runDirectory = Required(result, output);
                if (result.GetValue(initFrom) is not { } given)
                    return Trainer.Start(TrainConfig.Load(result.GetValue(config), overrides.Overrides(result)), dataDirectory, runDirectory, communicator: communicator);
                // A job's train is given the version its submission resolved, and its folder: the registry is not asked again.
                var recorded = result.GetValue(initFromVersion);
                var source = recorded is not null
                    ? new InitSource(given, recorded, result.GetValue(initFromManifest),
                        $"{given}, the checkpoint of model {recorded} when the job was submitted, changed since (a new manifest: the run it is a folder of saved it again); " +
                        Invocation.Spell($"submit the job again to start from what it holds now, or register it with --copy to keep a version that does not change (`stratus models register <folder> --name NAME --copy`)"))
                    : InitFrom(given, result.GetValue(dataDir), communicator);
                Checkpoint? init = null;
                var trainConfig = TrainConfig.LoadInitFrom(result.GetValue(config), overrides.Overrides(result), () => (init = OpenInitFrom(source.Path, recorded)).ModelConfig);
                // Opened by LoadInitFrom once the config passed what it checks first; what is loaded is
                // what was verified, not at Locate: a run still training saves its checkpoint again at any moment.
                if (source.Manifest is { } manifest && init!.ContentHash != manifest) throw new StratusUserException(source.Changed!);
                // A folder given as one is the registered version whose files it holds, for the run's parent (rank 0 writes run.json).
                var parent = source.Version ?? (communicator.IsMain ? ExistingRegistry(result.GetValue(dataDir), registry => registry.VersionAt(init!.Directory, init.ContentHash)?.Reference) : null);
                return Trainer.Start(trainConfig, dataDirectory, runDirectory, init!, communicator, initFromVersion: parent);
            }
        });
        return command;
    }

    /// <summary>train's hidden --init-from-version: the registered version (NAME:VERSION) --init-from's
    /// folder is, as a job's submission resolved it (TrainArguments.CommandLine), for the run to record.</summary>
    internal static Option<string> InitFromVersionOption() => new("--init-from-version")
    {
        Description = "the registered version --init-from's folder was resolved from (a job's submission gives it)",
        Hidden = true,
    };

    /// <summary>The model --init-from names, by serve's rule (<see cref="ModelRegistry.Locate"/>): a
    /// folder that exists, else a registered version of the data directory's registry.</summary>
    internal static ModelSource InitFrom(string given, string? dataDir) =>
        ModelRegistry.Locate(given, new Lazy<ModelRegistry?>(() => ModelsCommand.OpenExisting(dataDir)), "starting from", warning => Console.Error.WriteLine($"warning: {warning}"));

    /// <summary>The checkpoint a run starts from: its folder, the registered version it is (null: a
    /// folder given as one) and that version's manifest hash, which the checkpoint opened must have,
    /// else <paramref name="Changed"/> is the refusal.</summary>
    sealed record InitSource(string Path, string? Version, string? Manifest, string? Changed);

    /// <summary><see cref="InitFrom(string, string?)"/> under mpirun: rank 0 alone asks the registry
    /// (and warns, or refuses), so that the job prints each line once, a node that does not see the
    /// registry trains all the same, and every rank loads what rank 0 resolved, even where an alias
    /// moves meanwhile; the others are told it, and check the files they open against the same manifest.</summary>
    static InitSource InitFrom(string given, string? dataDir, ICommunicator communicator)
    {
        InitSource? resolved = null;
        if (communicator.IsMain)
        {
            var source = InitFrom(given, dataDir);
            resolved = new InitSource(source.Path, source.Version?.Reference, source.Version?.Checkpoint.ManifestSha256, source.Version is { } version ? ModelRegistry.Changed(version) : null);
        }
        return JsonSerializer.Deserialize<InitSource>(communicator.BroadcastText(resolved is null ? null : JsonSerializer.Serialize(resolved)))!;
    }

    /// <summary>What <paramref name="ask"/> answers of the registry in <paramref name="dataDir"/>
    /// (else the default data directory, where `models register` without --data-dir puts versions);
    /// null where there is none (no database is created for it) or it cannot be read: what train asks
    /// of it beside its work (a warning, a run's parent) is no reason not to train.</summary>
    static T? ExistingRegistry<T>(string? dataDir, Func<ModelRegistry, T?> ask) where T : class
    {
        try
        {
            var directory = dataDir is null ? TrustCommands.DefaultDataDirectory() : StratusHome.Resolve(dataDir);
            return directory is not null && PlatformDatabase.Exists(directory) ? ask(ModelsCommand.Open(directory)) : null;
        }
        // Nor one with a row edited by hand: a time not as the registry writes it (Format), a
        // value of another type (InvalidCast).
        catch (Exception e) when (e is TrustUserException or DbException or IOException or UnauthorizedAccessException or FormatException or InvalidCastException)
        {
            return null;
        }
    }

    /// <summary>The checkpoint a run starts from; that of the version a job recorded at submission
    /// (<paramref name="recordedVersion"/>) said missing as such, where the version was deleted since.</summary>
    static Checkpoint OpenInitFrom(string model, string? recordedVersion)
    {
        if (recordedVersion is { } version && !Directory.Exists(model))
            throw new StratusUserException($"{model}, the checkpoint of model {version} when the job was submitted, is missing: the version was deleted or its folder moved; " +
                Invocation.Spell($"submit the job again from a registered version (see them with `{ModelRegistry.ListCommand}`)"));
        return Checkpoint.Open(Checkpoint.Resolve(model));
    }

    /// <summary>Refuses the options a resumed run takes from its own folder (train's, and a job's
    /// that resumes one: `jobs submit --resume`).</summary>
    internal static void RequireResumeAlone(ParseResult result, params Option[] options)
    {
        foreach (var option in options)
            if (result.GetResult(option) is not null)
                throw new StratusUserException($"{option.Name} cannot be used with --resume: a run continues with its own config and folder (change settings such as max_iters with --max-iters ...)");
    }

    /// <summary>The value of --data or --out, which a run that is not resumed must be given.</summary>
    internal static string Required(ParseResult result, Option<string> option) => result.GetValue(option) ?? throw new StratusUserException(option.Name == "--data"
        ? "--data is required: the dataset folder made by `stratus prepare`"
        : $"{option.Name} is required: the run folder to write");

    /// <summary>One line naming the registered versions that refer, not as copies, to a
    /// checkpoint folder this run saves again (each is refused as changed once it has), and how to
    /// keep the checkpoint as it is; null where there are none, or no registry (the default data
    /// directory's, where `models register` without --data-dir puts versions) to ask: this check
    /// creates no database.</summary>
    static string? RegisteredVersionsSavedAgain(Trainer trainer)
    {
        var versions = ExistingRegistry<List<ModelVersion>>(null, registry => [.. registry.List().Where(v => !v.IsCopy && trainer.CheckpointDirectories.Contains(v.Checkpoint.Directory))]);
        if (versions is null || versions.Count == 0) return null;
        var first = versions[0];
        return Invocation.Spell($"{string.Join(", ", versions.Select(v => v.Reference))} of the model registry {(versions.Count == 1 ? "refers" : "refer")} to " +
            $"{string.Join(" and ", versions.Select(v => v.Checkpoint.Directory).Distinct())}, which this run saves again, after which {(versions.Count == 1 ? "it is" : "they are")} refused as changed; " +
            $"to keep the checkpoint as it is now, register a copy of it (a new version) before the run saves it: stratus models register {first.Checkpoint.Directory} --name {first.Name} --copy");
    }

    public static void Run(Trainer trainer, CancellationToken token)
    {
        if (!trainer.IsMain)
        {
            trainer.Run(token);
            return;
        }
        var model = trainer.Model;
        Console.WriteLine($"model: {model.Config.Architecture}, {model.ParameterCount(nonEmbedding: false) / 1e6:F2} M parameters, " +
            $"{model.Config.NLayer} layers, {model.Config.NHead} heads, {model.Config.NEmbd} wide, context {model.Config.BlockSize}, {trainer.Config.Dtype} on {trainer.Config.Device}");
        if (trainer.WorldSize > 1)
        {
            var full = model.parameters().Sum(p => p.numel()) * 2 * sizeof(float);
            Console.WriteLine($"data parallel: {trainer.WorldSize} ranks, {trainer.Config.GradientAccumulationSteps / trainer.WorldSize} micro-batches each per step, " +
                $"{(trainer.Config.ZeroStage == 1 ? "ZeRO-1" : "replicated optimizer")}: AdamW moments {trainer.OptimizerStateBytes / 1048576.0:F2} MiB on rank 0 ({full / 1048576.0:F2} MiB unsharded)");
        }
        var threads = TorchSharp.torch.get_num_threads();
        Console.WriteLine($"training from step {trainer.Step} to {trainer.Config.MaxIters} on windows of block_size {trainer.Config.Model.BlockSize} tokens; matmul peak {trainer.PeakFlops / 1e9:F0} GFLOP/s per rank on {threads} thread{(threads == 1 ? "" : "s")}");
        if (LearningRateSchedule.WarmupOutlastingTheRun(trainer.Config) is { } warning) Console.Error.WriteLine($"warning: {warning}");
        var view = new TrainingConsole(trainer);
        trainer.Run(token);
        view.Finish();
        if (trainer.Step > 0) PlotCommand.Print(LossCurves.Read(trainer.RunDirectory).Series(), Path.Combine(trainer.RunDirectory, LossCurves.SvgFile));
        // A run saves its last checkpoint when it stops after a step: at step 0 it has none.
        if (trainer.StoppedEarly) Console.WriteLine(trainer.Step > 0 ? $"stopped at step {trainer.Step}; continue with `{Invocation.Command} train --resume {trainer.RunDirectory}`"
            : "stopped before the first step: nothing was trained or saved; start the run again with the same command");
    }
}
