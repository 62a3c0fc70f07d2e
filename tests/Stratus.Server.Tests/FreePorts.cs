// Ports for a test to hand to a listener it does not bind itself (a daemon, a server told its
// port). A port the kernel picked (a bind to port 0) and the test then released is in the
// ephemeral range, where the kernel hands ports out again to any process's port-0 bind or
// outgoing connection: on a busy machine one could take it before the listener binds it. Below
// that range the kernel gives out none, so a port found free there stays free until a process
// asks for it by number.
using System.Net;
using System.Net.Sockets;

namespace Stratus.Server.Tests;

static class FreePorts
{
    /// <summary>Where the kernel's ephemeral ports begin (Linux's default where /proc does not say).</summary>
    static readonly int EphemeralStart = File.Exists("/proc/sys/net/ipv4/ip_local_port_range")
        && int.TryParse(File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[0], out var start)
        ? start : 32768;

    /// <summary><paramref name="count"/> different ports below the ephemeral range, each free on
    /// every address, IPv4 and IPv6 (a server on localhost listens on both loopbacks).</summary>
    public static int[] Take(int count)
    {
        const int Lowest = 10000; // above the well-known and most registered services' ports
        List<int> ports = [];
        List<Socket> held = []; // each port held until all are found, so none is found twice
        try
        {
            for (var tries = 0; ports.Count < count; tries++)
            {
                if (tries == 1000) throw new InvalidOperationException($"no free port found between {Lowest} and {EphemeralStart}");
                var port = Random.Shared.Next(Lowest, EphemeralStart);
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
