// How the user runs the CLI, for the commands its hints spell out: `./stratus keys create ...`
// for a clone's launcher script (which says how it was run in STRATUS_COMMAND: as typed, or its
// name alone where the shell found it on the PATH), `stratus ...` otherwise (an installed dotnet
// tool, `dotnet stratus.dll`). The libraries' messages name the command `stratus`: Spell puts this
// one in their place where the CLI prints them.
using System.Text.RegularExpressions;

namespace Stratus.Cli;

static partial class Invocation
{
    /// <summary>The variable the launcher script `./stratus` sets.</summary>
    public const string Variable = "STRATUS_COMMAND";

    const string Installed = "stratus";

    /// <summary>The command that runs this CLI as the user ran it, quoted where it holds a space.</summary>
    public static string Command { get; } = Environment.GetEnvironmentVariable(Variable) switch
    {
        { Length: > 0 } given when given.Any(char.IsWhiteSpace) => $"'{given.Replace("'", "'\\''", StringComparison.Ordinal)}'",
        { Length: > 0 } given => given,
        _ => Installed,
    };

    /// <summary><paramref name="message"/> with each command it names (`stratus keys create`,
    /// (stratus backup, ...: the name as a word of its own, then a verb) spelled as the user runs
    /// the CLI; a path such as ~/.local/share/stratus, or stratus.db, is left as it is.</summary>
    public static string Spell(string message) =>
        Command == Installed || !message.Contains(Installed + " ", StringComparison.Ordinal) ? message : Named().Replace(message, Command.Replace("$", "$$", StringComparison.Ordinal) + " ");

    [GeneratedRegex(@"(?<=^|[\s`(])stratus (?=[a-z]+\b)", RegexOptions.CultureInvariant)]
    private static partial Regex Named();
}
