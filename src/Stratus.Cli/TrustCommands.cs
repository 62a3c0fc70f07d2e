// What the trust verbs (keys, audit, usage, blocklist, backup) share: the --data-dir option, opening the
// platform stores it names, the audit actor for changes made from the command line, and
// parsing of dates.
using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Cli;

static class TrustCommands
{
    public const string DataDirName = "--data-dir";

    // Says what is kept there: the demo also reads $STRATUS_DATA_DIR, a folder of corpora.
    public static Option<string> DataDirOption() => PathOptions.Option(DataDirName,
        $"Stratus data directory: its stratus.db keeps API keys, usage, blocklists, models, jobs and the audit log, unless ${PlatformDatabase.DatabaseVariable} names a PostgreSQL database, which keeps them instead " +
        $"(default: ${StratusHome.EnvironmentVariable}, else the user's data directory: ~/.local/share/stratus on Linux)");

    /// <summary>The data directory without --data-dir; null where there is none to find.</summary>
    public static string? DefaultDataDirectory()
    {
        try
        {
            return StratusHome.Resolve();
        }
        catch (TrustUserException)
        {
            return null;
        }
    }

    public static PlatformStores Open(ParseResult result, Option<string> dataDir) =>
        PlatformStores.Open(StratusHome.Resolve(result.GetValue(dataDir)));

    /// <summary>The stores for a verb that only reads them: a data directory without a database
    /// (a mistyped --data-dir) is an error, not a new empty database reported as intact.</summary>
    public static PlatformStores OpenExisting(ParseResult result, Option<string> dataDir) =>
        PlatformStores.Open(ExistingDirectory(result, dataDir));

    /// <summary>The data directory, whose database (stratus.db there, or the PostgreSQL database
    /// $STRATUS_DATABASE names) must hold Stratus's data already; a file given as one is left for
    /// PlatformDatabase.Open to name as such.</summary>
    public static string ExistingDirectory(ParseResult result, Option<string> dataDir)
    {
        var directory = StratusHome.Resolve(result.GetValue(dataDir));
        if (!File.Exists(directory) && !PlatformDatabase.Exists(directory))
            throw new TrustUserException(PlatformDatabase.PostgresChosen
                ? $"no Stratus data in {PlatformDatabase.Describe(directory)} (no Stratus tables); check ${PlatformDatabase.DatabaseVariable} (keys and servers create them)"
                : $"no Stratus data in {directory} (no {PlatformDatabase.FileName}); check --data-dir or ${StratusHome.EnvironmentVariable} (keys and servers create it)");
        return directory;
    }

    /// <summary>Who made a change from the CLI, as the audit log records it.</summary>
    public static string Actor => $"cli:{Environment.UserName}";

    /// <summary>Writes a table; piped output has no width of its own, and a wide one keeps each
    /// row on one line for grep and scripts instead of wrapping at 80 columns.</summary>
    public static void Write(Table table)
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 240;
        AnsiConsole.Write(table);
    }

    /// <exception cref="TrustUserException">Not a yyyy-MM-dd date.</exception>
    public static DateOnly? ParseDay(string? text, string option) =>
        text is null ? null
        : DateOnly.TryParseExact(text, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day) ? day
        : throw new TrustUserException($"{option} must be a date as yyyy-MM-dd, not '{text}'.");
}
