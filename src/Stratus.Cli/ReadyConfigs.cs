// The training configs Stratus comes with (configs/*.json): the repository's in a clone, else the
// copy that travels with the built CLI and the installed tool. The demo trains one; a --config that
// is not a file is refused when the command line is parsed, naming them and where they are, since
// outside a clone "configs/" is not where the user stands.
using System.CommandLine;

namespace Stratus.Cli;

static class ReadyConfigs
{
    /// <summary>The ready config <paramref name="name"/>: configs/ of the repository the working
    /// directory is in, else the one next to the CLI.</summary>
    public static string Find(string name) =>
        Folders().Select(folder => Path.Combine(folder, name)).FirstOrDefault(File.Exists)
        ?? throw new StratusUserException($"configs/{name} was not found; run the demo from the Stratus repository");

    /// <summary>An option naming a config file, which must be one. The path is the user's, as given
    /// (relative to the working directory): a ready config is named, never put in its place.</summary>
    public static Option<string> Option(string description, bool required = false)
    {
        var option = PathOptions.Option("--config", description, required);
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is not { } path || File.Exists(path)) return;
            var problem = Directory.Exists(path) ? "is a folder, not a config file" : "does not exist";
            var folder = Folders().FirstOrDefault(folder => Directory.EnumerateFiles(folder, "*.json").Any());
            result.AddError(folder is null ? $"--config {path} {problem}"
                : $"--config {path} {problem}; the ready configs are {string.Join(", ", Directory.EnumerateFiles(folder, "*.json").Select(Path.GetFileName).Order())} in {folder}");
        });
        return option;
    }

    // A clone's configs/ is the one beside Stratus.slnx: a configs/ folder of the user's own
    // project, or of any folder above it, holds other configs than Stratus's.
    static IEnumerable<string> Folders()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Stratus.slnx")) && Directory.Exists(Path.Combine(dir.FullName, "configs")))
                yield return Path.Combine(dir.FullName, "configs");
        var shipped = Path.Combine(AppContext.BaseDirectory, "configs");
        if (Directory.Exists(shipped)) yield return shipped;
    }
}
