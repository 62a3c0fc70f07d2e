// Whether anyone still reads this process's standard output. .NET's console ignores EPIPE on
// Unix (a write to a pipe whose reader has exited returns as if it had written), so `stratus
// sample --max-tokens 100000 | head -c 100` would go on generating for nobody to the last token.
// poll(2) tells instead: the write end of a pipe whose reader has gone reports POLLERR on Linux
// and POLLHUP on macOS, as a socket whose peer has closed and a terminal that has hung up do.
// And the one way the list and show verbs write `--json`.
using System.Runtime.InteropServices;
using System.Text.Json;
using Stratus.Server.Trust;

namespace Stratus.Cli;

static partial class StandardOutput
{
    /// <summary>128 + SIGPIPE, the status a shell gives `yes` in `yes | head` (killed by SIGPIPE at
    /// its next write) and a Go program, which dies of SIGPIPE when a write to its standard output
    /// fails with EPIPE; both end silently. (Python ignores SIGPIPE and ends with a BrokenPipeError
    /// traceback and exit code 1, which `set -o pipefail` scripts cannot tell from a failure.)</summary>
    public const int ReaderGoneExitCode = 141;

    // The admin API's options (its types name their fields), indented for a person reading it;
    // jq reads it as well.
    static readonly JsonSerializerOptions JsonOptions = new(TrustJson.Options) { WriteIndented = true };

    /// <summary>Writes <paramref name="document"/> as one JSON document (a verb's `--json`), in
    /// the shape and field names of the HTTP API's answer with the same content.</summary>
    public static void WriteJson<T>(T document) => Console.Out.WriteLine(JsonSerializer.Serialize(document, JsonOptions));

    // A syscall for each token would cost little beside the token, but one every 20 ms costs
    // nothing: a model slower than that is polled after every token, a faster one stops within 20 ms.
    const long PollIntervalMs = 20;
    const short PollOut = 0x4, PollErr = 0x8, PollHup = 0x10; // the same on Linux and macOS
    static long nextPoll;

    /// <summary>Ends the command, with <see cref="ReaderGoneExitCode"/> (Program), once nobody reads
    /// standard output any more. Call it after each write; it polls at most every 20 ms.</summary>
    /// <exception cref="StandardOutputClosedException">The reader has gone.</exception>
    public static void ThrowIfReaderGone()
    {
        var now = Environment.TickCount64;
        if (now < nextPoll) return;
        nextPoll = now + PollIntervalMs;
        if (ReaderGone()) throw new StandardOutputClosedException();
    }

    static bool ReaderGone()
    {
        // Windows' console ignores a broken pipe too, but has no poll(2) to tell it.
        if (OperatingSystem.IsWindows()) return false;
        var descriptor = new PollDescriptor { Fd = 1, Events = PollOut };
        return poll(ref descriptor, 1, timeout: 0) == 1 && (descriptor.Revents & (PollErr | PollHup)) != 0;
    }

    [StructLayout(LayoutKind.Sequential)]
    struct PollDescriptor
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    // nfds_t is an unsigned long on Linux, an unsigned int on macOS (which reads the low half).
    [LibraryImport("libc")]
    private static partial int poll(ref PollDescriptor descriptors, nuint count, int timeout);
}

/// <summary>Nobody reads standard output any more (<see cref="StandardOutput"/>).</summary>
sealed class StandardOutputClosedException() : Exception("nobody reads standard output any more");
