// `stratus keys create|list|revoke|limits|rotate`: API keys for the server. `create` prints the
// new key alone on its last line, so scripts can take it with `| tail -n 1`; it is never shown
// again, and may be given an expiry (--expires, --expires-in) past which the server refuses it.
// `rotate` gives a key a new secret, printed as `create` prints one, and the old one works on
// for --overlap (a day by default) so that the key's clients move without downtime.
// `list --json` writes the keys as GET /v1/admin/keys answers.
using System.CommandLine;
using Spectre.Console;
using Stratus.Platform;
using Stratus.Server.Trust;

namespace Stratus.Cli;

static class KeysCommand
{
    public static Command Create()
    {
        var keys = new Command("keys", "Create, list, revoke, limit and rotate API keys.");
        keys.Subcommands.Add(CreateKey());
        keys.Subcommands.Add(List());
        keys.Subcommands.Add(Revoke());
        keys.Subcommands.Add(Limits());
        keys.Subcommands.Add(Rotate());
        return keys;
    }

    static Command CreateKey()
    {
        var name = new Option<string>("--name") { Description = "unique name among active keys", Required = true };
        var scopes = new Option<string>("--scopes") { Description = $"comma-separated: {ApiKeyScopeNames.Listed}", DefaultValueFactory = _ => ApiKeyScopeNames.Format(ApiKeyScopeNames.Default) };
        var rpm = new Option<int>("--rpm") { Description = "requests per minute (0: unlimited)" };
        var tpm = new Option<int>("--tpm") { Description = "tokens per minute, prompt + completion (0: unlimited)" };
        var expires = new Option<string?>("--expires") { Description = "when the key stops working: an ISO 8601 time (UTC unless it names an offset), or a date (its midnight UTC)" };
        var expiresIn = new Option<string?>("--expires-in") { Description = "how long the key works from now: 90m, 12h, 30d, 2w" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("create", "Create an API key; the key is printed once, on the last line.") { name, scopes, rpm, tpm, expires, expiresIn, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var expiry = ApiKeyExpiry.Parse(result.GetValue(expires), result.GetValue(expiresIn), "--expires", "--expires-in");
            var stores = TrustCommands.Open(result, dataDir);
            var created = await stores.KeyService().CreateAsync(result.GetValue(name)!, ApiKeyScopeNames.Parse(result.GetValue(scopes)!),
                new RateLimits(result.GetValue(rpm), result.GetValue(tpm)), TrustCommands.Actor, expiry, ct);
            var key = created.Key;
            Console.WriteLine($"Created API key '{key.Name}' (id {key.Id}): scopes {ApiKeyScopeNames.Format(key.Scopes)}, " +
                $"rpm {Limit(key.Limits.RequestsPerMinute)}, tpm {Limit(key.Limits.TokensPerMinute)}, " +
                $"{(key.ExpiresAt is { } at ? $"expires {ApiKeyService.FormatExpiry(at)}" : "never expires")}.");
            Console.WriteLine("Store the key now; it is not shown again:");
            Console.WriteLine(created.Secret);
            return 0;
        });
        return command;
    }

    static Command List()
    {
        var all = new Option<bool>("--all") { Description = "include revoked keys" };
        var json = new Option<bool>("--json") { Description = "write one JSON document instead, as GET /v1/admin/keys answers: {\"object\": \"list\", \"data\": [...]}" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("list", "List API keys (never their secrets).") { all, json, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var service = TrustCommands.OpenExisting(result, dataDir).KeyService();
            var keys = await service.ListAsync(result.GetValue(all), ct);
            if (result.GetValue(json))
            {
                StandardOutput.WriteJson(new ListResponse<KeyView>([.. keys.Select(KeyView.From)]));
                return 0;
            }
            if (keys.Count == 0)
            {
                Console.WriteLine($"No API keys. Create one: {Invocation.Command} keys create --name <n> --scopes inference");
                return 0;
            }
            var now = DateTimeOffset.UtcNow;
            var table = new Table().AddColumns("Name", "Id", "Scopes", "RPM", "TPM", "Created (UTC)", "Expires (UTC)", "Old secret until (UTC)", "Revoked (UTC)");
            foreach (var k in keys)
                table.AddRow(Markup.Escape(k.Name), k.Id, ApiKeyScopeNames.Format(k.Scopes), Limit(k.Limits.RequestsPerMinute), Limit(k.Limits.TokensPerMinute),
                    k.CreatedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm"),
                    k.ExpiresAt is { } at ? at.UtcDateTime.ToString("yyyy-MM-dd HH:mm") + (service.HasExpired(k) ? " (expired)" : "") : "never",
                    // A rotation's old secret while it still works beside the new one.
                    k.IsActive && k.HasPreviousSecretAt(now) ? k.PreviousSecretExpiresAt!.Value.UtcDateTime.ToString("yyyy-MM-dd HH:mm") : "",
                    k.RevokedAt?.UtcDateTime.ToString("yyyy-MM-dd HH:mm") ?? "");
            TrustCommands.Write(table);
            return 0;
        });
        return command;
    }

    static Command Revoke()
    {
        var nameOrId = new Argument<string>("name-or-id") { Description = "the key's name or id" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("revoke", "Revoke an API key; a running server refuses it from its next request.") { nameOrId, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var key = await TrustCommands.Open(result, dataDir).KeyService().RevokeAsync(result.GetValue(nameOrId)!, TrustCommands.Actor, ct);
            Console.WriteLine($"Revoked API key '{key.Name}' (id {key.Id}).");
            return 0;
        });
        return command;
    }

    static Command Limits()
    {
        var nameOrId = new Argument<string>("name-or-id") { Description = "the key's name or id" };
        var rpm = new Option<int?>("--rpm") { Description = "requests per minute (0: unlimited); unchanged if left out" };
        var tpm = new Option<int?>("--tpm") { Description = "tokens per minute (0: unlimited); unchanged if left out" };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("limits", "Change a key's rate limits; a running server applies them from the next request.") { nameOrId, rpm, tpm, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var service = TrustCommands.Open(result, dataDir).KeyService();
            var key = await service.SetLimitsAsync(result.GetValue(nameOrId)!, result.GetValue(rpm), result.GetValue(tpm), TrustCommands.Actor, ct);
            Console.WriteLine($"API key '{key.Name}' (id {key.Id}): rpm {Limit(key.Limits.RequestsPerMinute)}, tpm {Limit(key.Limits.TokensPerMinute)}.");
            return 0;
        });
        return command;
    }

    static Command Rotate()
    {
        var nameOrId = new Argument<string>("name-or-id") { Description = "the key's name or id" };
        var overlap = new Option<string?>("--overlap")
        {
            Description = $"how long the old secret goes on working beside the new one: 90m, 12h, 7d; 0 ends it now (default {ApiKeyRotation.DefaultOverlap.TotalHours:0}h, " +
                $"at most {ApiKeyRotation.MaxOverlap.TotalDays:0}d)",
        };
        var dataDir = TrustCommands.DataDirOption();
        var command = new Command("rotate", "Give a key a new secret (same id, name, scopes, limits and usage), printed once on the last line; " +
            "the old one works until the overlap ends, on running servers too.") { nameOrId, overlap, dataDir };
        command.SetAction(async (result, ct) =>
        {
            var span = ApiKeyRotation.ParseOverlap(result.GetValue(overlap), "--overlap");
            var rotated = await TrustCommands.Open(result, dataDir).KeyService().RotateAsync(result.GetValue(nameOrId)!, span, TrustCommands.Actor, ct);
            var key = rotated.Key;
            Console.WriteLine($"Rotated API key '{key.Name}' (id {key.Id}): " + (span == TimeSpan.Zero
                ? "its old secret stopped working now."
                : $"its old secret works until {ApiKeyService.FormatExpiry(key.PreviousSecretExpiresAt!.Value)}; move its clients to the new one before then."));
            if (rotated.OlderSecretCutShort is { } cut)
                Console.WriteLine($"The secret before the old one, which was to work until {ApiKeyService.FormatExpiry(cut)}, stopped working now.");
            Console.WriteLine("Store the new key now; it is not shown again:");
            Console.WriteLine(rotated.Secret);
            return 0;
        });
        return command;
    }

    static string Limit(int value) => value == 0 ? "unlimited" : value.ToString("N0");
}
