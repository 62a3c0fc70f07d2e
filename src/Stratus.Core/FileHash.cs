// The sha256 that manifests and meta.json record for a file, as lowercase hex (sha256sum's
// spelling), read as a stream so a multi-gigabyte weight file is never held in memory.
using System.Security.Cryptography;

namespace Stratus;

public static class FileHash
{
    /// <summary>The file's sha256. A file found in a folder must be a regular one (see
    /// <see cref="FileBytes.RequireRegular"/>); one the user named (<paramref name="namedByUser"/>)
    /// may be a pipe, hashed to its end.</summary>
    public static string Sha256(string path, bool namedByUser = false)
    {
        using var stream = namedByUser ? File.OpenRead(path) : FileBytes.OpenRegular(path);
        if (!stream.CanSeek) return Convert.ToHexStringLower(SHA256.HashData(stream));
        // As many bytes as the file's size (see FileBytes): a checkpoint file that is a link to
        // /dev/zero would otherwise be hashed for ever.
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        for (var left = stream.Length; left > 0;)
        {
            var read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (read == 0) break;
            hash.AppendData(buffer, 0, read);
            left -= read;
        }
        FileBytes.RequireEnd(stream, path);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
