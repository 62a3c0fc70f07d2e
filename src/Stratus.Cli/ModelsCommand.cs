// `stratus models register|list|show|alias|delete`: the model registry (Stratus.Platform's
// ModelRegistry) from the command line. A version is named NAME (the latest), NAME:VERSION or
// NAME@ALIAS, as `serve --model` takes it; changes are audited with the CLI's actor. `list` and
// `show` write JSON with --json, in GET /api/models' field names.
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;

namespace Stratus.Cli;

static class ModelsCommand
{
    public static Command Create()
    {
        var models = new Command("models", "Register checkpoints under names with numbered versions and aliases (production, staging), and list, show, alias or delete them.");
        models.Subcommands.Add(Register());
        models.Subcommands.Add(List());
        models.Subcommands.Add(Show());
        models.Subcommands.Add(Alias());
        models.Subcommands.Add(Delete());
        return models;
    }

    /// <summary>The registry in --data-dir (or the default data directory).</summary>
    public static ModelRegistry Open(string? dataDir) => ModelRegistry.Open(StratusHome.Resolve(dataDir), RegistryCheckpoints.Instance);

    /// <summary>The registry for a lookup that only reads (<see cref="ModelRegistry.OpenExisting"/>):
    /// null where the data directory holds no database, and none is created.</summary>
    public static ModelRegistry? OpenExisting(string? dataDir) => ModelRegistry.OpenExisting(StratusHome.Resolve(dataDir), RegistryCheckpoints.Instance);

    static ModelRegistry OpenExisting(ParseResult result, Option<string> dataDir) =>
        ModelRegistry.Open(TrustCommands.ExistingDirectory(result, dataDir), RegistryCheckpoints.Instance);

    static Command Register()
    {
        var path = PathOptions.Argument("run-or-checkpoint", "a run folder (its checkpoints/best, else last, is registered) or a checkpoint folder");
        var name = new Option<string>("--name") { Description = $"the model's name: 1-{ModelReference.MaxNameLength} letters, digits, '-', '_' or '.', beginning with a letter or digit", Required = true };
        var description = new Option<string?>("--description") { Description = "a line saying what this version is" };
        var alias = new Option<string?>("--alias") { Description = "an alias to point at the new version (e.g. production), moved from the version it pointed at" };
        var copy = new Option<bool>("--copy")
        {
            Description = $"keep the registry's own copy of the checkpoint in the data directory ({ModelRegistry.CopiesFolder}/NAME/VERSION; hard links where the file system allows, else a copy), so that the version outlives its run training on",
        };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("register", "Register a checkpoint as the next version of a name; the registry refers to its files where they are (--copy: to its own copy of them) and records its manifest's hash.")
        {
            path, name, description, alias, copy, dataDir,
        };
        command.SetAction(result =>
        {
            var version = Open(result.GetValue(dataDir)).Register(result.GetValue(path)!, result.GetValue(name)!, result.GetValue(description), result.GetValue(alias), TrustCommands.Actor,
                result.GetValue(copy));
            Console.WriteLine($"Registered {version.Reference}{Aliases(version)}: {(version.IsCopy ? "a copy in " : "")}{version.Checkpoint.Directory} ({Summary(version.Checkpoint.Summary)}).");
            Console.WriteLine(Invocation.Spell($"Serve it with: stratus serve --model {version.Name}"));
            return 0;
        });
        return command;
    }

    static Command List()
    {
        var name = new Option<string?>("--name") { Description = "only this name's versions" };
        var json = JsonOption("what GET /api/models answers: {\"object\": \"list\", \"data\": [...]}, each name with its aliases and versions");
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("list", "List registered versions (name, version, aliases, model, checkpoint); their files are not read.") { name, json, dataDir };
        command.SetAction(result =>
        {
            var versions = OpenExisting(result, dataDir).List(result.GetValue(name));
            if (result.GetValue(json))
            {
                StandardOutput.WriteJson(new ListResponse<RegisteredModelView>([.. versions.GroupBy(v => v.Name, StringComparer.Ordinal)
                    .Select(named => RegisteredModelView.From(named.Key, [.. named]))]));
                return 0;
            }
            if (versions.Count == 0)
            {
                Console.WriteLine(Invocation.Spell(result.GetValue(name) is { } only
                    ? $"No model named '{only}' is registered. Register one: stratus models register <run-folder> --name {only}"
                    : "No models are registered. Register one: stratus models register <run-folder> --name <name>"));
                return 0;
            }
            var table = new Table().AddColumns("Name", "Version", "Aliases", "Model", "Checkpoint", "Created (UTC)", "By", "Description");
            foreach (var v in versions)
                table.AddRow(Markup.Escape(v.Name), v.Version.ToString(CultureInfo.InvariantCulture), Markup.Escape(string.Join(", ", v.Aliases)), Markup.Escape(Summary(v.Checkpoint.Summary)),
                    Markup.Escape(v.Checkpoint.Directory + (v.IsCopy ? " (copy)" : "")), v.CreatedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), Markup.Escape(v.CreatedBy), Markup.Escape(v.Description ?? ""));
            TrustCommands.Write(table);
            return 0;
        });
        return command;
    }

    static Command Show()
    {
        var reference = new Argument<string>("reference") { Description = "NAME (the latest version), NAME:VERSION or NAME@ALIAS" };
        var json = JsonOption("one version as GET /api/models/{name} lists it, with its name, whether it is a copy, and files_match");
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("show", "Show one version, its model, where its files are, and whether its checkpoint still holds the files it was registered with (exit 1 when not).")
        {
            reference, json, dataDir,
        };
        command.SetAction(result =>
        {
            var registry = OpenExisting(result, dataDir);
            var version = registry.Find(ModelReference.Parse(result.GetValue(reference)!));
            var problem = registry.Check(version);
            if (result.GetValue(json))
            {
                var document = new JsonObject { ["name"] = version.Name };
                foreach (var (field, value) in JsonSerializer.SerializeToNode(ModelVersionView.From(version), TrustJson.Options)!.AsObject().ToArray()) document[field] = value?.DeepClone();
                document["copy"] = version.IsCopy;
                document["files_match"] = problem is null;
                StandardOutput.WriteJson(document);
            }
            else
            {
                var summary = version.Checkpoint.Summary;
                Console.WriteLine($"{version.Reference}{Aliases(version)}");
                Console.WriteLine($"  model:        {summary.Architecture}, {summary.Parameters.ToString("N0", CultureInfo.InvariantCulture)} parameters, context {summary.ContextLength}, {summary.Tokenizer} tokenizer");
                Console.WriteLine($"  checkpoint:   {version.Checkpoint.Directory}");
                if (version.Parent is { } parent) Console.WriteLine($"  parent:       {parent} (the version its run started from)");
                Console.WriteLine(version.IsCopy
                    ? "  copy:         yes, the registry's own (`models delete` removes it)"
                    : Invocation.Spell($"  copy:         no, the folder where it was registered (a run trained on saves it again; keep a copy: stratus models register <folder> --name {version.Name} --copy)"));
                Console.WriteLine($"  manifest:     {version.Checkpoint.ManifestSha256}");
                if (version.Description is { } description) Console.WriteLine($"  description:  {description}");
                Console.WriteLine($"  created:      {version.CreatedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture)} by {version.CreatedBy}");
                Console.WriteLine($"  files:        {(problem is null ? "match the registered manifest" : "CHANGED")}");
            }
            if (problem is null) return 0;
            Console.Error.WriteLine($"error: {problem}");
            return 1;
        });
        return command;
    }

    static Command Alias()
    {
        var name = new Argument<string>("name") { Description = "the model's name" };
        var version = new Argument<int?>("version") { Description = "the version the alias is to point at", Arity = ArgumentArity.ZeroOrOne };
        var alias = new Argument<string?>("alias") { Description = "the alias (e.g. production)", Arity = ArgumentArity.ZeroOrOne };
        var remove = new Option<string?>("--remove") { Description = "remove this alias instead", HelpName = "alias" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("alias", "Point an alias at a version (`models alias NAME VERSION ALIAS`, moving it in one step from the version it pointed at), or remove one (`models alias NAME --remove ALIAS`).")
        {
            name, version, alias, remove, dataDir,
        };
        command.SetAction(result =>
        {
            var registry = OpenExisting(result, dataDir);
            var model = result.GetValue(name)!;
            if (result.GetValue(remove) is { } removed)
            {
                if (result.GetValue(version) is not null || result.GetValue(alias) is not null)
                    throw new TrustUserException($"give either VERSION ALIAS to set an alias or --remove ALIAS to remove one, not both");
                var was = registry.RemoveAlias(model, removed, TrustCommands.Actor);
                Console.WriteLine($"Removed alias {model}@{removed} (it pointed at version {was}).");
                return 0;
            }
            if (result.GetValue(version) is not { } number || result.GetValue(alias) is not { } aliasName)
                throw new TrustUserException($"give the version and the alias: models alias {model} <version> <alias> (or --remove <alias>)");
            var change = registry.SetAlias(model, number, aliasName, TrustCommands.Actor);
            Console.WriteLine(change.PreviousVersion switch
            {
                null => $"{model}@{aliasName} now points at version {number}.",
                var previous when previous == number => $"{model}@{aliasName} already pointed at version {number}.",
                var previous => $"{model}@{aliasName} moved from version {previous} to version {number}.",
            });
            return 0;
        });
        return command;
    }

    static Command Delete()
    {
        var reference = new Argument<string>("name:version") { Description = "the version to delete, as NAME:VERSION" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("delete", "Delete a version from the registry (the registry's copy of its checkpoint goes with it, a folder of yours stays where it is; its number is not given again); refused while an alias points at it.")
        {
            reference, dataDir,
        };
        command.SetAction(result =>
        {
            var text = result.GetValue(reference)!;
            var parsed = ModelReference.Parse(text);
            if (parsed.Version is not { } number)
                throw new TrustUserException($"'{text}' names no version: delete takes NAME:VERSION, e.g. {parsed.Name}:1 (see them with `stratus models list --name {parsed.Name}`)");
            var deleted = OpenExisting(result, dataDir).Delete(parsed.Name, number, TrustCommands.Actor);
            Console.WriteLine(deleted.IsCopy && !Directory.Exists(deleted.Checkpoint.Directory)
                ? $"Deleted {deleted.Reference} from the registry, and its copy in {deleted.Checkpoint.Directory}."
                : $"Deleted {deleted.Reference} from the registry; its files in {deleted.Checkpoint.Directory} are left as they were.");
            return 0;
        });
        return command;
    }

    static Option<bool> JsonOption(string shape) => new("--json") { Description = $"write one JSON document instead: {shape}" };

    static string Aliases(ModelVersion version) => version.Aliases.Count == 0 ? "" : $" (@{string.Join(", @", version.Aliases)})";

    static string Summary(ModelSummary summary) =>
        $"{summary.Architecture}, {Parameters(summary.Parameters)} parameters, context {summary.ContextLength}, {summary.Tokenizer} tokenizer";

    /// <summary>A parameter count as people say it: 10.7M, 124M, 1.2B.</summary>
    static string Parameters(long count) => count switch
    {
        >= 1_000_000_000 => (count / 1e9).ToString("0.#", CultureInfo.InvariantCulture) + "B",
        >= 1_000_000 => (count / 1e6).ToString("0.#", CultureInfo.InvariantCulture) + "M",
        >= 1_000 => (count / 1e3).ToString("0.#", CultureInfo.InvariantCulture) + "K",
        _ => count.ToString(CultureInfo.InvariantCulture),
    };
}
