// Stored safety configuration: custom blocklists and per-deployment policies behind
// interfaces, and SafetyConfiguration, which validates every change, records it in the audit
// log and builds a deployment's SafetyPipeline from what is stored. A blocklist changes in one
// write transaction from the list it reads to the list it stores, so changes made at once (two
// `blocklist add`s, the CLI and the admin API) each build on the one before instead of losing it.
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public interface IBlocklistStore
{
    ValueTask<IReadOnlyList<Blocklist>> ListAsync(CancellationToken cancellationToken = default);
    ValueTask<Blocklist?> GetAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Reads the list named <paramref name="name"/> (null when there is none) and stores
    /// what <paramref name="change"/> makes of it, atomically: no other change, from this process
    /// or another, comes in between. An exception from <paramref name="change"/> stores nothing.</summary>
    /// <returns>The list as it was, and as it is now.</returns>
    ValueTask<(Blocklist? Before, Blocklist After)> ChangeAsync(string name, Func<Blocklist?, Blocklist> change, CancellationToken cancellationToken = default);
    ValueTask<bool> DeleteAsync(string name, CancellationToken cancellationToken = default);
}

public interface ISafetyPolicyStore
{
    ValueTask<SafetyPolicy?> GetAsync(string deployment, CancellationToken cancellationToken = default);
    ValueTask<IReadOnlyList<SafetyPolicy>> ListAsync(CancellationToken cancellationToken = default);
    ValueTask SetAsync(SafetyPolicy policy, CancellationToken cancellationToken = default);
    ValueTask<bool> DeleteAsync(string deployment, CancellationToken cancellationToken = default);
}

public sealed class SafetyConfiguration(IBlocklistStore blocklists, ISafetyPolicyStore policies, IAuditLog audit)
{
    long version;

    /// <summary>Increases with every change made through this instance, so a server can cache
    /// pipelines per deployment and rebuild them when it moves.</summary>
    public long Version => Interlocked.Read(ref version);

    public ValueTask<IReadOnlyList<Blocklist>> ListBlocklistsAsync(CancellationToken cancellationToken = default) => blocklists.ListAsync(cancellationToken);

    public ValueTask<Blocklist?> GetBlocklistAsync(string name, CancellationToken cancellationToken = default) => blocklists.GetAsync(name, cancellationToken);

    /// <summary>Creates the blocklist, or replaces the one of that name.</summary>
    /// <exception cref="TrustUserException">The blocklist is invalid (bad regex, empty...).</exception>
    public async ValueTask UpsertBlocklistAsync(Blocklist blocklist, string actor, CancellationToken cancellationToken = default) =>
        await ChangeBlocklistAsync(blocklist.Name, _ => blocklist, actor, cancellationToken);

    /// <summary>Adds terms and patterns to a blocklist, creating it when there is none; entries it
    /// has already are kept once. <paramref name="category"/> null keeps the list's own, or hate
    /// for a new list.</summary>
    /// <exception cref="TrustUserException">A pattern is not a valid regular expression, or the
    /// list would be empty.</exception>
    public ValueTask<Blocklist> AddToBlocklistAsync(string name, IEnumerable<string> terms, IEnumerable<string> patterns, SafetyCategory? category, string actor,
        CancellationToken cancellationToken = default) =>
        ChangeBlocklistAsync(name, existing => new Blocklist(existing?.Name ?? name,
            [.. (existing?.Terms ?? []).Concat(terms).Distinct(StringComparer.OrdinalIgnoreCase)],
            [.. (existing?.Patterns ?? []).Concat(patterns).Distinct(StringComparer.Ordinal)],
            category ?? existing?.Category ?? SafetyCategory.Hate), actor, cancellationToken);

    /// <summary>Removes terms and patterns from a blocklist (DeleteBlocklistAsync removes the list).</summary>
    /// <exception cref="TrustUserException">No such blocklist, an entry it does not have, or the
    /// list would be empty.</exception>
    public ValueTask<Blocklist> RemoveFromBlocklistAsync(string name, IReadOnlyCollection<string> terms, IReadOnlyCollection<string> patterns, string actor,
        CancellationToken cancellationToken = default) =>
        ChangeBlocklistAsync(name, existing =>
        {
            if (existing is null) throw new TrustUserException($"No blocklist named '{name}'.") { NotFound = true };
            var missing = terms.Where(t => !existing.Terms.Contains(t, StringComparer.OrdinalIgnoreCase))
                .Concat(patterns.Where(p => !existing.Patterns.Contains(p, StringComparer.Ordinal))).ToList();
            if (missing.Count > 0) throw new TrustUserException($"Blocklist '{existing.Name}' has no entry {string.Join(", ", missing.Select(m => $"'{m}'"))}.");
            return existing with
            {
                Terms = [.. existing.Terms.Where(t => !terms.Contains(t, StringComparer.OrdinalIgnoreCase))],
                Patterns = [.. existing.Patterns.Where(p => !patterns.Contains(p, StringComparer.Ordinal))],
            };
        }, actor, cancellationToken);

    /// <summary>Every blocklist change: validated and stored in one transaction with the read it
    /// builds on, then audited.</summary>
    async ValueTask<Blocklist> ChangeBlocklistAsync(string name, Func<Blocklist?, Blocklist> change, string actor, CancellationToken cancellationToken)
    {
        var (before, after) = await blocklists.ChangeAsync(name, existing =>
        {
            var changed = change(existing);
            CompiledBlocklist.Compile(changed);
            return changed;
        }, cancellationToken);
        await audit.AppendAsync(actor, AuditActions.BlocklistChanged, new JsonObject
        {
            ["name"] = after.Name,
            ["operation"] = before is null ? "created" : "updated",
            ["category"] = after.Category.WireName(),
            // Counts, not the terms: a blocklist of slurs should not be copied into the log.
            ["terms"] = after.Terms.Count,
            ["patterns"] = after.Patterns.Count,
        }, cancellationToken);
        Interlocked.Increment(ref version);
        return after;
    }

    /// <exception cref="TrustUserException">No such blocklist, or a policy still uses it.</exception>
    public async ValueTask DeleteBlocklistAsync(string name, string actor, CancellationToken cancellationToken = default)
    {
        var users = (await policies.ListAsync(cancellationToken))
            .Where(p => p.Blocklists.Contains(name, StringComparer.OrdinalIgnoreCase)).Select(p => p.Deployment).ToList();
        if (users.Count > 0)
            throw new TrustUserException($"Blocklist '{name}' is used by the safety policy of {string.Join(", ", users)}; remove it there first.");
        if (!await blocklists.DeleteAsync(name, cancellationToken)) throw new TrustUserException($"No blocklist named '{name}'.") { NotFound = true };
        await audit.AppendAsync(actor, AuditActions.BlocklistChanged, new JsonObject { ["name"] = name, ["operation"] = "deleted" }, cancellationToken);
        Interlocked.Increment(ref version);
    }

    /// <summary>The stored policy, or the default policy for deployments without one.</summary>
    public async ValueTask<SafetyPolicy> GetPolicyAsync(string deployment, CancellationToken cancellationToken = default) =>
        await policies.GetAsync(deployment, cancellationToken) ?? SafetyPolicy.Default(deployment);

    public ValueTask<IReadOnlyList<SafetyPolicy>> ListPoliciesAsync(CancellationToken cancellationToken = default) => policies.ListAsync(cancellationToken);

    /// <exception cref="TrustUserException">The policy is invalid or names a missing blocklist.</exception>
    public async ValueTask SetPolicyAsync(SafetyPolicy policy, string actor, CancellationToken cancellationToken = default)
    {
        policy.Validate();
        var known = (await blocklists.ListAsync(cancellationToken)).Select(b => b.Name).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var name in policy.Blocklists)
            if (!known.Contains(name)) throw new TrustUserException($"Safety policy for '{policy.Deployment}' names blocklist '{name}', which does not exist.");
        await policies.SetAsync(policy, cancellationToken);
        await audit.AppendAsync(actor, AuditActions.PolicyChanged, new JsonObject
        {
            ["deployment"] = policy.Deployment,
            ["policy"] = JsonSerializer.SerializeToNode(policy.ToDocument()),
        }, cancellationToken);
        Interlocked.Increment(ref version);
    }

    /// <summary>The deployment's pipeline: its policy (or the default), its blocklists, and
    /// any extra providers the host configured (classifiers, external moderation).</summary>
    public async ValueTask<SafetyPipeline> BuildPipelineAsync(string deployment, IEnumerable<IContentSafetyProvider>? extra = null, CancellationToken cancellationToken = default)
    {
        var policy = await GetPolicyAsync(deployment, cancellationToken);
        return SafetyPipeline.Create(policy, await blocklists.ListAsync(cancellationToken), extra);
    }
}

/// <summary>Blocklists on SQLite, one row per list with its definition as JSON.</summary>
public sealed class SqliteBlocklistStore(PlatformDatabase database, TimeProvider? time = null) : IBlocklistStore
{
    readonly JsonDocumentTable table = new(database, "blocklists", "name", "definition", time ?? TimeProvider.System);

    sealed record Definition(string Name, string Category, List<string> Terms, List<string> Patterns);

    public ValueTask<IReadOnlyList<Blocklist>> ListAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IReadOnlyList<Blocklist>>(table.List().Select(Parse).ToList());

    public ValueTask<Blocklist?> GetAsync(string name, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(table.Get(name) is { } json ? Parse(json) : null);

    public ValueTask<(Blocklist? Before, Blocklist After)> ChangeAsync(string name, Func<Blocklist?, Blocklist> change, CancellationToken cancellationToken = default)
    {
        Blocklist? before = null, after = null;
        table.Change(name, json =>
        {
            before = json is null ? null : Parse(json);
            after = change(before);
            return JsonSerializer.Serialize(new Definition(after.Name, after.Category.WireName(), [.. after.Terms], [.. after.Patterns]));
        });
        return ValueTask.FromResult((before, after!));
    }

    public ValueTask<bool> DeleteAsync(string name, CancellationToken cancellationToken = default) => ValueTask.FromResult(table.Delete(name));

    static Blocklist Parse(string json)
    {
        var d = JsonSerializer.Deserialize<Definition>(json) ?? throw new InvalidDataException("Empty blocklist row.");
        return new Blocklist(d.Name, d.Terms, d.Patterns, SafetyNames.ParseCategory(d.Category));
    }
}

/// <summary>Safety policies on SQLite, one row per deployment, stored as SafetyPolicyDocument JSON.</summary>
public sealed class SqliteSafetyPolicyStore(PlatformDatabase database, TimeProvider? time = null) : ISafetyPolicyStore
{
    readonly JsonDocumentTable table = new(database, "safety_policies", "deployment", "policy", time ?? TimeProvider.System);

    public ValueTask<SafetyPolicy?> GetAsync(string deployment, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(table.Get(deployment) is { } json ? SafetyPolicy.FromJson(json) : null);

    public ValueTask<IReadOnlyList<SafetyPolicy>> ListAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IReadOnlyList<SafetyPolicy>>(table.List().Select(SafetyPolicy.FromJson).ToList());

    public ValueTask SetAsync(SafetyPolicy policy, CancellationToken cancellationToken = default)
    {
        table.Upsert(policy.Deployment, policy.ToJson());
        return ValueTask.CompletedTask;
    }

    public ValueTask<bool> DeleteAsync(string deployment, CancellationToken cancellationToken = default) => ValueTask.FromResult(table.Delete(deployment));
}

/// <summary>A table of JSON documents keyed by name, with the time of the last write: the shape
/// the blocklist and safety-policy stores share. Table and column names come from code, never
/// from input.</summary>
sealed class JsonDocumentTable(PlatformDatabase database, string table, string key, string document, TimeProvider clock)
{
    public string? Get(string name) => database.Use(connection => Read(connection, null, name));

    /// <summary>Every document, in key order.</summary>
    public List<string> List() => database.Use(connection =>
    {
        using var command = Command(connection, $"SELECT {document} FROM {table} ORDER BY {key}");
        using var reader = command.ExecuteReader();
        var documents = new List<string>();
        while (reader.Read()) documents.Add(reader.GetString(0));
        return documents;
    });

    public void Upsert(string name, string json) => database.Use(connection =>
    {
        Write(connection, null, name, json);
        return true;
    });

    /// <summary>Reads the document named <paramref name="name"/> (null when there is none) and
    /// writes the one <paramref name="change"/> returns for it, in one IMMEDIATE transaction: it
    /// takes the write lock before reading, so a change from another connection waits for this
    /// one instead of building on the same read and overwriting it.</summary>
    public void Change(string name, Func<string?, string> change) => database.Use(connection =>
    {
        using var transaction = connection.BeginTransaction(deferred: false);
        Write(connection, transaction, name, change(Read(connection, transaction, name)));
        transaction.Commit();
        return true;
    });

    string? Read(SqliteConnection connection, SqliteTransaction? transaction, string name)
    {
        using var command = Command(connection, $"SELECT {document} FROM {table} WHERE {key} = $key", ("$key", name));
        command.Transaction = transaction;
        return command.ExecuteScalar() as string;
    }

    void Write(SqliteConnection connection, SqliteTransaction? transaction, string name, string json)
    {
        using var command = Command(connection, $"""
            INSERT INTO {table} ({key}, {document}, updated_at) VALUES ($key, $document, $at)
            ON CONFLICT ({key}) DO UPDATE SET {document} = excluded.{document}, updated_at = excluded.updated_at
            """, ("$key", name), ("$document", json), ("$at", FormatTime(clock.GetUtcNow())));
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    /// <summary>Whether a row was there to delete.</summary>
    public bool Delete(string name) => database.Use(connection =>
    {
        using var command = Command(connection, $"DELETE FROM {table} WHERE {key} = $key", ("$key", name));
        return command.ExecuteNonQuery() == 1;
    });
}
