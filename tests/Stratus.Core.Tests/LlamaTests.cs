// The Llama module: Hugging Face parameter names, cached decoding equal to a full forward, and
// training through the ordinary Trainer from an "architecture": "llama" config.
using Stratus.Data;
using Stratus.Models;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class LlamaTests
{
    internal static ModelConfig Tiny(int vocab = 97, bool tied = true, bool bias = false, RopeScaling? scaling = null) => new()
    {
        Architecture = "llama", VocabSize = vocab, BlockSize = 64, NLayer = 2, NHead = 4, NKvHead = 2, NEmbd = 32,
        IntermediateSize = 48, TieWordEmbeddings = tied, AttentionBias = bias, RopeScaling = scaling, Bias = false,
    };

    [Fact]
    public void Parameters_have_Hugging_Face_names()
    {
        torch.random.manual_seed(1);
        using var model = CausalLanguageModel.Create(Tiny(tied: false, bias: true));
        var names = model.state_dict().Keys.ToHashSet();
        foreach (var name in new[]
        {
            "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
            "model.layers.1.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
            "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.bias", "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
        }) Assert.Contains(name, names);
        Assert.Equal(new long[] { 16, 32 }, model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape);
        Assert.Equal(3 + 2 * 12, names.Count); // per layer: 2 norms, q/k/v weights and biases, o, 3 MLP
        using var tiedModel = CausalLanguageModel.Create(Tiny());
        Assert.DoesNotContain("lm_head.weight", tiedModel.state_dict().Keys);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Cached_decoding_matches_a_full_forward(bool llama3Scaling)
    {
        torch.random.manual_seed(2);
        using var model = CausalLanguageModel.Create(Tiny(tied: false, bias: true, scaling: llama3Scaling ? new RopeScaling { Factor = 8, OriginalMaxPositionEmbeddings = 16 } : null));
        model.eval();
        using var noGrad = no_grad();
        // Sharp attention (weights at 10x their initial scale): a wrong position or mask shows.
        foreach (var parameter in model.parameters()) parameter.mul_(10);
        using var tokens = randint(0, 97, [2, 12], dtype: ScalarType.Int64);
        using var full = model.Forward(tokens);
        using var cache = model.CreateCache(2, 12);
        using var prefill = model.Forward(tokens[.., ..5], cache);
        using var chunk = model.Forward(tokens[.., 5..8], cache);
        var steps = new List<Tensor> { prefill, chunk };
        for (var i = 8; i < 12; i++) steps.Add(model.Forward(tokens[.., i..(i + 1)], cache));
        using var cached = cat(steps, 1);
        // Relative to the largest logit: sharp weights make logits of a few hundred.
        var (difference, largest) = ((full - cached).abs().max().item<float>(), full.abs().max().item<float>());
        Assert.True(difference <= 1e-5f * largest, $"max difference {difference}, largest logit {largest}");
        foreach (var t in steps.Skip(2)) t.Dispose();
    }

    [Fact]
    public void Rotary_frequencies_follow_Llama3_scaling()
    {
        var plain = Llama.InverseFrequencies(Tiny());
        var scaled = Llama.InverseFrequencies(Tiny(scaling: new RopeScaling { Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 64 }));
        Assert.Equal(plain[0], scaled[0]); // short wavelengths are kept
        Assert.Equal(plain[^1] / 8, scaled[^1], 6); // long wavelengths are divided by factor
    }

    [Fact]
    public void A_llama_config_trains_with_the_ordinary_trainer()
    {
        using var temp = new TempDirectory();
        var text = string.Concat(Enumerable.Repeat("the quick brown fox jumps over the lazy dog. ", 200));
        File.WriteAllText(temp.File("input.txt"), text);
        DatasetPreparer.Prepare(temp.File("input.txt"), temp.File("data"), "char");
        var config = TrainConfig.Load(Path.Combine(TempDirectory.RepositoryRoot, "configs", "shakespeare-char-llama.json"),
        [
            new("n_layer", "1"), new("n_embd", "32"), new("intermediate_size", "64"), new("block_size", "16"), new("batch_size", "4"),
            new("max_iters", "30"), new("eval_interval", "30"), new("eval_iters", "2"), new("warmup_iters", "0"), new("learning_rate", "0.01"),
        ]);
        using (var trainer = Trainer.Start(config, temp.File("data"), temp.File("run")))
        {
            Assert.IsType<Llama>(trainer.Model);
            var (before, _, _) = trainer.Evaluate();
            trainer.Run();
            var (after, _, _) = trainer.Evaluate();
            Assert.True(after < before - 0.5, $"loss {before} -> {after}");
        }
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(temp.File("run")));
        Assert.Equal("llama", checkpoint.ModelConfig.Architecture);
        Assert.Equal(2, checkpoint.ModelConfig.NKvHead);
        using var model = checkpoint.CreateModel();
        Assert.IsType<Llama>(model);
    }
}
