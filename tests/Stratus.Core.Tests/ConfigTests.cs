using Stratus.Training;

namespace Stratus.Tests;

public sealed class ConfigTests
{
    static StratusUserException Fails(string json, params (string, string)[] overrides)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["c.json"], json);
        return Assert.Throws<StratusUserException>(() => TrainConfig.Load(temp["c.json"], overrides.Select(o => new KeyValuePair<string, string>(o.Item1, o.Item2))));
    }

    [Fact]
    public void Unknown_key_is_named_with_a_suggestion()
    {
        var message = Fails("""{"learning_rat": 1}""").Message;
        Assert.Contains("unknown config key 'learning_rat'", message);
        Assert.Contains("did you mean 'learning_rate'", message);
    }

    [Fact]
    public void Out_of_range_values_say_what_to_change()
    {
        Assert.Contains("divisible by n_head", Fails("""{"n_embd": 130, "n_head": 4}""").Message);
        Assert.Contains("learning_rate must be positive", Fails("{}", ("learning-rate", "-1")).Message);
        Assert.Contains("over the model's maximum", Fails("{}", ("block_size", "1000000")).Message);
        Assert.Contains("dtype must be", Fails("""{"dtype": "int8"}""").Message);
        Assert.Contains("unknown config key 'n_layers'", Fails("{}", ("n-layers", "2")).Message);
    }

    [Fact]
    public void Command_line_overrides_win_over_the_file()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["c.json"], """{"max_iters": 100, "dtype": "float32", "bias": true}""");
        var config = TrainConfig.Load(temp["c.json"], [new("max-iters", "7"), new("bias", "false"), new("dtype", "bfloat16"), new("min_lr", "1e-5")]);
        Assert.Equal(7, config.MaxIters);
        Assert.False(config.Bias);
        Assert.Equal("bfloat16", config.Dtype);
        Assert.Equal(1e-5, config.MinLr);
    }

    [Fact]
    public void Shipped_configs_load_and_match_nanoGPT()
    {
        var root = TempDirectory.RepositoryRoot;
        var cpu = TrainConfig.Load(Path.Combine(root, "configs", "shakespeare-char-cpu.json"), []);
        Assert.Equal((4, 4, 128, 64, 12), (cpu.NLayer, cpu.NHead, cpu.NEmbd, cpu.BlockSize, cpu.BatchSize));
        Assert.Equal((1e-3, 1e-4, 0.99, 100, 2000, 2000, 0.0), (cpu.LearningRate, cpu.MinLr, cpu.Beta2, cpu.WarmupIters, cpu.MaxIters, cpu.LrDecayIters, cpu.Dropout));
        Assert.Equal((250, 20), (cpu.EvalInterval, cpu.EvalIters));
        var gpu = TrainConfig.Load(Path.Combine(root, "configs", "shakespeare-char.json"), []);
        Assert.Equal((6, 6, 384, 256, 64, 0.2, 5000), (gpu.NLayer, gpu.NHead, gpu.NEmbd, gpu.BlockSize, gpu.BatchSize, gpu.Dropout, gpu.MaxIters));
        var gpt2 = TrainConfig.Load(Path.Combine(root, "configs", "gpt2-124m.json"), []);
        Assert.Equal((12, 12, 768, 1024), (gpt2.NLayer, gpt2.NHead, gpt2.NEmbd, gpt2.BlockSize));
    }
}
