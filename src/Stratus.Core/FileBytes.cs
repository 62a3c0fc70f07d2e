// Files that users hand Stratus (a model, run or dataset folder from elsewhere) are read for the
// bytes their size says they hold. A device a symbolic link there leads to, such as /dev/zero,
// has a size of 0 and no end: read to its end, it would fill memory or never finish.
namespace Stratus;

public static class FileBytes
{
    /// <summary>The bytes of the file at <paramref name="path"/>, as many as its size says or
    /// fewer where it ends sooner (it shrank while read); one that reads on past its size (a
    /// device) or is too large to hold is refused naming it. A pipe (`--config &lt;(...)`,
    /// /dev/stdin) has no size: it is read to its end, which its writer's close makes.</summary>
    public static byte[] ReadAll(string path)
    {
        using var stream = File.OpenRead(path);
        if (!stream.CanSeek)
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

    /// <summary>Refuses a file that goes on once as many bytes as its size were read from
    /// <paramref name="stream"/>. A pipe has no size and ends when its writer closes it.</summary>
    internal static void RequireEnd(FileStream stream, string path)
    {
        if (stream.CanSeek && stream.ReadByte() != -1)
            throw new StratusUserException($"{path} is no regular file: it reads on past its size of {stream.Length:N0} bytes (a device such as /dev/zero, or a file still being written); replace it with the file itself");
    }
}
