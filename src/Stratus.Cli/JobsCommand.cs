// `stratus jobs submit|list|show|logs|cancel`: training runs the platform starts and follows
// outside the shell that submitted them (Platform/Jobs: the job service, its local executor and
// its Slurm one). `submit` takes train's arguments (a new run, one --init-from a model, or a run
// continued with --resume), checks them as train would (nothing is recorded where train would
// refuse them) and returns at once, printing the job's id. `list` and `show`
// print a table or, with --json, the API's job objects. `jobs supervise <id>`, hidden, is the local
// executor's supervisor: it runs the job's `stratus train` and records how it ended.
using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Platform.Jobs;
using Stratus.Safety;
using Stratus.Server.Trust;
using Stratus.Training;

namespace Stratus.Cli;

static class JobsCommand
{
    public static Command Create()
    {
        var jobs = new Command("jobs", "Submit training jobs that run on without the shell, and list, follow and cancel them.");
        jobs.Subcommands.Add(Submit());
        jobs.Subcommands.Add(List());
        jobs.Subcommands.Add(Show());
        jobs.Subcommands.Add(Logs());
        jobs.Subcommands.Add(Cancel());
        jobs.Subcommands.Add(Supervise());
        return jobs;
    }

    /// <summary>The command line that runs this CLI again: its executable, or `dotnet` and
    /// stratus.dll where dotnet runs it (the launcher script, the tests).</summary>
    public static IReadOnlyList<string> SelfCommand()
    {
        var process = Environment.ProcessPath ?? throw new InvalidOperationException("the CLI's executable is unknown");
        return Path.GetFileNameWithoutExtension(process) == "dotnet" ? [process, typeof(JobsCommand).Assembly.Location] : [process];
    }

    static JobService OpenExisting(ParseResult result, Option<string> dataDir) =>
        JobService.Open(TrustCommands.ExistingDirectory(result, dataDir), SelfCommand());

    /// <summary>The keys that submitted or cancelled jobs, by their names (ActorNames).</summary>
    static ValueTask<ActorNames> Names(ParseResult result, Option<string> dataDir, CancellationToken cancellation) =>
        ActorNames.ReadAsync(TrustCommands.OpenExisting(result, dataDir).KeyService(), cancellation);

    static Option<bool> JsonOption(string what) => new("--json") { Description = $"print {what} as JSON, the objects GET /api/jobs answers with" };

    static Command Submit()
    {
        var config = ReadyConfigs.Option("training config (JSON, nanoGPT key names), as for `stratus train`");
        var data = PathOptions.Option("--data", "dataset folder made by `stratus prepare` (with --resume: the run's dataset, when it moved)");
        var output = OutputPaths.Folder("--out", "run folder: metrics.jsonl, checkpoints/ and the job's log");
        var resume = PathOptions.Option("--resume", "continue the run in this folder from its last checkpoint, with its own config and dataset (as `stratus train --resume`)");
        var initFrom = PathOptions.Option("--init-from", "start from the weights of a trained or imported model (run or checkpoint folder), or a registered one (NAME, NAME:VERSION, NAME@ALIAS, resolved now), as `stratus train --init-from`");
        var dataDir = TrustCommands.DataDirOption();
        var executor = new Option<string>("--executor")
        {
            Description = "what runs the job: local (a process on this machine) or slurm (a batch job sbatch hands to the cluster's scheduler; the CLI, dataset and run folder must be where its nodes see them)",
            DefaultValueFactory = _ => LocalJobExecutor.ExecutorName,
        };
        executor.AcceptOnlyFromAmong(LocalJobExecutor.ExecutorName, SlurmJobExecutor.ExecutorName);
        var partition = new Option<string>("--partition") { Description = "with --executor slurm: the partition to run in (default: the cluster's default; sinfo lists them)", HelpName = "name" };
        var time = new Option<string>("--time") { Description = "with --executor slurm: the job's time limit, as sbatch takes it (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS, UNLIMITED; default: the partition's)", HelpName = "limit" };
        var ranks = new Option<int?>("--ranks")
        {
            Description = "with --executor slurm: data-parallel MPI ranks to train on (srun --mpi=pmix; default 1); gradient_accumulation_steps must be a multiple of it",
            HelpName = "n",
        };
        var cpusPerRank = new Option<int?>("--cpus-per-rank")
        {
            Description = "with --executor slurm: CPUs each rank is given (sbatch --cpus-per-task), and the threads its libtorch runs (default 1, what Slurm gives a task unless asked)",
            HelpName = "c",
        };
        var command = new Command("submit", "Start `stratus train` as a job that runs on after this command returns; prints its id.") { config, data, output, resume, initFrom, dataDir, executor, partition, time, ranks, cpusPerRank };
        var overrides = new ConfigOptions(command);
        command.SetAction((result, ct) =>
        {
            var resumed = result.GetValue(resume);
            if (resumed is not null) TrainCommand.RequireResumeAlone(result, config, output, initFrom);
            var runner = result.GetValue(executor)!;
            var slurm = SlurmOptions.Requested(runner, result.GetValue(partition), result.GetValue(time), result.GetValue(ranks), result.GetValue(cpusPerRank));
            // Resolved once, here: the job records the version, so an alias moved later does not change what it starts from.
            var model = resumed is null && result.GetValue(initFrom) is { } given ? TrainCommand.InitFrom(given, result.GetValue(dataDir)) : null;
            var arguments = resumed is not null
                ? new TrainArguments(null, result.GetValue(data) is { } moved ? Path.GetFullPath(moved) : null, Path.GetFullPath(resumed), overrides.Overrides(result), Resume: true)
                : new TrainArguments(result.GetValue(config) is { } file ? Path.GetFullPath(file) : null, Path.GetFullPath(TrainCommand.Required(result, data)),
                    Path.GetFullPath(TrainCommand.Required(result, output)), overrides.Overrides(result), InitFrom: model is null ? null : Path.GetFullPath(model.Path), InitFromVersion: model?.Version?.Reference,
                    InitFromManifest: model?.Version?.Checkpoint.ManifestSha256);
            var home = StratusHome.Resolve(result.GetValue(dataDir));
            // A folder a job or a training writes first (naming the job where one does): it holds a
            // model too, which is not what to fix. A data directory without a database has no jobs,
            // and a refused submission makes none.
            if (PlatformDatabase.Exists(home)) JobService.Open(home, SelfCommand()).RequireNoJobWriting(arguments.Out);
            if (Trainer.RunInUse(arguments.Out) is { } inUse) throw inUse;
            Trainer.CheckRanks(arguments.Resume ? Trainer.CheckResume(arguments.Out, arguments.Overrides, arguments.Data)
                : Trainer.CheckStart(arguments.Config, arguments.Overrides, arguments.Data!, arguments.Out, arguments.InitFrom), slurm?.Ranks ?? 1);
            if (arguments.InitFrom is not null) arguments = ModelsCommand.Open(result.GetValue(dataDir)).WithFolderVersion(arguments);
            var job = JobService.Open(home, SelfCommand()).Submit(arguments, TrustCommands.Actor, runner, slurm);
            Console.WriteLine($"submitted {job.Id}{(runner == SlurmJobExecutor.ExecutorName ? $" (Slurm job {job.ExecutorReference})" : "")}: {(arguments.Resume ? "resume" : "train into")} {job.Arguments.Out}, its output in {job.LogFile}");
            // A rank's libtorch runs a thread a CPU it asked for: one, unless told, where a local job runs one a core.
            if (job.Resources is { } asked) Console.WriteLine($"asked of Slurm: {SlurmResources(asked)} (each rank training on a thread a CPU: --cpus-per-rank for more)");
            // The default stays one CPU a rank (what Slurm gives a task unless asked, and what any
            // node can start at once); where the partition's nodes have more, say how to use them.
            if (job.Resources is { } sized && result.GetValue(cpusPerRank) is null && SlurmJobExecutor.NodeCpus(sized.Partition) is { } nodeCpus && nodeCpus / sized.Ranks > sized.CpusPerRank)
                Console.WriteLine($"hint: the nodes of {(sized.Partition is { } named ? $"partition {named}" : "the cluster's default partition")} have {nodeCpus} CPUs: --cpus-per-rank {nodeCpus / sized.Ranks} would train each rank on {nodeCpus / sized.Ranks} threads");
            Console.WriteLine(Invocation.Spell($"follow it with `stratus jobs logs {job.Id} --follow`, see it with `stratus jobs show {job.Id}`, stop it with `stratus jobs cancel {job.Id}`"));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>What a Slurm job asked for, or was given: "partition cpu, time limit 02:00:00, 4 ranks of 8 CPUs".</summary>
    static string SlurmResources(SlurmStatus slurm) => SlurmResources(slurm.Partition, slurm.TimeLimit, slurm.Ranks, slurm.CpusPerRank);

    static string SlurmResources(SlurmOptions asked) => SlurmResources(asked.Partition, asked.Time, asked.Ranks, asked.CpusPerRank);

    static string SlurmResources(string? partition, string? timeLimit, int? ranks, int? cpusPerRank) =>
        $"partition {partition ?? "(the cluster's default)"}, time limit {timeLimit ?? "(the partition's)"}, " +
        $"{ranks} rank{(ranks == 1 ? "" : "s")}{(cpusPerRank is { } cpus ? $" of {cpus} CPU{(cpus == 1 ? "" : "s")}" : "")}";

    static Command List()
    {
        var dataDir = TrustCommands.DataDirOption();
        var json = JsonOption("the list");
        var limit = new Option<int>("--limit")
        {
            Description = $"list at most this many jobs, 1 to {SqlJobStore.MaxPage}",
            DefaultValueFactory = _ => SqlJobStore.MaxPage,
            HelpName = "n",
        };
        limit.Validators.Add(given =>
        {
            if (given.GetValue(limit) is < 1 or > SqlJobStore.MaxPage) given.AddError($"--limit must be 1 to {SqlJobStore.MaxPage}, got {given.GetValue(limit)}");
        });
        var after = new Option<string>("--after") { Description = "list the jobs after this one (the last a listing showed), older than it", HelpName = "id" };
        var command = new Command("list", "List the jobs, newest first, with each run's last step and training loss.") { dataDir, json, limit, after };
        command.SetAction(async (result, ct) =>
        {
            var page = OpenExisting(result, dataDir).List(result.GetValue(limit), result.GetValue(after));
            var jobs = page.Jobs;
            if (result.GetValue(json))
            {
                var names = await Names(result, dataDir, ct);
                StandardOutput.WriteJson(new JobListResponse([.. jobs.Select(job => JobView.From(job, Stratus.Safety.Surface.Cli, names))], page.HasMore, null));
                return 0;
            }
            if (jobs.Count == 0 && result.GetValue(after) is { } previous)
            {
                Console.WriteLine($"No jobs after {previous}.");
                return 0;
            }
            if (jobs.Count == 0)
            {
                Console.WriteLine(Invocation.Spell("No jobs. Submit one: stratus jobs submit --config <file.json> --data <dataset> --out <run>"));
                return 0;
            }
            var now = DateTimeOffset.UtcNow;
            var table = new Table().AddColumns("Id", "State", "Slurm job", "Started (UTC)", "Duration", "Out", "Step", "Loss");
            foreach (var job in jobs)
            {
                var last = MetricsLog.LastTrainingStep(job.Arguments.Out);
                // A job that waits says why, in Slurm's word (Priority, Resources, ...); one being cancelled, since when.
                string?[] notes = [job.Slurm is { Reason: { } why, State: "PENDING" } ? why : null, Cancelling(job, "HH:mm:ss")];
                var state = notes.Any(note => note is not null) ? $"{job.State.WireName()} ({string.Join("; ", notes.OfType<string>())})" : job.State.WireName();
                table.AddRow(job.Id, Markup.Escape(state), Markup.Escape(JobView.SlurmJobId(job) ?? ""), job.StartedAt?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) ?? "",
                    job.Duration(now) is { } ran ? Duration(ran) : "", Markup.Escape(job.Arguments.Out),
                    last?.Step.ToString(CultureInfo.InvariantCulture) ?? "", last?.Loss.ToString("F4", CultureInfo.InvariantCulture) ?? "");
            }
            TrustCommands.Write(table);
            if (page.HasMore) Console.WriteLine(Invocation.Spell($"more jobs follow: stratus jobs list --after {jobs[^1].Id}"));
            // Read once for the listing: the Slurm jobs after the first it could not ask read as recorded too.
            if (jobs.FirstOrDefault(job => job.Slurm?.Unreachable is not null)?.Slurm is { } unreachable)
                Console.WriteLine($"{unreachable.Unreachable}: its Slurm jobs are as last recorded.");
            return 0;
        });
        return command;
    }

    static Command Show()
    {
        var id = new Argument<string>("id") { Description = "the job's id (job-...)" };
        var dataDir = TrustCommands.DataDirOption();
        var json = JsonOption("the job");
        var command = new Command("show", "Show a job: its state, command, process (or Slurm job), exit code and log.") { id, dataDir, json };
        command.SetAction(async (result, ct) =>
        {
            var job = OpenExisting(result, dataDir).Get(result.GetValue(id)!);
            var names = await Names(result, dataDir, ct);
            if (result.GetValue(json))
            {
                StandardOutput.WriteJson(JobView.From(job, Stratus.Safety.Surface.Cli, names));
                return 0;
            }
            static string Time(DateTimeOffset? time) => time?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture) ?? "-";
            var last = MetricsLog.LastTrainingStep(job.Arguments.Out);
            Console.WriteLine($"id:         {job.Id}");
            var cancelling = Cancelling(job, "yyyy-MM-dd HH:mm:ss 'UTC'") is { } since ? $" ({since}{(job.CancelRequestedBy is { } by ? $" by {names.Describe(by)}" : "")})" : "";
            Console.WriteLine(Invocation.Spell($"state:      {job.State.WireName()}{cancelling}{(job.Reason is { } reason ? $": {reason}" : "")}"));
            Console.WriteLine(Invocation.Spell($"command:    stratus {TrainArguments.ShellLine(job.Arguments.CommandLine())}"));
            if (job.Arguments.InitFromVersion is { } version) Console.WriteLine($"init from:  model {version}, {job.Arguments.InitFrom} (resolved at submission)");
            Console.WriteLine($"executor:   {job.Executor}{(job.Pid is { } pid ? $", training process {pid}" : JobView.SlurmJobId(job) is { } slurmJob ? $", Slurm job {slurmJob}" : "")}");
            if (job.Slurm is { Unreachable: { } unreachable }) Console.WriteLine($"slurm:      {unreachable}: the job is as last recorded");
            else if (job.Slurm is { } slurm)
                Console.WriteLine($"slurm:      {slurm.State ?? "submitted"}{(slurm.Reason is { } why ? $" ({why})" : "")}, {SlurmResources(slurm)}, nodes {slurm.Nodes ?? "-"}{(slurm.Elapsed is { } ran && job.StartedAt is not null ? $", ran {ran}" : "")}");
            // Kept with the job: Slurm's own word (above) is gone once it forgets the ended job.
            if (job.Resources is { } asked) Console.WriteLine($"asked:      {SlurmResources(asked)}");
            Console.WriteLine($"submitted:  {Time(job.SubmittedAt)} by {names.Describe(job.SubmittedBy)}");
            Console.WriteLine($"started:    {Time(job.StartedAt)}");
            Console.WriteLine($"ended:      {Time(job.EndedAt)}{(job.ExitCode is { } code ? $", exit code {code}" : "")}");
            Console.WriteLine($"last step:  {(last is { } l ? $"{l.Step}, training loss {l.Loss.ToString("F4", CultureInfo.InvariantCulture)}" : "-")}");
            Console.WriteLine($"log:        {job.LogFile}");
            return 0;
        });
        return command;
    }

    static Command Logs()
    {
        var id = new Argument<string>("id") { Description = "the job's id (job-...)" };
        var follow = new Option<bool>("--follow", "-f") { Description = "go on printing what the job writes until it ends" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("logs", "Print a job's output (its training's stdout and stderr).") { id, follow, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var service = OpenExisting(result, dataDir);
            var job = service.Get(result.GetValue(id)!);
            long offset = 0;
            var output = Console.OpenStandardOutput();
            while (true)
            {
                // Read the state first: whatever the job wrote before it ended is then in the file.
                var ended = !result.GetValue(follow) || service.Get(job.Id).State.HasEnded();
                if (File.Exists(job.LogFile))
                {
                    await using var log = new FileStream(job.LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                    log.Seek(offset, SeekOrigin.Begin);
                    await log.CopyToAsync(output, ct);
                    offset = log.Position;
                    await output.FlushAsync(ct);
                }
                if (ended) return 0;
                await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
            }
        });
        return command;
    }

    static Command Cancel()
    {
        var id = new Argument<string>("id") { Description = "the job's id (job-...)" };
        var force = new Option<bool>("--force")
        {
            Description = "end the training at once (SIGKILL), without finishing its step or saving a last checkpoint: for one that does not stop; a Slurm job is cancelled by Slurm itself (scancel: SIGTERM, SIGKILL after KillWait)",
        };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("cancel", "Stop a job: its training saves a last checkpoint and stops (SIGTERM), and the job ends cancelled; asked again, it waits for that as before.") { id, force, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var forced = result.GetValue(force);
            var (job, first) = OpenExisting(result, dataDir).Cancel(result.GetValue(id)!, TrustCommands.Actor, forced);
            // Who asked first, as `jobs show` says it (a key by its name): null for a cancel recorded before that was kept.
            var askedBy = !first && job.CancelRequestedBy is { } by ? $" by {(await Names(result, dataDir, ct)).Describe(by)}" : "";
            var forceLine = $"`stratus jobs cancel {job.Id} --force` ends it at once";
            Console.WriteLine(Invocation.Spell(job.State.HasEnded() ? $"{job.Id} is {job.State.WireName()}."
                : forced && job.Executor == SlurmJobExecutor.ExecutorName ? $"cancelling {job.Id} in Slurm (scancel): its training ends at once where a cancel's SIGTERM reached it already, else after a last checkpoint or at Slurm's SIGKILL after KillWait; it then reads cancelled."
                : forced ? $"ending {job.Id} at once: its training stops without finishing its step or saving another checkpoint (continue from the last one saved with {JobLog.ContinueRun(job, Stratus.Safety.Surface.Cli)}); it then reads cancelled."
                : first ? $"cancelling {job.Id}: its training stops after the current step with a last checkpoint (continue it with {JobLog.ContinueRun(job, Stratus.Safety.Surface.Cli)}; {forceLine}); it then reads cancelled."
                : $"{job.Id} is being cancelled already (asked at {job.CancelRequestedAt!.Value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture)}{askedBy}): its training stops after the current step with a last checkpoint; {forceLine}."));
            return 0;
        });
        return command;
    }

    static Command Supervise()
    {
        var id = new Argument<string>("id");
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command(LocalJobExecutor.SuperviseVerb, "Run a job's training and record how it ends (started by `jobs submit`).") { id, dataDir };
        command.Hidden = true;
        command.SetAction((result, ct) =>
        {
            var directory = StratusHome.Resolve(result.GetValue(dataDir));
            var database = PlatformDatabase.Open(directory);
            var store = new SqlJobStore(database, new SqlAuditLog(database));
            return Task.FromResult(new LocalJobExecutor(SelfCommand(), directory).Supervise(store, result.GetValue(id)!));
        });
        return command;
    }

    /// <summary>"cancelling since" when the cancel was asked (in UTC, in <paramref name="format"/>) for a
    /// job that has not ended yet: its training finishes its step and saves a last checkpoint first, as
    /// Kubernetes' Terminating and Slurm's COMPLETING say of theirs; null for another job.</summary>
    static string? Cancelling(Job job, string format) => job.CancelRequestedAt is { } asked && !job.State.HasEnded()
        ? $"cancelling since {asked.UtcDateTime.ToString(format, CultureInfo.InvariantCulture)}"
        : null;

    static string Duration(TimeSpan span) =>
        span.TotalHours >= 1 ? $"{(int)span.TotalHours}h{span.Minutes:00}m" : span.TotalMinutes >= 1 ? $"{span.Minutes}m{span.Seconds:00}s" : $"{Math.Max(0, span.Seconds)}s";
}
