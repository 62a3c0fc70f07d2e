// The folder `stratus prepare` writes a dataset into, owned in one place for both preparers: it
// must not be a model's folder; a dataset already there is replaced only when asked (--overwrite),
// since a run trained on it then no longer resumes, and is left as it is when prepared again from
// the same source with the same settings; it is made when missing, and a preparation that fails
// takes away what it made. One preparation at a time writes it (FolderLock), and the new files
// are staged (StagedFiles) until all of them are on disk: a preparation refused or killed half way
// leaves the files that were there as they were, and meta.json, which a dataset cannot be read
// without, is taken away before the first file is replaced and written last. The mirror rule is
// here too: a run's, an imported model's or an exported model's folder must not be a dataset's,
// and an exported model's not a model's either; and a folder given as a run's or a dataset's that
// is the other is named for what it is.
using System.Text.Json.Nodes;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Data;

/// <summary>What a preparation makes a dataset of: the source, hashed on demand (a pass over it),
/// and what else decides the tokens, as meta.json records it (<see cref="DatasetFolder.SettingsKey"/>
/// and val_fraction).</summary>
sealed record Preparation(Func<string> HashSource, JsonObject Settings, double ValFraction);

static class DatasetFolder
{
    /// <summary>meta.json's key for the settings a dataset was prepared with.</summary>
    public const string SettingsKey = "prepared_with";

    /// <summary>Every file a preparation may write: those of a dataset that one does not write
    /// (a chat preparation's masks, for a text one) are removed with the rest replaced.</summary>
    static readonly string[] Files = [DatasetPreparer.TrainShard, DatasetPreparer.ValShard, TokenizerStore.FileName,
        ChatDatasetPreparer.TrainMask, ChatDatasetPreparer.ValMask, ChatTemplate.FileName, DatasetPreparer.MetaFile];

    /// <summary>Writes a dataset into <paramref name="directory"/> (made where missing, with any
    /// missing folder above it): <paramref name="prepare"/> is given the source's sha256 and stages
    /// the files, which then replace the folder's. A training run or checkpoint there is refused
    /// before anything is read or written; a dataset there unless <paramref name="overwrite"/>, or
    /// when it is the one this preparation would make: then <paramref name="upToDate"/> reads it
    /// from its meta.json and tokenizer (read once, where its files were checked as training reads them). If <paramref name="prepare"/> throws, the folders made here are removed
    /// before the error goes on.</summary>
    public static T Write<T>(string directory, bool overwrite, Preparation preparation, Func<JsonObject, ITokenizer, T> upToDate, Func<string, StagedFiles, T> prepare)
    {
        if (string.IsNullOrWhiteSpace(directory)) throw new StratusUserException("no output folder given; pass --out <folder> for the dataset");
        RequireNoModelIn(directory, "dataset");
        string? sha256 = null;
        // Before the folder is locked (written), so that a dataset on a read-only disk is found up to date.
        if (!overwrite && Existing(directory, preparation, ref sha256) is var (meta, tokenizer))
        {
            RemoveLeftoversUnlessInUse(directory);
            return upToDate(meta, tokenizer);
        }
        var made = Missing(directory);
        // Refused, it leaves the folder to the preparation that holds it.
        using var held = FolderLock.Take(directory, _ => $"{directory} is being prepared by another `stratus prepare`; wait for it to finish, or choose another --out");
        RemoveLeftovers(directory);
        // A dataset that another preparation finished meanwhile, which stays as it is.
        if (!overwrite && Existing(directory, preparation, ref sha256) is var (finished, its)) return upToDate(finished, its);
        try
        {
            sha256 ??= preparation.HashSource();
            using var files = new StagedFiles();
            var result = prepare(sha256, files);
            Commit(directory, files);
            return result;
        }
        catch
        {
            Remove(made);
            throw;
        }
    }

    /// <summary>The meta.json and tokenizer of the dataset in <paramref name="directory"/> when it is whole and
    /// is what <paramref name="preparation"/> would make; null where the folder holds no dataset, or
    /// one of the same source and settings that is incomplete (prepared again, it is the same).</summary>
    /// <exception cref="StratusUserException">It holds another dataset.</exception>
    static (JsonObject Meta, ITokenizer Tokenizer)? Existing(string directory, Preparation preparation, ref string? sha256)
    {
        if (DatasetIn(directory) is null) return null;
        JsonObject? meta;
        try { meta = DatasetPreparer.ReadMeta(directory); }
        catch (StratusUserException) { meta = null; }
        var recorded = meta?[SettingsKey] as JsonObject;
        var path = meta?["source"]?["path"]?.ToString();
        var source = meta?["source"]?["sha256"]?.ToString();
        string? difference;
        // Where what the dataset was prepared from is unknown, so is whether its runs resume on the new one.
        var runs = "a run trained on it can then no longer resume";
        if (meta is null) (difference, runs) = ($"without a readable {DatasetPreparer.MetaFile}", ResumesIfTheSame);
        else if (recorded is null) (difference, runs) = ($"prepared from {path} by an earlier Stratus, which did not record the settings", ResumesIfTheSame);
        else if (SettingsDifference(recorded, meta["val_fraction"], preparation) is { } settings) difference = $"prepared from {path} with other settings: {settings}";
        else if (source != (sha256 ??= preparation.HashSource())) difference = $"prepared from other text: {path} (sha256 {Short(source)}; this input's: {Short(sha256)})";
        else return Complete(directory) is { } tokenizer ? (meta, tokenizer) : null;
        throw new StratusUserException($"{directory} already holds a dataset {difference}; pass --overwrite to replace it ({runs}), or choose another --out");
    }

    const string ResumesIfTheSame = "a run trained on it then resumes only if it was prepared from this text with these settings";

    static string? SettingsDifference(JsonObject recorded, JsonNode? valFraction, Preparation preparation)
    {
        var requested = (JsonObject)preparation.Settings.DeepClone();
        requested["val_fraction"] = preparation.ValFraction;
        var had = (JsonObject)recorded.DeepClone();
        had["val_fraction"] = valFraction?.DeepClone();
        var differences = had.Select(entry => entry.Key).Union(requested.Select(entry => entry.Key))
            .Where(key => !JsonNode.DeepEquals(had[key], requested[key]))
            .Select(key => $"{key} {Value(had[key])} (this preparation: {Value(requested[key])})").ToList();
        return differences.Count > 0 ? string.Join(", ", differences) : null;
        static string Value(JsonNode? value) => value is null ? "none" : value.ToString() is { Length: 64 } hash ? Short(hash) : value.ToString();
    }

    static string Short(string? hash) => hash is null ? "none" : hash.Length > 12 ? hash[..12] + "…" : hash;

    /// <summary>The tokenizer of the whole dataset its meta.json describes in
    /// <paramref name="directory"/>, as training reads it; null where it is not whole.</summary>
    static ITokenizer? Complete(string directory)
    {
        try
        {
            using var sampler = new BatchSampler(directory, batchSize: 1, blockSize: 1, seed: 0, only: Split.Train);
            ChatDatasetPreparer.StoredTemplate(directory);
            return sampler.Tokenizer;
        }
        catch (StratusUserException)
        {
            return null;
        }
    }

    /// <summary>Removes what preparations killed while writing left in the folder: the temporary
    /// files of a dataset's files (called under the folder's lock, so no preparation is writing them).</summary>
    static void RemoveLeftovers(string directory)
    {
        foreach (var file in Leftovers(directory)) File.Delete(file);
    }

    static IEnumerable<string> Leftovers(string directory) =>
        Directory.EnumerateFiles(directory, ".*.tmp").Where(file => AtomicFile.LeftOverTargetOf(Path.GetFileName(file)) is { } target && Files.Contains(target));

    /// <summary>Removes the leftovers (<see cref="RemoveLeftovers"/>) of a folder found up to date,
    /// as large as its dataset (a `prepare --overwrite` of another corpus killed there), where its
    /// lock can be taken: not while another preparation writes its own, nor on a read-only disk.</summary>
    static void RemoveLeftoversUnlessInUse(string directory)
    {
        if (!Leftovers(directory).Any()) return;
        try
        {
            using var held = FolderLock.Take(directory, _ => "in use");
            RemoveLeftovers(directory);
        }
        catch (Exception e) when (e is StratusUserException or IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Moves the staged files over the folder's. From the removal of meta.json to its
    /// return the folder is no dataset that training reads (BatchSampler requires meta.json), so a
    /// process killed among the renames leaves no mix of two preparations to train on.</summary>
    static void Commit(string directory, StagedFiles files)
    {
        var staged = files.Targets.ToHashSet();
        files.CommitAround(Path.Combine(directory, DatasetPreparer.MetaFile), Files.Select(name => Path.Combine(directory, name)).Where(file => !staged.Contains(file)));
    }

    /// <summary>Refuses a folder that holds a model (<see cref="ModelIn"/>) as the folder to write
    /// <paramref name="whose"/> files into: they would land among the model's, a tokenizer.json
    /// over a checkpoint's own.</summary>
    public static void RequireNoModelIn(string directory, string whose)
    {
        if (ModelIn(directory) is { } model)
            throw new StratusUserException($"{directory} holds {model}, and the {whose}'s files would be written among its own; pass a new folder for the {whose}");
    }

    /// <summary>Refuses a dataset folder (<see cref="DatasetIn"/>) as the folder to write
    /// <paramref name="whose"/> files into (a run's, an imported or exported model's): they would
    /// land among the dataset's, an exported tokenizer.json over its own. The mirror of
    /// <see cref="RequireNoModelIn"/>.</summary>
    public static void RequireNoDatasetIn(string directory, string whose)
    {
        if (DatasetIn(directory) is { } dataset)
            throw new StratusUserException($"{directory} holds {dataset}, and the {whose}'s files would be written among its own; pass a new folder for the {whose}");
    }

    /// <summary>"a training run (...)" when `stratus train` or `import` wrote
    /// <paramref name="directory"/> (run.json, metrics.jsonl, checkpoints/), "a checkpoint
    /// (manifest.json)" when it is one, with the files that show it; otherwise null.</summary>
    public static string? ModelIn(string directory)
    {
        var checkpoint = File.Exists(Path.Combine(directory, Checkpoint.ManifestFile));
        var held = checkpoint
            ? [Checkpoint.ManifestFile]
            : new[] { Trainer.RunFile, MetricsLog.FileName, "checkpoints/" }.Where(name => Path.Exists(Path.Combine(directory, name))).ToList();
        return held.Count > 0 ? $"a {(checkpoint ? "checkpoint" : "training run")} ({string.Join(", ", held)})" : null;
    }

    /// <summary>"a dataset (...)" when `stratus prepare` wrote <paramref name="directory"/>
    /// (meta.json, train.bin), with the files that show it; otherwise null.</summary>
    public static string? DatasetIn(string directory)
    {
        var held = new[] { DatasetPreparer.MetaFile, DatasetPreparer.TrainShard }.Where(name => File.Exists(Path.Combine(directory, name))).ToList();
        return held.Count > 0 ? $"a dataset ({string.Join(", ", held)})" : null;
    }

    /// <summary>The folders that making <paramref name="directory"/> will create, deepest first.</summary>
    static List<string> Missing(string directory)
    {
        var missing = new List<string>();
        for (var path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)); !string.IsNullOrEmpty(path) && !Path.Exists(path); path = Path.GetDirectoryName(path))
            missing.Add(path);
        return missing;
    }

    /// <summary>Removes the dataset folder made for a failed preparation, with what it wrote there,
    /// then each folder made above it that nothing else has come into meanwhile.</summary>
    static void Remove(List<string> made)
    {
        try
        {
            for (var i = 0; i < made.Count; i++)
            {
                if (!Directory.Exists(made[i])) continue;
                if (i == 0) Directory.Delete(made[i], recursive: true);
                else if (!Directory.EnumerateFileSystemEntries(made[i]).Any()) Directory.Delete(made[i]);
                else break;
            }
        }
        // The error that failed the preparation is the one to report, not a folder left behind.
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
