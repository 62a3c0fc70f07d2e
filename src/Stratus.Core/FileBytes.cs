// Files that users hand Stratus (a model, run or dataset folder from elsewhere) are read for the
// bytes their size says they hold. A device a symbolic link there leads to, such as /dev/zero,
// has a size of 0 and no end: read to its end, it would fill memory or never finish.
namespace Stratus;

public static class FileBytes
{
    /// <summary>The bytes of the file at <paramref name="path"/>; one that reads on past its size
    /// (a device) or is too large to hold is refused naming it.</summary>
    public static byte[] ReadAll(string path)
    {
        using var stream = File.OpenRead(path);
        if (stream.Length > Array.MaxLength) throw new StratusUserException($"{path} is too large to read ({stream.Length:N0} bytes)");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        RequireEnd(stream, path);
        return bytes;
    }

    /// <summary>Refuses a file that goes on once as many bytes as its size were read from
    /// <paramref name="stream"/>. A pipe has no size and ends when its writer closes it.</summary>
    internal static void RequireEnd(FileStream stream, string path)
    {
        if (stream.CanSeek && stream.ReadByte() != -1)
            throw new StratusUserException($"{path} is no regular file: it reads on past its size of {stream.Length:N0} bytes (a device such as /dev/zero, or a file still being written); replace it with the file itself");
    }
}
