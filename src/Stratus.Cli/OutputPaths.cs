// Options that name where a verb writes, checked when the command line is parsed: a verb whose
// work takes minutes (eval, bench) must not fail at the end, unable to write its result.
using System.CommandLine;

namespace Stratus.Cli;

static class OutputPaths
{
    /// <summary>An option naming a file to write.</summary>
    public static Option<string> File(string name, string description, bool required = false) =>
        Checked(name, description, required, static path => Directory.Exists(path) ? "is a folder; give the path of a file to write" : null);

    /// <summary>An option naming a folder to write into.</summary>
    public static Option<string> Folder(string name, string description, bool required = false) =>
        Checked(name, description, required, static path => System.IO.File.Exists(path) ? "is a file; give the path of a folder to write into" : null);

    static Option<string> Checked(string name, string description, bool required, Func<string, string?> problemWith)
    {
        var option = PathOptions.Option(name, description, required);
        option.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is not { Length: > 0 } path) return;
            var problem = problemWith(path) ?? FileInTheWay(path);
            if (problem is not null) result.AddError($"{name} {path} {problem}");
        });
        return option;
    }

    /// <summary>Why nothing can be written at <paramref name="path"/> when the nearest existing path
    /// above it is a file (a write there fails with "Could not find a part of the path"), else null.</summary>
    public static string? FileInTheWay(string path) => FileAbove(path) is { } file ? $"{file} is a file, so nothing can be written below it" : null;

    static string? FileAbove(string path)
    {
        for (var parent = Path.GetDirectoryName(Path.GetFullPath(path)); !string.IsNullOrEmpty(parent); parent = Path.GetDirectoryName(parent))
        {
            if (System.IO.File.Exists(parent)) return parent;
            if (Directory.Exists(parent)) return null;
        }
        return null;
    }
}
