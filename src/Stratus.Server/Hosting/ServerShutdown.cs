// What a stopping server (SIGTERM, Ctrl+C, StratusServer.DisposeAsync) does with the requests
// still generating: they go on for a grace period, in which most finish, and then end with a 503
// `server_shutting_down` that the client can read (a stream with an error event and [DONE]),
// before the host stops waiting for them and Kestrel cuts their connections mid-answer.
namespace Stratus.Server.Hosting;

public sealed class ServerShutdown(TimeSpan gracePeriod) : IDisposable
{
    /// <summary>How long the host waits, past the grace period, for the ended requests to write
    /// their ends.</summary>
    public static readonly TimeSpan EndingTime = TimeSpan.FromSeconds(5);

    readonly CancellationTokenSource ending = new();

    public TimeSpan GracePeriod { get; } = gracePeriod;

    /// <summary>Cancelled when the requests still running are to end: generations link to it.</summary>
    public CancellationToken Ending => ending.Token;

    /// <summary>Whether a cancellation a request met was the server's, not its client's.</summary>
    public bool HasEnded => ending.IsCancellationRequested;

    /// <summary>The server stops taking requests: those running end after the grace period.</summary>
    public void Begin() => ending.CancelAfter(GracePeriod);

    /// <summary>Those running end now.</summary>
    public void EndNow() => ending.Cancel();

    public void Dispose() => ending.Dispose();
}
