// Response bodies of the OpenAI API as records, field for field as OpenAI writes them
// (including the nulls it writes, such as finish_reason in a streamed chunk), plus Azure
// OpenAI's prompt_filter_results and content_filter_results when a filter gives them.
using System.Text.Json.Serialization;
using Stratus.Safety;

namespace Stratus.Server.Api;

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens, PromptTokensDetails PromptTokensDetails)
{
    public static Usage Of(int prompt, int completion, int cachedPrompt) => new(prompt, completion, prompt + completion, new PromptTokensDetails(cachedPrompt));
}

/// <summary>cached_tokens: prompt tokens whose keys and values came from the prefix cache.</summary>
public sealed record PromptTokensDetails(int CachedTokens);

public sealed record ModelList(IReadOnlyList<ModelCard> Data)
{
    public string Object => "list";
}

/// <param name="RegisteredVersion">NAME:VERSION of the model registry's version it was loaded from
/// (`serve --model shk@production`); left out for a model served from a folder.</param>
public sealed record ModelCard(string Id, long Created, int MaxModelLen,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? RegisteredVersion = null)
{
    public string Object => "model";
    public string OwnedBy => "stratus";
}

public sealed record ChatCompletion(string Id, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage Usage)
{
    public string Object => "chat.completion";
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<PromptFilterResult>? PromptFilterResults { get; init; }
}

public sealed record ChatChoice(int Index, ChatMessageOut Message, ChatLogprobs? Logprobs, string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ContentFilterResults? ContentFilterResults { get; init; }
}

/// <param name="Content">Null where the message is calls only, as OpenAI writes it.</param>
public sealed record ChatMessageOut(string? Content)
{
    public string Role => "assistant";
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<ToolCallOut>? ToolCalls { get; init; }
    /// <summary>OpenAI's refusal text of a safety-trained model, null but always there: the SDKs
    /// type it as string | null, and a withheld answer here is Azure's content_filter instead.</summary>
    public string? Refusal => null;
}

public sealed record ChatCompletionChunk(string Id, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices)
{
    public string Object => "chat.completion.chunk";
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public Usage? Usage { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<PromptFilterResult>? PromptFilterResults { get; init; }
}

public sealed record ChatChunkChoice(int Index, ChatDelta Delta, ChatLogprobs? Logprobs, string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ContentFilterResults? ContentFilterResults { get; init; }
}

public sealed record ChatDelta
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Role { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Content { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<ToolCallDelta>? ToolCalls { get; init; }
}

/// <summary>A call in a message: its id, and the function's name and arguments (JSON text).</summary>
public sealed record ToolCallOut(string Id, FunctionCallOut Function)
{
    public string Type => "function";
}

public sealed record FunctionCallOut(string Name, string Arguments);

/// <summary>A piece of a streamed call: the first of each call has its id, type and name (and
/// arguments ""), the others a fragment of its arguments; index tells the calls apart.</summary>
public sealed record ToolCallDelta(int Index)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Id { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Type { get; init; }
    public FunctionDelta Function { get; init; } = new();
}

public sealed record FunctionDelta
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Name { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Arguments { get; init; }
}

public sealed record ChatLogprobs(IReadOnlyList<ChatTokenLogprob> Content)
{
    /// <summary>The refusal's tokens, null as there is none (see ChatMessageOut.Refusal).</summary>
    public IReadOnlyList<ChatTokenLogprob>? Refusal => null;
}

public sealed record ChatTokenLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes, IReadOnlyList<ChatTopLogprob> TopLogprobs);

public sealed record ChatTopLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes);

public sealed record Completion(string Id, long Created, string Model, IReadOnlyList<CompletionChoice> Choices)
{
    public string Object => "text_completion";
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public Usage? Usage { get; init; }
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<PromptFilterResult>? PromptFilterResults { get; init; }
}

public sealed record CompletionChoice(int Index, string Text, CompletionLogprobs? Logprobs, string? FinishReason)
{
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ContentFilterResults? ContentFilterResults { get; init; }
}

public sealed record CompletionLogprobs(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<float?> TokenLogprobs,
    IReadOnlyList<Dictionary<string, float>?> TopLogprobs,
    IReadOnlyList<int> TextOffset);

public sealed record TokenizeResponse(IReadOnlyList<int> Tokens, int Count, int MaxModelLen);

public sealed record DetokenizeResponse(string Prompt);
