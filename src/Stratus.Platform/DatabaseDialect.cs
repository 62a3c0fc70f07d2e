// What the platform database does differently on each database it runs on. The stores share one
// SQL (parameters named @x, which both drivers read); only the schema with its migrations, how a
// write transaction takes the lock, and how a failure is told to the operator differ.
using System.Data.Common;

namespace Stratus.Platform;

abstract class DatabaseDialect
{
    /// <summary>The database as messages name it (never with a password).</summary>
    public abstract string Name { get; }

    /// <summary>An open connection, set up for the stores: opened synchronously, or with the
    /// driver's asynchronous I/O (PlatformDatabase.UseAsync).</summary>
    public abstract ValueTask<DbConnection> ConnectAsync(bool synchronously, CancellationToken cancellationToken);

    public DbConnection Connect() => PlatformDatabase.Completed(ConnectAsync(synchronously: true, CancellationToken.None));

    /// <summary>A transaction that holds the write lock before its first statement, so what it
    /// reads no other writer changes before it commits.</summary>
    public abstract ValueTask<DbTransaction> BeginWriteAsync(DbConnection connection, bool synchronously, CancellationToken cancellationToken);

    public DbTransaction BeginWrite(DbConnection connection) => PlatformDatabase.Completed(BeginWriteAsync(connection, synchronously: true, CancellationToken.None));

    /// <summary>Refuses another application's database and one from a newer Stratus; creates or
    /// migrates the schema under the write lock otherwise.</summary>
    public abstract void Migrate(DbConnection connection);

    /// <summary>What went wrong, in the operator's terms and naming the database; null for an
    /// error that is not the machine's (a bug).</summary>
    public abstract string? Describe(DbException e);

    /// <summary>Whether the database holds Stratus's tables (of any version).</summary>
    public abstract bool HoldsStratus(DbConnection connection);

    public abstract bool IsUniqueViolation(DbException e);

    /// <summary><paramref name="column"/> and <paramref name="parameter"/> compared with their ASCII
    /// letters' case ignored, and only theirs, as SQLite's lower() folds text whatever the locale.</summary>
    public abstract string SameIgnoringCase(string column, string parameter);

    /// <summary>The conflict target of an upsert on a case-insensitive key column.</summary>
    public abstract string CaseInsensitiveKey(string column);
}
