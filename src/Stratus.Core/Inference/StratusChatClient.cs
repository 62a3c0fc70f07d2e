// Microsoft.Extensions.AI's IChatClient over an engine, so a .NET application can chat with a
// Stratus model in-process, without HTTP, through the same abstraction it would use for a
// hosted model. Tools work as in the HTTP API, through the same mechanisms (ToolCalls.cs):
// ChatOptions.Tools reach the template as the API's tools do, ChatToolMode.RequireAny and
// RequireSpecific are constrained decoding, Auto reads the calls with the model's tool-call
// parser; calls come back as FunctionCallContent and results go in as FunctionResultContent,
// so Microsoft.Extensions.AI's FunctionInvokingChatClient runs its call, result, answer loop.
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.AI;
using Stratus.Tokenization;

namespace Stratus.Inference;

/// <param name="toolCallParser">How the model writes tool calls, for ChatToolMode.Auto; null: the
/// parser its chat template calls for (<see cref="ToolCallParser.For"/>), where it calls for one.</param>
public sealed class StratusChatClient(InferenceEngine engine, ChatTemplate template, string modelName, ToolCallParser? toolCallParser = null) : IChatClient
{
    readonly ChatClientMetadata metadata = new("stratus", null, modelName);
    readonly ToolCallParser? parser = toolCallParser ?? ToolCallParser.For(template);

    /// <summary>Call arguments as Microsoft.Extensions.AI's own clients read and write them.</summary>
    static readonly JsonTypeInfo<IDictionary<string, object?>> ArgumentsType =
        (JsonTypeInfo<IDictionary<string, object?>>)AIJsonUtilities.DefaultOptions.GetTypeInfo(typeof(IDictionary<string, object?>));

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (request, reader, choice) = BuildRequest(messages, options);
        var stream = new GenerationStream(engine, request, cancellationToken);
        var text = new System.Text.StringBuilder();
        var calls = reader is null ? null : new CallContents(choice);
        var contents = new List<AIContent>();
        await foreach (var chunk in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            if (calls is null) text.Append(chunk.Text);
            else contents.AddRange(calls.Take(reader!.Add(chunk.Text), finished: false));
        }
        var finish = stream.FinishReason;
        if (calls is not null)
        {
            var (rest, reason) = reader!.Finish(finish!);
            contents.AddRange(calls.Take(rest, finished: true));
            finish = reason;
            foreach (var piece in contents.OfType<TextContent>()) text.Append(piece.Text);
        }
        // The content as one TextContent, as an answer without calls has it, then the calls.
        List<AIContent> message = [.. text.Length > 0 || calls is null ? [new TextContent(text.ToString())] : Array.Empty<AIContent>(), .. contents.OfType<FunctionCallContent>()];
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, message))
        {
            ResponseId = $"chatcmpl-{Guid.NewGuid():N}",
            ModelId = modelName,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = ToFinishReason(finish),
            Usage = Usage(stream),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (request, reader, choice) = BuildRequest(messages, options);
        var stream = new GenerationStream(engine, request, cancellationToken);
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var calls = reader is null ? null : new CallContents(choice);
        ChatResponseUpdate Update(AIContent content) => new(ChatRole.Assistant, [content]) { ModelId = modelName, ResponseId = id };
        await foreach (var chunk in stream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            if (chunk.Text.Length == 0) continue;
            if (calls is null) yield return Update(new TextContent(chunk.Text));
            else foreach (var content in calls.Take(reader!.Add(chunk.Text), finished: false)) yield return Update(content);
        }
        var finish = stream.FinishReason;
        if (calls is not null)
        {
            var (rest, reason) = reader!.Finish(finish!);
            foreach (var content in calls.Take(rest, finished: true)) yield return Update(content);
            finish = reason;
        }
        yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(stream))])
        {
            ModelId = modelName,
            ResponseId = id,
            FinishReason = ToFinishReason(finish),
        };
    }

    /// <summary>A reader's events as Microsoft.Extensions.AI's contents: text as it comes, and
    /// each call as one FunctionCallContent once whole, as its clients give calls (a function
    /// invoker reads a call's arguments whole). "required"'s and "auto"'s calls come whole; a
    /// named function's arguments, streamed as generated, are whole when the choice finishes.</summary>
    sealed class CallContents(ToolChoiceKind choice)
    {
        readonly List<(string Id, string Name, System.Text.StringBuilder Arguments)> calls = [];
        int given;

        public List<AIContent> Take(List<ToolCallEvent> events, bool finished)
        {
            var contents = new List<AIContent>();
            foreach (var e in events)
            {
                if (e.Content is { } text) contents.Add(new TextContent(text));
                else if (e.Id is not null) calls.Add((e.Id, e.Name!, new System.Text.StringBuilder(e.Arguments)));
                else calls[e.Index].Arguments.Append(e.Arguments);
            }
            if (finished || choice != ToolChoiceKind.Function)
                for (; given < calls.Count; given++)
                {
                    var (id, name, arguments) = calls[given];
                    // Arguments cut off by the token limit are not JSON: the content's Exception says so.
                    contents.Add(FunctionCallContent.CreateFromParsedArguments(arguments.ToString(), id, name, static json => JsonSerializer.Deserialize(json, ArgumentsType)));
                }
            return contents;
        }
    }

    /// <summary>The engine's request, and where the options offer tools that may be called, the
    /// reader of the reply's text into content and calls, and the tool choice.</summary>
    (GenerationRequest Request, ToolCallReader? Reader, ToolChoiceKind Choice) BuildRequest(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var tools = Tools(options);
        // "auto" needs to know how the model writes a call; a forced call needs no parser.
        if (tools?.Choice == ToolChoiceKind.Auto && parser is null)
            throw new StratusUserException($"ChatToolMode.Auto (also what a ToolMode of null means) needs to know how model '{modelName}' writes tool calls, and its chat template does not say: " +
                $"set ChatOptions.ToolMode to ChatToolMode.RequireAny or ChatToolMode.RequireSpecific(name), or create the StratusChatClient with a ToolCallParser ({string.Join(" or ", ToolCallParser.Names.Select(n => $"ToolCallParser.Of(\"{n}\")"))})");
        if (tools?.Schema is not null && options!.ResponseFormat is ChatResponseFormatJson)
            throw new StratusUserException("ChatOptions.ResponseFormat cannot be combined with a ChatOptions.ToolMode that requires a call: the call's arguments follow the function's JSON schema. Leave out one of them");
        // ChatResponseFormat.Json is JSON mode; ForJsonSchema (GetResponseAsync<T>'s default) a schema enforced as the HTTP API's json_schema.
        var schema = options?.ResponseFormat is ChatResponseFormatJson json
            ? json.Schema is { } given ? JsonSchema.Compile(given, "ChatOptions.ResponseFormat.Schema") : JsonSchema.AnyObject
            : null;
        var list = new List<ChatMessageText>();
        if (options?.Instructions is { Length: > 0 } instructions) list.Add(new ChatMessageText("system", instructions));
        foreach (var message in messages) Add(list, message);
        if (list.Count == 0 || list.Count == 1 && options?.Instructions is { Length: > 0 }) throw new StratusUserException("a chat needs at least one message");
        var prompt = template.Render(list, tools: tools?.Definitions, variables: TemplateVariables(options));
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
        var request = new GenerationRequest
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
            Schema = tools?.Schema ?? schema,
            // A parser reads the markers of calls, which a vocabulary may hold as special tokens, as the HTTP API keeps them.
            SkipSpecialTokens = tools?.Choice != ToolChoiceKind.Auto,
        };
        // A choice's text turns into content and calls unless no call may be made.
        var reader = tools is { Choice: not ToolChoiceKind.None } ? new ToolCallReader(tools, tools.Choice == ToolChoiceKind.Auto ? parser : null) : null;
        return (request, reader, tools?.Choice ?? ToolChoiceKind.None);
    }

    /// <summary>A message as the template reads it, as the HTTP API's messages: an assistant's
    /// FunctionCallContent its tool_calls, and each FunctionResultContent a tool message of its
    /// own answering its call (OpenAI's tool_call_id), as Microsoft.Extensions.AI's OpenAI client
    /// sends them; its TextContents text parts, its AuthorName the name, and an assistant's
    /// TextReasoningContent its reasoning.</summary>
    static void Add(List<ChatMessageText> list, ChatMessage message)
    {
        var results = message.Contents.OfType<FunctionResultContent>().ToList();
        foreach (var result in results) list.Add(new ChatMessageText("tool", ResultText(result)) { ToolCallId = result.CallId });
        if (results.Count > 0) return;
        var calls = message.Contents.OfType<FunctionCallContent>()
            .Select(call => new ChatToolCall(call.CallId, call.Name, JsonSerializer.Serialize(call.Arguments ?? new Dictionary<string, object?>(), ArgumentsType))).ToList();
        // A message of calls alone has no content (null), as the OpenAI client sends it.
        var reasoning = message.Contents.OfType<TextReasoningContent>().Select(r => r.Text).ToList();
        // Several TextContents are several text parts, as the OpenAI client sends them: joined by
        // line breaks as the HTTP API joins parts (ChatMessage.Text runs them together).
        var parts = message.Contents.OfType<TextContent>().Select(t => t.Text).ToList();
        var text = string.Join("\n", parts);
        list.Add(new ChatMessageText(message.Role.Value, calls.Count > 0 && text.Length == 0 ? null : text)
        {
            TextParts = parts.Count > 1 ? parts : null,
            ToolCalls = calls.Count > 0 ? calls : null,
            Name = message.AuthorName,
            Reasoning = reasoning.Count > 0 && message.Role == ChatRole.Assistant ? string.Concat(reasoning) : null,
        });
    }

    /// <summary>The key of ChatOptions.AdditionalProperties whose value, an object (a dictionary or
    /// a JsonElement), holds more variables for the chat template, as the HTTP API's chat_template_kwargs.</summary>
    public const string TemplateVariablesKey = "chat_template_kwargs";

    static Dictionary<string, JsonElement>? TemplateVariables(ChatOptions? options)
    {
        if (options?.AdditionalProperties?.TryGetValue(TemplateVariablesKey, out var given) != true || given is null) return null;
        JsonElement value;
        try { value = JsonSerializer.SerializeToElement(given, AIJsonUtilities.DefaultOptions.GetTypeInfo(given.GetType())); }
        catch (NotSupportedException e) { throw new StratusUserException($"ChatOptions.AdditionalProperties[\"{TemplateVariablesKey}\"] cannot be written as JSON: {e.Message}", e); }
        if (value.ValueKind != JsonValueKind.Object)
            throw new StratusUserException($"ChatOptions.AdditionalProperties[\"{TemplateVariablesKey}\"] must be an object of template variables (a dictionary such as {{[\"enable_thinking\"] = false}}), not {value.ValueKind}");
        var variables = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var member in value.EnumerateObject()) variables[member.Name] = member.Value;
        return variables;
    }

    /// <summary>A function's result as the model reads it, as Microsoft.Extensions.AI's OpenAI
    /// client sends it: a string as it is, anything else as JSON, and a value JSON cannot write
    /// (a thrown exception's TargetSite, a Type) as nothing, rather than failing the chat.</summary>
    static string ResultText(FunctionResultContent result)
    {
        if (result.Result is null or string) return (string?)result.Result ?? "";
        try { return JsonSerializer.Serialize(result.Result, AIJsonUtilities.DefaultOptions.GetTypeInfo(result.Result.GetType())); }
        catch (NotSupportedException) { return ""; }
    }

    /// <summary>ChatOptions.Tools and ToolMode as the HTTP API's tools and tool_choice: each a
    /// function (an AIFunctionDeclaration: AIFunctionFactory's functions) of a distinct name whose
    /// JsonSchema is in the structured outputs subset; ToolMode null or Auto is "auto", None
    /// "none", RequireAny "required" (one call where AllowMultipleToolCalls is false) and
    /// RequireSpecific(name) that function. Null where there are no tools.</summary>
    static ChatTools? Tools(ChatOptions? options)
    {
        if (options?.Tools is not { Count: > 0 } given)
        {
            if (options?.ToolMode is RequiredChatToolMode)
                throw new StratusUserException("ChatOptions.ToolMode requires a tool call but ChatOptions.Tools is empty: add the functions that may be called");
            return null;
        }
        var definitions = new List<JsonElement>(given.Count);
        var functions = new List<(string Name, JsonElement? Parameters)>(given.Count);
        for (var i = 0; i < given.Count; i++)
        {
            if (given[i] is not AIFunctionDeclaration function)
                throw new StratusUserException($"ChatOptions.Tools[{i}] ('{given[i].Name}') is a {given[i].GetType().Name}; Stratus calls functions only (AIFunctionDeclaration, such as AIFunctionFactory.Create's)");
            if (functions.Any(f => f.Name == function.Name))
                throw new StratusUserException($"ChatOptions.Tools has two functions named '{function.Name}'; give each a name of its own");
            var parameters = ChatTools.ParametersOf(function.JsonSchema)!.Value;
            JsonSchema.Compile(parameters, $"ChatOptions.Tools[{i}].JsonSchema");
            definitions.Add(Definition(function));
            functions.Add((function.Name, parameters));
        }
        var (choice, forced) = options.ToolMode switch
        {
            NoneChatToolMode => (ToolChoiceKind.None, null),
            RequiredChatToolMode { RequiredFunctionName: { } name } => functions.Any(f => f.Name == name) ? (ToolChoiceKind.Function, name)
                : throw new StratusUserException($"ChatToolMode.RequireSpecific('{name}') names no function in ChatOptions.Tools; name one of {string.Join(", ", functions.Select(f => $"'{f.Name}'"))}"),
            RequiredChatToolMode => (ToolChoiceKind.Required, (string?)null),
            _ => (ToolChoiceKind.Auto, null),
        };
        try { return ChatTools.Create(definitions, functions, choice, forced, options.AllowMultipleToolCalls ?? true); }
        catch (StratusUserException e) { throw new StratusUserException($"ChatOptions.Tools cannot be called together: {e.Message}"); }
    }

    /// <summary>A function as the HTTP API's tools carry it, for the template: {"type": "function",
    /// "function": {"name", "description", "parameters"}}.</summary>
    static JsonElement Definition(AIFunctionDeclaration function)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("type", "function");
            json.WriteStartObject("function");
            json.WriteString("name", function.Name);
            if (function.Description is { Length: > 0 } description) json.WriteString("description", description);
            json.WritePropertyName("parameters");
            function.JsonSchema.WriteTo(json);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        return document.RootElement.Clone();
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
        FinishReason.ToolCalls => ChatFinishReason.ToolCalls,
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
