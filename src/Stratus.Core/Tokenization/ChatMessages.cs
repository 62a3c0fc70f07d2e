// A conversation's messages as OpenAI's API gives them, checked and turned into what the chat
// template reads, for a chat request (the server, whose 400s carry each error's Param and Code)
// and a fine-tuning conversation (prepare --format chat, whose errors name the line) alike, so
// that the data is rendered as serving renders the same conversation.
using System.Text.Json;

namespace Stratus.Tokenization;

/// <summary>A message as the API carries it; the fields that take several shapes are JSON.</summary>
public sealed record ChatMessageBody
{
    public string? Role { get; init; }
    /// <summary>A string, or an array of parts {"type": "text", "text": ...}.</summary>
    public JsonElement? Content { get; init; }
    public string? Name { get; init; }
    /// <summary>An assistant message's calls: [{"id", "type": "function", "function": {"name", "arguments"}}].</summary>
    public JsonElement? ToolCalls { get; init; }
    /// <summary>The call a tool message answers.</summary>
    public string? ToolCallId { get; init; }
    /// <summary>vLLM's: the reasoning an assistant's message came with, for a template that writes it back.</summary>
    public string? Reasoning { get; init; }
    /// <summary>The same under the name DeepSeek's API and earlier vLLM answers give it.</summary>
    public string? ReasoningContent { get; init; }
}

public static class ChatMessages
{
    /// <summary>Messages as the template gets them: each role one of OpenAI's, content a string or
    /// text parts (an assistant's may be none), an assistant's tool_calls, a tool message's
    /// tool_call_id naming a call of the assistant's message before it, a message's name and an
    /// assistant's reasoning (<see cref="ChatMessageText.Of"/>). A fault is refused naming its
    /// field ("messages[1].tool_call_id") as Param, with OpenAI's Code.</summary>
    public static List<ChatMessageText> Parse(IReadOnlyList<ChatMessageBody?> messages)
    {
        var result = new List<ChatMessageText>(messages.Count);
        // The calls a tool message may answer: those of the assistant's message it follows (after
        // other answers to them), as OpenAI checks; a template may render the id or pair by it.
        List<ChatToolCall>? answerable = null;
        for (var i = 0; i < messages.Count; i++)
        {
            var param = $"messages[{i}]";
            var message = messages[i] ?? throw Invalid($"{param} must be an object.", param);
            var role = message.Role ?? throw Invalid($"Missing required parameter: '{param}.role'.", $"{param}.role", "missing_required_parameter");
            if (!ChatTemplate.Roles.Contains(role))
                throw Invalid($"Invalid value for '{param}.role': '{Truncate(role)}'. Supported values are: {ChatTemplate.RolesInWords}.", $"{param}.role", "invalid_value");
            var calls = role == "assistant" ? ToolCallsOf(message.ToolCalls, $"{param}.tool_calls") : null;
            // An assistant's message that calls tools may have no content (null), as OpenAI writes it.
            var (content, parts) = Content(message.Content, role, $"{param}.content");
            if (role == "tool")
            {
                if (message.ToolCallId is null)
                    throw Invalid($"Missing required parameter: '{param}.tool_call_id'.", $"{param}.tool_call_id", "missing_required_parameter");
                if (answerable is null)
                    throw Invalid($"Invalid parameter: '{param}', a message with role 'tool', must answer a call of the assistant's message before it (with 'tool_calls'); put it after that message.", param, "invalid_value");
                if (!answerable.Any(c => c.Id == message.ToolCallId))
                    throw Invalid($"Invalid parameter: '{param}.tool_call_id' of '{Truncate(message.ToolCallId)}' not found in 'tool_calls' of the assistant's message before it; give the 'id' of one of its calls.", $"{param}.tool_call_id", "invalid_value");
            }
            else answerable = calls is { Count: > 0 } ? calls : null;
            ChatMessageText text;
            try { text = ChatMessageText.Of(role, content, message.Name, message.Reasoning, message.ReasoningContent, param); }
            catch (StratusUserException e) { throw Invalid($"Invalid parameter: {e.Message}.", e.Param!, e.Code); }
            result.Add(text with { TextParts = parts, ToolCalls = calls, ToolCallId = role == "tool" ? message.ToolCallId : null });
        }
        return result;
    }

    /// <summary>An assistant message's tool_calls, each {"id", "type": "function", "function":
    /// {"name", "arguments": the JSON text of an object}}: the template gets the arguments parsed,
    /// as vLLM gives them, so text that is not a JSON object is refused here.</summary>
    static List<ChatToolCall>? ToolCallsOf(JsonElement? toolCalls, string param)
    {
        // null and [] are none, as clients send them.
        if (toolCalls is not { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) } given || given.ValueKind == JsonValueKind.Array && given.GetArrayLength() == 0) return null;
        if (given.ValueKind != JsonValueKind.Array)
            throw Invalid($"Invalid type for '{param}': expected an array of tool calls.", param, "invalid_type");
        var calls = new List<ChatToolCall>();
        var i = 0;
        foreach (var call in given.EnumerateArray())
        {
            var at = $"{param}[{i++}]";
            string Text(JsonElement parent, string name, string where) =>
                parent.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()!
                : throw Invalid($"Missing or invalid '{where}': expected a string.", where, "invalid_type");
            if (call.ValueKind != JsonValueKind.Object) throw Invalid($"Invalid type for '{at}': expected an object.", at, "invalid_type");
            if (call.TryGetProperty("type", out var type) && !(type.ValueKind == JsonValueKind.String && type.GetString() == "function"))
                throw Invalid($"Invalid value for '{at}.type': {Truncate(type.GetRawText())}. Supported values are: 'function'.", $"{at}.type", "invalid_value");
            if (!call.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
                throw Invalid($"Missing or invalid '{at}.function': expected an object with 'name' and 'arguments'.", $"{at}.function", "invalid_type");
            var arguments = Text(function, "arguments", $"{at}.function.arguments");
            // An object, as OpenAI requires: templates iterate its items (vLLM's json.loads gives
            // them a dict), and a list or number there renders as no call a model was trained on.
            bool isObject;
            try
            {
                using var parsed = JsonDocument.Parse(arguments);
                isObject = parsed.RootElement.ValueKind == JsonValueKind.Object;
            }
            catch (JsonException) { isObject = false; }
            if (!isObject)
                throw Invalid($"Invalid '{at}.function.arguments': {Truncate(arguments)} is not a JSON object; send the arguments as the JSON text of an object, such as '{{\"city\": \"Paris\"}}'.", $"{at}.function.arguments", "invalid_value");
            calls.Add(new ChatToolCall(Text(call, "id", $"{at}.id"), Text(function, "name", $"{at}.function.name"), arguments));
        }
        return calls;
    }

    /// <summary>A message's content: its text, and its text parts where it was given as parts.</summary>
    static (string? Text, List<string>? Parts) Content(JsonElement? content, string role, string param)
    {
        if (content is not { } element || element.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            if (role == "assistant") return (null, null);
            throw Invalid($"Missing required parameter: '{param}'.", param, "missing_required_parameter");
        }
        if (element.ValueKind == JsonValueKind.String) return (element.GetString()!, null);
        if (element.ValueKind != JsonValueKind.Array)
            throw Invalid($"Invalid type for '{param}': expected a string or an array of content parts.", param, "invalid_type");
        // The text parts joined by line breaks, as vLLM gives a template that takes string content
        // (chat_utils' "\n".join), so that two parts stay two lines rather than one run-on word;
        // a template that loops over the parts gets them (ChatTemplate).
        var texts = new List<string>();
        var index = 0;
        foreach (var part in element.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                throw Invalid($"Invalid content part '{param}[{index}]': expected an object with a 'type'.", $"{param}[{index}]", "invalid_type");
            if (type.GetString() != "text")
                throw Invalid($"Content part type '{Truncate(type.GetString()!)}' is not supported by this model; only 'text' is.", $"{param}[{index}].type", "invalid_value");
            if (!part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
                throw Invalid($"Missing or invalid '{param}[{index}].text': expected a string.", $"{param}[{index}].text", "invalid_type");
            texts.Add(value.GetString()!);
            index++;
        }
        return (string.Join('\n', texts), texts);
    }

    static StratusUserException Invalid(string message, string param, string? code = null) => new(message) { Param = param, Code = code };

    internal static string Truncate(string text) => text.Length > 40 ? text[..40] + "..." : text;
}
