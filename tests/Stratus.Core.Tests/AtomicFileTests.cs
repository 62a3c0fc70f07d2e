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
        foreach (var other in new[] { target, temp[".report.json"], temp[".report.json.1.tmp"], temp[".tmp-best/model.safetensors"], "/" })
            Assert.Equal(other, AtomicFile.TargetOf(other));
    }

    [Fact]
    public void A_file_in_the_temporary_folder_of_a_checkpoint_leads_back_to_the_checkpoint()
    {
        // A full disk while a checkpoint was saved was reported as "cannot write
        // run/checkpoints/.tmp-best-<32 digits>/model.safetensors".
        var best = Path.Combine(Path.GetTempPath(), "run", "checkpoints", "best");
        // The folder Checkpoint.Save writes into (AtomicFile.TemporaryFolderFor), spelled out.
        var temporary = Path.Combine(Path.GetTempPath(), "run", "checkpoints", $".tmp-best-{Guid.NewGuid():N}");
        Assert.Equal(Path.Combine(best, "model.safetensors"), AtomicFile.TargetOf(Path.Combine(temporary, "model.safetensors")));
        Assert.Equal(Path.Combine(best, "model.json"), AtomicFile.TargetOf(Path.Combine(temporary, $".model.json.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp")));
    }
}
