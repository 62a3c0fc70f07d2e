// --decode-weights, shared by sample, serve and demo: what decode steps of up to
// DecodeKernel.MaxRows rows multiply with. Its default is the engine's (EngineOptions), so a
// model sampled by any verb and served decodes alike unless asked otherwise. The decode kernel runs on the CPU: a model on a GPU decodes through libtorch
// whatever this says, so asking for the kernel there is refused rather than ignored.
using System.CommandLine;
using Stratus.Inference;
using Stratus.Models;

namespace Stratus.Cli;

sealed class DecodeWeightsOption
{
    static readonly Dictionary<string, DecodeWeights> Names = new()
    {
        ["fp32"] = DecodeWeights.Float32,
        ["bf16"] = DecodeWeights.BFloat16,
        ["torch"] = DecodeWeights.Torch,
    };

    public Option<string> Option { get; } = new("--decode-weights")
    {
        Description = "what decode steps of up to 8 rows multiply with on the CPU: fp32 (Stratus decode kernel, weights read in place), bf16 (the kernel over bf16 copies: faster, bf16 rounding) or torch (libtorch matmuls, as on a GPU)",
        DefaultValueFactory = _ => Names.Single(n => n.Value == new EngineOptions().DecodeWeights).Key,
    };

    public DecodeWeightsOption() => Option.AcceptOnlyFromAmong([.. Names.Keys]);

    /// <param name="device">The --device given, already checked for its form.</param>
    public DecodeWeights Value(ParseResult result, string device)
    {
        var name = result.GetValue(Option)!;
        var weights = Names[name];
        if (device != ComputeDevice.Cpu && weights != DecodeWeights.Torch && result.GetResult(Option) is { Implicit: false })
            throw new StratusUserException($"--decode-weights {name} picks Stratus's CPU decode kernel; on --device {device} every step runs through libtorch: leave --decode-weights out");
        return weights;
    }
}
