// Generates text from a prompt with a KV cache: one prefill over the prompt, then one token at a
// time, streaming each completed piece of text to the caller as it is produced. Past the model's
// context it goes on as nanoGPT's sample.py does: each next token from the last block_size
// tokens, computed afresh (positions move, so cached keys no longer apply).
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

public sealed class TextGenerator(CausalLanguageModel model, ITokenizer tokenizer)
{
    public CausalLanguageModel Model => model;
    public ITokenizer Tokenizer => tokenizer;

    /// <summary>Yields pieces of text as tokens are generated, special tokens left out; stops
    /// after maxTokens (which may run past the context) or at a token that ends generation
    /// (<see cref="ITokenizer.EndOfGenerationIds"/>). The prompt
    /// is encoded as the model expects one, with its tokenizer's special tokens (a Llama's BOS).
    /// A bad prompt or option throws here, before any text is produced.</summary>
    public IEnumerable<string> Generate(string prompt, int maxTokens, SamplingOptions options, CancellationToken cancellation = default)
    {
        options.Validate();
        if (maxTokens < 0) throw new StratusUserException($"max tokens must be 0 or more, got {maxTokens}");
        var promptTokens = tokenizer.Encode(prompt, addSpecialTokens: true);
        if (promptTokens.Length == 0)
        {
            // A model needs at least one token to condition on: start from end-of-text, or a newline.
            promptTokens = tokenizer.EndOfTextId is { } eot ? [eot] : tokenizer.Encode("\n");
        }
        var context = model.Config.BlockSize;
        if (promptTokens.Length > context)
            throw new StratusUserException($"the prompt is {promptTokens.Length} tokens, more than the model's context of {context}; shorten it");
        return Continue(promptTokens, maxTokens, options, cancellation);
    }

    IEnumerable<string> Continue(int[] promptTokens, int maxTokens, SamplingOptions options, CancellationToken cancellation)
    {
        model.eval();
        using var noGrad = no_grad();
        var context = model.Config.BlockSize;
        // The engine's sampler, drawable tokens and seeding, so a seed gives the tokens the
        // server would give.
        var drawable = LogitsSampler.DrawableTokens(model, tokenizer);
        var sampler = new LogitsSampler(drawable);
        var random = options.NewRandom();
        var row = new float[drawable];
        using var cache = model.CreateCache(1, (int)Math.Min((long)promptTokens.Length + maxTokens, context));
        // As the server by default (vLLM's skip_special_tokens): special tokens are not text.
        var decoder = new StreamingDecoder(tokenizer, skipSpecialTokens: true);
        var endOfGeneration = tokenizer.EndOfGenerationIds.ToHashSet();
        var tokens = promptTokens.Select(t => (long)t).ToList();
        var device = model.Device; // found by walking the model's parameters: once, not per token
        var input = torch.tensor(tokens.ToArray(), [1, tokens.Count], device: device);
        for (var produced = 0; produced < maxTokens && !cancellation.IsCancellationRequested; produced++)
        {
            int token;
            using (var scope = NewDisposeScope())
            {
                var logits = tokens.Count <= context ? model.Forward(input, cache)
                    : model.Forward(torch.tensor(tokens.GetRange(tokens.Count - context, context).ToArray(), [1, context], device: device));
                // The last position's logits come to the CPU (the model may be on a GPU).
                logits[0, -1, ..drawable].to(ScalarType.Float32).cpu().contiguous().data<float>().CopyTo(row, 0, 0);
                token = sampler.Sample(row, options, random);
                input.Dispose();
                input = torch.tensor((long)token, device: device).view(1, 1).MoveToOuterDisposeScope();
            }
            if (endOfGeneration.Contains(token)) break;
            tokens.Add(token);
            var text = decoder.Push(token);
            if (text.Length > 0) yield return text;
        }
        input.Dispose();
        var rest = decoder.Flush();
        if (rest.Length > 0) yield return rest;
    }
}
