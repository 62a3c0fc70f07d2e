// POST /v1/chat/completions: renders the messages with the model's chat template, generates
// n choices, and answers with one chat.completion or a stream of chat.completion.chunk events.
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

    static async Task Handle(HttpContext http, ModelRegistry registry, ServingMetrics metrics, ServerShutdown shutdown, IEnumerable<IGenerationFilter> filters,
        IEnumerable<IPromptScreen> screens)
    {
        var cancellation = http.RequestAborted;
        var (body, model, sampling, choices) = await RequestParser.ReadGenerationAsync<ChatCompletionRequest>(http, registry);
        var chat = RequestParser.Chat(body.Messages, body.AddGenerationPrompt, body.ContinueFinalMessage);
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
        };
        var context = new GenerationContext(http, "chat.completions", model, [prompt], [addSpecialTokens], chat, request, choices, body.User, tokens.Length, body.Stream == true);
        await using var run = await GenerationRun.StartAsync(context, [tokens], [.. filters], metrics, cancellation, shutdown);
        var id = $"chatcmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (body.Stream == true) await StreamAsync(http, run, model, id, created, choices, body.StreamOptions?.IncludeUsage == true, request.Logprobs is not null, cancellation);
        else await http.Response.WriteAsJsonAsync(await CompleteAsync(run, model, id, created, choices, request.Logprobs is not null), OpenAiJson.Options, cancellation);
    }

    static async Task<ChatCompletion> CompleteAsync(GenerationRun run, ServedModel model, string id, long created, int choices, bool logprobs)
    {
        var texts = new StringBuilder[choices];
        var tokenLogprobs = new List<ChatTokenLogprob>?[choices];
        var finish = new string?[choices];
        var filterResults = new ContentFilterResults?[choices];
        var withheld = new bool[choices];
        for (var i = 0; i < choices; i++)
        {
            texts[i] = new StringBuilder();
            if (logprobs) tokenLogprobs[i] = [];
        }
        await foreach (var piece in run.ReadAllAsync())
        {
            if (piece.FinishReason is not null) (finish[piece.Choice], filterResults[piece.Choice], withheld[piece.Choice]) = (piece.FinishReason, piece.FilterResults, piece.TokensWithheld);
            texts[piece.Choice].Append(piece.Text);
            if (logprobs) foreach (var token in piece.Tokens) tokenLogprobs[piece.Choice]!.Add(Logprob(model, token));
        }
        var result = new ChatChoice[choices];
        for (var i = 0; i < choices; i++)
        {
            var lp = logprobs && !withheld[i] ? new ChatLogprobs(tokenLogprobs[i]!) : null;
            result[i] = new ChatChoice(i, new ChatMessageOut(texts[i].ToString()), lp, finish[i]) { ContentFilterResults = filterResults[i] };
        }
        return new ChatCompletion(id, created, model.Name, result, Usage.Of(run.PromptTokens, run.CompletionTokens, run.CachedPromptTokens)) { PromptFilterResults = run.PromptFilterResults };
    }

    static async Task StreamAsync(HttpContext http, GenerationRun run, ServedModel model, string id, long created, int choices, bool includeUsage, bool logprobs, CancellationToken cancellation)
    {
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
            if (piece.FinishReason is not null)
                await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(piece.Choice, new ChatDelta(), null, piece.FinishReason) { ContentFilterResults = piece.FilterResults }), cancellation);
            else if (piece.Text.Length > 0 || (logprobs && piece.Tokens.Count > 0))
            {
                var lp = logprobs && piece.Tokens.Count > 0 ? new ChatLogprobs([.. piece.Tokens.Select(t => Logprob(model, t))]) : null;
                await events.WriteAsync(Chunk(id, created, model, new ChatChunkChoice(piece.Choice, new ChatDelta { Content = piece.Text }, lp, null)), cancellation);
            }
        }
        if (includeUsage)
            await events.WriteAsync(new ChatCompletionChunk(id, created, model.Name, []) { Usage = Usage.Of(run.PromptTokens, run.CompletionTokens, run.CachedPromptTokens) }, cancellation);
        await events.DoneAsync(cancellation);
    }

    static ChatCompletionChunk Chunk(string id, long created, ServedModel model, ChatChunkChoice choice) => new(id, created, model.Name, [choice]);

    static ChatTokenLogprob Logprob(ServedModel model, GeneratedToken token)
    {
        var tokenizer = model.Tokenizer;
        var top = new List<ChatTopLogprob>();
        foreach (var alternative in token.TopLogprobs ?? [])
            top.Add(new ChatTopLogprob(TokenSpelling.Text(tokenizer, alternative.Token), alternative.Logprob, TokenSpelling.Bytes(tokenizer, alternative.Token)));
        return new ChatTokenLogprob(TokenSpelling.Text(tokenizer, token.Token), token.Logprob, TokenSpelling.Bytes(tokenizer, token.Token), top);
    }
}
