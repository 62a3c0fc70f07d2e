// The audit log: an append-only, hash-chained record of who changed what. Each entry's hash is
// SHA-256(previous entry's hash || this entry's canonical content), where the canonical
// content is the JSON array [sequence, time, actor, action, details]. Changing, deleting or
// reordering an entry breaks the chain at that entry, and the verifier names it. Truncating
// the newest entries leaves a valid shorter chain: record HeadHash somewhere else (a ticket, a
// second system) to catch that too.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Safety;

namespace Stratus.Platform;

public static class AuditActions
{
    public const string KeyCreated = "key.created";
    public const string KeyRevoked = "key.revoked";
    public const string KeyLimitsChanged = "key.limits_changed";
    public const string KeyRotated = "key.rotated";
    public const string PolicyChanged = "policy.changed";
    public const string BlocklistChanged = "blocklist.changed";
    public const string ModelDeployed = "model.deployed";
    public const string ModelRegistered = "model.registered";
    public const string ModelAliasSet = "model.alias_set";
    public const string ModelAliasRemoved = "model.alias_removed";
    public const string ModelVersionDeleted = "model.version_deleted";
    public const string DatabaseBackedUp = "database.backed_up";
    public const string DatabaseCopied = "database.copied";
    public const string RequestFiltered = "request.filtered";
    public const string JobSubmitted = "job.submitted";
    public const string JobCancelled = "job.cancelled";
}

/// <summary>An entry to append, before the log gives it a sequence number, time and hash: what a
/// store writes in the transaction of the change it records, so that a change is never stored
/// without its entry, nor an entry without its change.</summary>
public sealed record AuditRecord(string Actor, string Action, JsonObject Details);

/// <param name="Details">Compact JSON object, stored and hashed exactly as written.</param>
public sealed record AuditEntry(long Sequence, DateTimeOffset Time, string Actor, string Action, string Details, string Hash);

/// <param name="FirstBadSequence">The first entry that fails, or null when the chain holds.</param>
/// <param name="HeadHash">The last entry's hash: keep it elsewhere to detect truncation.</param>
public sealed record AuditVerification(bool Valid, long EntriesChecked, long? FirstBadSequence, string? Problem, string HeadHash);

/// <param name="AfterSequence">Entries with a larger sequence number (paging).</param>
public sealed record AuditQuery(long AfterSequence = 0, int Limit = 100, string? Action = null, string? Actor = null, DateTimeOffset? From = null, DateTimeOffset? To = null);

public interface IAuditLog
{
    ValueTask<AuditEntry> AppendAsync(string actor, string action, JsonObject? details = null, CancellationToken cancellationToken = default);
    ValueTask<IReadOnlyList<AuditEntry>> ReadAsync(AuditQuery query, CancellationToken cancellationToken = default);
    ValueTask<AuditVerification> VerifyAsync(CancellationToken cancellationToken = default);
}

/// <summary>The chain arithmetic, shared by every IAuditLog so all stores verify alike.</summary>
public static class AuditChain
{
    public static readonly string GenesisHash = new('0', 64);

    public static string CanonicalContent(long sequence, DateTimeOffset time, string actor, string action, string details)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartArray();
            writer.WriteNumberValue(sequence);
            writer.WriteStringValue(PlatformDatabase.FormatTime(time));
            writer.WriteStringValue(actor);
            writer.WriteStringValue(action);
            writer.WriteStringValue(details);
            writer.WriteEndArray();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public static string ComputeHash(string previousHash, long sequence, DateTimeOffset time, string actor, string action, string details) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(previousHash + CanonicalContent(sequence, time, actor, action, details))));

    /// <summary>Checks entries in sequence order: numbering must run 1, 2, 3... without gaps
    /// and each hash must follow from its predecessor and content.</summary>
    public static AuditVerification Verify(IEnumerable<AuditEntry> entriesInOrder)
    {
        var previousHash = GenesisHash;
        long expected = 1, checkedCount = 0;
        foreach (var e in entriesInOrder)
        {
            if (e.Sequence != expected)
                return new(false, checkedCount, e.Sequence, e.Sequence > expected
                    ? $"Entry {e.Sequence} follows entry {expected - 1}: {(e.Sequence - expected == 1 ? $"entry {expected} is" : $"entries {expected}-{e.Sequence - 1} are")} missing (deleted)."
                    : $"Entry {e.Sequence} appears after entry {expected - 1}: entries were reordered or duplicated.", previousHash);
            if (ComputeHash(previousHash, e.Sequence, e.Time, e.Actor, e.Action, e.Details) != e.Hash)
                return new(false, checkedCount, e.Sequence,
                    $"Entry {e.Sequence} does not match its hash: it was modified, or entries were reordered.", previousHash);
            previousHash = e.Hash;
            expected++;
            checkedCount++;
        }
        return new(true, checkedCount, null, null, previousHash);
    }
}

/// <summary>Builds details objects that say what happened without recording user content,
/// unless the operator opted in (recordContent) for investigations.</summary>
public static class AuditDetails
{
    /// <summary>At most this many entries of a list (terms added, patterns that matched) are
    /// written into one entry, and at most MaxListCharacters of them in all, so a list replaced
    /// by one of 100,000 terms does not make one audit entry of megabytes; "&lt;field&gt;_more"
    /// counts those left out.</summary>
    public const int MaxListEntries = 20;
    public const int MaxListCharacters = 2000;

    /// <summary>A blocklist created, changed (<paramref name="before"/> and
    /// <paramref name="after"/>) or deleted (<paramref name="after"/> null): the terms and
    /// patterns added and removed, which is what an auditor asks (who added this term, and
    /// when), and the list's counts after. The entries are the operator's, not users' content.</summary>
    public static JsonObject BlocklistChanged(Blocklist? before, Blocklist? after)
    {
        var list = after ?? before ?? throw new ArgumentException("A change has a list before or after it.");
        var details = new JsonObject
        {
            ["name"] = list.Name,
            ["operation"] = before is null ? "created" : after is null ? "deleted" : "updated",
            ["category"] = list.Category.WireName(),
        };
        if (before is not null && after is not null && before.Category != after.Category) details["previous_category"] = before.Category.WireName();
        if (after is not null)
        {
            details["terms"] = after.Terms.Count;
            details["patterns"] = after.Patterns.Count;
        }
        // Terms are one entry when they match alike (Blocklist.EntryKey), as the list keeps them.
        var termsBefore = (before?.Terms ?? []).Select(Blocklist.EntryKey).ToHashSet(StringComparer.Ordinal);
        var termsAfter = (after?.Terms ?? []).Select(Blocklist.EntryKey).ToHashSet(StringComparer.Ordinal);
        AddList(details, "terms_added", (after?.Terms ?? []).Where(t => !termsBefore.Contains(Blocklist.EntryKey(t))));
        AddList(details, "terms_removed", (before?.Terms ?? []).Where(t => !termsAfter.Contains(Blocklist.EntryKey(t))));
        AddList(details, "patterns_added", (after?.Patterns ?? []).Except(before?.Patterns ?? [], StringComparer.Ordinal));
        AddList(details, "patterns_removed", (before?.Patterns ?? []).Except(after?.Patterns ?? [], StringComparer.Ordinal));
        return details;
    }

    /// <summary>Writes <paramref name="entries"/> as the array <paramref name="field"/>, capped
    /// (MaxListEntries, MaxListCharacters), with "&lt;field&gt;_more" counting those left out;
    /// nothing when there are none.</summary>
    static void AddList(JsonObject details, string field, IEnumerable<string> entries)
    {
        var written = new JsonArray();
        int characters = 0, more = 0;
        foreach (var entry in entries)
        {
            if (written.Count == MaxListEntries || (written.Count > 0 && characters + entry.Length > MaxListCharacters)) more++;
            else
            {
                written.Add(entry);
                characters += entry.Length;
            }
        }
        if (written.Count == 0) return;
        details[field] = written;
        if (more > 0) details[field + "_more"] = more;
    }

    /// <param name="requestId">The request's id (the server's x-request-id, its access-log line's
    /// request_id), so the entry a client's complaint quotes can be found; null where the host has none.</param>
    public static JsonObject FilteredRequest(string keyId, string deployment, SafetyVerdict verdict, string content, bool recordContent, string? requestId = null)
    {
        var details = new JsonObject
        {
            ["key_id"] = keyId,
            ["deployment"] = deployment,
            ["request_id"] = requestId,
            ["direction"] = verdict.Direction == ContentDirection.Prompt ? "prompt" : "completion",
            ["filtered"] = new JsonArray([.. verdict.Filtered.Select(r => (JsonNode)Filtered(r))]),
            // A digest lets an investigator match a complaint to the entry without the log
            // holding the text.
            ["content_sha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(content))),
            ["content_length"] = content.Length,
        };
        if (recordContent) details["content"] = content;
        return details;
    }

    /// <summary>One result that filtered a request, with what matched: a blocklist's terms and
    /// patterns as the list has them, or the labels of other providers' spans (PII kinds such as
    /// EMAIL, injection signal families), never the text they matched.</summary>
    static JsonObject Filtered(CategoryResult result)
    {
        var details = new JsonObject
        {
            ["category"] = result.Category.WireName(),
            ["severity"] = result.Severity.WireName(),
            ["source"] = result.Source,
            ["blocklist"] = result.Blocklist,
        };
        if (result.Blocklist is not null)
        {
            AddList(details, "terms", result.Matches.Where(m => m.Label == CompiledBlocklist.TermLabel && m.Entry is not null).Select(m => m.Entry!).Distinct(StringComparer.Ordinal));
            AddList(details, "patterns", result.Matches.Where(m => m.Label != CompiledBlocklist.TermLabel && m.Entry is not null).Select(m => m.Entry!).Distinct(StringComparer.Ordinal));
        }
        else AddList(details, "matched", result.Matches.Select(m => m.Label).Distinct(StringComparer.Ordinal));
        return details;
    }
}
