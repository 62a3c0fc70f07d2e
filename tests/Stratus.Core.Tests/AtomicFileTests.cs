// An error met while AtomicFile writes names its temporary sibling: TargetOf must read back the
// name Write gives it, or the CLI's one-line error shows ".x.json.<pid>.<guid>.tmp" again.
namespace Stratus.Tests;

public sealed class AtomicFileTests
{
    [Fact]
    public void The_temporary_sibling_of_a_write_leads_back_to_its_target_and_other_paths_stay_as_they_are()
    {
        using var temp = new TempDirectory();
        var target = temp["report.json"];
        var temporary = "";
        AtomicFile.Write(target, stream => temporary = stream.Name);
        Assert.NotEqual(target, temporary);
        Assert.Equal(target, AtomicFile.TargetOf(temporary));
        foreach (var other in new[] { target, temp[".report.json"], temp[".report.json.1.tmp"], "/" })
            Assert.Equal(other, AtomicFile.TargetOf(other));
    }
}
