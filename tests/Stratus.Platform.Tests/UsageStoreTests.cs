// Usage metering: per key, per UTC day, per model, summed under concurrency and queried by
// key and date range.
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public abstract class UsageStoreTests(TestDatabases databases) : IDisposable
{
    readonly TempPlatform platform = new(databases);
    IUsageStore Usage => platform.Stores.Usage;

    public void Dispose() => platform.Dispose();

    static DateTimeOffset Utc(int day, int hour) => new(2026, 2, day, hour, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Requests_and_tokens_add_up_per_key_day_and_model()
    {
        await Usage.RecordAsync("k1", "gpt2", 10, 20, Utc(1, 9));
        await Usage.RecordAsync("k1", "gpt2", 5, 5, Utc(1, 18));
        await Usage.RecordAsync("k1", "llama", 1, 2, Utc(1, 18));
        await Usage.RecordAsync("k1", "gpt2", 7, 0, Utc(2, 1));
        await Usage.RecordAsync("k2", "gpt2", 100, 100, Utc(1, 9));

        var k1 = await Usage.QueryAsync(new UsageQuery("k1", new DateOnly(2026, 2, 1), new DateOnly(2026, 2, 2)));
        Assert.Equal(3, k1.Count);
        var day1 = k1.Single(r => r.Day == new DateOnly(2026, 2, 1) && r.Model == "gpt2");
        Assert.Equal((2L, 15L, 25L, 40L), (day1.Requests, day1.PromptTokens, day1.CompletionTokens, day1.TotalTokens));

        var onlyDay2 = await Usage.QueryAsync(new UsageQuery("k1", new DateOnly(2026, 2, 2), new DateOnly(2026, 2, 2)));
        Assert.Equal(7, Assert.Single(onlyDay2).PromptTokens);
        var allKeysDay1 = await Usage.QueryAsync(new UsageQuery(null, new DateOnly(2026, 2, 1), new DateOnly(2026, 2, 1), "gpt2"));
        Assert.Equal(["k1", "k2"], allKeysDay1.Select(r => r.KeyId));
    }

    [Fact]
    public async Task The_day_is_the_utc_day()
    {
        // 21:00 at UTC-5 on Feb 1 is 02:00 UTC on Feb 2.
        await Usage.RecordAsync("k1", "gpt2", 1, 1, new DateTimeOffset(2026, 2, 1, 21, 0, 0, TimeSpan.FromHours(-5)));
        var row = Assert.Single(await Usage.QueryAsync(new UsageQuery("k1", new DateOnly(2026, 1, 1), new DateOnly(2026, 12, 31))));
        Assert.Equal(new DateOnly(2026, 2, 2), row.Day);
    }

    [Fact]
    public async Task Concurrent_records_are_not_lost()
    {
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Task.Run(async () => await Usage.RecordAsync("k1", "gpt2", 3, 4, Utc(5, 12)))));
        var row = Assert.Single(await Usage.QueryAsync(new UsageQuery("k1", new DateOnly(2026, 2, 5), new DateOnly(2026, 2, 5))));
        Assert.Equal((50L, 150L, 200L), (row.Requests, row.PromptTokens, row.CompletionTokens));
    }

    [Fact]
    public async Task A_reversed_range_is_a_user_error() =>
        await Assert.ThrowsAsync<TrustUserException>(async () => await Usage.QueryAsync(new UsageQuery("k1", new DateOnly(2026, 2, 5), new DateOnly(2026, 2, 1))));
}

public sealed class UsageStoreOnSqliteTests() : UsageStoreTests(TestDatabases.Sqlite);

public sealed class UsageStoreOnPostgresTests(PostgresDatabase postgres) : UsageStoreTests(new TestDatabases(postgres)), IClassFixture<PostgresDatabase>;
