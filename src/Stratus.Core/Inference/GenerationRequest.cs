// What a caller asks the engine for: prompt tokens and how to choose each next token. The HTTP
// layer and the IChatClient both translate into this one record.
namespace Stratus.Inference;

public sealed record GenerationRequest
{
    public required IReadOnlyList<int> PromptTokens { get; init; }
    public int MaxTokens { get; init; } = 16;
    /// <summary>Temperature, top-k, top-p, min-p and seed: how each next token is drawn.</summary>
    public SamplingOptions Sampling { get; init; } = new();
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
    /// <summary>Tokens that end generation besides the model's own (<see cref="Tokenization.ITokenizer.EndOfGenerationIds"/>;
    /// e.g. a chat template's end marker); <see cref="IgnoreEos"/> does not skip them.</summary>
    public IReadOnlyList<int> StopTokens { get; init; } = [];
    /// <summary>Keep going past the model's end-of-generation tokens, all of them, as vLLM's
    /// ignore_eos (benchmarks need a fixed output length).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>Leave generated special tokens (<see cref="Tokenization.ITokenizer.IsSpecial"/>)
    /// out of the text, as vLLM does by default; the token lists of logprobs still name them.</summary>
    public bool SkipSpecialTokens { get; init; } = true;
    /// <summary>Structured outputs (OpenAI's response_format json_schema): the sampler draws only
    /// tokens that keep the text the beginning of a JSON document valid against the schema, and
    /// the end markers only once it is whole (<see cref="JsonGrammar"/>), so a generation that
    /// ends with stop is one. Null: free text.</summary>
    public JsonSchema? Schema { get; init; }
    /// <summary>The request field <see cref="Schema"/> came from, which an error about it names:
    /// null for OpenAI's response_format (json_object or json_schema), "tools" for the grammar of
    /// a named or required tool choice.</summary>
    public string? SchemaParam { get; init; }
    /// <summary>JSON mode (OpenAI's response_format json_object): the schema {"type": "object"},
    /// <see cref="JsonSchema.AnyObject"/>. True under any schema, whose root is always an object.</summary>
    public bool JsonObject
    {
        get => Schema is not null;
        init => Schema = value ? JsonSchema.AnyObject : null;
    }

    public bool UsesPenalties => PresencePenalty != 0 || FrequencyPenalty != 0 || RepetitionPenalty != 1.0;

    /// <summary>At most this many generated tokens wait unread: the engine's thread then waits
    /// until the reader takes one (<see cref="Sequence.TryTake"/>) or the sequence is cancelled;
    /// 0, no bound. Only for an engine that serves this one sequence (TextGenerator's own): a
    /// shared engine's thread must never wait for one slow reader.</summary>
    internal int MaxUnreadTokens { get; init; }
}

public static class FinishReason
{
    public const string Stop = "stop";
    public const string Length = "length";
    public const string Cancelled = "cancelled";
    /// <summary>A chat's choice that stopped after tool calls (OpenAI's), read from its text by <see cref="ToolCallReader"/>.</summary>
    public const string ToolCalls = "tool_calls";
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

/// <summary>A model step failed for one of the request's sequences on its own (a failed batch is
/// run again without the others' sequences), e.g. the device ran out of memory, or gave logits
/// that are not numbers: the request has failed and the engine goes on (a retry may succeed).</summary>
public sealed class EngineStepFailedException(string message, Exception? inner = null) : Exception(message, inner);
