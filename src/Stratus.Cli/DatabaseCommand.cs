// `stratus database copy --data-dir <dir> --to <postgres>`: moves a team's platform data from a data
// directory's stratus.db into a new, empty PostgreSQL database (DatabaseCopy), so that keys keep
// their secrets and the audit log its chain, then prints the rows copied per table and the audit
// chain's head, which `stratus audit verify` on the target shows again.
using System.CommandLine;
using Spectre.Console;
using Stratus.Platform;

namespace Stratus.Cli;

static class DatabaseCommand
{
    public static Command Create()
    {
        var database = new Command("database", "Move the platform's database (keys, audit log, usage, safety settings, model registry, jobs) between SQLite and PostgreSQL.");
        database.Subcommands.Add(Copy());
        return database;
    }

    static Command Copy()
    {
        var dataDir = TrustCommands.DataDirOption();
        var to = new Option<string?>("--to")
        {
            Description = $"the PostgreSQL database to copy into, a URI (postgresql://user@host:5432/database) or Npgsql's keywords (default: ${PlatformDatabase.DatabaseVariable}); " +
                "a new, empty one (its tables are made here), the password in ~/.pgpass or PGPASSWORD rather than on the command line",
        };
        var command = new Command("copy",
            $"Copy every table of the data directory's {PlatformDatabase.FileName} (read as one snapshot, also while servers run) into an empty PostgreSQL database, in one transaction: " +
            "keys keep their secrets, the audit log its hash chain, and the model registry (its paths as recorded), jobs, usage, blocklists and policies come along; " +
            "the copy is recorded in the target's audit log.") { dataDir, to };
        command.SetAction(result =>
        {
            var directory = StratusHome.Resolve(result.GetValue(dataDir));
            var copy = DatabaseCopy.Copy(directory, result.GetValue(to), TrustCommands.Actor);
            Console.WriteLine($"Copied {copy.Source} to {copy.Target}:");
            var table = new Table().AddColumn("table").AddColumn(new TableColumn("rows").RightAligned());
            foreach (var copied in copy.Tables) table.AddRow(Markup.Escape(copied.Name), copied.Rows.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
            TrustCommands.Write(table);
            Console.WriteLine(copy.Audit.Sequence == 1
                ? $"The audit log of {PlatformDatabase.FileName} was empty; entry 1 records the copy."
                : $"The audit log's chain ends at {copy.AuditHead} as in {PlatformDatabase.FileName}; entry {copy.Audit.Sequence} after it records the copy.");
            Console.WriteLine($"To use it, set {PlatformDatabase.DatabaseVariable} to it for the servers, CLIs and jobs; {PlatformDatabase.FileName} is left as it was.");
            return 0;
        });
        return command;
    }
}
