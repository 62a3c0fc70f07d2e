// IApiKeyStore on the platform database, SQLite or PostgreSQL (table api_keys). Names are unique
// among active keys (a partial unique index), so a revoked key's name can be reused. Each change
// and its audit entry are one write transaction. A rotated key keeps the secret it replaced in previous_salt and
// previous_hash, working until previous_expires_at.
using System.Data.Common;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public sealed class SqlApiKeyStore(PlatformDatabase database, SqlAuditLog audit) : IApiKeyStore
{
    const string Columns = "id, name, scopes, rpm, tpm, created_at, revoked_at, expires_at, previous_expires_at, salt, hash, previous_salt, previous_hash";

    public ValueTask InsertAsync(StoredApiKey key, AuditRecord entry, CancellationToken cancellationToken = default)
    {
        var r = key.Record;
        database.Write(transaction =>
        {
            using var command = Command(transaction.Connection!,
                "INSERT INTO api_keys (id, name, salt, hash, scopes, rpm, tpm, created_at, revoked_at, expires_at) VALUES (@id, @name, @salt, @hash, @scopes, @rpm, @tpm, @created, @revoked, @expires)",
                ("@id", r.Id), ("@name", r.Name), ("@salt", key.Salt), ("@hash", key.Hash), ("@scopes", (int)r.Scopes),
                ("@rpm", r.Limits.RequestsPerMinute), ("@tpm", r.Limits.TokensPerMinute), ("@created", FormatTime(r.CreatedAt)),
                ("@revoked", r.RevokedAt is { } at ? FormatTime(at) : null), ("@expires", r.ExpiresAt is { } expires ? FormatTime(expires) : null));
            command.Transaction = transaction;
            try
            {
                command.ExecuteNonQuery();
            }
            catch (DbException e) when (database.IsUniqueViolation(e))
            {
                throw new TrustUserException($"An active API key named '{r.Name}' already exists (an expired key too, until it is revoked); revoke it or choose another name.", e);
            }
            return audit.Append(transaction, entry);
        });
        return ValueTask.CompletedTask;
    }

    /// <summary>Once per authenticated request, so asynchronously (PlatformDatabase.UseAsync);
    /// not cached, so a key revoked by any process stops working on its next request.</summary>
    public ValueTask<StoredApiKey?> FindAsync(string id, CancellationToken cancellationToken = default) => database.UseAsync(async (connection, synchronously, cancellation) =>
    {
        using var command = Command(connection, $"SELECT {Columns} FROM api_keys WHERE id = @id", ("@id", id));
        using var reader = await ReaderAsync(command, synchronously, cancellation);
        return await NextRowAsync(reader, synchronously, cancellation)
            ? new StoredApiKey(ReadRecord(reader), (byte[])reader["salt"], (byte[])reader["hash"], reader["previous_salt"] as byte[], reader["previous_hash"] as byte[])
            : null;
    }, cancellationToken);

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

    public ValueTask<bool> RevokeAsync(string id, DateTimeOffset at, AuditRecord entry, CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Write(transaction =>
    {
        using var command = Command(transaction.Connection!, "UPDATE api_keys SET revoked_at = @at WHERE id = @id AND revoked_at IS NULL", ("@id", id), ("@at", FormatTime(at)));
        command.Transaction = transaction;
        if (command.ExecuteNonQuery() != 1) return false;
        audit.Append(transaction, entry);
        return true;
    }));

    public ValueTask<RateLimits?> ChangeLimitsAsync(string id, Func<RateLimits, RateLimits> change, Func<RateLimits, AuditRecord> entry,
        CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Write(transaction =>
    {
        RateLimits before;
        using (var read = Command(transaction.Connection!, "SELECT rpm, tpm FROM api_keys WHERE id = @id AND revoked_at IS NULL", ("@id", id)))
        {
            read.Transaction = transaction;
            using var reader = read.ExecuteReader();
            if (!reader.Read()) return (RateLimits?)null;
            before = new RateLimits(reader.GetInt32(0), reader.GetInt32(1));
        }
        var after = change(before);
        using var write = Command(transaction.Connection!, "UPDATE api_keys SET rpm = @rpm, tpm = @tpm WHERE id = @id",
            ("@id", id), ("@rpm", after.RequestsPerMinute), ("@tpm", after.TokensPerMinute));
        write.Transaction = transaction;
        write.ExecuteNonQuery();
        audit.Append(transaction, entry(after));
        return after;
    }));

    public ValueTask<ApiKeyRecord?> RotateAsync(string id, byte[] salt, byte[] hash, DateTimeOffset previousUntil, Func<ApiKeyRecord, AuditRecord> entry,
        CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Write(transaction =>
    {
        ApiKeyRecord before;
        using (var read = Command(transaction.Connection!, $"SELECT {Columns} FROM api_keys WHERE id = @id AND revoked_at IS NULL", ("@id", id)))
        {
            read.Transaction = transaction;
            using var reader = read.ExecuteReader();
            if (!reader.Read()) return null;
            before = ReadRecord(reader);
        }
        // The right-hand sides read the row as it was: the secret replaced becomes the previous one.
        using var write = Command(transaction.Connection!,
            "UPDATE api_keys SET previous_salt = salt, previous_hash = hash, previous_expires_at = @until, salt = @salt, hash = @hash WHERE id = @id",
            ("@id", id), ("@salt", salt), ("@hash", hash), ("@until", FormatTime(previousUntil)));
        write.Transaction = transaction;
        write.ExecuteNonQuery();
        audit.Append(transaction, entry(before));
        return before;
    }));

    static ApiKeyRecord ReadRecord(DbDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        (ApiKeyScopes)r.GetInt32(2),
        new RateLimits(r.GetInt32(3), r.GetInt32(4)),
        ParseTime(r.GetString(5)),
        r.IsDBNull(6) ? null : ParseTime(r.GetString(6)),
        r.IsDBNull(7) ? null : ParseTime(r.GetString(7)),
        r.IsDBNull(8) ? null : ParseTime(r.GetString(8)));
}
