// The platform's stores as one value, and the SQLite set used by default. The services above
// them see only the interfaces, so another backend would replace this one method.
namespace Stratus.Platform;

public sealed record PlatformStores(
    IApiKeyStore ApiKeys,
    IAuditLog Audit,
    IBlocklistStore Blocklists,
    ISafetyPolicyStore Policies,
    IUsageStore Usage)
{
    /// <summary>Opens stratus.db in the data directory (see StratusHome.Resolve).</summary>
    /// <param name="lockTimeout">How long a statement waits for another process's lock before
    /// failing; PlatformDatabase.DefaultLockTimeout when null.</param>
    public static PlatformStores OpenSqlite(string dataDir, TimeProvider? time = null, TimeSpan? lockTimeout = null)
    {
        var database = PlatformDatabase.Open(dataDir, lockTimeout);
        // The stores append a change's audit entry in the change's transaction.
        var audit = new SqliteAuditLog(database, time);
        return new PlatformStores(
            new SqliteApiKeyStore(database, audit),
            audit,
            new SqliteBlocklistStore(database, audit, time),
            new SqliteSafetyPolicyStore(database, audit, time),
            new SqliteUsageStore(database));
    }

    public ApiKeyService KeyService(TimeProvider? time = null) => new(ApiKeys, time);

    public SafetyConfiguration SafetyConfiguration() => new(Blocklists, Policies);
}
