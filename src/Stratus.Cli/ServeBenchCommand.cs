// `stratus bench serve --url <u> --model <m> --concurrency 1,4,16,64 --requests N --prompt-tokens P
// [--shared-prefix-tokens S] --max-tokens M [--api-key K] [--ready-timeout SECONDS] [--json file]`: vLLM-style serving
// benchmark against any OpenAI-compatible server, once its /ready says it is (a Stratus server listens while its models
// load); prints a table and writes one JSON object per concurrency level.
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Stratus.Server.Benchmarking;

namespace Stratus.Cli;

static class ServeBenchCommand
{
    public static Command Create()
    {
        var url = new Option<string>("--url") { Description = "server base URL, e.g. http://127.0.0.1:8000/v1", Required = true };
        var model = new Option<string>("--model") { Description = "model name on the server", Required = true };
        var concurrency = new Option<string>("--concurrency") { Description = "comma-separated concurrency levels", DefaultValueFactory = _ => "1,4,16,64" };
        var requests = new Option<int>("--requests") { Description = "requests per concurrency level", DefaultValueFactory = _ => 64 };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "prompt length in tokens", DefaultValueFactory = _ => 32 };
        var sharedPrefix = new Option<int>("--shared-prefix-tokens") { Description = "leading prompt tokens every request shares (a system prompt); the rest of each prompt is its own", DefaultValueFactory = _ => 0 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "tokens generated per request", DefaultValueFactory = _ => 32 };
        var apiKey = new Option<string>("--api-key") { Description = "bearer key (default: $OPENAI_API_KEY)" };
        var readyTimeout = new Option<int>("--ready-timeout") { Description = "seconds to wait for a server whose /ready answers 503 (its models loading) before measuring", DefaultValueFactory = _ => 600 };
        var json = OutputPaths.File("--json", "also write the results to this JSON file");
        var command = new Command("serve", "Benchmark an OpenAI-compatible server: TTFT, TPOT, ITL, latency, throughput.") { url, model, concurrency, requests, promptTokens, sharedPrefix, maxTokens, apiKey, readyTimeout, json };
        command.SetAction(async (result, cancellation) =>
        {
            if (!Uri.TryCreate(result.GetValue(url), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                throw new StratusUserException($"--url {result.GetValue(url)} is not an http(s) URL");
            var levels = PositiveNumberList.Parse("--concurrency", result.GetValue(concurrency)!, "concurrency levels such as 1,4,16,64");
            var options = new ServingBenchmarkOptions
            {
                Url = uri,
                Model = result.GetValue(model)!,
                Concurrency = levels,
                Requests = result.GetValue(requests),
                PromptTokens = result.GetValue(promptTokens),
                SharedPrefixTokens = result.GetValue(sharedPrefix),
                MaxTokens = result.GetValue(maxTokens),
                ApiKey = result.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("OPENAI_API_KEY"),
                ReadyTimeout = TimeSpan.FromSeconds(result.GetValue(readyTimeout)),
            };
            using var benchmark = new ServingBenchmark(options);
            var results = await benchmark.RunAsync(new Progress<string>(Console.WriteLine), cancellation);
            Print(results);
            BenchOutput.WriteJson(result.GetValue(json), new JsonArray([.. results.Select(level => (JsonNode)level.ToJson())]));
            return results.Any(r => r.Errors > 0) ? 1 : 0;
        });
        return command;
    }

    static void Print(IReadOnlyList<ServingLevelResult> results)
    {
        var table = BenchOutput.Table("conc.", "requests", "errors", "req/s", "out tok/s", "cached", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "ITL p50", "ITL p99", "E2E p50", "E2E p99");
        foreach (var r in results)
        {
            table.AddRow(r.Concurrency.ToString(), r.Requests.ToString(), r.Errors.ToString(), r.RequestsPerSecond.ToString("F2"), r.OutputTokensPerSecond.ToString("F1"),
                r.PrefixCacheHitRate is { } rate ? rate.ToString("P0") : "n/a",
                Ms(r.TtftMs.P50), Ms(r.TtftMs.P99), Ms(r.TpotMs.P50), Ms(r.TpotMs.P99), Ms(r.ItlMs.P50), Ms(r.ItlMs.P99), Ms(r.E2eMs.P50), Ms(r.E2eMs.P99));
        }
        table.Caption("latencies in ms; TPOT = (e2e - TTFT) / (tokens - 1); cached = prompt tokens the server's prefix cache supplied");
        BenchOutput.Print(table);
        foreach (var r in results.Where(r => r.FirstError is not null))
            Console.WriteLine($"concurrency {r.Concurrency}: {r.Errors} errors, first: {r.FirstError}");
    }

    static string Ms(double value) => double.IsNaN(value) ? "n/a" : value.ToString("F1");
}
