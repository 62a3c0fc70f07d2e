// `stratus bench blocklist`: how a blocklist's size changes the cost of compiling and checking it.
// Terms are made-up words of 5-10 letters (one in ten two words, seeded by the list's size), the
// clean texts ordinary sentences repeated, the text of hits one listed term repeated; and the same
// terms each after "the " (one first word for all) checked on "the " repeated; and the same
// terms each after a run of 1 to 89 "a "s (one first word, terms of up to 89 lengths) checked on
// "a " repeated. Each check
// is timed at its best of 5, after a warm-up on the smallest list so that its row does not time
// the JIT. A check that reaches the pattern timeout is blocked (fail closed): the table says so.
// A second table is what a server pays to rebuild a deployment's pipeline (every 5 s while it
// takes requests, TrustOptions.SafetyRefreshInterval) with each list of terms, and with lists of
// patterns (`\bword\b`-like, each built for the linear-time engine at its first check).
using System.CommandLine;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Cli;

static class BlocklistBenchCommand
{
    const int CleanPromptChars = 4096, LongTextChars = 256 * 1024, Runs = 5;

    /// <summary>Clean prose with digits, times and percentages, as prompts have them (bench safety's too).</summary>
    internal const string OrdinaryText =
        "The meeting starts at 10:30 on Tuesday, and the agenda is on the shared drive. " +
        "Our quarterly revenue grew by 12.5% while costs stayed flat. " +
        "Please upgrade to the new version before Friday; it fixes the login bug. " +
        "She ran five kilometres this morning and then walked the dog along the river. " +
        "The recipe needs two cups of flour, three eggs and a pinch of salt. " +
        "Room 404 is on the fourth floor, next to the elevator and the kitchen. ";

    public static Command Create()
    {
        var terms = new Option<string>("--terms") { Description = "comma-separated list sizes to measure", DefaultValueFactory = _ => "10,1000,10000,40000" };
        var patterns = new Option<string>("--patterns") { Description = "comma-separated numbers of patterns whose pipeline rebuild to measure", DefaultValueFactory = _ => "4,100,1000" };
        var json = OutputPaths.File("--json", "also write the results to this JSON file");
        var command = new Command("blocklist", "Blocklist compile time, memory and check time against the number of terms, and a server's pipeline rebuild against terms and patterns.") { terms, patterns, json };
        command.SetAction(result =>
        {
            var sizes = PositiveNumberList.Parse("--terms", result.GetValue(terms)!, "list sizes such as 10,1000,10000");
            var patternCounts = PositiveNumberList.Parse("--patterns", result.GetValue(patterns)!, "numbers of patterns such as 4,100,1000");
            var loadBefore = BenchOutput.LoadAverage();
            Measure(sizes.Min(), OrdinaryText);
            var table = BenchOutput.Table("terms", "compile ms", "retained MiB", "clean 4 KB ms", "clean 256 KiB ms", "256 KiB of hits ms",
                "'the' terms, 256 KiB of 'the ' ms", "'a a ...' terms of many lengths, 256 KiB of 'a ' ms");
            var rows = new JsonArray();
            foreach (var size in sizes)
            {
                Console.Error.WriteLine($"{size:N0} terms ...");
                var row = Measure(size, OrdinaryText);
                table.AddRow(size.ToString("N0"), row.CompileMs.ToString("F0"), row.RetainedMiB.ToString("F1"), row.CleanPrompt.Text, row.CleanLongText.Text, row.Hits.Text, row.SharedFirstWord.Text, row.ManyLengths.Text);
                rows.Add(new JsonObject
                {
                    ["terms"] = size, ["compile_ms"] = row.CompileMs, ["retained_mib"] = row.RetainedMiB,
                    ["clean_4kb"] = row.CleanPrompt.ToJson(), ["clean_256kib"] = row.CleanLongText.ToJson(), ["hits_256kib"] = row.Hits.ToJson(),
                    ["shared_first_word_256kib"] = row.SharedFirstWord.ToJson(), ["many_lengths_256kib"] = row.ManyLengths.ToJson(),
                });
            }
            BenchOutput.Print(table);

            MeasureRebuild(new Blocklist("warm-up", TermList(10), PatternList(4)));
            var rebuildTable = BenchOutput.Table("list", "first build + check CPU ms", "kept MiB", "rebuild + check CPU ms", "rebuild allocated MiB", "rebuild added MiB", "store read CPU ms");
            var rebuildRows = new JsonArray();
            foreach (var (label, list) in sizes.Select(n => ($"{n:N0} terms", new Blocklist("bench", TermList(n), [])))
                .Concat(patternCounts.Select(n => ($"{n:N0} patterns", new Blocklist("bench", [], PatternList(n))))))
            {
                Console.Error.WriteLine($"rebuild with {label} ...");
                var row = MeasureRebuild(list);
                rebuildTable.AddRow(label, row.First.CpuMs.ToString("F0"), row.First.RetainedMiB.ToString("F1"), row.Rebuild.CpuMs.ToString("F0"),
                    row.Rebuild.AllocatedMiB.ToString("F1"), row.Rebuild.RetainedMiB.ToString("F1"), row.StoreReadCpuMs.ToString("F1"));
                rebuildRows.Add(new JsonObject
                {
                    ["list"] = label, ["terms"] = list.Terms.Count, ["patterns"] = list.Patterns.Count,
                    ["first"] = row.First.ToJson(), ["rebuild"] = row.Rebuild.ToJson(), ["store_read_cpu_ms"] = row.StoreReadCpuMs,
                });
            }
            var loadAfter = BenchOutput.LoadAverage();
            BenchOutput.Print(rebuildTable);
            BenchOutput.PrintLoad(loadBefore, loadAfter);
            BenchOutput.WriteJson(result.GetValue(json), new JsonObject
            {
                ["benchmark"] = "blocklist", ["runs"] = Runs, ["cores"] = Environment.ProcessorCount,
                ["load_average_before"] = loadBefore, ["load_average_after"] = loadAfter, ["results"] = rows, ["rebuilds"] = rebuildRows,
            });
            return 0;
        });
        return command;
    }

    sealed record Check(double BestMs, int Hits, bool TimedOut)
    {
        public string Text => $"{BestMs:F1}{(TimedOut ? ", timed out" : Hits > 0 ? $" ({Hits:N0})" : "")}";
        public JsonObject ToJson() => new() { ["best_ms"] = BestMs, ["hits"] = Hits, ["timed_out"] = TimedOut };
    }

    sealed record Row(double CompileMs, double RetainedMiB, Check CleanPrompt, Check CleanLongText, Check Hits, Check SharedFirstWord, Check ManyLengths);

    /// <summary>Made-up words of 5-10 letters drawn from <paramref name="random"/>.</summary>
    static string Word(Random random) => new([.. Enumerable.Range(0, random.Next(5, 11)).Select(_ => (char)('a' + random.Next(26)))]);

    /// <summary><paramref name="size"/> terms, one in ten two words, the same for the same size.</summary>
    static List<string> TermList(int size)
    {
        var random = new Random(size);
        return [.. Enumerable.Range(0, size).Select(i => i % 10 == 0 ? Word(random) + " " + Word(random) : Word(random))];
    }

    /// <summary><paramref name="count"/> patterns of a word and its plural or past, whole words as
    /// operators write them: case-insensitive with \b, what the linear-time engine builds dearest.</summary>
    static List<string> PatternList(int count)
    {
        var random = new Random(-count);
        return [.. Enumerable.Range(0, count).Select(_ => $@"\b{Word(random)}(?:s|ed)?\b")];
    }

    static Row Measure(int size, string ordinaryText)
    {
        var terms = TermList(size);

        var before = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();
        var compiled = CompiledBlocklist.Compile(new Blocklist("bench", terms, []));
        var compileMs = clock.Elapsed.TotalMilliseconds;
        var retained = (GC.GetTotalMemory(forceFullCollection: true) - before) / 1048576.0;

        // Every term begins with the same word, which a text of it has at every fourth character.
        var sharingTheFirstWord = CompiledBlocklist.Compile(new Blocklist("bench", [.. terms.Select(t => "the " + t)], []));
        // One first word again, beginning terms of as many lengths as the list has up to 89
        // ("a x", "a a y", ... at most 200 characters), which a text of it has at every other character.
        var ofManyLengths = CompiledBlocklist.Compile(new Blocklist("bench", [.. terms.Select((t, i) => string.Concat(Enumerable.Repeat("a ", 1 + i % 89)) + t)], []));

        Check Time(CompiledBlocklist list, string text)
        {
            var best = double.MaxValue;
            IReadOnlyList<SafetyMatch> found = [];
            for (var run = 0; run < Runs; run++)
            {
                clock.Restart();
                found = list.Find(text);
                best = Math.Min(best, clock.Elapsed.TotalMilliseconds);
            }
            return new Check(best, found.Count, found.Any(m => m.Label.EndsWith("(timed out)", StringComparison.Ordinal)));
        }
        var row = new Row(compileMs, retained, Time(compiled, Repeat(ordinaryText, CleanPromptChars)), Time(compiled, Repeat(ordinaryText, LongTextChars)),
            Time(compiled, Repeat(terms[Math.Min(1, size - 1)] + " ", LongTextChars)), Time(sharingTheFirstWord, Repeat("the ", LongTextChars)),
            Time(ofManyLengths, Repeat("a ", LongTextChars)));
        GC.KeepAlive(compiled);
        return row;
    }

    /// <summary>CPU time of the whole process (the garbage collector's threads too), the memory
    /// allocated and the managed memory kept by what <paramref name="work"/> returns.</summary>
    sealed record Cost(double CpuMs, double AllocatedMiB, double RetainedMiB)
    {
        public JsonObject ToJson() => new() { ["cpu_ms"] = CpuMs, ["allocated_mib"] = AllocatedMiB, ["retained_mib"] = RetainedMiB };

        public static Cost Of(Func<object> work)
        {
            var before = GC.GetTotalMemory(forceFullCollection: true);
            var allocated = GC.GetTotalAllocatedBytes(precise: true);
            var cpu = Environment.CpuUsage.TotalTime;
            var kept = work();
            var cpuMs = (Environment.CpuUsage.TotalTime - cpu).TotalMilliseconds;
            var allocatedMiB = (GC.GetTotalAllocatedBytes(precise: true) - allocated) / 1048576.0;
            var retainedMiB = (GC.GetTotalMemory(forceFullCollection: true) - before) / 1048576.0;
            GC.KeepAlive(kept);
            return new Cost(cpuMs, allocatedMiB, retainedMiB);
        }
    }

    /// <param name="First">A deployment's first pipeline and its first check.</param>
    /// <param name="Rebuild">The median of three rebuilds from the unchanged store, each with its
    /// first check, while the pipeline before it is still held (as the server holds it until
    /// replaced): RetainedMiB is what the rebuild adds to what the server held.</param>
    /// <param name="StoreReadCpuMs">Of a rebuild, the reads of the policy and the blocklists
    /// (median of three).</param>
    sealed record RebuildRow(Cost First, Cost Rebuild, double StoreReadCpuMs);

    /// <summary>A server's pipeline rebuilds with <paramref name="list"/> stored and named by the
    /// deployment's policy: on a SQLite database of its own, written by one SafetyConfiguration
    /// (the CLI's) and read by another (the server's), as two processes do.</summary>
    static RebuildRow MeasureRebuild(Blocklist list)
    {
        const string Deployment = "bench", FirstText = "Hello, how are you?";
        var folder = Directory.CreateTempSubdirectory("stratus-bench-");
        try
        {
            var stores = PlatformStores.Open(PlatformDatabase.Open(folder.FullName, connection: null, lockTimeout: null));
            var cli = stores.SafetyConfiguration();
            Wait(cli.UpsertBlocklistAsync(list, "bench"));
            Done(cli.SetPolicyAsync(SafetyPolicy.Default(Deployment) with { Blocklists = [list.Name] }, "bench"));
            var server = stores.SafetyConfiguration();
            SafetyPipeline held = null!;
            object BuildAndCheck()
            {
                var pipeline = Wait(server.BuildPipelineAsync(Deployment));
                Wait(pipeline.AnalyzeAsync(FirstText, ContentDirection.Prompt));
                return held = pipeline;
            }
            var first = Cost.Of(BuildAndCheck);
            var rebuilds = Enumerable.Range(0, 3).Select(_ =>
            {
                var before = held;
                var cost = Cost.Of(BuildAndCheck);
                GC.KeepAlive(before);
                return cost;
            }).ToList();
            var reads = Enumerable.Range(0, 3).Select(_ => Cost.Of(() => (Wait(server.GetPolicyAsync(Deployment)), Wait(server.ListBlocklistsAsync())))).ToList();
            return new RebuildRow(first, Median(rebuilds), Median(reads).CpuMs);
        }
        finally
        {
            folder.Delete(recursive: true);
        }

        static Cost Median(List<Cost> costs) => costs.OrderBy(c => c.CpuMs).ElementAt(costs.Count / 2);
        static T Wait<T>(ValueTask<T> task) => task.AsTask().GetAwaiter().GetResult();
        static void Done(ValueTask task) => task.AsTask().GetAwaiter().GetResult();
    }

    /// <summary><paramref name="text"/> repeated to exactly <paramref name="length"/> characters.</summary>
    internal static string Repeat(string text, int length)
    {
        var repeated = new StringBuilder(length + text.Length);
        while (repeated.Length < length) repeated.Append(text);
        return repeated.ToString(0, length);
    }
}
