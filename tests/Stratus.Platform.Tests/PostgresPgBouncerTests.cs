// The platform database behind PgBouncer in transaction mode, the pooler many PostgreSQL
// deployments put in front: it refuses the startup parameter options (where the session's
// lock_timeout would go) and keeps no session state, so the write lock must bound its own wait.
// PgBouncer is Debian's package (.ci/run installs it); it runs as the cluster's owner.
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Stratus.Platform.Tests;

public sealed class PostgresPgBouncerTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IDisposable
{
    const string PgBouncer = "/usr/sbin/pgbouncer";
    readonly string directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));
    readonly string folder = Path.Combine(postgres.Cluster.Folder, "pgbouncer-" + Guid.NewGuid().ToString("N")[..8]);
    readonly int port = PostgresCluster.FreePort();

    public void Dispose()
    {
        if (File.Exists(Path.Combine(folder, "pid")) && int.TryParse(File.ReadAllText(Path.Combine(folder, "pid")).Trim(), out var pid))
            Process.GetProcessById(pid).Kill();
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    /// <summary>PgBouncer in transaction mode on a loopback port, in front of the cluster's socket; its connection string.</summary>
    string StartPgBouncer()
    {
        Assert.True(File.Exists(PgBouncer), "the PgBouncer test needs Debian's pgbouncer: apt-get install pgbouncer (.ci/run does)");
        Directory.CreateDirectory(folder);
        var cluster = postgres.Cluster;
        File.WriteAllText(Path.Combine(folder, "users.txt"), $"\"{PostgresCluster.User}\" \"{PostgresCluster.Password}\"\n");
        File.WriteAllText(Path.Combine(folder, "pgbouncer.ini"), $"""
            [databases]
            * = host={cluster.Folder} port={cluster.Port}
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = plain
            auth_file = {folder}/users.txt
            pool_mode = transaction
            logfile = {folder}/pgbouncer.log
            pidfile = {folder}/pid
            """);
        var asRoot = Environment.UserName == "root";
        if (asRoot) Run("chown", "-R", PostgresCluster.User, folder);
        if (asRoot) Run("runuser", "-u", PostgresCluster.User, "--", PgBouncer, "-d", Path.Combine(folder, "pgbouncer.ini"));
        else Run(PgBouncer, "-d", Path.Combine(folder, "pgbouncer.ini"));
        WaitUntilListening();
        return new NpgsqlConnectionStringBuilder
        {
            Host = "127.0.0.1", Port = port, Database = postgres.Name, Username = PostgresCluster.User, Password = PostgresCluster.Password,
        }.ConnectionString;
    }

    /// <summary>`pgbouncer -d` returns once it has forked, which can be before it listens or has
    /// written its pid file: a test connecting at once under load was refused, and Dispose, finding
    /// no pid file, left that PgBouncer running. Waits for both.</summary>
    void WaitUntilListening()
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var probe = new TcpClient();
                probe.Connect(IPAddress.Loopback, port);
                if (File.Exists(Path.Combine(folder, "pid"))) return;
                throw new SocketException((int)SocketError.TryAgain);
            }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                Thread.Sleep(50);
            }
            catch (SocketException e)
            {
                var log = Path.Combine(folder, "pgbouncer.log");
                Assert.Fail($"PgBouncer did not listen on port {port} within 30 s ({e.Message}): {(File.Exists(log) ? File.ReadAllText(log) : "no log")}");
            }
        }
    }

    static void Run(string command, params string[] arguments)
    {
        using var process = Process.Start(new ProcessStartInfo(command, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{command} failed: {output}");
    }

    [Fact]
    public async Task Behind_pgbouncer_in_transaction_mode_the_stores_work_and_a_held_write_lock_fails_a_write_within_the_lock_timeout()
    {
        var connection = StartPgBouncer();
        var database = PlatformDatabase.Open(directory, connection, TimeSpan.FromSeconds(1));
        var keys = PlatformStores.Open(database).KeyService();
        var created = await keys.CreateAsync("alice", ApiKeyScopes.Inference, RateLimits.Unlimited, "t");
        Assert.True((await keys.AuthenticateAsync(created.Secret)).Succeeded);

        // The holder goes to the server directly: the lock is the same advisory lock either way.
        var other = PlatformDatabase.Open(directory, postgres.Cluster.ConnectionString(postgres.Name), TimeSpan.FromSeconds(60));
        using var writer = other.Dialect.Connect();
        using var held = other.Dialect.BeginWrite(writer);
        var error = await Assert.ThrowsAsync<PlatformStorageException>(() => keys.CreateAsync("bob", ApiKeyScopes.Inference, RateLimits.Unlimited, "t").AsTask().WaitAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains("is locked by another process (55P03:", error.Message);
        held.Rollback();

        // A read blocked by a table lock has no session lock_timeout here: the command timeout
        // (the lock timeout and a second) ends it, still as the storage error.
        using var holder = new NpgsqlConnection(postgres.Cluster.ConnectionString(postgres.Name));
        holder.Open();
        using (var lockKeys = new NpgsqlCommand("BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;", holder)) lockKeys.ExecuteNonQuery();
        var blocked = await Assert.ThrowsAsync<PlatformStorageException>(() => keys.AuthenticateAsync(created.Secret).AsTask().WaitAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains(database.Name, blocked.Message);
    }
}
