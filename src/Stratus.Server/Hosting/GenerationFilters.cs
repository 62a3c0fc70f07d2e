// The seam for policy around generation (quotas, content safety, usage accounting): filters
// registered in DI begin a scope for every generation request just before it reaches the engine
// (and may refuse it there), see every piece of each choice's text on its way out, streamed or
// not, may stop a choice, judge the alternatives that logprobs would list, and are told the real token counts when the request ends, however it
// ends. Authentication and anything else that needs no request body belongs in ASP.NET
// middleware ahead of the endpoints instead (see StratusServer.Build).
using Stratus.Inference;
using Stratus.Server.Api;
using Stratus.Safety;
using Stratus.Tokenization;

namespace Stratus.Server.Hosting;

/// <summary>What a filter knows about a generation request.</summary>
/// <param name="Prompts">The prompts as text (a chat's rendered prompt).</param>
/// <param name="SpecialTokensAdded">Per prompt, whether its text was encoded with the
/// tokenizer's special tokens (a completions text prompt: a Llama's BOS); a prompt a filter
/// rewrites is encoded the same way. A chat's own template writes them itself (a derived one
/// gets them, ChatTemplate.AddSpecialTokens), and token ids are taken as given.</param>
/// <param name="Chat">A chat's messages and how they were rendered; null for /v1/completions.</param>
/// <param name="PromptTokens">Tokens of all prompts together, each prompt counted once.</param>
/// <param name="Stream">The response is streamed: text leaves as it is released.</param>
public sealed record GenerationContext(
    HttpContext Http,
    string Endpoint,
    ServedModel Model,
    IReadOnlyList<string> Prompts,
    IReadOnlyList<bool> SpecialTokensAdded,
    ChatPrompt? Chat,
    GenerationRequest Request,
    int Choices,
    string? User,
    int PromptTokens,
    bool Stream)
{
    /// <summary>Sequences the engine runs: one per prompt and choice.</summary>
    public int Sequences => Prompts.Count * Choices;
}

/// <summary>What a filter lets through of a piece of output.</summary>
/// <param name="Text">Text to pass on now (possibly less than it was given, when held back).</param>
/// <param name="FinishReason">Non-null stops the choice: no more tokens are generated for it and
/// it ends with this finish reason (e.g. "content_filter").</param>
public readonly record struct FilteredText(string Text, string? FinishReason = null);

/// <summary>How a choice ends, as a filter sees it.</summary>
/// <param name="Text">Held-back text to pass on before the end; empty when none.</param>
/// <param name="FinishReason">Overrides the model's finish reason when non-null.</param>
/// <param name="FilterResults">The choice's content_filter_results; null leaves them out.</param>
public sealed record ChoiceEnd(string Text, string? FinishReason = null, ContentFilterResults? FilterResults = null)
{
    public static ChoiceEnd None { get; } = new("");
}

public interface IGenerationFilter
{
    /// <summary>Runs before the engine is called. Throw an ApiException to refuse the request;
    /// return null when this filter has nothing to do for it.</summary>
    ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation);
}

/// <summary>One request's filter state. Calls for one choice come in order; calls for different
/// choices may overlap.</summary>
public interface IGenerationScope
{
    /// <summary>Annotations of the prompts (prompt_filter_results); null leaves them out.</summary>
    IReadOnlyList<PromptFilterResult>? PromptFilterResults { get; }

    /// <summary>Prompts to generate from instead of GenerationContext.Prompts (same count and
    /// order; for a chat, its one rendered prompt), e.g. with PII redacted; null keeps them.</summary>
    IReadOnlyList<string>? Prompts { get; }

    /// <summary>Sees each generated piece of a choice in order.</summary>
    ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation);

    /// <summary>Whether an alternative (an entry of top_logprobs) may be shown: the text
    /// <paramref name="alternative"/> that the model could have written after
    /// <paramref name="before"/> instead of the token it wrote. <paramref name="before"/> is the
    /// choice's text before that token, or, for an echoed prompt, the prompt before it.</summary>
    ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation);

    /// <summary>The choice ended (the model finished, or a filter stopped it).</summary>
    ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation);

    /// <summary>The request ended, normally, cancelled or failed: the tokens actually used.
    /// Called exactly once, after the scope's other calls have returned (one that has not
    /// returned within ServerShutdown.EndingTime of the end is no longer waited for), and must
    /// not throw for an ordinary end.</summary>
    ValueTask CompleteAsync(int promptTokens, int completionTokens);
}
