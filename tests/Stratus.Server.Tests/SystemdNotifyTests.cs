// `stratus serve` under a systemd `Type=notify` unit: systemd hands the service a Unix datagram
// socket in NOTIFY_SOCKET, and the service says READY=1 on it once it can serve and STOPPING=1
// as it begins stopping. Here the test is systemd: it binds the socket and reads what comes.
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Stratus.Inference;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;

namespace Stratus.Server.Tests;

/// <summary>NOTIFY_SOCKET is the process's: a server another test started meanwhile would notify
/// this test's socket, so these tests run alone.</summary>
[CollectionDefinition(nameof(NotifySocketEnvironment), DisableParallelization = true)]
public sealed class NotifySocketEnvironment;

[Collection(nameof(NotifySocketEnvironment))]
public sealed class SystemdNotifyTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("stratus-notify-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>READY=1 comes once the models have loaded, not when the port opens (a unit
    /// ordered After= this one would start against a server answering every model request with
    /// a 503), and STOPPING=1 as the server begins stopping.</summary>
    [Fact]
    public async Task Ready_comes_once_the_models_have_loaded_and_stopping_as_the_server_stops()
    {
        using var systemd = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        systemd.Bind(new UnixDomainSocketEndPoint(Path.Combine(folder, "notify")));
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var checkpoint = TinyModelServer.CreateCheckpoint(Path.Combine(folder, "tiny"));
        var options = new ServeOptions
        {
            Models = [new ModelSpec(checkpoint, TinyModelServer.ModelName)],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new TrustOptions { DataDir = Path.Combine(folder, "data"), InsecureNoAuth = true },
            // Holds the load until the test has looked at what came while the port was open.
            LoadingModels = root => { listening.SetResult(root); release.Task.Wait(TimeSpan.FromMinutes(1)); },
        };
        Environment.SetEnvironmentVariable("NOTIFY_SOCKET", Path.Combine(folder, "notify"));
        Task<StratusServer> starting;
        try
        {
            starting = Task.Run(() => StratusServer.StartAsync(options));
            await listening.Task.WaitAsync(TimeSpan.FromMinutes(1));
        }
        finally
        {
            Environment.SetEnvironmentVariable("NOTIFY_SOCKET", null);
        }
        try
        {
            Assert.Equal("STATUS=loading 1 model(s)", await ReceiveAsync(systemd));
            // Listening, loading: no READY=1 yet.
            Assert.Equal(0, systemd.Available);
        }
        finally
        {
            release.SetResult();
        }
        await using var server = await starting.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal($"READY=1\nSTATUS=serving {TinyModelServer.ModelName} at {server.RootUrl}", await ReceiveAsync(systemd));

        var stopped = server.WaitForShutdownAsync();
        server.Services.GetRequiredService<IHostApplicationLifetime>().StopApplication();
        Assert.Equal("STOPPING=1\nSTATUS=stopping", await ReceiveAsync(systemd));
        await stopped.WaitAsync(TimeSpan.FromMinutes(1));
    }

    /// <summary>A NOTIFY_SOCKET no Unix socket address can hold (longer than sun_path's 108
    /// bytes) is a logged warning, as one that leads nowhere is, not a server that fails to start.</summary>
    [Fact]
    public async Task A_notify_socket_path_too_long_for_a_socket_address_does_not_stop_the_server()
    {
        var options = new ServeOptions
        {
            Models = [new ModelSpec(TinyModelServer.CreateCheckpoint(Path.Combine(folder, "tiny")), TinyModelServer.ModelName)],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new TrustOptions { DataDir = Path.Combine(folder, "data"), InsecureNoAuth = true },
        };
        Environment.SetEnvironmentVariable("NOTIFY_SOCKET", Path.Combine(folder, new string('n', 200)));
        try
        {
            await using var server = await StratusServer.StartAsync(options).WaitAsync(TimeSpan.FromMinutes(1));
            using var http = new HttpClient { BaseAddress = server.RootUrl };
            Assert.Equal("ready", await http.GetStringAsync("/ready"));
        }
        finally
        {
            Environment.SetEnvironmentVariable("NOTIFY_SOCKET", null);
        }
    }

    static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[4096];
        var length = await socket.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(TimeSpan.FromSeconds(30));
        return Encoding.UTF8.GetString(buffer, 0, length);
    }
}
