// Progress of long work in phases (prepare: hashing, then tokenizing; eval: one pass), with rate
// and time left. In a terminal: Spectre's live bars. In a log (output redirected: a Slurm job's
// file, a pipe): a plain line at each tenth of a phase, or after a minute without one, and at its
// end. Written here because Spectre's own fallback for logs prints only at 25/50/75% with
// neither rate nor time left, and nothing at all once a first phase has finished: a prepare's
// log read "tokenizing (2,541,072 tokens): 28%" from then to its last line.
using System.Diagnostics;
using Spectre.Console;

namespace Stratus.Cli;

sealed class PhaseProgress
{
    static readonly TimeSpan LogInterval = TimeSpan.FromMinutes(1);

    readonly ProgressContext? live;
    readonly bool bytes;
    readonly Dictionary<string, ProgressTask> tasks = [];
    readonly Stopwatch clock = Stopwatch.StartNew();
    string? phase;
    /// <summary>When the phase began: when this started, or at the last report of the phase
    /// before. Not at the phase's own first report, which comes once a first piece is done (a
    /// small corpus's whole 1 MiB piece): its rate read "1,497,965.7 MB/s" and its time 0.0 s.</summary>
    TimeSpan phaseStart;
    int loggedTenths;
    TimeSpan loggedAt;
    (long Done, long Total, string? Detail, TimeSpan At) last;

    PhaseProgress(ProgressContext? live, bool bytes)
    {
        this.live = live;
        this.bytes = bytes;
    }

    /// <summary>Runs <paramref name="work"/>, showing what it reports; <paramref name="bytes"/>:
    /// its counts are bytes (in B, KB, MB or GB, as their size needs), else items.</summary>
    public static T Show<T>(bool bytes, Func<PhaseProgress, T> work)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            var log = new PhaseProgress(null, bytes);
            var result = work(log);
            log.EndPhase();
            return result;
        }
        return AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                bytes ? new TransferSpeedColumn() : new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(context => work(new PhaseProgress(context, bytes)));
    }

    /// <summary><paramref name="done"/> of <paramref name="total"/> in <paramref name="name"/>;
    /// a new name ends the phase before it. <paramref name="detail"/> follows the name.</summary>
    public void Report(string name, long done, long total, string? detail = null)
    {
        if (live is not null)
        {
            if (!tasks.TryGetValue(name, out var task))
            {
                foreach (var earlier in tasks.Values) earlier.StopTask();
                tasks[name] = task = live.AddTask(name, maxValue: Math.Max(total, 1));
            }
            task.MaxValue = Math.Max(total, 1);
            task.Value = done;
            task.Description = detail is null ? name : $"{name} ({detail})";
            return;
        }
        if (name != phase)
        {
            EndPhase();
            phase = name;
            phaseStart = last.At;
            loggedTenths = 0;
            loggedAt = phaseStart;
        }
        last = (done, total, detail, clock.Elapsed);
        var tenths = total > 0 ? (int)(10 * done / total) : 0;
        if (tenths > loggedTenths && tenths < 10 || clock.Elapsed - loggedAt >= LogInterval)
        {
            loggedTenths = Math.Max(tenths, loggedTenths);
            loggedAt = last.At;
            WriteLine(final: false);
        }
    }

    /// <summary>The line that ends the phase in a log.</summary>
    void EndPhase()
    {
        if (phase is not null) WriteLine(final: true);
        phase = null;
    }

    void WriteLine(bool final)
    {
        var (done, total, detail, at) = last;
        var seconds = (at - phaseStart).TotalSeconds;
        var rate = seconds > 0 ? done / seconds : 0;
        var what = detail is null ? phase : $"{phase} ({detail})";
        var counts = bytes ? $"{Bytes(done, UnitOf(total))} of {Bytes(total)}, {Bytes(rate)}/s" : $"{done:N0} of {total:N0}, {rate:N1}/s";
        var time = final ? $"{seconds:F1} s" : rate > 0 ? $"{TimeSpan.FromSeconds(Math.Ceiling((total - done) / rate)):c} left" : "time left unknown";
        Console.WriteLine($"{what}: {(total > 0 ? 100 * done / total : 0)}% ({counts}, {time})");
    }

    static readonly string[] Units = ["B", "KB", "MB", "GB"];

    /// <summary>The unit (a power of 1000) that shows <paramref name="bytes"/> under 1,000: a small
    /// corpus's 3,000 bytes read "0.0 MB".</summary>
    static int UnitOf(double bytes)
    {
        var unit = 0;
        while (unit < Units.Length - 1 && Math.Round(bytes / Math.Pow(1000, unit), unit == 0 ? 0 : 1) >= 1000) unit++;
        return unit;
    }

    /// <summary><paramref name="bytes"/> in <paramref name="unit"/>, without its name (a count
    /// shown against its total is in the total's unit), else in its own unit, named.</summary>
    static string Bytes(double bytes, int unit) => unit == 0 ? bytes.ToString("N0") : (bytes / Math.Pow(1000, unit)).ToString("N1");
    static string Bytes(double bytes) => $"{Bytes(bytes, UnitOf(bytes))} {Units[UnitOf(bytes)]}";
}
