// The sha256 that manifests and meta.json record for a file, as lowercase hex (sha256sum's
// spelling), read as a stream so a multi-gigabyte weight file is never held in memory.
using System.Security.Cryptography;

namespace Stratus;

public static class FileHash
{
    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
