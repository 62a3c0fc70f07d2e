// CUBLAS_WORKSPACE_CONFIG as cuBLAS reads it: from the C library's environment (glibc's, as the
// tests run on Linux), which .NET's Environment does not write on Unix.
using System.Runtime.InteropServices;

namespace Stratus.Tests;

public sealed partial class DeterminismTests
{
    const string Variable = "CUBLAS_WORKSPACE_CONFIG";

    [Fact]
    public void Deterministic_mode_gives_cublas_fixed_workspaces_unless_the_user_chose_them()
    {
        var before = Environment();
        try
        {
            unsetenv(Variable);
            Determinism.Apply(false);
            Assert.Null(Environment());
            Determinism.Apply(true);
            Assert.Equal(":4096:8", Environment());
            Assert.Equal(0, setenv(Variable, ":16:8", overwrite: 1));
            Determinism.Apply(true);
            Assert.Equal(":16:8", Environment());
        }
        finally
        {
            Determinism.Apply(false);
            if (before is null) unsetenv(Variable);
            else setenv(Variable, before, overwrite: 1);
        }
    }

    static string? Environment() => Marshal.PtrToStringUTF8(getenv(Variable));

    // getenv's string belongs to the C library: read it, never free it.
    [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint getenv(string name);

    [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);

    [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unsetenv(string name);
}
