// Collectives over the system MPI library (Open MPI or MPICH, see MpiAbi), on tensor memory in
// place. Calls may come from any thread but not from two at once (MPI_THREAD_SERIALIZED), which
// is how the trainer uses it: one thread drives the step.
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class MpiCommunicator : ICommunicator
{
    private readonly MpiAbi _abi;
    private readonly bool _finalizeOnDispose;
    private bool _disposed;

    private MpiCommunicator(MpiAbi abi)
    {
        _abi = abi;
        Check(MpiAbi.MPI_Initialized(out var initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            // argc/argv may be NULL since MPI-2; the launcher passes what MPI needs in the environment.
            Check(MpiAbi.MPI_Init_thread(0, 0, MpiAbi.ThreadSerialized, out var provided), "MPI_Init_thread");
            if (provided < MpiAbi.ThreadSerialized)
                throw new InvalidOperationException($"{abi.LibraryFile} provides thread level {provided}; Stratus needs MPI_THREAD_SERIALIZED ({MpiAbi.ThreadSerialized}).");
            _finalizeOnDispose = true;
        }
        Check(MpiAbi.MPI_Comm_rank(abi.CommWorld, out var rank), "MPI_Comm_rank");
        Check(MpiAbi.MPI_Comm_size(abi.CommWorld, out var size), "MPI_Comm_size");
        Rank = rank;
        WorldSize = size;
        active = this;
    }

    // The process's MPI world while it is initialised: what AbortJob ends.
    private static MpiCommunicator? active;

    /// <summary>Writes <paramref name="line"/> to stderr, then ends every rank of this job with
    /// <paramref name="exitCode"/> when this process is one of several MPI ranks (nothing more
    /// otherwise). A rank that merely exits leaves the others waiting in their next collective for
    /// ever wherever the launcher does not end a job at a rank's non-zero exit: srun's default
    /// (KillOnBadExit=0) does not. Every rank checks the same settings, so most errors are met by
    /// every rank at once: a rank other than 0 waits <see cref="RankZeroFirst"/> before it writes,
    /// so that rank 0's abort ends it and the job prints the line once, not once per rank. A line
    /// it does write names the rank and its node: an error rank 0 did not meet is that node's (a
    /// folder it does not see), and the folder may well exist where the job was started.</summary>
    internal static void AbortJob(string line, int exitCode)
    {
        var world = OtherRanksWait;
        if (world is { Rank: > 0 })
        {
            Thread.Sleep(RankZeroFirst);
            line = $"rank {world.Rank} on {Environment.MachineName}: {line}";
        }
        Console.Error.WriteLine(line);
        if (world is not null)
            MpiAbi.MPI_Abort(world._abi.CommWorld, exitCode);
    }

    /// <summary>This process's MPI world when it has other ranks, which would wait for this one in
    /// their next collective; null otherwise.</summary>
    internal static MpiCommunicator? OtherRanksWait => active is { _disposed: false, WorldSize: > 1 } a ? a : null;

    /// <summary>Ample for rank 0 to meet the same error and end the job (a job of 4 ranks refusing
    /// its settings ended within 2 s of its start); short beside the wait for ever it spares where rank 0 met none.</summary>
    internal static readonly TimeSpan RankZeroFirst = TimeSpan.FromSeconds(5);

    /// <summary>Initialises MPI (a process started without a launcher is a world of one).</summary>
    /// <exception cref="StratusUserException">No MPI library is installed.</exception>
    public static MpiCommunicator Create() =>
        new(MpiAbi.TryLoad(out var failure) ?? throw new StratusUserException($"Cannot start MPI: {failure}."));

    internal static MpiCommunicator? TryCreate(out string? failure)
    {
        var abi = MpiAbi.TryLoad(out failure);
        return abi is null ? null : new MpiCommunicator(abi);
    }

    public int Rank { get; }

    public int WorldSize { get; }

    public bool IsMain => Rank == 0;

    public void AllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        var buffer = TensorBuffer.Of(tensor, op, nameof(AllReduce));
        Check(MpiAbi.MPI_Allreduce(_abi.InPlace, buffer.Address, Count(buffer, nameof(AllReduce)), _abi.Datatype(buffer.DType), MpiOp(op), _abi.CommWorld), "MPI_Allreduce");
        FinishAverage(tensor, op);
    }

    public IPendingCollective StartAllReduce(Tensor tensor, ReduceOp op = ReduceOp.Sum)
    {
        var buffer = TensorBuffer.Of(tensor, op, nameof(StartAllReduce));
        nint request = 0;
        Check(MpiAbi.MPI_Iallreduce(_abi.InPlace, buffer.Address, Count(buffer, nameof(StartAllReduce)), _abi.Datatype(buffer.DType), MpiOp(op), _abi.CommWorld, ref request), "MPI_Iallreduce");
        return new PendingAllReduce(this, tensor, op, request);
    }

    public void ReduceScatter(Tensor input, Tensor output, ReduceOp op = ReduceOp.Sum)
    {
        var source = TensorBuffer.Of(input, op, nameof(ReduceScatter));
        var target = TensorBuffer.Of(output, op, nameof(ReduceScatter));
        TensorBuffer.RequireChunks(source, target, WorldSize, nameof(ReduceScatter));
        RequireDisjoint(source, target, nameof(ReduceScatter));
        Count(source, nameof(ReduceScatter));
        Check(MpiAbi.MPI_Reduce_scatter_block(source.Address, target.Address, (int)target.Count, _abi.Datatype(target.DType), MpiOp(op), _abi.CommWorld), "MPI_Reduce_scatter_block");
        FinishAverage(output, op);
    }

    public void AllGather(Tensor input, Tensor output)
    {
        var (source, send, receive) = GatherBuffers(input, output, nameof(AllGather));
        var datatype = _abi.Datatype(source.DType);
        Check(MpiAbi.MPI_Allgather(send, (int)source.Count, datatype, receive, (int)source.Count, datatype, _abi.CommWorld), "MPI_Allgather");
    }

    public void Gather(Tensor input, Tensor? output, int root = 0)
    {
        RequireRoot(root, nameof(Gather));
        if (Rank != root)
        {
            var chunk = TensorBuffer.Of(input, nameof(Gather));
            var type = _abi.Datatype(chunk.DType);
            Check(MpiAbi.MPI_Gather(chunk.Address, Count(chunk, nameof(Gather)), type, 0, 0, type, root, _abi.CommWorld), "MPI_Gather");
            return;
        }
        var (source, send, receive) = GatherBuffers(input, output ?? throw new ArgumentNullException(nameof(output), "the root of a Gather needs an output tensor"), nameof(Gather));
        var datatype = _abi.Datatype(source.DType);
        Check(MpiAbi.MPI_Gather(send, (int)source.Count, datatype, receive, (int)source.Count, datatype, root, _abi.CommWorld), "MPI_Gather");
    }

    /// <summary>Checks a gather of <paramref name="input"/> chunks into <paramref name="output"/> and
    /// returns the addresses to pass: MPI_IN_PLACE as the send buffer when this rank's chunk already
    /// sits at its place in the output (the ZeRO layout).</summary>
    private (TensorBuffer Source, nint Send, nint Receive) GatherBuffers(Tensor input, Tensor output, string operation)
    {
        var source = TensorBuffer.Of(input, operation);
        var target = TensorBuffer.Of(output, operation);
        TensorBuffer.RequireChunks(target, source, WorldSize, operation);
        Count(target, operation);
        if (source.Address == target.Address + Rank * source.Bytes)
            return (source, _abi.InPlace, target.Address);
        RequireDisjoint(source, target, operation);
        return (source, source.Address, target.Address);
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        var buffer = TensorBuffer.Of(tensor, nameof(Broadcast));
        RequireRoot(root, nameof(Broadcast));
        Check(MpiAbi.MPI_Bcast(buffer.Address, Count(buffer, nameof(Broadcast)), _abi.Datatype(buffer.DType), root, _abi.CommWorld), "MPI_Bcast");
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (active == this) active = null;
        if (_finalizeOnDispose && MpiAbi.MPI_Finalized(out var finalized) == 0 && finalized == 0)
            Check(MpiAbi.MPI_Finalize(), "MPI_Finalize");
    }

    private nint MpiOp(ReduceOp op) => op == ReduceOp.Max ? _abi.OpMax : _abi.OpSum;

    // MPI sums; the division is a local step (as in PyTorch DDP, which divides by the world size).
    private void FinishAverage(Tensor tensor, ReduceOp op)
    {
        if (op == ReduceOp.Average && WorldSize > 1)
            tensor.div_(WorldSize);
    }

    // MPI counts are C ints; the trainer's buckets and shards stay far below that.
    private static int Count(TensorBuffer buffer, string operation) => buffer.Count <= int.MaxValue
        ? (int)buffer.Count
        : throw new StratusUserException($"{operation}: {buffer.Count} elements exceed MPI's limit of {int.MaxValue} per call; split the tensor into buckets.");

    private void RequireRoot(int root, string operation)
    {
        if (root < 0 || root >= WorldSize)
            throw new StratusUserException($"{operation} root {root} is outside a world of {WorldSize} ranks.");
    }

    private static void RequireDisjoint(TensorBuffer a, TensorBuffer b, string operation)
    {
        if (a.Address < b.Address + b.Bytes && b.Address < a.Address + a.Bytes)
            throw new StratusUserException($"{operation}: input and output overlap; MPI needs separate buffers.");
    }

    private static unsafe void Check(int code, string function)
    {
        if (code == 0)
            return;
        // MPI_MAX_ERROR_STRING is 256 in Open MPI and 512 in MPICH.
        var text = stackalloc byte[1024];
        var message = MpiAbi.MPI_Error_string(code, text, out var length) == 0
            ? System.Text.Encoding.UTF8.GetString(text, length)
            : $"error code {code}";
        throw new InvalidOperationException($"{function} failed: {message}");
    }

    private sealed class PendingAllReduce(MpiCommunicator owner, Tensor tensor, ReduceOp op, nint request) : IPendingCollective
    {
        private nint _request = request;
        private bool _done;

        public bool Test()
        {
            if (_done)
                return true;
            Check(MpiAbi.MPI_Test(ref _request, out var flag, owner._abi.StatusIgnore), "MPI_Test");
            if (flag != 0)
                Complete();
            return _done;
        }

        public void Wait()
        {
            if (_done)
                return;
            Check(MpiAbi.MPI_Wait(ref _request, owner._abi.StatusIgnore), "MPI_Wait");
            Complete();
        }

        private void Complete()
        {
            _done = true;
            owner.FinishAverage(tensor, op);
        }
    }
}
