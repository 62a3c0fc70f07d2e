// A clock tests move. Advance is time passing: the wall clock and the monotonic timestamps that
// time intervals move together (FakeTimeProvider). StepWallClock sets the wall clock alone, as an
// operator or NTP stepping it does, and moves no timestamp: what times an interval by the wall
// clock sees the step, what times it by timestamps does not. FakeTimeProvider itself cannot do
// that (its timestamps are its wall clock, which never goes back). Trust.Tests links this file.
using Microsoft.Extensions.Time.Testing;

namespace Stratus.Platform.Tests;

sealed class TestClock(DateTimeOffset start) : TimeProvider
{
    readonly FakeTimeProvider passing = new(start);
    long stepTicks;

    public override DateTimeOffset GetUtcNow() => passing.GetUtcNow() + TimeSpan.FromTicks(Interlocked.Read(ref stepTicks));

    public override long TimestampFrequency => passing.TimestampFrequency;

    public override long GetTimestamp() => passing.GetTimestamp();

    /// <summary>Time passes: the wall clock and the timestamps move by <paramref name="by"/>.</summary>
    public void Advance(TimeSpan by) => passing.Advance(by);

    /// <summary>The wall clock is set <paramref name="by"/> ahead (back, where negative); no time passes.</summary>
    public void StepWallClock(TimeSpan by) => Interlocked.Add(ref stepTicks, by.Ticks);
}
