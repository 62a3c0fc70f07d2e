// Behind a reverse proxy (--forwarded-allow-ips): the client a listed proxy forwards in
// X-Forwarded-For is the request's client (the access log's `client`, --insecure-no-auth's
// loopback check) and X-Forwarded-Proto its scheme; the same headers from any other peer change
// nothing, and --insecure-no-auth refuses a request that came through a proxy it does not list.
using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

public sealed class ForwardedClientsTests
{
    static readonly IPNetwork[] ThisMachine = [IPNetwork.Parse("127.0.0.1/32")];

    [Fact]
    public void Proxies_are_addresses_or_CIDR_networks_and_anything_else_is_one_line_naming_it()
    {
        Assert.Equal(IPNetwork.Parse("10.0.0.5/32"), ForwardedClients.ParseNetwork("10.0.0.5"));
        Assert.Equal(IPNetwork.Parse("::1/128"), ForwardedClients.ParseNetwork("::1"));
        Assert.Equal(IPNetwork.Parse("10.0.0.0/8"), ForwardedClients.ParseNetwork(" 10.0.0.0/8 "));
        Assert.Equal(IPNetwork.Parse("fd00::/8"), ForwardedClients.ParseNetwork("fd00::/8"));
        // The network the address is in, as .NET reads it.
        Assert.Equal(IPNetwork.Parse("10.0.0.0/8"), ForwardedClients.ParseNetwork("10.1.2.3/8"));
        foreach (var bad in new[] { "nginx", "10.0.0.0/33", "fd00::/129", "*", "" })
            Assert.Equal($"--forwarded-allow-ips: '{bad}' is not an IP address or a CIDR network; give e.g. 10.0.0.5, 10.0.0.0/8 or fd00::/8",
                Assert.Throws<StratusUserException>(() => ForwardedClients.ParseNetwork(bad)).Message);
    }

    [Fact]
    public async Task A_listed_proxys_client_and_scheme_are_the_requests()
    {
        var schemes = new ConcurrentDictionary<string, string>();
        // nginx on this machine behind a load balancer of 203.0.113.0/24.
        await WithServerAsync(new TinyModelServer { WithAccessLog = true, ForwardedAllowIps = [.. ThisMachine, IPNetwork.Parse("203.0.113.0/24")], ConfigurePipeline = Schemes(schemes) }, async server =>
        {
            Assert.Equal(("198.51.100.1", "https"), await ClientAndSchemeAsync(server, schemes, ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"), ("X-Forwarded-Proto", "https")));
            // An address the client put first itself is not vouched for: the first one no listed proxy stands behind is the client.
            Assert.Equal(("198.51.100.1", "http"), await ClientAndSchemeAsync(server, schemes, ("X-Forwarded-For", "192.0.2.44, 198.51.100.1")));
            Assert.Equal(("127.0.0.1", "http"), await ClientAndSchemeAsync(server, schemes));
        });
    }

    /// <summary>ASP.NET Core believes a loopback peer's headers unless told otherwise: without a
    /// listed proxy, or with one the peer is not, a client could have named any address.</summary>
    [Fact]
    public async Task The_headers_from_a_peer_that_is_not_a_listed_proxy_change_nothing()
    {
        foreach (IPNetwork[] proxies in new[] { [], new[] { IPNetwork.Parse("10.0.0.0/8") } })
        {
            var schemes = new ConcurrentDictionary<string, string>();
            await WithServerAsync(new TinyModelServer { WithAccessLog = true, ForwardedAllowIps = proxies, ConfigurePipeline = Schemes(schemes) }, async server =>
                Assert.Equal(("127.0.0.1", "http"), await ClientAndSchemeAsync(server, schemes, ("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-Proto", "https"))));
        }
    }

    [Fact]
    public async Task Insecure_no_auth_behind_a_listed_proxy_answers_the_loopback_clients_it_forwards_alone()
    {
        await WithServerAsync(new TinyModelServer { InsecureNoAuth = true, ForwardedAllowIps = ThisMachine }, async server =>
        {
            Assert.Equal(HttpStatusCode.OK, await StatusWithoutKeyAsync(server));
            Assert.Equal(HttpStatusCode.OK, await StatusWithoutKeyAsync(server, "127.0.0.1"));
            Assert.Equal(HttpStatusCode.Forbidden, await StatusWithoutKeyAsync(server, "198.51.100.1"));
        });
    }

    /// <summary>A proxy on the same machine made every request a loopback one, so everyone it
    /// served was served without a key; the X-Forwarded-For it adds now has the request refused,
    /// until the proxy is listed and the client it forwards can be checked.</summary>
    [Fact]
    public async Task Insecure_no_auth_refuses_a_request_through_a_proxy_it_does_not_list()
    {
        await WithServerAsync(new TinyModelServer { InsecureNoAuth = true }, async server =>
        {
            Assert.Equal(HttpStatusCode.OK, await StatusWithoutKeyAsync(server));
            using var client = server.AnonymousClient();
            using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
            request.Headers.Add("X-Forwarded-For", "127.0.0.1");
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal("insecure_no_auth", (string?)error["code"]);
            Assert.Contains("came through a proxy that --forwarded-allow-ips does not list", (string?)error["message"]);
        });
    }

    /// <summary>With --insecure-no-auth a listed proxy off this machine (a load balancer's
    /// network) let any host in it name itself 127.0.0.1 in X-Forwarded-For, through nginx on this
    /// machine, and be served without a key: it is refused at startup, before the models load.</summary>
    [Fact]
    public async Task Insecure_no_auth_refuses_a_listed_proxy_that_is_not_on_this_machine()
    {
        foreach (var remote in new[] { "10.0.0.0/8", "0.0.0.0/0", "::/0", "::ffff:10.0.0.0/104", "198.51.100.7" })
        {
            var fixture = new TinyModelServer { InsecureNoAuth = true, ForwardedAllowIps = [.. ThisMachine, ForwardedClients.ParseNetwork(remote)] };
            var error = await Assert.ThrowsAsync<StratusUserException>(fixture.InitializeAsync);
            Directory.Delete(Path.GetDirectoryName(fixture.DataDir)!, recursive: true);
            Assert.Equal($"--insecure-no-auth answers clients on this machine alone, so --forwarded-allow-ips may list proxies on this machine alone (in 127.0.0.0/8, or ::1), " +
                $"not {ForwardedClients.ParseNetwork(remote)}: a host there could name itself 127.0.0.1 in X-Forwarded-For and be served without a key. " +
                "Drop it, or drop --insecure-no-auth and create a key: stratus keys create --name <n> --scopes inference", error.Message);
        }
        // Proxies on this machine, by any of its loopback addresses.
        await WithServerAsync(new TinyModelServer
        {
            InsecureNoAuth = true,
            ForwardedAllowIps = [.. new[] { "127.0.0.0/8", "127.0.0.2", "::1", "::ffff:127.0.0.1" }.Select(ForwardedClients.ParseNetwork)],
        }, async server =>
        {
            Assert.Equal(HttpStatusCode.OK, await StatusWithoutKeyAsync(server, "127.0.0.1"));
            Assert.Equal(HttpStatusCode.Forbidden, await StatusWithoutKeyAsync(server, "127.0.0.1, 10.1.2.3"));
        });
    }

    static async Task WithServerAsync(TinyModelServer server, Func<TinyModelServer, Task> test)
    {
        await server.InitializeAsync();
        try
        {
            await test(server);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>Notes each request's scheme, as the endpoints would see it, by its request id.</summary>
    static Action<WebApplication> Schemes(ConcurrentDictionary<string, string> schemes) => app => app.Use((context, next) =>
    {
        schemes[context.TraceIdentifier] = context.Request.Scheme;
        return next(context);
    });

    /// <summary>GET /v1/models with the fixture's key and <paramref name="headers"/>: the client
    /// its access log line names, and the scheme it had.</summary>
    static async Task<(string? Client, string Scheme)> ClientAndSchemeAsync(TinyModelServer server, ConcurrentDictionary<string, string> schemes, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        foreach (var (name, value) in headers) request.Headers.Add(name, value);
        using var response = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var requestId = response.Headers.GetValues(RequestIds.Header).Single();
        for (var waited = 0; waited < 600; waited++, await Task.Delay(50))
        {
            if (!File.Exists(server.AccessLogPath)) continue;
            foreach (var line in await File.ReadAllLinesAsync(server.AccessLogPath))
                if (line.Contains(requestId, StringComparison.Ordinal)) return ((string?)JsonNode.Parse(line)!["client"], schemes[requestId]);
        }
        throw new Xunit.Sdk.XunitException($"no access log line for request {requestId}");
    }

    static async Task<HttpStatusCode> StatusWithoutKeyAsync(TinyModelServer server, string? forwardedFor = null)
    {
        using var client = server.AnonymousClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models");
        if (forwardedFor is not null) request.Headers.Add("X-Forwarded-For", forwardedFor);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }
}
