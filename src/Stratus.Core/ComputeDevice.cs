// Where a model runs, named as nanoGPT names it: "cpu", "cuda" (the first visible NVIDIA GPU) or
// "cuda:N". A name is checked for its form wherever it is read, and for whether this process can
// use it only when a model is put there: a checkpoint trained on a GPU stays readable (sampled,
// resumed with --device cpu) on a machine without one.
using System.Reflection;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus;

public static partial class ComputeDevice
{
    public const string Cpu = "cpu";

    [GeneratedRegex(@"^(cpu|cuda(:(0|[1-9][0-9]{0,3}))?)$")]
    private static partial Regex Name();

    /// <summary>The libtorch this assembly was built against: "cpu" or "cuda"
    /// (-p:StratusTorchBackend, stamped in by Stratus.Core.csproj). It only picks the words of
    /// the error when CUDA is missing; whether it is there is libtorch's to say.</summary>
    static string Backend => typeof(ComputeDevice).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .FirstOrDefault(a => a.Key == "StratusTorchBackend")?.Value ?? Cpu;

    /// <summary>Refuses a name other than cpu, cuda or cuda:N.</summary>
    public static void Validate(string name)
    {
        if (!Name().IsMatch(name))
            throw new StratusUserException($"device must be cpu, cuda or cuda:N (an NVIDIA GPU by its index), got '{name}'");
    }

    /// <summary>The device <paramref name="name"/> names, once it is known that this process can
    /// put tensors there.</summary>
    public static Device Open(string name)
    {
        Validate(name);
        if (name == Cpu) return CPU;
        if (!cuda.is_available())
            throw new StratusUserException(Backend == "cuda"
                ? $"device {name}: libtorch sees no NVIDIA GPU (check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES); or use --device cpu"
                : $"device {name}: this Stratus is built with the CPU-only libtorch; build it with -p:StratusTorchBackend=cuda for NVIDIA GPUs (README, Building), or use --device cpu");
        var device = torch.device(name);
        var visible = cuda.device_count();
        if (device.index >= visible)
            throw new StratusUserException($"device {name}: libtorch sees {visible} GPU(s), cuda:0 to cuda:{visible - 1}");
        // float32 matmuls on a GPU run in TF32, as nanoGPT sets them (its configs are Stratus's):
        // an H100 trained the baby GPT config at 35 ms/step in full fp32, 17 in TF32, nanoGPT 15.
        backends.cuda.matmul.allow_tf32 = true;
        return device;
    }
}
