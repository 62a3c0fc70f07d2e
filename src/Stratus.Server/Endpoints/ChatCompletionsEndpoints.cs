// POST /v1/chat/completions: renders the messages (and tools) with the model's chat template,
// generates n choices, and answers with one chat.completion or a stream of chat.completion.chunk
// events; where the request has tools, each choice's text is read into content and tool calls
// (ToolCalls.cs).
using Stratus.Inference;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Endpoints;

public static class ChatCompletionsEndpoints
{
    public static RouteGroupBuilder MapChatCompletions(this RouteGroupBuilder group)
    {
        group.MapPost("/chat/completions", Handle);
        return group;
    }

    static async Task Handle(HttpContext http, ServedModels servedModels, ServingMetrics metrics, ServerShutdown shutdown, IEnumerable<IGenerationFilter> filters,
        IEnumerable<IPromptScreen> screens)
    {
        var cancellation = http.RequestAborted;
        var (body, model, sampling, choices) = await RequestParser.ReadGenerationAsync<ChatCompletionRequest>(http, servedModels);
        var tools = ChatToolsParser.Parse(body);
        var chat = RequestParser.Chat(body.Messages, body.AddGenerationPrompt, body.ContinueFinalMessage, tools, RequestParser.TemplateVariables(body));
        // "auto" needs to know how the model writes a call; a forced call needs no parser.
        var parser = tools?.Choice == ToolChoiceKind.Auto
            ? model.ToolCallParser ?? throw ApiException.Invalid(
                $"tool_choice \"auto\" needs to know how model '{model.Name}' writes tool calls, and its chat template does not say: ask for a call with tool_choice \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, or have the server started with --tool-call-parser {string.Join("|", ToolCallParser.Names)}.",
                "tool_choice", "invalid_value")
            : null;
        var topLogprobs = RequestParser.IntRange(body.TopLogprobs, 0, 0, 20, "top_logprobs");
        if (body.TopLogprobs is not null && body.Logprobs != true)
            throw ApiException.Invalid("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
        // Continuing the final message, the reply (and its logprobs) is the continuation only.
        var prompt = chat.Render(model.Template);
        var addSpecialTokens = body.AddSpecialTokens ?? model.Template.AddSpecialTokens;
        var maxParam = body.MaxCompletionTokens is not null ? "max_completion_tokens" : "max_tokens";
        int[] tokens;
        int maxTokens;
        try
        {
            tokens = RequestParser.Encode(model.Tokenizer, prompt, "messages", addSpecialTokens);
            // The engine would refuse it too, but without naming what the client can change.
            if (tokens.Length == 0)
                throw ApiException.Invalid("The messages render as an empty prompt with this model's chat template, and the model needs at least one token to continue: give a message some content.", "messages", "invalid_value");
            maxTokens = RequestParser.MaxTokens(body.MaxCompletionTokens ?? body.MaxTokens, maxParam, "messages", tokens.Length, model.ContextLength, minimum: 1);
        }
        catch (ApiException refusal)
        {
            throw await RequestParser.ScreenedAsync(refusal, screens, http, model.Name, chat, [prompt], cancellation);
        }
        // The template's end of turn joins the client's stop sequences: their limit is on what a
        // client asks for, not on this.
        var (stopTokens, stopTexts) = model.Template.Stops(model.Tokenizer);
        var request = sampling with
        {
            PromptTokens = tokens,
            MaxTokens = maxTokens,
            Logprobs = body.Logprobs == true ? topLogprobs : null,
            Stop = [.. sampling.Stop, .. stopTexts],
            StopTokens = stopTokens,
            Schema = tools?.Schema ?? sampling.Schema,
            SchemaParam = tools?.Schema is null ? null : "tools",
            // A parser reads the markers of calls, which a vocabulary may hold as special tokens
            // (Hermes' <tool_call>, Llama's <|python_tag|>): vLLM's parsers keep them in the text too.
            SkipSpecialTokens = parser is not null && body.SkipSpecialTokens is null ? false : sampling.SkipSpecialTokens,
        };
        // A choice's text turns into content and calls unless the request offers none to make.
        ToolCallReader? Reader() => tools is { Choice: not ToolChoiceKind.None } ? new ToolCallReader(tools, parser) : null;
        var context = new GenerationContext(http, "chat.completions", model, [prompt], [addSpecialTokens], chat, request, choices, body.User, tokens.Length, body.Stream == true);
        await using var run = await GenerationRun.StartAsync(context, [tokens], [.. filters], metrics, cancellation, shutdown);
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var readers = Enumerable.Range(0, choices).Select(_ => Reader()).ToArray();
        if (body.Stream == true) await StreamAsync(http, run, model, id, created, readers, body.StreamOptions?.IncludeUsage == true, request.Logprobs is not null, cancellation);
        else await http.Response.WriteAsJsonAsync(await CompleteAsync(run, model, id, created, readers, request.Logprobs is not null), OpenAiJson.Options, cancellation);
    }

    /// <summary>A choice's message from its text, or from the events its reader made of it.</summary>
    sealed class MessageBuilder
    {
        readonly StringBuilder content = new();
        bool anyContent;
        readonly List<(string Id, string Name, StringBuilder Arguments)> calls = [];

        public void Add(string text)
        {
            content.Append(text);
            anyContent = true;
        }

        public void Add(ToolCallEvent e)
        {
            if (e.Content is { } text) Add(text);
            else if (e.Id is not null) calls.Add((e.Id, e.Name!, new StringBuilder(e.Arguments)));
            else calls[e.Index].Arguments.Append(e.Arguments);
        }

        public ChatMessageOut Message() => calls.Count == 0
            ? new ChatMessageOut(content.ToString())
            : new ChatMessageOut(anyContent ? content.ToString() : null) { ToolCalls = [.. calls.Select(c => new ToolCallOut(c.Id, new FunctionCallOut(c.Name, c.Arguments.ToString())))] };
    }

    static async Task<ChatCompletion> CompleteAsync(GenerationRun run, ServedModel model, string id, long created, ToolCallReader?[] readers, bool logprobs)
    {
        var choices = readers.Length;
        var texts = new MessageBuilder[choices];
        var tokenLogprobs = new List<ChatTokenLogprob>?[choices];
        var finish = new string?[choices];
        var filterResults = new ContentFilterResults?[choices];
        var withheld = new bool[choices];
        for (var i = 0; i < choices; i++)
        {
            texts[i] = new MessageBuilder();
            if (logprobs) tokenLogprobs[i] = [];
        }
        await foreach (var piece in run.ReadAllAsync())
        {
            var reader = readers[piece.Choice];
            if (reader is null) texts[piece.Choice].Add(piece.Text);
            else foreach (var e in reader.Add(piece.Text)) texts[piece.Choice].Add(e);
            if (piece.FinishReason is not null)
            {
                (finish[piece.Choice], filterResults[piece.Choice], withheld[piece.Choice]) = (piece.FinishReason, piece.FilterResults, piece.TokensWithheld);
                if (reader is not null)
                {
                    var (rest, reason) = reader.Finish(piece.FinishReason);
                    foreach (var e in rest) texts[piece.Choice].Add(e);
                    finish[piece.Choice] = reason;
                }
            }
            if (logprobs) foreach (var token in piece.Tokens) tokenLogprobs[piece.Choice]!.Add(Logprob(model, token));
        }
        var result = new ChatChoice[choices];
        for (var i = 0; i < choices; i++)
        {
            var lp = logprobs && !withheld[i] ? new ChatLogprobs(tokenLogprobs[i]!) : null;
            result[i] = new ChatChoice(i, texts[i].Message(), lp, finish[i]) { ContentFilterResults = filterResults[i] };
        }
        return new ChatCompletion(id, created, model.Name, result, Usage.Of(run.PromptTokens, run.CompletionTokens, run.CachedPromptTokens)) { PromptFilterResults = run.PromptFilterResults };
    }

    static async Task StreamAsync(HttpContext http, GenerationRun run, ServedModel model, string id, long created, ToolCallReader?[] readers, bool includeUsage, bool logprobs, CancellationToken cancellation)
    {
        var choices = readers.Length;
        var events = new ServerSentEvents(http.Response);
        await events.StartAsync(cancellation);
        // The prompt's annotations ride on the first chunk, choice 0's role. (Azure sends them
        // alone first, with "choices": [], which breaks client code written for OpenAI's
        // streams, `chunk.choices[0].delta`; readers of Azure's field find it either way.)
        for (var i = 0; i < choices; i++)
            await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(i, new ChatDelta { Role = "assistant", Content = "" }, null, null))
                with { PromptFilterResults = i == 0 ? run.PromptFilterResults : null }, cancellation);
        await foreach (var piece in run.ReadAllAsync())
        {
            var reader = readers[piece.Choice];
            var lp = logprobs && piece.Tokens.Count > 0 ? new ChatLogprobs([.. piece.Tokens.Select(t => Logprob(model, t))]) : null;
            var finish = piece.FinishReason;
            if (reader is null)
            {
                if (piece.Text.Length > 0 || lp is not null)
                    await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(piece.Choice, new ChatDelta { Content = piece.Text }, lp, null)), cancellation);
            }
            else
            {
                var made = reader.Add(piece.Text);
                if (finish is not null)
                {
                    var (rest, reason) = reader.Finish(finish);
                    made.AddRange(rest);
                    finish = reason;
                }
                // Text held back (a call that may be beginning) still has its tokens' logprobs sent.
                if (made.Count == 0 && lp is not null)
                    await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(piece.Choice, new ChatDelta(), lp, null)), cancellation);
                foreach (var e in made)
                {
                    await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(piece.Choice, Delta(e), lp, null)), cancellation);
                    lp = null;
                }
            }
            if (finish is not null)
                await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(piece.Choice, new ChatDelta(), null, finish) { ContentFilterResults = piece.FilterResults }), cancellation);
        }
        if (includeUsage)
            await events.WriteAsync(new ChatCompletionChunk(id, created, model.Name, []) { Usage = Usage.Of(run.PromptTokens, run.CompletionTokens, run.CachedPromptTokens) }, cancellation);
        await events.DoneAsync(cancellation);
    }

    static ChatCompletionChunk Chunk(string id, long created, ServedModel model, ChatChunkChoice choice) => new(id, created, model.Name, [choice]);

    /// <summary>An event as a stream's delta: content, a call's first piece (id, type, name,
    /// arguments ""), or a fragment of its arguments, as OpenAI streams them.</summary>
    static ChatDelta Delta(ToolCallEvent e) => e switch
    {
        { Content: { } text } => new ChatDelta { Content = text },
        { Id: { } callId } => new ChatDelta { ToolCalls = [new ToolCallDelta(e.Index) { Id = callId, Type = "function", Function = new FunctionDelta { Name = e.Name, Arguments = "" } }] },
        _ => new ChatDelta { ToolCalls = [new ToolCallDelta(e.Index) { Function = new FunctionDelta { Arguments = e.Arguments } }] },
    };

    static ChatTokenLogprob Logprob(ServedModel model, GeneratedToken token)
    {
        var tokenizer = model.Tokenizer;
        var top = new List<ChatTopLogprob>();
        foreach (var alternative in token.TopLogprobs ?? [])
            top.Add(new ChatTopLogprob(TokenSpelling.Text(tokenizer, alternative.Token), alternative.Logprob, TokenSpelling.Bytes(tokenizer, alternative.Token)));
        return new ChatTokenLogprob(TokenSpelling.Text(tokenizer, token.Token), token.Logprob, TokenSpelling.Bytes(tokenizer, token.Token), top);
    }
}
