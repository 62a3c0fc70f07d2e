// `stratus plot <run>...`: a run's training and val loss curves drawn in the terminal (a run in
// progress included: it reads metrics.jsonl as it stands), or the val curves of several runs laid
// over each other to compare them; `--svg <file>` also writes the chart as an image (training
// keeps one run's in <run>/loss.svg).
using System.CommandLine;
using Spectre.Console;
using Stratus.Training;

namespace Stratus.Cli;

static class PlotCommand
{
    /// <summary>Terminal colours in the order of LossChart's SVG colours.</summary>
    static readonly string[] Colours = ["steelblue1", "darkorange", "green3", "red1", "darkcyan", "gold1", "orchid", "lightpink1", "tan", "grey"];

    public static Command Create()
    {
        var runs = PathOptions.Arguments("runs", "run folders (they hold metrics.jsonl); several are compared by val loss");
        var svg = OutputPaths.File("--svg", "also write the chart as an SVG image to this file");
        var command = new Command("plot", "Draw a run's loss curves, or compare runs.") { runs, svg };
        command.SetAction(result =>
        {
            var directories = result.GetValue(runs)!;
            var curves = directories.Select(directory => (directory, LossCurves.Read(directory))).ToList();
            foreach (var (directory, run) in curves)
                if (run.IsEmpty) throw new StratusUserException($"{directory} has no losses logged yet; plot it once training has run a step");
            var series = curves.Count == 1 ? curves[0].Item2.Series() : LossCurves.Compare(curves);
            var title = curves.Count == 1 ? $"{LossCurves.RunName(directories[0])}: loss" : "val loss";
            if (result.GetValue(svg) is { } path) LossChart.WriteSvg(path, series, title);
            Print(series, result.GetValue(svg) ?? (curves.Count == 1 ? Path.Combine(directories[0], LossCurves.SvgFile) : null));
            return 0;
        });
        return command;
    }

    /// <summary>Prints the chart, the last and best value of each evaluated series, and where the image is.</summary>
    public static void Print(IReadOnlyList<ChartSeries> series, string? svgPath)
    {
        var width = Math.Clamp(AnsiConsole.Profile.Width - 12, 30, 100);
        AnsiConsole.Markup(LossChart.ToTextPlot(series, width, 12, (text, id) =>
            id == LossChart.Axis ? Markup.Escape(text) : $"[{Colours[(id - 1) % Colours.Length]}]{text}[/]"));
        foreach (var evaluated in series.Where(s => s.Markers && s.Points.Count > 0))
        {
            var best = evaluated.Points.MinBy(p => p.Loss);
            var latest = evaluated.Points[^1];
            var error = latest.StandardError > 0 ? $" ± {latest.StandardError:F4}" : "";
            Console.WriteLine($"{evaluated.Name} {latest.Loss:F4}{error} at step {latest.Step} (best {best.Loss:F4} at step {best.Step})");
        }
        if (svgPath is not null && File.Exists(svgPath)) Console.WriteLine($"image: {svgPath}");
    }
}
