// --device, shared by the verbs that load a trained model (sample, eval, serve). train, bench
// train and demo take the config key `device` instead, as --device too (ConfigOptions).
using System.CommandLine;
using static TorchSharp.torch;

namespace Stratus.Cli;

sealed class DeviceOption
{
    public Option<string> Option { get; } = new("--device")
    {
        Description = "where the model runs: cpu, cuda (the first visible NVIDIA GPU) or cuda:N; a GPU needs Stratus built with -p:StratusTorchBackend=cuda",
        DefaultValueFactory = _ => ComputeDevice.Cpu,
    };

    /// <summary>The device's name, checked for its form only.</summary>
    public string Name(ParseResult result)
    {
        var name = result.GetValue(Option)!;
        ComputeDevice.Validate(name);
        return name;
    }

    /// <summary>The device, once this process can use it.</summary>
    public Device Open(ParseResult result) => ComputeDevice.Open(Name(result));
}
