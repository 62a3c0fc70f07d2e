// Counts the time this process spends inside collectives (sending, receiving and waiting for
// slower ranks), so that training can report which share of a step is communication. It wraps a
// communicator that someone else owns and ends: disposing the wrapper leaves it open.
using System.Diagnostics;
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class TimedCommunicator(ICommunicator inner) : ICommunicator
{
    /// <summary>Total time spent in collectives so far.</summary>
    public TimeSpan Elapsed { get; private set; }

    public int Rank => inner.Rank;

    public int WorldSize => inner.WorldSize;

    public bool IsMain => inner.IsMain;

    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        using (Measure()) inner.AllReduce(tensor, op);
    }

    public IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        IPendingCollective pending;
        using (Measure()) pending = inner.StartAllReduce(tensor, op);
        return new TimedPending(this, pending);
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        using (Measure()) inner.ReduceScatter(input, output, op);
    }

    public void AllGather(Tensor input, Tensor output)
    {
        using (Measure()) inner.AllGather(input, output);
    }

    public void Gather(Tensor input, Tensor? output, int root = 0)
    {
        using (Measure()) inner.Gather(input, output, root);
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        using (Measure()) inner.Broadcast(tensor, root);
    }

    /// <summary>Leaves the inner communicator open: its creator ends it.</summary>
    public void Dispose()
    {
    }

    /// <summary>Adds the time until it is disposed to <see cref="Elapsed"/>. A struct, and the
    /// calls it times stay plain calls (no lambda capturing their arguments), so timing a
    /// collective allocates nothing.</summary>
    Measurement Measure() => new(this);

    readonly struct Measurement(TimedCommunicator owner) : IDisposable
    {
        readonly long start = Stopwatch.GetTimestamp();

        public void Dispose() => owner.Elapsed += Stopwatch.GetElapsedTime(start);
    }

    // Waiting for a started all-reduce is communication time too.
    private sealed class TimedPending(TimedCommunicator owner, IPendingCollective pending) : IPendingCollective
    {
        public bool Test()
        {
            using (owner.Measure()) return pending.Test();
        }

        public void Wait()
        {
            using (owner.Measure()) pending.Wait();
        }
    }
}
