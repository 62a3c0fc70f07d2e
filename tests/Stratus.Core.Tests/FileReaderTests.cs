// Files a user hands Stratus (weights, token shards) may be damaged or made by hand: each bad
// header must be a one-line error, never a negative seek, an overflowing size or a read past
// the file.
using System.Buffers.Binary;
using System.Text;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class FileReaderTests
{
    /// <summary>A safetensors file with this header and <paramref name="dataBytes"/> zero bytes of data.</summary>
    static string SafeTensorsFile(TempDirectory temp, string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        var path = temp[$"{Guid.NewGuid():N}.safetensors"];
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}""", 8, "data_offsets")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-2,-1],"data_offsets":[0,8]}}""", 8, "negative dimension")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", 0, "too large")]
    [InlineData("""{"w":{"dtype":"F32","data_offsets":[0,8]}}""", 8, "no shape")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2]}}""", 8, "no data_offsets")]
    [InlineData("""{"w":{"dtype":"F32","shape":["a"],"data_offsets":[0,8]}}""", 8, "no shape")]
    [InlineData("""{"w":{"dtype":5,"shape":[2],"data_offsets":[0,8]}}""", 8, "no dtype")]
    [InlineData("""{"__metadata__":"x","w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "__metadata__")]
    [InlineData("""{"w":[1]}""", 8, "not an object")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "not valid JSON")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "starts at data byte 4")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "the file has")]
    public void A_damaged_safetensors_header_is_refused_naming_what_is_wrong(string header, int dataBytes, string expected)
    {
        using var temp = new TempDirectory();
        var path = SafeTensorsFile(temp, header, dataBytes);
        var error = Assert.Throws<StratusUserException>(() => SafeTensors.Open(path).Dispose());
        Assert.Contains("is not a valid safetensors file", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("""{"w\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""")]
    [InlineData("""{"__metadata__":{"format":"p\udc00"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""")]
    [InlineData("""{"w":{"dtype":"F\ud800","shape":[2],"data_offsets":[0,8]}}""")]
    public void A_safetensors_header_whose_strings_are_no_text_is_refused_not_thrown_on_where_read(string header)
    {
        // Half a surrogate pair threw an InvalidOperationException (a stack trace) where the
        // name, dtype or metadata value was read.
        using var temp = new TempDirectory();
        var path = SafeTensorsFile(temp, header, 8);
        var error = Assert.Throws<StratusUserException>(() => SafeTensors.Open(path).Dispose());
        Assert.StartsWith($"{path} is not a valid safetensors file: its header is not text: a string holds a \\u escape of an unpaired UTF-16 surrogate", error.Message);
    }

    [Fact]
    public void A_safetensors_header_that_is_not_UTF8_is_refused()
    {
        using var temp = new TempDirectory();
        var path = SafeTensorsFile(temp, """{"__metadata__":{"format":"p?"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8);
        var bytes = File.ReadAllBytes(path);
        bytes[Array.IndexOf(bytes, (byte)'?')] = 0xFF;
        File.WriteAllBytes(path, bytes);
        Assert.Equal($"{path} is not a valid safetensors file: its header is not text: it is not valid UTF-8", Assert.Throws<StratusUserException>(() => SafeTensors.Open(path).Dispose()).Message);
    }

    [Fact]
    public void An_empty_tensor_where_another_starts_tiles_the_data_whichever_the_header_lists_first()
    {
        // The reference implementation orders tensors by (start, end); ordered by start alone,
        // an empty one listed after the tensor it shares a start with was taken for an overlap.
        using var temp = new TempDirectory();
        var path = SafeTensorsFile(temp, """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"empty":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}""", 8);
        using var reader = SafeTensors.Open(path);
        Assert.Equal(["w", "empty"], reader.Names);
    }

    [Fact]
    public void A_refused_safetensors_file_is_closed_at_once()
    {
        using var temp = new TempDirectory();
        var path = SafeTensorsFile(temp, """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12);
        Assert.Throws<StratusUserException>(() => SafeTensors.Open(path));
        // Not shared for writing while the refused reader's stream waited for its finalizer.
        using (File.Open(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None)) { }
    }

    [Fact]
    public async Task A_file_that_reads_on_past_its_size_is_refused_instead_of_hashed_or_read_for_ever()
    {
        // A link to /dev/zero in a downloaded run or dataset folder: a size of 0 and no end. Its
        // checkpoint hash never finished; its JSON filled memory until .NET gave up at 2 GB.
        if (!File.Exists("/dev/zero")) return;
        using var temp = new TempDirectory();
        var link = temp["model.safetensors"];
        File.CreateSymbolicLink(link, "/dev/zero");
        var expected = OperatingSystem.IsLinux() ? $"{link} is a character device, not a regular file" : $"{link} is no regular file: it reads on past its size of 0 bytes";
        // Bounded so that a hashing that never ends fails the test rather than the run.
        var hashing = Task.Run(() => FileHash.Sha256(link));
        Assert.Same(hashing, await Task.WhenAny(hashing, Task.Delay(TimeSpan.FromMinutes(1))));
        Assert.StartsWith(expected, (await Assert.ThrowsAsync<StratusUserException>(() => hashing)).Message);
        Assert.StartsWith(expected, Assert.Throws<StratusUserException>(() => JsonText.ParseFile(link)).Message);

        File.WriteAllText(temp["meta.json"], """{"a": 1}""");
        Assert.Equal(1, (int)JsonText.ParseFile(temp["meta.json"])!["a"]!);
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(temp["meta.json"]))), FileHash.Sha256(temp["meta.json"]));
    }

    [Fact]
    public async Task A_named_pipe_in_a_model_or_dataset_folder_is_refused_before_it_is_opened()
    {
        // Opening a FIFO for reading waits for a writer: `sample`, `train` or `import` that met
        // one among a folder's files hung for ever, saying nothing.
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var readers = new (string File, Action<string> Read)[]
        {
            ("model.safetensors", path => SafeTensors.Open(path).Dispose()),
            ("optimizer.safetensors", path => FileHash.Sha256(path)),
            ("train.bin", path => TokenShard.Open(path).Dispose()),
            ("meta.json", path => JsonText.ParseFile(path)),
            ("tokenizer.json", path => TokenizerStore.Load(Path.GetDirectoryName(path)!)),
        };
        foreach (var (name, read) in readers)
        {
            var fifo = temp[name];
            using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
            var reading = Task.Run(() => read(fifo));
            var finished = await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(30)));
            // A reader still waiting gets its writer, so that no thread is left blocked.
            if (finished != reading) using (new FileStream(fifo, FileMode.Open, FileAccess.Write)) { }
            Assert.True(finished == reading, $"reading a named pipe {name} waited for a writer");
            Assert.Equal($"{fifo} is a named pipe (FIFO), not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself",
                (await Assert.ThrowsAsync<StratusUserException>(() => reading)).Message);
        }
    }

    [Fact]
    public async Task A_named_pipe_or_device_as_a_runs_metrics_is_refused_by_plot_and_resume()
    {
        // metrics.jsonl was read with File.ReadLines: `plot` or `train --resume` on a run folder
        // whose metrics.jsonl is a FIFO waited for a writer for ever, and one linked to /dev/zero
        // read a line that never ends until memory ran out.
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var run = temp["run"];
        Directory.CreateDirectory(run);
        var metrics = Path.Combine(run, MetricsLog.FileName);
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", metrics)) await mkfifo.WaitForExitAsync();
        foreach (var (what, read) in new (string, Action)[] { ("plot", () => LossCurves.Read(run)), ("resume", () => new MetricsLog(run, resumeStep: 2).Dispose()) })
        {
            var reading = Task.Run(read);
            var finished = await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(30)));
            // A reader still waiting gets its writer, so that no thread is left blocked.
            if (finished != reading) using (new FileStream(metrics, FileMode.Open, FileAccess.Write)) { }
            Assert.True(finished == reading, $"{what} waited for a writer of the named pipe {metrics}");
            Assert.Equal($"{metrics} is a named pipe (FIFO), not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself",
                (await Assert.ThrowsAsync<StratusUserException>(() => reading)).Message);
        }
        File.Delete(metrics);
        File.CreateSymbolicLink(metrics, "/dev/zero");
        Assert.Equal($"{metrics} is a character device, not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself",
            Assert.Throws<StratusUserException>(() => LossCurves.Read(run)).Message);
    }

    [Fact]
    public async Task A_folders_lock_file_that_is_a_named_pipe_or_a_device_is_refused_in_one_line()
    {
        // .lock was opened and cut to length 0: a FIFO or a link to /dev/null there threw
        // NotSupportedException (a stack trace) from train or prepare.
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var fifo = Path.Combine(temp["fifo"], FolderLock.FileName);
        Directory.CreateDirectory(temp["fifo"]);
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
        Assert.Equal($"{fifo} is a named pipe (FIFO), not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself",
            Assert.Throws<StratusUserException>(() => FolderLock.Take(temp["fifo"], _ => "held").Dispose()).Message);
        var device = Path.Combine(temp["device"], FolderLock.FileName);
        Directory.CreateDirectory(temp["device"]);
        File.CreateSymbolicLink(device, "/dev/null");
        Assert.StartsWith($"{device} is a character device, not a regular file",
            Assert.Throws<StratusUserException>(() => FolderLock.Take(temp["device"], _ => "held").Dispose()).Message);
    }

    [Fact]
    public async Task A_config_given_through_a_pipe_or_shorter_than_its_size_is_read_to_its_end()
    {
        // `--config <(jq ... base.json)` or `--config /dev/stdin`: asking a pipe its size threw
        // NotSupportedException (a stack trace), and a file that ended before its size said
        // (shrunk while read) an EndOfStreamException naming no file.
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var fifo = temp["config.json"];
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
        var writing = Task.Run(() => File.WriteAllText(fifo, """{"max_iters": 7}"""));
        var reading = Task.Run(() => TrainConfig.Load(fifo, []));
        Assert.Equal(7, (await reading.WaitAsync(TimeSpan.FromSeconds(30))).MaxIters);
        await writing;

        // The kernel's files under /sys say a page (4,096 bytes) whatever they hold.
        const string sys = "/sys/kernel/profiling";
        if (File.Exists(sys) && new FileInfo(sys).Length > 2)
            Assert.Equal(File.ReadAllText(sys).Trim(), JsonText.ParseFile(sys)!.ToJsonString());
    }

    [Fact]
    public void A_config_that_is_a_kernel_file_of_size_0_is_read_for_what_it_holds()
    {
        // /proc's files say a size of 0 whatever they hold: one named as a config was taken for
        // a device that reads on past its size. Read to its end, it holds a number here, not
        // the JSON object a config must be.
        const string proc = "/proc/sys/kernel/pid_max";
        if (!File.Exists(proc) || new FileInfo(proc).Length != 0) return;
        Assert.Equal($"{proc} must hold a JSON object", Assert.Throws<StratusUserException>(() => TrainConfig.Load(proc, [])).Message);
    }

    [Fact]
    public void A_token_shard_whose_count_overflows_or_whose_ids_pass_its_vocabulary_is_refused()
    {
        using var temp = new TempDirectory();
        var path = temp["train.bin"];
        TokenShard.Write(path, [1, 2, 3, 4, 5, 6, 7, 8], vocabSize: 10);
        var good = File.ReadAllBytes(path);

        // count * 4 wraps around to the file's size: 2^62 + 8 tokens of 4 bytes "fit" 32 bytes.
        var overflowing = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(overflowing.AsSpan(12), 4);
        BinaryPrimitives.WriteInt64LittleEndian(overflowing.AsSpan(16), (1L << 62) + 4);
        File.WriteAllBytes(path, overflowing);
        Assert.Contains("truncated or corrupt", Assert.Throws<StratusUserException>(() => TokenShard.Open(path)).Message);

        // An id at the vocabulary size would be an embedding index libtorch aborts on.
        var outside = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(outside.AsSpan(TokenShard.HeaderSize + 2 * 5), 10);
        File.WriteAllBytes(path, outside);
        using var shard = TokenShard.Open(path);
        var window = new long[8];
        shard.Read(0, window.AsSpan(0, 5));
        Assert.Contains("token id 10", Assert.Throws<StratusUserException>(() => shard.Read(0, window)).Message);
    }
}
