// A world of one that notes what is asked of it: each collective's name and element count, and
// the time spent inside its calls. Each call lasts at least one tick of TimeSpan, so a wrapper
// that failed to time one would show; values are left as they are, as one rank's world leaves
// them.
using System.Diagnostics;
using Stratus.Distributed;
using static TorchSharp.torch;

namespace Stratus.Tests.Distributed;

internal sealed class RecordingCommunicator : ICommunicator
{
    // Room reserved so that noting a call allocates nothing (TimedCommunicatorTests counts bytes).
    public List<(string Operation, long Elements)> Calls { get; } = new(capacity: 64);

    /// <summary>The time spent inside this communicator's calls and its pending operations'.</summary>
    public TimeSpan Inside { get; private set; }

    public int Rank => 0;

    public int WorldSize => 1;

    public bool IsMain => true;

    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => Record(nameof(AllReduce), tensor.numel());

    public IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        Record(nameof(StartAllReduce), tensor.numel());
        return new Pending(this);
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => Record(nameof(ReduceScatter), input.numel());

    public void AllGather(Tensor input, Tensor output) => Record(nameof(AllGather), output.numel());

    public void Gather(Tensor input, Tensor? output, int root = 0) => Record(nameof(Gather), input.numel());

    public void Broadcast(Tensor tensor, int root = 0) => Record(nameof(Broadcast), tensor.numel());

    public void Dispose()
    {
    }

    void Record(string operation, long elements)
    {
        var start = Stopwatch.GetTimestamp();
        Calls.Add((operation, elements));
        while (Stopwatch.GetElapsedTime(start) == TimeSpan.Zero)
        {
        }
        Inside += Stopwatch.GetElapsedTime(start);
    }

    sealed class Pending(RecordingCommunicator owner) : IPendingCollective
    {
        public bool Test()
        {
            owner.Record(nameof(Test), 0);
            return true;
        }

        public void Wait() => owner.Record(nameof(Wait), 0);
    }
}
