// The one interface every content-safety provider implements: rule sets (blocklists, PII,
// prompt injection), learned classifiers and external moderation services alike.
namespace Stratus.Safety;

public interface IContentSafetyProvider
{
    /// <summary>Short stable name, recorded as CategoryResult.Source.</summary>
    string Name { get; }

    /// <summary>How many trailing characters a streamed completion must hold back so that this
    /// provider sees any match whole before its first character is sent (its longest match).
    /// 0 for providers that judge text as a whole.</summary>
    int StreamingWindow { get; }

    /// <summary>Returns one result per category found; an empty list means nothing found.
    /// Throws TrustUserException only for input the user controls; transport failures of
    /// external providers surface as HttpRequestException, which the pipeline reports as
    /// SafetyProviderUnavailableException.</summary>
    ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken);
}

/// <summary>A provider that reads text in its matching form (MatchingForm): blocklists and PII.
/// The pipeline gives the providers of one check the same form, made by the
/// first that needs it, so a text is folded once a check (the streaming guard checks its window
/// at every token), and the form goes with the check rather than outliving it.</summary>
interface IMatchingFormReader
{
    /// <param name="form">The text's matching form; null until a provider of this check made it.</param>
    IReadOnlyList<CategoryResult> Analyze(string text, ref MatchingForm? form, CancellationToken cancellationToken);
}

/// <summary>A provider failed to judge a text (an external moderation service that is down, too
/// slow or answers nonsense, a classifier that threw): the text is neither passed nor blocked, and
/// the request fails as the service's, not the client's (the server's 503
/// content_filter_unavailable), rather than going out unchecked.</summary>
public sealed class SafetyProviderUnavailableException(string provider, Exception inner)
    : Exception($"Content-safety provider '{provider}' could not check the text: {inner.Message}", inner)
{
    public string Provider => provider;
}
