// Ports for a test to hand to a listener it does not bind itself (a daemon, a server told its
// port). A port the kernel picked (a bind to port 0) and the test then released is in the
// ephemeral range, where the kernel hands ports out again to any process's port-0 bind or
// outgoing connection: on a busy machine one could take it before the listener binds it. Outside
// that range the kernel gives out none, so a port found free there stays free until a process
// asks for it by number.
using System.Net;
using System.Net.Sockets;

namespace Stratus.Server.Tests;

static class FreePorts
{
    /// <summary>The ports the kernel hands out itself (Linux's default range where /proc does not say).</summary>
    static readonly (int First, int Last) Ephemeral = File.Exists("/proc/sys/net/ipv4/ip_local_port_range")
        && File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' ', '\n'], StringSplitOptions.RemoveEmptyEntries) is [var first, var last]
        ? (int.Parse(first, System.Globalization.CultureInfo.InvariantCulture), int.Parse(last, System.Globalization.CultureInfo.InvariantCulture)) : (32768, 60999);

    /// <summary><paramref name="count"/> different ports outside the ephemeral range, each free on
    /// every address, IPv4 and IPv6 (a server on localhost listens on both loopbacks).</summary>
    public static int[] Take(int count)
    {
        const int Lowest = 10000; // above the well-known and most registered services' ports
        // Below the range and above it (61000 to 65535 by default).
        var below = Math.Max(0, Ephemeral.First - Lowest);
        var above = Math.Max(0, IPEndPoint.MaxPort - Math.Max(Ephemeral.Last, Lowest - 1));
        if (below + above == 0) throw new InvalidOperationException($"the kernel hands out every port from {Ephemeral.First} to {Ephemeral.Last} (net.ipv4.ip_local_port_range): leave it some above {Lowest} for the tests' listeners");
        List<int> ports = [];
        List<Socket> held = []; // each port held until all are found, so none is found twice
        try
        {
            for (var tries = 0; ports.Count < count; tries++)
            {
                if (tries == 1000) throw new InvalidOperationException($"no free port found outside the kernel's ephemeral ports ({Ephemeral.First} to {Ephemeral.Last}) above {Lowest}");
                var pick = Random.Shared.Next(below + above);
                var port = pick < below ? Lowest + pick : Math.Max(Ephemeral.Last, Lowest - 1) + 1 + pick - below;
                // A machine without IPv6 (ipv6.disable=1) has IPv4's addresses alone to check.
                var socket = Socket.OSSupportsIPv6
                    ? new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true }
                    : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    socket.Bind(new IPEndPoint(Socket.OSSupportsIPv6 ? IPAddress.IPv6Any : IPAddress.Any, port));
                }
                catch (SocketException)
                {
                    socket.Dispose();
                    continue;
                }
                held.Add(socket);
                ports.Add(port);
            }
            return [.. ports];
        }
        finally
        {
            foreach (var socket in held) socket.Dispose();
        }
    }

    public static int Take() => Take(1)[0];
}
