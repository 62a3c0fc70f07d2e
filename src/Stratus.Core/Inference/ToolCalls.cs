// Tool calling, as OpenAI's API and vLLM have it, for the HTTP API and the IChatClient alike:
// "none" generates text, a named function or "required" constrains the output to the arguments
// of that function or to an array of calls (JsonSchema.ToolCalls), and "auto" generates freely
// and finds the calls in the text with the model's tool-call parser (hermes: Qwen2.5, Hermes;
// llama3_json: Llama 3.1-3.3), as vLLM's --tool-call-parser does. One ToolCallReader per choice
// turns the generated text into content and calls as it arrives, for a streamed answer and a
// whole one alike, so both give the same calls. The server checks a request's tools
// (Stratus.Server's ChatToolsParser), the IChatClient its ChatOptions.Tools.
using System.Text;
using System.Text.Json;
using Stratus.Tokenization;

namespace Stratus.Inference;

public enum ToolChoiceKind { None, Auto, Required, Function }

/// <summary>A chat request's tools: their definitions as the template gets them, their names, the
/// choice asked for, the schema that constrains the output where the choice forces a call, and
/// whether a choice may make several calls (OpenAI's parallel_tool_calls).</summary>
public sealed partial record ChatTools(IReadOnlyList<JsonElement> Definitions, IReadOnlySet<string> Names, ToolChoiceKind Choice, string? Function, JsonSchema? Schema, bool Parallel = true)
{
    /// <summary>The tools offered and the choice asked for, with the constraint on the output where
    /// the choice forces a call: a named function's parameters (none: {}), or for "required" an
    /// array of calls choosing among the tools by name (JsonSchema.ToolCalls, one call unless
    /// <paramref name="parallel"/>). Each tool's parameters are compiled on their own first by
    /// the caller, so that one outside the subset is refused naming its tool; what this throws
    /// (StratusUserException) is a fault of the tools together.</summary>
    /// <param name="functions">Each tool's name (distinct) and parameters (null: none).</param>
    public static ChatTools Create(IReadOnlyList<JsonElement> definitions, IReadOnlyList<(string Name, JsonElement? Parameters)> functions, ToolChoiceKind choice, string? function, bool parallel)
    {
        var constraint = choice switch
        {
            ToolChoiceKind.Function => functions.Single(t => t.Name == function).Parameters is { } schema
                ? JsonSchema.Compile(schema, "parameters")
                : JsonSchema.Compile(JsonDocument.Parse(JsonSchema.NoParameters).RootElement),
            ToolChoiceKind.Required => JsonSchema.ToolCalls(functions, parallel),
            _ => null,
        };
        return new ChatTools(definitions, functions.Select(f => f.Name).ToHashSet(StringComparer.Ordinal), choice, function, constraint, parallel);
    }

    /// <summary>A list of tools as OpenAI checks it, for a chat request (the server) and a
    /// fine-tuning conversation (prepare --format chat) alike: each {"type": "function",
    /// "function": {"name", "description", "parameters", "strict"}}, the names distinct, the
    /// parameters a schema Stratus compiles. A fault is refused naming its field ("tools[0].type")
    /// as Param, with OpenAI's Code.</summary>
    /// <returns>The definitions as given, which the template gets, and each function's name and parameters (<see cref="ParametersOf"/>).</returns>
    public static (List<JsonElement> Definitions, List<(string Name, JsonElement? Parameters)> Functions) Offered(JsonElement list)
    {
        static StratusUserException Invalid(string message, string param, string code) => new(message) { Param = param, Code = code };
        if (list.ValueKind != JsonValueKind.Array)
            throw Invalid("Invalid type for 'tools': expected an array of tools such as {\"type\": \"function\", \"function\": {\"name\": ...}}.", "tools", "invalid_type");
        // OpenAI's API refuses an empty list, and vLLM since (PR 39780) with it; vLLM before gave a
        // template tools=[], which some write as a tool prompt listing nothing. Leaving the field
        // out is the one way to say "no tools".
        if (list.GetArrayLength() == 0)
            throw Invalid("Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead; leave out 'tools' to offer none.", "tools", "empty_array");
        var definitions = new List<JsonElement>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var functions = new List<(string Name, JsonElement? Parameters)>();
        var i = 0;
        foreach (var tool in list.EnumerateArray())
        {
            var param = $"tools[{i}]";
            if (tool.ValueKind != JsonValueKind.Object) throw Invalid($"Invalid type for '{param}': expected an object.", param, "invalid_type");
            if (!tool.TryGetProperty("type", out var type) || type.ValueKind == JsonValueKind.Null)
                throw Invalid($"Missing required parameter: '{param}.type'.", $"{param}.type", "missing_required_parameter");
            if (type.ValueKind != JsonValueKind.String || type.GetString() != "function")
                throw Invalid($"Invalid value for '{param}.type': {ChatMessages.Truncate(type.GetRawText())}. Supported values are: 'function'.", $"{param}.type", "invalid_value");
            if (!tool.TryGetProperty("function", out var function) || function.ValueKind == JsonValueKind.Null)
                throw Invalid($"Missing required parameter: '{param}.function'.", $"{param}.function", "missing_required_parameter");
            if (function.ValueKind != JsonValueKind.Object)
                throw Invalid($"Invalid type for '{param}.function': expected an object with a 'name'.", $"{param}.function", "invalid_type");
            if (!function.TryGetProperty("name", out var nameElement) || nameElement.ValueKind == JsonValueKind.Null)
                throw Invalid($"Missing required parameter: '{param}.function.name'.", $"{param}.function.name", "missing_required_parameter");
            if (nameElement.ValueKind != JsonValueKind.String || !FunctionName().IsMatch(nameElement.GetString()!))
                throw Invalid($"Invalid '{param}.function.name': {ChatMessages.Truncate(nameElement.GetRawText())} must be 1 to 64 letters, digits, underscores or dashes.", $"{param}.function.name", "invalid_value");
            var name = nameElement.GetString()!;
            if (!names.Add(name))
                throw Invalid($"Invalid 'tools': the function name '{name}' is given twice; each tool needs a name of its own.", $"{param}.function.name", "invalid_value");
            if (function.TryGetProperty("description", out var description) && description.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                throw Invalid($"Invalid type for '{param}.function.description': expected a string.", $"{param}.function.description", "invalid_type");
            if (function.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
                throw Invalid($"Invalid type for '{param}.function.strict': expected a boolean, but got {ChatMessages.Truncate(strict.GetRawText())} instead.", $"{param}.function.strict", "invalid_type");
            var schema = ParametersOf(function.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null ? p : null);
            if (schema is { } given)
            {
                // strict true and false enforce the same subset, as response_format's do.
                var where = $"{param}.function.parameters";
                if (given.ValueKind != JsonValueKind.Object)
                    throw Invalid($"Invalid type for '{where}': expected a JSON schema object, but got {ChatMessages.Truncate(given.GetRawText())} instead.", where, "invalid_type");
                try { JsonSchema.Compile(given, where); }
                catch (StratusUserException e)
                {
                    throw Invalid($"Invalid schema for function '{name}': {e.Message}.", where, "invalid_function_parameters");
                }
            }
            definitions.Add(tool);
            functions.Add((name, schema));
            i++;
        }
        return (definitions, functions);
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial System.Text.RegularExpressions.Regex FunctionName();

    /// <summary>A function's parameters as the grammar compiles them: {} allows any value, and
    /// arguments are an object, so it is any object, as OpenAI takes it.</summary>
    public static JsonElement? ParametersOf(JsonElement? given) =>
        given is { ValueKind: JsonValueKind.Object } schema && !schema.EnumerateObject().Any() ? AnyObject : given;

    static readonly JsonElement AnyObject = JsonDocument.Parse("{\"type\":\"object\"}").RootElement;

    /// <summary>A new call's id, as OpenAI writes them: "call_" and 24 letters and digits.</summary>
    public static string NewCallId() => "call_" + Guid.NewGuid().ToString("N")[..24];
}

/// <summary>How a model writes tool calls in its text, for tool_choice "auto": vLLM's parsers of
/// the same names.</summary>
public abstract class ToolCallParser
{
    public const string Hermes = "hermes";
    public const string Llama3Json = "llama3_json";
    public static IReadOnlyList<string> Names { get; } = [Hermes, Llama3Json];

    public abstract string Name { get; }

    /// <summary>The parser of a name (serve --tool-call-parser); null for an unknown one.</summary>
    public static ToolCallParser? Of(string name) => name switch
    {
        Hermes => new HermesToolCallParser(),
        Llama3Json => new Llama3JsonToolCallParser(),
        _ => null,
    };

    /// <summary>The parser a chat template's own words call for: one that writes &lt;tool_call&gt;
    /// (Qwen2.5, Hermes 2 Pro and 3) is hermes; one that writes &lt;|python_tag|&gt; or calls as
    /// {"name": ..., "parameters": ...} (Llama 3.1 to 3.3) is llama3_json; else none. The words are
    /// those of the template a chat with tools renders in (Hermes 3's tool_use one).</summary>
    public static ToolCallParser? For(ChatTemplate template) =>
        template.ToolsSource.Contains("<tool_call>", StringComparison.Ordinal) ? new HermesToolCallParser()
        : template.ToolsSource.Contains("<|python_tag|>", StringComparison.Ordinal) || template.ToolsSource.Contains("\"parameters\": ", StringComparison.Ordinal) ? new Llama3JsonToolCallParser()
        : null;

    /// <summary>Where in <paramref name="text"/> (not yet read as content) a call begins for sure;
    /// -1 where none does yet.</summary>
    /// <param name="atStart">Whether no content has been given yet: the text is the output's beginning.</param>
    internal abstract int CallStart(string text, bool atStart);

    /// <summary>How much of <paramref name="text"/>, which holds no <see cref="CallStart"/>, is
    /// content for certain; the rest may yet begin a call and is held back.</summary>
    internal abstract int ContentLength(string text, bool atStart);

    /// <summary>The call or calls at the start of <paramref name="text"/>: the length they span
    /// (-1: not whole yet; at the <paramref name="end"/> of the output all of it), and the calls,
    /// or null where the span is not calls (malformed, or naming no tool), which is then content.</summary>
    internal abstract (int Length, List<(string Name, string Arguments)>? Calls) Take(string text, bool end, IReadOnlySet<string> tools);

    /// <summary>A call object {"name": a tool's name, <paramref name="argumentsKey"/>: an object}
    /// (or "arguments" where Llama writes that), with its arguments' text; null where it is not one.</summary>
    internal static (string Name, string Arguments)? Call(JsonElement call, string argumentsKey, IReadOnlySet<string> tools)
    {
        if (call.ValueKind != JsonValueKind.Object || !call.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !tools.Contains(name.GetString()!))
            return null;
        if (!call.TryGetProperty(argumentsKey, out var arguments) && !call.TryGetProperty("arguments", out arguments)) return null;
        return arguments.ValueKind == JsonValueKind.Object ? (name.GetString()!, arguments.GetRawText()) : null;
    }
}

/// <summary>Hermes' and Qwen2.5's calls: &lt;tool_call&gt;{"name": ..., "arguments": {...}}&lt;/tool_call&gt;,
/// any number, text before them content; the last may be left open at the output's end.</summary>
public sealed class HermesToolCallParser : ToolCallParser
{
    const string Open = "<tool_call>";
    const string Close = "</tool_call>";

    public override string Name => Hermes;

    internal override int CallStart(string text, bool atStart) => text.IndexOf(Open, StringComparison.Ordinal);

    internal override int ContentLength(string text, bool atStart)
    {
        // The longest end of the text that begins the opening tag is held back.
        for (var keep = Math.Min(Open.Length - 1, text.Length); keep > 0; keep--)
            if (string.CompareOrdinal(text, text.Length - keep, Open, 0, keep) == 0) return text.Length - keep;
        return text.Length;
    }

    internal override (int, List<(string, string)>?) Take(string text, bool end, IReadOnlySet<string> tools)
    {
        var close = text.IndexOf(Close, Open.Length, StringComparison.Ordinal);
        if (close < 0 && !end) return (-1, null);
        var length = close < 0 ? text.Length : close + Close.Length;
        var inner = text[Open.Length..(close < 0 ? text.Length : close)];
        try
        {
            using var document = JsonDocument.Parse(inner);
            return (length, Call(document.RootElement, "arguments", tools) is { } call ? [call] : null);
        }
        catch (JsonException) { return (length, null); }
    }
}

/// <summary>Llama 3.1-3.3's JSON calls: the whole output one {"name": ..., "parameters": {...}}
/// (or several joined by ';'), optionally after &lt;|python_tag|&gt;; any other output is content.</summary>
public sealed class Llama3JsonToolCallParser : ToolCallParser
{
    const string PythonTag = "<|python_tag|>";

    public override string Name => Llama3Json;

    internal override int CallStart(string text, bool atStart)
    {
        // The blank before a call is part of it: text given as content would end the output's beginning.
        var rest = text.AsSpan().TrimStart();
        return atStart && (rest.StartsWith(PythonTag, StringComparison.Ordinal) || rest.StartsWith("{", StringComparison.Ordinal)) ? 0 : -1;
    }

    internal override int ContentLength(string text, bool atStart)
    {
        var rest = text.AsSpan().TrimStart();
        // Blank so far, or the tag's beginning: a call may follow.
        return atStart && PythonTag.AsSpan().StartsWith(rest, StringComparison.Ordinal) ? 0 : text.Length;
    }

    internal override (int, List<(string, string)>?) Take(string text, bool end, IReadOnlySet<string> tools)
    {
        if (!end) return (-1, null);
        var body = text.TrimStart();
        if (body.StartsWith(PythonTag, StringComparison.Ordinal)) body = body[PythonTag.Length..];
        var calls = new List<(string, string)>();
        var bytes = System.Text.Encoding.UTF8.GetBytes(body);
        var at = 0;
        try
        {
            while (true)
            {
                var reader = new Utf8JsonReader(bytes.AsSpan(at), new JsonReaderOptions { AllowMultipleValues = true });
                if (!JsonDocument.TryParseValue(ref reader, out var document)) return (text.Length, null);
                using (document)
                {
                    if (Call(document.RootElement, "parameters", tools) is not { } call) return (text.Length, null);
                    calls.Add(call);
                }
                at += (int)reader.BytesConsumed;
                while (at < bytes.Length && bytes[at] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t') at++;
                if (at == bytes.Length) return (text.Length, calls);
                if (bytes[at] != ';') return (text.Length, null);
                at++;
            }
        }
        catch (JsonException) { return (text.Length, null); }
    }
}

/// <summary>What a choice's text turns into: content, the start of a call (its index among the
/// choice's calls, id and name), or a piece of a call's arguments.</summary>
public readonly record struct ToolCallEvent(string? Content, int Index = -1, string? Id = null, string? Name = null, string? Arguments = null);

/// <summary>Reads one choice's generated text as it arrives into content and tool calls, by the
/// request's tool_choice: a named function's text is its arguments, streamed as they come;
/// "required"'s is an array of calls, each given once whole; "auto"'s is read by the model's
/// parser, text that may begin a call held back until it is known to be one or not.</summary>
public sealed partial class ToolCallReader(ChatTools tools, ToolCallParser? parser)
{
    readonly StringBuilder buffer = new();
    int calls;
    bool contentGiven;
    /// <summary>Blank text after a call, given as content only if more content follows it.</summary>
    string gap = "";
    // "required": where the array's current item began, and the scan's place in the JSON.
    int itemStart = -1;
    int depth;
    bool inString, escaped;
    int scanned;

    /// <summary>The calls given so far.</summary>
    public int Calls => calls;

    public List<ToolCallEvent> Add(string text)
    {
        var events = new List<ToolCallEvent>();
        if (text.Length == 0) return events;
        switch (tools.Choice)
        {
            case ToolChoiceKind.Function:
                if (calls == 0) Start(events, tools.Function!);
                events.Add(new ToolCallEvent(null, 0, Arguments: text));
                break;
            case ToolChoiceKind.Required:
                buffer.Append(text);
                ScanCalls(events);
                break;
            default:
                buffer.Append(text);
                Drain(events, end: false);
                break;
        }
        return events;
    }

    /// <summary>The rest, once the choice has finished; and the finish_reason to give: OpenAI's
    /// "tool_calls" where "auto" or "required" made calls and the choice stopped (a named
    /// function's call stops as "stop", as OpenAI's does).</summary>
    public (List<ToolCallEvent> Events, string FinishReason) Finish(string finishReason)
    {
        var events = new List<ToolCallEvent>();
        if (tools.Choice == ToolChoiceKind.Function)
        {
            if (calls == 0 && finishReason is "stop" or "length") Start(events, tools.Function!);
            return (events, finishReason);
        }
        if (tools.Choice is ToolChoiceKind.Auto) Drain(events, end: true);
        // A "required" call cut short is given with the arguments written so far, as a named
        // function's is (and OpenAI's are), once its name is whole.
        if (tools.Choice is ToolChoiceKind.Required && finishReason == FinishReason.Length && itemStart >= 0
            && CutCall().Match(buffer.ToString(itemStart, buffer.Length - itemStart)) is { Success: true } cut && tools.Names.Contains(cut.Groups[1].Value))
            Call(events, cut.Groups[1].Value, cut.Groups[2].Value);
        return (events, calls > 0 && tools.Choice != ToolChoiceKind.Function && finishReason == FinishReason.Stop ? FinishReason.ToolCalls : finishReason);
    }

    void Start(List<ToolCallEvent> events, string name) => events.Add(new ToolCallEvent(null, calls++, ToolCallId(), name, ""));

    static string ToolCallId() => ChatTools.NewCallId();

    /// <summary>The beginning of a "required" call as its grammar writes it: the name, then the arguments.</summary>
    [System.Text.RegularExpressions.GeneratedRegex("""^\{\s*"name"\s*:\s*"([a-zA-Z0-9_-]+)"\s*,\s*"arguments"\s*:\s*(.*)$""", System.Text.RegularExpressions.RegexOptions.Singleline)]
    private static partial System.Text.RegularExpressions.Regex CutCall();

    void Call(List<ToolCallEvent> events, string name, string arguments)
    {
        // parallel_tool_calls false: "required"'s grammar writes one call; a model that writes
        // several under "auto" has the first kept and the rest dropped, as vLLM does.
        if (!tools.Parallel && calls > 0) return;
        var index = calls;
        Start(events, name);
        events.Add(new ToolCallEvent(null, index, Arguments: arguments));
        gap = "";
    }

    void Content(List<ToolCallEvent> events, string text)
    {
        if (text.Length == 0) return;
        if (calls > 0 && string.IsNullOrWhiteSpace(gap + text))
        {
            gap += text;
            return;
        }
        events.Add(new ToolCallEvent(gap + text));
        (gap, contentGiven) = ("", true);
    }

    /// <summary>"auto": content up to where a call may begin, then whole calls as they close.</summary>
    void Drain(List<ToolCallEvent> events, bool end)
    {
        while (buffer.Length > 0)
        {
            var text = buffer.ToString();
            var atStart = !contentGiven && calls == 0;
            var start = parser!.CallStart(text, atStart);
            if (start < 0)
            {
                var content = end ? text.Length : parser.ContentLength(text, atStart);
                Content(events, text[..content]);
                buffer.Remove(0, content);
                return;
            }
            Content(events, text[..start]);
            var (length, found) = parser.Take(text[start..], end, tools.Names);
            if (length < 0)
            {
                buffer.Remove(0, start);
                return;
            }
            if (found is null) Content(events, text.Substring(start, length));
            else foreach (var (name, arguments) in found) Call(events, name, arguments);
            buffer.Remove(0, start + length);
        }
    }

    /// <summary>"required": the array's items, each a call given whole once its object closes.</summary>
    void ScanCalls(List<ToolCallEvent> events)
    {
        for (; scanned < buffer.Length; scanned++)
        {
            var c = buffer[scanned];
            if (inString)
            {
                if (escaped) escaped = false;
                else if (c == '\\') escaped = true;
                else if (c == '"') inString = false;
                continue;
            }
            switch (c)
            {
                case '"': inString = true; break;
                case '{' or '[':
                    if (depth++ == 1) itemStart = scanned;
                    break;
                case '}' or ']':
                    if (--depth == 1 && itemStart >= 0)
                    {
                        using var item = JsonDocument.Parse(buffer.ToString(itemStart, scanned + 1 - itemStart));
                        var root = item.RootElement;
                        Call(events, root.GetProperty("name").GetString()!, root.GetProperty("arguments").GetRawText());
                        itemStart = -1;
                    }
                    break;
            }
        }
    }
}
