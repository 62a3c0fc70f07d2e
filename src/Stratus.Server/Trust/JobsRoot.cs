// The folder that /api/jobs confines a submission's paths to (serve --jobs-root). A training key
// may start trainings; without a root it could also make the server's user read a config or
// dataset and write a run folder anywhere that user may write (beside the server's own data, a
// home folder's dot files). Links are followed before the check, as the training follows them, so
// a link inside the root that leads out of it is refused as its target would be. The configs of
// its configs/ folder are offered by name to the dashboard's submit form (GET /api/jobs's submissions).
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public sealed class JobsRoot
{
    /// <exception cref="TrustUserException">The folder does not exist.</exception>
    public JobsRoot(string folder)
    {
        var full = Path.GetFullPath(folder);
        if (!Directory.Exists(full))
            throw new TrustUserException($"--jobs-root {folder} is not a folder; give the folder under which jobs submitted through /api/jobs read their configs and data and write their runs");
        Folder = Resolve(full);
    }

    /// <summary>The root, absolute, its links followed.</summary>
    public string Folder { get; }

    /// <summary>Refuses <paramref name="path"/> (absolute) unless it, its links followed, is
    /// beneath the root.</summary>
    /// <exception cref="TrustUserException">It is outside, or the root itself.</exception>
    public void Confine(string field, string path)
    {
        var resolved = Resolve(path);
        // The root is the folder every job's paths share: a run written there would be written among them.
        if (resolved == Folder)
            throw new TrustUserException($"'{field}' {path} is the folder this server runs jobs in; give a path beneath it.") { Param = field };
        if (Beneath(resolved)) return;
        throw new TrustUserException($"'{field}' {path}{(resolved == path ? "" : $" (which leads to {resolved})")} is outside {Folder}, the folder this server runs jobs in; give a path under it.") { Param = field };
    }

    /// <summary>Whether <paramref name="path"/> (absolute), its links followed, is beneath the root.</summary>
    public bool Holds(string path) => Beneath(Resolve(path));

    /// <summary>The folder beneath the root whose configs a submission is offered: configs/, as a
    /// Stratus clone has it (a root that is one offers the configs Stratus comes with).</summary>
    public string ConfigsFolder => Path.Combine(Folder, "configs");

    /// <summary>The training configs a submission may name, offered to it: the *.json files of
    /// <see cref="ConfigsFolder"/> (not of the folders below it, where runs and datasets keep JSON of
    /// their own), as a submission names them (whole paths), in order of name. A file a submission could not
    /// name is left out: one whose links lead outside the root or nowhere, and a named pipe, device or socket.
    /// None where the folder is missing or cannot be read.</summary>
    public IReadOnlyList<string> Configs()
    {
        try
        {
            return [.. Directory.EnumerateFiles(ConfigsFolder, "*.json")
                .Where(path => RealPath.Of(path) is { } resolved && Beneath(resolved) && File.Exists(resolved) && FileBytes.Irregular(resolved) is null)
                .Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    bool Beneath(string resolved) => resolved.StartsWith(Folder.EndsWith(Path.DirectorySeparatorChar) ? Folder : Folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>The path, its links followed (<see cref="RealPath"/>).</summary>
    static string Resolve(string path) =>
        // As the kernel's ELOOP: a cycle of links is no path.
        RealPath.Of(path) ?? throw new TrustUserException($"{path} goes through too many symbolic links");
}
