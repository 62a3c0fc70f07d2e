using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Formats;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Tests;

public sealed class DataTests
{
    [Fact]
    public void Prepare_writes_self_describing_shards_split_90_10_and_meta()
    {
        using var temp = new TempDirectory();
        var text = new string('a', 500) + new string('b', 500);
        File.WriteAllText(temp["in.txt"], text);
        var dataset = DatasetPreparer.Prepare(temp["in.txt"], temp["out"], "char");
        Assert.Equal((900L, 100L), (dataset.TrainTokens, dataset.ValTokens));
        using var train = TokenShard.Open(Path.Combine(temp["out"], "train.bin"));
        Assert.Equal((2, 900L, 2L), (train.TokenBytes, train.Count, train.VocabSize));
        Assert.Equal(TokenShard.HeaderSize + 900 * 2, new FileInfo(train.Path).Length);
        var tokens = new long[3];
        train.Read(0, tokens);
        Assert.Equal(new long[] { 0, 0, 0 }, tokens);
        var meta = JsonNode.Parse(File.ReadAllText(Path.Combine(temp["out"], "meta.json")))!;
        // The tokenizer's kind; the tokenizer itself is tokenizer.json, beside it, not copied here.
        Assert.Equal("char", (string?)meta["tokenizer"]);
        Assert.Equal("ab", (string?)JsonNode.Parse(File.ReadAllText(Path.Combine(temp["out"], "tokenizer.json")))!["vocab"]);
        Assert.Equal(dataset.SourceSha256, (string?)meta["source"]!["sha256"]);
        Assert.Equal(64, dataset.SourceSha256.Length);
    }

    [Fact]
    public void A_dataset_whose_meta_json_holds_a_copy_of_its_tokenizer_as_earlier_Stratus_wrote_it_still_trains_and_is_up_to_date()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["in.txt"], "the quick brown fox jumps over the lazy dog\n" + string.Concat(Enumerable.Repeat("a line of text\n", 50)));
        var tokenizer = HfTokenizer.FromHuggingFace(HuggingFace.TokenizerJson(BpeVocabulary.FromCharacters("\nabcdefghijklmnopqrstuvwxyz ")), null);
        var prepared = DatasetPreparer.Prepare(temp["in.txt"], temp["out"], "hf", tokenizerFrom: tokenizer);
        var metaPath = Path.Combine(temp["out"], "meta.json");
        var meta = JsonNode.Parse(File.ReadAllText(metaPath))!;
        meta["tokenizer"] = tokenizer.ToJson();
        File.WriteAllText(metaPath, meta.ToJsonString());

        using (var sampler = new BatchSampler(temp["out"], batchSize: 1, blockSize: 4, seed: 0))
            Assert.Equal(tokenizer.Encode("the quick"), sampler.Tokenizer.Encode("the quick"));
        var again = DatasetPreparer.Prepare(temp["in.txt"], temp["out"], "hf", tokenizerFrom: tokenizer);
        Assert.True(again.UpToDate);
        Assert.Equal((prepared.TrainTokens, prepared.ValTokens), (again.TrainTokens, again.ValTokens));
    }

    /// <summary>meta.json names the tokenizer's kind only, so tokenizer.json is a dataset's one
    /// copy of its tokenizer: missing or damaged, training says in one line how to get it back.</summary>
    [Theory]
    [InlineData(null)]
    [InlineData("{\"type\": \"hf\", \"tokenizer\": {\"mod")]
    public void A_dataset_whose_tokenizer_json_is_missing_or_damaged_is_refused_with_how_to_prepare_it_again(string? damaged)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["in.txt"], string.Concat(Enumerable.Repeat("a line of text\n", 50)));
        var tokenizer = HfTokenizer.FromHuggingFace(HuggingFace.TokenizerJson(BpeVocabulary.FromCharacters("\nabcdefghijklmnopqrstuvwxyz ")), null);
        DatasetPreparer.Prepare(temp["in.txt"], temp["out"], "hf", tokenizerFrom: tokenizer);
        var path = Path.Combine(temp["out"], TokenizerStore.FileName);
        if (damaged is null) File.Delete(path);
        else File.WriteAllText(path, damaged);

        var error = Assert.Throws<StratusUserException>(() => new BatchSampler(temp["out"], batchSize: 1, blockSize: 4, seed: 0));
        Assert.Contains(TokenizerStore.FileName, error.Message);
        Assert.Contains(temp["out"], error.Message);
        Assert.Contains("prepare the dataset again", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void Text_prepared_into_a_folder_of_chat_data_leaves_no_loss_mask_behind()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["in.txt"], new string('a', 500) + new string('b', 500));
        // A chat preparation's masks of the same lengths, as if the folder held chat data before.
        Directory.CreateDirectory(temp["out"]);
        using (var files = new StagedFiles())
        {
            TokenShard.WriteSplit(files, Path.Combine(temp["out"], ChatDatasetPreparer.TrainMask), Path.Combine(temp["out"], ChatDatasetPreparer.ValMask), 2, mask =>
            {
                mask.Append(new int[1000]);
                return 900;
            });
            files.Commit();
        }
        File.WriteAllText(Path.Combine(temp["out"], ChatTemplate.FileName), "{{ messages }}");
        DatasetPreparer.Prepare(temp["in.txt"], temp["out"], "char");
        using var sampler = new BatchSampler(temp["out"], 2, 8, 1);
        Assert.False(sampler.IsMasked);
        Assert.False(File.Exists(Path.Combine(temp["out"], ChatTemplate.FileName)));
    }

    [Fact]
    public void Prepare_reads_folders_and_jsonl_and_uses_uint32_only_when_needed()
    {
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["docs"]);
        File.WriteAllText(Path.Combine(temp["docs"], "a.md"), "hello world, hello tokens. ");
        File.WriteAllText(Path.Combine(temp["docs"], "b.txt"), "second document with more text. ");
        File.WriteAllText(Path.Combine(temp["docs"], "skip.bin"), "\u0001\u0002");
        var folder = DatasetPreparer.Prepare(temp["docs"], temp["folder"], "gpt2");
        Assert.Equal(50257, folder.Tokenizer.VocabSize);
        using (var shard = TokenShard.Open(Path.Combine(temp["folder"], "train.bin"))) Assert.Equal(2, shard.TokenBytes); // 50,257 fits uint16
        Assert.Contains(50256, PreparedTokens(temp["folder"])); // documents separated by <|endoftext|>

        File.WriteAllText(temp["d.jsonl"], "{\"text\": \"xyz\"}\n\n{\"text\": \"zyx\", \"other\": 1}\n");
        var jsonl = DatasetPreparer.Prepare(temp["d.jsonl"], temp["j"], "char", valFraction: 0.25);
        Assert.Equal(4, jsonl.Tokenizer.VocabSize); // x, y, z and the newline joining documents
        Assert.Equal(7L, jsonl.TrainTokens + jsonl.ValTokens);
    }

    [Theory]
    [InlineData("char")]
    [InlineData("gpt2")]
    [InlineData("llama3")]
    [InlineData("qwen2")]
    public void A_corpus_read_in_small_pieces_gives_the_tokens_of_the_whole_text(string tokenizer)
    {
        // Hugging Face byte-level BPE with GPT-2's merges under Llama 3's or Qwen2's pre-tokenizer expression.
        ITokenizer? hf = tokenizer switch
        {
            "llama3" => HfWithPreTokenizer(HfTokenizer.Llama3Pattern),
            "qwen2" => HfWithPreTokenizer(HfTokenizer.Qwen2Pattern),
            _ => null,
        };
        if (hf is not null) Assert.Equal(TextCuts.BetweenLines, hf.Cuts);
        using var temp = new TempDirectory();
        // Indentation, blank lines, a CRLF, trailing spaces, a long line, text in other scripts, a
        // contraction after a newline, punctuation and digits before one.
        var text = string.Concat(Enumerable.Range(0, 40).Select(i =>
            $"Line {i}: the quick brown fox\n    indented {i}\n\n\n  \nünïcødé 文字 {i}\r\nwindows  \n's {new string('x', i * 3)}\nend.\n-- {i}\n!{i}\n"));
        File.WriteAllText(temp["in.txt"], text);
        var progress = new List<PrepareProgress>();
        DatasetPreparer.Prepare(temp["in.txt"], temp["pieces"], tokenizer, tokenizerFrom: hf, progress: new Recorder(progress), pieceChars: 7);
        DatasetPreparer.Prepare(temp["in.txt"], temp["whole"], tokenizer, tokenizerFrom: hf, pieceChars: text.Length + 1);

        foreach (var shard in new[] { DatasetPreparer.TrainShard, DatasetPreparer.ValShard })
            Assert.Equal(File.ReadAllBytes(Path.Combine(temp["whole"], shard)), File.ReadAllBytes(Path.Combine(temp["pieces"], shard)));
        Assert.Equal(TokenizerStore.Load(temp["whole"]).Encode(text), PreparedTokens(temp["whole"]));
        var tokenizing = progress.Where(p => p.Phase == "tokenizing").ToList();
        Assert.True(tokenizing.Count > 10, $"{tokenizing.Count} reports");
        Assert.Equal(new FileInfo(temp["in.txt"]).Length, tokenizing[^1].BytesDone);
        Assert.Equal(tokenizing[^1].BytesTotal, tokenizing[^1].BytesDone);
        Assert.True(tokenizing.Zip(tokenizing.Skip(1)).All(pair => pair.Second.BytesDone >= pair.First.BytesDone));
    }

    /// <summary>A prepared dataset's tokens, train then val: the corpus as encoded.</summary>
    internal static int[] PreparedTokens(string directory)
    {
        using var train = TokenShard.Open(Path.Combine(directory, DatasetPreparer.TrainShard));
        using var val = TokenShard.Open(Path.Combine(directory, DatasetPreparer.ValShard));
        var all = new long[train.Count + val.Count];
        train.Read(0, all.AsSpan(0, (int)train.Count));
        val.Read(0, all.AsSpan((int)train.Count));
        return Array.ConvertAll(all, t => (int)t);
    }

    [Theory]
    [InlineData("char")]
    [InlineData("gpt2")]
    [InlineData("hf-gpt2")]
    public void Documents_of_a_tokenizer_that_adds_no_special_tokens_are_joined_as_before(string kind)
    {
        // GPT-2 as Hugging Face ships it: a ByteLevel post-processor, which adds nothing.
        var json = HuggingFace.TokenizerJson(BpeVocabulary.From(Gpt2Tokenizer.Instance));
        json["post_processor"] = JsonNode.Parse("""{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}""");
        ITokenizer? hf = kind == "hf-gpt2" ? HfTokenizer.FromHuggingFace(json, new JsonObject { ["bos_token"] = "<|endoftext|>", ["eos_token"] = "<|endoftext|>" }) : null;
        using var temp = new TempDirectory();
        string[] documents = ["the cat sat\non the mat", "", "a dog\nran"];
        File.WriteAllLines(temp["docs.jsonl"], documents.Select(d => new JsonObject { ["text"] = d }.ToJsonString()));
        DatasetPreparer.Prepare(temp["docs.jsonl"], temp["data"], kind == "char" ? "char" : "gpt2", tokenizerFrom: hf, pieceChars: 4);
        // The layout before documents got special tokens, byte for byte: the documents with text,
        // joined by <|endoftext|> or, for characters, a newline.
        var tokenizer = TokenizerStore.Load(temp["data"]);
        int[] separator = tokenizer.EndOfTextId is { } eot ? [eot] : tokenizer.Encode("\n");
        Assert.Equal([.. tokenizer.Encode(documents[0]), .. separator, .. tokenizer.Encode(documents[2])], PreparedTokens(temp["data"]));
        Assert.Null(JsonNode.Parse(File.ReadAllText(temp["data/meta.json"]))!["document_special_tokens"]);
    }

    [Fact]
    public void No_piece_of_a_char_corpus_ends_between_the_halves_of_a_character()
    {
        using var temp = new TempDirectory();
        // Characters outside the BMP at every offset, so pieces of 1 to 4 units meet each half of one.
        const string text = "a😀b𠀀cc😀\n😀😀d𝔸";
        File.WriteAllText(temp["in.txt"], text);
        for (var pieceChars = 1; pieceChars <= 5; pieceChars++)
        {
            var dataset = DatasetPreparer.Prepare(temp["in.txt"], temp[$"p{pieceChars}"], "char", valFraction: 0, pieceChars: pieceChars);
            Assert.Equal("\nabcd𝔸😀𠀀", ((CharTokenizer)dataset.Tokenizer).Vocabulary);
            var all = PreparedTokens(temp[$"p{pieceChars}"]);
            Assert.Equal(dataset.Tokenizer.Encode(text), all);
            Assert.Equal(text, dataset.Tokenizer.Decode(all));
        }
    }

    static HfTokenizer HfWithPreTokenizer(string pattern)
    {
        var json = HuggingFace.TokenizerJson(BpeVocabulary.From(Gpt2Tokenizer.Instance));
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = pattern }, ["behavior"] = "Isolated", ["invert"] = false },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
        };
        return HfTokenizer.FromHuggingFace(json, null);
    }

    sealed class Recorder(List<PrepareProgress> reports) : IProgress<PrepareProgress>
    {
        public void Report(PrepareProgress value) => reports.Add(value);
    }

    [Fact]
    public void Bad_corpora_and_shards_give_clear_errors()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["empty.txt"], "");
        Assert.Contains("is empty", Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["empty.txt"], temp["o"], "char")).Message);
        Assert.Contains("does not exist", Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["missing.txt"], temp["o"], "char")).Message);
        // Whitespace alone is refused as an empty corpus is, by either tokenizer and in JSONL too
        // (it was prepared into a few tokens that training then refused as too short for any block).
        File.WriteAllText(temp["blank.txt"], "  \n\t \n");
        File.WriteAllText(temp["blank.jsonl"], "{\"text\": \" \"}\n{\"text\": \"\\n\\n\"}\n");
        foreach (var (input, tokenizer) in new[] { ("blank.txt", "char"), ("blank.txt", "gpt2"), ("blank.jsonl", "char") })
            Assert.Equal($"{temp[input]} holds nothing but whitespace; give it some text to train on",
                Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp[input], temp["o"], tokenizer)).Message);
        File.WriteAllText(temp["bad.jsonl"], "{\"text\": 1}\n");
        Assert.Contains("bad.jsonl:1", Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["bad.jsonl"], temp["o"], "char")).Message);
        File.WriteAllText(temp["broken.jsonl"], "{\"text\": \"a\"}\n{\"text\": \"b\"\n");
        var broken = Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["broken.jsonl"], temp["o"], "char")).Message;
        Assert.Contains("broken.jsonl is not valid JSON at line 2, column 13:", broken);
        Assert.DoesNotContain("LineNumber", broken);
        // An escaped lone surrogate: valid JSON, but no text, in the text or another field's name.
        foreach (var line in new[] { """{"text": "a\ud800b"}""", """{"text": "a", "\udfffx": 1}""" })
        {
            File.WriteAllText(temp["lone.jsonl"], $"{{\"text\": \"ok\"}}\n{line}\n");
            Assert.Equal($"{temp["lone.jsonl"]}:2: a string holds a \\u escape of an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text; escape characters outside the Basic Multilingual Plane as a surrogate pair",
                Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["lone.jsonl"], temp["o"], "char")).Message);
        }

        File.WriteAllText(temp["in.txt"], TestData.Corpus(20));
        DatasetPreparer.Prepare(temp["in.txt"], temp["noval"], "char", valFraction: 0);
        Assert.Contains("--val-fraction above 0", Assert.Throws<StratusUserException>(() => new BatchSampler(temp["noval"], 2, 8, 1)).Message);
        DatasetPreparer.Prepare(temp["in.txt"], temp["ok"], "char");
        // A val shard from another preparation (as a prepare stopped half way would leave it).
        DatasetPreparer.Prepare(temp["in.txt"], temp["other"], "char", valFraction: 0.2);
        File.Copy(Path.Combine(temp["other"], DatasetPreparer.ValShard), Path.Combine(temp["ok"], DatasetPreparer.ValShard), overwrite: true);
        Assert.Contains("run `stratus prepare` for this folder again", Assert.Throws<StratusUserException>(() => new BatchSampler(temp["ok"], 4, 16, seed: 1)).Message);
        var shard = Path.Combine(temp["ok"], "train.bin");
        var bytes = File.ReadAllBytes(shard);
        File.WriteAllBytes(shard, bytes[..^5]);
        Assert.Contains("truncated", Assert.Throws<StratusUserException>(() => TokenShard.Open(shard)).Message);
        File.WriteAllText(shard, "not a shard at all, just text long enough to have a header of sixty-four bytes....");
        Assert.Contains("bad magic", Assert.Throws<StratusUserException>(() => TokenShard.Open(shard)).Message);
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(-0.1)]
    [InlineData(1.0)]
    [InlineData(double.PositiveInfinity)]
    public void A_val_fraction_outside_0_to_1_is_refused_before_the_dataset_is_touched(double valFraction)
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        var before = Directory.GetFiles(data).Order().Select(File.ReadAllBytes).ToList();
        var error = Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus.txt"], data, "char", valFraction)).Message;
        Assert.Equal($"--val-fraction must be in [0, 1), got {valFraction}", error);
        Assert.Equal(before, Directory.GetFiles(data).Order().Select(File.ReadAllBytes).ToList());
    }

    [Fact]
    public void A_training_run_or_its_checkpoint_is_refused_as_the_dataset_folder_before_anything_is_written()
    {
        using var temp = new TempDirectory();
        var (data, run) = TestData.TrainedRun(temp);
        // Another corpus, so that its tokenizer.json would differ from the checkpoint's.
        File.WriteAllText(temp["other.txt"], "a different corpus: XYZ 0123456789\n");
        var checkpoint = Path.Combine(run, "checkpoints", "last");
        var before = Snapshot(run);
        Assert.Equal($"{run} holds a training run (run.json, metrics.jsonl, checkpoints/), and the dataset's files would be written among its own; pass a new folder for the dataset",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["other.txt"], run, "char")).Message);
        Assert.Equal($"{checkpoint} holds a checkpoint (manifest.json), and the dataset's files would be written among its own; pass a new folder for the dataset",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["other.txt"], checkpoint, "char")).Message);
        Assert.Equal(before, Snapshot(run));
        Checkpoint.Open(checkpoint);
        Assert.Equal("no output folder given; pass --out <folder> for the dataset",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["other.txt"], "", "char")).Message);
    }

    [Theory]
    [InlineData("run.json")]
    [InlineData("metrics.jsonl")]
    [InlineData("checkpoints/")]
    public void A_run_that_has_saved_no_checkpoint_yet_is_refused_too(string held)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["in.txt"], TestData.Corpus(20));
        var run = temp["run"];
        if (held.EndsWith('/')) Directory.CreateDirectory(Path.Combine(run, held));
        else
        {
            Directory.CreateDirectory(run);
            File.WriteAllText(Path.Combine(run, held), "{}\n");
        }
        Assert.StartsWith($"{run} holds a training run ({held}),", Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["in.txt"], run, "char")).Message);
        Assert.Equal([held.TrimEnd('/')], Directory.EnumerateFileSystemEntries(run).Select(Path.GetFileName));
    }

    /// <summary>Every file under <paramref name="directory"/>: its relative path and sha256.</summary>
    internal static List<string> Snapshot(string directory) =>
        [.. Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(file => $"{Path.GetRelativePath(directory, file)} {FileHash.Sha256(file)}")];

    [Fact]
    public void A_refused_prepare_removes_the_folders_it_made_and_nothing_else()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["blank.txt"], "  \n\t \n");
        File.WriteAllText(temp["one.txt"], "a");
        File.WriteAllText(temp["abc.txt"], "ab abc");
        File.WriteAllText(temp["bad.jsonl"], "{\"text\": \"fine\"}\n{\"text\": 1}\n");
        var noC = CharTokenizer.FromCharacters("ab ".Select(c => (int)c));
        // Each refused after the dataset folder was made: whitespace alone, too few tokens, a
        // character the tokenizer cannot spell, a bad JSONL line found while tokenizing.
        var refusals = new (string Input, string Kind, ITokenizer? From, string Error)[]
        {
            ("blank.txt", "char", null, "holds nothing but whitespace"),
            ("blank.txt", "gpt2", null, "holds nothing but whitespace"),
            ("one.txt", "char", null, "has too little text to train on"),
            ("abc.txt", "char", noC, "characters outside this model's vocabulary: 'c'"),
            ("bad.jsonl", "gpt2", null, "bad.jsonl:2: expected an object with a string field \"text\""),
        };
        Directory.CreateDirectory(temp["mine"]);
        Directory.CreateDirectory(temp["mine with notes"]);
        File.WriteAllText(temp["mine with notes/notes.txt"], "keep me");
        var data = TestData.PrepareCharDataset(temp);
        var dataset = Snapshot(data);
        foreach (var (input, kind, from, error) in refusals)
        {
            void Refused(string output) =>
                Assert.Contains(error, Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp[input], output, kind, tokenizerFrom: from, overwrite: true)).Message);
            Refused(temp["new/nested/data"]);
            Assert.False(Directory.Exists(temp["new"]), $"{input} ({kind}) left the folders it made");
            // A folder that was there stays, with what it held: an earlier dataset whole.
            Refused(temp["mine"]);
            Assert.Empty(Directory.EnumerateFileSystemEntries(temp["mine"]));
            Refused(temp["mine with notes"]);
            Assert.Equal(["notes.txt"], Directory.EnumerateFileSystemEntries(temp["mine with notes"]).Select(Path.GetFileName));
            Refused(data);
            Assert.Equal(dataset, Snapshot(data));
        }
        // Made below a folder that was there: only the new folder goes.
        Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["blank.txt"], temp["mine with notes/data/"], "char"));
        Assert.Equal(["notes.txt"], Directory.EnumerateFileSystemEntries(temp["mine with notes"]).Select(Path.GetFileName));
        // And a dataset folder is prepared over when asked to.
        DatasetPreparer.Prepare(temp["abc.txt"], data, "char", overwrite: true);
        Assert.Equal(4, TokenizerStore.Load(data).VocabSize);
    }

    [Fact]
    public void Links_in_a_corpus_folder_are_followed_but_no_text_is_read_twice()
    {
        // Links into the corpus read their text twice (val text in train too), a link to a folder
        // above it looped until the path was too long, and a linked file's length was its link's
        // (the progress went past 100%).
        using var temp = new TempDirectory();
        foreach (var root in new[] { "linked", "plain" })
        {
            WriteText(temp, $"{root}/a.txt", "alpha text\n");
            WriteText(temp, $"{root}/sub/b.md", "beta text\n");
        }
        WriteText(temp, "plain/d.txt", "delta, from outside\n");
        WriteText(temp, "plain/out/c.txt", "gamma, from outside\n");
        WriteText(temp, "outside/c.txt", "gamma, from outside\n");
        WriteText(temp, "outside.txt", "delta, from outside\n");
        File.CreateSymbolicLink(temp["linked/again.txt"], "sub/b.md");
        File.CreateSymbolicLink(temp["linked/d.txt"], "../outside.txt");
        File.CreateSymbolicLink(temp["linked/d2.txt"], "../outside.txt");
        Directory.CreateSymbolicLink(temp["linked/sub2"], "sub");
        Directory.CreateSymbolicLink(temp["linked/sub/up"], "..");
        Directory.CreateSymbolicLink(temp["linked/out"], "../outside");
        var progress = new List<PrepareProgress>();
        var linked = DatasetPreparer.Prepare(temp["linked"], temp["from-linked"], "char", progress: new Recorder(progress));
        DatasetPreparer.Prepare(temp["plain"], temp["from-plain"], "char");
        Assert.Equal(PreparedTokens(temp["from-plain"]), PreparedTokens(temp["from-linked"]));
        Assert.Equal(4, (int)DatasetPreparer.ReadMeta(temp["from-linked"])!["source"]!["documents"]!);
        Assert.All(progress, p => Assert.InRange(p.BytesDone, 0, p.BytesTotal));
        Assert.Equal(linked.TrainTokens + linked.ValTokens, PreparedTokens(temp["from-plain"]).Length);
    }

    [Fact]
    public void Which_link_comes_first_neither_reads_a_text_twice_nor_leaves_one_out()
    {
        // Followed in the order met, a file link came before a link to its folder, whose walk read
        // the file again (val text in train too); and a folder link whose target held a folder
        // linked before was not walked at all, leaving out every other text in it.
        using var temp = new TempDirectory();
        WriteText(temp, "linked/a.txt", "alpha text\n");
        WriteText(temp, "other/z.txt", "text linked as a file and with its folder\n");
        File.CreateSymbolicLink(temp["linked/0z.txt"], "../other/z.txt");
        Directory.CreateSymbolicLink(temp["linked/3other"], "../other");
        WriteText(temp, "shared/sub/s.txt", "text of a folder linked on its own\n");
        WriteText(temp, "shared/x.txt", "text only the folder above it holds\n");
        Directory.CreateSymbolicLink(temp["linked/1sub"], "../shared/sub");
        Directory.CreateSymbolicLink(temp["linked/2shared"], "../shared");
        // What is read: each text once, under the first name it is met by.
        WriteText(temp, "plain/a.txt", "alpha text\n");
        WriteText(temp, "plain/0z.txt", "text linked as a file and with its folder\n");
        WriteText(temp, "plain/1sub/s.txt", "text of a folder linked on its own\n");
        WriteText(temp, "plain/2shared/x.txt", "text only the folder above it holds\n");

        DatasetPreparer.Prepare(temp["linked"], temp["from-linked"], "char");
        DatasetPreparer.Prepare(temp["plain"], temp["from-plain"], "char");

        Assert.Equal(PreparedTokens(temp["from-plain"]), PreparedTokens(temp["from-linked"]));
        Assert.Equal(DatasetPreparer.ReadMeta(temp["from-plain"])!["source"]!["sha256"]!.ToString(), DatasetPreparer.ReadMeta(temp["from-linked"])!["source"]!["sha256"]!.ToString());
    }

    [Fact]
    public async Task A_named_pipe_or_device_among_a_corpus_folders_texts_is_refused_not_waited_on()
    {
        // prepare --input <folder> opened every .txt in it: a FIFO there kept it waiting for a
        // writer for ever, and a link to /dev/zero was hashed and read without end.
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        WriteText(temp, "corpus/a.txt", "alpha text\n");
        var fifo = temp["corpus/b.txt"];
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
        var preparing = Task.Run(() => DatasetPreparer.Prepare(temp["corpus"], temp["data"], "char"));
        var finished = await Task.WhenAny(preparing, Task.Delay(TimeSpan.FromSeconds(30)));
        // A reader still waiting gets its writer, so that no thread is left blocked.
        if (finished != preparing) using (new FileStream(fifo, FileMode.Open, FileAccess.Write)) { }
        Assert.True(finished == preparing, "prepare waited for a writer of the named pipe b.txt");
        Assert.Equal($"{fifo} is a named pipe (FIFO), not a regular file; a model, run or dataset folder holds regular files: replace it with the file itself",
            (await Assert.ThrowsAsync<StratusUserException>(() => preparing)).Message);
        File.Delete(fifo);
        File.CreateSymbolicLink(temp["corpus/zero.txt"], "/dev/zero");
        Assert.StartsWith($"{temp["corpus/zero.txt"]} is a character device, not a regular file",
            Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus"], temp["data"], "char")).Message);
    }

    [Fact]
    public void A_text_link_that_leads_nowhere_is_named_in_one_line()
    {
        // One into the corpus was passed over without a word (its target "was read already").
        using var temp = new TempDirectory();
        Directory.CreateDirectory(temp["corpus"]);
        File.WriteAllText(temp["corpus/a.txt"], "alpha text\n");
        File.CreateSymbolicLink(temp["corpus/renamed.txt"], "b.txt");
        File.CreateSymbolicLink(temp["corpus/loop.txt"], "loop.txt");

        var broken = Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus"], temp["data"], "char"));
        Assert.Equal($"{Path.Combine(temp["corpus"], "loop.txt")} is a symbolic link in a loop of links (too many levels of symbolic links); remove it or point it at a file or folder", broken.Message);
        File.Delete(temp["corpus/loop.txt"]);
        broken = Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(temp["corpus"], temp["data"], "char"));
        Assert.StartsWith($"{Path.Combine(temp["corpus"], "renamed.txt")} is a symbolic link to ", broken.Message);
        Assert.EndsWith($"{Path.DirectorySeparatorChar}b.txt, which does not exist; remove the link or restore what it pointed at", broken.Message);
        Assert.False(Directory.Exists(temp["data"]));
    }

    [Fact]
    public void A_corpus_that_is_not_UTF8_is_refused_naming_the_file_and_the_byte()
    {
        using var temp = new TempDirectory();
        File.WriteAllBytes(temp["latin1.txt"], [.. "caf"u8, 0xE9, .. " au lait\n"u8]);
        Directory.CreateDirectory(temp["docs"]);
        File.WriteAllText(Path.Combine(temp["docs"], "a.txt"), "fine text\n");
        File.WriteAllBytes(Path.Combine(temp["docs"], "b.md"), [.. "x"u8, 0xFF, 0xFE, .. "y"u8]);
        File.WriteAllBytes(temp["d.jsonl"], [.. "{\"text\": \"ok\"}\n{\"text\": \"na"u8, 0xEF, .. "ve\"}\n"u8]);
        File.WriteAllBytes(temp["cut.txt"], [.. "euro \u20AC, cut: "u8, 0xE2, 0x82]); // a character cut short at the end
        var cases = new (string Input, string File, long Offset)[]
        {
            (temp["latin1.txt"], temp["latin1.txt"], 3),
            (temp["docs"], Path.Combine(temp["docs"], "b.md"), 1), // a folder's error names the file in it
            (temp["d.jsonl"], temp["d.jsonl"], 27),
            (temp["cut.txt"], temp["cut.txt"], 15),
        };
        foreach (var (input, file, offset) in cases)
        {
            foreach (var tokenizer in new[] { "char", "gpt2" })
            {
                var error = Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(input, temp["out"], tokenizer)).Message;
                Assert.StartsWith($"{file} is not UTF-8 text (byte offset {offset}); convert it to UTF-8", error);
            }
        }
        Assert.False(File.Exists(Path.Combine(temp["out"], DatasetPreparer.TrainShard)));
    }

    [Fact]
    public void A_corpus_in_UTF16_or_UTF32_is_refused_naming_the_file_and_the_encoding_and_a_UTF8_byte_order_mark_is_skipped()
    {
        // Text and JSON Lines alike are UTF-8 (JSON Lines requires it): a file beginning with
        // another encoding's byte order mark was decoded in that encoding, and one that merely
        // began with its bytes became other characters without a word.
        using var temp = new TempDirectory();
        var cases = new (System.Text.Encoding Encoding, string Name, string Iconv)[]
        {
            (System.Text.Encoding.Unicode, "UTF-16 LE", "utf-16"),
            (System.Text.Encoding.BigEndianUnicode, "UTF-16 BE", "utf-16"),
            (System.Text.Encoding.UTF32, "UTF-32 LE", "utf-32"),
            (new System.Text.UTF32Encoding(bigEndian: true, byteOrderMark: true), "UTF-32 BE", "utf-32"),
        };
        foreach (var (encoding, name, iconv) in cases)
        {
            foreach (var (file, text) in new[] { (temp["corpus.txt"], "hello world\n"), (temp["corpus.jsonl"], "{\"text\": \"hello\"}\n{\"text\": \"world\"}\n") })
            {
                File.WriteAllBytes(file, [.. encoding.GetPreamble(), .. encoding.GetBytes(text)]);
                Assert.Equal($"{file} is not UTF-8 text: it begins with the byte order mark of {name}; convert it to UTF-8, e.g. with `iconv -f {iconv} -t utf-8`, and prepare again",
                    Assert.Throws<StratusUserException>(() => DatasetPreparer.Prepare(file, temp["out"], "char")).Message);
            }
        }
        Assert.False(Directory.Exists(temp["out"]));
        File.WriteAllBytes(temp["bom.txt"], [0xEF, 0xBB, 0xBF, .. "abcabc\n"u8]);
        DatasetPreparer.Prepare(temp["bom.txt"], temp["out"], "char", valFraction: 0.5);
        Assert.Equal(4, TokenizerStore.Load(temp["out"]).VocabSize);
    }

    [Fact]
    public void A_dataset_with_a_damaged_meta_or_tokenizer_or_one_from_another_preparation_is_refused()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["in.txt"], TestData.Corpus(20));
        StratusUserException Refused(Action<string> damage)
        {
            var data = temp[$"d{Guid.NewGuid():N}"];
            DatasetPreparer.Prepare(temp["in.txt"], data, "char");
            damage(data);
            return Assert.Throws<StratusUserException>(() => new BatchSampler(data, 2, 8, seed: 1));
        }
        Assert.Contains("meta.json is not valid JSON", Refused(d => File.WriteAllText(Path.Combine(d, DatasetPreparer.MetaFile), "{bad")).Message);
        Assert.Contains("tokenizer.json is not valid JSON", Refused(d => File.WriteAllText(Path.Combine(d, "tokenizer.json"), "{bad")).Message);
        Assert.Contains("tokenizer.json is damaged", Refused(d => File.WriteAllText(Path.Combine(d, "tokenizer.json"), """{"type": 5}""")).Message);
        Assert.Contains("has 3", Refused(d => File.WriteAllText(Path.Combine(d, "tokenizer.json"), """{"type":"char","vocab":"abc"}""")).Message);
        Assert.Contains("tokens per micro-batch", Assert.Throws<StratusUserException>(() =>
        {
            DatasetPreparer.Prepare(temp["in.txt"], temp["big"], "char");
            return new BatchSampler(temp["big"], 2_000_000_000, 8, seed: 1);
        }).Message);
    }

    [Fact]
    public void Batches_are_a_pure_function_of_seed_step_and_micro_batch()
    {
        using var temp = new TempDirectory();
        var data = TestData.PrepareCharDataset(temp);
        using var a = new BatchSampler(data, 4, 16, seed: 1);
        using var b = new BatchSampler(data, 4, 16, seed: 1);
        var (x1, y1, scored) = a.Sample(Split.Train, 5, 1, torch.CPU);
        Assert.Equal(4 * 16, scored); // unmasked data scores every target
        a.Sample(Split.Train, 9, 0, torch.CPU); // drawing other batches in between changes nothing
        var (x2, _, _) = b.Sample(Split.Train, 5, 1, torch.CPU);
        Assert.True(x1.eq(x2).all().item<bool>());
        var (x3, _, _) = a.Sample(Split.Train, 5, 2, torch.CPU);
        Assert.False(x1.eq(x3).all().item<bool>());
        Assert.True(x1[.., 1..].eq(y1[.., ..^1]).all().item<bool>()); // targets are inputs shifted by one
        var (xv, _, _) = a.Sample(Split.Train, 5, 1, torch.CPU, evaluation: true);
        Assert.False(x1.eq(xv).all().item<bool>());
    }

    /// <summary>Writes a corpus file at <paramref name="path"/> in <paramref name="temp"/>, making its folders.</summary>
    static void WriteText(TempDirectory temp, string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(temp[path])!);
        File.WriteAllText(temp[path], text);
    }
}
