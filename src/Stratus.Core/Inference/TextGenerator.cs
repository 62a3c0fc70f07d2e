// Generates text from a prompt, streaming each completed piece of text to the caller as it is
// produced. Within the model's context the tokens come from a serving engine of its own
// (InferenceEngine: the same prefill chunks, decode step, sampler and random draws as a server's),
// so a seed gives the tokens a server given the same settings would give. Past the context, which
// a server refuses, it goes on as nanoGPT's sample.py does: each next token from the last
// block_size tokens, computed afresh (positions move, so cached keys no longer apply), drawn by the
// same sampler from the same random sequence.
using System.Runtime.ExceptionServices;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Inference;

public sealed class TextGenerator(CausalLanguageModel model, ITokenizer tokenizer)
{
    /// <summary>Tokens the engine may make before its caller reads them; it then waits. Left
    /// unbounded, a caller that stops reading (`sample | less` left open, a pipe whose reader
    /// sleeps) has the engine spend its cores and memory on up to the whole context (131,072
    /// tokens for an imported Llama 3) that nobody may read. The caller usually waits for the
    /// engine; the lead only needs to cover a reader's hiccup (its thread descheduled, a slow
    /// terminal write): 64 tokens are 14 ms of the fastest decoding measured here (the demo's
    /// model, 4,700 tokens/s), and a second and more of a GPT-2-sized model's, the most work
    /// made for nobody.</summary>
    internal const int ReadAhead = 64;

    public CausalLanguageModel Model => model;
    public ITokenizer Tokenizer => tokenizer;

    /// <summary>What to start from where no prompt is given (`stratus sample` without --prompt): a
    /// newline, as nanoGPT's sample.py does, where the vocabulary has one; else the text of its
    /// first token (a character vocabulary of text without newlines).</summary>
    public string DefaultPrompt => tokenizer.Unencodable("\n").Count == 0 ? "\n" : tokenizer.Decode([0]);

    /// <summary>Yields pieces of text as tokens are generated, special tokens left out; stops
    /// after maxTokens (which may run past the context) or at a token that ends generation
    /// (<see cref="ITokenizer.EndOfGenerationIds"/>). The prompt
    /// is encoded as the model expects one, with its tokenizer's special tokens (a Llama's BOS).
    /// The decode step multiplies with the model's <see cref="CausalLanguageModel.DecodeWeights"/>.
    /// A bad prompt or option throws here, before any text is produced.</summary>
    public IEnumerable<string> Generate(string prompt, int maxTokens, SamplingOptions options, CancellationToken cancellation = default)
    {
        options.Validate();
        if (maxTokens < 0) throw new StratusUserException($"max tokens must be 0 or more, got {maxTokens}");
        var promptTokens = tokenizer.Encode(prompt, addSpecialTokens: true);
        if (promptTokens.Length == 0)
        {
            // A model needs at least one token to condition on: start from end-of-text, or the default prompt.
            promptTokens = tokenizer.EndOfTextId is { } eot ? [eot] : tokenizer.Encode(DefaultPrompt);
        }
        var context = model.Config.BlockSize;
        if (promptTokens.Length > context)
            throw new StratusUserException($"the prompt is {promptTokens.Length} tokens, more than the model's context of {context}; shorten it");
        // Checked here, before any text, rather than when the engine is given the prompt.
        InferenceEngine.RequireInVocabulary(promptTokens, model.Config.VocabSize);
        return Continue(promptTokens, maxTokens, options, cancellation);
    }

    IEnumerable<string> Continue(int[] promptTokens, int maxTokens, SamplingOptions options, CancellationToken cancellation)
    {
        var context = model.Config.BlockSize;
        // As the server by default (vLLM's skip_special_tokens): special tokens are not text.
        var decoder = new StreamingDecoder(tokenizer, skipSpecialTokens: true);
        // The last block_size tokens, which the first step past the context starts from.
        var window = new long[context];
        var filled = 0;
        foreach (var t in promptTokens) window[filled++] = t;
        var inContext = Math.Min(maxTokens, context - promptTokens.Length);
        var produced = 0;
        Random? random = null;
        if (inContext > 0)
        {
            // An engine for this generation alone: KV blocks for this sequence's tokens only (a
            // pool for the whole context would be an imported Llama 3's 131,072 positions, 8 GiB
            // for a 1B model in float32, however few tokens are asked for), and a prefix cache
            // that is empty, as a server's is for a prompt it has not seen (a cached prefix would
            // be computed in other steps, so its logits could differ in their last bits).
            var engineOptions = new EngineOptions { MaxBatchSize = 1, DecodeWeights = model.DecodeWeights };
            engineOptions = engineOptions with { KvBlocks = (promptTokens.Length + inContext + engineOptions.BlockSize - 1) / engineOptions.BlockSize };
            Sequence sequence;
            using (var engine = new InferenceEngine(model, tokenizer, engineOptions))
            {
                sequence = engine.Submit(new GenerationRequest { PromptTokens = promptTokens, MaxTokens = inContext, Sampling = options, MaxUnreadTokens = ReadAhead }, cancellation);
                // Its one request: the engine's thread ends with this sequence, also when the caller
                // drops this enumerator without disposing it (the reader then cancels the sequence).
                engine.Drain();
                using var reader = new TokenReader(sequence);
                while (reader.TryRead(out var token))
                {
                    // The engine runs ahead of the caller (by ReadAhead tokens at most): what it
                    // made before the cancellation reached it is not yielded, as past the context
                    // none is made after it.
                    if (cancellation.IsCancellationRequested) break;
                    window[filled++] = token;
                    produced++;
                    var text = decoder.Push(token);
                    if (text.Length > 0) yield return text;
                }
            }
            // Ended by an end-of-generation token or a cancellation rather than by the context.
            if (sequence.FinishReason != FinishReason.Length || cancellation.IsCancellationRequested) produced = maxTokens;
            // The engine's thread has ended: the sequence's draws go on here.
            random = sequence.Random;
        }
        if (produced < maxTokens)
        {
            foreach (var text in PastTheContext(window, maxTokens - produced, decoder, options, random ?? options.NewRandom(), cancellation))
                yield return text;
        }
        var rest = decoder.Flush();
        if (rest.Length > 0) yield return rest;
    }

    /// <summary>A sequence's tokens as the engine emits them (end markers are not emitted), read
    /// on the caller's thread, each read making room for the engine (<see cref="ReadAhead"/>);
    /// disposing the reader cancels the sequence, so that an engine waiting for room ends
    /// (the engine is disposed next, and waits for its thread). Waiting for a token the engine
    /// has not made yet allocates nothing: this
    /// thread blocks until the channel's own wait, reused from token to token, signals it (a task
    /// for each wait cost some 125 bytes a token). A model step that failed throws its
    /// own exception, as a model call in this thread would: the CLI tells an out-of-memory or a
    /// user error from a bug by it. A reader dropped unfinished without being disposed (the
    /// caller stopped enumerating and let go of the enumerator) cancels the sequence once the GC
    /// finds it unreachable (<see cref="ReaderAbandonment"/>), so that the engine stops making
    /// tokens nobody can read and its thread, draining, ends.</summary>
    sealed class TokenReader : IDisposable
    {
        readonly Sequence sequence;
        readonly ReaderAbandonment abandonment;
        readonly ManualResetEventSlim ready = new();
        readonly Action signal;

        public TokenReader(Sequence sequence)
        {
            this.sequence = sequence;
            abandonment = new ReaderAbandonment(sequence);
            signal = ready.Set;
        }

        public bool TryRead(out int token)
        {
            var output = sequence.Output;
            while (true)
            {
                if (sequence.TryTake(out var next))
                {
                    token = next.Token;
                    return true;
                }
                var wait = output.WaitToReadAsync();
                if (!wait.IsCompleted)
                {
                    ready.Reset();
                    // Not on a captured context: none is waited on here, and capturing one allocates.
                    wait.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(signal);
                    ready.Wait();
                }
                var more = false;
                Exception? failure = null;
                try
                {
                    more = wait.GetAwaiter().GetResult();
                }
                catch (EngineStepFailedException e) when (e.InnerException is { } cause)
                {
                    failure = cause;
                }
                if (failure is not null) ExceptionDispatchInfo.Throw(failure);
                if (!more)
                {
                    token = 0;
                    return false;
                }
            }
        }

        public void Dispose()
        {
            // Harmless once the sequence has ended; before, the caller has stopped reading.
            sequence.Cancel();
            abandonment.Dispose();
            ready.Dispose();
        }
    }

    /// <summary>nanoGPT's loop past the context: each token from a forward over the last
    /// block_size tokens (<paramref name="window"/>, full), without a cache.</summary>
    IEnumerable<string> PastTheContext(long[] window, int count, StreamingDecoder decoder, SamplingOptions options, Random random, CancellationToken cancellation)
    {
        var context = window.Length;
        var drawable = LogitsSampler.DrawableTokens(model, tokenizer);
        var sampler = new LogitsSampler(drawable);
        var row = new float[drawable];
        var endOfGeneration = tokenizer.EndOfGenerationIds;
        var device = model.Device; // found by walking the model's parameters: once, not per token
        model.eval();
        // Held across the loop, as before: a guard taken per token made `sample` past the context
        // 7x slower here (1.4 s against 10.8 s for 500 tokens of a 64-token-context char model).
        using var noGrad = no_grad();
        for (var produced = 0; produced < count && !cancellation.IsCancellationRequested; produced++)
        {
            int token;
            using (NewDisposeScope())
            {
                var logits = model.Forward(torch.tensor(window, [1, context], device: device));
                // The last position's logits come to the CPU (the model may be on a GPU).
                logits[0, -1, ..drawable].to(ScalarType.Float32).cpu().contiguous().data<float>().CopyTo(row, 0, 0);
                token = sampler.Sample(row, options, random);
            }
            if (endOfGeneration.Contains(token)) yield break;
            Array.Copy(window, 1, window, 0, context - 1);
            window[^1] = token;
            var text = decoder.Push(token);
            if (text.Length > 0) yield return text;
        }
    }
}
