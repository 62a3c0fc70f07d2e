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
        var start = Stopwatch.GetTimestamp();
        inner.AllReduce(tensor, op);
        Elapsed += Stopwatch.GetElapsedTime(start);
    }

    public IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        var start = Stopwatch.GetTimestamp();
        var pending = inner.StartAllReduce(tensor, op);
        Elapsed += Stopwatch.GetElapsedTime(start);
        return new TimedPending(this, pending);
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        var start = Stopwatch.GetTimestamp();
        inner.ReduceScatter(input, output, op);
        Elapsed += Stopwatch.GetElapsedTime(start);
    }

    public void AllGather(Tensor input, Tensor output)
    {
        var start = Stopwatch.GetTimestamp();
        inner.AllGather(input, output);
        Elapsed += Stopwatch.GetElapsedTime(start);
    }

    public void Gather(Tensor input, Tensor? output, int root = 0)
    {
        var start = Stopwatch.GetTimestamp();
        inner.Gather(input, output, root);
        Elapsed += Stopwatch.GetElapsedTime(start);
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        var start = Stopwatch.GetTimestamp();
        inner.Broadcast(tensor, root);
        Elapsed += Stopwatch.GetElapsedTime(start);
    }

    public void Barrier()
    {
        var start = Stopwatch.GetTimestamp();
        inner.Barrier();
        Elapsed += Stopwatch.GetElapsedTime(start);
    }

    /// <summary>Leaves the inner communicator open: its creator ends it.</summary>
    public void Dispose()
    {
    }

    // Waiting for a started all-reduce is communication time too.
    private sealed class TimedPending(TimedCommunicator owner, IPendingCollective pending) : IPendingCollective
    {
        public bool Test()
        {
            var start = Stopwatch.GetTimestamp();
            var done = pending.Test();
            owner.Elapsed += Stopwatch.GetElapsedTime(start);
            return done;
        }

        public void Wait()
        {
            var start = Stopwatch.GetTimestamp();
            pending.Wait();
            owner.Elapsed += Stopwatch.GetElapsedTime(start);
        }
    }
}
