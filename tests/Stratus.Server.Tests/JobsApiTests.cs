// /api/jobs: a training key submits, lists, shows and cancels jobs; arguments train would refuse
// are a 400 naming the problem with nothing recorded, an unknown job a 404 and a run folder a job
// already writes a 409, all in the API's error format; the caller's key is the audit's actor, named
// by its key's name beside its id, and the list offers the jobs root's configs/. A
// job's metrics come from the run folder it recorded: thinned to a limit, after a step, without a
// half-written last line, and from a cursor on, the whole series again once the file was rewritten.
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Data;
using Stratus.Platform;
using Stratus.Platform.Jobs;
using Stratus.Server.Trust;

namespace Stratus.Server.Tests;

public sealed class JobsApiTests : IAsyncLifetime
{
    readonly string folder = Path.Combine(Path.GetTempPath(), "stratus-jobs-api-" + Guid.NewGuid().ToString("N"));
    readonly TinyModelServer server;

    // The supervisor the jobs' executor starts: one that records nothing, so jobs stay as submitted
    // until they read failed; the CLI's tests run real ones. It ends once the test has removed its
    // folder (within a minute where a test never does), not 60 s after every test.
    public JobsApiTests() => server = new() { JobsCommand = Supervisor, JobsRoot = folder };

    string[] Supervisor => ["/bin/sh", "-c", $"for i in $(seq 300); do [ -d '{folder}' ] || exit 0; sleep 0.2; done"];

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(folder);
        await server.InitializeAsync();
        File.WriteAllText(Path.Combine(folder, "corpus.txt"), string.Concat(Enumerable.Range(0, 300).Select(i => "abcdefgh ij\n"[i % 12])));
        DatasetPreparer.Prepare(Path.Combine(folder, "corpus.txt"), Path.Combine(folder, "data"), "char");
    }

    public async Task DisposeAsync()
    {
        await server.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    async Task<(HttpClient Client, string KeyId)> TrainingClient()
    {
        var created = await server.Keys.CreateAsync("trainer", ApiKeyScopes.Training, RateLimits.Unlimited, "tests");
        var client = server.AnonymousClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", created.Secret);
        return (client, created.Key.Id);
    }

    /// <summary>An API user is told of the request's fields and the API's requests, never of a
    /// CLI option (--max-iters) or a command the API does (stratus jobs show); `stratus prepare`,
    /// which the API has no request for, may be named as the server host's.</summary>
    static void AssertInTheApisWords(string message)
    {
        Assert.DoesNotContain("--", message);
        Assert.DoesNotMatch(@"stratus (jobs|models|train)\b", message);
    }

    static async Task<(HttpStatusCode Status, JsonObject Body)> Send(Task<HttpResponseMessage> request)
    {
        using var response = await request;
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
    }

    object Body(string output, object? overrides = null) => new
    {
        data = Path.Combine(folder, "data"),
        @out = Path.Combine(folder, output),
        overrides = overrides ?? Tiny,
    };

    static readonly object Tiny = new { n_layer = 1, n_head = 2, n_embd = 16, block_size = 8, batch_size = 2, max_iters = 3 };

    [Fact]
    public async Task A_training_key_submits_lists_shows_and_cancels_jobs_with_its_id_as_the_actor()
    {
        var (client, keyId) = await TrainingClient();
        var (status, job) = await Send(client.PostAsJsonAsync("/api/jobs", Body("run")));
        Assert.True(status == HttpStatusCode.Created, job.ToJsonString());
        var id = (string)job["id"]!;
        Assert.Equal(("queued", "local", Path.Combine(folder, "run"), "3"), ((string)job["state"]!, (string)job["executor"]!, (string)job["arguments"]!["out"]!, (string)job["arguments"]!["overrides"]!["max_iters"]!));
        Assert.Equal((keyId, "trainer"), ((string?)job["submitted_by"], (string?)job["submitted_by_name"]));

        var (listed, list) = await Send(client.GetAsync("/api/jobs"));
        Assert.Equal((HttpStatusCode.OK, id), (listed, (string)list["data"]![0]!["id"]!));
        var (busy, conflict) = await Send(client.PostAsJsonAsync("/api/jobs", Body("run")));
        Assert.True(busy == HttpStatusCode.Conflict, conflict.ToJsonString());
        Assert.Equal((HttpStatusCode.Conflict, "conflict"), (busy, (string)conflict["error"]!["code"]!));
        Assert.Contains($"is the run folder of job {id}", (string)conflict["error"]!["message"]!);

        var (cancelled, after) = await Send(client.PostAsync($"/api/jobs/{id}/cancel", null));
        Assert.Equal(HttpStatusCode.OK, cancelled);
        var (shown, _) = await Send(client.GetAsync($"/api/jobs/{id}"));
        Assert.Equal(HttpStatusCode.OK, shown);
        var entries = await PlatformStores.Open(server.DataDir).Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobCancelled));
        Assert.Equal(keyId, Assert.Single(entries).Actor);
        Assert.Equal(id, (string)after["id"]!);
    }

    [Fact]
    public async Task Bad_arguments_are_a_400_naming_the_problem_with_nothing_recorded_and_an_unknown_job_a_404()
    {
        var (client, _) = await TrainingClient();
        foreach (var (body, problem) in new (object Body, string Problem)[]
        {
            (Body("a", new { n_layers = 2 }), "n_layers"),
            (Body("b", new { learning_rate = "fast" }), "learning_rate"),
            (new { data = Path.Combine(folder, "missing"), @out = Path.Combine(folder, "c") }, "does not exist"),
            (new { data = Path.Combine(folder, "data") }, "'out' is required"),
            // The server's working folder is no folder of the caller's.
            (new { data = Path.Combine(folder, "data"), @out = "runs/d", overrides = Tiny }, "'out' must be an absolute path on the server's host, got 'runs/d'"),
            (new { data = "data", @out = Path.Combine(folder, "e"), overrides = Tiny }, "'data' must be an absolute path"),
            (new { config = "c.json", data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "f") }, "'config' must be an absolute path"),
            (new { data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "g\0"), overrides = Tiny }, "'out'"),
            // The field's type, not the request's ("could not be converted to an object").
            (new { data = Path.Combine(folder, "data"), @out = 5 }, "at 'out': The JSON value could not be converted to text."),
            (new { data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "h"), ranks = 1e11 }, "at 'ranks': The JSON value could not be converted to a whole number."),
        })
        {
            var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", body));
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Contains(problem, (string)error["error"]!["message"]!);
        }
        var (_, list) = await Send(client.GetAsync("/api/jobs"));
        Assert.Empty(list["data"]!.AsArray());
        var (missing, notFound) = await Send(client.GetAsync("/api/jobs/job-00000000"));
        Assert.Equal((HttpStatusCode.NotFound, "not_found"), (missing, (string)notFound["error"]!["code"]!));
        Assert.Equal(HttpStatusCode.NotFound, (await Send(client.PostAsync("/api/jobs/job-00000000/cancel", null))).Status);
    }

    /// <summary>A run continues on the dataset its run.json records unless 'data' names another. A run
    /// trained into the jobs root from the command line, on a dataset outside it, was resumed through
    /// the API on that dataset: a read outside the folder the API's paths are confined to, of a path
    /// no request gave. It is refused, naming the field that gives another; given one beneath the
    /// root, it continues.</summary>
    [Fact]
    public async Task A_resume_of_a_run_whose_dataset_is_outside_the_jobs_root_is_a_400_asking_for_data()
    {
        var (client, _) = await TrainingClient();
        var outside = folder + "-outside";
        try
        {
            var data = Path.Combine(outside, "data");
            DatasetPreparer.Prepare(Path.Combine(folder, "corpus.txt"), data, "char");
            var run = Path.Combine(folder, "trained");
            using (var trainer = Stratus.Training.Trainer.Start(Stratus.Training.TrainConfig.Load(null,
                [new("n_layer", "1"), new("n_head", "2"), new("n_embd", "16"), new("block_size", "8"), new("batch_size", "2"), new("max_iters", "2"), new("eval_iters", "1")]), data, run))
                trainer.Run();
            var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", new { resume = run, overrides = new { max_iters = 4 } }));
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(($"'resume' {run} trains on {data}, the dataset its run.json records, which is outside {folder}, the folder this server runs jobs in; give 'data' the dataset's folder under it.", "data"),
                ((string)error["error"]!["message"]!, (string?)error["error"]!["param"]));
            Assert.Empty((await Send(client.GetAsync("/api/jobs"))).Body["data"]!.AsArray());

            var (created, job) = await Send(client.PostAsJsonAsync("/api/jobs", new { resume = run, data = Path.Combine(folder, "data"), overrides = new { max_iters = 4 } }));
            Assert.True(created == HttpStatusCode.Created, job.ToJsonString());
        }
        finally
        {
            Directory.Delete(outside, recursive: true);
        }
    }

    /// <summary>A run folder inside another unfinished job's (its checkpoints/last, which that job's
    /// next checkpoint replaces whole), or one around it, is a 409 naming that job, as its own is.</summary>
    [Fact]
    public async Task A_run_folder_inside_or_around_an_unfinished_jobs_is_a_409_naming_it()
    {
        var (client, _) = await TrainingClient();
        var (_, job) = await Send(client.PostAsJsonAsync("/api/jobs", Body(Path.Combine("outer", "run"))));
        var id = (string)job["id"]!;
        foreach (var (output, relation) in new[] { (Path.Combine("outer", "run", "checkpoints", "last"), "is inside"), ("outer", "holds") })
        {
            var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", Body(output)));
            Assert.Equal(HttpStatusCode.Conflict, status);
            Assert.StartsWith($"{Path.Combine(folder, output)} {relation} {Path.Combine(folder, "outer", "run")}, the run folder of job {id}, which has not ended; wait for it (GET /api/jobs/{id})",
                (string)error["error"]!["message"]!);
            Assert.Equal("out", (string?)error["error"]!["param"]);
        }
        var (_, list) = await Send(client.GetAsync("/api/jobs"));
        Assert.Single(list["data"]!.AsArray());
    }

    /// <summary>The config a submission names is read on the server while the request waits. One
    /// that is a named pipe in the jobs root (a careless mkfifo, or one another user of a shared root
    /// left) was opened as a file a shell's user names (`--config &lt;(...)`) and waited on for a
    /// writer for ever, holding the request and a thread; a request names no pipe of its own, so it
    /// is refused before it is opened, as the files of a dataset or model are.</summary>
    [Fact]
    public async Task A_config_that_is_a_named_pipe_is_a_400_not_a_request_that_waits_for_ever()
    {
        var (client, _) = await TrainingClient();
        var fifo = Path.Combine(folder, "config.json");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)) await mkfifo.WaitForExitAsync();
        using var waited = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        HttpResponseMessage response;
        try
        {
            response = await client.PostAsJsonAsync("/api/jobs", new { config = fifo, data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "run"), overrides = Tiny }, waited.Token);
        }
        catch (OperationCanceledException)
        {
            // The server's read waits for a writer: this one ends it, so that the server can stop.
            using (File.OpenWrite(fifo)) { }
            throw new Xunit.Sdk.XunitException("the submission waited on the named pipe");
        }
        var (status, error) = await Send(Task.FromResult(response));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(($"'config' {fifo} is a named pipe (FIFO), not a regular file: give the config file itself.", "config"),
            ((string)error["error"]!["message"]!, (string?)error["error"]!["param"]));
        var (_, list) = await Send(client.GetAsync("/api/jobs"));
        Assert.Empty(list["data"]!.AsArray());
    }

    /// <summary>GET /api/jobs offers a submission the configs of the jobs root's configs/ folder (its
    /// *.json files, whole paths, by name), for the dashboard's form to offer: not a file of another
    /// name, one in a folder below (where runs keep JSON of their own), a link that leads outside the
    /// root or nowhere, nor a named pipe; a link to a config beneath the root is one. A config added is
    /// offered at the next listing.</summary>
    [Fact]
    public async Task The_list_offers_the_configs_of_the_jobs_roots_configs_folder()
    {
        var (client, _) = await TrainingClient();
        async Task<string[]> Offered() => [.. (await Send(client.GetAsync("/api/jobs"))).Body["submissions"]!["configs"]!.AsArray().Select(config => (string)config!)];
        Assert.Empty(await Offered());

        var configs = Directory.CreateDirectory(Path.Combine(folder, "configs")).FullName;
        File.WriteAllText(Path.Combine(configs, "small.json"), "{}");
        File.WriteAllText(Path.Combine(configs, "notes.txt"), "");
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(Path.Combine(configs, "old")).FullName, "older.json"), "{}");
        File.WriteAllText(Path.Combine(folder, "shared.json"), "{}");
        File.CreateSymbolicLink(Path.Combine(configs, "shared.json"), Path.Combine(folder, "shared.json"));
        var outside = Path.Combine(Path.GetTempPath(), "stratus-jobs-api-outside-" + Guid.NewGuid().ToString("N") + ".json");
        File.WriteAllText(outside, "{}");
        try
        {
            File.CreateSymbolicLink(Path.Combine(configs, "outside.json"), outside);
            File.CreateSymbolicLink(Path.Combine(configs, "nowhere.json"), Path.Combine(folder, "missing.json"));
            using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", Path.Combine(configs, "pipe.json"))) await mkfifo.WaitForExitAsync();
            var root = new JobsRoot(folder).Folder;
            Assert.Equal([Path.Combine(root, "configs", "shared.json"), Path.Combine(root, "configs", "small.json")], await Offered());
            File.WriteAllText(Path.Combine(configs, "big.json"), "{}");
            Assert.Equal([Path.Combine(root, "configs", "big.json"), Path.Combine(root, "configs", "shared.json"), Path.Combine(root, "configs", "small.json")], await Offered());
        }
        finally
        {
            File.Delete(outside);
        }
    }

    /// <summary>serve --jobs-executor names what runs the API's jobs (local unless it says
    /// otherwise): a request may not have them run by another, such as a cluster the operator never
    /// offered to the API's keys.</summary>
    [Fact]
    public async Task A_request_naming_an_executor_the_operator_did_not_enable_is_a_400_with_nothing_recorded()
    {
        var (client, _) = await TrainingClient();
        foreach (var executor in new[] { "slurm", "pbs" })
        {
            var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", new { data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "run"), overrides = Tiny, executor }));
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(($"'executor' {executor} is not one this server runs jobs with: its operator enabled local (serve --jobs-executor); leave 'executor' out, or name one of those.", "executor"),
                ((string)error["error"]!["message"]!, (string?)error["error"]!["param"]));
        }
        Assert.Empty((await Send(client.GetAsync("/api/jobs"))).Body["data"]!.AsArray());
        var (created, job) = await Send(client.PostAsJsonAsync("/api/jobs", new { data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "run"), overrides = Tiny, executor = "local" }));
        Assert.Equal((HttpStatusCode.Created, "local"), (created, (string)job["executor"]!));
    }

    /// <summary>A Slurm job's partition, time, ranks and cpus_per_rank, as jobs submit's options:
    /// checked by the same code (one refusal per rule, param naming the field), before anything is
    /// recorded or sbatch is run, and refused for the local executor.</summary>
    [Fact]
    public async Task Slurms_resources_are_checked_as_the_CLI_checks_them_naming_the_field()
    {
        var both = new TinyModelServer { JobsCommand = Supervisor, JobsRoot = folder, JobsExecutors = ["slurm", "local"] };
        await both.InitializeAsync();
        try
        {
            var created = await both.Keys.CreateAsync("trainer", ApiKeyScopes.Training, RateLimits.Unlimited, "tests");
            using var client = both.AnonymousClient();
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", created.Secret);
            var data = Path.Combine(folder, "data");
            var run = Path.Combine(folder, "run");
            // What a submission may name here, as the list says it: the root (its links followed) and the executors, the default first.
            var submissions = (await Send(client.GetAsync("/api/jobs"))).Body["submissions"]!;
            Assert.Equal((new JobsRoot(folder).Folder, "slurm,local"), ((string)submissions["root"]!, string.Join(",", submissions["executors"]!.AsArray().Select(e => (string)e!))));
            // In the API's words: the request's fields, never jobs submit's options (see Surface).
            const string local = "'partition', 'time', 'ranks' and 'cpus_per_rank' ask Slurm for the job's resources: give them with 'executor' slurm";
            foreach (var (body, param, message) in new (object Body, string Param, string Message)[]
            {
                (new { data, @out = run, overrides = Tiny, executor = "local", ranks = 2 }, "ranks", local),
                (new { data, @out = run, overrides = Tiny, executor = "local", partition = "cpu" }, "partition", local),
                (new { data, @out = run, overrides = Tiny, time = "90m" }, "time", "'time' 90m is not a time limit sbatch takes"),
                (new { data, @out = run, overrides = Tiny, time = "99999999" }, "time", "'time' 99999999 is longer than Slurm can hold"),
                (new { data, @out = run, overrides = Tiny, partition = "" }, "partition", "'partition' '' is not a partition name: give one that sinfo lists, or leave 'partition' out for the cluster's default"),
                (new { data, @out = run, overrides = Tiny, ranks = 0 }, "ranks", "'ranks' must be 1 or more, got 0"),
                (new { data, @out = run, overrides = Tiny, cpus_per_rank = 0 }, "cpus_per_rank", "'cpus_per_rank' must be 1 or more, got 0"),
                (new { data, @out = run, overrides = Tiny, ranks = true }, "ranks", "not valid JSON for this endpoint at 'ranks'"),
                (new { data, @out = run, overrides = Tiny, cpus_per_rank = 1.5 }, "cpus_per_rank", "not valid JSON for this endpoint at 'cpus_per_rank'"),
                (new { data, @out = run, overrides = new { n_layer = 1, n_head = 2, n_embd = 16, block_size = 8, batch_size = 2, max_iters = 3, gradient_accumulation_steps = 2 }, ranks = 3 },
                    "ranks", "gradient_accumulation_steps (2) must be a multiple of the number of ranks (3): it counts the micro-batches of the whole job per optimizer step, each rank runs an equal share; pass 'overrides.gradient_accumulation_steps' 3"),
            })
            {
                var (status, answer) = await Send(client.PostAsJsonAsync("/api/jobs", body));
                Assert.True(status == HttpStatusCode.BadRequest, answer.ToJsonString());
                Assert.Equal(param, (string?)answer["error"]!["param"]);
                Assert.Contains(message, (string)answer["error"]!["message"]!);
                AssertInTheApisWords((string)answer["error"]!["message"]!);
            }
            Assert.Empty((await Send(client.GetAsync("/api/jobs"))).Body["data"]!.AsArray());
        }
        finally
        {
            await both.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_unknown_field_is_refused_and_trains_refusals_name_the_field_at_fault()
    {
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        foreach (var (body, param, problem) in new (object Body, string Param, string Problem)[]
        {
            // Ignored before: a new run started where the caller asked to resume one.
            (new { data, @out = Path.Combine(folder, "a"), overrides = Tiny, resumes = true }, "resumes", "'resumes' is not a field of this request; its fields are config, data, out, overrides, executor, resume, init_from, partition, time, ranks and cpus_per_rank"),
            (Body("b", new { max_iters = "many" }), "overrides.max_iters", "'overrides.max_iters': max_iters must be a whole number, got \"many\""),
            (Body("c", new { n_layers = 2 }), "overrides.n_layers", "unknown config key 'n_layers' in 'overrides'; did you mean 'n_layer'?"),
            // A size past what any model is built with: lowered through the override, not train's --n-layer.
            (Body("e", new { n_layer = 2000 }), "overrides.n_layer", "n_layer 2000 is over 1,024; lower 'overrides.n_layer'"),
            (new { data, @out = data, overrides = Tiny }, "out", "dataset"),
            (new { data = Path.Combine(folder, "missing"), @out = Path.Combine(folder, "d"), overrides = Tiny }, "data", "does not exist"),
        })
        {
            var (status, answer) = await Send(client.PostAsJsonAsync("/api/jobs", body));
            Assert.True(status == HttpStatusCode.BadRequest, answer.ToJsonString());
            var error = answer["error"]!;
            Assert.Equal(param, (string?)error["param"]);
            Assert.Contains(problem, (string)error["message"]!);
            AssertInTheApisWords((string)error["message"]!);
        }
        var (_, list) = await Send(client.GetAsync("/api/jobs"));
        Assert.Empty(list["data"]!.AsArray());
    }

    [Fact]
    public async Task The_jobs_apis_refusals_are_no_invalid_requests_of_the_serving_metrics()
    {
        var (client, _) = await TrainingClient();
        var before = await RequestsEnded("invalid");
        Assert.Equal(HttpStatusCode.BadRequest, (await Send(client.PostAsJsonAsync("/api/jobs", Body("a", new { n_layers = 2 })))).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Send(client.GetAsync("/api/jobs/job-00000000"))).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await Send(server.Http.GetAsync("/api/models/missing"))).Status);
        Assert.Equal(HttpStatusCode.Forbidden, (await Send(client.GetAsync("/api/models"))).Status);
        // A serving request's refusal still counts.
        Assert.Equal(HttpStatusCode.NotFound, (await Send(server.Http.PostAsJsonAsync("/v1/completions", new { model = "missing", prompt = "a" }))).Status);
        // Before, each of the five counted: the dashboard showed a walk of the jobs panel as invalid requests.
        Assert.Equal(before + 1, await RequestsEnded("invalid"));
    }

    /// <summary>GET /api/serving's count of requests that ended with this outcome.</summary>
    async Task<long> RequestsEnded(string outcome)
    {
        var (status, serving) = await Send(server.Http.GetAsync("/api/serving"));
        Assert.Equal(HttpStatusCode.OK, status);
        return serving["requests"]!.AsObject().TryGetPropertyValue(outcome, out var count) ? (long)count! : 0;
    }

    [Fact]
    public async Task Submissions_read_and_write_only_beneath_the_jobs_root_with_links_followed()
    {
        var (client, _) = await TrainingClient();
        var outside = folder + "-outside";
        Directory.CreateDirectory(outside);
        try
        {
            Directory.CreateSymbolicLink(Path.Combine(folder, "escape"), outside);
            var data = Path.Combine(folder, "data");
            foreach (var (body, field) in new (object Body, string Field)[]
            {
                (new { data, @out = Path.Combine(outside, "run"), overrides = Tiny }, "'out'"),
                (new { data, @out = Path.Combine(folder, "escape", "run"), overrides = Tiny }, "'out'"),
                (new { data, @out = $"{folder}/../{Path.GetFileName(outside)}/run", overrides = Tiny }, "'out'"),
                (new { data = outside, @out = Path.Combine(folder, "run"), overrides = Tiny }, "'data'"),
                (new { config = "/etc/hostname", data, @out = Path.Combine(folder, "run") }, "'config'"),
            })
            {
                var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", body));
                var message = (string)error["error"]!["message"]!;
                Assert.True(status == HttpStatusCode.BadRequest, message);
                Assert.StartsWith(field, message);
                Assert.Contains($"is outside {folder}, the folder this server runs jobs in", message);
            }
            var (_, linked) = await Send(client.PostAsJsonAsync("/api/jobs", new { data, @out = Path.Combine(folder, "escape", "run"), overrides = Tiny }));
            Assert.Contains($"(which leads to {Path.Combine(outside, "run")})", (string)linked["error"]!["message"]!);
            Assert.Empty(Directory.EnumerateFileSystemEntries(outside));
            var (_, list) = await Send(client.GetAsync("/api/jobs"));
            Assert.Empty(list["data"]!.AsArray());
        }
        finally
        {
            Directory.Delete(outside, recursive: true);
        }
    }

    /// <summary>A run is continued ("resume": its folder) or fine-tuned from ("init_from") through
    /// the API as through `jobs submit`: beneath the jobs root only, links followed, and a resume with
    /// its own config or folder beside it refused naming the field.</summary>
    [Fact]
    public async Task Resume_and_init_from_are_taken_beneath_the_jobs_root_and_refused_outside_it_or_beside_config_or_out()
    {
        var (client, keyId) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        var run = Path.Combine(folder, "trained");
        using (var trainer = Stratus.Training.Trainer.Start(Stratus.Training.TrainConfig.Load(null,
            [new("n_layer", "1"), new("n_head", "2"), new("n_embd", "16"), new("block_size", "8"), new("batch_size", "2"), new("max_iters", "2"), new("eval_iters", "1")]), data, run))
            trainer.Run();
        var outside = folder + "-outside";
        Directory.CreateDirectory(outside);
        var otherText = Path.Combine(folder, "other-text");
        File.WriteAllText(Path.Combine(folder, "other.txt"), string.Concat(Enumerable.Repeat("xyz\n", 400)));
        DatasetPreparer.Prepare(Path.Combine(folder, "other.txt"), otherText, "char");
        try
        {
            Directory.CreateSymbolicLink(Path.Combine(folder, "escape"), outside);
            foreach (var (body, param, problem) in new (object Body, string Param, string Problem)[]
            {
                (new { resume = Path.Combine(outside, "run") }, "resume", $"'resume' {Path.Combine(outside, "run")} is outside {folder}"),
                (new { resume = Path.Combine(folder, "escape", "run") }, "resume", $"(which leads to {Path.Combine(outside, "run")})"),
                (new { resume = "trained" }, "resume", "'resume' must be an absolute path"),
                (new { init_from = outside, data, @out = Path.Combine(folder, "ft") }, "init_from", $"'init_from' {outside} is outside {folder}"),
                (new { resume = run, config = Path.Combine(folder, "c.json") }, "config", "'config' cannot be given with 'resume'"),
                (new { resume = run, @out = Path.Combine(folder, "other") }, "out", "'out' cannot be given with 'resume'"),
                (new { resume = run, init_from = run }, "init_from", "'init_from' cannot be given with 'resume'"),
                (new { resume = data }, "resume", "not a run"),
                (new { resume = run, overrides = new { n_layer = 3 } }, "overrides.n_layer", "n_layer cannot change when resuming"),
                // A run already at max_iters would end "succeeded" at once: the override to raise is the field at fault.
                (new { resume = run }, "overrides.max_iters", $"max_iters is 2 and the checkpoint of {run} is at step 2: nothing to train; resume with 'overrides.max_iters' above 2"),
                (new { resume = run, overrides = new { max_iters = 1 } }, "overrides.max_iters", "max_iters is 1 and the checkpoint"),
                (new { init_from = Path.Combine(folder, "missing"), data, @out = Path.Combine(folder, "ft") }, "init_from", "missing"),
                (new { init_from = run, data, @out = Path.Combine(folder, "ft"), overrides = new { n_embd = 32 } }, "overrides.n_embd", "'overrides.n_embd': n_embd 32 differs from the 'init_from' model's 16"),
                // Data in another tokenizer: the field to change, and where such data is made (no request prepares any).
                (new { init_from = run, data = otherText, @out = Path.Combine(folder, "ft") }, "data",
                    "; give 'data' a dataset prepared with the model's tokenizer (stratus prepare on the server's host, taking it from "),
            })
            {
                var (status, answer) = await Send(client.PostAsJsonAsync("/api/jobs", body));
                Assert.True(status == HttpStatusCode.BadRequest, answer.ToJsonString());
                Assert.Equal(param, (string?)answer["error"]!["param"]);
                Assert.Contains(problem, (string)answer["error"]!["message"]!);
                AssertInTheApisWords((string)answer["error"]!["message"]!);
            }
            Assert.Empty((await Send(client.GetAsync("/api/jobs"))).Body["data"]!.AsArray());
        }
        finally
        {
            Directory.Delete(outside, recursive: true);
        }

        var (created, job) = await Send(client.PostAsJsonAsync("/api/jobs", new { resume = run, overrides = new { max_iters = 4 } }));
        Assert.True(created == HttpStatusCode.Created, job.ToJsonString());
        var arguments = job["arguments"]!;
        Assert.Equal((true, run, null, null, "4"), ((bool)arguments["resume"]!, (string?)arguments["out"], (string?)arguments["data"], (string?)arguments["init_from"], (string?)arguments["overrides"]!["max_iters"]));
        var (busy, conflict) = await Send(client.PostAsJsonAsync("/api/jobs", new { resume = run }));
        Assert.Equal(HttpStatusCode.Conflict, busy);
        var id = (string)job["id"]!;
        Assert.Contains($"is the run folder of job {id}, which has not ended; wait for it (GET /api/jobs/{id}), cancel it (POST /api/jobs/{id}/cancel), or train into another 'out'",
            (string)conflict["error"]!["message"]!);
        AssertInTheApisWords((string)conflict["error"]!["message"]!);
        Assert.Equal("resume", (string?)conflict["error"]!["param"]);

        var (fineTuned, fineTune) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = run, data, @out = Path.Combine(folder, "ft"), overrides = new { max_iters = 1 } }));
        Assert.True(fineTuned == HttpStatusCode.Created, fineTune.ToJsonString());
        Assert.Equal((false, run), ((bool)fineTune["arguments"]!["resume"]!, (string?)fineTune["arguments"]!["init_from"]));
        var submitted = (await PlatformStores.Open(server.DataDir).Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobSubmitted)))
            .Select(e => (e.Actor, Details: JsonNode.Parse(e.Details)!)).ToArray();
        Assert.Equal([(keyId, true, null), (keyId, false, run)], submitted.Select(e => (e.Actor, (bool)e.Details["resume"]!, (string?)e.Details["init_from"])));
    }

    /// <summary>What jobs submit says with its options and commands, the API says with the request's
    /// fields and its own requests (Surface): a run folder another training holds, a job that does not
    /// exist, a model folder that is none.</summary>
    [Fact]
    public async Task Refusals_name_the_requests_fields_and_the_apis_requests_not_the_CLIs_options_or_commands()
    {
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        var run = Path.Combine(folder, "held");
        // A training outside the platform (`stratus train` in a shell) holds the run's lock.
        Directory.CreateDirectory(run);
        using (Stratus.FolderLock.Take(run, _ => "held"))
        {
            var (busy, conflict) = await Send(client.PostAsJsonAsync("/api/jobs", Body("held")));
            Assert.True(busy == HttpStatusCode.Conflict, conflict.ToJsonString());
            Assert.Equal(($"{run} is in use by another training, which holds its .lock; wait for that training to end, or train into another 'out'", "out"),
                ((string)conflict["error"]!["message"]!, (string?)conflict["error"]!["param"]));
        }
        var (missing, notFound) = await Send(client.GetAsync("/api/jobs/job-00000000"));
        Assert.Equal((HttpStatusCode.NotFound, "no job 'job-00000000'; list the jobs with GET /api/jobs"), (missing, (string)notFound["error"]!["message"]!));
        var (_, model) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = data, data, @out = Path.Combine(folder, "ft") }));
        Assert.Equal("init_from", (string?)model["error"]!["param"]);
        Assert.Contains($"{data} holds a dataset", (string)model["error"]!["message"]!);
        Assert.EndsWith("not a model; pass a run folder a training wrote or a checkpoint folder", (string)model["error"]!["message"]!);
        var (_, dataset) = await Send(client.PostAsJsonAsync("/api/jobs", new { data = Path.Combine(folder, "nothing"), @out = Path.Combine(folder, "new"), overrides = Tiny }));
        Assert.Equal(($"dataset folder {Path.Combine(folder, "nothing")} does not exist; create it with stratus prepare on the server's host", "data"),
            ((string)dataset["error"]!["message"]!, (string?)dataset["error"]!["param"]));
    }

    /// <summary>A job's reason is recorded once, in the CLI's words; the API shows how to continue
    /// the run as a submission of its fields (what the dashboard's form sends), not as jobs submit.</summary>
    [Fact]
    public async Task A_cancelled_jobs_reason_says_how_to_continue_its_run_in_the_apis_words()
    {
        var (client, _) = await TrainingClient();
        var run = Path.Combine(folder, "trained");
        using (var trainer = Stratus.Training.Trainer.Start(Stratus.Training.TrainConfig.Load(null,
            [new("n_layer", "1"), new("n_head", "2"), new("n_embd", "16"), new("block_size", "8"), new("batch_size", "2"), new("max_iters", "2"), new("eval_iters", "1")]), Path.Combine(folder, "data"), run))
            trainer.Run();
        var (created, submitted) = await Send(client.PostAsJsonAsync("/api/jobs", new { resume = run, overrides = new { max_iters = 4 } }));
        Assert.True(created == HttpStatusCode.Created, submitted.ToJsonString());
        var id = (string)submitted["id"]!;
        var store = JobService.Open(server.DataDir, ["true"]).Store;
        var job = store.Get(id)!;
        store.RecordEnd(id, new JobEnd(JobState.Cancelled, 143, JobLog.CancelledReason(job, 143)));
        Assert.Equal($"cancelled after a last checkpoint; continue it with `stratus jobs submit --resume {run}` (a job) or `stratus train --resume {run}`", store.Get(id)!.Reason);

        var (_, shown) = await Send(client.GetAsync($"/api/jobs/{id}"));
        Assert.Equal($"cancelled after a last checkpoint; continue it with a job of 'resume' {run} (POST /api/jobs)", (string?)shown["reason"]);
        var (_, listed) = await Send(client.GetAsync("/api/jobs"));
        Assert.Equal((string?)shown["reason"], (string?)listed["data"]![0]!["reason"]);
    }

    /// <summary>"init_from" names a registered model as `serve --model` does (NAME@ALIAS): the job
    /// records the version and folder it resolved to at submission, so that moving the alias after it
    /// does not change the job; a reference to nothing registered is a 400 naming the field.</summary>
    [Fact]
    public async Task Init_from_a_registered_reference_records_the_version_it_resolved_to_and_an_unknown_one_is_a_400()
    {
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        string Trained(string name, int iterations)
        {
            var run = Path.Combine(folder, name);
            using var trainer = Stratus.Training.Trainer.Start(Stratus.Training.TrainConfig.Load(null,
                [new("n_layer", "1"), new("n_head", "2"), new("n_embd", "16"), new("block_size", "8"), new("batch_size", "2"), new("max_iters", iterations.ToString(System.Globalization.CultureInfo.InvariantCulture)), new("eval_iters", "1")]), data, run);
            trainer.Run();
            return run;
        }
        var registry = ModelRegistry.Open(server.DataDir, Stratus.Server.Hosting.RegistryCheckpoints.Instance);
        var first = registry.Register(Trained("first", 2), "chat", null, "production", "cli:test");
        var second = registry.Register(Trained("second", 3), "chat", null, null, "cli:test");

        var (created, job) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = "chat@production", data, @out = Path.Combine(folder, "ft"), overrides = new { max_iters = 1 } }));
        Assert.True(created == HttpStatusCode.Created, job.ToJsonString());
        registry.SetAlias("chat", second.Version, "production", "cli:test");
        var recorded = (await Send(client.GetAsync($"/api/jobs/{(string)job["id"]!}"))).Body["arguments"]!;
        Assert.Equal(("chat:1", first.Checkpoint.Directory), ((string?)recorded["init_from_version"], (string?)recorded["init_from"]));

        foreach (var (reference, problem) in new[]
        {
            ("chat@staging", "model 'chat' has no alias 'staging'; see its versions and aliases with GET /api/models/chat"),
            ("chat:9", "model 'chat' has no version 9; see its versions and aliases with GET /api/models/chat"),
            ("nothing", "no model named 'nothing' is registered; see the registered names with GET /api/models"),
        })
        {
            var (status, answer) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = reference, data, @out = Path.Combine(folder, "ft2") }));
            Assert.True(status == HttpStatusCode.BadRequest, answer.ToJsonString());
            Assert.Equal("init_from", (string?)answer["error"]!["param"]);
            Assert.Contains(problem, (string)answer["error"]!["message"]!);
            AssertInTheApisWords((string)answer["error"]!["message"]!);
        }
    }

    /// <summary>The jobs root confines the paths a request names, not the registry: a version is
    /// registered by the operator, where its run was trained, so "init_from" by reference starts from
    /// one outside the root, while its folder named as a path is refused there as any other (a training
    /// key reads no folder outside the root by naming it). A folder beneath the root that is a registered
    /// version's checkpoint, with the files it was registered with, is recorded as that version, as
    /// its reference would be.</summary>
    [Fact]
    public async Task Init_from_a_version_outside_the_jobs_root_is_taken_by_reference_only_and_a_versions_folder_beneath_it_is_that_version()
    {
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        string Trained(string run)
        {
            using var trainer = Stratus.Training.Trainer.Start(Stratus.Training.TrainConfig.Load(null,
                [new("n_layer", "1"), new("n_head", "2"), new("n_embd", "16"), new("block_size", "8"), new("batch_size", "2"), new("max_iters", "2"), new("eval_iters", "1")]), data, run);
            trainer.Run();
            return run;
        }
        var outside = folder + "-registered";
        try
        {
            var registry = ModelRegistry.Open(server.DataDir, Stratus.Server.Hosting.RegistryCheckpoints.Instance);
            var away = registry.Register(Trained(Path.Combine(outside, "run")), "away", null, "production", "cli:test");
            var (created, job) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = "away@production", data, @out = Path.Combine(folder, "ft"), overrides = new { max_iters = 1 } }));
            Assert.True(created == HttpStatusCode.Created, job.ToJsonString());
            Assert.Equal(("away:1", away.Checkpoint.Directory), ((string?)job["arguments"]!["init_from_version"], (string?)job["arguments"]!["init_from"]));
            var (refused, answer) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = away.Checkpoint.Directory, data, @out = Path.Combine(folder, "ft2") }));
            Assert.True(refused == HttpStatusCode.BadRequest, answer.ToJsonString());
            Assert.Equal(($"'init_from' {away.Checkpoint.Directory} is outside {folder}, the folder this server runs jobs in; give a path under it.", "init_from"),
                ((string?)answer["error"]!["message"], (string?)answer["error"]!["param"]));

            var near = registry.Register(Trained(Path.Combine(folder, "near")), "near", null, null, "cli:test");
            var (taken, nearJob) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = Path.Combine(folder, "near"), data, @out = Path.Combine(folder, "ft3"), overrides = new { max_iters = 1 } }));
            Assert.True(taken == HttpStatusCode.Created, nearJob.ToJsonString());
            Assert.Equal(("near:1", near.Checkpoint.Directory), ((string?)nearJob["arguments"]!["init_from_version"], (string?)nearJob["arguments"]!["init_from"]));
        }
        finally
        {
            Directory.Delete(outside, recursive: true);
        }
    }

    /// <summary>The API never consults the server's working directory: a folder there named as a
    /// registered model does not shadow it (the job starts from the version), and a relative path
    /// that names no model is refused without saying whether such a folder exists.</summary>
    [Fact]
    public async Task Init_from_a_registered_name_is_the_version_even_where_the_servers_working_directory_has_a_folder_of_that_name()
    {
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        var run = Path.Combine(folder, "base");
        using (var trainer = Stratus.Training.Trainer.Start(Stratus.Training.TrainConfig.Load(null,
            [new("n_layer", "1"), new("n_head", "2"), new("n_embd", "16"), new("block_size", "8"), new("batch_size", "2"), new("max_iters", "2"), new("eval_iters", "1")]), data, run))
            trainer.Run();
        var name = "cwd" + Guid.NewGuid().ToString("N")[..12];
        var registered = ModelRegistry.Open(server.DataDir, Stratus.Server.Hosting.RegistryCheckpoints.Instance).Register(run, name, null, null, "cli:test");
        // The server's working directory is this process's.
        var shadow = Directory.CreateDirectory(Path.Combine(Environment.CurrentDirectory, name));
        try
        {
            var (created, job) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = name, data, @out = Path.Combine(folder, "ft"), overrides = new { max_iters = 1 } }));
            Assert.True(created == HttpStatusCode.Created, job.ToJsonString());
            Assert.Equal(($"{name}:1", registered.Checkpoint.Directory), ((string?)job["arguments"]!["init_from_version"], (string?)job["arguments"]!["init_from"]));
            foreach (var relative in new[] { $"./{name}", $"../{Path.GetFileName(Environment.CurrentDirectory)}/{name}" })
            {
                var (status, answer) = await Send(client.PostAsJsonAsync("/api/jobs", new { init_from = relative, data, @out = Path.Combine(folder, "ft2") }));
                Assert.True(status == HttpStatusCode.BadRequest, answer.ToJsonString());
                Assert.Equal(($"'init_from' must be an absolute path on the server's host or a registered model (NAME, NAME:VERSION, NAME@ALIAS), got '{relative}'.", "init_from"),
                    ((string?)answer["error"]!["message"], (string?)answer["error"]!["param"]));
            }
        }
        finally
        {
            shadow.Delete();
        }
    }

    /// <summary>"resume": true (a flag, where the API takes the run folder), a number, null or ""
    /// is a 400 naming the field at fault, nothing recorded: never a 500, nor a new run started.</summary>
    [Fact]
    public async Task Resume_or_init_from_of_the_wrong_type_null_or_empty_is_a_400_naming_the_field()
    {
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        foreach (var (body, param, problem) in new (string Body, string Param, string Problem)[]
        {
            ("""{"resume": true}""", "resume", "at 'resume'"),
            ("""{"init_from": 5, "out": "/x", "data": "/y"}""", "init_from", "at 'init_from'"),
            // null is the field left out: a new run, which needs its dataset.
            ("""{"resume": null}""", "data", "'data' is required"),
            ("""{"resume": ""}""", "resume", "'resume' must be an absolute path"),
            ($$"""{"init_from": "", "data": "{{data}}", "out": "{{Path.Combine(folder, "ft")}}"}""", "init_from", "'init_from' must be an absolute path"),
        })
        {
            var (status, answer) = await Send(client.PostAsync("/api/jobs", new StringContent(body, System.Text.Encoding.UTF8, "application/json")));
            Assert.True(status == HttpStatusCode.BadRequest, body + " " + answer.ToJsonString());
            Assert.Equal(param, (string?)answer["error"]!["param"]);
            Assert.Contains(problem, (string)answer["error"]!["message"]!);
        }
        Assert.Empty((await Send(client.GetAsync("/api/jobs"))).Body["data"]!.AsArray());
    }

    [Fact]
    public async Task A_jobs_metrics_are_its_run_folders_rows_after_a_step_thinned_evenly_without_a_half_written_last_line()
    {
        var (client, _) = await TrainingClient();
        var (_, job) = await Send(client.PostAsJsonAsync("/api/jobs", Body("run")));
        var id = (string)job["id"]!;
        // Before its first step: nothing logged, and no last step.
        var (empty, none) = await Send(client.GetAsync($"/api/jobs/{id}/metrics"));
        Assert.Equal((HttpStatusCode.OK, "list", 0), (empty, (string)none["object"]!, none["data"]!.AsArray().Count));
        Assert.Null((await Send(client.GetAsync($"/api/jobs/{id}"))).Body["last_step"]);

        // As the trainer writes it: an evaluation at step 0 and every 10 steps, a training step each,
        // and a line being written right now.
        var lines = new List<string>();
        for (var step = 0; step < 50; step++)
        {
            if (step % 10 == 0) lines.Add($"{{\"step\":{step},\"val_loss\":{4 - step / 20.0},\"eval_train_loss\":3.9}}");
            lines.Add($"{{\"step\":{step},\"train_loss\":{4 - step / 25.0},\"lr\":0.001,\"tokens_per_sec\":100}}");
        }
        File.WriteAllText(Path.Combine(folder, "run", "metrics.jsonl"), string.Join('\n', lines) + "\n{\"step\":50,\"train_lo");

        var (status, all) = await Send(client.GetAsync($"/api/jobs/{id}/metrics"));
        Assert.Equal(HttpStatusCode.OK, status);
        var rows = all["data"]!.AsArray();
        Assert.Equal(55, rows.Count);
        Assert.Equal((0, 4.0, 0.001), ((int)rows[1]!["step"]!, (double)rows[1]!["train_loss"]!, (double)rows[1]!["lr"]!));
        Assert.Equal(2.0, (double)rows[^11]!["val_loss"]!);
        Assert.Equal(49, (int)rows[^1]!["step"]!);
        var (_, shown) = await Send(client.GetAsync($"/api/jobs/{id}"));
        Assert.Equal((49, 4 - 49 / 25.0), ((int)shown["last_step"]!["step"]!, (double)shown["last_step"]!["train_loss"]!));

        var (_, later) = await Send(client.GetAsync($"/api/jobs/{id}/metrics?after=39"));
        Assert.Equal(Enumerable.Range(40, 10).Prepend(40), later["data"]!.AsArray().Select(r => (int)r!["step"]!));

        // Thinned to 5 training steps spread evenly, first and last kept, and every evaluation (5 too).
        var (_, thinned) = await Send(client.GetAsync($"/api/jobs/{id}/metrics?limit=5"));
        var kept = thinned["data"]!.AsArray();
        Assert.Equal([0, 12, 24, 37, 49], kept.Where(r => r!["train_loss"] is not null).Select(r => (int)r!["step"]!));
        Assert.Equal([0, 10, 20, 30, 40], kept.Where(r => r!["val_loss"] is not null).Select(r => (int)r!["step"]!));

        foreach (var query in new[] { "limit=0", "limit=1001", "after=x", "limit=2&limit=3" })
        {
            var (bad, error) = await Send(client.GetAsync($"/api/jobs/{id}/metrics?{query}"));
            Assert.True(bad == HttpStatusCode.BadRequest, query);
            Assert.Contains($"'{query[..query.IndexOf('=')]}' must be a whole number", (string)error["error"]!["message"]!);
            // The parameter at fault is the error's param, as a bad cursor's is.
            Assert.Equal(query[..query.IndexOf('=')], (string?)error["error"]!["param"]);
        }
        var (missing, notFound) = await Send(client.GetAsync("/api/jobs/job-00000000/metrics"));
        Assert.Equal((HttpStatusCode.NotFound, "not_found"), (missing, (string)notFound["error"]!["code"]!));

        // A broken line before the last one is no line being written: a 409 naming it, not a 500.
        File.WriteAllText(Path.Combine(folder, "run", "metrics.jsonl"), "{\"step\":0,\"train_lo\n{\"step\":1,\"train_loss\":2}\n");
        var (damaged, damage) = await Send(client.GetAsync($"/api/jobs/{id}/metrics"));
        Assert.Equal(HttpStatusCode.Conflict, damaged);
        Assert.Contains("line 1 of", (string)damage["error"]!["message"]!);

        // An inference key reads no jobs.
        var inference = await server.Keys.CreateAsync("user", ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        using var user = server.AnonymousClient();
        user.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", inference.Secret);
        Assert.Equal(HttpStatusCode.Forbidden, (await Send(user.GetAsync($"/api/jobs/{id}/metrics"))).Status);
    }

    [Fact]
    public async Task A_cursor_answers_the_rows_written_since_and_the_whole_series_again_once_a_resumed_run_rewrote_the_file()
    {
        var (client, _) = await TrainingClient();
        var (_, job) = await Send(client.PostAsJsonAsync("/api/jobs", Body("run")));
        var metrics = $"/api/jobs/{(string)job["id"]!}/metrics";
        var run = Path.Combine(folder, "run");
        var file = Path.Combine(run, "metrics.jsonl");
        static string Row(int step, double loss) => $"{{\"step\":{step},\"train_loss\":{loss},\"lr\":0.001,\"elapsed_s\":{step * 0.37}}}\n";
        static int[] Steps(JsonObject answer) => [.. answer["data"]!.AsArray().Select(r => (int)r!["step"]!)];

        var (_, none) = await Send(client.GetAsync(metrics));
        Assert.Null(none["cursor"]);
        File.WriteAllText(file, string.Concat(Enumerable.Range(0, 40).Select(step => Row(step, 4 - step / 20.0))));
        var (_, first) = await Send(client.GetAsync(metrics));
        Assert.Equal(Enumerable.Range(0, 40), Steps(first));
        Assert.False((bool)first["reset"]!);

        // Five more steps and a line being written. A line read before is not read again: one
        // broken in place (as no trainer breaks one) after it was answered goes unseen by a poll.
        var original = File.ReadAllBytes(file);
        File.AppendAllText(file, string.Concat(Enumerable.Range(40, 5).Select(step => Row(step, 2))) + "{\"step\":45,\"train_lo");
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            stream.Position = Array.IndexOf(original, (byte)'\n', 600) + 1;
            stream.WriteByte((byte)'x');
        }
        var (status, since) = await Send(client.GetAsync($"{metrics}?cursor={(string)first["cursor"]!}"));
        Assert.True(status == HttpStatusCode.OK, since.ToJsonString());
        Assert.Equal([40, 41, 42, 43, 44], Steps(since));
        Assert.False((bool)since["reset"]!);
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) stream.Write(original);

        // The half-written line waits for its newline.
        var (_, waiting) = await Send(client.GetAsync($"{metrics}?cursor={(string)since["cursor"]!}"));
        Assert.Equal((0, (string)since["cursor"]!), (Steps(waiting).Length, (string)waiting["cursor"]!));
        File.AppendAllText(file, "ss\":1.9}\n");
        var (_, completed) = await Send(client.GetAsync($"{metrics}?cursor={(string)waiting["cursor"]!}"));
        Assert.Equal([45], Steps(completed));

        // `stratus train --resume` from step 30's checkpoint: the steps from 30 on are dropped and
        // written again. Rows of the old file after the cursor would mix two runs: the answer is
        // the new file whole, said to replace what the client holds.
        using (var resumed = new Stratus.Training.MetricsLog(run, 30))
            resumed.Write(new JsonObject { ["step"] = 30, ["train_loss"] = 9.5, ["lr"] = 0.001, ["elapsed_s"] = 0.5 });
        var (_, again) = await Send(client.GetAsync($"{metrics}?cursor={(string)completed["cursor"]!}"));
        Assert.True((bool)again["reset"]!);
        Assert.Equal(Enumerable.Range(0, 31), Steps(again));
        Assert.Equal(9.5, (double)again["data"]!.AsArray()[^1]!["train_loss"]!);
        var (_, after) = await Send(client.GetAsync($"{metrics}?cursor={(string)again["cursor"]!}"));
        Assert.Equal((0, false), (Steps(after).Length, (bool)after["reset"]!));

        // A cursor of another file or server is answered as none; one this endpoint never gives is a 400.
        var (_, unknown) = await Send(client.GetAsync($"{metrics}?cursor=1f.3"));
        Assert.Equal((31, true), (Steps(unknown).Length, (bool)unknown["reset"]!));
        var (bad, error) = await Send(client.GetAsync($"{metrics}?cursor=step-3"));
        Assert.Equal((HttpStatusCode.BadRequest, "cursor"), (bad, (string)error["error"]!["param"]!));
    }

    [Fact]
    public async Task A_loss_that_is_no_finite_number_is_a_409_naming_its_line_as_stratus_plot_refuses_it()
    {
        // JSON has no NaN or infinity: 1e999 reads as one in a browser, and a chart scaled to it
        // draws nothing. `stratus plot` refuses such a file; so does the endpoint.
        var (client, _) = await TrainingClient();
        var (_, job) = await Send(client.PostAsJsonAsync("/api/jobs", Body("run")));
        var id = (string)job["id"]!;
        foreach (var row in new[] { "{\"step\":1,\"train_loss\":1e999}", "{\"step\":1,\"val_loss\":\"NaN\"}", "{\"step\":1,\"train_loss\":-1e400}" })
        {
            File.WriteAllText(Path.Combine(folder, "run", "metrics.jsonl"), $"{{\"step\":0,\"train_loss\":4}}\n{row}\n{{\"step\":2,\"train_loss\":3}}\n");
            var (status, error) = await Send(client.GetAsync($"/api/jobs/{id}/metrics"));
            Assert.True(status == HttpStatusCode.Conflict, $"{row}: {status} {error}");
            var message = (string)error["error"]!["message"]!;
            Assert.Contains("line 2 of", message);
            Assert.Contains("not a number", message);
        }
        // A job listed with such a last line is listed still, with the last step that has a loss.
        File.WriteAllText(Path.Combine(folder, "run", "metrics.jsonl"), "{\"step\":0,\"train_loss\":4}\n{\"step\":1,\"train_loss\":1e999}\n");
        var (listed, shown) = await Send(client.GetAsync($"/api/jobs/{id}"));
        Assert.True(listed == HttpStatusCode.OK, shown.ToJsonString());
        Assert.Equal((0, 4.0), ((int)shown["last_step"]!["step"]!, (double)shown["last_step"]!["train_loss"]!));
    }

    [Fact]
    public async Task A_run_folder_that_cannot_be_made_or_is_the_root_itself_is_a_400_with_nothing_recorded()
    {
        // A file where the folder would be, and a name longer than a file system takes, were a 500
        // with the job recorded as failed; the root itself would make a run of the folder every job shares.
        var (client, _) = await TrainingClient();
        var data = Path.Combine(folder, "data");
        foreach (var (output, says) in new[]
        {
            (Path.Combine(folder, "corpus.txt"), "cannot be made"),
            (Path.Combine(folder, new string('x', 300), "run"), "cannot be made"),
            (folder, "is the folder this server runs jobs in"),
            (folder + "/", "is the folder this server runs jobs in"),
        })
        {
            var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", new { data, @out = output, overrides = Tiny }));
            Assert.True(status == HttpStatusCode.BadRequest, $"{output}: {status} {error.ToJsonString()}");
            var message = (string)error["error"]!["message"]!;
            Assert.Contains(says, message);
            Assert.Contains("'out'", message);
        }
        var (_, list) = await Send(client.GetAsync("/api/jobs"));
        Assert.Empty(list["data"]!.AsArray());
    }

    [Fact]
    public async Task A_server_started_without_a_jobs_root_lists_jobs_but_takes_none()
    {
        var bare = new TinyModelServer { JobsCommand = Supervisor };
        await bare.InitializeAsync();
        try
        {
            var created = await bare.Keys.CreateAsync("trainer", ApiKeyScopes.Training, RateLimits.Unlimited, "tests");
            using var client = bare.AnonymousClient();
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", created.Secret);
            var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", Body("run")));
            Assert.Equal((HttpStatusCode.Forbidden, "jobs_not_enabled"), (status, (string?)error["error"]!["code"]));
            Assert.Contains("--jobs-root", (string)error["error"]!["message"]!);
            Assert.False(Directory.Exists(Path.Combine(folder, "run")));
            var (listed, list) = await Send(client.GetAsync("/api/jobs"));
            Assert.Equal((HttpStatusCode.OK, 0), (listed, list["data"]!.AsArray().Count));
            // The list says so, for a client (the dashboard) that would offer a submission.
            Assert.True(list.ContainsKey("submissions"));
            Assert.Null(list["submissions"]);
        }
        finally
        {
            await bare.DisposeAsync();
        }
    }

    /// <summary>A cancel or a submission Slurm cannot carry out now (its controller down, scancel
    /// hanging) is a 503 naming the cause, the job as it was: not a 400 blaming the request, nor a 500. Slurm's
    /// commands are fakes on the PATH that answer as Slurm 22.05's do without a controller.</summary>
    [Fact, System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task A_cancel_Slurm_cannot_carry_out_is_a_503_naming_the_cause()
    {
        var (client, _) = await TrainingClient();
        var service = JobService.Open(server.DataDir, ["/bin/false"]);
        var job = new Job("job-0000005c", Job.TrainKind, new TrainArguments(null, Path.Combine(folder, "data"), Path.Combine(folder, "slurm-run"), []), SlurmJobExecutor.ExecutorName,
            null, JobState.Queued, null, null, null, null, DateTimeOffset.UtcNow, null, null, null, "cli:test", Path.Combine(folder, "slurm-run", "job-0000005c.log"))
            { Resources = new SlurmOptions("debug", "30", 1, 2) };
        service.Store.Insert(job, new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        service.Store.SetExecutorReference(job.Id, "42");
        service.Store.RecordStarted(job.Id, null, null);
        var bin = Path.Combine(folder, "bin");
        Directory.CreateDirectory(bin);
        void Fake(string command, string script)
        {
            File.WriteAllText(Path.Combine(bin, command), "#!/bin/sh\n" + script + "\n");
            File.SetUnixFileMode(Path.Combine(bin, command), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        Fake("scontrol", "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1");
        Fake("scancel", "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect failure)' >&2; exit 1");
        var path = Environment.GetEnvironmentVariable("PATH");
        var timeout = SlurmJobExecutor.CommandTimeout;
        Environment.SetEnvironmentVariable("PATH", bin + ":" + path);
        try
        {
            var (status, error) = await Send(client.PostAsync($"/api/jobs/{job.Id}/cancel", null));
            Assert.True(status == HttpStatusCode.ServiceUnavailable, error.ToJsonString());
            Assert.Equal(("server_error", "scheduler_unavailable"), ((string)error["error"]!["type"]!, (string)error["error"]!["code"]!));
            Assert.Equal("scancel failed: slurm_load_jobs error: Unable to contact slurm controller (connect failure); check that the Slurm controller answers (scontrol ping), then cancel the job again",
                (string)error["error"]!["message"]!);
            var (_, shown) = await Send(client.GetAsync($"/api/jobs/{job.Id}"));
            Assert.Equal("running", (string)shown["state"]!);

            // scancel hanging: it is given up on, and the cancel is a 503 all the same.
            Fake("scancel", "exec sleep 60");
            SlurmJobExecutor.CommandTimeout = TimeSpan.FromSeconds(1);
            (status, error) = await Send(client.PostAsync($"/api/jobs/{job.Id}/cancel", null));
            Assert.True(status == HttpStatusCode.ServiceUnavailable, error.ToJsonString());
            Assert.Equal("scancel did not answer within 1 s; check that the Slurm controller answers (scontrol ping), then try again", (string)error["error"]!["message"]!);
            // The commands that answer next get their usual time: a loaded machine may take a second to start one.
            SlurmJobExecutor.CommandTimeout = timeout;

            // A submission sbatch cannot hand to the controller is Slurm's failure too, recorded failed.
            Fake("sbatch", "cat >/dev/null; echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)' >&2; exit 1");
            var slurm = new TinyModelServer { JobsCommand = Supervisor, JobsRoot = folder, JobsExecutors = [SlurmJobExecutor.ExecutorName] };
            JsonObject listed;
            await slurm.InitializeAsync();
            try
            {
                var created = await slurm.Keys.CreateAsync("trainer", ApiKeyScopes.Training, RateLimits.Unlimited, "tests");
                using var slurmClient = slurm.AnonymousClient();
                slurmClient.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", created.Secret);
                (status, error) = await Send(slurmClient.PostAsJsonAsync("/api/jobs", Body("slurm-run-2")));
                (_, listed) = await Send(slurmClient.GetAsync("/api/jobs"));
            }
            finally
            {
                await slurm.DisposeAsync();
            }
            Assert.True(status == HttpStatusCode.ServiceUnavailable, error.ToJsonString());
            // In the API's words: the request's 'executor', not jobs submit's --executor.
            Assert.Equal("sbatch refused the job: Batch job submission failed: Unable to contact slurm controller (connect failure); check that Slurm's commands reach the cluster (sinfo; SLURM_CONF names its slurm.conf), or submit with 'executor' local",
                (string)error["error"]!["message"]!);
            // And so is the reason of the job it recorded failed, as the list (and the dashboard) shows it.
            var notStarted = listed["data"]!.AsArray().Single(j => (string)j!["arguments"]!["out"]! == Path.Combine(folder, "slurm-run-2"))!;
            Assert.Equal(("failed", "could not be started: " + (string)error["error"]!["message"]!), ((string)notStarted["state"]!, (string)notStarted["reason"]!));

            // Neither cancel reached the job: its failure, once Slurm answers, is a failure, not a cancel.
            Fake("scontrol", "echo 'JobId=42 JobName=job-0000005c JobState=FAILED Reason=NonZeroExitCode ExitCode=1:0 StartTime=2026-11-27T10:00:00 NodeList=node1 NumTasks=1'");
            (_, shown) = await Send(client.GetAsync($"/api/jobs/{job.Id}"));
            Assert.Equal(("failed", 1), ((string)shown["state"]!, (int)shown["exit_code"]!));
            // Ended, what it asked of Slurm is shown from the job's record, whatever Slurm still keeps.
            var asked = shown["arguments"]!;
            Assert.Equal(("debug", "30", 1, 2), ((string?)asked["partition"], (string?)asked["time"], (int?)asked["ranks"], (int?)asked["cpus_per_rank"]));
        }
        finally
        {
            Environment.SetEnvironmentVariable("PATH", path);
            SlurmJobExecutor.CommandTimeout = timeout;
        }
    }
    /// <summary>A job recorded as running, its training <paramref name="training"/> (a process of the test's).</summary>
    (SqlJobStore Store, string Id) RunningJob(string output, int training)
    {
        var store = JobService.Open(server.DataDir, ["true"]).Store;
        var id = "job-" + Guid.NewGuid().ToString("N")[..8];
        var run = Path.Combine(folder, output);
        store.Insert(new Job(id, Job.TrainKind, new TrainArguments(null, Path.Combine(folder, "data"), run, []), LocalJobExecutor.ExecutorName, null, JobState.Queued,
            null, null, null, null, store.Now, null, null, null, "cli:test", Path.Combine(run, id + ".log")), new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        store.RecordStarted(id, training, LocalJobExecutor.StartOf(training));
        return (store, id);
    }

    /// <summary>Train takes a second SIGTERM as "end at once", losing the step's last checkpoint: a
    /// cancel asked for again (three at once, a client retrying) answers as the first did and sends
    /// nothing, and is not audited again; "force": true ends the training at once (SIGKILL).</summary>
    [Fact]
    public async Task A_cancel_asked_again_sends_no_second_signal_and_force_ends_the_training_at_once()
    {
        var (client, _) = await TrainingClient();
        var signals = Path.Combine(folder, "signals");
        // A training that counts the SIGTERMs it is sent and goes on.
        using var training = System.Diagnostics.Process.Start("/bin/sh", ["-c", $"trap 'echo term >> {signals}' TERM; while :; do sleep 0.05; done"])!;
        try
        {
            var (store, id) = RunningJob("cancelled", training.Id);
            var answers = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => Send(client.PostAsync($"/api/jobs/{id}/cancel", null))));
            Assert.All(answers, answer => Assert.Equal((HttpStatusCode.OK, "running"), (answer.Status, (string?)answer.Body["state"])));
            for (var waited = 0; !File.Exists(signals) && waited < 100; waited++) await Task.Delay(50);
            // A client retrying a cancel that timed out.
            Assert.Equal(HttpStatusCode.OK, (await Send(client.PostAsJsonAsync($"/api/jobs/{id}/cancel", new { }))).Status);
            await Task.Delay(500);
            Assert.Equal(["term"], File.ReadAllLines(signals));
            Assert.False(training.HasExited);

            var (status, forced) = await Send(client.PostAsJsonAsync($"/api/jobs/{id}/cancel", new { force = true }));
            Assert.True(status == HttpStatusCode.OK, forced.ToJsonString());
            Assert.True(training.WaitForExit(10_000), "the training outlived a forced cancel");
            Assert.Equal(128 + 9, training.ExitCode);
            var entries = await PlatformStores.Open(server.DataDir).Audit.ReadAsync(new AuditQuery(Action: AuditActions.JobCancelled));
            Assert.Equal([false, true], entries.Select(e => JsonNode.Parse(e.Details)!["force"] is not null));

            var (refused, error) = await Send(client.PostAsJsonAsync($"/api/jobs/{id}/cancel", new { force = "yes" }));
            Assert.Equal((HttpStatusCode.BadRequest, "force"), (refused, (string?)error["error"]!["param"]));
        }
        finally
        {
            if (!training.HasExited) training.Kill();
        }
    }

    /// <summary>A job being cancelled is still running (its training finishes its step and saves a
    /// last checkpoint): GET /api/jobs/{id} and GET /api/jobs give when the cancel was asked
    /// (cancel_requested_at, null before) and by whom (cancel_requested_by: the key's id, as the
    /// audit entry and submitted_by name it, and cancel_requested_by_name: its name, as the audit
    /// API's actor_name), so that a client can say "cancelling" rather than offer the cancel again;
    /// the cancel's own answer gives them too.</summary>
    [Fact]
    public async Task A_job_being_cancelled_gives_when_and_by_whom_the_cancel_was_asked()
    {
        var (client, keyId) = await TrainingClient();
        // A training that takes its SIGTERM and goes on, as one finishing its step does.
        using var training = System.Diagnostics.Process.Start("/bin/sh", ["-c", "trap '' TERM; while :; do sleep 0.05; done"])!;
        try
        {
            var (store, id) = RunningJob("cancelling", training.Id);
            var (_, before) = await Send(client.GetAsync($"/api/jobs/{id}"));
            foreach (var field in new[] { "cancel_requested_at", "cancel_requested_by", "cancel_requested_by_name" })
            {
                Assert.True(before.ContainsKey(field), before.ToJsonString());
                Assert.Null(before[field]);
            }

            var (status, cancelled) = await Send(client.PostAsync($"/api/jobs/{id}/cancel", null));
            Assert.Equal(HttpStatusCode.OK, status);
            var asked = store.Get(id)!.CancelRequestedAt!.Value;
            var (_, shown) = await Send(client.GetAsync($"/api/jobs/{id}"));
            var (_, list) = await Send(client.GetAsync("/api/jobs"));
            var listed = list["data"]!.AsArray().Single(job => (string?)job!["id"] == id)!;
            foreach (var job in new[] { cancelled, shown, listed })
                Assert.Equal(("running", asked, keyId, "trainer"), ((string?)job["state"], (DateTimeOffset)job["cancel_requested_at"]!, (string?)job["cancel_requested_by"], (string?)job["cancel_requested_by_name"]));
        }
        finally
        {
            training.Kill();
        }
    }

    /// <summary>GET /api/jobs pages as OpenAI's lists do: limit, after the last id a page listed,
    /// has_more; newest first, jobs submitted in the same tick in id order, so the pages together
    /// are the whole list once each.</summary>
    [Fact]
    public async Task The_job_list_pages_by_limit_and_after_in_a_stable_order()
    {
        var (client, _) = await TrainingClient();
        var store = JobService.Open(server.DataDir, ["true"]).Store;
        var now = store.Now;
        string[] ids = ["job-0000000a", "job-0000000c", "job-0000000b", "job-0000000d", "job-0000000e"];
        foreach (var (id, n) in ids.Select((id, n) => (id, n)))
            store.Insert(new Job(id, Job.TrainKind, new TrainArguments(null, "/data", Path.Combine(folder, id), []), LocalJobExecutor.ExecutorName, null, JobState.Queued,
                null, null, null, null, now.AddSeconds(n is 1 or 2 ? -1 : -n), null, null, null, "cli:test", Path.Combine(folder, id, id + ".log")),
                new AuditRecord("cli:test", AuditActions.JobSubmitted, []));
        string[] newestFirst = ["job-0000000a", "job-0000000b", "job-0000000c", "job-0000000d", "job-0000000e"];

        var (_, whole) = await Send(client.GetAsync("/api/jobs"));
        Assert.Equal(newestFirst, whole["data"]!.AsArray().Select(j => (string)j!["id"]!));
        Assert.False((bool)whole["has_more"]!);
        List<string> paged = [];
        string? after = null;
        for (var more = true; more; )
        {
            var (status, page) = await Send(client.GetAsync($"/api/jobs?limit=2{(after is null ? "" : $"&after={after}")}"));
            Assert.True(status == HttpStatusCode.OK, page.ToJsonString());
            paged.AddRange(page["data"]!.AsArray().Select(j => (string)j!["id"]!));
            after = paged[^1];
            more = (bool)page["has_more"]!;
        }
        Assert.Equal(newestFirst, paged);

        foreach (var (query, param) in new[] { ("after=job-nope", "after"), ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=two", "limit") })
        {
            var (status, error) = await Send(client.GetAsync($"/api/jobs?{query}"));
            Assert.Equal((HttpStatusCode.BadRequest, param), (status, (string?)error["error"]!["param"]));
            AssertInTheApisWords((string)error["error"]!["message"]!);
        }
    }

    /// <summary>A value train refuses in an override is a 400 naming that override, as an unknown key is.</summary>
    [Theory]
    [InlineData("max_iters", -5)]
    [InlineData("beta2", 1)]
    [InlineData("dropout", 2)]
    [InlineData("n_head", 0)]
    public async Task A_bad_override_value_is_a_400_naming_the_override(string key, int value)
    {
        var (client, _) = await TrainingClient();
        var overrides = new Dictionary<string, object> { ["n_layer"] = 1, ["n_head"] = 2, ["n_embd"] = 16, ["block_size"] = 8, ["batch_size"] = 2, ["max_iters"] = 3 };
        overrides[key] = value;
        var (status, error) = await Send(client.PostAsJsonAsync("/api/jobs", new { data = Path.Combine(folder, "data"), @out = Path.Combine(folder, "bad"), overrides }));
        Assert.Equal((HttpStatusCode.BadRequest, "overrides." + key), (status, (string?)error["error"]!["param"]));
        Assert.Empty((await Send(client.GetAsync("/api/jobs"))).Body["data"]!.AsArray());
    }

    /// <summary>A job whose training failed records train's own last error line, in the CLI's words;
    /// the API names each config key's option in it as the override that sets it, leaving a command
    /// the line quotes whole.</summary>
    [Fact]
    public async Task A_failed_jobs_reason_names_train_options_as_overrides_in_the_apis_words()
    {
        var (client, _) = await TrainingClient();
        var (store, id) = RunningJob("diverged", Environment.ProcessId);
        var job = store.Get(id)!;
        Directory.CreateDirectory(job.Arguments.Out);
        File.WriteAllText(job.LogFile, "step 3: loss nan\nerror: the training loss is NaN at step 3: training diverged; lower --learning-rate or set --grad-clip, " +
            $"then resume from the last checkpoint (`stratus train --resume {job.Arguments.Out} --learning-rate ...`) or start again\n");
        store.RecordEnd(id, new JobEnd(JobState.Failed, 2, JobLog.FailureReason(job, 2)));

        var (_, shown) = await Send(client.GetAsync($"/api/jobs/{id}"));
        Assert.Equal("train exited with 2: the training loss is NaN at step 3: training diverged; lower 'overrides.learning_rate' or set 'overrides.grad_clip', " +
            $"then resume from the last checkpoint (`stratus train --resume {job.Arguments.Out} --learning-rate ...`) or start again", (string?)shown["reason"]);
        Assert.Contains("lower --learning-rate or set --grad-clip", store.Get(id)!.Reason);
    }
}
