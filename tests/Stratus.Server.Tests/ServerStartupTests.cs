// What the server refuses at startup: serving with no active key (nobody could call it),
// --insecure-no-auth on a non-loopback address, an access log it cannot write, and an address it
// cannot listen on (a port in use, an address the machine lacks, a port it has no right to: in
// words of its own, apart from a data directory it cannot use); that it listens on its host and
// port alone; and what it serves with --insecure-no-auth on loopback: everything, without a key,
// to local clients.
using System.Net;
using System.Net.Sockets;
using Stratus.Inference;
using Stratus.Safety;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;

namespace Stratus.Server.Tests;

public sealed class ServerStartupTests : IDisposable
{
    readonly string folder = Path.Combine(Path.GetTempPath(), $"stratus-startup-test-{Guid.NewGuid():N}");

    ServeOptions Options(bool insecure, string host = "127.0.0.1")
    {
        var checkpoint = Path.Combine(folder, "tiny");
        if (!Directory.Exists(checkpoint)) TinyModelServer.CreateCheckpoint(checkpoint);
        return new ServeOptions
        {
            Models = [new ModelSpec(checkpoint, TinyModelServer.ModelName)],
            Host = host,
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new TrustOptions { DataDir = Path.Combine(folder, "data"), InsecureNoAuth = insecure },
        };
    }

    [Fact]
    public async Task Without_an_active_key_the_server_refuses_to_start()
    {
        var error = await Assert.ThrowsAsync<TrustUserException>(() => StratusServer.StartAsync(Options(insecure: false)));
        Assert.Contains("stratus keys create", error.Message);
        Assert.Contains("--insecure-no-auth", error.Message);
        Assert.DoesNotContain('\n', error.Message);
        // A key that cannot call the models does not count.
        await Platform.PlatformStores.Open(Path.Combine(folder, "data")).KeyService().CreateAsync("trainer", Platform.ApiKeyScopes.Training, Platform.RateLimits.Unlimited, "tests");
        await Platform.PlatformStores.Open(Path.Combine(folder, "data")).KeyService().CreateAsync("prometheus", Platform.ApiKeyScopes.Metrics, Platform.RateLimits.Unlimited, "tests");
        Assert.Contains("inference scope", (await Assert.ThrowsAsync<TrustUserException>(() => StratusServer.StartAsync(Options(insecure: false)))).Message);
        // An admin key may call everything.
        await Platform.PlatformStores.Open(Path.Combine(folder, "data")).KeyService().CreateAsync("operator", Platform.ApiKeyScopes.Admin, Platform.RateLimits.Unlimited, "tests");
        await using var server = await StratusServer.StartAsync(Options(insecure: false));
    }

    [Fact]
    public async Task An_access_log_it_cannot_write_is_refused_before_serving()
    {
        var missing = Path.Combine(folder, "no-such-folder", "access.log");
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(Options(insecure: true) with { AccessLog = missing }));
        Assert.Contains(missing, error.Message);
        Assert.Contains("--access-log", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public async Task Insecure_no_auth_refuses_a_non_loopback_address()
    {
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(Options(insecure: true, host: "0.0.0.0")));
        Assert.Contains("loopback", error.Message);
    }

    [Fact]
    public async Task A_model_name_that_is_no_deployment_name_is_refused_before_serving()
    {
        var options = Options(insecure: true);
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(options with { Models = [options.Models[0] with { Name = "two words" }] }));
        Assert.EndsWith($"is invalid: use 1-128 letters, digits, '_', '.', ':', '-'. Name the model with --model NAME=MODEL, as --model two-words={options.Models[0].Path}", error.Message);
    }

    [Theory]
    [InlineData(-1.0)]
    [InlineData(60 * 24 * 3600.0)]
    public async Task A_shutdown_grace_period_no_timer_can_count_is_refused_before_serving(double seconds)
    {
        // 60 days served, and then stopping it threw from the host's timer (ArgumentOutOfRangeException).
        var options = Options(insecure: true) with { ShutdownGracePeriod = TimeSpan.FromSeconds(seconds) };
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(options));
        Assert.Contains("shutdown grace period", error.Message);
    }

    [Fact]
    public async Task Insecure_no_auth_on_loopback_serves_without_a_key()
    {
        await using var server = await StratusServer.StartAsync(Options(insecure: true));
        using var http = new HttpClient { BaseAddress = server.RootUrl };
        using var models = await http.GetAsync("/v1/models");
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
        Assert.DoesNotContain("Authorization", server.CurlExample());
        Assert.Contains("-H 'Authorization: Bearer sk-example'", server.CurlExample("sk-example"));
    }

    [Fact]
    public async Task The_example_curl_line_works_for_a_model_with_a_short_context()
    {
        // 32 positions: the example's prompt and its 40 tokens would not fit.
        var options = Options(insecure: true);
        var model = TinyModelServer.CreateCheckpoint(Path.Combine(folder, "short"), context: 32);
        await using var server = await StratusServer.StartAsync(options with { Models = [new ModelSpec(model, "short")] });
        var example = server.CurlExample();
        var body = example[(example.IndexOf("-d '") + 4)..^1];
        using var http = new HttpClient { BaseAddress = server.RootUrl };
        using var reply = await http.PostAsync("/v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Assert.True(reply.IsSuccessStatusCode, await reply.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_port_in_use_is_told_apart_from_a_data_directory_the_system_refuses()
    {
        await using var first = await StratusServer.StartAsync(Options(insecure: true));
        var taken = Options(insecure: true) with { Port = first.RootUrl.Port };
        var inUse = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(taken));
        Assert.StartsWith($"cannot listen on 127.0.0.1:{first.RootUrl.Port}: ", inUse.Message);
        // A file where the data directory should be: its own error, naming it, not the port's.
        var file = Path.Combine(folder, "not-a-folder");
        File.WriteAllText(file, "");
        var options = Options(insecure: true);
        var refused = await Assert.ThrowsAsync<Stratus.Safety.TrustUserException>(() => StratusServer.StartAsync(options with { Trust = options.Trust with { DataDir = file } }));
        Assert.StartsWith($"{file} is a file", refused.Message);
    }

    [Fact]
    public async Task It_listens_on_its_host_and_port_and_nowhere_else()
    {
        // ASP.NET Core's configuration added a listener the server never printed: an
        // appsettings.json in the folder `stratus serve` was started from did too. Test
        // collections run one at a time here, so no other server starts while it is set.
        const string variable = "Kestrel__Endpoints__Stray__Url";
        // Not one the server's own port 0 could be given, nor another process's.
        var stray = FreePorts.Take();
        Environment.SetEnvironmentVariable(variable, $"http://127.0.0.1:{stray}");
        try
        {
            await using var server = await StratusServer.StartAsync(Options(insecure: true));
            using var client = new HttpClient();
            Assert.True((await client.GetAsync(new Uri(server.RootUrl, "health"))).IsSuccessStatusCode);
            await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync($"http://127.0.0.1:{stray}/health"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    /// <summary>The data directory, its database and keys are checked before the models load: a
    /// bad one was reported only after a long load. Here the model does not exist, so an error
    /// about the data directory (or the keys) shows that it was checked first.</summary>
    [Fact]
    public async Task The_data_directory_and_keys_are_checked_before_any_model_loads()
    {
        var file = Path.Combine(folder, "not-a-folder");
        Directory.CreateDirectory(folder);
        File.WriteAllText(file, "");
        var options = Options(insecure: true) with { Models = [new ModelSpec(Path.Combine(folder, "no-such-model"), "m")] };
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => StratusServer.StartAsync(options with { Trust = options.Trust with { DataDir = file } }));
        Assert.StartsWith($"{file} is a file", refused.Message);
        var noKey = await Assert.ThrowsAsync<TrustUserException>(() => StratusServer.StartAsync(options with { Trust = options.Trust with { InsecureNoAuth = false } }));
        Assert.StartsWith("No active API key", noKey.Message);
        // A data directory its file system cannot make (/proc's answer to mkdir is ENOENT): named, with the fix.
        if (Directory.Exists("/proc/self"))
        {
            var proc = await Assert.ThrowsAsync<TrustUserException>(() => StratusServer.StartAsync(options with { Trust = options.Trust with { DataDir = "/proc/stratus-test" } }));
            Assert.StartsWith("cannot create the data directory /proc/stratus-test (", proc.Message);
            Assert.EndsWith("give --data-dir (or $STRATUS_HOME) a folder this user may create", proc.Message);
        }
        // Then the model's own error.
        var model = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(options));
        Assert.Contains("does not exist", model.Message);
    }

    /// <summary>The port opens before the models load: a probe is answered rather than refused,
    /// /health (liveness) 200, /ready 503, and a request that needs a model 503
    /// service_unavailable with Retry-After, never a 500 or a hang.</summary>
    [Fact]
    public async Task While_the_models_load_health_is_200_and_ready_and_the_models_503()
    {
        var loading = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // Holds the load until the probes have had their answers.
        var options = Options(insecure: true) with { LoadingModels = root => { loading.SetResult(root); answered.Task.Wait(TimeSpan.FromMinutes(1)); } };
        var starting = Task.Run(() => StratusServer.StartAsync(options));
        var root = await loading.Task.WaitAsync(TimeSpan.FromMinutes(1));
        try
        {
            using var http = new HttpClient { BaseAddress = root, Timeout = TimeSpan.FromSeconds(30) };
            using (var health = await http.GetAsync("/health")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            foreach (var (method, path, body) in new (string, string, string?)[]
            {
                ("GET", "/ready", null), ("GET", "/v1/models", null), ("GET", $"/v1/models/{TinyModelServer.ModelName}", null),
                ("POST", "/v1/chat/completions", $$"""{"model":"{{TinyModelServer.ModelName}}","messages":[{"role":"user","content":"a"}],"max_tokens":2}"""),
                ("POST", "/v1/completions", $$"""{"model":"{{TinyModelServer.ModelName}}","prompt":"a","max_tokens":2,"stream":true}"""),
                ("POST", "/tokenize", """{"prompt":"a"}"""),
            })
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), path);
                if (body is not null) request.Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json");
                using var response = await http.SendAsync(request);
                var text = await response.Content.ReadAsStringAsync();
                Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{method} {path}: {(int)response.StatusCode} {text}");
                Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, $"{method} {path}: no Retry-After");
                var code = (string?)System.Text.Json.Nodes.JsonNode.Parse(text)!["error"]!["code"];
                Assert.Equal(path == "/ready" ? "not_ready" : "service_unavailable", code);
            }
        }
        finally
        {
            answered.SetResult();
        }
        await using var server = await starting.WaitAsync(TimeSpan.FromMinutes(1));
        using var client = new HttpClient { BaseAddress = server.RootUrl };
        using (var ready = await client.GetAsync("/ready")) Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        using (var models = await client.GetAsync("/v1/models")) Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }

    /// <summary>Starts the server with its load held until the returned source is set: the
    /// address it listens on while the models load, and the server once they have.</summary>
    (Task<Uri> Listening, TaskCompletionSource Release, Task<StratusServer> Started) StartHeld()
    {
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = Options(insecure: true) with { LoadingModels = root => { listening.SetResult(root); release.Task.Wait(TimeSpan.FromMinutes(1)); } };
        return (listening.Task.WaitAsync(TimeSpan.FromMinutes(1)), release, Task.Run(() => StratusServer.StartAsync(options)));
    }

    /// <summary>A probe is not a request of the API: /ready's 503s while the models load (a
    /// readiness probe every few seconds) were counted as rejected requests, which an operator
    /// alerts on, though /health's 200s were not.</summary>
    [Fact]
    public async Task Probes_while_the_models_load_are_not_counted_as_rejected_requests()
    {
        var (listening, release, started) = StartHeld();
        var root = await listening;
        try
        {
            using var http = new HttpClient { BaseAddress = root, Timeout = TimeSpan.FromSeconds(30) };
            for (var i = 0; i < 3; i++)
            {
                using (var ready = await http.GetAsync("/ready")) Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
                using (var health = await http.GetAsync("/health")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            }
        }
        finally
        {
            release.SetResult();
        }
        await using var server = await started.WaitAsync(TimeSpan.FromMinutes(1));
        using var client = new HttpClient { BaseAddress = server.RootUrl };
        var counted = (await client.GetStringAsync("/metrics")).Split('\n').Where(l => l.StartsWith("stratus_requests_total{", StringComparison.Ordinal) && l.Contains("model=\"\""));
        Assert.Empty(counted);
    }

    /// <summary>`stratus bench serve` against a server still loading waits for /ready, saying so,
    /// then measures: it took /tokenize's 503 for a server without it, built word prompts, and
    /// measured 503s (here: its warm-up failed).</summary>
    [Fact]
    public async Task Bench_serve_waits_until_a_loading_server_is_ready_then_measures()
    {
        var (listening, release, started) = StartHeld();
        var root = await listening;
        var waiting = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var benchmark = new Stratus.Server.Benchmarking.ServingBenchmark(new()
        {
            Url = new Uri(root, "v1"), Model = TinyModelServer.ModelName, Concurrency = [1], Requests = 2,
            PromptTokens = 30, SharedPrefixTokens = 17, MaxTokens = 3,
        });
        Task<IReadOnlyList<Stratus.Server.Benchmarking.ServingLevelResult>> run;
        try
        {
            run = benchmark.RunAsync(new Lines(line => waiting.TrySetResult(line)));
            if (await Task.WhenAny(run, waiting.Task).WaitAsync(TimeSpan.FromMinutes(1)) == run)
            {
                await run;
                Assert.Fail("the benchmark measured without waiting for the server to be ready");
            }
            Assert.StartsWith("waiting for the server to be ready (The server cannot serve: the models are loading; 0 s of 600 s)", await waiting.Task);
        }
        finally
        {
            release.SetResult();
        }
        await using var server = await started.WaitAsync(TimeSpan.FromMinutes(1));
        var level = Assert.Single(await run.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Equal((0, 6L), (level.Errors, level.OutputTokens));
        // Prompts of token ids from /tokenize: the shared 17 tokens' two whole blocks of 8 cached.
        Assert.Equal(16.0 / 30, level.PrefixCacheHitRate);
    }

    /// <summary>A server that never becomes ready ends the benchmark with one line naming it, why
    /// and what to do, once the wait is over.</summary>
    [Fact]
    public async Task Bench_serve_against_a_server_that_never_becomes_ready_is_one_line()
    {
        var (listening, release, started) = StartHeld();
        var root = await listening;
        try
        {
            using var benchmark = new Stratus.Server.Benchmarking.ServingBenchmark(new()
            {
                Url = new Uri(root, "v1"), Model = TinyModelServer.ModelName, Concurrency = [1], Requests = 1, ReadyTimeout = TimeSpan.Zero,
            });
            var error = await Assert.ThrowsAsync<StratusUserException>(() => benchmark.RunAsync());
            Assert.Equal($"the server at {root} was not ready after 0 s (The server cannot serve: the models are loading); see its log, or wait longer with --ready-timeout <seconds>", error.Message);
        }
        finally
        {
            release.SetResult();
        }
        await using var server = await started.WaitAsync(TimeSpan.FromMinutes(1));
    }

    /// <summary>A server that takes the connection and never answers /ready (wedged while its
    /// models load) is not ready once --ready-timeout is over: the wait was the HTTP client's ten
    /// minutes per /ready, then it measured the wedged server.</summary>
    [Fact]
    public async Task Bench_serve_against_a_server_that_never_answers_ready_ends_at_the_ready_timeout()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var accepted = new List<Socket>();
        var accepting = Task.Run(async () =>
        {
            try
            {
                while (true) accepted.Add(await silent.AcceptSocketAsync());
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The listener stopped.
            }
        });
        var root = new Uri($"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}/");
        try
        {
            using var benchmark = new Stratus.Server.Benchmarking.ServingBenchmark(new()
            {
                Url = new Uri(root, "v1"), Model = TinyModelServer.ModelName, Concurrency = [1], Requests = 1, ReadyTimeout = TimeSpan.FromSeconds(1),
            });
            var error = await Assert.ThrowsAsync<StratusUserException>(() => benchmark.RunAsync().WaitAsync(TimeSpan.FromMinutes(1)));
            Assert.Equal($"the server at {root} was not ready after 1 s (its /ready did not answer); see its log, or wait longer with --ready-timeout <seconds>", error.Message);
        }
        finally
        {
            silent.Stop();
            await accepting;
            foreach (var socket in accepted) socket.Dispose();
        }
    }

    /// <summary>Progress lines as they are reported (Progress&lt;T&gt; posts them later).</summary>
    sealed class Lines(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    /// <summary>Once it listens, the host takes SIGINT and SIGTERM: one while the models load stops
    /// the server then (StartAsync ends cancelled, the port closed), not after the load.</summary>
    [Fact]
    public async Task A_server_stopped_while_its_models_load_stops_then()
    {
        Microsoft.AspNetCore.Builder.WebApplication? app = null;
        Uri? root = null;
        // What SIGTERM does through the host's console lifetime.
        var options = Options(insecure: true) with { ConfigurePipeline = built => app = built, LoadingModels = url => { root = url; app!.Lifetime.StopApplication(); } };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => StratusServer.StartAsync(options));
        using var client = new HttpClient();
        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(root!, "health")));
    }

    /// <summary>The caller's token was watched before the port opened and after the load, not
    /// during it: cancelled while the models loaded, StartAsync went on until the load ended, and
    /// then ended as the load did (here a model that does not exist: its error). Now it ends as
    /// cancelled, as a stopped host does, without waiting for the load, and the port closes.</summary>
    [Fact]
    public async Task A_start_cancelled_while_its_models_load_ends_cancelled()
    {
        using var cancel = new CancellationTokenSource();
        Uri? root = null;
        var options = Options(insecure: true) with
        {
            Models = [new ModelSpec(Path.Combine(folder, "no-such-model"), "m")],
            LoadingModels = url => { root = url; cancel.Cancel(); },
        };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => StratusServer.StartAsync(options, cancel.Token));
        using var client = new HttpClient();
        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(root!, "health")));
    }

    /// <summary>A model that fails to load closes the port that was opened before it.</summary>
    [Fact]
    public async Task A_model_that_fails_to_load_closes_the_port()
    {
        Uri? root = null;
        var options = Options(insecure: true);
        var broken = Options(insecure: true) with { Models = [options.Models[0], new ModelSpec(Path.Combine(folder, "no-such-model"), "m")], LoadingModels = url => root = url };
        await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(broken));
        Assert.NotNull(root);
        using var client = new HttpClient();
        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(root, "health")));
    }

    /// <summary>--host localhost listened on 127.0.0.1 alone, where Kestrel's own localhost (and a
    /// client resolving it, which may try ::1 first) means both loopbacks.</summary>
    [Fact]
    public async Task Localhost_listens_on_both_loopbacks_where_the_machine_has_IPv6()
    {
        // Kestrel takes no port 0 on localhost: a port free on both loopbacks that nothing else is given meanwhile.
        var port = FreePorts.Take();
        await using var server = await StratusServer.StartAsync(Options(insecure: true, host: "localhost") with { Port = port });
        Assert.Equal(new Uri($"http://localhost:{port}/"), server.RootUrl);
        using var client = new HttpClient();
        Assert.True((await client.GetAsync($"http://127.0.0.1:{port}/health")).IsSuccessStatusCode);
        // Where the machine has no IPv6 (ipv6.disable=1), Kestrel goes on with 127.0.0.1 alone.
        if (HasIPv6Loopback()) Assert.True((await client.GetAsync($"http://[::1]:{port}/health")).IsSuccessStatusCode);
    }

    /// <summary>--host 0.0.0.0 printed http://0.0.0.0:8000/v1, which reaches nothing from another
    /// machine and is odd here: the URL is the loopback one, and the server says it listens on every address.</summary>
    [Theory]
    [InlineData("0.0.0.0", "127.0.0.1")]
    [InlineData("::", "[::1]")]
    public async Task Every_address_is_given_as_the_loopback_url_that_reaches_it(string host, string loopback)
    {
        if (host == "::" && !HasIPv6Loopback()) return;
        await Platform.PlatformStores.Open(Path.Combine(folder, "data")).KeyService().CreateAsync("app", Platform.ApiKeyScopes.Inference, Platform.RateLimits.Unlimited, "tests");
        await using var server = await StratusServer.StartAsync(Options(insecure: false) with { Host = host });
        Assert.Equal(loopback, server.RootUrl.Host);
        Assert.True(server.ListensOnEveryAddress);
        Assert.StartsWith($"curl http://{loopback}:{server.RootUrl.Port}/v1/", server.CurlExample());
        using var client = new HttpClient();
        Assert.True((await client.GetAsync(new Uri(server.RootUrl, "health"))).IsSuccessStatusCode);
    }

    static bool HasIPv6Loopback()
    {
        if (!Socket.OSSupportsIPv6) return false;
        try
        {
            using var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    [Fact]
    public async Task An_address_this_machine_does_not_have_is_one_line_naming_it()
    {
        // 192.0.2.1 is TEST-NET-1 (RFC 5737), no machine's own: the socket's EADDRNOTAVAIL was
        // thrown as it was, ending `stratus serve` with a stack trace and SIGABRT.
        await Platform.PlatformStores.Open(Path.Combine(folder, "data")).KeyService().CreateAsync("app", Platform.ApiKeyScopes.Inference, Platform.RateLimits.Unlimited, "tests");
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(Options(insecure: false) with { Host = "192.0.2.1" }));
        Assert.StartsWith("cannot listen on 192.0.2.1:0: no network interface of this machine has that address", error.Message);
        Assert.Contains("--host", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_port_below_1024_without_the_right_to_it_says_how_to_get_one()
    {
        // Tests run as root here, where binding port 80 succeeds: the socket's refusal is made up.
        var error = StratusServer.CannotListen("::", 80, new SocketException((int)SocketError.AccessDenied));
        Assert.StartsWith("cannot listen on [::]:80: permission denied", error.Message);
        Assert.Contains("CAP_NET_BIND_SERVICE", error.Message);
        Assert.Contains("--port of 1024 or above", error.Message);
    }

    public void Dispose()
    {
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }
}
