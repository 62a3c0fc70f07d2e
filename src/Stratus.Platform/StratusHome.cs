// Where Stratus keeps its trust state (stratus.db: keys, usage, the audit log, safety
// configuration): --data-dir if given, else $STRATUS_HOME, else a "stratus" folder in the user's
// local application data directory (~/.local/share/stratus on Linux, %LOCALAPPDATA%\stratus on
// Windows).
using Stratus.Safety;

namespace Stratus.Platform;

public static class StratusHome
{
    public const string EnvironmentVariable = "STRATUS_HOME";

    /// <exception cref="TrustUserException">No directory can be determined.</exception>
    public static string Resolve(string? dataDir = null)
    {
        if (!string.IsNullOrWhiteSpace(dataDir)) return Path.GetFullPath(dataDir);
        var fromEnvironment = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(fromEnvironment)) return Path.GetFullPath(fromEnvironment);
        // DoNotVerify: on a fresh account ~/.local/share does not exist yet, and .NET would
        // answer "" for it; the database's folder is created when it is opened.
        var appData = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
        if (string.IsNullOrEmpty(appData))
            throw new TrustUserException($"Cannot find a user data directory; pass --data-dir or set {EnvironmentVariable}.");
        return Path.Combine(appData, "stratus");
    }
}
