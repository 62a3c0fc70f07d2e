// One deployment's content-safety check: runs its providers concurrently on a text and applies
// its policy to what they found. Built once per deployment and rebuilt when the policy or a
// blocklist changes (its compiled blocklists kept where unchanged); immutable, so one instance
// serves all requests.
namespace Stratus.Safety;

public sealed class SafetyPipeline
{
    readonly IContentSafetyProvider[] providers;
    /// <summary>The providers that judge alternatives: those that find spans (a streaming
    /// window), less the PII detector when the policy only annotates what it finds.</summary>
    readonly IContentSafetyProvider[] alternativeProviders;
    readonly int alternativeWindow;

    public SafetyPipeline(SafetyPolicy policy, IEnumerable<IContentSafetyProvider> providers)
    {
        Policy = policy.Validate();
        this.providers = [.. providers];
        StreamingWindow = this.providers.Length == 0 ? 0 : this.providers.Max(p => p.StreamingWindow);
        alternativeProviders = Policy.CheckCompletions
            ? [.. this.providers.Where(p => p.StreamingWindow > 0 && !(p is PiiDetector && Policy.Pii is PiiMode.Off or PiiMode.Annotate))]
            : [];
        alternativeWindow = alternativeProviders.Length == 0 ? 0 : alternativeProviders.Max(p => p.StreamingWindow);
    }

    /// <summary>The usual pipeline for a policy: the policy's blocklists (looked up by name in
    /// <paramref name="blocklists"/>), the PII detector unless PII is off, the prompt-injection
    /// detector, then any extra providers (learned classifiers, an external moderation service).</summary>
    /// <param name="compile">Compiles each blocklist the policy names; CompiledBlocklist.Compile
    /// when null. A server's returns the list it compiled before where the content is unchanged
    /// (SafetyConfiguration), so a rebuild does not compile it again.</param>
    /// <exception cref="TrustUserException">The policy names a blocklist that does not exist,
    /// or a blocklist is invalid.</exception>
    public static SafetyPipeline Create(SafetyPolicy policy, IEnumerable<Blocklist> blocklists, IEnumerable<IContentSafetyProvider>? extra = null,
        Func<Blocklist, CompiledBlocklist>? compile = null)
    {
        var byName = blocklists.ToDictionary(b => b.Name, StringComparer.OrdinalIgnoreCase);
        var chosen = policy.Blocklists.Select(name => byName.TryGetValue(name, out var list)
            ? list
            : throw new TrustUserException($"Safety policy for '{policy.Deployment}' names blocklist '{name}', which does not exist.")).ToList();
        var providers = new List<IContentSafetyProvider>();
        if (chosen.Count > 0) providers.Add(new BlocklistProvider(chosen.Select(compile ?? CompiledBlocklist.Compile)));
        if (policy.Pii != PiiMode.Off) providers.Add(new PiiDetector());
        providers.Add(new PromptInjectionDetector());
        providers.AddRange(extra ?? []);
        return new SafetyPipeline(policy, providers);
    }

    public SafetyPolicy Policy { get; }

    /// <summary>Characters a streamed completion holds back: the longest window of any provider.</summary>
    public int StreamingWindow { get; }

    /// <summary>Checks a whole text (a prompt, a finished completion, a moderation input).</summary>
    public async ValueTask<SafetyVerdict> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken = default)
    {
        if (!Policy.Checks(direction)) return Decide(text, direction, []);
        return Decide(text, direction, await RunProvidersAsync(text, direction, cancellationToken));
    }

    /// <summary>Whether the policy would block or rewrite <paramref name="alternative"/>, a token
    /// the model could have written after <paramref name="before"/> (an entry of top_logprobs):
    /// whether a match it acts on in that text overlaps the alternative. Only providers that find
    /// spans judge it (blocklists, PII), in the last StreamingWindow characters before it (a run
    /// of whitespace counting as one), as the streaming guard judges text; whole-text providers
    /// (classifiers, external moderation) judge the completion, and one token of it is not a
    /// text they can judge. The text after the alternative is unknown, so a match that touches
    /// its end counts ("ass" may or may not become "assist"); one that ends before it does not,
    /// since that text was passed already.</summary>
    public async ValueTask<bool> FlagsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellationToken = default)
    {
        if (alternativeProviders.Length == 0 || alternative.Length == 0) return false;
        var contextLength = before.Length - StreamingSafetyGuard.WindowStart(before.Span, static (b, i) => b[i], 0, before.Length, alternativeWindow);
        var text = string.Concat(before.Span[^contextLength..], alternative);
        MatchingForm? form = null;
        foreach (var provider in alternativeProviders)
            foreach (var result in await RunAsync(provider, text, ref form, ContentDirection.Completion, cancellationToken))
                if (ActsOn(result) && result.Matches.Any(m => m.End > contextLength)) return true;
        return false;
    }

    /// <summary>Whether the policy blocks or rewrites text for this result.</summary>
    bool ActsOn(CategoryResult result) => Policy.Filters(result) || (result.Category == SafetyCategory.Pii && Policy.Pii == PiiMode.Redact);

    /// <summary>A guard for one streamed completion.</summary>
    public StreamingSafetyGuard GuardStream() => new(this);

    /// <exception cref="SafetyProviderUnavailableException">A provider failed.</exception>
    internal async ValueTask<IReadOnlyList<CategoryResult>> RunProvidersAsync(string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        MatchingForm? form = null;
        if (providers.Length == 1) return await RunAsync(providers[0], text, ref form, direction, cancellationToken);
        // All started before any is awaited, so that they run concurrently. The rule-based ones
        // (blocklists, PII, injection) finish as they are called, and are gathered without the
        // tasks that waiting for the others together takes: the guard checks at every token.
        var runs = new ValueTask<IReadOnlyList<CategoryResult>>[providers.Length];
        for (var i = 0; i < runs.Length; i++) runs[i] = RunAsync(providers[i], text, ref form, direction, cancellationToken);
        if (!Array.TrueForAll(runs, static r => r.IsCompletedSuccessfully))
            return [.. (await Task.WhenAll(runs.Select(r => r.AsTask()))).SelectMany(r => r)];
        var found = new List<CategoryResult>();
        foreach (var run in runs) found.AddRange(run.Result);
        return found;
    }

    /// <summary>Runs one provider of a check; those that read the text's matching form share
    /// <paramref name="form"/> (IMatchingFormReader) and finish as they are called.</summary>
    static ValueTask<IReadOnlyList<CategoryResult>> RunAsync(IContentSafetyProvider provider, string text, ref MatchingForm? form, ContentDirection direction,
        CancellationToken cancellationToken)
    {
        if (provider is not IMatchingFormReader reader) return RunAsync(provider, text, direction, cancellationToken);
        try { return ValueTask.FromResult(reader.Analyze(text, ref form, cancellationToken)); }
        catch (Exception e) when (Failed(e, cancellationToken)) { throw new SafetyProviderUnavailableException(provider.Name, e); }
    }

    static async ValueTask<IReadOnlyList<CategoryResult>> RunAsync(IContentSafetyProvider provider, string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        try
        {
            return await provider.AnalyzeAsync(text, direction, cancellationToken);
        }
        catch (Exception e) when (Failed(e, cancellationToken))
        {
            throw new SafetyProviderUnavailableException(provider.Name, e);
        }
    }

    /// <summary>Whether a provider's exception is its failure: not the user's input, and not the
    /// request's cancellation (an HttpClient's own timeout is a cancellation too, but not the request's).</summary>
    static bool Failed(Exception e, CancellationToken cancellationToken) =>
        e is not TrustUserException && !(e is OperationCanceledException && cancellationToken.IsCancellationRequested);

    internal SafetyVerdict Decide(string text, ContentDirection direction, IReadOnlyList<CategoryResult> found)
    {
        // PII off stops looking for PII, not a blocklist the policy names that reports as PII.
        var results = Policy.Pii == PiiMode.Off ? [.. found.Where(r => r.Category != SafetyCategory.Pii || r.Blocklist is not null)] : found;
        var filtered = results.Where(Policy.Filters).ToList();
        var output = text;
        var redacted = false;
        if (filtered.Count == 0 && Policy.Pii == PiiMode.Redact)
        {
            var spans = PiiSpans(results);
            if (spans.Count > 0)
            {
                output = PiiDetector.Redact(text, spans);
                redacted = true;
            }
        }
        return new SafetyVerdict(Policy, direction, results, filtered, output, redacted);
    }

    internal static List<SafetyMatch> PiiSpans(IEnumerable<CategoryResult> results) =>
        [.. results.Where(r => r.Category == SafetyCategory.Pii).SelectMany(r => r.Matches)];
}
