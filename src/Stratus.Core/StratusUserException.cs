namespace Stratus;

/// <summary>
/// An error the user caused and can fix (bad input, a missing file, an out-of-range value).
/// The CLI prints its message as one line and exits with code 2; the server turns it into a 4xx.
/// Bugs stay ordinary exceptions.
/// </summary>
public sealed class StratusUserException(string message, Exception? inner = null) : Exception(message, inner);
