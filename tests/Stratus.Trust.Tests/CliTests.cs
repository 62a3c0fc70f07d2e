// The trust verbs of the real `stratus` CLI (stratus.dll next to the tests, run as a child
// process): keys, audit, usage and blocklists on a throwaway data directory, user errors as one
// line with exit code 2 (a database file the machine spoiled too), a tampered audit log named
// by its first bad entry, and keys made and revoked from the CLI taking effect on a running server.
using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Stratus.Platform;

namespace Stratus.Trust.Tests;

public sealed class CliTests : IDisposable
{
    readonly string dataDir = TrustHost.NewDataDir();

    public void Dispose() => TrustHost.Cleanup(dataDir);

    static (int ExitCode, string Stdout, string Stderr) Stratus(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "stratus.dll"));
        foreach (var arg in args) info.ArgumentList.Add(arg);
        info.Environment["TERM"] = "dumb";
        info.Environment["COLUMNS"] = "200";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) info.Environment[name] = value;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"stratus {string.Join(' ', args)} did not finish");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => Stratus(null, [.. args, "--data-dir", dataDir]);

    static void AssertUserError((int ExitCode, string Stdout, string Stderr) result, string message)
    {
        Assert.Equal(2, result.ExitCode);
        var line = Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.Contains(message, line);
    }

    [Fact]
    public async Task Keys_create_makes_a_metrics_key_for_a_scraper()
    {
        var scraper = Run("keys", "create", "--name", "prometheus", "--scopes", "metrics");
        Assert.Equal(0, scraper.ExitCode);
        Assert.Contains("scopes metrics,", scraper.Stdout);
        var key = await PlatformStores.Open(dataDir).KeyService().AuthenticateAsync(scraper.Stdout.TrimEnd().Split('\n')[^1]);
        Assert.Equal(ApiKeyScopes.Metrics, key.Key!.Scopes);
        // The help names every scope.
        Assert.Contains("inference, training, admin, metrics", Run("keys", "create", "--help").Stdout);
    }

    [Fact]
    public async Task Keys_create_prints_the_key_alone_on_its_last_line_and_audit_verify_passes()
    {
        var created = Run("keys", "create", "--name", "ci", "--scopes", "inference,admin", "--rpm", "10", "--tpm", "5000");
        Assert.Equal(0, created.ExitCode);
        var key = created.Stdout.TrimEnd().Split('\n')[^1];
        Assert.Matches(new Regex($"^{Regex.Escape(ApiKeyFormat.Prefix)}[A-Za-z0-9_-]{{55}}$"), key);
        var authenticated = await PlatformStores.Open(dataDir).KeyService().AuthenticateAsync(key);
        Assert.Equal(("ci", ApiKeyScopes.Inference | ApiKeyScopes.Admin, 10, 5000),
            (authenticated.Key!.Name, authenticated.Key.Scopes, authenticated.Key.Limits.RequestsPerMinute, authenticated.Key.Limits.TokensPerMinute));

        // The default data directory comes from STRATUS_HOME.
        var listed = Stratus(new Dictionary<string, string> { ["STRATUS_HOME"] = dataDir }, "keys", "list");
        Assert.Equal(0, listed.ExitCode);
        Assert.Contains("ci", listed.Stdout);
        Assert.DoesNotContain(key, listed.Stdout);
        // Without either, a fresh account's ~/.local/share/stratus, made on first use.
        var home = Directory.CreateDirectory(Path.Combine(dataDir, "home")).FullName;
        var fresh = Stratus(new Dictionary<string, string> { ["HOME"] = home, ["STRATUS_HOME"] = "", ["XDG_DATA_HOME"] = "" }, "keys", "create", "--name", "first", "--scopes", "inference");
        Assert.True(fresh.ExitCode == 0, fresh.Stderr);
        Assert.True(File.Exists(Path.Combine(home, ".local", "share", "stratus", "stratus.db")));

        var verified = Run("audit", "verify");
        Assert.Equal(0, verified.ExitCode);
        Assert.Contains("audit log intact: 1 entry,", verified.Stdout);
        var audit = Run("audit", "list");
        Assert.Equal(0, audit.ExitCode);
        Assert.Contains("key.created", audit.Stdout);
    }

    /// <summary>`keys rotate` prints the new key alone on its last line, as `create` does; `keys
    /// list` shows until when the old secret works; a bad --overlap is one line, exit 2.</summary>
    [Fact]
    public async Task Keys_rotate_prints_the_new_key_on_its_last_line_and_list_shows_the_old_secret_until_it_ends()
    {
        var created = Run("keys", "create", "--name", "svc", "--rpm", "9");
        var old = created.Stdout.TrimEnd().Split('\n')[^1];
        var rotated = Run("keys", "rotate", "svc", "--overlap", "2h");
        Assert.True(rotated.ExitCode == 0, rotated.Stderr);
        var key = rotated.Stdout.TrimEnd().Split('\n')[^1];
        Assert.Matches(new Regex($"^{Regex.Escape(ApiKeyFormat.Prefix)}[A-Za-z0-9_-]{{55}}$"), key);
        Assert.Contains("its old secret works until", rotated.Stdout);
        var service = PlatformStores.Open(dataDir).KeyService();
        foreach (var secret in new[] { old, key })
            Assert.Equal(("svc", 9), ((await service.AuthenticateAsync(secret)).Key?.Name, (await service.AuthenticateAsync(secret)).Key?.Limits.RequestsPerMinute));
        var until = Assert.Single(await service.ListAsync()).PreviousSecretExpiresAt!.Value.UtcDateTime.ToString("yyyy-MM-dd HH:mm");
        var listed = Run("keys", "list");
        Assert.Contains("Old secret until", listed.Stdout);
        Assert.Contains(until, listed.Stdout);

        var ended = Run("keys", "rotate", "svc", "--overlap", "0");
        Assert.Contains("its old secret stopped working now", ended.Stdout);
        Assert.False((await service.AuthenticateAsync(key)).Succeeded);
        Assert.DoesNotContain(until, Run("keys", "list").Stdout);
        Assert.Contains("key.rotated", Run("audit", "list").Stdout);
        AssertUserError(Run("keys", "rotate", "svc", "--overlap", "forever"), "--overlap must be a number and a unit");
        AssertUserError(Run("keys", "rotate", "nobody"), "No active API key with name or id 'nobody'.");
    }

    /// <summary>A data directory nobody named (--data-dir left out) that cannot be made: the line
    /// named the folder the system refused ("/nonexistent: permission denied" for a user whose home
    /// folder is /nonexistent) and "another path (see --help)", neither --data-dir nor
    /// $STRATUS_HOME. A file in the way refuses it for root too.</summary>
    [Fact]
    public void A_default_data_directory_that_cannot_be_made_is_named_with_data_dir_and_STRATUS_HOME()
    {
        var file = Path.Combine(Directory.CreateDirectory(dataDir).FullName, "afile");
        File.WriteAllText(file, "");
        var fromVariable = Path.Combine(file, "stratus");
        AssertUserError(Stratus(new Dictionary<string, string> { ["STRATUS_HOME"] = fromVariable }, "keys", "create", "--name", "me"),
            $"{fromVariable}: {file} is a file, so nothing can be written below it; choose a data directory other than {fromVariable} with --data-dir or $STRATUS_HOME");
        var fromHome = Path.Combine(file, ".local", "share", "stratus");
        AssertUserError(Stratus(new Dictionary<string, string> { ["HOME"] = file, ["STRATUS_HOME"] = "", ["XDG_DATA_HOME"] = "" }, "keys", "create", "--name", "me"),
            $"{fromHome}: {file} is a file, so nothing can be written below it; choose a data directory other than {fromHome} with --data-dir or $STRATUS_HOME");
        // Given, it is the option's to change alone.
        AssertUserError(Stratus(null, "keys", "create", "--name", "me", "--data-dir", fromVariable),
            $"{fromVariable}: {file} is a file, so nothing can be written below it; choose another --data-dir");
    }

    /// <summary>A data directory given as a file (the database's path): the verbs that read
    /// said "no Stratus data in .../stratus.db (no stratus.db)", while keys create named it as a
    /// file and the folder to give.</summary>
    [Fact]
    public void Every_verb_names_a_data_directory_that_is_a_file_as_one()
    {
        Assert.Equal(0, Run("keys", "create", "--name", "me").ExitCode);
        var database = Path.Combine(dataDir, PlatformDatabase.FileName);
        string[][] verbs = [["keys", "list"], ["keys", "create", "--name", "other"], ["audit", "verify"], ["usage"], ["blocklist", "list"], ["backup", "--out", Path.Combine(dataDir, "copy.db")]];
        foreach (var verb in verbs)
            AssertUserError(Stratus(null, [.. verb, "--data-dir", database]),
                $"{database} is a file; the data directory is a folder, where Stratus keeps stratus.db: give --data-dir {Path.GetFullPath(dataDir)}");
    }

    [Fact]
    public void Audit_verify_fails_naming_the_first_tampered_entry()
    {
        Assert.Equal(0, Run("keys", "create", "--name", "one").ExitCode);
        Assert.Equal(0, Run("keys", "create", "--name", "two").ExitCode);
        Assert.Equal(0, Run("keys", "limits", "one", "--rpm", "7").ExitCode);
        // Someone with the file drops the append-only trigger and rewrites entry 2.
        using (var connection = new SqliteConnection($"Data Source={Path.Combine(dataDir, PlatformDatabase.FileName)};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET details = replace(details, 'two', 'tw0') WHERE seq = 2;";
            command.ExecuteNonQuery();
        }
        var verified = Run("audit", "verify");
        Assert.Equal(1, verified.ExitCode);
        Assert.Contains("broken at entry 2", verified.Stderr);
        Assert.Contains("modified", verified.Stderr);
    }

    [Fact]
    public void A_file_that_is_not_a_database_is_one_line_naming_it_for_every_verb()
    {
        Directory.CreateDirectory(dataDir);
        var database = Path.Combine(dataDir, PlatformDatabase.FileName);
        File.WriteAllText(database, new string('x', 8192));
        foreach (var verb in new[] { new[] { "keys", "list" }, ["keys", "create", "--name", "x"], ["audit", "verify"], ["usage"], ["blocklist", "list"] })
            AssertUserError(Run(verb), $"{database} is not a Stratus database or is damaged");
    }

    [Fact]
    public void Audit_verify_of_a_log_whose_table_was_dropped_is_one_line_naming_the_file()
    {
        Assert.Equal(0, Run("keys", "create", "--name", "one").ExitCode);
        var database = Path.Combine(dataDir, PlatformDatabase.FileName);
        using (var connection = new SqliteConnection($"Data Source={database};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "DROP TABLE audit_log;";
            command.ExecuteNonQuery();
        }
        // Before, SQLite's "no such table" ended the CLI with a stack trace.
        AssertUserError(Run("audit", "verify"), $"{database} lacks part of the Stratus schema");
    }

    [Fact]
    public void Backup_writes_a_copy_that_restores_the_keys_and_the_audit_chain()
    {
        Assert.Equal(0, Run("keys", "create", "--name", "kept", "--rpm", "9").ExitCode);
        Assert.Equal(0, Run("blocklist", "add", "words", "--term", "zanzibar").ExitCode);
        var head = Regex.Match(Run("audit", "verify").Stdout, "head hash ([0-9a-f]{64})").Groups[1].Value;
        var backup = Path.Combine(dataDir, "backups", "nightly.db");

        var backedUp = Run("backup", "--out", backup);
        Assert.True(backedUp.ExitCode == 0, backedUp.Stderr);
        Assert.Contains($"to {backup}", backedUp.Stdout);
        // Recorded as key changes are: who, the file and its sha256; the chain holds.
        var sha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(backup)));
        Assert.Contains($"sha256 {sha256}); audit entry", backedUp.Stdout);
        var listed = Run("audit", "list", "--action", AuditActions.DatabaseBackedUp).Stdout;
        Assert.Contains($"cli:{Environment.UserName}", listed);
        Assert.Contains(sha256, listed);
        Assert.Contains(backup, listed);
        Assert.Equal(0, Run("audit", "verify").ExitCode);

        // Restored as the docs say: the file copied over stratus.db of a data directory.
        var restored = Directory.CreateDirectory(Path.Combine(dataDir, "restored")).FullName;
        File.Copy(backup, Path.Combine(restored, PlatformDatabase.FileName));
        var verified = Stratus(null, "audit", "verify", "--data-dir", restored);
        Assert.Equal(0, verified.ExitCode);
        Assert.Contains($"head hash {head}", verified.Stdout);
        Assert.Contains("kept", Stratus(null, "keys", "list", "--data-dir", restored).Stdout);
        Assert.Contains("zanzibar", Stratus(null, "blocklist", "list", "--data-dir", restored).Stdout);

        AssertUserError(Run("backup", "--out", Path.Combine(dataDir, PlatformDatabase.FileName)), "is the database itself");
        // A folder, as `--out /backups/` for a file in it: before, .NET's "Is a directory" or "Could
        // not find a part of the path" (of a folder that exists), naming neither --out nor a fix.
        var folder = Path.GetDirectoryName(backup)!;
        foreach (var given in new[] { folder, folder + Path.DirectorySeparatorChar })
            AssertUserError(Run("backup", "--out", given), $"--out {given} is a folder; give the path of a file to write");
        Assert.Equal([backup], Directory.GetFiles(folder, "*", new EnumerationOptions { AttributesToSkip = 0 }));
        AssertUserError(Stratus(null, "backup", "--out", backup, "--data-dir", Path.Combine(dataDir, "typo")), "no Stratus data in");
    }

    [Fact]
    public void Keys_limits_and_revoke_change_the_store_and_refuse_unknown_keys_in_one_line()
    {
        Assert.Equal(0, Run("keys", "create", "--name", "svc", "--scopes", "inference").ExitCode);
        var limited = Run("keys", "limits", "svc", "--tpm", "900");
        Assert.Equal(0, limited.ExitCode);
        Assert.Contains("rpm unlimited, tpm 900", limited.Stdout);
        Assert.Equal(0, Run("keys", "revoke", "svc").ExitCode);
        AssertUserError(Run("keys", "revoke", "svc"), "No active API key with name or id 'svc'");
        AssertUserError(Run("keys", "create", "--name", "x", "--scopes", "root"), "Unknown scope 'root'");
        AssertUserError(Run("keys", "create", "--name", "x", "--rpm", "-1"), "Rate limits must be 0 (unlimited) or positive");
        var all = Run("keys", "list", "--all");
        Assert.Contains("svc", all.Stdout);
    }

    [Fact]
    public void Blocklist_add_list_remove_and_invalid_regexes_are_refused_clearly()
    {
        AssertUserError(Run("blocklist", "add", "codes", "--pattern", "secret-(\\d+"), "is not a valid regular expression");
        AssertUserError(Run("blocklist", "add", "codes"), "at least one --term or --pattern");
        AssertUserError(Run("blocklist", "add", "codes", "--pattern", "(?=secret)"), "matches only empty text");
        Assert.Equal(0, Run("blocklist", "add", "codes", "--term", "zanzibar", "--pattern", "secret-\\d+", "--category", "violence").ExitCode);
        Assert.Equal(0, Run("blocklist", "add", "codes", "--term", "mombasa").ExitCode);
        var list = Run("blocklist", "list");
        Assert.Contains("zanzibar, mombasa", list.Stdout);
        Assert.Contains("violence", list.Stdout);
        Assert.Equal(0, Run("blocklist", "remove", "codes", "--term", "zanzibar").ExitCode);
        AssertUserError(Run("blocklist", "remove", "codes", "--term", "zanzibar"), "has no entry 'zanzibar'");
        Assert.DoesNotContain("zanzibar", Run("blocklist", "list").Stdout);
        Assert.Equal(0, Run("blocklist", "remove", "codes").ExitCode);
        Assert.Contains("No blocklists.", Run("blocklist", "list").Stdout);
        Assert.Equal(0, Run("audit", "verify").ExitCode);
    }

    [Fact]
    public async Task Usage_shows_a_table_filtered_by_key_model_and_dates()
    {
        var stores = PlatformStores.Open(dataDir);
        var key = await stores.KeyService().CreateAsync("team-a", ApiKeyScopes.Inference, RateLimits.Unlimited, "test");
        var now = DateTimeOffset.UtcNow;
        await stores.Usage.RecordAsync(key.Key.Id, "gpt2-small", 120, 30, now);
        await stores.Usage.RecordAsync(key.Key.Id, "gpt2-small", 80, 20, now);
        await stores.Usage.RecordAsync("other", "llama-tiny", 5, 5, now);
        var today = now.ToString("yyyy-MM-dd");

        var usage = Run("usage", "--key", "team-a", "--from", today, "--to", today);
        Assert.Equal(0, usage.ExitCode);
        Assert.Contains("gpt2-small", usage.Stdout);
        Assert.Contains("team-a", usage.Stdout);
        Assert.Contains("250", usage.Stdout);
        Assert.DoesNotContain("llama-tiny", usage.Stdout);
        Assert.Contains("llama-tiny", Run("usage", "--model", "llama-tiny").Stdout);
        Assert.Contains("No usage", Run("usage", "--from", "2020-01-01", "--to", "2020-01-31").Stdout);
        // Requests served without keys are recorded, and filtered, as "anonymous".
        Assert.Contains("No usage", Run("usage", "--key", "anonymous").Stdout);
        // Reading a data directory that has no database (a typo) says so instead of making one.
        var typo = Path.Combine(dataDir, "typo");
        AssertUserError(Stratus(null, "audit", "verify", "--data-dir", typo), "no Stratus data in");
        Assert.False(Directory.Exists(typo));
        AssertUserError(Run("usage", "--from", "last-week"), "--from must be a date as yyyy-MM-dd");
        AssertUserError(Run("usage", "--key", "nobody"), "No API key with name or id 'nobody'");
    }

    [Fact]
    public async Task Keys_create_takes_an_expiry_that_keys_list_shows()
    {
        var created = Run("keys", "create", "--name", "month", "--expires-in", "30d");
        Assert.Equal(0, created.ExitCode);
        var expiresAt = (await PlatformStores.Open(dataDir).KeyService().AuthenticateAsync(created.Stdout.TrimEnd().Split('\n')[^1])).Key!.ExpiresAt!.Value;
        Assert.InRange(expiresAt - DateTimeOffset.UtcNow, TimeSpan.FromDays(30) - TimeSpan.FromMinutes(5), TimeSpan.FromDays(30));
        Assert.Contains($"expires {ApiKeyService.FormatExpiry(expiresAt)}", created.Stdout);
        Assert.Equal(0, Run("keys", "create", "--name", "dated", "--expires", "2999-01-31").ExitCode);
        Assert.Equal(0, Run("keys", "create", "--name", "forever").ExitCode);

        var listed = Run("keys", "list");
        Assert.Equal(0, listed.ExitCode);
        Assert.Contains("Expires (UTC)", listed.Stdout);
        Assert.Contains(expiresAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm"), listed.Stdout.Split('\n').Single(l => l.Contains("month")));
        Assert.Contains("2999-01-31 00:00", listed.Stdout.Split('\n').Single(l => l.Contains("dated")));
        Assert.Contains("never", listed.Stdout.Split('\n').Single(l => l.Contains("forever")));

        AssertUserError(Run("keys", "create", "--name", "x", "--expires-in", "soon"), "--expires-in must be a number and a unit");
        AssertUserError(Run("keys", "create", "--name", "x", "--expires", "2020-01-01"), "which has passed");
        AssertUserError(Run("keys", "create", "--name", "x", "--expires", "2999-01-01", "--expires-in", "1d"), "--expires or --expires-in, not both");
    }

    [Fact]
    public async Task Keys_created_and_revoked_from_the_cli_apply_to_a_running_server()
    {
        await using var host = await TrustHost.StartAsync();
        var created = Stratus(null, "keys", "create", "--name", "from-cli", "--data-dir", host.DataDir);
        Assert.Equal(0, created.ExitCode);
        var key = created.Stdout.TrimEnd().Split('\n')[^1];
        using (var works = await host.SendAsync(HttpMethod.Get, "/v1/models", key))
            Assert.Equal(HttpStatusCode.OK, works.StatusCode);
        Assert.Equal(0, Stratus(null, "keys", "revoke", "from-cli", "--data-dir", host.DataDir).ExitCode);
        using var refused = await host.SendAsync(HttpMethod.Get, "/v1/models", key);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Equal(0, Stratus(null, "audit", "verify", "--data-dir", host.DataDir).ExitCode);
    }
}
