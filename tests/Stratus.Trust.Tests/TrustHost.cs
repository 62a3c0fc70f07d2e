// A real Kestrel server on a loopback port with the trust layer wired in exactly as the Stratus
// server wires it (AddStratusTrust, UseStratusTrust, MapStratusTrustEndpoints) and a fake
// OpenAI-like endpoint set in place of the inference engine; plus a throwaway data directory
// with an admin key and an inference key created before the server starts. A test that depends on
// the date or on time passing gives the host a clock of its own (FakeTimeProvider).
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Server.Trust;

namespace Stratus.Trust.Tests;

sealed class TrustHost : IAsyncDisposable
{
    public const string Model = "fake";

    TrustHost(string dataDir, WebApplication app, Uri baseAddress, TimeProvider? time)
    {
        DataDir = dataDir;
        App = app;
        BaseAddress = baseAddress;
        Time = time;
        Stores = PlatformStores.Open(dataDir, time);
        Client = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public string DataDir { get; }
    public WebApplication App { get; }
    public Uri BaseAddress { get; }
    /// <summary>The clock the server and Stores run on; null: the system's.</summary>
    public TimeProvider? Time { get; }
    public HttpClient Client { get; }
    /// <summary>The same database, opened separately, as another process (the CLI) would.</summary>
    public PlatformStores Stores { get; }
    public string AdminKey { get; private set; } = "";
    public string InferenceKey { get; private set; } = "";
    public FakeModel Fake => App.Services.GetRequiredService<FakeModel>();
    public StratusTrust Trust => App.Services.GetRequiredService<StratusTrust>();

    public static string NewDataDir() => Path.Combine(Path.GetTempPath(), "stratus-trust-test-" + Guid.NewGuid().ToString("N"));

    /// <summary>Starts a server; <paramref name="createKeys"/> false leaves the store without keys.</summary>
    public static async Task<TrustHost> StartAsync(bool createKeys = true, bool insecureNoAuth = false, string url = "http://127.0.0.1:0", string? dataDir = null,
        TimeProvider? time = null)
    {
        dataDir ??= NewDataDir();
        string admin = "", inference = "";
        if (createKeys)
        {
            var keys = PlatformStores.Open(dataDir, time).KeyService(time);
            admin = (await keys.CreateAsync("test-admin", ApiKeyScopes.Admin, RateLimits.Unlimited, "test")).Secret;
            inference = (await keys.CreateAsync("test-inference", ApiKeyScopes.Inference, RateLimits.Unlimited, "test")).Secret;
        }
        var app = Build(dataDir, insecureNoAuth, url, time);
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            Cleanup(dataDir);
            throw;
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var host = new TrustHost(dataDir, app, new Uri(address.Replace("0.0.0.0", "127.0.0.1").Replace("[::]", "127.0.0.1")), time)
        {
            AdminKey = admin,
            InferenceKey = inference,
        };
        await host.Trust.RecordModelDeployedAsync(Model, "/models/fake");
        return host;
    }

    /// <summary>Builds the app without starting it.</summary>
    public static WebApplication Build(string dataDir, bool insecureNoAuth, string url, TimeProvider? time = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        builder.Services.AddSingleton<FakeModel>();
        builder.Services.AddStratusTrust(new TrustOptions { DataDir = dataDir, InsecureNoAuth = insecureNoAuth }, time);
        var app = builder.Build();
        app.UseStratusTrust();
        app.MapStratusTrustEndpoints();
        app.MapFakeOpenAI();
        return app;
    }

    public HttpRequestMessage Request(HttpMethod method, string path, string? key, object? json = null)
    {
        var request = new HttpRequestMessage(method, path);
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (json is not null) request.Content = JsonContent.Create(json);
        return request;
    }

    public Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? key, object? json = null) =>
        Client.SendAsync(Request(method, path, key, json));

    /// <summary>A chat completion request body.</summary>
    public static object Chat(string content, int maxTokens = 8, bool stream = false, string model = Model) => new
    {
        model,
        messages = new[] { new { role = "user", content } },
        max_tokens = maxTokens,
        stream,
    };

    public async Task<string> CreateKeyAsync(string name, ApiKeyScopes scopes, RateLimits limits) =>
        (await Stores.KeyService(Time).CreateAsync(name, scopes, limits, "test")).Secret;

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        Cleanup(DataDir);
    }

    public static void Cleanup(string dataDir)
    {
        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(dataDir, recursive: true);
        }
        catch (IOException)
        {
            // A file still open elsewhere; the temp folder is cleaned up by the OS eventually.
        }
    }
}
