using System.Diagnostics;
using Stratus.Distributed;
using static TorchSharp.torch;

namespace Stratus.Tests.Distributed;

public sealed class TimedCommunicatorTests
{
    // Every way into a collective, the waits for a started all-reduce included.
    static readonly Action<TimedCommunicator, Tensor, Tensor, IPendingCollective>[] Collectives =
    [
        static (c, t, _, _) => c.AllReduce(t),
        static (c, t, _, _) => c.StartAllReduce(t),
        static (_, _, _, p) => p.Test(),
        static (_, _, _, p) => p.Wait(),
        static (c, t, o, _) => c.ReduceScatter(t, o),
        static (c, t, o, _) => c.AllGather(t, o),
        static (c, t, o, _) => c.Gather(t, o),
        static (c, t, _, _) => c.Broadcast(t),
    ];

    [Fact]
    public void Each_collective_adds_the_time_spent_inside_it_and_no_more()
    {
        using var tensor = zeros(4);
        using var output = zeros(4);
        var inner = new RecordingCommunicator();
        var timed = new TimedCommunicator(inner);
        foreach (var collective in Collectives)
        {
            var pending = timed.StartAllReduce(tensor);
            var (insideBefore, elapsedBefore) = (inner.Inside, timed.Elapsed);
            var start = Stopwatch.GetTimestamp();
            collective(timed, tensor, output, pending);
            var outside = Stopwatch.GetElapsedTime(start);
            var (inside, counted) = (inner.Inside - insideBefore, timed.Elapsed - elapsedBefore);
            // The wrapper's clock runs around the inner call and within this one.
            Assert.InRange(counted, inside, outside);
            Assert.True(inside > TimeSpan.Zero);
        }
        // One call to the inner communicator each, after the all-reduce started for the waits.
        Assert.Equal(2 * Collectives.Length, inner.Calls.Count);
    }

    [Fact]
    public void Timing_a_collective_allocates_nothing()
    {
        using var tensor = zeros(4);
        using var output = zeros(4);
        var timed = new TimedCommunicator(new RecordingCommunicator());
        var pending = timed.StartAllReduce(tensor);
        for (var round = 0; round < 2; round++)
        {
            // The first round compiles and fills caches; the second must not allocate at all.
            var before = GC.GetAllocatedBytesForCurrentThread();
            timed.AllReduce(tensor);
            timed.ReduceScatter(tensor, output);
            timed.AllGather(tensor, output);
            timed.Gather(tensor, output);
            timed.Broadcast(tensor);
            pending.Test();
            pending.Wait();
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (round == 1) Assert.Equal(0, allocated);
        }
    }
}
