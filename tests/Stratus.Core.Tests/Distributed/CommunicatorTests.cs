using Stratus.Distributed;

namespace Stratus.Tests.Distributed;

public sealed class CommunicatorTests
{
    private static Func<string, string?> Environment(params (string Name, string Value)[] variables) =>
        name => variables.FirstOrDefault(v => v.Name == name).Value;

    [Fact]
    public void Without_a_launcher_the_process_is_a_world_of_one()
    {
        Assert.Null(Communicator.LauncherWorldSize(Environment()));
        using var communicator = Communicator.Create(Environment());
        Assert.IsType<SingleProcessCommunicator>(communicator);
    }

    [Theory]
    [InlineData("OMPI_COMM_WORLD_SIZE", "4", 4)]
    [InlineData("PMI_SIZE", "2", 2)]
    [InlineData("PMIX_RANK", "0", 0)]
    public void Launcher_variables_announce_the_world_size(string name, string value, int expected) =>
        Assert.Equal(expected, Communicator.LauncherWorldSize(Environment((name, value))));

    [Fact]
    public void Slurm_counts_only_a_task_that_srun_started()
    {
        // What srun gives every task of a step (Slurm's env_array_for_step): the step's task count,
        // also under `srun --preserve-env`, which leaves SLURM_NTASKS at the allocation's.
        Assert.Equal(2, Communicator.LauncherWorldSize(Environment(("SLURM_PROCID", "1"), ("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_NTASKS", "8"))));
        // The batch script of `sbatch --nodes=4 --ntasks-per-node=2` is task 0 of the batch step
        // (SLURM_PROCID=0) with SLURM_NTASKS=8, but a single process: it was taken for one of 8 ranks.
        Assert.Null(Communicator.LauncherWorldSize(Environment(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8"), ("SLURM_NPROCS", "8"), ("SLURM_JOB_ID", "42"))));
        // salloc's shell.
        Assert.Null(Communicator.LauncherWorldSize(Environment(("SLURM_NTASKS", "8"), ("SLURM_JOB_ID", "42"))));
    }

    [Fact]
    public void A_Slurm_step_of_one_task_is_a_single_process()
    {
        // `srun -n 1 stratus train` in a batch script, or a run in `srun --pty bash`'s shell: it was
        // taken for one of 1 ranks, and MPI_Init (Open MPI's, without a PMI plugin) aborted it.
        Assert.Null(Communicator.LauncherWorldSize(Environment(("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "1"), ("SLURM_NTASKS", "1"), ("SLURM_STEP_ID", "0"))));
        // With a PMI plugin MPI can use (`srun --mpi=pmix -n 1`) it is still MPI's world.
        Assert.Equal(0, Communicator.LauncherWorldSize(Environment(("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "1"), ("PMIX_RANK", "0"))));
    }

    [Fact]
    public void A_single_process_in_a_Slurm_batch_script_is_a_world_of_one()
    {
        using var communicator = Communicator.Create(Environment(("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8"), ("SLURM_JOB_ID", "42")));
        Assert.IsType<SingleProcessCommunicator>(communicator);
    }
}
