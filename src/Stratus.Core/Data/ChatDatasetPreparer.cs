// `stratus prepare --format chat`: supervised fine-tuning data. Each JSONL line holds
// {"messages": [{"role": ..., "content": ...}, ...]}, its messages read as a chat request's are
// (ChatMessages: content as text parts, an assistant's tool_calls, a tool's tool_call_id, a
// message's name, an assistant's reasoning), so that they reach the template alike; it is rendered with the
// model's own chat template, or one the user gives (--chat-template, to teach a base model a chat format of their
// choice as setting a Hugging Face tokenizer's chat_template before training does), and tokenized
// with the model's tokenizer, and a loss mask marks the tokens the model should learn to produce
// (assistant turns, including the template's end-of-turn marker). Tokens go to train.bin/val.bin
// as for plain text, masks to train.mask.bin/val.mask.bin; the conversations stream through, so
// the file's size is bounded by disk, not memory. A given template is stored with the data, its
// sha256 in meta.json, and `train` carries it into the run's checkpoints (StoredTemplate).
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Inference;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Data;

/// <param name="UpToDate">The folder held this dataset already (the same conversations prepared
/// with the same model tokenizer, template and split), and was left as it was.</param>
public sealed record PreparedChatDataset(string Directory, ITokenizer Tokenizer, int TrainExamples, int ValExamples,
    long TrainTokens, long ValTokens, long SupervisedTokens, bool UpToDate = false);

public static class ChatDatasetPreparer
{
    public const string TrainMask = "train.mask.bin";
    public const string ValMask = "val.mask.bin";

    /// <param name="chatTemplate">A Jinja chat template file to render the conversations with
    /// instead of the model's own (or derived) template.</param>
    /// <param name="overwrite">Replace a dataset of another source or other settings in the folder
    /// (DatasetFolder.Write).</param>
    public static PreparedChatDataset Prepare(string input, string outputDirectory, string modelPath, double valFraction = 0.1, IProgress<PrepareProgress>? progress = null,
        string? chatTemplate = null, bool overwrite = false)
    {
        DatasetPreparer.RequireValFraction(valFraction);
        if (!File.Exists(input)) throw new StratusUserException($"input {input} does not exist; pass a JSONL file with one {{\"messages\": [...]}} per line");
        if (chatTemplate is not null && !File.Exists(chatTemplate))
            throw new StratusUserException($"--chat-template {chatTemplate} does not exist; pass a Jinja chat template file (e.g. the chat_template of a Hugging Face tokenizer_config.json)");
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(modelPath));
        var tokenizer = checkpoint.Tokenizer;
        // The template the model will be served with (ServedModel): the given one, which its
        // checkpoints will hold, else its own or the one derived from its tokenizer, so that what
        // it learns is what a chat request will show it.
        var templateSource = chatTemplate is null ? null : File.ReadAllText(chatTemplate);
        ChatTemplate template;
        try { template = templateSource is null ? ChatTemplate.Load(checkpoint.Directory, tokenizer) : ChatTemplate.Of(templateSource, tokenizer); }
        catch (StratusUserException e) when (chatTemplate is not null) { throw new StratusUserException($"{chatTemplate}: {e.Message}"); }
        var settings = new JsonObject
        {
            ["format"] = "chat",
            ["tokenizer_sha256"] = TokenizerStore.Sha256(tokenizer),
            ["chat_template"] = template.Kind,
            ["chat_template_sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(template.Source))),
        };
        return DatasetFolder.Write(outputDirectory, overwrite, new Preparation(() => FileHash.Sha256(input, namedByUser: true), settings, valFraction),
            (meta, stored) => new PreparedChatDataset(outputDirectory, stored, (int)meta["train_examples"]!, (int)meta["val_examples"]!,
                (long)meta["train_tokens"]!, (long)meta["val_tokens"]!, (long)meta["supervised_train_tokens"]!, UpToDate: true),
            (sha256, files) =>
        {
            // Whole conversations go to one split: the last val_fraction of them (at least one) to val
            // (with val_fraction 0, a copy of the last). Counting them first lets them stream through
            // once, into one pair of shards whose tail then moves to val.
            var conversations = 0;
            using (var lines = DatasetPreparer.ReadUtf8(input, File.OpenRead(input)))
                while (lines.ReadLine() is { } line) if (!string.IsNullOrWhiteSpace(line)) conversations++;
            if (conversations < 2) throw new StratusUserException($"{input} has {conversations} conversation(s); fine-tuning needs at least 2 (train and val)");
            var valCount = valFraction == 0 ? 0 : Math.Max(1, (int)Math.Round(conversations * valFraction));
            var trainCount = conversations - valCount;
            if (trainCount == 0)
                throw new StratusUserException($"--val-fraction {valFraction} holds out all {conversations} conversations of {input} for validation, leaving none to train on; pass a smaller --val-fraction, e.g. 0.1");
            long supervised = 0, valSupervised = 0;
            // Tokens and masks split at the same place: the mask pair is written inside the token pair.
            var (trainTokens, valTokens) = TokenShard.WriteSplit(files, Path.Combine(outputDirectory, DatasetPreparer.TrainShard), Path.Combine(outputDirectory, DatasetPreparer.ValShard), tokenizer.VocabSize, tokens =>
            {
                var valStart = 0L;
                TokenShard.WriteSplit(files, Path.Combine(outputDirectory, TrainMask), Path.Combine(outputDirectory, ValMask), 2, mask =>
                {
                    (int[] Tokens, int[] Mask) last = ([], []);
                    using var file = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
                    using var reader = DatasetPreparer.ReadUtf8(input, file);
                    for (int lineNumber = 1, index = 0; reader.ReadLine() is { } line; lineNumber++)
                    {
                        if (string.IsNullOrWhiteSpace(line)) continue;
                        var (messages, tools, learned) = ParseConversation(input, lineNumber, line);
                        (int[] Tokens, byte[] Mask) example;
                        try { example = Encode(template, tokenizer, messages, tools, learned); }
                        catch (StratusUserException e) { throw new StratusUserException($"{input}:{lineNumber}: {e.Message}"); }
                        if (index == trainCount) valStart = tokens.Count;
                        last = (example.Tokens, Array.ConvertAll(example.Mask, m => (int)m));
                        tokens.Append(last.Tokens);
                        mask.Append(last.Mask);
                        if (index++ < trainCount) supervised += last.Mask.Sum();
                        else valSupervised += last.Mask.Sum();
                        progress?.Report(new PrepareProgress("tokenizing", file.Position, file.Length, tokens.Count));
                    }
                    if (supervised == 0) throw new StratusUserException($"{input} has no assistant messages to learn from (none, or each with \"weight\": 0); give the conversations assistant turns of weight 1 (the default)");
                    // Validation measures the loss on assistant tokens only: the held-out conversations need some.
                    if (valCount > 0 && valSupervised == 0)
                        throw new StratusUserException($"the last {valCount} conversation(s) of {input}, held out for validation, have no assistant message to learn from (none, or each with \"weight\": 0); end the file with conversations that do, or change --val-fraction");
                    if (valCount == 0)
                    {
                        valStart = tokens.Count;
                        tokens.Append(last.Tokens);
                        mask.Append(last.Mask);
                    }
                    return valStart;
                });
                return valStart;
            });
            TokenizerStore.Save(tokenizer, outputDirectory, files);
            // Without a given template the data is the model's own format: one left by an earlier
            // preparation of this folder goes with the files this one does not write.
            var storedTemplate = Path.Combine(outputDirectory, ChatTemplate.FileName);
            if (templateSource is not null) files.Write(storedTemplate, stream => stream.Write(System.Text.Encoding.UTF8.GetBytes(templateSource)));
            var valExamples = Math.Max(1, valCount);
            var meta = new JsonObject
            {
                ["format"] = "stratus-dataset",
                ["version"] = 1,
                ["kind"] = "chat",
                ["tokenizer"] = tokenizer.Kind,
                ["vocab_size"] = tokenizer.VocabSize,
                ["train_tokens"] = trainTokens,
                ["val_tokens"] = valTokens,
                ["train_examples"] = trainCount,
                ["val_examples"] = valExamples,
                ["supervised_train_tokens"] = supervised,
                ["val_fraction"] = valFraction,
                ["source"] = new JsonObject { ["path"] = Path.GetFullPath(input), ["sha256"] = sha256, ["model"] = Path.GetFullPath(checkpoint.Directory) },
                [DatasetFolder.SettingsKey] = settings,
                ["created_utc"] = DateTime.UtcNow.ToString("O"),
            };
            if (templateSource is not null) meta[TemplateKey] = new JsonObject { ["path"] = Path.GetFullPath(chatTemplate!), ["sha256"] = settings["chat_template_sha256"]!.DeepClone() };
            files.WriteJson(Path.Combine(outputDirectory, DatasetPreparer.MetaFile), meta);
            return new PreparedChatDataset(outputDirectory, tokenizer, trainCount, valExamples, trainTokens, valTokens, supervised);
        });
    }

    /// <summary>The chat template a dataset was rendered with when it was given to prepare
    /// (--chat-template), checked against its sha256 in meta.json, or null when the data is in the
    /// model's own format. A template edited, added or removed since would teach the model one
    /// format and serve it with another.</summary>
    public static string? StoredTemplate(string datasetDirectory)
    {
        var path = Path.Combine(datasetDirectory, ChatTemplate.FileName);
        var listed = DatasetPreparer.ReadMeta(datasetDirectory)?[TemplateKey]?["sha256"] is JsonValue value && value.TryGetValue<string>(out var hash) ? hash : null;
        if (listed is null)
            return File.Exists(path)
                ? throw new StratusUserException($"{datasetDirectory} holds {ChatTemplate.FileName}, which its {DatasetPreparer.MetaFile} does not list: the data was not rendered with it; remove it, or prepare the data again with --chat-template")
                : null;
        if (!File.Exists(path))
            throw new StratusUserException($"{datasetDirectory} is incomplete: {ChatTemplate.FileName}, the chat template its data was rendered with, is missing; prepare the data again");
        if (FileHash.Sha256(path) != listed)
            throw new StratusUserException($"{path} does not match its sha256 in {DatasetPreparer.MetaFile}: it was changed after the data was rendered with it; restore it, or prepare the data again with --chat-template <the new template>");
        return File.ReadAllText(path);
    }

    const string TemplateKey = "chat_template";

    /// <summary>Tokens and loss mask of one conversation. The template is rendered for growing
    /// prefixes of the conversation, so each message's text is the difference between two
    /// renderings; an assistant turn is split into the generation prompt (not learned) and
    /// its content up to the next turn (learned).</summary>
    /// <param name="tools">The tools the conversation offers, which the template gets as a chat
    /// request's (ChatTemplate.Render); null: none.</param>
    /// <param name="learned">Whether each message, where it is an assistant's, is learned (OpenAI's
    /// "weight" 1) or only context (weight 0); null: every assistant's turn is learned.</param>
    public static (int[] Tokens, byte[] Mask) Encode(ChatTemplate template, ITokenizer tokenizer, IReadOnlyList<ChatMessageText> messages, IReadOnlyList<JsonElement>? tools = null,
        IReadOnlyList<bool>? learned = null)
    {
        var tokens = new List<int>();
        var mask = new List<byte>();
        var rendered = "";
        // The conversation starts as a served chat prompt does (ChatTemplate.AddSpecialTokens: a
        // derived template's rendering gets a Llama's BOS). What a tokenizer puts after a prompt
        // (add_eos_token) would end it, not open the conversation's first turn, so it is left out.
        int[] Start(string text) => template.AddSpecialTokens ? [.. tokenizer.SpecialTokensAround.Before, .. tokenizer.Encode(text)] : tokenizer.Encode(text);
        void Add(string text, byte learn, string whole)
        {
            if (!text.StartsWith(rendered, StringComparison.Ordinal))
                throw new StratusUserException("the chat template renders a conversation differently from its beginning, so assistant turns cannot be located; it cannot be used for fine-tuning");
            var piece = rendered.Length == 0 ? Start(text) : tokenizer.EncodeContinuation(text[rendered.Length..]);
            tokens.AddRange(piece);
            mask.AddRange(Enumerable.Repeat(learn, piece.Length));
            rendered = whole;
        }
        for (var k = 0; k < messages.Count; k++)
        {
            var upTo = messages.Take(k + 1).ToList();
            var full = template.Render(upTo, addGenerationPrompt: false, tools: tools);
            if (messages[k].Role == "assistant")
            {
                var prompt = template.Render(messages.Take(k).ToList(), addGenerationPrompt: true, tools: tools);
                Add(prompt, 0, prompt);
                Add(full, learned is null || learned[k] ? (byte)1 : (byte)0, full);
            }
            else Add(full, 0, full);
        }
        return (tokens.ToArray(), mask.ToArray());
    }

    /// <summary>A line's conversation, its messages read as a chat request's are
    /// (ChatMessages.Parse: tool calls, a tool's tool_call_id, text parts, a name, an assistant's
    /// reasoning), and the tools it offers, which OpenAI's fine-tuning data gives beside its
    /// messages, checked as a request's (ChatTools.Offered), and which assistant turns are learned
    /// (OpenAI's fine-tuning "weight"); each fault named by its line and field.</summary>
    static (List<ChatMessageText> Messages, List<JsonElement>? Tools, bool[] Learned) ParseConversation(string path, int lineNumber, string line)
    {
        using var document = JsonText.ParseLineDocument(path, lineNumber, line);
        var conversation = document.RootElement;
        if (conversation.ValueKind != JsonValueKind.Object || !conversation.TryGetProperty("messages", out var list) || list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
            throw new StratusUserException($"{path}:{lineNumber}: expected {{\"messages\": [{{\"role\": ..., \"content\": ...}}, ...]}}");
        List<ChatMessageText> messages;
        List<JsonElement>? tools = null;
        try
        {
            messages = ChatMessages.Parse(list.EnumerateArray().Select(Body).ToList());
            // Absent and null are none, as a request's are; the definitions outlive this line's document.
            if (conversation.TryGetProperty("tools", out var given) && given.ValueKind != JsonValueKind.Null)
                tools = ChatTools.Offered(given).Definitions.ConvertAll(tool => tool.Clone());
            // OpenAI's deprecated form of tools, which a request may not use either: taken silently,
            // the data would teach calls of functions the template never showed.
            if (conversation.TryGetProperty("functions", out var functions) && functions.ValueKind is not JsonValueKind.Null && !(functions.ValueKind == JsonValueKind.Array && functions.GetArrayLength() == 0))
                throw new StratusUserException("'functions' (deprecated) is not supported; give them as 'tools', each {\"type\": \"function\", \"function\": {...}}");
        }
        catch (StratusUserException e) { throw new StratusUserException($"{path}:{lineNumber}: {e.Message}"); }
        // As OpenAI's fine-tuning checks (its data-preparation cookbook's missing_content), though
        // a chat request may send "": a turn with nothing in it (an empty reply teaches answering
        // with the end of turn alone); an assistant's turn of calls alone has calls.
        for (var k = 0; k < messages.Count; k++)
            if (string.IsNullOrWhiteSpace(messages[k].Content) && messages[k].ToolCalls is null)
                throw new StratusUserException($"{path}:{lineNumber}: message {k + 1} ({messages[k].Role}) has empty content, which OpenAI's fine-tuning format does not allow (a chat request may send it); give it text, or an assistant's message tool_calls");
        // OpenAI's fine-tuning "weight" of an assistant's message: 1 (the default) learns the turn,
        // 0 keeps it as context only. Its schema gives it to no other role, and no other value.
        var learned = new bool[messages.Count];
        for (var k = 0; k < messages.Count; k++)
        {
            var param = $"messages[{k}].weight";
            if (!list[k].TryGetProperty("weight", out var weight) || weight.ValueKind == JsonValueKind.Null)
            {
                learned[k] = true;
                continue;
            }
            if (messages[k].Role != "assistant")
                throw new StratusUserException($"{path}:{lineNumber}: Invalid parameter: '{param}' is only for an assistant's message, not a '{messages[k].Role}' one; remove it.");
            // A number, as its schema's integer is read (1.0 is 1); true and "1" are not.
            if (weight.ValueKind != JsonValueKind.Number || weight.GetDouble() is not (0 or 1))
                throw new StratusUserException($"{path}:{lineNumber}: Invalid value for '{param}': {ChatMessages.Truncate(weight.GetRawText())}. Supported values are: 0 (context only) and 1 (learned).");
            learned[k] = weight.GetDouble() == 1;
        }
        return (messages, tools, learned);

        // A message as a request's body holds it: absent and null are none, as there. Read inside
        // the try above, which names the line.
        ChatMessageBody? Body(JsonElement message, int k)
        {
            if (message.ValueKind != JsonValueKind.Object) return null;
            JsonElement? Field(string name) => message.TryGetProperty(name, out var value) ? value : null;
            string? Text(string name) => Field(name) is not { ValueKind: not JsonValueKind.Null } value ? null
                : value.ValueKind == JsonValueKind.String ? value.GetString()
                : throw new StratusUserException($"Invalid type for 'messages[{k}].{name}': expected a string.");
            return new ChatMessageBody
            {
                Role = Text("role"), Content = Field("content"), Name = Text("name"), ToolCalls = Field("tool_calls"), ToolCallId = Text("tool_call_id"),
                Reasoning = Text("reasoning"), ReasoningContent = Text("reasoning_content"),
            };
        }
    }
}
