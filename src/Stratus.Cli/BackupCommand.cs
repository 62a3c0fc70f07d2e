// `stratus backup --out <file>`: a consistent copy of the data directory's database (keys, usage,
// audit log, blocklists, safety policies) taken while servers run, which copying stratus.db is not
// (its latest changes are in stratus.db-wal), recorded in the audit log (who, when, the file, its
// sha256) as key changes are. Restoring is copying the file back as stratus.db
// with every Stratus process on that data directory stopped (docs/trust.md, "Backup and restore").
using System.CommandLine;
using Stratus.Platform;

namespace Stratus.Cli;

static class BackupCommand
{
    public static Command Create()
    {
        var output = OutputPaths.File("--out", "the backup file to write (replaced if it exists; its folder is made if missing)", required: true);
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("backup", "Copy the keys, usage, audit log, safety settings, model registry and jobs to one file, also while servers run.") { output, dataDir };
        command.SetAction(result =>
        {
            var directory = TrustCommands.ExistingDirectory(result, dataDir);
            var database = PlatformDatabase.Open(directory);
            var destination = Path.GetFullPath(result.GetValue(output)!);
            var backup = database.BackupTo(destination, TrustCommands.Actor);
            Console.WriteLine($"Backed up {database.FilePath} to {backup.File} ({backup.Bytes / 1024.0:N0} KB, sha256 {backup.Sha256}); audit entry {backup.Audit.Sequence}.");
            // SQLite keeps the -wal and -shm beside the file a linked stratus.db leads to.
            var file = database.SqliteFile;
            var name = Path.GetFileName(file);
            Console.WriteLine($"To restore: stop every Stratus process using {directory}, copy the file over " +
                $"{(file == database.FilePath ? $"{PlatformDatabase.FileName} there" : $"{file} (where {PlatformDatabase.FileName} there leads)")}, and delete {name}-wal and {name}-shm beside it.");
            return 0;
        });
        return command;
    }
}
