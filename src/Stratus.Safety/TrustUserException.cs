// The error for mistakes a user can make against the trust layer (an invalid blocklist regex, a
// malformed policy, an unknown key name). It mirrors Stratus.StratusUserException but lives here
// so that Stratus.Safety and Stratus.Platform do not reference Stratus.Core, which pulls
// TorchSharp and libtorch into every consumer. The CLI and server treat both types alike: one
// line for the CLI, a 4xx body for the server, each in its own words where the message names an
// option or a command (see Surface).
namespace Stratus.Safety;

public sealed class TrustUserException(string message, Exception? inner = null) : Exception(message, inner)
{
    readonly Func<Surface, string>? worded;

    /// <summary>An error whose message names what the user gave or may do, composed for the
    /// surface that shows it (<see cref="MessageOn"/>); <see cref="Exception.Message"/> is the CLI's.</summary>
    public TrustUserException(Func<Surface, string> message, Exception? inner = null) : this(message(Surface.Cli), inner) => worded = message;

    /// <summary>The message in <paramref name="surface"/>'s words.</summary>
    public string MessageOn(Surface surface) => worded?.Invoke(surface) ?? Message;

    /// <summary>What the request names does not exist (a key, a blocklist): the server answers
    /// 404 rather than 400.</summary>
    public bool NotFound { get; init; }

    /// <summary>The request field at fault, where the error is one field's (the server's error
    /// names it in `param`, as OpenAI's do); null otherwise.</summary>
    public string? Param { get; init; }

    /// <summary>What the request asks for clashes with what is under way (a job writing the same
    /// run folder): the server answers 409 rather than 400.</summary>
    public bool Conflict { get; init; }
}
