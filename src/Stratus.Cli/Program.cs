// `stratus <verb>`: parse, call a library type, print. User errors (files the system refuses,
// settings too large for the device's memory, a libtorch that cannot be loaded) become one line
// on stderr and exit code 2; bugs keep their stack trace. On a rank of a data-parallel job either
// ends the whole job.
using System.CommandLine;
using Spectre.Console;
using Stratus;
using Stratus.Cli;

LibTorchLoadFailure.EndProcessWithOneLine();
NativeAllocator.KeepFreedMemory();
// A rank's console is its launcher's pipe to a terminal or a file that the rank cannot tell apart:
// plain text, as with output redirected, rather than colour codes in a job's log. A dumb terminal
// too, before .NET first writes: given mpirun's pseudo-terminal it otherwise switches the keypad
// mode (ESC[?1h ESC=) at the log's start and after each signal.
if (Stratus.Distributed.Communicator.LaunchedAsRank)
{
    Environment.SetEnvironmentVariable("TERM", "dumb");
    AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Ansi = AnsiSupport.Yes, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.No });
}
// Anything Program does not catch below ends this rank with a stack trace, as a single process;
// on a rank of a data-parallel job it ends the job too (see UserError).
AppDomain.CurrentDomain.UnhandledException += (_, e) => Stratus.Distributed.Communicator.AbortJobOnUnhandled(e.ExceptionObject);
var root = new RootCommand("Stratus: train, sample and serve transformer language models from .NET.");
root.Subcommands.Add(PrepareCommand.Create());
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(SampleCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(PlotCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(ImportCommand.Create());
root.Subcommands.Add(ExportCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(KeysCommand.Create());
root.Subcommands.Add(ModelsCommand.Create());
root.Subcommands.Add(AuditCommand.Create());
root.Subcommands.Add(UsageCommand.Create());
root.Subcommands.Add(BlocklistCommand.Create());
root.Subcommands.Add(BackupCommand.Create());
root.Subcommands.Add(DatabaseCommand.Create());
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(JobsCommand.Create());
Invocation.NameVerbs(root.Subcommands.Select(verb => verb.Name));

var parsed = root.Parse(args);
// `stratus` or `stratus keys` alone: list what can follow instead of an error. Only alone:
// `stratus --version` is an option of the root, and its own action prints the version.
if (parsed.CommandResult.Command is { Action: null, Subcommands.Count: > 0 } && parsed.Tokens.All(t => t.Type == System.CommandLine.Parsing.TokenType.Command))
    parsed = root.Parse([.. args, "--help"]);
// Unmatched words with no error: --help and --version run without the rest of the line checked.
// After a directive they are its own: `stratus [suggest] tr` lists the verbs that complete `tr`
// (the shell completion of dotnet-suggest).
if (parsed.Errors.Count > 0 || parsed.UnmatchedTokens.Count > 0 && !parsed.Tokens.Any(t => t.Type == System.CommandLine.Parsing.TokenType.Directive))
{
    Console.Error.WriteLine($"error: {Invocation.Spell(ParseErrors.Describe(parsed))}");
    return 2;
}
try
{
    // Signals are the commands' own: train stops at the next step after a checkpoint
    // (TrainCommand.StopRequest), serve drains through its host's console lifetime (a second
    // signal ends the draining: ServerShutdown), and the rest end at once. (System.CommandLine's
    // handling would end a stopping train after 2 s.)
    return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
}
// `stratus sample ... | head`: head has exited, so stop as Unix tools stop at their next write.
catch (StandardOutputClosedException)
{
    return StandardOutput.ReaderGoneExitCode;
}
catch (Exception e) when (e is StratusUserException or Stratus.Safety.TrustUserException)
{
    return UserError(e.Message);
}
// A batch, context or model too large for the device: the user's to fix, with smaller settings.
catch (Exception e) when (OutOfMemory.Is(e))
{
    return UserError($"{OutOfMemory.Describe(e)}; {OutOfMemoryFix(parsed.CommandResult.Command)}");
}
// A path the system refuses (a read-only file system, a full disk, no permission, a file where a
// folder must be): the user's to fix, with another path or more space.
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    return UserError(FileSystemErrors.Describe(e, parsed));
}

// One line, exit code 2; on one rank of a data-parallel job the whole job ends with it, since the
// other ranks would otherwise wait for this one in their next collective (one line for the job).
// The commands it names are spelled as the user runs the CLI (`./stratus keys create ...`).
static int UserError(string message)
{
    Stratus.Distributed.Communicator.AbortJob($"error: {Invocation.Spell(message)}", 2);
    return 2;
}

// What needs less memory, in the words of the command that ran out.
static string OutOfMemoryFix(System.CommandLine.Command command) => command.Name switch
{
    "train" or "demo" => "a smaller --batch-size (more --gradient-accumulation-steps keeps the tokens per step), --block-size or model needs less, and so does --dtype bfloat16",
    "eval" => "a smaller --batch-size or --block-size needs less",
    "serve" => "a smaller --kv-cache-mb, --max-batch-size or --max-prefill-tokens needs less",
    _ => "the model and its settings need more memory than the device has free",
};
