// The folder `stratus prepare` writes a dataset into, owned in one place for both preparers: it
// must not be a model's folder, it is made when missing, and a preparation that fails takes away
// what it made. A folder that was there keeps what it held, an earlier dataset whole: a refusal
// comes while the new shards are still temporary files (TokenShard.WriteSplit), before any
// file of the dataset is replaced. The mirror rule is here too: a run's, an imported model's or an
// exported model's folder must not be a dataset's, and an exported model's not a model's either;
// and a folder given as a run's or a dataset's that is the other is named for what it is.
using Stratus.Training;

namespace Stratus.Data;

static class DatasetFolder
{
    /// <summary>Makes <paramref name="directory"/> (and any missing folder above it) and runs
    /// <paramref name="prepare"/>, which writes the dataset there. A training run or checkpoint
    /// there is refused before anything is read or written. If <paramref name="prepare"/> throws,
    /// the folders made here are removed before the error goes on.</summary>
    public static T Write<T>(string directory, Func<T> prepare)
    {
        if (string.IsNullOrWhiteSpace(directory)) throw new StratusUserException("no output folder given; pass --out <folder> for the dataset");
        RequireNoModelIn(directory, "dataset");
        var made = Missing(directory);
        try
        {
            Directory.CreateDirectory(directory);
            return prepare();
        }
        catch
        {
            Remove(made);
            throw;
        }
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
