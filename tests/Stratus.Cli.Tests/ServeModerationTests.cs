// `stratus serve --moderation-url`: an OpenAI-compatible moderation service judges hate, sexual,
// violence and self_harm, which nothing else in serve classifies. Against a fake service on a
// free loopback port that flags a marker word as hate: the word is refused as content_filter
// and audited with the option, passes without it, and a service that is down is a 503.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Stratus.Cli.Tests;

public sealed class ServeModerationTests
{
    const string Marker = "zorblat";
    const string ModerationApiKeyVariable = "STRATUS_MODERATION_API_KEY";

    /// <summary>A /v1/moderations in OpenAI's shape that flags any input holding <see cref="Marker"/>
    /// as hate, and keeps the authorization and model of each request it was sent.</summary>
    sealed class FakeModerationService : IAsyncDisposable
    {
        readonly WebApplication app;
        public readonly System.Collections.Concurrent.ConcurrentQueue<(string? Authorization, string? Model, string Input)> Requests = new();

        FakeModerationService(WebApplication app) => this.app = app;

        public Uri Root => new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

        /// <param name="padding">Spaces after each answer's JSON (still a valid answer), to make it large.</param>
        public static async Task<FakeModerationService> StartAsync(int padding = 0)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var service = new FakeModerationService(app);
            app.MapPost("/v1/moderations", async (HttpContext context) =>
            {
                var body = (await JsonNode.ParseAsync(context.Request.Body))!;
                var input = (string)body["input"]!;
                service.Requests.Enqueue((context.Request.Headers.Authorization.ToString(), (string?)body["model"], input));
                var hate = input.Contains(Marker, StringComparison.Ordinal);
                var answer = new
                {
                    id = "modr-1",
                    model = "omni-moderation-latest",
                    results = new[]
                    {
                        new
                        {
                            flagged = hate,
                            categories = new Dictionary<string, bool> { ["hate"] = hate, ["sexual"] = false, ["violence"] = false, ["self-harm"] = false },
                            category_scores = new Dictionary<string, double> { ["hate"] = hate ? 0.97 : 0.001, ["sexual"] = 0.001, ["violence"] = 0.001, ["self-harm"] = 0.001 },
                        },
                    },
                };
                return Results.Text(JsonSerializer.Serialize(answer) + new string(' ', padding), "application/json");
            });
            await app.StartAsync();
            return service;
        }

        bool stopped;

        /// <summary>Stops listening (the service is down); again, nothing.</summary>
        public async ValueTask DisposeAsync()
        {
            if (stopped) return;
            stopped = true;
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>A tiny char-level model that chats (ChatML in characters) and an admin key.</summary>
    static string ModelAndKey(TempDirectory temp)
    {
        var tokenizer = Tokenization.CharTokenizer.FromCorpus(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\n");
        using (var model = new Models.Gpt(new Models.ModelConfig { VocabSize = tokenizer.VocabSize, BlockSize = 128, NLayer = 1, NHead = 1, NEmbd = 8, Bias = false }))
            Training.Checkpoint.Save(temp["model"], model, tokenizer,
                extraFiles: new Dictionary<string, string> { [Tokenization.ChatTemplate.FileName] = Tokenization.ChatTemplate.For(tokenizer).Source });
        var (code, stdout, stderr) = Cli.Run("keys", "create", "--name", "app", "--scopes", "inference,admin", "--data-dir", temp["home"]);
        Assert.True(code == 0, stderr);
        return stdout.TrimEnd().Split('\n')[^1];
    }

    static ServeLogTests.Server Serve(TempDirectory temp, string? moderationApiKey, params string[] options)
    {
        var info = Cli.StartInfo(["serve", "--model", $"m={temp["model"]}", "--port", "0", "--data-dir", temp["home"], .. options]);
        // Whatever the test machine's environment holds, the key is this one or none.
        info.Environment.Remove(ModerationApiKeyVariable);
        if (moderationApiKey is not null) info.Environment[ModerationApiKeyVariable] = moderationApiKey;
        return ServeLogTests.Server.Start(info);
    }

    static Task<HttpResponseMessage> ChatAsync(HttpClient http, string content) =>
        http.PostAsJsonAsync("chat/completions", new { model = "m", messages = new[] { new { role = "user", content } }, max_tokens = 2 });

    [Fact]
    public async Task A_moderation_service_finds_hate_in_a_served_chat_and_one_that_is_down_is_a_503()
    {
        using var temp = new TempDirectory();
        var key = ModelAndKey(temp);
        var moderation = await FakeModerationService.StartAsync();
        try
        {
            // The service's root as an OpenAI client takes it, ending in /v1.
            using var moderated = Serve(temp, "moderation-secret", "--moderation-url", new Uri(moderation.Root, "v1").ToString(), "--moderation-model", "omni-moderation-latest");
            using var plain = Serve(temp, "moderation-secret");
            using var http = new HttpClient { BaseAddress = await moderated.BaseUrlAsync(), Timeout = TimeSpan.FromSeconds(60) };
            http.DefaultRequestHeaders.Authorization = new("Bearer", key);
            using var plainHttp = new HttpClient { BaseAddress = await plain.BaseUrlAsync(), Timeout = TimeSpan.FromSeconds(60) };
            plainHttp.DefaultRequestHeaders.Authorization = new("Bearer", key);

            // Named at startup by its host, never by its key.
            Assert.Contains(moderated.Stdout, line => line == $"content safety: openai_moderation at {moderation.Root.Authority} judges hate, sexual, violence and self_harm " +
                $"(API key from ${ModerationApiKeyVariable})");
            Assert.DoesNotContain("moderation-secret", string.Join('\n', moderated.Stdout.Concat(moderated.Stderr)));
            Assert.DoesNotContain(plain.Stdout, line => line.StartsWith("content safety:", StringComparison.Ordinal));

            using (var refused = await ChatAsync(http, $"you {Marker}"))
            {
                var body = await refused.Content.ReadAsStringAsync();
                Assert.True(refused.StatusCode == HttpStatusCode.BadRequest, body);
                var error = JsonNode.Parse(body)!["error"]!;
                Assert.Equal("content_filter", (string?)error["code"]);
                var hate = error["innererror"]!["content_filter_result"]!["hate"]!;
                Assert.True((bool)hate["filtered"]!);
                Assert.Equal("high", (string?)hate["severity"]);
                var requestId = Assert.Single(refused.Headers.GetValues("x-request-id"));
                var audit = JsonNode.Parse(await http.GetStringAsync("admin/audit?action=request.filtered"))!["data"]!.AsArray();
                var details = Assert.Single(audit)!["details"]!;
                Assert.Equal(requestId, (string?)details["request_id"]);
                Assert.Equal("hate", (string?)details["filtered"]![0]!["category"]);
                Assert.Equal("openai_moderation", (string?)details["filtered"]![0]!["source"]);
            }
            // The service was asked with the key and model given, and the text it judged.
            Assert.Contains(moderation.Requests, request => request.Authorization == "Bearer moderation-secret" && request.Model == "omni-moderation-latest" && request.Input.Contains(Marker));

            using (var clean = await ChatAsync(http, "hello"))
                Assert.True(clean.IsSuccessStatusCode, await clean.Content.ReadAsStringAsync());
            // Without the option nothing classifies hate: the same chat is answered.
            using (var unmoderated = await ChatAsync(plainHttp, $"you {Marker}"))
                Assert.True(unmoderated.IsSuccessStatusCode, await unmoderated.Content.ReadAsStringAsync());

            // The service goes down: a text it cannot judge is neither passed nor blocked.
            await moderation.DisposeAsync();
            using (var down = await ChatAsync(http, "hello"))
            {
                var body = await down.Content.ReadAsStringAsync();
                Assert.True(down.StatusCode == HttpStatusCode.ServiceUnavailable, body);
                Assert.Equal("content_filter_unavailable", (string?)JsonNode.Parse(body)!["error"]!["code"]);
                Assert.Equal("5", Assert.Single(down.Headers.GetValues("Retry-After")));
            }
            Assert.Equal(0, moderated.Stop());
            Assert.Equal(0, plain.Stop());
        }
        finally
        {
            await moderation.DisposeAsync();
        }
    }

    /// <summary>An answer past TrustOptions.ModerationResponseLimit (1 MiB) is a failure, not
    /// read whole into memory for each request (HttpClient would take 2 GiB).</summary>
    [Fact]
    public async Task An_oversized_moderation_answer_is_a_503()
    {
        using var temp = new TempDirectory();
        var key = ModelAndKey(temp);
        await using var moderation = await FakeModerationService.StartAsync(padding: 4 << 20);
        using var server = Serve(temp, null, "--moderation-url", moderation.Root.ToString());
        using var http = new HttpClient { BaseAddress = await server.BaseUrlAsync(), Timeout = TimeSpan.FromSeconds(60) };
        http.DefaultRequestHeaders.Authorization = new("Bearer", key);
        using (var oversized = await ChatAsync(http, "hello"))
        {
            var body = await oversized.Content.ReadAsStringAsync();
            Assert.True(oversized.StatusCode == HttpStatusCode.ServiceUnavailable, body);
            Assert.Equal("content_filter_unavailable", (string?)JsonNode.Parse(body)!["error"]!["code"]);
        }
        Assert.NotEmpty(moderation.Requests);
        Assert.Equal(0, server.Stop());
    }

    [Fact]
    public void A_bad_moderation_url_is_refused_in_one_line_before_the_models_load()
    {
        using var temp = new TempDirectory();
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--moderation-url", "moderation.internal:8080"], "error: --moderation-url: Moderation provider URL 'moderation.internal:8080' is not an absolute http or https URL. " +
                "Give its root or base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8080"),
            // Never sent, and written into the log's errors: refused without echoing the password.
            (["--moderation-url", "https://ops:hunter2@moderation.internal/v1"], "error: --moderation-url: Moderation provider URL https://...@moderation.internal/v1 carries a user name or password, " +
                "which are never sent and would be logged: give the service's key as its API key instead. Give its root or base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8080"),
            (["--moderation-model", "omni-moderation-latest"], "error: --moderation-model names the model of a moderation service: give the service with --moderation-url too"),
        })
        {
            // The model folder does not exist: a check after the load would name it instead.
            var (code, _, stderr) = Cli.Run(["serve", "--model", temp["nothing"], "--port", "0", "--data-dir", temp["home"], .. args]);
            Assert.Equal(2, code);
            Assert.Equal(expected, stderr.Trim());
        }
    }
}
