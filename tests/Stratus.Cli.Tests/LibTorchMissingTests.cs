// The CLI copied without libtorch's native files, as a copied or hand-published folder may be: a
// command that needs libtorch ends with one line and exit code 2 (LibTorchLoadFailure), and the
// others, every verb's --help among them, work as before.
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Stratus.Cli.Tests;

public sealed class LibTorchMissingTests
{
    /// <summary>The CLI's folder without its native libraries, except SQLite's (keys): .so files
    /// on Linux, where the tests run.</summary>
    sealed class CopyWithoutLibTorch : IDisposable
    {
        readonly TempDirectory temp = new();

        public CopyWithoutLibTorch()
        {
            try
            {
                foreach (var file in Directory.GetFiles(AppContext.BaseDirectory))
                {
                    var name = Path.GetFileName(file);
                    if (!name.Contains(".so") || name.StartsWith("libe_sqlite3", StringComparison.Ordinal))
                        File.Copy(file, temp[name]);
                }
            }
            catch
            {
                temp.Dispose(); // a constructor that throws is never disposed: the copy would stay
                throw;
            }
        }

        public string Folder => temp.Path;

        public string this[string name] => temp[name];

        /// <summary>`dotnet stratus.dll args` from the copy. With NUGET_PACKAGES at a folder that
        /// does not exist, TorchSharp finds no package to copy its natives from (else it copies
        /// 500 MB of them from the NuGet cache into the copy and tries those).</summary>
        public (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => Cli.Run(StartInfo(args));

        public ProcessStartInfo StartInfo(params string[] args)
        {
            var info = Cli.StartInfo(args);
            info.ArgumentList[0] = temp["stratus.dll"];
            info.Environment["NUGET_PACKAGES"] = temp["no-nuget-packages"];
            return info;
        }

        public void Dispose() => temp.Dispose();
    }

    /// <summary>A run trained by the whole CLI, for the verbs that load a model.</summary>
    static (string Data, string Config, string Run) TrainedRun(TempDirectory temp)
    {
        var (data, config) = Cli.PrepareTiny(temp);
        var trained = Cli.Run("train", "--config", config, "--data", data, "--out", temp["run"], "--max-iters", "2", "--lr-decay-iters", "2", "--warmup-iters", "0");
        Assert.True(trained.ExitCode == 0, trained.Stderr);
        return (data, config, temp["run"]);
    }

    /// <summary>TorchSharp wrote 40 lines to stdout ("... doesn't contain a reference to
    /// libtorch-cpu-linux-x64 ..."), then .NET aborted (134) with a TypeInitializationException,
    /// or with a DllNotFoundException in Stratus.Determinism.globalContext.</summary>
    [Fact]
    public void A_command_that_needs_libtorch_says_in_one_line_that_it_cannot_load_it_and_how_to_fix_that()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var (data, config, run) = TrainedRun(temp);
        using var copy = new CopyWithoutLibTorch();
        var fix = $"; build Stratus with ./stratus, dotnet build or dotnet publish, which put libtorch next to stratus.dll with the fix for an older libstdc++; a Stratus copied by hand needs those files next to its stratus.dll, in {copy.Folder} (README, Building)";

        // train meets libtorch first in a P/Invoke of Stratus's own (Determinism), sample and serve in TorchSharp's loader.
        foreach (var args in new[] { ["train", "--config", config, "--data", data, "--out", temp["again"]], new[] { "sample", "--model", run, "--prompt", "a" }, ["serve", "--model", run, "--insecure-no-auth", "--port", "0"] })
        {
            var (code, stdout, stderr) = copy.Run(args);
            Assert.True(code == 2, $"{args[0]}: {code}\n{stdout}{stderr}");
            Assert.Equal("", stdout);
            Assert.Matches(@"^error: cannot load libtorch \((libtorch_cpu|libLibTorchSharp)\.so\): lib(torch_cpu|LibTorchSharp)\.so: cannot open shared object file: No such file or directory" + Regex.Escape(fix) + "\n$", stderr);
        }

        // prepare takes a model's tokenizer without it: opening a checkpoint builds no model.
        var prepared = copy.Run("prepare", "--input", temp["corpus.txt"], "--out", temp["from-model"], "--tokenizer-from", run);
        Assert.True(prepared.ExitCode == 0, prepared.Stdout + prepared.Stderr);
    }

    /// <summary>A library there that the loader refuses, as Debian 12's libstdc++ refuses
    /// TorchSharp's unpatched one ("version `GLIBCXX_3.4.32' not found"): the loader's reason.</summary>
    [Fact]
    public void A_libtorch_library_the_loader_refuses_is_named_with_the_loaders_reason()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var (_, _, run) = TrainedRun(temp);
        using var copy = new CopyWithoutLibTorch();
        File.WriteAllText(copy["libLibTorchSharp.so"], "not a shared library\n");

        var (code, stdout, stderr) = copy.Run("sample", "--model", run, "--prompt", "a");

        Assert.True(code == 2, stdout + stderr);
        Assert.Equal("", stdout);
        Assert.StartsWith($"error: cannot load libtorch (libLibTorchSharp.so): {copy["libLibTorchSharp.so"]}: ", stderr);
        Assert.Matches("(invalid ELF header|file too short); build Stratus with ./stratus,", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }

    /// <summary>`serve --help` needed libtorch: its --shutdown-grace-period default came from a
    /// ServeOptions, whose Device is libtorch's CPU.</summary>
    [Fact]
    public void Every_verbs_help_and_the_commands_without_libtorch_work_without_it()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var copy = new CopyWithoutLibTorch();
        var commands = new Queue<string[]>([[]]);
        var helped = 0;
        while (commands.TryDequeue(out var command))
        {
            var (code, stdout, stderr) = copy.Run([.. command, "--help"]);
            Assert.True(code == 0 && stderr == "", $"stratus {string.Join(' ', command)} --help: {code}\n{stdout}{stderr}");
            helped++;
            // The "Commands:" section lists what can follow, a name a line.
            var section = stdout.Split("Commands:\n") is [_, var listed] ? listed : "";
            foreach (Match line in Regex.Matches(section, @"^  ([a-z-]+)", RegexOptions.Multiline))
                commands.Enqueue([.. command, line.Groups[1].Value]);
        }
        Assert.True(helped > 20, $"only {helped} commands' help was read");

        var keys = copy.Run("keys", "create", "--name", "me", "--scopes", "inference", "--data-dir", copy["data"]);
        Assert.True(keys.ExitCode == 0, keys.Stderr);
        var list = copy.Run("keys", "list", "--data-dir", copy["data"]);
        Assert.True(list.ExitCode == 0, list.Stderr);
        Assert.Contains("me", list.Stdout);
    }

    /// <summary>A libtorch the system's loader finds (LD_LIBRARY_PATH; a Python PyTorch's torch/lib,
    /// as the GPU checks in bench/README.md ran Stratus) is used, without a word.</summary>
    [Fact]
    public void A_libtorch_on_LD_LIBRARY_PATH_is_used()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var (_, _, run) = TrainedRun(temp);
        using var copy = new CopyWithoutLibTorch();
        var info = copy.StartInfo("sample", "--model", run, "--prompt", "a", "--max-tokens", "3");
        info.Environment["LD_LIBRARY_PATH"] = AppContext.BaseDirectory;

        var (code, stdout, stderr) = Cli.Run(info);

        Assert.True(code == 0, stdout + stderr);
        Assert.Equal("", stderr);
    }
}
