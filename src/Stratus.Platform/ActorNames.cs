// Actors as people read them. The audit log, a job's submitter and the one who asked for its
// cancel record an actor as `cli:<user>` or an API key's id: the id stays true of the key whatever
// its name (a revoked key's name may be given to a new key), and is not secret. Where an actor is
// shown to people, a key is named as `stratus keys list` names it, its id beside it, resolved when
// shown: the audit API's actor_name, the jobs API's submitted_by_name and cancel_requested_by_name,
// `stratus jobs show` and `jobs cancel`.
namespace Stratus.Platform;

public sealed class ActorNames
{
    readonly IReadOnlyDictionary<string, string> names;

    ActorNames(IReadOnlyDictionary<string, string> names) => this.names = names;

    /// <summary>Every key's name by its id, revoked keys included (they acted while they worked):
    /// one read of the keys for a whole listing, rather than one per actor.</summary>
    public static async ValueTask<ActorNames> ReadAsync(ApiKeyService keys, CancellationToken cancellationToken = default) =>
        new((await keys.ListAsync(includeRevoked: true, cancellationToken)).ToDictionary(k => k.Id, k => k.Name, StringComparer.Ordinal));

    /// <summary>The name of the key <paramref name="actor"/> is the id of; null for another actor
    /// (`cli:&lt;user&gt;`, the server itself) and for none.</summary>
    public string? NameOf(string? actor) => actor is not null && names.TryGetValue(actor, out var name) ? name : null;

    /// <summary>The actor in a line of text: a key as "name (id)", another actor as recorded.</summary>
    public string Describe(string actor) => NameOf(actor) is { } name ? $"{name} ({actor})" : actor;
}
