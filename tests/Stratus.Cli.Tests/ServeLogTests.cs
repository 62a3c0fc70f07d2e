// `stratus serve` as an operator runs it: its own log as JSON lines (--log-format json, or the
// standard Logging__Console__FormatterName=json, which had no effect), with every API key cut to
// its id, and the proxies whose X-Forwarded-For it believes named on its command line alone
// (ASP.NET Core's ASPNETCORE_FORWARDEDHEADERS_ENABLED believed every peer's).
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Stratus.Platform;

namespace Stratus.Cli.Tests;

public sealed class ServeLogTests
{
    /// <summary>A running `stratus serve` and every line it has written so far.</summary>
    internal sealed class Server(Process process) : IDisposable
    {
        public readonly ConcurrentQueue<string> Stdout = new(), Stderr = new();
        public Process Process => process;

        public static Server Start(IReadOnlyDictionary<string, string> environment, params string[] args)
        {
            var info = Cli.StartInfo(["serve", .. args]);
            foreach (var (name, value) in environment) info.Environment[name] = value;
            return Start(info);
        }

        public static Server Start(ProcessStartInfo info)
        {
            // Stop() is Ctrl+C.
            var server = new Server(new Process { StartInfo = Cli.WithCtrlC(info) });
            server.Process.OutputDataReceived += (_, e) => { if (e.Data is not null) server.Stdout.Enqueue(e.Data); };
            server.Process.ErrorDataReceived += (_, e) => { if (e.Data is not null) server.Stderr.Enqueue(e.Data); };
            server.Process.Start();
            server.Process.BeginOutputReadLine();
            server.Process.BeginErrorReadLine();
            return server;
        }

        /// <summary>The OpenAI base URL once it serves, from whichever stream says it.</summary>
        public async Task<Uri> BaseUrlAsync()
        {
            const string prefix = "OpenAI base URL: ";
            for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromMinutes(1); await Task.Delay(50))
            {
                if (Stdout.Concat(Stderr).FirstOrDefault(line => line.StartsWith(prefix, StringComparison.Ordinal)) is { } line) return new Uri(line[prefix.Length..].Split(' ')[0] + "/");
                if (Process.HasExited) break;
            }
            throw new Xunit.Sdk.XunitException($"serve did not start: {string.Join('\n', Stderr)}");
        }

        /// <summary>Stops it as Ctrl+C does; its exit code.</summary>
        public int Stop()
        {
            CliTests.Signal(Process.Id, "INT");
            Assert.True(Process.WaitForExit(TimeSpan.FromSeconds(60)), "serve did not stop");
            Process.WaitForExit(); // the output's last lines
            return Process.ExitCode;
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }
    }

    /// <summary>A tiny model and a key for it in <paramref name="temp"/>'s home: the key.</summary>
    static string ModelAndKey(TempDirectory temp)
    {
        var tokenizer = Tokenization.CharTokenizer.FromCorpus("abc ");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 8, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer);
        var (code, stdout, stderr) = Cli.Run("keys", "create", "--name", "app", "--data-dir", temp["home"]);
        Assert.True(code == 0, stderr);
        return stdout.TrimEnd().Split('\n')[^1];
    }

    static async Task<HttpStatusCode> GetAsync(Uri root, string path, string? key = null)
    {
        using var http = new HttpClient { BaseAddress = root };
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (key is not null) request.Headers.Authorization = new("Bearer", key);
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    [Fact]
    public async Task The_servers_log_is_one_JSON_object_a_line_with_every_API_key_cut_to_its_id()
    {
        using var temp = new TempDirectory();
        var key = ModelAndKey(temp);
        var id = key[..(ApiKeyFormat.Prefix.Length + ApiKeyFormat.IdLength)];
        var secret = key[id.Length..];
        // The documented way: the standard key, at Debug so that Kestrel quotes what it refuses.
        using var server = Server.Start(new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "json", ["Logging__LogLevel__Default"] = "Debug" },
            "--model", temp["model"], "--port", "0", "--data-dir", temp["home"]);
        var root = await server.BaseUrlAsync();
        Assert.Equal(HttpStatusCode.OK, await GetAsync(root, "/v1/models", key));
        // A key where none belongs: the request lines at Information quote the query string ...
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync(root, $"/v1/models?api-key={key}"));
        // ... as the client escaped it (System.Uri would unescape it: sent on a socket).
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(root.Host, root.Port);
            var escaped = string.Concat(key.Select((c, i) => i % 3 == 0 ? $"%{(int)c:X2}" : c.ToString()));
            await socket.GetStream().WriteAsync(Encoding.ASCII.GetBytes($"GET /v1/models?api_key={escaped} HTTP/1.1\r\nHost: {root.Authority}\r\nConnection: close\r\n\r\n"));
            Assert.StartsWith("HTTP/1.1 401", await new StreamReader(socket.GetStream()).ReadToEndAsync());
        }
        // ... and Kestrel's at Debug a request line it cannot read, with its exception.
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(root.Host, root.Port);
            await socket.GetStream().WriteAsync(Encoding.ASCII.GetBytes($"GARBAGE {key}\r\n\r\n"));
            // Its 400, then the connection closed.
            Assert.StartsWith("HTTP/1.1 400", await new StreamReader(socket.GetStream()).ReadToEndAsync());
        }
        Assert.Equal(0, server.Stop());

        var lines = server.Stdout.ToList();
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            var entry = Assert.IsType<JsonObject>(JsonNode.Parse(line), exactMatch: false);
            Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$", (string?)entry["Timestamp"]);
            Assert.NotNull((string?)entry["LogLevel"]);
            Assert.NotNull((string?)entry["Category"]);
            Assert.NotNull((string?)entry["Message"]);
        }
        var entries = lines.Select(line => JsonNode.Parse(line)!).ToList();
        Assert.Contains(entries, entry => ((string?)entry["Message"])?.StartsWith("Request starting", StringComparison.Ordinal) == true);
        Assert.Contains(entries, entry => ((string?)entry["Exception"])?.Contains("Invalid request line", StringComparison.Ordinal) == true);
        // The lines for a person go to standard error, leaving standard output JSON's.
        Assert.Contains(server.Stderr, line => line.StartsWith("try: curl", StringComparison.Ordinal));
        var everything = string.Join('\n', server.Stdout.Concat(server.Stderr));
        Assert.DoesNotContain(secret, everything);
        Assert.Contains(entries, entry => ((string?)entry["Message"])?.Contains($"?api_key={id}[redacted]", StringComparison.Ordinal) == true);
        Assert.DoesNotContain(entries, entry => ((string?)entry["Message"])?.Contains("?api_key=%", StringComparison.Ordinal) == true);
        Assert.Contains($"{id}[redacted]", string.Join('\n', lines));
    }

    [Fact]
    public async Task Log_format_wins_over_the_configuration_and_a_format_the_console_lacks_is_one_line()
    {
        using var temp = new TempDirectory();
        ModelAndKey(temp);
        using (var server = Server.Start(new Dictionary<string, string> { ["Logging__Console__FormatterName"] = "simple", ["ASPNETCORE_URLS"] = "http://127.0.0.1:1" },
            "--model", temp["model"], "--port", "0", "--data-dir", temp["home"], "--log-format", "json"))
        {
            await server.BaseUrlAsync();
            Assert.Equal(0, server.Stop());
            // Kestrel's warning that it listens on --host and --port, not ASPNETCORE_URLS.
            var warning = JsonNode.Parse(Assert.Single(server.Stdout))!;
            Assert.Equal("Warning", (string?)warning["LogLevel"]);
        }
        var unknown = Cli.StartInfo("serve", "--model", temp["model"], "--port", "0", "--data-dir", temp["home"]);
        unknown.Environment["Logging__Console__FormatterName"] = "xml";
        var (code, _, stderr) = Cli.Run(unknown);
        Assert.Equal(2, code);
        Assert.Equal("error: Logging:Console:FormatterName (Logging__Console__FormatterName in the environment) is 'xml', which the console logger lacks: " +
            "give it simple, json, systemd, or give serve --log-format text|json", stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last());
    }

    /// <summary>An operator reads at start whether /api/jobs takes training jobs, beneath which
    /// folder and run by which executors, as the platform database is said: a server started
    /// without --jobs-root refuses every submission (403).</summary>
    [Fact]
    public async Task Serve_says_at_start_whether_its_jobs_API_takes_jobs_and_which_executors_run_them()
    {
        using var temp = new TempDirectory();
        ModelAndKey(temp);
        Directory.CreateDirectory(temp["jobs"]);
        async Task<string[]> Started(params string[] jobs)
        {
            using var server = Server.Start(new Dictionary<string, string>(), ["--model", temp["model"], "--port", "0", "--data-dir", temp["home"], .. jobs]);
            await server.BaseUrlAsync();
            Assert.Equal(0, server.Stop());
            return [.. server.Stdout.Where(line => line.StartsWith("training jobs: ", StringComparison.Ordinal))];
        }
        Assert.Equal(["training jobs: /api/jobs lists, shows and cancels jobs but takes none (start serve with --jobs-root <folder> to take them)"], await Started());
        Assert.Equal([$"training jobs: /api/jobs takes jobs beneath {temp["jobs"]}, run by slurm or local (slurm where a request names none)"],
            await Started("--jobs-root", temp["jobs"], "--jobs-executor", "slurm", "--jobs-executor", "local"));
    }

    /// <summary>ASP.NET Core watches the folder it is started from for a changed appsettings.json,
    /// and on Linux that is an inotify watch on every folder below it, made before the server
    /// starts: serve did it twice (the log's format is read before the models load, and that
    /// watcher was never stopped). Started from /, as systemd starts a unit without
    /// WorkingDirectory=, that was 44,000 watches and 3 s more to start. The configuration is read
    /// once.</summary>
    [Fact]
    public async Task Serve_watches_no_folder_below_the_one_it_is_started_from()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        ModelAndKey(temp);
        for (var i = 0; i < 20; i++) Directory.CreateDirectory(Path.Combine(temp["started-here"], $"folder-{i}", "below"));
        var info = Cli.StartInfo("serve", "--model", temp["model"], "--port", "0", "--data-dir", temp["home"]);
        info.WorkingDirectory = temp["started-here"];
        using var server = Server.Start(info);
        await server.BaseUrlAsync();
        var watches = Directory.GetFiles($"/proc/{server.Process.Id}/fdinfo").Sum(descriptor =>
        {
            try
            {
                return File.ReadLines(descriptor).Count(line => line.StartsWith("inotify wd:", StringComparison.Ordinal));
            }
            // A descriptor closed meanwhile.
            catch (IOException)
            {
                return 0;
            }
        });
        Assert.Equal(0, watches);
        Assert.Equal(0, server.Stop());
    }

    /// <summary>ASP.NET Core's switch believed X-Forwarded-For from every peer, so that any
    /// client could name itself in the access log (and to --insecure-no-auth's loopback check).</summary>
    [Fact]
    public async Task Forwarded_headers_are_believed_from_the_listed_proxies_alone_whatever_ASP_NET_Cores_switch_says()
    {
        using var temp = new TempDirectory();
        var key = ModelAndKey(temp);
        using var server = Server.Start(new Dictionary<string, string> { ["ASPNETCORE_FORWARDEDHEADERS_ENABLED"] = "true" },
            "--model", temp["model"], "--port", "0", "--data-dir", temp["home"], "--access-log", temp["access.log"], "--forwarded-allow-ips", "10.0.0.0/8,192.168.0.1");
        var root = await server.BaseUrlAsync();
        using (var http = new HttpClient { BaseAddress = root })
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/v1/models"))
        {
            request.Headers.Authorization = new("Bearer", key);
            request.Headers.Add("X-Forwarded-For", "198.51.100.1");
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(0, server.Stop());
        Assert.Equal("127.0.0.1", (string?)JsonNode.Parse(Assert.Single(File.ReadAllLines(temp["access.log"])))!["client"]);
        Assert.Contains(server.Stdout, line => line.Contains("ASPNETCORE_FORWARDEDHEADERS_ENABLED is ignored", StringComparison.Ordinal));

        var (code, _, stderr) = Cli.Run("serve", "--model", temp["model"], "--forwarded-allow-ips", "10.0.0.1, nginx");
        Assert.Equal(2, code);
        Assert.Equal("error: --forwarded-allow-ips: 'nginx' is not an IP address or a CIDR network; give e.g. 10.0.0.5, 10.0.0.0/8 or fd00::/8", stderr.Trim());
    }
}
