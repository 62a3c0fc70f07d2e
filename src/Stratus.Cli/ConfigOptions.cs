// Every training config key as a kebab-case option (--max-iters 100), generated from
// TrainConfig so the command line and the JSON file can never disagree. A few keys also get a
// short alias (--zero 1 for --zero-stage 1).
using System.CommandLine;
using Stratus.Training;

namespace Stratus.Cli;

sealed class ConfigOptions
{
    readonly List<(string Key, Option<string> Option)> options;
    static readonly Dictionary<string, string[]> Aliases = new() { ["zero_stage"] = ["--zero"] };

    public ConfigOptions(Command command)
    {
        options = TrainConfig.Keys.Select(key => (key, new Option<string>("--" + key.Replace('_', '-'), Aliases.GetValueOrDefault(key) ?? []) { Description = $"override config key {key}", HelpName = "value" })).ToList();
        foreach (var (_, option) in options) command.Options.Add(option);
    }

    public List<KeyValuePair<string, string>> Overrides(ParseResult result) =>
        options.Select(o => (o.Key, Value: result.GetValue(o.Option)))
            .Where(o => o.Value is not null)
            .Select(o => new KeyValuePair<string, string>(o.Key, o.Value!)).ToList();
}
