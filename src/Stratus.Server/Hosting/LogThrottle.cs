// A failure that repeats for as long as its cause lasts (a full disk under the usage records of
// every request, an access log losing lines) gets a line in the server's log at once, then at most
// one line per interval saying how many times it happened since the last, and one when it ends:
// not a line per request, which buries every other line and fills the disk the journal shares.
namespace Stratus.Server.Hosting;

public sealed class LogThrottle(TimeProvider? time = null)
{
    /// <summary>The least time between two lines of one failure.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    readonly TimeProvider time = time ?? TimeProvider.System;
    readonly Lock gate = new();
    long unnamed;
    long lastLine;
    volatile bool failing;

    /// <summary>Whether a line has named the failure and <see cref="End"/> has not been called since.</summary>
    public bool Failing => failing;

    /// <summary>Counts <paramref name="count"/> more occurrences of the failure. Returns how many
    /// the line due now names (these and those no line has named yet), or 0 when no line is due:
    /// the last came less than <see cref="Interval"/> ago, or there is nothing to name. The first
    /// occurrence, and the first after an <see cref="End"/>, is named at once.</summary>
    public long Add(long count = 1)
    {
        lock (gate)
        {
            unnamed += count;
            var now = time.GetTimestamp();
            if (unnamed == 0 || failing && time.GetElapsedTime(lastLine, now) < Interval) return 0;
            (failing, lastLine) = (true, now);
            var named = unnamed;
            unnamed = 0;
            return named;
        }
    }

    /// <summary>Ends the failure (its cause is gone, or the server stops). Returns the occurrences
    /// no line has named yet, for the line that says it ended; null when it was not failing.</summary>
    public long? End()
    {
        lock (gate)
        {
            if (!failing) return null;
            failing = false;
            var rest = unnamed;
            unnamed = 0;
            return rest;
        }
    }
}
