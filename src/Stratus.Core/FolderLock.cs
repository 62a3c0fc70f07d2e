// One process at a time writes a run folder or a dataset folder: two trainings started with one
// --out wrote their metrics and checkpoints over each other and each ended as if all was well.
// The lock is the folder's .lock file opened with FileShare.None, which .NET takes on Unix as an
// exclusive flock: the system drops it when the process ends, however it ends (kill -9 too), so
// no lock is ever left behind by a dead process to be cleared by hand (the file a killed process
// leaves is taken again; one that ends otherwise removes it, and a process that locked the file
// just as it went opens the new one: IsRemoved). It holds the process id, for a
// person who wonders which process holds the folder.
namespace Stratus;

public sealed class FolderLock : IDisposable
{
    public const string FileName = ".lock";

    readonly FileStream file;
    readonly string path;

    FolderLock(FileStream file, string path) => (this.file, this.path) = (file, path);

    /// <summary>Makes <paramref name="directory"/> where it is missing and locks it.</summary>
    /// <param name="inUse">The error to give while another process holds the lock, in the words
    /// of the surface that shows it (the CLI's options or the API's fields: see Surface).</param>
    /// <exception cref="StratusUserException">Another process holds the lock.</exception>
    public static FolderLock Take(string directory, Func<Stratus.Safety.Surface, string> inUse)
    {
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        // Cut to length below: a named pipe or a device there could not be (NotSupportedException).
        FileBytes.RequireRegular(path);
        FileStream file;
        while (true)
        {
            try { file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException e) when (e.HResult == HeldElsewhere) { throw new StratusUserException(inUse); }
            // The holder ended between this process's open and its lock, and removed the file: this
            // lock is of a file that is no longer the folder's, and a third process may lock the
            // new one at the same time. Open the path again.
            if (!IsRemoved(file)) break;
            file.Dispose();
        }
        file.SetLength(0);
        file.Write(System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
        file.Flush();
        return new FolderLock(file, path);
    }

    /// <summary>Whether <paramref name="file"/> has been removed from its folder since it was
    /// opened. Linux names an open file that is no longer linked "(deleted)" in /proc; elsewhere
    /// this is not checked (a window of microseconds, at the end of the holder's run).</summary>
    internal static bool IsRemoved(FileStream file) =>
        OperatingSystem.IsLinux() && new FileInfo($"/proc/self/fd/{file.SafeFileHandle.DangerousGetHandle()}").LinkTarget is { } target && target.EndsWith(" (deleted)", StringComparison.Ordinal);

    // What .NET's IOException carries when the lock is taken: EWOULDBLOCK (Linux 11, macOS 35)
    // from flock, or Windows' sharing violation.
    static readonly int HeldElsewhere = OperatingSystem.IsWindows() ? unchecked((int)0x80070020) : OperatingSystem.IsLinux() ? 11 : 35;

    /// <summary>Removes the file and releases the lock: on Unix the file goes while the lock is still
    /// held, so that no other process takes the lock of a file about to go (Windows removes no
    /// file that is open).</summary>
    public void Dispose()
    {
        if (!OperatingSystem.IsWindows()) Delete();
        file.Dispose();
        if (OperatingSystem.IsWindows()) Delete();
    }

    void Delete()
    {
        try { File.Delete(path); }
        // Gone with its folder (a refused preparation removes the folder it made), or in use again.
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
