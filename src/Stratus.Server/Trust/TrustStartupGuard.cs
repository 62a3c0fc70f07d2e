// Refuses to start a server nobody can call safely: without an active API key (unless
// --insecure-no-auth), and with --insecure-no-auth on any address that is not loopback. The key
// check runs before Kestrel binds; the address check runs once the addresses are known, and the
// authentication middleware refuses non-loopback peers in that mode meanwhile.
using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Hosting;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public sealed class TrustStartupGuard(StratusTrust trust, IServer server, IHostApplicationLifetime lifetime) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => EnsureCallableAsync(trust, cancellationToken);

    /// <summary>The key check on its own, for hosts that want to refuse before starting (the
    /// host would otherwise log its own failure report around the message).</summary>
    /// <exception cref="TrustUserException">No active key, and keys are required.</exception>
    public static async Task EnsureCallableAsync(StratusTrust trust, CancellationToken cancellationToken)
    {
        if (trust.Options.InsecureNoAuth) return;
        // A key that may call the models (admin implies it): one with only the training scope
        // cannot, nor can an expired one.
        var keys = await trust.Keys.ListAsync(includeRevoked: false, cancellationToken);
        if (!keys.Any(k => k.Allows(ApiKeyScopes.Inference) && !trust.Keys.HasExpired(k))) throw new TrustUserException(NoKeyMessage(trust.DataDirectory));
    }

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        if (!trust.Options.InsecureNoAuth) return Task.CompletedTask;
        var addresses = server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var exposed = addresses.FirstOrDefault(a => !IsLoopback(a));
        if (exposed is null) return Task.CompletedTask;
        lifetime.StopApplication();
        throw new TrustUserException(
            $"--insecure-no-auth serves without API keys, so it binds loopback addresses only (127.0.0.1, ::1, localhost), but the server listens on {exposed}. " +
            "Bind a loopback address (--urls http://127.0.0.1:8000), or drop --insecure-no-auth and create a key: stratus keys create --name <n> --scopes inference");
    }

    public static string NoKeyMessage(string dataDirectory) =>
        $"No active API key with the inference scope in {dataDirectory} (expired keys do not count), so no client could call this server. Create one with " +
        $"`stratus keys create --name <n> --scopes inference --data-dir {dataDirectory}`, or pass --insecure-no-auth to serve loopback clients without keys.";

    /// <summary>Whether a server address ("http://127.0.0.1:8000", "http://[::1]:80",
    /// "http://localhost:5000") is loopback only. Wildcards (*, +, 0.0.0.0, [::]) and host names
    /// other than localhost are not.</summary>
    public static bool IsLoopback(string address)
    {
        var schemeEnd = address.IndexOf("://", StringComparison.Ordinal);
        var rest = schemeEnd < 0 ? address : address[(schemeEnd + 3)..];
        var slash = rest.IndexOf('/');
        if (slash >= 0) rest = rest[..slash];
        string host;
        if (rest.StartsWith('['))
        {
            var close = rest.IndexOf(']');
            if (close < 0) return false;
            host = rest[1..close];
        }
        else
        {
            var colon = rest.LastIndexOf(':');
            host = colon >= 0 ? rest[..colon] : rest;
        }
        if (string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
