namespace Stratus;

/// <summary>
/// An error the user caused and can fix (bad input, a missing file, an out-of-range value).
/// The CLI prints its message as one line and exits with code 2; the server turns it into a 4xx.
/// Bugs stay ordinary exceptions.
/// </summary>
public sealed class StratusUserException(string message, Exception? inner = null) : Exception(message, inner)
{
    readonly Func<Stratus.Safety.Surface, string>? worded;

    /// <summary>An error whose message names what the user gave or may do (an option, a command),
    /// composed for the surface that shows it (<see cref="MessageOn"/>): the CLI's options and
    /// commands, or the API's fields and requests. <see cref="Exception.Message"/> is the CLI's.</summary>
    public StratusUserException(Func<Stratus.Safety.Surface, string> message, Exception? inner = null) : this(message(Stratus.Safety.Surface.Cli), inner) => worded = message;

    /// <summary>The message in <paramref name="surface"/>'s words.</summary>
    public string MessageOn(Stratus.Safety.Surface surface) => worded?.Invoke(surface) ?? Message;

    /// <summary>The request parameter at fault, in the OpenAI API's words, where the error is one
    /// parameter's (the server's 400 names it, as OpenAI's do); null otherwise.</summary>
    public string? Param { get; init; }

    /// <summary>OpenAI's code for the error (invalid_value, unsupported_value), with <see cref="Param"/>.</summary>
    public string? Code { get; init; }

    /// <summary>This error said of <paramref name="param"/>: what an API that took the input under
    /// another name answers.</summary>
    public StratusUserException WithParam(string param) => new(MessageOn, this) { Param = param, Code = Code };

    /// <summary>Rewrites the .NET type a parser names at the end of its message ("could not be
    /// converted to System.Nullable`1[System.Int32].", "as expected type 'System.Int32'.") as what
    /// the user should write ("a whole number"), and puts the allowed values System.CommandLine
    /// lists one per line ("Must be one of:\n\t'char'\n\t'gpt2'") on the message's one line.
    /// <paramref name="target"/>: the type the value was read as, where the parser names another.</summary>
    public static string InUsersWords(string message, Type? target = null) => System.Text.RegularExpressions.Regex.Replace(
        System.Text.RegularExpressions.Regex.Replace(message, @"(?<colon>:?)\r?\n\t", match => match.Groups["colon"].Length > 0 ? ": " : ", "),
        @"(?<lead>as expected type '|converted to )(?<type>[^'\s]+?)'?(?<end>\.?)$",
        match => $"{(match.Groups["lead"].Value.StartsWith("as", StringComparison.Ordinal) ? "as " : "converted to ")}{KindOf(target?.ToString() ?? match.Groups["type"].Value)}{match.Groups["end"].Value}");

    /// <summary>A System.Text.Json error's reason without its "Path: ... | LineNumber: ..." tail,
    /// in the user's words; <paramref name="target"/> as above (a record's field bound through its
    /// constructor is reported as the record).</summary>
    public static string InUsersWords(System.Text.Json.JsonException e, Type? target = null) =>
        InUsersWords(System.Text.RegularExpressions.Regex.Replace(e.Message, @" (Path|LineNumber): .*$", ""), target);

    /// <summary>"&lt;path&gt; is not valid JSON at line 3, column 14: &lt;reason&gt;", counted from 1 as
    /// editors count (the parser counts from 0). A JSONL reader, which parses each line alone,
    /// passes the line of the file.</summary>
    public static StratusUserException NotValidJson(string path, System.Text.Json.JsonException e, long? fileLine = null, string? hint = null) =>
        new($"{path} is not valid JSON at line {fileLine ?? (e.LineNumber ?? 0) + 1}, column {(e.BytePositionInLine ?? 0) + 1}: {InUsersWords(e)}{(hint is null ? "" : " " + hint)}", e);

    static string KindOf(string type) =>
        type.Contains("[]", StringComparison.Ordinal) || type.Contains("List`", StringComparison.Ordinal)
            || type.Contains("Collection`", StringComparison.Ordinal) || type.Contains("Enumerable`", StringComparison.Ordinal) ? "a list"
        : type.Contains("Int", StringComparison.Ordinal) ? "a whole number"
        : type.Contains("Double", StringComparison.Ordinal) || type.Contains("Single", StringComparison.Ordinal) || type.Contains("Decimal", StringComparison.Ordinal) ? "a number"
        : type.Contains("Boolean", StringComparison.Ordinal) ? "true or false"
        : type.EndsWith("String", StringComparison.Ordinal) ? "text"
        : "an object";
}
