// Behind a reverse proxy every connection comes from the proxy; the client it serves is in the
// X-Forwarded-For header it adds, and the scheme the client used in X-Forwarded-Proto. `serve
// --forwarded-allow-ips` (uvicorn's and gunicorn's name) lists the proxies whose headers are
// believed, as addresses or CIDR networks; by default none, so a header a client sends itself
// changes nothing. ASP.NET Core's ForwardedHeadersMiddleware does the work: it reads
// X-Forwarded-For from the right for as long as the address that sent each entry is a listed
// proxy, so the client is the first address no listed proxy stands behind, and it puts that in the
// connection's remote address (and the scheme in the request's), where the access log's `client`,
// the --insecure-no-auth loopback check and the server's own log read it. An X-Forwarded-For left
// on the request after it names hops that no listed proxy vouches for.
using System.Net;
using Microsoft.AspNetCore.HttpOverrides;
using IPNetwork = System.Net.IPNetwork;
using Microsoft.Extensions.Logging;

namespace Stratus.Server.Hosting;

public static class ForwardedClients
{
    /// <summary>ASP.NET Core's configuration switch (ASPNETCORE_FORWARDEDHEADERS_ENABLED in the
    /// environment) that reads the headers from any peer at all.</summary>
    const string EnabledKey = "ForwardedHeaders_Enabled";

    /// <summary>A proxy's address (the network of that address alone) or a CIDR network, as
    /// --forwarded-allow-ips takes them: 10.0.0.5, 10.0.0.0/8, fd00::/8 (10.1.2.3/8 is the
    /// network 10.1.2.3 is in, 10.0.0.0/8).</summary>
    /// <exception cref="StratusUserException">Neither.</exception>
    public static IPNetwork ParseNetwork(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.Contains('/') ? IPNetwork.TryParse(trimmed, out var network) : TryParseAddress(trimmed, out network)) return network;
        throw new StratusUserException($"--forwarded-allow-ips: '{text}' is not an IP address or a CIDR network; give e.g. 10.0.0.5, 10.0.0.0/8 or fd00::/8");
    }

    /// <summary>The networks of this machine's own addresses: 127.0.0.0/8 and ::1, and the first
    /// as a dual-stack socket sees it.</summary>
    static readonly IPNetwork[] Loopback = [IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("::ffff:127.0.0.0/104")];

    /// <summary>Refuses proxies off this machine for a server that answers loopback clients alone
    /// (--insecure-no-auth). A listed proxy's X-Forwarded-For is believed, and so is that of every
    /// host in a listed network, so a host in 10.0.0.0/8 that names itself 127.0.0.1 through nginx
    /// on this machine would be a loopback client; the proxies on this machine forward the real
    /// address of anyone else.</summary>
    /// <exception cref="StratusUserException">A listed network holds an address that is not loopback.</exception>
    public static void EnsureOnThisMachine(IReadOnlyList<IPNetwork> proxies)
    {
        foreach (var proxy in proxies)
        {
            if (Loopback.Any(loopback => loopback.BaseAddress.AddressFamily == proxy.BaseAddress.AddressFamily && proxy.PrefixLength >= loopback.PrefixLength && loopback.Contains(proxy.BaseAddress)))
                continue;
            throw new StratusUserException("--insecure-no-auth answers clients on this machine alone, so --forwarded-allow-ips may list proxies on this machine alone (in 127.0.0.0/8, or ::1), " +
                $"not {proxy}: a host there could name itself 127.0.0.1 in X-Forwarded-For and be served without a key. " +
                "Drop it, or drop --insecure-no-auth and create a key: stratus keys create --name <n> --scopes inference");
        }
    }

    static bool TryParseAddress(string text, out IPNetwork network)
    {
        var parsed = IPAddress.TryParse(text, out var address);
        network = parsed ? new IPNetwork(address!, address!.GetAddressBytes().Length * 8) : default;
        return parsed;
    }

    /// <summary>Believes X-Forwarded-For and X-Forwarded-Proto from <paramref name="proxies"/>
    /// alone; first in the pipeline, so that every part after it sees the client. With no proxies
    /// the headers are read from nobody, ASPNETCORE_FORWARDEDHEADERS_ENABLED included.</summary>
    public static WebApplication UseForwardedClients(this WebApplication app, IReadOnlyList<IPNetwork> proxies)
    {
        // ASP.NET Core's switch would put a middleware of its own ahead of this one that believes
        // every peer, so that any client could name itself: the proxies are listed here or not at all.
        if (string.Equals(app.Configuration[EnabledKey], "true", StringComparison.OrdinalIgnoreCase))
        {
            app.Configuration[EnabledKey] = "false";
            app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ForwardedClients).FullName!).LogWarning(
                "ASPNETCORE_FORWARDEDHEADERS_ENABLED is ignored: it would believe X-Forwarded-For from any peer; list the proxies with --forwarded-allow-ips");
        }
        if (proxies.Count == 0) return app;
        var options = new ForwardedHeadersOptions
        {
            ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto,
            // Through every listed proxy of a chain (a load balancer, then nginx), not one hop only.
            ForwardLimit = null,
        };
        // ASP.NET Core believes loopback peers unless told otherwise: a proxy on the same machine
        // is listed like any other (127.0.0.1), so that a local client cannot name itself either.
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        foreach (var proxy in proxies) options.KnownIPNetworks.Add(proxy);
        app.UseForwardedHeaders(options);
        return app;
    }
}
