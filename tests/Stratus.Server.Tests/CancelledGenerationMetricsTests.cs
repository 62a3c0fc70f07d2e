// What /metrics counts of a generation its client leaves: the prompt the model read and the
// tokens it generated, its time to first token, but no end-to-end latency and no time per output
// token it did not have.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

public sealed class HoldingServer : IAsyncLifetime
{
    public HoldUntilAbortedFilter Hold { get; } = new();
    public TinyModelServer Server { get; }

    public HoldingServer() => Server = new TinyModelServer { ConfigureServices = services => services.AddSingleton<IGenerationFilter>(Hold) };

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class CancelledGenerationMetricsTests(HoldingServer fixture) : IClassFixture<HoldingServer>
{
    const string Model = $"model=\"{TinyModelServer.ModelName}\"";

    static HttpRequestMessage Chat(bool stream, string? user = null) => new(HttpMethod.Post, "/v1/chat/completions")
    {
        Content = JsonContent.Create(new
        {
            model = TinyModelServer.ModelName,
            messages = new[] { new { role = "user", content = "Hello there" } },
            max_tokens = 50,
            temperature = 0,
            stream,
            user,
        }),
    };

    /// <summary>The tiny model's value of each series named (a histogram's by its _count).</summary>
    async Task<long[]> ReadAsync(params string[] series)
    {
        await Task.Delay(400); // past the exporter's 300 ms scrape cache
        var lines = (await fixture.Server.Http.GetStringAsync("/metrics")).Split('\n');
        return [.. series.Select(name => lines.FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal) && l.Contains(Model, StringComparison.Ordinal)) is { } line
            ? (long)double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture) : 0)];
    }

    static readonly string[] Series =
        ["stratus_prompt_tokens_total", "stratus_generation_tokens_total", "stratus_time_to_first_token_seconds_count",
         "stratus_e2e_request_latency_seconds_count", "stratus_time_per_output_token_seconds_count"];

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_generation_its_client_leaves_counts_the_tokens_the_model_computed(bool stream)
    {
        // The same prompt run to its end says how many tokens it has.
        using var whole = await fixture.Server.Http.SendAsync(Chat(stream: false));
        Assert.Equal(HttpStatusCode.OK, whole.StatusCode);
        var promptTokens = (int)JsonNode.Parse(await whole.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens"]!;

        var before = await ReadAsync(Series);
        using (var cancel = new CancellationTokenSource())
        {
            // Held after its first token until the client leaves: a stream's client hangs up once
            // its answer has begun, another's before any answer.
            var request = fixture.Server.Http.SendAsync(Chat(stream, user: "hold"), HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            await fixture.Hold.Held.Reader.ReadAsync();
            if (stream) (await request).Dispose();
            cancel.Cancel();
            if (!stream) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        }
        // Counted when the request has ended, shortly after the client left.
        var after = await ReadAsync(Series);
        for (var waited = 0; waited < 50 && after[0] == before[0]; waited++) after = await ReadAsync(Series);

        var counted = after.Zip(before, (a, b) => a - b).ToArray();
        // The prompt; the token held and those the engine made meanwhile (up to max_tokens); the
        // time to its first token; no end to time, and the reader's one token has no time per
        // output token.
        Assert.Equal(promptTokens, counted[0]);
        Assert.InRange(counted[1], 1, 50);
        Assert.Equal([1, 0, 0], counted[2..]);
    }
}
