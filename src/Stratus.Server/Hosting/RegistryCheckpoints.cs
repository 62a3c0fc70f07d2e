// The model registry's reader of checkpoints: Core's Checkpoint resolves a run folder as every
// verb does (checkpoints/best, else last) and verifies each file against the manifest; the
// summary comes from model.json and the weights' safetensors header, no weight read. Locate
// names the files of a checkpoint for the registry's copy of it (`models register --copy`).
using System.Text.Json.Nodes;
using Stratus.Formats;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Training;

namespace Stratus.Server.Hosting;

public sealed class RegistryCheckpoints : ICheckpointReader
{
    public static RegistryCheckpoints Instance { get; } = new();

    RegistryCheckpoints() { }

    public RegisteredCheckpoint Read(string path)
    {
        try
        {
            var checkpoint = Checkpoint.Open(Checkpoint.Resolve(path));
            var config = checkpoint.ModelConfig;
            return new RegisteredCheckpoint(FolderPath(checkpoint.Directory), checkpoint.ContentHash,
                new ModelSummary(config.Architecture, Parameters(checkpoint.Directory), config.BlockSize, checkpoint.Tokenizer.Kind));
        }
        // The registry lives below Core and knows the trust layer's user error.
        catch (StratusUserException e)
        {
            throw new TrustUserException(e.MessageOn, e);
        }
    }

    public CheckpointFiles Locate(string path)
    {
        try
        {
            var directory = Checkpoint.Resolve(path);
            return new CheckpointFiles(FolderPath(directory), Checkpoint.FileNames(directory));
        }
        catch (StratusUserException e)
        {
            throw new TrustUserException(e.MessageOn, e);
        }
    }

    /// <summary>What the run of a run folder's checkpoint (RUN/checkpoints/NAME) records in its
    /// run.json as the registered version it started from; only a reference, not any other text a
    /// hand may have put there.</summary>
    public string? Parent(string path)
    {
        string checkpoints;
        try
        {
            checkpoints = Path.GetDirectoryName(FolderPath(Checkpoint.Resolve(path)))!;
        }
        catch (StratusUserException e)
        {
            throw new TrustUserException(e.MessageOn, e);
        }
        if (Path.GetFileName(checkpoints) != "checkpoints") return null;
        var run = Path.GetDirectoryName(checkpoints)!;
        if (!File.Exists(Path.Combine(run, Trainer.RunFile))) return null;
        try
        {
            return Trainer.ReadRunFile(run).Run[Trainer.InitFromVersionKey] is JsonValue value && value.TryGetValue<string>(out var parent)
                && ModelReference.TryParse(parent, out var reference) && reference!.Version is not null ? parent : null;
        }
        catch (StratusUserException e)
        {
            throw new TrustUserException(e.MessageOn, e);
        }
    }

    /// <summary>A folder as the registry records and compares it: absolute, without the slash a
    /// shell's completion puts after it (else `best/` would be another folder than `best` to the
    /// delete that asks whether a copy is shared, and to train's warning).</summary>
    static string FolderPath(string directory) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));

    /// <summary>The weights' element count from the header: a state dict holds each parameter
    /// once (a tied head is the embedding, not a second tensor), LoRA adapters included.</summary>
    static long Parameters(string checkpointDirectory)
    {
        using var weights = SafeTensors.Open(Path.Combine(checkpointDirectory, Checkpoint.ModelFile));
        return weights.Entries.Values.Sum(entry => entry.Shape.Aggregate(1L, (count, size) => count * size));
    }
}
