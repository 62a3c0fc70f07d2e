// --decode-weights, shared by sample and serve: what decode steps of up to DecodeKernel.MaxRows
// rows multiply with. The decode kernel runs on the CPU: a model on a GPU decodes through libtorch
// whatever this says, so asking for the kernel there is refused rather than ignored.
using System.CommandLine;
using Stratus.Models;

namespace Stratus.Cli;

sealed class DecodeWeightsOption
{
    public Option<string> Option { get; } = new("--decode-weights")
    {
        Description = "what decode steps of up to 8 rows multiply with on the CPU: fp32 (Stratus decode kernel, weights read in place), bf16 (the kernel over bf16 copies: faster, bf16 rounding) or torch (libtorch matmuls, as on a GPU)",
        DefaultValueFactory = _ => "fp32",
    };

    public DecodeWeightsOption() => Option.AcceptOnlyFromAmong("fp32", "bf16", "torch");

    /// <param name="device">The --device given, already checked for its form.</param>
    public DecodeWeights Value(ParseResult result, string device)
    {
        var name = result.GetValue(Option);
        if (device != ComputeDevice.Cpu && name != "torch" && result.GetResult(Option) is { Implicit: false })
            throw new StratusUserException($"--decode-weights {name} picks Stratus's CPU decode kernel; on --device {device} every step runs through libtorch: leave --decode-weights out");
        return name switch
        {
            "fp32" => DecodeWeights.Float32,
            "bf16" => DecodeWeights.BFloat16,
            _ => DecodeWeights.Torch,
        };
    }
}
