// What `stratus serve` tells systemd under a `Type=notify` unit (NOTIFY_SOCKET set; elsewhere
// nothing is sent): READY=1 once the models have loaded, not when the port opens, so that
// `systemctl start` returns, and a unit ordered After= this one starts, when the server can serve
// (/ready 200) rather than while every model request would be a 503; STOPPING=1 the moment it
// begins stopping; STATUS= lines that `systemctl status` shows. Microsoft.Extensions.Hosting.Systemd's
// own lifetime (UseSystemd) says READY=1 when the host has started, which is when the port opens
// here, so only its notifier is used.
using System.Net.Sockets;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace Stratus.Server.Hosting;

sealed class SystemdNotifications(ILogger<SystemdNotifications> logger)
{
    readonly SystemdNotifier notifier = new();

    public void Loading(int models) => Notify($"STATUS=loading {models} model(s)");

    public void Ready(IEnumerable<string> models, Uri root) => Notify($"READY=1\nSTATUS=serving {string.Join(", ", models)} at {root}");

    public void Stopping() => Notify("STOPPING=1\nSTATUS=stopping");

    void Notify(string state)
    {
        if (!notifier.IsEnabled) return;
        try
        {
            notifier.Notify(new ServiceState(state));
        }
        // A NOTIFY_SOCKET that leads nowhere (inherited from a unit by a shell it started), or that
        // no socket address can hold (past sun_path's 108 bytes: ArgumentOutOfRangeException), is
        // no reason to stop serving; under the unit itself, systemd's start timeout says it too.
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            logger.LogWarning("could not notify systemd at NOTIFY_SOCKET ({Reason})", e.Message);
        }
    }
}
