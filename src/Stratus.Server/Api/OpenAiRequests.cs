// Request bodies of the OpenAI API as records. Fields that OpenAI lets take several shapes
// (stop, prompt, message content) are JsonElement and are checked by RequestParser.
using System.Text.Json;
using Stratus.Tokenization;

namespace Stratus.Server.Api;

/// <summary>Sampling fields shared by chat and text completions (OpenAI's plus vLLM's extras).</summary>
public abstract record SamplingFields
{
    public string? Model { get; init; }
    public int? MaxTokens { get; init; }
    public double? Temperature { get; init; }
    public double? TopP { get; init; }
    public int? TopK { get; init; }
    public double? MinP { get; init; }
    public int? N { get; init; }
    public JsonElement? Stop { get; init; }
    public long? Seed { get; init; }
    public double? PresencePenalty { get; init; }
    public double? FrequencyPenalty { get; init; }
    public double? RepetitionPenalty { get; init; }
    public Dictionary<string, double>? LogitBias { get; init; }
    public string? User { get; init; }
    public bool? Stream { get; init; }
    public StreamOptions? StreamOptions { get; init; }
    /// <summary>vLLM's extension: keep generating past end-of-text (benchmarks).</summary>
    public bool? IgnoreEos { get; init; }
    /// <summary>vLLM's extension: whether the prompt's text gets the tokenizer's special tokens (a
    /// Llama's BOS). By default a text prompt does, and a chat as its template decides; false
    /// suits a prompt rendered by the client that already starts with them.</summary>
    public bool? AddSpecialTokens { get; init; }
    /// <summary>vLLM's extension: whether generated special tokens (&lt;|im_start|&gt;, a Llama's
    /// &lt;/s&gt; past ignore_eos) are left out of the text; true by default.</summary>
    public bool? SkipSpecialTokens { get; init; }
    /// <summary>{"type": "text"}, {"type": "json_object"} (JSON mode) or {"type": "json_schema", "json_schema": {...}}
    /// (Structured Outputs); on completions too, as vLLM takes it.</summary>
    public JsonElement? ResponseFormat { get; init; }
}

public sealed record StreamOptions
{
    public bool? IncludeUsage { get; init; }
}

public sealed record ChatCompletionRequest : SamplingFields
{
    public List<ChatMessageBody?>? Messages { get; init; }
    /// <summary>vLLM's: render the messages with the template's generation prompt (the
    /// assistant's header); default true.</summary>
    public bool? AddGenerationPrompt { get; init; }
    /// <summary>vLLM's: leave the final message open for the model to continue (a prefilled
    /// reply; needs add_generation_prompt false); default false.</summary>
    public bool? ContinueFinalMessage { get; init; }
    public int? MaxCompletionTokens { get; init; }
    public bool? Logprobs { get; init; }
    public int? TopLogprobs { get; init; }
    /// <summary>[{"type": "function", "function": {"name", "description", "parameters", "strict"}}]: checked by ChatToolsParser.Parse.</summary>
    public JsonElement? Tools { get; init; }
    /// <summary>"none", "auto", "required" or {"type": "function", "function": {"name"}}.</summary>
    public JsonElement? ToolChoice { get; init; }
    /// <summary>Whether "required" may make several calls; default true.</summary>
    public bool? ParallelToolCalls { get; init; }
    /// <summary>vLLM's: more variables for the chat template, a JSON object ({"enable_thinking": false}).</summary>
    public JsonElement? ChatTemplateKwargs { get; init; }
    /// <summary>OpenAI's "low", "medium", "high" ...: the chat template's reasoning_effort (gpt-oss's), as vLLM passes it.</summary>
    public JsonElement? ReasoningEffort { get; init; }
    /// <summary>vLLM's: documents for a template that retrieves from them ([{"title", "text"}]), its documents.</summary>
    public JsonElement? Documents { get; init; }
    // Read only to refuse them (RequestParser.RefuseUnimplemented): the deprecated form of tools,
    // which ignoring would answer with something else.
    public JsonElement? Functions { get; init; }
    public JsonElement? FunctionCall { get; init; }
    // Read only to refuse audio output: the reply would come without the message.audio asked for.
    public JsonElement? Modalities { get; init; }
    public JsonElement? Audio { get; init; }
}

public sealed record CompletionRequest : SamplingFields
{
    /// <summary>A string, an array of strings, an array of token ids, or an array of those.</summary>
    public JsonElement? Prompt { get; init; }
    public int? Logprobs { get; init; }
    public bool? Echo { get; init; }
    // Read only to refuse them (RequestParser.RefuseUnimplemented): no insertion, no best-of.
    public string? Suffix { get; init; }
    public int? BestOf { get; init; }
}

public sealed record TokenizeRequest
{
    public string? Model { get; init; }
    public string? Prompt { get; init; }
    public List<ChatMessageBody?>? Messages { get; init; }
    /// <summary>vLLM's: add the tokenizer's special tokens (a Llama's BOS) as a completions
    /// prompt gets them; default true for a prompt, and for messages as a chat gets them (none
    /// when the model's own template writes them).</summary>
    public bool? AddSpecialTokens { get; init; }
    /// <summary>vLLM's: render messages with the template's generation prompt (the assistant's
    /// header), as a chat sends them; default true.</summary>
    public bool? AddGenerationPrompt { get; init; }
    /// <summary>vLLM's: render messages with the final one left open, as a chat that continues it does.</summary>
    public bool? ContinueFinalMessage { get; init; }
    /// <summary>vLLM's: the tools a chat offers ([{"type": "function", "function": {...}}], checked
    /// as a chat's), rendered with the messages as the chat's prompt has them.</summary>
    public JsonElement? Tools { get; init; }
    /// <summary>vLLM's: the chat template's variables, as a chat's.</summary>
    public JsonElement? ChatTemplateKwargs { get; init; }
}

public sealed record DetokenizeRequest
{
    public string? Model { get; init; }
    public List<int>? Tokens { get; init; }
}
