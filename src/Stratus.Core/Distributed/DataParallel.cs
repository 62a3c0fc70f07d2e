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

    /// <summary>
    /// Refuses, on every rank at once, a job whose ranks were started with different
    /// <paramref name="settings"/> (name, value, and what to do when it differs): ranks that
    /// disagree on max_iters stop at different steps and wait for each other forever, on the
    /// model's shape exchange buffers of different sizes (a corrupted heap), and on the seed or
    /// data train silently on other batches than one rank would. Every rank must call it with the
    /// same names in the same order.
    /// </summary>
    /// <exception cref="StratusUserException">A setting differs between ranks (thrown on every rank).</exception>
    public static void RequireSameOnEveryRank(this ICommunicator communicator, IReadOnlyList<(string Name, string Value, string Remedy)> settings)
    {
        if (communicator.WorldSize == 1)
            return;
        // A fixed-size digest per setting (the gather needs equal sizes), and their count first, so
        // that ranks of two different builds are told apart rather than gathering past a buffer.
        var counts = communicator.GatherFromEveryRank([settings.Count]);
        if (counts.Any(count => count != settings.Count))
            throw new StratusUserException($"the ranks run different builds of Stratus ({string.Join(", ", counts.Select((c, rank) => $"rank {rank}: {c} settings"))}); start every rank from the same build");
        var digests = communicator.GatherFromEveryRank(settings.Select(s => BitConverter.ToInt64(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(s.Value)))).ToArray());
        var differing = new List<string>();
        var remedies = new List<string>();
        for (var i = 0; i < settings.Count; i++)
        {
            var ranks = Enumerable.Range(1, communicator.WorldSize - 1).Where(rank => digests[rank * settings.Count + i] != digests[i]).ToList();
            if (ranks.Count == 0) continue;
            differing.Add($"{settings[i].Name} (rank{(ranks.Count > 1 ? "s" : "")} {string.Join(", ", ranks)} differ{(ranks.Count > 1 ? "" : "s")} from rank 0)");
            if (!remedies.Contains(settings[i].Remedy)) remedies.Add(settings[i].Remedy);
        }
        if (differing.Count > 0)
            throw new StratusUserException($"the ranks were started with different settings: {string.Join("; ", differing)}; {string.Join("; ", remedies)}");
    }

    static long[] GatherFromEveryRank(this ICommunicator communicator, long[] values)
    {
        using var mine = tensor(values, dtype: ScalarType.Int64);
        using var all = zeros(communicator.WorldSize * values.Length, dtype: ScalarType.Int64);
        communicator.AllGather(mine, all);
        return all.data<long>().ToArray();
    }

    /// <summary>True on every rank when <paramref name="flag"/> is true on any: ranks that stop at
    /// different steps would wait for each other in the next collective forever.</summary>
    public static bool AnyRank(this ICommunicator communicator, bool flag) =>
        communicator.WorldSize == 1 ? flag : communicator.SumOverRanks(flag ? 1 : 0)[0] > 0;
}
