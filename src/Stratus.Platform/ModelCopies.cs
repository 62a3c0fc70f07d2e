// The registry's own copies of checkpoints (`models register --copy`), in <data-dir>/models/
// <name>/<version>: a version that refers to a run's checkpoints/best breaks when the run trains
// on and saves it again, one whose files the registry keeps does not. Each file is hard-linked
// where the file system allows (Core's Checkpoint.Save writes a new folder and renames it over
// the old one, never rewriting a file in place, so a link keeps the registered bytes when the
// run saves again), else copied. A copy is placed in a temporary folder beside the others, held
// under a lock while it is filled: a register that dies leaves a folder that the next one
// removes (its lock free), never a version folder or a half copy under a name.
using System.Runtime.InteropServices;
using Stratus.Safety;

namespace Stratus.Platform;

/// <summary>The folder of the registry's copies, in a data directory.</summary>
sealed partial class ModelCopies(string dataDir)
{
    const string IncomingPrefix = ".incoming-";
    const string LockSuffix = ".lock";

    public string Root { get; } = Path.Combine(dataDir, ModelRegistry.CopiesFolder);

    /// <summary>Where the registry keeps its copy of version <paramref name="version"/> of
    /// <paramref name="name"/> (names are of a charset safe as a file name: ModelReference).</summary>
    public string FolderOf(string name, int version) => Path.Combine(Root, name, version.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>The folder of <paramref name="name"/>'s copies, made where missing.</summary>
    /// <exception cref="TrustUserException">It is a symbolic link: copies would be placed, and
    /// removed, wherever it leads.</exception>
    public string NameFolder(string name)
    {
        var folder = Directory.CreateDirectory(Path.Combine(Root, name));
        if (folder.LinkTarget is { } target)
            throw new TrustUserException($"{folder.FullName} is a symbolic link (to {target}), not a folder of the registry's; it keeps a name's copies in a folder it makes itself: remove the link");
        return folder.FullName;
    }

    /// <summary>Whether <paramref name="folder"/> (one of <see cref="FolderOf"/>) is in its
    /// name's folder as the registry made it, not through a link put in its place.</summary>
    public static bool InNameFolder(string folder) => new DirectoryInfo(Path.GetDirectoryName(folder)!).LinkTarget is null;

    /// <summary>A new temporary folder for a copy, locked until disposed; the folders that
    /// registers which died left are removed first.</summary>
    public Incoming Begin()
    {
        Directory.CreateDirectory(Root);
        RemoveAbandoned();
        var directory = Path.Combine(Root, IncomingPrefix + Guid.NewGuid().ToString("N"));
        // The lock before the folder: a folder without its lock file is one whose register died.
        var lockFile = new FileStream(directory + LockSuffix, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        Directory.CreateDirectory(directory);
        return new Incoming(directory, lockFile);
    }

    /// <summary>Removes the temporary folders of registers that ended without finishing: a lock
    /// file that can be locked (the system released its holder's lock when it ended, however it
    /// ended), or a folder with no lock file.</summary>
    void RemoveAbandoned()
    {
        foreach (var lockPath in Directory.EnumerateFiles(Root, IncomingPrefix + "*" + LockSuffix))
        {
            try
            {
                using var held = new FileStream(lockPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
                var folder = lockPath[..^LockSuffix.Length];
                if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
                // While held, as Incoming.Dispose removes its own.
                File.Delete(lockPath);
            }
            // Held: another register is copying into it. Gone: its register just finished.
            catch (IOException) { }
        }
        foreach (var folder in Directory.EnumerateDirectories(Root, IncomingPrefix + "*"))
            if (!File.Exists(folder + LockSuffix)) Directory.Delete(folder, recursive: true);
    }

    /// <summary>A copy being placed: files go in <see cref="Directory"/>, which
    /// <see cref="MoveTo"/> renames into place; disposing removes whatever was not moved.</summary>
    public sealed class Incoming(string directory, FileStream lockFile) : IDisposable
    {
        public string Directory { get; } = directory;

        /// <summary>Hard-links each of <paramref name="files"/> of <paramref name="source"/> here,
        /// or copies it where no link can be made (another device, a file system without them).</summary>
        public void Place(string source, IEnumerable<string> files)
        {
            foreach (var file in files) LinkOrCopy(Path.Combine(source, file), Path.Combine(Directory, file));
        }

        /// <summary>Renames the copy to <paramref name="target"/>, whose parent is made.</summary>
        public void MoveTo(string target)
        {
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            System.IO.Directory.Move(Directory, target);
        }

        /// <summary>Removes the folder unless moved, then the lock file (in that order: a folder
        /// without a lock file is taken for abandoned).</summary>
        public void Dispose()
        {
            try
            {
                if (System.IO.Directory.Exists(Directory)) System.IO.Directory.Delete(Directory, recursive: true);
                File.Delete(lockFile.Name);
            }
            finally
            {
                lockFile.Dispose();
            }
        }
    }

    /// <summary>Removes the copy in <paramref name="folder"/> (one of <see cref="FolderOf"/>): a
    /// link put in its place is removed, not followed.</summary>
    public static void Remove(string folder)
    {
        var info = new DirectoryInfo(folder);
        if (!info.Exists) return;
        if (info.LinkTarget is not null) info.Delete();
        else info.Delete(recursive: true);
    }

    static void LinkOrCopy(string source, string destination)
    {
        // link(2) on Linux links a symbolic link itself, not the file it leads to: the "copy" would
        // be a link to weights kept elsewhere, which breaks when they change. File.Copy follows it.
        var file = new FileInfo(source).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? source;
        if (!OperatingSystem.IsWindows() && link(file, destination) == 0) return;
        File.Copy(source, destination);
        // Flushed before the rename that registers it: a version whose copy an OS crash could cut short is no copy to rely on.
        using var copied = new FileStream(destination, FileMode.Open, FileAccess.ReadWrite);
        copied.Flush(flushToDisk: true);
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string existing, string created);
}
