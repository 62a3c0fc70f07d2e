// `stratus audit verify|list`: check the audit log's hash chain (exit 0 when intact, 1 naming the
// first bad entry) and read its entries, a key's actions under its name (ActorNames).
using System.CommandLine;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Cli;

static class AuditCommand
{
    public static Command Create()
    {
        var audit = new Command("audit", "Verify and read the audit log.");
        audit.Subcommands.Add(Verify());
        audit.Subcommands.Add(List());
        return audit;
    }

    static Command Verify()
    {
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("verify", "Check the audit log's hash chain; exit 1 naming the first bad entry.") { dataDir };
        command.SetAction(async (result, ct) =>
        {
            var v = await TrustCommands.OpenExisting(result, dataDir).Audit.VerifyAsync(ct);
            if (!v.Valid)
            {
                Console.Error.WriteLine($"audit log broken at entry {v.FirstBadSequence}: {v.Problem} ({v.EntriesChecked} entries before it check out)");
                return 1;
            }
            Console.WriteLine($"audit log intact: {v.EntriesChecked} {(v.EntriesChecked == 1 ? "entry" : "entries")}, head hash {v.HeadHash}");
            Console.WriteLine("Keep the head hash elsewhere to detect truncation of the newest entries.");
            return 0;
        });
        return command;
    }

    static Command List()
    {
        var action = new Option<string?>("--action") { Description = $"only this action ({AuditActions.KeyCreated}, {AuditActions.RequestFiltered}, ...)" };
        var after = new Option<long>("--after") { Description = "entries after this sequence number (paging)" };
        var limit = new Option<int>("--limit") { Description = "at most this many entries", DefaultValueFactory = _ => 100 };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("list", "List audit log entries, oldest first.") { action, after, limit, dataDir };
        command.SetAction(async (result, ct) =>
        {
            if (result.GetValue(limit) < 1) throw new TrustUserException("--limit must be at least 1.");
            var stores = TrustCommands.OpenExisting(result, dataDir);
            var entries = await stores.Audit.ReadAsync(
                new AuditQuery(result.GetValue(after), result.GetValue(limit), result.GetValue(action)), ct);
            if (entries.Count == 0)
            {
                Console.WriteLine("No audit entries.");
                return 0;
            }
            var names = await ActorNames.ReadAsync(stores.KeyService(), ct);
            var table = new Table().AddColumns("Seq", "Time (UTC)", "Actor", "Action", "Details");
            foreach (var e in entries)
                table.AddRow(e.Sequence.ToString(), e.Time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss"), Markup.Escape(names.Describe(e.Actor)), e.Action, Markup.Escape(e.Details));
            TrustCommands.Write(table);
            return 0;
        });
        return command;
    }
}
