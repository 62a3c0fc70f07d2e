namespace Stratus;

/// <summary>
/// An error the user caused and can fix (bad input, a missing file, an out-of-range value).
/// The CLI prints its message as one line and exits with code 2; the server turns it into a 4xx.
/// Bugs stay ordinary exceptions.
/// </summary>
public sealed class StratusUserException(string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>Rewrites the .NET type names that parsers put in their messages ("System.Int32")
    /// as what the user should write ("a whole number").</summary>
    public static string InUsersWords(string message) => System.Text.RegularExpressions.Regex.Replace(message,
        @"(?:(?:expected )?type )?'?System\.(Int32|Int64|Double|Single|Boolean|String)'?", match => match.Groups[1].Value switch
        {
            "Int32" or "Int64" => "a whole number",
            "Double" or "Single" => "a number",
            "Boolean" => "true or false",
            _ => "text",
        });
}
