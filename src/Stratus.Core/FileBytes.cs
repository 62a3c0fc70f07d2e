// Files that users hand Stratus (a model, run or dataset folder from elsewhere) are read for the
// bytes their size says they hold. A device a symbolic link there leads to, such as /dev/zero,
// has a size of 0 and no end: read to its end, it would fill memory or never finish. A named pipe
// (FIFO) there is worse: opening it waits for a writer, for ever where there is none, so what a
// file in such a folder is gets asked of the system before it is opened (.NET tells files from
// folders only). A file the user names (`--config <(...)`, /dev/stdin) may be a pipe: it is read
// to its end, which its writer's close makes.
using System.Runtime.InteropServices;

namespace Stratus;

public static partial class FileBytes
{
    /// <summary>The bytes of the file at <paramref name="path"/>, as many as its size says or
    /// fewer where it ends sooner (it shrank while read); one that reads on past its size (a
    /// device, or a kernel file) or is too large to hold is refused naming it. A file found in a
    /// folder must be a regular file (see <see cref="RequireRegular"/>); one the user named
    /// (<paramref name="namedByUser"/>) may be a pipe, read to its end, and a kernel file of
    /// /proc, which says a size of 0 whatever it holds, is read to its end too.</summary>
    public static byte[] ReadAll(string path, bool namedByUser = false)
    {
        if (!namedByUser) RequireRegular(path);
        using var stream = File.OpenRead(path);
        if (!stream.CanSeek || (namedByUser && stream.Length == 0 && Kind(path) == FileKind.Regular))
        {
            using var piped = new MemoryStream();
            stream.CopyTo(piped);
            return piped.ToArray();
        }
        if (stream.Length > Array.MaxLength) throw new StratusUserException($"{path} is too large to read ({stream.Length:N0} bytes)");
        var bytes = new byte[stream.Length];
        var read = stream.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
        RequireEnd(stream, path);
        return read == bytes.Length ? bytes : bytes[..read];
    }

    /// <summary>Opens a file found in a model, run or dataset folder for reading, once
    /// <see cref="RequireRegular"/> let it through.</summary>
    public static FileStream OpenRegular(string path)
    {
        RequireRegular(path);
        return File.OpenRead(path);
    }

    /// <summary>Refuses, before it is opened, a file of a model, run or dataset folder that is no
    /// regular file: a named pipe (opening it would wait for a writer for ever), a device or a
    /// socket, wherever a symbolic link leads. A path that leads nowhere is let through, for the
    /// caller to say what is missing.</summary>
    public static void RequireRegular(string path)
    {
        if (Irregular(path) is { } kind)
            throw new StratusUserException($"{path} is {kind}, not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself");
    }

    /// <summary>What <paramref name="path"/> leads to, through symbolic links, where that is a named
    /// pipe, a device or a socket ("a named pipe (FIFO)"), for a caller to refuse it in its own
    /// words; null for a regular file, a folder, a path that leads nowhere, or a system without the call.</summary>
    public static string? Irregular(string path) =>
        Kind(path) is var kind and not (FileKind.Regular or FileKind.Missing or FileKind.Directory or FileKind.Unknown) ? Describe(kind) : null;

    /// <summary>Refuses a file that goes on once as many bytes as its size were read from
    /// <paramref name="stream"/>. A pipe has no size and ends when its writer closes it.</summary>
    internal static void RequireEnd(FileStream stream, string path)
    {
        if (stream.CanSeek && stream.ReadByte() != -1)
            throw new StratusUserException($"{path} is no regular file: it reads on past its size of {stream.Length:N0} bytes (a device such as /dev/zero, a kernel file such as /proc's, or a file still being written); replace it with the file itself");
    }

    static string Describe(FileKind kind) => kind switch
    {
        FileKind.Pipe => "a named pipe (FIFO)",
        FileKind.CharacterDevice => "a character device",
        FileKind.BlockDevice => "a block device",
        FileKind.Socket => "a socket",
        _ => kind.ToString(),
    };

    enum FileKind { Missing, Unknown, Regular, Directory, Pipe, CharacterDevice, BlockDevice, Socket }

    /// <summary>What <paramref name="path"/> leads to, through symbolic links, from the type bits
    /// of its mode (the same numbers on Linux and macOS); Unknown where the system has no such
    /// call (Windows, whose folders hold no pipes or devices).</summary>
    static FileKind Kind(string path)
    {
        int mode;
        if (OperatingSystem.IsLinux()) mode = LinuxMode(path);
        else if (OperatingSystem.IsMacOS() && RuntimeInformation.ProcessArchitecture == Architecture.Arm64) mode = MacMode(path);
        else return FileKind.Unknown;
        return mode < 0 ? FileKind.Missing : (mode & 0xF000) switch
        {
            0x8000 => FileKind.Regular,
            0x4000 => FileKind.Directory,
            0x1000 => FileKind.Pipe,
            0x2000 => FileKind.CharacterDevice,
            0x6000 => FileKind.BlockDevice,
            0xC000 => FileKind.Socket,
            _ => FileKind.Unknown,
        };
    }

    // statx's buffer has one layout on every Linux architecture (its mode a 16-bit field at
    // byte 28), unlike struct stat; glibc has had the call since 2.28.
    static unsafe int LinuxMode(string path)
    {
        const int AtCurrentDirectory = -100, TypeMask = 0x1;
        var buffer = stackalloc byte[256];
        return Statx(AtCurrentDirectory, path, 0, TypeMask, buffer) == 0 ? *(ushort*)(buffer + 28) : -1;
    }

    // Apple's arm64 struct stat: a 32-bit st_dev, then the 16-bit st_mode.
    static unsafe int MacMode(string path)
    {
        var buffer = stackalloc byte[256];
        return Stat(path, buffer) == 0 ? *(ushort*)(buffer + 4) : -1;
    }

    [LibraryImport("libc.so.6", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directory, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libSystem.dylib", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* buffer);
}
