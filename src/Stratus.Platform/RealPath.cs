// A path as POSIX realpath(3) resolves it, for telling whether two paths name one folder however
// each is written (through a symbolic link, `.`, `..`, a trailing separator): the model registry's
// folders, the server's jobs root. .NET resolves only a path's last link
// (FileSystemInfo.ResolveLinkTarget), so the parts are walked here, a few lstat calls a path.
namespace Stratus.Platform;

public static class RealPath
{
    /// <summary>As the kernel's MAXSYMLINKS: the most links one path may go through.</summary>
    const int MaxLinks = 40;

    /// <summary><paramref name="path"/> (relative: to the working folder) absolute, with every link
    /// among its existing parts followed and each `..` taken from the folder the parts before it
    /// lead to, as the kernel takes it; parts that do not exist are kept as written. Null for a
    /// path through a loop of links (ELOOP).</summary>
    public static string? Of(string path)
    {
        var absolute = Path.IsPathFullyQualified(path) ? path : Path.Combine(Environment.CurrentDirectory, path);
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
