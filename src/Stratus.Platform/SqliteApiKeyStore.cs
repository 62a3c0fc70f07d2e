// IApiKeyStore on SQLite (table api_keys). Names are unique among active keys (a partial
// unique index), so a revoked key's name can be reused.
using Microsoft.Data.Sqlite;
using Stratus.Safety;
using static Stratus.Platform.PlatformDatabase;

namespace Stratus.Platform;

public sealed class SqliteApiKeyStore(PlatformDatabase database) : IApiKeyStore
{
    const string Columns = "id, name, scopes, rpm, tpm, created_at, revoked_at, salt, hash";
    const int SqliteConstraint = 19;

    public ValueTask InsertAsync(StoredApiKey key, CancellationToken cancellationToken = default)
    {
        var r = key.Record;
        database.Use(connection =>
        {
            using var command = Command(connection,
                "INSERT INTO api_keys (id, name, salt, hash, scopes, rpm, tpm, created_at, revoked_at) VALUES ($id, $name, $salt, $hash, $scopes, $rpm, $tpm, $created, $revoked)",
                ("$id", r.Id), ("$name", r.Name), ("$salt", key.Salt), ("$hash", key.Hash), ("$scopes", (int)r.Scopes),
                ("$rpm", r.Limits.RequestsPerMinute), ("$tpm", r.Limits.TokensPerMinute), ("$created", FormatTime(r.CreatedAt)),
                ("$revoked", r.RevokedAt is { } at ? FormatTime(at) : null));
            try
            {
                return command.ExecuteNonQuery();
            }
            catch (SqliteException e) when (e.SqliteErrorCode == SqliteConstraint)
            {
                throw new TrustUserException($"An active API key named '{r.Name}' already exists.", e);
            }
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

    public ValueTask<bool> RevokeAsync(string id, DateTimeOffset at, CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Use(connection =>
    {
        using var command = Command(connection, "UPDATE api_keys SET revoked_at = $at WHERE id = $id AND revoked_at IS NULL", ("$id", id), ("$at", FormatTime(at)));
        return command.ExecuteNonQuery() == 1;
    }));

    public ValueTask<bool> SetLimitsAsync(string id, RateLimits limits, CancellationToken cancellationToken = default) => ValueTask.FromResult(database.Use(connection =>
    {
        using var command = Command(connection, "UPDATE api_keys SET rpm = $rpm, tpm = $tpm WHERE id = $id",
            ("$id", id), ("$rpm", limits.RequestsPerMinute), ("$tpm", limits.TokensPerMinute));
        return command.ExecuteNonQuery() == 1;
    }));

    static ApiKeyRecord ReadRecord(SqliteDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        (ApiKeyScopes)r.GetInt32(2),
        new RateLimits(r.GetInt32(3), r.GetInt32(4)),
        ParseTime(r.GetString(5)),
        r.IsDBNull(6) ? null : ParseTime(r.GetString(6)));
}
