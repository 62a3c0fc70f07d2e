// One built SafetyPipeline per deployment, shared by all its requests. A pipeline is rebuilt
// when the safety configuration changes through this process (SafetyConfiguration.Version) or
// after the refresh interval, which is how changes made by another process (the CLI writing
// the same database) reach a running server. A rebuild reads the policy and the blocklists again
// and compiles only a list whose content changed (SafetyConfiguration keeps the others compiled).
// The interval is timed on the monotonic clock: a wall clock set back would otherwise keep a
// pipeline (and a blocklist the CLI changed) for as long as it was set back.
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

    /// <param name="BuiltAt">A monotonic timestamp (TimeProvider.GetTimestamp).</param>
    sealed record Entry(SafetyPipeline Pipeline, long Version, long BuiltAt);

    readonly ConcurrentDictionary<string, Entry> entries = new(StringComparer.Ordinal);
    readonly TimeProvider clock = time ?? TimeProvider.System;

    /// <exception cref="TrustUserException">The deployment name is invalid, or its policy
    /// cannot be built.</exception>
    public async ValueTask<SafetyPipeline> GetAsync(string deployment, CancellationToken cancellationToken = default)
    {
        var now = clock.GetTimestamp();
        if (entries.TryGetValue(deployment, out var entry) && entry.Version == safety.Version && clock.GetElapsedTime(entry.BuiltAt, now) < refreshInterval)
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
