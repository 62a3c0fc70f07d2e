// What the command line parser refused, as one line. System.CommandLine reports a word it does not
// know together with every word after it ("--max-iter 5" is two unrecognized arguments) and, for
// an unknown verb, adds "Required command was not provided": the line names the first unknown
// word instead, with the verb or option nearest to it, as an unknown config key in a JSON file is.
// A missing argument is named by its own name, where the parser names only the command that lacks it.
using System.CommandLine;
using System.CommandLine.Parsing;

namespace Stratus.Cli;

static class ParseErrors
{
    public static string Describe(ParseResult parsed)
    {
        var commands = Commands(parsed);
        var verb = Verb(commands);
        if (parsed.UnmatchedTokens is not [var word, ..])
        {
            var missing = parsed.Errors.Select(Missing).ToList();
            return string.Join(' ', parsed.Errors.Zip(missing, (e, what) => what is null ? StratusUserException.InUsersWords(e.Message) : $"`{verb}` needs {what}."))
                + (missing.Any(what => what is not null) ? $" See `{verb} --help`." : "");
        }
        // A word typed before a verb (`stratus help train`, `stratus keys lst create`) stood where a
        // verb of the command before it goes, not after the verb the parser found: it is that
        // command's unknown verb. The parents of a verb take no values, so the first argument token
        // with the word's text is the word.
        commands = commands[..(1 + parsed.Tokens.TakeWhile(t => t.Type != TokenType.Argument || t.Value != word).Count(t => t.Type == TokenType.Command))];
        var current = commands[^1];
        verb = Verb(commands);
        var help = $"see `{verb} --help`";
        // System.CommandLine runs --version without looking at the rest of the line.
        if (commands[0].Options.OfType<VersionOption>().FirstOrDefault() is { } version && parsed.GetResult(version) is not null)
            return $"unexpected argument '{word}' after --version, which takes none; `stratus --version` alone prints the version";
        if (word.StartsWith('-'))
        {
            var options = Options(commands).SelectMany(o => o.Aliases.Prepend(o.Name));
            return $"unknown option '{word}' for `{verb}`{Suggestion(word, options)}; {help}";
        }
        if (current.Subcommands.Count > 0)
        {
            var verbs = current.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
            // `stratus help`, `stratus version`: an option of the command typed as a verb.
            var optionsAsVerbs = Options(commands).Select(o => o.Name).Where(name => name.StartsWith("--", StringComparison.Ordinal)).ToDictionary(name => name[2..]);
            var suggestion = Spelling.Nearest(word, verbs.Concat(optionsAsVerbs.Keys)) is { } nearest ? $" (did you mean {optionsAsVerbs.GetValueOrDefault(nearest, nearest)}?)" : "";
            return $"unknown verb '{word}'{(commands.Count > 1 ? $" for `{verb}`" : "")}{suggestion}; the verbs are {string.Join(", ", verbs)}: {help}";
        }
        // Most often the second word of a value with a space in it: --prompt Hello world.
        return $"unexpected argument '{word}' for `{verb}` (put quotes around a value that has spaces); {help}";
    }

    /// <summary>The verb the user typed, as `stratus keys create`.</summary>
    public static string Verb(ParseResult parsed) => Verb(Commands(parsed));

    static string Verb(List<Command> commands) => string.Join(' ', ["stratus", .. commands.Skip(1).Select(c => c.Name)]);

    // From the root command to the one the line names.
    static List<Command> Commands(ParseResult parsed)
    {
        var commands = new List<Command>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as CommandResult) commands.Insert(0, result.Command);
        return commands;
    }

    /// <summary>What a "Required argument missing" error lacks, named: the parser names only the
    /// command ("for command: 'revoke'") or the option ("for option: '--out'") that lacks it.</summary>
    static string? Missing(ParseError error) => error.SymbolResult switch
    {
        ArgumentResult { Parent: CommandResult, Argument: var argument } result when result.Tokens.Count < argument.Arity.MinimumNumberOfValues
            => $"<{argument.Name}>",
        // Given without its value; a required option not given at all is reported as such.
        OptionResult { Option: var option, IdentifierToken: not null, Tokens.Count: 0 } when option.Arity.MinimumNumberOfValues > 0 => $"a value after {option.Name}",
        _ => null,
    };

    // The innermost command's own options and those its parents share with it (--help).
    static IEnumerable<Option> Options(List<Command> commands) =>
        commands.SelectMany(c => c.Options.Where(o => c == commands[^1] || o.Recursive)).Where(o => !o.Hidden);

    static string Suggestion(string word, IEnumerable<string> names) => Spelling.Nearest(word, names) is { } nearest ? $" (did you mean {nearest}?)" : "";
}
