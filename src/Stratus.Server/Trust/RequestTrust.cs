// What a completion handler calls on the request it serves: the calling key, token admission
// and its correction, and the content-safety hooks for prompts, whole completions and streamed
// completions. The authentication middleware creates one per request; handlers take it as a
// parameter (minimal APIs bind it through BindAsync) or call HttpContext.GetStratusTrust().
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Trust;

/// <summary>The outcome of checking a prompt.</summary>
/// <param name="Text">What to give the model: the prompt, with PII replaced when the policy redacts.</param>
/// <param name="FilterResult">The prompt_filter_results entry to return, when the deployment's
/// policy checks prompts; null means leave prompt_filter_results out.</param>
/// <param name="Refusal">The 400 content_filter response to return when blocked.</param>
public sealed record PromptCheck(bool Allowed, string Text, PromptFilterResult? FilterResult, OpenAIErrorResult? Refusal, SafetyVerdict Verdict);

/// <summary>The outcome of checking a finished (non-streamed) completion.</summary>
/// <param name="Text">What to send: the completion (PII redacted when the policy says so), or
/// empty when blocked.</param>
/// <param name="FinishReason">"content_filter" when blocked; null means keep the model's own.</param>
/// <param name="FilterResults">The choice's content_filter_results, when the policy checks
/// completions; null means leave the field out.</param>
public sealed record CompletionCheck(bool Blocked, string Text, string? FinishReason, ContentFilterResults? FilterResults, SafetyVerdict Verdict);

public sealed class RequestTrust
{
    readonly StratusTrust trust;
    readonly ILogger logger;
    QuotaTicket? ticket;
    int promptTokensAdmitted;
    bool admitted;
    bool completed;

    internal RequestTrust(StratusTrust trust, ApiKeyRecord? key, string requestId, ILogger logger)
    {
        this.trust = trust;
        Key = key;
        RequestId = requestId;
        this.logger = logger;
    }

    /// <summary>The calling key; null only under --insecure-no-auth.</summary>
    public ApiKeyRecord? Key { get; }

    /// <summary>The request's HttpContext.TraceIdentifier (the server's x-request-id), which the
    /// audit entry of what it had filtered names.</summary>
    public string RequestId { get; }

    /// <summary>The key id usage and audit entries are recorded under.</summary>
    public string KeyId => Key?.Id ?? StratusTrust.AnonymousActor;

    /// <summary>Minimal API parameter binding: declare a RequestTrust parameter on a handler.</summary>
    /// <exception cref="InvalidOperationException">UseStratusTrust is not in the pipeline, or the
    /// endpoint is one served without a key.</exception>
    public static ValueTask<RequestTrust?> BindAsync(HttpContext context) => ValueTask.FromResult<RequestTrust?>(context.GetStratusTrust());

    /// <summary>Charges prompt + max_tokens against the key's tokens per minute. Returns null when
    /// admitted, else the 429 to return (Retry-After and x-ratelimit-* headers, OpenAI error body).
    /// Call once per request, after counting the prompt's tokens.</summary>
    public OpenAIErrorResult? Admit(int promptTokens, int maxTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        if (admitted) throw new InvalidOperationException("Admit was already called for this request.");
        admitted = true;
        promptTokensAdmitted = promptTokens;
        if (Key is null) return null;
        var decision = trust.Quotas.AdmitTokens(Key, promptTokens, maxTokens);
        if (decision.Admitted)
        {
            ticket = decision.Ticket;
            return null;
        }
        var status = trust.Quotas.StatusOf(Key, decision.Status.RetryAfter);
        if (decision.Status.RetryAfter is { } wait)
            return OpenAIErrors.RateLimited(
                $"Rate limit reached for key '{Key.Name}' on tokens per minute: limit {Key.Limits.TokensPerMinute}, requested {(long)promptTokens + maxTokens} " +
                $"(prompt + max_tokens), remaining {status.RemainingTokens}. Try again in {RateLimitStatus.FormatDuration(wait)}.",
                "tokens", status.ToHeaders());
        // Larger than the whole limit: no wait helps, and OpenAI's SDKs retry a 429 unless told
        // not to (each retry charging the key's requests per minute again).
        return OpenAIErrors.RateLimited(decision.Reason ?? "Tokens per minute limit reached.", "tokens", [.. status.ToHeaders(), OpenAIErrors.DoNotRetry]);
    }

    /// <summary>Corrects the token charge to what was used and records usage. Call once when the
    /// request ends, in a finally block so cancelled and failed generations are settled too.
    /// Without a call the middleware settles the charge at the admitted prompt tokens and records
    /// no usage. A request that used no tokens (refused before the model saw it: the engine's
    /// queue was full) is no usage. Never throws for a usage store that fails (locked, full):
    /// the client has its answer by now, whole or in part, and an error would only break it.
    /// The failure is logged in one line naming its cause, at most once a minute while it lasts
    /// with the number of requests whose usage was lost, and once when usage is recorded again;
    /// each request's counts and exception at Debug.</summary>
    public async ValueTask CompleteAsync(int promptTokens, int completionTokens, string model, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(completionTokens);
        if (completed) return;
        completed = true;
        ticket?.Complete((long)promptTokens + completionTokens);
        if (promptTokens == 0 && completionTokens == 0) return;
        var failures = trust.UsageFailures;
        try
        {
            await trust.Stores.Usage.RecordAsync(KeyId, model, promptTokens, completionTokens, trust.Time.GetUtcNow(), cancellationToken);
        }
        catch (Exception e)
        {
            logger.LogDebug(e, "Usage not recorded for key {KeyId} on {Model}: {PromptTokens} prompt and {CompletionTokens} completion tokens",
                KeyId, model, promptTokens, completionTokens);
            if (failures.Add() is var lost and > 0)
                logger.LogError("Usage of {Requests} request(s) not recorded: {Cause} (said at most once a minute while it lasts)", lost, e.Message.TrimEnd('.'));
            return;
        }
        if (failures.Failing && failures.End() is { } unsaid)
            logger.LogWarning("Usage recorded again; {Requests} more request(s) had their usage lost since the last line", unsaid);
        // A write taken: the database answers again, whatever failed before.
        trust.LogStorageAnswers(logger, wrote: true);
    }

    /// <summary>Checks a prompt (a completions prompt, or a chat's messages joined) under the
    /// deployment's policy. A blocked prompt is audited and gets a ready 400 response.</summary>
    /// <exception cref="TrustUserException">The model name is not a valid deployment name.</exception>
    public async ValueTask<PromptCheck> CheckPromptAsync(string model, string text, int promptIndex = 0, CancellationToken cancellationToken = default)
    {
        var pipeline = await trust.Pipelines.GetAsync(model, cancellationToken);
        var verdict = await pipeline.AnalyzeAsync(text, ContentDirection.Prompt, cancellationToken);
        if (verdict.Blocked)
        {
            await trust.RecordFilteredAsync(KeyId, model, verdict, text, RequestId, cancellationToken);
            return new PromptCheck(false, "", null, OpenAIErrors.ContentFiltered(verdict, promptIndex, "prompt"), verdict);
        }
        var annotations = pipeline.Policy.CheckPrompts ? verdict.ToPromptFilterResult(promptIndex) : null;
        return new PromptCheck(true, verdict.Text, annotations, null, verdict);
    }

    /// <summary>The text as the deployment's policy passes it on to the model (PII redacted when
    /// the policy redacts), without auditing or annotating: for redacting the parts of a prompt
    /// that CheckPromptAsync checked as a whole (a chat's messages).</summary>
    public async ValueTask<string> RedactAsync(string model, string text, CancellationToken cancellationToken = default)
    {
        var pipeline = await trust.Pipelines.GetAsync(model, cancellationToken);
        var verdict = await pipeline.AnalyzeAsync(text, ContentDirection.Prompt, cancellationToken);
        return verdict.Blocked ? text : verdict.Text;
    }

    /// <summary>Checks a finished completion before it is sent.</summary>
    public async ValueTask<CompletionCheck> CheckCompletionAsync(string model, string text, CancellationToken cancellationToken = default)
    {
        var pipeline = await trust.Pipelines.GetAsync(model, cancellationToken);
        var verdict = await pipeline.AnalyzeAsync(text, ContentDirection.Completion, cancellationToken);
        var annotations = pipeline.Policy.CheckCompletions ? verdict.ToContentFilterResults() : null;
        if (!verdict.Blocked) return new CompletionCheck(false, verdict.Text, null, annotations, verdict);
        await trust.RecordFilteredAsync(KeyId, model, verdict, text, RequestId, cancellationToken);
        return new CompletionCheck(true, "", CompletionStreamGuard.ContentFilterFinishReason, annotations, verdict);
    }

    /// <summary>Whether an alternative token (an entry of top_logprobs) that the model could have
    /// written after <paramref name="before"/> may be shown: not when the policy would block or
    /// rewrite it as text (SafetyPipeline.FlagsAlternativeAsync). Not audited: it was not
    /// generated, and the choice's content_filter_results count what was left out.</summary>
    public async ValueTask<bool> AllowsAlternativeAsync(string model, ReadOnlyMemory<char> before, string alternative, CancellationToken cancellationToken = default)
    {
        var pipeline = await trust.Pipelines.GetAsync(model, cancellationToken);
        return !await pipeline.FlagsAlternativeAsync(before, alternative, cancellationToken);
    }

    /// <summary>A guard for one streamed choice: push each generated piece, send what it
    /// releases, and flush at the end. Use one guard per choice.</summary>
    public async ValueTask<CompletionStreamGuard> GuardStreamAsync(string model, CancellationToken cancellationToken = default)
    {
        var pipeline = await trust.Pipelines.GetAsync(model, cancellationToken);
        return new CompletionStreamGuard(pipeline.GuardStream(), pipeline.Policy.CheckCompletions,
            (verdict, text, ct) => trust.RecordFilteredAsync(KeyId, model, verdict, text, RequestId, ct));
    }

    /// <summary>Settles a token charge the handler left open (it threw, or never called
    /// CompleteAsync): the prompt was processed, the completion is unknown.</summary>
    internal void Settle()
    {
        if (!completed) ticket?.Complete(promptTokensAdmitted);
    }
}

/// <summary>What a stream guard lets through.</summary>
/// <param name="Text">Text to send now; may be empty.</param>
/// <param name="Blocked">The completion was filtered: stop generating and finish the choice
/// with FinishReason.</param>
/// <param name="FilterResults">Set by FlushAsync: the choice's content_filter_results for the
/// last chunk (null when the policy does not check completions).</param>
public sealed record GuardedText(string Text, bool Blocked, ContentFilterResults? FilterResults = null)
{
    /// <summary>"content_filter" when blocked; null means keep the model's own.</summary>
    public string? FinishReason => Blocked ? CompletionStreamGuard.ContentFilterFinishReason : null;
}

/// <summary>Wraps Safety's StreamingSafetyGuard for one streamed choice. Text reaches the
/// client only after it has been checked: the guard holds back a window of characters (the
/// longest match any provider can make), so a blocked term generated across pieces is never
/// sent, not even its first letters. A blocked stream is audited once.</summary>
public sealed class CompletionStreamGuard
{
    public const string ContentFilterFinishReason = "content_filter";

    readonly StreamingSafetyGuard guard;
    readonly bool annotate;
    readonly Func<SafetyVerdict, string, CancellationToken, ValueTask<AuditEntry>> audit;
    readonly StringBuilder generated = new();
    bool audited;

    internal CompletionStreamGuard(StreamingSafetyGuard guard, bool annotate, Func<SafetyVerdict, string, CancellationToken, ValueTask<AuditEntry>> audit)
    {
        this.guard = guard;
        this.annotate = annotate;
        this.audit = audit;
    }

    public bool Blocked => guard.BlockedBy is not null;

    /// <summary>Adds one generated piece; returns what may be sent now.</summary>
    public async ValueTask<GuardedText> PushAsync(string piece, CancellationToken cancellationToken = default)
    {
        if (Blocked) return new GuardedText("", true);
        generated.Append(piece);
        var step = await guard.AppendAsync(piece, cancellationToken);
        if (step.BlockedBy is { } verdict) await AuditOnceAsync(verdict, cancellationToken);
        return new GuardedText(step.Released, step.Blocked);
    }

    /// <summary>Ends the choice: checks the whole completion once more and releases the held-back
    /// tail unless that blocks. Returns the last text and the content_filter_results.</summary>
    public async ValueTask<GuardedText> FlushAsync(CancellationToken cancellationToken = default)
    {
        var (step, verdict) = await guard.CompleteAsync(cancellationToken);
        if (step.Blocked) await AuditOnceAsync(verdict, cancellationToken);
        return new GuardedText(step.Released, step.Blocked, annotate ? verdict.ToContentFilterResults() : null);
    }

    async ValueTask AuditOnceAsync(SafetyVerdict verdict, CancellationToken cancellationToken)
    {
        if (audited) return;
        audited = true;
        await audit(verdict, generated.ToString(), cancellationToken);
    }
}
