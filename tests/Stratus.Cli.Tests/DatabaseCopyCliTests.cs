// `stratus database copy` end to end: a key made on SQLite, copied with --to, authenticates nowhere
// but lists on PostgreSQL with STRATUS_DATABASE set, where `audit verify` passes, the copy's entry
// after the chain SQLite's verify reported, and stratus.db's log records the copy too; the rows per
// table are printed; a second copy into the same database, a missing target, a SQLite target, a bad
// --to (named as --to) and an older stratus.db are one line with exit 2 and no password; Ctrl+C
// stops a copy the server is working on with 130, the server's statement cancelled, nothing copied.
using System.Diagnostics;
using Stratus.Platform;
using Stratus.Platform.Tests;

namespace Stratus.Cli.Tests;

public sealed class DatabaseCopyCliTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    [Fact]
    public void Copy_moves_keys_and_the_audit_chain_to_postgresql_and_refuses_a_second_copy()
    {
        using var temp = new TempDirectory();
        var (code, stdout, stderr) = PostgresCliTests.Run("", temp, "keys", "create", "--name", "me", "--scopes", "inference");
        Assert.True(code == 0, stderr);
        (code, var verified, stderr) = PostgresCliTests.Run("", temp, "audit", "verify");
        Assert.True(code == 0, stderr);
        var head = verified.Split("head hash ")[1][..64];
        var target = postgres.NewSchema();

        (code, stdout, stderr) = PostgresCliTests.Run("", temp, "database", "copy", "--to", target);
        Assert.True(code == 0, stdout + stderr);
        Assert.StartsWith($"Copied {Path.Combine(temp["home"], PlatformDatabase.FileName)} to the PostgreSQL database {postgres.Name} on {postgres.Cluster.Folder}", stdout);
        Assert.Matches(@"api_keys\W+1\W", stdout);
        Assert.Matches(@"audit_log\W+1\W", stdout);
        Assert.Contains($"The audit log's chain ends at {head} as in stratus.db; entry 2 after it records the copy.", stdout);
        Assert.Contains("stratus.db's audit log records it too, as entry 2; its rows are left as they were.", stdout);
        (code, stdout, stderr) = PostgresCliTests.Run("", temp, "audit", "list");
        Assert.True(code == 0, stderr);
        Assert.Contains(AuditActions.DatabaseCopied, stdout);

        (code, stdout, stderr) = PostgresCliTests.Run(target, temp, "keys", "list");
        Assert.True(code == 0, stderr);
        Assert.Contains("me", stdout);
        (code, stdout, stderr) = PostgresCliTests.Run(target, temp, "audit", "verify");
        Assert.True(code == 0, stderr);
        Assert.StartsWith("audit log intact: 2 entries", stdout);
        (code, stdout, stderr) = PostgresCliTests.Run(target, temp, "audit", "list");
        Assert.Contains(AuditActions.DatabaseCopied, stdout);

        // STRATUS_DATABASE is the default target.
        (code, stdout, stderr) = PostgresCliTests.Run(target, temp, "database", "copy");
        Assert.Equal((2, ""), (code, stdout));
        Assert.Contains("already holds Stratus rows (1 in api_keys, 2 in audit_log)", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Theory]
    [InlineData("", "error: no PostgreSQL database to copy into: give --to")]
    [InlineData("/srv/stratus/stratus.db", "error: the database to copy into (/srv/stratus/stratus.db, from $STRATUS_DATABASE) is a SQLite file, not PostgreSQL")]
    [InlineData("postgresql://db.example.com", "error: $STRATUS_DATABASE is not a PostgreSQL database to use (it names no database)")]
    public void A_target_that_is_missing_or_sqlite_is_one_line(string database, string error)
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, PostgresCliTests.Run("", temp, "keys", "create", "--name", "me").ExitCode);

        var (code, stdout, stderr) = PostgresCliTests.Run(database, temp, "database", "copy");
        Assert.Equal((2, ""), (code, stdout));
        Assert.StartsWith(error, stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    /// <summary>A NUL character put into stratus.db by hand, which PostgreSQL's text refuses: one
    /// line naming the row to correct, not PostgreSQL's error with a stack trace.</summary>
    [Fact]
    public void A_value_postgresql_refuses_is_one_line_naming_its_row()
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, PostgresCliTests.Run("", temp, "keys", "create", "--name", "me").ExitCode);
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(temp["home"], PlatformDatabase.FileName)};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "UPDATE api_keys SET name = 'm' || char(0) || 'e'";
            command.ExecuteNonQuery();
        }

        var (code, stdout, stderr) = PostgresCliTests.Run("", temp, "database", "copy", "--to", postgres.NewSchema());
        Assert.Equal((2, ""), (code, stdout));
        Assert.Contains("cannot take api_keys.name of the row whose rowid is 1 in", stderr);
        Assert.Contains("it holds a NUL character, which PostgreSQL's text cannot hold; nothing was copied", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    /// <summary>The value is --to's, not the variable's (unset here): the message sends the
    /// operator to the option that gave it.</summary>
    [Theory]
    [InlineData("postgresql://db.example.com", "error: --to is not a PostgreSQL database to use (it names no database)")]
    [InlineData("/srv/stratus/stratus.db", "error: the database to copy into (/srv/stratus/stratus.db, from --to) is a SQLite file, not PostgreSQL")]
    public void A_bad_to_is_one_line_naming_to(string to, string error)
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, PostgresCliTests.Run("", temp, "keys", "create", "--name", "me").ExitCode);

        var (code, stdout, stderr) = PostgresCliTests.Run("", temp, "database", "copy", "--to", to);
        Assert.Equal((2, ""), (code, stdout));
        Assert.StartsWith(error, stderr);
        Assert.DoesNotContain("STRATUS_DATABASE", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    /// <summary>A stratus.db of an older schema (its version set back, as an older Stratus would
    /// have left it): one line, its version unchanged, so the Stratus that made it still opens it.
    /// (DatabaseCopyFidelityTests copies one with --migrate-source.)</summary>
    [Fact]
    public void An_older_stratus_db_is_refused_with_its_schema_left_as_it_was()
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, PostgresCliTests.Run("", temp, "keys", "create", "--name", "me").ExitCode);
        var file = Path.Combine(temp["home"], PlatformDatabase.FileName);
        long Version(string set = "")
        {
            using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={file};Pooling=False");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = set + "PRAGMA user_version";
            return (long)command.ExecuteScalar()!;
        }
        var current = Version();
        Version($"PRAGMA user_version = {current - 1};");

        var (code, stdout, stderr) = PostgresCliTests.Run("", temp, "database", "copy", "--to", postgres.NewSchema());
        Assert.Equal((2, ""), (code, stdout));
        Assert.StartsWith($"error: {file} has schema version {current - 1}, older than this Stratus's {current}", stderr);
        Assert.Contains("give --migrate-source to migrate it in place first", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal(current - 1, Version());
    }

    /// <summary>Ctrl+C while the server works on a table (a trigger holds the COPY there): the CLI
    /// exits 130, as a stopped train does, saying nothing was copied, and the server's statement is
    /// over by then: no backend still sleeps in it holding the write lock (a CLI that just ended
    /// left it running, so a second copy waited and was refused as locked), and no row stays.</summary>
    [Fact]
    public async Task Ctrl_c_stops_a_running_copy_with_the_servers_statement_cancelled_and_nothing_copied()
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, PostgresCliTests.Run("", temp, "keys", "create", "--name", "me").ExitCode);
        var target = postgres.NewSchema();
        SlowCopyTarget.Create(temp["home"], target);
        var info = Cli.WithCtrlC(Cli.StartInfo("database", "copy", "--to", target, "--data-dir", temp["home"]));
        info.Environment[PlatformDatabase.DatabaseVariable] = "";
        using var copy = Process.Start(info)!;
        var stdout = copy.StandardOutput.ReadToEndAsync();
        var stderr = copy.StandardError.ReadToEndAsync();
        try
        {
            SlowCopyTarget.WaitUntilCopying(target, () => copy.HasExited);
            CliTests.Signal(copy.Id, "INT");
            Assert.True(copy.WaitForExit(TimeSpan.FromMinutes(1)), "the copy did not stop");

            Assert.True(copy.ExitCode == 130, $"exit {copy.ExitCode}: {await stdout}{await stderr}");
            Assert.Equal("stopped: nothing was copied (the target's transaction was rolled back); copy again into the same database\n", await stderr);
            Assert.Equal((0, 0, 0), (SlowCopyTarget.Count(target, SlowCopyTarget.Sleeping), SlowCopyTarget.Count(target, SlowCopyTarget.AdvisoryLocks), SlowCopyTarget.Count(target, "SELECT count(*) FROM api_keys")));
        }
        finally
        {
            if (!copy.HasExited) copy.Kill(entireProcessTree: true);
            // A backend a killed client left sleeping in the trigger.
            SlowCopyTarget.Count(target, "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'");
        }
    }

    [Fact]
    public void Help_says_what_the_copy_does()
    {
        var help = System.Text.RegularExpressions.Regex.Replace(Cli.Run("database", "copy", "--help").Stdout, @"\s+", " ");
        Assert.Contains("into an empty PostgreSQL database, in one transaction", help);
        Assert.Contains("(default: $STRATUS_DATABASE)", help);
    }
}
