// `stratus bench blocklist`: how a blocklist's size changes the cost of compiling and checking it.
// Terms are made-up words of 5-10 letters (one in ten two words, seeded by the list's size), the
// clean texts ordinary sentences repeated, the text of hits one listed term repeated; and the same
// terms each after "the " (one first word for all) checked on "the " repeated; and the same
// terms each after a run of 1 to 89 "a "s (one first word, terms of up to 89 lengths) checked on
// "a " repeated. Each check
// is timed at its best of 5, after a warm-up on the smallest list so that its row does not time
// the JIT. A check that reaches the pattern timeout is blocked (fail closed): the table says so.
using System.CommandLine;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Spectre.Console;
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
        var json = OutputPaths.File("--json", "also write the results to this JSON file");
        var command = new Command("blocklist", "Blocklist compile time, memory and check time against the number of terms.") { terms, json };
        command.SetAction(result =>
        {
            var sizes = PositiveNumberList.Parse("--terms", result.GetValue(terms)!, "list sizes such as 10,1000,10000");
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
            BenchOutput.WriteJson(result.GetValue(json), new JsonObject { ["benchmark"] = "blocklist", ["runs"] = Runs, ["cores"] = Environment.ProcessorCount, ["results"] = rows });
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

    static Row Measure(int size, string ordinaryText)
    {
        var random = new Random(size);
        string Word() => new([.. Enumerable.Range(0, random.Next(5, 11)).Select(_ => (char)('a' + random.Next(26)))]);
        var terms = Enumerable.Range(0, size).Select(i => i % 10 == 0 ? Word() + " " + Word() : Word()).ToList();

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

    /// <summary><paramref name="text"/> repeated to exactly <paramref name="length"/> characters.</summary>
    internal static string Repeat(string text, int length)
    {
        var repeated = new StringBuilder(length + text.Length);
        while (repeated.Length < length) repeated.Append(text);
        return repeated.ToString(0, length);
    }
}
