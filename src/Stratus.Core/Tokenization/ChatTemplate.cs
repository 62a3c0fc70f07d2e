// A model's chat template: its own Jinja source (Hugging Face's tokenizer_config.json
// "chat_template"), stored with the model as chat_template.jinja, rendered with the Jinja subset
// in Jinja.cs. The serving engine and SFT data preparation both render conversations through
// ChatTemplate.Load(checkpointDir).Render(messages, addGenerationPrompt).
namespace Stratus.Tokenization;

public sealed class ChatTemplate
{
    public const string FileName = "chat_template.jinja";

    readonly JinjaTemplate template;

    /// <summary>Parses a template; a construct outside the supported subset is refused here,
    /// not at the first request.</summary>
    public ChatTemplate(string source, string bosToken = "", string eosToken = "")
    {
        try { template = new JinjaTemplate(source); }
        catch (JinjaException e) { throw new StratusUserException($"the chat template cannot be used: {e.Message}"); }
        Source = source;
        BosToken = bosToken;
        EosToken = eosToken;
    }

    public string Source { get; }
    public string BosToken { get; }
    public string EosToken { get; }

    /// <summary>The chat template of a model (a run or checkpoint folder), with the bos/eos token
    /// text of its tokenizer; throws a clear error when the model has none.</summary>
    public static ChatTemplate Load(string checkpointDirectory) =>
        TryLoad(checkpointDirectory) ?? throw new StratusUserException($"the model in {checkpointDirectory} has no chat template ({FileName}); import a chat model or add one");

    public static ChatTemplate? TryLoad(string checkpointDirectory)
    {
        checkpointDirectory = Training.Checkpoint.Resolve(checkpointDirectory);
        if (Find(checkpointDirectory) is not { } source) return null;
        var tokenizer = TokenizerStore.Load(checkpointDirectory);
        var (bos, eos) = SpecialTokens(tokenizer);
        return new ChatTemplate(source, bos, eos);
    }

    /// <summary>The template source stored in a checkpoint folder, or null.</summary>
    public static string? Find(string checkpointDirectory)
    {
        var path = Path.Combine(checkpointDirectory, FileName);
        return File.Exists(path) ? File.ReadAllText(path) : null;
    }

    /// <summary>The text of the bos and eos tokens that templates refer to as bos_token / eos_token.</summary>
    public static (string Bos, string Eos) SpecialTokens(ITokenizer tokenizer) => tokenizer switch
    {
        HfTokenizer hf => (hf.SpecialText("bos_token") ?? "", hf.SpecialText("eos_token") ?? ""),
        Gpt2Tokenizer => (Gpt2Tokenizer.EndOfText, Gpt2Tokenizer.EndOfText),
        _ => ("", ""),
    };

    public string Render(IReadOnlyList<(string Role, string Content)> messages, bool addGenerationPrompt)
    {
        var list = messages.Select(m => (object?)new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList();
        try
        {
            return template.Render(new Dictionary<string, object?>
            {
                ["messages"] = list,
                ["add_generation_prompt"] = addGenerationPrompt,
                ["bos_token"] = BosToken,
                ["eos_token"] = EosToken,
            });
        }
        catch (JinjaException e) { throw new StratusUserException($"the chat template could not render this conversation: {e.Message}"); }
    }
}
