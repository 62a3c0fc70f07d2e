// How chat messages become one prompt. A model's own Jinja template (Hugging Face's
// chat_template.jinja, else tokenizer_config.json's "chat_template", or the one its fine-tuning data was rendered with:
// `prepare --chat-template`) is stored with it as chat_template.jinja and rendered with the
// Jinja subset in Jinja.cs. A model without one gets a template derived from its
// tokenizer: ChatML when the vocabulary has <|im_start|>/<|im_end|> as tokens, otherwise a plain
// template (message contents, one per line) that a base model such as char-level Shakespeare
// can spell. The serving engine, the IChatClient and SFT data preparation all render through
// this one type, and it says what ends a reply: the text the template writes to close an
// assistant's turn, and the eos token.
namespace Stratus.Tokenization;

/// <param name="Content">The message's text; null where it has none (OpenAI's null content of an
/// assistant's message that only calls tools), which a template reads as none, as transformers'
/// apply_chat_template and vLLM pass it: DeepSeek R1's templates write a message's tool calls only
/// where its content is none.</param>
public sealed record ChatMessageText(string Role, string? Content)
{
    /// <summary>The text parts the content was given in (OpenAI's content as an array of parts),
    /// which <see cref="Content"/> joins by line breaks; null where it was given as a string. A
    /// template that loops over a message's content gets them as parts.</summary>
    public IReadOnlyList<string>? TextParts { get; init; }
    /// <summary>The calls an assistant's message made (OpenAI's tool_calls); null where none.</summary>
    public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }
    /// <summary>The call a tool message answers (OpenAI's tool_call_id); null on other messages.</summary>
    public string? ToolCallId { get; init; }
    /// <summary>The participant's name (OpenAI's name, on any message); null where none.</summary>
    public string? Name { get; init; }
    /// <summary>The reasoning an assistant's message came with, which templates of thinking
    /// models (Qwen3's, DeepSeek's, GLM's) write back for an earlier turn; null where none.</summary>
    public string? Reasoning { get; init; }

    /// <summary>A message of OpenAI's shape as the template gets it, for a chat request (the
    /// server) and a fine-tuning conversation (prepare --format chat) alike, so that the data is
    /// rendered as serving renders the same conversation: its name on any message, as vLLM passes
    /// it; an assistant's reasoning, vLLM's field, or reasoning_content, as DeepSeek's API and
    /// earlier vLLM answers name it (a client replaying an answer sends that), but not two texts;
    /// another role's reasoning is not passed. <paramref name="at"/>:
    /// where the message is, as an error names it ("messages[1]").</summary>
    public static ChatMessageText Of(string role, string? content, string? name, string? reasoning, string? reasoningContent, string at)
    {
        if (role == "assistant" && reasoning is not null && reasoningContent is not null && reasoning != reasoningContent)
            throw new StratusUserException($"'{at}.reasoning_content' differs from '{at}.reasoning'; give the reasoning once") { Param = $"{at}.reasoning_content", Code = "invalid_value" };
        return new(role, content) { Name = name, Reasoning = role == "assistant" ? reasoning ?? reasoningContent : null };
    }
}

/// <summary>A function call in a conversation: its id, the function's name and its arguments as
/// the API carries them, JSON text of an object.</summary>
public sealed record ChatToolCall(string Id, string Name, string Arguments);

public sealed class ChatTemplate
{
    public const string FileName = "chat_template.jinja";

    /// <summary>The roles of a chat's messages, OpenAI's: what serve takes, so what fine-tuning data may hold.</summary>
    public static IReadOnlyList<string> Roles { get; } = ["system", "developer", "user", "assistant", "tool"];

    /// <summary><see cref="Roles"/> in words: 'system', ... and 'tool'.</summary>
    public static string RolesInWords { get; } = $"{string.Join(", ", Roles.SkipLast(1).Select(r => $"'{r}'"))} and '{Roles[^1]}'";
    public const string ChatMl = "chatml";
    public const string Plain = "plain";
    public const string Own = "model";
    const string ImStart = "<|im_start|>";
    const string ImEnd = "<|im_end|>";

    const string ChatMlSource =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    const string PlainSource = "{% for message in messages %}{{ message['content'] + '\\n' }}{% endfor %}";
    // An assistant reply that no template rewrites (no whitespace to strip or trim), to find
    // what the template writes after one.
    const string ReplySentinel = "Stratus-reply-sentinel";
    static readonly System.Text.Json.JsonElement[] ProbeTools =
        [System.Text.Json.JsonDocument.Parse("""{"type": "function", "function": {"name": "probe", "description": "A probe.", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}}}""").RootElement];

    readonly Compiled chat;
    readonly Compiled? toolUse;

    /// <summary>A template ready to render, with the shape of a turn of calls it takes.</summary>
    sealed record Compiled(JinjaTemplate Template, CallTurn Turn);

    /// <summary>Parses a template; a construct outside the supported subset is refused here,
    /// not at the first request.</summary>
    /// <param name="toolUseSource">The template the model renders a chat with tools in, where it
    /// names one apart ("tool_use"), as transformers and vLLM choose it; null: <paramref name="source"/> does.</param>
    public ChatTemplate(string source, string bosToken = "", string eosToken = "", string kind = Own, string? toolUseSource = null)
    {
        Source = source;
        ToolsSource = toolUseSource ?? source;
        BosToken = bosToken;
        EosToken = eosToken;
        Kind = kind;
        chat = Compile(source, "the chat template");
        if (toolUseSource is not null) toolUse = Compile(toolUseSource, "the chat template for tools (tool_use)");
        EndOfTurn = DeriveEndOfTurn();
    }

    Compiled Compile(string source, string what)
    {
        JinjaTemplate parsed;
        try { parsed = new JinjaTemplate(source); }
        catch (JinjaException e) { throw new StratusUserException($"{what} cannot be used: {e.Message}"); }
        return new Compiled(parsed, DeriveCallTurn(parsed));
    }

    /// <summary>How the template reads an assistant's turn that calls tools. transformers passes
    /// messages as they are given, and each template was written for one shape: the content of a
    /// turn of calls alone none, as OpenAI's clients send it and vLLM passes it (DeepSeek R1's
    /// templates write the calls only then), or "" (a ChatML template adds it to text, which none
    /// would make an error); the arguments an object, as transformers documents them (Llama 3.1's
    /// and Hermes' templates write them with tojson), or the JSON text (DeepSeek's and functionary's
    /// add them to text). The syntax cannot say which a template takes (it may add the arguments to
    /// text in a macro, or test the content before it uses it), so a render tries them; whether it
    /// reads content as parts it can, and says (<see cref="JinjaTemplate.IteratesMessageContent"/>),
    /// as vLLM finds it, a turn of calls alone then having no parts.</summary>
    /// <param name="NoneForNoContent">Whether a message without content gives the template none,
    /// not "" (one that reads content as parts gets no parts either way).</param>
    /// <param name="ArgumentsAsText">Whether a call's arguments are the JSON text, not an object.</param>
    readonly record struct CallTurn(bool NoneForNoContent, bool ArgumentsAsText);

    public string Source { get; }
    /// <summary>The template a chat with tools renders in: the model's tool_use one, else <see cref="Source"/>.</summary>
    public string ToolsSource { get; }
    public string BosToken { get; }
    public string EosToken { get; }
    /// <summary>"model" for the model's own template, else "chatml" or "plain".</summary>
    public string Kind { get; }
    /// <summary>What the template writes after an assistant's message, whitespace trimmed:
    /// ChatML's &lt;|im_end|&gt;, Llama 3's &lt;|eot_id|&gt;, Llama 2's eos_token; empty for the plain
    /// template, or one that cannot render a user message and a reply.</summary>
    public string EndOfTurn { get; }

    /// <summary>Whether a rendering is encoded with add_special_tokens, the special tokens the
    /// tokenizer puts around a raw prompt (a Llama's BOS). A model's own template writes them
    /// itself (bos_token), and Hugging Face's apply_chat_template and vLLM's chat add none; a
    /// template derived from the tokenizer writes none, so its rendering is a raw prompt and
    /// gets them as one does.</summary>
    public bool AddSpecialTokens => Kind != Own;

    /// <summary>ChatML when the tokenizer spells its markers as tokens, else plain.</summary>
    public static ChatTemplate For(ITokenizer tokenizer) =>
        tokenizer.HasSpecialToken(ImStart) && tokenizer.HasSpecialToken(ImEnd)
            ? new ChatTemplate(ChatMlSource, kind: ChatMl)
            : new ChatTemplate(PlainSource, kind: Plain);

    /// <summary>The model's own template, or the one derived from its tokenizer (the
    /// checkpoint's, which its folder is not read for again).</summary>
    public static ChatTemplate Load(string checkpointDirectory, ITokenizer tokenizer) => Stored(checkpointDirectory, tokenizer) ?? For(tokenizer);

    /// <summary>The model's own chat template (a run or checkpoint folder), with the bos/eos token
    /// text of its tokenizer, or null when it has none; one Stratus cannot render is refused
    /// naming its file.</summary>
    public static ChatTemplate? TryLoad(string checkpointDirectory) => Stored(checkpointDirectory, tokenizer: null);

    static ChatTemplate? Stored(string checkpointDirectory, ITokenizer? tokenizer) =>
        TryLoad(checkpointDirectory, tokenizer, out var unsupported) ?? (unsupported is null ? null : throw new StratusUserException(unsupported.Message));

    /// <summary>As <see cref="TryLoad(string)"/>, but a stored template that uses what Stratus
    /// cannot render comes back as <paramref name="unsupported"/> (and null), for import and serve,
    /// which keep such a model for its completions.</summary>
    /// <param name="tokenizer">The checkpoint's, where the caller has it: a large vocabulary takes
    /// a second or so to read again, and its load a full collection (null: read from the folder).</param>
    public static ChatTemplate? TryLoad(string checkpointDirectory, ITokenizer? tokenizer, out UnsupportedChatTemplate? unsupported)
    {
        unsupported = null;
        checkpointDirectory = Training.Checkpoint.Resolve(checkpointDirectory);
        if (Find(checkpointDirectory) is not { } source) return null;
        tokenizer ??= TokenizerStore.Load(checkpointDirectory);
        try { return Of(source, tokenizer); }
        catch (StratusUserException e)
        {
            // Named by its file: a server loading several models, or prepare, would not say whose it is.
            unsupported = new UnsupportedChatTemplate(Path.Combine(checkpointDirectory, FileName), e.Message);
            return null;
        }
    }

    /// <summary>A model's own template (its checkpoint's, or one it is fine-tuned into), with the
    /// bos/eos token text of its tokenizer.</summary>
    public static ChatTemplate Of(string source, ITokenizer tokenizer)
    {
        var (bos, eos) = SpecialTokens(tokenizer);
        var toolUse = NamedBeside(source, tokenizer).FirstOrDefault(t => t.Name == "tool_use").Template;
        return new ChatTemplate(source, bos, eos, toolUseSource: toolUse);
    }

    /// <summary>The named templates (tool_use, rag) published beside <paramref name="source"/> as
    /// the tokenizer's default: they go with that default, not with another template the model
    /// was fine-tuned into, so there are none where the tokenizer's default is another.</summary>
    public static IReadOnlyList<(string Name, string Template)> NamedBeside(string source, ITokenizer tokenizer) =>
        tokenizer is HfTokenizer hf && hf.ChatTemplate == source ? hf.NamedChatTemplates : [];

    /// <summary>The template source stored in a checkpoint folder, or null.</summary>
    public static string? Find(string checkpointDirectory)
    {
        var path = Path.Combine(checkpointDirectory, FileName);
        if (!File.Exists(path)) return null;
        FileBytes.RequireRegular(path);
        return File.ReadAllText(path);
    }

    /// <summary>The text of the bos and eos tokens that templates refer to as bos_token / eos_token.</summary>
    public static (string Bos, string Eos) SpecialTokens(ITokenizer tokenizer) => tokenizer switch
    {
        HfTokenizer hf => (hf.SpecialText("bos_token") ?? "", hf.SpecialText("eos_token") ?? ""),
        Gpt2Tokenizer => (Gpt2Tokenizer.EndOfText, Gpt2Tokenizer.EndOfText),
        _ => ("", ""),
    };

    /// <summary>The prompt for a conversation, ending where the assistant's reply begins, or,
    /// without the generation prompt, where the last message ends; with
    /// <paramref name="continueFinalMessage"/>, right after the last message's content, its end of
    /// turn left out, so that the model continues that message (a prefilled reply), as
    /// transformers' apply_chat_template(continue_final_message=True) and vLLM render it.</summary>
    /// <param name="tools">The tools the model may call, each {"type": "function", "function":
    /// {...}} as the API has them; the template sees them as `tools` (none: None), as transformers'
    /// apply_chat_template(tools=...) and vLLM pass them.</param>
    /// <param name="variables">More variables for the template (vLLM's chat_template_kwargs: Qwen3's
    /// enable_thinking, gpt-oss's reasoning_effort), any JSON, as apply_chat_template(**kwargs)
    /// passes them; see <see cref="CheckVariables"/> for the names they may not set.</param>
    public string Render(IReadOnlyList<ChatMessageText> messages, bool addGenerationPrompt = true, bool continueFinalMessage = false, IReadOnlyList<System.Text.Json.JsonElement>? tools = null,
        IReadOnlyDictionary<string, System.Text.Json.JsonElement>? variables = null)
    {
        CheckVariables(variables);
        var (template, turn) = tools is { Count: > 0 } && toolUse is { } forTools ? forTools : chat;
        return Render(template, messages, addGenerationPrompt, continueFinalMessage, tools, turn, variables);
    }

    /// <summary>The names chat_template_kwargs may not set, and why: vLLM refuses chat_template and
    /// tokenize, and transformers fails on messages (it passes its own); tools are the request's
    /// own, checked, and choose the template and the calls' parser (vLLM would render other tools
    /// than it parses calls of).</summary>
    static readonly Dictionary<string, string> Reserved = new(StringComparer.Ordinal)
    {
        ["messages"] = "the conversation is the request's messages",
        ["tools"] = "give the tools as the request's 'tools', which are checked and whose calls are read",
        ["chat_template"] = "the model's chat template is the one rendered",
        ["tokenize"] = "the rendering is always tokenized",
    };

    /// <summary>Refuses variables that set a name the rendering sets itself (<see cref="Reserved"/>).
    /// add_generation_prompt and continue_final_message are not refused but left to the request's
    /// own fields, as vLLM merges those over chat_template_kwargs; bos_token and eos_token are
    /// taken, as transformers lets its kwargs override the special tokens.</summary>
    public static void CheckVariables(IReadOnlyDictionary<string, System.Text.Json.JsonElement>? variables)
    {
        foreach (var name in variables?.Keys ?? [])
            if (Reserved.TryGetValue(name, out var why))
                throw new StratusUserException($"chat_template_kwargs may not set '{name}': {why}; leave it out of chat_template_kwargs")
                { Param = "chat_template_kwargs", Code = "invalid_value" };
    }

    string Render(JinjaTemplate template, IReadOnlyList<ChatMessageText> messages, bool addGenerationPrompt, bool continueFinalMessage, IReadOnlyList<System.Text.Json.JsonElement>? tools, CallTurn turn,
        IReadOnlyDictionary<string, System.Text.Json.JsonElement>? variables = null)
    {
        // transformers and vLLM refuse the pair: a header for a new reply and an open last message contradict.
        if (continueFinalMessage && addGenerationPrompt)
            throw new StratusUserException("continue_final_message and add_generation_prompt cannot both be true: set add_generation_prompt to false to continue the final message");
        if (continueFinalMessage && messages is [] or [.., { Content: null }]) throw new StratusUserException("continue_final_message needs a final message with content to continue");
        string text;
        try
        {
            var context = new Dictionary<string, object?> { ["bos_token"] = BosToken, ["eos_token"] = EosToken };
            foreach (var (name, value) in variables ?? new Dictionary<string, System.Text.Json.JsonElement>())
                if (name is not ("add_generation_prompt" or "continue_final_message")) context[name] = JinjaTemplate.FromJson(value);
            context["messages"] = messages.Select(m => Variable(m, turn, template.IteratesMessageContent)).ToList();
            context["tools"] = tools is { Count: > 0 } ? tools.Select(t => JinjaTemplate.FromJson(t)).ToList() : null;
            context["add_generation_prompt"] = addGenerationPrompt;
            text = template.Render(context);
        }
        catch (JinjaException e) { throw new StratusUserException($"the chat template could not render this conversation: {e.Message}"); }
        return continueFinalMessage ? CutAfter(text, FinalText(messages[^1], template.IteratesMessageContent)) : text;
    }

    public string Render(IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt, bool continueFinalMessage = false) =>
        Render(messages.Select(m => new ChatMessageText(m.Role, m.Content)).ToList(), addGenerationPrompt, continueFinalMessage);

    /// <summary>A message as templates read it: role and content (none or "" where it has none,
    /// as the template takes it; for a template that loops over a message's content, its text
    /// parts, <see cref="ContentParts"/>, but a tool's result its text, parts joined, as vLLM gives
    /// it, templates writing a tool message's content as it is), an assistant's tool_calls ({"id",
    /// "type": "function", "function": {"name", "arguments"}}, the arguments an object or their JSON
    /// text, as the template takes them), a tool message's tool_call_id, the message's name, and an assistant's reasoning as
    /// both reasoning and reasoning_content, as vLLM passes it (templates read either).</summary>
    static object? Variable(ChatMessageText message, CallTurn turn, bool contentAsParts)
    {
        object? content = contentAsParts && message.Role != "tool" ? ContentParts(message) : message.Content ?? (turn.NoneForNoContent ? null : "");
        var variable = new JinjaTemplate.Mapping { ["role"] = message.Role, ["content"] = content };
        if (message.ToolCalls is { Count: > 0 } calls)
            variable["tool_calls"] = calls.Select(call => (object?)new JinjaTemplate.Mapping
            {
                ["id"] = call.Id,
                ["type"] = "function",
                ["function"] = new JinjaTemplate.Mapping { ["name"] = call.Name, ["arguments"] = turn.ArgumentsAsText ? call.Arguments : Arguments(call) },
            }).ToList();
        if (message.ToolCallId is { } id) variable["tool_call_id"] = id;
        if (message.Name is { } name) variable["name"] = name;
        if (message.Reasoning is { } reasoning) variable["reasoning"] = variable["reasoning_content"] = reasoning;
        return variable;
    }

    /// <summary>A message's content as vLLM gives it to a template that loops over it (its
    /// "openai" format): each text part as {"type": "text", "text": ...}, a string content as one,
    /// no content as none ([]).</summary>
    static List<object?> ContentParts(ChatMessageText message) =>
        (message.TextParts ?? (message.Content is { } text ? [text] : [])).Select(part => (object?)new JinjaTemplate.Mapping { ["type"] = "text", ["text"] = part }).ToList();

    /// <summary>The text continue_final_message continues: the final message's content, or, for
    /// a template that loops over parts, its last part, as transformers finds it.</summary>
    static string FinalText(ChatMessageText message, bool contentAsParts) =>
        contentAsParts && message.Role != "tool" && message.TextParts is [.., var last] ? last : message.Content!;

    static object? Arguments(ChatToolCall call)
    {
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(call.Arguments);
            return JinjaTemplate.FromJson(document.RootElement);
        }
        catch (System.Text.Json.JsonException)
        {
            throw new StratusUserException($"the arguments of tool call '{call.Id}' are not JSON: send them as the JSON text of an object");
        }
    }

    /// <summary>The rendering up to the end of the final message's content, as transformers cuts
    /// it: at the last place the content (whitespace trimmed, as templates often trim it) appears,
    /// keeping the content's trailing whitespace where the template kept it and the content has
    /// none in front (transformers compares the kept span with the whole content, so content
    /// with whitespace at both ends loses the trailing one: vLLM's prompt tokens are those).</summary>
    static string CutAfter(string text, string content)
    {
        var trimmed = content.Trim();
        var at = text.LastIndexOf(trimmed, StringComparison.Ordinal);
        if (at < 0)
            throw new StratusUserException("continue_final_message is set but the final message does not appear in the chat as the template renders it (the template changes its content), so it cannot be continued");
        var keepsTrailing = (content.Length == 0 || !char.IsWhiteSpace(content[0])) && string.CompareOrdinal(text, at, content, 0, content.Length) == 0;
        var end = at + (keepsTrailing ? content.Length : trimmed.Length);
        return text[..end];
    }

    /// <summary>What ends the assistant's reply: the eos token and the end-of-turn marker where
    /// the vocabulary spells them as one special token (stop tokens), else the end-of-turn text
    /// as a stop string, for a model that learned to write it as text (GPT-2 or a character-level
    /// model fine-tuned into ChatML), which is not part of the reply either.</summary>
    public (IReadOnlyList<int> Tokens, IReadOnlyList<string> Texts) Stops(ITokenizer tokenizer)
    {
        var tokens = new List<int>(2);
        if (SpecialTokenId(tokenizer, EosToken) is { } eos) tokens.Add(eos);
        if (EndOfTurn.Length == 0) return (tokens, []);
        if (SpecialTokenId(tokenizer, EndOfTurn) is not { } end) return (tokens, [EndOfTurn]);
        if (!tokens.Contains(end)) tokens.Add(end);
        return (tokens, []);
    }

    static int? SpecialTokenId(ITokenizer tokenizer, string text)
    {
        if (text.Length == 0 || !tokenizer.HasSpecialToken(text)) return null;
        var ids = tokenizer.Encode(text);
        return ids.Length == 1 ? ids[0] : null;
    }

    /// <summary>The first shape of a turn of calls, in transformers' and vLLM's order (none, then
    /// an object), in which the template renders a call and its result; where it renders none,
    /// that order's first, and the conversation's own render says what fails. The tool the call
    /// is offered with lets a template for tools (one that loops over them) render it.</summary>
    CallTurn DeriveCallTurn(JinjaTemplate template)
    {
        List<ChatMessageText> probe =
        [
            new("user", "Hi"),
            new("assistant", null) { ToolCalls = [new ChatToolCall("call12345", "probe", "{\"a\": 1}")] },
            new("tool", "1") { ToolCallId = "call12345" },
        ];
        CallTurn[] shapes = [new(true, false), new(true, true), new(false, false), new(false, true)];
        foreach (var shape in shapes)
        {
            try
            {
                Render(template, probe, addGenerationPrompt: true, continueFinalMessage: false, ProbeTools, shape);
                return shape;
            }
            catch (StratusUserException) { }
        }
        return shapes[0];
    }

    /// <summary>What the template writes after a reply that ends the conversation, as
    /// transformers' apply_chat_template renders a training example.</summary>
    string DeriveEndOfTurn()
    {
        string text;
        try { text = Render([("user", "Hi"), ("assistant", ReplySentinel)], addGenerationPrompt: false); }
        catch (StratusUserException) { return ""; }
        var at = text.LastIndexOf(ReplySentinel, StringComparison.Ordinal);
        return at < 0 ? "" : text[(at + ReplySentinel.Length)..].Trim();
    }
}

/// <summary>A model's stored chat template that uses a construct outside the Jinja subset
/// Stratus renders (a filter it lacks, a {% filter %} block). The model is fine otherwise: import keeps it
/// and serve answers its completions, refusing only its chats.</summary>
/// <param name="Reason">What the template uses that Stratus cannot render, without the file.</param>
public sealed record UnsupportedChatTemplate(string Path, string Reason)
{
    /// <summary>How to give such a model a template Stratus renders: the stored one is under the
    /// checkpoint's manifest, so it cannot be edited in place.</summary>
    public const string Fix = "import it again with a template Stratus supports in the Hugging Face folder's chat_template.jinja, " +
        "or fine-tune it in one with `stratus prepare --format chat --chat-template <file>`";

    public string Message => $"{Path}: {Reason}";
}
