// vLLM's chat rendering fields: add_generation_prompt (false: no assistant header) and
// continue_final_message (the final message left open, so the model continues a prefilled reply),
// on /v1/chat/completions and /tokenize alike; and a model whose stored chat template Stratus
// cannot render, which is served for completions with its chats refused.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Stratus.Inference;
using Stratus.Server.Hosting;
using Stratus.Server.Trust;
using Stratus.Tokenization;

namespace Stratus.Server.Tests;

/// <summary>The tiny char model with a template that writes a role header before each message,
/// "#" after it (its end of turn), and "[assistant]" as the generation prompt.</summary>
public sealed class HeaderTemplateModelServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { CreateModel = d => CreateCheckpoint(d, Template) };

    const string Template = "{% for m in messages %}{{ '[' + m['role'] + ']' + m['content'] + '#\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '[assistant]' }}{% endif %}";

    public static string CreateCheckpoint(string directory, string template) =>
        TinyModelServer.SaveGpt(directory, CharTokenizer.FromCorpus(TinyModelServer.Corpus), context: 128, chatTemplate: template);

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class ChatPrefillTests(HeaderTemplateModelServer fixture) : IClassFixture<HeaderTemplateModelServer>
{
    HttpClient Http => fixture.Server.Http;
    static readonly object[] Prefilled = [new { role = "user", content = "Hi" }, new { role = "assistant", content = "The sky is" }];
    const string Open = "[user]Hi#\n[assistant]The sky is";

    async Task<JsonNode> Post(string path, object body)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!;
    }

    async Task<string> Refused(string path, object body)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonNode.Parse(text)!["error"]!;
        Assert.Equal("invalid_request_error", (string)error["type"]!);
        return (string)error["message"]!;
    }

    async Task<int[]> Tokenize(object body) => (await Post("/tokenize", body))["tokens"]!.AsArray().Select(t => (int)t!).ToArray();

    [Fact]
    public async Task Continue_final_message_continues_the_prefilled_reply_and_answers_the_continuation_only()
    {
        var chat = await Post("/v1/chat/completions", new
        {
            model = "tiny", messages = Prefilled, add_generation_prompt = false, continue_final_message = true, max_tokens = 6, temperature = 0, logprobs = true,
        });
        // The same prompt as text: the reply is what the model writes after "The sky is", nothing before it.
        var completion = await Post("/v1/completions", new { model = "tiny", prompt = Open, add_special_tokens = false, max_tokens = 6, temperature = 0, stop = "#" });
        Assert.Equal(Open.Length, (int)chat["usage"]!["prompt_tokens"]!);
        var reply = (string)chat["choices"]![0]!["message"]!["content"]!;
        Assert.Equal((string)completion["choices"]![0]!["text"]!, reply);
        Assert.Equal(reply, string.Concat(chat["choices"]![0]!["logprobs"]!["content"]!.AsArray().Select(t => (string)t!["token"]!)));
        // /tokenize renders it alike.
        Assert.Equal(await Tokenize(new { model = "tiny", prompt = Open, add_special_tokens = false }),
            await Tokenize(new { model = "tiny", messages = Prefilled, add_generation_prompt = false, continue_final_message = true }));
    }

    [Fact]
    public async Task Add_generation_prompt_false_renders_the_chat_without_the_assistant_header()
    {
        object[] messages = [new { role = "user", content = "Hi" }];
        var chat = await Post("/v1/chat/completions", new { model = "tiny", messages, add_generation_prompt = false, max_tokens = 1 });
        Assert.Equal("[user]Hi#\n".Length, (int)chat["usage"]!["prompt_tokens"]!);
        Assert.Equal("[user]Hi#\n[assistant]".Length, (int)(await Post("/v1/chat/completions", new { model = "tiny", messages, max_tokens = 1 }))["usage"]!["prompt_tokens"]!);
    }

    [Fact]
    public async Task Continue_final_message_with_the_generation_prompt_is_refused_as_vLLM_refuses_it()
    {
        const string expected = "continue_final_message and add_generation_prompt cannot both be true: set add_generation_prompt to false to continue the final message";
        // add_generation_prompt is true unless the request says otherwise.
        Assert.Equal(expected, await Refused("/v1/chat/completions", new { model = "tiny", messages = Prefilled, continue_final_message = true, max_tokens = 1 }));
        Assert.Equal(expected, await Refused("/v1/chat/completions", new { model = "tiny", messages = Prefilled, continue_final_message = true, add_generation_prompt = true, max_tokens = 1 }));
        Assert.Equal(expected, await Refused("/tokenize", new { model = "tiny", messages = Prefilled, continue_final_message = true }));
    }
}

/// <summary>Two models, one whose stored chat template uses a filter block, which Stratus cannot render.</summary>
public sealed class UnsupportedChatTemplateTests : IAsyncLifetime
{
    readonly string folder = Path.Combine(Path.GetTempPath(), $"stratus-unsupported-template-test-{Guid.NewGuid():N}");
    StratusServer server = null!;
    HttpClient http = null!;

    public async Task InitializeAsync()
    {
        var macro = HeaderTemplateModelServer.CreateCheckpoint(Path.Combine(folder, "macro"), "{% for m in messages %}{% include 'turn.jinja' %}{% endfor %}");
        var fine = TinyModelServer.CreateCheckpoint(Path.Combine(folder, "fine"));
        server = await StratusServer.StartAsync(new ServeOptions
        {
            Models = [new ModelSpec(macro, "macro"), new ModelSpec(fine, "fine")],
            Port = 0,
            Engine = new EngineOptions { BlockSize = 8, MaxBatchSize = 4 },
            Trust = new TrustOptions { DataDir = Path.Combine(folder, "data"), InsecureNoAuth = true },
        });
        http = new HttpClient { BaseAddress = server.RootUrl, Timeout = TimeSpan.FromSeconds(60) };
    }

    public async Task DisposeAsync()
    {
        http.Dispose();
        await server.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public async Task The_server_starts_serves_completions_and_refuses_that_model_s_chats_saying_how_to_fix_it()
    {
        object[] messages = [new { role = "user", content = "Hi" }];
        foreach (var (path, body) in new (string, object)[]
        {
            ("/v1/chat/completions", new { model = "macro", messages, max_tokens = 1 }),
            ("/v1/chat/completions", new { model = "macro", messages, max_tokens = 1, stream = true }),
            ("/tokenize", new { model = "macro", messages }),
        })
        {
            using var refused = await http.PostAsJsonAsync(path, body);
            var text = await refused.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            var error = JsonNode.Parse(text)!["error"]!;
            Assert.Equal(("invalid_request_error", "unsupported_chat_template", "messages"), ((string)error["type"]!, (string)error["code"]!, (string)error["param"]!));
            var message = (string)error["message"]!;
            Assert.StartsWith("The chat template of model 'macro' uses something Stratus does not support (the chat template cannot be used: the tag {% include %} is not supported)", message);
            Assert.Contains("--chat-template <file>", message);
            Assert.DoesNotContain(folder, message);
            Assert.DoesNotContain('\n', message);
        }
        using var completion = await http.PostAsJsonAsync("/v1/completions", new { model = "macro", prompt = "Hi", max_tokens = 1 });
        Assert.True(completion.IsSuccessStatusCode, await completion.Content.ReadAsStringAsync());
        using var tokenized = await http.PostAsJsonAsync("/tokenize", new { model = "macro", prompt = "Hi" });
        Assert.True(tokenized.IsSuccessStatusCode, await tokenized.Content.ReadAsStringAsync());
        // The model served beside it chats as ever.
        using var chat = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "fine", messages, max_tokens = 1 });
        Assert.True(chat.IsSuccessStatusCode, await chat.Content.ReadAsStringAsync());
        Assert.Equal("macro", server.Models.Get("macro").UnsupportedTemplate!.Path.Split(Path.DirectorySeparatorChar)[^2]);
    }

    [Fact]
    public async Task The_example_curl_line_for_a_model_that_cannot_chat_asks_for_a_completion()
    {
        // serve prints it for the first model: a chat request it would refuse.
        var example = server.CurlExample();
        Assert.Contains("/v1/completions ", example);
        using var reply = await http.PostAsync("/v1/completions", new StringContent(example[(example.IndexOf("-d '") + 4)..^1], System.Text.Encoding.UTF8, "application/json"));
        Assert.True(reply.IsSuccessStatusCode, await reply.Content.ReadAsStringAsync());
        Assert.Contains("/v1/chat/completions ", server.CurlExample(model: "fine"));
    }
}

/// <summary>The tiny char model with a template that writes the messages' content and nothing
/// else, so that a chat of empty messages renders as no text at all.</summary>
public sealed class ContentOnlyTemplateServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { CreateModel = d => HeaderTemplateModelServer.CreateCheckpoint(d, "{% for m in messages %}{{ m['content'] }}{% endfor %}") };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class EmptyChatPromptTests(ContentOnlyTemplateServer fixture) : IClassFixture<ContentOnlyTemplateServer>
{
    /// <summary>The engine would refuse a prompt of no tokens without naming a field: the
    /// client's fix is in its messages.</summary>
    [Fact]
    public async Task Messages_the_template_renders_as_no_tokens_are_a_400_on_messages()
    {
        foreach (var stream in new[] { false, true })
        {
            using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/chat/completions",
                new { model = "tiny", messages = new[] { new { role = "user", content = "" } }, max_tokens = 2, stream });
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, text);
            var error = JsonNode.Parse(text)!["error"]!;
            Assert.Equal(("messages", "invalid_value"), ((string?)error["param"], (string?)error["code"]));
            Assert.Contains("render as an empty prompt", (string)error["message"]!);
        }
        using var chat = await fixture.Server.Http.PostAsJsonAsync("/v1/chat/completions", new { model = "tiny", messages = new[] { new { role = "user", content = "a" } }, max_tokens = 2 });
        Assert.True(chat.IsSuccessStatusCode, await chat.Content.ReadAsStringAsync());
    }
}
