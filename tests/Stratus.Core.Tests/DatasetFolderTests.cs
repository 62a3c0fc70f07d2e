// What `prepare` does to a folder that holds a dataset already, and what a preparation killed half
// way leaves: a dataset is replaced only when asked (a run trained on it no longer resumes), the
// same source with the same settings is left as it is, and no file of the old dataset is replaced
// before the new ones are whole on disk.
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class DatasetFolderTests
{
    static string Short(string sha256) => sha256[..12] + "…";

    const string Fix = "pass --overwrite to replace it (a run trained on it can then no longer resume), or choose another --out";

    /// <summary>Where the folder does not say what its dataset was prepared from.</summary>
    const string UnknownFix = "pass --overwrite to replace it (a run trained on it then resumes only if it was prepared from this text with these settings), or choose another --out";

    [Fact]
    public void Other_text_or_settings_are_refused_in_a_dataset_folder_and_the_same_source_leaves_it_as_it_is()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var before = DataTests.Snapshot(data);
        File.WriteAllLines(temp["reversed.txt"], TestData.Corpus().Split('\n', StringSplitOptions.RemoveEmptyEntries).Reverse());
        var source = FileHash.Sha256(temp["corpus.txt"]);
        Assert.Equal($"{data} already holds a dataset prepared from other text: {temp["corpus.txt"]} (sha256 {Short(source)}; this input's: {Short(FileHash.Sha256(temp["reversed.txt"]))}); {Fix}",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["reversed.txt"], data, "char")).Message);
        Assert.Equal($"{data} already holds a dataset prepared from {temp["corpus.txt"]} with other settings: tokenizer char (this preparation: gpt2); {Fix}",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus.txt"], data, "gpt2")).Message);
        Assert.Equal($"{data} already holds a dataset prepared from {temp["corpus.txt"]} with other settings: val_fraction 0.1 (this preparation: 0.2); {Fix}",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus.txt"], data, "char", valFraction: 0.2)).Message);
        Assert.Equal(before, DataTests.Snapshot(data));

        // Prepared again as it was, it is the same dataset: not written again (meta.json keeps
        // the time it was made), so a pipeline may run `prepare` every time.
        DatasetPreparer.Prepare(temp["corpus.txt"], data, "char");
        Assert.Equal(before, DataTests.Snapshot(data));
    }

    [Fact]
    public void Overwrite_replaces_a_dataset_and_one_of_the_same_source_is_up_to_date_unless_it_is_incomplete()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var upToDate = DatasetPreparer.Prepare(temp["corpus.txt"], data, "char");
        Assert.True(upToDate.UpToDate);
        var first = DatasetPreparer.Prepare(temp["corpus.txt"], temp["first"], "char");
        Assert.Equal((first.TrainTokens, first.ValTokens, first.SourceSha256, first.Tokenizer.ToJson().ToJsonString()),
            (upToDate.TrainTokens, upToDate.ValTokens, upToDate.SourceSha256, upToDate.Tokenizer.ToJson().ToJsonString()));

        // A file lost: preparing the same source again makes the same dataset, so no --overwrite is needed.
        File.Delete(Path.Combine(data, DatasetPreparer.ValShard));
        var repaired = DatasetPreparer.Prepare(temp["corpus.txt"], data, "char");
        Assert.False(repaired.UpToDate);
        using (new BatchSampler(data, 2, 8, 1)) { }

        File.WriteAllText(temp["other.txt"], TestData.Corpus(300));
        var replaced = DatasetPreparer.Prepare(temp["other.txt"], data, "char", overwrite: true);
        Assert.False(replaced.UpToDate);
        Assert.Equal(replaced.SourceSha256, (string?)DatasetPreparer.ReadMeta(data)!["source"]!["sha256"]);

        // A dataset of an earlier Stratus, which did not record its settings, is not taken for this one.
        var meta = DatasetPreparer.ReadMeta(data)!;
        meta.Remove("prepared_with");
        File.WriteAllText(Path.Combine(data, DatasetPreparer.MetaFile), meta.ToJsonString());
        // Prepared again from the same text with the same settings, a run trained on it resumes:
        // the error said that none would.
        Assert.Equal($"{data} already holds a dataset prepared from {temp["other.txt"]} by an earlier Stratus, which did not record the settings; {UnknownFix}",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["other.txt"], data, "char")).Message);
    }

    [Fact]
    public void A_chat_dataset_is_up_to_date_only_for_the_same_model_tokenizer_and_template()
    {
        using var temp = new TempDirectory();
        var tokenizer = CharTokenizer.FromCorpus(new string(Enumerable.Range(32, 95).Select(c => (char)c).ToArray()) + "\n");
        using (var model = Models.CausalLanguageModel.Create(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 64 }))
            Checkpoint.Save(temp["base"], model, tokenizer);
        File.WriteAllLines(temp["chat.jsonl"], Enumerable.Range(0, 6).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = $"q{i}" }, new JsonObject { ["role"] = "assistant", ["content"] = $"a{i}" }),
        }.ToJsonString()));
        var prepared = ChatDatasetPreparer.Prepare(temp["chat.jsonl"], temp["sft"], temp["base"]);
        var before = DataTests.Snapshot(temp["sft"]);
        var again = ChatDatasetPreparer.Prepare(temp["chat.jsonl"], temp["sft"], temp["base"]);
        Assert.True(again.UpToDate);
        Assert.Equal(prepared with { Tokenizer = again.Tokenizer, UpToDate = true }, again);
        Assert.Equal(before, DataTests.Snapshot(temp["sft"]));
        File.WriteAllText(temp["chatml.jinja"], ChatTemplateTests.ChatMl);
        Assert.StartsWith($"{temp["sft"]} already holds a dataset prepared from {temp["chat.jsonl"]} with other settings: chat_template plain (this preparation: model), chat_template_sha256 ",
            Assert.Throws<StratusUserException>(() => ChatDatasetPreparer.Prepare(temp["chat.jsonl"], temp["sft"], temp["base"], chatTemplate: temp["chatml.jinja"])).Message);
        Assert.Equal(before, DataTests.Snapshot(temp["sft"]));
    }

    [Fact]
    public void A_folder_without_meta_json_is_no_dataset_to_train_on()
    {
        // What a preparation killed after its shards but before meta.json leaves in a new folder.
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        File.Delete(Path.Combine(data, DatasetPreparer.MetaFile));
        // The command it gave was refused in turn, for the train.bin there.
        Assert.Equal($"{data} holds no complete dataset (no meta.json, which `stratus prepare` writes last); prepare it with `stratus prepare --input <text> --out {data} --overwrite`",
            Assert.Throws<StratusUserException>(() => new BatchSampler(data, 2, 8, 1)).Message);
        Assert.Equal($"{data} already holds a dataset without a readable meta.json; {UnknownFix}",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus.txt"], data, "char")).Message);
        DatasetPreparer.Prepare(temp["corpus.txt"], data, "char", overwrite: true);
        using (new BatchSampler(data, 2, 8, 1)) { }
        // Without a train.bin, prepare asks for nothing more.
        File.Delete(Path.Combine(data, DatasetPreparer.MetaFile));
        File.Delete(Path.Combine(data, DatasetPreparer.TrainShard));
        Assert.EndsWith($"prepare it with `stratus prepare --input <text> --out {data}`",
            Assert.Throws<StratusUserException>(() => new BatchSampler(data, 2, 8, 1)).Message);
        DatasetPreparer.Prepare(temp["corpus.txt"], data, "char");
    }

    [Fact]
    public void What_a_killed_preparation_left_is_removed_by_the_next()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["corpus.txt"], TestData.Corpus());
        var data = temp["data"];
        Directory.CreateDirectory(data);
        // A half-written shard and the lock file of a process that was killed (its lock went with it).
        var left = Path.Combine(data, $".{DatasetPreparer.TrainShard}.999999.{Guid.NewGuid():N}.tmp");
        File.WriteAllText(left, "half a shard");
        File.WriteAllText(Path.Combine(data, ".lock"), "999999\n");
        File.WriteAllText(Path.Combine(data, "notes.txt"), "mine");
        DatasetPreparer.Prepare(temp["corpus.txt"], data, "char");
        Assert.Equal(["meta.json", "notes.txt", "tokenizer.json", "train.bin", "val.bin"], Directory.EnumerateFileSystemEntries(data).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void What_a_killed_preparation_left_is_removed_by_the_next_that_finds_the_folder_up_to_date()
    {
        // A `prepare --overwrite` of another corpus killed while it wrote, then the usual `prepare`
        // of the folder's own source: it found the folder up to date and left the killed one's
        // shards, as large as a dataset and hidden from ls, for good.
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var before = DataTests.Snapshot(data);
        var left = new[] { DatasetPreparer.TrainShard, DatasetPreparer.MetaFile }.Select(name => Path.Combine(data, $".{name}.999999.{Guid.NewGuid():N}.tmp")).ToList();
        foreach (var file in left) File.WriteAllText(file, "half written");
        var mine = Path.Combine(data, $".notes.txt.1.{Guid.NewGuid():N}.tmp");
        File.WriteAllText(mine, "not a dataset's file");

        // Not while another preparation holds the folder: they may be its own, being written.
        using (FolderLock.Take(data, _ => "held"))
            Assert.True(DatasetPreparer.Prepare(temp["corpus.txt"], data, "char").UpToDate);
        Assert.All(left, file => Assert.True(File.Exists(file)));

        Assert.True(DatasetPreparer.Prepare(temp["corpus.txt"], data, "char").UpToDate);
        Assert.All(left, file => Assert.False(File.Exists(file)));
        Assert.True(File.Exists(mine));
        File.Delete(mine);
        Assert.Equal(before, DataTests.Snapshot(data));
        Assert.False(File.Exists(Path.Combine(data, FolderLock.FileName)));
    }

    [Fact]
    public void A_folder_being_prepared_is_refused_to_a_second_preparation_and_the_first_finishes()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var before = DataTests.Snapshot(data);
        File.WriteAllText(temp["other.txt"], TestData.Corpus(300));
        using (FolderLock.Take(data, _ => "held"))
            Assert.Equal($"{data} is being prepared by another `stratus prepare`; wait for it to finish, or choose another --out",
                Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["other.txt"], data, "char", overwrite: true)).Message);
        Assert.Equal(before, DataTests.Snapshot(data));
        DatasetPreparer.Prepare(temp["other.txt"], data, "char", overwrite: true);
        Assert.False(File.Exists(Path.Combine(data, FolderLock.FileName)));
    }

    [Fact]
    public void Staged_files_replace_nothing_before_they_commit_and_leave_nothing_when_they_do_not()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["a"], "old a");
        using (var files = new StagedFiles())
        {
            files.Write(temp["a"], stream => stream.Write("new a"u8));
            files.Write(temp["b"], stream => stream.Write("new b"u8));
            Assert.Equal("old a", File.ReadAllText(temp["a"]));
            Assert.False(File.Exists(temp["b"]));
            files.Commit(temp["b"]);
            Assert.Equal(("old a", "new b"), (File.ReadAllText(temp["a"]), File.ReadAllText(temp["b"])));
        }
        // Not committed: the new a is gone with its temporary file.
        Assert.Equal(["a", "b"], Directory.EnumerateFileSystemEntries(temp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal("old a", File.ReadAllText(temp["a"]));
        using (var files = new StagedFiles())
        {
            Assert.Throws<IOException>(() => files.Write(temp["a"], stream => throw new IOException("disk full")));
            files.Commit();
        }
        Assert.Equal(["a", "b"], Directory.EnumerateFileSystemEntries(temp.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void A_lock_file_removed_after_it_was_opened_is_known_as_removed()
    {
        // A holder that ends removes .lock while it still holds it: a process that opened the file
        // just before and locks it just after must not take that lock for the folder's (Linux).
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        using var file = new FileStream(temp[FolderLock.FileName], FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        Assert.False(FolderLock.IsRemoved(file));
        File.Delete(temp[FolderLock.FileName]);
        Assert.True(FolderLock.IsRemoved(file));
    }

    [Fact]
    public void A_file_prepared_as_jsonl_is_not_up_to_date_for_the_same_bytes_read_as_text()
    {
        // One file's name alone decides whether it is read as JSONL documents or as plain text, and
        // its sha256 is the same either way: renamed, it was found "up to date" with the other tokens.
        using var temp = new TempDirectory();
        var lines = string.Join("\n", TestData.Corpus().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => System.Text.Json.JsonSerializer.Serialize(new { text = line })));
        File.WriteAllText(temp["docs.jsonl"], lines);
        File.Copy(temp["docs.jsonl"], temp["docs.txt"]);
        var data = temp["data"];
        DatasetPreparer.Prepare(temp["docs.jsonl"], data, "char");
        var refused = Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["docs.txt"], data, "char")).Message;
        Assert.Contains("input jsonl (this preparation: text)", refused);
    }
}
