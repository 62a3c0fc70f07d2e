// How chat messages become one prompt. Stored with a model as chat_template.json in its
// checkpoint folder, or derived from the tokenizer: ChatML when the vocabulary has the
// <|im_start|>/<|im_end|> markers as tokens, otherwise a plain template (message contents,
// one per line) that a base model such as char-level Shakespeare can spell.
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Stratus.Tokenization;

public sealed record ChatMessageText(string Role, string Content);

public sealed record ChatTemplate
{
    public const string FileName = "chat_template.json";
    public const string ChatMl = "chatml";
    public const string Plain = "plain";
    const string ImStart = "<|im_start|>";
    const string ImEnd = "<|im_end|>";

    ChatTemplate(string kind) => Kind = kind;

    public string Kind { get; }

    public static ChatTemplate ForKind(string kind) => kind switch
    {
        ChatMl or Plain => new ChatTemplate(kind),
        _ => throw new StratusUserException($"unknown chat template '{kind}'; expected '{ChatMl}' or '{Plain}'"),
    };

    /// <summary>ChatML when the tokenizer spells its markers as tokens, else plain.</summary>
    public static ChatTemplate For(ITokenizer tokenizer) =>
        new(tokenizer.HasSpecialToken(ImStart) && tokenizer.HasSpecialToken(ImEnd) ? ChatMl : Plain);

    /// <summary>The template stored in a checkpoint folder, or the one derived from its tokenizer.</summary>
    public static ChatTemplate Load(string checkpointDirectory, ITokenizer tokenizer)
    {
        var path = Path.Combine(checkpointDirectory, FileName);
        if (!File.Exists(path)) return For(tokenizer);
        try
        {
            var kind = (string?)JsonNode.Parse(File.ReadAllText(path))?["type"];
            return ForKind(kind ?? throw new StratusUserException($"{path} has no 'type'"));
        }
        catch (JsonException e) { throw new StratusUserException($"{path} is not valid JSON: {e.Message}"); }
    }

    /// <summary>The file content to store with a checkpoint (Checkpoint.Save's extra files).</summary>
    public string ToJson() => new JsonObject { ["type"] = Kind }.ToJsonString();

    /// <summary>The prompt for a conversation, ending where the assistant's reply begins.</summary>
    public string Render(IReadOnlyList<ChatMessageText> messages)
    {
        var text = new StringBuilder();
        foreach (var message in messages)
        {
            if (Kind == ChatMl) text.Append(ImStart).Append(message.Role).Append('\n').Append(message.Content).Append(ImEnd).Append('\n');
            else text.Append(message.Content).Append('\n');
        }
        if (Kind == ChatMl) text.Append(ImStart).Append("assistant\n");
        return text.ToString();
    }

    /// <summary>Tokens that end the assistant's reply (ChatML's end marker).</summary>
    public IReadOnlyList<int> StopTokens(ITokenizer tokenizer)
    {
        if (Kind != ChatMl) return [];
        var ids = tokenizer.Encode(ImEnd);
        return ids.Length == 1 ? ids : [];
    }
}
