// The seam for policy around generation (quotas, content safety, auditing): filters registered
// in DI see every request just before it reaches the engine, and every piece of generated text
// on its way out, streamed or not. Authentication and per-key quotas that need no request body
// belong in ASP.NET middleware ahead of the endpoints instead (see StratusServer.Build).
using Stratus.Inference;
using Stratus.Tokenization;

namespace Stratus.Server.Hosting;

/// <summary>What a filter knows about a generation request.</summary>
public sealed record GenerationContext(
    HttpContext Http,
    string Endpoint,
    ServedModel Model,
    IReadOnlyList<string> Prompts,
    IReadOnlyList<ChatMessageText>? Messages,
    GenerationRequest Request,
    int Choices,
    string? User);

public interface IGenerationFilter
{
    /// <summary>Runs before the engine is called; throw an ApiException to refuse the request.</summary>
    ValueTask BeforeGenerationAsync(GenerationContext context, CancellationToken cancellation);

    /// <summary>Sees each piece of generated text of a choice in order and returns the text to
    /// send instead (the same string to pass it through).</summary>
    string OnOutputText(GenerationContext context, int choice, string text);
}
