// `stratus models` end to end through the real CLI: register, list, alias, show, delete, their
// one-line refusals with exit 2, `audit verify` passing after them, and `serve --model` of a name
// nobody registered refused before any model loads.
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
    public void Serve_of_a_name_nobody_registered_is_one_line_and_exit_2_before_loading()
    {
        using var temp = new TempDirectory();
        var (code, stdout, stderr) = Cli.Run("serve", "--model", "shk@production", "--port", "0", "--insecure-no-auth", "--data-dir", temp["home"]);
        Assert.Equal(2, code);
        Assert.Equal("error: shk@production is not a folder, and no model named 'shk' is registered; see the registered names with `stratus models list`", stderr.Trim());
        Assert.DoesNotContain("loading", stdout);
    }
}
