// The data-parallel choices and agreements the trainer needs: which optimizer a job gets, sums of
// losses over ranks, and one stop decision for all ranks. In a world of one every helper returns
// its input without communicating, so single-process training pays nothing for them.
using Stratus.Training;
using AdamW = Stratus.Training.AdamW;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Distributed;

public static class DataParallel
{
    /// <summary>
    /// AdamW for this job: the plain one in a world of one (ZeRO has nothing to shard there),
    /// replicated with bucketed gradient all-reduce over several ranks (zero_stage 0), or with its
    /// moments sharded over them (zero_stage 1). Parameters start as rank 0's on every rank.
    /// </summary>
    public static IOptimizer CreateAdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, ICommunicator communicator,
        int zeroStage, double beta1, double beta2, double weightDecay)
    {
        var list = parameters.ToList();
        if (communicator.WorldSize == 1)
            return new AdamW(list.Select(p => (p.Name, (Tensor)p.Parameter)), beta1, beta2, weightDecay);
        return zeroStage switch
        {
            0 => new DataParallelAdamW(list, communicator, beta1, beta2, weightDecay),
            1 => new ShardedAdamW(list, communicator, beta1, beta2, weightDecay),
            _ => throw new StratusUserException($"zero_stage must be 0 or 1, got {zeroStage}"),
        };
    }

    /// <summary>
    /// Element-wise sums of every rank's <paramref name="values"/>. They are gathered and added in
    /// rank order on each rank, so all ranks get bitwise the same sums (an MPI all-reduce does not
    /// promise that beyond two ranks) and decisions taken from them, such as saving a best
    /// checkpoint, agree everywhere.
    /// </summary>
    public static double[] SumOverRanks(this ICommunicator communicator, params double[] values)
    {
        if (communicator.WorldSize == 1)
            return values;
        using var mine = tensor(values, dtype: ScalarType.Float64);
        using var all = zeros(communicator.WorldSize * values.Length, dtype: ScalarType.Float64);
        communicator.AllGather(mine, all);
        var gathered = all.data<double>().ToArray();
        var sums = new double[values.Length];
        for (var rank = 0; rank < communicator.WorldSize; rank++)
        {
            for (var i = 0; i < values.Length; i++)
                sums[i] += gathered[rank * values.Length + i];
        }
        return sums;
    }

    /// <summary>True on every rank when <paramref name="flag"/> is true on any: ranks that stop at
    /// different steps would wait for each other in the next collective forever.</summary>
    public static bool AnyRank(this ICommunicator communicator, bool flag) =>
        communicator.WorldSize == 1 ? flag : communicator.SumOverRanks(flag ? 1 : 0)[0] > 0;
}
