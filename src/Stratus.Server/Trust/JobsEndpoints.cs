// /api/jobs (training scope): training jobs through the job service (Platform/Jobs), as
// `stratus jobs` runs them: list, show, submit (a new run, one from a model's weights with
// "init_from", or a run continued with "resume") and cancel. A submission's arguments are checked as
// `stratus train` checks them (400 naming the problem, nothing recorded); a run folder a training
// writes is 409. Paths are the server's host's, absolute (a relative one is a 400), and beneath
// serve's --jobs-root (JobsRoot), as is the dataset a resumed run's run.json records: a server started without one takes no submissions (403), and its
// list says so (submissions null; else the root, executors and the root's configs/*.json, for the dashboard's form). They
// run under the executors serve's --jobs-executor enables (local unless it says otherwise; the first
// given where a request names none): a request that names another is a 400. A Slurm job's
// partition, time, ranks and cpus_per_rank are checked by the code that checks jobs submit's
// options (SlurmOptions), each refusal a 400 naming its field.
// Submissions and cancels are audited with the calling key's id as the actor, which a job records
// as its submitter and canceller, named with its key's name (ActorNames) where shown. A job's metrics
// (GET /api/jobs/{id}/metrics, for the dashboard's loss curves) are read from the run folder the job
// recorded, never from a path the request names.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Stratus.Platform;
using Stratus.Platform.Jobs;
using Stratus.Safety;
using Stratus.Training;

namespace Stratus.Server.Trust;

/// <summary>A field it does not have is refused, as in every request body the trust layer reads
/// (TrustJson): one ignored (a misspelt "resumes") would start a new run where the caller asked for
/// something else. <see cref="Resume"/> is the run folder to
/// continue (train --resume), <see cref="InitFrom"/> the model a new run starts from (train --init-from);
/// <see cref="Partition"/>, <see cref="Time"/>, <see cref="Ranks"/> and <see cref="CpusPerRank"/>
/// what a Slurm job asks sbatch for (jobs submit's --partition, --time, --ranks, --cpus-per-rank).</summary>
public sealed record SubmitJobRequest(
    [property: JsonPropertyName("config")] string? Config,
    [property: JsonPropertyName("data")] string? Data,
    [property: JsonPropertyName("out")] string? Out,
    [property: JsonPropertyName("overrides")] Dictionary<string, JsonElement>? Overrides,
    [property: JsonPropertyName("executor")] string? Executor = null,
    [property: JsonPropertyName("resume")] string? Resume = null,
    [property: JsonPropertyName("init_from")] string? InitFrom = null,
    [property: JsonPropertyName("partition")] string? Partition = null,
    [property: JsonPropertyName("time")] string? Time = null,
    [property: JsonPropertyName("ranks")] int? Ranks = null,
    [property: JsonPropertyName("cpus_per_rank")] int? CpusPerRank = null);

/// <summary>A job's training arguments; a resumed run's (<see cref="Resume"/> true) are its folder,
/// <see cref="Out"/>, and the overrides, its data null unless given (the dataset moved). A Slurm
/// job's <see cref="Partition"/>, <see cref="Time"/>, <see cref="Ranks"/> and <see cref="CpusPerRank"/>
/// are what was asked of sbatch, as a submission names them (partition and time null: the cluster's
/// defaults), kept after Slurm forgets the job; all four null for a local job, and for a Slurm job
/// recorded before they were kept.</summary>
public sealed record JobArgumentsView(
    [property: JsonPropertyName("config")] string? Config,
    [property: JsonPropertyName("data")] string? Data,
    [property: JsonPropertyName("out")] string Out,
    [property: JsonPropertyName("overrides")] IReadOnlyDictionary<string, string> Overrides,
    [property: JsonPropertyName("resume")] bool Resume,
    [property: JsonPropertyName("init_from")] string? InitFrom,
    [property: JsonPropertyName("partition")] string? Partition,
    [property: JsonPropertyName("time")] string? Time,
    [property: JsonPropertyName("ranks")] int? Ranks,
    [property: JsonPropertyName("cpus_per_rank")] int? CpusPerRank)
{
    /// <summary>The registered version (NAME:VERSION) <see cref="InitFrom"/> is the checkpoint of,
    /// resolved at submission from the reference given, or the folder given where it is that version's
    /// checkpoint with the files it was registered with; null for another folder.</summary>
    [JsonPropertyName("init_from_version")] public string? InitFromVersion { get; init; }
}

/// <summary>POST /api/jobs/{id}/cancel's body, which may be left out. <see cref="Force"/>: end the
/// training at once, without the last checkpoint a cancel waits for (jobs cancel --force); without it
/// a cancel of a job being cancelled already changes nothing.</summary>
public sealed record CancelJobRequest([property: JsonPropertyName("force")] bool? Force = null);

/// <summary>A job as the API and `jobs show --json` show it. <see cref="CancelRequestedAt"/>: when a
/// cancel was asked for (null: none was); a job that has not ended with one is being cancelled, its
/// training finishing its step and saving a last checkpoint, and reads cancelled once it ends.
/// <see cref="CancelRequestedBy"/>: who asked, as <see cref="SubmittedBy"/> names who submitted: the
/// audit log's actor (`cli:&lt;user&gt;`, or a key's id, which stays true of the key whatever its
/// name); <see cref="CancelRequestedByName"/> and <see cref="SubmittedByName"/>: where that actor is
/// a key, its name (revoked keys included), as the audit API's actor_name; null for another actor.</summary>
public sealed record JobView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("kind")] string Kind,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("reason")] string? Reason,
    [property: JsonPropertyName("executor")] string Executor,
    [property: JsonPropertyName("executor_reference")] string? ExecutorReference,
    [property: JsonPropertyName("arguments")] JobArgumentsView Arguments,
    [property: JsonPropertyName("pid")] int? Pid,
    [property: JsonPropertyName("exit_code")] int? ExitCode,
    [property: JsonPropertyName("submitted_at")] DateTimeOffset SubmittedAt,
    [property: JsonPropertyName("started_at")] DateTimeOffset? StartedAt,
    [property: JsonPropertyName("ended_at")] DateTimeOffset? EndedAt,
    [property: JsonPropertyName("cancel_requested_at")] DateTimeOffset? CancelRequestedAt,
    [property: JsonPropertyName("cancel_requested_by")] string? CancelRequestedBy,
    [property: JsonPropertyName("cancel_requested_by_name")] string? CancelRequestedByName,
    [property: JsonPropertyName("submitted_by")] string SubmittedBy,
    [property: JsonPropertyName("submitted_by_name")] string? SubmittedByName,
    [property: JsonPropertyName("log_file")] string LogFile,
    [property: JsonPropertyName("last_step")] LastStepView? LastStep,
    [property: JsonPropertyName("slurm")] SlurmView? Slurm)
{
    [JsonPropertyName("object")] public string Object => "job";

    /// <summary>The job as <paramref name="surface"/> shows it (the API, or `jobs show --json`):
    /// its reason's hints in that surface's words (JobLog.ReasonOn), the keys that acted by their <paramref name="names"/>.</summary>
    public static JobView From(Job job, Surface surface, ActorNames names) => new(job.Id, job.Kind, job.State.WireName(), JobLog.ReasonOn(job, surface, TrainConfig.Keys), job.Executor, job.ExecutorReference,
        new JobArgumentsView(job.Arguments.Config, job.Arguments.Data, job.Arguments.Out, job.Arguments.Overrides.ToDictionary(o => o.Key, o => o.Value),
            job.Arguments.Resume, job.Arguments.InitFrom, job.Resources?.Partition, job.Resources?.Time, job.Resources?.Ranks, job.Resources?.CpusPerRank)
        { InitFromVersion = job.Arguments.InitFromVersion },
        job.Pid, job.ExitCode, job.SubmittedAt, job.StartedAt, job.EndedAt, job.CancelRequestedAt, job.CancelRequestedBy, names.NameOf(job.CancelRequestedBy), job.SubmittedBy, names.NameOf(job.SubmittedBy), job.LogFile,
        MetricsLog.LastTrainingStep(job.Arguments.Out) is { } last ? new LastStepView(last.Step, last.Loss) : null,
        SlurmJobId(job) is { } id ? SlurmView.From(job.Slurm ?? new SlurmStatus(id)) : null);

    /// <summary>The Slurm job id of a Slurm job handed to Slurm; null for others.</summary>
    public static string? SlurmJobId(Job job) => job.Executor == SlurmJobExecutor.ExecutorName ? job.ExecutorReference : null;
}

/// <summary>What Slurm said of a Slurm job as it was read (see <see cref="SlurmStatus"/>), or, once
/// it has ended, as it was seen to end (all but its id null where Slurm no longer knew it then, or
/// for a job that ended before this was kept); where Slurm could not be asked, all but its id null,
/// <see cref="Unreachable"/> saying why.</summary>
public sealed record SlurmView(
    [property: JsonPropertyName("job_id")] string JobId,
    [property: JsonPropertyName("state")] string? State,
    [property: JsonPropertyName("reason")] string? Reason,
    [property: JsonPropertyName("partition")] string? Partition,
    [property: JsonPropertyName("time_limit")] string? TimeLimit,
    [property: JsonPropertyName("nodes")] string? Nodes,
    [property: JsonPropertyName("ranks")] int? Ranks,
    [property: JsonPropertyName("cpus_per_rank")] int? CpusPerRank,
    [property: JsonPropertyName("unreachable")] string? Unreachable,
    [property: JsonPropertyName("elapsed")] string? Elapsed)
{
    public static SlurmView From(SlurmStatus slurm) =>
        new(slurm.JobId, slurm.State, slurm.Reason, slurm.Partition, slurm.TimeLimit, slurm.Nodes, slurm.Ranks, slurm.CpusPerRank, slurm.Unreachable, slurm.Elapsed);
}

/// <summary>GET /api/jobs: a page of the jobs, newest first, whether more follow it (<see cref="HasMore"/>:
/// asked for with after=the last one's id), and what POST /api/jobs takes here
/// (<see cref="Submissions"/>, null where the server takes no jobs), so that a client such as the
/// dashboard offers a submission only where one can be made, with the paths and executors it may name.</summary>
public sealed record JobListResponse(
    [property: JsonPropertyName("data")] IReadOnlyList<JobView> Data,
    [property: JsonPropertyName("has_more")] bool HasMore,
    [property: JsonPropertyName("submissions")] JobSubmissionsView? Submissions)
{
    [JsonPropertyName("object")] public string Object => "list";
}

/// <summary>Where a submission's paths must lie (serve's --jobs-root, its links followed), the
/// executors it may name (serve's --jobs-executor), the first taken where it names none, and the
/// configs it is offered (<see cref="JobsRoot.Configs"/>: the root's configs/*.json, whole paths, read
/// at each listing; empty where there are none), which a client such as the dashboard's form offers
/// as choices, any other path beneath the root still taken.</summary>
public sealed record JobSubmissionsView(
    [property: JsonPropertyName("root")] string Root,
    [property: JsonPropertyName("executors")] IReadOnlyList<string> Executors,
    [property: JsonPropertyName("configs")] IReadOnlyList<string> Configs);

/// <summary>The last training step the job's metrics.jsonl records (what `stratus jobs list` shows).</summary>
public sealed record LastStepView(
    [property: JsonPropertyName("step")] long Step,
    [property: JsonPropertyName("train_loss")] double TrainLoss);

public static class JobsEndpoints
{
    public const string Prefix = "/api/jobs";

    /// <param name="stratusCommand">The command that runs the Stratus CLI, whose `jobs supervise`
    /// runs each job (the serving CLI's own).</param>
    /// <param name="root">The folder submissions' paths must be under; null: submissions are refused.</param>
    /// <param name="executors">The executors submissions may run under (serve's --jobs-executor),
    /// the first where a request names none.</param>
    public static IEndpointRouteBuilder MapJobs(this IEndpointRouteBuilder endpoints, IReadOnlyList<string> stratusCommand, JobsRoot? root, IReadOnlyList<string> executors)
    {
        var jobs = endpoints.MapGroup(Prefix).RequireStratusScope(ApiKeyScopes.Training);
        // One service for the server's life, opened on first use (the data directory's database).
        JobService? opened = null;
        JobService Service(HttpContext http) =>
            opened ??= JobService.Open(http.RequestServices.GetRequiredService<StratusTrust>().DataDirectory, stratusCommand);

        jobs.MapGet("", async (HttpContext http) =>
        {
            // OpenAI's paging of its lists (fine-tuning jobs, files): limit, and after the last id a page listed.
            var limit = (int)QueryNumber(http, "limit", SqlJobStore.MaxPage, $"how many jobs to answer, 1 to {SqlJobStore.MaxPage}", 1, SqlJobStore.MaxPage);
            var after = http.Request.Query["after"] is { Count: > 0 } given
                ? given.Count == 1 ? given[0]! : throw new TrustUserException("'after' must be given once: the id of the last job a page listed.") { Param = "after" }
                : null;
            var page = Service(http).List(limit, after);
            var names = await Names(http);
            var submissions = root is null ? null : new JobSubmissionsView(root.Folder, executors, root.Configs());
            return Json(new JobListResponse([.. page.Jobs.Select(job => JobView.From(job, Surface.Api, names))], page.HasMore, submissions));
        });
        jobs.MapGet("/{id}", async (HttpContext http, string id) =>
        {
            var job = Service(http).Get(id);
            return Json(JobView.From(job, Surface.Api, await Names(http)));
        });
        jobs.MapPost("", async Task<IResult> (HttpContext http, CancellationToken ct) =>
        {
            if (root is null)
                return OpenAIErrors.Create(StatusCodes.Status403Forbidden,
                    "This server takes no training jobs through its API: its operator starts it with --jobs-root <folder>, the folder jobs read their configs and data in and write their runs to.",
                    code: "jobs_not_enabled");
            var body = await TrustJson.ReadBodyAsync<SubmitJobRequest>(http.Request, ct);
            var executor = body.Executor ?? executors[0];
            if (!executors.Contains(executor))
                throw new TrustUserException($"'executor' {executor} is not one this server runs jobs with: its operator enabled {string.Join(" and ", executors)} (serve --jobs-executor); leave 'executor' out, or name one of those.") { Param = "executor" };
            var slurm = SlurmOptions.Requested(executor, body.Partition, body.Time, body.Ranks, body.CpusPerRank);
            string HostPath(string field, string path)
            {
                var full = AbsoluteHostPath(field, path);
                root.Confine(field, full);
                return full;
            }
            IReadOnlyList<KeyValuePair<string, string>> overrides = [.. (body.Overrides ?? []).Select(o => new KeyValuePair<string, string>(o.Key, o.Value.ValueKind == JsonValueKind.String ? o.Value.GetString()! : o.Value.GetRawText()))];
            // A registered model's reference, resolved once, here. Only a path that is not absolute is
            // one: never a folder of the server's working directory, which would shadow a registered name
            // (serve's and train's rule, ModelRegistry.Locate, is for a shell's folders).
            ModelSource? model = null;
            if (body.Resume is null && body.InitFrom is { } initFrom && !Path.IsPathFullyQualified(initFrom))
            {
                if (!ModelReference.TryParse(initFrom, out var reference))
                    throw new TrustUserException($"'init_from' must be an absolute path on the server's host or a registered model (NAME, NAME:VERSION, NAME@ALIAS), got '{initFrom}'.") { Param = "init_from" };
                try
                {
                    var version = http.RequestServices.GetRequiredService<StratusTrust>().Models.Resolve(reference!);
                    model = new ModelSource(version.Checkpoint.Directory, version);
                }
                catch (TrustUserException e)
                {
                    throw new TrustUserException(e.MessageOn, e) { Param = "init_from" };
                }
            }
            TrainArguments arguments;
            if (body.Resume is { } run)
            {
                // As train --resume: the run continues with its own config and folder; data only where its dataset moved.
                foreach (var (field, given) in new[] { ("config", body.Config), ("out", body.Out), ("init_from", body.InitFrom) })
                    if (given is not null)
                        throw new TrustUserException($"'{field}' cannot be given with 'resume': a run continues with its own config and folder (change settings such as max_iters with 'overrides').") { Param = field };
                arguments = new TrainArguments(null, body.Data is { } moved ? HostPath("data", moved) : null, HostPath("resume", run), overrides, Resume: true);
            }
            else
                arguments = new TrainArguments(body.Config is { } config ? ConfigFile(HostPath("config", config)) : null,
                    HostPath("data", body.Data ?? throw new TrustUserException("'data' is required: the dataset folder made by `stratus prepare`.") { Param = "data" }),
                    HostPath("out", body.Out ?? throw new TrustUserException("'out' is required: the run folder to train into.") { Param = "out" }),
                    overrides, InitFrom: model?.Path ?? (body.InitFrom is { } initFromFolder ? HostPath("init_from", initFromFolder) : null), InitFromVersion: model?.Version?.Reference,
                    InitFromManifest: model?.Version?.Checkpoint.ManifestSha256);
            var folder = arguments.Resume ? "resume" : "out";
            // Naming the job where one writes the folder; else a training outside the platform. Either
            // is the fault of the field that names the folder (the dashboard shows it there).
            try { Service(http).RequireNoJobWriting(arguments.Out); }
            catch (TrustUserException e) when (e.Conflict) { throw new TrustUserException(e.MessageOn, e) { Conflict = true, Param = folder }; }
            if (Trainer.RunInUse(arguments.Out) is { } inUse) throw new TrustUserException(inUse.MessageOn, inUse) { Conflict = true, Param = folder };
            // A resumed run reads the dataset its run.json records unless 'data' names another: a path
            // no request gave, which a run trained there from the command line may have put anywhere.
            // Checked before train's checks read it.
            if (arguments is { Resume: true, Data: null } && RecordedDataset(arguments.Out) is { } recorded
                && (recorded.Contains('\0') || !root.Holds(Path.GetFullPath(recorded))))
                throw new TrustUserException($"'resume' {arguments.Out} trains on {recorded}, the dataset its run.json records, which is outside {root.Folder}, the folder this server runs jobs in; give 'data' the dataset's folder under it.") { Param = "data" };
            TrainConfig checkedConfig;
            try
            {
                checkedConfig = arguments.Resume ? Trainer.CheckResume(arguments.Out, arguments.Overrides, arguments.Data)
                    : Trainer.CheckStart(arguments.Config, arguments.Overrides, arguments.Data!, arguments.Out, arguments.InitFrom);
            }
            catch (StratusUserException e) when (e.Param is { } key && key is not ("out" or "data" or "resume" or "init_from"))
            {
                // train's words are composed for the surface (Surface: 'overrides.max_iters', not --max-iters); param names the field that gave the key,
                // or for a resume, which takes no config, the override that would change it.
                var given = arguments.Overrides.FirstOrDefault(o => TrainConfig.KeyOf(o.Key) == key).Key;
                throw e.WithParam(given is not null ? Surface.OverridesPrefix + given : arguments.Resume ? Surface.OverridesPrefix + key : "config");
            }
            try
            {
                Trainer.CheckRanks(checkedConfig, slurm?.Ranks ?? 1);
            }
            catch (StratusUserException e)
            {
                throw e.WithParam("ranks");
            }
            arguments = http.RequestServices.GetRequiredService<StratusTrust>().Models.WithFolderVersion(arguments);
            var submitted = Service(http).Submit(arguments, Actor(http), executor, slurm);
            return Json(JobView.From(submitted, Surface.Api, await Names(http)), StatusCodes.Status201Created);
        });
        var metrics = new JobMetrics();
        jobs.MapGet("/{id}/metrics", async (HttpContext http, string id) =>
        {
            var job = Service(http).Get(id);
            var after = QueryNumber(http, "after", long.MinValue, "a step: the rows after it are answered");
            var limit = (int)QueryNumber(http, "limit", JobMetrics.MaxRows, $"how many rows of each kind to answer, 1 to {JobMetrics.MaxRows}", 1, JobMetrics.MaxRows);
            var cursor = http.Request.Query["cursor"] is { Count: > 0 } given ? given.Count == 1 ? given[0]! : string.Join(",", given.ToArray()) : null;
            if (cursor is not null) JobMetrics.CheckCursor(cursor);
            // Read with the request's cancellation: a client gone while another request reads the run stops waiting.
            return await metrics.ReadAsync(job.Arguments.Out, after, cursor, limit, http.RequestAborted);
        });
        jobs.MapPost("/{id}/cancel", async (HttpContext http, string id, CancellationToken ct) =>
        {
            // No body (or {}): a cancel, sent once however often it is asked for; "force": true ends the training at once.
            var hasBody = http.Request.ContentLength > 0 || (http.Request.ContentLength is null && http.Request.Headers.TransferEncoding.Count > 0);
            var force = hasBody && (await TrustJson.ReadBodyAsync<CancelJobRequest>(http.Request, ct)).Force == true;
            var cancelled = Service(http).Cancel(id, Actor(http), force).Job;
            return Json(JobView.From(cancelled, Surface.Api, await Names(http)));
        });
        return endpoints;
    }

    /// <summary>A path of the server's host, which a request must give whole: a relative one would
    /// be the server process's working folder's, which the caller neither sees nor chooses.</summary>
    static string AbsoluteHostPath(string field, string path) =>
        path.Contains('\0') ? throw new TrustUserException($"'{field}' holds a NUL character, which no path on the server's host can.") { Param = field }
        : Path.IsPathFullyQualified(path) ? Path.GetFullPath(path)
        : throw new TrustUserException($"'{field}' must be an absolute path on the server's host, got '{path}'; give the whole path (/srv/runs/...).") { Param = field };

    /// <summary>The dataset a run's run.json records; null where it names none, or the run is none
    /// (train's checks then say what is wrong with it, naming 'resume').</summary>
    static string? RecordedDataset(string run)
    {
        try { return Trainer.ReadRunFile(run).Dataset; }
        catch (StratusUserException) { return null; }
    }

    /// <summary>A config a request names, refused where it is a named pipe, a device or a socket. It
    /// is read while the request waits, as train reads a config: to its end, since one a shell's user
    /// names may be a pipe (`--config &lt;(...)`). A request names no pipe of its own, and opening one
    /// in the jobs root would wait for a writer for ever.</summary>
    static string ConfigFile(string path) => FileBytes.Irregular(path) is { } kind
        ? throw new TrustUserException($"'config' {path} is {kind}, not a regular file: give the config file itself.") { Param = "config" }
        : path;

    /// <summary>A whole-number query parameter, <paramref name="absent"/> where not given; another
    /// value is a 400 saying what it is for.</summary>
    static long QueryNumber(HttpContext http, string name, long absent, string meaning, long min = long.MinValue, long max = long.MaxValue)
    {
        var values = http.Request.Query[name];
        if (values.Count == 0) return absent;
        return values.Count == 1 && long.TryParse(values[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? number
            : throw new TrustUserException($"'{name}' must be a whole number{(min > long.MinValue ? $" from {min} to {max}" : "")} ({meaning}), got '{string.Join(",", values.ToArray())}'.") { Param = name };
    }

    static string Actor(HttpContext http) => http.GetStratusTrust().KeyId;

    static ValueTask<ActorNames> Names(HttpContext http) => ActorNames.ReadAsync(http.RequestServices.GetRequiredService<StratusTrust>().Keys, http.RequestAborted);

    static IResult Json<T>(T value, int status = StatusCodes.Status200OK) => Results.Json(value, TrustJson.Options, statusCode: status);
}
