// Where models run, checked on a CPU-only machine: a GPU asked of a build without CUDA is one
// clear error, and what training makes for a device is made there, shown with torch.META
// (tensors with shapes and no storage). A whole model step cannot run on META: this libtorch has
// no META kernel for index_select (embedding lookups) or where (attention masks).
using Stratus.Data;
using Stratus.Models;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class DeviceTests
{
    [Fact]
    public void Asking_a_build_without_cuda_for_a_gpu_says_how_to_get_one()
    {
        Assert.Equal(DeviceType.CPU, ComputeDevice.Open("cpu").type);
        // The tests run on the CPU build; with CUDA and a GPU, cuda opens instead.
        if (torch.cuda.is_available())
        {
            Assert.Equal(DeviceType.CUDA, ComputeDevice.Open("cuda").type);
            Assert.True(backends.cuda.matmul.allow_tf32); // TF32, as nanoGPT
            return;
        }
        foreach (var name in new[] { "cuda", "cuda:1" })
            Assert.Equal($"device {name}: this Stratus is built with the CPU-only libtorch; build it with -p:StratusTorchBackend=cuda for NVIDIA GPUs (README, Building), or use --device cpu",
                Assert.Throws<StratusUserException>(() => ComputeDevice.Open(name)).Message);
        Assert.StartsWith("device must be", Assert.Throws<StratusUserException>(() => ComputeDevice.Open("gpu")).Message);
    }

    [Fact]
    public void Training_batches_are_made_on_the_device_asked_for()
    {
        using var temp = new TempDirectory();
        using var sampler = new BatchSampler(TestData.PrepareCharDataset(temp), batchSize: 2, blockSize: 8, seed: 1);
        var (inputs, targets, _) = sampler.Sample(Split.Train, 0, 0, META);
        var (tiledInputs, tiledTargets) = sampler.Tiled(Split.Val, 0, META);
        foreach (var batch in new[] { inputs, targets, tiledInputs, tiledTargets })
        {
            Assert.Equal(DeviceType.META, batch.device_type);
            batch.Dispose();
        }
    }

    [Fact]
    public void The_matmul_peak_is_measured_for_each_device()
    {
        var cpu = MachineMeasures.MeasuredMatmulPeak(ScalarType.Float32, CPU);
        // A matmul on META computes nothing: its "peak" is far above any CPU's.
        Assert.True(MachineMeasures.MeasuredMatmulPeak(ScalarType.Float32, META) > 10 * cpu);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void A_model_with_lora_adapters_moves_to_another_device(string name)
    {
        // Models are built on the CPU and moved (Trainer, Checkpoint): fine-tuning with LoRA on a
        // GPU threw ArgumentException from TorchSharp's Module.to ("same key ... Item") there.
        var config = ParityTests.Config(name) with { Lora = new LoraConfig(2, 4, Lora.DefaultTargets(name)) };
        using var model = CausalLanguageModel.Create(config);
        model.to(META);
        Assert.All(model.state_dict().Values, weight => Assert.Equal(DeviceType.META, weight.device_type));
        Assert.Contains(model.state_dict().Keys, key => key.StartsWith("lora.") && key.EndsWith(".lora_A"));
    }

    [Fact]
    public void A_nominal_peak_is_the_cpus_alone()
    {
        // From the host's cores and clock: a GPU run reported MFU against it (1,540% on an H100).
        Assert.NotNull(MachineMeasures.NominalPeak(ScalarType.Float32, CPU));
        Assert.Null(MachineMeasures.NominalPeak(ScalarType.Float32, META));
    }
}
