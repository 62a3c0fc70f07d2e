// Picks the communicator for this process: MPI when a launcher (mpirun, mpiexec, srun) started
// it as one of several ranks, a world of one otherwise. The launcher's variables only say that
// MPI is expected; MPI_Comm_rank/size are the authority on rank and size.
namespace Stratus.Distributed;

public static class Communicator
{
    /// <exception cref="StratusUserException">Launched as several ranks but no MPI library loads.</exception>
    public static ICommunicator Create() => Create(Environment.GetEnvironmentVariable);

    internal static ICommunicator Create(Func<string, string?> environment)
    {
        var launched = LauncherWorldSize(environment);
        if (launched is null)
            return new SingleProcessCommunicator();
        var mpi = MpiCommunicator.TryCreate(out var failure);
        // Running N independent copies that each believe they are the whole world would train N
        // unsynchronised models and overwrite each other's checkpoints: so would ranks whose
        // launcher did not connect them through MPI (srun without a PMI plugin MPI can use: each
        // task's MPI_Init makes a world of its own).
        if (mpi is { WorldSize: 1 } && launched > 1)
        {
            mpi.Dispose();
            throw new StratusUserException($"Started as one of {launched} ranks, but MPI sees a world of 1: the launcher did not connect the ranks to each other; under srun pass --mpi=pmix (`srun --mpi=list` shows the site's choices)");
        }
        if (mpi is not null)
            return mpi;
        if (launched > 1)
            throw new StratusUserException($"Started as one of {launched} ranks, but {failure}.");
        return new SingleProcessCommunicator();
    }

    /// <summary>Writes <paramref name="line"/> (a user error) to stderr and, when this process is
    /// one of several MPI ranks, ends every rank of this job with <paramref name="exitCode"/> (after
    /// an error only this rank met: a data folder only some nodes see, a full disk), so that no
    /// launcher leaves the others waiting for it; returns otherwise. The job prints the line once,
    /// though every rank meets the error (MpiCommunicator.AbortJob).</summary>
    public static void AbortJob(string line, int exitCode) => MpiCommunicator.AbortJob(line, exitCode);

    /// <summary>For an exception that ends this process unhandled (a bug, or a failure no message
    /// of Stratus's describes): when this process is one of several MPI ranks, writes it with its
    /// stack trace as .NET does and ends every rank of the job with 134, the status .NET's abort
    /// gives a single process, for the same reason as <see cref="AbortJob"/>; returns otherwise,
    /// and .NET ends the process as it would have.</summary>
    public static void AbortJobOnUnhandled(object exception)
    {
        if (MpiCommunicator.OtherRanksWait is not null)
            AbortJob($"Unhandled exception. {exception}", 134);
    }

    /// <summary>Rank <paramref name="root"/>'s <paramref name="text"/> on every rank (the others
    /// pass anything, null included): what one rank alone decided, such as the checkpoint train's
    /// --init-from resolved to in the model registry, which the other ranks must not ask again.</summary>
    public static string BroadcastText(this ICommunicator communicator, string? text, int root = 0)
    {
        if (communicator.WorldSize == 1) return text!;
        // A byte an int32 (a dtype every collective takes): the text is a few hundred bytes.
        var bytes = communicator.Rank == root ? System.Text.Encoding.UTF8.GetBytes(text!) : [];
        using var length = TorchSharp.torch.tensor(new long[] { bytes.Length });
        communicator.Broadcast(length, root);
        using var buffer = communicator.Rank == root ? TorchSharp.torch.tensor(bytes.Select(b => (int)b).ToArray()) : TorchSharp.torch.zeros(length.item<long>(), TorchSharp.torch.ScalarType.Int32);
        communicator.Broadcast(buffer, root);
        return communicator.Rank == root ? text! : System.Text.Encoding.UTF8.GetString(buffer.data<int>().Select(b => (byte)b).ToArray());
    }

    /// <summary>Whether a launcher (mpirun, mpiexec, srun) started this process as a rank. Its
    /// output then goes through the launcher to wherever the launcher's goes, often a log file,
    /// whatever terminal the rank itself is given (mpirun gives each a pseudo-terminal).</summary>
    public static bool LaunchedAsRank => LauncherWorldSize(Environment.GetEnvironmentVariable) is not null;

    /// <summary>
    /// The world size a launcher announced, or null when no launcher did. PMIx gives no size
    /// variable, so its presence alone counts as "launched" (size 0 = unknown).
    /// </summary>
    internal static int? LauncherWorldSize(Func<string, string?> environment)
    {
        if (Size(environment("OMPI_COMM_WORLD_SIZE")) is { } openMpi)
            return openMpi;
        if (Size(environment("PMI_SIZE")) is { } pmi)
            return pmi;
        // srun sets both for every task of a step. Not SLURM_NTASKS: a batch script (task 0 of the
        // batch step, SLURM_PROCID=0) has the allocation's, and is one process. So is the one task of
        // `srun -n 1` or of `srun --pty bash`'s shell: under srun's default (no PMI plugin) Open MPI's
        // MPI_Init aborts such a task, and its output goes to a file or to the user's terminal as
        // anyone's does.
        if (environment("SLURM_PROCID") is not null && Size(environment("SLURM_STEP_NUM_TASKS")) is { } slurm and > 1)
            return slurm;
        if (environment("PMIX_RANK") is not null)
            return 0;
        return null;
    }

    private static int? Size(string? value) => int.TryParse(value, out var size) && size > 0 ? size : null;
}
