// The loss curves of a run (training loss at every step, val loss at every evaluation, as
// metrics.jsonl records them) and their two drawings, which share one scale: an SVG image (the
// trainer rewrites <run>/loss.svg after every evaluation, so a run in progress can be looked at in
// a browser) and a braille plot for the terminal (printed when training ends, and by `stratus
// plot`, which also lays several runs' val curves over each other).
// Both are drawn by hand: they are a few polylines and tick labels, Spectre.Console has bar
// charts but no line chart, and the .NET charting libraries need a UI stack to make an image.
using System.Globalization;
using System.Security;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Training;

/// <summary>A loss at a step; StandardError is an evaluation's (0 when unknown, as for a training step).</summary>
public readonly record struct CurvePoint(long Step, double Loss, double StandardError = 0);

/// <summary>One line of a chart; evaluations get a marker at each point.</summary>
public sealed record ChartSeries(string Name, IReadOnlyList<CurvePoint> Points, bool Markers);

public sealed class LossCurves
{
    public const string SvgFile = "loss.svg";

    readonly List<CurvePoint> train = [], val = [];

    public IReadOnlyList<CurvePoint> Train => train;
    public IReadOnlyList<CurvePoint> Val => val;
    public bool IsEmpty => train.Count == 0 && val.Count == 0;

    /// <summary>Takes the losses of one metrics.jsonl entry (a training step or an evaluation).
    /// A step or loss that is not a number is a <see cref="FormatException"/> naming it.</summary>
    public void Add(JsonObject entry)
    {
        if (Points(entry) is not var (_, trainPoint, valPoint)) return;
        if (trainPoint is { } t) train.Add(t);
        if (valPoint is { } v) val.Add(v);
    }

    /// <summary>The step of one metrics.jsonl entry with its training and val points (each null
    /// where it holds none), null where it has no step: what <see cref="Add"/> takes, for a reader that keeps
    /// only some of the entries. A step or loss that is not a number is a <see cref="FormatException"/>.</summary>
    public static (long Step, CurvePoint? Train, CurvePoint? Val)? Points(JsonObject entry)
    {
        if (Step(entry) is not { } step) return null;
        return (step, entry["train_loss"] is { } trainLoss ? new CurvePoint(step, Number<double>(trainLoss, "train_loss")) : null,
            entry["val_loss"] is { } valLoss
                ? new CurvePoint(step, Number<double>(valLoss, "val_loss"), entry["val_loss_stderr"] is { } error ? Number<double>(error, "val_loss_stderr") : 0)
                : null);
    }

    /// <summary>The step of a metrics.jsonl entry, null where it has none; one that is not a whole
    /// number, or an entry that names a field twice, is a <see cref="FormatException"/>.</summary>
    public static long? Step(JsonObject entry)
    {
        JsonNode? step;
        // A parsed line's fields are read on the first look, which finds a field named twice
        // (JSON allows it; no trainer writes it) as a dictionary's ArgumentException.
        try { step = entry["step"]; }
        catch (ArgumentException) { throw new FormatException("names a field more than once"); }
        return step is null ? null : Number<long>(step, "step");
    }

    /// <summary>The node's number as <typeparamref name="T"/>: read in place when it already is
    /// one (the trainer's entries, every step), converted when it holds another type (an int). A
    /// number too large for a double (1e999, which a reader would take as an infinity) is none:
    /// the trainer writes only finite losses (JSON has no NaN or infinity).</summary>
    static T Number<T>(JsonNode node, string field)
    {
        T number;
        try { number = node is JsonValue value && value.TryGetValue<T>(out var read) ? read : node.Deserialize<T>()!; }
        catch (JsonException) { throw NotANumber<T>(node, field); }
        return number is double d && !double.IsFinite(d) ? throw NotANumber<T>(node, field) : number;
    }

    static FormatException NotANumber<T>(JsonNode node, string field) =>
        new($"has \"{field}\": {node.ToJsonString()}, not {(typeof(T) == typeof(long) ? "a whole number" : "a number")}");

    public static LossCurves Read(string runDirectory)
    {
        var curves = new LossCurves();
        if (!File.Exists(Path.Combine(runDirectory, MetricsLog.FileName)))
        {
            // A run opens metrics.jsonl once its model is built: until then it has logged nothing, as a run with an empty one.
            if (File.Exists(Path.Combine(runDirectory, Trainer.RunFile))) return curves;
            throw new StratusUserException(Directory.Exists(runDirectory)
                ? $"{runDirectory} has no {MetricsLog.FileName}; give the folder of a run made by `stratus train --out <run>`"
                : $"{runDirectory} does not exist; give the folder of a run made by `stratus train --out <run>`");
        }
        foreach (var (line, entry) in MetricsLog.Entries(runDirectory))
        {
            try { curves.Add(entry); }
            catch (FormatException e) { throw MetricsLog.Damaged(runDirectory, line, e.Message); }
        }
        return curves;
    }

    /// <summary>This run's chart: training loss and val loss.</summary>
    public IReadOnlyList<ChartSeries> Series() => [new("train loss", train, false), new("val loss", val, true)];

    /// <summary>Several runs on one chart: the val loss of each, named after its folder.</summary>
    public static IReadOnlyList<ChartSeries> Compare(IEnumerable<(string RunDirectory, LossCurves Curves)> runs) =>
        runs.Select(run => new ChartSeries(RunName(run.RunDirectory), run.Curves.Val, true)).ToList();

    public static string RunName(string runDirectory) => Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(runDirectory)));
}

public static class LossChart
{
    /// <summary>What the terminal plot's painter gets for axes and labels; series are numbered from 1.</summary>
    public const int Axis = 0;

    /// <summary>Series colours (Tableau 10), the n-th series in the n-th.</summary>
    static readonly string[] Colours = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"];

    /// <summary>At most <paramref name="buckets"/> points: the mean step and loss of the points in
    /// each equal stretch of steps. Per-step training loss is noisy; one point per pixel column is
    /// both what can be drawn and a readable smoothing.</summary>
    public static List<CurvePoint> Downsample(IReadOnlyList<CurvePoint> points, int buckets)
    {
        if (points.Count <= buckets) return [.. points];
        var first = points[0].Step;
        var span = points[^1].Step - first + 1;
        var result = new List<CurvePoint>(buckets);
        for (int i = 0, bucket = 0; i < points.Count;)
        {
            var end = first + (long)Math.Ceiling((bucket + 1) * (double)span / buckets);
            double steps = 0, losses = 0;
            var count = 0;
            for (; i < points.Count && points[i].Step < end; i++, count++)
            {
                steps += points[i].Step;
                losses += points[i].Loss;
            }
            if (count > 0) result.Add(new((long)Math.Round(steps / count), losses / count));
            bucket++;
        }
        return result;
    }

    /// <summary>Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high].</summary>
    public static double[] Ticks(double low, double high, int roughCount)
    {
        if (!(high > low)) (low, high) = (low - 0.5, low + 0.5);
        var rough = (high - low) / Math.Max(1, roughCount - 1);
        var power = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        var step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * power).First(s => s >= rough);
        var start = Math.Floor(low / step + 1e-9) * step;
        var ticks = new List<double>();
        for (var t = start; ticks.Count == 0 || ticks[^1] < high - 1e-9 * step; t += step) ticks.Add(Math.Round(t / step) * step);
        return [.. ticks];
    }

    /// <summary>Each series with at most <paramref name="columns"/> points, and the drawn ranges:
    /// steps from 0 to the last one; losses from the lowest point to the highest after the first 5%
    /// of the steps, widened to round ticks. The first steps fall from ln(vocabulary size) and would
    /// squeeze the part worth reading into a few rows; they leave through the top edge instead.</summary>
    static (List<CurvePoint>[] Drawn, double[] StepTicks, double[] LossTicks) Scale(IReadOnlyList<ChartSeries> series, int columns)
    {
        var drawn = series.Select(s => Downsample(s.Points, columns)).ToArray();
        var all = drawn.SelectMany(points => points).ToList();
        if (all.Count == 0) throw new InvalidOperationException("no losses to draw yet");
        var lastStep = all.Max(p => p.Step);
        var settled = all.Where(p => p.Step >= lastStep / 20).Max(p => p.Loss);
        return (drawn, Ticks(0, Math.Max(1, lastStep), 6), Ticks(all.Min(p => p.Loss), settled, 6));
    }

    public static string ToSvg(IReadOnlyList<ChartSeries> series, string title)
    {
        const int width = 720, height = 360, left = 56, right = 16, top = 36, bottom = 40;
        const int plotWidth = width - left - right, plotHeight = height - top - bottom;
        var (drawn, stepTicks, lossTicks) = Scale(series, plotWidth);
        double X(double step) => left + (step - stepTicks[0]) / (stepTicks[^1] - stepTicks[0]) * plotWidth;
        double Y(double loss) => top + (lossTicks[^1] - loss) / (lossTicks[^1] - lossTicks[0]) * plotHeight;
        static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);

        var svg = new StringBuilder();
        // The legend: up to two entries right of the title, more in rows of four below the plot.
        var legendBelow = series.Count > 2;
        var legendRows = legendBelow ? (series.Count + 3) / 4 : 0;
        svg.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height + 20 * legendRows}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        svg.Append($"<text x=\"{left}\" y=\"20\" font-size=\"14\">{SecurityElement.Escape(title)}</text>\n");
        foreach (var tick in lossTicks)
        {
            svg.Append($"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{F(Y(tick))}\" y2=\"{F(Y(tick))}\" stroke=\"#e5e5e5\"/>");
            svg.Append($"<text x=\"{left - 6}\" y=\"{F(Y(tick) + 4)}\" text-anchor=\"end\">{Label(tick, lossTicks)}</text>\n");
        }
        foreach (var tick in stepTicks)
            svg.Append($"<text x=\"{F(X(tick))}\" y=\"{height - bottom + 16}\" text-anchor=\"middle\">{Label(tick, stepTicks)}</text>\n");
        svg.Append($"<text x=\"{left + plotWidth / 2}\" y=\"{height - 6}\" text-anchor=\"middle\">step</text>\n");
        svg.Append($"<rect x=\"{left}\" y=\"{top}\" width=\"{plotWidth}\" height=\"{plotHeight}\" fill=\"none\" stroke=\"#999\"/>\n");
        svg.Append($"<clipPath id=\"plot\"><rect x=\"{left}\" y=\"{top}\" width=\"{plotWidth}\" height=\"{plotHeight}\"/></clipPath><g clip-path=\"url(#plot)\">\n");
        for (var i = 0; i < series.Count; i++)
        {
            if (drawn[i].Count == 0) continue;
            var colour = Colours[i % Colours.Length];
            var points = string.Join(' ', drawn[i].Select(p => $"{F(X(p.Step))},{F(Y(p.Loss))}"));
            svg.Append($"<polyline data-series=\"{SecurityElement.Escape(series[i].Name)}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{(series[i].Markers ? 2 : 1.5)}\" points=\"{points}\"/>\n");
            if (!series[i].Markers) continue;
            foreach (var p in drawn[i].Where(p => p.Loss <= lossTicks[^1]))
            {
                // An error bar of one standard error each way: how far another draw of eval batches could move the point.
                if (p.StandardError > 0)
                    svg.Append($"<line class=\"error\" x1=\"{F(X(p.Step))}\" x2=\"{F(X(p.Step))}\" y1=\"{F(Y(p.Loss - p.StandardError))}\" y2=\"{F(Y(p.Loss + p.StandardError))}\" stroke=\"{colour}\" stroke-width=\"1.5\"/>");
                var error = p.StandardError > 0 ? $" ± {p.StandardError:F4}" : "";
                svg.Append($"<circle cx=\"{F(X(p.Step))}\" cy=\"{F(Y(p.Loss))}\" r=\"3\" fill=\"{colour}\"><title>{SecurityElement.Escape(series[i].Name)}, step {p.Step}: {p.Loss:F4}{error}</title></circle>\n");
            }
        }
        svg.Append("</g>\n");
        for (var i = 0; i < series.Count; i++)
        {
            var (x, y) = legendBelow ? (left + 160 * (i % 4), height + 20 * (i / 4) + 12) : (width - right - 120 * (series.Count - i), 20);
            svg.Append($"<line x1=\"{x}\" x2=\"{x + 18}\" y1=\"{y - 4}\" y2=\"{y - 4}\" stroke=\"{Colours[i % Colours.Length]}\" stroke-width=\"2\"/><text x=\"{x + 22}\" y=\"{y}\">{SecurityElement.Escape(series[i].Name)}</text>\n");
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    public static void WriteSvg(string path, IReadOnlyList<ChartSeries> series, string title) => AtomicFile.WriteAllText(path, ToSvg(series, title));

    /// <summary>The series in braille dots (each character cell holds 2x4 of them) with a loss axis
    /// on the left, a step axis below and a legend: <paramref name="width"/> x <paramref name="height"/>
    /// cells of plot. <paramref name="paint"/> gets each run of characters and the number of the
    /// series that drew it (from 1; <see cref="Axis"/> for the rest), e.g. to colour it.</summary>
    public static string ToTextPlot(IReadOnlyList<ChartSeries> series, int width, int height, Func<string, int, string>? paint = null)
    {
        paint ??= (text, _) => text;
        int dotsWide = width * 2, dotsHigh = height * 4;
        var (drawn, stepTicks, lossTicks) = Scale(series, dotsWide);
        var dots = new byte[height, width];
        var owner = new int[height, width];
        (int X, int Y) Dot(CurvePoint p) => (
            (int)Math.Round((p.Step - stepTicks[0]) / (stepTicks[^1] - stepTicks[0]) * (dotsWide - 1)),
            (int)Math.Round((lossTicks[^1] - p.Loss) / (lossTicks[^1] - lossTicks[0]) * (dotsHigh - 1)));
        // Later series are drawn over earlier ones: where two share a cell, it takes the later one's colour.
        for (var s = 0; s < drawn.Length; s++)
        {
            var points = drawn[s];
            for (var i = 0; i < points.Count; i++)
            {
                var (x1, y1) = Dot(points[i]);
                var (x0, y0) = i == 0 ? (x1, y1) : Dot(points[i - 1]);
                var n = Math.Max(Math.Abs(x1 - x0), Math.Abs(y1 - y0));
                for (var k = 0; k <= n; k++)
                {
                    var x = n == 0 ? x1 : x0 + (int)Math.Round((x1 - x0) * (double)k / n);
                    var y = n == 0 ? y1 : y0 + (int)Math.Round((y1 - y0) * (double)k / n);
                    if (y < 0) continue; // above the drawn range (see Scale)
                    dots[y / 4, x / 2] |= BrailleBit(x % 2, y % 4);
                    owner[y / 4, x / 2] = s + 1;
                }
            }
        }

        var labels = new string[height];
        foreach (var tick in lossTicks)
        {
            var row = (int)Math.Round((lossTicks[^1] - tick) / (lossTicks[^1] - lossTicks[0]) * (dotsHigh - 1)) / 4;
            labels[row] ??= Label(tick, lossTicks);
        }
        var labelWidth = lossTicks.Max(t => Label(t, lossTicks).Length);
        var margin = new string(' ', labelWidth + 2);
        var text = new StringBuilder();
        for (var row = 0; row < height; row++)
        {
            text.Append(paint((labels[row] ?? "").PadLeft(labelWidth) + (labels[row] is null ? " │" : " ┤"), Axis));
            for (var column = 0; column < width;)
            {
                var id = owner[row, column];
                var cells = new StringBuilder();
                for (; column < width && owner[row, column] == id; column++) cells.Append((char)(0x2800 + dots[row, column]));
                text.Append(paint(cells.ToString(), id));
            }
            text.Append('\n');
        }
        var first = Label(stepTicks[0], stepTicks);
        var last = Label(stepTicks[^1], stepTicks);
        text.Append(paint(new string(' ', labelWidth) + " └" + new string('─', width), Axis)).Append('\n');
        var middle = Math.Max(1, width - first.Length - last.Length);
        text.Append(paint(margin + first + "step".PadLeft((middle + 4) / 2).PadRight(middle) + last, Axis)).Append('\n');
        text.Append(paint(margin, Axis));
        for (var s = 0; s < series.Count; s++)
            text.Append(paint("⣀⣀", s + 1)).Append(paint($" {series[s].Name}" + (s < series.Count - 1 ? "   " : ""), Axis));
        return text.Append('\n').ToString();
    }

    /// <summary>Braille cells number their dots 1-2-3-7 down the left column and 4-5-6-8 down the right.</summary>
    static byte BrailleBit(int x, int y) => (byte)(y == 3 ? (x == 0 ? 0x40 : 0x80) : 1 << (y + 3 * x));

    /// <summary>A tick label with as many decimals as the tick spacing needs.</summary>
    static string Label(double value, double[] ticks)
    {
        var spacing = ticks.Length > 1 ? ticks[1] - ticks[0] : 1;
        var decimals = 0;
        for (var scaled = spacing; decimals < 6 && Math.Abs(scaled - Math.Round(scaled)) > 1e-6 * scaled; scaled *= 10) decimals++;
        return value.ToString("F" + decimals, CultureInfo.InvariantCulture);
    }
}
