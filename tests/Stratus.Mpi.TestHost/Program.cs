// A program that runs as every rank of an MPI job and checks the distributed building blocks
// against results each rank can compute on its own. Exit code 0 means every check passed on
// this rank. Modes:
//   collectives   all-reduce (sync and async), reduce-scatter, all-gather, gather, broadcast
//   training      GradientBuckets and ParameterSharding on a small model versus a local reference
//   hang <dir>    write rank<r>.pid into <dir> and block in MPI, for the rank-death test
//   bench [MB]    all-reduce bandwidth (default 40 MB of float32)
using System.Diagnostics;
using Stratus;
using Stratus.Distributed;
using TorchSharp;
using static TorchSharp.torch;

var mode = args.Length > 0 ? args[0] : "collectives";
using var communicator = Communicator.Create();
if (communicator is not MpiCommunicator mpi)
    throw new InvalidOperationException("Not started as an MPI rank (run under mpirun).");
torch.set_num_threads(1);
switch (mode)
{
    case "collectives":
        Checks.Collectives(mpi);
        break;
    case "training":
        Checks.Training(mpi);
        break;
    case "hang":
        File.WriteAllText(Path.Combine(args[1], $"rank{mpi.Rank}.pid"), Environment.ProcessId.ToString());
        // Rank 1 never arrives, so rank 0 waits in MPI until the launcher ends it.
        if (mpi.Rank == 1)
            Thread.Sleep(Timeout.Infinite);
        using (var arrived = ones(1))
            mpi.AllReduce(arrived);
        break;
    case "bench":
        Checks.Bench(mpi, args.Length > 1 ? int.Parse(args[1]) : 40);
        break;
    default:
        throw new StratusUserException($"Unknown mode '{mode}'.");
}
Console.WriteLine($"rank {mpi.Rank}/{mpi.WorldSize} {mode} ok");

internal static class Checks
{
    public static void Collectives(MpiCommunicator mpi)
    {
        int rank = mpi.Rank, size = mpi.WorldSize;
        var sumOfRanks = size * (size - 1) / 2.0;

        using var f32 = full(5, rank + 1.0f);
        mpi.AllReduce(f32);
        Expect(f32, full(5, size * (size + 1) / 2.0f), "AllReduce sum float32");

        using var f64 = arange(6, dtype: ScalarType.Float64) * (rank + 1);
        mpi.AllReduce(f64, ReduceOp.Average);
        Expect(f64, arange(6, dtype: ScalarType.Float64) * ((size + 1) / 2.0), "AllReduce average float64");

        using var i64 = full(3, (long)rank * 1_000_000_000_000L, dtype: ScalarType.Int64);
        mpi.AllReduce(i64, ReduceOp.Max);
        Expect(i64, full(3, (size - 1) * 1_000_000_000_000L, dtype: ScalarType.Int64), "AllReduce max int64");

        using var i32 = full(4, rank, dtype: ScalarType.Int32);
        mpi.AllReduce(i32);
        Expect(i32, full(4, (int)sumOfRanks, dtype: ScalarType.Int32), "AllReduce sum int32");

        // A narrowed view: the collective must use the view's offset, not the storage start.
        using var backing = zeros(10);
        using (var middle = backing.narrow(0, 3, 4))
        {
            middle.fill_(rank + 1);
            mpi.AllReduce(middle);
        }
        using var expectedBacking = zeros(10);
        expectedBacking.narrow(0, 3, 4).fill_(size * (size + 1) / 2.0f);
        Expect(backing, expectedBacking, "AllReduce on a view");

        using var big = full(1_000_003, rank + 1.0f);
        var pending = mpi.StartAllReduce(big, ReduceOp.Average);
        pending.Wait();
        Expect(big, full(1_000_003, (size + 1) / 2.0f), "StartAllReduce average");
        if (!pending.Test())
            throw new InvalidOperationException("StartAllReduce: Test() is false after Wait().");

        // Input chunk c on rank r holds 100*r + c; the sum of chunk `rank` is 100*sumOfRanks + rank.
        using var scatterIn = (arange(size, dtype: ScalarType.Float32) + 100 * rank).repeat_interleave(3);
        using var scatterOut = zeros(3);
        mpi.ReduceScatter(scatterIn, scatterOut);
        Expect(scatterOut, full(3, (float)(100 * sumOfRanks + size * rank)), "ReduceScatter sum");

        using var gatherIn = full(2, rank * 10.0, dtype: ScalarType.Float64);
        using var gatherOut = zeros(2 * size, dtype: ScalarType.Float64);
        mpi.AllGather(gatherIn, gatherOut);
        Expect(gatherOut, (arange(size, dtype: ScalarType.Float64) * 10).repeat_interleave(2), "AllGather");

        // In place: this rank's chunk is already in its slot of the output.
        using var flat = zeros(3 * size);
        using (var mine = flat.narrow(0, 3 * rank, 3))
        {
            mine.fill_(rank + 7);
            mpi.AllGather(mine, flat);
        }
        Expect(flat, (arange(size, dtype: ScalarType.Float32) + 7).repeat_interleave(3), "AllGather in place");

        // Gather: only the root receives; the others pass no output.
        using (var gatheredAtRoot = rank == 1 ? zeros(2 * size, dtype: ScalarType.Float64) : null)
        {
            mpi.Gather(gatherIn, gatheredAtRoot, root: 1);
            if (gatheredAtRoot is not null)
                Expect(gatheredAtRoot, (arange(size, dtype: ScalarType.Float64) * 10).repeat_interleave(2), "Gather to rank 1");
        }
        using (var shard = full(3, rank + 20f))
        using (var zeroLayout = rank == 0 ? zeros(3 * size) : null)
        using (var rootChunk = zeroLayout?.narrow(0, 0, 3))
        {
            rootChunk?.copy_(shard);
            mpi.Gather(rootChunk ?? shard, zeroLayout, root: 0);
            if (zeroLayout is not null)
                Expect(zeroLayout, (arange(size, dtype: ScalarType.Float32) + 20).repeat_interleave(3), "Gather in place to rank 0");
        }

        using var broadcast = rank == 1 ? arange(4, dtype: ScalarType.Float32) : zeros(4);
        mpi.Broadcast(broadcast, root: 1);
        Expect(broadcast, arange(4, dtype: ScalarType.Float32), "Broadcast from rank 1");
    }

    // Every rank trains the same model on its own batch. The reference runs all ranks' batches on
    // this rank alone: the average of their gradients is what data parallelism must produce.
    public static void Training(MpiCommunicator mpi)
    {
        const int steps = 3;
        const float lr = 0.05f;
        using var reference = NewModel();
        using var bucketed = NewModel();
        using var sharded = NewModel();
        // Different weights on other ranks: the constructors must broadcast rank 0's.
        if (mpi.Rank != 0)
        {
            using var _ = no_grad();
            foreach (var p in bucketed.parameters().Concat(sharded.parameters()))
                p.add_(1.0);
        }
        // Buckets smaller than the model's gradients, so that it spans several of them.
        const long bucketBytes = 200;
        var gradientBytes = bucketed.parameters().Sum(p => p.numel() * p.element_size());
        if (gradientBytes <= bucketBytes)
            throw new InvalidOperationException($"The model's {gradientBytes} bytes of gradients fit one bucket of {bucketBytes}; it must span several.");
        using var buckets = new GradientBuckets(bucketed.parameters(), mpi, bucketBytes);
        using var sharding = new ParameterSharding(sharded.parameters(), mpi);
        if (sharding.Layout.PaddedElements % mpi.WorldSize != 0 || sharding.Layout.PaddedElements < sharding.Layout.TotalElements)
            throw new InvalidOperationException("ParameterSharding: padded size is wrong.");

        var referenceParameters = reference.parameters().ToArray();
        var referenceState = AdamState.For(referenceParameters.Select(p => p.numel()).Sum());
        var bucketedState = AdamState.For(referenceState.M.numel());
        var shardState = AdamState.For(sharding.Layout.ShardElements);
        for (var step = 1; step <= steps; step++)
        {
            // Reference: sum of the gradients of every rank's batch, divided by the world size.
            reference.zero_grad(set_to_none: false);
            for (var r = 0; r < mpi.WorldSize; r++)
                Loss(reference, r, step).backward();
            using (var flatGrad = cat(referenceParameters.Select(p => p.grad!.flatten()).ToArray()))
            using (var flatParam = cat(referenceParameters.Select(p => p.detach().flatten()).ToArray()))
            {
                flatGrad.div_(mpi.WorldSize);
                referenceState.Step(flatParam, flatGrad, lr, step);
                Unflatten(flatParam, referenceParameters);
            }

            buckets.ZeroGradients();
            Loss(bucketed, mpi.Rank, step).backward();
            buckets.AllReduceGradients(ReduceOp.Average);
            var bucketedParameters = bucketed.parameters().ToArray();
            using (var flatGrad = cat(bucketedParameters.Select(p => p.grad!.flatten()).ToArray()))
            using (var flatParam = cat(bucketedParameters.Select(p => p.detach().flatten()).ToArray()))
            {
                bucketedState.Step(flatParam, flatGrad, lr, step);
                Unflatten(flatParam, bucketedParameters);
            }

            sharding.ZeroGradients();
            Loss(sharded, mpi.Rank, step).backward();
            sharding.ReduceScatterGradients(ReduceOp.Average);
            shardState.Step(sharding.ParameterShard, sharding.GradientShard, lr, step);
            sharding.AllGatherParameters();
        }
        using var expected = cat(referenceParameters.Select(p => p.detach().flatten()).ToArray());
        using var fromBuckets = cat(bucketed.parameters().Select(p => p.detach().flatten()).ToArray());
        using var fromShards = cat(sharded.parameters().Select(p => p.detach().flatten()).ToArray());
        Expect(fromBuckets, expected, "GradientBuckets training", 1e-5);
        Expect(fromShards, expected, "ParameterSharding training", 1e-5);
        using var flatView = sharding.FlatParameters.narrow(0, 0, sharding.Layout.TotalElements);
        Expect(flatView, expected, "ParameterSharding: parameters live in FlatParameters", 0);
    }

    public static void Bench(MpiCommunicator mpi, int megabytes)
    {
        const int iterations = 20;
        using var buffer = ones(megabytes * 1_000_000L / 4);
        // The warm-up's last all-reduce also starts the ranks' timings together.
        for (var i = 0; i < 3; i++)
            mpi.AllReduce(buffer);
        var times = new double[iterations];
        for (var i = 0; i < iterations; i++)
        {
            var clock = Stopwatch.StartNew();
            mpi.AllReduce(buffer);
            times[i] = clock.Elapsed.TotalSeconds;
        }
        Array.Sort(times);
        var median = times[iterations / 2];
        var bytes = buffer.numel() * 4.0;
        // Bus bandwidth as nccl-tests defines it: what each link carries in a ring all-reduce.
        var bus = bytes * 2 * (mpi.WorldSize - 1) / mpi.WorldSize / median;
        if (mpi.IsMain)
            Console.WriteLine($"allreduce {megabytes} MB x {mpi.WorldSize} ranks: median {median * 1000:F1} ms (min {times[0] * 1000:F1}, max {times[^1] * 1000:F1}), algorithm bandwidth {bytes / median / 1e9:F2} GB/s, bus bandwidth {bus / 1e9:F2} GB/s");
    }

    private static nn.Module<Tensor, Tensor> NewModel()
    {
        torch.manual_seed(7);
        return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3));
    }

    private static Tensor Loss(nn.Module<Tensor, Tensor> model, int rank, int step)
    {
        var generator = new Generator((ulong)(1000 * step + rank));
        var input = randn([4, 5], generator: generator);
        var target = randn([4, 3], generator: generator);
        return nn.functional.mse_loss(model.call(input), target);
    }

    private static void Unflatten(Tensor flat, TorchSharp.Modules.Parameter[] parameters)
    {
        using var _ = no_grad();
        long offset = 0;
        foreach (var p in parameters)
        {
            p.copy_(flat.narrow(0, offset, p.numel()).view(p.shape));
            offset += p.numel();
        }
    }

    private static void Expect(Tensor actual, Tensor expected, string what, double tolerance = 0)
    {
        var difference = (actual.to_type(ScalarType.Float64) - expected.to_type(ScalarType.Float64)).abs().max().item<double>();
        if (!actual.shape.SequenceEqual(expected.shape) || difference > tolerance)
            throw new InvalidOperationException($"{what}: max difference {difference} (tolerance {tolerance}); got [{string.Join(", ", actual.data<float>().Take(8))}...]");
    }
}

// Adam without weight decay, element-wise, so a slice of the state updates a slice of the parameters.
internal sealed record AdamState(Tensor M, Tensor V)
{
    public static AdamState For(long elements) => new(zeros(elements), zeros(elements));

    public void Step(Tensor parameters, Tensor gradients, float lr, int step)
    {
        const double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
        using var _ = no_grad();
        M.mul_(beta1).add_(gradients, alpha: 1 - beta1);
        V.mul_(beta2).addcmul_(gradients, gradients, value: 1 - beta2);
        using var mHat = M / (1 - Math.Pow(beta1, step));
        using var vHat = V / (1 - Math.Pow(beta2, step));
        parameters.sub_(mHat / (vHat.sqrt() + epsilon) * lr);
    }
}
