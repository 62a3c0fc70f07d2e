// `stratus database copy` end to end: a key made on SQLite, copied with --to, authenticates nowhere
// but lists on PostgreSQL with STRATUS_DATABASE set, where `audit verify` passes, the copy's entry
// after the chain SQLite's verify reported; the rows per table are printed; a second copy into the
// same database, a missing target, and a SQLite target are one line with exit 2 and no password.
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
    [InlineData("/srv/stratus/stratus.db", "error: the database to copy into (/srv/stratus/stratus.db) is a SQLite file, not PostgreSQL")]
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

    [Fact]
    public void Help_says_what_the_copy_does()
    {
        var help = System.Text.RegularExpressions.Regex.Replace(Cli.Run("database", "copy", "--help").Stdout, @"\s+", " ");
        Assert.Contains("into an empty PostgreSQL database, in one transaction", help);
        Assert.Contains("(default: $STRATUS_DATABASE)", help);
    }
}
