// The trust layer on the server's generation seam: every completions and chat request has its
// prompts checked under the deployment's safety policy (a blocked prompt is Azure's 400
// content_filter) and goes to the model with PII redacted when the policy redacts, is admitted
// against the key's tokens per minute with its prompt tokens and
// max_tokens for every sequence (429 with the rate-limit headers), has each choice's output
// guarded (streamed: only checked text leaves, and a blocked choice stops generating;
// not streamed: the whole completion is checked before it is sent) and the alternatives its
// logprobs list screened, and settles the token charge
// and records usage with the real counts when the request ends, however it ends.
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Server.Hosting;
using Stratus.Tokenization;

namespace Stratus.Server.Trust;

public sealed class TrustGenerationFilter : IGenerationFilter, IPromptScreen
{
    public async ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation)
    {
        var trust = context.Http.GetStratusTrust();
        var model = context.Model.Name;
        var prompts = Checked(context.Chat, context.Prompts);
        var checks = await CheckPromptsAsync(trust, model, prompts, cancellation);
        var annotations = checks.Select(c => c.FilterResult).OfType<PromptFilterResult>().ToList();
        var passed = checks.Select(c => c.Text).ToArray();
        var rewritten = await RewrittenAsync(context, trust, prompts, passed, cancellation);
        // Every sequence may use max_tokens, so that is what is charged up front; CompleteAsync
        // corrects the charge to what was used.
        if (trust.Admit(context.PromptTokens, (int)Math.Min(int.MaxValue, (long)context.Request.MaxTokens * context.Sequences)) is { } refusal) throw refusal.Error;
        try
        {
            var guards = new CompletionStreamGuard[context.Sequences];
            var texts = new StringBuilder[context.Sequences];
            for (var c = 0; c < context.Sequences; c++)
            {
                if (context.Stream) guards[c] = await trust.GuardStreamAsync(model, cancellation);
                else texts[c] = new StringBuilder();
            }
            return new TrustGenerationScope(trust, model, annotations.Count > 0 ? annotations : null, rewritten, context.Stream ? guards : null, texts);
        }
        catch
        {
            await trust.CompleteAsync(0, 0, model, CancellationToken.None);
            throw;
        }
    }

    /// <summary>A request refused before it reaches the filters (a prompt outside the model's
    /// vocabulary) has its prompts checked as BeginAsync would: a blocked one is refused as
    /// content_filter and audited.</summary>
    public async ValueTask ScreenAsync(HttpContext http, string model, ChatPrompt? chat, IReadOnlyList<string> prompts, CancellationToken cancellation) =>
        await CheckPromptsAsync(http.GetStratusTrust(), model, Checked(chat, prompts), cancellation);

    /// <summary>The texts a request's prompts are checked as: a chat as what the model reads of it,
    /// its messages (their names, an assistant's reasoning), the calls they made (names and
    /// arguments), the tools it is offered (their names, descriptions and parameters) and the
    /// template's variables (chat_template_kwargs' values), not as the template's rendering around
    /// them; otherwise each prompt. JSON is checked as its keys and values decoded, as a template
    /// writes them: a \u escape hides no word.</summary>
    static IReadOnlyList<string> Checked(ChatPrompt? chat, IReadOnlyList<string> prompts) =>
        chat is null ? prompts
        : [string.Join("\n", [.. chat.Messages.Select(Checked), .. (chat.Tools ?? []).Select(Words), .. (chat.Variables ?? new Dictionary<string, JsonElement>()).Values.Select(Words)])];

    static string Checked(ChatMessageText message) => string.Join("\n",
        [.. new[] { message.Name, message.Reasoning }.OfType<string>(), message.Content ?? "", .. (message.ToolCalls ?? []).Select(c => c.Name + "\n" + Words(c.Arguments))]);

    static string Words(string json)
    {
        using var document = JsonDocument.Parse(json);
        return Words(document.RootElement);
    }

    static string Words(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => string.Join("\n", value.EnumerateObject().Select(p => p.Name + "\n" + Words(p.Value))),
        JsonValueKind.Array => string.Join("\n", value.EnumerateArray().Select(Words)),
        JsonValueKind.String => value.GetString()!,
        _ => value.GetRawText(),
    };

    /// <summary>A JSON value with its keys and strings redacted, the rest as it was.</summary>
    static async ValueTask<JsonNode?> RedactedAsync(RequestTrust trust, string model, JsonElement value, CancellationToken cancellation)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                var result = new JsonObject();
                foreach (var property in value.EnumerateObject())
                    result[await trust.RedactAsync(model, property.Name, cancellation)] = await RedactedAsync(trust, model, property.Value, cancellation);
                return result;
            case JsonValueKind.Array:
                var items = new JsonArray();
                foreach (var item in value.EnumerateArray()) items.Add(await RedactedAsync(trust, model, item, cancellation));
                return items;
            case JsonValueKind.String:
                return JsonValue.Create(await trust.RedactAsync(model, value.GetString()!, cancellation));
            default:
                return JsonNode.Parse(value.GetRawText());
        }
    }

    static async ValueTask<JsonElement> RedactedElementAsync(RequestTrust trust, string model, JsonElement value, CancellationToken cancellation) =>
        JsonDocument.Parse((await RedactedAsync(trust, model, value, cancellation))!.ToJsonString()).RootElement;

    static async ValueTask<string?> RedactedAsync(RequestTrust trust, string model, string? text, CancellationToken cancellation) =>
        text is null ? null : await trust.RedactAsync(model, text, cancellation);

    static async ValueTask<string> RedactedJsonAsync(RequestTrust trust, string model, string json, CancellationToken cancellation)
    {
        using var document = JsonDocument.Parse(json);
        return (await RedactedAsync(trust, model, document.RootElement, cancellation))!.ToJsonString();
    }

    /// <summary>Checks each prompt; the first blocked one (audited) refuses the request.</summary>
    static async ValueTask<PromptCheck[]> CheckPromptsAsync(RequestTrust trust, string model, IReadOnlyList<string> prompts, CancellationToken cancellation)
    {
        var checks = new PromptCheck[prompts.Count];
        for (var i = 0; i < prompts.Count; i++)
        {
            checks[i] = await trust.CheckPromptAsync(model, prompts[i], i, cancellation);
            if (!checks[i].Allowed) throw checks[i].Refusal!.Error;
        }
        return checks;
    }

    /// <summary>The prompts the model gets when the policy changed what was checked (PII
    /// redaction); null when it gets them as sent. A chat was checked as its messages joined, so
    /// each message is redacted on its own and the chat rendered again.</summary>
    static async ValueTask<IReadOnlyList<string>?> RewrittenAsync(GenerationContext context, RequestTrust trust, IReadOnlyList<string> checkedTexts,
        string[] passed, CancellationToken cancellation)
    {
        var changed = false;
        for (var i = 0; i < passed.Length; i++) changed |= !string.Equals(passed[i], checkedTexts[i], StringComparison.Ordinal);
        if (!changed) return null;
        if (context.Chat is not { } chat) return passed;
        var model = context.Model.Name;
        var redacted = new List<ChatMessageText>(chat.Messages.Count);
        foreach (var message in chat.Messages)
        {
            List<ChatToolCall>? calls = null;
            foreach (var call in message.ToolCalls ?? [])
                (calls ??= []).Add(call with { Arguments = await RedactedJsonAsync(trust, model, call.Arguments, cancellation) });
            // Text given in parts is redacted part by part (a template may read the parts), its content the parts joined again.
            List<string>? parts = null;
            foreach (var part in message.TextParts ?? [])
                (parts ??= []).Add(await trust.RedactAsync(model, part, cancellation));
            redacted.Add(message with
            {
                Content = parts is null ? await RedactedAsync(trust, model, message.Content, cancellation) : string.Join('\n', parts),
                TextParts = parts ?? message.TextParts,
                ToolCalls = calls ?? message.ToolCalls,
                Name = await RedactedAsync(trust, model, message.Name, cancellation),
                Reasoning = await RedactedAsync(trust, model, message.Reasoning, cancellation),
            });
        }
        List<JsonElement>? tools = null;
        foreach (var tool in chat.Tools ?? [])
            (tools ??= []).Add(await RedactedElementAsync(trust, model, tool, cancellation));
        // A variable's value is redacted, not its name, which the template reads it by.
        Dictionary<string, JsonElement>? variables = null;
        foreach (var (name, value) in chat.Variables ?? new Dictionary<string, JsonElement>())
            (variables ??= [])[name] = await RedactedElementAsync(trust, model, value, cancellation);
        return [(chat with { Messages = redacted, Tools = tools ?? chat.Tools, Variables = variables ?? chat.Variables }).Render(context.Model.Template)];
    }
}

/// <param name="guards">Per choice, when streamed; null when the whole completion is checked
/// at the end from <paramref name="texts"/>.</param>
sealed class TrustGenerationScope(RequestTrust trust, string model, IReadOnlyList<PromptFilterResult>? annotations, IReadOnlyList<string>? prompts,
    CompletionStreamGuard[]? guards, StringBuilder[] texts) : IGenerationScope
{
    public IReadOnlyList<PromptFilterResult>? PromptFilterResults => annotations;
    public IReadOnlyList<string>? Prompts => prompts;

    public async ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation)
    {
        if (guards is not null)
        {
            var step = await guards[choice].PushAsync(text, cancellation);
            return new FilteredText(step.Text, step.FinishReason);
        }
        // Nothing of a non-streamed completion leaves before it has been checked whole.
        texts[choice].Append(text);
        return new FilteredText("");
    }

    public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) =>
        trust.AllowsAlternativeAsync(model, before, alternative, cancellation);

    public async ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation)
    {
        if (guards is not null)
        {
            var last = await guards[choice].FlushAsync(cancellation);
            return new ChoiceEnd(last.Text, last.FinishReason, last.FilterResults);
        }
        var check = await trust.CheckCompletionAsync(model, texts[choice].ToString(), cancellation);
        return new ChoiceEnd(check.Text, check.FinishReason, check.FilterResults);
    }

    public ValueTask CompleteAsync(int promptTokens, int completionTokens) =>
        trust.CompleteAsync(promptTokens, completionTokens, model, CancellationToken.None);
}
