// Supervised fine-tuning: chat JSONL rendered with the model's chat template, a loss mask over
// assistant turns only, and `train --init-from` continuing an imported Llama on it.
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Tests;

public sealed class FineTuningTests
{
    [Fact]
    public void Chat_data_is_masked_to_assistant_turns_and_an_imported_llama_learns_them()
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

        // The learned tokens of one conversation are exactly the assistant's reply and end of turn.
        var template = ChatTemplate.Load(imported.CheckpointDirectory);
        var (tokens, mask) = ChatDatasetPreparer.Encode(template, imported.Tokenizer, [("user", "say 1"), ("assistant", "ok 1!")]);
        Assert.Equal(template.Render([("user", "say 1"), ("assistant", "ok 1!")], false), imported.Tokenizer.Decode(tokens));
        Assert.Equal("ok 1!<|im_end|>\n", imported.Tokenizer.Decode(tokens.Where((_, i) => mask[i] == 1)));

        using (var sampler = new BatchSampler(temp.File("data"), 4, 16, 1))
        {
            Assert.True(sampler.IsMasked);
            var (_, targets) = sampler.Sample(Split.Train, 0, 0, torch.CPU);
            var values = targets.data<long>().ToArray();
            Assert.Contains(-100L, values);
            Assert.Contains(values, v => v >= 0);
        }

        var config = TrainConfig.Load(null,
        [
            new("block_size", "24"), new("batch_size", "8"), new("max_iters", "40"), new("eval_interval", "40"), new("eval_iters", "4"),
            new("learning_rate", "0.003"), new("warmup_iters", "0"), new("weight_decay", "0"),
        ]);
        using var trainer = Trainer.Start(config, temp.File("data"), temp.File("sft"), initFrom: temp.File("base"));
        var (_, before) = trainer.Evaluate();
        trainer.Run();
        var (_, after) = trainer.Evaluate();
        Assert.True(after < before * 0.5, $"val loss on assistant tokens {before} -> {after}");
        Assert.Equal("llama", Checkpoint.Open(Checkpoint.Resolve(temp.File("sft"))).ModelConfig.Architecture);
    }
}
