// JobMetrics as the metrics endpoint calls it, against files no trainer writes: what a run folder
// may hold instead of metrics.jsonl, and lines that parse but no trainer wrote. Each is an answer
// in the API's error format (a 409 naming what is wrong), never an exception the server answers
// with a 500.
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Stratus.Safety;
using Stratus.Server.Trust;
using Stratus.Training;

namespace Stratus.Server.Tests;

public sealed class JobMetricsTests : IDisposable
{
    readonly string run = Directory.CreateTempSubdirectory("stratus-job-metrics-").FullName;

    string File => Path.Combine(run, MetricsLog.FileName);

    static async Task<JsonObject> Body(MetricsAnswer answer)
    {
        var http = new DefaultHttpContext();
        using var body = new MemoryStream();
        http.Response.Body = body;
        await answer.ExecuteAsync(http);
        return JsonNode.Parse(body.ToArray())!.AsObject();
    }

    [Fact]
    public void A_folder_where_the_file_should_be_is_a_conflict_naming_it()
    {
        Directory.CreateDirectory(File);
        var refused = Assert.Throws<TrustUserException>(() => new JobMetrics().Read(run, long.MinValue, null, JobMetrics.MaxRows));
        Assert.True(refused.Conflict);
        Assert.Contains("is a directory", refused.Message);
    }

    [Fact]
    public void A_line_with_a_field_twice_is_a_conflict_naming_its_line()
    {
        System.IO.File.WriteAllText(File, "{\"step\":0,\"train_loss\":4}\n{\"step\":1,\"step\":2,\"train_loss\":3}\n");
        var refused = Assert.Throws<TrustUserException>(() => new JobMetrics().Read(run, long.MinValue, null, JobMetrics.MaxRows));
        Assert.True(refused.Conflict);
        Assert.Contains("line 2 of", refused.Message);
    }

    public void Dispose() => Directory.Delete(run, recursive: true);
}
