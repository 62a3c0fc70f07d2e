// The CLI on PostgreSQL end to end: with STRATUS_DATABASE naming a database, `keys create`/`list`,
// `models register`, `jobs submit` (whose detached supervisor inherits the variable and records the
// job's end there) with `jobs show`, and `audit verify` all keep their rows in it, none in a
// stratus.db; `backup` refuses, naming pg_dump; a verb that only reads finds no Stratus data in an
// empty database; a bad value is one line; no output ever shows the password.
using Npgsql;
using Stratus.Platform;
using Stratus.Platform.Tests;

namespace Stratus.Cli.Tests;

public sealed class PostgresCliTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>
{
    /// <summary>The CLI with STRATUS_DATABASE as given (empty: SQLite in the data directory); no output may show the password.</summary>
    internal static (int ExitCode, string Stdout, string Stderr) Run(string database, TempDirectory temp, params string[] args)
    {
        var info = Cli.StartInfo([.. args, "--data-dir", temp["home"]]);
        info.Environment[PlatformDatabase.DatabaseVariable] = database;
        var result = Cli.Run(info);
        Assert.DoesNotContain(PostgresCluster.Password, result.Stdout + result.Stderr);
        return result;
    }

    static long Count(string database, string table)
    {
        using var connection = new NpgsqlConnection(database);
        connection.Open();
        using var command = new NpgsqlCommand($"SELECT count(*) FROM {table}", connection);
        return (long)command.ExecuteScalar()!;
    }

    [Fact]
    public void Keys_models_jobs_and_the_audit_log_live_in_the_database_stratus_database_names()
    {
        using var temp = new TempDirectory();
        var database = postgres.NewSchema();
        var (code, stdout, stderr) = Run(database, temp, "keys", "create", "--name", "me", "--scopes", "inference");
        Assert.True(code == 0, stderr);
        (code, stdout, stderr) = Run(database, temp, "keys", "list");
        Assert.True(code == 0, stderr);
        Assert.Contains("me", stdout);

        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["ckpt"], model, tokenizer);
        (code, stdout, stderr) = Run(database, temp, "models", "register", temp["ckpt"], "--name", "shk", "--alias", "production");
        Assert.True(code == 0, stderr);
        Assert.StartsWith("Registered shk:1 (@production)", stdout);

        var (data, config) = Cli.PrepareTiny(temp);
        (code, stdout, stderr) = Run(database, temp, "jobs", "submit", "--config", config, "--data", data, "--out", temp["run"],
            "--max-iters", "3", "--lr-decay-iters", "3", "--warmup-iters", "0", "--eval-interval", "3");
        Assert.True(code == 0, stderr);
        var id = stdout.Split(' ')[1].TrimEnd(':');
        var deadline = DateTime.UtcNow.AddMinutes(3);
        string show;
        do
        {
            Thread.Sleep(200);
            (code, show, stderr) = Run(database, temp, "jobs", "show", id);
            Assert.True(code == 0, stderr);
            Assert.True(DateTime.UtcNow < deadline, show);
        }
        while (show.Contains("state:      queued", StringComparison.Ordinal) || show.Contains("state:      running", StringComparison.Ordinal));
        Assert.Contains("state:      succeeded\n", show);

        (code, stdout, stderr) = Run(database, temp, "audit", "verify");
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal(1, Count(database, "api_keys"));
        Assert.Equal(1, Count(database, "model_versions"));
        Assert.Equal(1, Count(database, "jobs"));
        // key.created, model.registered, the alias set, job.submitted.
        Assert.Equal(4, Count(database, "audit_log"));
        Assert.False(File.Exists(Path.Combine(temp["home"], PlatformDatabase.FileName)));

        (code, stdout, stderr) = Run(database, temp, "backup", "--out", temp["backup.db"]);
        Assert.Equal((2, ""), (code, stdout));
        Assert.Contains("pg_dump", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    [Fact]
    public void A_verb_that_reads_finds_no_stratus_data_in_an_empty_database_and_creates_none()
    {
        using var temp = new TempDirectory();
        var database = postgres.NewSchema();
        var (code, stdout, stderr) = Run(database, temp, "audit", "verify");
        Assert.Equal((2, ""), (code, stdout));
        Assert.StartsWith($"error: no Stratus data in the PostgreSQL database {postgres.Name} on {postgres.Cluster.Folder}", stderr);
        Assert.Contains("check $STRATUS_DATABASE", stderr);
        Assert.Equal(0, Count(database, "information_schema.tables WHERE table_schema = current_schema()"));
    }

    [Fact]
    public void Data_dir_help_says_stratus_database_keeps_the_tables_where_it_is_set()
    {
        // With it set, `audit verify --data-dir <an old SQLite folder>` verifies PostgreSQL's log.
        var help = System.Text.RegularExpressions.Regex.Replace(Cli.Run("audit", "verify", "--help").Stdout, @"\s+", " ");
        Assert.Contains("unless $STRATUS_DATABASE names a PostgreSQL database, which keeps them instead", help);
    }

    [Fact]
    public void A_bad_stratus_database_is_one_line_and_shows_no_password()
    {
        using var temp = new TempDirectory();
        var (code, stdout, stderr) = Run($"Database=stratus;Username=me;Password={PostgresCluster.Password}", temp, "keys", "list");
        Assert.Equal((2, ""), (code, stdout));
        Assert.StartsWith("error: $STRATUS_DATABASE is not a PostgreSQL database to use (it names no host)", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }
}
