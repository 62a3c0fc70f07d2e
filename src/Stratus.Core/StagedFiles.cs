// Files that replace their targets together: each is written whole to a temporary sibling and
// flushed to disk (AtomicFile.TemporaryFor), and none replaces its target before the caller has
// written them all and commits. A dataset's shards, tokenizer and meta.json go this way, so that a
// process killed while a large corpus is written (minutes of it) leaves the files that were there
// as they were; only the renames of the commit, which write no data, are left to chance.
namespace Stratus;

public sealed class StagedFiles : IDisposable
{
    readonly List<(string Temporary, string Target)> staged = [];

    /// <summary>Writes <paramref name="path"/>'s content to its temporary sibling, to disk.</summary>
    public void Write(string path, Action<FileStream> write)
    {
        var temporary = AtomicFile.TemporaryFor(path);
        Directory.CreateDirectory(Path.GetDirectoryName(temporary)!);
        // Listed before it is written, so that the files a write stages in turn (a token shard's
        // val split) come after it.
        staged.Add((temporary, path));
        try
        {
            // Read access too: a writer may read back what it wrote (a token shard moves its tail to another).
            using var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
            write(stream);
            stream.Flush(flushToDisk: true);
        }
        catch
        {
            // Half written, it is never committed.
            staged.Remove((temporary, path));
            if (File.Exists(temporary)) File.Delete(temporary);
            throw;
        }
    }

    public void WriteJson(string path, System.Text.Json.Nodes.JsonNode node) => Write(path, stream => stream.Write(AtomicFile.JsonBytes(node)));

    /// <summary>The targets written and not yet committed, in the order they were begun.</summary>
    public IEnumerable<string> Targets => staged.Select(file => file.Target);

    /// <summary>Moves the staged <paramref name="path"/> over its target.</summary>
    public void Commit(string path)
    {
        var index = staged.FindIndex(file => file.Target == path);
        if (index < 0) throw new InvalidOperationException($"{path} was not staged");
        File.Move(staged[index].Temporary, path, overwrite: true);
        staged.RemoveAt(index);
    }

    /// <summary>Moves every staged file over its target.</summary>
    public void Commit()
    {
        while (staged.Count > 0) Commit(staged[0].Target);
    }

    /// <summary>Moves every staged file over its target around <paramref name="key"/>, the file
    /// that makes the folder what its readers take it for (a dataset's meta.json, a Hugging Face
    /// model's config.json): it is removed first and comes back last, after the
    /// <paramref name="obsolete"/> files of what was there before are removed. A process killed
    /// among the renames, which write no data, leaves a folder its readers refuse, never a mix of
    /// two writes taken for one.</summary>
    public void CommitAround(string key, IEnumerable<string> obsolete)
    {
        if (!staged.Exists(file => file.Target == key)) throw new InvalidOperationException($"{key} was not staged");
        File.Delete(key);
        foreach (var target in Targets.Where(target => target != key).ToList()) Commit(target);
        foreach (var file in obsolete) File.Delete(file);
        Commit(key);
    }

    /// <summary>Removes the temporary files of what was not committed.</summary>
    public void Dispose()
    {
        foreach (var (temporary, _) in staged)
            if (File.Exists(temporary)) File.Delete(temporary);
        staged.Clear();
    }
}
