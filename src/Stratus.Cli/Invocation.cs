// How the user runs the CLI, for the commands its hints spell out: `./stratus keys create ...`
// for a clone's launcher script (which says how it was run in STRATUS_COMMAND: as typed, or its
// name alone where the shell found it on the PATH), `stratus ...` otherwise (an installed dotnet
// tool, `dotnet stratus.dll`). The libraries' messages name the command `stratus`: Spell puts this
// one in their place where the CLI prints them.
using System.Globalization;
using System.Text.RegularExpressions;

namespace Stratus.Cli;

static class Invocation
{
    /// <summary>The variable the launcher script `./stratus` sets.</summary>
    public const string Variable = "STRATUS_COMMAND";

    const string Installed = "stratus";

    /// <summary>The command that runs this CLI as the user ran it, as a shell word that can be
    /// pasted (quoted where it holds a character the shell would read otherwise: a space, `$`, `;`).</summary>
    public static string Command { get; } = Spelled(Environment.GetEnvironmentVariable(Variable));

    /// <summary>Spell's pattern: `stratus` as a word of its own, then one of the CLI's verbs, so
    /// that a path or name the user gave (`my stratus runs/`) stays as given; none until
    /// <see cref="NameVerbs"/>.</summary>
    static Regex? named;

    /// <summary>Gives Spell the CLI's verbs (the root command's subcommands).</summary>
    public static void NameVerbs(IEnumerable<string> verbs) =>
        named = new Regex($@"(?<=^|[\s`(])stratus (?=(?:{string.Join('|', verbs.Select(Regex.Escape))})(?:[\s`),.;:]|$))", RegexOptions.CultureInvariant);

    /// <summary>The command as a shell word. The variable is inherited by whatever the launcher's
    /// process starts and can be set by anyone above it (mpirun -x, a job's environment): a value with
    /// a control or format character (a newline, an escape sequence, a direction override) is no
    /// path the script would pass, and would break the one-line error or drive the terminal, so it
    /// is not used.</summary>
    internal static string Spelled(string? given)
    {
        if (string.IsNullOrEmpty(given) || given.Any(c => char.GetUnicodeCategory(c) is UnicodeCategory.Control or UnicodeCategory.Format)) return Installed;
        return given.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '/' or '_' or '-' or '+' or ',' or ':' or '@' or '%' or '=')
            ? given
            : $"'{given.Replace("'", "'\\''", StringComparison.Ordinal)}'";
    }

    /// <summary><paramref name="message"/> with each command it names (`stratus keys create`,
    /// (stratus backup, ...: the name as a word of its own, then one of the CLI's verbs) spelled
    /// as the user runs the CLI; a path such as ~/.local/share/stratus, stratus.db or a folder
    /// named `my stratus runs` is left as it is.</summary>
    public static string Spell(string message) =>
        Command == Installed || named is null || !message.Contains(Installed + " ", StringComparison.Ordinal) ? message : named.Replace(message, Command.Replace("$", "$$", StringComparison.Ordinal) + " ");
}
