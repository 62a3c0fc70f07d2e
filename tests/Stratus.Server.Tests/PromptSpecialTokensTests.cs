// A model whose tokenizer puts a BOS before an input (Llama 2's post-processor) gets it as vLLM
// gives it: a completions text prompt gets one, counted in usage; token ids are taken as given;
// a chat whose template writes bos_token gets exactly one; /tokenize adds it to a prompt unless
// told not to; a prompt a filter rewrote keeps it.
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Stratus.Models;
using Stratus.Server.Hosting;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;

namespace Stratus.Server.Tests;

/// <summary>Has the model read "dot" wherever a completions prompt says "cat".</summary>
public sealed class CatToDotFilter : IGenerationFilter
{
    public ValueTask<IGenerationScope?> BeginAsync(GenerationContext context, CancellationToken cancellation) =>
        ValueTask.FromResult<IGenerationScope?>(context.Chat is null && context.Prompts.Any(p => p.Contains("cat")) ? new Scope([.. context.Prompts.Select(p => p.Replace("cat", "dot"))]) : null);

    sealed class Scope(IReadOnlyList<string> prompts) : IGenerationScope
    {
        public IReadOnlyList<Safety.PromptFilterResult>? PromptFilterResults => null;
        public IReadOnlyList<string>? Prompts => prompts;
        public ValueTask<FilteredText> OnOutputAsync(int choice, string text, CancellationToken cancellation) => ValueTask.FromResult(new FilteredText(text));
        public ValueTask<bool> AllowsAlternativeAsync(ReadOnlyMemory<char> before, string alternative, CancellationToken cancellation) => ValueTask.FromResult(true);
        public ValueTask<ChoiceEnd> OnChoiceEndAsync(int choice, CancellationToken cancellation) => ValueTask.FromResult(ChoiceEnd.None);
        public ValueTask CompleteAsync(int promptTokens, int completionTokens) => ValueTask.CompletedTask;
    }
}

/// <summary>A tiny random Llama with a Llama 2-shaped SentencePiece tokenizer (&lt;s&gt; before an
/// input) and a chat template that writes bos_token itself, as Mistral's does.</summary>
public sealed class LlamaModelServer : IAsyncLifetime
{
    public const int Bos = 1;

    public TinyModelServer Server { get; } = new() { CreateModel = d => CreateCheckpoint(d, chatTemplate: true), ConfigureServices = services => services.AddSingleton<IGenerationFilter, CatToDotFilter>() };

    /// <param name="chatTemplate">Whether the model has its own chat template; a base model
    /// without one is served with the plain template derived from its tokenizer.</param>
    public static string CreateCheckpoint(string directory, bool chatTemplate)
    {
        var vocab = new JsonObject { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        foreach (var c in "▁abcdefghijklmnopqrstuvwxyz") vocab[c.ToString()] = vocab.Count;
        string[] merges = ["▁ t", "h e", "▁t he", "▁ c", "a t", "▁c at", "▁ d", "▁ a", "▁ b"];
        foreach (var m in merges) vocab[m.Replace(" ", "")] = vocab.Count;
        var tokenizerJson = JsonNode.Parse("""
            {"added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true}, {"id": 2, "content": "</s>", "special": true}],
             "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
             "pre_tokenizer": null,
             "post_processor": {"type": "TemplateProcessing",
               "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
               "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
             "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": false, "fuse_unk": true}}
            """)!.AsObject();
        tokenizerJson["model"]!["vocab"] = vocab;
        tokenizerJson["model"]!["merges"] = new JsonArray([.. merges.Select(m => (JsonNode)m)]);
        var tokenizer = HfTokenizer.FromHuggingFace(tokenizerJson, new JsonObject { ["bos_token"] = "<s>", ["eos_token"] = "</s>" });
        torch.manual_seed(11);
        using var model = CausalLanguageModel.Create(new ModelConfig
        {
            Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 64, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false,
        });
        Checkpoint.Save(directory, model, tokenizer, extraFiles: chatTemplate ? new Dictionary<string, string>
        {
            [ChatTemplate.FileName] = "{{ bos_token }}{% for message in messages %}{{ message['content'] + ' ' }}{% endfor %}{% if add_generation_prompt %}{{ 'answer' }}{% endif %}",
        } : null);
        return directory;
    }

    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class PromptSpecialTokensTests(LlamaModelServer fixture) : IClassFixture<LlamaModelServer>
{
    const int Bos = LlamaModelServer.Bos;
    HttpClient Http => fixture.Server.Http;

    async Task<JsonNode> Post(string path, object body)
    {
        using var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonNode.Parse(text)!;
    }

    async Task<int[]> Tokenize(object body) => (await Post("/tokenize", body))["tokens"]!.AsArray().Select(t => (int)t!).ToArray();

    static readonly object[] Messages = [new { role = "user", content = "the hat" }];

    [Fact]
    public async Task Tokenize_adds_the_BOS_to_a_prompt_unless_told_not_to_and_messages_get_only_the_template_s()
    {
        var plain = await Tokenize(new { model = "tiny", prompt = "the hat", add_special_tokens = false });
        Assert.DoesNotContain(Bos, plain);
        var prompt = await Tokenize(new { model = "tiny", prompt = "the hat" });
        Assert.Equal([Bos, .. plain], prompt);
        var chat = await Tokenize(new { model = "tiny", messages = Messages });
        Assert.Equal(Bos, chat[0]);
        Assert.Single(chat, t => t == Bos);
        // Asked for, they come on top of the template's, as vLLM gives them.
        var chatWithSpecialTokens = await Tokenize(new { model = "tiny", messages = Messages, add_special_tokens = true });
        Assert.Equal([Bos, .. chat], chatWithSpecialTokens);
    }

    [Fact]
    public async Task Tokenize_renders_messages_with_the_generation_prompt_unless_told_not_to()
    {
        // vLLM's add_generation_prompt, true by default: the prompt a chat sends, or the conversation alone.
        var chat = await Tokenize(new { model = "tiny", messages = Messages });
        Assert.Equal(chat, await Tokenize(new { model = "tiny", messages = Messages, add_generation_prompt = true }));
        Assert.Equal(chat.Length, (int)(await Post("/v1/chat/completions", new { model = "tiny", messages = Messages, max_tokens = 1 }))["usage"]!["prompt_tokens"]!);
        var conversation = await Tokenize(new { model = "tiny", messages = Messages, add_generation_prompt = false });
        async Task<string> Detokenize(int[] tokens) => (string)(await Post("/detokenize", new { model = "tiny", tokens }))["prompt"]!;
        Assert.Equal(await Detokenize(conversation) + "answer", await Detokenize(chat));
    }

    [Fact]
    public async Task A_text_prompt_gets_one_BOS_counted_in_usage_and_token_ids_are_taken_as_given()
    {
        var plain = await Tokenize(new { model = "tiny", prompt = "the hat", add_special_tokens = false });
        var text = await Post("/v1/completions", new { model = "tiny", prompt = "the hat", max_tokens = 1, temperature = 0 });
        Assert.Equal(plain.Length + 1, (int)text["usage"]!["prompt_tokens"]!);
        var ids = await Post("/v1/completions", new { model = "tiny", prompt = plain, max_tokens = 1, temperature = 0 });
        Assert.Equal(plain.Length, (int)ids["usage"]!["prompt_tokens"]!);
        var withBos = await Post("/v1/completions", new { model = "tiny", prompt = new[] { Bos }.Concat(plain), max_tokens = 1, temperature = 0 });
        Assert.Equal((string)text["choices"]![0]!["text"]!, (string)withBos["choices"]![0]!["text"]!);
        // vLLM's add_special_tokens: false takes a text prompt as it is (one a client rendered with its BOS).
        var asIs = await Post("/v1/completions", new { model = "tiny", prompt = "the hat", max_tokens = 1, temperature = 0, add_special_tokens = false });
        Assert.Equal(plain.Length, (int)asIs["usage"]!["prompt_tokens"]!);
    }

    [Fact]
    public async Task A_chat_whose_template_writes_bos_token_gets_exactly_one()
    {
        var tokens = await Tokenize(new { model = "tiny", messages = Messages });
        var chat = await Post("/v1/chat/completions", new { model = "tiny", messages = Messages, max_tokens = 1 });
        Assert.Equal(tokens.Length, (int)chat["usage"]!["prompt_tokens"]!);
        // Unless the request asks for the tokenizer's too (vLLM's add_special_tokens).
        var asked = await Post("/v1/chat/completions", new { model = "tiny", messages = Messages, max_tokens = 1, add_special_tokens = true });
        Assert.Equal(tokens.Length + 1, (int)asked["usage"]!["prompt_tokens"]!);
        // In process, through IChatClient, the same.
        var response = await fixture.Server.Model.ChatClient.GetResponseAsync([new ChatMessage(ChatRole.User, "the hat")], new ChatOptions { MaxOutputTokens = 1 });
        Assert.Equal(tokens.Length, response.Usage!.InputTokenCount);
    }

    [Fact]
    public async Task The_serving_benchmark_s_prompts_start_as_a_text_prompt_does_and_share_only_the_asked_prefix()
    {
        // 15 shared tokens, the first the BOS: one whole KV block of 8 for the cache. A second
        // BOS where each prompt's own part starts would share 16, two blocks.
        using var benchmark = new Benchmarking.ServingBenchmark(new()
        {
            Url = fixture.Server.Server.RootUrl, Model = TinyModelServer.ModelName, Concurrency = [1], Requests = 3,
            PromptTokens = 30, SharedPrefixTokens = 15, MaxTokens = 1, ApiKey = fixture.Server.ApiKey,
        });
        var level = Assert.Single(await benchmark.RunAsync());
        Assert.Equal(0, level.Errors);
        Assert.Equal(8.0 / 30, level.PrefixCacheHitRate);
    }

    [Fact]
    public async Task An_echo_is_the_prompt_as_written_or_rewritten_and_the_BOS_added_to_it_takes_no_place_in_its_text()
    {
        async Task<JsonNode> Echo(object prompt) =>
            (await Post("/v1/completions", new { model = "tiny", prompt, max_tokens = 3, echo = true, logprobs = 1, temperature = 0 }))["choices"]![0]!;
        static int[] Offsets(JsonNode choice) => [.. choice["logprobs"]!["text_offset"]!.AsArray().Select(o => (int)o!)];
        var text = await Echo("the hat");
        Assert.StartsWith("the hat", (string)text["text"]!);
        Assert.Equal("<s>", (string)text["logprobs"]!["tokens"]![0]!);
        // A prompt the filter rewrote is echoed as the model got it, without spelling out the BOS.
        var rewritten = await Echo("the cat");
        Assert.StartsWith("the dot", (string)rewritten["text"]!);
        Assert.Equal(Bos, (int)(await Tokenize(new { model = "tiny", prompt = "the dot" }))[0]);
        // The same tokens given as ids, BOS included, echo it as text ("<s>") and "▁the" as " the":
        // past "the", the text prompt's offsets are those less these four characters, the
        // generated tokens' included (its "▁" before "the" is the tokenizer's, no character of it).
        var plain = await Tokenize(new { model = "tiny", prompt = "the hat", add_special_tokens = false });
        var ids = await Echo(new[] { Bos }.Concat(plain));
        Assert.StartsWith("<s> the hat", (string)ids["text"]!);
        Assert.Equal([0, 0, .. Offsets(ids).Skip(2).Select(o => o - "<s> ".Length)], Offsets(text));
    }

    [Fact]
    public async Task The_space_SentencePiece_puts_before_an_echoed_prompt_takes_no_place_in_its_text()
    {
        // "the hat" is <s> ▁the ▁ h at: the "▁" before "the" is the tokenizer's (Llama 2's dummy
        // prefix), not the client's, so "the" starts at 0 and the generated text at 7. Counted as
        // a space, every later offset was one past its token, as if the text were " the hat".
        foreach (var stream in new[] { false, true })
        {
            using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions",
                new { model = "tiny", prompt = "the hat", max_tokens = 3, echo = true, logprobs = 0, temperature = 0, stream });
            var json = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, json);
            var (text, tokens, offsets) = CompletionChoices.First(json, stream);
            Assert.StartsWith("the hat", text);
            Assert.Equal(["<s>", " the", " ", "h", "at"], tokens[..5]);
            Assert.Equal([0, 0, 3, 4, 5, 7], offsets[..6]);
        }
    }

    [Fact]
    public async Task A_text_prompt_a_filter_rewrote_keeps_its_BOS()
    {
        var rewritten = await Tokenize(new { model = "tiny", prompt = "the dot" });
        Assert.Equal(Bos, rewritten[0]);
        Assert.NotEqual(rewritten.Length, (await Tokenize(new { model = "tiny", prompt = "the cat" })).Length); // the rewrite shows
        var completion = await Post("/v1/completions", new { model = "tiny", prompt = "the cat", max_tokens = 1 });
        Assert.Equal(rewritten.Length, (int)completion["usage"]!["prompt_tokens"]!);
    }
}

/// <summary>The same Llama without a chat template of its own (a base model).</summary>
public sealed class BaseLlamaModelServer : IAsyncLifetime
{
    public TinyModelServer Server { get; } = new() { CreateModel = d => LlamaModelServer.CreateCheckpoint(d, chatTemplate: false) };
    public Task InitializeAsync() => Server.InitializeAsync();
    public Task DisposeAsync() => Server.DisposeAsync();
}

public sealed class DerivedChatTemplateSpecialTokensTests(BaseLlamaModelServer fixture) : IClassFixture<BaseLlamaModelServer>
{
    [Fact]
    public async Task A_chat_rendered_by_the_derived_template_gets_the_BOS_a_text_prompt_gets()
    {
        // The plain template knows no bos_token, so its rendering is a raw prompt, encoded as one.
        Assert.Equal(ChatTemplate.Plain, fixture.Server.Model.Template.Kind);
        var http = fixture.Server.Http;
        var messages = new[] { new { role = "user", content = "the hat" } };
        using var tokenized = await http.PostAsJsonAsync("/tokenize", new { model = "tiny", messages });
        var tokens = JsonNode.Parse(await tokenized.Content.ReadAsStringAsync())!["tokens"]!.AsArray().Select(t => (int)t!).ToArray();
        Assert.Equal(LlamaModelServer.Bos, tokens[0]);
        Assert.Single(tokens, t => t == LlamaModelServer.Bos);
        using var chat = await http.PostAsJsonAsync("/v1/chat/completions", new { model = "tiny", messages, max_tokens = 1 });
        var body = JsonNode.Parse(await chat.Content.ReadAsStringAsync())!;
        Assert.Equal(tokens.Length, (int)body["usage"]!["prompt_tokens"]!);
        var response = await fixture.Server.Model.ChatClient.GetResponseAsync([new ChatMessage(ChatRole.User, "the hat")], new ChatOptions { MaxOutputTokens = 1 });
        Assert.Equal(tokens.Length, response.Usage!.InputTokenCount);
    }
}
