// What the model registry records: a name's numbered versions, each a checkpoint folder with the
// hash of its manifest and a summary of its model, and the references (`shk`, `shk:3`,
// `shk@production`) that name one of them, parsed here alone.
using System.Globalization;
using Stratus.Safety;

namespace Stratus.Platform;

/// <summary>A model as its checkpoint's config describes it, read without its weights.</summary>
/// <param name="Tokenizer">The tokenizer's kind (char, gpt2, hf).</param>
public sealed record ModelSummary(string Architecture, long Parameters, int ContextLength, string Tokenizer);

/// <summary>A checkpoint folder as the registry records it.</summary>
/// <param name="Directory">The checkpoint folder itself (a run folder's checkpoints/best or
/// last), absolute.</param>
/// <param name="ManifestSha256">The hash of its manifest, which lists every file's sha256: it
/// changes whenever a file does.</param>
public sealed record RegisteredCheckpoint(string Directory, string ManifestSha256, ModelSummary Summary);

/// <summary>Reads and verifies a checkpoint for the registry. The checkpoint format belongs to
/// Stratus.Core, which this assembly does not reference (it would bring libtorch to every user of
/// the platform stores), so the host gives the registry the one reader Core has.</summary>
public interface ICheckpointReader
{
    /// <summary>The checkpoint a run or checkpoint folder holds, every file checked against its
    /// manifest.</summary>
    /// <exception cref="TrustUserException">The folder is missing, holds no checkpoint, or one
    /// whose files do not match its manifest.</exception>
    RegisteredCheckpoint Read(string path);

    /// <summary>The checkpoint folder a run or checkpoint folder means, and the files it is made
    /// of (its manifest and the files that lists), for a copy; nothing is verified here, the copy
    /// is (<see cref="Read"/>).</summary>
    /// <exception cref="TrustUserException">The folder is missing or holds no checkpoint.</exception>
    CheckpointFiles Locate(string path);

    /// <summary>The registered version (NAME:VERSION) the run that saved the checkpoint a run or
    /// checkpoint folder means started from, as the run recorded it (train --init-from NAME@ALIAS);
    /// null for a checkpoint of no run, or of a run started otherwise.</summary>
    /// <exception cref="TrustUserException">The folder is missing or holds no checkpoint.</exception>
    string? Parent(string path);
}

/// <summary>A checkpoint folder and the names of the files it is made of.</summary>
public sealed record CheckpointFiles(string Directory, IReadOnlyList<string> Files);

/// <summary>One registered version: immutable once made, except for the aliases that point at it.</summary>
/// <param name="CreatedBy">The actor, as the audit log names actors (cli:user, a key's id).</param>
/// <param name="IsCopy">Whether the checkpoint is the registry's own copy (`models register
/// --copy`, in the data directory's models/NAME/VERSION), which deleting the version removes;
/// otherwise it is a folder of the user's (a run's checkpoints/best), which training on rewrites.</param>
public sealed record ModelVersion(string Name, int Version, RegisteredCheckpoint Checkpoint, string? Description, DateTimeOffset CreatedAt, string CreatedBy,
    IReadOnlyList<string> Aliases, bool IsCopy)
{
    /// <summary>Its lineage: the registered version (NAME:VERSION) the run it is a checkpoint of
    /// started from (by its reference, or its folder holding the files it was registered with), as
    /// registration found it recorded; null where none was (a run trained from scratch or from a
    /// folder of no version, an import).</summary>
    public string? Parent { get; init; }

    /// <summary>NAME:VERSION, the reference that names this version for good.</summary>
    public string Reference => $"{Name}:{Version.ToString(CultureInfo.InvariantCulture)}";
}

/// <summary>A model as a verb takes it (serve's --model, train's --init-from, a job's init_from):
/// <paramref name="Path"/> the folder to load, and <paramref name="Version"/> the registered version
/// it is the checkpoint of, where it was given by reference (null: a folder given as one).</summary>
public sealed record ModelSource(string Path, ModelVersion? Version);

/// <summary>A reference to a version: NAME (its latest), NAME:VERSION or NAME@ALIAS.</summary>
public sealed record ModelReference(string Name, int? Version = null, string? Alias = null)
{
    public const int MaxNameLength = 64;

    /// <exception cref="TrustUserException">Not a reference, or a name, version or alias outside
    /// what the registry allows.</exception>
    public static ModelReference Parse(string text)
    {
        var at = text.IndexOf('@');
        var colon = text.IndexOf(':');
        if (at >= 0 && colon >= 0)
            throw new TrustUserException($"'{text}' is not a model reference: give NAME, NAME:VERSION or NAME@ALIAS, not both a version and an alias.");
        if (at >= 0) return new ModelReference(ValidateName(text[..at]), Alias: ValidateAlias(text[(at + 1)..]));
        if (colon >= 0)
        {
            var version = text[(colon + 1)..];
            if (!int.TryParse(version, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number < 1)
                throw new TrustUserException($"'{text}' is not a model reference: the version after ':' is a whole number from 1, not '{version}'.");
            return new ModelReference(ValidateName(text[..colon]), number);
        }
        return new ModelReference(ValidateName(text));
    }

    /// <summary>Whether <paramref name="text"/> reads as a reference at all (serve tells one from
    /// a mistyped path by this).</summary>
    public static bool TryParse(string text, out ModelReference? reference)
    {
        try
        {
            reference = Parse(text);
            return true;
        }
        catch (TrustUserException)
        {
            reference = null;
            return false;
        }
    }

    /// <exception cref="TrustUserException">Not 1-64 letters, digits, '-', '_' or '.', beginning with a letter or digit.</exception>
    public static string ValidateName(string name) => Validate(name, "model name");

    /// <exception cref="TrustUserException">As a name, or all digits (which reads as a version).</exception>
    public static string ValidateAlias(string alias)
    {
        Validate(alias, "alias");
        if (alias.All(char.IsAsciiDigit)) throw new TrustUserException($"The alias '{alias}' is all digits, which reads as a version number; give it a letter.");
        return alias;
    }

    // Names travel in URLs (/api/models/{name}), file names and shell commands: a safe charset
    // needs no quoting in any of them. A letter or digit first: a leading '-' reads as an option
    // (`models show -shk`), a leading '.' as a hidden file or a path segment ('..'), and serve's
    // deployment names (SafetyPolicy.ValidateDeploymentName) begin so too.
    static string Validate(string value, string what)
    {
        if (value.Length is 0 or > MaxNameLength || !char.IsAsciiLetterOrDigit(value[0]) || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            throw new TrustUserException($"'{(value.Length > 100 ? value[..100] + "..." : value)}' is not a valid {what}: use 1-{MaxNameLength} letters, digits, '-', '_' or '.', beginning with a letter or digit.");
        return value;
    }

    public override string ToString() =>
        Version is { } version ? $"{Name}:{version.ToString(CultureInfo.InvariantCulture)}" : Alias is { } alias ? $"{Name}@{alias}" : Name;
}
