// A PostgreSQL target that holds a database copy in the server: Stratus's tables made as a copy
// makes them, and a trigger that sleeps in the COPY of api_keys (as a long table or its foreign
// keys' checks hold it there) until the statement is cancelled; with what a test asks of the
// server to tell the copy is there, and that it is over. Linked into the CLI's tests too.
using Npgsql;

namespace Stratus.Platform.Tests;

public static class SlowCopyTarget
{
    /// <summary>A count the target's database answers.</summary>
    public static long Count(string connection, string sql)
    {
        using var database = new NpgsqlConnection(connection);
        database.Open();
        using var count = new NpgsqlCommand(sql, database);
        return (long)count.ExecuteScalar()!;
    }

    public const string Sleeping = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'";
    public const string AdvisoryLocks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";

    /// <summary>The target's tables, made as a copy would make them, with a trigger that holds the
    /// COPY of api_keys in the server (as a long table or its foreign keys' checks do) until cancelled.</summary>
    public static void Create(string directory, string target)
    {
        PlatformDatabase.Open(directory, target, null);
        using var database = new NpgsqlConnection(target);
        database.Open();
        using var slow = new NpgsqlCommand("""
            CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(600); RETURN NEW; END $$;
            CREATE TRIGGER slow_insert BEFORE INSERT ON api_keys FOR EACH ROW EXECUTE FUNCTION slow_insert();
            """, database);
        slow.ExecuteNonQuery();
    }

    /// <summary>Waits until the copy's COPY sleeps in the target's trigger.</summary>
    public static void WaitUntilCopying(string target, Func<bool> gone)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (Count(target, Sleeping) == 0)
        {
            Assert.False(gone(), "the copy ended before it reached the COPY");
            Assert.True(DateTime.UtcNow < deadline, "the copy never reached the COPY");
            Thread.Sleep(20);
        }
    }
}
