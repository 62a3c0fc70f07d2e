// `stratus train --config <file.json> --data <dataset> --out <run> [--<key> <value>]...`
// `stratus train --resume <run>`
using System.CommandLine;
using Stratus.Training;

namespace Stratus.Cli;

static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "training config (JSON, nanoGPT key names); see configs/" };
        var data = new Option<string>("--data") { Description = "dataset folder made by `stratus prepare`" };
        var output = new Option<string>("--out") { Description = "run folder: metrics.jsonl and checkpoints/" };
        var resume = new Option<string>("--resume") { Description = "continue the run in this folder from its last checkpoint" };
        var initFrom = new Option<string>("--init-from") { Description = "start from the weights of a trained or imported model (run or checkpoint folder)" };
        var command = new Command("train", "Train a model, or resume a run exactly where it stopped.") { config, data, output, resume, initFrom };
        var overrides = new ConfigOptions(command);
        command.SetAction((result, cancellation) =>
        {
            using var stop = StopOnCtrlC(out var token);
            using var trainer = result.GetValue(resume) is { } runDirectory
                ? Trainer.Resume(runDirectory, overrides.Overrides(result))
                : Trainer.Start(
                    TrainConfig.Load(result.GetValue(config), overrides.Overrides(result)),
                    result.GetValue(data) ?? throw new StratusUserException("--data is required: the dataset folder made by `stratus prepare`"),
                    result.GetValue(output) ?? throw new StratusUserException("--out is required: the run folder to write"),
                    result.GetValue(initFrom));
            Run(trainer, token);
            return Task.FromResult(0);
        });
        return command;
    }

    public static void Run(Trainer trainer, CancellationToken token)
    {
        var model = trainer.Model;
        Console.WriteLine($"model: {model.Config.Architecture}, {model.ParameterCount(nonEmbedding: false) / 1e6:F2} M parameters, " +
            $"{model.Config.NLayer} layers, {model.Config.NHead} heads, {model.Config.NEmbd} wide, context {model.Config.BlockSize}, {trainer.Config.Dtype}");
        Console.WriteLine($"training from step {trainer.Step} to {trainer.Config.MaxIters}; matmul peak {trainer.PeakFlops / 1e9:F0} GFLOP/s");
        var view = new TrainingConsole(trainer);
        trainer.Run(token);
        view.Finish();
        if (token.IsCancellationRequested) Console.WriteLine($"stopped at step {trainer.Step}; continue with `stratus train --resume <run>`");
    }

    /// <summary>Ctrl+C asks the trainer to save a checkpoint and stop after the current step.</summary>
    static IDisposable StopOnCtrlC(out CancellationToken token)
    {
        var source = new CancellationTokenSource();
        token = source.Token;
        ConsoleCancelEventHandler handler = (_, e) =>
        {
            if (source.IsCancellationRequested) return; // a second Ctrl+C ends the process at once
            e.Cancel = true;
            source.Cancel();
        };
        Console.CancelKeyPress += handler;
        return new Registration(() => { Console.CancelKeyPress -= handler; source.Dispose(); });
    }

    sealed class Registration(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }
}
