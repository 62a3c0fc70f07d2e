// The dashboard in a real browser (Chromium through Playwright) against a real server: an
// operator opens /dashboard, a wrong key shows the API's refusal and the scope needed, the admin
// key shows the served model and live figures that move once a completion was served, and the
// page runs under its Content Security Policy without a violation.
// Chromium is the system's (/usr/bin/chromium): Playwright's own download is not reachable
// everywhere, and .ci/run installs Debian's. A machine without it fails here, saying how to
// install it, rather than skipping a test that CI runs.
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;
using Stratus.Platform;
using Stratus.Server.Tests;
using static Microsoft.Playwright.Assertions;

namespace Stratus.Browser.Tests;

public sealed class DashboardBrowserTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    const string Chromium = "/usr/bin/chromium";

    [Fact]
    public async Task An_operator_sees_the_served_model_and_figures_that_move_and_a_wrong_key_is_explained()
    {
        Assert.True(File.Exists(Chromium), $"The browser tests drive Chromium at {Chromium}, which is missing: install it with " +
            "`apt-get install -y chromium` (as root; .ci/run does).");
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium, Headless = true });
        var page = await browser.NewPageAsync(new() { Locale = "en-US" });
        var violations = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Text.Contains("Content Security Policy", StringComparison.Ordinal)) violations.Add(message.Text);
        };
        page.PageError += (_, error) => violations.Add(error);
        // As an operator types it: /dashboard redirects to the page.
        await page.GotoAsync(new Uri(fixture.Server.RootUrl, "/dashboard").ToString());
        var key = page.GetByLabel("Admin API key");
        var show = page.GetByRole(AriaRole.Button, new() { Name = "Show", Exact = true });
        var status = page.Locator("#key-status");

        // A key the server does not know: the API's message, and the scope the page needs.
        await key.FillAsync(ApiKeyFormat.Generate().Key);
        await show.ClickAsync();
        await Expect(status).ToContainTextAsync("Incorrect API key provided");
        await Expect(status).ToContainTextAsync("needs a key with the admin scope");
        Assert.Equal(0, await page.Locator("section.panel").CountAsync());

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
        await Expect(generated).ToHaveTextAsync((before + served).ToString(System.Globalization.CultureInfo.InvariantCulture), new() { Timeout = 10_000 });

        // Every panel drawn, then axe-core's rules (WCAG 2.1 A and AA) over the whole page.
        await Expect(page.Locator("#panel-audit table")).ToBeVisibleAsync();
        await Expect(page.Locator("#panel-keys table")).ToBeVisibleAsync();
        var axe = await page.RunAxe(new Deque.AxeCore.Commons.AxeRunOptions
        {
            RunOnly = new Deque.AxeCore.Commons.RunOnlyOptions { Type = "tag", Values = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
        });
        Assert.True(axe.Violations.Length == 0, "accessibility: " + string.Join("; ", axe.Violations.Select(v => $"{v.Id} ({v.Impact}): {v.Help} at {string.Join(", ", v.Nodes.Select(n => n.Target))}")));

        // The key is this tab's alone: never in the address, nor in storage that outlives the tab.
        Assert.DoesNotContain(fixture.ApiKey, page.Url, StringComparison.Ordinal);
        Assert.Equal(fixture.ApiKey, await page.EvaluateAsync<string>("() => sessionStorage.getItem('stratus-dashboard-key')"));
        Assert.Equal(0, await page.EvaluateAsync<int>("() => localStorage.length"));
        Assert.Empty(violations);
    }
}
