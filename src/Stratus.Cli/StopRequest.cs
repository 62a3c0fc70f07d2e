// The signals that stop a long command cleanly (train, demo's training, database copy), as one
// cancellation token and the exit code a shell would report of the signal.
using System.Runtime.InteropServices;

namespace Stratus.Cli;

/// <summary>Ctrl+C (SIGINT), SIGTERM and, on Linux, SIGUSR1 ask a long command to stop where it
/// can stop cleanly (train: after the current step, with a last checkpoint; database copy: its
/// transaction rolled back); a second one ends the process at once. SIGTERM is what mpirun passes to the ranks on Ctrl+C (each rank has its own process group, so the
/// terminal's SIGINT reaches only mpirun) and what Slurm and container runtimes send before a
/// kill; SIGUSR1 is what mpirun forwards to every rank without ending the job, and what Slurm's
/// --signal sends ahead of a time limit.</summary>
public sealed class StopRequest : IDisposable
{
    const PosixSignal SigUsr1 = (PosixSignal)10; // Linux's number; PosixSignal names only the portable signals
    // The source is not disposed: a signal already taken (mpirun forwards one to every rank,
    // some after the job agreed to stop) runs its handler after the registrations are gone.
    readonly CancellationTokenSource source = new();
    readonly PosixSignalRegistration[] registrations;
    int signalNumber = 2; // a rank stopped because another rank was signalled reads as Ctrl+C

    public StopRequest()
    {
        PosixSignal[] signals = OperatingSystem.IsLinux() ? [PosixSignal.SIGINT, PosixSignal.SIGTERM, SigUsr1] : [PosixSignal.SIGINT, PosixSignal.SIGTERM];
        registrations = signals.Select(signal => PosixSignalRegistration.Create(signal, Stop)).ToArray();
    }

    public CancellationToken Token => source.Token;

    /// <summary>The status of a command that stopped before it was done: 128 + the signal's number
    /// (130 Ctrl+C, 143 SIGTERM, 138 SIGUSR1), as a shell reports a process a signal ended, so
    /// `train && export` and a scheduler's "completed" both see an unfinished run.</summary>
    public int ExitCode => 128 + signalNumber;

    void Stop(PosixSignalContext context)
    {
        if (source.IsCancellationRequested) return;
        context.Cancel = true;
        signalNumber = context.Signal switch { PosixSignal.SIGTERM => 15, SigUsr1 => 10, _ => 2 };
        source.Cancel();
    }

    public void Dispose()
    {
        foreach (var registration in registrations) registration.Dispose();
    }
}
