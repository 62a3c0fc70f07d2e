// A path with its symbolic links followed, for telling whether two paths name one file or folder
// however each is written (through a link, `.`, `..`, a trailing separator): the model registry's
// folders, the server's jobs root, the texts prepare reads from a corpus folder. .NET resolves only a
// path's last link (FileSystemInfo.ResolveLinkTarget), so the parts are walked here, a few lstat
// calls a path. Here rather than in Core, which prepare is part of: Platform and Core share only
// this library, and Platform stays without libtorch.
namespace Stratus.Safety;

public static class RealPath
{
    /// <summary>As the kernel's MAXSYMLINKS: the most links one path may go through.</summary>
    const int MaxLinks = 40;

    /// <summary>The file or folder .NET opens for <paramref name="path"/>, absolute, with every link
    /// among its existing parts followed, as realpath(3) gives it; parts that do not exist are kept
    /// as written. The path's own `.` and `..` are taken first, from the text (relative: to the working
    /// folder), as .NET's file APIs take them (Path.GetFullPath) before the kernel sees the path: a
    /// link/.. is the folder the link is in. A `..` in a link's target is the kernel's, taken from the
    /// folder the parts before it lead to. Null for a path through a loop of links (ELOOP).</summary>
    public static string? Of(string path)
    {
        var absolute = Path.GetFullPath(path);
        var current = Path.GetPathRoot(absolute)!;
        var links = 0;
        var parts = new Queue<string>(absolute[current.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries));
        while (parts.TryDequeue(out var part))
        {
            if (part == ".") continue;
            if (part == "..") { current = Path.GetDirectoryName(current) ?? current; continue; }
            var next = Path.Combine(current, part);
            if (new FileInfo(next).LinkTarget is { } target)
            {
                if (++links > MaxLinks) return null;
                // The target's own parts, links among them, are walked in place of the link's.
                var rest = parts.ToArray();
                var resolved = Path.IsPathFullyQualified(target) ? target : Path.Combine(current, target);
                current = Path.GetPathRoot(resolved)!;
                parts = new Queue<string>([.. resolved[current.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries), .. rest]);
                continue;
            }
            current = next;
        }
        return current;
    }
}
