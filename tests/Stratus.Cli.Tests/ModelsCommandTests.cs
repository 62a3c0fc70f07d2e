// `stratus models` end to end through the real CLI: register, list, alias, show, delete, their
// one-line refusals with exit 2, `audit verify` passing after them, and `serve --model` of a name
// nobody registered refused before any model loads; a version registered with --copy servable
// while its run trains on, and `train` warning of those that are not copies; serve warning of a
// folder that bears a registered name.
using System.Text.Json.Nodes;

namespace Stratus.Cli.Tests;

public sealed class ModelsCommandTests
{
    [Fact]
    public void Models_register_list_alias_show_and_delete_through_the_cli()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
        {
            Training.Checkpoint.Save(Path.Combine(temp["run"], "checkpoints", "best"), model, tokenizer);
            Training.Checkpoint.Save(temp["ckpt"], model, tokenizer);
        }
        string[] data = ["--data-dir", temp["home"]];

        var (code, stdout, stderr) = Cli.Run(["models", "register", temp["run"], "--name", "shk", "--alias", "production", "--description", "first", .. data]);
        Assert.True(code == 0, stderr);
        Assert.StartsWith($"Registered shk:1 (@production): {Path.Combine(temp["run"], "checkpoints", "best")} (gpt2, ", stdout);
        Assert.Equal(0, Cli.Run(["models", "register", temp["ckpt"], "--name", "shk", .. data]).ExitCode);

        (code, stdout, _) = Cli.Run(["models", "list", .. data]);
        Assert.Equal(0, code);
        Assert.Contains("production", stdout);
        Assert.Contains(temp["ckpt"], stdout);

        (code, stdout, _) = Cli.Run(["models", "alias", "shk", "2", "production", .. data]);
        Assert.Equal((0, "shk@production moved from version 1 to version 2."), (code, stdout.Trim()));
        (code, stdout, _) = Cli.Run(["models", "show", "shk@production", .. data]);
        Assert.Equal(0, code);
        Assert.StartsWith("shk:2 (@production)", stdout);
        Assert.Contains("files:        match the registered manifest", stdout);

        (code, _, stderr) = Cli.Run(["models", "delete", "shk:2", .. data]);
        Assert.Equal((2, "error: model shk:2 is what shk@production points at; move that alias to another version, or remove it, first"), (code, stderr.Trim()));
        (code, _, stderr) = Cli.Run(["models", "register", temp["run"], "--name", "two words", .. data]);
        Assert.Equal(2, code);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Equal(0, Cli.Run(["models", "alias", "shk", "--remove", "production", .. data]).ExitCode);
        Assert.Equal(0, Cli.Run(["models", "delete", "shk:2", .. data]).ExitCode);

        // A file of version 1 changed: show says so, exit 1.
        File.AppendAllText(Path.Combine(temp["run"], "checkpoints", "best", "model.json"), " ");
        (code, stdout, stderr) = Cli.Run(["models", "show", "shk", .. data]);
        Assert.Equal(1, code);
        Assert.Contains("CHANGED", stdout);
        Assert.StartsWith("error: model shk:1 refers to ", stderr);

        (code, stdout, stderr) = Cli.Run(["audit", "verify", .. data]);
        Assert.True(code == 0, stdout + stderr);
    }

    static (int ExitCode, string Stdout, string Stderr) RunIn(string home, params string[] args)
    {
        var info = Cli.StartInfo(args);
        info.Environment["STRATUS_HOME"] = home;
        return Cli.Run(info);
    }

    [Fact]
    public void A_copied_version_outlives_its_run_training_on_and_train_warns_of_the_versions_that_are_not_copies()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var run = temp["run"];
        var last = Path.Combine(run, "checkpoints", "last");
        var (code, stdout, stderr) = Cli.Run("train", "--config", config, "--data", data, "--out", run, "--max-iters", "10");
        Assert.True(code == 0, stdout + stderr);
        var home = temp["home"];
        Assert.Equal(0, RunIn(home, "models", "register", last, "--name", "shk", "--alias", "production").ExitCode);
        (code, stdout, stderr) = RunIn(home, "models", "register", last, "--name", "shk", "--copy");
        var copy = Path.Combine(home, "models", "shk", "2");
        Assert.True(code == 0, stderr);
        Assert.StartsWith($"Registered shk:2: a copy in {copy} (gpt2, ", stdout);

        (code, stdout, stderr) = RunIn(home, "train", "--resume", run, "--max-iters", "20");
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal($"warning: shk:1 of the model registry refers to {last}, which this run saves again, after which it is refused as changed; " +
            $"to keep the checkpoint as it is now, register a copy of it (a new version) before the run saves it: stratus models register {last} --name shk --copy",
            Assert.Single(stderr.Split('\n'), line => line.StartsWith("warning: ", StringComparison.Ordinal)));

        (code, stdout, _) = RunIn(home, "models", "show", "shk:2");
        Assert.True(code == 0, stdout);
        Assert.Contains($"  checkpoint:   {copy}\n  copy:         yes", stdout);
        (code, stdout, _) = RunIn(home, "models", "show", "shk:1", "--json");
        Assert.Equal(1, code);
        var shown = JsonNode.Parse(stdout)!;
        Assert.Equal(("shk", 1, last, false, false), ((string)shown["name"]!, (int)shown["version"]!, (string)shown["checkpoint"]!, (bool)shown["copy"]!, (bool)shown["files_match"]!));

        (code, stdout, _) = RunIn(home, "models", "delete", "shk:2");
        Assert.Equal((0, $"Deleted shk:2 from the registry, and its copy in {copy}."), (code, stdout.Trim()));
        Assert.False(Directory.Exists(copy));

        // Without a registry the check creates none.
        (code, stdout, stderr) = RunIn(temp["no-home"], "train", "--resume", run, "--max-iters", "21");
        Assert.True(code == 0, stdout + stderr);
        Assert.DoesNotContain("model registry", stderr);
        Assert.False(Directory.Exists(temp["no-home"]));
    }

    [Fact]
    public void Models_list_and_show_write_json_in_the_api_s_field_names()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["ckpt"], model, tokenizer);
        var home = temp["home"];
        Assert.Equal(0, RunIn(home, "models", "register", temp["ckpt"], "--name", "shk", "--alias", "production", "--description", "first").ExitCode);
        Assert.Equal(0, RunIn(home, "models", "register", temp["ckpt"], "--name", "shk", "--copy").ExitCode);

        var (code, stdout, _) = RunIn(home, "models", "list", "--json");
        Assert.Equal(0, code);
        var list = JsonNode.Parse(stdout)!;
        Assert.Equal("list", (string)list["object"]!);
        var shk = Assert.Single(list["data"]!.AsArray())!;
        Assert.Equal(("shk", 2, 1), ((string)shk["name"]!, (int)shk["latest_version"]!, (int)shk["aliases"]!["production"]!));
        Assert.Equal(["first", null], shk["versions"]!.AsArray().Select(v => (string?)v!["description"]));
        Assert.Equal("gpt2", (string)shk["versions"]![0]!["architecture"]!);

        (code, stdout, _) = RunIn(home, "models", "show", "shk@production", "--json");
        Assert.Equal(0, code);
        var shown = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal(["name", "version", "aliases", "checkpoint", "manifest_sha256", "architecture", "parameters", "context_length", "tokenizer", "description", "created_at", "created_by", "parent", "copy", "files_match"],
            shown.Select(field => field.Key));
        Assert.Equal((temp["ckpt"], true), ((string)shown["checkpoint"]!, (bool)shown["files_match"]!));

        (code, stdout, _) = RunIn(home, "keys", "create", "--name", "ops", "--scopes", "admin");
        Assert.Equal(0, code);
        (code, stdout, _) = RunIn(home, "keys", "list", "--json");
        Assert.Equal(0, code);
        var key = Assert.Single(JsonNode.Parse(stdout)!["data"]!.AsArray())!;
        Assert.Equal(("ops", "admin"), ((string)key["name"]!, (string)key["scopes"]![0]!));
        Assert.Null(key["key"]);
    }

    [Fact]
    public void Models_alias_in_a_data_directory_without_a_database_is_refused_and_creates_none()
    {
        using var temp = new TempDirectory();
        // A mistyped --data-dir: alias, as list, show and delete, changes an existing registry only.
        var (code, _, stderr) = Cli.Run("models", "alias", "shk", "1", "production", "--data-dir", temp["typo"]);
        Assert.Equal((2, $"error: no Stratus data in {temp["typo"]} (no stratus.db); check --data-dir or $STRATUS_HOME (keys and servers create it)"), (code, stderr.Trim()));
        Assert.False(File.Exists(Path.Combine(temp["typo"], "stratus.db")));
        (code, _, stderr) = Cli.Run("models", "alias", "shk", "--remove", "production", "--data-dir", temp["typo"]);
        Assert.Equal(2, code);
        Assert.StartsWith("error: no Stratus data in ", stderr);
    }

    [Fact]
    public void A_registry_with_a_damaged_row_does_not_stop_training()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        var home = temp["home"];
        var checkpoint = Path.Combine(temp["other"], "checkpoints", "best");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = 8, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(checkpoint, model, Tokenization.CharTokenizer.FromCorpus("abcdefg"));
        Assert.Equal(0, RunIn(home, "models", "register", checkpoint, "--name", "shk").ExitCode);
        // Edited by hand (the sqlite3 shell), as the warning's read of the registry may meet it.
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(home, "stratus.db")};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "DROP TRIGGER model_versions_immutable; UPDATE model_versions SET created_at = 'yesterday'";
            command.ExecuteNonQuery();
        }
        var (code, stdout, stderr) = RunIn(home, "train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "2");
        Assert.True(code == 0, stdout + stderr);
        Assert.DoesNotContain("model registry", stderr);
    }

    /// <summary>train --init-from r1, a folder whose name also reads as a registered name: the check
    /// for a clash only reads the registry. It created stratus.db where there was none, and a
    /// newer Stratus's database stopped the run ("Upgrade Stratus") although a folder was given.</summary>
    [Fact]
    public void Init_from_a_folder_that_reads_as_a_name_creates_no_registry_and_trains_past_one_it_cannot_read()
    {
        using var temp = new TempDirectory();
        var (data, config) = Cli.PrepareTiny(temp);
        Assert.Equal(0, Cli.Run("train", "--config", config, "--data", data, "--out", temp["r1"], "--max-iters", "2").ExitCode);
        var home = temp["home"];
        (int ExitCode, string Stdout, string Stderr) FineTune(string output)
        {
            var info = Cli.StartInfo("train", "--init-from", "r1", "--data", data, "--out", output, "--max-iters", "1", "--batch-size", "2", "--eval-iters", "1");
            info.WorkingDirectory = temp.Path;
            info.Environment["STRATUS_HOME"] = home;
            return Cli.Run(info);
        }

        var (code, stdout, stderr) = FineTune(temp["ft1"]);
        Assert.True(code == 0, stdout + stderr);
        Assert.Equal("", stderr);
        Assert.False(Directory.Exists(home));

        // A newer Stratus's database: the folder is used, and the warning says what was not checked.
        Directory.CreateDirectory(home);
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(home, "stratus.db")};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE api_keys (id TEXT); PRAGMA user_version = 999;";
            command.ExecuteNonQuery();
        }
        (code, stdout, stderr) = FineTune(temp["ft2"]);
        Assert.True(code == 0, stdout + stderr);
        Assert.StartsWith("warning: r1 is a folder here, and the model registry could not be read to check whether it also names a registered version " +
            $"({Path.Combine(home, "stratus.db")} has schema version 999; this Stratus understands up to ", stderr);
        Assert.EndsWith(". Upgrade Stratus); starting from the folder", stderr.Trim());
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Serve_of_a_folder_that_is_also_a_registered_name_says_so_and_how_to_name_each()
    {
        using var temp = new TempDirectory();
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["ckpt"], model, tokenizer);
        Assert.Equal(0, Cli.Run("models", "register", temp["ckpt"], "--name", "shk", "--alias", "production", "--data-dir", temp["home"]).ExitCode);
        // A folder of that name where serve runs, not a model: the folder wins, and fails to load.
        Directory.CreateDirectory(temp["shk"]);
        var info = Cli.StartInfo("serve", "--model", "shk", "--port", "0", "--insecure-no-auth", "--data-dir", temp["home"]);
        info.WorkingDirectory = temp.Path;
        var (code, _, stderr) = Cli.Run(info);
        Assert.Equal(2, code);
        var lines = stderr.Trim().Split('\n');
        Assert.Equal("warning: shk is a folder here and a registered model's reference (shk:1); serving the folder. Give ./shk for the folder, or shk:1 or shk@production for the registered version", lines[0]);
        Assert.StartsWith("error: shk has no checkpoint", lines[1]);
    }

    [Fact]
    public void Serve_of_a_name_nobody_registered_is_one_line_and_exit_2_before_loading()
    {
        using var temp = new TempDirectory();
        var (code, stdout, stderr) = Cli.Run("serve", "--model", "shk@production", "--port", "0", "--insecure-no-auth", "--data-dir", temp["home"]);
        Assert.Equal(2, code);
        Assert.Equal("error: shk@production is not a folder, and no model named 'shk' is registered; see the registered names with `stratus models list`", stderr.Trim());
        Assert.DoesNotContain("loading", stdout);
    }
}
