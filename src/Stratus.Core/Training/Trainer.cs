// The training loop, top to bottom as in nanoGPT's train.py: for each step, evaluate when due,
// checkpoint when due, then run the step's micro-batches forward and backward, clip, and take
// an AdamW step at the scheduled learning rate. Every input of a step, data and dropout alike,
// is a function of (seed, step, micro-batch), and the checkpoint holds everything else (weights,
// optimizer moments), so a resumed run repeats the uninterrupted one exactly.
//
// Data parallelism (mpirun / srun, see docs/distributed.md): with N ranks, rank r runs the
// micro-batches m with m mod N = r of the job's gradient_accumulation_steps, and the optimizer
// combines the gradients (DataParallel.CreateAdamW), so N ranks learn what one rank learns with
// the same accumulation. Only rank 0 writes metrics and checkpoints.
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Safety;
using Stratus.Distributed;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Training;

/// <summary>What one optimizer step did, for the console and the metrics log. Tokens are the whole
/// job's; CommunicationSeconds is the part of the step this rank spent in collectives.</summary>
public sealed record StepReport(long Step, long MaxSteps, double TrainLoss, double LearningRate, double GradNorm,
    double StepSeconds, double TokensPerSecond, double Mfu, double ElapsedSeconds, double CommunicationSeconds);

/// <summary>An evaluation's mean losses; ValStandardError is how far another draw of eval batches
/// would typically move ValLoss (NaN with a single batch).</summary>
public sealed record EvalReport(long Step, double TrainLoss, double ValLoss, double ValStandardError, bool IsBest);

public sealed class Trainer : IDisposable
{
    public const string RunFile = "run.json";
    /// <summary>run.json's key for the registered version the run started from (see <see cref="Start(TrainConfig, string, string, Checkpoint?, ICommunicator?, bool, string?)"/>).</summary>
    public const string InitFromVersionKey = "init_from_version";
    /// <summary>run.json's key for what the run trains on (<see cref="BatchSampler.Content"/>).</summary>
    const string DatasetKey = "dataset";

    readonly TrainConfig config;
    readonly string runDirectory;
    readonly BatchSampler sampler;
    readonly CausalLanguageModel model;
    readonly IOptimizer optimizer;
    readonly TimedCommunicator communicator;
    readonly Device device;
    readonly double flopsPerStep, peakFlops;
    long step;
    FolderLock? runLock;
    readonly Dictionary<string, string> carriedFiles = [];
    double bestValLoss = double.PositiveInfinity;
    readonly Generator generator;
    readonly bool evaluates;
    /// <summary>A chat dataset's windows of this rank's micro-batches of a step, drawn once to count
    /// the step's targets and read at their forwards (TrainStep); null for unmasked data.</summary>
    readonly long[]? stepWindows;
    readonly StopAgreement stopAgreement;

    /// <param name="trainedOn">The <see cref="BatchSampler.Content"/> of the data a resumed run
    /// was trained on, where its run.json records it.</param>
    /// <param name="evaluates">False for a trainer that only takes steps (<see cref="TrainStep"/>, a
    /// benchmark's): its data then needs no val split.</param>
    Trainer(TrainConfig config, string dataDirectory, string runDirectory, Checkpoint? resumeFrom, Checkpoint? initFrom, ICommunicator? communicator, string? trainedOn = null, bool evaluates = true)
    {
        this.evaluates = evaluates;
        // What the run records (run.json, each checkpoint's train_config.json) is the model it trains.
        if (initFrom is not null) config = config.Training(initFrom.ModelConfig);
        this.config = config;
        this.runDirectory = runDirectory;
        this.communicator = new TimedCommunicator(communicator ?? new SingleProcessCommunicator());
        CheckRanks(config, this.communicator.WorldSize);
        stopAgreement = new StopAgreement(this.communicator);
        // Set by every run, to its own value (the flag is the process's), before the model meets
        // its device and cuBLAS its first matmul.
        Determinism.Apply(config.Deterministic);
        device = ComputeDevice.Open(config.Device);
        sampler = OpenData(config, dataDirectory, runDirectory, resumeFrom, initFrom, trainedOn, evaluates, out var template);
        var tokenizer = sampler.Tokenizer;
        if (template is not null) carriedFiles[ChatTemplate.FileName] = template;
        if (sampler.IsMasked) stepWindows = new long[(config.GradientAccumulationSteps + this.communicator.WorldSize - 1) / this.communicator.WorldSize * config.BatchSize];

        // Before the first exchange of parameters, which ranks that disagree on the model's shape
        // would make with buffers of different sizes.
        const string SameCommand = "start every rank with the same command, dataset and run folder";
        this.communicator.RequireSameOnEveryRank([
            .. JsonSerializer.SerializeToNode(config, TrainConfig.Json)!.AsObject().Select(setting => (setting.Key, setting.Value?.ToJsonString() ?? "null", SameCommand)),
            ("dataset", sampler.Identity, SameCommand),
            ("--resume", resumeFrom is null ? "new run" : "resumed", SameCommand),
            ("init_from model", initFrom is null ? "none" : JsonSerializer.Serialize(initFrom.ModelConfig), SameCommand),
        ]);
        // Each rank resumes the checkpoint its node sees: another copy of the run (older, or
        // trained on since) would give it other optimizer moments than rank 0's, whose weights
        // every rank starts from, and it would train on silently (ZeRO-1 steps its shard with them;
        // replicated, its weights drift from rank 0's). Compared once every rank is known to
        // resume: a rank that started a new run resumed no copy, and is told so above.
        const string SameCopy = "each rank resumed the copy of the run folder its node holds, and they differ: copy the same run folder to every node, or use a shared file system";
        this.communicator.RequireSameOnEveryRank([
            ("resumed step", resumeFrom?.State?.Step.ToString() ?? "none", SameCopy),
            ("resumed checkpoint", resumeFrom?.ContentHash ?? "none", SameCopy),
        ]);
        generator = torch.random.manual_seed(config.Seed);
        // A resumed run is rebuilt as its checkpoint holds it: a run begun --init-from an imported
        // model has that model's context, not the block_size it trains on. Its adapters are the
        // new run's: with lora_rank 0 it is a full fine-tune (of the merged model, when it comes
        // from a LoRA run; see Checkpoint.CreateModel).
        var modelConfig = resumeFrom is not null ? resumeFrom.ModelConfig with { Dropout = config.Model.Dropout }
            : initFrom is null ? config.ToModelConfig(tokenizer.VocabSize)
            : initFrom.ModelConfig with { Dropout = config.Model.Dropout, Lora = config.LoraConfigFor(initFrom.ModelConfig.Architecture) };
        // Built on the CPU, then moved: the initial weights come from the CPU's generator, the
        // same whatever the device.
        model = (resumeFrom ?? initFrom)?.CreateModel(config: modelConfig) ?? CausalLanguageModel.Create(modelConfig);
        model.to(device);
        model.ComputeDtype = config.ComputeDtype;
        // Only what trains gets optimizer state (with LoRA: the adapters; the base is frozen).
        optimizer = DataParallel.CreateAdamW(model.named_parameters().Where(p => p.parameter.requires_grad), this.communicator, config.ZeroStage, config.Beta1, config.Beta2, config.WeightDecay);
        if (resumeFrom is not null)
        {
            resumeFrom.LoadOptimizer(optimizer);
            var state = resumeFrom.State ?? throw new StratusUserException($"{resumeFrom.Directory} has no trainer state; it cannot be resumed");
            step = state.Step;
            bestValLoss = state.BestValLoss;
        }

        var tokensPerStep = (double)config.BatchSize * config.Model.BlockSize * config.GradientAccumulationSteps;
        flopsPerStep = model.TrainingFlopsPerToken(config.Model.BlockSize) * tokensPerStep;
        peakFlops = MachineMeasures.MeasuredMatmulPeak(model.ComputeDtype, device);
        Tokenizer = tokenizer;
    }

    /// <summary>The dataset a run trains on, opened and checked against the model it starts from
    /// (<paramref name="initFrom"/>) or continues (<paramref name="resumeFrom"/>, trained on the data
    /// <paramref name="trainedOn"/> names): the same tokenizer, chat template and text, a block_size
    /// within the model's context. <paramref name="template"/> is the chat template the run chats in.</summary>
    static BatchSampler OpenData(TrainConfig config, string dataDirectory, string runDirectory, Checkpoint? resumeFrom, Checkpoint? initFrom, string? trainedOn, bool evaluates,
        out string? template)
    {
        var sampler = new BatchSampler(dataDirectory, config.BatchSize, config.Model.BlockSize, config.Seed, only: evaluates ? null : Split.Train);
        try
        {
            var tokenizer = sampler.Tokenizer;
            // Resuming too: a dataset prepared again since the run began may number the text otherwise.
            (resumeFrom ?? initFrom)?.RequireTokenizerOf(dataDirectory, tokenizer);
            // The model is served in the chat format it learned: a resumed run keeps its template; a
            // new one takes the template its chat data was rendered with when prepare was given one,
            // else its base model's (none: the one derived from the tokenizer).
            var stored = ChatDatasetPreparer.StoredTemplate(dataDirectory);
            template = resumeFrom is not null ? ChatTemplate.Find(resumeFrom.Directory) : stored ?? (initFrom is null ? null : ChatTemplate.Find(initFrom.Directory));
            if (resumeFrom is not null && stored is not null && stored != template)
                throw new StratusUserException(s => $"{dataDirectory} was rendered with a chat template other than the one run {runDirectory} learned and chats in; resume with the data the run was trained on, or start a new run from it with {s.Option("init_from")}");
            // Other text in the same tokenizer and template (the folder prepared again from another
            // corpus) would go on training silently: the run would no longer be the one resumed, and
            // a val loss measured on other text would take the place of checkpoints/best.
            if (trainedOn is not null && trainedOn != sampler.Content)
                throw new StratusUserException(s => $"{dataDirectory} holds other data than run {runDirectory} was trained on: {sampler.DifferenceFrom(trainedOn)}; " +
                    $"resume with the run's dataset ({s.Option("data")} <folder>), or start a new run on this data from it with {s.Option("init_from")} {runDirectory}");
            if (initFrom is not null && config.Model.BlockSize > initFrom.ModelConfig.BlockSize)
                throw new StratusUserException(s => $"block_size {config.Model.BlockSize} is over the model's maximum context of {initFrom.ModelConfig.BlockSize}; lower {s.Option(Surface.OverridesPrefix + "block_size")}");
            return sampler;
        }
        catch
        {
            sampler.Dispose();
            throw;
        }
    }

    public ITokenizer Tokenizer { get; }
    public CausalLanguageModel Model => model;
    public TrainConfig Config => config;
    public long Step => step;
    public double FlopsPerStep => flopsPerStep;
    public double PeakFlops => peakFlops;
    public int WorldSize => communicator.WorldSize;
    public bool IsMain => communicator.IsMain;
    /// <summary>Bytes of optimizer moments on this rank (1/N of them under ZeRO-1).</summary>
    public long OptimizerStateBytes => optimizer.StateBytes;
    /// <summary>Run ended before max_iters because this or another rank was asked to stop.</summary>
    public bool StoppedEarly { get; private set; }

    public event Action<StepReport>? StepCompleted;
    public event Action<EvalReport>? Evaluated;
    public event Action<string>? CheckpointSaved;

    public string RunDirectory => runDirectory;

    /// <summary>The checkpoint folders this run saves, each replaced whole when saved again:
    /// checkpoints/best and checkpoints/last, absolute.</summary>
    public IReadOnlyList<string> CheckpointDirectories => [CheckpointDirectory("best"), CheckpointDirectory("last")];

    string CheckpointDirectory(string name) => Path.GetFullPath(Path.Combine(runDirectory, "checkpoints", name));

    /// <summary>Starts a new run in <paramref name="runDirectory"/> (an existing run there is
    /// replaced only if it has no checkpoint; otherwise use --resume), from the model in the run or
    /// checkpoint folder <paramref name="initFrom"/> where given. A trainer that does not
    /// <paramref name="evaluates"/> only takes steps (<see cref="TrainStep"/>, a benchmark's), and
    /// its data needs no val split.</summary>
    public static Trainer Start(TrainConfig config, string dataDirectory, string runDirectory, string? initFrom = null, ICommunicator? communicator = null, bool evaluates = true) =>
        Start(config, dataDirectory, runDirectory, initFrom is null ? null : Checkpoint.Open(Checkpoint.Resolve(initFrom)), communicator, evaluates);

    /// <summary>Starts a new run from the opened checkpoint <paramref name="initFrom"/> (whose model
    /// config <see cref="TrainConfig.Load"/> takes for the run's default block_size).
    /// <paramref name="initFromVersion"/> names the model registry's version (NAME:VERSION) that
    /// checkpoint is, where the caller resolved one: run.json records it as the run's parent beside
    /// the folder, which `models register` of this run reads (the registry lives above Core).</summary>
    public static Trainer Start(TrainConfig config, string dataDirectory, string runDirectory, Checkpoint? initFrom, ICommunicator? communicator = null, bool evaluates = true,
        string? initFromVersion = null)
    {
        DatasetFolder.RequireNoDatasetIn(runDirectory, "run");
        RequireNoModelIn(runDirectory);
        var trainer = new Trainer(config, dataDirectory, runDirectory, null, initFrom, communicator, evaluates: evaluates);
        try
        {
            // Made once the data, model and settings were accepted: a refused start leaves nothing.
            Directory.CreateDirectory(runDirectory);
            if (!trainer.IsMain) return trainer;
            trainer.runLock = LockRun(runDirectory);
            // A run started into the same folder meanwhile, which has saved a checkpoint and ended.
            RequireNoModelIn(runDirectory);
            var run = new JsonObject { ["data"] = Path.GetFullPath(dataDirectory), [DatasetKey] = trainer.sampler.Content, ["init_from"] = initFrom is null ? null : Path.GetFullPath(initFrom.Directory), ["config"] = JsonSerializer.SerializeToNode(trainer.config, TrainConfig.Json) };
            if (initFromVersion is not null) run[InitFromVersionKey] = initFromVersion;
            AtomicFile.WriteJson(Path.Combine(runDirectory, RunFile), run);
            return trainer;
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }

    /// <summary>What <see cref="Start"/> checks before it builds a model, for a run to be started
    /// later by another process (a job): the config (unknown keys, bad values), the model
    /// <paramref name="initFrom"/> where given (there, whole, its shape not changed by the config),
    /// the dataset (there, whole, long enough for block_size, in the model's tokenizer) and the run
    /// folder (no dataset or model in it), each refused with the error `stratus train` gives.</summary>
    /// <exception cref="StratusUserException">What train would refuse; its Param the config key at
    /// fault where one is, else "out", "data" or "init_from" for the folder at fault (an API names its field).</exception>
    public static TrainConfig CheckStart(string? configPath, IEnumerable<KeyValuePair<string, string>> overrides, string dataDirectory, string runDirectory, string? initFrom = null)
    {
        Checkpoint? init = null;
        TrainConfig config;
        if (initFrom is null) config = TrainConfig.Load(configPath, overrides);
        else
        {
            config = TrainConfig.LoadInitFrom(configPath, overrides, () =>
            {
                try { return (init = Checkpoint.Open(Checkpoint.Resolve(initFrom))).ModelConfig; }
                catch (StratusUserException e) when (e.Param is null) { throw e.WithParam("init_from"); }
            });
            // What the run would record (Trainer's constructor): the model it fine-tunes.
            config = config.Training(init!.ModelConfig);
        }
        try
        {
            DatasetFolder.RequireNoDatasetIn(runDirectory, "run");
            RequireNoModelIn(runDirectory);
        }
        catch (StratusUserException e) when (e.Param is null) { throw e.WithParam("out"); }
        try
        {
            using (OpenData(config, dataDirectory, runDirectory, null, init, null, evaluates: true, out _)) { }
        }
        catch (StratusUserException e) when (e.Param is null) { throw e.WithParam("data"); }
        return config;
    }

    /// <summary>What <see cref="Resume"/> checks before it builds a model, for a run to be resumed
    /// later by another process (a job): the run (its run.json and last checkpoint, whole), the
    /// overrides (none that would change the model), and its dataset (or <paramref name="dataDirectory"/>:
    /// there, whole, of the same text and tokenizer), each refused with the error `stratus train --resume` gives.</summary>
    /// <exception cref="StratusUserException">What train would refuse; its Param the config key at
    /// fault where one is, else "resume" or "data".</exception>
    public static TrainConfig CheckResume(string runDirectory, IEnumerable<KeyValuePair<string, string>> overrides, string? dataDirectory)
    {
        JsonObject run;
        string? recorded;
        try { (run, recorded) = ReadRunFile(runDirectory); }
        catch (StratusUserException e) when (e.Param is null) { throw e.WithParam("resume"); }
        var (checkpoint, data, config, trainedOn) = ResumePlan(runDirectory, run, recorded, overrides, dataDirectory);
        try
        {
            using (OpenData(config, data, runDirectory, checkpoint, null, trainedOn, evaluates: true, out _)) { }
        }
        catch (StratusUserException e) when (e.Param is null) { throw e.WithParam("data"); }
        return config;
    }

    /// <summary>Whether <paramref name="config"/> trains on <paramref name="ranks"/> data-parallel
    /// ranks, as a job submitted for that many checks before it is queued.</summary>
    /// <exception cref="StratusUserException">They do not divide its micro-batches, or it trains on a GPU.</exception>
    public static void CheckRanks(TrainConfig config, int ranks)
    {
        if (config.GradientAccumulationSteps % ranks != 0)
            throw new StratusUserException(s => $"gradient_accumulation_steps ({config.GradientAccumulationSteps}) must be a multiple of the number of ranks ({ranks}): it counts the micro-batches of the whole job per optimizer step, " +
                $"each rank runs an equal share; pass {s.Option(Surface.OverridesPrefix + "gradient_accumulation_steps")} {(config.GradientAccumulationSteps / ranks + 1) * ranks}, or run on a number of ranks that divides {config.GradientAccumulationSteps}");
        if (ranks > 1 && config.Device != ComputeDevice.Cpu)
            throw new StratusUserException(s => $"device {config.Device}: data-parallel training runs on the CPU, its collectives go through host MPI (docs/distributed.md); train on one GPU {s.Pick("without mpirun", $"with {s.Option("ranks")} 1")}, or on the ranks' CPUs with {s.Option(Surface.OverridesPrefix + "device")} cpu");
    }

    /// <summary>Why <paramref name="runDirectory"/> cannot be trained into now: the error a
    /// training would give while another process holds the run's lock; null where none does.</summary>
    public static StratusUserException? RunInUse(string runDirectory)
    {
        if (!Directory.Exists(runDirectory)) return null;
        try
        {
            LockRun(runDirectory).Dispose();
            return null;
        }
        catch (StratusUserException e)
        {
            return e;
        }
    }

    /// <summary>Refuses a folder that holds any checkpoint, not only a run's last (an imported
    /// model has only best), as a new run's.</summary>
    static void RequireNoModelIn(string runDirectory)
    {
        if (Checkpoint.Exists(runDirectory))
            throw new StratusUserException(s => $"{runDirectory} already holds a model; continue a run there with {s.Pick($"`stratus train --resume {runDirectory}`", $"'resume' {runDirectory}")}, fine-tune from it with {s.Option("init_from")}, or choose another {s.Option("out")}");
    }

    /// <summary>The run folder's lock, which the process writing it (rank 0) holds while it trains:
    /// a second training into it, new or resumed, would write its metrics and checkpoints among
    /// this one's.</summary>
    static FolderLock LockRun(string runDirectory) =>
        FolderLock.Take(runDirectory, s => $"{runDirectory} is in use by another {s.Pick("`stratus train`", "training")}, which holds its {FolderLock.FileName}; wait for that training to end, or train into another {s.Option("out")}");

    /// <summary>A run's run.json and the dataset folder it records (null where it names none).</summary>
    /// <exception cref="StratusUserException">The folder has no run.json, or it is not a JSON object.</exception>
    public static (JsonObject Run, string? Dataset) ReadRunFile(string runDirectory)
    {
        var runPath = Path.Combine(runDirectory, RunFile);
        if (!File.Exists(runPath))
            throw new StratusUserException(s => DatasetFolder.DatasetIn(runDirectory) is { } dataset
                ? $"{runDirectory} holds {dataset}, not a run; resume the folder that {s.Pick("`stratus train --out`", "a training's 'out'")} wrote"
                : $"{runDirectory} is not a Stratus run (no {RunFile}); start one with {s.Pick($"`stratus train --config ... --out {runDirectory}`", $"'out' {runDirectory}")}");
        var run = JsonText.ParseFile(runPath, hint: "Restore it from a copy.") as JsonObject ?? throw new StratusUserException($"{runPath} is not a JSON object; restore it");
        return (run, run["data"] is JsonValue data && data.TryGetValue<string>(out var path) ? path : null);
    }

    /// <summary>Continues a run from its last checkpoint; overrides may change only settings that
    /// do not alter what has been learned so far (e.g. max_iters). <paramref name="dataDirectory"/>
    /// replaces the run's dataset folder (when it moved); it must hold the same tokenizer.</summary>
    public static Trainer Resume(string runDirectory, IEnumerable<KeyValuePair<string, string>>? overrides = null, ICommunicator? communicator = null,
        string? dataDirectory = null)
    {
        var (run, recorded) = ReadRunFile(runDirectory);
        var held = communicator?.IsMain ?? true ? LockRun(runDirectory) : null;
        try { return Resume(runDirectory, run, recorded, overrides, communicator, dataDirectory, held); }
        catch
        {
            held?.Dispose();
            throw;
        }
    }

    static Trainer Resume(string runDirectory, JsonObject run, string? recorded, IEnumerable<KeyValuePair<string, string>>? overrides, ICommunicator? communicator,
        string? dataDirectory, FolderLock? held)
    {
        var (checkpoint, data, config, trainedOn) = ResumePlan(runDirectory, run, recorded, overrides, dataDirectory);
        var trainer = new Trainer(config, data, runDirectory, checkpoint, null, communicator, trainedOn) { runLock = held };
        // A run begun before run.json recorded its data records it from now on.
        if (trainer.IsMain && (Path.GetFullPath(data) != recorded || trainedOn is null))
        {
            run["data"] = Path.GetFullPath(data);
            run[DatasetKey] = trainer.sampler.Content;
            AtomicFile.WriteJson(Path.Combine(runDirectory, RunFile), run);
        }
        return trainer;
    }

    /// <summary>What a resume of the run continues: its last checkpoint, the dataset folder (the
    /// run's, or <paramref name="dataDirectory"/> where given), its config with the overrides applied
    /// (refused where they change the model) and the data it was trained on, where recorded.</summary>
    /// <exception cref="StratusUserException">Its Param "resume" for the run at fault, "data" for a
    /// missing dataset, or the overridden key ("max_iters" too where the run is at it already).</exception>
    static (Checkpoint Checkpoint, string DataDirectory, TrainConfig Config, string? TrainedOn) ResumePlan(string runDirectory, JsonObject run, string? recorded,
        IEnumerable<KeyValuePair<string, string>>? overrides, string? dataDirectory)
    {
        var runPath = Path.Combine(runDirectory, RunFile);
        Checkpoint checkpoint;
        try { checkpoint = Checkpoint.Open(Checkpoint.Resolve(runDirectory, preferBest: false)); }
        catch (StratusUserException e) when (e.Param is null) { throw e.WithParam("resume"); }
        dataDirectory ??= recorded ?? throw new StratusUserException(s => $"{runPath} names no dataset; pass the run's dataset folder with {s.Option("data")}") { Param = "data" };
        if (!Directory.Exists(dataDirectory))
            throw new StratusUserException(s => $"the run's dataset {dataDirectory} does not exist; if it moved, pass its folder with {s.Option("data")}") { Param = "data" };
        var config = checkpoint.TrainConfig ?? throw new StratusUserException($"{checkpoint.Directory} has no training config") { Param = "resume" };
        var overridden = overrides?.ToList() ?? [];
        if (overridden.Count > 0)
        {
            var resumed = config.With(overridden);
            var reshaped = resumed.ModelDefiningKeysChangedFrom(config);
            if (reshaped.Count > 0)
                throw new StratusUserException(s => $"{string.Join(", ", reshaped)} cannot change when resuming: the checkpoint holds the model as it was built; " +
                    $"start a new run with {s.Option("out")}, or fine-tune this one from it with {s.Option("init_from")} {runDirectory}") { Param = reshaped[0] };
            config = resumed;
        }
        // A run already at max_iters would end at once, "succeeded" with nothing done: whoever
        // resumes it wants more steps (or gave fewer than it has), so refuse before anything starts.
        if (checkpoint.State is { Step: > 0 } state && state.Step >= config.MaxIters)
            throw new StratusUserException(s => $"max_iters is {config.MaxIters} and the checkpoint of {runDirectory} is at step {state.Step}: nothing to train; " +
                $"resume with {s.Option(Surface.OverridesPrefix + "max_iters")} above {state.Step} to train on") { Param = "max_iters" };
        var trainedOn = run[DatasetKey] is JsonValue dataset && dataset.TryGetValue<string>(out var identity) ? identity : null;
        return (checkpoint, dataDirectory, config, trainedOn);
    }

    public void Run(CancellationToken cancellation = default)
    {
        using var metrics = communicator.IsMain ? new MetricsLog(runDirectory, step) : null;
        var clock = Stopwatch.StartNew();
        var startStep = step;
        // A step stopped within (TrainStep, between micro-batches) is abandoned: the loop comes
        // round to the same step once more, evaluated already, to end the run there.
        for (var abandoned = false; ;)
        {
            var stopping = abandoned || communicator.AnyRank(cancellation.IsCancellationRequested);
            var evalDue = !abandoned && (step % config.EvalInterval == 0 || step == config.MaxIters);
            if (evalDue)
            {
                var (trainLoss, valLoss, valStandardError) = Evaluate();
                RequireFinite(valLoss, "val loss", ofStep: false, untrained: step == startStep);
                RequireFinite(trainLoss, "train loss", ofStep: false, untrained: step == startStep);
                var isBest = valLoss < bestValLoss;
                if (isBest) bestValLoss = valLoss;
                var evaluation = new JsonObject { ["step"] = step, ["val_loss"] = valLoss, ["eval_train_loss"] = trainLoss, ["elapsed_s"] = clock.Elapsed.TotalSeconds };
                if (!double.IsNaN(valStandardError)) evaluation["val_loss_stderr"] = valStandardError;
                metrics?.Write(evaluation);
                Evaluated?.Invoke(new EvalReport(step, trainLoss, valLoss, valStandardError, isBest));
                if (step > startStep) DrawLossCurves(metrics);
                if (isBest && step > 0) SaveCheckpoint("best");
            }
            var checkpointDue = config.CheckpointInterval > 0 && step % config.CheckpointInterval == 0;
            if (step > startStep && (checkpointDue || step == config.MaxIters || stopping) && !(abandoned && checkpointDue))
                SaveCheckpoint("last");
            StoppedEarly = stopping && step < config.MaxIters;
            if (step >= config.MaxIters || stopping)
            {
                if (!evalDue) DrawLossCurves(metrics);
                break;
            }

            if (TrainStep(clock, cancellation) is not { } report)
            {
                abandoned = true;
                continue;
            }
            RequireFinite(report.TrainLoss, "training loss", ofStep: true, untrained: step == startStep);
            // Gradients can overflow while the loss is still a number: AdamW's step has then made
            // the weights NaN, which the next checkpoint would save over the last good one.
            RequireFinite(report.GradNorm, "gradient norm", ofStep: true, untrained: step == startStep);
            var entry = new JsonObject
            {
                ["step"] = report.Step, ["train_loss"] = report.TrainLoss, ["lr"] = report.LearningRate, ["grad_norm"] = report.GradNorm,
                ["tokens_per_sec"] = report.TokensPerSecond, ["mfu"] = report.Mfu, ["step_ms"] = report.StepSeconds * 1000, ["elapsed_s"] = report.ElapsedSeconds,
            };
            if (communicator.WorldSize > 1) entry["comm_ms"] = report.CommunicationSeconds * 1000;
            metrics?.Write(entry);
            StepCompleted?.Invoke(report);
            step++;
        }
    }

    /// <summary>Rewrites <run>/loss.svg (rank 0): an image of the run so far, to look at while it trains.</summary>
    void DrawLossCurves(MetricsLog? metrics)
    {
        if (metrics is { Curves.IsEmpty: false })
            LossChart.WriteSvg(Path.Combine(runDirectory, LossCurves.SvgFile), metrics.Curves.Series(), $"{LossCurves.RunName(runDirectory)}: loss");
    }

    /// <summary>One optimizer step over gradient_accumulation_steps micro-batches (of the whole
    /// job: this rank runs those with micro mod WorldSize = Rank). Every rank must call it.</summary>
    public StepReport TrainStep(Stopwatch clock) => TrainStep(clock, CancellationToken.None)!;

    /// <summary><see cref="TrainStep(Stopwatch)"/>, abandoned where <paramref name="cancellation"/>
    /// comes (on any rank) between two micro-batches: null, the gradients dropped and the weights
    /// as at the step's start, so that a step of a large gradient_accumulation_steps (hours) does
    /// not hold a Ctrl+C back until its end, and a resume runs the step again whole.</summary>
    StepReport? TrainStep(Stopwatch clock, CancellationToken cancellation)
    {
        var watch = Stopwatch.StartNew();
        var communicationBefore = communicator.Elapsed;
        var lr = LearningRateSchedule.At(config, step);
        model.train();
        var accumulation = config.GradientAccumulationSteps;
        // Each micro-batch is read as it is needed (the windows of micro-batch m of step s are
        // a function of (seed, s, m)), not all before the first forward: a
        // gradient_accumulation_steps of 1,000,000 held the step's windows at once (3.3 GB after
        // 90 s of drawing them for a 1-layer model, 0.27 GB drawn one at a time).
        bool Stop() => cancellation.IsCancellationRequested;
        // A chat dataset's loss mask leaves each micro-batch its own number of targets, none at
        // all in a window of only user text: the step's loss is then the mean over the targets of
        // all its micro-batches (as Hugging Face Transformers weighs them since 4.46), which a
        // micro-batch without targets adds nothing to, so they are counted before the first
        // forward: their windows are drawn then, once (8 bytes a window kept; redrawing them at
        // each forward read their masks again, up to 64 times a window where assistant text is
        // sparse). Unmasked micro-batches all have B x T targets, where that is the mean of their
        // means, computed as before. Drawing is a small part of a step, and the ranks agree on a
        // stop once it is done, with the count.
        double? supervised = null;
        Span<long> Windows(int micro) => stepWindows.AsSpan(micro / communicator.WorldSize * config.BatchSize, config.BatchSize);
        if (stepWindows is not null)
        {
            long scored = 0;
            for (var micro = communicator.Rank; micro < accumulation; micro += communicator.WorldSize)
                scored += sampler.DrawTraining(step, micro, Windows(micro));
            var sums = communicator.SumOverRanks(scored, Stop() ? 1 : 0);
            if (sums[1] > 0) return null;
            supervised = sums[0];
            if (supervised == 0)
                throw new StratusUserException($"step {step}'s batches hold no assistant tokens to learn from: the chat data is too sparse in assistant text for block_size {config.Model.BlockSize}; raise --block-size or prepare with more assistant turns");
        }
        // The losses and the gradient norm stay on the device until the step is queued, then
        // come back in one read: on a GPU each read waits for every kernel before it, and the GPU
        // idles while the next ones are queued, so one read a step instead of one per micro-batch
        // and one for the norm (the batches' copies no longer wait either: BatchSampler.Batch).
        // The losses are summed there in float64 in micro-batch order, as the host summed them.
        using var stepScope = NewDisposeScope();
        var lossSum = torch.zeros([], dtype: ScalarType.Float64, device: device);
        for (var micro = communicator.Rank; micro < accumulation; micro += communicator.WorldSize)
        {
            if (micro >= communicator.WorldSize && stopAgreement.Agreed(Stop()))
            {
                optimizer.ZeroGrad();
                return null;
            }
            var started = Stopwatch.GetTimestamp();
            using var scope = NewDisposeScope();
            Tensor inputs, targets;
            if (stepWindows is null) (inputs, targets, _) = sampler.Sample(Split.Train, step, micro, device);
            else (inputs, targets) = sampler.Read(Windows(micro), device);
            SeedDropout(sampler.DropoutSeed(step, micro));
            var logits = model.Forward(inputs);
            if (supervised is { } count)
            {
                var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1), reduction: nn.Reduction.Sum) / count;
                loss.backward();
                lossSum.add_(loss.detach(), alpha: accumulation);
            }
            else
            {
                var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1));
                // Divided by the job's micro-batch count: the gradients summed over ranks are the mean.
                (loss / accumulation).backward();
                lossSum.add_(loss.detach());
            }
            stopAgreement.Ran(Stopwatch.GetElapsedTime(started));
        }
        optimizer.ReduceGradients();
        var norm = optimizer.ClipGradientNorm(config.GradClip);
        optimizer.Step(lr);
        optimizer.ZeroGrad();
        using var read = torch.stack([lossSum, norm.to_type(ScalarType.Float64)]).cpu();
        var values = read.data<double>();
        var gradNorm = values[1];
        var jobLoss = communicator.SumOverRanks(values[0])[0];
        // TorchSharp hands each number it passes to libtorch over as a native Scalar (a + b passes
        // alpha = 1, the optimizer its hyperparameters: about 40 a step for the GPT-2-small shape)
        // and frees it only in a finalizer. At the GC's own pace (one collection in ~180 steps
        // here) they lie between the blocks glibc hands out again next step and fragment its heap:
        // that shape's resident memory grew 50-80 MB over 200 steps. Collecting each step's garbage
        // keeps it flat (+7 MB after warm-up) at no measurable cost (CPU config 32.1-32.7 ms/step
        // either way, interleaved).
        GC.Collect(0);
        var seconds = watch.Elapsed.TotalSeconds;
        var tokens = (double)config.BatchSize * config.Model.BlockSize * accumulation;
        return new StepReport(step, config.MaxIters, jobLoss / accumulation, lr, gradNorm, seconds, tokens / seconds,
            flopsPerStep / seconds / (peakFlops * communicator.WorldSize), clock.Elapsed.TotalSeconds,
            (communicator.Elapsed - communicationBefore).TotalSeconds);
    }

    /// <summary>Dropout draws from the generator of the device it runs on: the CPU's, or the
    /// GPU's, which seeding the CPU's leaves as it was.</summary>
    void SeedDropout(long seed)
    {
        generator.manual_seed(seed);
        if (device.type == DeviceType.CUDA) torch.cuda.manual_seed_all(seed);
    }

    /// <summary>Stops a run whose loss or gradient norm (<paramref name="what"/>) is no longer a
    /// number before anything is written from its weights: the checkpoints on disk are from before.
    /// <paramref name="ofStep"/>: measured by the training step <see cref="step"/> (else by the
    /// evaluation at it); <paramref name="untrained"/>: before this run's first update, where no
    /// learning rate is to blame.</summary>
    void RequireFinite(double value, string what, bool ofStep, bool untrained)
    {
        if (double.IsFinite(value)) return;
        // The console counts training steps from 1 (its "step 6/20" is metrics.jsonl's step 5),
        // and an evaluation by the steps before it, as metrics.jsonl does.
        var when = ofStep ? $"in training step {step + 1}/{config.MaxIters} (metrics.jsonl's step {step})" : $"at the evaluation of step {step}";
        if (untrained)
            throw new StratusUserException($"the {what} is {value} {when}, before any training step: the weights the run starts from or its data give a non-finite {what}, " +
                "which is no divergence (no learning rate causes it); check the model it starts from (its --init-from or --resume checkpoint) and the data");
        // A run that diverges early (a learning rate too high) often does so before its first
        // checkpoint, and then has none to resume from.
        var then = Checkpoint.Exists(runDirectory)
            ? $"then resume from the last checkpoint (`stratus train --resume {runDirectory} --learning-rate ...`) or start again"
            : "then start the run again: it has saved no checkpoint to resume from";
        throw new StratusUserException($"the {what} is {value} {when}: training diverged; lower --learning-rate or set --grad-clip, {then}");
    }

    /// <summary>Mean loss over eval_iters batches of train and of val, without dropout, and the
    /// standard error of the val mean over its batches (NaN for one batch): the eval batches are a
    /// random draw, and with nanoGPT's 20 batches of 12 the mean moves by about 0.015 between
    /// draws. Batch i runs on rank i mod WorldSize; every rank must call it and gets the job's values.</summary>
    public (double Train, double Val, double ValStandardError) Evaluate()
    {
        // Its val split was not checked, and may be empty or shorter than a window.
        if (!evaluates) throw new InvalidOperationException("this trainer was started to take steps only (evaluates: false); it cannot evaluate or Run");
        model.eval();
        using var noGrad = no_grad();
        // A masked batch without targets (only user text) has no loss: it is left out.
        (double Sum, double Squares, double Batches) Sums(Split split)
        {
            double sum = 0, squares = 0, batches = 0;
            for (var i = communicator.Rank; i < config.EvalIters; i += communicator.WorldSize)
            {
                using var scope = NewDisposeScope();
                var (inputs, targets, scored) = sampler.Sample(split, step, i, device, evaluation: true);
                if (scored == 0) continue;
                var logits = model.Forward(inputs);
                double loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1)).item<float>();
                sum += loss;
                squares += loss * loss;
                batches++;
            }
            return (sum, squares, batches);
        }
        var train = Sums(Split.Train);
        var val = Sums(Split.Val);
        var sums = communicator.SumOverRanks(train.Sum, val.Sum, val.Squares, train.Batches, val.Batches);
        model.train();
        var (trainBatches, n) = (sums[3], sums[4]);
        if (trainBatches == 0 || n == 0)
            throw new StratusUserException($"none of the {config.EvalIters} evaluation batches of the {(n == 0 ? "val" : "train")} split holds an assistant token: prepare the chat data with assistant turns in both splits, or raise --eval-iters");
        var valMean = sums[1] / n;
        var variance = n > 1 ? Math.Max(0, (sums[2] - n * valMean * valMean) / (n - 1)) : double.NaN;
        return (sums[0] / trainBatches, valMean, Math.Sqrt(variance / n));
    }

    /// <summary>Rank 0 writes; every rank takes part, since under ZeRO-1 rank 0 gathers the full
    /// optimizer state from all of them (the gathered copy ends with this scope).</summary>
    void SaveCheckpoint(string name)
    {
        using var scope = NewDisposeScope();
        var optimizerState = optimizer.StateDict();
        if (!communicator.IsMain) return;
        var directory = CheckpointDirectory(name);
        Checkpoint.Save(directory, model, Tokenizer, config, optimizerState, new TrainerState(step, bestValLoss), carriedFiles);
        CheckpointSaved?.Invoke(directory);
    }

    public void Dispose()
    {
        optimizer.Dispose();
        model.Dispose();
        sampler.Dispose();
        runLock?.Dispose();
    }
}
