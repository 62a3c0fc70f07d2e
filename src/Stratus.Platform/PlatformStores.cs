// The platform's stores as one value, on the data directory's database (SQLite's stratus.db, or
// the PostgreSQL database STRATUS_DATABASE names). The services above them see only the interfaces.
namespace Stratus.Platform;

public sealed record PlatformStores(
    IApiKeyStore ApiKeys,
    IAuditLog Audit,
    IBlocklistStore Blocklists,
    ISafetyPolicyStore Policies,
    IUsageStore Usage)
{
    /// <summary>Opens the data directory's database (see StratusHome.Resolve, PlatformDatabase.Open).</summary>
    /// <param name="lockTimeout">How long a statement waits for another process's lock before
    /// failing; PlatformDatabase.DefaultLockTimeout when null.</param>
    public static PlatformStores Open(string dataDir, TimeProvider? time = null, TimeSpan? lockTimeout = null) =>
        Open(PlatformDatabase.Open(dataDir, lockTimeout), time);

    public static PlatformStores Open(PlatformDatabase database, TimeProvider? time = null)
    {
        // The stores append a change's audit entry in the change's transaction.
        var audit = new SqlAuditLog(database, time);
        return new PlatformStores(
            new SqlApiKeyStore(database, audit),
            audit,
            new SqlBlocklistStore(database, audit, time),
            new SqlSafetyPolicyStore(database, audit, time),
            new SqlUsageStore(database));
    }

    public ApiKeyService KeyService(TimeProvider? time = null) => new(ApiKeys, time);

    public SafetyConfiguration SafetyConfiguration() => new(Blocklists, Policies);
}
