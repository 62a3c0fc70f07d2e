// Chooses the next token from a row of logits on the CPU: the one place where greedy, temperature,
// top-k, top-p, min-p and JSON mode's mask are applied. The serving engine calls Choose for each
// sequence of a batch with its own settings (bias, penalties, JSON mode, logprobs besides) and
// random generator, so rows never influence each other; TextGenerator calls Sample past the
// context, where the engine stops. Works on spans and reusable scratch arrays: no allocation per
// token unless log-probability alternatives are asked for.
using Stratus.Models;
using Stratus.Tokenization;

namespace Stratus.Inference;

/// <param name="drawableTokens">The longest row of logits it is given: <see cref="LogitsSampler.DrawableTokens"/>, which may
/// be fewer than the model's vocab_size.</param>
public sealed class LogitsSampler(int drawableTokens)
{
    /// <summary>How many of a model's logits a token is drawn from: the ids its tokenizer can
    /// spell. An imported model may pad vocab_size past its tokenizer (Qwen2.5 has 151,936 rows
    /// for 151,665 tokens); a padding id has no text, and drawing one failed the generation.</summary>
    public static int DrawableTokens(CausalLanguageModel model, ITokenizer tokenizer) =>
        Math.Min(model.Config.VocabSize, tokenizer.VocabSize);

    readonly float[] probabilities = new float[drawableTokens];
    readonly int[] order = new int[drawableTokens];
    readonly float[] sortKeys = new float[drawableTokens];

    /// <summary>Picks a token for <paramref name="sequence"/> from <paramref name="logits"/>
    /// (bias, penalties and JSON mode's mask are applied in place; temperature is not, so
    /// log-probabilities are read from the logits after the choice).</summary>
    public GeneratedToken Choose(Span<float> logits, Sequence sequence)
    {
        var request = sequence.Request;
        foreach (var (token, value) in sequence.LogitBias) logits[token] += value;
        if (request.UsesPenalties) ApplyPenalties(logits, sequence);
        if (sequence.JsonVocabulary is { } vocabulary) MaskNonJson(logits, sequence, vocabulary);

        var chosen = Sample(logits, request.Sampling, sequence.Random);

        if (request.Logprobs is not { } alternatives) return new GeneratedToken(chosen, 0, null);
        // Log-probabilities of the distribution the model proposed after bias, penalties and
        // JSON mode's mask (the tokens it leaves, renormalised; the masked ones are no
        // alternatives), before temperature and truncation (vLLM's default).
        var logSum = LogSumExp(logits);
        TokenLogprob[]? top = alternatives > 0 ? TopLogprobs(logits, alternatives, logSum) : null;
        return new GeneratedToken(chosen, logits[chosen] - logSum, top);
    }

    static void ApplyPenalties(Span<float> logits, Sequence sequence)
    {
        var request = sequence.Request;
        var counts = sequence.OutputCounts!;
        var inPrompt = sequence.PromptTokenSet!;
        var repetition = (float)request.RepetitionPenalty;
        var presence = (float)request.PresencePenalty;
        var frequency = (float)request.FrequencyPenalty;
        for (var i = 0; i < logits.Length; i++)
        {
            var count = counts[i];
            if (repetition != 1f && (count > 0 || inPrompt[i]))
                logits[i] = Saturated(logits[i] > 0 ? logits[i] / repetition : logits[i] * repetition);
            if (count > 0) logits[i] = Saturated(logits[i] - (frequency * count + presence));
        }
    }

    /// <summary>A penalised logit within float32's finite range. A penalty makes a token less or
    /// more likely, never impossible or certain: -inf is JSON mode's mark of a ruled-out token
    /// (a penalty's -inf left JSON mode no token to draw), and +inf makes the probabilities NaN
    /// (repetition_penalty 1e-300 is 0 as a float32 and divided logits into it).</summary>
    static float Saturated(float logit) => Math.Clamp(logit, float.MinValue, float.MaxValue);

    /// <summary>JSON mode: -inf for every token whose bytes would leave the text no longer the
    /// beginning of one JSON object, for special and empty tokens, and for the tokens that end
    /// the sequence until the object is whole; once it is, for every token but those.</summary>
    static void MaskNonJson(Span<float> logits, Sequence sequence, JsonVocabulary vocabulary)
    {
        var json = sequence.Json;
        var ends = sequence.EndTokens;
        if (json.IsComplete)
        {
            for (var i = 0; i < logits.Length; i++)
                if (Array.IndexOf(ends, i) < 0) logits[i] = float.NegativeInfinity;
            return;
        }
        var allowed = vocabulary.Allowed(json);
        for (var word = 0; word < allowed.Length; word++)
        {
            var bits = allowed[word];
            var start = word << 6;
            var count = Math.Min(64, logits.Length - start);
            if (bits == ulong.MaxValue) continue;
            if (bits == 0)
            {
                logits.Slice(start, count).Fill(float.NegativeInfinity);
                continue;
            }
            for (var i = 0; i < count; i++)
                if ((bits >> i & 1) == 0) logits[start + i] = float.NegativeInfinity;
        }
        foreach (var end in ends)
            if ((uint)end < (uint)logits.Length) logits[end] = float.NegativeInfinity;
    }

    /// <summary>Draws a token from <paramref name="logits"/> with the options' temperature,
    /// top-k, top-p and min-p, or takes the most likely one at temperature 0.</summary>
    public int Sample(ReadOnlySpan<float> logits, SamplingOptions options, Random random)
    {
        if (options.Temperature == 0) return ArgMax(logits);
        var n = logits.Length;
        // Capped so a temperature too small for float32 (1e-40) still scales the largest logit's
        // difference of 0 to 0 rather than 0 * inf = NaN: the limit is greedy, and so is this.
        var inverse = (float)Math.Min(1.0 / options.Temperature, float.MaxValue);
        var max = logits[ArgMax(logits)];
        var needsOrder = (options.TopK > 0 && options.TopK < n) || options.TopP < 1.0;
        var count = n;
        if (needsOrder)
        {
            // Sort token ids by descending logit (a positive temperature keeps the order); then the
            // kept set is a prefix of `order`.
            for (var i = 0; i < n; i++)
            {
                order[i] = i;
                sortKeys[i] = -logits[i];
            }
            Array.Sort(sortKeys, order, 0, n);
            if (options.TopK > 0) count = Math.Min(count, options.TopK);
            var sum = 0.0;
            for (var i = 0; i < count; i++) sum += probabilities[i] = MathF.Exp((logits[order[i]] - max) * inverse);
            if (options.TopP < 1.0)
            {
                // Keep the smallest prefix whose probability reaches top_p; the first always stays.
                var cumulative = 0.0;
                for (var i = 0; i < count; i++)
                {
                    cumulative += probabilities[i] / sum;
                    if (cumulative >= options.TopP) { count = i + 1; break; }
                }
            }
        }
        else
        {
            for (var i = 0; i < n; i++)
            {
                order[i] = i;
                probabilities[i] = MathF.Exp((logits[i] - max) * inverse);
            }
        }
        // min-p relative to the most likely token, whose unnormalised probability is exp(0) = 1.
        var threshold = (float)options.MinP;
        var total = 0.0;
        for (var i = 0; i < count; i++)
        {
            if (probabilities[i] < threshold) probabilities[i] = 0;
            total += probabilities[i];
        }
        var target = random.NextDouble() * total;
        var last = order[0];
        for (var i = 0; i < count; i++)
        {
            if (probabilities[i] <= 0) continue;
            last = order[i];
            target -= probabilities[i];
            if (target < 0) return last;
        }
        return last;
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    static float LogSumExp(ReadOnlySpan<float> logits)
    {
        var max = logits[ArgMax(logits)];
        var sum = 0.0;
        foreach (var x in logits) sum += Math.Exp(x - max);
        return max + (float)Math.Log(sum);
    }

    /// <summary>The k most likely tokens, fewer where a mask left fewer.</summary>
    static TokenLogprob[] TopLogprobs(ReadOnlySpan<float> logits, int k, float logSum)
    {
        k = Math.Min(k, logits.Length);
        var top = new TokenLogprob[k];
        var filled = 0;
        for (var i = 0; i < logits.Length; i++)
        {
            var value = logits[i] - logSum;
            if (float.IsNegativeInfinity(value) || (filled == k && value <= top[k - 1].Logprob)) continue;
            var at = filled < k ? filled++ : k - 1;
            while (at > 0 && top[at - 1].Logprob < value) { top[at] = top[at - 1]; at--; }
            top[at] = new TokenLogprob(i, value);
        }
        return filled == k ? top : top[..filled];
    }
}
