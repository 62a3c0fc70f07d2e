// The dashboard in a real browser (Chromium through Playwright) against a real server: an
// operator opens /dashboard, a wrong key shows the API's refusal and the scope needed, the admin
// key shows the served model and live figures that move once a completion was served, a
// registered model's versions (in one request) and a job's row with its loss curve (every point
// within the axes; text from the API shown as text, never markup), times in UTC whatever the
// browser's zone, the audit's actors by their key's name, and the page runs under its Content
// Security Policy without a violation; a key revoked while the page is open stops its panels (no
// stream of refused requests), a rate-limited panel waits out the server's Retry-After (a tab
// shown again too, and a wall clock that steps neither cuts the wait short nor holds the tab back),
// a tab in the background asks nothing, a run resumed from an earlier checkpoint
// redraws its curve, a damaged run's file is said in its curve's place, and tick labels fit the chart.
// A job submitted from the jobs panel's form trains under the real CLI to its end, a field the API
// refuses is said beside it, a running job is cancelled after a confirming dialog (a refused cancel
// said in it; one being cancelled says "cancelling…", its button disabled), a run folder in use is said beside out or resume, a Slurm job's state and pending
// reason (an ended one's as Slurm last said it, with its run time), partition, time limit and nodes
// are shown, the Cancel button is within reach at 1280 and 800 px and keeps the focus across a
// refresh, the config field offers the jobs root's configs/ (one added at the next refresh), a job
// being cancelled by a key names that key, and a server that takes no jobs shows no form. A training
// key sees the training jobs alone (the admin panels' requests a 403 to it) and an inference key is
// told what the dashboard needs.
// Chromium is the system's (/usr/bin/chromium): Playwright's own download is not reachable
// everywhere, and .ci/run installs Debian's. A machine without it fails here, saying how to
// install it, rather than skipping a test that CI runs.
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;
using Stratus.Platform;
using Stratus.Platform.Jobs;
using Stratus.Server.Hosting;
using Stratus.Server.Tests;
using static Microsoft.Playwright.Assertions;

namespace Stratus.Browser.Tests;

/// <summary>The tiny model's server with its jobs API, as `stratus serve --jobs-root` has it: the
/// real CLI supervises the jobs the page submits, which train a tiny model on a tiny dataset
/// beneath the root.</summary>
public sealed class DashboardServer : IAsyncLifetime
{
    public string JobsRoot { get; } = Path.Combine(Path.GetTempPath(), "stratus-dashboard-jobs-" + Guid.NewGuid().ToString("N"));
    public TinyModelServer Server { get; }
    public DashboardServer() => Server = new() { JobsCommand = ["dotnet", Path.Combine(AppContext.BaseDirectory, "stratus.dll")], JobsRoot = JobsRoot };

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(JobsRoot);
        File.WriteAllText(Path.Combine(JobsRoot, "corpus.txt"), string.Concat(Enumerable.Range(0, 3000).Select(i => "abcdefgh ij\n"[i * 7 % 12])));
        Stratus.Data.DatasetPreparer.Prepare(Path.Combine(JobsRoot, "corpus.txt"), Path.Combine(JobsRoot, "data"), "char");
        File.WriteAllText(Path.Combine(JobsRoot, "tiny.json"), """
            { "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8, "batch_size": 2, "bias": false, "max_iters": 6,
              "lr_decay_iters": 6, "warmup_iters": 0, "eval_interval": 3, "eval_iters": 2, "log_interval": 1, "seed": 5 }
            """);
        await Server.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        // A test that failed midway leaves no training running on.
        var jobs = JobService.Open(Server.DataDir, ["/bin/true"]);
        foreach (var job in jobs.List().Jobs.Where(j => j.State is JobState.Queued or JobState.Running)) jobs.Cancel(job.Id, "tests");
        await Server.DisposeAsync();
        Directory.Delete(JobsRoot, recursive: true);
    }
}

public sealed class DashboardBrowserTests(DashboardServer server) : IClassFixture<DashboardServer>
{
    readonly TinyModelServer fixture = server.Server;
    readonly string jobsRoot = new Stratus.Server.Trust.JobsRoot(server.JobsRoot).Folder;

    const string Chromium = "/usr/bin/chromium";

    // Beyond Playwright's 5 s: the live panel refreshes every 2 s, and CI runs every test
    // project at once on two cores, Chromium's start among them.
    static DashboardBrowserTests() => SetDefaultExpectTimeout(15_000);

    [Fact]
    public async Task An_operator_sees_the_served_model_and_figures_that_move_and_a_wrong_key_is_explained()
    {
        // Markup where the API returns text: a registered model's description, a job's run folder.
        const string Markup = "<img src=x onerror=alert(1)>";
        ModelRegistry.Open(fixture.DataDir, RegistryCheckpoints.Instance).Register(fixture.RunFolder, TinyModelServer.ModelName, Markup, "production", "tests");
        var jobId = EndedJob(Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-run" + Markup));

        // As an operator types it: /dashboard redirects to the page.
        await using var opened = await OpenAsync("/dashboard");
        var page = opened.Page;
        var key = page.GetByLabel("API key", new() { Exact = true });
        var show = page.GetByRole(AriaRole.Button, new() { Name = "Show", Exact = true });
        var status = page.Locator("#key-status");

        // A key the server does not know: the API's message, and the scope the page needs.
        await key.FillAsync(ApiKeyFormat.Generate().Key);
        await show.ClickAsync();
        await Expect(status).ToContainTextAsync("Incorrect API key provided");
        await Expect(status).ToContainTextAsync("needs a key with the admin scope");
        Assert.Equal(0, await page.Locator("section.panel").CountAsync());

        // A key the dashboard's key creates: its audit entry names the actor's key.
        var auditedName = "dashboard-audited-" + Guid.NewGuid().ToString("N")[..8];
        using (var created = await fixture.Http.PostAsJsonAsync("/v1/admin/keys", new { name = auditedName, scopes = new[] { "inference" } }))
            created.EnsureSuccessStatusCode();
        Assert.True(ApiKeyFormat.TryGetId(fixture.ApiKey, out var actorId));

        await key.FillAsync(fixture.ApiKey);
        await show.ClickAsync();
        await Expect(page.Locator("#panel-models .model-id").First).ToHaveTextAsync(TinyModelServer.ModelName);
        var generated = page.Locator("#tokens-generated");
        await Expect(generated).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(@"^\d+$"));
        var before = long.Parse((await generated.TextContentAsync())!, System.Globalization.CultureInfo.InvariantCulture);

        using var completion = await fixture.Http.PostAsJsonAsync("/v1/completions", new { model = TinyModelServer.ModelName, prompt = "ab", max_tokens = 4, temperature = 0 });
        completion.EnsureSuccessStatusCode();
        var served = (long)JsonNode.Parse(await completion.Content.ReadAsStringAsync())!["usage"]!["completion_tokens"]!;
        Assert.True(served > 0);
        // The live panel refreshes every 2 s.
        await Expect(generated).ToHaveTextAsync((before + served).ToString(System.Globalization.CultureInfo.InvariantCulture));

        // The registry: the served name's versions, its description as text.
        // (Other tests of this class register names of their own in the same data directory.)
        await Expect(page.Locator("#panel-registry .registered-name").GetByText(TinyModelServer.ModelName, new() { Exact = true }).First).ToBeVisibleAsync();
        await Expect(page.Locator("#panel-registry table")).ToContainTextAsync(Markup);
        await Expect(page.Locator("#registry-served")).ToContainTextAsync(TinyModelServer.ModelName);
        // Its versions came with the list: no request per registered name.
        lock (opened.ApiRequests)
            Assert.DoesNotContain(opened.ApiRequests, url => new Uri(url).AbsolutePath.StartsWith("/api/models/", StringComparison.Ordinal));
        // The job: its row (state, last step and loss, out folder as text) and its loss curves.
        var row = page.Locator("#panel-jobs tr", new() { HasText = jobId });
        await Expect(row).ToContainTextAsync("succeeded");
        await Expect(row).ToContainTextAsync("2.5000");
        await Expect(row).ToContainTextAsync("job-run" + Markup);
        await Expect(page.Locator("#job-curve svg path[data-series='train loss']")).ToHaveAttributeAsync("d", new System.Text.RegularExpressions.Regex(@"^M[\d.]+,-?[\d.]+( L[\d.]+,-?[\d.]+){3}$"));
        await Expect(page.Locator("#job-curve svg path[data-series='val loss']")).ToHaveCountAsync(1);
        await AssertCurveWithinItsAxesAsync(page, steps: (0, 3), losses: (2.5, 4.2));
        Assert.Equal(0, await page.Locator("#panels img").CountAsync());

        // Every panel drawn, then axe-core's rules (WCAG 2.1 A and AA) over the whole page.
        await Expect(page.Locator("#panel-audit table")).ToBeVisibleAsync();
        await Expect(page.Locator("#panel-keys table")).ToBeVisibleAsync();
        // The key that acted by its name, its id beside it.
        await Expect(page.Locator("#panel-audit tr", new() { HasText = auditedName })).ToContainTextAsync($"tests ({actorId})");
        await AssertTimesInUtcAsync(page);
        var axe = await page.RunAxe(new Deque.AxeCore.Commons.AxeRunOptions
        {
            RunOnly = new Deque.AxeCore.Commons.RunOnlyOptions { Type = "tag", Values = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
        });
        Assert.True(axe.Violations.Length == 0, "accessibility: " + string.Join("; ", axe.Violations.Select(v => $"{v.Id} ({v.Impact}): {v.Help} at {string.Join(", ", v.Nodes.Select(n => n.Target))}")));

        // The key is this tab's alone: never in the address, nor in storage that outlives the tab.
        Assert.DoesNotContain(fixture.ApiKey, page.Url, StringComparison.Ordinal);
        Assert.Equal(fixture.ApiKey, await page.EvaluateAsync<string>("() => sessionStorage.getItem('stratus-dashboard-key')"));
        Assert.Equal(0, await page.EvaluateAsync<int>("() => localStorage.length"));
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_key_revoked_while_the_page_is_open_stops_the_panels_and_says_why()
    {
        var name = "dashboard-revoked-" + Guid.NewGuid().ToString("N")[..8];
        var secret = (await fixture.Keys.CreateAsync(name, ApiKeyScopes.Admin, RateLimits.Unlimited, "tests")).Secret;
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, secret);
        await DrawnAsync(page);

        using var revoked = await fixture.Http.DeleteAsync($"/v1/admin/keys/{name}");
        revoked.EnsureSuccessStatusCode();
        // The live panel asks every 2 s: its first refusal ends the page's use of the key.
        await Expect(page.Locator("#key-status")).ToContainTextAsync("the key was revoked");
        await Expect(page.Locator("#key-status")).ToContainTextAsync("needs a key with the admin scope");
        Assert.Equal(0, await page.Locator("section.panel").CountAsync());
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('stratus-dashboard-key')"));
        // No more refused requests.
        await AssertAsksNothingMoreAsync(opened);
    }

    /// <summary>A key without the admin scope sees what its scopes allow (GET /api/key's
    /// granted_scopes): a training key the training jobs, listed and submitted, and no admin panel,
    /// and the page asks for nothing the server refuses it, which refuses those panels' requests with
    /// a 403 in the API's error format. A key no panel is for (inference) is told what the dashboard needs.</summary>
    [Fact]
    public async Task A_training_key_sees_the_training_jobs_alone_and_an_inference_key_is_told_what_is_needed()
    {
        var trainer = await fixture.Keys.CreateAsync("dashboard-trainer-" + Guid.NewGuid().ToString("N")[..8], ApiKeyScopes.Training, RateLimits.Unlimited, "tests");
        await using var opened = await OpenAsync();
        var page = opened.Page;
        var refused = new List<string>();
        page.Response += (_, response) => { if (response.Status >= 400) lock (refused) refused.Add($"{response.Status} {response.Url}"); };
        await ShowAsync(page, trainer.Secret);
        await DrawnAsync(page);
        Assert.Equal(["panel-jobs"], await page.Locator("section.panel").EvaluateAllAsync<string[]>("panels => panels.map(p => p.id)"));
        await Expect(page.Locator("#job-submit")).ToBeVisibleAsync();
        await Expect(page.Locator("#key-status")).ToHaveTextAsync(
            $"Key {trainer.Key.Name} (training) may see training jobs; the other panels need the admin scope. The key is kept in this tab only.");
        lock (refused) Assert.Empty(refused);
        Assert.Empty(opened.Violations);

        using var client = fixture.AnonymousClient();
        client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", trainer.Secret);
        foreach (var path in new[] { "/api/serving", "/v1/admin/keys", "/v1/admin/audit", "/v1/usage", "/api/models" })
        {
            using var response = await client.GetAsync(path);
            var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
            Assert.Equal((System.Net.HttpStatusCode.Forbidden, "insufficient_permissions"), (response.StatusCode, (string?)error["code"]));
            Assert.Contains("lacks the 'admin' scope", (string?)error["message"]);
        }

        var inference = await fixture.Keys.CreateAsync("dashboard-inference-" + Guid.NewGuid().ToString("N")[..8], ApiKeyScopes.Inference, RateLimits.Unlimited, "tests");
        await page.GetByRole(AriaRole.Button, new() { Name = "Forget key" }).ClickAsync();
        await page.GetByLabel("API key", new() { Exact = true }).FillAsync(inference.Secret);
        await page.GetByRole(AriaRole.Button, new() { Name = "Show", Exact = true }).ClickAsync();
        await Expect(page.Locator("#key-status")).ToHaveTextAsync($"Key {inference.Key.Name} (inference) may see no panel of this dashboard. " +
            "The dashboard needs a key with the admin scope (every panel), or the training scope (the training jobs).");
        Assert.Equal(0, await page.Locator("section.panel").CountAsync());
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('stratus-dashboard-key')"));
    }

    [Fact]
    public async Task A_rate_limited_panel_waits_as_long_as_the_server_asks_and_says_so()
    {
        // One request a minute: the page's check of the key, after which every panel is refused.
        var secret = (await fixture.Keys.CreateAsync("dashboard-limited-" + Guid.NewGuid().ToString("N")[..8], ApiKeyScopes.Admin, new RateLimits(1, 0), "tests")).Secret;
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, secret);
        // Every panel says when it asks again.
        var panels = await page.Locator("section.panel").CountAsync();
        var waiting = page.Locator("section.panel .error", new() { HasTextRegex = new System.Text.RegularExpressions.Regex(@"^Rate limit reached.* Asking again in \d+ s\.$") });
        await Expect(waiting).ToHaveCountAsync(panels);
        // The key is still the page's: a limit is waited out, not a reason to forget the key.
        Assert.Equal(secret, await page.EvaluateAsync<string>("() => sessionStorage.getItem('stratus-dashboard-key')"));
        // They wait for the minute's window rather than ask every 2 s.
        await AssertAsksNothingMoreAsync(opened);
    }

    [Fact]
    public async Task At_1280_pixels_the_keys_table_shows_every_column_and_the_page_asks_for_nothing_it_is_refused()
    {
        await fixture.Keys.CreateAsync("dashboard-expiring-" + Guid.NewGuid().ToString("N")[..8], ApiKeyScopes.Inference | ApiKeyScopes.Training,
            new RateLimits(600, 100_000), "tests", ApiKeyExpiry.Parse(null, "30d", "expires_at", "expires_in"));
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await page.SetViewportSizeAsync(1280, 800);
        var refused = new List<string>();
        page.Response += (_, response) => { if (response.Status >= 400) lock (refused) refused.Add($"{response.Status} {response.Url}"); };
        await page.ReloadAsync();
        await ShowAsync(page, fixture.ApiKey);
        var keys = page.Locator("#panel-keys .table-scroll");
        await Expect(keys.Locator("table")).ToContainTextAsync("dashboard-expiring-");
        // Before, the Expires column lay beyond the panel's right edge, behind a scroll bar.
        Assert.True(await keys.EvaluateAsync<bool>("e => e.scrollWidth <= e.clientWidth"),
            $"the keys table is {await keys.EvaluateAsync<int>("e => e.scrollWidth")} px wide in a panel of {await keys.EvaluateAsync<int>("e => e.clientWidth")} px");
        // Nothing the page asks for is refused: each refusal is an error in the browser's console.
        // (Headless Chromium asks for no icon; DashboardTests checks the page names its own.)
        Assert.Empty(refused);
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task The_loss_curve_shown_first_is_of_the_newest_job_that_has_steps()
    {
        var withSteps = EndedJob(Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-with-steps-" + Guid.NewGuid().ToString("N")[..8]));
        // Newer, and no step logged: a job still queued, or one that failed before its first step.
        var empty = Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-without-steps-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(empty);
        var newest = JobService.Open(fixture.DataDir, ["/bin/true"]).Submit(new TrainArguments(null, empty, empty, []), "tests").Id;
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        await Expect(page.Locator("#panel-jobs tr", new() { HasText = newest })).ToBeVisibleAsync();
        // Before, the newest job's "has logged no step yet" stood where a curve could be.
        await Expect(page.Locator("#job-picker")).ToHaveValueAsync(withSteps);
        await Expect(page.Locator("#job-curve svg path[data-series='train loss']")).ToHaveCountAsync(1);
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task The_version_a_model_is_served_from_is_marked_and_a_folder_under_a_registered_name_is_not_taken_for_one()
    {
        var name = "marked-" + Guid.NewGuid().ToString("N")[..8];
        var registry = ModelRegistry.Open(fixture.DataDir, RegistryCheckpoints.Instance);
        registry.Register(fixture.RunFolder, name, null, null, "tests");
        registry.Register(fixture.RunFolder, name, null, "production", "tests");
        await using var opened = await OpenAsync();
        var page = opened.Page;
        // As a server started with `--model live=NAME@production` and `--model NAME-folder` answers.
        await page.RouteAsync("**/v1/models", route => route.FulfillAsync(new()
        {
            ContentType = "application/json",
            Body = JsonSerializer.Serialize(new
            {
                @object = "list",
                data = new object[]
                {
                    new { id = "live", @object = "model", owned_by = "stratus", registered_version = name + ":2" },
                    new { id = TinyModelServer.ModelName, @object = "model", owned_by = "stratus" },
                },
            }),
        }));
        await ShowAsync(page, fixture.ApiKey);
        var served = page.Locator("#registry-served");
        await Expect(served).ToContainTextAsync($"Served here: {name}:2 as live.");
        // Version 2 is served, version 1 of the same name is not (before: both read "its name").
        await Expect(page.Locator("#panel-registry tr", new() { HasText = name }).Filter(new() { HasText = "production" })).ToContainTextAsync("this version, as live");
        await Expect(page.Locator("#panel-registry tr", new() { HasText = name }).Filter(new() { HasNotText = "production" })).Not.ToContainTextAsync("this version");
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_tab_in_the_background_asks_nothing_and_asks_at_once_when_shown_again()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        await DrawnAsync(page);
        // As the browser says so of a tab put in the background (or a window minimised).
        await SetHiddenAsync(page, true);
        await AssertAsksNothingMoreAsync(opened);
        // Shown again, every panel asks at once: the registry's 30 s are not waited out.
        await page.RunAndWaitForRequestAsync(() => SetHiddenAsync(page, false),
            request => new Uri(request.Url).AbsolutePath == "/api/models", new() { Timeout = 10_000 });
        await Expect(page.Locator("#tokens-generated")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(@"^\d+$"));
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_retry_after_shorter_than_the_panels_period_is_waited_out_when_the_tab_is_shown_again()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await RefuseTheRegistrysFirstRequestAsync(page);
        await ShowAsync(page, fixture.ApiKey);
        await Expect(page.Locator("#panel-registry .error")).ToContainTextAsync("Rate limit reached");
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        // Before, shown again, it asked at once: a Retry-After was kept only where it outlasted the period.
        int Asked() { lock (opened.ApiRequests) return opened.ApiRequests.Count(url => new Uri(url).AbsolutePath == "/api/models"); }
        await page.WaitForTimeoutAsync(4_500);
        Assert.Equal(1, Asked());
        Assert.Empty(opened.Violations);
    }

    /// <summary>Answers the registry panel's first request 429 with a Retry-After of 20 s (less than
    /// its 30 s period), and lets the later ones through to the server.</summary>
    static Task RefuseTheRegistrysFirstRequestAsync(IPage page)
    {
        var refused = 0;
        return page.RouteAsync("**/api/models", async route =>
        {
            if (Interlocked.Increment(ref refused) == 1)
                await route.FulfillAsync(new()
                {
                    Status = 429,
                    Headers = new Dictionary<string, string> { ["Retry-After"] = "20" },
                    ContentType = "application/json",
                    Body = "{\"error\":{\"message\":\"Rate limit reached for requests.\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
                });
            else await route.ContinueAsync();
        });
    }

    /// <summary>How long a panel waits is measured by the page's monotonic clock, not by the wall
    /// clock, which steps (NTP, a virtual machine resumed): stepped forward, a tab shown again asked
    /// before the server's Retry-After had passed; stepped back, it asked nothing for as long as the step.</summary>
    [Fact]
    public async Task A_wall_clock_that_steps_neither_cuts_short_a_retry_after_nor_holds_back_a_tab_shown_again()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        // The page's Date, timers and performance.now Playwright's, which run in real time; its wall
        // clock alone is stepped below.
        await page.Clock.InstallAsync();
        await RefuseTheRegistrysFirstRequestAsync(page);
        await ShowAsync(page, fixture.ApiKey);
        await Expect(page.Locator("#panel-registry .error")).ToContainTextAsync("Rate limit reached");
        await Expect(page.Locator("#panel-keys .updated")).ToContainTextAsync("Updated");
        int Asked(string path) { lock (opened.ApiRequests) return opened.ApiRequests.Count(url => new Uri(url).AbsolutePath == path); }

        // An hour on: the registry's 20 s are still waited out.
        await page.Clock.SetSystemTimeAsync(DateTime.UtcNow.AddHours(1));
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        await page.WaitForTimeoutAsync(4_500);
        Assert.Equal(1, Asked("/api/models"));

        // An hour back: the keys' panel, drawn and waiting out its 30 s, asks at once when shown again.
        await page.Clock.SetSystemTimeAsync(DateTime.UtcNow.AddHours(-1));
        await SetHiddenAsync(page, true);
        await page.RunAndWaitForRequestAsync(() => SetHiddenAsync(page, false),
            request => new Uri(request.Url).AbsolutePath == "/v1/admin/keys", new() { Timeout = 10_000 });
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_run_resumed_from_an_earlier_checkpoint_redraws_its_curve_from_the_rewritten_file()
    {
        var run = Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-resumed-" + Guid.NewGuid().ToString("N")[..8]);
        var id = EndedJob(run);
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        await page.Locator("#job-picker").SelectOptionAsync(id);
        var caption = page.Locator("#job-curve figcaption");
        await Expect(caption).ToContainTextAsync("training loss 2.5000 at step 3");
        // `stratus train --resume` from step 2's checkpoint: the steps from 2 on are written again.
        using (var resumed = new Stratus.Training.MetricsLog(run, 2))
            resumed.Write(new JsonObject { ["step"] = 2, ["train_loss"] = 3.25, ["lr"] = 0.001 });
        // A refresh now, rather than at the end of the panel's 10 s, which the expect timeout's 15 s
        // left too little of on a loaded machine. A refresh already under way when the tab is shown
        // again schedules the next a period after it ends: 30 s covers that one too.
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        // Before, an ended job's curve was never asked for again, and a running one's increments
        // (after its last step held) left the old run's steps 2 and 3 in place.
        await Expect(caption).ToContainTextAsync("training loss 3.2500 at step 2", new() { Timeout = 30_000 });
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_damaged_metrics_file_says_so_in_place_of_the_curve_and_the_jobs_stay_listed()
    {
        var older = EndedJob(Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-sound-" + Guid.NewGuid().ToString("N")[..8]));
        var run = Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-damaged-" + Guid.NewGuid().ToString("N")[..8]);
        var damaged = EndedJob(run);
        var metrics = Path.Combine(run, "metrics.jsonl");
        File.WriteAllText(metrics, "{\"step\":0,\"train_loss\":4.2}\n{\"step\":1,\"trai\n{\"step\":2,\"train_loss\":3.1}\n");
        try
        {
            await using var opened = await OpenAsync();
            var page = opened.Page;
            await ShowAsync(page, fixture.ApiKey);
            // Before, the 409 took the panel's place: no jobs listed, no picker to choose another.
            await Expect(page.Locator("#job-curve")).ToContainTextAsync("line 2 of");
            await Expect(page.Locator("#panel-jobs tr", new() { HasText = damaged })).ToBeVisibleAsync();
            await page.Locator("#job-picker").SelectOptionAsync(older);
            await Expect(page.Locator("#job-curve svg path[data-series='train loss']")).ToHaveCountAsync(1);
            Assert.Empty(opened.Violations);
        }
        finally
        {
            // Whole again: the fixture's server is shared, and a test after this one that opens the
            // newest job's curve would otherwise count its 409 as a refused request.
            File.WriteAllText(metrics, "{\"step\":0,\"train_loss\":4.2}\n{\"step\":2,\"train_loss\":3.1}\n");
        }
    }

    [Theory]
    [InlineData(5000, 4.2, 1.5)]
    [InlineData(100000, 3e-9, 1e-9)]
    [InlineData(2000, 3.2e9, 1.1e9)]
    public async Task A_long_runs_curve_shows_every_tick_label_whole(int lastStep, double first, double last)
    {
        // A run of 5,000 steps had its last step's label cut by the chart's right edge, and losses
        // of many digits theirs by its left edge.
        var run = Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-long-" + Guid.NewGuid().ToString("N")[..8]);
        var id = EndedJob(run);
        File.WriteAllText(Path.Combine(run, "metrics.jsonl"), string.Concat(Enumerable.Range(0, 11).Select(i =>
            string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{{\"step\":{lastStep / 10 * i},\"train_loss\":{first + (last - first) * i / 10}}}\n"))));
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        await page.Locator("#job-picker").SelectOptionAsync(id);
        var chart = page.Locator("#job-curve svg.loss-chart");
        await Expect(page.Locator("#job-curve figcaption")).ToContainTextAsync($"at step {lastStep}");
        var width = await chart.EvaluateAsync<double>("c => c.viewBox.baseVal.width");
        var labels = await chart.Locator("text.tick-step, text.tick-loss").EvaluateAllAsync<double[][]>("ts => ts.map(t => { const b = t.getBBox(); return [b.x, b.x + b.width]; })");
        Assert.NotEmpty(labels);
        Assert.All(labels, l => Assert.True(l[0] >= 0 && l[1] <= width, $"a label spans {l[0]:0.#} to {l[1]:0.#} of a chart {width} wide"));
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_job_submitted_from_the_form_appears_and_runs_to_its_end()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        var form = page.Locator("#job-submit");
        // Where submissions must lie, as the server's list says.
        await Expect(form).ToContainTextAsync(jobsRoot);
        await form.GetByLabel("Config", new() { Exact = true }).FillAsync(Path.Combine(jobsRoot, "tiny.json"));
        await form.GetByLabel("Data", new() { Exact = true }).FillAsync(Path.Combine(jobsRoot, "data"));
        await form.GetByLabel("Overrides", new() { Exact = true }).FillAsync("max_iters=4\nlr_decay_iters=4");
        var run = Path.Combine(jobsRoot, "run-" + Guid.NewGuid().ToString("N")[..8]);
        var output = form.GetByLabel("Out", new() { Exact = true });
        await output.FillAsync(run);
        // Submitted from the keyboard.
        await output.PressAsync("Enter");
        var said = page.Locator("#job-submit-status");
        await Expect(said).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(@"^Submitted job-\S+ \(queued\)\.$"));
        var id = (await said.TextContentAsync())!.Split(' ')[1];
        var row = page.Locator("#panel-jobs tr", new() { HasText = id });
        await Expect(row).ToContainTextAsync(run);
        // The training runs under the real supervisor to its end, its steps logged.
        await Expect(row).ToContainTextAsync("succeeded", new() { Timeout = 180_000 });
        await Expect(row.Locator("td").Nth(6)).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(@"^\d+$"));
        Assert.Equal(0, await row.GetByRole(AriaRole.Button).CountAsync());
        Assert.Equal("tiny.json", Path.GetFileName((string)JsonNode.Parse(await fixture.Http.GetStringAsync($"/api/jobs/{id}"))!["arguments"]!["config"]!));
        Assert.Empty(opened.Violations);
    }

    /// <summary>The form offers the configs of the jobs root's configs/ folder (GET /api/jobs's
    /// submissions.configs) as the config field's choices, another path still typed; a config added
    /// there is offered at the panel's next refresh, the form kept as it was typed.</summary>
    [Fact]
    public async Task The_config_field_offers_the_jobs_roots_configs_and_one_added_at_the_next_refresh()
    {
        var configs = Directory.CreateDirectory(Path.Combine(server.JobsRoot, "configs")).FullName;
        var name = "offered-" + Guid.NewGuid().ToString("N")[..8];
        File.WriteAllText(Path.Combine(configs, name + "-a.json"), "{}");
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        var config = page.Locator("#job-submit").GetByLabel("Config", new() { Exact = true });
        var choices = page.Locator($"#{await config.GetAttributeAsync("list")} option[value*='{name}']");
        await Expect(choices).ToHaveCountAsync(1);
        Assert.Equal(Path.Combine(jobsRoot, "configs", name + "-a.json"), await choices.First.GetAttributeAsync("value"));
        var data = page.Locator("#job-submit").GetByLabel("Data", new() { Exact = true });
        await data.FillAsync(Path.Combine(jobsRoot, "data"));
        await config.FillAsync(Path.Combine(jobsRoot, "tiny.json"));

        File.WriteAllText(Path.Combine(configs, name + "-b.json"), "{}");
        await Expect(choices).ToHaveCountAsync(2, new() { Timeout = 30_000 });
        Assert.Equal(Path.Combine(jobsRoot, "configs", name + "-b.json"), await choices.Nth(1).GetAttributeAsync("value"));
        await Expect(data).ToHaveValueAsync(Path.Combine(jobsRoot, "data"));
        await Expect(config).ToHaveValueAsync(Path.Combine(jobsRoot, "tiny.json"));
        Assert.Empty(opened.Violations);
    }

    /// <summary>After a job is taken, its run folder is cleared (Enter again would submit into the
    /// same one, a 409) and focused for the next; what the next run likely shares stays.</summary>
    [Fact]
    public async Task A_submitted_jobs_out_and_resume_are_cleared_and_out_focused_for_the_next()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await RouteJobsAsync(page, ["local"]);
        string? posted = null;
        await page.RouteAsync("**/api/jobs", async route =>
        {
            if (route.Request.Method != "POST")
            {
                await route.FallbackAsync();
                return;
            }
            posted = route.Request.PostData;
            await route.FulfillAsync(new() { Status = 201, ContentType = "application/json", Body = JsonSerializer.Serialize(FakeJob("job-taken", "local", "queued", null)) });
        });
        await ShowAsync(page, fixture.ApiKey);
        var form = page.Locator("#job-submit");
        var field = (string label) => form.GetByLabel(label, new() { Exact = true });
        await field("Config").FillAsync("/srv/jobs/tiny.json");
        await field("Data").FillAsync("/srv/jobs/data");
        await field("Resume").FillAsync("/srv/jobs/runs/old");
        await field("Overrides").FillAsync("max_iters=4");
        await field("Out").FillAsync("/srv/jobs/runs/new");
        await field("Out").PressAsync("Enter");
        await Expect(page.Locator("#job-submit-status")).ToHaveTextAsync("Submitted job-taken (queued).");
        Assert.Contains("/srv/jobs/runs/new", posted);
        await Expect(field("Out")).ToHaveValueAsync("");
        await Expect(field("Resume")).ToHaveValueAsync("");
        await Expect(field("Out")).ToBeFocusedAsync();
        await Expect(field("Config")).ToHaveValueAsync("/srv/jobs/tiny.json");
        await Expect(field("Data")).ToHaveValueAsync("/srv/jobs/data");
        await Expect(field("Overrides")).ToHaveValueAsync("max_iters=4");
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_field_the_API_refuses_shows_its_message_beside_that_field()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        var form = page.Locator("#job-submit");
        var submit = form.GetByRole(AriaRole.Button, new() { Name = "Submit job" });
        await form.GetByLabel("Data", new() { Exact = true }).FillAsync(Path.Combine(jobsRoot, "data"));
        var output = form.GetByLabel("Out", new() { Exact = true });
        await output.FillAsync("runs/x");
        await submit.ClickAsync();
        // The API's own words (a 400 with param "out"), beside the field, which says it is at fault.
        await Expect(page.Locator("#job-out-error")).ToHaveTextAsync("'out' must be an absolute path on the server's host, got 'runs/x'; give the whole path (/srv/runs/...).");
        await Expect(output).ToHaveAttributeAsync("aria-invalid", "true");
        await Expect(output).ToBeFocusedAsync();
        await Expect(page.Locator("#job-submit-error")).ToBeHiddenAsync();

        // An override train does not know: param "overrides.n_layers", said beside the overrides; the out field's error gone.
        await output.FillAsync(Path.Combine(jobsRoot, "refused"));
        await form.GetByLabel("Overrides", new() { Exact = true }).FillAsync("max_iters=3\nn_layers=2");
        await submit.ClickAsync();
        await Expect(page.Locator("#job-overrides-error")).ToContainTextAsync("n_layers");
        await Expect(page.Locator("#job-out-error")).ToBeHiddenAsync();
        await Expect(output).Not.ToHaveAttributeAsync("aria-invalid", "true");
        // A line that is no key=value is said there too, before the API is asked.
        await form.GetByLabel("Overrides", new() { Exact = true }).FillAsync("max_iters 3");
        await submit.ClickAsync();
        await Expect(page.Locator("#job-overrides-error")).ToContainTextAsync("is no key=value");
        Assert.DoesNotContain(JobService.Open(fixture.DataDir, ["/bin/true"]).List().Jobs, j => j.Arguments.Out.EndsWith("refused", StringComparison.Ordinal));
        Assert.Empty(opened.Violations);
    }

    /// <summary>A run folder another job writes (a 409) is said beside the field that names it: out
    /// for a new run, resume for a run continued.</summary>
    [Fact]
    public async Task A_run_folder_in_use_is_said_beside_out_or_resume()
    {
        var run = Path.Combine(jobsRoot, "busy-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(run);
        // Its supervisor alive (and recording nothing) for the test's length: the job stays queued, writing the folder.
        var busy = JobService.Open(fixture.DataDir, ["/bin/sh", "-c", "sleep 60"]).Submit(new TrainArguments(null, run, run, []), "tests").Id;
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        var form = page.Locator("#job-submit");
        var submit = form.GetByRole(AriaRole.Button, new() { Name = "Submit job" });
        await form.GetByLabel("Config", new() { Exact = true }).FillAsync(Path.Combine(jobsRoot, "tiny.json"));
        await form.GetByLabel("Data", new() { Exact = true }).FillAsync(Path.Combine(jobsRoot, "data"));
        var output = form.GetByLabel("Out", new() { Exact = true });
        await output.FillAsync(run);
        await submit.ClickAsync();
        await Expect(page.Locator("#job-out-error")).ToContainTextAsync(busy);
        await Expect(output).ToBeFocusedAsync();
        await Expect(page.Locator("#job-submit-error")).ToBeHiddenAsync();

        await form.GetByLabel("Config", new() { Exact = true }).FillAsync("");
        await form.GetByLabel("Data", new() { Exact = true }).FillAsync("");
        await output.FillAsync("");
        var resume = form.GetByLabel("Resume", new() { Exact = true });
        await resume.FillAsync(run);
        await submit.ClickAsync();
        await Expect(page.Locator("#job-resume-error")).ToContainTextAsync(busy);
        await Expect(resume).ToHaveAttributeAsync("aria-invalid", "true");
        await Expect(page.Locator("#job-submit-error")).ToBeHiddenAsync();
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_running_job_is_cancelled_from_its_row_after_a_confirmation()
    {
        // A training long enough to be cancelled while it runs.
        var run = Path.Combine(jobsRoot, "long-" + Guid.NewGuid().ToString("N")[..8]);
        using var submitted = await fixture.Http.PostAsJsonAsync("/api/jobs", new
        {
            config = Path.Combine(jobsRoot, "tiny.json"), data = Path.Combine(jobsRoot, "data"), @out = run,
            overrides = new { max_iters = 1_000_000, lr_decay_iters = 1_000_000, eval_interval = 1_000_000 },
        });
        var answer = await submitted.Content.ReadAsStringAsync();
        Assert.True(submitted.IsSuccessStatusCode, answer);
        // The job as the submit answered it: the list's newest is another's where the clock stepped back.
        var id = (string)JsonNode.Parse(answer)!["id"]!;
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await ShowAsync(page, fixture.ApiKey);
        var row = page.Locator("#panel-jobs tr", new() { HasText = id });
        await Expect(row).ToContainTextAsync("running", new() { Timeout = 120_000 });
        var cancel = row.GetByRole(AriaRole.Button, new() { Name = $"Cancel {id}" });
        await cancel.ClickAsync();
        // A confirmation first: kept, nothing is cancelled.
        var dialog = page.GetByRole(AriaRole.Dialog, new() { Name = $"Cancel {id}?" });
        await Expect(dialog).ToBeVisibleAsync();
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Keep it" }).ClickAsync();
        await Expect(dialog).ToBeHiddenAsync();
        Assert.Equal("running", (string)JsonNode.Parse(await fixture.Http.GetStringAsync($"/api/jobs/{id}"))!["state"]!);

        // Confirmed: the button is disabled while the request runs (held here until it is seen so).
        var release = new TaskCompletionSource();
        await page.RouteAsync("**/api/jobs/*/cancel", async route => { await release.Task; await route.ContinueAsync(); });
        await row.GetByRole(AriaRole.Button, new() { Name = $"Cancel {id}" }).ClickAsync();
        var confirm = dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel the job" });
        await confirm.ClickAsync();
        await Expect(confirm).ToBeDisabledAsync();
        release.SetResult();
        await Expect(dialog).ToBeHiddenAsync();
        await Expect(row).ToContainTextAsync("cancelled", new() { Timeout = 60_000 });
        Assert.Equal(0, await row.GetByRole(AriaRole.Button).CountAsync());
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_cancel_the_API_refuses_shows_its_message_in_the_dialog()
    {
        var id = EndedJob(Path.Combine(Path.GetDirectoryName(fixture.RunFolder)!, "job-refused-" + Guid.NewGuid().ToString("N")[..8]));
        await using var opened = await OpenAsync();
        var page = opened.Page;
        // The job as the page last read it: still running, where the server has since recorded its end.
        await page.RouteAsync("**/api/jobs", async route =>
        {
            var list = JsonNode.Parse(await (await route.FetchAsync()).TextAsync())!;
            foreach (var job in list["data"]!.AsArray()) if ((string)job!["id"]! == id) job["state"] = "running";
            await route.FulfillAsync(new() { ContentType = "application/json", Body = list.ToJsonString() });
        });
        await ShowAsync(page, fixture.ApiKey);
        await page.Locator("#panel-jobs tr", new() { HasText = id }).GetByRole(AriaRole.Button, new() { Name = $"Cancel {id}" }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog);
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel the job" }).ClickAsync();
        // The API's 409, in the dialog, which stays open.
        await Expect(page.Locator("#job-cancel-error")).ToContainTextAsync(id);
        await Expect(dialog).ToBeVisibleAsync();
        await Expect(dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel the job" })).ToBeEnabledAsync();
        Assert.Empty(opened.Violations);
    }

    [Fact]
    public async Task A_slurm_jobs_state_and_reason_partition_time_limit_and_nodes_are_shown_and_a_local_jobs_are_empty()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        // As a server running jobs under Slurm answers: one waiting for its priority, one ended (what
        // Slurm said last, kept since: its state and run time), one local.
        await RouteJobsAsync(page, ["slurm", "local"],
            FakeJob("job-slurm", "slurm", "queued", new { job_id = "41", state = "PENDING", reason = "Priority", partition = "gpu", time_limit = "2:00:00", nodes = (string?)null, ranks = 4, cpus_per_rank = 8, unreachable = (string?)null, elapsed = "00:00:00" }),
            FakeJob("job-ended", "slurm", "succeeded", new { job_id = "40", state = "COMPLETED", reason = (string?)null, partition = "gpu", time_limit = "2:00:00", nodes = "node1", ranks = 1, cpus_per_rank = 1, unreachable = (string?)null, elapsed = "1-02:03:04" }),
            FakeJob("job-local", "local", "queued", null));
        await ShowAsync(page, fixture.ApiKey);
        var table = page.Locator("#panel-jobs table");
        await Expect(table).ToBeVisibleAsync();
        var headers = await table.Locator("th").AllTextContentsAsync();
        string Cell(IReadOnlyList<string> cells, string column) => cells[headers.ToList().IndexOf(column)];
        var slurm = await page.Locator("#panel-jobs tr", new() { HasText = "job-slurm" }).Locator("td").AllTextContentsAsync();
        var ended = await page.Locator("#panel-jobs tr", new() { HasText = "job-ended" }).Locator("td").AllTextContentsAsync();
        var local = await page.Locator("#panel-jobs tr", new() { HasText = "job-local" }).Locator("td").AllTextContentsAsync();
        Assert.Equal(("PENDING (Priority)", "gpu", "2:00:00", "", "—"), (Cell(slurm, "Slurm state"), Cell(slurm, "Partition"), Cell(slurm, "Time limit"), Cell(slurm, "Nodes"), Cell(slurm, "Duration")));
        // Slurm's last word of an ended job, and how long Slurm ran it (its RunTime, not when Stratus read its start and end).
        Assert.Equal(("COMPLETED", "node1", "26h03m"), (Cell(ended, "Slurm state"), Cell(ended, "Nodes"), Cell(ended, "Duration")));
        Assert.Equal(("", "", "", ""), (Cell(local, "Slurm state"), Cell(local, "Partition"), Cell(local, "Time limit"), Cell(local, "Nodes")));
        Assert.DoesNotMatch(@"\b(undefined|null|NaN)\b", await page.Locator("#panel-jobs").InnerTextAsync());
        // Slurm's resources are asked for only with the Slurm executor.
        var executor = page.Locator("#job-submit").GetByLabel("Executor");
        await Expect(executor).ToHaveValueAsync("slurm");
        await Expect(page.Locator("#job-slurm")).ToBeVisibleAsync();
        await executor.SelectOptionAsync("local");
        await Expect(page.Locator("#job-slurm")).ToBeHiddenAsync();
        Assert.Empty(opened.Violations);
    }

    /// <summary>A queued or running job's Cancel button is within reach however narrow the window,
    /// a long run folder and reason among the columns: at 1280 px the table (Slurm's columns too)
    /// fits the page, at 800 px it scrolls sideways with the button in view; Slurm's columns are
    /// left out where no Slurm job is listed.</summary>
    [Fact]
    public async Task The_cancel_button_is_in_view_at_1280_and_800_pixels_and_slurms_columns_show_only_beside_a_slurm_job()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        var reason = "cancelled after a last checkpoint; continue it with `stratus jobs submit --resume /srv/jobs/runs/a-long-run-folder-name` (a job) or `stratus train --resume /srv/jobs/runs/a-long-run-folder-name`";
        object[] local = [FakeJob("job-running", "local", "running", null), FakeJob("job-ended", "local", "cancelled", null, reason)];
        await RouteJobsAsync(page, ["local"], local);
        await page.SetViewportSizeAsync(1280, 900);
        await ShowAsync(page, fixture.ApiKey);
        var cancel = page.GetByRole(AriaRole.Button, new() { Name = "Cancel job-running" });
        await Expect(cancel).ToBeVisibleAsync();
        Assert.DoesNotContain("Partition", await page.Locator("#panel-jobs th").AllTextContentsAsync());
        await AssertInViewAsync(page, cancel, 1280);
        await page.SetViewportSizeAsync(800, 900);
        await AssertInViewAsync(page, cancel, 800);

        // With a Slurm job listed, its four columns are shown, and at 1280 px the table still fits.
        await page.UnrouteAsync("**/api/jobs");
        await RouteJobsAsync(page, ["local", "slurm"], [.. local, FakeJob("job-slurm", "slurm", "queued",
            new { job_id = "41", state = "PENDING", reason = "PartitionTimeLimit", partition = "gpu", time_limit = "7-00:00:00", nodes = (string?)null, ranks = 4, cpus_per_rank = 8, unreachable = (string?)null, elapsed = "00:00:00" })]);
        await page.SetViewportSizeAsync(1280, 900);
        await page.ReloadAsync();
        await ShowAsync(page, fixture.ApiKey);
        await Expect(page.Locator("#panel-jobs th", new() { HasText = "Partition" })).ToBeVisibleAsync();
        var widths = await page.Locator("#panel-jobs .table-scroll").EvaluateAsync<int[]>("e => [e.scrollWidth, e.clientWidth]");
        Assert.True(widths[0] <= widths[1], $"the jobs table is {widths[0]} px wide in {widths[1]} px at 1280 px");
        await AssertInViewAsync(page, page.GetByRole(AriaRole.Button, new() { Name = "Cancel job-slurm" }), 1280);
        Assert.Empty(opened.Violations);
    }

    /// <summary>A keyboard user on a running job's Cancel button stays on it when the panel
    /// refreshes (its table made anew), rather than being thrown back to the page's start.</summary>
    [Fact]
    public async Task Focus_on_a_cancel_button_survives_the_panels_refresh()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await RouteJobsAsync(page, ["local"], FakeJob("job-running", "local", "running", null));
        await ShowAsync(page, fixture.ApiKey);
        var cancel = page.GetByRole(AriaRole.Button, new() { Name = "Cancel job-running" });
        await cancel.FocusAsync();
        var before = await cancel.ElementHandleAsync();
        // Shown again, every panel asks at once: a refresh without waiting out its 10 s.
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        await page.WaitForFunctionAsync("button => !button.isConnected", before);
        await Expect(cancel).ToBeFocusedAsync();
        Assert.Empty(opened.Violations);
    }

    /// <summary>A job whose cancel was asked runs on while its training finishes its step and saves a
    /// last checkpoint: its row says "cancelling…", since when and by whom (a key by its name, its id
    /// beside it, as the audit panel names keys), and its Cancel button is disabled (a second cancel
    /// would send nothing); another running job's is not, as the page read it.</summary>
    [Fact]
    public async Task A_job_being_cancelled_says_cancelling_and_its_cancel_button_is_disabled()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await RouteJobsAsync(page, ["local"], FakeJob("job-cancelling", "local", "running", null, cancelRequestedAt: "2026-01-05T14:04:09Z", cancelRequestedBy: "cli:alice"),
            FakeJob("job-running", "local", "running", null),
            FakeJob("job-by-key", "local", "queued", null, cancelRequestedAt: "2026-01-05T14:04:10Z", cancelRequestedBy: "AbCdEf012345", cancelRequestedByName: "ops"));
        await ShowAsync(page, fixture.ApiKey);
        var cancelling = page.Locator("#panel-jobs tr", new() { HasText = "job-cancelling" });
        await Expect(cancelling.Locator(".job-state")).ToHaveTextAsync("▶ running, cancelling… (since 14:04:09 UTC by cli:alice)");
        await Expect(page.Locator("#panel-jobs tr", new() { HasText = "job-by-key" }).Locator(".job-state")).ToHaveTextAsync("◷ queued, cancelling… (since 14:04:10 UTC by ops (AbCdEf012345))");
        await Expect(cancelling.GetByRole(AriaRole.Button, new() { Name = "Cancel job-cancelling" })).ToBeDisabledAsync();
        var running = page.Locator("#panel-jobs tr", new() { HasText = "job-running" });
        await Expect(running.Locator(".job-state")).ToHaveTextAsync("▶ running");
        await Expect(running.GetByRole(AriaRole.Button, new() { Name = "Cancel job-running" })).ToBeEnabledAsync();
        await Expect(page.Locator("#job-picker option[value='job-cancelling']")).ToHaveTextAsync("job-cancelling (running, cancelling…)");
        Assert.Empty(opened.Violations);
    }

    /// <summary>A keyboard user who confirms a cancel stays at that job's row (its state), there
    /// after the refresh too, rather than on the page's body: the row's button is disabled, then gone.</summary>
    [Fact]
    public async Task After_a_confirmed_cancel_focus_is_on_the_jobs_state()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await RouteJobsAsync(page, ["local"], FakeJob("job-running", "local", "running", null), FakeJob("job-older", "local", "running", null));
        await page.RouteAsync("**/api/jobs/*/cancel", route => route.FulfillAsync(new()
        {
            ContentType = "application/json", Body = JsonSerializer.Serialize(FakeJob("job-running", "local", "cancelled", null)),
        }));
        await ShowAsync(page, fixture.ApiKey);
        var cancel = page.GetByRole(AriaRole.Button, new() { Name = "Cancel job-running" });
        await cancel.FocusAsync();
        await page.Keyboard.PressAsync("Enter");
        var dialog = page.GetByRole(AriaRole.Dialog, new() { Name = "Cancel job-running?" });
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel the job" }).PressAsync("Enter");
        await Expect(dialog).ToBeHiddenAsync();
        var state = page.Locator("#panel-jobs tr", new() { HasText = "job-running" }).Locator(".job-state");
        await Expect(state).ToBeFocusedAsync();
        // The table made anew: focus on the new row's state.
        var before = await state.ElementHandleAsync();
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        await page.WaitForFunctionAsync("state => !state.isConnected", before);
        await Expect(state).ToBeFocusedAsync();
        Assert.Empty(opened.Violations);
    }

    /// <summary>A dialog's close event comes at the next frame, and a refresh can land before it,
    /// making the cancelled job's row anew with its Cancel button enabled (the server still lists it
    /// running): focus still goes to the row's state, as the dialog cancelled the job, not to that
    /// button. Here the refresh is held until the cancel is under way, and lands before its answer.</summary>
    [Fact]
    public async Task A_refresh_landing_before_the_dialog_closes_leaves_focus_on_the_cancelled_jobs_state()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await RouteJobsAsync(page, ["local"], FakeJob("job-running", "local", "running", null));
        var cancelAnswered = new TaskCompletionSource();
        await page.RouteAsync("**/api/jobs/*/cancel", async route =>
        {
            await cancelAnswered.Task;
            await route.FulfillAsync(new() { ContentType = "application/json", Body = JsonSerializer.Serialize(FakeJob("job-running", "local", "cancelled", null)) });
        });
        await ShowAsync(page, fixture.ApiKey);
        var cancel = page.GetByRole(AriaRole.Button, new() { Name = "Cancel job-running" });
        await cancel.FocusAsync();
        await page.Keyboard.PressAsync("Enter");
        var dialog = page.GetByRole(AriaRole.Dialog, new() { Name = "Cancel job-running?" });
        await Expect(dialog).ToBeVisibleAsync();
        // A refresh whose job list is answered now (the job running, nothing being cancelled) and
        // whose loss curve is held: its row, with an enabled button, is made but not yet shown.
        var curveAsked = new TaskCompletionSource();
        var curveAnswered = new TaskCompletionSource();
        await page.RouteAsync("**/api/jobs/*/metrics", async route =>
        {
            curveAsked.TrySetResult();
            await curveAnswered.Task;
            await route.FulfillAsync(new() { ContentType = "application/json", Body = "{\"object\":\"list\",\"data\":[],\"cursor\":null,\"reset\":false}" });
        });
        var before = await cancel.ElementHandleAsync();
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        await curveAsked.Task.WaitAsync(TimeSpan.FromSeconds(15));
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel the job" }).PressAsync("Enter");
        await Expect(cancel).ToBeDisabledAsync();
        curveAnswered.SetResult();
        await page.WaitForFunctionAsync("button => !button.isConnected", before);
        await Expect(cancel).ToBeEnabledAsync();
        cancelAnswered.SetResult();
        await Expect(dialog).ToBeHiddenAsync();
        await Expect(page.Locator("#panel-jobs tr", new() { HasText = "job-running" }).Locator(".job-state")).ToBeFocusedAsync();
        Assert.Empty(opened.Violations);
    }

    /// <summary>The loss-curve picker is the same element across refreshes, as the form is: one who
    /// is choosing keeps its focus (and an open list of options) and the job chosen, its options
    /// updated in place.</summary>
    [Fact]
    public async Task The_loss_curve_picker_keeps_its_focus_and_choice_across_the_panels_refresh()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        var state = "running";
        await RouteJobsAsync(page, ["local"]);
        await page.RouteAsync("**/api/jobs", route => route.Request.Method != "GET" ? route.FallbackAsync() : route.FulfillAsync(new()
        {
            ContentType = "application/json",
            Body = JsonSerializer.Serialize(new { @object = "list", submissions = new { root = "/srv/jobs", executors = new[] { "local" } },
                data = new[] { FakeJob("job-newer", "local", "running", null), FakeJob("job-older", "local", state, null) } }),
        }));
        await ShowAsync(page, fixture.ApiKey);
        var picker = page.GetByLabel("Loss curve of");
        await picker.SelectOptionAsync("job-older");
        await Expect(page.Locator("#job-curve")).ToContainTextAsync("job-older");
        await picker.FocusAsync();
        var before = await picker.ElementHandleAsync();
        var table = await page.Locator("#panel-jobs .table-scroll").ElementHandleAsync();
        state = "succeeded";
        await SetHiddenAsync(page, true);
        await SetHiddenAsync(page, false);
        await page.WaitForFunctionAsync("table => !table.isConnected", table);
        await Expect(picker.Locator("option[value=job-older]")).ToHaveTextAsync("job-older (succeeded)");
        Assert.True(await before.EvaluateAsync<bool>("picker => picker.isConnected && picker === document.activeElement"), "the picker was made anew");
        await Expect(picker).ToHaveValueAsync("job-older");
        await Expect(page.Locator("#job-curve")).ToContainTextAsync("job-older");
        Assert.Empty(opened.Violations);
    }

    /// <summary>The element lies wholly within the window's width (no sideways scroll needed to reach it).</summary>
    static async Task AssertInViewAsync(IPage page, ILocator element, int width)
    {
        var box = await element.BoundingBoxAsync() ?? throw new InvalidOperationException("not laid out");
        Assert.True(box.X >= 0 && box.X + box.Width <= width, $"at {width} px the element spans {box.X:0} to {box.X + box.Width:0} px");
        var margins = await element.EvaluateAsync<double[]>("e => { const r = e.getBoundingClientRect(), s = e.closest('.table-scroll').getBoundingClientRect(); return [r.left - s.left, s.right - r.right]; }");
        Assert.True(margins[0] >= 0 && margins[1] >= 0, $"at {width} px the element lies outside its table's visible part ({margins[0]:0} px from its left, {margins[1]:0} px from its right)");
    }

    /// <summary>A job as GET /api/jobs answers it, under /srv/jobs, its run folder's name long.</summary>
    static object FakeJob(string id, string executor, string state, object? slurm, string? reason = null, string? cancelRequestedAt = null, string? cancelRequestedBy = null,
        string? cancelRequestedByName = null) => new
    {
        @object = "job", id, kind = "train", state, reason, executor, executor_reference = executor == "slurm" ? "41" : null,
        arguments = new
        {
            config = (string?)null, data = "/srv/jobs/data", @out = $"/srv/jobs/runs/a-long-run-folder-name-{id}", overrides = new { }, resume = false, init_from = (string?)null,
            partition = executor == "slurm" ? "gpu" : null, time = executor == "slurm" ? "2:00:00" : null, ranks = executor == "slurm" ? 4 : (int?)null, cpus_per_rank = executor == "slurm" ? 8 : (int?)null,
        },
        pid = (int?)null, exit_code = (int?)null, submitted_at = "2026-01-05T14:03:27Z", started_at = state == "queued" ? null : "2026-01-05T14:03:28Z",
        ended_at = state is "queued" or "running" ? null : "2026-01-05T14:05:28Z", cancel_requested_at = cancelRequestedAt, cancel_requested_by = cancelRequestedBy, cancel_requested_by_name = cancelRequestedByName, submitted_by = "tests", log_file = "/srv/jobs/run/x.log", last_step = (object?)null, slurm,
    };

    /// <summary>Answers the page's GET /api/jobs with these jobs (and their metrics with none), as a
    /// server that runs jobs with these executors would.</summary>
    static async Task RouteJobsAsync(IPage page, string[] executors, params object[] jobs)
    {
        await page.RouteAsync("**/api/jobs", route => route.FulfillAsync(new()
        {
            ContentType = "application/json",
            Body = JsonSerializer.Serialize(new { @object = "list", submissions = new { root = "/srv/jobs", executors }, data = jobs }),
        }));
        await page.RouteAsync("**/api/jobs/*/metrics", route => route.FulfillAsync(new() { ContentType = "application/json", Body = "{\"object\":\"list\",\"data\":[],\"cursor\":null,\"reset\":false}" }));
    }

    /// <summary>Every admin key may submit (admin grants the training scope): what hides the form is
    /// a server that takes no jobs (no --jobs-root), whose jobs are still listed and cancelled.</summary>
    [Fact]
    public async Task A_server_that_takes_no_jobs_shows_no_form_but_lists_and_cancels_its_jobs()
    {
        var bare = new TinyModelServer { JobsCommand = ["/bin/true"] };
        await bare.InitializeAsync();
        try
        {
            var folder = Path.Combine(Path.GetDirectoryName(bare.RunFolder)!, "queued");
            Directory.CreateDirectory(folder);
            // Its supervisor alive (and recording nothing) for the test's length: the job stays queued.
            var queued = JobService.Open(bare.DataDir, ["/bin/sh", "-c", "sleep 60"]).Submit(new TrainArguments(null, folder, folder, []), "tests").Id;
            await using var opened = await OpenAsync(server: bare);
            var page = opened.Page;
            await ShowAsync(page, bare.ApiKey);
            var row = page.Locator("#panel-jobs tr", new() { HasText = queued });
            await Expect(row.GetByRole(AriaRole.Button, new() { Name = $"Cancel {queued}" })).ToBeVisibleAsync();
            await Expect(page.Locator("#panel-jobs form")).ToHaveCountAsync(0);
            Assert.Equal(0, await page.GetByText("Submit a training job").CountAsync());
            Assert.Empty(opened.Violations);
        }
        finally
        {
            await bare.DisposeAsync();
        }
    }

    /// <summary>A server that takes no jobs through its API (POST /api/jobs answers 403) and lists
    /// none says so, and where its jobs come from: not "submit one with POST /api/jobs", which it refuses.</summary>
    [Fact]
    public async Task A_server_that_takes_no_jobs_and_lists_none_points_to_its_hosts_cli_not_to_its_refused_api()
    {
        await using var opened = await OpenAsync();
        var page = opened.Page;
        await page.RouteAsync("**/api/jobs", route => route.FulfillAsync(new()
        {
            ContentType = "application/json",
            Body = JsonSerializer.Serialize(new { @object = "list", submissions = (object?)null, data = Array.Empty<object>() }),
        }));
        await ShowAsync(page, fixture.ApiKey);
        var panel = page.Locator("#panel-jobs");
        await Expect(panel).ToContainTextAsync("This server takes none through its API (its operator enables that with serve --jobs-root); jobs submitted on its host with `stratus jobs submit` are listed here.");
        Assert.DoesNotContain("POST /api/jobs", await panel.InnerTextAsync());
        Assert.Empty(opened.Violations);
    }

    /// <summary>Every time in the panels is UTC to the second, whatever the browser's zone (the
    /// page's is Asia/Kolkata), with the exact instant as its title.</summary>
    static async Task AssertTimesInUtcAsync(IPage page)
    {
        var times = await page.Locator("#panels time").EvaluateAllAsync<string[][]>("ts => ts.map(t => [t.textContent, t.getAttribute('datetime'), t.title])");
        Assert.NotEmpty(times);
        foreach (var (shown, exact, title) in times.Select(t => (t[0], t[1], t[2])))
        {
            var instant = DateTimeOffset.Parse(exact, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(exact, title);
            Assert.EndsWith("Z", exact, StringComparison.Ordinal);
            Assert.Contains(shown, new[] { instant.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", System.Globalization.CultureInfo.InvariantCulture), instant.UtcDateTime.ToString("HH:mm:ss 'UTC'", System.Globalization.CultureInfo.InvariantCulture) });
        }
        // No time left in the browser's locale (11/27/2026, 10:31:34 PM).
        Assert.DoesNotMatch(@"\d/\d+/\d{4}|\d:\d\d:\d\d [AP]M", await page.Locator("#panels").InnerTextAsync());
    }

    /// <summary>The loss curve's every point lies within its plot, and its axes' labelled ticks
    /// reach past the first and last step and the lowest and highest loss.</summary>
    static async Task AssertCurveWithinItsAxesAsync(IPage page, (double First, double Last) steps, (double Low, double High) losses)
    {
        var chart = page.Locator("#job-curve svg.loss-chart");
        var size = await chart.Locator("svg.plot").EvaluateAsync<double[]>("p => [p.width.baseVal.value, p.height.baseVal.value]");
        var points = await chart.Locator("svg.plot path, svg.plot circle").EvaluateAllAsync<double[][]>(
            "shapes => shapes.flatMap(s => s.tagName === 'circle' ? [[+s.getAttribute('cx'), +s.getAttribute('cy')]] : s.getAttribute('d').split(/[ML ]+/).filter(Boolean).map(p => p.split(',').map(Number)))");
        Assert.NotEmpty(points);
        Assert.All(points, p => Assert.True(p[0] >= 0 && p[0] <= size[0] && p[1] >= 0 && p[1] <= size[1], $"({p[0]}, {p[1]}) lies outside the plot of {size[0]} x {size[1]}"));
        static double Number(string label) => double.Parse(label.Replace(",", ""), System.Globalization.CultureInfo.InvariantCulture);
        var stepTicks = (await chart.Locator("text.tick-step").AllTextContentsAsync()).Select(Number).ToList();
        var lossTicks = (await chart.Locator("text.tick-loss").AllTextContentsAsync()).Select(Number).ToList();
        Assert.True(stepTicks.Count >= 2 && stepTicks.Min() <= steps.First && stepTicks.Max() >= steps.Last, $"step ticks {string.Join(", ", stepTicks)}");
        Assert.True(lossTicks.Count >= 2 && lossTicks.Min() <= losses.Low && lossTicks.Max() >= losses.High, $"loss ticks {string.Join(", ", lossTicks)}");
    }

    /// <summary>Says to the page that its tab went to the background (hidden) or came back.</summary>
    static Task SetHiddenAsync(IPage page, bool hidden) => page.EvaluateAsync(@"hidden => {
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => hidden ? 'hidden' : 'visible' });
        document.dispatchEvent(new Event('visibilitychange'));
    }", hidden);

    /// <summary>A fresh page, the requests it makes to the server's API (not to its own files), and
    /// what broke its Content Security Policy or threw in it.</summary>
    sealed class OpenedPage(IPlaywright playwright, IBrowser browser, IPage page) : IAsyncDisposable
    {
        public IPage Page => page;
        public List<string> ApiRequests { get; } = [];
        public List<string> Violations { get; } = [];

        public async ValueTask DisposeAsync()
        {
            await browser.DisposeAsync();
            playwright.Dispose();
        }
    }

    /// <summary>Every panel has drawn once. A first drawing still under way goes on to the requests it
    /// has left (the jobs' curve after their list, the audit's entries after its verification) after
    /// the tab is hidden or the key refused, which a test that the page asks nothing more must not
    /// count; those two panels refresh next 10 and 15 s later.</summary>
    static async Task DrawnAsync(IPage page) =>
        await Expect(page.Locator("section.panel .updated", new() { HasText = "Updated" })).ToHaveCountAsync(await page.Locator("section.panel").CountAsync());

    /// <summary>No request to the API for longer than the live panel's 2 s refresh, and nothing
    /// broke the page's Content Security Policy or threw in it.</summary>
    static async Task AssertAsksNothingMoreAsync(OpenedPage opened)
    {
        int Asked() { lock (opened.ApiRequests) return opened.ApiRequests.Count; }
        var asked = Asked();
        await opened.Page.WaitForTimeoutAsync(4_500);
        Assert.Equal(asked, Asked());
        Assert.Empty(opened.Violations);
    }

    async Task<OpenedPage> OpenAsync(string path = "/dashboard/", TinyModelServer? server = null)
    {
        Assert.True(File.Exists(Chromium), $"The browser tests drive Chromium at {Chromium}, which is missing: install it with " +
            "`apt-get install -y chromium` (as root; .ci/run does).");
        var playwright = await Playwright.CreateAsync();
        // Chromium starts in about a second; CI runs the test projects side by side on two cores,
        // where Playwright's 30 s to start it are not always enough.
        var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true, Timeout = 120_000 });
        // A zone other than UTC, so that a time shown in the browser's zone reads apart from one in UTC.
        var opened = new OpenedPage(playwright, browser, await browser.NewPageAsync(new() { Locale = "en-US", TimezoneId = "Asia/Kolkata" }));
        opened.Page.Request += (_, request) =>
        {
            if (!new Uri(request.Url).AbsolutePath.StartsWith("/dashboard", StringComparison.OrdinalIgnoreCase))
                lock (opened.ApiRequests) opened.ApiRequests.Add(request.Url);
        };
        opened.Page.Console += (_, message) =>
        {
            if (message.Text.Contains("Content Security Policy", StringComparison.Ordinal)) opened.Violations.Add(message.Text);
        };
        opened.Page.PageError += (_, error) => opened.Violations.Add(error);
        await opened.Page.GotoAsync(new Uri((server ?? fixture).Server.RootUrl, path).ToString());
        return opened;
    }

    static async Task ShowAsync(IPage page, string key)
    {
        await page.GetByLabel("API key", new() { Exact = true }).FillAsync(key);
        await page.GetByRole(AriaRole.Button, new() { Name = "Show", Exact = true }).ClickAsync();
        await Expect(page.Locator("section.panel").First).ToBeVisibleAsync();
    }

    /// <summary>A job recorded as a submission records it, then ended (its supervisor is a no-op),
    /// with a metrics.jsonl written as a training writes one: no real training, which takes too long here.</summary>
    string EndedJob(string run)
    {
        Directory.CreateDirectory(run);
        var service = JobService.Open(fixture.DataDir, ["/bin/true"]);
        var job = service.Submit(new TrainArguments(null, run, run, []), "tests");
        service.Store.RecordStarted(job.Id, Environment.ProcessId, null);
        service.Store.RecordEnd(job.Id, new JobEnd(JobState.Succeeded, 0, null));
        File.WriteAllText(Path.Combine(run, "metrics.jsonl"), string.Join('\n',
            "{\"step\":0,\"val_loss\":4.2,\"eval_train_loss\":4.2}", "{\"step\":0,\"train_loss\":4.2,\"lr\":0.001}",
            "{\"step\":1,\"train_loss\":3.6,\"lr\":0.001}", "{\"step\":2,\"train_loss\":3.0,\"lr\":0.001}",
            "{\"step\":3,\"val_loss\":2.7,\"eval_train_loss\":2.6}", "{\"step\":3,\"train_loss\":2.5,\"lr\":0.001}") + "\n");
        return job.Id;
    }
}
