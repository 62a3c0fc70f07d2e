// `stratus serve --model <run-or-checkpoint|registered-model> [--model name=dir ...] [--host 127.0.0.1] [--port 8000]
// [--data-dir <dir>] [--insecure-no-auth] [--shutdown-grace-period <seconds>] [--access-log <file>|-]
// [--forwarded-allow-ips <ip|cidr>,...] [--log-format text|json] [--moderation-url <url> [--moderation-model <name>]]`:
// an OpenAI-compatible server for trained models, behind API keys. ServeAsync is the reusable entry point and EnsureDemoKeyAsync gives a fresh
// key to call it with (for `stratus demo` to end by serving its model).
using System.CommandLine;
using Stratus.Inference;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server;
using Stratus.Server.Api;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;
using Stratus.Tokenization;

namespace Stratus.Cli;

static class ServeCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model") { Description = "run or checkpoint folder, or a registered model (NAME, NAME:VERSION or NAME@ALIAS: see `models list`; a folder of that name wins), or NAME=either; " +
            "repeat to serve several (the name defaults to the registered name, else the run folder's name)", Required = true, AllowMultipleArgumentsPerToken = false };
        var host = new Option<string>("--host") { Description = "address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port to listen on", DefaultValueFactory = _ => 8000 };
        var batch = new Option<int>("--max-batch-size") { Description = "sequences decoded together", DefaultValueFactory = _ => 64 };
        var waiting = new Option<int>("--max-waiting") { Description = "sequences (prompts times n of each request) that may queue before the server answers 429", DefaultValueFactory = _ => 256 };
        var kvMb = new Option<int>("--kv-cache-mb") { Description = "most memory for the KV cache per model, in MiB", DefaultValueFactory = _ => 1024 };
        // Measured on 2 cores: one libtorch thread and one core left for Kestrel and its clients
        // gave higher and steadier batched throughput than two libtorch threads.
        var threads = new Option<int>("--threads") { Description = "libtorch threads (default: cores - 1, at least 1)", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount - 1) };
        var dataDir = TrustCommands.DataDirOption();
        var insecure = new Option<bool>("--insecure-no-auth") { Description = "serve without API keys (loopback addresses only)" };
        var decodeWeights = new DecodeWeightsOption();
        var device = new DeviceOption();
        var noPrefixCaching = new Option<bool>("--no-prefix-caching") { Description = "compute every prompt in full instead of reusing the KV blocks of prompt prefixes seen before" };
        var maxPrefill = new Option<int>("--max-prefill-tokens") { Description = "prompt tokens computed per engine step; longer prompts are prefilled in chunks while other sequences decode (lower: shorter pauses, higher: faster prompts)", DefaultValueFactory = _ => new EngineOptions().MaxPrefillTokensPerStep };
        var gracePeriod = new Option<int>("--shutdown-grace-period")
        {
            Description = "seconds a stopping server (Ctrl+C, SIGTERM) lets running requests go on before it ends them with a 503 server_shutting_down (0: at once; a second Ctrl+C or SIGTERM ends them then)",
            HelpName = "seconds",
            DefaultValueFactory = _ => (int)ServeOptions.DefaultShutdownGracePeriod.TotalSeconds,
        };
        var accessLog = PathOptions.Option("--access-log", "append a JSON line per request (client, key, model, status, tokens, durations; never prompt or completion text) to this file, or - for standard output; reopened at each write, so logrotate needs no signal");
        accessLog.HelpName = "file|-";
        // uvicorn's and gunicorn's name; a list in one value as theirs, or the option repeated.
        var forwardedAllowIps = new Option<string[]>("--forwarded-allow-ips")
        {
            Description = "reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, as addresses or CIDR networks separated by commas (e.g. 127.0.0.1 for nginx on this machine); " +
                "the access log then names the client the proxy forwarded, and --insecure-no-auth answers it only if it is loopback too (default: none, the headers are ignored)",
            HelpName = "ip|cidr,...",
        };
        var logFormat = new Option<string>("--log-format")
        {
            Description = "the server's own log: text (.NET's console lines) or json (one object per line: timestamp, level, category, message, exception); " +
                "default: text, or what Logging__Console__FormatterName says",
        };
        logFormat.AcceptOnlyFromAmong("text", "json");
        // vLLM's name and values.
        var toolCallParser = new Option<string>("--tool-call-parser")
        {
            Description = "how the models write tool calls, for tool_choice \"auto\": hermes (<tool_call>{...}</tool_call>: Qwen2.5, Hermes) or llama3_json ({\"name\": ..., \"parameters\": ...}: Llama 3.1-3.3); " +
                "default: what each model's chat template writes, where it writes one of them (a named or \"required\" tool_choice needs no parser)",
        };
        toolCallParser.AcceptOnlyFromAmong([.. ToolCallParser.Names]);
        // The service's key is read from the environment alone: a command line is visible in ps
        // and kept in shell history.
        var moderationUrl = new Option<string>("--moderation-url")
        {
            Description = "an OpenAI-compatible moderation service (its root or base URL, e.g. https://api.openai.com/v1) that judges prompts and completions for hate, sexual, violence and self_harm " +
                $"under each model's safety policy; its API key, where it needs one, from ${OpenAIModerationOptions.ApiKeyVariable}; a call past {TrustOptions.ModerationServiceTimeout.TotalSeconds:0} s, " +
                "or a service that is down, is a 503 content_filter_unavailable (default: none, and only blocklists find those categories)",
            HelpName = "url",
        };
        var jobsRoot = new Option<string>("--jobs-root")
        {
            Description = "the folder under which training jobs submitted through /api/jobs (keys with the training scope) read their configs and datasets and write their runs; " +
                "paths outside it, or leading out of it through a link, are refused (default: none, and the API takes no jobs: `stratus jobs submit` on this machine still does)",
            HelpName = "folder",
        };
        var jobsExecutor = new Option<string[]>("--jobs-executor")
        {
            Description = "what runs the training jobs submitted through /api/jobs: local (processes on this machine) or slurm (batch jobs sbatch hands to the cluster's scheduler); " +
                "give it twice to enable both, the first for a request that names none (default: local; a request naming an executor not enabled is a 400)",
            HelpName = "executor",
            AllowMultipleArgumentsPerToken = false,
        };
        jobsExecutor.AcceptOnlyFromAmong(Stratus.Platform.Jobs.LocalJobExecutor.ExecutorName, Stratus.Platform.Jobs.SlurmJobExecutor.ExecutorName);
        var moderationModel = new Option<string>("--moderation-model") { Description = "the model --moderation-url's service is asked for (e.g. omni-moderation-latest; default: the service's own)", HelpName = "name" };
        var command = new Command("serve", "Serve trained models over an OpenAI-compatible HTTP API.")
        {
            models, host, port, batch, waiting, kvMb, threads, dataDir, insecure, decodeWeights.Option, device.Option, noPrefixCaching, maxPrefill, gracePeriod, accessLog, forwardedAllowIps, logFormat,
            toolCallParser, moderationUrl, moderationModel, jobsRoot, jobsExecutor,
        };
        command.SetAction(async (result, cancellation) =>
        {
            // Checked before the models load, in the option's name; the server checks ServeOptions alike.
            var grace = result.GetValue(gracePeriod);
            if (grace < 0 || TimeSpan.FromSeconds(grace) > ServeOptions.MaxShutdownGracePeriod)
                throw new StratusUserException($"--shutdown-grace-period must be 0 to {ServeOptions.MaxShutdownGracePeriod.TotalSeconds:0} seconds, got {grace}");
            var proxies = (result.GetValue(forwardedAllowIps) ?? []).SelectMany(value => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(ForwardedClients.ParseNetwork).ToArray();
            ServerLogFormat? format = result.GetValue(logFormat) switch { "json" => ServerLogFormat.Json, "text" => ServerLogFormat.Text, _ => null };
            var moderation = ModerationService(result.GetValue(moderationUrl), result.GetValue(moderationModel));
            var jobsFolder = result.GetValue(jobsRoot) is { } folder ? PathOptions.ExpandHome(folder) : null;
            if (jobsFolder is not null && !Directory.Exists(jobsFolder))
                throw new StratusUserException($"--jobs-root {jobsFolder} is not a folder; give the folder that jobs submitted through /api/jobs read and write beneath (create it first)");
            // NAME=FOLDER's folder with `~` expanded too: bash leaves it as typed in `--model=shk=~/runs/shk`.
            var specs = result.GetValue(models)!.Select(ModelSpec.Parse).Select(spec => spec with { Path = PathOptions.ExpandHome(spec.Path) }).ToArray();
            var engine = new EngineOptions
            {
                MaxBatchSize = result.GetValue(batch),
                MaxWaiting = result.GetValue(waiting),
                MaxKvCacheBytes = result.GetValue(kvMb) * 1024L * 1024L,
                DecodeWeights = decodeWeights.Value(result, device.Name(result)),
                PrefixCaching = !result.GetValue(noPrefixCaching),
                MaxPrefillTokensPerStep = result.GetValue(maxPrefill),
            };
            var trust = new TrustOptions { DataDir = result.GetValue(dataDir), InsecureNoAuth = result.GetValue(insecure), ModerationService = moderation };
            await ServeAsync(specs, result.GetValue(host)!, result.GetValue(port), engine, device.Open(result), result.GetValue(threads), trust, TimeSpan.FromSeconds(grace), apiKey: null, cancellation,
                result.GetValue(accessLog), proxies, format, result.GetValue(toolCallParser) is { } parserName ? ToolCallParser.Of(parserName) : null, jobsFolder,
                result.GetValue(jobsExecutor) is { Length: > 0 } executors ? [.. executors.Distinct()] : null);
            return 0;
        });
        return command;
    }

    /// <summary>--moderation-url and --moderation-model, with the key from the environment; null
    /// without a URL.</summary>
    /// <exception cref="StratusUserException">The URL is not an http(s) URL, or a model is given without one.</exception>
    static OpenAIModerationOptions? ModerationService(string? url, string? model)
    {
        if (url is null)
            return model is null ? null : throw new StratusUserException("--moderation-model names the model of a moderation service: give the service with --moderation-url too");
        try
        {
            return OpenAIModerationOptions.Parse(url, Environment.GetEnvironmentVariable(OpenAIModerationOptions.ApiKeyVariable) is { Length: > 0 } key ? key : null, model);
        }
        catch (TrustUserException e)
        {
            throw new StratusUserException($"--moderation-url: {e.Message} Give its root or base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8080", e);
        }
    }

    /// <summary>The name of the key `stratus demo` creates for itself.</summary>
    public const string DemoKeyName = "demo";

    /// <summary>Creates a fresh inference key named "demo" in the data directory (null: the
    /// default one) and returns its secret. A key's secret cannot be read back, so each demo run
    /// makes a new one, and revokes the previous demo key so they do not pile up.</summary>
    public static async Task<string> EnsureDemoKeyAsync(string? dataDir, CancellationToken cancellation)
    {
        var keys = PlatformStores.Open(StratusHome.Resolve(dataDir)).KeyService();
        foreach (var key in await keys.ListAsync(includeRevoked: false, cancellation))
            if (key.Name == DemoKeyName) await keys.RevokeAsync(key.Id, TrustCommands.Actor, cancellation);
        var created = await keys.CreateAsync(DemoKeyName, ApiKeyScopes.Inference, RateLimits.Unlimited, TrustCommands.Actor, cancellationToken: cancellation);
        return created.Secret;
    }

    /// <summary>Loads the models onto <paramref name="device"/>, serves them until Ctrl+C or <paramref name="cancellation"/>,
    /// and prints the base URL and a working curl line first (with <paramref name="apiKey"/>
    /// when given, else "&lt;your key&gt;" for the caller to fill in). A null
    /// <paramref name="shutdownGracePeriod"/> keeps <see cref="ServeOptions.ShutdownGracePeriod"/>'s default.
    /// <paramref name="accessLog"/> is <see cref="ServeOptions.AccessLog"/>: with "-" the lines
    /// printed here go to standard error, leaving standard output to the access log's JSON; so do
    /// they where the server's own log is JSON (<paramref name="logFormat"/>, or the configuration's
    /// Logging:Console:FormatterName: <see cref="ServeOptions.LogFormat"/>), leaving standard
    /// output to its lines. <paramref name="forwardedAllowIps"/> is
    /// <see cref="ServeOptions.ForwardedAllowIps"/>.</summary>
    /// <exception cref="StratusUserException">Bad arguments, the port is taken, or the trust
    /// layer refuses to start (no active key without --insecure-no-auth; --insecure-no-auth off
    /// loopback): the CLI prints the one-line reason and exits with 2.</exception>
    /// <exception cref="IOException">The data directory or its database cannot be used (it names
    /// the path); the CLI prints it in one line too.</exception>
    public static async Task ServeAsync(IReadOnlyList<ModelSpec> models, string host, int port, EngineOptions? engine, TorchSharp.torch.Device device, int? threads, TrustOptions trust,
        TimeSpan? shutdownGracePeriod, string? apiKey, CancellationToken cancellation, string? accessLog = null, IReadOnlyList<System.Net.IPNetwork>? forwardedAllowIps = null,
        ServerLogFormat? logFormat = null, ToolCallParser? toolCallParser = null, string? jobsRoot = null, IReadOnlyList<string>? jobsExecutors = null)
    {
        if (port is < 0 or > 65535) throw new StratusUserException($"--port must be between 0 and 65535, got {port}");
        var say = accessLog == AccessLog.StandardOutput || ServerLog.WritesJson(logFormat) ? Console.Error : Console.Out;
        var options = new ServeOptions
        {
            Models = models, Host = host, Port = port, Engine = engine ?? new EngineOptions(), Device = device, TorchThreads = threads, Trust = trust, JobsCommand = JobsCommand.SelfCommand(), JobsRoot = jobsRoot, JobsExecutors = jobsExecutors ?? [Stratus.Platform.Jobs.LocalJobExecutor.ExecutorName], AccessLog = accessLog,
            ForwardedAllowIps = forwardedAllowIps ?? [], LogFormat = logFormat, ToolCallParser = toolCallParser,
            // After the data directory, its keys and the address have been checked.
            Warning = line => Console.Error.WriteLine($"warning: {line}"),
            LoadingModels = root => say.WriteLine($"loading {models.Count} model(s) ... (listening on {root}: /health answers 200 and /ready 503 until they serve)"),
        };
        if (shutdownGracePeriod is { } grace) options = options with { ShutdownGracePeriod = grace };
        StratusServer server;
        try
        {
            server = await StratusServer.StartAsync(options, cancellation);
        }
        // Ctrl+C or SIGTERM while the models loaded: stopped as a serving server stops.
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            Console.Error.WriteLine("stopped before the models had loaded");
            return;
        }
        await using (server)
        {
            foreach (var model in server.Models.All)
            {
                if (model.UnsupportedTemplate is { } unsupported)
                {
                    say.WriteLine($"serving {model.Name} ({model.CheckpointDirectory}, context {model.ContextLength}, completions only)");
                    Console.Error.WriteLine(Invocation.Spell($"warning: {unsupported.Message}; {model.Name}'s chats are refused until you {UnsupportedChatTemplate.Fix}"));
                }
                else say.WriteLine($"serving {model.Name} ({model.CheckpointDirectory}, context {model.ContextLength}, {model.Template.Kind} chat template)");
            }
            // The service's host, not its whole URL (which may carry credentials) nor its key.
            if (trust.ModerationService is { } moderation)
                say.WriteLine($"content safety: openai_moderation at {moderation.BaseUrl.Authority} judges hate, sexual, violence and self_harm " +
                    $"({(moderation.ApiKey is null ? $"no API key: ${OpenAIModerationOptions.ApiKeyVariable} is not set" : $"API key from ${OpenAIModerationOptions.ApiKeyVariable}")})");
            say.WriteLine($"OpenAI base URL: {server.BaseUrl}   (metrics: {server.RootUrl}metrics)");
            // Which database the keys, audit log and registry are in: SQLite's file, or the
            // PostgreSQL database $STRATUS_DATABASE names (its host and name, never its password).
            say.WriteLine($"platform database: {PlatformDatabase.Describe(StratusHome.Resolve(trust.DataDir))}");
            // Whether a training key may start jobs here, and what runs them: --jobs-root and --jobs-executor as taken.
            say.WriteLine(jobsRoot is null
                ? "training jobs: /api/jobs lists, shows and cancels jobs but takes none (start serve with --jobs-root <folder> to take them)"
                : $"training jobs: /api/jobs takes jobs beneath {Path.GetFullPath(jobsRoot)}, run by {string.Join(" or ", options.JobsExecutors)} ({options.JobsExecutors[0]} where a request names none)");
            if (server.ListensOnEveryAddress)
                say.WriteLine($"listening on every address ({host}): from other machines use this machine's name or address instead of {server.RootUrl.Host}");
            if (trust.InsecureNoAuth) say.WriteLine("WARNING: --insecure-no-auth: serving loopback clients without API keys.");
            else if (apiKey is null) say.WriteLine($"Clients need an API key with the inference scope ({Invocation.Command} keys create --name <n> --scopes inference).");
            say.WriteLine($"try: {server.CurlExample(apiKey)}");
            say.WriteLine("Ctrl+C stops the server.");
            server.Shutdown.Draining += running => Console.Error.WriteLine(
                $"stopping: waiting up to {server.Shutdown.GracePeriod.TotalSeconds:0} s for {running} running request{(running == 1 ? "" : "s")}; Ctrl+C again to end {(running == 1 ? "it" : "them")} now");
            await server.WaitForShutdownAsync(cancellation);
        }
    }
}
