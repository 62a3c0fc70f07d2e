// A throwaway PostgreSQL cluster for the tests that run the platform's stores on PostgreSQL: initdb
// into a temporary folder, the server listening only on a Unix socket in that folder (no TCP, so
// nothing else on the machine reaches it), a password login for its superuser. One cluster serves
// the whole test process (Shared); each test class takes a fresh database of it (PostgresDatabase,
// a class fixture), and each store a fresh schema of that (NewSchema), so tests never see each
// other's rows. The cluster is stopped (pg_ctl stop -m immediate) and deleted when the process
// exits, and by a watchdog where the process ends otherwise (the test runner ends its host, a
// kill). Linked into every test project that needs it; as root, postgres refuses to run, so the
// cluster is the postgres user's.
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Stratus.Platform.Tests;

public sealed class PostgresCluster : IDisposable
{
    /// <summary>The superuser's password: the tests that give a wrong one check it is never shown.</summary>
    public const string Password = "cluster-secret-7Qx";
    public const string User = "postgres";

    static readonly Lazy<PostgresCluster> shared = new(() =>
    {
        var cluster = new PostgresCluster();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => cluster.Dispose();
        return cluster;
    });

    /// <summary>The test process's cluster, started on first use.</summary>
    public static PostgresCluster Shared => shared.Value;

    readonly string bin;
    readonly bool asRoot = Environment.UserName == "root";
    int disposed;

    PostgresCluster()
    {
        bin = FindBin() ?? throw new InvalidOperationException(
            "the PostgreSQL tests start a cluster of their own, and PostgreSQL's initdb is not installed (looked on the PATH and in /usr/lib/postgresql/<version>/bin): " +
            "apt-get install postgresql (.ci/run does)");
        Folder = Path.Combine(Path.GetTempPath(), "stratus-pg-" + Guid.NewGuid().ToString("N")[..12]);
        Port = FreePort();
        Directory.CreateDirectory(Folder);
        var data = Path.Combine(Folder, "data");
        var passwordFile = Path.Combine(Folder, "password");
        File.WriteAllText(passwordFile, Password);
        if (asRoot) Run("chown", "-R", User, Folder);
        RunAsOwner("initdb", "-D", data, "-U", User, "--auth=scram-sha-256", "--pwfile", passwordFile, "--no-sync", "-E", "UTF8", "--locale=C");
        StartWatchdog(data);
        // fsync off: a throwaway cluster's data need not survive a crash of the machine.
        RunAsOwner("pg_ctl", "-D", data, "-l", Path.Combine(Folder, "server.log"), "-w", "-t", "60", "-o",
            $"-c listen_addresses='' -c unix_socket_directories='{Folder}' -p {Port} -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200", "start");
    }

    /// <summary>The folder holding the cluster, its log and its socket (the Host of a connection).</summary>
    public string Folder { get; }
    public int Port { get; }

    /// <summary>Npgsql's keywords for <paramref name="database"/> (optionally in a schema, and
    /// with another password).</summary>
    public string ConnectionString(string database, string? schema = null, string password = Password) =>
        new NpgsqlConnectionStringBuilder
        {
            Host = Folder,
            Port = Port,
            Database = database,
            Username = User,
            Password = password,
            SearchPath = schema,
        }.ConnectionString;

    /// <summary>A new, empty database; its name.</summary>
    public string CreateDatabase()
    {
        var name = "stratus_" + Guid.NewGuid().ToString("N")[..16];
        Sql("postgres", $"CREATE DATABASE {name}");
        return name;
    }

    public void DropDatabase(string name)
    {
        NpgsqlConnection.ClearAllPools();
        Sql("postgres", $"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    }

    /// <summary>Runs SQL as the superuser, as psql would.</summary>
    public void Sql(string database, string sql, string? schema = null)
    {
        using var connection = new NpgsqlConnection(ConnectionString(database, schema) + ";Pooling=false");
        connection.Open();
        using var command = new NpgsqlCommand(sql, connection);
        command.ExecuteNonQuery();
    }

    /// <summary>Stops the cluster where this process ends without disposing of it: the test
    /// runner ends the test host when a run is over (no ProcessExit then), or a run is killed
    /// midway, and the server, which pg_ctl detaches, would otherwise run on. setsid --fork takes
    /// the watchdog out of this process's tree, which the runner ends with the host.</summary>
    void StartWatchdog(string data)
    {
        var info = new ProcessStartInfo("setsid") { UseShellExecute = false, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { "--fork", "sh", "-c", """
            exec >/dev/null 2>&1 </dev/null
            tail --pid="$1" -f /dev/null
            [ -d "$2/data" ] && $4 "$3/pg_ctl" -D "$2/data" -m immediate stop
            rm -rf "$2"
            """, "postgres-cluster-watchdog", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), Folder, bin, asRoot ? $"runuser -u {User} --" : "" })
            info.ArgumentList.Add(argument);
        using var setsid = Process.Start(info)!;
        setsid.WaitForExit();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 1) return;
        NpgsqlConnection.ClearAllPools();
        RunQuietly(asRoot ? "runuser" : Path.Combine(bin, "pg_ctl"),
            asRoot ? ["-u", User, "--", Path.Combine(bin, "pg_ctl"), "-D", Path.Combine(Folder, "data"), "-m", "immediate", "stop"] : ["-D", Path.Combine(Folder, "data"), "-m", "immediate", "stop"]);
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
            // The server's last files, written as it stopped: the watchdog removes the folder.
        }
    }

    void RunAsOwner(string tool, params string[] arguments)
    {
        var path = Path.Combine(bin, tool);
        var (code, output) = asRoot ? RunQuietly("runuser", ["-u", User, "--", path, .. arguments]) : RunQuietly(path, arguments);
        if (code != 0)
        {
            var log = Path.Combine(Folder, "server.log");
            throw new InvalidOperationException($"{tool} {string.Join(' ', arguments)} failed ({code}): {output} {(File.Exists(log) ? File.ReadAllText(log) : "")}");
        }
    }

    static void Run(string command, params string[] arguments)
    {
        var (code, output) = RunQuietly(command, arguments);
        if (code != 0) throw new InvalidOperationException($"{command} {string.Join(' ', arguments)} failed ({code}): {output}");
    }

    static (int Code, string Output) RunQuietly(string command, string[] arguments)
    {
        var info = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = "/" };
        foreach (var argument in arguments) info.ArgumentList.Add(argument);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, (stdout.Result + stderr).Trim());
    }

    /// <summary>Debian keeps initdb and pg_ctl in /usr/lib/postgresql/&lt;version&gt;/bin, off the PATH.</summary>
    static string? FindBin()
    {
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .FirstOrDefault(folder => File.Exists(Path.Combine(folder, "initdb")));
        if (onPath is not null) return onPath;
        const string Debian = "/usr/lib/postgresql";
        return Directory.Exists(Debian)
            ? Directory.GetDirectories(Debian).Select(version => Path.Combine(version, "bin")).Where(folder => File.Exists(Path.Combine(folder, "initdb")))
                .OrderByDescending(folder => int.TryParse(Path.GetFileName(Path.GetDirectoryName(folder)), out var v) ? v : 0).FirstOrDefault()
            : null;
    }

    static int FreePort()
    {
        using Socket socket = new(SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}

/// <summary>A fresh database of the shared cluster for one test class, dropped after it.</summary>
public sealed class PostgresDatabase : IDisposable
{
    public PostgresCluster Cluster { get; } = PostgresCluster.Shared;
    public string Name { get; }

    public PostgresDatabase() => Name = Cluster.CreateDatabase();

    /// <summary>A fresh schema of the database, for one test's stores; its connection string.</summary>
    public string NewSchema()
    {
        var schema = "s_" + Guid.NewGuid().ToString("N")[..16];
        Cluster.Sql(Name, $"CREATE SCHEMA {schema}");
        return Cluster.ConnectionString(Name, schema);
    }

    public void Dispose() => Cluster.DropDatabase(Name);
}
