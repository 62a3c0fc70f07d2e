// One built SafetyPipeline per deployment, shared by all its requests. A pipeline is rebuilt
// when the safety configuration changes through this process (SafetyConfiguration.Version) or
// after the refresh interval, which is how changes made by another process (the CLI writing
// the same database) reach a running server.
using System.Collections.Concurrent;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public sealed class SafetyPipelineCache(SafetyConfiguration safety, IReadOnlyList<IContentSafetyProvider> extra, TimeSpan refreshInterval, TimeProvider? time = null)
{
    /// <summary>Deployment names come from requests; the server should refuse unknown models
    /// before asking for a pipeline, and this bound keeps a client that does not from growing
    /// the cache without end.</summary>
    const int MaxEntries = 1024;

    sealed record Entry(SafetyPipeline Pipeline, long Version, DateTimeOffset BuiltAt);

    readonly ConcurrentDictionary<string, Entry> entries = new(StringComparer.Ordinal);
    readonly TimeProvider clock = time ?? TimeProvider.System;

    /// <exception cref="TrustUserException">The deployment name is invalid, or its policy
    /// cannot be built.</exception>
    public async ValueTask<SafetyPipeline> GetAsync(string deployment, CancellationToken cancellationToken = default)
    {
        var now = clock.GetUtcNow();
        if (entries.TryGetValue(deployment, out var entry) && entry.Version == safety.Version && now - entry.BuiltAt < refreshInterval)
            return entry.Pipeline;
        SafetyPolicy.ValidateDeploymentName(deployment);
        // The version is read before building, so a change made during the build leaves the
        // entry stale and the next request builds again.
        var version = safety.Version;
        var pipeline = await safety.BuildPipelineAsync(deployment, extra, cancellationToken);
        if (entries.Count >= MaxEntries) entries.Clear();
        entries[deployment] = new Entry(pipeline, version, now);
        return pipeline;
    }
}
