// What the machine can do and what the process uses: the measured matmul peak that MFU is
// reported against, a nominal peak from the CPU's clock and vector width, and peak RSS.
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Training;

public static class MachineMeasures
{
    static readonly Dictionary<(ScalarType, string), double> peaks = [];

    /// <summary>Best FLOP/s of a square matmul in the given dtype on the device (measured once
    /// per process and device): the practical peak, since no model step can beat its largest
    /// matmuls. 1024 wide on a CPU; 4096 on a GPU, where a 1024-wide product is over in tens of
    /// microseconds, mostly launch and tail (an H100 measured 30 TFLOP/s in fp32 that way, and
    /// training printed an MFU of 111%).</summary>
    public static double MeasuredMatmulPeak(ScalarType dtype, Device device)
    {
        lock (peaks)
        {
            var key = (dtype, device.ToString());
            if (peaks.TryGetValue(key, out var known)) return known;
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            // Its own generator: measuring must not advance the global RNG a training run depends on.
            using var generator = new Generator(0);
            long side = device.type == DeviceType.CPU ? 1024 : 4096;
            var a = randn(side, side, generator: generator).to(device).to(dtype);
            var b = randn(side, side, generator: generator).to(device).to(dtype);
            matmul(a, b).Dispose(); // warm-up: thread pool and kernel selection
            Finish(device);
            // The best over a quarter of a second, not over a few runs: a burst of other work
            // (a build starting) during a short measurement read the peak at a fraction of itself,
            // and the demo then printed an MFU of 378%.
            var best = double.MaxValue;
            var window = Stopwatch.StartNew();
            for (var i = 0; i < 8 || (window.Elapsed.TotalSeconds < 0.25 && i < 200); i++)
            {
                var watch = Stopwatch.StartNew();
                matmul(a, b).Dispose();
                Finish(device);
                best = Math.Min(best, watch.Elapsed.TotalSeconds);
            }
            return peaks[key] = 2.0 * side * side * side / best;
        }
    }

    /// <summary>Waits for what was queued on a GPU: its kernels run after the call that queues
    /// them returns, and timing only the call measured the launch.</summary>
    static void Finish(Device device)
    {
        if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device);
    }

    /// <summary>Nominal peak of a CPU: cores x clock x FLOPs per cycle (two 512-bit FMA units with
    /// AVX-512, else two 256-bit; bf16 doubles it where the CPU has AVX512_BF16). Null for any
    /// other device (a GPU's is not the host's cores, and libtorch does not say it) and when the
    /// clock cannot be read (non-Linux).</summary>
    public static double? NominalPeak(ScalarType dtype, Device device)
    {
        if (device.type != DeviceType.CPU || !File.Exists("/proc/cpuinfo")) return null;
        var info = File.ReadAllText("/proc/cpuinfo");
        var mhzLine = info.Split('\n').FirstOrDefault(l => l.StartsWith("cpu MHz"));
        if (mhzLine is null || !double.TryParse(mhzLine.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture, out var mhz)) return null;
        var avx512 = info.Contains(" avx512f");
        var lanes = avx512 ? 16 : 8;
        var perCycle = 2 /* FMA units */ * 2 /* mul + add */ * lanes;
        if (dtype == ScalarType.BFloat16 && info.Contains("avx512_bf16")) perCycle *= 2;
        return torch.get_num_threads() * mhz * 1e6 * perCycle;
    }

    /// <summary>Peak resident set size of this process in bytes (VmHWM).</summary>
    public static long PeakRssBytes() => ProcStatusBytes("VmHWM:") ?? Process.GetCurrentProcess().PeakWorkingSet64;

    /// <summary>Current resident set size of this process in bytes (VmRSS).</summary>
    public static long CurrentRssBytes() => ProcStatusBytes("VmRSS:") ?? Environment.WorkingSet;

    /// <summary>A "kB" field of /proc/self/status, in bytes; null where /proc is not available.</summary>
    static long? ProcStatusBytes(string field)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status)) return null;
        foreach (var line in File.ReadLines(status))
        {
            if (line.StartsWith(field)) return long.Parse(line[field.Length..].Trim().Split(' ')[0]) * 1024;
        }
        return null;
    }
}
