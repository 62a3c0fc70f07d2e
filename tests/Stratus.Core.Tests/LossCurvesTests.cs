using System.Globalization;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class LossCurvesTests
{
    /// <summary>Training loss falling from 4 to 2 over 100 steps, val loss at every 25th step a bit above it.</summary>
    static LossCurves Falling()
    {
        var curves = new LossCurves();
        for (var step = 0; step <= 100; step++)
        {
            if (step % 25 == 0) curves.Add(new JsonObject { ["step"] = step, ["val_loss"] = 4.2 - 0.02 * step, ["val_loss_stderr"] = 0.05, ["eval_train_loss"] = 4.1 - 0.02 * step });
            if (step < 100) curves.Add(new JsonObject { ["step"] = step, ["train_loss"] = 4.0 - 0.02 * step, ["lr"] = 1e-3 });
        }
        return curves;
    }

    static List<(double X, double Y)> Polyline(XDocument svg, string series) =>
        svg.Descendants().Single(e => e.Name.LocalName == "polyline" && (string?)e.Attribute("data-series") == series)
            .Attribute("points")!.Value.Split(' ').Select(p => p.Split(','))
            .Select(p => (double.Parse(p[0], CultureInfo.InvariantCulture), double.Parse(p[1], CultureInfo.InvariantCulture))).ToList();

    [Fact]
    public void The_svg_draws_every_step_left_to_right_and_lower_loss_lower_on_the_page()
    {
        var svg = XDocument.Parse(LossChart.ToSvg(Falling().Series(), "run: loss"));
        var train = Polyline(svg, "train loss");
        Assert.Equal(100, train.Count);
        Assert.All(train.Zip(train.Skip(1)), pair => Assert.True(pair.Second.X > pair.First.X && pair.Second.Y > pair.First.Y));
        var val = Polyline(svg, "val loss");
        Assert.Equal(5, val.Count);
        Assert.True(val[^1].Y > val[1].Y);
        // val at step 100 (2.2) sits above train at step 99 (2.02): a smaller page y
        Assert.True(val[^1].Y < train[^1].Y);
        Assert.Contains(svg.Descendants(), e => e.Name.LocalName == "text" && e.Value == "run: loss");
        // Each val point in range has an error bar of one standard error each way, centred on it.
        var circles = svg.Descendants().Where(e => e.Name.LocalName == "circle").ToList();
        var bars = svg.Descendants().Where(e => (string?)e.Attribute("class") == "error").ToList();
        Assert.Equal(4, bars.Count); // step 0 (4.2) is above the drawn range
        double At(XElement e, string name) => double.Parse(e.Attribute(name)!.Value, CultureInfo.InvariantCulture);
        foreach (var (bar, circle) in bars.Zip(circles))
        {
            Assert.Equal(At(circle, "cy"), (At(bar, "y1") + At(bar, "y2")) / 2, 0.2);
            Assert.True(At(bar, "y1") - At(bar, "y2") > 5, "the bar spans the standard error");
        }
    }

    [Fact]
    public void The_terminal_plot_puts_high_losses_in_upper_rows_and_colours_each_curve()
    {
        // Mark each drawn cell with its curve instead of colouring it.
        string Paint(string text, int series) => series == LossChart.Axis ? text
            : new string(text.Select(c => c == '\u2800' ? ' ' : series == 1 ? 'T' : 'V').ToArray());
        var rows = LossChart.ToTextPlot(Falling().Series(), 40, 10, Paint).Split('\n');
        var plot = rows.Take(10).Select(row => row[(row.IndexOfAny(['┤', '│']) + 1)..]).ToList();
        Assert.All(plot, row => Assert.Equal(40, row.Length));
        int TopRow(int column, char curve) => plot.FindIndex(row => row[column] == curve);
        int BottomRow(int column, char curve) => plot.FindLastIndex(row => row[column] == curve);
        Assert.True(BottomRow(39, 'T') > TopRow(1, 'T'), string.Join('\n', plot));
        Assert.Contains(plot, row => row.Contains('V'));
        Assert.Matches(@"0 +step +100$", rows[11]);
    }

    [Fact]
    public void Runs_compared_get_one_val_curve_each_named_after_its_folder()
    {
        var better = new LossCurves();
        foreach (var step in new[] { 0, 25, 50, 75, 100 }) better.Add(new JsonObject { ["step"] = step, ["val_loss"] = 4.0 - 0.025 * step });
        var series = LossCurves.Compare([("runs/a/", Falling()), ("runs/b", better)]);
        Assert.Equal(["a", "b"], series.Select(s => s.Name));
        var svg = XDocument.Parse(LossChart.ToSvg(series, "val loss"));
        var (a, b) = (Polyline(svg, "a"), Polyline(svg, "b"));
        Assert.Equal(a.Select(p => p.X), b.Select(p => p.X)); // the same steps, one scale
        Assert.True(b[^1].Y > a[^1].Y); // b ends lower (1.5 against 2.2): further down the page
        Assert.DoesNotContain(svg.Descendants(), e => (string?)e.Attribute("data-series") == "train loss");
    }

    [Fact]
    public void A_run_that_has_not_logged_yet_has_no_losses_and_a_missing_folder_is_named_so()
    {
        // A run still building its model was told to "give the folder of a run made by
        // `stratus train`", as was a folder that does not exist.
        using var temp = new TempDirectory();
        var run = temp["run"];
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, Trainer.RunFile), "{}");
        Assert.True(LossCurves.Read(run).IsEmpty);
        Assert.Equal($"{temp["none"]} does not exist; give the folder of a run made by `stratus train --out <run>`",
            Assert.Throws<StratusUserException>(() => LossCurves.Read(temp["none"])).Message);
        Directory.CreateDirectory(temp["other"]);
        Assert.Equal($"{temp["other"]} has no {MetricsLog.FileName}; give the folder of a run made by `stratus train --out <run>`",
            Assert.Throws<StratusUserException>(() => LossCurves.Read(temp["other"])).Message);
    }

    [Fact]
    public void A_run_torn_by_a_crash_reads_up_to_its_last_whole_line_and_a_damaged_one_is_refused()
    {
        using var temp = new TempDirectory();
        var run = temp["run"];
        Directory.CreateDirectory(run);
        var metrics = Path.Combine(run, MetricsLog.FileName);
        File.WriteAllText(metrics, "{\"step\":0,\"train_loss\":4.1}\n{\"step\":1,\"train_loss\":3.9}\n{\"step\":2,\"train_lo");
        Assert.Equal([4.1, 3.9], LossCurves.Read(run).Train.Select(p => p.Loss));
        File.WriteAllText(metrics, "{\"step\":0,\"train_loss\":4.1}\n{\"step\":1,\"tra\n{\"step\":2,\"train_loss\":3.7}\n");
        Assert.Contains("line 2 of", Assert.Throws<StratusUserException>(() => { LossCurves.Read(run); }).Message);
    }

    [Theory]
    [InlineData("{\"step\":1,\"train_loss\":\"x\"}", "has \"train_loss\": \"x\", not a number")]
    [InlineData("{\"step\":1.5,\"train_loss\":3.9}", "has \"step\": 1.5, not a whole number")]
    [InlineData("{\"step\":1,\"val_loss\":3.9,\"val_loss_stderr\":[0.1]}", "has \"val_loss_stderr\": [0.1], not a number")]
    [InlineData("{\"step\":1,\"step\":3,\"train_loss\":3.9}", "names a field more than once")]
    public void A_loss_that_is_not_a_number_is_a_damaged_line_when_plotting_and_resuming(string line, string what)
    {
        using var temp = new TempDirectory();
        var run = temp["run"];
        Directory.CreateDirectory(run);
        var metrics = Path.Combine(run, MetricsLog.FileName);
        var text = "{\"step\":0,\"train_loss\":4.1}\n" + line + "\n{\"step\":2,\"train_loss\":3.7}\n";
        File.WriteAllText(metrics, text);
        foreach (var read in new Action[] { () => LossCurves.Read(run), () => new MetricsLog(run, resumeStep: 2).Dispose() })
            Assert.Contains($"line 2 of {metrics} {what}; the file was edited or damaged", Assert.Throws<StratusUserException>(read).Message);
        Assert.Equal(text, File.ReadAllText(metrics)); // resuming refused before rewriting the file
    }

    [Fact]
    public void A_last_line_naming_a_field_twice_is_passed_over_by_a_jobs_listing()
    {
        // An ArgumentException out of the listing failed `jobs list` and GET /api/jobs for every job.
        using var temp = new TempDirectory();
        var run = temp["run"];
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, MetricsLog.FileName), "{\"step\":0,\"train_loss\":4.1}\n{\"step\":1,\"train_loss\":3.9,\"train_loss\":3.8}\n");
        Assert.Equal((0, 4.1), MetricsLog.LastTrainingStep(run));
    }

    [Fact]
    public void Downsampling_averages_equal_stretches_of_steps()
    {
        var points = Enumerable.Range(0, 10).Select(i => new CurvePoint(i, i)).ToList();
        Assert.Equal([0.5, 2.5, 4.5, 6.5, 8.5], LossChart.Downsample(points, 5).Select(p => p.Loss));
        Assert.Equal(10, LossChart.Downsample(points, 20).Count);
    }

    [Theory]
    [InlineData(1.72, 2.74, 0.25)]
    [InlineData(0, 2000, 500)]
    [InlineData(3.1, 3.1004, 0.0001)]
    public void Ticks_are_round_and_cover_the_range(double low, double high, double spacing)
    {
        var ticks = LossChart.Ticks(low, high, 6);
        Assert.True(ticks[0] <= low && ticks[^1] >= high, string.Join(", ", ticks));
        Assert.All(ticks.Zip(ticks.Skip(1)), pair => Assert.Equal(spacing, pair.Second - pair.First, 9));
    }
}
