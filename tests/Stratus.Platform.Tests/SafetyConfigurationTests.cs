// Stored blocklists and policies: validated before they are stored, audited when changed, and
// turned into the deployment's pipeline; blocklist changes made at once from separate stores on
// one file (processes) each build on the one before.
using System.Data.Common;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Platform.Tests;

public abstract class SafetyConfigurationTests : IDisposable
{
    readonly TestDatabases databases;
    readonly TempPlatform platform;
    readonly SafetyConfiguration config;

    protected SafetyConfigurationTests(TestDatabases databases)
    {
        this.databases = databases;
        platform = new(databases);
        config = platform.Stores.SafetyConfiguration();
    }

    public void Dispose() => platform.Dispose();

    [Fact]
    public async Task Blocklists_round_trip_and_update_in_place()
    {
        await config.UpsertBlocklistAsync(new Blocklist("codes", ["alpha"], [@"proj-\d+"], SafetyCategory.Violence), "admin");
        var stored = await config.GetBlocklistAsync("CODES");
        Assert.NotNull(stored);
        Assert.Equal(["alpha"], stored.Terms);
        Assert.Equal([@"proj-\d+"], stored.Patterns);
        Assert.Equal(SafetyCategory.Violence, stored.Category);

        await config.UpsertBlocklistAsync(new Blocklist("codes", ["alpha", "beta"], []), "admin");
        var list = Assert.Single(await config.ListBlocklistsAsync());
        Assert.Equal(["alpha", "beta"], list.Terms);
        var log = await platform.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.BlocklistChanged));
        Assert.Equal(2, log.Count);
        Assert.Contains("\"operation\":\"created\"", log[0].Details);
        Assert.Contains("\"operation\":\"updated\"", log[1].Details);
        var updated = System.Text.Json.Nodes.JsonNode.Parse(log[1].Details)!;
        Assert.Equal(2, (int)updated["terms"]!);
        Assert.Equal(["beta"], updated["terms_added"]!.AsArray().Select(t => (string)t!));
        Assert.Equal([@"proj-\d+"], updated["patterns_removed"]!.AsArray().Select(t => (string)t!));
        Assert.Null(updated["terms_removed"]);
    }

    /// <summary>Listed in name order whatever the case, as the names are one whatever the case:
    /// on PostgreSQL too, whose C-collated column sorts every capital before every small letter.</summary>
    [Fact]
    public async Task Blocklists_are_listed_by_name_whatever_its_case()
    {
        foreach (var name in new[] { "Zed", "apple", "Mango" })
            await config.UpsertBlocklistAsync(new Blocklist(name, ["term"], []), "admin");

        Assert.Equal(["apple", "Mango", "Zed"], (await config.ListBlocklistsAsync()).Select(b => b.Name));
    }

    [Fact]
    public async Task An_invalid_blocklist_is_refused_and_nothing_is_stored()
    {
        var e = await Assert.ThrowsAsync<TrustUserException>(async () => await config.UpsertBlocklistAsync(new Blocklist("bad", [], ["(oops"]), "admin"));
        Assert.Contains("not a valid regular expression", e.Message);
        Assert.Empty(await config.ListBlocklistsAsync());
        Assert.Empty(await platform.Stores.Audit.ReadAsync(new AuditQuery()));
    }

    [Fact]
    public async Task A_pattern_that_matches_only_empty_text_is_refused_when_added_and_one_stored_before_still_serves()
    {
        var e = await Assert.ThrowsAsync<TrustUserException>(async () => await config.AddToBlocklistAsync("words", ["bomb"], ["(?=bomb)"], null, "admin"));
        Assert.Contains("write the term itself", e.Message);
        Assert.Empty(await config.ListBlocklistsAsync());
        Assert.Empty(await platform.Stores.Audit.ReadAsync(new AuditQuery()));
        // Stored by a version that let it in: the list still builds, and takes other entries.
        await platform.Stores.Blocklists.ChangeAsync("words", _ => new Blocklist("words", ["bomb"], [@"\b"]),
            (_, after) => new AuditRecord("old", AuditActions.BlocklistChanged, []));
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "admin");
        var list = await config.AddToBlocklistAsync("words", ["sarin"], [], null, "admin");
        Assert.Equal([@"\b"], list.Patterns);
        var pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.True((await pipeline.AnalyzeAsync("sarin", ContentDirection.Prompt)).Blocked);
        Assert.False((await pipeline.AnalyzeAsync("a clean text", ContentDirection.Prompt)).Blocked);
    }

    [Fact]
    public async Task Adding_only_entries_a_list_has_changes_nothing_and_is_not_audited()
    {
        await config.AddToBlocklistAsync("words", ["bomb", "sarin"], [@"proj-\d+"], null, "admin");
        var version = config.Version;
        var list = await config.AddToBlocklistAsync("words", ["BOMB", " sarin "], [@"proj-\d+"], null, "admin");
        await config.UpsertBlocklistAsync(new Blocklist("words", ["sarin", "bomb"], [@"proj-\d+"]), "admin");
        Assert.Equal(["bomb", "sarin"], list.Terms);
        // Nor is a deployment's pipeline built again (the server's cache follows Version).
        Assert.Equal(version, config.Version);
        var entry = Assert.Single(await platform.Stores.Audit.ReadAsync(new AuditQuery()));
        Assert.Contains("\"operation\":\"created\"", entry.Details);
        // A category changed is a change.
        await config.AddToBlocklistAsync("words", ["bomb"], [], SafetyCategory.Violence, "admin");
        var changed = (await platform.Stores.Audit.ReadAsync(new AuditQuery()))[^1];
        Assert.Contains("\"category\":\"violence\",\"previous_category\":\"hate\"", changed.Details);
        Assert.True((await platform.Stores.Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public async Task Blocklist_changes_record_the_entries_added_and_removed_capped()
    {
        string[] many = [.. Enumerable.Range(0, 30).Select(i => $"term{i}")];
        await config.AddToBlocklistAsync("words", many, [], null, "admin");
        await config.RemoveFromBlocklistAsync("words", ["TERM3"], [], "admin");
        await config.DeleteBlocklistAsync("words", "admin");
        var log = await platform.Stores.Audit.ReadAsync(new AuditQuery());
        var created = System.Text.Json.Nodes.JsonNode.Parse(log[0].Details)!;
        Assert.Equal(many[..AuditDetails.MaxListEntries], created["terms_added"]!.AsArray().Select(t => (string)t!));
        Assert.Equal(30 - AuditDetails.MaxListEntries, (int)created["terms_added_more"]!);
        Assert.Contains("\"terms_removed\":[\"term3\"]", log[1].Details);
        var deleted = System.Text.Json.Nodes.JsonNode.Parse(log[2].Details)!;
        Assert.Equal("deleted", (string)deleted["operation"]!);
        Assert.Equal(29, deleted["terms_removed"]!.AsArray().Count + (int)deleted["terms_removed_more"]!);
        // Long entries are capped by their characters too.
        string[] longTerms = [.. Enumerable.Range(0, 15).Select(i => new string((char)('a' + i), CompiledBlocklist.MaxTermLength))];
        await config.AddToBlocklistAsync("long", longTerms, [], null, "admin");
        var added = System.Text.Json.Nodes.JsonNode.Parse((await platform.Stores.Audit.ReadAsync(new AuditQuery()))[^1].Details)!;
        Assert.Equal(AuditDetails.MaxListCharacters / CompiledBlocklist.MaxTermLength, added["terms_added"]!.AsArray().Count);
        Assert.True((await platform.Stores.Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public async Task Policies_are_stored_audited_and_build_the_pipeline()
    {
        Assert.Equal(SafetyPolicy.Default("gpt2").BlockAt.Count, (await config.GetPolicyAsync("gpt2")).BlockAt.Count);
        await config.UpsertBlocklistAsync(new Blocklist("profanity", ["heck"], []), "admin");
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Pii = PiiMode.Redact, Blocklists = ["profanity"] }, "admin");

        var policy = await config.GetPolicyAsync("gpt2");
        Assert.Equal(PiiMode.Redact, policy.Pii);
        var pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.True((await pipeline.AnalyzeAsync("oh heck", ContentDirection.Completion)).Blocked);
        Assert.Equal("mail [EMAIL]", (await pipeline.AnalyzeAsync("mail a@b.io", ContentDirection.Completion)).Text);
        // Another deployment still gets the defaults.
        Assert.False((await (await config.BuildPipelineAsync("other")).AnalyzeAsync("oh heck", ContentDirection.Completion)).Blocked);

        var entry = Assert.Single(await platform.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.PolicyChanged)));
        Assert.Contains("\"pii\":\"redact\"", entry.Details);
        Assert.Equal(2, config.Version);
    }

    [Fact]
    public async Task A_policy_naming_a_missing_blocklist_is_refused()
    {
        var e = await Assert.ThrowsAsync<TrustUserException>(async () =>
            await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["nope"] }, "admin"));
        Assert.Contains("nope", e.Message);
        Assert.Empty(await config.ListPoliciesAsync());
    }

    [Fact]
    public async Task A_blocklist_in_use_cannot_be_deleted()
    {
        await config.UpsertBlocklistAsync(new Blocklist("profanity", ["heck"], []), "admin");
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["profanity"] }, "admin");
        var e = await Assert.ThrowsAsync<TrustUserException>(async () => await config.DeleteBlocklistAsync("profanity", "admin"));
        Assert.Contains("gpt2", e.Message);
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2"), "admin");
        await config.DeleteBlocklistAsync("profanity", "admin");
        Assert.Empty(await config.ListBlocklistsAsync());
        await Assert.ThrowsAsync<TrustUserException>(async () => await config.DeleteBlocklistAsync("profanity", "admin"));
    }

    [Fact]
    public async Task A_safety_change_whose_audit_entry_cannot_be_written_is_not_stored()
    {
        await config.UpsertBlocklistAsync(new Blocklist("words", ["heck"], []), "admin");
        platform.BreakAuditAppends();
        await Assert.ThrowsAnyAsync<DbException>(() => config.AddToBlocklistAsync("words", ["darn"], [], null, "admin").AsTask());
        await Assert.ThrowsAnyAsync<DbException>(() => config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "admin").AsTask());
        await Assert.ThrowsAnyAsync<DbException>(() => config.DeleteBlocklistAsync("words", "admin").AsTask());

        Assert.Equal(["heck"], (await config.GetBlocklistAsync("words"))!.Terms);
        Assert.Empty(await config.ListPoliciesAsync());
        Assert.Single(await platform.Stores.Audit.ReadAsync(new AuditQuery()));
    }

    [Fact]
    public async Task A_policy_saved_while_its_blocklist_is_being_deleted_stops_the_delete()
    {
        await config.UpsertBlocklistAsync(new Blocklist("words", ["heck"], []), "admin");
        var policy = SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] };
        // Another process saves a policy naming the list in a transaction of its own, and the
        // delete starts before it commits: checking for users then deleting would find none
        // and delete the list under the new policy.
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => WhileAnotherWriterHoldsTheLock(
            $"INSERT INTO safety_policies (deployment, policy, updated_at) VALUES ('gpt2', '{policy.ToJson()}', '2026-01-01T00:00:00.0000000Z')",
            () => config.DeleteBlocklistAsync("words", "admin").AsTask()));
        Assert.Contains("used by the safety policy of gpt2", refused.Message);
        // How, since `stratus blocklist remove` has no verb for policies to point to.
        Assert.Contains("PUT /v1/admin/policies/gpt2", refused.Message);
        Assert.NotNull(await config.GetBlocklistAsync("words"));
    }

    [Fact]
    public async Task A_blocklist_deleted_while_a_policy_naming_it_is_being_saved_stops_the_save()
    {
        await config.UpsertBlocklistAsync(new Blocklist("words", ["heck"], []), "admin");
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => WhileAnotherWriterHoldsTheLock(
            "DELETE FROM blocklists WHERE name = 'words'",
            () => config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "admin").AsTask()));
        Assert.Contains("names blocklist 'words', which does not exist", refused.Message);
        Assert.Empty(await config.ListPoliciesAsync());
    }

    /// <summary>Runs <paramref name="write"/> while another connection, as another process
    /// would, holds the write lock in a transaction that has run <paramref name="sql"/>, and
    /// commits that transaction once the write has had time to read and block on the lock.</summary>
    async Task WhileAnotherWriterHoldsTheLock(string sql, Func<Task> write)
    {
        using var transaction = platform.HoldWriteLock();
        using var connection = transaction.Connection!;
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            command.CommandText = sql;
            Assert.Equal(1, command.ExecuteNonQuery());
        }
        var writing = Task.Run(write);
        // Well within the 5 s lock timeout the write waits for.
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(writing.IsCompleted);
        transaction.Commit();
        await writing;
    }

    [Fact]
    public async Task Concurrent_adds_to_one_blocklist_from_separate_stores_keep_every_term()
    {
        const int Writers = 20;
        var terms = Enumerable.Range(0, Writers).Select(i => $"term{i}").ToList();
        // A store each, as `stratus blocklist add` run 20 times at once opens them, on threads
        // of their own released together, so the adds really overlap.
        // A lock timeout far past the default 5 s: 20 writers queue for one lock, which a loaded
        // CI machine may hold longer, and what is tested is that no add is lost, not how fast.
        var stores = terms.Select(_ => PlatformStores.Open(platform.OpenDatabase(TimeSpan.FromSeconds(60))).SafetyConfiguration()).ToList();
        using var start = new Barrier(Writers);
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = terms.Select((term, i) => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                stores[i].AddToBlocklistAsync("words", [term], [], null, "tests").AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.Empty(errors);
        var list = await config.GetBlocklistAsync("words");
        Assert.Equal(terms.Order(), list!.Terms.Order());
        // One add made the list; each of the others saw the list it changed.
        var log = await platform.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.BlocklistChanged));
        Assert.Equal(Writers, log.Count);
        Assert.Single(log, e => e.Details.Contains("\"created\""));
    }

    [Fact]
    public async Task Removing_entries_a_list_lacks_or_from_a_missing_list_changes_nothing()
    {
        await config.AddToBlocklistAsync("words", ["alpha", "beta"], [@"proj-\d+"], null, "admin");
        var missing = await Assert.ThrowsAsync<TrustUserException>(() => config.RemoveFromBlocklistAsync("words", ["alpha", "gamma"], [], "admin").AsTask());
        Assert.Contains("has no entry 'gamma'", missing.Message);
        Assert.Equal(["alpha", "beta"], (await config.GetBlocklistAsync("words"))!.Terms);
        Assert.True((await Assert.ThrowsAsync<TrustUserException>(() => config.RemoveFromBlocklistAsync("nothing", ["alpha"], [], "admin").AsTask())).NotFound);

        var changed = await config.RemoveFromBlocklistAsync("WORDS", ["ALPHA"], [@"proj-\d+"], "admin");
        Assert.Equal(["beta"], changed.Terms);
        Assert.Empty(changed.Patterns);
        Assert.Equal(["beta"], (await config.GetBlocklistAsync("words"))!.Terms);
    }

    [Fact]
    public async Task Terms_are_stored_as_they_are_matched_and_removed_so()
    {
        var list = await config.UpsertBlocklistAsync(new Blocklist("words", ["  Bomb  ", "bomb", "purple \t  elephant", "c++"], []), "admin");
        Assert.Equal(["Bomb", "purple elephant", "c++"], list.Terms);
        list = await config.AddToBlocklistAsync("words", ["c++ ", "PURPLE ELEPHANT", "sarin"], [], null, "admin");
        Assert.Equal(["Bomb", "purple elephant", "c++", "sarin"], list.Terms);

        list = await config.RemoveFromBlocklistAsync("words", ["bomb", " purple  elephant "], [], "admin");
        Assert.Equal(["c++", "sarin"], (await config.GetBlocklistAsync("words"))!.Terms);
        Assert.Equal(["c++", "sarin"], list.Terms);
    }

    [Fact]
    public async Task Terms_that_match_the_same_texts_are_one_entry()
    {
        // Full-width letters and a zero-width space read as "bomb": the matcher sees one term,
        // so the list keeps one and removing any spelling of it removes it (before, "bomb" could
        // not remove "ｂｏｍｂ", which went on blocking it).
        var list = await config.UpsertBlocklistAsync(new Blocklist("words", ["ｂｏｍｂ", "bomb", "bo\u200Bmb", "sarin"], []), "admin");
        Assert.Equal(["ｂｏｍｂ", "sarin"], list.Terms);
        list = await config.AddToBlocklistAsync("words", ["BOMB"], [], null, "admin");
        Assert.Equal(["ｂｏｍｂ", "sarin"], list.Terms);
        list = await config.RemoveFromBlocklistAsync("words", ["bomb"], [], "admin");
        Assert.Equal(["sarin"], list.Terms);
    }

    [Fact]
    public async Task Spellings_the_matcher_reads_alike_are_one_entry_though_their_capitals_differ()
    {
        // The regex's IgnoreCase reads ß as ẞ and Ω as the ohm sign, which OrdinalIgnoreCase (capitals
        // compared) tells apart: two entries that block the same texts, and removing one left the
        // other blocking.
        var list = await config.UpsertBlocklistAsync(new Blocklist("words", ["STRAẞE", "straße", "Ω-meter", "\u2126-METER", "sarin"], []), "admin");
        Assert.Equal(["STRAẞE", "Ω-meter", "sarin"], list.Terms);
        list = await config.RemoveFromBlocklistAsync("words", ["straße", "\u2126-meter"], [], "admin");
        Assert.Equal(["sarin"], list.Terms);
    }

    [Fact]
    public async Task A_term_kept_once_whatever_its_case_blocks_it_in_every_case()
    {
        // The list keeps "κακός" once, so "ΚΑΚΌΣ" is not added beside it: the one kept has to block
        // both (before, it missed the capital's final Σ, which no entry could then be added for).
        await config.UpsertBlocklistAsync(new Blocklist("words", ["κακός"], []), "admin");
        var list = await config.AddToBlocklistAsync("words", ["ΚΑΚΌΣ"], [], null, "admin");
        Assert.Equal(["κακός"], list.Terms);
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "admin");
        var pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.True((await pipeline.AnalyzeAsync("ΕΊΝΑΙ ΚΑΚΌΣ", ContentDirection.Prompt)).Blocked);
    }

    /// <summary>A server builds each deployment's pipeline again every few seconds; a list whose
    /// content is unchanged is the one compiled before (its patterns' engines built once), for
    /// every deployment that names it, whatever else changed meanwhile.</summary>
    [Fact]
    public async Task A_rebuild_takes_the_blocklist_compiled_before_while_its_content_is_unchanged()
    {
        await config.UpsertBlocklistAsync(new Blocklist("words", ["heck"], [@"\bdarn(?:ed)?\b"]), "admin");
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "admin");
        await config.SetPolicyAsync(SafetyPolicy.Default("other") with { Pii = PiiMode.Off, Blocklists = ["WORDS"] }, "admin");
        var first = await config.BuildPipelineAsync("gpt2");
        Assert.True((await first.AnalyzeAsync("oh darned", ContentDirection.Prompt)).Blocked);
        var compiled = Assert.Single(config.CompiledBlocklists);

        // Another list and a policy changed; the list put back as it was by another process, in
        // another order (the same content: VersionOf).
        await config.UpsertBlocklistAsync(new Blocklist("unused", ["zounds"], []), "admin");
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Pii = PiiMode.Block, Blocklists = ["words"] }, "admin");
        await PlatformStores.Open(platform.OpenDatabase()).SafetyConfiguration().UpsertBlocklistAsync(new Blocklist("words", ["heck"], [@"\bdarn(?:ed)?\b"]), "cli");
        foreach (var deployment in new[] { "gpt2", "other", "gpt2" })
        {
            var pipeline = await config.BuildPipelineAsync(deployment);
            Assert.True((await pipeline.AnalyzeAsync("oh heck", ContentDirection.Prompt)).Blocked);
            Assert.True((await pipeline.AnalyzeAsync("oh darned", ContentDirection.Prompt)).Blocked);
            Assert.False((await pipeline.AnalyzeAsync("oh zounds", ContentDirection.Prompt)).Blocked);
        }
        Assert.Same(compiled, config.CompiledBlocklists.Single(l => l.Source.Name == "words"));
    }

    /// <summary>A list changed through this instance (the admin API's PUT and item endpoints, the
    /// CLI) is compiled once: the compilation that validated it is the one the next rebuild takes.
    /// It was compiled to validate it and again at the rebuild (1,000 patterns: twice the compile).
    /// A change refused as invalid leaves the list compiled before in place.</summary>
    [Fact]
    public async Task A_blocklist_changed_here_is_compiled_once_for_its_validation_and_the_rebuild()
    {
        string[] patterns = [.. Enumerable.Range(0, 1000).Select(i => $@"\bword{i}(?:s|ed)?\b")];
        await config.UpsertBlocklistAsync(new Blocklist("words", [], patterns), "admin");
        var validated = Assert.Single(config.CompiledBlocklists);
        Assert.Equal(1000, validated.Source.Patterns.Count);
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "admin");
        var pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.True((await pipeline.AnalyzeAsync("oh word999ed", ContentDirection.Prompt)).Blocked);
        Assert.Same(validated, Assert.Single(config.CompiledBlocklists));

        await Assert.ThrowsAsync<TrustUserException>(async () => await config.AddToBlocklistAsync("words", [], ["(unclosed"], null, "admin"));
        await config.BuildPipelineAsync("gpt2");
        Assert.Same(validated, Assert.Single(config.CompiledBlocklists));

        var added = await config.AddToBlocklistAsync("words", ["heck"], [], null, "admin");
        var changed = Assert.Single(config.CompiledBlocklists);
        Assert.Equal(added, changed.Source);
        pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.True((await pipeline.AnalyzeAsync("oh heck", ContentDirection.Prompt)).Blocked);
        Assert.Same(changed, Assert.Single(config.CompiledBlocklists));
    }

    /// <summary>A list changed, here by another process writing the same database, is compiled
    /// again from what it holds now, and a list deleted is let go: what is kept compiled is what
    /// is stored.</summary>
    [Fact]
    public async Task A_changed_blocklist_is_compiled_again_and_a_deleted_one_let_go()
    {
        await config.UpsertBlocklistAsync(new Blocklist("words", ["heck"], []), "admin");
        await config.UpsertBlocklistAsync(new Blocklist("codes", [], [@"proj-\d+"]), "admin");
        await config.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words", "codes"] }, "admin");
        await config.BuildPipelineAsync("gpt2");
        var before = config.CompiledBlocklists.Single(l => l.Source.Name == "words");
        var codes = config.CompiledBlocklists.Single(l => l.Source.Name == "codes");

        var cli = PlatformStores.Open(platform.OpenDatabase()).SafetyConfiguration();
        await cli.AddToBlocklistAsync("words", ["darn"], [], null, "cli");
        var pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.True((await pipeline.AnalyzeAsync("oh darn", ContentDirection.Prompt)).Blocked);
        var after = config.CompiledBlocklists.Single(l => l.Source.Name == "words");
        Assert.NotSame(before, after);
        Assert.Equal(["heck", "darn"], after.Source.Terms);
        Assert.Same(codes, config.CompiledBlocklists.Single(l => l.Source.Name == "codes"));

        await cli.SetPolicyAsync(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, "cli");
        await cli.DeleteBlocklistAsync("codes", "cli");
        var released = WeakReferenceTo(codes);
        codes = null;
        pipeline = await config.BuildPipelineAsync("gpt2");
        Assert.Same(after, Assert.Single(config.CompiledBlocklists));
        Assert.False((await pipeline.AnalyzeAsync("proj-42", ContentDirection.Prompt)).Blocked);
        // Resumed in a new frame, whose locals no longer hold the pipelines that awaits returned;
        // collected again for a while, as work the database's driver finishes on other threads
        // may hold the last pipeline a moment (on PostgreSQL, 1 run in about 6 found it alive at
        // once). A list the configuration kept stays alive for good.
        for (var attempt = 0; attempt < 50 && released.IsAlive; attempt++)
        {
            await Task.Delay(20);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        Assert.False(released.IsAlive);
    }

    static WeakReference WeakReferenceTo(object target) => new(target);

    [Fact]
    public async Task Removing_the_last_entries_of_a_list_says_to_delete_the_list()
    {
        await config.AddToBlocklistAsync("words", ["alpha"], [], null, "admin");
        var e = await Assert.ThrowsAsync<TrustUserException>(() => config.RemoveFromBlocklistAsync("words", ["alpha"], [], "admin").AsTask());
        Assert.Contains("would leave blocklist 'words' empty", e.Message);
        Assert.Contains("stratus blocklist remove words", e.Message);
        Assert.Equal(["alpha"], (await config.GetBlocklistAsync("words"))!.Terms);
    }
}

public sealed class SafetyConfigurationOnSqliteTests() : SafetyConfigurationTests(TestDatabases.Sqlite);

public sealed class SafetyConfigurationOnPostgresTests(PostgresDatabase postgres) : SafetyConfigurationTests(new TestDatabases(postgres)), IClassFixture<PostgresDatabase>;
