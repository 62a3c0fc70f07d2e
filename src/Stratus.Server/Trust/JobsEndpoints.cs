// /api/jobs (training scope): training jobs through the job service (Platform/Jobs), as
// `stratus jobs` runs them: list, show, submit and cancel. A submission's arguments are checked as
// `stratus train` checks them (400 naming the problem, nothing recorded); a run folder a training
// writes is 409. Paths are the server's host's, absolute (a relative one is a 400), and beneath
// serve's --jobs-root (JobsRoot): a server started without one takes no submissions (403). They
// run under the executors serve's --jobs-executor enables (local unless it says otherwise; the first
// given where a request names none): a request that names another is a 400.
// Submissions and cancels are audited with the calling key's id as the actor. A job's metrics
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

/// <summary>A field it does not have is refused: one ignored ("resume": true) would start a new
/// run where the caller asked for something else.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record SubmitJobRequest(
    [property: JsonPropertyName("config")] string? Config,
    [property: JsonPropertyName("data")] string? Data,
    [property: JsonPropertyName("out")] string? Out,
    [property: JsonPropertyName("overrides")] Dictionary<string, JsonElement>? Overrides,
    [property: JsonPropertyName("executor")] string? Executor = null);

public sealed record JobArgumentsView(
    [property: JsonPropertyName("config")] string? Config,
    [property: JsonPropertyName("data")] string Data,
    [property: JsonPropertyName("out")] string Out,
    [property: JsonPropertyName("overrides")] IReadOnlyDictionary<string, string> Overrides);

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
    [property: JsonPropertyName("submitted_by")] string SubmittedBy,
    [property: JsonPropertyName("log_file")] string LogFile,
    [property: JsonPropertyName("last_step")] LastStepView? LastStep)
{
    [JsonPropertyName("object")] public string Object => "job";

    public static JobView From(Job job) => new(job.Id, job.Kind, job.State.WireName(), job.Reason, job.Executor, job.ExecutorReference,
        new JobArgumentsView(job.Arguments.Config, job.Arguments.Data, job.Arguments.Out, job.Arguments.Overrides.ToDictionary(o => o.Key, o => o.Value)),
        job.Pid, job.ExitCode, job.SubmittedAt, job.StartedAt, job.EndedAt, job.SubmittedBy, job.LogFile,
        MetricsLog.LastTrainingStep(job.Arguments.Out) is { } last ? new LastStepView(last.Step, last.Loss) : null);
}

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

        jobs.MapGet("", (HttpContext http) => Json(new ListResponse<JobView>([.. Service(http).List().Select(JobView.From)])));
        jobs.MapGet("/{id}", (HttpContext http, string id) => Json(JobView.From(Service(http).Get(id))));
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
            string HostPath(string field, string path)
            {
                var full = AbsoluteHostPath(field, path);
                root.Confine(field, full);
                return full;
            }
            var arguments = new TrainArguments(body.Config is { } config ? HostPath("config", config) : null,
                HostPath("data", body.Data ?? throw new TrustUserException("'data' is required: the dataset folder made by `stratus prepare`.")),
                HostPath("out", body.Out ?? throw new TrustUserException("'out' is required: the run folder to train into.")),
                [.. (body.Overrides ?? []).Select(o => new KeyValuePair<string, string>(o.Key, o.Value.ValueKind == JsonValueKind.String ? o.Value.GetString()! : o.Value.GetRawText()))]);
            if (Trainer.RunInUse(arguments.Out) is { } inUse) throw new TrustUserException(inUse) { Conflict = true, Param = "out" };
            try
            {
                Trainer.CheckStart(arguments.Config, arguments.Overrides, arguments.Data, arguments.Out);
            }
            catch (StratusUserException e) when (e.Param is { } key && key is not ("out" or "data"))
            {
                // train's words are the CLI's (--max-iters: ...); param names the field that gave the key.
                var given = arguments.Overrides.FirstOrDefault(o => TrainConfig.KeyOf(o.Key) == key).Key;
                throw e.WithParam(given is null ? "config" : $"overrides.{given}");
            }
            return Json(JobView.From(Service(http).Submit(arguments, Actor(http), executor)), StatusCodes.Status201Created);
        });
        jobs.MapGet("/{id}/metrics", (HttpContext http, string id) =>
        {
            var job = Service(http).Get(id);
            var after = QueryNumber(http, "after", long.MinValue, "a step: the rows after it are answered");
            var limit = (int)QueryNumber(http, "limit", JobMetrics.MaxRows, $"how many rows of each kind to answer, 1 to {JobMetrics.MaxRows}", 1, JobMetrics.MaxRows);
            return Json(new ListResponse<JsonObject>(JobMetrics.Read(job.Arguments.Out, after, limit)));
        });
        jobs.MapPost("/{id}/cancel", (HttpContext http, string id) => Json(JobView.From(Service(http).Cancel(id, Actor(http)))));
        return endpoints;
    }

    /// <summary>A path of the server's host, which a request must give whole: a relative one would
    /// be the server process's working folder's, which the caller neither sees nor chooses.</summary>
    static string AbsoluteHostPath(string field, string path) =>
        path.Contains('\0') ? throw new TrustUserException($"'{field}' holds a NUL character, which no path on the server's host can.")
        : Path.IsPathFullyQualified(path) ? Path.GetFullPath(path)
        : throw new TrustUserException($"'{field}' must be an absolute path on the server's host, got '{path}'; give the whole path (/srv/runs/...).");

    /// <summary>A whole-number query parameter, <paramref name="absent"/> where not given; another
    /// value is a 400 saying what it is for.</summary>
    static long QueryNumber(HttpContext http, string name, long absent, string meaning, long min = long.MinValue, long max = long.MaxValue)
    {
        var values = http.Request.Query[name];
        if (values.Count == 0) return absent;
        return values.Count == 1 && long.TryParse(values[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? number
            : throw new TrustUserException($"'{name}' must be a whole number{(min > long.MinValue ? $" from {min} to {max}" : "")} ({meaning}), got '{string.Join(",", values.ToArray())}'.");
    }

    static string Actor(HttpContext http) => http.GetStratusTrust().KeyId;

    static IResult Json<T>(T value, int status = StatusCodes.Status200OK) => Results.Json(value, TrustJson.Options, statusCode: status);
}

/// <summary>The rows of a run's metrics.jsonl for GET /api/jobs/{id}/metrics: bounded, as
/// TensorBoard bounds a scalar series, by keeping rows spread evenly over the run (the first and
/// the last always) where there are more than asked for. Training steps and evaluations are
/// thinned each on its own: evaluations are few, and a chart needs each of them.</summary>
public static class JobMetrics
{
    public const int MaxRows = 1000;

    /// <param name="after">Only rows of a later step (a chart's increments).</param>
    /// <param name="limit">At most this many training steps, and as many evaluations.</param>
    public static IReadOnlyList<JsonObject> Read(string runDirectory, long after, int limit)
    {
        // Nothing logged yet: a queued job, or a training still building its model.
        if (!File.Exists(Path.Combine(runDirectory, MetricsLog.FileName))) return [];
        try
        {
            // Counted, then read again for the rows chosen: a long run's file (hundreds of MB, a
            // parsed row a few hundred bytes) is read through twice rather than held.
            int trainings = 0, evaluations = 0;
            foreach (var (_, evaluation) in Rows(runDirectory, after))
                if (evaluation) evaluations++; else trainings++;
            var keptTrainings = Spread(trainings, limit);
            var keptEvaluations = Spread(evaluations, limit);
            var kept = new List<JsonObject>(keptTrainings.Count + keptEvaluations.Count);
            int training = 0, evaluated = 0;
            // In the file's order: an evaluation comes before the training step of its step. Rows
            // written since the count are left for the next request.
            foreach (var (entry, evaluation) in Rows(runDirectory, after))
            {
                if (evaluation ? keptEvaluations.Contains(evaluated++) : keptTrainings.Contains(training++)) kept.Add(entry);
                if (training >= trainings && evaluated >= evaluations) break;
            }
            return kept;
        }
        catch (StratusUserException e)
        {
            // The request is sound; the run's file is what is wrong.
            throw new TrustUserException($"The job's metrics cannot be read: {e.Message}.", e) { Conflict = true };
        }
    }

    /// <summary>The rows of a later step than <paramref name="after"/>, each said to be an
    /// evaluation or a training step. A last line being written is left out (MetricsLog.Entries),
    /// so a running job reads whole.</summary>
    static IEnumerable<(JsonObject Entry, bool Evaluation)> Rows(string runDirectory, long after)
    {
        foreach (var (line, entry) in MetricsLog.Entries(runDirectory))
        {
            long? step;
            // A loss that is no number is refused as `stratus plot` refuses it: JSON has no NaN or
            // infinity, and a browser reads 1e999 as an infinity that scales a chart to nothing.
            try { step = LossCurves.Points(entry)?.Step; }
            catch (FormatException e) { throw MetricsLog.Damaged(runDirectory, line, e.Message); }
            if (step > after) yield return (entry, entry.ContainsKey("val_loss"));
        }
    }

    /// <summary>The indices of <paramref name="limit"/> of <paramref name="count"/> rows, evenly
    /// spaced, the first and last among them.</summary>
    static HashSet<int> Spread(int count, int limit) =>
        count <= limit ? [.. Enumerable.Range(0, count)]
        : limit == 1 ? [count - 1]
        : [.. Enumerable.Range(0, limit).Select(k => (int)Math.Round(k * (count - 1) / (double)(limit - 1)))];
}
