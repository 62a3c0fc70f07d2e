// The audit log: entries chain by hash, and the verifier names the first entry that was
// modified, deleted or reordered, even by someone who bypasses the append-only triggers.
using System.Data.Common;
using System.Text.Json.Nodes;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public abstract class AuditLogTests(TestDatabases databases) : IDisposable
{
    readonly TempPlatform platform = new(databases, new TestClock(new DateTimeOffset(2026, 3, 1, 8, 0, 0, TimeSpan.Zero)));
    IAuditLog Audit => platform.Stores.Audit;

    public void Dispose() => platform.Dispose();

    async Task AppendFive()
    {
        string[] actions = [AuditActions.KeyCreated, AuditActions.PolicyChanged, AuditActions.ModelDeployed, AuditActions.KeyRevoked, AuditActions.BlocklistChanged];
        for (var i = 0; i < actions.Length; i++)
        {
            ((TestClock)platform.Clock!).Advance(TimeSpan.FromSeconds(1));
            await Audit.AppendAsync($"user{i}", actions[i], new JsonObject { ["n"] = i });
        }
    }

    /// <summary>What an attacker with the file does first.</summary>
    void DropTriggers() => platform.DropAuditTriggers();

    [Fact]
    public async Task An_untouched_log_verifies_and_numbers_entries_from_one()
    {
        await AppendFive();
        var entries = await Audit.ReadAsync(new AuditQuery());
        Assert.Equal([1L, 2, 3, 4, 5], entries.Select(e => e.Sequence));
        Assert.Equal("""{"n":2}""", entries[2].Details);
        var result = await Audit.VerifyAsync();
        Assert.True(result.Valid);
        Assert.Equal(5, result.EntriesChecked);
        Assert.Equal(entries[^1].Hash, result.HeadHash);
        Assert.Null(result.FirstBadSequence);
    }

    [Fact]
    public async Task A_modified_entry_is_named()
    {
        await AppendFive();
        DropTriggers();
        platform.Sql("""UPDATE audit_log SET details = '{"n":99}' WHERE seq = 3""");
        var result = await Audit.VerifyAsync();
        Assert.False(result.Valid);
        Assert.Equal(3, result.FirstBadSequence);
        Assert.Contains("modified", result.Problem);
        Assert.Equal(2, result.EntriesChecked);
    }

    [Fact]
    public async Task A_modified_time_or_actor_is_named()
    {
        await AppendFive();
        DropTriggers();
        platform.Sql("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 4");
        Assert.Equal(4, (await Audit.VerifyAsync()).FirstBadSequence);
        platform.Sql("UPDATE audit_log SET time = 'yesterday' WHERE seq = 2");
        Assert.Equal(2, (await Audit.VerifyAsync()).FirstBadSequence);
    }

    [Theory]
    [InlineData("time")]
    [InlineData("actor")]
    [InlineData("action")]
    [InlineData("details")]
    [InlineData("hash")]
    public async Task A_value_nulled_in_a_rebuilt_table_is_named(string column)
    {
        await AppendFive();
        // NOT NULL is part of the schema, which someone with the file can rebuild without it.
        platform.Sql("""
            ALTER TABLE audit_log RENAME TO old_log;
            CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, time TEXT, actor TEXT, action TEXT, details TEXT, hash TEXT);
            INSERT INTO audit_log SELECT * FROM old_log;
            DROP TABLE old_log;
            """, $"ALTER TABLE audit_log ALTER COLUMN {column} DROP NOT NULL;");
        if (databases.IsPostgres) DropTriggers();
        platform.Sql($"UPDATE audit_log SET {column} = NULL WHERE seq = 3");
        var result = await Audit.VerifyAsync();
        Assert.Equal(3, result.FirstBadSequence);
        Assert.Contains("modified", result.Problem);
        Assert.Equal(5, (await Audit.ReadAsync(new AuditQuery())).Count);
    }

    [Fact]
    public async Task A_deleted_entry_is_named()
    {
        await AppendFive();
        DropTriggers();
        platform.Sql("DELETE FROM audit_log WHERE seq = 3");
        var result = await Audit.VerifyAsync();
        Assert.False(result.Valid);
        Assert.Equal(4, result.FirstBadSequence);
        Assert.Contains("entry 3 is missing", result.Problem);
    }

    [Fact]
    public async Task A_deleted_first_entry_is_named()
    {
        await AppendFive();
        DropTriggers();
        platform.Sql("DELETE FROM audit_log WHERE seq = 1");
        Assert.Equal(2, (await Audit.VerifyAsync()).FirstBadSequence);
    }

    [Fact]
    public async Task Reordered_entries_are_named()
    {
        await AppendFive();
        DropTriggers();
        // Move entry 4 before entry 2 by swapping their sequence numbers.
        platform.Sql("UPDATE audit_log SET seq = -1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = -1;");
        var result = await Audit.VerifyAsync();
        Assert.False(result.Valid);
        Assert.Equal(2, result.FirstBadSequence);
        Assert.Contains("reordered", result.Problem);
    }

    [Fact]
    public async Task Renumbering_after_a_deletion_is_still_caught()
    {
        await AppendFive();
        DropTriggers();
        platform.Sql("DELETE FROM audit_log WHERE seq = 3; UPDATE audit_log SET seq = seq - 1 WHERE seq > 3;");
        Assert.Equal(3, (await Audit.VerifyAsync()).FirstBadSequence);
    }

    [Fact]
    public async Task The_table_refuses_updates_and_deletes()
    {
        await AppendFive();
        var update = Assert.ThrowsAny<DbException>(() => platform.Sql("UPDATE audit_log SET actor = 'x' WHERE seq = 1"));
        Assert.Contains("append-only", update.Message);
        Assert.ThrowsAny<DbException>(() => platform.Sql("DELETE FROM audit_log"));
        Assert.True((await Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public async Task Concurrent_appends_form_one_valid_chain()
    {
        await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Task.Run(async () =>
            await Audit.AppendAsync("worker", AuditActions.RequestFiltered, new JsonObject { ["i"] = i }))));
        var result = await Audit.VerifyAsync();
        Assert.True(result.Valid, result.Problem);
        Assert.Equal(40, result.EntriesChecked);
    }

    [Fact]
    public async Task Queries_filter_by_action_actor_and_page()
    {
        await AppendFive();
        Assert.Equal(AuditActions.ModelDeployed, Assert.Single(await Audit.ReadAsync(new AuditQuery(Action: AuditActions.ModelDeployed))).Action);
        Assert.Equal(4, Assert.Single(await Audit.ReadAsync(new AuditQuery(Actor: "user3"))).Sequence);
        Assert.Equal([4L, 5], (await Audit.ReadAsync(new AuditQuery(AfterSequence: 3))).Select(e => e.Sequence));
        Assert.Equal([1L, 2], (await Audit.ReadAsync(new AuditQuery(Limit: 2))).Select(e => e.Sequence));
    }

    [Fact]
    public async Task Filtered_request_details_hold_no_content_unless_configured()
    {
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("gpt2") with { Blocklists = ["w"] }, [new Blocklist("w", ["frobnicate"], [])]);
        const string prompt = "please frobnicate the widget";
        var verdict = await pipeline.AnalyzeAsync(prompt, ContentDirection.Prompt);
        var withoutContent = AuditDetails.FilteredRequest("key1", "gpt2", verdict, prompt, recordContent: false);
        var entry = await Audit.AppendAsync("key1", AuditActions.RequestFiltered, withoutContent);
        Assert.DoesNotContain("frobnicate the widget", entry.Details);
        Assert.Contains("\"blocklist\":\"w\"", entry.Details);
        Assert.Contains("content_sha256", entry.Details);
        var withContent = AuditDetails.FilteredRequest("key1", "gpt2", verdict, prompt, recordContent: true);
        Assert.Equal(prompt, withContent["content"]!.GetValue<string>());
    }

    [Fact]
    public async Task Filtered_request_details_name_the_entry_that_matched_as_the_list_has_it()
    {
        var policy = SafetyPolicy.Default("gpt2") with { Blocklists = ["w", "codes"], Pii = PiiMode.Block };
        var pipeline = SafetyPipeline.Create(policy, [new Blocklist("w", ["Bad Word", "frobnicate"], []), new Blocklist("codes", [], [@"proj-\d{4}"], SafetyCategory.Violence)]);
        // The term as written in the text (full-width, other case, a run of spaces) is the list's entry.
        const string prompt = "a ｂａｄ   WORD, PROJ-1234 and mail me at jo@example.org";
        var verdict = await pipeline.AnalyzeAsync(prompt, ContentDirection.Prompt);
        var details = AuditDetails.FilteredRequest("key1", "gpt2", verdict, prompt, recordContent: false);
        var filtered = details["filtered"]!.AsArray();
        var words = Assert.Single(filtered, f => (string?)f!["blocklist"] == "w")!;
        Assert.Equal(["Bad Word"], words["terms"]!.AsArray().Select(t => (string)t!));
        var codes = Assert.Single(filtered, f => (string?)f!["blocklist"] == "codes")!;
        Assert.Equal([@"proj-\d{4}"], codes["patterns"]!.AsArray().Select(t => (string)t!));
        var pii = Assert.Single(filtered, f => (string?)f!["category"] == "pii")!;
        Assert.Equal(["EMAIL"], pii["matched"]!.AsArray().Select(t => (string)t!));
        var entry = await Audit.AppendAsync("key1", AuditActions.RequestFiltered, details);
        // The stored text keeps what it holds as written (full-width letters too), so what it leaves out is truly absent.
        Assert.DoesNotContain("jo@example", entry.Details);
        Assert.DoesNotContain("1234", entry.Details);
        Assert.DoesNotContain("ｂａｄ", entry.Details);
        Assert.True((await Audit.VerifyAsync()).Valid);
        Assert.Equal(entry.Hash, (await Audit.VerifyAsync()).HeadHash);
    }

    [Fact]
    public async Task Details_are_stored_as_written_for_people_to_read()
    {
        // `stratus audit list` prints the stored text: a term in another script and a pattern's
        // '+' read as the operator wrote them, not as \uXXXX escapes.
        var entry = await Audit.AppendAsync("admin", AuditActions.PolicyChanged, new JsonObject { ["terms_added"] = new JsonArray("炸弹", "<b>&'"), ["patterns_added"] = new JsonArray(@"proj-\d+"), ["note"] = "tab\there" });
        Assert.Contains("\"炸弹\"", entry.Details);
        Assert.Contains("\"<b>&'\"", entry.Details);
        Assert.Contains(@"proj-\\d+", entry.Details);
        Assert.Contains(@"tab\there", entry.Details);
        Assert.Equal(entry.Details, Assert.Single(await Audit.ReadAsync(new AuditQuery())).Details);
        Assert.True((await Audit.VerifyAsync()).Valid);
    }
}

public sealed class AuditLogOnSqliteTests() : AuditLogTests(TestDatabases.Sqlite);

public sealed class AuditLogOnPostgresTests(PostgresDatabase postgres) : AuditLogTests(new TestDatabases(postgres)), IClassFixture<PostgresDatabase>;
