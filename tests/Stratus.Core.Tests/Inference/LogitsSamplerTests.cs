// Each sampling setting does what its name says, row by row, with the sequence's own generator.
using Stratus.Inference;

namespace Stratus.Tests.Inference;

public sealed class LogitsSamplerTests
{
    static readonly float[] Logits = [1.0f, 3.0f, 2.5f, 0.5f, -1.0f];

    static int[] Draw(GenerationRequest request, int times = 200)
    {
        var sampler = new LogitsSampler(Logits.Length);
        var sequence = new Sequence(1, request with { PromptTokens = [0], MaxTokens = times }, Logits.Length);
        var drawn = new int[times];
        for (var i = 0; i < times; i++)
        {
            var row = (float[])Logits.Clone();
            var token = sampler.Choose(row, sequence);
            sequence.Append(token, emit: false);
            drawn[i] = token.Token;
        }
        return drawn;
    }

    static GenerationRequest Sampled(SamplingOptions sampling) => new() { PromptTokens = [0], Sampling = sampling };

    static SamplingOptions Seeded(double temperature = 1.0) => new() { Temperature = temperature, Seed = 3 };

    [Fact]
    public void Greedy_tiny_temperatures_top_k_1_tiny_top_p_and_min_p_1_all_pick_the_most_likely_token()
    {
        Assert.All(Draw(Sampled(Seeded(0))), t => Assert.Equal(1, t));
        // Temperatures too small for float32 (1 / 1e-40 overflows) are greedy, not a NaN draw.
        Assert.All(Draw(Sampled(Seeded(1e-30))), t => Assert.Equal(1, t));
        Assert.All(Draw(Sampled(Seeded(1e-40) with { TopP = 0.9 })), t => Assert.Equal(1, t));
        Assert.All(Draw(Sampled(Seeded() with { TopK = 1 })), t => Assert.Equal(1, t));
        Assert.All(Draw(Sampled(Seeded() with { TopP = 0.01 })), t => Assert.Equal(1, t));
        Assert.All(Draw(Sampled(Seeded() with { MinP = 1.0 })), t => Assert.Equal(1, t));
    }

    [Fact]
    public void Top_k_keeps_only_the_k_most_likely_tokens()
    {
        var drawn = Draw(Sampled(Seeded(2.0) with { TopK = 2 }), 400);
        Assert.All(drawn, t => Assert.Contains(t, new[] { 1, 2 }));
        Assert.Contains(2, drawn);
    }

    [Fact]
    public void Top_p_keeps_the_smallest_set_of_most_likely_tokens_that_reaches_p()
    {
        // Probabilities 0.07, 0.54, 0.33, 0.04, 0.01: the first alone is under 0.6, with the second over.
        var drawn = Draw(Sampled(Seeded() with { TopP = 0.6 }), 400);
        Assert.All(drawn, t => Assert.Contains(t, new[] { 1, 2 }));
        Assert.Contains(2, drawn);
    }

    [Fact]
    public void Same_seed_draws_the_same_tokens_and_other_seeds_other_tokens()
    {
        Assert.Equal(Draw(Sampled(Seeded())), Draw(Sampled(Seeded())));
        Assert.NotEqual(Draw(Sampled(Seeded())), Draw(Sampled(Seeded() with { Seed = 4 })));
        // Negative seeds, and seeds that differ only above bit 31, are seeds of their own.
        foreach (var (a, b) in new (long, long)[] { (-1, 0), (1, -2), (5, 4294967291), (7, 7 + (1L << 32)) })
            Assert.NotEqual(Draw(Sampled(Seeded() with { Seed = a })), Draw(Sampled(Seeded() with { Seed = b })));
    }

    [Fact]
    public void Temperature_draws_from_the_softmax_of_the_scaled_logits()
    {
        var drawn = Draw(Sampled(Seeded(2.0)), 4000);
        var scaled = Logits.Select(x => Math.Exp(x / 2.0)).ToArray();
        for (var token = 0; token < Logits.Length; token++)
            Assert.Equal(scaled[token] / scaled.Sum(), drawn.Count(t => t == token) / 4000.0, 0.04);
    }

    [Fact]
    public void Logit_bias_and_penalties_move_the_choice()
    {
        Assert.All(Draw(Sampled(Seeded(0)) with { LogitBias = new Dictionary<int, float> { [4] = 100 } }), t => Assert.Equal(4, t));
        // Greedy with a strong frequency penalty cannot pick the same token twice in a row.
        var drawn = Draw(Sampled(Seeded(0)) with { FrequencyPenalty = 2.0 }, 6);
        for (var i = 1; i < drawn.Length; i++) Assert.NotEqual(drawn[i - 1], drawn[i]);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(2.0)]
    [InlineData(0.5)]
    public void Logprobs_are_the_log_softmax_before_temperature_with_sorted_alternatives(double temperature)
    {
        var sampler = new LogitsSampler(Logits.Length);
        var sequence = new Sequence(1, Sampled(Seeded(temperature) with { TopK = 3 }) with { Logprobs = 3, MaxTokens = 1 }, Logits.Length);
        var token = sampler.Choose((float[])Logits.Clone(), sequence);
        var logSum = Math.Log(Logits.Sum(x => Math.Exp(x)));
        Assert.Equal(Logits[token.Token] - logSum, token.Logprob, 5);
        Assert.Equal([1, 2, 0], token.TopLogprobs!.Select(t => t.Token).ToArray());
        Assert.Equal(3.0 - logSum, token.TopLogprobs![0].Logprob, 5);
        Assert.Equal(2.5 - logSum, token.TopLogprobs![1].Logprob, 5);
    }
}
