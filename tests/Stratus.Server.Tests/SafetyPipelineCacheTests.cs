// The server's pipeline per deployment, rebuilt after its refresh interval: each rebuild takes the
// blocklists compiled before whose content is unchanged, and a list another process changed (the
// CLI writing the same database) reaches the server within the interval, compiled again.
using Microsoft.Data.Sqlite;
using Stratus.Platform;
using Stratus.Platform.Tests;
using Stratus.Safety;
using Stratus.Server.Trust;

namespace Stratus.Server.Tests;

public sealed class SafetyPipelineCacheTests : IDisposable
{
    readonly string dataDir = Directory.CreateTempSubdirectory("stratus-pipelines-").FullName;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(dataDir, recursive: true);
    }

    /// <summary>A SafetyConfiguration of its own on the data directory's SQLite database, as a process opens it.</summary>
    SafetyConfiguration Open() => PlatformStores.Open(PlatformDatabase.Open(dataDir, connection: null, lockTimeout: null)).SafetyConfiguration();

    [Fact]
    public async Task A_refresh_keeps_the_compiled_blocklist_until_another_process_changes_it()
    {
        var cli = Open();
        await cli.UpsertBlocklistAsync(new Blocklist("ports", ["mombasa"], [@"\bdar\s+es\s+salaam\b"]), "cli");
        await cli.SetPolicyAsync(SafetyPolicy.Default("m") with { Blocklists = ["ports"] }, "cli");
        var server = Open();
        var interval = TimeSpan.FromSeconds(5);
        var clock = new TestClock(new DateTimeOffset(2026, 3, 5, 12, 0, 0, TimeSpan.Zero));
        var pipelines = new SafetyPipelineCache(server, [], interval, clock);
        async Task<bool> BlocksAsync(string text) => (await (await pipelines.GetAsync("m")).AnalyzeAsync(text, ContentDirection.Prompt)).Blocked;

        Assert.True(await BlocksAsync("meet me in Dar es Salaam"));
        var first = await pipelines.GetAsync("m");
        var compiled = Assert.Single(server.CompiledBlocklists);
        clock.Advance(interval);
        var rebuilt = await pipelines.GetAsync("m");
        Assert.NotSame(first, rebuilt);
        Assert.Same(compiled, Assert.Single(server.CompiledBlocklists));
        Assert.True(await BlocksAsync("meet me in Dar es Salaam"));
        Assert.False(await BlocksAsync("meet me in Zanzibar"));

        await cli.AddToBlocklistAsync("ports", ["zanzibar"], [], null, "cli");
        clock.Advance(interval - TimeSpan.FromSeconds(1));
        Assert.False(await BlocksAsync("meet me in Zanzibar"));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(await BlocksAsync("meet me in Zanzibar"));
        Assert.True(await BlocksAsync("meet me in Dar es Salaam"));
        Assert.NotSame(compiled, Assert.Single(server.CompiledBlocklists));
    }
}
