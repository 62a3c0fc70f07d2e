// Training that repeats itself bit for bit on a GPU, as PyTorch's
// torch.use_deterministic_algorithms(True) with CUBLAS_WORKSPACE_CONFIG=:4096:8 makes it (Lightning's
// Trainer(deterministic=True), Hugging Face's full_determinism). libtorch then takes the
// deterministic path of kernels that have one (flash and memory-efficient attention backward
// without atomics; cuDNN attention is left out) and throws on an op that has none; cuBLAS with
// fixed workspaces sums in one order. The CPU's kernels repeat themselves without it.
//
// By hand because TorchSharp declares torch.use_deterministic_algorithms but throws
// NotImplementedException, and LibTorchSharp exports nothing for it: libtorch_cpu's own
// at::Context methods are called by their Itanium C++ ABI names (the object as the first
// argument, a bool as one byte), which Linux and macOS share. Windows's MSVC names are not
// guessed: deterministic training is refused there.
using System.Runtime.InteropServices;

namespace Stratus;

public static partial class Determinism
{
    const string CublasWorkspaceVariable = "CUBLAS_WORKSPACE_CONFIG";
    /// <summary>NVIDIA's setting for reproducible cuBLAS results (cuBLAS guide, "Results reproducibility").</summary>
    const string CublasWorkspaceConfig = ":4096:8";

    static bool Supported => OperatingSystem.IsLinux() || OperatingSystem.IsMacOS();

    /// <summary>Turns libtorch's deterministic algorithms on or off for the whole process. Every
    /// run sets it to its own config's value, so a run never inherits an earlier one's. Call it
    /// before the run's first matmul on a GPU: cuBLAS takes CUBLAS_WORKSPACE_CONFIG when libtorch
    /// first uses it.</summary>
    /// <exception cref="StratusUserException"><paramref name="on"/> on Windows.</exception>
    public static void Apply(bool on)
    {
        if (!Supported)
        {
            if (on) throw new StratusUserException("deterministic training needs Linux or macOS: TorchSharp cannot switch libtorch's deterministic algorithms on, and Stratus reaches them only there; train with --deterministic false");
            return;
        }
        // Through libc: .NET's Environment.SetEnvironmentVariable stays in .NET's own copy on
        // Unix, where cuBLAS never sees it. A value the user set is theirs to keep.
        if (on && OperatingSystem.IsLinux()) setenv(CublasWorkspaceVariable, CublasWorkspaceConfig, overwrite: 0);
        setDeterministicAlgorithms(globalContext(), on, warnOnly: false);
    }

    /// <summary>libtorch's deterministic-algorithms flag, read back from libtorch (false where
    /// Stratus cannot reach it, as it never turns it on there).</summary>
    public static bool Enabled => Supported && deterministicAlgorithms(globalContext());

    /// <summary>at::globalContext(): the process's at::Context.</summary>
    [LibraryImport("torch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static partial nint globalContext();

    /// <summary>at::Context::setDeterministicAlgorithms(bool enabled, bool warn_only).</summary>
    [LibraryImport("torch_cpu", EntryPoint = "_ZN2at7Context26setDeterministicAlgorithmsEbb")]
    private static partial void setDeterministicAlgorithms(nint context, [MarshalAs(UnmanagedType.U1)] bool enabled, [MarshalAs(UnmanagedType.U1)] bool warnOnly);

    /// <summary>at::Context::deterministicAlgorithms() const.</summary>
    [LibraryImport("torch_cpu", EntryPoint = "_ZNK2at7Context23deterministicAlgorithmsEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static partial bool deterministicAlgorithms(nint context);

    [LibraryImport("libc.so.6", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int setenv(string name, string value, int overwrite);
}
