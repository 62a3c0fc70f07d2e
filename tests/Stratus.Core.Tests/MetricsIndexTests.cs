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

    [Fact]
    public async Task Lines_end_where_MetricsLog_ends_them_at_a_lone_carriage_return_too()
    {
        // File.ReadLines (MetricsLog, `stratus plot`) ends a line at \n, \r\n or a lone \r (a file
        // saved by an editor set to old Mac line ends); the index read such a file as one line
        // that was no JSON object, and refused what plot draws.
        Append("{\"step\":0,\"train_loss\":4}\r{\"step\":1,\"train_loss\":3}\r\r\n{\"step\":2,\"val_loss\":2}\n{\"step\":3,\"train_loss\":1}\r");
        var index = new MetricsIndex(run);
        // The last \r may be the start of a \r\n: its line waits for the byte after it.
        Assert.Equal([(0, false), (1, false), (2, true)], await Refresh(index));
        Append("{\"step\":4,\"train_loss\":1}\n");
        var expected = MetricsLog.Entries(run).Select(e => LossCurves.Points(e.Entry)!.Value).Select(p => (p.Step, p.Val is not null));
        Assert.Equal(expected, await Refresh(index));
        Assert.Equal(5, index.Count);
    }

    static string TrainerLine(int step) => step % 100 == 0
        ? $"{{\"step\":{step},\"val_loss\":{4 - step * 1e-4},\"val_loss_stderr\":0.0123,\"eval_train_loss\":3.9}}\n"
        : $"{{\"step\":{step},\"train_loss\":{4 - step * 1e-4},\"lr\":0.0006,\"grad_norm\":0.71,\"elapsed_s\":{step * 0.021},\"tokens_per_sec\":101234}}\n";

    [Fact]
    public async Task A_long_file_is_indexed_holding_its_rows_not_a_parsed_copy_of_each_line()
    {
        // 20,000 lines (2.2 MB): parsing each line into a JsonObject allocated about 1.6 KB a
        // line (33 MB here, 1.6 GB for a million lines); read where they lie, the rows are what is
        // allocated (24 bytes a row, in blocks of 2,048).
        System.IO.File.WriteAllText(File, string.Concat(Enumerable.Range(0, 20_000).Select(TrainerLine)));
        var index = new MetricsIndex(run);
        var before = GC.GetTotalAllocatedBytes(precise: true);
        using (var file = await index.RefreshAsync()) Assert.NotNull(file);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal(20_000, index.Count);
        Assert.Equal((19_999, false), (index[^1].Step, index[^1].Evaluation));
        Assert.Equal(200, Enumerable.Range(0, index.Count).Count(r => index[r].Evaluation));
        Assert.True(allocated < 2_000_000, $"{allocated:N0} bytes allocated");
        Assert.True(index.HeldBytes < 600_000, $"{index.HeldBytes:N0} bytes held");
    }

    [Fact]
    public async Task A_line_longer_than_any_trainer_writes_is_refused_naming_it_whole_or_not()
    {
        // A file with no newline (a binary file put in its place) was held whole, on every poll,
        // and such lines copied into an answer overran its buffer's size.
        Append("{\"step\":0,\"train_loss\":4}\n{\"step\":1,\"note\":\"" + new string('x', MetricsIndex.MaxLineBytes) + "\"}\n");
        var whole = await Assert.ThrowsAsync<StratusUserException>(() => Refresh(new MetricsIndex(run)));
        Assert.Contains($"line 2 of {File} is longer than {MetricsIndex.MaxLineBytes:N0} bytes", whole.Message);
        System.IO.File.WriteAllText(File, "{\"step\":0,\"train_loss\":4}\n" + new string('x', 3 * MetricsIndex.MaxLineBytes));
        var cut = await Assert.ThrowsAsync<StratusUserException>(() => Refresh(new MetricsIndex(run)));
        Assert.Contains($"line 2 of {File} is longer than", cut.Message);
        System.IO.File.WriteAllText(File, "{\"step\":0,\"train_loss\":4}\n{\"step\":1,\"note\":\"" + new string('x', MetricsIndex.MaxLineBytes - 30) + "\"}\r\n");
        Assert.Equal([(0, false), (1, false)], await Refresh(new MetricsIndex(run)));
    }

    [Theory]
    [InlineData("{\"step\":3,\"train_loss\":1.5}", 3L, false, null)]
    [InlineData("{\"step\":3,\"val_loss\":1.5,\"val_loss_stderr\":0.01}", 3L, true, null)]
    [InlineData("{\"st\\u0065p\":3,\"train_loss\":1.5}", 3L, false, null)]
    [InlineData("{\"step\":3,\"val_loss\":null}", 3L, false, null)]
    [InlineData("{\"step\":null,\"train_loss\":1.5}", null, false, null)]
    [InlineData("{\"loss\":{\"step\":3,\"step\":4}}", null, false, null)]
    [InlineData("{\"step\":3,\"train_loss\":\"x\"}  ", null, false, "\"train_loss\": \"x\", not a number")]
    [InlineData("{\"step\":3.0,\"train_loss\":1}", null, false, "\"step\": 3.0, not a whole number")]
    [InlineData("{\"step\":3,\"val_loss\":1,\"val_loss_stderr\":1e999}", null, false, "\"val_loss_stderr\": 1e999, not a number")]
    [InlineData("{\"step\":3,\"lr\":1,\"lr\":2}", null, false, "names a field more than once")]
    [InlineData("{\"step\":3,\"st\\u0065p\":2}", null, false, "names a field more than once")]
    [InlineData("[{\"step\":3}]", null, false, "is not a JSON object")]
    [InlineData("{\"step\":3} {}", null, false, "is not a JSON object")]
    public async Task Each_line_is_read_as_MetricsLog_and_LossCurves_read_it(string line, long? step, bool evaluation, string? refusal)
    {
        Append($"{line}\n{{\"step\":9}}\n");
        if (refusal is null)
        {
            var expected = MetricsLog.Entries(run).Select(e => LossCurves.Points(e.Entry)).OfType<(long Step, CurvePoint? Train, CurvePoint? Val)>().Select(p => (p.Step, p.Val is not null)).ToArray();
            var rows = await Refresh(new MetricsIndex(run));
            Assert.Equal(expected, rows);
            Assert.Equal(step is { } s ? [(s, evaluation), (9, false)] : [(9L, false)], rows);
            return;
        }
        var refused = await Assert.ThrowsAsync<StratusUserException>(() => Refresh(new MetricsIndex(run)));
        Assert.Contains($"line 1 of {File} ", refused.Message);
        Assert.Contains(refusal, refused.Message);
        var plot = Assert.Throws<StratusUserException>(() =>
        {
            foreach (var (number, entry) in MetricsLog.Entries(run))
            {
                try { LossCurves.Points(entry); }
                catch (FormatException e) { throw MetricsLog.Damaged(run, number, e.Message); }
            }
        });
        Assert.Equal(plot.Message, refused.Message);
    }

    public void Dispose() => Directory.Delete(run, recursive: true);
}
