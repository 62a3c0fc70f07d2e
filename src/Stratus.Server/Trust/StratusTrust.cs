// The trust layer's process-wide state: the platform stores in the data directory, the key
// service, quotas, the safety configuration with its pipeline cache, and the audit entries the
// server writes itself (model deployed, request filtered).
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server.Endpoints;
using Stratus.Server.Hosting;

namespace Stratus.Server.Trust;

public sealed class StratusTrust
{
    /// <summary>The audit actor and usage key for requests served under --insecure-no-auth.</summary>
    public const string AnonymousActor = UsageQuery.AnonymousKeyId;

    /// <summary>The audit actor for what the server does on its own behalf.</summary>
    public const string ServerActor = "server";

    /// <exception cref="TrustUserException">No data directory can be determined, or the
    /// database has a newer schema.</exception>
    public StratusTrust(TrustOptions options, TimeProvider? time = null)
    {
        Options = options;
        Time = time ?? TimeProvider.System;
        DataDirectory = StratusHome.Resolve(options.DataDir);
        Database = PlatformDatabase.Open(DataDirectory);
        Stores = PlatformStores.Open(Database, time);
        Keys = Stores.KeyService(time);
        Quotas = new TrustQuotas(time);
        Safety = Stores.SafetyConfiguration();
        Models = ModelRegistry.Open(DataDirectory, RegistryCheckpoints.Instance, time);
        IReadOnlyList<IContentSafetyProvider> providers = options.ModerationService is { } moderation
            ? [.. options.ExtraSafetyProviders, new OpenAIModerationProvider(ModerationClient(), moderation)]
            : options.ExtraSafetyProviders;
        Pipelines = new SafetyPipelineCache(Safety, providers, options.SafetyRefreshInterval, time);
        UsageFailures = new LogThrottle(time);
        StorageFailures = new LogThrottle(time);
        ProbeStorageFailures = new LogThrottle(time);
    }

    /// <summary>One client for the server's life, as HttpClient is meant to be used; its
    /// connections are renewed every few minutes so that a service that moves (DNS) is followed.</summary>
    static HttpClient ModerationClient() =>
        new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            Timeout = TrustOptions.ModerationServiceTimeout,
            MaxResponseContentBufferSize = TrustOptions.ModerationResponseLimit,
        };

    public TrustOptions Options { get; }
    /// <summary>The clock of everything the trust layer dates or times: usage days, key expiry,
    /// audit entries, quota windows.</summary>
    public TimeProvider Time { get; }
    public string DataDirectory { get; }
    /// <summary>The database the stores keep their rows in, which /ready asks.</summary>
    public PlatformDatabase Database { get; }
    public PlatformStores Stores { get; }
    public ApiKeyService Keys { get; }
    public TrustQuotas Quotas { get; }
    public SafetyConfiguration Safety { get; }
    /// <summary>The model registry in the same database (/api/models).</summary>
    public ModelRegistry Models { get; }
    public SafetyPipelineCache Pipelines { get; }
    /// <summary>Usage records that failed (a full disk fails every request's), for the server's
    /// log to say once a minute rather than once a request.</summary>
    internal LogThrottle UsageFailures { get; }
    /// <summary>Requests the platform database failed (a full disk, a lock held, a damaged file
    /// fail every request while they last), said as UsageFailures are.</summary>
    internal LogThrottle StorageFailures { get; }
    /// <summary>Readiness probes (/ready) the platform database failed, counted apart: a probe is
    /// not a request of the API (HealthEndpoints), and a balancer's, once a second, would make the
    /// requests' count mostly probes.</summary>
    internal LogThrottle ProbeStorageFailures { get; }

    /// <summary>Logs a request or probe the platform database failed: its exception at Debug, and a
    /// line naming the cause at once, then at most once a minute with the requests (or probes)
    /// failed since, not an error with its stack trace per request.</summary>
    internal void LogStorageFailure(ILogger logger, PlatformStorageException e, PathString path, string requestId)
    {
        logger.LogDebug(e, "The platform database failed serving {Path} (request {RequestId})", path, requestId);
        if (e.Writing) writesFailed = true;
        if (HealthEndpoints.IsReadinessProbe(path))
        {
            if (ProbeStorageFailures.Add() is var probes and > 0)
                logger.LogError("The platform database failed {Probes} readiness probe(s) of {Path}: {Cause} (said at most once a minute while it lasts)", probes, path, e.Message.TrimEnd('.'));
        }
        else if (StorageFailures.Add() is var failed and > 0)
            logger.LogError("The platform database failed {Requests} request(s): {Cause} (said at most once a minute while it lasts)", failed, e.Message.TrimEnd('.'));
    }

    /// <summary>Whether a write failed since the database last answered again (see <see cref="LogStorageAnswers"/>).</summary>
    volatile bool writesFailed;

    /// <summary>Says that the platform database answers again, with the failed requests and probes
    /// no line has named; nothing when it was not failing. Any use that answered says so (a write
    /// <paramref name="wrote"/>: a request's usage recorded; a read: a request's key read, /ready's
    /// check) but a read after a write failed: reads go on under a lock another process holds or on
    /// a full disk, which fail every write, and a read answering then would end the failure at
    /// every request (a line each, what the throttle is there to stop).</summary>
    internal void LogStorageAnswers(ILogger logger, bool wrote)
    {
        if (!StorageFailures.Failing && !ProbeStorageFailures.Failing) return;
        if (!wrote && writesFailed) return;
        writesFailed = false;
        var requests = StorageFailures.End() ?? 0;
        if (ProbeStorageFailures.End() is { } probes)
            logger.LogWarning("The platform database answers again; {Requests} more request(s) and {Probes} readiness probe(s) failed since the last line", requests, probes);
        else
            logger.LogWarning("The platform database answers again; {Requests} more request(s) failed since the last line", requests);
    }

    /// <summary>Revokes a key and drops its quota windows; its next request is refused because
    /// authentication reads the key row on every request.</summary>
    /// <exception cref="TrustUserException">No active key with this name or id.</exception>
    public async ValueTask<ApiKeyRecord> RevokeKeyAsync(string nameOrId, string actor, CancellationToken cancellationToken = default)
    {
        var key = await Keys.RevokeAsync(nameOrId, actor, cancellationToken);
        Quotas.Forget(key.Id);
        return key;
    }

    /// <summary>Records that the server serves <paramref name="model"/>; call once per model at
    /// startup (and on every later load), so the audit log shows what was served and from where:
    /// the folder, and the registered version (NAME:VERSION) where it was served by reference.</summary>
    public async ValueTask<AuditEntry> RecordModelDeployedAsync(string model, string source, string? registeredVersion = null, CancellationToken cancellationToken = default)
    {
        SafetyPolicy.ValidateDeploymentName(model);
        var policy = await Safety.GetPolicyAsync(model, cancellationToken);
        var details = new JsonObject
        {
            ["model"] = model,
            ["source"] = source,
        };
        if (registeredVersion is not null) details["registered_version"] = registeredVersion;
        details["safety_policy"] = JsonNode.Parse(policy.ToJson());
        return await Stores.Audit.AppendAsync(ServerActor, AuditActions.ModelDeployed, details, cancellationToken);
    }

    /// <summary>Records a filtered prompt or completion: categories, the blocklist entries or PII
    /// kinds that matched, the request's id and a digest of the text, the text itself only when
    /// TrustOptions.RecordFilteredContent is set.</summary>
    public ValueTask<AuditEntry> RecordFilteredAsync(string keyId, string deployment, SafetyVerdict verdict, string content, string? requestId = null,
        CancellationToken cancellationToken = default) =>
        Stores.Audit.AppendAsync(keyId, AuditActions.RequestFiltered,
            AuditDetails.FilteredRequest(keyId, deployment, verdict, content, Options.RecordFilteredContent, requestId), cancellationToken);
}
