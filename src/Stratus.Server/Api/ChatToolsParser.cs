// A chat request's tools, tool_choice and parallel_tool_calls, checked as OpenAI checks them,
// each fault a 400 naming its parameter; what they ask of generation is a ChatTools (Stratus.Core's
// Inference/ToolCalls.cs), which the IChatClient shares.
using System.Text.Json;
using Stratus.Inference;

namespace Stratus.Server.Api;

public static partial class ChatToolsParser
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
        var list = tools!.Value;
        if (list.ValueKind != JsonValueKind.Array)
            throw ApiException.Invalid("Invalid type for 'tools': expected an array of tools such as {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tools", "invalid_type");
        // OpenAI's API refuses an empty list, and vLLM since (PR 39780) with it; vLLM before gave a
        // template tools=[], which some write as a tool prompt listing nothing. Leaving the field
        // out is the one way to say "no tools".
        if (list.GetArrayLength() == 0)
            throw ApiException.Invalid("Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead; leave out 'tools' to offer none.", "tools", "empty_array");
        var definitions = new List<JsonElement>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var parameters = new List<(string Name, JsonElement? Parameters)>();
        var i = 0;
        foreach (var tool in list.EnumerateArray())
        {
            var param = $"tools[{i}]";
            if (tool.ValueKind != JsonValueKind.Object) throw ApiException.Invalid($"Invalid type for '{param}': expected an object.", param, "invalid_type");
            if (!tool.TryGetProperty("type", out var type) || type.ValueKind == JsonValueKind.Null)
                throw ApiException.Invalid($"Missing required parameter: '{param}.type'.", $"{param}.type", "missing_required_parameter");
            if (type.ValueKind != JsonValueKind.String || type.GetString() != "function")
                throw ApiException.Invalid($"Invalid value for '{param}.type': {Truncate(type.GetRawText())}. Supported values are: 'function'.", $"{param}.type", "invalid_value");
            if (!tool.TryGetProperty("function", out var function) || function.ValueKind == JsonValueKind.Null)
                throw ApiException.Invalid($"Missing required parameter: '{param}.function'.", $"{param}.function", "missing_required_parameter");
            if (function.ValueKind != JsonValueKind.Object)
                throw ApiException.Invalid($"Invalid type for '{param}.function': expected an object with a 'name'.", $"{param}.function", "invalid_type");
            if (!function.TryGetProperty("name", out var nameElement) || nameElement.ValueKind == JsonValueKind.Null)
                throw ApiException.Invalid($"Missing required parameter: '{param}.function.name'.", $"{param}.function.name", "missing_required_parameter");
            if (nameElement.ValueKind != JsonValueKind.String || !FunctionName().IsMatch(nameElement.GetString()!))
                throw ApiException.Invalid($"Invalid '{param}.function.name': {Truncate(nameElement.GetRawText())} must be 1 to 64 letters, digits, underscores or dashes.", $"{param}.function.name", "invalid_value");
            var name = nameElement.GetString()!;
            if (!names.Add(name))
                throw ApiException.Invalid($"Invalid 'tools': the function name '{name}' is given twice; each tool needs a name of its own.", $"{param}.function.name", "invalid_value");
            if (function.TryGetProperty("description", out var description) && description.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                throw ApiException.Invalid($"Invalid type for '{param}.function.description': expected a string.", $"{param}.function.description", "invalid_type");
            if (function.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                throw ApiException.Invalid($"Invalid type for '{param}.function.strict': expected a boolean, but got {Truncate(strict.GetRawText())} instead.", $"{param}.function.strict", "invalid_type");
            var schema = ChatTools.ParametersOf(function.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null ? p : null);
            if (schema is { } given)
            {
                // strict true and false enforce the same subset, as response_format's do.
                var where = $"{param}.function.parameters";
                if (given.ValueKind != JsonValueKind.Object)
                    throw ApiException.Invalid($"Invalid type for '{where}': expected a JSON schema object, but got {Truncate(given.GetRawText())} instead.", where, "invalid_type");
                try { JsonSchema.Compile(given, where); }
                catch (StratusUserException e)
                {
                    throw ApiException.Invalid($"Invalid schema for function '{name}': {e.Message}.", where, "invalid_function_parameters");
                }
            }
            definitions.Add(tool);
            parameters.Add((name, schema));
            i++;
        }
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

    [System.Text.RegularExpressions.GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial System.Text.RegularExpressions.Regex FunctionName();

    static string Truncate(string text) => text.Length > 40 ? text[..40] + "..." : text;
}
