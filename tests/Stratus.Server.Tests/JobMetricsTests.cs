// JobMetrics as the metrics endpoint calls it, against files no trainer writes: what a run folder
// may hold instead of metrics.jsonl, a file the system will not open, and lines no trainer wrote
// that parse. Each is an answer in the API's error format (a 409 naming what is wrong): never a
// 500, nor bytes copied into an answer that is no JSON text.
using Microsoft.AspNetCore.Http;
using Stratus.Safety;
using Stratus.Server.Trust;
using Stratus.Training;

namespace Stratus.Server.Tests;

public sealed class JobMetricsTests : IDisposable
{
    readonly string run = Directory.CreateTempSubdirectory("stratus-job-metrics-").FullName;

    string File => Path.Combine(run, MetricsLog.FileName);

    [Fact]
    public async Task A_folder_where_the_file_should_be_is_a_conflict_naming_it()
    {
        Directory.CreateDirectory(File);
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => new JobMetrics().ReadAsync(run, long.MinValue, null, JobMetrics.MaxRows, default));
        Assert.True(refused.Conflict);
        Assert.Contains("is a directory", refused.Message);
    }

    [Fact]
    public async Task A_file_the_server_cannot_open_is_a_conflict_naming_it_and_the_cause_not_a_500()
    {
        // A link that leads to itself: the system refuses to open it, as root too (whom a chmod
        // 000 does not stop), as it refuses another user's unreadable file.
        System.IO.File.CreateSymbolicLink(File, File);
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => new JobMetrics().ReadAsync(run, long.MinValue, null, JobMetrics.MaxRows, default));
        Assert.True(refused.Conflict);
        Assert.StartsWith($"The job's metrics cannot be read: the server cannot read {File} (", refused.Message);
        Assert.Contains("symbolic links", refused.Message);
        Assert.EndsWith("make it a file the server's user may read.", refused.Message);
    }

    [Fact]
    public async Task A_line_with_a_field_twice_is_a_conflict_naming_its_line()
    {
        System.IO.File.WriteAllText(File, "{\"step\":0,\"train_loss\":4}\n{\"step\":1,\"step\":2,\"train_loss\":3}\n");
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => new JobMetrics().ReadAsync(run, long.MinValue, null, JobMetrics.MaxRows, default));
        Assert.True(refused.Conflict);
        Assert.Contains("line 2 of", refused.Message);
    }

    [Fact]
    public async Task A_line_that_is_no_utf8_text_is_a_conflict_naming_it_not_bytes_copied_into_the_answer()
    {
        // The rows are copied into the answer as the file holds them: these bytes made an answer
        // that said charset=utf-8 and was none, which a strict client cannot decode.
        System.IO.File.WriteAllBytes(File, [.. "{\"step\":0,\"train_loss\":4}\n{\"step\":1,\"train_loss\":3,\"note\":\""u8, 0xC3, 0x28, .. "\"}\n"u8]);
        var refused = await Assert.ThrowsAsync<TrustUserException>(() => new JobMetrics().ReadAsync(run, long.MinValue, null, JobMetrics.MaxRows, default));
        Assert.True(refused.Conflict);
        Assert.Contains("line 2 of", refused.Message);
        Assert.Contains("is not UTF-8 text", refused.Message);
    }

    static string Rows(int from, int to) =>
        string.Concat(Enumerable.Range(from, to - from).Select(step => $"{{\"step\":{step},\"train_loss\":{4 - step * 1e-4},\"elapsed_s\":{step * 0.02}}}\n"));

    static async Task<long[]> Steps(MetricsAnswer answer)
    {
        var http = new DefaultHttpContext();
        http.Response.Body = new MemoryStream();
        await answer.ExecuteAsync(http);
        http.Response.Body.Position = 0;
        return [.. System.Text.Json.Nodes.JsonNode.Parse(http.Response.Body)!["data"]!.AsArray().Select(r => (long)r!["step"]!)];
    }

    string RunFolder(string name, string rows)
    {
        var folder = Directory.CreateDirectory(Path.Combine(run, name)).FullName;
        System.IO.File.WriteAllText(Path.Combine(folder, MetricsLog.FileName), rows);
        return folder;
    }

    [Fact]
    public async Task Past_its_budget_of_bytes_the_run_asked_about_least_recently_is_dropped_and_read_again_whole()
    {
        // Three runs of 3,000 rows; the budget holds two of their indexes. It was 32 runs
        // whatever their size: 32 runs of a million steps held 770 MB.
        var (a, b, c) = (RunFolder("a", Rows(0, 3000)), RunFolder("b", Rows(0, 3000)), RunFolder("c", Rows(0, 3000)));
        var one = new MetricsIndex(a);
        using (await one.RefreshAsync()) { }
        var metrics = new JobMetrics(budgetBytes: one.HeldBytes * 5 / 2);
        string cursorOfA, cursorOfB;
        using (var first = await metrics.ReadAsync(a, long.MinValue, null, 10, default)) cursorOfA = first.Cursor!;
        using (var first = await metrics.ReadAsync(b, long.MinValue, null, 10, default)) cursorOfB = first.Cursor!;
        Assert.Equal(2 * one.HeldBytes, metrics.HeldBytes);
        using (await metrics.ReadAsync(c, long.MinValue, null, 10, default)) { }
        Assert.Equal(2 * one.HeldBytes, metrics.HeldBytes);

        // b, kept, answers only what was written since; a was dropped: asked with its cursor, it is
        // read again from its start, the whole series said to replace what the client holds.
        System.IO.File.AppendAllText(Path.Combine(a, MetricsLog.FileName), Rows(3000, 3002));
        System.IO.File.AppendAllText(Path.Combine(b, MetricsLog.FileName), Rows(3000, 3002));
        using (var since = await metrics.ReadAsync(b, long.MinValue, cursorOfB, 10, default))
        {
            Assert.False(since.Reset);
            Assert.Equal(new long[] { 3000, 3001 }, await Steps(since));
        }
        using (var again = await metrics.ReadAsync(a, long.MinValue, cursorOfA, 5000, default))
        {
            Assert.True(again.Reset);
            Assert.Equal(Enumerable.Range(0, 3002).Select(s => (long)s), await Steps(again));
        }
        Assert.Equal(2 * one.HeldBytes, metrics.HeldBytes);
    }

    [Fact]
    public async Task A_run_whose_file_is_stuck_holds_no_other_runs_requests_nor_its_own_whose_clients_left()
    {
        var stuck = RunFolder("stuck", Rows(0, 5));
        var other = RunFolder("other", Rows(0, 7));
        using var opening = new SemaphoreSlim(0);
        using var disk = new ManualResetEventSlim();
        // Opening the stuck run's file waits, as a read from a disk that stopped answering does.
        var metrics = new JobMetrics(open: path =>
        {
            if (path.StartsWith(stuck + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            {
                opening.Release();
                disk.Wait();
            }
            return MetricsIndex.OpenFile(path);
        });
        var blocked = Task.Run(() => metrics.ReadAsync(stuck, long.MinValue, null, JobMetrics.MaxRows, default));
        await opening.WaitAsync();

        using (var answer = await metrics.ReadAsync(other, long.MinValue, null, JobMetrics.MaxRows, default))
            Assert.Equal(Enumerable.Range(0, 7).Select(s => (long)s), await Steps(answer));
        // A second tab on the stuck run waits its turn without a thread, and stops once its client has gone.
        using var gone = new CancellationTokenSource();
        var waiting = metrics.ReadAsync(stuck, long.MinValue, null, JobMetrics.MaxRows, gone.Token);
        Assert.False(waiting.IsCompleted);
        await gone.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        Assert.False(blocked.IsCompleted);

        disk.Set();
        using (var answer = await blocked) Assert.Equal(Enumerable.Range(0, 5).Select(s => (long)s), await Steps(answer));
    }

    public void Dispose() => Directory.Delete(run, recursive: true);
}
