// MetricsIndex follows a run's metrics.jsonl as it grows: it reads only the bytes appended since,
// takes a line once its newline is there, reads lines as MetricsLog.Entries reads them (Windows
// line ends, a byte-order mark, empty lines; a broken line is damage only once another follows it,
// named by the same line number), and starts again from the file's start once it was rewritten.
using System.Text;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class MetricsIndexTests : IDisposable
{
    readonly string run = Directory.CreateTempSubdirectory("stratus-metrics-index-").FullName;

    string File => Path.Combine(run, MetricsLog.FileName);

    void Append(string text) => System.IO.File.AppendAllText(File, text, new UTF8Encoding(false));

    static async Task<(long Step, bool Evaluation)[]> Refresh(MetricsIndex index)
    {
        using var file = await index.RefreshAsync();
        return [.. Enumerable.Range(0, index.Count).Select(r => (index[r].Step, index[r].Evaluation))];
    }

    [Fact]
    public async Task Lines_are_taken_once_whole_as_the_trainer_appends_them()
    {
        var index = new MetricsIndex(run);
        using (var none = await index.RefreshAsync()) Assert.Null(none);
        Append("\uFEFF{\"step\":0,\"val_loss\":4.2}\r\n{\"step\":0,\"train_loss\":4.1}\r\n\n{\"note\":\"no step\"}\n{\"step\":1,\"train_lo");
        Assert.Equal([(0, true), (0, false)], await Refresh(index));
        var generation = index.Generation;
        Append("ss\":3.9}\n");
        Assert.Equal([(0, true), (0, false), (1, false)], await Refresh(index));
        Assert.Equal(generation, index.Generation);

        // Each row's place holds its line, read back as it is.
        using var file = (await index.RefreshAsync())!;
        var last = index[index.Count - 1];
        var line = new byte[last.Length];
        Assert.Equal(last.Length, RandomAccess.Read(file, line, last.Offset));
        Assert.True(MetricsIndex.IsRow(line));
        Assert.Equal("{\"step\":1,\"train_loss\":3.9}", Encoding.UTF8.GetString(line));
    }

    [Fact]
    public async Task A_broken_line_waits_until_another_follows_it_and_is_then_named_as_plot_names_it()
    {
        var index = new MetricsIndex(run);
        Append("{\"step\":0,\"train_loss\":4}\n\n{\"step\":1,\"trai\n");
        Assert.Equal([(0, false)], await Refresh(index));
        Append("{\"step\":2,\"train_loss\":3}\n");
        var refused = await Assert.ThrowsAsync<StratusUserException>(() => Refresh(index));
        var entries = Assert.Throws<StratusUserException>(() => MetricsLog.Entries(run).ToList());
        Assert.Equal(entries.Message, refused.Message);
        Assert.Contains("line 2 of", refused.Message);
    }

    [Fact]
    public async Task A_file_rewritten_as_a_resume_rewrites_it_is_indexed_again_from_its_start()
    {
        var index = new MetricsIndex(run);
        for (var step = 0; step < 20; step++) Append($"{{\"step\":{step},\"train_loss\":{4 - step * 0.1},\"elapsed_s\":{step * 0.31}}}\n");
        Assert.Equal(20, (await Refresh(index)).Length);
        var generation = index.Generation;
        using (var resumed = new MetricsLog(run, 10))
            for (var step = 10; step < 25; step++) resumed.Write(new() { ["step"] = step, ["train_loss"] = 9.0, ["elapsed_s"] = step * 0.29 });
        var rows = await Refresh(index);
        Assert.NotEqual(generation, index.Generation);
        Assert.Equal(Enumerable.Range(0, 25).Select(s => (long)s), rows.Select(r => r.Step));
    }

    public void Dispose() => Directory.Delete(run, recursive: true);
}
