// What every `stratus bench` command prints and writes the same way: its table, its --json file
// and the machine's load average, which says how far a shared machine's timings can be trusted.
using System.Globalization;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Stratus.Cli;

static class BenchOutput
{
    /// <summary>A table of right-aligned columns, as figures read best.</summary>
    public static Table Table(params string[] columns)
    {
        var table = new Table();
        foreach (var column in columns) table.AddColumn(new TableColumn(column).RightAligned());
        return table;
    }

    public static void Print(Table table)
    {
        // Redirected output would otherwise be squeezed into 80 columns.
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 160;
        AnsiConsole.Write(table);
    }

    /// <summary>Writes <paramref name="report"/> to <paramref name="path"/>, when --json gave one.</summary>
    public static void WriteJson(string? path, JsonNode report)
    {
        if (path is null) return;
        AtomicFile.WriteJson(path, report);
        Console.WriteLine($"wrote {path}");
    }

    /// <summary>Says how busy the machine was while the benchmark ran, where the system tells.</summary>
    public static void PrintLoad(double? before, double? after)
    {
        if (before is not null) Console.WriteLine($"load average (1 min): {before:F1} before, {after:F1} after, on {Environment.ProcessorCount} cores");
    }

    /// <summary>The 1-minute load average, where the system says it (Linux).</summary>
    public static double? LoadAverage() =>
        File.Exists("/proc/loadavg") && double.TryParse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture, out var load) ? load : null;
}
