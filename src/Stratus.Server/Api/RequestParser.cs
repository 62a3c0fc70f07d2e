// Turns validated API fields into the engine's GenerationRequest. Every range OpenAI documents
// is checked here, each failure a 400 naming the field, so nothing out of range reaches the
// engine.
using System.Text.Json;
using Stratus.Inference;
using Stratus.Server.Hosting;
using Stratus.Tokenization;

namespace Stratus.Server.Api;

public static partial class RequestParser
{
    public const int MaxChoices = 16;
    public const int MaxStops = 4;

    /// <summary>What both generation endpoints read first: the body, the model it names (404
    /// when none; tagged on the request for logs and metrics), its sampling settings and n.</summary>
    public static async Task<(T Body, ServedModel Model, GenerationRequest Sampling, int Choices)> ReadGenerationAsync<T>(HttpContext http, ServedModels servedModels)
        where T : SamplingFields
    {
        var body = await OpenAiJson.ReadAsync<T>(http.Request, http.RequestAborted);
        RefuseUnimplemented(body);
        // As OpenAI: options for a stream that is not asked for are a client's mistake, not ignored.
        if (body.StreamOptions is not null && body.Stream != true)
            throw ApiException.Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
        var model = servedModels.Get(body.Model);
        http.Items[ErrorMiddleware.ModelItem] = model.Name;
        return (body, model, Sampling(body, model.Tokenizer), Choices(body.N));
    }

    /// <summary>Sampling settings common to both endpoints; PromptTokens and MaxTokens are set by the caller.</summary>
    public static GenerationRequest Sampling(SamplingFields body, ITokenizer tokenizer)
    {
        var temperature = Range(body.Temperature, 1.0, 0, 2, "temperature");
        var topP = Range(body.TopP, 1.0, 0, 1, "top_p");
        if (topP <= 0) throw ApiException.Invalid($"top_p must be in (0, 1], got {topP}.", "top_p");
        var topK = body.TopK ?? 0;
        if (topK < -1) throw ApiException.Invalid($"top_k must be -1 or 0 (off) or positive, got {topK}.", "top_k");
        var repetition = Range(body.RepetitionPenalty, 1.0, 0, 2, "repetition_penalty");
        if (repetition <= 0) throw ApiException.Invalid($"repetition_penalty must be in (0, 2], got {repetition}.", "repetition_penalty");
        return new GenerationRequest
        {
            PromptTokens = [],
            Sampling = new SamplingOptions
            {
                Temperature = temperature,
                TopP = topP,
                TopK = Math.Max(topK, 0),
                MinP = Range(body.MinP, 0, 0, 1, "min_p"),
                Seed = body.Seed,
            },
            PresencePenalty = Range(body.PresencePenalty, 0, -2, 2, "presence_penalty"),
            FrequencyPenalty = Range(body.FrequencyPenalty, 0, -2, 2, "frequency_penalty"),
            RepetitionPenalty = repetition,
            LogitBias = LogitBias(body.LogitBias, tokenizer.VocabSize),
            Stop = Stops(body.Stop),
            IgnoreEos = body.IgnoreEos ?? false,
            SkipSpecialTokens = body.SkipSpecialTokens ?? true,
            Schema = Schema(body.ResponseFormat),
        };
    }

    /// <summary>The schema response_format asks the text to follow: {"type": "json_object"} (JSON
    /// mode: one JSON object, the schema {"type": "object"}), {"type": "json_schema",
    /// "json_schema": {"name", "schema", "strict"}} (Structured Outputs), or none for "text".
    /// Any other type is refused rather than answered with text that may not follow it.</summary>
    static JsonSchema? Schema(JsonElement? responseFormat)
    {
        const string param = "response_format";
        if (!Present(responseFormat)) return null;
        var format = responseFormat!.Value;
        if (format.ValueKind != JsonValueKind.Object)
            throw ApiException.Invalid("Invalid type for 'response_format': expected an object such as {\"type\": \"json_object\"}.", param, "invalid_type");
        if (!format.TryGetProperty("type", out var type))
            throw ApiException.Invalid("Missing required parameter: 'response_format.type'.", "response_format.type", "missing_required_parameter");
        if (type.ValueKind != JsonValueKind.String)
            throw ApiException.Invalid($"Invalid type for 'response_format.type': expected one of 'text', 'json_object' or 'json_schema', but got {Truncate(type.GetRawText())} instead.", "response_format.type", "invalid_type");
        return type.GetString() switch
        {
            "text" => null,
            "json_object" => JsonSchema.AnyObject,
            "json_schema" => StructuredOutput(format),
            _ => throw Unsupported(param, $"'response_format' of type {Truncate(type.ToString())} is not supported by this server; use {{\"type\": \"text\"}}, {{\"type\": \"json_object\"}} or {{\"type\": \"json_schema\", ...}}."),
        };
    }

    /// <summary>response_format.json_schema as OpenAI checks it (a name of at most 64 letters,
    /// digits, '_' and '-'; a schema object; strict a boolean), the schema compiled. strict true
    /// and false enforce the same subset.</summary>
    static JsonSchema StructuredOutput(JsonElement format)
    {
        const string param = "response_format.json_schema";
        if (!format.TryGetProperty("json_schema", out var spec) || spec.ValueKind == JsonValueKind.Null)
            throw ApiException.Invalid($"Missing required parameter: '{param}'.", param, "missing_required_parameter");
        if (spec.ValueKind != JsonValueKind.Object)
            throw ApiException.Invalid($"Invalid type for '{param}': expected an object with 'name' and 'schema'.", param, "invalid_type");
        if (!spec.TryGetProperty("name", out var name) || name.ValueKind == JsonValueKind.Null)
            throw ApiException.Invalid($"Missing required parameter: '{param}.name'.", $"{param}.name", "missing_required_parameter");
        if (name.ValueKind != JsonValueKind.String || !SchemaName().IsMatch(name.GetString()!))
            throw ApiException.Invalid($"Invalid '{param}.name': {Truncate(name.GetRawText())} must be 1 to 64 letters, digits, underscores or dashes.", $"{param}.name", "invalid_value");
        if (spec.TryGetProperty("strict", out var strict) && strict.ValueKind is not (JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
            throw ApiException.Invalid($"Invalid type for '{param}.strict': expected a boolean, but got {Truncate(strict.GetRawText())} instead.", $"{param}.strict", "invalid_type");
        if (!spec.TryGetProperty("schema", out var schema) || schema.ValueKind == JsonValueKind.Null)
            throw ApiException.Invalid($"Missing required parameter: '{param}.schema'.", $"{param}.schema", "missing_required_parameter");
        if (schema.ValueKind != JsonValueKind.Object)
            throw ApiException.Invalid($"Invalid type for '{param}.schema': expected a JSON schema object, but got {Truncate(schema.GetRawText())} instead.", $"{param}.schema", "invalid_type");
        try { return JsonSchema.Compile(schema, $"{param}.schema"); }
        catch (StratusUserException e)
        {
            throw ApiException.Invalid($"Invalid schema for response_format '{name.GetString()}': {e.Message}.", $"{param}.schema", "invalid_value");
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial System.Text.RegularExpressions.Regex SchemaName();

    /// <summary>OpenAI features that change what an answer must be and that Stratus does not
    /// implement are refused (400, code unsupported_parameter) rather than ignored: a client that
    /// asks for a function call in the deprecated form (or an unknown response_format: see
    /// <see cref="Schema"/>) would otherwise get free text it cannot tell apart. Unknown fields
    /// are still ignored, as vLLM does.</summary>
    static void RefuseUnimplemented(SamplingFields body)
    {
        switch (body)
        {
            case ChatCompletionRequest chat:
                if (Present(chat.Functions) && !IsString(chat.FunctionCall, "none"))
                    throw Unsupported("functions", "'functions' (deprecated) is not supported by this server; give them as 'tools' and 'tool_choice'.");
                if (Present(chat.Modalities) && !(chat.Modalities!.Value.ValueKind == JsonValueKind.Array && chat.Modalities.Value.EnumerateArray().All(m => IsString(m, "text"))))
                    throw Unsupported("modalities", "Audio output is not supported by this server; leave out 'modalities' or set it to [\"text\"].");
                if (Present(chat.Audio))
                    throw Unsupported("audio", "Audio output is not supported by this server; leave out 'audio'.");
                break;
            case CompletionRequest completion:
                if (!string.IsNullOrEmpty(completion.Suffix))
                    throw Unsupported("suffix", "'suffix' (insertion) is not supported by this server; leave it out.");
                if (completion.BestOf is { } bestOf && bestOf != (completion.N ?? 1))
                    throw Unsupported("best_of", "'best_of' is not supported by this server; leave it out, or ask for n choices with 'n'.");
                break;
        }
    }

    /// <summary>A field that is there and not empty (null and [] count as absent, as clients send them).</summary>
    static bool Present(JsonElement? field) =>
        field is { } value && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined)
        && !(value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0);

    static bool IsString(JsonElement? field, string text) =>
        field is { ValueKind: JsonValueKind.String } value && value.GetString() == text;

    static ApiException Unsupported(string param, string message) => ApiException.Invalid(message, param, "unsupported_parameter");

    public static int Choices(int? n)
    {
        var value = n ?? 1;
        if (value is < 1 or > MaxChoices) throw ApiException.Invalid($"n must be between 1 and {MaxChoices}, got {value}.", "n");
        return value;
    }

    /// <summary>max_tokens within the context left after the prompt (<paramref name="promptParam"/>:
    /// messages or prompt); default: all of it.</summary>
    public static int MaxTokens(int? requested, string param, string promptParam, int promptTokens, int context, int minimum, int? defaultTokens = null)
    {
        if (requested is { } value && value < minimum)
            throw ApiException.Invalid($"{param} must be at least {minimum}, got {value}.", param);
        var room = context - promptTokens;
        // A prompt may fill the context when nothing is to be generated (echo with max_tokens 0
        // scores it); without max_tokens at least one token must fit.
        // The sum is told in long: max_tokens may be as large as int.MaxValue.
        if ((requested ?? 1) > room)
            throw new ApiException(400,
                $"This model's maximum context length is {context} tokens. However, you requested {promptTokens + (long)(requested ?? 1)} tokens ({promptTokens} in the {promptParam}, {requested ?? 1} in the completion). Please reduce the length of the {promptParam} or completion.",
                requested is null || room < 1 ? promptParam : param, "context_length_exceeded");
        return requested ?? Math.Min(room, defaultTokens ?? room);
    }

    /// <param name="addSpecialTokens">Whether the text is a raw prompt that gets the special
    /// tokens the model's tokenizer puts around an input (a Llama's BOS), as vLLM encodes a
    /// completions prompt; a chat template's rendering writes them itself.</param>
    public static int[] Encode(ITokenizer tokenizer, string text, string param, bool addSpecialTokens)
    {
        var unencodable = tokenizer.Unencodable(text);
        if (unencodable.Count > 0)
            throw ApiException.Invalid($"The text has characters outside this model's vocabulary: {CodePoints.Describe(unencodable)}.", param, "unencodable_characters");
        try { return tokenizer.Encode(text, addSpecialTokens); }
        catch (Exception e) when (e is StratusUserException or ArgumentException)
        {
            throw ApiException.Invalid($"The text cannot be tokenized: {e.Message}", param);
        }
    }

    /// <summary>Has the screens see a request's prompts before it is refused with
    /// <paramref name="refusal"/>, a fault of its prompts (Encode's, MaxTokens'): a screen's
    /// refusal (a blocked prompt) comes first.</summary>
    public static async ValueTask<ApiException> ScreenedAsync(ApiException refusal, IEnumerable<IPromptScreen> screens, HttpContext http, string model,
        ChatPrompt? chat, IReadOnlyList<string> prompts, CancellationToken cancellation)
    {
        foreach (var screen in screens) await screen.ScreenAsync(http, model, chat, prompts, cancellation);
        return refusal;
    }

    /// <summary>A chat's messages and where their rendering ends, as chat completions and
    /// /tokenize take them (vLLM's defaults: the generation prompt, no open final message).</summary>
    public static ChatPrompt Chat(List<ChatMessageBody?>? messages, bool? addGenerationPrompt, bool? continueFinalMessage, ChatTools? tools = null,
        IReadOnlyDictionary<string, JsonElement>? variables = null) =>
        new(Messages(messages), addGenerationPrompt ?? true, continueFinalMessage ?? false) { Tools = tools?.Definitions, Variables = variables };

    /// <summary>A chat request's template variables: its chat_template_kwargs, with reasoning_effort
    /// and documents over them where given, as vLLM merges those fields (gpt-oss's template reads
    /// reasoning_effort, Command-R's and Granite's documents).</summary>
    public static Dictionary<string, JsonElement>? TemplateVariables(ChatCompletionRequest body)
    {
        var variables = TemplateVariables(body.ChatTemplateKwargs);
        if (body.ReasoningEffort is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) } effort)
        {
            if (effort.ValueKind != JsonValueKind.String)
                throw ApiException.Invalid($"Invalid type for 'reasoning_effort': expected a string such as \"high\", but got {Truncate(effort.GetRawText())} instead.", "reasoning_effort", "invalid_type");
            (variables ??= new(StringComparer.Ordinal))["reasoning_effort"] = effort;
        }
        if (body.Documents is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) } documents)
        {
            if (documents.ValueKind != JsonValueKind.Array || documents.EnumerateArray().Any(d => d.ValueKind != JsonValueKind.Object || d.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String)))
                throw ApiException.Invalid("Invalid type for 'documents': expected an array of objects of strings, such as [{\"title\": ..., \"text\": ...}].", "documents", "invalid_type");
            (variables ??= new(StringComparer.Ordinal))["documents"] = documents;
        }
        return variables;
    }

    /// <summary>vLLM's chat_template_kwargs: an object whose members, any JSON, the template reads
    /// as variables (null and absent: none); a name the rendering sets itself is refused where it
    /// renders (ChatTemplate.CheckVariables), as the IChatClient's are.</summary>
    public static Dictionary<string, JsonElement>? TemplateVariables(JsonElement? kwargs)
    {
        const string param = "chat_template_kwargs";
        if (kwargs is not { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) } given) return null;
        if (given.ValueKind != JsonValueKind.Object)
            throw ApiException.Invalid($"Invalid type for '{param}': expected an object of template variables such as {{\"enable_thinking\": false}}, but got {Truncate(given.GetRawText())} instead.", param, "invalid_type");
        var variables = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var member in given.EnumerateObject()) variables[member.Name] = member.Value;
        return variables;
    }

    /// <summary>A chat's messages as the template reads them (ChatMessages.Parse, which prepare
    /// --format chat shares), each fault a 400 naming its field.</summary>
    public static List<ChatMessageText> Messages(List<ChatMessageBody?>? messages)
    {
        if (messages is null) throw ApiException.Invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter");
        if (messages.Count == 0) throw ApiException.Invalid("'messages' must contain at least one message.", "messages", "empty_array");
        try { return ChatMessages.Parse(messages); }
        catch (StratusUserException e) { throw ApiException.Invalid(e); }
    }

    /// <summary>Prompts of /v1/completions: each either text or token ids.</summary>
    public static List<(string? Text, int[]? Tokens)> Prompts(JsonElement? prompt)
    {
        const string param = "prompt";
        if (prompt is not { } element || element.ValueKind == JsonValueKind.Null)
            throw ApiException.Invalid("Missing required parameter: 'prompt'.", param, "missing_required_parameter");
        var result = new List<(string?, int[]?)>();
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                result.Add((element.GetString(), null));
                break;
            case JsonValueKind.Array when element.GetArrayLength() == 0:
                throw ApiException.Invalid("'prompt' must not be empty.", param, "empty_array");
            case JsonValueKind.Array when element[0].ValueKind == JsonValueKind.Number:
                result.Add((null, TokenIds(element, param)));
                break;
            case JsonValueKind.Array:
                var i = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.String) result.Add((item.GetString(), null));
                    else if (item.ValueKind == JsonValueKind.Array) result.Add((null, TokenIds(item, $"prompt[{i}]")));
                    else throw ApiException.Invalid($"Invalid type for 'prompt[{i}]': expected a string or an array of token ids.", $"prompt[{i}]", "invalid_type");
                    i++;
                }
                if (result.Count > MaxChoices) throw ApiException.Invalid($"At most {MaxChoices} prompts per request.", param);
                break;
            default:
                throw ApiException.Invalid("Invalid type for 'prompt': expected a string, an array of strings or token ids.", param, "invalid_type");
        }
        return result;
    }

    static int[] TokenIds(JsonElement array, string param)
    {
        var ids = new int[array.GetArrayLength()];
        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[i]))
                throw ApiException.Invalid($"Invalid token id in '{param}[{i}]': expected an integer.", $"{param}[{i}]", "invalid_type");
            i++;
        }
        return ids;
    }

    public static void CheckTokenIds(IReadOnlyList<int> ids, int vocab, string param)
    {
        for (var i = 0; i < ids.Count; i++)
            if ((uint)ids[i] >= (uint)vocab)
                throw ApiException.Invalid($"Token id {ids[i]} in '{param}' is outside the vocabulary of {vocab}.", param, "invalid_value");
    }

    static IReadOnlyList<string> Stops(JsonElement? stop)
    {
        const string param = "stop";
        if (stop is not { } element || element.ValueKind == JsonValueKind.Null) return [];
        if (element.ValueKind == JsonValueKind.String)
        {
            var single = element.GetString()!;
            return single.Length == 0 ? throw ApiException.Invalid("'stop' must not be an empty string.", param) : [single];
        }
        if (element.ValueKind != JsonValueKind.Array)
            throw ApiException.Invalid("Invalid type for 'stop': expected a string or an array of strings.", param, "invalid_type");
        if (element.GetArrayLength() > MaxStops)
            throw ApiException.Invalid($"'stop' may hold at most {MaxStops} sequences, got {element.GetArrayLength()}.", param);
        var result = new List<string>();
        foreach (var item in element.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String || item.GetString()!.Length == 0)
                throw ApiException.Invalid("Invalid 'stop': every stop sequence must be a non-empty string.", param, "invalid_type");
            result.Add(item.GetString()!);
        }
        return result;
    }

    static Dictionary<int, float>? LogitBias(Dictionary<string, double>? bias, int vocab)
    {
        if (bias is null || bias.Count == 0) return null;
        if (bias.Count > 300) throw ApiException.Invalid("'logit_bias' may name at most 300 tokens.", "logit_bias");
        var result = new Dictionary<int, float>(bias.Count);
        foreach (var (key, value) in bias)
        {
            if (!int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var token) || token >= vocab)
                throw ApiException.Invalid($"Invalid key in 'logit_bias': '{Truncate(key)}' is not a token id of this model (0 to {vocab - 1}).", "logit_bias", "invalid_value");
            if (value is < -100 or > 100 || double.IsNaN(value))
                throw ApiException.Invalid($"Invalid value in 'logit_bias' for token {token}: {value} is outside [-100, 100].", "logit_bias", "invalid_value");
            // Keys are token ids as text, so "05" names token 5 as "5" does (vLLM reads them with
            // int()): two biases for one token would leave one of them silently unused.
            if (!result.TryAdd(token, (float)value))
                throw ApiException.Invalid($"Invalid key in 'logit_bias': '{Truncate(key)}' names token {token}, which another key names too; give each token one bias.", "logit_bias", "invalid_value");
        }
        return result;
    }

    public static double Range(double? value, double fallback, double min, double max, string param)
    {
        var v = value ?? fallback;
        if (double.IsNaN(v) || v < min || v > max)
            throw ApiException.Invalid($"Invalid '{param}': {v} is outside [{min}, {max}].", param, "invalid_value");
        return v;
    }

    public static int IntRange(int? value, int fallback, int min, int max, string param)
    {
        var v = value ?? fallback;
        if (v < min || v > max) throw ApiException.Invalid($"Invalid '{param}': {v} is outside [{min}, {max}].", param, "invalid_value");
        return v;
    }

    static string Truncate(string text) => text.Length > 40 ? text[..40] + "..." : text;
}

/// <summary>A chat request's messages and where their rendering ends (vLLM's add_generation_prompt
/// and continue_final_message), kept together so that every rendering of the request (the
/// prompt, a redacted prompt) ends alike.</summary>
public sealed record ChatPrompt(IReadOnlyList<ChatMessageText> Messages, bool AddGenerationPrompt, bool ContinueFinalMessage)
{
    /// <summary>The tools the template is told of (their definitions as the request gives them); null: none.</summary>
    public IReadOnlyList<JsonElement>? Tools { get; init; }
    /// <summary>More variables for the template (chat_template_kwargs); null: none.</summary>
    public IReadOnlyDictionary<string, JsonElement>? Variables { get; init; }

    public string Render(ChatTemplate template) => template.Render(Messages, AddGenerationPrompt, ContinueFinalMessage, Tools, Variables);
}
