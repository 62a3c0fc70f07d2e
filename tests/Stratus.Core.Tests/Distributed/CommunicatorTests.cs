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
    public void Slurm_counts_only_inside_a_task()
    {
        Assert.Null(Communicator.LauncherWorldSize(Environment(("SLURM_NTASKS", "8"))));
        Assert.Equal(8, Communicator.LauncherWorldSize(Environment(("SLURM_NTASKS", "8"), ("SLURM_PROCID", "3"))));
    }
}
