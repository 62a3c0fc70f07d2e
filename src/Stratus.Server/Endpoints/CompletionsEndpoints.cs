// POST /v1/completions: the legacy text completion API: one or more prompts (text or token
// ids), n choices each, optional echo of the prompt, streamed or not.
using Stratus.Inference;
using Stratus.Safety;
using Stratus.Server.Api;
using Stratus.Server.Hosting;
using Stratus.Tokenization;

namespace Stratus.Server.Endpoints;

public static class CompletionsEndpoints
{
    /// <summary>OpenAI's default for the legacy endpoint.</summary>
    const int DefaultMaxTokens = 16;

    public static RouteGroupBuilder MapCompletions(this RouteGroupBuilder group)
    {
        group.MapPost("/completions", Handle);
        return group;
    }

    static async Task Handle(HttpContext http, ServedModels servedModels, ServingMetrics metrics, ServerShutdown shutdown, IEnumerable<IGenerationFilter> filters,
        IEnumerable<IPromptScreen> screens)
    {
        var cancellation = http.RequestAborted;
        var (body, model, sampling, choices) = await RequestParser.ReadGenerationAsync<CompletionRequest>(http, servedModels);
        var prompts = RequestParser.Prompts(body.Prompt);
        int? logprobs = body.Logprobs is null ? null : RequestParser.IntRange(body.Logprobs, 0, 0, 20, "logprobs");
        var tokenizer = model.Tokenizer;
        var promptTokens = new List<int[]>(prompts.Count);
        var promptTexts = new List<string>(prompts.Count);
        // A text prompt gets the tokenizer's special tokens (a Llama's BOS) unless the request says
        // otherwise; token ids are taken as given, as vLLM does.
        var addSpecialTokens = body.AddSpecialTokens ?? true;
        var specialTokensAdded = new List<bool>(prompts.Count);
        var longest = 0;
        // The first prompt the model cannot encode, or the prompts too long for the context: a
        // refusal once the screens have seen them all.
        ApiException? refusal = null;
        for (var i = 0; i < prompts.Count; i++)
        {
            var (text, ids) = prompts[i];
            var param = prompts.Count == 1 ? "prompt" : $"prompt[{i}]";
            if (ids is not null) RequestParser.CheckTokenIds(ids, tokenizer.VocabSize, param);
            else
            {
                try { ids = RequestParser.Encode(tokenizer, text!, param, addSpecialTokens); }
                catch (ApiException refused)
                {
                    refusal ??= refused;
                    promptTexts.Add(text!);
                    continue;
                }
            }
            promptTexts.Add(text ?? tokenizer.Decode(ids));
            // A model needs one token to condition on: start an empty prompt from end-of-text or a
            // newline, which the client did not write, so its echo is still empty (GenerationRun.EchoedTexts).
            if (ids.Length == 0) ids = tokenizer.EndOfTextId is { } eot ? [eot] : RequestParser.Encode(tokenizer, "\n", "prompt", addSpecialTokens: false);
            promptTokens.Add(ids);
            specialTokensAdded.Add(text is not null && addSpecialTokens);
            longest = Math.Max(longest, ids.Length);
        }
        var maxTokens = 0;
        if (refusal is null)
            try { maxTokens = RequestParser.MaxTokens(body.MaxTokens, "max_tokens", "prompt", longest, model.ContextLength, minimum: 0, DefaultMaxTokens); }
            catch (ApiException tooLong) { refusal = tooLong; }
        if (refusal is not null) throw await RequestParser.ScreenedAsync(refusal, screens, http, model.Name, null, promptTexts, cancellation);
        var echo = body.Echo == true;
        var request = sampling with { PromptTokens = promptTokens[0], MaxTokens = maxTokens, Logprobs = logprobs, PromptLogprobs = echo ? logprobs : null };
        var stream = body.Stream == true;
        var context = new GenerationContext(http, "completions", model, promptTexts, specialTokensAdded, null, request, choices, body.User, promptTokens.Sum(p => p.Length), stream);
        await using var run = await GenerationRun.StartAsync(context, promptTokens, [.. filters], metrics, cancellation, shutdown);
        // An echo is the prompt as the model got it (a filter may have rewritten it), so that its
        // tokens, their log-probabilities and usage.prompt_tokens agree.
        var echoedTexts = run.PromptTexts;
        var id = $"cmpl-{Guid.NewGuid():N}";
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var total = promptTokens.Count * choices;
        if (stream)
        {
            var events = new ServerSentEvents(http.Response);
            await events.StartAsync(cancellation);
            // The prompts' annotations ride on the first chunk with a choice (Azure sends them
            // alone first, with "choices": [], which breaks client code written for OpenAI's
            // streams, `chunk.choices[0].text`; readers of Azure's field find it either way).
            var promptFilterResults = run.PromptFilterResults;
            // A choice's echo goes out with its first piece: by then its prompt has been scored.
            var echoed = new bool[total];
            // text_offset counts from the start of the choice's whole text, echo included, each
            // generated token as its choice's text was decoded.
            var textOffsets = new int[total];
            var generatedTexts = logprobs is null ? [] : Enumerable.Range(0, total).Select(_ => run.GeneratedTexts()).ToArray();
            await foreach (var piece in run.ReadAllAsync())
            {
                var c = piece.Choice;
                if (echo && !echoed[c])
                {
                    echoed[c] = true;
                    var promptLogprobs = logprobs is null ? null : Logprobs(tokenizer, run, [], generatedTexts[c], c / choices, run.PromptLogprobs(c), ref textOffsets[c]);
                    await events.WriteAsync(new Completion(id, created, model.Name, [new CompletionChoice(c, echoedTexts[c / choices], promptLogprobs, null)]) { PromptFilterResults = promptFilterResults }, cancellation);
                    promptFilterResults = null;
                }
                if (piece.FinishReason is null && piece.Text.Length == 0 && (logprobs is null || piece.Tokens.Count == 0)) continue;
                var lp = logprobs is not null && piece.Tokens.Count > 0 ? Logprobs(tokenizer, run, piece.Tokens, generatedTexts[c], null, null, ref textOffsets[c]) : null;
                await events.WriteAsync(new Completion(id, created, model.Name, [new CompletionChoice(c, piece.Text, lp, piece.FinishReason) { ContentFilterResults = piece.FilterResults }])
                    { PromptFilterResults = promptFilterResults }, cancellation);
                promptFilterResults = null;
            }
            if (body.StreamOptions?.IncludeUsage == true)
                await events.WriteAsync(new Completion(id, created, model.Name, []) { Usage = Usage.Of(run.PromptTokens, run.CompletionTokens, run.CachedPromptTokens) }, cancellation);
            await events.DoneAsync(cancellation);
            return;
        }

        var texts = new StringBuilder[total];
        var tokens = new List<GeneratedToken>[total];
        var finish = new string?[total];
        var filterResults = new ContentFilterResults?[total];
        var withheld = new bool[total];
        for (var c = 0; c < total; c++)
        {
            texts[c] = new StringBuilder(echo ? echoedTexts[c / choices] : "");
            tokens[c] = [];
        }
        await foreach (var piece in run.ReadAllAsync())
        {
            if (piece.FinishReason is not null) (finish[piece.Choice], filterResults[piece.Choice], withheld[piece.Choice]) = (piece.FinishReason, piece.FilterResults, piece.TokensWithheld);
            texts[piece.Choice].Append(piece.Text);
            if (logprobs is not null) tokens[piece.Choice].AddRange(piece.Tokens);
        }
        var result = new CompletionChoice[total];
        for (var c = 0; c < total; c++)
        {
            var offset = 0;
            var lp = logprobs is null || withheld[c] ? null : Logprobs(tokenizer, run, tokens[c], run.GeneratedTexts(), echo ? c / choices : null, run.PromptLogprobs(c), ref offset);
            result[c] = new CompletionChoice(c, texts[c].ToString(), lp, finish[c]) { ContentFilterResults = filterResults[c] };
        }
        await http.Response.WriteAsJsonAsync(new Completion(id, created, model.Name, result)
        {
            Usage = Usage.Of(run.PromptTokens, run.CompletionTokens, run.CachedPromptTokens),
            PromptFilterResults = run.PromptFilterResults,
        }, OpenAiJson.Options, cancellation);
    }

    /// <summary>The legacy logprobs object; echoed prompt tokens (of prompt <paramref name="echo"/>)
    /// come first, the very first of them without a log-probability (nothing precedes it), as
    /// OpenAI writes it. Text offsets start at <paramref name="offset"/>, which is moved past the
    /// tokens' text, the generated tokens' as <paramref name="generatedTexts"/> (the choice's,
    /// which has had its tokens before these) decodes them.</summary>
    static CompletionLogprobs Logprobs(ITokenizer tokenizer, GenerationRun run, IReadOnlyList<GeneratedToken> generated, StreamingDecoder generatedTexts, int? echo,
        IReadOnlyList<GeneratedToken>? promptLogprobs, ref int offset)
    {
        var tokens = new List<string>();
        var values = new List<float?>();
        var top = new List<Dictionary<string, float>?>();
        var offsets = new List<int>();
        // Offsets count the text's characters (code points, as vLLM's count a Python str, so
        // that a client slices the text with them); tokens are named as TokenSpelling names them, a
        // special token left out of the text too (as vLLM names it).
        var prompt = echo ?? 0;
        int[] echoed = echo is null ? [] : run.Prompts[prompt];
        var echoedTexts = echo is null ? [] : run.EchoedTexts(prompt);
        for (var i = 0; i < echoed.Length; i++)
        {
            tokens.Add(TokenSpelling.Text(tokenizer, echoed[i]));
            offsets.Add(offset);
            offset += CodePoints.Count(echoedTexts[i]);
            if (i == 0 || promptLogprobs is null || i - 1 >= promptLogprobs.Count)
            {
                values.Add(null);
                top.Add(null);
                continue;
            }
            values.Add(promptLogprobs[i - 1].Logprob);
            top.Add(Alternatives(tokenizer, promptLogprobs[i - 1]));
        }
        foreach (var token in generated)
        {
            tokens.Add(TokenSpelling.Text(tokenizer, token.Token));
            values.Add(token.Logprob);
            top.Add(Alternatives(tokenizer, token));
            offsets.Add(offset);
            offset += CodePoints.Count(generatedTexts.Push(token.Token));
        }
        return new CompletionLogprobs(tokens, values, top, offsets);
    }

    /// <summary>The token's alternatives and the token itself, as OpenAI documents the legacy
    /// field ("always return the logprob of the sampled token, so there may be up to logprobs+1
    /// elements") and vLLM writes it; the chat API's top_logprobs are the likeliest only.</summary>
    static Dictionary<string, float> Alternatives(ITokenizer tokenizer, GeneratedToken token)
    {
        var alternatives = new Dictionary<string, float>();
        foreach (var alternative in token.TopLogprobs ?? []) alternatives.TryAdd(TokenSpelling.Text(tokenizer, alternative.Token), alternative.Logprob);
        alternatives.TryAdd(TokenSpelling.Text(tokenizer, token.Token), token.Logprob);
        return alternatives;
    }
}
