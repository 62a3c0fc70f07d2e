// A Stratus whose libtorch cannot be loaded (its files missing next to stratus.dll in a copied or
// hand-published folder, a libstdc++ older than the unpatched TorchSharp library needs, an
// unsupported platform, a CUDA build without the CUDA libraries) ends with one line on stderr and
// exit code 2: the library, the loader's own reason and the fix. Left alone, TorchSharp writes 40
// lines to standard output and throws a TypeInitializationException, or a P/Invoke of Stratus's
// own into libtorch throws DllNotFoundException, and .NET aborts with a stack trace.
//
// The hook is the runtime's last resort for a native library, AssemblyLoadContext's
// ResolvingUnmanagedDll event: it is raised only once the usual search (the folder of the asking
// assembly, then the system's, LD_LIBRARY_PATH included, where a Python PyTorch's torch/lib
// serves) has found nothing. So a command that never touches libtorch pays nothing for it, and
// one that loads libtorch pays nothing more. TorchSharp loads its libraries with
// NativeLibrary.TryLoad, which raises this event (it does not consult a DllImportResolver), but it
// catches what the event throws and goes on to write its message to stdout: so the process ends
// here, in the event, the last point at which Stratus still has it.
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using Stratus.Distributed;

namespace Stratus.Cli;

static class LibTorchLoadFailure
{
    /// <summary>From now on, a libtorch library that cannot be loaded ends the process (every rank
    /// of a data-parallel job) with one line and exit code 2. Call once, at start-up.</summary>
    public static void EndProcessWithOneLine() => AssemblyLoadContext.Default.ResolvingUnmanagedDll += OnNotFound;

    static nint OnNotFound(Assembly assembly, string name)
    {
        if (!IsNeeded(assembly, name)) return 0;
        // Where Stratus's build puts it, else where the system looks for it: loaded again for the
        // loader's own words about why it failed.
        var file = OperatingSystem.IsWindows() ? $"{name}.dll" : OperatingSystem.IsMacOS() ? $"lib{name}.dylib" : $"lib{name}.so";
        var beside = Path.Combine(AppContext.BaseDirectory, file);
        try
        {
            return NativeLibrary.Load(File.Exists(beside) ? beside : file);
        }
        catch (DllNotFoundException e)
        {
            Communicator.AbortJob($"error: cannot load libtorch ({file}): {LoaderReason(e)}; build Stratus with ./stratus, dotnet build or dotnet publish, which put libtorch next to stratus.dll with the fix for an older libstdc++; a Stratus copied by hand needs those files next to its stratus.dll, in {Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)} (README, Building)", 2);
            Environment.Exit(2);
            throw;
        }
    }

    /// <summary>LibTorchSharp is the library TorchSharp cannot run without, and Stratus's own
    /// P/Invokes into libtorch (torch_cpu, LibTorchSharp) throw without theirs. TorchSharp's
    /// loads of libtorch's torch_* libraries before LibTorchSharp only help it along, and it goes
    /// on without them: a CPU build's `--device cuda` misses torch_cuda there on purpose
    /// (ComputeDevice then says how to build for a GPU).</summary>
    static bool IsNeeded(Assembly assembly, string name) =>
        name == "LibTorchSharp" || name.StartsWith("torch_", StringComparison.Ordinal) && assembly != typeof(TorchSharp.torch).Assembly;

    /// <summary>The loader's message, without .NET's advice around it: its last line (dlerror's
    /// on Linux and macOS, the one line of Windows's).</summary>
    static string LoaderReason(DllNotFoundException e) =>
        e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
}
