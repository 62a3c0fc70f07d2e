// What a stopping server (SIGTERM, Ctrl+C, StratusServer.DisposeAsync) does with the requests
// still generating: they go on for a grace period, in which most finish, and then end with a 503
// `server_shutting_down` that the client can read (a stream with an error event and [DONE]),
// before the host stops waiting for them and Kestrel cuts their connections mid-answer. A second
// SIGINT or SIGTERM in the grace period ends them at once, as uvicorn and docker do.
using System.Runtime.InteropServices;

namespace Stratus.Server.Hosting;

public sealed class ServerShutdown(TimeSpan gracePeriod) : IDisposable
{
    /// <summary>How long the host waits, past the grace period, for the ended requests to write
    /// their ends.</summary>
    public static readonly TimeSpan EndingTime = TimeSpan.FromSeconds(5);

    readonly CancellationTokenSource ending = new();
    int running;
    volatile bool begun;
    PosixSignalRegistration[] secondSignals = [];

    public TimeSpan GracePeriod { get; } = gracePeriod;

    /// <summary>Cancelled when the requests still running are to end: generations link to it.</summary>
    public CancellationToken Ending => ending.Token;

    /// <summary>Whether a cancellation a request met was the server's, not its client's.</summary>
    public bool HasEnded => ending.IsCancellationRequested;

    /// <summary>Whether the server has begun stopping: from then on /ready answers 503 `draining`,
    /// so that a load balancer whose probe got through sends no more.</summary>
    public bool HasBegun => begun;

    /// <summary>Requests starting or generating now (GenerationRun counts itself in and out).</summary>
    public int RunningRequests => Volatile.Read(ref running);

    /// <summary>Raised by <see cref="Begin"/> with the count of running requests when the grace
    /// period lets some go on, so that whoever started the server can say why it has not stopped.</summary>
    public event Action<int>? Draining;

    internal void RequestStarted() => Interlocked.Increment(ref running);

    internal void RequestEnded() => Interlocked.Decrement(ref running);

    /// <summary>The server stops taking requests: those running end after the grace period, or
    /// at a second SIGINT or SIGTERM.</summary>
    public void Begin()
    {
        begun = true;
        var draining = GracePeriod > TimeSpan.Zero && !HasEnded;
        // Before the subscribers: one that throws must not leave the requests running past the grace period.
        ending.CancelAfter(GracePeriod);
        if (!draining) return;
        // A signal stops the host through .NET's console lifetime, which swallows the signals
        // after it: without these the process would look hung for the grace period.
        secondSignals = [PosixSignalRegistration.Create(PosixSignal.SIGINT, EndOnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, EndOnSignal)];
        if (RunningRequests is > 0 and var count) Draining?.Invoke(count);
    }

    /// <summary>Those running end now.</summary>
    public void EndNow() => ending.Cancel();

    internal void EndOnSignal(PosixSignalContext signal)
    {
        try
        {
            EndNow();
            // The requests end readably and the host then stops by itself, exiting 0: not the signal's default.
            signal.Cancel = true;
        }
        catch (ObjectDisposedException)
        {
            // A signal taken as the server was disposed: nothing is left running, and the signal
            // keeps its default (Ctrl+C ends the process) rather than being swallowed.
        }
    }

    public void Dispose()
    {
        foreach (var registration in secondSignals) registration.Dispose();
        ending.Dispose();
    }
}
