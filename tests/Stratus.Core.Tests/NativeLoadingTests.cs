// TorchSharp's native libraries load and run here, and the build's libstdc++ fix
// (build/Stratus.Native.targets) reaches the copies an application loads.
using System.Diagnostics;
using System.Reflection;
using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class NativeLoadingTests
{
    [Fact]
    public void Model_forward_and_backward_run_on_this_machine()
    {
        torch.manual_seed(1);
        using var model = new Gpt(new ModelConfig { VocabSize = 11, BlockSize = 8, NLayer = 1, NHead = 2, NEmbd = 8 });
        using var tokens = torch.randint(0, 11, [2, 8], dtype: ScalarType.Int64);
        using var logits = model.Forward(tokens);
        Assert.Equal(new long[] { 2, 8, 11 }, logits.shape);
        using var loss = nn.functional.cross_entropy(logits.view(-1, 11), tokens.view(-1));
        loss.backward();
        using var grad = model.parameters().First().grad!;
        Assert.True(grad.abs().sum().item<float>() > 0);
    }

    /// <summary>An application outside the repository that references Stratus.Core has no
    /// RuntimeIdentifier of the repository's, so its build puts TorchSharp's native library under
    /// runtimes/&lt;rid&gt;/native/, where .NET loads it from. It failed there on Debian 12
    /// ("GLIBCXX_3.4.32 not found") even with build/Stratus.Native.targets imported: the fix
    /// looked only next to TorchSharp.dll.</summary>
    [Fact]
    public void The_libstdcxx_fix_reaches_the_native_library_of_an_application_outside_the_repository()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var original = TorchSharpPackageFile("runtimes/linux-x64/native/libLibTorchSharp.so");
        var built = Path.Combine(temp.Path, "bin", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        var published = Path.Combine(temp.Path, "publish", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        foreach (var copy in new[] { built, published })
        {
            Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
            File.Copy(original, copy);
        }
        // What the application's project file adds: the one import.
        File.WriteAllText(temp["app.proj"], $"<Project><Import Project=\"{Path.Combine(TempDirectory.RepositoryRoot, "build", "Stratus.Native.targets")}\" /></Project>");

        var (status, output) = Dotnet(temp.Path, "msbuild", "app.proj", "-nologo", "-nodeReuse:false", "-v:n",
            "-t:StratusFixTorchNativeAfterBuild;StratusFixTorchNativeAfterPublish", $"-p:OutDir={temp.Path}/bin/", $"-p:PublishDir={temp.Path}/publish/");

        Assert.True(status == 0, output);
        // Published, always: the machine it will run on may be older than this one.
        Assert.Contains($"{published}: GLIBCXX_3.4.32 version need marked weak.", output);
        Assert.NotEqual(File.ReadAllBytes(original), File.ReadAllBytes(published));
        // Built, where the libstdc++ this process runs on lacks the version (Debian 12), else untouched.
        if (LoadedLibstdcxxHas("GLIBCXX_3.4.32"))
            Assert.Equal(File.ReadAllBytes(original), File.ReadAllBytes(built));
        else
        {
            Assert.Contains($"{built}: GLIBCXX_3.4.32 version need marked weak.", output);
            Assert.Equal(File.ReadAllBytes(published), File.ReadAllBytes(built));
        }
    }

    /// <summary>A file of the TorchSharp package this test runs with, in the NuGet cache.</summary>
    static string TorchSharpPackageFile(string path)
    {
        var (status, output) = Dotnet(Path.GetTempPath(), "nuget", "locals", "global-packages", "--list");
        Assert.True(status == 0, output);
        var packages = output.Trim()["global-packages:".Length..].Trim();
        var version = typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
        return Path.Combine(packages, "torchsharp", version, path);
    }

    /// <summary>Whether the libstdc++ loaded into this process (libtorch's) defines the version.</summary>
    static bool LoadedLibstdcxxHas(string version)
    {
        torch.ones(1).Dispose(); // libtorch, and with it libstdc++, loaded
        var library = File.ReadLines("/proc/self/maps").Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .First(fields => fields.Length >= 6 && Path.GetFileName(fields[5]).StartsWith("libstdc++.so", StringComparison.Ordinal))[5];
        return File.ReadAllBytes(library).AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(version + "\0")) >= 0;
    }

    static (int Status, string Output) Dotnet(string directory, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args) info.ArgumentList.Add(arg);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + error.Result);
    }
}
