// A real Kestrel server on a free loopback port serving a tiny random-weight char-level GPT,
// saved with Checkpoint.Save exactly as training would, shared by the tests of one class. It
// runs with authentication on: the fixture creates a key (inference and admin scopes) in a
// temporary data directory, and its HttpClient sends it.
using System.Net.Http.Headers;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Platform;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Server.Tests;

public sealed class TinyModelServer : IAsyncLifetime
{
    public const string ModelName = "tiny";
    public const string Corpus = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\n";

    readonly string folder = Path.Combine(Path.GetTempPath(), $"stratus-serve-test-{Guid.NewGuid():N}");

    public StratusServer Server { get; private set; } = null!;
    /// <summary>A client that sends <see cref="ApiKey"/>.</summary>
    public HttpClient Http { get; private set; } = null!;
    /// <summary>The fixture's key: inference and admin scopes, no limits.</summary>
    public string ApiKey { get; private set; } = null!;
    public string DataDir => Path.Combine(folder, "data");
    public string RunFolder => Path.Combine(folder, "tiny-run");
    public ServedModel Model => Server.Models.Get(ModelName);

    /// <summary>A two-token request for the tiny model carrying <paramref name="responseFormat"/>
    /// as raw JSON, to <paramref name="path"/> (chat or completions), streamed or not: the
    /// response's status and body.</summary>
    public async Task<(System.Net.HttpStatusCode Status, string Body)> PostWithResponseFormatAsync(string path, string responseFormat, bool stream)
    {
        var prompt = path.EndsWith("chat/completions", StringComparison.Ordinal) ? "\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]" : "\"prompt\":\"a\"";
        var body = $"{{\"model\":\"{ModelName}\",{prompt},\"max_tokens\":2,\"stream\":{(stream ? "true" : "false")},\"response_format\":{responseFormat}}}";
        using var response = await Http.PostAsync(path, new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Engine limits; a subclass can make them tight to test refusals.</summary>
    public EngineOptions Engine { get; init; } = new() { BlockSize = 8, MaxBatchSize = 32 };
    public long MaxRequestBodyBytes { get; init; } = 64 * 1024;
    public Action<IServiceCollection>? ConfigureServices { get; init; }
    public IReadOnlyList<Stratus.Safety.IContentSafetyProvider> ExtraSafetyProviders { get; init; } = [];
    public TimeSpan ShutdownGracePeriod { get; init; } = new ServeOptions().ShutdownGracePeriod;
    public IReadOnlyList<string>? JobsCommand { get; init; }
    /// <summary>serve's --jobs-root.</summary>
    public string? JobsRoot { get; init; }
    /// <summary>serve's --jobs-executor.</summary>
    public IReadOnlyList<string> JobsExecutors { get; init; } = new ServeOptions().JobsExecutors;
    /// <summary>Writes an access log to <see cref="AccessLogPath"/>.</summary>
    public bool WithAccessLog { get; init; }
    /// <summary>The server's clock (ServeOptions.Time).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
    public string AccessLogPath => Path.Combine(folder, "access.log");
    /// <summary>Proxies whose X-Forwarded-For is believed (--forwarded-allow-ips).</summary>
    public IReadOnlyList<System.Net.IPNetwork> ForwardedAllowIps { get; init; } = [];
    /// <summary>Serves without keys (--insecure-no-auth); the fixture's key is made all the same.</summary>
    public bool InsecureNoAuth { get; init; }
    public Action<Microsoft.AspNetCore.Builder.WebApplication>? ConfigurePipeline { get; init; }
    /// <summary>serve's --tool-call-parser; null: each model's template says.</summary>
    public ToolCallParser? ToolCallParser { get; init; }
    /// <summary>Writes the served checkpoint into the folder given; a fixture may serve another model.</summary>
    public Func<string, string> CreateModel { get; init; } = CreateCheckpoint;

    public static string CreateCheckpoint(string directory) => CreateCheckpoint(directory, context: 128);

    public static string CreateCheckpoint(string directory, int context)
    {
        var tokenizer = CharTokenizer.FromCorpus(Corpus);
        return SaveGpt(directory, tokenizer, context, chatTemplate: ChatTemplate.For(tokenizer).Source);
    }

    /// <summary>Saves a tiny random-weight GPT for <paramref name="tokenizer"/> (the same weights for
    /// the same shape: seed 11) as training would, with a chat template where one is given.</summary>
    public static string SaveGpt(string directory, ITokenizer tokenizer, int context, int layers = 2, string? chatTemplate = null)
    {
        torch.manual_seed(11);
        using var model = new Gpt(new ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = context, NLayer = layers, NHead = 2, NEmbd = 32, Bias = false });
        Checkpoint.Save(directory, model, tokenizer, extraFiles: chatTemplate is null ? null : new Dictionary<string, string> { [ChatTemplate.FileName] = chatTemplate });
        return directory;
    }

    /// <summary>The data directory's key service, as the CLI would open it.</summary>
    public ApiKeyService Keys => PlatformStores.Open(DataDir).KeyService();

    /// <summary>Runs SQL on the server's stratus.db behind its back (a store made to fail or vanish).</summary>
    public void Sql(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(DataDir, PlatformDatabase.FileName)};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>A client for the server without any key.</summary>
    public HttpClient AnonymousClient() => new() { BaseAddress = Server.RootUrl, Timeout = TimeSpan.FromSeconds(60) };

    public async Task InitializeAsync()
    {
        CreateModel(Path.Combine(RunFolder, "checkpoints", "best"));
        ApiKey = (await Keys.CreateAsync("tests", ApiKeyScopes.Inference | ApiKeyScopes.Admin, RateLimits.Unlimited, "tests")).Secret;
        Server = await StratusServer.StartAsync(new ServeOptions
        {
            Models = [new ModelSpec(RunFolder, ModelName), new ModelSpec(Path.Combine(RunFolder, "checkpoints", "best"))],
            Port = 0,
            Engine = Engine,
            MaxRequestBodyBytes = MaxRequestBodyBytes,
            ConfigureServices = ConfigureServices,
            ConfigurePipeline = ConfigurePipeline,
            ShutdownGracePeriod = ShutdownGracePeriod,
            Trust = new TrustOptions { DataDir = DataDir, ExtraSafetyProviders = ExtraSafetyProviders, InsecureNoAuth = InsecureNoAuth },
            AccessLog = WithAccessLog ? AccessLogPath : null,
            Time = Time,
            JobsCommand = JobsCommand,
            JobsRoot = JobsRoot,
            JobsExecutors = JobsExecutors,
            ForwardedAllowIps = ForwardedAllowIps,
            ToolCallParser = ToolCallParser,
        });
        Http = AnonymousClient();
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }
}

/// <summary>A server that takes bodies as large as `stratus serve` takes by default (1 MiB).</summary>
public sealed class FullSizeBodyServer : IAsyncLifetime
{
    readonly TinyModelServer inner = new() { MaxRequestBodyBytes = new ServeOptions().MaxRequestBodyBytes };
    public TinyModelServer Server => inner;
    public Task InitializeAsync() => inner.InitializeAsync();
    public Task DisposeAsync() => inner.DisposeAsync();
}

/// <summary>A server whose engine takes one sequence at a time and lets one wait.</summary>
public sealed class BusyModelServer : IAsyncLifetime
{
    readonly TinyModelServer inner = new() { Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 1, MaxWaiting = 1 } };
    public TinyModelServer Server => inner;
    public Task InitializeAsync() => inner.InitializeAsync();
    public Task DisposeAsync() => inner.DisposeAsync();
}

/// <summary>A char-level GPT served with a chat template of a test's own (512 positions, room for
/// a whole rendered chat).</summary>
public abstract class ChatTemplateServer(string template) : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new()
    {
        CreateModel = directory => TinyModelServer.SaveGpt(directory, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 512, chatTemplate: template),
    };

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}
