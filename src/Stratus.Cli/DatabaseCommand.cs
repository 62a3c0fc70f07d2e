// `stratus database copy --data-dir <dir> --to <postgres>`: moves a team's platform data from a data
// directory's stratus.db into a new, empty PostgreSQL database (DatabaseCopy), so that keys keep
// their secrets and the audit log its chain, then prints the rows copied per table and the audit
// chain's head, which `stratus audit verify` on the target shows again. Ctrl+C (or SIGTERM) stops
// it with the target's transaction rolled back, and the exit code a shell gives the signal.
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
        var migrateSource = new Option<bool>("--migrate-source")
        {
            Description = $"migrate a {PlatformDatabase.FileName} of an older Stratus to this one's schema in place first, as a server of this Stratus would on start " +
                "(without it such a file is refused: the copy leaves the database it copies as it is, and the older Stratus refuses a migrated one)",
        };
        var command = new Command("copy",
            $"Copy every table of the data directory's {PlatformDatabase.FileName} (read as one snapshot, also while servers run) into an empty PostgreSQL database, in one transaction: " +
            "keys keep their secrets, the audit log its hash chain, and the model registry (its paths as recorded), jobs, usage, blocklists and policies come along; " +
            "the copy is recorded in both audit logs. Ctrl+C stops it with nothing copied.") { dataDir, to, migrateSource };
        command.SetAction(result =>
        {
            var directory = StratusHome.Resolve(result.GetValue(dataDir));
            DatabaseCopyResult copy;
            using (var stop = new StopRequest())
            {
                try
                {
                    copy = DatabaseCopy.Copy(directory, result.GetValue(to), TrustCommands.Actor, result.GetValue(migrateSource), stop.Token);
                }
                // The target's transaction was rolled back, the server's statement cancelled.
                catch (OperationCanceledException) when (stop.Token.IsCancellationRequested)
                {
                    Console.Error.WriteLine("stopped: nothing was copied (the target's transaction was rolled back); copy again into the same database");
                    return stop.ExitCode;
                }
            }
            Console.WriteLine($"Copied {copy.Source} to {copy.Target}:");
            var table = new Table().AddColumn("table").AddColumn(new TableColumn("rows").RightAligned());
            foreach (var copied in copy.Tables) table.AddRow(Markup.Escape(copied.Name), copied.Rows.ToString("N0", System.Globalization.CultureInfo.InvariantCulture));
            TrustCommands.Write(table);
            Console.WriteLine(copy.Audit.Sequence == 1
                ? $"The audit log of {PlatformDatabase.FileName} was empty; entry 1 records the copy."
                : $"The audit log's chain ends at {copy.AuditHead} as in {PlatformDatabase.FileName}; entry {copy.Audit.Sequence} after it records the copy.");
            if (copy.SourceAudit is { } recorded)
                Console.WriteLine($"{PlatformDatabase.FileName}'s audit log records it too, as entry {recorded.Sequence}; its rows are left as they were.");
            else
                Console.Error.WriteLine($"warning: the copy is whole and need not be made again, but {PlatformDatabase.FileName}'s audit log could not record it: {copy.SourceUnrecorded}");
            Console.WriteLine($"To use it, set {PlatformDatabase.DatabaseVariable} to it for the servers, CLIs and jobs.");
            return 0;
        });
        return command;
    }
}
