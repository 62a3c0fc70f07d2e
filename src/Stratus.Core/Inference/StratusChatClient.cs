// Microsoft.Extensions.AI's IChatClient over an engine, so a .NET application can chat with a
// Stratus model in-process, without HTTP, through the same abstraction it would use for a
// hosted model.
using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Stratus.Tokenization;

namespace Stratus.Inference;

public sealed class StratusChatClient(InferenceEngine engine, ChatTemplate template, string modelName) : IChatClient
{
    readonly ChatClientMetadata metadata = new("stratus", null, modelName);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var stream = new GenerationStream(engine, BuildRequest(messages, options), cancellationToken);
        var text = new System.Text.StringBuilder();
        await foreach (var chunk in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false)) text.Append(chunk.Text);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
            ResponseId = $"chatcmpl-{Guid.NewGuid():N}",
            ModelId = modelName,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = ToFinishReason(stream.FinishReason),
            Usage = Usage(stream),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var stream = new GenerationStream(engine, BuildRequest(messages, options), cancellationToken);
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        await foreach (var chunk in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            if (chunk.Text.Length == 0) continue;
            yield return new ChatResponseUpdate(ChatRole.Assistant, chunk.Text) { ModelId = modelName, ResponseId = id };
        }
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(stream))])
        {
            ModelId = modelName,
            ResponseId = id,
            FinishReason = ToFinishReason(stream.FinishReason),
        };
    }

    GenerationRequest BuildRequest(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        // Refused rather than ignored, as the HTTP API refuses them: an answer in free text would
        // pass for one that honoured them.
        if (options?.Tools is { Count: > 0 }) throw new NotSupportedException("Stratus has no tool calling; leave ChatOptions.Tools empty");
        // ChatResponseFormat.Json is JSON mode; ForJsonSchema (GetResponseAsync<T>'s default) a schema enforced as the HTTP API's json_schema.
        var schema = options?.ResponseFormat is ChatResponseFormatJson json
            ? json.Schema is { } given ? JsonSchema.Compile(given, "ChatOptions.ResponseFormat.Schema") : JsonSchema.AnyObject
            : null;
        var list = new List<ChatMessageText>();
        if (options?.Instructions is { Length: > 0 } instructions) list.Add(new ChatMessageText("system", instructions));
        foreach (var message in messages) list.Add(new ChatMessageText(message.Role.Value, message.Text));
        if (list.Count == 0 || list.Count == 1 && options?.Instructions is { Length: > 0 }) throw new StratusUserException("a chat needs at least one message");
        var prompt = template.Render(list);
        var tokenizer = engine.Tokenizer;
        var unencodable = tokenizer.Unencodable(prompt);
        if (unencodable.Count > 0)
            throw new StratusUserException($"the messages have characters outside this model's vocabulary: {CodePoints.Describe(unencodable)}");
        var tokens = tokenizer.Encode(prompt, template.AddSpecialTokens);
        if (tokens.Length >= engine.ContextLength)
            throw new StratusUserException($"the conversation is {tokens.Length} tokens, which leaves no room in the model's context of {engine.ContextLength}");
        var room = engine.ContextLength - tokens.Length;
        var maxTokens = options?.MaxOutputTokens ?? room;
        if (maxTokens < 1 || maxTokens > room)
            throw new StratusUserException($"MaxOutputTokens must be between 1 and {room} for this conversation, got {maxTokens}");
        var (stopTokens, stopTexts) = template.Stops(tokenizer);
        return new GenerationRequest
        {
            PromptTokens = tokens,
            MaxTokens = maxTokens,
            Sampling = new SamplingOptions
            {
                Temperature = options?.Temperature ?? 1.0,
                TopP = options?.TopP ?? 1.0,
                TopK = options?.TopK ?? 0,
                Seed = options?.Seed,
            },
            PresencePenalty = options?.PresencePenalty ?? 0,
            FrequencyPenalty = options?.FrequencyPenalty ?? 0,
            Stop = [.. options?.StopSequences ?? [], .. stopTexts],
            StopTokens = stopTokens,
            Schema = schema,
        };
    }

    static UsageDetails Usage(GenerationStream stream) => new()
    {
        InputTokenCount = stream.PromptTokens,
        OutputTokenCount = stream.CompletionTokens,
        TotalTokenCount = stream.PromptTokens + stream.CompletionTokens,
    };

    static ChatFinishReason? ToFinishReason(string? reason) => reason switch
    {
        FinishReason.Stop => ChatFinishReason.Stop,
        FinishReason.Length => ChatFinishReason.Length,
        _ => null,
    };

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(engine) ? engine
        : null;

    /// <summary>The engine belongs to whoever created it; the client holds nothing of its own.</summary>
    public void Dispose() { }
}
