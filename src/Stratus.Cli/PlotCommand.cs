// `stratus plot <run>`: a run's training and val loss curves drawn in the terminal (a run in
// progress included: it reads metrics.jsonl as it stands); `--svg <file>` also writes the image
// that training keeps in <run>/loss.svg.
using System.CommandLine;
using Spectre.Console;
using Stratus.Training;

namespace Stratus.Cli;

static class PlotCommand
{
    public static Command Create()
    {
        var run = new Argument<string>("run") { Description = "run folder (holds metrics.jsonl)" };
        var svg = new Option<string>("--svg") { Description = "also write the curves as an SVG image to this file" };
        var command = new Command("plot", "Draw a run's loss curves.") { run, svg };
        command.SetAction(result =>
        {
            var directory = result.GetValue(run)!;
            var curves = LossCurves.Read(directory);
            if (curves.IsEmpty) throw new StratusUserException($"{directory} has no losses logged yet; plot it once training has run a step");
            if (result.GetValue(svg) is { } path) curves.WriteSvg(path, directory);
            Print(curves, result.GetValue(svg) ?? Path.Combine(directory, LossCurves.SvgFile));
            return 0;
        });
        return command;
    }

    /// <summary>Prints the curves, the last and best val loss, and where the image is.</summary>
    public static void Print(LossCurves curves, string svgPath)
    {
        var width = Math.Clamp(AnsiConsole.Profile.Width - 12, 30, 100);
        AnsiConsole.Markup(curves.ToTextPlot(width, 12, (text, series) => series switch
        {
            LossCurves.TrainSeries => $"[steelblue1]{text}[/]",
            LossCurves.ValSeries => $"[darkorange]{text}[/]",
            _ => Markup.Escape(text),
        }));
        if (curves.Val.Count > 0)
        {
            var best = curves.Val.MinBy(p => p.Loss);
            Console.WriteLine($"val loss {curves.Val[^1].Loss:F4} at step {curves.Val[^1].Step} (best {best.Loss:F4} at step {best.Step})");
        }
        if (File.Exists(svgPath)) Console.WriteLine($"image: {svgPath}");
    }
}
