// The live view of a training run: on a terminal, one line rewritten in place with step, loss,
// tokens/s and ETA; in a log (redirected output, or any multi-rank job), one line every
// log_interval steps. Evaluations and checkpoints get lines of their own.
using Stratus.Training;

namespace Stratus.Cli;

sealed class TrainingConsole
{
    readonly bool live;
    readonly int logInterval;
    readonly bool distributed;
    double averageStepSeconds;
    int steps;

    public TrainingConsole(Trainer trainer)
    {
        logInterval = trainer.Config.LogInterval;
        distributed = trainer.WorldSize > 1;
        // Open MPI gives every rank a pseudo-terminal even when the job's output goes to a file,
        // so a distributed run always logs lines.
        live = !Console.IsOutputRedirected && !distributed;
        trainer.StepCompleted += OnStep;
        trainer.Evaluated += e =>
            WriteLine($"step {e.Step}: train loss {e.TrainLoss:F4}, val loss {e.ValLoss:F4}{(double.IsNaN(e.ValStandardError) ? "" : $" ± {e.ValStandardError:F4}")}{(e.IsBest ? " (best)" : "")}");
        trainer.CheckpointSaved += path => { if (!live) WriteLine($"checkpoint saved: {path}"); };
    }

    void OnStep(StepReport r)
    {
        // The first steps include warm-up (thread pools, allocator); weigh recent steps more.
        steps++;
        averageStepSeconds = steps <= 2 ? r.StepSeconds : 0.9 * averageStepSeconds + 0.1 * r.StepSeconds;
        var remaining = TimeSpan.FromSeconds(averageStepSeconds * (r.MaxSteps - r.Step - 1));
        var line = $"step {r.Step + 1,6}/{r.MaxSteps} | loss {r.TrainLoss:F4} | lr {r.LearningRate:0.00e+00} | {r.TokensPerSecond,8:N0} tok/s | {r.StepSeconds * 1000,7:F1} ms/step | mfu {r.Mfu * 100,5:F1}%{(distributed ? $" | comm {r.CommunicationSeconds / r.StepSeconds * 100,4:F1}%" : "")} | eta {Format(remaining)}";
        if (live)
        {
            Console.Write("\r" + line.PadRight(Math.Max(0, Console.WindowWidth - 1))[..Math.Min(line.Length + 2, Math.Max(line.Length, Console.WindowWidth - 1))]);
        }
        else if ((r.Step + 1) % logInterval == 0 || r.Step + 1 == r.MaxSteps)
        {
            Console.WriteLine(line);
        }
    }

    void WriteLine(string text)
    {
        if (live) Console.Write("\r\u001b[2K");
        Console.WriteLine(text);
    }

    public void Finish()
    {
        if (live) Console.WriteLine();
    }

    static string Format(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:D2}s" : $"{t.Seconds}s";
}
