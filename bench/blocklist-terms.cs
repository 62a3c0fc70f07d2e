// How a blocklist's term count changes the cost of compiling and checking it:
//   dotnet run -c Release bench/blocklist-terms.cs [term counts, default 10,1000,10000,40000]
// Terms are made-up words of 5-10 letters, one in ten two words; the clean texts are ordinary
// sentences (tests/Stratus.Safety.Tests/OrdinarySentences.txt) repeated, the text of hits one
// listed term repeated. Each check is timed at its best of 5 (the machine's load varies), after a
// warm-up on the smallest list so that the first row does not time the JIT.
#:project ../src/Stratus.Safety/Stratus.Safety.csproj
#:property TreatWarningsAsErrors=true
using System.Diagnostics;
using System.Text;
using Stratus.Safety;

var counts = (args.Length > 0 ? args[0] : "10,1000,10000,40000").Split(',').Select(int.Parse);
var sentences = File.ReadAllText(Path.Combine(AppContext.GetData("EntryPointFileDirectoryPath") as string ?? "bench", "../tests/Stratus.Safety.Tests/OrdinarySentences.txt"));
Measure(counts.Min(), report: false);
Console.WriteLine("| terms | compile ms | retained MiB | clean 4 KB ms | clean 256 KiB ms | 256 KiB of hits ms (hits) |");
Console.WriteLine("|---:|---:|---:|---:|---:|---:|");
foreach (var count in counts) Measure(count, report: true);

void Measure(int count, bool report)
{
    var random = new Random(count);
    string Word() => new(Enumerable.Range(0, random.Next(5, 11)).Select(_ => (char)('a' + random.Next(26))).ToArray());
    var terms = Enumerable.Range(0, count).Select(i => i % 10 == 0 ? Word() + " " + Word() : Word()).ToList();
    var list = new Blocklist("bench", terms, []);

    var before = GC.GetTotalMemory(forceFullCollection: true);
    var clock = Stopwatch.StartNew();
    var compiled = CompiledBlocklist.Compile(list);
    var compileMs = clock.Elapsed.TotalMilliseconds;
    var retained = (GC.GetTotalMemory(forceFullCollection: true) - before) / 1048576.0;

    string Check(string text)
    {
        var best = double.MaxValue;
        IReadOnlyList<SafetyMatch> found = [];
        for (var run = 0; run < 5; run++)
        {
            clock.Restart();
            found = compiled.Find(text);
            best = Math.Min(best, clock.Elapsed.TotalMilliseconds);
        }
        var timedOut = found.Any(m => m.Label.EndsWith("(timed out)", StringComparison.Ordinal));
        return $"{best:F1}{(timedOut ? " timed out" : found.Count > 0 ? $" ({found.Count})" : "")}";
    }
    var row = $"| {count:N0} | {compileMs:F0} | {retained:F1} | {Check(Repeat(sentences, 4096))} | {Check(Repeat(sentences, 256 * 1024))} | {Check(Repeat(terms[1] + " ", 256 * 1024))} |";
    if (report) Console.WriteLine(row);
    GC.KeepAlive(compiled);
}

static string Repeat(string text, int length)
{
    var repeated = new StringBuilder(length + text.Length);
    while (repeated.Length < length) repeated.Append(text);
    return repeated.ToString(0, length);
}
