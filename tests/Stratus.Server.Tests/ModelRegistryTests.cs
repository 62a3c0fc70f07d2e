// The model registry over real tiny checkpoints: versions numbered per name, aliases that move,
// a checkpoint whose files changed refused when its version is resolved, a delete refused under
// an alias, every change in a verifying audit chain; serve by a registered reference, under the
// registered name, which /v1/models, /api/serving and the audit log say; a version registered as a
// copy served after its run saved again; and GET /api/models and /api/models/{name} (admin scope,
// 404 for a name unknown).
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Stratus.Inference;
using Stratus.Platform;
using Stratus.Safety;
using Stratus.Server.Hosting;

namespace Stratus.Server.Tests;

public sealed class ModelRegistryTests : IDisposable
{
    readonly string folder = Path.Combine(Path.GetTempPath(), $"stratus-registry-test-{Guid.NewGuid():N}");
    string DataDir => Path.Combine(folder, "data");

    /// <summary>A run folder with a tiny checkpoint in checkpoints/best, as training leaves one.</summary>
    string Run(string name, int context = 16)
    {
        var run = Path.Combine(folder, name);
        TinyModelServer.CreateCheckpoint(Path.Combine(run, "checkpoints", "best"), context);
        return run;
    }

    ModelRegistry Registry() => ModelRegistry.Open(DataDir, RegistryCheckpoints.Instance);

    [Fact]
    public async Task Registering_numbers_versions_per_name_and_aliases_move_with_every_change_audited()
    {
        var registry = Registry();
        var first = registry.Register(Run("a"), "shk", "first", alias: "production", "tests");
        var second = registry.Register(Path.Combine(Run("b", context: 32), "checkpoints", "best"), "shk", null, null, "tests");
        var other = registry.Register(Run("c"), "other", null, null, "tests");
        Assert.Equal((1, 2, 1), (first.Version, second.Version, other.Version));
        // A run folder means its checkpoints/best, recorded absolute, with its summary.
        Assert.Equal(Path.Combine(folder, "a", "checkpoints", "best"), first.Checkpoint.Directory);
        Assert.Equal(new ModelSummary("gpt2", first.Checkpoint.Summary.Parameters, 16, "char"), first.Checkpoint.Summary);
        using (var model = Training.Checkpoint.Open(first.Checkpoint.Directory).CreateModel())
            Assert.Equal(model.ParameterCount(nonEmbedding: false), first.Checkpoint.Summary.Parameters);
        Assert.Equal(32, second.Checkpoint.Summary.ContextLength);
        Assert.Equal(["production"], first.Aliases);

        Assert.Equal(2, registry.Find(ModelReference.Parse("shk")).Version);
        Assert.Equal(1, registry.Find(ModelReference.Parse("shk@production")).Version);
        var moved = registry.SetAlias("shk", 2, "production", "tests");
        Assert.Equal(1, moved.PreviousVersion);
        Assert.Equal(2, registry.Find(ModelReference.Parse("shk@production")).Version);
        Assert.Empty(registry.Find(ModelReference.Parse("shk:1")).Aliases);

        Assert.Equal(2, registry.RemoveAlias("shk", "production", "tests"));
        Assert.True(Assert.Throws<TrustUserException>(() => registry.Find(ModelReference.Parse("shk@production"))).NotFound);

        var stores = PlatformStores.Open(DataDir);
        var actions = (await stores.Audit.ReadAsync(new AuditQuery())).Select(e => e.Action).ToArray();
        Assert.Equal([AuditActions.ModelRegistered, AuditActions.ModelAliasSet, AuditActions.ModelRegistered, AuditActions.ModelRegistered,
            AuditActions.ModelAliasSet, AuditActions.ModelAliasRemoved], actions);
        Assert.True((await stores.Audit.VerifyAsync()).Valid);
    }

    [Fact]
    public void A_version_whose_checkpoint_changed_or_vanished_is_refused_when_resolved()
    {
        var registry = Registry();
        var run = Run("a");
        registry.Register(run, "shk", null, null, "tests");
        Assert.Null(registry.Check(registry.Resolve(ModelReference.Parse("shk:1"))));

        // Trained on: checkpoints/best saved again, with a manifest of its own.
        TinyModelServer.CreateCheckpoint(Path.Combine(run, "checkpoints", "best"), context: 32);
        var changed = Assert.Throws<TrustUserException>(() => registry.Resolve(ModelReference.Parse("shk")));
        Assert.Contains("model shk:1 refers to " + Path.Combine(run, "checkpoints", "best"), changed.Message);
        Assert.Contains("changed since it was registered", changed.Message);
        Assert.DoesNotContain('\n', changed.Message);

        Directory.Delete(Path.Combine(run, "checkpoints"), recursive: true);
        var vanished = Assert.Throws<TrustUserException>(() => registry.Resolve(ModelReference.Parse("shk")));
        Assert.Contains("changed or vanished", vanished.Message);
    }

    [Fact]
    public void A_file_of_the_checkpoint_edited_in_place_is_refused_too()
    {
        var registry = Registry();
        var run = Run("a");
        registry.Register(run, "shk", null, null, "tests");
        File.AppendAllText(Path.Combine(run, "checkpoints", "best", "model.json"), " ");
        var error = Assert.Throws<TrustUserException>(() => registry.Resolve(ModelReference.Parse("shk:1")));
        Assert.Contains("model.json does not match its sha256", error.Message);
    }

    [Fact]
    public void A_version_an_alias_points_at_is_not_deleted_and_numbers_are_not_given_again()
    {
        var registry = Registry();
        registry.Register(Run("a"), "shk", null, "production", "tests");
        registry.Register(Run("b"), "shk", null, "staging", "tests");
        registry.SetAlias("shk", 2, "production", "tests");
        var refused = Assert.Throws<TrustUserException>(() => registry.Delete("shk", 2, "tests"));
        Assert.Equal("model shk:2 is what shk@production, shk@staging points at; move those aliases to another version, or remove them, first", refused.Message);
        Assert.Equal(1, registry.Delete("shk", 1, "tests").Version);
        registry.SetAlias("shk", 2, "staging", "tests");
        Assert.True(Assert.Throws<TrustUserException>(() => registry.Find(ModelReference.Parse("shk:1"))).NotFound);
        Assert.Equal(3, registry.Register(Run("c"), "shk", null, null, "tests").Version);
    }

    [Fact]
    public async Task Serve_by_a_registered_reference_serves_the_version_under_its_registered_name()
    {
        var registry = Registry();
        registry.Register(Run("a"), "shk", null, "production", "tests");
        await using var server = await StratusServer.StartAsync(new ServeOptions
        {
            Models = [ModelSpec.Parse("shk@production")],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new Trust.TrustOptions { DataDir = DataDir, InsecureNoAuth = true },
        });
        using var client = new HttpClient { BaseAddress = server.RootUrl };
        var models = JsonNode.Parse(await client.GetStringAsync("v1/models"))!["data"]!.AsArray();
        Assert.Equal("shk", (string)Assert.Single(models)!["id"]!);
        Assert.Equal(Path.Combine(folder, "a", "checkpoints", "best"), server.Models.All.Single().CheckpointDirectory);
    }

    [Fact]
    public async Task A_model_served_by_reference_says_which_version_in_v1_models_api_serving_and_its_audit_entry()
    {
        var registry = Registry();
        registry.Register(Run("a"), "shk", null, "production", "tests");
        registry.Register(Run("b"), "shk", null, null, "tests");
        await using var server = await StratusServer.StartAsync(new ServeOptions
        {
            Models = [ModelSpec.Parse("shk@production"), new ModelSpec(Run("c"), "tiny")],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new Trust.TrustOptions { DataDir = DataDir, InsecureNoAuth = true },
        });
        using var client = new HttpClient { BaseAddress = server.RootUrl };
        var models = JsonNode.Parse(await client.GetStringAsync("v1/models"))!["data"]!.AsArray();
        Assert.Equal([("shk", "shk:1"), ("tiny", null)], models.Select(m => ((string)m!["id"]!, (string?)m["registered_version"])));
        // A model served from a folder has no such field, rather than a null one.
        Assert.False(models[1]!.AsObject().ContainsKey("registered_version"));
        Assert.Equal("shk:1", (string)JsonNode.Parse(await client.GetStringAsync("v1/models/shk"))!["registered_version"]!);
        var serving = JsonNode.Parse(await client.GetStringAsync("api/serving"))!["models"]!.AsArray();
        Assert.Equal([("shk", "shk:1"), ("tiny", null)], serving.Select(m => ((string)m!["id"]!, (string?)m["registered_version"])));

        var deployed = (await PlatformStores.Open(DataDir).Audit.ReadAsync(new AuditQuery())).Where(e => e.Action == AuditActions.ModelDeployed).Select(e => JsonNode.Parse(e.Details)!).ToArray();
        Assert.Equal([("shk", "shk:1", Path.Combine(folder, "a", "checkpoints", "best")), ("tiny", null, Path.Combine(folder, "c", "checkpoints", "best"))],
            deployed.Select(e => ((string)e["model"]!, (string?)e["registered_version"], (string)e["source"]!)));
    }

    [Fact]
    public async Task Two_versions_of_one_name_are_refused_with_a_name_of_its_own_for_each()
    {
        // The advice was "name them with --model NAME=DIR", though neither was given as a folder.
        var registry = Registry();
        registry.Register(Run("a"), "shk", null, "production", "tests");
        registry.Register(Run("b"), "shk", null, "staging", "tests");
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(new ServeOptions
        {
            Models = [ModelSpec.Parse("shk@production"), ModelSpec.Parse("shk@staging")],
            Port = 0,
            Trust = new Trust.TrustOptions { DataDir = DataDir, InsecureNoAuth = true },
        }));
        Assert.Equal("two models are named 'shk' (shk:1 and shk:2); give each a name of its own with --model NAME=MODEL, as --model shk-2=shk:2", error.Message);
    }

    [Fact]
    public async Task A_version_registered_as_a_copy_is_served_after_its_run_saved_its_checkpoint_again()
    {
        var registry = Registry();
        var run = Run("a");
        var copied = registry.Register(run, "shk", null, "production", "tests", copy: true);
        Assert.Equal((true, Path.Combine(DataDir, "models", "shk", "1")), (copied.IsCopy, copied.Checkpoint.Directory));
        // The run trains on: Checkpoint.Save replaces checkpoints/best with a new folder.
        TinyModelServer.CreateCheckpoint(Path.Combine(run, "checkpoints", "best"), context: 32);
        await using var server = await StratusServer.StartAsync(new ServeOptions
        {
            Models = [ModelSpec.Parse("shk@production")],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new Trust.TrustOptions { DataDir = DataDir, InsecureNoAuth = true },
        });
        var served = server.Models.All.Single();
        Assert.Equal((copied.Checkpoint.Directory, 16, "shk:1"), (served.CheckpointDirectory, served.ContextLength, served.RegisteredVersion));
    }

    [Fact]
    public void A_checkpoint_saved_again_between_resolving_and_loading_is_not_served_as_the_version()
    {
        var registry = Registry();
        var run = Run("a");
        registry.Register(run, "shk", null, "production", "tests");
        var spec = ModelSpec.Parse("shk@production").ResolveRegistered(new Lazy<ModelRegistry?>(() => registry));
        // The run trains on while the server starts: checkpoints/best is saved again, with a
        // manifest of its own, after the version was checked and before its weights are loaded.
        TinyModelServer.CreateCheckpoint(Path.Combine(run, "checkpoints", "best"), context: 32);
        var error = Assert.Throws<StratusUserException>(() => ServedModel.Load(spec, new EngineOptions { BlockSize = 8 }).Dispose());
        Assert.Contains("model shk:1 refers to " + Path.Combine(run, "checkpoints", "best"), error.Message);
        Assert.Contains("changed since it was registered", error.Message);
    }

    [Fact]
    public async Task Serve_of_a_name_neither_a_folder_nor_registered_is_refused_before_any_model_loads()
    {
        var error = await Assert.ThrowsAsync<StratusUserException>(() => StratusServer.StartAsync(new ServeOptions
        {
            Models = [ModelSpec.Parse("shk")],
            Port = 0,
            Trust = new Trust.TrustOptions { DataDir = DataDir, InsecureNoAuth = true },
        }));
        Assert.Equal("shk is not a folder, and no model named 'shk' is registered; see the registered names with `stratus models list`", error.Message);
    }

    [Fact]
    public async Task The_api_lists_registered_models_and_one_name_s_versions_to_admin_keys()
    {
        var registry = Registry();
        registry.Register(Run("a"), "shk", "first", "production", "tests");
        registry.Register(Run("b"), "shk", null, null, "tests");
        var admin = await PlatformStores.Open(DataDir).KeyService().CreateAsync("admin", ApiKeyScopes.Admin, RateLimits.Unlimited, "tests");
        var inference = await PlatformStores.Open(DataDir).KeyService().CreateAsync("app", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        await using var server = await StratusServer.StartAsync(new ServeOptions
        {
            Models = [new ModelSpec(Run("served"), "tiny")],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new Trust.TrustOptions { DataDir = DataDir },
        });
        using var client = new HttpClient { BaseAddress = server.RootUrl };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", admin.Secret);

        var list = JsonNode.Parse(await client.GetStringAsync("api/models"))!;
        var shk = Assert.Single(list["data"]!.AsArray())!;
        Assert.Equal(("shk", 2, 1), ((string)shk["name"]!, (int)shk["latest_version"]!, (int)shk["aliases"]!["production"]!));

        var one = JsonNode.Parse(await client.GetStringAsync("api/models/shk"))!;
        var versions = one["versions"]!.AsArray();
        Assert.Equal([1, 2], versions.Select(v => (int)v!["version"]!));
        Assert.Equal("first", (string)versions[0]!["description"]!);
        Assert.Equal("tests", (string)versions[0]!["created_by"]!);
        // The list holds each name's versions too: the dashboard reads the registry in one request, not one per name.
        Assert.Equal(one.ToJsonString(), shk.ToJsonString());

        using var missing = await client.GetAsync("api/models/nope");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("No model named 'nope' is registered", (string)JsonNode.Parse(await missing.Content.ReadAsStringAsync())!["error"]!["message"]!);
        using var bad = await client.GetAsync("api/models/two%20words");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);

        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", inference.Secret);
        using var forbidden = await client.GetAsync("api/models");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
    }

    [Fact]
    public void A_folder_given_with_a_trailing_slash_is_the_same_checkpoint_so_a_copy_it_shares_is_not_deleted()
    {
        var registry = Registry();
        var copied = registry.Register(Run("a"), "shk", null, null, "tests", copy: true);
        // As a shell completes a folder's name: with a slash after it.
        var sharing = registry.Register(copied.Checkpoint.Directory + Path.DirectorySeparatorChar, "other", null, null, "tests");
        Assert.Equal(copied.Checkpoint.Directory, sharing.Checkpoint.Directory);
        registry.Delete("shk", 1, "tests");
        Assert.Null(registry.Check(sharing));
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
    }
}
