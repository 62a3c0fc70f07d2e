// POST /tokenize and POST /detokenize (vLLM's extras): a model's tokens for text or chat
// messages, and text for tokens, so clients can count and build prompts exactly.
using System.Text.Json;
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Endpoints;

public static class TokenizerEndpoints
{
    public static IEndpointRouteBuilder MapTokenizer(this IEndpointRouteBuilder app)
    {
        app.MapPost("/tokenize", async (HttpContext http, ServedModels servedModels) =>
        {
            var body = await OpenAiJson.ReadAsync<TokenizeRequest>(http.Request, http.RequestAborted);
            var model = servedModels.Get(body.Model, allowDefault: true);
            string text;
            // Tools are rendered as a chat with them renders its prompt, so the count is its prompt_tokens.
            if (body.Messages is not null) text = RequestParser.Chat(body.Messages, body.AddGenerationPrompt, body.ContinueFinalMessage, ChatToolsParser.Parse(body.Tools), RequestParser.TemplateVariables(body.ChatTemplateKwargs)).Render(model.Template);
            else if (body.Tools is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) })
                throw ApiException.Invalid("'tools' are rendered with 'messages' by the chat template; a 'prompt' is tokenized as it is. Send the conversation as 'messages', or leave out 'tools'.", "tools", "invalid_value");
            else if (body.ChatTemplateKwargs is { ValueKind: not (JsonValueKind.Null or JsonValueKind.Undefined) })
                throw ApiException.Invalid("'chat_template_kwargs' are read by the chat template, which renders 'messages'; a 'prompt' is tokenized as it is. Send the conversation as 'messages', or leave out 'chat_template_kwargs'.", "chat_template_kwargs", "invalid_value");
            else text = body.Prompt ?? throw ApiException.Invalid("Give either 'prompt' or 'messages'.", "prompt", "missing_required_parameter");
            // As vLLM: a prompt gets the special tokens a completions prompt gets, messages the
            // tokens a chat gets, unless the body says.
            var tokens = RequestParser.Encode(model.Tokenizer, text, body.Messages is not null ? "messages" : "prompt",
                body.AddSpecialTokens ?? (body.Messages is null || model.Template.AddSpecialTokens));
            await http.Response.WriteAsJsonAsync(new TokenizeResponse(tokens, tokens.Length, model.ContextLength), OpenAiJson.Options, http.RequestAborted);
        });
        app.MapPost("/detokenize", async (HttpContext http, ServedModels servedModels) =>
        {
            var body = await OpenAiJson.ReadAsync<DetokenizeRequest>(http.Request, http.RequestAborted);
            var model = servedModels.Get(body.Model, allowDefault: true);
            var tokens = body.Tokens ?? throw ApiException.Invalid("Missing required parameter: 'tokens'.", "tokens", "missing_required_parameter");
            RequestParser.CheckTokenIds(tokens, model.Tokenizer.VocabSize, "tokens");
            await http.Response.WriteAsJsonAsync(new DetokenizeResponse(model.Tokenizer.Decode(tokens)), OpenAiJson.Options, http.RequestAborted);
        });
        return app;
    }
}
