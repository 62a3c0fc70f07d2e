// Stored safety configuration: custom blocklists and per-deployment policies behind
// interfaces, and SafetyConfiguration, which validates every change, has it stored with its
// audit entry in one transaction and builds a deployment's SafetyPipeline from what is stored.
// A blocklist changes in one write transaction from the list it reads to the list it stores, so
// changes made at once (two `blocklist add`s, the CLI and the admin API) each build on the one
// before instead of losing it; and a policy never names a missing list, since deleting a list and
// saving a policy each check the other table in the transaction that writes. A server builds a
// deployment's pipeline every few seconds (SafetyPipelineCache) from what is stored; the lists it
// compiles are kept by their content's version, so a list is compiled once per content, not once
// per rebuild (1,000 patterns: 1.3 GiB allocated and 1.6-1.8 s of CPU each time, bench/README.md),
// and a list changed through this instance (the admin API) is compiled once, to validate it: the
// rebuild that follows takes that compilation.
using System.Collections.Concurrent;
using System.Data.Common;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public interface IBlocklistStore
{
    ValueTask<IReadOnlyList<Blocklist>> ListAsync(CancellationToken cancellationToken = default);
    ValueTask<Blocklist?> GetAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Reads the list named <paramref name="name"/> (null when there is none) and stores
    /// what <paramref name="change"/> makes of it with the audit entry <paramref name="audit"/>
    /// makes of the two, atomically: no other change, from this process or another, comes in
    /// between. An exception from <paramref name="change"/> stores nothing, and so does an audit
    /// entry of null, which says that the change changes nothing.</summary>
    /// <returns>The list as it is now.</returns>
    ValueTask<Blocklist> ChangeAsync(string name, Func<Blocklist?, Blocklist> change, Func<Blocklist?, Blocklist, AuditRecord?> audit, CancellationToken cancellationToken = default);

    /// <summary>Deletes the list, with the audit entry <paramref name="audit"/> makes of it,
    /// unless a stored safety policy names it, checked in the write that deletes it, so a policy
    /// saved meanwhile cannot be left naming a missing list.</summary>
    /// <returns>False when there is no list of this name (nothing is audited).</returns>
    /// <exception cref="TrustUserException">A policy names the list; nothing is deleted.</exception>
    ValueTask<bool> DeleteAsync(string name, Func<Blocklist, AuditRecord> audit, CancellationToken cancellationToken = default);
}

public interface ISafetyPolicyStore
{
    ValueTask<SafetyPolicy?> GetAsync(string deployment, CancellationToken cancellationToken = default);
    ValueTask<IReadOnlyList<SafetyPolicy>> ListAsync(CancellationToken cancellationToken = default);
    /// <summary>Stores the policy, with its audit entry, if every blocklist it names exists,
    /// checked in the write that stores it, so a list deleted meanwhile cannot be left named by a
    /// policy.</summary>
    /// <exception cref="TrustUserException">A named blocklist does not exist; nothing is stored.</exception>
    ValueTask SetAsync(SafetyPolicy policy, AuditRecord audit, CancellationToken cancellationToken = default);
    /// <summary>Deletes the deployment's stored policy, with its audit entry, in one write.</summary>
    /// <returns>False when it has none (nothing is audited).</returns>
    ValueTask<bool> DeleteAsync(string deployment, AuditRecord audit, CancellationToken cancellationToken = default);
}

public sealed class SafetyConfiguration(IBlocklistStore blocklists, ISafetyPolicyStore policies)
{
    long version;

    /// <summary>The blocklists compiled for the pipelines built here, by name (as the stores
    /// compare names), each with the version of the content it was compiled from: a rebuild takes
    /// the list compiled before where the stored content has that version, and compiles the list
    /// once where it has another (Lazy: deployments rebuilding at once wait for one compilation).
    /// A change stored through this instance puts the list it compiled to validate it here. A list
    /// no longer stored is dropped at the next build, so what is kept is bounded by what is
    /// configured.</summary>
    readonly ConcurrentDictionary<string, Compiled> compiled = new(StringComparer.OrdinalIgnoreCase);

    sealed class Compiled(string version, Lazy<CompiledBlocklist> list)
    {
        public string Version { get; } = version;
        public Lazy<CompiledBlocklist> List { get; } = list;
    }

    /// <summary>Increases with every change made through this instance, so a server can cache
    /// pipelines per deployment and rebuild them when it moves.</summary>
    public long Version => Interlocked.Read(ref version);

    public ValueTask<IReadOnlyList<Blocklist>> ListBlocklistsAsync(CancellationToken cancellationToken = default) => blocklists.ListAsync(cancellationToken);

    public ValueTask<Blocklist?> GetBlocklistAsync(string name, CancellationToken cancellationToken = default) => blocklists.GetAsync(name, cancellationToken);

    /// <summary>The version of a blocklist's content (the admin API's ETag): lists with equal
    /// content have equal versions, and any change makes a new one. Content rather than a counter,
    /// so the stores keep no extra column and a list put back as it was matches its old version,
    /// which loses no one's change. The content is a set: matching does not depend on the order of
    /// terms or patterns (CompiledBlocklist), so they are hashed sorted, each as stored, and a term
    /// removed and added back (which moves it to the end) is not a change.</summary>
    public static string VersionOf(Blocklist list)
    {
        var content = JsonSerializer.SerializeToUtf8Bytes(new object[] { list.Name, list.Category.WireName(), Sorted(list.Terms), Sorted(list.Patterns) });
        return Convert.ToHexStringLower(SHA256.HashData(content).AsSpan(0, 16));

        static string[] Sorted(IReadOnlyList<string> entries) => [.. entries.Order(StringComparer.Ordinal)];
    }

    /// <summary>Creates the blocklist, or replaces the one of that name. With
    /// <paramref name="ifVersions"/>, only while the stored list has one of these versions
    /// (<see cref="VersionOf"/>; "*" is any version of a list that exists), checked in the
    /// transaction that writes it, so a caller who read the list cannot overwrite a change made
    /// since.</summary>
    /// <exception cref="TrustUserException">The blocklist is invalid (bad regex, empty...).</exception>
    /// <exception cref="BlocklistVersionMismatchException">The stored list is not a version in
    /// <paramref name="ifVersions"/>; nothing is stored.</exception>
    public ValueTask<Blocklist> UpsertBlocklistAsync(Blocklist blocklist, string actor, IReadOnlyCollection<string>? ifVersions = null,
        CancellationToken cancellationToken = default) =>
        ChangeBlocklistAsync(blocklist.Name, existing =>
        {
            if (ifVersions is not null)
            {
                var current = existing is null ? null : VersionOf(existing);
                if (current is null || !(ifVersions.Contains("*") || ifVersions.Contains(current)))
                    throw new BlocklistVersionMismatchException(blocklist.Name, current);
            }
            return blocklist;
        }, actor, cancellationToken);

    /// <summary>Adds terms and patterns to a blocklist, creating it when there is none; entries it
    /// has already are kept once, and adding only those changes nothing and is not audited. <paramref name="category"/> null keeps the list's own, or hate
    /// for a new list.</summary>
    /// <exception cref="TrustUserException">No entry given, or a pattern is not a valid regular
    /// expression.</exception>
    public ValueTask<Blocklist> AddToBlocklistAsync(string name, IReadOnlyCollection<string> terms, IReadOnlyCollection<string> patterns, SafetyCategory? category, string actor,
        CancellationToken cancellationToken = default)
    {
        RequireEntries(terms, patterns, "add");
        return ChangeBlocklistAsync(name, existing => new Blocklist(existing?.Name ?? name,
            [.. (existing?.Terms ?? []).Concat(terms)],
            [.. (existing?.Patterns ?? []).Concat(patterns)],
            category ?? existing?.Category ?? SafetyCategory.Hate), actor, cancellationToken);
    }

    /// <summary>Removes terms and patterns from a blocklist (DeleteBlocklistAsync removes the list).
    /// A term is found as it is matched: whatever its case, the whitespace around and in it and the
    /// form its letters are written in (Blocklist.EntryKey).</summary>
    /// <exception cref="TrustUserException">No entry given, no such blocklist, an entry it does
    /// not have, or the list would be empty.</exception>
    public ValueTask<Blocklist> RemoveFromBlocklistAsync(string name, IReadOnlyCollection<string> terms, IReadOnlyCollection<string> patterns, string actor,
        CancellationToken cancellationToken = default)
    {
        RequireEntries(terms, patterns, "remove");
        var drop = terms.Select(Blocklist.EntryKey).ToHashSet();
        return ChangeBlocklistAsync(name, existing =>
        {
            if (existing is null) throw new TrustUserException($"No blocklist named '{name}'.") { NotFound = true };
            var kept = existing.Terms.Select(Blocklist.EntryKey).ToHashSet();
            var missing = terms.Where(t => !kept.Contains(Blocklist.EntryKey(t)))
                .Concat(patterns.Where(p => !existing.Patterns.Contains(p, StringComparer.Ordinal))).ToList();
            if (missing.Count > 0) throw new TrustUserException($"Blocklist '{existing.Name}' has no entry {string.Join(", ", missing.Select(m => $"'{m}'"))}.");
            var after = existing with
            {
                Terms = [.. existing.Terms.Where(t => !drop.Contains(Blocklist.EntryKey(t)))],
                Patterns = [.. existing.Patterns.Where(p => !patterns.Contains(p, StringComparer.Ordinal))],
            };
            if (after.Terms.Count == 0 && after.Patterns.Count == 0)
                throw new TrustUserException($"Removing these entries would leave blocklist '{existing.Name}' empty, and a list has at least one: " +
                    $"delete the list itself (`stratus blocklist remove {existing.Name}` without entries, or DELETE /v1/admin/blocklists/{existing.Name}).");
            return after;
        }, actor, cancellationToken);
    }

    /// <summary>Refused rather than audited as a change that changed nothing.</summary>
    static void RequireEntries(IReadOnlyCollection<string> terms, IReadOnlyCollection<string> patterns, string verb)
    {
        if (terms.Count == 0 && patterns.Count == 0) throw new TrustUserException($"No entry to {verb}: give at least one term or pattern.");
    }

    /// <summary>Every blocklist change: validated and stored with its audit entry in one
    /// transaction with the read it builds on; one that leaves the list as it was (its version,
    /// VersionOf) is neither stored nor audited as a change, nor moves Version (which would
    /// have every deployment's pipeline built again).</summary>
    async ValueTask<Blocklist> ChangeBlocklistAsync(string name, Func<Blocklist?, Blocklist> change, string actor, CancellationToken cancellationToken)
    {
        var stored = false;
        CompiledBlocklist? validated = null;
        var after = await blocklists.ChangeAsync(name, existing =>
        {
            // Stored as matched, each entry once: a term kept with the spaces it was sent with
            // could not be removed as it is matched, nor told apart from its trimmed twin, and of
            // terms that match the same texts ("ｂｏｍｂ", "bomb") the first given stays.
            var changed = change(existing);
            changed = changed with
            {
                Terms = [.. changed.Terms.Select(Blocklist.CanonicalTerm).DistinctBy(Blocklist.EntryKey)],
                Patterns = [.. changed.Patterns.Distinct(StringComparer.Ordinal)],
            };
            validated = CompiledBlocklist.Compile(changed);
            foreach (var pattern in changed.Patterns.Except(existing?.Patterns ?? [], StringComparer.Ordinal))
                CompiledBlocklist.RequireMatchesText(changed.Name, pattern);
            return changed;
        }, (before, after) =>
        {
            if (before is not null && VersionOf(before) == VersionOf(after)) return null;
            stored = true;
            return new AuditRecord(actor, AuditActions.BlocklistChanged, AuditDetails.BlocklistChanged(before, after));
        }, cancellationToken);
        // Kept once the list is stored, not before: a change refused (or whose write failed) leaves
        // the list compiled from what is stored in place.
        if (validated is not null) Keep(validated.Source, new Lazy<CompiledBlocklist>(validated));
        if (stored) Interlocked.Increment(ref version);
        return after;
    }

    /// <exception cref="TrustUserException">No such blocklist, or a policy still uses it.</exception>
    public async ValueTask DeleteBlocklistAsync(string name, string actor, CancellationToken cancellationToken = default)
    {
        if (!await blocklists.DeleteAsync(name, list => new AuditRecord(actor, AuditActions.BlocklistChanged, AuditDetails.BlocklistChanged(list, null)), cancellationToken))
            throw new TrustUserException($"No blocklist named '{name}'.") { NotFound = true };
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
        await policies.SetAsync(policy, new AuditRecord(actor, AuditActions.PolicyChanged, new JsonObject
        {
            ["deployment"] = policy.Deployment,
            ["policy"] = JsonSerializer.SerializeToNode(policy.ToDocument()),
        }), cancellationToken);
        Interlocked.Increment(ref version);
    }

    /// <summary>Deletes the deployment's stored policy: it is served under the default policy
    /// again (SafetyPolicy.Default).</summary>
    /// <exception cref="TrustUserException">No policy is stored for it (NotFound).</exception>
    public async ValueTask DeletePolicyAsync(string deployment, string actor, CancellationToken cancellationToken = default)
    {
        SafetyPolicy.ValidateDeploymentName(deployment);
        var audit = new AuditRecord(actor, AuditActions.PolicyChanged, new JsonObject { ["deployment"] = deployment, ["operation"] = "deleted" });
        if (!await policies.DeleteAsync(deployment, audit, cancellationToken))
            throw new TrustUserException($"No safety policy is stored for deployment '{deployment}' (it is served under the default policy).") { NotFound = true };
        Interlocked.Increment(ref version);
    }

    /// <summary>The deployment's pipeline: its policy (or the default), its blocklists, and
    /// any extra providers the host configured (classifiers, external moderation). Its blocklists
    /// are those compiled before where their content is unchanged.</summary>
    public async ValueTask<SafetyPipeline> BuildPipelineAsync(string deployment, IEnumerable<IContentSafetyProvider>? extra = null, CancellationToken cancellationToken = default)
    {
        var policy = await GetPolicyAsync(deployment, cancellationToken);
        var stored = await blocklists.ListAsync(cancellationToken);
        foreach (var name in compiled.Keys.Except(stored.Select(l => l.Name), StringComparer.OrdinalIgnoreCase)) compiled.TryRemove(name, out _);
        return SafetyPipeline.Create(policy, stored, extra, Compile);
    }

    /// <summary>The list compiled from this content: the one kept where its version is the
    /// list's, else compiled now and kept in place of the one of its name.</summary>
    CompiledBlocklist Compile(Blocklist list)
    {
        var entry = Keep(list, new Lazy<CompiledBlocklist>(() => CompiledBlocklist.Compile(list)));
        try
        {
            return entry.List.Value;
        }
        catch
        {
            // Lazy keeps the exception; an invalid stored list is compiled again at the next build,
            // as one that failed for want of memory should be.
            compiled.TryRemove(KeyValuePair.Create(list.Name, entry));
            throw;
        }
    }

    /// <summary>The entry kept for <paramref name="list"/>'s content: the one of its name where
    /// it has the content's version, else <paramref name="compilation"/> (of that content) in its place.</summary>
    Compiled Keep(Blocklist list, Lazy<CompiledBlocklist> compilation)
    {
        var contentVersion = VersionOf(list);
        return compiled.AddOrUpdate(list.Name, _ => new Compiled(contentVersion, compilation),
            (_, kept) => kept.Version == contentVersion ? kept : new Compiled(contentVersion, compilation));
    }

    /// <summary>The blocklists kept compiled (tests).</summary>
    internal IReadOnlyList<CompiledBlocklist> CompiledBlocklists => [.. compiled.Values.Where(e => e.List.IsValueCreated).Select(e => e.List.Value)];
}

/// <summary>A conditional blocklist change found the list changed, or gone, since the caller
/// read it (the admin API's 412 for a stale If-Match).</summary>
public sealed class BlocklistVersionMismatchException(string name, string? currentVersion) : Exception(currentVersion is null
    ? $"Blocklist '{name}' does not exist (it was deleted since it was read); read the blocklists again before changing one."
    : $"Blocklist '{name}' has changed since it was read; read it again, redo the change and send it with the new version.")
{
    /// <summary>The stored list's version now; null when there is no list.</summary>
    public string? CurrentVersion => currentVersion;
}

/// <summary>Blocklists on the platform database, one row per list with its definition as JSON.</summary>
public sealed class SqlBlocklistStore(PlatformDatabase database, SqlAuditLog auditLog, TimeProvider? time = null) : IBlocklistStore
{
    readonly JsonDocumentTable blocklists = JsonDocumentTable.Blocklists(database, time ?? TimeProvider.System);
    readonly JsonDocumentTable policies = JsonDocumentTable.Policies(database, time ?? TimeProvider.System);

    sealed record Definition(string Name, string Category, List<string> Terms, List<string> Patterns);

    public ValueTask<IReadOnlyList<Blocklist>> ListAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IReadOnlyList<Blocklist>>(database.Use(connection => blocklists.List(connection).Select(Parse).ToList()));

    public ValueTask<Blocklist?> GetAsync(string name, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(database.Use(connection => blocklists.Get(connection, name)) is { } json ? Parse(json) : null);

    public ValueTask<Blocklist> ChangeAsync(string name, Func<Blocklist?, Blocklist> change, Func<Blocklist?, Blocklist, AuditRecord?> audit,
        CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(database.Write(transaction =>
        {
            var before = blocklists.Get(transaction.Connection!, name, transaction) is { } json ? Parse(json) : null;
            var after = change(before);
            if (audit(before, after) is not { } record) return before ?? after;
            blocklists.Put(transaction, name, JsonSerializer.Serialize(new Definition(after.Name, after.Category.WireName(), [.. after.Terms], [.. after.Patterns])));
            auditLog.Append(transaction, record);
            return after;
        }));

    public ValueTask<bool> DeleteAsync(string name, Func<Blocklist, AuditRecord> audit, CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Write(transaction =>
    {
        var users = policies.List(transaction.Connection!, transaction).Select(SafetyPolicy.FromJson)
            .Where(p => p.Blocklists.Contains(name, StringComparer.OrdinalIgnoreCase)).Select(p => p.Deployment).ToList();
        if (users.Count > 0)
            // Policies have no CLI verb: the one way to change them is said, for `stratus blocklist remove`.
            throw new TrustUserException($"Blocklist '{name}' is used by the safety policy of {string.Join(", ", users)}; remove it there first " +
                $"(PUT /v1/admin/policies/{users[0]} with an admin key, its \"blocklists\" without '{name}').");
        if (blocklists.Get(transaction.Connection!, name, transaction) is not { } json || !blocklists.Delete(transaction, name)) return false;
        auditLog.Append(transaction, audit(Parse(json)));
        return true;
    }));

    static Blocklist Parse(string json)
    {
        var d = JsonSerializer.Deserialize<Definition>(json) ?? throw new InvalidDataException("Empty blocklist row.");
        return new Blocklist(d.Name, d.Terms, d.Patterns, SafetyNames.ParseCategory(d.Category));
    }
}

/// <summary>Safety policies on the platform database, one row per deployment, stored as SafetyPolicyDocument JSON.</summary>
public sealed class SqlSafetyPolicyStore(PlatformDatabase database, SqlAuditLog auditLog, TimeProvider? time = null) : ISafetyPolicyStore
{
    readonly JsonDocumentTable policies = JsonDocumentTable.Policies(database, time ?? TimeProvider.System);
    readonly JsonDocumentTable blocklists = JsonDocumentTable.Blocklists(database, time ?? TimeProvider.System);

    public ValueTask<SafetyPolicy?> GetAsync(string deployment, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(database.Use(connection => policies.Get(connection, deployment)) is { } json ? SafetyPolicy.FromJson(json) : null);

    public ValueTask<IReadOnlyList<SafetyPolicy>> ListAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IReadOnlyList<SafetyPolicy>>(database.Use(connection => policies.List(connection).Select(SafetyPolicy.FromJson).ToList()));

    public ValueTask SetAsync(SafetyPolicy policy, AuditRecord audit, CancellationToken cancellationToken = default)
    {
        database.Write(transaction =>
        {
            foreach (var name in policy.Blocklists)
                if (blocklists.Get(transaction.Connection!, name, transaction) is null)
                    throw new TrustUserException($"Safety policy for '{policy.Deployment}' names blocklist '{name}', which does not exist.");
            policies.Put(transaction, policy.Deployment, policy.ToJson());
            return auditLog.Append(transaction, audit);
        });
        return ValueTask.CompletedTask;
    }

    public ValueTask<bool> DeleteAsync(string deployment, AuditRecord audit, CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Write(transaction =>
    {
        if (!policies.Delete(transaction, deployment)) return false;
        auditLog.Append(transaction, audit);
        return true;
    }));
}

/// <summary>A table of JSON documents keyed by name, with the time of the last write: the shape
/// the blocklist and safety-policy tables share. Reads take the transaction they are part of,
/// if any; writes always run in one, which the stores begin with PlatformDatabase.Write, so a
/// write and the reads it depends on (the list it changes, the policies that name a list) see
/// one state that no other writer changes before it commits. Table and column names come from
/// code, never from input. A blocklist's name is one whatever its case (Default and default):
/// such a key is compared lowered, as the schema's unique key compares it.</summary>
sealed class JsonDocumentTable(PlatformDatabase database, string table, string key, bool caseInsensitive, string document, TimeProvider clock)
{
    public static JsonDocumentTable Blocklists(PlatformDatabase database, TimeProvider clock) => new(database, "blocklists", "name", caseInsensitive: true, "definition", clock);
    public static JsonDocumentTable Policies(PlatformDatabase database, TimeProvider clock) => new(database, "safety_policies", "deployment", caseInsensitive: false, "policy", clock);

    string KeyIs => caseInsensitive ? database.Dialect.SameIgnoringCase(key, "@key") : $"{key} = @key";

    public string? Get(DbConnection connection, string name, DbTransaction? transaction = null)
    {
        using var command = Command(connection, $"SELECT {document} FROM {table} WHERE {KeyIs}", ("@key", name));
        command.Transaction = transaction;
        return command.ExecuteScalar() as string;
    }

    /// <summary>Every document, in key order: a case-insensitive key's lowered, as SQLite's
    /// NOCASE column sorts it (PostgreSQL's C collation puts every capital first).</summary>
    public List<string> List(DbConnection connection, DbTransaction? transaction = null)
    {
        using var command = Command(connection, $"SELECT {document} FROM {table} ORDER BY {(caseInsensitive ? $"lower({key})" : key)}");
        command.Transaction = transaction;
        using var reader = command.ExecuteReader();
        var documents = new List<string>();
        while (reader.Read()) documents.Add(reader.GetString(0));
        return documents;
    }

    public void Put(DbTransaction transaction, string name, string json)
    {
        using var command = Command(transaction.Connection!, $"""
            INSERT INTO {table} ({key}, {document}, updated_at) VALUES (@key, @document, @at)
            ON CONFLICT ({(caseInsensitive ? database.Dialect.CaseInsensitiveKey(key) : key)}) DO UPDATE SET {document} = excluded.{document}, updated_at = excluded.updated_at
            """, ("@key", name), ("@document", json), ("@at", FormatTime(clock.GetUtcNow())));
        command.Transaction = transaction;
        command.ExecuteNonQuery();
    }

    /// <summary>Whether a row was there to delete.</summary>
    public bool Delete(DbTransaction transaction, string name)
    {
        using var command = Command(transaction.Connection!, $"DELETE FROM {table} WHERE {KeyIs}", ("@key", name));
        command.Transaction = transaction;
        return command.ExecuteNonQuery() == 1;
    }
}
