// The OpenAI-compatible server: Kestrel, the /v1 endpoints, /tokenize, /health, /ready and
// /metrics over one engine per served model, behind the trust layer (API keys on everything but
// /health and the dashboard's files, quotas, content safety, usage, the admin API), and the
// operators' dashboard at /dashboard/. StartAsync is the one entry point,
// used by `stratus serve`, by tests and by anything that wants a model behind HTTP.
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Stratus.Inference;
using Stratus.Platform.Jobs;
using Stratus.Server.Api;
using Stratus.Server.Endpoints;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;
using Stratus.Tokenization;

namespace Stratus.Server;

public sealed record ServeOptions
{
    public IReadOnlyList<ModelSpec> Models { get; init; } = [];
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 8000;
    public EngineOptions Engine { get; init; } = new();
    /// <summary>Where every model is loaded (a GPU: each step runs through libtorch; the decode
    /// kernels are the CPU's).</summary>
    public TorchSharp.torch.Device Device { get; init; } = TorchSharp.torch.CPU;
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;
    /// <summary>Adds services, e.g. IGenerationFilter implementations.</summary>
    public Action<IServiceCollection>? ConfigureServices { get; init; }
    /// <summary>Adds middleware ahead of the endpoints, after the trust layer's authentication.</summary>
    public Action<WebApplication>? ConfigurePipeline { get; init; }
    public LogLevel MinimumLogLevel { get; init; } = LogLevel.Warning;
    /// <summary>libtorch intra-op threads for the whole process; null leaves libtorch's default.
    /// On small machines one core is better left to Kestrel (see ServeCommand).</summary>
    public int? TorchThreads { get; init; }
    /// <summary>Where keys, usage and the audit log live, and whether keys may be skipped
    /// (--insecure-no-auth, loopback only).</summary>
    public TrustOptions Trust { get; init; } = new();
    /// <summary>The command that runs the Stratus CLI (the serving CLI's own), for /api/jobs'
    /// local executor; null: /api/jobs is not served.</summary>
    public IReadOnlyList<string>? JobsCommand { get; init; }
    /// <summary>The folder /api/jobs' submissions must read and write beneath (serve --jobs-root);
    /// null: the API lists and cancels jobs but takes none.</summary>
    public string? JobsRoot { get; init; }
    /// <summary>The executors /api/jobs' submissions run under (serve --jobs-executor): "local",
    /// "slurm", the first where a request names none.</summary>
    public IReadOnlyList<string> JobsExecutors { get; init; } = [LocalJobExecutor.ExecutorName];
    /// <summary>How long a stopping server lets running requests go on before it ends them with a
    /// 503 (a stream with an error event and [DONE]); the host waits 5 s more for those ends. The
    /// default ends them within 30 s, Kubernetes' default grace before it kills a pod.</summary>
    public TimeSpan ShutdownGracePeriod { get; init; } = DefaultShutdownGracePeriod;
    /// <summary>A constant of its own, so that `stratus serve --help` shows it without a
    /// ServeOptions, whose <see cref="Device"/> needs libtorch.</summary>
    public static readonly TimeSpan DefaultShutdownGracePeriod = TimeSpan.FromSeconds(25);
    /// <summary>The longest ShutdownGracePeriod: past any orchestrator's wait, and well within
    /// what the host's and the grace's timers can count (about 49 days).</summary>
    public static readonly TimeSpan MaxShutdownGracePeriod = TimeSpan.FromDays(1);
    /// <summary>Where each request's access log line goes (a file, appended to; "-": standard
    /// output, and the server's own log then goes to standard error); null: no access log.</summary>
    public string? AccessLog { get; init; }
    /// <summary>The server's clock: the access log's times, and the trust layer's (usage days, key
    /// expiry, audit entries, quota windows); the system's unless a test sets it.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
    /// <summary>The reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed
    /// (--forwarded-allow-ips); none by default (ForwardedClients).</summary>
    public IReadOnlyList<IPNetwork> ForwardedAllowIps { get; init; } = [];
    /// <summary>The server's own log as text or JSON lines; null: as the configuration's
    /// Logging:Console:FormatterName says, else text (ServerLog).</summary>
    public ServerLogFormat? LogFormat { get; init; }
    /// <summary>How the models write tool calls, for tool_choice "auto" (--tool-call-parser, as
    /// vLLM's); null: each model's chat template says, where it does.</summary>
    public ToolCallParser? ToolCallParser { get; init; }
    /// <summary>Called with a line for the operator where something is served that may not be
    /// what was meant (a folder whose name is also a registered model's), before any model loads.</summary>
    public Action<string>? Warning { get; init; }
    /// <summary>Called once the server listens, with its root URL (StratusServer.RootUrl), before
    /// the models load: what is quick to check has passed, and probes are answered.</summary>
    public Action<Uri>? LoadingModels { get; init; }
}

public sealed class StratusServer : IAsyncDisposable
{
    readonly WebApplication app;

    StratusServer(WebApplication app, ServedModels models, Uri root)
    {
        this.app = app;
        Models = models;
        RootUrl = root;
    }

    public ServedModels Models { get; }
    /// <summary>Whether the server listens on every address (--host 0.0.0.0 or ::): other
    /// machines reach it at this one's addresses, and <see cref="RootUrl"/> is the loopback one.</summary>
    public bool ListensOnEveryAddress { get; private init; }
    /// <summary>The host's services (StratusTrust, the endpoint data source for probes).</summary>
    public IServiceProvider Services => app.Services;
    /// <summary>What a stopping server does with the requests still running (Draining says it waits for some).</summary>
    public ServerShutdown Shutdown => app.Services.GetRequiredService<ServerShutdown>();
    /// <summary>http://host:port/, a URL a client on this machine can use: the loopback address
    /// where the server listens on every address (http://0.0.0.0:8000/ reaches nothing).</summary>
    public Uri RootUrl { get; }
    /// <summary>What OpenAI clients take as their base URL: http://host:port/v1</summary>
    public Uri BaseUrl => new(RootUrl, "v1");

    /// <summary>Checks what is quick to check (the models' names, the data directory, its
    /// database and keys, the access log, the address), starts Kestrel, loads every model and
    /// returns once they serve. A mistake is refused before a long load, and while the models
    /// load, probes get answers rather than a refused connection: /health 200 (the process is
    /// alive), /ready and the endpoints that need a model 503 with Retry-After.</summary>
    public static async Task<StratusServer> StartAsync(ServeOptions options, CancellationToken cancellation = default)
    {
        if (options.Models.Count == 0) throw new StratusUserException("give at least one model to serve (--model <run-or-checkpoint-folder>)");
        if (options.TorchThreads is { } threads)
        {
            if (threads < 1) throw new StratusUserException($"--threads must be at least 1, got {threads}");
            TorchSharp.torch.set_num_threads(threads);
        }
        if (options.Trust.InsecureNoAuth) ForwardedClients.EnsureOnThisMachine(options.ForwardedAllowIps);
        // Registered references become their checkpoints here, before any model loads.
        var registered = new Lazy<Stratus.Platform.ModelRegistry?>(() => Stratus.Platform.ModelRegistry.OpenExisting(Stratus.Platform.StratusHome.Resolve(options.Trust.DataDir), RegistryCheckpoints.Instance));
        options = options with { Models = [.. options.Models.Select(spec => spec.ResolveRegistered(registered, options.Warning))] };
        ServedModels.EnsureDistinctNames(options.Models);
        // A model's name is its deployment name for safety policies and usage.
        foreach (var spec in options.Models)
        {
            try
            {
                Stratus.Safety.SafetyPolicy.ValidateDeploymentName(spec.ResolveName());
            }
            catch (Stratus.Safety.TrustUserException e)
            {
                throw new StratusUserException($"{e.Message} Name the model with --model NAME=MODEL, as --model {DeploymentNameLike(spec.ResolveName())}={spec.Path}");
            }
        }
        var servedModels = new ServedModels { IsLoading = true };
        WebApplication? app = null;
        var started = false;
        Task? loading = null;
        try
        {
            // Opens the data directory and its database.
            app = Build(options, servedModels);
            // Opened now, so that a path it cannot write is refused before the server starts.
            app.Services.GetService<AccessLog>();
            var trust = app.Services.GetRequiredService<StratusTrust>();
            // No active key: refused here as one clear error rather than as the host's failure
            // report (its startup guard would refuse the same).
            await TrustStartupGuard.EnsureCallableAsync(trust, cancellation);
            try
            {
                await app.StartAsync(cancellation);
                started = true;
            }
            // Kestrel wraps an address in use in an IOException and throws the socket's other
            // refusals as they are. Caught here, around the bind alone: the data directory's
            // failures before it are IOExceptions too, and name their own path.
            catch (Exception e) when (e is IOException or SocketException)
            {
                throw CannotListen(options.Host, options.Port, e);
            }
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            var listening = new Uri(address.EndsWith('/') ? address : address + "/");
            var root = Reachable(listening);
            var systemd = app.Services.GetRequiredService<SystemdNotifications>();
            systemd.Loading(options.Models.Count);
            options.LoadingModels?.Invoke(root);
            loading = Task.Run(() =>
            {
                foreach (var spec in options.Models) servedModels.Add(ServedModel.Load(spec, options.Engine, options.Device, options.ToolCallParser));
            });
            // The host takes SIGINT and SIGTERM once it listens: one during the load, or the
            // caller's token, stops the server then, not after a load that cannot be broken off.
            using (var stopping = CancellationTokenSource.CreateLinkedTokenSource(app.Lifetime.ApplicationStopping, cancellation))
                if (await Task.WhenAny(Task.Delay(Timeout.Infinite, stopping.Token), loading) != loading)
                    throw new OperationCanceledException("the server was stopped while its models loaded", cancellation.IsCancellationRequested ? cancellation : app.Lifetime.ApplicationStopping);
            await loading;
            servedModels.IsLoading = false;
            foreach (var model in servedModels.All) await trust.RecordModelDeployedAsync(model.Name, model.CheckpointDirectory ?? "(in memory)", model.RegisteredVersion, cancellation);
            systemd.Ready(servedModels.All.Select(model => model.Name), root);
            return new StratusServer(app, servedModels, root) { ListensOnEveryAddress = listening.Host != root.Host };
        }
        catch
        {
            // A model that fails to load closes the port opened before it.
            if (started) await app!.StopAsync(CancellationToken.None);
            if (app is not null) await app.DisposeAsync();
            // A model still loading is disposed with the others once it has loaded.
            if (loading is { IsCompleted: false }) _ = loading.ContinueWith(_ => servedModels.Dispose(), TaskScheduler.Default);
            else servedModels.Dispose();
            throw;
        }
    }

    /// <summary><paramref name="listening"/> with the wildcard address of its family (0.0.0.0,
    /// [::], as Kestrel names them) replaced by that family's loopback.</summary>
    static Uri Reachable(Uri listening) => listening.Host switch
    {
        "0.0.0.0" => new UriBuilder(listening) { Host = IPAddress.Loopback.ToString() }.Uri,
        "[::]" => new UriBuilder(listening) { Host = $"[{IPAddress.IPv6Loopback}]" }.Uri,
        _ => listening,
    };

    /// <summary>Why the server could not listen on <paramref name="host"/>:<paramref name="port"/>,
    /// and what to change, in one line: the socket's refusals are the user's to fix, and thrown
    /// as they are they ended `stratus serve` with a stack trace and SIGABRT (exit 134).</summary>
    internal static StratusUserException CannotListen(string host, int port, Exception e)
    {
        // Kestrel's IOException holds its AddressInUseException, which holds the socket's.
        var socket = e as SocketException;
        for (var inner = e.InnerException; socket is null && inner is not null; inner = inner.InnerException) socket = inner as SocketException;
        var reason = socket?.SocketErrorCode switch
        {
            SocketError.AddressAlreadyInUse => "another process listens there; pick another --port",
            SocketError.AccessDenied => "permission denied: a port below 1024 needs root or the CAP_NET_BIND_SERVICE capability " +
                "(systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE); pick a --port of 1024 or above, behind a proxy or a port mapping",
            SocketError.AddressNotAvailable => "no network interface of this machine has that address; " +
                "give --host one it has, 0.0.0.0 (every IPv4 address) or :: (every address)",
            _ => $"{(socket ?? e).Message.TrimEnd('.')}; check --host and --port",
        };
        var address = host.Contains(':') && !host.StartsWith('[') ? $"[{host}]" : host;
        return new StratusUserException($"cannot listen on {address}:{port}: {reason}", e);
    }

    /// <summary>The host's builder, whose configuration (the environment, an appsettings.json in
    /// the folder the server is started from) is read once. ASP.NET Core reloads that file when it
    /// changes by default, which on Linux is an inotify watch on every folder below that one, made
    /// before the server starts: from /, as systemd starts a unit without WorkingDirectory=, tens of
    /// thousands of watches and seconds of startup, for a file no one edits under a running server.</summary>
    internal static WebApplicationBuilder CreateBuilder() =>
        WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });

    static WebApplication Build(ServeOptions options, ServedModels servedModels)
    {
        var builder = CreateBuilder();
        builder.Logging.SetMinimumLevel(options.MinimumLogLevel);
        // Standard output is the access log's alone, for a shipper to read line by line as JSON.
        if (options.AccessLog == AccessLog.StandardOutput) builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        // A failed start (a port in use) is thrown to the caller, which says it in one line; the
        // host would log it first with its stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        ServerLog.Configure(builder, options.LogFormat);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.AddServerHeader = false;
            // localhost: both loopbacks, as Kestrel's own localhost binds them (127.0.0.1, and ::1
            // where the machine has IPv6: without it, ipv6.disable=1, Kestrel goes on with
            // 127.0.0.1). A port picked by the system (0) cannot be one port on both: 127.0.0.1.
            var address = options.Host is "localhost" ? null
                : IPAddress.TryParse(options.Host, out var ip) ? ip
                : throw new StratusUserException($"--host {options.Host} is not an IP address; use e.g. 127.0.0.1, localhost or 0.0.0.0");
            // Refused before binding; TrustStartupGuard checks the bound addresses again.
            if (options.Trust.InsecureNoAuth && address is not null && !IPAddress.IsLoopback(address))
                throw new StratusUserException($"--insecure-no-auth serves without API keys, so it listens on loopback only (127.0.0.1, ::1), not {options.Host}. " +
                    "Drop --host, or drop --insecure-no-auth and create a key: stratus keys create --name <n> --scopes inference");
            if (address is null && options.Port != 0) kestrel.ListenLocalhost(options.Port);
            else kestrel.Listen(address ?? IPAddress.Loopback, options.Port);
            // Host and Port alone: the host's configuration otherwise adds listeners of its own,
            // from Kestrel__Endpoints__* in the environment or an appsettings.json in the working
            // folder, on any address, that nothing printed or checked but --insecure-no-auth.
            kestrel.Configure();
        });
        builder.Services.AddSingleton(servedModels);
        builder.Services.AddSingleton<ServingMetrics>();
        // The container disposes it after the host has stopped, so the requests ended then are in it.
        if (options.AccessLog is { } accessLog) builder.Services.AddSingleton(services => AccessLog.Open(accessLog, services.GetRequiredService<ILogger<AccessLog>>(), time: options.Time));
        if (options.ShutdownGracePeriod < TimeSpan.Zero || options.ShutdownGracePeriod > ServeOptions.MaxShutdownGracePeriod)
            throw new StratusUserException($"the shutdown grace period must be 0 to {ServeOptions.MaxShutdownGracePeriod.TotalSeconds:0} seconds, got {options.ShutdownGracePeriod.TotalSeconds:0.###}");
        builder.Services.AddSingleton(_ => new ServerShutdown(options.ShutdownGracePeriod));
        builder.Services.AddSingleton<SystemdNotifications>();
        // Past the host's timeout Kestrel cuts the connections: the ended requests get time to say so first.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.ShutdownGracePeriod + ServerShutdown.EndingTime);
        // Before the host's own services, so the trust filter runs first on every generation.
        builder.Services.AddStratusTrust(options.Trust, options.Time);
        // Prometheus shows the service as target_info's service_name: "unknown_service:dotnet" otherwise.
        builder.Services.AddOpenTelemetry().ConfigureResource(resource => resource.AddService("stratus")).WithMetrics(metrics => metrics
            .AddMeter(ServingMetrics.MeterName)
            .AddPrometheusExporter());
        options.ConfigureServices?.Invoke(builder.Services);

        var app = builder.Build();
        app.Lifetime.ApplicationStopping.Register(app.Services.GetRequiredService<ServerShutdown>().Begin);
        app.Lifetime.ApplicationStopping.Register(app.Services.GetRequiredService<SystemdNotifications>().Stopping);
        // First: every part after it sees the client a listed proxy names, the access log included.
        app.UseForwardedClients(options.ForwardedAllowIps);
        // Next: every part after it names the request by the id it sets.
        app.UseRequestIds();
        // Outermost but for the id: it sees the status every error writer below sets, the key
        // check's refusals included.
        if (options.AccessLog is not null) app.UseMiddleware<AccessLogMiddleware>();
        app.UseMiddleware<ErrorMiddleware>();
        // Routing's empty 404/405 answers get OpenAI's error shape too.
        app.UseStatusCodePages(async context =>
        {
            var status = context.HttpContext.Response.StatusCode;
            var message = status switch
            {
                404 => $"Unknown request URL: {context.HttpContext.Request.Method} {context.HttpContext.Request.Path}.",
                405 => $"Method {context.HttpContext.Request.Method} is not allowed for {context.HttpContext.Request.Path}.",
                _ => $"The request failed with status {status}.",
            };
            await ErrorMiddleware.WriteAsync(context.HttpContext, new ApiException(status, message, code: status switch { 404 => "unknown_url", 405 => "method_not_allowed", _ => null }));
        });
        app.UseMiddleware<BodySizeMiddleware>(options.MaxRequestBodyBytes);
        // Keys, scopes and requests per minute: after error shaping (ErrorMiddleware shapes the
        // trust layer's errors too), before any endpoint; everything but /health needs a key.
        app.UseStratusTrust(shapeErrors: false);
        options.ConfigurePipeline?.Invoke(app);

        app.MapGroup("/v1").MapModels().MapCompletions().MapChatCompletions();
        app.MapTokenizer().MapHealth();
        app.MapServing().MapDashboard();
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapStratusTrustEndpoints();
        if (options.JobsCommand is { } jobsCommand) app.MapJobs(jobsCommand, options.JobsRoot is { } root ? new JobsRoot(root) : null, options.JobsExecutors);
        return app;
    }

    /// <summary>A curl command that chats with <paramref name="model"/> (default: the first),
    /// sending <paramref name="apiKey"/> (without one it shows "&lt;your key&gt;" to fill in, unless
    /// the server runs with --insecure-no-auth). It asks for 40 tokens, or what the model's
    /// context leaves after the prompt when that is less, so that it works as printed.</summary>
    public string CurlExample(string? apiKey = null, string? model = null)
    {
        const string content = "ROMEO:";
        var served = Models.Get(model ?? Models.All[0].Name);
        // A model whose stored chat template Stratus cannot render serves completions only.
        var chat = served.UnsupportedTemplate is null;
        int maxTokens;
        try
        {
            var prompt = chat
                ? RequestParser.Encode(served.Tokenizer, served.Template.Render([new ChatMessageText("user", content)]), "messages", served.Template.AddSpecialTokens)
                : RequestParser.Encode(served.Tokenizer, content, "prompt", addSpecialTokens: true);
            maxTokens = Math.Clamp(served.ContextLength - prompt.Length, 1, 40);
        }
        // A prompt this model cannot take: the line still shows the request, which the server
        // answers with the reason; it must not keep the server from starting.
        catch (Exception e) when (e is StratusUserException or ApiException) { maxTokens = 40; }
        var insecure = app.Services.GetRequiredService<StratusTrust>().Options.InsecureNoAuth;
        var authorization = apiKey is null && insecure ? "" : $"-H 'Authorization: Bearer {apiKey ?? "<your key>"}' ";
        var (path, input) = chat
            ? ("chat/completions", $"\"messages\": [{{\"role\": \"user\", \"content\": \"{content}\"}}]")
            : ("completions", $"\"prompt\": \"{content}\"");
        return $"curl {BaseUrl}/{path} {authorization}-H 'Content-Type: application/json' " +
            $"-d '{{\"model\": \"{served.Name}\", {input}, \"max_tokens\": {maxTokens}}}'";
    }

    /// <summary>Waits until the host is stopped (Ctrl+C or the token).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellation = default) => app.WaitForShutdownAsync(cancellation);

    public async ValueTask DisposeAsync()
    {
        // Disposing stops the server now, so the requests still running end at once.
        Shutdown.EndNow();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5))) await app.StopAsync(timeout.Token);
        await app.DisposeAsync();
        Models.Dispose();
    }

    /// <summary>A valid deployment name close to <paramref name="name"/>, for the advice on an
    /// invalid one: what the rule refuses turned into '-'.</summary>
    static string DeploymentNameLike(string name)
    {
        var like = System.Text.RegularExpressions.Regex.Replace(name, "[^A-Za-z0-9_.:-]", "-").TrimStart('_', '.', ':', '-');
        return like.Length == 0 ? "model" : like[..Math.Min(like.Length, 128)];
    }
}
