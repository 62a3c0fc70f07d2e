// The platform database behind PgBouncer in transaction mode, the pooler many PostgreSQL
// deployments put in front: it refuses the startup parameter options (where the session's
// lock_timeout would go) and keeps no session state, so the write lock must bound its own wait.
// PgBouncer is Debian's package (.ci/run installs it); it runs as the cluster's owner.
using System.Diagnostics;
using System.Net.Sockets;
using Npgsql;

namespace Stratus.Platform.Tests;

public sealed class PostgresPgBouncerTests(PostgresDatabase postgres) : IClassFixture<PostgresDatabase>, IDisposable
{
    const string PgBouncer = "/usr/sbin/pgbouncer";
    /// <summary>Names PgBouncer's socket file in the test's own folder: no other process can hold it.</summary>
    const int Port = 6432;
    readonly string directory = Path.Combine(Path.GetTempPath(), "stratus-test-" + Guid.NewGuid().ToString("N"));
    readonly string folder = Path.Combine(postgres.Cluster.Folder, "pgbouncer-" + Guid.NewGuid().ToString("N")[..8]);
    Process? pgBouncer;

    public void Dispose()
    {
        if (pgBouncer is not null)
        {
            pgBouncer.Kill(entireProcessTree: true);
            pgBouncer.WaitForExit();
            pgBouncer.Dispose();
        }
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    /// <summary>PgBouncer in transaction mode on a Unix socket of its own folder, in front of the
    /// cluster's socket; its connection string. Not a loopback port: one picked free and bound
    /// later by PgBouncer can be taken in between by any process on the machine. In the
    /// foreground (no -d), as this process's child that Dispose ends: a daemon was found by its
    /// pid file, which it writes some time after `pgbouncer -d` returns.</summary>
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
            listen_port = {Port}
            unix_socket_dir = {folder}
            auth_type = plain
            auth_file = {folder}/users.txt
            pool_mode = transaction
            logfile = {folder}/pgbouncer.log
            """);
        var asRoot = Environment.UserName == "root";
        if (asRoot) Run("chown", "-R", PostgresCluster.User, folder);
        // -q: it logs to its log file alone, so no pipe of ours fills and stalls it.
        var info = asRoot ? new ProcessStartInfo("runuser", ["-u", PostgresCluster.User, "--", PgBouncer, "-q", Path.Combine(folder, "pgbouncer.ini")])
            : new ProcessStartInfo(PgBouncer, ["-q", Path.Combine(folder, "pgbouncer.ini")]);
        pgBouncer = Process.Start(info)!;
        WaitUntilListening();
        return new NpgsqlConnectionStringBuilder
        {
            Host = folder, Port = Port, Database = postgres.Name, Username = PostgresCluster.User, Password = PostgresCluster.Password,
        }.ConnectionString;
    }

    /// <summary>PgBouncer makes its socket some time after it starts: a test connecting at once
    /// under load was refused. Waits for the socket to take a connection, or PgBouncer to end.</summary>
    void WaitUntilListening()
    {
        var socket = new UnixDomainSocketEndPoint(Path.Combine(folder, $".s.PGSQL.{Port}"));
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                probe.Connect(socket);
                return;
            }
            catch (SocketException e) when (pgBouncer!.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(60))
            {
                var log = Path.Combine(folder, "pgbouncer.log");
                Assert.Fail($"PgBouncer {(pgBouncer.HasExited ? $"exited ({pgBouncer.ExitCode})" : "did not listen within 60 s")} ({e.Message}): {(File.Exists(log) ? File.ReadAllText(log) : "no log")}");
            }
            catch (SocketException)
            {
                Thread.Sleep(50);
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
