// The model registry's part of the /api management surface (admin scope, as the rest of /api):
// GET /api/models lists the registered names, each with its latest version, aliases and versions
// (what the dashboard's registry panel shows, in one request rather than one per name), GET
// /api/models/{name} one name's. Reads only: the files of a version are checked where it
// is served, not here. An unknown name is a 404 in the API's error format.
using System.Text.Json.Serialization;
using Stratus.Platform;
using Stratus.Safety;

namespace Stratus.Server.Trust;

public static class ModelRegistryEndpoints
{
    public const string Prefix = "/api/models";

    public static IEndpointRouteBuilder MapModelRegistry(this IEndpointRouteBuilder endpoints)
    {
        var models = endpoints.MapGroup(Prefix).RequireStratusScope(ApiKeyScopes.Admin);
        models.MapGet("", (HttpContext http) =>
        {
            var names = Registry(http).List().GroupBy(version => version.Name, StringComparer.Ordinal)
                .Select(versions => RegisteredModelView.From(versions.Key, [.. versions]));
            return Results.Json(new ListResponse<RegisteredModelView>([.. names]), TrustJson.Options);
        });
        models.MapGet("/{name}", (HttpContext http, string name) =>
        {
            var versions = Registry(http).List(name);
            if (versions.Count == 0)
                throw new TrustUserException($"No model named '{name}' is registered; GET {Prefix} lists the registered names.") { NotFound = true };
            return Results.Json(RegisteredModelView.From(name, versions), TrustJson.Options);
        });
        return endpoints;
    }

    static ModelRegistry Registry(HttpContext http) => http.RequestServices.GetRequiredService<StratusTrust>().Models;
}

/// <param name="Aliases">Each alias and the version it points at.</param>
/// <param name="Versions">Every version, oldest first.</param>
public sealed record RegisteredModelView(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("latest_version")] int LatestVersion,
    [property: JsonPropertyName("aliases")] IReadOnlyDictionary<string, int> Aliases,
    [property: JsonPropertyName("versions")] IReadOnlyList<ModelVersionView> Versions)
{
    [JsonPropertyName("object")] public string Object => "model_registration";

    public static RegisteredModelView From(string name, IReadOnlyList<ModelVersion> versions) => new(name, versions.Max(v => v.Version),
        versions.SelectMany(v => v.Aliases.Select(alias => (alias, v.Version))).OrderBy(a => a.alias, StringComparer.Ordinal).ToDictionary(a => a.alias, a => a.Version),
        [.. versions.Select(ModelVersionView.From)]);
}

public sealed record ModelVersionView(
    [property: JsonPropertyName("version")] int Version,
    [property: JsonPropertyName("aliases")] IReadOnlyList<string> Aliases,
    [property: JsonPropertyName("checkpoint")] string Checkpoint,
    [property: JsonPropertyName("manifest_sha256")] string ManifestSha256,
    [property: JsonPropertyName("architecture")] string Architecture,
    [property: JsonPropertyName("parameters")] long Parameters,
    [property: JsonPropertyName("context_length")] int ContextLength,
    [property: JsonPropertyName("tokenizer")] string Tokenizer,
    [property: JsonPropertyName("description")] string? Description,
    [property: JsonPropertyName("created_at")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("created_by")] string CreatedBy)
{
    /// <summary>The version its run started from (NAME:VERSION); null where none is known.</summary>
    [JsonPropertyName("parent")] public string? Parent { get; init; }

    public static ModelVersionView From(ModelVersion v) => new(v.Version, v.Aliases, v.Checkpoint.Directory, v.Checkpoint.ManifestSha256, v.Checkpoint.Summary.Architecture,
        v.Checkpoint.Summary.Parameters, v.Checkpoint.Summary.ContextLength, v.Checkpoint.Summary.Tokenizer, v.Description, v.CreatedAt, v.CreatedBy) { Parent = v.Parent };
}
