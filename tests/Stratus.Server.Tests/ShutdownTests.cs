// A server told to stop (SIGTERM, Ctrl+C: the host's StopApplication) lets the requests still
// generating go on for its grace period, then ends them with a 503 the client can read, a stream
// with an error event and [DONE], rather than leave Kestrel to cut their connections mid-answer.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

/// <summary>Holds the first piece of every choice of a request from user "hold" until the
/// request is cancelled, and of a request from user "finish" until <see cref="Release"/>.</summary>
/// <param name="requests">How many requests are held when <see cref="Holding"/> completes.</param>
public sealed class HoldingFilter(int requests) : IGenerationFilter
{
    readonly TaskCompletionSource release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly int requests = requests;
    public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    int held;

    public void Release() => release.TrySetResult();

    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) =>
        ValueTask.FromResult<IGenerationScope?>(context.User is "hold" or "finish" ? new Scope(this, context.User == "finish") : null);

    sealed class Scope(HoldingFilter filter, bool released) : IGenerationScope
    {
        bool passed;
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => null;

        public async ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation)
        {
            if (!passed)
            {
                passed = true;
                if (Interlocked.Increment(ref filter.held) == filter.requests) filter.Holding.TrySetResult();
                await (released ? filter.release.Task.WaitAsync(cancellation) : Task.Delay(Timeout.Infinite, cancellation));
            }
            return new FilteredText(text);
        }

        public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) => ValueTask.FromResult(true);
        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation) => ValueTask.FromResult(ChoiceEnd.None);
        public ValueTask CompleteAsync(int promptTokens, int completionTokens) => ValueTask.CompletedTask;
    }
}

/// <summary>Holds every request in its filters (as a slow quota or moderation check would) until
/// <see cref="Release"/>.</summary>
public sealed class AdmittingFilter : IGenerationFilter
{
    readonly TaskCompletionSource release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Release() => release.TrySetResult();

    public async ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation)
    {
        Entered.TrySetResult();
        await release.Task.WaitAsync(cancellation);
        return null;
    }
}

/// <summary>Each test has a server of its own: stopping it is what is tested.</summary>
public sealed class ShutdownTests
{
    static async Task WithServerAsync(TimeSpan gracePeriod, IGenerationFilter filter, Func<TinyModelServer, Task> test, Action<WebApplication>? pipeline = null)
    {
        var fixture = new TinyModelServer { ConfigureServices = services => services.AddSingleton<IGenerationFilter>(filter), ShutdownGracePeriod = gracePeriod, ConfigurePipeline = pipeline };
        await fixture.InitializeAsync();
        try
        {
            await test(fixture);
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }

    static Task<HttpResponseMessage> Send(TinyModelServer fixture, string user, bool stream) =>
        fixture.Http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = JsonContent.Create(new { model = TinyModelServer.ModelName, prompt = "ab", max_tokens = 8, user, stream }),
        }, HttpCompletionOption.ResponseHeadersRead);

    static Task StopAsync(TinyModelServer fixture)
    {
        var stopped = fixture.Server.WaitForShutdownAsync();
        fixture.Server.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
        return stopped;
    }

    [Fact]
    public async Task A_stopping_server_lets_running_requests_finish_within_the_grace_period()
    {
        // A grace no test machine outlasts: the request finishes however long the machine stalls.
        var filter = new HoldingFilter(requests: 2);
        await WithServerAsync(TimeSpan.FromMinutes(10), filter, async fixture =>
        {
            var finishing = Send(fixture, "finish", stream: true);
            var held = Send(fixture, "hold", stream: false);
            await filter.Holding.Task.WaitAsync(TimeSpan.FromSeconds(30));

            // The CLI says how many it waits for.
            var draining = new List<int>();
            fixture.Server.Shutdown.Draining += draining.Add;
            var stopped = StopAsync(fixture);
            Assert.Equal([2], draining);
            filter.Release();
            using (var response = await finishing.WaitAsync(TimeSpan.FromSeconds(30)))
            {
                var events = await response.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));
                Assert.Contains("\"finish_reason\":\"length\"", events);
                Assert.EndsWith("data: [DONE]\n\n", events);
            }
            // The other goes on, and the server with it, until the grace period ends.
            Assert.False(held.IsCompleted);
            Assert.False(stopped.IsCompleted);
        });
    }

    [Fact]
    public async Task Past_the_grace_period_running_requests_end_with_a_readable_503()
    {
        var filter = new HoldingFilter(requests: 2);
        await WithServerAsync(TimeSpan.FromSeconds(1), filter, async fixture =>
        {
            var streamed = Send(fixture, "hold", stream: true);
            var whole = Send(fixture, "hold", stream: false);
            await filter.Holding.Task.WaitAsync(TimeSpan.FromSeconds(30));

            var stopped = StopAsync(fixture);
            // A stream ends with the error as an event and [DONE] (an OpenAI SDK raises it)...
            using (var response = await streamed.WaitAsync(TimeSpan.FromSeconds(30)))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                var events = await response.Content.ReadAsStringAsync().WaitAsync(TimeSpan.FromSeconds(30));
                Assert.EndsWith("data: [DONE]\n\n", events);
                var error = JsonNode.Parse(events.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[^2]["data: ".Length..])!["error"]!;
                Assert.Equal("server_shutting_down", (string?)error["code"]);
                Assert.Equal("server_error", (string?)error["type"]);
            }
            // ... and a whole answer is a 503 to retry.
            using (var response = await whole.WaitAsync(TimeSpan.FromSeconds(30)))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Equal(TimeSpan.FromSeconds(1), response.Headers.RetryAfter?.Delta);
                var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
                Assert.Equal("server_shutting_down", (string?)error["code"]);
            }
            await stopped.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, fixture.Server.Shutdown.RunningRequests);
        });
    }

    /// <summary>From the moment the server begins stopping, /ready answers 503 `draining`, so that a
    /// load balancer whose probe got through takes it out of rotation, while /health (liveness)
    /// still answers 200. The probes are held until then, as one whose health check was running
    /// would be (the port closes at once, so no later probe gets through).</summary>
    [Fact]
    public async Task A_stopping_server_answers_ready_with_503_draining_and_health_with_200()
    {
        var probes = 0;
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await WithServerAsync(TimeSpan.FromMinutes(10), new HoldingFilter(requests: 1), async fixture =>
        {
            var ready = fixture.Http.GetAsync("/ready");
            var health = fixture.Http.GetAsync("/health");
            await held.Task.WaitAsync(TimeSpan.FromSeconds(30));

            var stopped = StopAsync(fixture);
            stopping.SetResult();
            using (var response = await ready.WaitAsync(TimeSpan.FromSeconds(30)))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Equal(TimeSpan.FromSeconds(5), response.Headers.RetryAfter?.Delta);
                var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
                Assert.Equal("draining", (string?)error["code"]);
                Assert.Equal("The server cannot serve: it is shutting down.", (string?)error["message"]);
            }
            using (var response = await health.WaitAsync(TimeSpan.FromSeconds(30)))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("ok", await response.Content.ReadAsStringAsync());
            }
            await stopped.WaitAsync(TimeSpan.FromSeconds(30));
        }, app => app.Use(async (context, next) =>
        {
            if (context.Request.Path.Value is "/ready" or "/health")
            {
                if (Interlocked.Increment(ref probes) == 2) held.SetResult();
                await stopping.Task;
            }
            await next(context);
        }));
    }

    /// <summary>A request still in its filters when the server begins stopping goes on to generate
    /// within the grace period, so it is one of those the CLI says it waits for: counted only once
    /// generating, it was left out, and a server waiting for it said nothing.</summary>
    [Fact]
    public async Task A_request_still_in_its_filters_when_the_server_stops_is_counted_as_running()
    {
        var filter = new AdmittingFilter();
        await WithServerAsync(TimeSpan.FromMinutes(10), filter, async fixture =>
        {
            var admitted = Send(fixture, "someone", stream: false);
            await filter.Entered.Task.WaitAsync(TimeSpan.FromSeconds(30));

            var draining = new List<int>();
            fixture.Server.Shutdown.Draining += draining.Add;
            var stopped = StopAsync(fixture);
            Assert.Equal([1], draining);
            filter.Release();
            using (var response = await admitted.WaitAsync(TimeSpan.FromSeconds(30))) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await stopped.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, fixture.Server.Shutdown.RunningRequests);
        });
    }

    /// <summary>A Draining subscriber that throws (a console gone) is the host's to log: the
    /// grace period still ends the requests readably, rather than Kestrel cutting them.</summary>
    [Fact]
    public async Task A_throwing_Draining_subscriber_does_not_stop_the_grace_period_ending_the_requests()
    {
        var filter = new HoldingFilter(requests: 1);
        await WithServerAsync(TimeSpan.FromSeconds(1), filter, async fixture =>
        {
            var held = Send(fixture, "hold", stream: false);
            await filter.Holding.Task.WaitAsync(TimeSpan.FromSeconds(30));

            fixture.Server.Shutdown.Draining += _ => throw new IOException("stderr is gone");
            var stopped = StopAsync(fixture);
            using (var response = await held.WaitAsync(TimeSpan.FromSeconds(30)))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Equal("server_shutting_down", (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!["code"]);
            }
            await stopped.WaitAsync(TimeSpan.FromSeconds(30));
        });
    }

    /// <summary>A second signal taken as the server is disposed keeps its default: a Ctrl+C then
    /// still ends the process.</summary>
    [Fact]
    public void A_signal_taken_after_the_shutdown_was_disposed_keeps_its_default_action()
    {
        var shutdown = new ServerShutdown(TimeSpan.FromMinutes(1));
        shutdown.Dispose();
        var signal = new System.Runtime.InteropServices.PosixSignalContext(System.Runtime.InteropServices.PosixSignal.SIGINT);
        shutdown.EndOnSignal(signal);
        Assert.False(signal.Cancel);
    }
}
