// A check of a request's prompts that comes before the request's own faults: a prompt that
// safety blocks is refused as blocked, and audited, even where the request would be refused
// anyway (a character outside the model's vocabulary, a prompt too long for the context or for
// max_tokens). Otherwise a client could find out whether a text is blocked, and send blocked
// text unaudited, by adding a character the model cannot encode or asking for more tokens than
// fit. The generation filters check prompts only once a request is whole (IGenerationFilter
// runs with its tokens counted); the endpoints call the screens where they would refuse it first.
namespace Stratus.Server.Api;

public interface IPromptScreen
{
    /// <summary>Sees the prompts of a request about to be refused for a fault of its own, and
    /// throws an ApiException to refuse it instead (a blocked prompt's 400 content_filter).</summary>
    /// <param name="chat">A chat's messages; null for /v1/completions.</param>
    /// <param name="prompts">The prompts as text (a chat's rendered prompt), each at its index in the request.</param>
    ValueTask ScreenAsync(HttpContext http, string model, ChatPrompt? chat, IReadOnlyList<string> prompts, CancellationToken cancellation);
}
