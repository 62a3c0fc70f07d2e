// A path the file system refused, as one line: the path, the cause in a user's words and the fix
// (another path, in the option that gave it, or more space). .NET names the path only in its
// message ("Read-only file system : '/data/run'", "Access to the path '/data/run' is denied.")
// and, on Unix, gives the cause as the errno in the exception's HResult.
using System.CommandLine;
using System.Text.RegularExpressions;
using Stratus.Platform;

namespace Stratus.Cli;

static partial class FileSystemErrors
{
    // Unix errno values; Windows' HResults (0x8007....) are never these.
    const int NoSpaceLeft = 28, ReadOnlyFileSystem = 30;
    static readonly int DiskQuotaExceeded = OperatingSystem.IsLinux() ? 122 : 69;

    /// <summary>The line for <paramref name="e"/> (an IOException or UnauthorizedAccessException)
    /// met by the command of <paramref name="parsed"/>; .NET's message where it names no path or a
    /// cause not known here.</summary>
    public static string Describe(Exception e, ParseResult parsed)
    {
        // An IOException of Stratus's own (PlatformStorageException) already says what to do.
        if (e.GetType().Assembly != typeof(IOException).Assembly || QuotedPath().Match(e.Message) is not { Success: true } match) return e.Message;
        // A file is written to a temporary sibling first: the one the user named is the one to show.
        var path = AtomicFile.TargetOf(match.Groups["path"].Value);
        var noSpace = e.HResult == NoSpaceLeft || e.HResult == DiskQuotaExceeded;
        var (write, cause) = e switch
        {
            IOException { HResult: ReadOnlyFileSystem } => (true, "read-only file system"),
            IOException { HResult: NoSpaceLeft } => (true, "no space left on the device"),
            IOException when noSpace => (true, "disk quota exceeded"),
            // Reading as well as writing.
            UnauthorizedAccessException => (false, "permission denied"),
            IOException when OutputPaths.FileInTheWay(path) is { } problem => (false, problem),
            _ => (false, null),
        };
        if (cause is null) return e.Message;
        var elsewhere = OptionHolding(path, parsed) switch
        {
            { Given: true } option => $"another {option.Name}",
            { } option => $"a data directory other than {option.Value} with {option.Name} or ${StratusHome.EnvironmentVariable}",
            null => $"another path (see `{ParseErrors.Verb(parsed)} --help`)",
        };
        var fix = noSpace ? $"free space or choose {elsewhere}" : e is UnauthorizedAccessException ? $"check its permissions or choose {elsewhere}" : $"choose {elsewhere}";
        return $"{(write ? "cannot write " : "")}{path}: {cause}; {fix}";
    }

    /// <summary>The option of the command whose path (as given or by default) is
    /// <paramref name="path"/>; else one whose path is below it (a folder made on the way there:
    /// .NET names the first folder it could not make, as `/data` for --out /data/runs/x); else one
    /// whose path is a folder above it, the nearest one where several are. Its path, and whether
    /// it was given (else it is the data directory --data-dir left out stands for).</summary>
    static (string Name, string Value, bool Given)? OptionHolding(string path, ParseResult parsed)
    {
        var absolute = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        return parsed.CommandResult.Command.Options
            .SelectMany(option => Values(parsed, option).Select(value => (option.Name, Value: Path.TrimEndingDirectorySeparator(Path.GetFullPath(value.Path)), value.Given)))
            .Select(o => (Option: (o.Name, o.Value, o.Given), Rank: o.Value == absolute ? 0 : Within(o.Value, absolute) ? 1 : Within(absolute, o.Value) ? 2 : 3))
            .Where(o => o.Rank < 3)
            .OrderBy(o => o.Rank).ThenByDescending(o => o.Option.Value.Length).Select(o => ((string, string, bool)?)o.Option).FirstOrDefault();
    }

    static bool Within(string path, string folder) => path.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    static IEnumerable<(string Path, bool Given)> Values(ParseResult parsed, Option option) => parsed.GetResult(option) switch
    {
        { } result when option.ValueType == typeof(string) => result.GetValueOrDefault<string?>() is { Length: > 0 } value ? [(value, true)] : [],
        { } result when option.ValueType == typeof(string[]) => (result.GetValueOrDefault<string[]?>() ?? []).Select(value => (value, true)),
        // Left out, --data-dir stands for $STRATUS_HOME or the home folder's (StratusHome), which
        // the user may not know a verb writes: a path on the way there is named with both.
        null when option.Name == TrustCommands.DataDirName && TrustCommands.DefaultDataDirectory() is { } directory => [(directory, false)],
        _ => [],
    };

    // The path between the first and the last quote of .NET's message.
    [GeneratedRegex("'(?<path>.+)'")]
    private static partial Regex QuotedPath();
}
