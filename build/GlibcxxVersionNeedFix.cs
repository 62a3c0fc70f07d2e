// MSBuild task (compiled by RoslynCodeTaskFactory from build/Stratus.Native.targets).
//
// Why this exists: TorchSharp 0.107.0's libLibTorchSharp.so was linked against GCC 13's
// libstdc++ and declares a version need for GLIBCXX_3.4.32 through exactly one symbol,
// std::ios_base_library_init(), which nothing calls (no relocation references it). Debian 12
// and Ubuntu 22.04 ship GCC 12's libstdc++ (up to GLIBCXX_3.4.30), so the dynamic loader
// refuses the library. Marking that one version need WEAK (VER_FLG_WEAK in vna_flags of its
// Vernaux entry in .gnu.version_r) makes the loader accept it; nothing else changes.
// No tool in the .NET or Debian toolchain edits a single ELF version flag (patchelf cannot),
// so the few lines of ELF parsing live here.
using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class GlibcxxVersionNeedFix : Task
{
    const string Version = "GLIBCXX_3.4.32";
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Folders to search (not recursively) for libLibTorchSharp.so.</summary>
    [Required] public string[] Directories { get; set; } = Array.Empty<string>();

    /// <summary>Patch even when this machine's libstdc++ has the version (for packages built
    /// here that run elsewhere).</summary>
    public bool Force { get; set; }

    public override bool Execute()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return true;
        if (!Force && SystemLibstdcxxHas(Version))
        {
            Log.LogMessage(MessageImportance.Low, $"libstdc++ provides {Version}: no fix needed.");
            return true;
        }
        foreach (var dir in Directories)
        {
            var path = Path.Combine(dir, "libLibTorchSharp.so");
            if (!File.Exists(path)) continue;
            try
            {
                var result = MarkVersionNeedWeak(path, Version);
                Log.LogMessage(result == PatchResult.Patched ? MessageImportance.High : MessageImportance.Low,
                    $"{path}: {Version} version need {(result == PatchResult.Patched ? "marked weak" : result == PatchResult.AlreadyWeak ? "already weak" : "absent")}.");
            }
            catch (Exception e)
            {
                Log.LogError($"Could not apply the libstdc++ compatibility fix to {path}: {e.Message}");
                return false;
            }
        }
        return true;
    }

    static bool SystemLibstdcxxHas(string version)
    {
        string[] candidates =
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        };
        var needle = Encoding.ASCII.GetBytes(version + "\0");
        foreach (var candidate in candidates)
        {
            if (!File.Exists(candidate)) continue;
            var bytes = File.ReadAllBytes(candidate);
            return Contains(bytes, needle);
        }
        return false; // no libstdc++ found where expected: patching is harmless
    }

    static bool Contains(byte[] haystack, byte[] needle)
    {
        for (var i = 0; i <= haystack.Length - needle.Length; i++)
        {
            var j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return true;
        }
        return false;
    }

    public enum PatchResult { Absent, AlreadyWeak, Patched }

    public static PatchResult MarkVersionNeedWeak(string path, string version)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        using var reader = new BinaryReader(file, Encoding.ASCII, leaveOpen: true);
        var ident = reader.ReadBytes(16);
        if (ident.Length < 16 || ident[0] != 0x7f || ident[1] != (byte)'E' || ident[2] != (byte)'L' || ident[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (ident[4] != 2 || ident[5] != 1) throw new InvalidDataException("only 64-bit little-endian ELF is supported");

        file.Position = 0x28; var shoff = reader.ReadUInt64();
        file.Position = 0x3A; var shentsize = reader.ReadUInt16(); var shnum = reader.ReadUInt16();
        for (var i = 0; i < shnum; i++)
        {
            var header = (long)shoff + (long)i * shentsize;
            file.Position = header + 4; var type = reader.ReadUInt32();
            if (type != ShtGnuVerneed) continue;
            file.Position = header + 24; var offset = (long)reader.ReadUInt64();
            file.Position = header + 40; var link = reader.ReadUInt32(); var count = reader.ReadUInt32();
            var strtabHeader = (long)shoff + (long)link * shentsize;
            file.Position = strtabHeader + 24; var strtab = (long)reader.ReadUInt64();

            var need = offset;
            for (var n = 0; n < count; n++)
            {
                file.Position = need + 2; var auxCount = reader.ReadUInt16();
                file.Position = need + 8; var auxOffset = reader.ReadUInt32(); var next = reader.ReadUInt32();
                var aux = need + auxOffset;
                for (var a = 0; a < auxCount; a++)
                {
                    file.Position = aux + 4; var flags = reader.ReadUInt16();
                    file.Position = aux + 8; var name = reader.ReadUInt32(); var auxNext = reader.ReadUInt32();
                    if (ReadCString(file, strtab + name) == version)
                    {
                        if ((flags & VerFlgWeak) != 0) return PatchResult.AlreadyWeak;
                        file.Position = aux + 4;
                        file.Write(BitConverter.GetBytes((ushort)(flags | VerFlgWeak)), 0, 2);
                        file.Flush(true);
                        return PatchResult.Patched;
                    }
                    aux += auxNext;
                }
                need += next;
            }
        }
        return PatchResult.Absent;
    }

    static string ReadCString(Stream stream, long position)
    {
        stream.Position = position;
        var builder = new StringBuilder();
        int b;
        while ((b = stream.ReadByte()) > 0) builder.Append((char)b);
        return builder.ToString();
    }
}
