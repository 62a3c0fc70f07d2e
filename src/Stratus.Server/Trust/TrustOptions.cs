// How the trust layer is set up: where the platform database lives, whether the server may run
// without API keys (loopback only), and what the content-safety pipeline adds to each policy.
using Stratus.Safety;

namespace Stratus.Server.Trust;

public sealed record TrustOptions
{
    /// <summary>--data-dir; null means $STRATUS_HOME, else the user's data directory
    /// (StratusHome.Resolve).</summary>
    public string? DataDir { get; init; }

    /// <summary>--insecure-no-auth: serve without API keys. Allowed only when every bound address
    /// is loopback, and then only loopback clients are answered.</summary>
    public bool InsecureNoAuth { get; init; }

    /// <summary>Keep the text of filtered requests in the audit log (off by default: the log
    /// then holds only a SHA-256 digest and the length).</summary>
    public bool RecordFilteredContent { get; init; }

    /// <summary>Providers added to every deployment's pipeline (a learned classifier, an
    /// external moderation service).</summary>
    public IReadOnlyList<IContentSafetyProvider> ExtraSafetyProviders { get; init; } = [];

    /// <summary>An OpenAI-compatible /v1/moderations service (OpenAI's omni-moderation, or one
    /// hosted alike) added to every deployment's pipeline after ExtraSafetyProviders, through an
    /// HttpClient the trust layer keeps for the server's life (`stratus serve --moderation-url`);
    /// null: none.</summary>
    public OpenAIModerationOptions? ModerationService { get; init; }

    /// <summary>How long a call to <see cref="ModerationService"/> may take. Past it the text is
    /// neither passed nor blocked: the request gets a 503 content_filter_unavailable. A moderation
    /// call answers in well under a second; 10 s rides out a slow one without holding a request
    /// (and its client) for HttpClient's default 100 s.</summary>
    public static readonly TimeSpan ModerationServiceTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The most of an answer from <see cref="ModerationService"/> that is read: a
    /// moderation of one text is a kilobyte or two; past this, the service is broken or hostile
    /// and its answer a failure (503), not megabytes held per request (HttpClient's own limit is 2 GiB).</summary>
    public const int ModerationResponseLimit = 1 << 20;

    /// <summary>How long a built pipeline is reused before the stored policy and blocklists are
    /// read again. Changes made through the admin API apply at once; this bounds how long a
    /// change made by another process (the CLI) takes to reach a running server.</summary>
    public TimeSpan SafetyRefreshInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The deployment whose policy /v1/moderations applies when a request names no model.</summary>
    public string ModerationDeployment { get; init; } = "moderation";
}
