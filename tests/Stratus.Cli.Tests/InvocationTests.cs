// The commands the CLI's hints spell out are spelled as the user runs it: `./stratus keys create
// ...` through a clone's launcher script, which says how it was run; `stratus ...` otherwise.
using System.Diagnostics;

namespace Stratus.Cli.Tests;

public sealed class InvocationTests
{
    /// <summary>The CLI run as the launcher script runs it, having been run as <paramref name="invoked"/>.</summary>
    static (int ExitCode, string Stdout, string Stderr) RunAs(string invoked, params string[] args)
    {
        var info = Cli.StartInfo(args);
        info.Environment["STRATUS_COMMAND"] = invoked;
        return Cli.Run(info);
    }

    [Fact]
    public void Hints_name_the_command_as_the_launcher_script_was_run()
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, Cli.Run("keys", "create", "--name", "app", "--data-dir", temp["home"]).ExitCode);
        Assert.Equal(0, Cli.Run("keys", "revoke", "app", "--data-dir", temp["home"]).ExitCode);
        // A line of the CLI's own ...
        var (code, stdout, stderr) = RunAs("./stratus", "keys", "list", "--data-dir", temp["home"]);
        Assert.True(code == 0, stderr);
        Assert.Equal("No API keys. Create one: ./stratus keys create --name <n> --scopes inference", stdout.Trim());
        // ... and a library's error, which names the command `stratus`; a path is left as it is.
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        (code, _, stderr) = RunAs("../clone/stratus", "serve", "--model", temp["model"], "--port", "0", "--data-dir", temp["home"]);
        Assert.True(code == 2, stderr);
        Assert.Contains($"Create one with `../clone/stratus keys create --name <n> --scopes inference --data-dir {temp["home"]}`", stderr);
        Assert.DoesNotContain("`stratus", stderr);
        // Run otherwise (an installed tool, dotnet stratus.dll): `stratus`.
        (_, stdout, _) = Cli.Run("keys", "list", "--data-dir", temp["home"]);
        Assert.Equal("No API keys. Create one: stratus keys create --name <n> --scopes inference", stdout.Trim());
    }

    /// <summary>A path the user gave that holds "stratus " before a word was rewritten as a
    /// command: `my stratus runs/x` became `my ./stratus runs/x` in the error naming it. Only
    /// `stratus` before one of the CLI's verbs is.</summary>
    [Fact]
    public void A_path_the_user_gave_is_left_as_given()
    {
        using var temp = new TempDirectory();
        var run = temp["my stratus runs"];
        var (code, _, stderr) = RunAs("./stratus", "plot", run);
        Assert.True(code == 2, stderr);
        Assert.Contains($"{run} ", stderr);
        Assert.Contains("`./stratus train --out <run>`", stderr);
    }

    /// <summary>STRATUS_COMMAND is inherited and can be set by anything above the CLI (mpirun -x,
    /// a job's environment): a value the shell would read otherwise (`$`, a quote) was printed as
    /// it is, so the hint pasted ran something else; one with a newline or an escape sequence broke
    /// the one-line error or drove the terminal. Now the first is quoted as one shell word and the
    /// second not used.</summary>
    [Fact]
    public void The_command_is_one_shell_word_and_one_with_control_characters_is_not_used()
    {
        using var temp = new TempDirectory();
        Assert.Equal(0, Cli.Run("keys", "create", "--name", "app", "--data-dir", temp["home"]).ExitCode);
        Assert.Equal(0, Cli.Run("keys", "revoke", "app", "--data-dir", temp["home"]).ExitCode);
        foreach (var (invoked, spelled) in new[]
        {
            ("../my$clone/stratus", "'../my$clone/stratus'"),
            ("../it's here/stratus", "'../it'\\''s here/stratus'"),
            ("../clone/stratus;rm", "'../clone/stratus;rm'"),
            ("./stratus\u001b[2J", "stratus"),
            ("./stratus\nerror: fake", "stratus"),
            ("./stratus\u202e", "stratus"),
        })
        {
            var (code, stdout, stderr) = RunAs(invoked, "keys", "list", "--data-dir", temp["home"]);
            Assert.True(code == 0, stderr);
            Assert.Equal($"No API keys. Create one: {spelled} keys create --name <n> --scopes inference", stdout.Trim());
        }
    }

    /// <summary>The launcher script says how it was run: as typed, or its name alone where the
    /// shell found it on the PATH. Run here with a CLI it takes as built and a `dotnet` that prints
    /// what it was given.</summary>
    [Fact]
    public void The_launcher_script_passes_on_how_it_was_run()
    {
        // A bash script.
        if (OperatingSystem.IsWindows()) return;
        using var temp = new TempDirectory();
        var clone = Directory.CreateDirectory(temp["clone"]).FullName;
        File.Copy(Path.Combine(RepositoryRoot(), "stratus"), Path.Combine(clone, "stratus"));
        File.SetUnixFileMode(Path.Combine(clone, "stratus"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        // Built, with no inputs (no src/ here) since: nothing to build.
        Directory.CreateDirectory(Path.Combine(clone, ".stratus-build"));
        File.WriteAllText(Path.Combine(clone, ".stratus-build", "stratus.dll"), "");
        File.WriteAllText(Path.Combine(clone, ".stratus-build", "inputs.txt"), "");
        var bin = Directory.CreateDirectory(temp["bin"]).FullName;
        File.WriteAllText(Path.Combine(bin, "dotnet"), $"#!/bin/sh\necho \"$STRATUS_COMMAND\"\n");
        File.SetUnixFileMode(Path.Combine(bin, "dotnet"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        string Invoked(string command, string folder, string path)
        {
            var info = new ProcessStartInfo("bash", ["-c", command]) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            info.Environment["PATH"] = $"{path}:/usr/bin:/bin";
            var (code, stdout, stderr) = Cli.Run(info);
            Assert.True(code == 0, stderr);
            return stdout.Trim();
        }
        Assert.Equal("./stratus", Invoked("./stratus keys list", clone, bin));
        Assert.Equal("clone/stratus", Invoked("clone/stratus keys list", temp.Path, bin));
        Assert.Equal("stratus", Invoked("stratus keys list", temp.Path, $"{bin}:{clone}"));
    }

    static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "Stratus.slnx"))) return folder.FullName;
        throw new InvalidOperationException($"no Stratus.slnx above {AppContext.BaseDirectory}");
    }
}
