// RealPath: a path with its links followed, as the file .NET opens for it.
using Stratus.Safety;

namespace Stratus.Safety.Tests;

public sealed class RealPathTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("stratus-realpath-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    string At(string path) => Path.Combine(folder, path);

    [Fact]
    public void A_path_is_the_folder_dotnet_opens_for_it_its_links_followed()
    {
        Directory.CreateDirectory(At("real/corpus/sub"));
        File.WriteAllText(At("marker.txt"), "");
        Directory.CreateSymbolicLink(At("shortcut"), "real/corpus/sub");
        Directory.CreateSymbolicLink(At("real/up"), "corpus/sub/..");
        Directory.CreateSymbolicLink(At("real/through"), "../shortcut/..");
        var real = Of(folder);

        Assert.Equal(Path.Combine(real, "real", "corpus", "sub"), Of(At("shortcut")));
        // A '..' the path is given with is taken before its links, as .NET's file APIs take it
        // (Path.GetFullPath): shortcut/../marker.txt is the marker beside the link, whatever the
        // kernel would make of it. The two disagreed: the registry's and the server's jobs root
        // took it from the link's target, prepare from the path as written.
        Assert.True(File.Exists(At("shortcut/../marker.txt")));
        Assert.Equal(real, Of(At("shortcut/..")));
        // A '..' in a link's target is the kernel's to take: from where the parts before it lead.
        Assert.Equal(Path.Combine(real, "real", "corpus"), Of(At("real/up")));
        Assert.Equal(Path.Combine(real, "real", "corpus"), Of(At("real/through")));
        // Relative to the working folder, and with a trailing separator, alike.
        Assert.Equal(Path.Combine(real, "real", "corpus", "sub"), Of(Path.GetRelativePath(Environment.CurrentDirectory, At("shortcut")) + Path.DirectorySeparatorChar));
    }

    [Fact]
    public void Parts_that_do_not_exist_are_kept_and_a_loop_of_links_is_none()
    {
        Directory.CreateDirectory(At("real"));
        Directory.CreateSymbolicLink(At("linked"), "real");
        File.CreateSymbolicLink(At("dangling.txt"), "real/gone.txt");
        File.CreateSymbolicLink(At("loop"), "loop");
        File.CreateSymbolicLink(At("a"), "b");
        File.CreateSymbolicLink(At("b"), "a");
        var real = Of(folder);

        Assert.Equal(Path.Combine(real, "real", "new", "run"), Of(At("linked/new/run")));
        Assert.Equal(Path.Combine(real, "real", "gone.txt"), Of(At("dangling.txt")));
        Assert.Null(RealPath.Of(At("loop")));
        Assert.Null(RealPath.Of(At("a/below")));
    }

    static string Of(string path) => RealPath.Of(path) ?? throw new InvalidOperationException($"{path} is in a loop of links");
}
