// --decode-weights, shared by sample and serve: what decode steps of up to DecodeKernel.MaxRows
// rows multiply with.
using System.CommandLine;
using Stratus.Models;

namespace Stratus.Cli;

sealed class DecodeWeightsOption
{
    public Option<string> Option { get; } = new("--decode-weights")
    {
        Description = "what decode steps of up to 8 rows multiply with: fp32 (Stratus decode kernel, weights read in place), bf16 (the kernel over bf16 copies: faster, bf16 rounding) or torch (libtorch matmuls)",
        DefaultValueFactory = _ => "fp32",
    };

    public DecodeWeightsOption() => Option.AcceptOnlyFromAmong("fp32", "bf16", "torch");

    public DecodeWeights Value(ParseResult result) => result.GetValue(Option) switch
    {
        "fp32" => DecodeWeights.Float32,
        "bf16" => DecodeWeights.BFloat16,
        _ => DecodeWeights.Torch,
    };
}
