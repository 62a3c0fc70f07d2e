using System.Text.Json;
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
        // A key like none of them gets the list, not the least unlike key as a guess.
        Assert.Contains("unknown config key 'colour' in ", message = Fails("""{"colour": 1}""").Message);
        Assert.DoesNotContain("did you mean", message);
        Assert.Contains("Valid keys: ", message);
    }

    [Fact]
    public void A_constant_learning_rate_below_the_default_min_lr_is_nanogpts_fine_tune_and_a_decay_to_above_it_names_the_fix()
    {
        // nanoGPT's finetune_shakespeare.py: learning_rate 3e-5, decay_lr False, min_lr left at its
        // default 6e-5, which the schedule then never reads; nor lr_decay_iters, nor warmup_iters.
        var constant = TrainConfig.Load(null, [new("learning_rate", "3e-5"), new("decay_lr", "false"), new("warmup_iters", "5000"), new("lr_decay_iters", "100")]);
        Assert.Equal(3e-5, LearningRateSchedule.At(constant, 0));
        var decaying = Fails("{}", ("learning_rate", "3e-5"));
        Assert.Equal("min_lr", decaying.Param);
        Assert.Contains("pass --min-lr at most 3E-05", decaying.Message);
        Assert.Contains("'overrides.min_lr'", decaying.MessageOn(Stratus.Safety.Surface.Api));
        Assert.Contains("min_lr must be non-negative", Fails("{}", ("min_lr", "-1"), ("decay_lr", "false")).Message);
    }

    [Fact]
    public void LoRA_targets_without_a_rank_are_refused_for_a_new_run_not_trained_in_full_and_a_stored_config_still_reads()
    {
        const string Expected = "lora_targets q_proj,v_proj names layers to adapt, but lora_rank is 0 (LoRA off: every weight would train); pass --lora-rank 8 (or another rank) to train adapters on them, or leave lora_targets out to train every weight";
        var refused = Fails("{}", ("lora-targets", "q_proj,v_proj"));
        Assert.Equal((Expected, "lora_targets"), (refused.Message, refused.Param));
        Assert.Contains("pass 'overrides.lora_rank' 8", refused.MessageOn(Stratus.Safety.Surface.Api));
        // Before the model a fine-tune starts from is opened.
        Assert.Equal(Expected, Assert.Throws<StratusUserException>(() => TrainConfig.LoadInitFrom(null, [new("lora_targets", "q_proj,v_proj")],
            () => throw new InvalidOperationException("the model was opened before the config was checked"))).Message);
        Assert.Equal(4, TrainConfig.Load(null, [new("lora_targets", "q_proj,v_proj"), new("lora_rank", "4")]).LoraRank);
        // A config a checkpoint stored (Checkpoint.Open reads it through FromJson) is read as it was saved.
        var stored = System.Text.Json.Nodes.JsonNode.Parse("""{"lora_targets": "c_attn"}""")!.AsObject();
        Assert.Equal("c_attn", TrainConfig.FromJson(stored, "train_config.json").LoraTargets);
    }

    [Fact]
    public void Out_of_range_values_say_what_to_change()
    {
        Assert.Contains("divisible by n_head", Fails("""{"n_embd": 130, "n_head": 4}""").Message);
        Assert.Contains("learning_rate must be positive", Fails("{}", ("learning-rate", "-1")).Message);
        Assert.Contains("over the model's maximum", Fails("{}", ("block_size", "1000000")).Message);
        Assert.Contains("dtype must be", Fails("""{"dtype": "int8"}""").Message);
        Assert.Contains("unknown config key 'n_layers'", Fails("{}", ("n-layers", "2")).Message);
        // A size to lower is train's option on the CLI, the submission's override on the API.
        var tooDeep = Fails("{}", ("n-layer", "2000"));
        Assert.Equal(("n_layer 2000 is over 1,024; lower --n-layer", "n_layer 2000 is over 1,024; lower 'overrides.n_layer'", "n_layer"),
            (tooDeep.Message, tooDeep.MessageOn(Stratus.Safety.Surface.Api), tooDeep.Param));
    }

    [Fact]
    public void A_value_of_the_wrong_kind_names_its_key_where_it_came_from_and_what_to_write()
    {
        Assert.Equal("--batch-size: batch_size must be a whole number, got \"abc\"", Fails("{}", ("batch-size", "abc")).Message);
        Assert.EndsWith("c.json: bias must be true or false, got 1", Fails("""{"bias": 1}""").Message);
        Assert.Equal("--n-layer: n_layer must be a whole number, got 2.5", Fails("""{"n_layer": "four"}""", ("n_layer", "2.5")).Message);
    }

    [Fact]
    public void Nulls_duplicate_keys_and_numbers_json_cannot_hold_are_refused()
    {
        Assert.EndsWith("c.json: lora_targets must not be null; leave it out for its default", Fails("""{"lora_rank": 2, "lora_targets": null}""").Message);
        Assert.Contains("Duplicate property 'n_layer'", Fails("""{"n_layer": 1, "n_layer": 2}""").Message);
        Assert.Equal("--learning-rate: learning_rate must be a number, got \"Infinity\"", Fails("{}", ("learning-rate", "Infinity")).Message);
        Assert.Equal("--dropout: dropout must be a number, got \"NaN\"", Fails("{}", ("dropout", "NaN")).Message);
        Assert.Contains("n_embd 2000000000 is over", Fails("{}", ("n_embd", "2000000000"), ("n_head", "1")).Message);
    }

    [Fact]
    public void Malformed_json_is_placed_by_line_and_column_counted_from_one()
    {
        Assert.EndsWith("c.json is not valid JSON at line 3, column 3: 'o' is an invalid start of a property name. Expected a '\"'.",
            Fails("{\n  \"n_layer\": 4,\n  oops\n}").Message);
    }

    [Fact]
    public void A_file_with_a_byte_order_mark_loads_and_a_string_that_is_no_text_is_refused_in_one_line()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["bom.json"], """{"n_layer": 3}""", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        Assert.Equal(3, TrainConfig.Load(temp["bom.json"], []).Model.NLayer);
        // The parser takes the escape of half a surrogate pair; reading the string threw InvalidOperationException.
        Assert.EndsWith("c.json: a string holds a \\u escape of an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text; escape characters outside the Basic Multilingual Plane as a surrogate pair.",
            Fails("""{"dtype": "\ud800"}""").Message);
        // A config may have comments and trailing commas: the check read past neither, so a
        // string after a comment went unchecked and reading it threw again.
        Assert.Contains("a string holds a \\u escape of an unpaired UTF-16 surrogate", Fails("{\n  // bf16 on GPUs\n  \"dtype\": \"\\ud800\",\n}").Message);
    }

    [Fact]
    public void Device_is_the_cpu_unless_cuda_or_cuda_n_is_named_and_any_other_name_is_refused()
    {
        Assert.Equal("cpu", TrainConfig.Load(null, []).Device);
        foreach (var name in new[] { "cpu", "cuda", "cuda:0", "cuda:12" })
            Assert.Equal(name, TrainConfig.Load(null, [new("device", name)]).Device);
        // Only the form is checked here: a config or checkpoint naming a GPU stays readable on a
        // machine without one (ComputeDevice.Open refuses it when a model is put there).
        foreach (var name in new[] { "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:01", "cuda:0:1", "mps", "cuda0", " cpu" })
            Assert.Equal($"device must be cpu, cuda or cuda:N (an NVIDIA GPU by its index), got '{name}'", Fails($$"""{"device": "{{name}}"}""").Message);
        Assert.Equal("--device: device must be text, got 0", Fails("{}", ("device", "0")).Message);
    }

    [Fact]
    public void Deterministic_is_off_unless_asked_for_stored_with_the_config_and_only_true_or_false()
    {
        static bool Stored(TrainConfig config) => (bool)JsonSerializer.SerializeToNode(config, TrainConfig.Json)!["deterministic"]!;
        using var temp = new TempDirectory();
        File.WriteAllText(temp["c.json"], """{"deterministic": true}""");
        Assert.False(Stored(TrainConfig.Load(null, [])));
        Assert.True(Stored(TrainConfig.Load(temp["c.json"], [])));
        Assert.True(Stored(TrainConfig.Load(null, [new("deterministic", "true")])));
        Assert.False(Stored(TrainConfig.Load(temp["c.json"], [new("deterministic", "false")])));
        Assert.Equal("--deterministic: deterministic must be true or false, got \"yes\"", Fails("{}", ("deterministic", "yes")).Message);
        Assert.EndsWith("c.json: deterministic must be true or false, got 1", Fails("""{"deterministic": 1}""").Message);
    }

    [Fact]
    public void Command_line_overrides_win_over_the_file()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["c.json"], """{"max_iters": 100, "dtype": "float32", "bias": true}""");
        var config = TrainConfig.Load(temp["c.json"], [new("max-iters", "7"), new("bias", "false"), new("dtype", "bfloat16"), new("min_lr", "1e-5")]);
        Assert.Equal(7, config.MaxIters);
        Assert.False(config.Model.Bias);
        Assert.Equal("bfloat16", config.Dtype);
        Assert.Equal(1e-5, config.MinLr);
    }

    [Fact]
    public void Configs_are_stored_as_one_flat_object_and_read_back_equal()
    {
        var config = TrainConfig.Load(null, [new("n-layer", "3"), new("n_kv_head", "4"), new("hidden-act", "gelu_new"), new("max_iters", "9"), new("lora_rank", "2")]);
        var json = JsonSerializer.SerializeToNode(config, TrainConfig.Json)!.AsObject();
        Assert.Equal(3, (int)json["n_layer"]!);
        Assert.Equal("gelu_new", (string)json["hidden_act"]!);
        Assert.Equal(9, (int)json["max_iters"]!);
        Assert.Equal(2, (int)json["lora_rank"]!);
        Assert.False(json.ContainsKey("model") || json.ContainsKey("vocab_size") || json.ContainsKey("lora"));
        Assert.Equal(TrainConfig.Keys.Order(), json.Select(p => p.Key).Order());
        Assert.Equal(config, TrainConfig.FromJson(json, "test"));
        Assert.Equal(4, config.With([new("max-iters", "20")]).Model.NKvHead);
    }

    [Fact]
    public void Shipped_configs_load_and_match_nanoGPT()
    {
        var root = TempDirectory.RepositoryRoot;
        var cpu = TrainConfig.Load(Path.Combine(root, "configs", "shakespeare-char-cpu.json"), []);
        Assert.Equal((4, 4, 128, 64, 12), (cpu.Model.NLayer, cpu.Model.NHead, cpu.Model.NEmbd, cpu.Model.BlockSize, cpu.BatchSize));
        Assert.Equal((1e-3, 1e-4, 0.99, 100, 2000, 2000, 0.0), (cpu.LearningRate, cpu.MinLr, cpu.Beta2, cpu.WarmupIters, cpu.MaxIters, cpu.LrDecayIters, cpu.Model.Dropout));
        Assert.Equal((250, 20), (cpu.EvalInterval, cpu.EvalIters));
        var gpu = TrainConfig.Load(Path.Combine(root, "configs", "shakespeare-char.json"), []);
        Assert.Equal((6, 6, 384, 256, 64, 0.2, 5000), (gpu.Model.NLayer, gpu.Model.NHead, gpu.Model.NEmbd, gpu.Model.BlockSize, gpu.BatchSize, gpu.Model.Dropout, gpu.MaxIters));
        var gpt2 = TrainConfig.Load(Path.Combine(root, "configs", "gpt2-124m.json"), []);
        Assert.Equal((12, 12, 768, 1024), (gpt2.Model.NLayer, gpt2.Model.NHead, gpt2.Model.NEmbd, gpt2.Model.BlockSize));
    }
}
