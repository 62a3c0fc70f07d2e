// JobMetrics as the metrics endpoint calls it, against files no trainer writes: what a run folder
// may hold instead of metrics.jsonl, and lines no trainer wrote that parse. Each is an answer
// in the API's error format (a 409 naming what is wrong): never a 500, nor bytes copied into an
// answer that is no JSON text.
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

    public void Dispose() => Directory.Delete(run, recursive: true);
}
