// The loss curves of a run: training loss at every step and val loss at every evaluation, as
// metrics.jsonl records them. Two drawings share one scale: an SVG image (the trainer rewrites
// <run>/loss.svg after every evaluation, so a run in progress can be looked at in a browser) and
// a braille plot for the terminal (printed when training ends, and by `stratus plot`).
// Both are drawn by hand: they are a few polylines and tick labels, Spectre.Console has bar
// charts but no line chart, and the .NET charting libraries need a UI stack to make an image.
using System.Globalization;
using System.Security;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Training;

public readonly record struct CurvePoint(long Step, double Loss);

public sealed class LossCurves
{
    public const string SvgFile = "loss.svg";
    /// <summary>Series numbers passed to the terminal plot's painter.</summary>
    public const int Axis = 0, TrainSeries = 1, ValSeries = 2;

    readonly List<CurvePoint> train = [], val = [];

    public IReadOnlyList<CurvePoint> Train => train;
    public IReadOnlyList<CurvePoint> Val => val;
    public bool IsEmpty => train.Count == 0 && val.Count == 0;

    /// <summary>Takes the losses of one metrics.jsonl entry (a training step or an evaluation).</summary>
    public void Add(JsonObject entry)
    {
        // Deserialize rather than a cast: an entry built in memory may hold an int where a parsed one holds a number.
        if (entry["step"]?.Deserialize<long>() is not { } step) return;
        if (entry["train_loss"] is { } trainLoss) train.Add(new(step, trainLoss.Deserialize<double>()));
        if (entry["val_loss"] is { } valLoss) val.Add(new(step, valLoss.Deserialize<double>()));
    }

    public static LossCurves Read(string runDirectory)
    {
        if (!File.Exists(Path.Combine(runDirectory, MetricsLog.FileName)))
            throw new StratusUserException($"{runDirectory} has no {MetricsLog.FileName}; give the folder of a run made by `stratus train --out <run>`");
        var curves = new LossCurves();
        foreach (var entry in MetricsLog.Read(runDirectory)) curves.Add(entry);
        return curves;
    }

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

    /// <summary>The drawn ranges: steps from 0 to the last logged step; losses from the lowest drawn
    /// point to the highest one after the first 5% of the steps, widened to round ticks. The first
    /// steps fall from ln(vocabulary size) and would squeeze the part worth reading into a few rows;
    /// they leave the plot through its top edge instead.</summary>
    (double[] StepTicks, double[] LossTicks) Scale(IReadOnlyList<CurvePoint> drawnTrain)
    {
        var lastStep = Math.Max(train.Count > 0 ? train[^1].Step + 1 : 0, val.Count > 0 ? val[^1].Step : 0);
        var settled = drawnTrain.Concat(val).Where(p => p.Step >= lastStep / 20).Select(p => p.Loss).DefaultIfEmpty(val.Count > 0 ? val[^1].Loss : drawnTrain[^1].Loss);
        var lowest = drawnTrain.Concat(val).Min(p => p.Loss);
        return (Ticks(0, Math.Max(1, lastStep), 6), Ticks(lowest, settled.Max(), 6));
    }

    public string ToSvg(string title)
    {
        if (IsEmpty) throw new InvalidOperationException("no losses to draw yet");
        const int width = 720, height = 360, left = 56, right = 16, top = 36, bottom = 40;
        const int plotWidth = width - left - right, plotHeight = height - top - bottom;
        var drawnTrain = Downsample(train, plotWidth);
        var (stepTicks, lossTicks) = Scale(drawnTrain);
        double X(double step) => left + (step - stepTicks[0]) / (stepTicks[^1] - stepTicks[0]) * plotWidth;
        double Y(double loss) => top + (lossTicks[^1] - loss) / (lossTicks[^1] - lossTicks[0]) * plotHeight;
        static string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
        string Points(IEnumerable<CurvePoint> points) => string.Join(' ', points.Select(p => $"{F(X(p.Step))},{F(Y(p.Loss))}"));

        var svg = new StringBuilder();
        svg.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
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
        if (drawnTrain.Count > 0)
            svg.Append($"<polyline id=\"train\" fill=\"none\" stroke=\"#4c78a8\" stroke-width=\"1.5\" points=\"{Points(drawnTrain)}\"/>\n");
        if (val.Count > 0)
        {
            svg.Append($"<polyline id=\"val\" fill=\"none\" stroke=\"#f58518\" stroke-width=\"2\" points=\"{Points(val)}\"/>\n");
            foreach (var p in val.Where(p => p.Loss <= lossTicks[^1])) svg.Append($"<circle cx=\"{F(X(p.Step))}\" cy=\"{F(Y(p.Loss))}\" r=\"3\" fill=\"#f58518\"><title>step {p.Step}: val loss {p.Loss:F4}</title></circle>\n");
        }
        svg.Append("</g>\n");
        svg.Append($"<g transform=\"translate({width - right - 230},20)\"><line x1=\"0\" x2=\"18\" y1=\"-4\" y2=\"-4\" stroke=\"#4c78a8\" stroke-width=\"2\"/><text x=\"22\" y=\"0\">train loss</text>");
        svg.Append($"<line x1=\"110\" x2=\"128\" y1=\"-4\" y2=\"-4\" stroke=\"#f58518\" stroke-width=\"2\"/><text x=\"132\" y=\"0\">val loss</text></g>\n");
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>Writes the image of the run in <paramref name="runDirectory"/> (titled with its folder name) to <paramref name="path"/>.</summary>
    public void WriteSvg(string path, string runDirectory) =>
        AtomicFile.WriteAllText(path, ToSvg($"{Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(runDirectory)))}: loss"));

    /// <summary>The curves in braille dots (each character cell holds 2x4 of them) with a loss axis
    /// on the left and a step axis below: <paramref name="width"/> x <paramref name="height"/> cells
    /// of plot. <paramref name="paint"/> gets each run of characters and the series that drew it
    /// (<see cref="TrainSeries"/>, <see cref="ValSeries"/> or <see cref="Axis"/>), e.g. to colour it.</summary>
    public string ToTextPlot(int width, int height, Func<string, int, string>? paint = null)
    {
        if (IsEmpty) throw new InvalidOperationException("no losses to draw yet");
        paint ??= (text, _) => text;
        int dotsWide = width * 2, dotsHigh = height * 4;
        var drawnTrain = Downsample(train, dotsWide);
        var (stepTicks, lossTicks) = Scale(drawnTrain);
        var dots = new byte[height, width];
        var series = new int[height, width];
        (int X, int Y) Dot(CurvePoint p) => (
            (int)Math.Round((p.Step - stepTicks[0]) / (stepTicks[^1] - stepTicks[0]) * (dotsWide - 1)),
            (int)Math.Round((lossTicks[^1] - p.Loss) / (lossTicks[^1] - lossTicks[0]) * (dotsHigh - 1)));
        void Plot(IReadOnlyList<CurvePoint> points, int id)
        {
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
                    series[y / 4, x / 2] = id;
                }
            }
        }
        Plot(drawnTrain, TrainSeries);
        Plot(val, ValSeries); // drawn last: where the curves share a cell, it takes val's colour

        var labels = new string[height];
        foreach (var tick in lossTicks)
        {
            var row = (int)Math.Round((lossTicks[^1] - tick) / (lossTicks[^1] - lossTicks[0]) * (dotsHigh - 1)) / 4;
            labels[row] ??= Label(tick, lossTicks);
        }
        var labelWidth = lossTicks.Max(t => Label(t, lossTicks).Length);
        var text = new StringBuilder();
        for (var row = 0; row < height; row++)
        {
            text.Append(paint((labels[row] ?? "").PadLeft(labelWidth) + (labels[row] is null ? " │" : " ┤"), Axis));
            for (var column = 0; column < width;)
            {
                var id = series[row, column];
                var run = new StringBuilder();
                for (; column < width && series[row, column] == id; column++) run.Append((char)(0x2800 + dots[row, column]));
                text.Append(paint(run.ToString(), id));
            }
            text.Append('\n');
        }
        var first = Label(stepTicks[0], stepTicks);
        var last = Label(stepTicks[^1], stepTicks);
        text.Append(paint(new string(' ', labelWidth) + " └" + new string('─', width), Axis)).Append('\n');
        var middle = Math.Max(1, width - first.Length - last.Length);
        text.Append(paint(new string(' ', labelWidth + 2) + first + "step".PadLeft((middle + 4) / 2).PadRight(middle) + last, Axis)).Append('\n');
        text.Append(paint(new string(' ', labelWidth + 2), Axis)).Append(paint("⣀⣀", TrainSeries)).Append(paint(" train loss   ", Axis))
            .Append(paint("⣀⣀", ValSeries)).Append(paint(" val loss", Axis)).Append('\n');
        return text.ToString();
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
