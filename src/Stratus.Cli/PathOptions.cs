// Options and arguments that name a path, where a leading `~` is the home folder. The shell makes
// it so only at the start of a word (and after the = of an assignment): `--out=~/runs/x` reaches
// the program as typed, and would otherwise make a folder named `~` where the user stands. As git
// and other CLIs do, `~` and `~/...` are expanded here; `~user` is left as it is.
using System.CommandLine;
using System.CommandLine.Parsing;

namespace Stratus.Cli;

static class PathOptions
{
    /// <summary>An option naming a file or folder, with `~` expanded.</summary>
    public static Option<string> Option(string name, string description, bool required = false) =>
        new(name) { Description = description, Required = required, CustomParser = One };

    /// <summary>An argument naming a file or folder, with `~` expanded.</summary>
    public static Argument<string> Argument(string name, string description) =>
        new(name) { Description = description, CustomParser = One };

    /// <summary>An argument naming one or more files or folders, each with `~` expanded.</summary>
    public static Argument<string[]> Arguments(string name, string description) =>
        new(name) { Description = description, Arity = ArgumentArity.OneOrMore, CustomParser = result => [.. result.Tokens.Select(token => ExpandHome(token.Value))] };

    /// <summary><paramref name="path"/> with a leading `~` or `~/` made the home folder.</summary>
    public static string ExpandHome(string path) =>
        path == "~" ? Home
        : path.StartsWith("~/", StringComparison.Ordinal) || path.StartsWith($"~{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? Path.Combine(Home, path[2..])
        : path;

    // $HOME on Unix, the user's profile folder on Windows.
    static string Home => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify);

    // The parser runs only once the option's arity is met: exactly one token.
    static string One(ArgumentResult result) => ExpandHome(result.Tokens[0].Value);
}
