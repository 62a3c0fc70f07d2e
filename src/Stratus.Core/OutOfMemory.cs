// An allocation the device could not make: a batch, a context or a model too large for it. The
// user fixes that with smaller settings, so it is reported as one line, not as a crash. libtorch
// raises it as a plain ExternalException (PyTorch's OutOfMemoryError has no TorchSharp type), so
// it is known by the words of libtorch's allocators.
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Stratus;

public static partial class OutOfMemory
{
    // c10's CPU allocator: "DefaultCPUAllocator: can't allocate memory: you tried to allocate N
    // bytes." (malloc failed) or "... not enough memory: you tried to allocate N bytes." (over the
    // allocator's limit).
    [GeneratedRegex(@"DefaultCPUAllocator: (can't allocate memory|not enough memory): you tried to allocate (?<bytes>\d+) bytes")]
    private static partial Regex CpuAllocator();

    // c10's CUDA caching allocator: "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a
    // total capacity of 79.19 GiB of which 1.25 GiB is free. ..." (the rest is advice for PyTorch
    // users about its allocator settings); or a CUDA call that failed for want of memory.
    [GeneratedRegex(@"CUDA out of memory\. Tried to allocate (?<size>[\d.]+ \w+)\.( (?<gpu>GPU \d+ has a total capacity of [\d.]+ \w+ of which [\d.]+ \w+ is free))?")]
    private static partial Regex CudaAllocator();

    /// <summary>Whether <paramref name="e"/> is an allocation that failed for want of memory.</summary>
    public static bool Is(Exception e) =>
        e is OutOfMemoryException
        || e is ExternalException && (CpuAllocator().IsMatch(e.Message) || CudaAllocator().IsMatch(e.Message)
            || e.Message.Contains("CUDA error: out of memory", StringComparison.Ordinal));

    /// <summary>What could not be allocated, in a clause: "out of GPU memory: could not allocate
    /// 20.00 GiB (GPU 0 has a total capacity of 79.19 GiB of which 1.25 GiB is free)" or "out of
    /// memory: could not allocate 122.1 GiB".</summary>
    public static string Describe(Exception e)
    {
        if (CudaAllocator().Match(e.Message) is { Success: true } cuda)
            return $"out of GPU memory: could not allocate {cuda.Groups["size"].Value}"
                + (cuda.Groups["gpu"].Success ? $" ({cuda.Groups["gpu"].Value})" : "");
        if (e.Message.Contains("CUDA error: out of memory", StringComparison.Ordinal)) return "out of GPU memory";
        if (CpuAllocator().Match(e.Message) is { Success: true } cpu
            && long.TryParse(cpu.Groups["bytes"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes))
            return $"out of memory: could not allocate {Size(bytes)}";
        return "out of memory";
    }

    static string Size(long bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (double)(1L << 30)).ToString("0.0 GiB", CultureInfo.InvariantCulture),
        >= 1L << 20 => (bytes / (double)(1L << 20)).ToString("0.0 MiB", CultureInfo.InvariantCulture),
        _ => $"{bytes} bytes",
    };
}
