// Supervised fine-tuning: chat JSONL rendered with the model's chat template, a loss mask over
// assistant turns only, `train --init-from` continuing an imported Llama on it, and LoRA
// adapters that train alone and are merged into the weights on export.
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Tests;

public sealed class FineTuningTests
{
    [Theory]
    [InlineData("gpt2", "", "attn_c_attn")]
    [InlineData("llama", "", "self_attn_q_proj,self_attn_v_proj")]
    [InlineData("gpt2", "c_fc, c_proj", "attn_c_proj,mlp_c_fc,mlp_c_proj")]
    public void LoRA_adapts_the_attention_input_projections_unless_told_which_layers(string architecture, string targets, string adapted)
    {
        var config = TestData.TinyConfig with { Model = TestData.TinyConfig.Model with { Architecture = architecture }, LoraRank = 2, LoraTargets = targets };
        using var model = CausalLanguageModel.Create(config.ToModelConfig(vocabSize: 11));
        // Adapters are named after the layer's path: lora.transformer_h_0_attn_c_attn.lora_A ...
        var adapters = model.named_parameters().Select(p => p.name)
            .Where(n => n.StartsWith("lora.", StringComparison.Ordinal) && n.EndsWith(".lora_A", StringComparison.Ordinal))
            .Select(n => n["lora.".Length..^".lora_A".Length]).ToList();
        var firstLayer = architecture == "gpt2" ? "transformer_h_0_" : "model_layers_0_";
        Assert.Equal(adapted.Split(','), adapters.Where(a => a.StartsWith(firstLayer, StringComparison.Ordinal)).Select(a => a[firstLayer.Length..]).Order());
        Assert.Equal(config.Model.NLayer * adapted.Split(',').Length, adapters.Count);
    }

    /// <summary>A Llama of <paramref name="shape"/> over the printable ASCII characters and a newline,
    /// saved to <paramref name="folder"/> with no chat template of its own; its tokenizer.</summary>
    static CharTokenizer SaveCharLlama(string folder, ModelConfig shape)
    {
        var tokenizer = CharTokenizer.FromCorpus(new string(Enumerable.Range(32, 95).Select(c => (char)c).ToArray()) + "\n");
        using var model = CausalLanguageModel.Create(shape with { Architecture = "llama", VocabSize = tokenizer.VocabSize });
        Checkpoint.Save(folder, model, tokenizer);
        return tokenizer;
    }

    [Fact]
    public void A_run_init_from_a_model_defaults_block_size_to_its_context_capped_at_1024_and_keeps_a_given_one()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["c.json"], """{ "block_size": 48 }""");
        ModelConfig shortContext = new() { BlockSize = 64 }, longContext = new() { BlockSize = 131072 };
        Assert.Equal(64, TrainConfig.Load(null, [], shortContext).Model.BlockSize);
        Assert.Equal(1024, TrainConfig.Load(null, [], longContext).Model.BlockSize);
        Assert.Equal(1024, TrainConfig.Load(null, []).Model.BlockSize);
        Assert.Equal(16, TrainConfig.Load(null, [new("block-size", "16")], shortContext).Model.BlockSize);
        Assert.Equal(48, TrainConfig.Load(temp["c.json"], [], shortContext).Model.BlockSize);
        Assert.Equal(2048, TrainConfig.Load(temp["c.json"], [new("block_size", "2048")], longContext).Model.BlockSize);
        // A fresh GPT-2's cap of 32768 positions (its learned position embedding) is no Llama's:
        // one of 131072 positions trains on 65536 of them, and its run's train_config.json reads
        // back, as Checkpoint.Open and --resume read it. Both were refused as "over the model's
        // maximum context of 32768".
        var longLlama = new ModelConfig { Architecture = "llama", NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 131072 };
        var longRun = TrainConfig.Load(null, [new("block_size", "65536")], longLlama);
        Assert.Equal(65536, longRun.Model.BlockSize);
        Assert.Equal(65536, TrainConfig.FromJson(JsonSerializer.SerializeToNode(longRun, TrainConfig.Json)!.AsObject(), "train_config.json").Model.BlockSize);
        Assert.Equal("block_size 65536 is over the model's maximum context of 32768; lower --block-size",
            Assert.Throws<StratusUserException>(() => TrainConfig.Load(null, [new("block_size", "65536")])).Message);
    }

    [Fact]
    public void A_run_init_from_a_model_starts_at_its_learning_rate_unless_warmup_iters_is_given()
    {
        // nanoGPT's 2000 steps of warm-up outlasted a 30-step fine-tune, which never reached its
        // learning rate.
        using var temp = new TempDirectory();
        File.WriteAllText(temp["c.json"], """{ "warmup_iters": 100 }""");
        var model = new ModelConfig { BlockSize = 64 };
        Assert.Equal(0, TrainConfig.Load(null, [], model).WarmupIters);
        Assert.Equal(2000, TrainConfig.Load(null, []).WarmupIters);
        Assert.Equal(5, TrainConfig.Load(null, [new("warmup-iters", "5")], model).WarmupIters);
        Assert.Equal(100, TrainConfig.Load(temp["c.json"], [], model).WarmupIters);
        // A short fine-tune's schedule was checked, before the base model was opened, against
        // nanoGPT's 2000 steps of warm-up: "lr_decay_iters (100) must be at least warmup_iters (2000)".
        KeyValuePair<string, string>[] shortSchedule = [new("max-iters", "100"), new("lr-decay-iters", "100")];
        Assert.Equal(100, TrainConfig.LoadInitFrom(null, shortSchedule, () => model).LrDecayIters);
        Assert.Equal("lr_decay_iters (100) must be at least warmup_iters (200)",
            Assert.Throws<StratusUserException>(() => TrainConfig.LoadInitFrom(null, [.. shortSchedule, new("warmup-iters", "200")], () => throw new InvalidOperationException("the model was opened before the config was checked"))).Message);
    }

    [Fact]
    public void A_run_init_from_a_model_refuses_model_keys_other_than_its_own_and_records_its_shape()
    {
        // --n-layer 4 --architecture gpt2 was ignored without a word: the run trained the
        // imported 2-layer Llama and recorded nanoGPT's default 12-layer GPT-2 in run.json and
        // in its checkpoints' train_config.json.
        using var temp = new TempDirectory();
        WriteChat(temp.File("chat.jsonl"), 20);
        ImportedLlamaAndChat(temp, temp.File("chat.jsonl"));
        var imported = Checkpoint.Open(Checkpoint.Resolve(temp.File("base"))).ModelConfig;
        Assert.Equal("--n-layer: n_layer 4 differs from the --init-from model's 2; a fine-tune keeps the shape of the model it starts from (only block_size and dropout may change): leave n_layer out",
            Assert.Throws<StratusUserException>(() => TrainConfig.Load(null, [new("n-layer", "4")], imported)).Message);
        File.WriteAllText(temp["gpt2.json"], """{ "architecture": "gpt2", "batch_size": 2 }""");
        Assert.Equal($"{temp["gpt2.json"]}: architecture \"gpt2\" differs from the --init-from model's \"llama\"; a fine-tune keeps the shape of the model it starts from (only block_size and dropout may change): leave architecture out",
            Assert.Throws<StratusUserException>(() => TrainConfig.Load(temp["gpt2.json"], [], imported)).Message);
        // A config written for a model of its own (configs/*.json) is refused once, naming every
        // key to leave out, not one per try.
        File.WriteAllText(temp["small.json"], """{ "n_layer": 4, "n_head": 8, "n_embd": 128, "block_size": 16 }""");
        Assert.Equal("--architecture: architecture \"gpt2\" differs from the --init-from model's \"llama\"; " +
            $"{temp["small.json"]}: n_layer 4, n_head 8 and n_embd 128 differ from the --init-from model's {imported.NLayer}, {imported.NHead} and {imported.NEmbd}; " +
            "a fine-tune keeps the shape of the model it starts from (only block_size and dropout may change): leave architecture, n_layer, n_head and n_embd out",
            Assert.Throws<StratusUserException>(() => TrainConfig.Load(temp["small.json"], [new("architecture", "gpt2")], imported)).Message);
        // The model's own values, block_size and dropout are taken.
        TrainConfig.Load(null, [new("n_layer", "2"), new("architecture", "llama"), new("block_size", "16"), new("dropout", "0.1")], imported);

        using (var trainer = Trainer.Start(ChatConfig(), temp.File("data"), temp.File("ft"), initFrom: temp.File("base"))) trainer.Run();
        var recorded = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.File("ft"), Trainer.RunFile)))!["config"]!;
        var stored = Checkpoint.Open(Checkpoint.Resolve(temp.File("ft"), preferBest: false)).TrainConfig!;
        foreach (var config in new[] { recorded.Deserialize<TrainConfig>(TrainConfig.Json)!, stored })
        {
            Assert.Equal((imported.Architecture, imported.NLayer, imported.NEmbd, imported.KvHeads, imported.TieWordEmbeddings),
                (config.Model.Architecture, config.Model.NLayer, config.Model.NEmbd, config.Model.KvHeads, config.Model.TieWordEmbeddings));
            Assert.Equal(16, config.Model.BlockSize); // the windows it trained on, under the model's context of 128
        }
    }

    [Fact]
    public void A_LoRA_model_counts_no_gradient_of_its_frozen_weights_in_the_training_flops_its_mfu_is_measured_by()
    {
        var config = new ModelConfig { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 16, VocabSize = 50 };
        using var full = CausalLanguageModel.Create(config);
        using var lora = CausalLanguageModel.Create(config with { Lora = new LoraConfig(4, 8, ["c_attn"]) });
        const double Attention = 12.0 * 2 * 2 * 16 * 16;
        Assert.Equal(6.0 * full.ParameterCount() + Attention, full.TrainingFlopsPerToken(16));
        // Per layer an adapter on c_attn: A [4, 32] and B [96, 4], both trained; the rest frozen.
        const long Adapters = 2 * (4 * 32 + 96 * 4);
        Assert.Equal(full.ParameterCount() + Adapters, lora.ParameterCount());
        Assert.Equal(4.0 * full.ParameterCount() + 6.0 * Adapters + Attention, lora.TrainingFlopsPerToken(16));
    }

    [Fact]
    public void A_checkpoint_s_model_is_built_without_random_numbers_unless_it_adds_adapters_which_get_theirs_as_a_new_model_does()
    {
        // Checkpoint.CreateModel (serve, sample, eval, resume) drew random numbers for every
        // weight the checkpoint then replaced.
        using var temp = new TempDirectory();
        var config = new ModelConfig { NLayer = 2, NHead = 2, NEmbd = 32, BlockSize = 16, VocabSize = 50, Lora = new LoraConfig(2, 4, ["c_attn"]) };
        using (var trained = ParityTests.RandomModel(config)) Checkpoint.Save(temp.File("lora"), trained, TokenizerStore.Create("char", "abcdefghij"));
        var checkpoint = Checkpoint.Open(temp.File("lora"));
        using var saved = SafeTensors.Open(Path.Combine(checkpoint.Directory, "model.safetensors"));
        torch.random.manual_seed(5);
        using var expected = torch.rand(8);
        CausalLanguageModel Built(ModelConfig? as_)
        {
            torch.random.manual_seed(5);
            var model = checkpoint.CreateModel(config: as_);
            using var drawn = torch.rand(8);
            Assert.True(HuggingFaceTests.Same(drawn, expected), $"building the checkpoint's model as {as_?.Lora?.ToString() ?? "saved"} drew random numbers");
            return model;
        }

        // Its own adapters carried (sampling, resuming), or merged into the base (a full fine-tune).
        using (var resumed = Built(null))
        {
            foreach (var (name, value) in resumed.state_dict())
                using (var stored = saved.Read(name)) Assert.True(HuggingFaceTests.Same(value, stored), name);
        }
        using var merged = Built(config with { Lora = null });
        using (var expectedMerged = checkpoint.CreateModel())
        {
            expectedMerged.MergeAdapters();
            var weights = merged.state_dict();
            foreach (var (name, value) in expectedMerged.state_dict().Where(w => !w.Key.StartsWith("lora.", StringComparison.Ordinal)))
                Assert.True(torch.allclose(value, weights[name], rtol: 1e-6, atol: 1e-6), name);
        }

        // Adapters of its own: initialised as a new model's are, the same for the same seed.
        var fresh = config with { Lora = new LoraConfig(4, 8, ["c_attn", "c_fc"]) };
        torch.random.manual_seed(5);
        using var reference = CausalLanguageModel.Create(fresh);
        torch.random.manual_seed(5);
        using var fineTuned = checkpoint.CreateModel(config: fresh);
        var built = fineTuned.state_dict();
        foreach (var (name, value) in reference.state_dict())
        {
            if (name.StartsWith("lora.", StringComparison.Ordinal)) Assert.True(HuggingFaceTests.Same(value, built[name]), name);
            else Assert.True(HuggingFaceTests.Same(merged.state_dict()[name], built[name]), name);
        }
    }

    [Fact]
    public void LoRA_trains_only_the_adapters_and_export_merges_them()
    {
        using var temp = new TempDirectory();
        HuggingFaceTests.WriteHfLlama(temp.File("hf"), shards: 1);
        HuggingFace.Import(temp.File("hf"), temp.File("base"));
        File.WriteAllLines(temp.File("chat.jsonl"), Enumerable.Range(0, 20).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"n {i % 3}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"m {i % 3}" }),
        }.ToJsonString()));
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"));
        var config = TrainConfig.Load(null,
        [
            new("block_size", "16"), new("batch_size", "4"), new("max_iters", "10"), new("eval_interval", "10"), new("eval_iters", "2"),
            new("learning_rate", "0.01"), new("warmup_iters", "0"), new("lora_rank", "4"), new("lora_alpha", "8"), new("lora_targets", "q_proj,v_proj,down_proj"),
        ]);
        using (var trainer = Trainer.Start(config, temp.File("data"), temp.File("lora"), initFrom: temp.File("base")))
        {
            Assert.Equal(2 * 3 * 2, trainer.Model.parameters().Count(p => p.requires_grad)); // A and B per adapted layer
            trainer.Run();
        }

        var baseCheckpoint = Checkpoint.Open(Checkpoint.Resolve(temp.File("base")));
        var loraCheckpoint = Checkpoint.Open(Checkpoint.Resolve(temp.File("lora"), preferBest: false));
        Assert.Equal(4, loraCheckpoint.ModelConfig.Lora!.Rank);
        using var original = baseCheckpoint.CreateModel();
        using var tuned = loraCheckpoint.CreateModel();
        var tunedWeights = tuned.state_dict();
        foreach (var (name, value) in original.state_dict()) Assert.True(HuggingFaceTests.Same(value, tunedWeights[name]), $"{name} should stay frozen");
        Assert.True(tunedWeights["lora.model_layers_0_self_attn_q_proj.lora_B"].abs().sum().item<float>() > 0);

        HuggingFace.Export(temp.File("lora"), temp.File("merged-hf"));
        var merged = HuggingFace.Import(temp.File("merged-hf"), temp.File("merged"));
        Assert.Null(merged.Config.Lora);
        using var mergedModel = Checkpoint.Open(merged.CheckpointDirectory).CreateModel();
        tuned.eval();
        var tokens = new[] { 5, 17, 40, 3 };
        var expected = ParityTests.StratusLastLogits(tuned, tokens);
        var actual = ParityTests.StratusLastLogits(mergedModel, tokens);
        Assert.True(expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max() < 1e-3);
        Assert.False(original.state_dict()["model.layers.0.self_attn.q_proj.weight"].allclose(mergedModel.state_dict()["model.layers.0.self_attn.q_proj.weight"]));
    }

    [Fact]
    public void LoRA_on_an_untied_llama_head_changes_its_logits_and_merges_on_export_and_init_from()
    {
        using var temp = new TempDirectory();
        WriteChat(temp.File("chat.jsonl"), 20);
        ImportedLlamaAndChat(temp, temp.File("chat.jsonl"));
        using (var trainer = Trainer.Start(ChatConfig(("lora_rank", "4"), ("lora_alpha", "8"), ("lora_targets", "lm_head")), temp.File("data"), temp.File("lora"), initFrom: temp.File("base")))
        {
            Assert.Equal(["lora.lm_head.lora_A", "lora.lm_head.lora_B"], trainer.Model.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order());
            trainer.Run();
        }
        var tokens = new[] { 5, 17, 40, 3 };
        float[] before, after;
        using (var original = Checkpoint.Open(Checkpoint.Resolve(temp.File("base"))).CreateModel()) before = ParityTests.StratusLastLogits(original, tokens);
        // The run's best checkpoint, which export and --init-from take.
        using (var tuned = Checkpoint.Open(Checkpoint.Resolve(temp.File("lora"))).CreateModel())
        {
            Assert.True(tuned.state_dict()["lora.lm_head.lora_B"].abs().sum().item<float>() > 0, "the head's adapter learned nothing");
            tuned.eval();
            after = ParityTests.StratusLastLogits(tuned, tokens);
        }
        static float MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(MaxDifference(before, after) > 1e-3, "the head's adapter does not change the logits");

        // Export merges it into lm_head.weight, and so does a full fine-tune begun from the run.
        HuggingFace.Export(temp.File("lora"), temp.File("merged-hf"));
        using (var merged = Checkpoint.Open(HuggingFace.Import(temp.File("merged-hf"), temp.File("merged")).CheckpointDirectory).CreateModel())
            Assert.True(MaxDifference(after, ParityTests.StratusLastLogits(merged, tokens)) < 1e-3);
        using var full = Trainer.Start(ChatConfig(), temp.File("data"), temp.File("full"), initFrom: temp.File("lora"));
        full.Model.eval();
        Assert.True(MaxDifference(after, ParityTests.StratusLastLogits(full.Model, tokens)) < 1e-4);
    }

    [Theory]
    [InlineData("llama", "q_proj,qproj", "lora_targets qproj match no linear layer of this llama model; its layers: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")]
    [InlineData("gpt2", "c_attn,lm_head", "lora_targets lm_head match no linear layer of this gpt2 model (its lm_head is tied to the token embedding, which LoRA does not adapt); its layers: c_attn,c_proj,c_fc")]
    public void LoRA_targets_that_name_no_layer_are_refused_with_the_layers_there_are(string architecture, string targets, string message)
    {
        // TinyConfig ties a Llama's head to its embedding, as GPT-2's always is.
        var config = TestData.TinyConfig with { Model = TestData.TinyConfig.Model with { Architecture = architecture }, LoraRank = 2, LoraTargets = targets };
        Assert.Equal(message, Assert.Throws<StratusUserException>(() => CausalLanguageModel.Create(config.ToModelConfig(vocabSize: 11))).Message);
    }

    [Fact]
    public async Task Chat_data_is_masked_to_assistant_turns_and_an_imported_llama_learns_them()
    {
        using var temp = new TempDirectory();
        HuggingFaceTests.WriteHfLlama(temp.File("hf"), shards: 1);
        var imported = HuggingFace.Import(temp.File("hf"), temp.File("base"));

        var lines = Enumerable.Range(0, 40).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(
                new JsonObject { ["role"] = "user", ["content"] = $"say {i % 4}" },
                new JsonObject { ["role"] = "assistant", ["content"] = $"ok {i % 4}!" }),
        }.ToJsonString());
        File.WriteAllLines(temp.File("chat.jsonl"), lines);
        var dataset = ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), valFraction: 0.1);
        Assert.Equal(36, dataset.TrainExamples);

        // The shards are the conversations' tokens and masks in order: the first 36 train, the last 4 val.
        var template = ChatTemplate.TryLoad(imported.CheckpointDirectory)!;
        var encoded = Enumerable.Range(0, 40).Select(i => ChatDatasetPreparer.Encode(template, imported.Tokenizer, [new("user", $"say {i % 4}"), new("assistant", $"ok {i % 4}!")])).ToList();
        long[] Shard(string name)
        {
            using var shard = TokenShard.Open(Path.Combine(temp.File("data"), name));
            var values = new long[shard.Count];
            shard.Read(0, values);
            return values;
        }
        Assert.Equal(encoded[..36].SelectMany(e => e.Tokens).Select(t => (long)t), Shard(DatasetPreparer.TrainShard));
        Assert.Equal(encoded[36..].SelectMany(e => e.Tokens).Select(t => (long)t), Shard(DatasetPreparer.ValShard));
        Assert.Equal(encoded[..36].SelectMany(e => e.Mask).Select(m => (long)m), Shard(ChatDatasetPreparer.TrainMask));
        Assert.Equal(encoded[36..].SelectMany(e => e.Mask).Select(m => (long)m), Shard(ChatDatasetPreparer.ValMask));
        // val_fraction 0: every conversation trains, and val holds a copy of the last.
        var noVal = ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("all"), temp.File("base"), valFraction: 0);
        Assert.Equal((40, 1), (noVal.TrainExamples, noVal.ValExamples));
        Assert.Equal((encoded.Sum(e => (long)e.Tokens.Length), (long)encoded[39].Tokens.Length), (noVal.TrainTokens, noVal.ValTokens));

        // The learned tokens of one conversation are exactly the assistant's reply and end of turn.
        var (tokens, mask) = ChatDatasetPreparer.Encode(template, imported.Tokenizer, [new("user", "say 1"), new("assistant", "ok 1!")]);
        Assert.Equal(template.Render([("user", "say 1"), ("assistant", "ok 1!")], false), imported.Tokenizer.Decode(tokens));
        Assert.Equal("ok 1!<|im_end|>\n", imported.Tokenizer.Decode(tokens.Where((_, i) => mask[i] == 1)));

        using (var sampler = new BatchSampler(temp.File("data"), 4, 16, 1))
        {
            Assert.True(sampler.IsMasked);
            var (_, targets, scored) = sampler.Sample(Split.Train, 0, 0, torch.CPU);
            var values = targets.data<long>().ToArray();
            Assert.Contains(-100L, values);
            Assert.Contains(values, v => v >= 0);
            // The count training divides by, taken on the host, is the targets' own.
            Assert.Equal(values.Count(v => v != -100), scored);
            for (var step = 1; step < 6; step++)
            {
                var (_, more, count) = sampler.Sample(Split.Train, step, 0, torch.CPU, evaluation: step % 2 == 0);
                Assert.Equal(more.ne(-100).sum().item<long>(), count);
            }
            using var one = new BatchSampler(temp.File("data"), 1, 16, 1);
            for (var step = 0; step < 8; step++)
            {
                var (inputs, _, _) = one.Sample(Split.Train, step, 0, torch.CPU);
                Assert.True(inputs.min().item<long>() >= 0, "a masked target leaked into the inputs of a one-window batch");
            }
            // Measured over the whole split, only the learned targets count: those of tokens 1 .. n - 1.
            using var model = Checkpoint.Open(Checkpoint.Resolve(temp.File("base"))).CreateModel();
            var measured = SplitLoss.Measure(model, sampler, Split.Train);
            var learned = Shard(ChatDatasetPreparer.TrainMask);
            Assert.NotEqual(0, (learned.Length - 1) % 16); // the last window scores only the split's tail
            Assert.Equal(learned.Skip(1).Sum(), measured.Tokens);
        }

        var config = TrainConfig.Load(null,
        [
            new("block_size", "24"), new("batch_size", "8"), new("max_iters", "40"), new("eval_interval", "40"), new("eval_iters", "4"),
            new("learning_rate", "0.003"), new("warmup_iters", "0"), new("weight_decay", "0"),
        ]);
        using var trainer = Trainer.Start(config, temp.File("data"), temp.File("sft"), initFrom: temp.File("base"));
        var (_, before, _) = trainer.Evaluate();
        trainer.Run();
        var (_, after, _) = trainer.Evaluate();
        Assert.True(after < before * 0.5, $"val loss on assistant tokens {before} -> {after}");

        // The fine-tuned model carries its chat template and chats through it (as the server does).
        var carried = ChatTemplate.Load(temp.File("sft"), imported.Tokenizer);
        Assert.Equal(ChatTemplate.Own, carried.Kind);
        Assert.Equal(template.Source, carried.Source);
        var tuned = Checkpoint.Open(Checkpoint.Resolve(temp.File("sft")));
        using var engine = new InferenceEngine(tuned.CreateModel(), tuned.Tokenizer, new EngineOptions());
        var client = new StratusChatClient(engine, carried, "sft");
        var reply = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "say 1")], new ChatOptions { Temperature = 0, MaxOutputTokens = 6 });
        Assert.StartsWith("ok 1", reply.Text);
        Assert.Equal("llama", Checkpoint.Open(Checkpoint.Resolve(temp.File("sft"))).ModelConfig.Architecture);
    }

    [Fact]
    public void An_assistant_turn_of_weight_0_is_context_and_only_the_others_are_learned()
    {
        using var temp = new TempDirectory();
        HuggingFaceTests.WriteHfLlama(temp.File("hf"), shards: 1);
        var imported = HuggingFace.Import(temp.File("hf"), temp.File("base"));
        // OpenAI's fine-tuning "weight": the middle reply is in the context but not learned; it was learned.
        const string Line = """{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "one", "weight": 1}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "two", "weight": 0}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "three"}]}""";
        File.WriteAllLines(temp.File("chat.jsonl"), [Line, Line]);
        var dataset = ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), valFraction: 0);
        long[] Shard(string name)
        {
            using var shard = TokenShard.Open(Path.Combine(temp.File("data"), name));
            var values = new long[shard.Count];
            shard.Read(0, values);
            return values;
        }
        var (tokens, mask) = (Shard(DatasetPreparer.TrainShard), Shard(ChatDatasetPreparer.TrainMask));
        var template = ChatTemplate.TryLoad(imported.CheckpointDirectory)!;
        var whole = template.Render([("user", "a"), ("assistant", "one"), ("user", "b"), ("assistant", "two"), ("user", "c"), ("assistant", "three")], false);
        Assert.Equal(whole + whole, imported.Tokenizer.Decode(tokens.Select(t => (int)t).ToArray()));
        Assert.Equal("one<|im_end|>\nthree<|im_end|>\n" + "one<|im_end|>\nthree<|im_end|>\n",
            imported.Tokenizer.Decode(tokens.Where((_, i) => mask[i] == 1).Select(t => (int)t).ToArray()));
        Assert.Equal(mask.Sum(), dataset.SupervisedTokens);

        // Each assistant turn at weight 0: the conversation is kept as context, as one without an
        // assistant turn is, and a file of nothing else has nothing to learn.
        File.WriteAllLines(temp.File("context.jsonl"), Enumerable.Repeat(Line.Replace("\"weight\": 1", "\"weight\": 0").Replace("\"three\"}", "\"three\", \"weight\": 0}"), 2));
        Assert.Equal($"{temp.File("context.jsonl")} has no assistant messages to learn from (none, or each with \"weight\": 0); give the conversations assistant turns of weight 1 (the default)",
            Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(temp.File("context.jsonl"), temp.File("none"), temp.File("base"))).Message);
    }

    [Fact]
    public void Bad_chat_records_and_settings_are_refused_with_one_clear_message()
    {
        using var temp = new TempDirectory();
        HuggingFaceTests.WriteHfLlama(temp.File("hf"), shards: 1);
        HuggingFace.Import(temp.File("hf"), temp.File("base"));
        const string Good = """{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}""";
        var chat = temp.File("chat.jsonl");
        string Error(string line, double valFraction = 0.1)
        {
            File.WriteAllText(chat, $"{Good}\n{line}\n");
            return Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(chat, temp.File("data"), temp.File("base"), valFraction)).Message;
        }
        Assert.Equal($"{chat}:2: expected {{\"messages\": [{{\"role\": ..., \"content\": ...}}, ...]}}", Error("[1, 2]"));
        Assert.StartsWith($"{chat}:2: expected", Error("\"str\""));
        Assert.StartsWith($"{chat}:2: expected", Error("null"));
        // Messages are read as a chat request's are (ChatMessages.Parse), refused in its words with the line.
        Assert.Equal($"{chat}:2: Invalid type for 'messages[0].role': expected a string.", Error("""{"messages": [{"role": 1, "content": "hi"}]}"""));
        Assert.Equal($"{chat}:2: Invalid content part 'messages[1].content[0]': expected an object with a 'type'.", Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ["x"]}]}"""));
        Assert.Equal($"{chat}:2: messages[0] must be an object.", Error("""{"messages": ["hi"]}"""));
        Assert.Equal($"{chat}:2: Missing required parameter: 'messages[0].content'.", Error("""{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}"""));
        // Taken before: an empty reply taught the model to answer with nothing but the end of its
        // turn, and a role the server refuses taught it a turn no chat request can ask for.
        const string Empty = "has empty content, which OpenAI's fine-tuning format does not allow (a chat request may send it); give it text, or an assistant's message tool_calls";
        Assert.Equal($"{chat}:2: message 2 (assistant) {Empty}", Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}"""));
        Assert.Equal($"{chat}:2: message 1 (user) {Empty}", Error("""{"messages": [{"role": "user", "content": " \n"}, {"role": "assistant", "content": "a"}]}"""));
        // OpenAI's fine-tuning "weight": 0 or 1, on an assistant's message only; it was ignored.
        Assert.Equal($"{chat}:2: Invalid value for 'messages[1].weight': 2. Supported values are: 0 (context only) and 1 (learned).",
            Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 2}]}"""));
        Assert.Equal($"{chat}:2: Invalid value for 'messages[1].weight': \"1\". Supported values are: 0 (context only) and 1 (learned).",
            Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": "1"}]}"""));
        Assert.Equal($"{chat}:2: Invalid value for 'messages[1].weight': 0.5. Supported values are: 0 (context only) and 1 (learned).",
            Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "weight": 0.5}]}"""));
        Assert.Equal($"{chat}:2: Invalid parameter: 'messages[0].weight' is only for an assistant's message, not a 'user' one; remove it.",
            Error("""{"messages": [{"role": "user", "content": "hi", "weight": 0}, {"role": "assistant", "content": "a"}]}"""));
        Assert.Equal($"{chat}:2: Invalid value for 'messages[0].role': 'wizard'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.",
            Error("""{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "a"}]}"""));
        // A message's name and an assistant's reasoning reach the template as a chat request's
        // do (ChatMessageText.Of), refused alike; both were ignored.
        Assert.Equal($"{chat}:2: Invalid parameter: 'messages[1].reasoning_content' differs from 'messages[1].reasoning'; give the reasoning once.",
            Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a", "reasoning": "r1", "reasoning_content": "r2"}]}"""));
        Assert.Equal($"{chat}:2: Invalid type for 'messages[0].name': expected a string.",
            Error("""{"messages": [{"role": "user", "content": "hi", "name": 7}, {"role": "assistant", "content": "a"}]}"""));
        // Tool calls, a tool's answer and the conversation's tools are checked as a request's
        // are; all three were ignored (a call's arguments and the tools never reached the template).
        const string Call = """{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}""";
        Assert.Equal($"{chat}:2: Invalid parameter: 'messages[2].tool_call_id' of 'c2' not found in 'tool_calls' of the assistant's message before it; give the 'id' of one of its calls.",
            Error($$"""{"messages": [{"role": "user", "content": "hi"}, {{Call}}, {"role": "tool", "tool_call_id": "c2", "content": "x"}]}"""));
        Assert.Equal($"{chat}:2: Missing required parameter: 'messages[2].tool_call_id'.",
            Error($$"""{"messages": [{"role": "user", "content": "hi"}, {{Call}}, {"role": "tool", "content": "x"}]}"""));
        Assert.Equal($"{chat}:2: Invalid 'messages[1].tool_calls[0].function.arguments': [1] is not a JSON object; send the arguments as the JSON text of an object, such as '{{\"city\": \"Paris\"}}'.",
            Error($$"""{"messages": [{"role": "user", "content": "hi"}, {{Call.Replace("\"{}\"", "\"[1]\"")}}]}"""));
        Assert.Equal($"{chat}:2: message 2 (assistant) {Empty}",
            Error("""{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]}"""));
        // An empty tool result, which a chat request may send, is refused as OpenAI's fine-tuning refuses it.
        Assert.Equal($"{chat}:2: message 3 (tool) {Empty}",
            Error($$"""{"messages": [{"role": "user", "content": "hi"}, {{Call}}, {"role": "tool", "tool_call_id": "c1", "content": ""}, {"role": "assistant", "content": "a"}]}"""));
        Assert.Equal($"{chat}:2: Invalid 'tools[0].function.name': \"a b\" must be 1 to 64 letters, digits, underscores or dashes.",
            Error($$$"""{"messages": [{"role": "user", "content": "hi"}, {{{Call}}}], "tools": [{"type": "function", "function": {"name": "a b"}}]}"""));
        Assert.Equal($"{chat}:2: 'functions' (deprecated) is not supported; give them as 'tools', each {{\"type\": \"function\", \"function\": {{...}}}}",
            Error($$$"""{"messages": [{"role": "user", "content": "hi"}, {{{Call}}}], "functions": [{"name": "f"}]}"""));
        Assert.StartsWith("--val-fraction must be in [0, 1), got NaN", Error(Good, double.NaN));
        // Both conversations held out (round(2 x 0.9) = 2): it said the file had no assistant messages.
        Assert.Equal($"--val-fraction 0.9 holds out all 2 conversations of {chat} for validation, leaving none to train on; pass a smaller --val-fraction, e.g. 0.1",
            Error(Good, 0.9));
        // An escaped lone surrogate: valid JSON, but no text, in a value or a name.
        const string Surrogate = ": a string holds a \\u escape of an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text";
        Assert.StartsWith($"{chat}:2{Surrogate}", Error("""{"messages": [{"role": "user", "content": "a\ud800b"}]}"""));
        Assert.StartsWith($"{chat}:2{Surrogate}", Error("""{"messages": [{"role": "user", "content": "hi", "x\udc00": 1}]}"""));

        File.WriteAllBytes(chat, [.. System.Text.Encoding.UTF8.GetBytes(Good + "\n"), .. "{\"messages\": [{\"role\": \"user\", \"content\": \"caf"u8, 0xE9, .. "\"}]}\n"u8]);
        Assert.StartsWith($"{chat} is not UTF-8 text (byte offset {Good.Length + 1 + 46}); convert it to UTF-8",
            Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(chat, temp.File("data"), temp.File("base"))).Message);
        // Read as UTF-16 for its first two bytes: the whole file became one line of other
        // characters, and the error said it had 1 conversation.
        File.WriteAllBytes(chat, [0xFF, 0xFE, .. System.Text.Encoding.UTF8.GetBytes($"{Good}\n{Good}\n")]);
        Assert.Equal($"{chat} is not UTF-8 text: it begins with the byte order mark of UTF-16 LE; convert it to UTF-8, e.g. with `iconv -f utf-16 -t utf-8`, and prepare again",
            Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(chat, temp.File("data"), temp.File("base"))).Message);
        // Refused after the dataset folder was made, and that folder went with the refusal.
        Assert.False(Directory.Exists(temp.File("data")));
        File.WriteAllText(chat, $"{Good}\n{Good}\n");
        Assert.StartsWith($"{temp.File("base")} holds a training run (",
            Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(chat, temp.File("base"), temp.File("base"))).Message);
    }

    [Fact]
    public void A_refused_prepare_leaves_the_chat_dataset_in_its_folder_whole()
    {
        using var temp = new TempDirectory();
        var tokenizer = SaveCharLlama(temp.File("base"), new ModelConfig { NLayer = 1, NHead = 2, NKvHead = 1, NEmbd = 16, IntermediateSize = 32, BlockSize = 64 });
        File.WriteAllText(temp.File("chatml.jinja"), ChatTemplateTests.ChatMl);
        WriteChat(temp.File("chat.jsonl"), 10);
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), chatTemplate: temp.File("chatml.jinja"));
        var dataset = DataTests.Snapshot(temp.File("data"));
        Assert.Contains(dataset, file => file.StartsWith(ChatDatasetPreparer.TrainMask + " ", StringComparison.Ordinal));

        // Text that is only whitespace, and conversations none of which has an assistant turn.
        File.WriteAllText(temp.File("blank.txt"), " \n\n ");
        Assert.Contains("nothing but whitespace", Assert.Throws<StratusUserException>(() =>
            DatasetPreparer.Prepare(temp.File("blank.txt"), temp.File("data"), "char", tokenizerFrom: tokenizer, overwrite: true)).Message);
        Assert.Equal(dataset, DataTests.Snapshot(temp.File("data")));
        File.WriteAllLines(temp.File("questions.jsonl"), ["""{"messages": [{"role": "user", "content": "a"}]}""", """{"messages": [{"role": "user", "content": "b"}]}"""]);
        Assert.Contains("no assistant messages", Assert.Throws<StratusUserException>(() =>
            ChatDatasetPreparer.Prepare(temp.File("questions.jsonl"), temp.File("data"), temp.File("base"), overwrite: true)).Message);
        Assert.Equal(dataset, DataTests.Snapshot(temp.File("data")));
    }

    static void WriteChat(string path, int conversations, bool lastWithoutAssistant = false) =>
        File.WriteAllLines(path, Enumerable.Range(0, conversations).Select(i => new JsonObject
        {
            ["messages"] = lastWithoutAssistant && i == conversations - 1
                ? new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"n {i % 3} and a long question here" })
                : new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"n {i % 3}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"m {i % 3}" }),
        }.ToJsonString()));

    static TrainConfig ChatConfig(params (string Key, string Value)[] extra) => TrainConfig.Load(null,
        [.. new (string, string)[] { ("block_size", "16"), ("batch_size", "4"), ("max_iters", "4"), ("eval_interval", "2"), ("eval_iters", "2"),
            ("learning_rate", "0.01"), ("warmup_iters", "0"), ("checkpoint_interval", "2") }.Concat(extra).Select(kv => new KeyValuePair<string, string>(kv.Item1, kv.Item2))]);

    /// <summary>An imported Llama (temp["base"]) and a chat dataset prepared for it (temp["data"]).</summary>
    static void ImportedLlamaAndChat(TempDirectory temp, string chatJsonl)
    {
        HuggingFaceTests.WriteHfLlama(temp.File("hf"), shards: 1);
        HuggingFace.Import(temp.File("hf"), temp.File("base"));
        ChatDatasetPreparer.Prepare(chatJsonl, temp.File("data"), temp.File("base"), valFraction: 0.05);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    public void A_run_begun_from_an_imported_model_resumes_as_that_model(int loraRank)
    {
        using var temp = new TempDirectory();
        WriteChat(temp.File("chat.jsonl"), 20);
        ImportedLlamaAndChat(temp, temp.File("chat.jsonl"));
        using (var trainer = Trainer.Start(ChatConfig(("lora_rank", loraRank.ToString())), temp.File("data"), temp.File("ft"), initFrom: temp.File("base"))) trainer.Run();
        using (var resumed = Trainer.Resume(temp.File("ft"), [new("max_iters", "6")]))
        {
            Assert.Equal(("llama", loraRank), (resumed.Model.Config.Architecture, resumed.Model.Config.Lora?.Rank ?? 0));
            resumed.Run();
            Assert.Equal(6, resumed.Step);
        }
        // The adapters' scale is part of what they learned.
        if (loraRank > 0)
            Assert.Contains("lora_alpha cannot change", Assert.Throws<StratusUserException>(() => Trainer.Resume(temp.File("ft"), [new("lora_alpha", "64")])).Message);
    }

    [Theory]
    [InlineData("0", "")] // a full fine-tune
    [InlineData("2", "gate_proj")] // new adapters of another shape
    public void A_run_begun_from_a_LoRA_run_with_other_adapters_starts_from_its_merged_model(string loraRank, string loraTargets)
    {
        using var temp = new TempDirectory();
        WriteChat(temp.File("chat.jsonl"), 20);
        ImportedLlamaAndChat(temp, temp.File("chat.jsonl"));
        using (var trainer = Trainer.Start(ChatConfig(("lora_rank", "4"), ("lora_alpha", "8")), temp.File("data"), temp.File("lora"), initFrom: temp.File("base"))) trainer.Run();
        var tokens = new[] { 5, 17, 40, 3 };
        float[] expected;
        using (var tuned = Checkpoint.Open(Checkpoint.Resolve(temp.File("lora"))).CreateModel())
        {
            Assert.True(tuned.state_dict()["lora.model_layers_0_self_attn_q_proj.lora_B"].abs().sum().item<float>() > 0);
            tuned.eval();
            expected = ParityTests.StratusLastLogits(tuned, tokens);
        }

        using var next = Trainer.Start(ChatConfig(("lora_rank", loraRank), ("lora_targets", loraTargets)), temp.File("data"), temp.File("next"), initFrom: temp.File("lora"));
        var names = next.Model.named_parameters().ToList();
        if (loraRank == "0")
        {
            Assert.Null(next.Model.Config.Lora);
            Assert.DoesNotContain(names, p => p.name.StartsWith("lora.", StringComparison.Ordinal));
            Assert.All(names, p => Assert.True(p.parameter.requires_grad, $"{p.name} should train"));
        }
        else
        {
            Assert.Equal(new LoraConfig(2, 16, ["gate_proj"]), next.Model.Config.Lora);
            Assert.Equal(["lora.model_layers_0_mlp_gate_proj.lora_A", "lora.model_layers_0_mlp_gate_proj.lora_B"],
                names.Where(p => p.parameter.requires_grad && p.name.Contains("layers_0", StringComparison.Ordinal)).Select(p => p.name).Order());
        }
        // It starts as the LoRA run's model computed, its adapters merged into the base weights.
        next.Model.eval();
        var actual = ParityTests.StratusLastLogits(next.Model, tokens);
        Assert.True(expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max() < 1e-4, $"max |logit difference| {expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max()}");
    }

    [Fact]
    public void The_chat_template_is_under_the_manifest_and_a_file_added_to_a_checkpoint_is_refused()
    {
        using var temp = new TempDirectory();
        WriteChat(temp.File("chat.jsonl"), 20);
        ImportedLlamaAndChat(temp, temp.File("chat.jsonl"));
        using (var trainer = Trainer.Start(ChatConfig(), temp.File("data"), temp.File("ft"), initFrom: temp.File("base"))) trainer.Run();
        var imported = Checkpoint.Resolve(temp.File("base"));
        var tuned = Checkpoint.Resolve(temp.File("ft"), preferBest: false);
        static IEnumerable<string> Listed(string checkpoint) =>
            JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, Checkpoint.ManifestFile)))!["files"]!.AsObject().Select(f => f.Key);
        foreach (var checkpoint in new[] { imported, tuned })
        {
            Assert.Contains(ChatTemplate.FileName, Listed(checkpoint));
            Assert.Equal(Directory.GetFiles(checkpoint).Select(Path.GetFileName).Where(f => f != Checkpoint.ManifestFile).Order(), Listed(checkpoint).Order());
        }

        var template = Path.Combine(tuned, ChatTemplate.FileName);
        var source = File.ReadAllText(template);
        File.WriteAllText(template, source.Replace("assistant", "bot"));
        Assert.Contains($"{ChatTemplate.FileName} does not match its sha256", Assert.Throws<StratusUserException>(() => Checkpoint.Open(tuned)).Message);

        // A template put into a checkpoint saved without one is not vouched for.
        var plain = temp.File("plain");
        using (var model = Checkpoint.Open(imported).CreateModel()) Checkpoint.Save(plain, model, Checkpoint.Open(imported).Tokenizer);
        File.WriteAllText(Path.Combine(plain, ChatTemplate.FileName), source);
        var refusal = $"checkpoint {plain} holds {ChatTemplate.FileName}, which its {Checkpoint.ManifestFile} does not list: it was added after the checkpoint was saved; remove it, or use another checkpoint";
        Assert.Equal(refusal, Assert.Throws<StratusUserException>(() => Checkpoint.Open(plain)).Message);
        Assert.Equal(refusal, Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data2"), plain)).Message);
        File.Delete(Path.Combine(plain, ChatTemplate.FileName));
        Assert.Null(ChatTemplate.Find(Checkpoint.Open(plain).Directory));

        // A model without a template of its own learns chats in the one it will be served with:
        // the template derived from its tokenizer (ChatML here), as ServedModel loads it.
        var served = ChatTemplate.Load(plain, Checkpoint.Open(plain).Tokenizer);
        Assert.Equal(ChatTemplate.ChatMl, served.Kind);
        var derived = ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data3"), plain, valFraction: 0.05);
        var tokenizer = derived.Tokenizer;
        var expected = Enumerable.Range(0, 19).Select(i => ChatDatasetPreparer.Encode(served, tokenizer, [new("user", $"n {i % 3}"), new("assistant", $"m {i % 3}")]));
        using var shard = TokenShard.Open(Path.Combine(temp.File("data3"), DatasetPreparer.TrainShard));
        var values = new long[shard.Count];
        shard.Read(0, values);
        Assert.Equal(expected.SelectMany(e => e.Tokens).Select(t => (long)t), values);
    }

    [Fact]
    public async Task A_chat_template_given_to_prepare_is_learned_carried_into_the_run_and_served()
    {
        using var temp = new TempDirectory();
        // A base model without a template of its own, whose tokenizer has no ChatML markers: it
        // would chat in the plain template.
        var tokenizer = SaveCharLlama(temp.File("base"), new ModelConfig { NLayer = 2, NHead = 4, NKvHead = 2, NEmbd = 64, IntermediateSize = 96, BlockSize = 128 });
        Assert.Equal(ChatTemplate.Plain, ChatTemplate.Load(temp.File("base"), tokenizer).Kind);
        File.WriteAllText(temp.File("chatml.jinja"), ChatTemplateTests.ChatMl);
        File.WriteAllLines(temp.File("chat.jsonl"), Enumerable.Range(0, 40).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"say {i % 4}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"ok {i % 4}!" }),
        }.ToJsonString()));
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), chatTemplate: temp.File("chatml.jinja"));

        // The data is the conversations in ChatML, and the template is kept with it under its sha256.
        using (var shard = TokenShard.Open(Path.Combine(temp.File("data"), DatasetPreparer.TrainShard)))
        {
            var values = new long[shard.Count];
            shard.Read(0, values);
            Assert.StartsWith("<|im_start|>user\nsay 0<|im_end|>\n<|im_start|>assistant\nok 0!<|im_end|>\n<|im_start|>user\nsay 1", tokenizer.Decode(values.Select(v => (int)v).ToArray()));
        }
        var stored = Path.Combine(temp.File("data"), ChatTemplate.FileName);
        var meta = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.File("data"), DatasetPreparer.MetaFile)))!;
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(stored))), (string)meta["chat_template"]!["sha256"]!);

        var config = TrainConfig.Load(null,
        [
            new("block_size", "64"), new("batch_size", "8"), new("max_iters", "60"), new("eval_interval", "60"), new("eval_iters", "2"),
            new("learning_rate", "0.003"), new("warmup_iters", "0"), new("weight_decay", "0"),
        ]);
        using (var trainer = Trainer.Start(config, temp.File("data"), temp.File("sft"), initFrom: temp.File("base"))) trainer.Run();

        // The run's checkpoints hold the template under their manifest, and a resumed run keeps it.
        var last = Checkpoint.Resolve(temp.File("sft"), preferBest: false);
        Assert.Equal(ChatTemplateTests.ChatMl, File.ReadAllText(Path.Combine(last, ChatTemplate.FileName)));
        Assert.NotNull(JsonNode.Parse(File.ReadAllText(Path.Combine(last, Checkpoint.ManifestFile)))!["files"]![ChatTemplate.FileName]);
        using (var resumed = Trainer.Resume(temp.File("sft"), [new("max_iters", "62")])) resumed.Run();
        Assert.Equal(ChatTemplateTests.ChatMl, ChatTemplate.Find(Checkpoint.Open(Checkpoint.Resolve(temp.File("sft"), preferBest: false)).Directory));
        // Data prepared again in another format does not continue the run: it would learn one format and chat in another.
        File.WriteAllText(temp.File("roles.jinja"), "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}");
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("roles"), temp.File("base"), chatTemplate: temp.File("roles.jinja"));
        Assert.Equal($"{temp.File("roles")} was rendered with a chat template other than the one run {temp.File("sft")} learned and chats in; resume with the data the run was trained on, or start a new run from it with --init-from",
            Assert.Throws<StratusUserException>(() => Trainer.Resume(temp.File("sft"), [new("max_iters", "64")], dataDirectory: temp.File("roles"))).Message);

        // Served as ServedModel loads it, the model chats in ChatML and answers in the form it learned.
        var served = ChatTemplate.Load(temp.File("sft"), tokenizer);
        Assert.Equal((ChatTemplate.Own, ChatTemplateTests.ChatMl), (served.Kind, served.Source));
        var tuned = Checkpoint.Open(Checkpoint.Resolve(temp.File("sft")));
        using var engine = new InferenceEngine(tuned.CreateModel(), tuned.Tokenizer, new EngineOptions());
        var reply = await new StratusChatClient(engine, served, "sft").GetResponseAsync([new ChatMessage(ChatRole.User, "say 1")], new ChatOptions { Temperature = 0, MaxOutputTokens = 4 });
        Assert.Equal(tokenizer.Encode("<|im_start|>user\nsay 1<|im_end|>\n<|im_start|>assistant\n").Length, reply.Usage!.InputTokenCount);
        Assert.StartsWith("ok ", reply.Text);
    }

    [Fact]
    public void A_stored_chat_template_that_no_longer_matches_its_data_is_refused()
    {
        using var temp = new TempDirectory();
        WriteChat(temp.File("chat.jsonl"), 20);
        ImportedLlamaAndChat(temp, temp.File("chat.jsonl"));
        const string Brackets = "{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}";
        File.WriteAllText(temp.File("inst.jinja"), Brackets);
        var data = temp.File("inst");
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), data, temp.File("base"), valFraction: 0.05, chatTemplate: temp.File("inst.jinja"));
        var stored = Path.Combine(data, ChatTemplate.FileName);
        File.WriteAllText(stored, Brackets.Replace("[INST]", "[USER]"));
        Assert.Equal($"{stored} does not match its sha256 in meta.json: it was changed after the data was rendered with it; restore it, or prepare the data again with --chat-template <the new template>",
            Assert.Throws<StratusUserException>(() => Trainer.Start(ChatConfig(), data, temp.File("ft"), initFrom: temp.File("base"))).Message);
        File.Delete(stored);
        Assert.Contains($"{ChatTemplate.FileName}, the chat template its data was rendered with, is missing",
            Assert.Throws<StratusUserException>(() => Trainer.Start(ChatConfig(), data, temp.File("ft"), initFrom: temp.File("base"))).Message);

        // Prepared again without one, the folder's data is in the model's own format again: its
        // template is the one the run keeps, and a template put there by hand is refused.
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), data, temp.File("base"), valFraction: 0.05, overwrite: true);
        Assert.False(File.Exists(stored));
        File.WriteAllText(stored, Brackets);
        Assert.Equal($"{data} holds {ChatTemplate.FileName}, which its meta.json does not list: the data was not rendered with it; remove it, or prepare the data again with --chat-template",
            Assert.Throws<StratusUserException>(() => Trainer.Start(ChatConfig(), data, temp.File("ft2"), initFrom: temp.File("base"))).Message);
        Assert.False(Directory.Exists(temp.File("ft2")), "a refused run left its folder behind");
        File.Delete(stored);
        using (var trainer = Trainer.Start(ChatConfig(("max_iters", "1")), data, temp.File("ft3"), initFrom: temp.File("base"))) trainer.Run();
        Assert.Equal(ChatTemplateTests.ChatMl, ChatTemplate.Find(Checkpoint.Resolve(temp.File("ft3"), preferBest: false)));

        // A template that is missing or cannot be parsed is refused before anything is written,
        // one that renders a conversation otherwise than its beginning before any data is.
        string Refusal(string template) =>
            Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("bad"), temp.File("base"), chatTemplate: template)).Message;
        Assert.Equal($"--chat-template {temp.File("none.jinja")} does not exist; pass a Jinja chat template file (e.g. the chat_template of a Hugging Face tokenizer_config.json)", Refusal(temp.File("none.jinja")));
        File.WriteAllText(temp.File("bad.jinja"), "{% for m in messages %}{{ m['content'] }}");
        Assert.StartsWith($"{temp.File("bad.jinja")}: the chat template cannot be used: ", Refusal(temp.File("bad.jinja")));
        Assert.False(Directory.Exists(temp.File("bad")));
        File.WriteAllText(temp.File("last.jinja"), "{% for m in messages %}{% if loop.last %}{{ 'last: ' }}{% endif %}{{ m['content'] + '\\n' }}{% endfor %}");
        Assert.Equal($"{temp.File("chat.jsonl")}:1: the chat template renders a conversation differently from its beginning, so assistant turns cannot be located; it cannot be used for fine-tuning", Refusal(temp.File("last.jinja")));
        Assert.False(File.Exists(Path.Combine(temp.File("bad"), DatasetPreparer.TrainShard)));
    }

    [Fact]
    public void Batches_without_assistant_tokens_leave_the_loss_a_number()
    {
        using var temp = new TempDirectory();
        // Long questions with one-token answers: many windows of 16 tokens hold no answer, and the
        // last conversation has none at all (a val split of it alone is refused).
        var question = string.Concat(Enumerable.Repeat("why is the sky so blue today? ", 14));
        File.WriteAllLines(temp.File("chat.jsonl"), Enumerable.Range(0, 20).Select(i => new JsonObject
        {
            ["messages"] = i == 19
                ? new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question })
                : new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question + i }, new JsonObject { ["role"] = "assistant", ["content"] = "k" }),
        }.ToJsonString()));
        HuggingFaceTests.WriteHfLlama(temp.File("hf"), shards: 1);
        HuggingFace.Import(temp.File("hf"), temp.File("base"));
        Assert.Contains("held out for validation, have no assistant message", Assert.Throws<StratusUserException>(() =>
            ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), valFraction: 0.05)).Message);
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), valFraction: 0.15);
        // Training: 40 steps of one window each, every loss a number (a window without an
        // answer adds nothing; before, its 0/0 mean was NaN and metrics.jsonl could not hold it).
        using var train = Trainer.Start(ChatConfig(("batch_size", "1"), ("max_iters", "40"), ("eval_interval", "1000"), ("checkpoint_interval", "0")), temp.File("data"), temp.File("ft2"), initFrom: temp.File("base"));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 40; i++) Assert.True(double.IsFinite(train.TrainStep(clock).TrainLoss));
    }

    [Fact]
    public void A_chat_step_s_windows_are_drawn_once_and_read_at_the_forward_as_Sample_draws_them()
    {
        using var temp = new TempDirectory();
        var tokenizer = SaveCharLlama(temp.File("base"), new ModelConfig { NLayer = 1, NHead = 2, NKvHead = 1, NEmbd = 16, IntermediateSize = 32, BlockSize = 64 });
        File.WriteAllText(temp.File("chatml.jinja"), ChatTemplateTests.ChatMl);
        // Long questions and one-letter answers: most windows of 16 hold no answer and are redrawn.
        File.WriteAllLines(temp.File("chat.jsonl"), Enumerable.Range(0, 12).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = string.Concat(Enumerable.Repeat($"why {i}? ", 12)) },
                new JsonObject { ["role"] = "assistant", ["content"] = "k" }),
        }.ToJsonString()));
        ChatDatasetPreparer.Prepare(temp.File("chat.jsonl"), temp.File("data"), temp.File("base"), chatTemplate: temp.File("chatml.jinja"));
        using var sampler = new BatchSampler(temp.File("data"), 3, 16, seed: 5);
        var windows = new long[4 * 3];
        for (var step = 0; step < 6; step++)
        {
            // A step draws all its micro-batches first (counting their targets), then reads each.
            var counted = Enumerable.Range(0, 4).Select(micro => sampler.DrawTraining(step, micro, windows.AsSpan(micro * 3, 3))).ToList();
            for (var micro = 0; micro < 4; micro++)
            {
                var (inputs, targets) = sampler.Read(windows.AsSpan(micro * 3, 3), torch.CPU);
                var (sampledInputs, sampledTargets, scored) = sampler.Sample(Split.Train, step, micro, torch.CPU);
                Assert.Equal(scored, counted[micro]);
                Assert.Equal(sampledInputs.data<long>().ToArray(), inputs.data<long>().ToArray());
                Assert.Equal(sampledTargets.data<long>().ToArray(), targets.data<long>().ToArray());
            }
        }
    }

    [Fact]
    public void A_sentencepiece_chat_is_encoded_turn_by_turn_as_it_is_whole()
    {
        var tokenizer = HfTokenizer.FromHuggingFace(SentencePieceTests.Llama2StyleTokenizerJson(), new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>" });
        var template = new ChatTemplate("{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token + m['content'] }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}", "<s>", "</s>");
        List<ChatMessageText> messages = [new("user", "the cat"), new("assistant", "sat on")];
        var (tokens, _) = ChatDatasetPreparer.Encode(template, tokenizer, messages);
        Assert.Equal(tokenizer.Encode(template.Render(messages, false)), tokens);
    }
}
