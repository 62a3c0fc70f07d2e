// A generation stream's reader cancels its sequence when the GC finds it unreachable
// (ReaderAbandonment). A request being read, streaming or not, one choice or several, must never
// look unreachable to it: collections forced all through the requests must leave every one whole.
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class CollectionPressureTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    const int MaxTokens = 60;

    [Fact]
    public async Task Requests_read_while_the_GC_collects_over_and_over_end_whole()
    {
        using var done = new CancellationTokenSource();
        var collector = new Thread(() =>
        {
            while (!done.IsCancellationRequested)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }) { IsBackground = true };
        collector.Start();
        try
        {
            var requests = new List<Task<(int CompletionTokens, string[] FinishReasons)>>();
            for (var round = 0; round < 4; round++)
            {
                foreach (var n in new[] { 1, 3 })
                {
                    requests.Add(Whole(n, round));
                    requests.Add(Streamed(n, round));
                }
            }
            var results = await Task.WhenAll(requests);
            Assert.All(results, r => Assert.Equal(r.FinishReasons.Length * MaxTokens, r.CompletionTokens));
            Assert.All(results, r => Assert.All(r.FinishReasons, reason => Assert.Equal("length", reason)));
        }
        finally
        {
            done.Cancel();
            collector.Join();
        }
    }

    static object Body(int n, int seed, bool stream) => new Dictionary<string, object?>
    {
        ["model"] = TinyModelServer.ModelName,
        ["prompt"] = "To be, or not",
        ["max_tokens"] = MaxTokens,
        ["temperature"] = 1,
        ["seed"] = seed,
        ["n"] = n,
        ["stream"] = stream,
        ["stream_options"] = stream ? new { include_usage = true } : null,
    };

    async Task<(int, string[])> Whole(int n, int seed)
    {
        using var response = await fixture.Http.PostAsJsonAsync("/v1/completions", Body(n, seed, stream: false));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var result = JsonNode.Parse(text)!;
        return ((int)result["usage"]!["completion_tokens"]!, [.. result["choices"]!.AsArray().Select(c => (string)c!["finish_reason"]!)]);
    }

    async Task<(int, string[])> Streamed(int n, int seed)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(Body(n, seed, stream: true)) };
        using var response = await fixture.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var chunks = text.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l["data: ".Length..])!).ToList();
        var reasons = chunks.SelectMany(c => c["choices"]!.AsArray()).Where(c => c!["finish_reason"] is not null).Select(c => (string)c!["finish_reason"]!).ToArray();
        var usage = chunks.Single(c => c["usage"] is JsonObject)["usage"]!;
        return ((int)usage["completion_tokens"]!, reasons);
    }
}
