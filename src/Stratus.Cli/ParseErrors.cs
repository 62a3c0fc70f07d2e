// What the command line parser refused, as one line. System.CommandLine reports a word it does not
// know together with every word after it ("--max-iter 5" is two unrecognized arguments) and, for
// an unknown verb, adds "Required command was not provided": the line names the first unknown
// word instead, with the verb or option nearest to it, as an unknown config key in a JSON file is.
using System.CommandLine;
using System.CommandLine.Parsing;

namespace Stratus.Cli;

static class ParseErrors
{
    public static string Describe(ParseResult parsed)
    {
        var commands = new List<Command>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as CommandResult) commands.Insert(0, result.Command);
        var current = commands[^1];
        var verb = string.Join(' ', ["stratus", .. commands.Skip(1).Select(c => c.Name)]);
        var help = $"see `{verb} --help`";
        if (parsed.UnmatchedTokens is not [var word, ..])
            return string.Join(' ', parsed.Errors.Select(e => StratusUserException.InUsersWords(e.Message)));
        if (word.StartsWith('-'))
        {
            // The command's own options and those its parents share with it (--help).
            var options = commands.SelectMany(c => c.Options.Where(o => c == current || o.Recursive)).Where(o => !o.Hidden)
                .SelectMany(o => o.Aliases.Prepend(o.Name));
            return $"unknown option '{word}' for `{verb}`{Suggestion(word, options)}; {help}";
        }
        if (current.Subcommands.Count > 0)
        {
            var verbs = current.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
            return $"unknown verb '{word}'{(commands.Count > 1 ? $" for `{verb}`" : "")}{Suggestion(word, verbs)}; the verbs are {string.Join(", ", verbs)}: {help}";
        }
        // Most often the second word of a value with a space in it: --prompt Hello world.
        return $"unexpected argument '{word}' for `{verb}` (put quotes around a value that has spaces); {help}";
    }

    static string Suggestion(string word, IEnumerable<string> names) => Spelling.Nearest(word, names) is { } nearest ? $" (did you mean {nearest}?)" : "";
}
