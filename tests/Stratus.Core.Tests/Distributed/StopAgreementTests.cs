// The agreement on a stop within a training step: asked about once a second of micro-batches
// under MPI, not before each (each agreement makes every rank wait for the slowest), and at each
// micro-batch in a world of one, where it costs nothing.
using Stratus.Distributed;
using static TorchSharp.torch;

namespace Stratus.Tests.Distributed;

public sealed class StopAgreementTests
{
    /// <summary>Rank 0 of two ranks that give the same values: what it gathers is its own, twice.</summary>
    sealed class TwinRanks : ICommunicator
    {
        public int Agreements { get; private set; }
        public int Rank => 0;
        public int WorldSize => 2;
        public bool IsMain => true;

        public void AllGather(Tensor input, Tensor output)
        {
            Agreements++;
            output.copy_(cat([input, input]));
        }

        public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();
        public IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();
        public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();
        public void Gather(Tensor input, Tensor? output, int root = 0) => throw new NotSupportedException();
        public void Broadcast(Tensor tensor, int root = 0) => throw new NotSupportedException();
        public void Dispose()
        {
        }
    }

    [Fact]
    public void Ranks_agree_on_a_stop_about_once_a_second_of_micro_batches_and_one_rank_at_each()
    {
        var ranks = new TwinRanks();
        var agreement = new StopAgreement(ranks, everySeconds: 1);
        // Asks (every rank at once) after micro-batch n, n counted from 1, where it is among these.
        List<int> Run(int from, int to, TimeSpan each, bool flag)
        {
            var asked = new List<int>();
            for (var micro = from; micro <= to; micro++)
            {
                agreement.Ran(each);
                var before = ranks.Agreements;
                var agreed = agreement.Agreed(flag);
                if (ranks.Agreements > before) asked.Add(micro);
                Assert.Equal(flag && ranks.Agreements > before, agreed);
            }
            return asked;
        }
        // 50 ms micro-batches: asked after the first (the pace is not known yet), then every 20;
        // a stop asked for meanwhile is agreed at the next agreement.
        Assert.Equal([1, 21, 41, 61, 81], Run(1, 90, TimeSpan.FromMilliseconds(50), flag: false));
        Assert.Equal([101], Run(91, 101, TimeSpan.FromMilliseconds(50), flag: true));
        // Micro-batches of two seconds: once that is known (at the next agreement), asked after each.
        Assert.Equal([121, 122, 123], Run(102, 123, TimeSpan.FromSeconds(2), flag: false));
        Assert.Equal(5 + 1 + 3, ranks.Agreements);

        var alone = new StopAgreement(new SingleProcessCommunicator());
        Assert.False(alone.Agreed(false));
        Assert.True(alone.Agreed(true));
    }
}
