// `stratus blocklist add|list|remove`: custom blocklists for the content-safety policies. `add`
// creates a list or adds terms and patterns to it (patterns are validated as regular
// expressions before anything is stored); `remove` deletes entries, or the whole list. Each
// change is one transaction in SafetyConfiguration, so verbs run at once lose no entry.
using System.CommandLine;
using Spectre.Console;
using Stratus.Safety;

namespace Stratus.Cli;

static class BlocklistCommand
{
    public static Command Create()
    {
        var blocklist = new Command("blocklist", "Manage custom blocklists (terms and regular expressions).");
        blocklist.Subcommands.Add(Add());
        blocklist.Subcommands.Add(List());
        blocklist.Subcommands.Add(Remove());
        return blocklist;
    }

    static Command Add()
    {
        var name = new Argument<string>("name") { Description = "the blocklist's name" };
        var terms = new Option<string[]>("--term") { Description = "a term matched as whole words, case-insensitively (repeatable)", AllowMultipleArgumentsPerToken = false };
        var patterns = new Option<string[]>("--pattern") { Description = "a .NET regular expression (repeatable)" };
        var category = new Option<string?>("--category") { Description = "category hits are reported under (hate, sexual, violence, self_harm, ...); default hate, or the list's own" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("add", "Create a blocklist or add terms and patterns to it.") { name, terms, patterns, category, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var safety = TrustCommands.Open(result, dataDir).SafetyConfiguration();
            var listName = result.GetValue(name)!;
            var newTerms = result.GetValue(terms) ?? [];
            var newPatterns = result.GetValue(patterns) ?? [];
            if (newTerms.Length == 0 && newPatterns.Length == 0) throw new TrustUserException("Give at least one --term or --pattern.");
            var chosen = result.GetValue(category) is { } c ? SafetyNames.ParseCategory(c) : (SafetyCategory?)null;
            var list = await safety.AddToBlocklistAsync(listName, newTerms, newPatterns, chosen, TrustCommands.Actor, ct);
            Console.WriteLine($"Blocklist '{list.Name}' ({list.Category.WireName()}): {list.Terms.Count} terms, {list.Patterns.Count} patterns.");
            return 0;
        });
        return command;
    }

    static Command List()
    {
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("list", "List blocklists with their terms and patterns.") { dataDir };
        command.SetAction(async (result, ct) =>
        {
            var lists = await TrustCommands.OpenExisting(result, dataDir).SafetyConfiguration().ListBlocklistsAsync(ct);
            if (lists.Count == 0)
            {
                Console.WriteLine("No blocklists.");
                return 0;
            }
            var table = new Table().AddColumns("Name", "Category", "Terms", "Patterns");
            foreach (var l in lists)
                table.AddRow(Markup.Escape(l.Name), l.Category.WireName(), Markup.Escape(string.Join(", ", l.Terms)), Markup.Escape(string.Join("  ", l.Patterns)));
            TrustCommands.Write(table);
            return 0;
        });
        return command;
    }

    static Command Remove()
    {
        var name = new Argument<string>("name") { Description = "the blocklist's name" };
        var terms = new Option<string[]>("--term") { Description = "remove this term only (repeatable)" };
        var patterns = new Option<string[]>("--pattern") { Description = "remove this pattern only (repeatable)" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("remove", "Remove terms or patterns from a blocklist, or without them the whole list.") { name, terms, patterns, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var safety = TrustCommands.Open(result, dataDir).SafetyConfiguration();
            var listName = result.GetValue(name)!;
            var dropTerms = result.GetValue(terms) ?? [];
            var dropPatterns = result.GetValue(patterns) ?? [];
            if (dropTerms.Length == 0 && dropPatterns.Length == 0)
            {
                await safety.DeleteBlocklistAsync(listName, TrustCommands.Actor, ct);
                Console.WriteLine($"Deleted blocklist '{listName}'.");
                return 0;
            }
            var list = await safety.RemoveFromBlocklistAsync(listName, dropTerms, dropPatterns, TrustCommands.Actor, ct);
            Console.WriteLine($"Blocklist '{list.Name}': {list.Terms.Count} terms, {list.Patterns.Count} patterns.");
            return 0;
        });
        return command;
    }
}
