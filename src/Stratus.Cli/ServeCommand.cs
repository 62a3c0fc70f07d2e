// `stratus serve --model <run-or-checkpoint> [--model name=dir ...] [--host 127.0.0.1] [--port 8000]`:
// an OpenAI-compatible server for trained models. ServeAsync is the reusable entry point
// (e.g. for `stratus demo` to end by serving its model).
using System.CommandLine;
using Stratus.Inference;
using Stratus.Server;
using Stratus.Server.Hosting;

namespace Stratus.Cli;

static class ServeCommand
{
    public static Command Create()
    {
        var models = new Option<string[]>("--model") { Description = "run or checkpoint folder, or NAME=FOLDER; repeat to serve several (name defaults to the run folder's name)", Required = true, AllowMultipleArgumentsPerToken = false };
        var host = new Option<string>("--host") { Description = "address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port to listen on", DefaultValueFactory = _ => 8000 };
        var batch = new Option<int>("--max-batch-size") { Description = "sequences decoded together", DefaultValueFactory = _ => 64 };
        var waiting = new Option<int>("--max-waiting") { Description = "requests that may queue before the server answers 429", DefaultValueFactory = _ => 256 };
        var kvMb = new Option<int>("--kv-cache-mb") { Description = "most memory for the KV cache per model, in MiB", DefaultValueFactory = _ => 1024 };
        // Measured on 2 cores: one libtorch thread and one core left for Kestrel and its clients
        // gave higher and steadier batched throughput than two libtorch threads.
        var threads = new Option<int>("--threads") { Description = "libtorch threads (default: cores - 1, at least 1)", DefaultValueFactory = _ => Math.Max(1, Environment.ProcessorCount - 1) };
        var command = new Command("serve", "Serve trained models over an OpenAI-compatible HTTP API.") { models, host, port, batch, waiting, kvMb, threads };
        command.SetAction(async (result, cancellation) =>
        {
            var specs = result.GetValue(models)!.Select(ModelSpec.Parse).ToArray();
            var engine = new EngineOptions
            {
                MaxBatchSize = result.GetValue(batch),
                MaxWaiting = result.GetValue(waiting),
                MaxKvCacheBytes = result.GetValue(kvMb) * 1024L * 1024L,
            };
            await ServeAsync(specs, result.GetValue(host)!, result.GetValue(port), engine, result.GetValue(threads), cancellation);
            return 0;
        });
        return command;
    }

    /// <summary>Loads the models, serves them until Ctrl+C or <paramref name="cancellation"/>,
    /// and prints the base URL and a working curl line first.</summary>
    public static async Task ServeAsync(IReadOnlyList<ModelSpec> models, string host, int port, EngineOptions? engine, int? threads, CancellationToken cancellation)
    {
        if (port is < 0 or > 65535) throw new StratusUserException($"--port must be between 0 and 65535, got {port}");
        Console.WriteLine($"loading {models.Count} model(s) ...");
        StratusServer server;
        try
        {
            server = await StratusServer.StartAsync(new ServeOptions { Models = models, Host = host, Port = port, Engine = engine ?? new EngineOptions(), TorchThreads = threads }, cancellation);
        }
        catch (IOException e)
        {
            throw new StratusUserException($"cannot listen on {host}:{port}: {e.Message}; pick another --port");
        }
        await using (server)
        {
            foreach (var model in server.Models.All)
                Console.WriteLine($"serving {model.Name} ({model.CheckpointDirectory}, context {model.ContextLength}, {model.Template.Kind} chat template)");
            Console.WriteLine($"OpenAI base URL: {server.BaseUrl}   (metrics: {server.RootUrl}metrics)");
            Console.WriteLine($"try: {server.CurlExample()}");
            Console.WriteLine("Ctrl+C stops the server.");
            await server.WaitForShutdownAsync(cancellation);
        }
    }
}
