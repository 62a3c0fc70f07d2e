// What a caller asks the engine for: prompt tokens and how to choose each next token. The HTTP
// layer and the IChatClient both translate into this one record.
namespace Stratus.Inference;

public sealed record GenerationRequest
{
    public required IReadOnlyList<int> PromptTokens { get; init; }
    public int MaxTokens { get; init; } = 16;
    /// <summary>0 picks the most likely token (greedy).</summary>
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    /// <summary>0: all tokens.</summary>
    public int TopK { get; init; }
    /// <summary>Drop tokens less likely than MinP times the most likely one (0: off).</summary>
    public double MinP { get; init; }
    public long? Seed { get; init; }
    /// <summary>OpenAI's penalties over the generated tokens: presence once, frequency per occurrence.</summary>
    public double PresencePenalty { get; init; }
    public double FrequencyPenalty { get; init; }
    /// <summary>CTRL's penalty over prompt and generated tokens (1: off).</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }
    /// <summary>Null: no log-probabilities; otherwise the chosen token's and this many alternatives.</summary>
    public int? Logprobs { get; init; }
    /// <summary>Null: none; otherwise each prompt token's log-probability given the tokens
    /// before it, with this many alternatives (scoring, e.g. echo with logprobs).</summary>
    public int? PromptLogprobs { get; init; }
    /// <summary>Text that ends generation; it is not part of the output.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Tokens that end generation besides end-of-text (e.g. a chat template's end marker).</summary>
    public IReadOnlyList<int> StopTokens { get; init; } = [];
    /// <summary>Keep going past end-of-text (benchmarks need a fixed output length).</summary>
    public bool IgnoreEos { get; init; }

    public bool UsesPenalties => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1.0;

    /// <summary>Refuses sampling settings the sampler cannot use. The engine checks every request
    /// with it, whoever built it (the HTTP API first checks with its own messages): a NaN or a
    /// negative temperature would otherwise fail the engine for all its callers.</summary>
    /// <exception cref="StratusUserException">A setting is out of range.</exception>
    public void ValidateSampling()
    {
        static void Require(bool condition, string message)
        {
            if (!condition) throw new StratusUserException(message);
        }
        Require(Temperature >= 0 && double.IsFinite(Temperature), $"temperature must be 0 (greedy) or more, got {Temperature}");
        Require(TopP is > 0 and <= 1, $"top_p must be in (0, 1], got {TopP}");
        Require(TopK >= 0, $"top_k must be 0 (all tokens) or more, got {TopK}");
        Require(MinP is >= 0 and <= 1, $"min_p must be in [0, 1], got {MinP}");
        Require(double.IsFinite(PresencePenalty) && double.IsFinite(FrequencyPenalty), $"presence and frequency penalties must be numbers, got {PresencePenalty} and {FrequencyPenalty}");
        Require(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty), $"repetition_penalty must be above 0, got {RepetitionPenalty}");
        Require(Stop.All(stop => stop.Length > 0), "a stop sequence must not be empty");
        if (LogitBias is { } bias) Require(bias.Values.All(float.IsFinite), "logit_bias values must be numbers");
    }
}

public static class FinishReason
{
    public const string Stop = "stop";
    public const string Length = "length";
    public const string Cancelled = "cancelled";
}

/// <summary>A token's log-probability, and the alternatives' when asked.</summary>
public readonly record struct TokenLogprob(int Token, float Logprob);

public readonly record struct GeneratedToken(int Token, float Logprob, TokenLogprob[]? TopLogprobs);

/// <summary>The engine could not take the request now: its waiting queue is full.</summary>
public sealed class EngineOverloadedException(string message, TimeSpan retryAfter) : Exception(message)
{
    public TimeSpan RetryAfter { get; } = retryAfter;
}

/// <summary>The engine has stopped (disposed or failed) and takes no more requests.</summary>
public sealed class EngineUnavailableException(string message, Exception? inner = null) : Exception(message, inner);
