// Content safety through the hooks a completion handler calls: a blocklisted word generated
// mid-stream never reaches the client, filtered prompts get Azure's 400 content_filter body,
// filtered whole completions finish with content_filter, /v1/moderations answers in OpenAI's
// schema, and every filtered request is audited without its text.
using System.Net;
using System.Text;
using System.Text.Json;
using Stratus.Platform;
using Stratus.Platform.Tests;

namespace Stratus.Trust.Tests;

public sealed class SafetyTests
{
    /// <summary>Puts a blocklist with "zanzibar" on the fake deployment through the admin API.</summary>
    static async Task BlockZanzibarAsync(TrustHost host)
    {
        using var list = await host.SendAsync(HttpMethod.Put, "/v1/admin/blocklists/secrets", host.AdminKey, new { terms = new[] { "zanzibar" }, category = "hate" });
        Assert.Equal(HttpStatusCode.OK, list.StatusCode);
        using var policy = await host.SendAsync(HttpMethod.Put, $"/v1/admin/policies/{TrustHost.Model}", host.AdminKey,
            new { block_at = new { hate = "medium", violence = "medium" }, pii = "annotate", blocklists = new[] { "secrets" } });
        Assert.Equal(HttpStatusCode.OK, policy.StatusCode);
    }

    /// <summary>Reads an SSE chat stream: the raw bytes, the content, the last finish_reason.</summary>
    static async Task<(string Raw, string Content, string? FinishReason, JsonElement? Filter)> StreamAsync(TrustHost host, string prompt)
    {
        using var response = await host.Client.SendAsync(host.Request(HttpMethod.Post, "/v1/chat/completions", host.InferenceKey, TrustHost.Chat(prompt, maxTokens: 64, stream: true)),
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var raw = await response.Content.ReadAsStringAsync();
        var content = new StringBuilder();
        string? finish = null;
        JsonElement? filter = null;
        foreach (var line in raw.Split('\n'))
        {
            if (!line.StartsWith("data: ") || line == "data: [DONE]") continue;
            var chunk = JsonDocument.Parse(line[6..]).RootElement;
            foreach (var choice in chunk.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").GetProperty("content").GetString() is { } text) content.Append(text);
                if (choice.GetProperty("finish_reason").GetString() is { } reason) finish = reason;
                if (choice.GetProperty("content_filter_results").ValueKind == JsonValueKind.Object) filter = choice.GetProperty("content_filter_results").Clone();
            }
        }
        return (raw, content.ToString(), finish, filter);
    }

    [Fact]
    public async Task A_blocklisted_word_generated_mid_stream_never_reaches_the_client()
    {
        await using var host = await TrustHost.StartAsync();
        await BlockZanzibarAsync(host);
        // More than the guard's hold-back window (64 characters, for PII) comes before the word.
        host.Fake.Pieces = ["Sure. ", "The ", "meeting ", "point ", "we ", "agreed ", "on ", "last ", "week ", "after ", "a ", "long ", "discussion ", "with ",
            "the ", "whole ", "crew ", "is ", "in ", "the ", "old ", "harbour ", "of ", "Zan", "zi", "bar ", "at ", "noon ", "tomorrow."];
        var (raw, content, finish, filter) = await StreamAsync(host, "where do we meet?");
        Assert.DoesNotContain("zan", raw, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("content_filter", finish);
        Assert.True(filter!.Value.GetProperty("custom_blocklists").GetProperty("filtered").GetBoolean());
        // Text well before the word was released; the guard held back only its window.
        Assert.StartsWith("Sure. The meeting point", content);

        var filtered = await host.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.RequestFiltered));
        var entry = Assert.Single(filtered);
        Assert.Contains("\"direction\":\"completion\"", entry.Details);
        // The list's entry that matched, not the completion's text around it.
        Assert.Contains("\"blocklist\":\"secrets\",\"terms\":[\"zanzibar\"]", entry.Details);
        Assert.DoesNotContain("harbour", entry.Details);
        Assert.Contains("content_sha256", entry.Details);
    }

    [Fact]
    public async Task A_clean_stream_arrives_whole_with_annotations()
    {
        await using var host = await TrustHost.StartAsync();
        await BlockZanzibarAsync(host);
        host.Fake.Pieces = ["Zanzi", "barbecue ", "is ", "not ", "a ", "word, ", "but ", "it ", "is ", "fine."];
        var (_, content, finish, filter) = await StreamAsync(host, "say something");
        Assert.Equal("Zanzibarbecue is not a word, but it is fine.", content);
        Assert.Equal("stop", finish);
        Assert.False(filter!.Value.GetProperty("hate").GetProperty("filtered").GetBoolean());
    }

    [Fact]
    public async Task A_filtered_prompt_gets_azures_400_content_filter()
    {
        await using var host = await TrustHost.StartAsync();
        await BlockZanzibarAsync(host);
        using var response = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", host.InferenceKey, TrustHost.Chat("tell me about zanzibar"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await TestJson.ErrorAsync(response);
        Assert.Equal("content_filter", error.GetProperty("code").GetString());
        Assert.Equal("prompt", error.GetProperty("param").GetString());
        var result = error.GetProperty("innererror").GetProperty("content_filter_result");
        Assert.True(result.GetProperty("custom_blocklists").GetProperty("filtered").GetBoolean());
        Assert.Contains(result.GetProperty("custom_blocklists").GetProperty("details").EnumerateArray(), d => d.GetProperty("id").GetString() == "secrets");
        var entry = Assert.Single(await host.Stores.Audit.ReadAsync(new AuditQuery(Action: AuditActions.RequestFiltered)));
        Assert.Contains("\"direction\":\"prompt\"", entry.Details);
        Assert.Contains("\"blocklist\":\"secrets\",\"terms\":[\"zanzibar\"]", entry.Details);
        Assert.DoesNotContain("tell me", entry.Details);
    }

    [Fact]
    public async Task A_filtered_whole_completion_finishes_with_content_filter()
    {
        await using var host = await TrustHost.StartAsync();
        await BlockZanzibarAsync(host);
        host.Fake.Pieces = ["Meet ", "me ", "in ", "Zanzibar."];
        using var response = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", host.InferenceKey, TrustHost.Chat("where?"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await TestJson.ReadAsync(response);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal("content_filter", choice.GetProperty("finish_reason").GetString());
        Assert.Equal("", choice.GetProperty("message").GetProperty("content").GetString());
        Assert.True(choice.GetProperty("content_filter_results").GetProperty("custom_blocklists").GetProperty("filtered").GetBoolean());
        // The prompt passed and is annotated as Azure does.
        Assert.False(body.GetProperty("prompt_filter_results")[0].GetProperty("content_filter_results").GetProperty("hate").GetProperty("filtered").GetBoolean());
    }

    [Fact]
    public async Task Moderations_answer_in_openais_schema_from_the_same_pipeline()
    {
        await using var host = await TrustHost.StartAsync();
        await BlockZanzibarAsync(host);
        using var response = await host.SendAsync(HttpMethod.Post, "/v1/moderations", host.InferenceKey,
            new { model = TrustHost.Model, input = new[] { "a pleasant day at the beach", "we sail to zanzibar" } });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await TestJson.ReadAsync(response);
        Assert.StartsWith("modr-", body.GetProperty("id").GetString());
        var results = body.GetProperty("results");
        Assert.False(results[0].GetProperty("flagged").GetBoolean());
        Assert.True(results[1].GetProperty("flagged").GetBoolean());
        Assert.True(results[1].GetProperty("categories").GetProperty("hate").GetBoolean());
        Assert.True(results[0].GetProperty("categories").TryGetProperty("self-harm", out _));
        Assert.Equal(JsonValueKind.Number, results[1].GetProperty("category_scores").GetProperty("hate").ValueKind);

        using var bad = await host.SendAsync(HttpMethod.Post, "/v1/moderations", host.InferenceKey, new { input = 42 });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("'input' must be a string", (await TestJson.ErrorAsync(bad)).GetProperty("message").GetString());
    }

    /// <summary>The CLI writes the same database; the server's pipeline notices once its refresh
    /// interval has passed, timed on the monotonic clock: a wall clock set back an hour does not
    /// keep the old blocklist for that hour.</summary>
    [Fact]
    public async Task A_blocklist_changed_by_another_process_applies_after_the_refresh_interval()
    {
        var clock = new TestClock(new DateTimeOffset(2026, 3, 5, 12, 0, 0, TimeSpan.Zero));
        await using var host = await TrustHost.StartAsync(time: clock);
        async Task<HttpStatusCode> AskAboutMombasaAsync()
        {
            using var response = await host.SendAsync(HttpMethod.Post, "/v1/chat/completions", host.InferenceKey, TrustHost.Chat("about mombasa"));
            return response.StatusCode;
        }
        Assert.Equal(HttpStatusCode.OK, await AskAboutMombasaAsync());
        var safety = host.Stores.SafetyConfiguration();
        await safety.UpsertBlocklistAsync(new Stratus.Safety.Blocklist("ports", ["mombasa"], []), "cli:test");
        await safety.SetPolicyAsync(Stratus.Safety.SafetyPolicy.Default(TrustHost.Model) with { Blocklists = ["ports"] }, "cli:test");
        var interval = host.Trust.Options.SafetyRefreshInterval;
        clock.Advance(interval - TimeSpan.FromSeconds(1));
        Assert.Equal(HttpStatusCode.OK, await AskAboutMombasaAsync());

        clock.StepWallClock(TimeSpan.FromHours(-1));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(HttpStatusCode.BadRequest, await AskAboutMombasaAsync());
    }
}
