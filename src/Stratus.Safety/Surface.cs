// The words each surface of Stratus speaks to its user. The CLI names what its user gives by its
// options (--partition, --cpus-per-rank; a config key overridden, --max-iters) and suggests its
// commands (`stratus jobs show job-1`); the HTTP API, which the dashboard's forms call, by its JSON
// fields ('partition', 'cpus_per_rank', 'overrides.max_iters': what its errors' param names) and
// its requests (GET /api/jobs/job-1). A library's message that names either is composed for the
// surface that shows it (TrustUserException and StratusUserException take it as a function of the
// surface; Message is the CLI's), so that an API user is not told of flags they never typed. A
// field and its option are one name: the option is the field in kebab-case, as train's overrides are.
namespace Stratus.Safety;

public sealed class Surface
{
    /// <summary>The command line: options and commands.</summary>
    public static readonly Surface Cli = new(api: false);

    /// <summary>The HTTP API (and the dashboard): JSON fields and requests.</summary>
    public static readonly Surface Api = new(api: true);

    /// <summary>How the API names a config key a submission overrides ("overrides.max_iters").</summary>
    public const string OverridesPrefix = "overrides.";

    readonly bool api;

    Surface(bool api) => this.api = api;

    /// <summary>What the user gave as <paramref name="field"/> (the API's name for it:
    /// "cpus_per_rank", "overrides.max_iters"), as this surface spells it: the CLI's option
    /// (--cpus-per-rank, --max-iters), the API's field in quotes ('cpus_per_rank').</summary>
    public string Option(string field) => api ? $"'{field}'" : OptionOf(field);

    /// <summary>The CLI's option for the API's <paramref name="field"/> (or a config key):
    /// cpus_per_rank is --cpus-per-rank, overrides.max_iters --max-iters.</summary>
    public static string OptionOf(string field) =>
        "--" + (field.StartsWith(OverridesPrefix, StringComparison.Ordinal) ? field[OverridesPrefix.Length..] : field).Replace('_', '-');

    /// <summary>The field (or config key) an option names, given in kebab- or snake-case, with or
    /// without its dashes: --max-iters, max-iters and max_iters are max_iters.</summary>
    public static string FieldOf(string option) => option.TrimStart('-').Replace('-', '_');

    /// <summary>The CLI's words or the API's, for what the two say differently: a command the
    /// user may run (`stratus jobs show job-1`) and the request that does it (GET /api/jobs/job-1).</summary>
    public string Pick(string cli, string api) => this.api ? api : cli;
}
