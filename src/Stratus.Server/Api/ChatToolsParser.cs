// A chat request's tools, tool_choice and parallel_tool_calls, checked as OpenAI checks them,
// each fault a 400 naming its parameter; what they ask of generation is a ChatTools (Stratus.Core's
// Inference/ToolCalls.cs), which the IChatClient shares.
using System.Text.Json;
using Stratus.Inference;

namespace Stratus.Server.Api;

public static class ChatToolsParser
{
    /// <summary>The request's tools, null where it has none; every field checked as OpenAI checks
    /// it, each fault a 400 naming its parameter.</summary>
    public static ChatTools? Parse(ChatCompletionRequest body) => Parse(body.Tools, body.ToolChoice, body.ParallelToolCalls, body.ResponseFormat);

    /// <summary>Tools as a request gives them (/tokenize's without a choice, to render messages as
    /// a chat with them renders); null where there are none.</summary>
    public static ChatTools? Parse(JsonElement? tools, JsonElement? toolChoice = null, bool? parallelToolCalls = null, JsonElement? responseFormat = null)
    {
        var present = tools is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) };
        var choiceGiven = toolChoice is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) };
        if (!present)
        {
            if (choiceGiven)
                throw ApiException.Invalid("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice", "invalid_value");
            if (parallelToolCalls is not null)
                throw ApiException.Invalid("Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.", "parallel_tool_calls", "invalid_value");
            return null;
        }
        List<JsonElement> definitions;
        List<(string Name, JsonElement? Parameters)> parameters;
        try { (definitions, parameters) = ChatTools.Offered(tools!.Value); }
        catch (StratusUserException e) { throw ApiException.Invalid(e); }
        var names = parameters.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var (choice, forced) = ChoiceOf(toolChoice, names);
        if (choice is ToolChoiceKind.Function or ToolChoiceKind.Required && responseFormat is { ValueKind: JsonValueKind.Object } format
            && !(format.TryGetProperty("type", out var formatType) && formatType.ValueKind == JsonValueKind.String && formatType.GetString() == "text"))
            throw ApiException.Invalid("'response_format' cannot be combined with a 'tool_choice' that forces a call: the call's arguments follow the function's parameters. Leave out one of them.", "response_format", "invalid_value");
        try { return ChatTools.Create(definitions, parameters, choice, forced, parallelToolCalls ?? true); }
        catch (StratusUserException e)
        {
            throw ApiException.Invalid($"The tools cannot be called together: {e.Message}.", "tools", "invalid_value");
        }
    }

    /// <summary>tool_choice: "none", "auto" (the default), "required", or {"type": "function",
    /// "function": {"name": one of the tools'}}.</summary>
    static (ToolChoiceKind, string?) ChoiceOf(JsonElement? toolChoice, IReadOnlySet<string> names)
    {
        const string param = "tool_choice";
        if (toolChoice is not { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) } choice) return (ToolChoiceKind.Auto, null);
        if (choice.ValueKind == JsonValueKind.String)
        {
            return choice.GetString() switch
            {
                "none" => (ToolChoiceKind.None, null),
                "auto" => (ToolChoiceKind.Auto, null),
                "required" => (ToolChoiceKind.Required, null),
                var other => throw ApiException.Invalid($"Invalid value for 'tool_choice': '{Truncate(other!)}'. Supported values are: 'none', 'auto', 'required' or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}.", param, "invalid_value"),
            };
        }
        if (choice.ValueKind != JsonValueKind.Object || !choice.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function"
            || !choice.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
            || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
            throw ApiException.Invalid("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or {\"type\": \"function\", \"function\": {\"name\": ...}}.", param, "invalid_value");
        if (!names.Contains(name.GetString()!))
            throw ApiException.Invalid($"Invalid value for 'tool_choice': function '{Truncate(name.GetString()!)}' is not among the tools; name one of {string.Join(", ", names.Select(n => $"'{n}'"))}.", param, "invalid_value");
        return (ToolChoiceKind.Function, name.GetString());
    }

    static string Truncate(string text) => text.Length > 40 ? text[..40] + "..." : text;
}
