// `stratus demo`: the README's main job. Finds tiny Shakespeare (--corpus, $STRATUS_DATA_DIR,
// the user's cache, else one download checked against its sha256), prepares it char-level,
// trains configs/shakespeare-char-cpu.json, prints samples, then serves the model over the
// OpenAI-compatible API with a fresh API key and prints a working curl line.
using System.CommandLine;
using System.Security.Cryptography;
using Stratus.Data;
using Stratus.Inference;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;
using Stratus.Training;

namespace Stratus.Cli;

static class DemoCommand
{
    const string CorpusName = "tinyshakespeare.txt";
    const string CorpusUrl = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
    const string CorpusSha256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";

    public static Command Create()
    {
        var corpus = PathOptions.Option("--corpus", $"path to {CorpusName} (else $STRATUS_DATA_DIR/{CorpusName}, else the cache, else downloaded once)");
        var output = PathOptions.Option("--out", "run folder");
        output.DefaultValueFactory = _ => Path.Combine("runs", "shakespeare-char");
        var port = new Option<int>("--port") { Description = "port to serve the trained model on", DefaultValueFactory = _ => 8000 };
        var noServe = new Option<bool>("--no-serve") { Description = "stop after the samples instead of serving the model" };
        var dataDir = TrustCommands.DataDirOption();
        // As sample's and serve's, so the demo's samples are the ones `stratus sample` prints.
        var decodeWeights = new DecodeWeightsOption();
        var command = new Command("demo", "Train a small GPT on tiny Shakespeare, sample from it, then serve it.") { corpus, output, port, noServe, dataDir, decodeWeights.Option };
        var overrides = new ConfigOptions(command);
        command.SetAction(async (result, cancellation) =>
        {
            var run = result.GetValue(output)!;
            RequireDemoRun(run);
            var serve = !result.GetValue(noServe);
            // What would stop the serving at the end is checked before minutes of training.
            if (serve) RequireServable(run, result.GetValue(port));
            var text = await LocateCorpus(result.GetValue(corpus), cancellation);
            var data = Path.Combine(run, "data");
            // The demo's own folder, prepared afresh as its run is trained afresh.
            var dataset = DatasetPreparer.Prepare(text, data, "char", overwrite: true);
            Console.WriteLine($"data: {text} -> {data} ({dataset.TrainTokens:N0} train, {dataset.ValTokens:N0} val tokens, vocab {dataset.Tokenizer.VocabSize})");

            var configPath = ReadyConfigs.Find("shakespeare-char-cpu.json");
            var config = TrainConfig.Load(configPath, overrides.Overrides(result));
            var weights = decodeWeights.Value(result, config.Device);
            var checkpoints = Path.Combine(run, "checkpoints");
            if (Directory.Exists(checkpoints)) Directory.Delete(checkpoints, recursive: true);
            using (var stop = new StopRequest())
            using (var trainer = Trainer.Start(config, data, run))
            {
                TrainCommand.Run(trainer, stop.Token);
                // Stopped by the user: the demo ends with the training.
                if (trainer.StoppedEarly) return stop.ExitCode;
            }

            // Sampled and served where it trained.
            var device = ComputeDevice.Open(config.Device);
            var checkpoint = Checkpoint.Open(Checkpoint.Resolve(run));
            using (var model = checkpoint.CreateModel(device))
            {
                model.DecodeWeights = weights;
                Console.WriteLine($"\nsamples from {checkpoint.Directory}:\n");
                var generator = new TextGenerator(model, checkpoint.Tokenizer);
                SampleCommand.Stream(generator, generator.DefaultPrompt, 300, new SamplingOptions { Temperature = 0.8, TopK = 200, Seed = 1337 }, 2);
                Console.WriteLine($"\nmore: {Invocation.Command} sample --model {run} --prompt \"ROMEO:\" --max-tokens 300 --seed 7");
                Console.WriteLine($"      {Invocation.Command} eval --model {run} --data {data}   (the loss over the whole val split)");
            }
            if (!serve) return 0;

            var key = await ServeCommand.EnsureDemoKeyAsync(result.GetValue(dataDir), cancellation);
            var store = result.GetValue(dataDir) is { } dir ? $" --data-dir {dir}" : "";
            Console.WriteLine($"\nAPI key for this demo (inference scope; `{Invocation.Command} keys list{store}` shows it, `{Invocation.Command} keys revoke demo{store}` ends it):");
            Console.WriteLine(key);
            await ServeCommand.ServeAsync([new ModelSpec(run)], "127.0.0.1", result.GetValue(port), new EngineOptions { DecodeWeights = weights }, device, threads: null,
                new TrustOptions { DataDir = result.GetValue(dataDir) }, shutdownGracePeriod: null, key, cancellation);
            return 0;
        });
        return command;
    }

    /// <summary>The demo trains its run again from scratch, so --out must be a new folder or an
    /// earlier demo's (its run.json names the demo's own dataset), never another model.</summary>
    static void RequireDemoRun(string run)
    {
        if (!Checkpoint.Exists(run)) return;
        string? data;
        try { data = Trainer.ReadRunFile(run).Dataset; }
        catch (StratusUserException) { data = null; } // no run.json (an imported model), or a damaged one
        if (data != Path.GetFullPath(Path.Combine(run, "data")))
            throw new StratusUserException($"--out {run} holds a model the demo did not train, and the demo would replace it; choose another --out");
    }

    /// <summary>The run folder's name becomes the served model's, and the port must be free.</summary>
    static void RequireServable(string run, int port)
    {
        var name = Path.GetFileName(Path.GetFullPath(run).TrimEnd(Path.DirectorySeparatorChar));
        try { Stratus.Safety.SafetyPolicy.ValidateDeploymentName(name); }
        catch (Stratus.Safety.TrustUserException)
        {
            throw new StratusUserException($"--out {run}: its folder name '{name}' names the served model and must be 1-128 letters, digits, '_', '.', ':' or '-'; choose another --out, or pass --no-serve");
        }
        if (port == 0) return;
        try
        {
            var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
            probe.Start();
            probe.Stop();
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new StratusUserException($"port {port} is not free ({e.Message}); pick another --port, or pass --no-serve");
        }
    }

    static async Task<string> LocateCorpus(string? given, CancellationToken cancellation)
    {
        if (given is not null)
        {
            if (!File.Exists(given)) throw new StratusUserException($"--corpus {given} does not exist");
            return given;
        }
        if (Environment.GetEnvironmentVariable("STRATUS_DATA_DIR") is { Length: > 0 } dataDir && File.Exists(Path.Combine(dataDir, CorpusName)))
            return Path.Combine(dataDir, CorpusName);
        var cacheRoot = Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        var cached = Path.Combine(cacheRoot, "stratus", CorpusName);
        if (File.Exists(cached) && Sha256(await File.ReadAllBytesAsync(cached, cancellation)) == CorpusSha256) return cached;

        Console.WriteLine($"downloading {CorpusUrl} ...");
        byte[] bytes;
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            bytes = await http.GetByteArrayAsync(CorpusUrl, cancellation);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new StratusUserException($"could not download tiny Shakespeare ({e.Message}). Offline, supply a copy: " +
                $"`stratus demo --corpus <path-to-{CorpusName}>`, or put it at $STRATUS_DATA_DIR/{CorpusName} or {cached} (sha256 {CorpusSha256})");
        }
        if (Sha256(bytes) != CorpusSha256)
            throw new StratusUserException($"the downloaded corpus has sha256 {Sha256(bytes)}, expected {CorpusSha256}; supply a good copy with --corpus");
        Directory.CreateDirectory(Path.GetDirectoryName(cached)!);
        AtomicFile.Write(cached, s => s.Write(bytes));
        return cached;
    }

    static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));
}
