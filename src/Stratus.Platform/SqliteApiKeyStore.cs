// IApiKeyStore on SQLite (table api_keys). Names are unique among active keys (a partial
// unique index), so a revoked key's name can be reused. Each change and its audit entry are one
// write transaction.
using Microsoft.Data.Sqlite;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public sealed class SqliteApiKeyStore(PlatformDatabase database, SqliteAuditLog audit) : IApiKeyStore
{
    const string Columns = "id, name, scopes, rpm, tpm, created_at, revoked_at, expires_at, salt, hash";
    const int SqliteConstraint = 19;

    public ValueTask InsertAsync(StoredApiKey key, AuditRecord entry, CancellationToken cancellationToken = default)
    {
        var r = key.Record;
        database.Write(transaction =>
        {
            using var command = Command(transaction.Connection!,
                "INSERT INTO api_keys (id, name, salt, hash, scopes, rpm, tpm, created_at, revoked_at, expires_at) VALUES ($id, $name, $salt, $hash, $scopes, $rpm, $tpm, $created, $revoked, $expires)",
                ("$id", r.Id), ("$name", r.Name), ("$salt", key.Salt), ("$hash", key.Hash), ("$scopes", (int)r.Scopes),
                ("$rpm", r.Limits.RequestsPerMinute), ("$tpm", r.Limits.TokensPerMinute), ("$created", FormatTime(r.CreatedAt)),
                ("$revoked", r.RevokedAt is { } at ? FormatTime(at) : null), ("$expires", r.ExpiresAt is { } expires ? FormatTime(expires) : null));
            command.Transaction = transaction;
            try
            {
                command.ExecuteNonQuery();
            }
            catch (SqliteException e) when (e.SqliteErrorCode == SqliteConstraint)
            {
                throw new TrustUserException($"An active API key named '{r.Name}' already exists (an expired key too, until it is revoked); revoke it or choose another name.", e);
            }
            return audit.Append(transaction, entry);
        });
        return ValueTask.CompletedTask;
    }

    public ValueTask<StoredApiKey?> FindAsync(string id, CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Use(connection =>
    {
        using var command = Command(connection, $"SELECT {Columns} FROM api_keys WHERE id = $id", ("$id", id));
        using var reader = command.ExecuteReader();
        return reader.Read() ? new StoredApiKey(ReadRecord(reader), (byte[])reader["salt"], (byte[])reader["hash"]) : null;
    }));

    public ValueTask<IReadOnlyList<ApiKeyRecord>> ListAsync(bool includeRevoked, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IReadOnlyList<ApiKeyRecord>>(database.Use(connection =>
        {
            using var command = Command(connection,
                $"SELECT {Columns} FROM api_keys {(includeRevoked ? "" : "WHERE revoked_at IS NULL")} ORDER BY created_at, id");
            using var reader = command.ExecuteReader();
            var keys = new List<ApiKeyRecord>();
            while (reader.Read()) keys.Add(ReadRecord(reader));
            return keys;
        }));

    public ValueTask<bool> RevokeAsync(string id, DateTimeOffset at, AuditRecord entry, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(UpdateAudited("UPDATE api_keys SET revoked_at = $at WHERE id = $id AND revoked_at IS NULL", entry, ("$id", id), ("$at", FormatTime(at))));

    public ValueTask<bool> SetLimitsAsync(string id, RateLimits limits, AuditRecord entry, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(UpdateAudited("UPDATE api_keys SET rpm = $rpm, tpm = $tpm WHERE id = $id", entry,
            ("$id", id), ("$rpm", limits.RequestsPerMinute), ("$tpm", limits.TokensPerMinute)));

    /// <summary>Runs an UPDATE of one key and, when it changed the key, appends its audit entry,
    /// in one transaction.</summary>
    bool UpdateAudited(string sql, AuditRecord entry, params (string Name, object? Value)[] parameters) => database.Write(transaction =>
    {
        using var command = Command(transaction.Connection!, sql, parameters);
        command.Transaction = transaction;
        if (command.ExecuteNonQuery() != 1) return false;
        audit.Append(transaction, entry);
        return true;
    });

    static ApiKeyRecord ReadRecord(SqliteDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        (ApiKeyScopes)r.GetInt32(2),
        new RateLimits(r.GetInt32(3), r.GetInt32(4)),
        ParseTime(r.GetString(5)),
        r.IsDBNull(6) ? null : ParseTime(r.GetString(6)),
        r.IsDBNull(7) ? null : ParseTime(r.GetString(7)));
}
