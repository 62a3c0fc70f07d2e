// `stratus usage [--key] [--model] [--from] [--to]`: requests and tokens per day, key and model,
// with totals, from the usage the server records as requests complete.
using System.CommandLine;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Cli;

static class UsageCommand
{
    public static Command Create()
    {
        var key = new Option<string?>("--key") { Description = "one key, by name or id" };
        var model = new Option<string?>("--model") { Description = "one model" };
        var from = new Option<string?>("--from") { Description = "first UTC day, yyyy-MM-dd (default: 30 days before --to)" };
        var to = new Option<string?>("--to") { Description = "last UTC day, yyyy-MM-dd (default: today)" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("usage", "Show requests and tokens per day, key and model.") { key, model, from, to, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var stores = TrustCommands.OpenExisting(result, dataDir);
            var service = stores.KeyService();
            var keyId = await UsageQuery.KeyIdAsync(service, result.GetValue(key), ct);
            var query = UsageQuery.Days(keyId, TrustCommands.ParseDay(result.GetValue(from), "--from"), TrustCommands.ParseDay(result.GetValue(to), "--to"), result.GetValue(model));
            var rows = await stores.Usage.QueryAsync(query, ct);
            if (rows.Count == 0)
            {
                Console.WriteLine($"No usage from {query.From:yyyy-MM-dd} to {query.To:yyyy-MM-dd}.");
                return 0;
            }
            var names = (await service.ListAsync(includeRevoked: true, ct)).ToDictionary(k => k.Id, k => k.Name);
            var table = new Table().AddColumns("Day", "Key", "Model", "Requests", "Prompt tokens", "Completion tokens", "Total tokens");
            foreach (var r in rows)
                table.AddRow(r.Day.ToString("yyyy-MM-dd"), Markup.Escape(names.TryGetValue(r.KeyId, out var n) ? $"{n} ({r.KeyId})" : r.KeyId), Markup.Escape(r.Model),
                    r.Requests.ToString("N0"), r.PromptTokens.ToString("N0"), r.CompletionTokens.ToString("N0"), r.TotalTokens.ToString("N0"));
            table.AddRow("total", "", "", rows.Sum(r => r.Requests).ToString("N0"), rows.Sum(r => r.PromptTokens).ToString("N0"),
                rows.Sum(r => r.CompletionTokens).ToString("N0"), rows.Sum(r => r.TotalTokens).ToString("N0"));
            TrustCommands.Write(table);
            return 0;
        });
        return command;
    }
}
