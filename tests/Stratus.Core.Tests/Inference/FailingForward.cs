// Makes a real GPT's forward throw part-way for the inputs a test picks: after its first layer
// has stored the call's keys and values in the cache and before its second does, with a
// libtorch-style message (a first line, then a C++ stack trace), as a device that runs out of
// memory mid-forward would. It hooks the model's own layers through TorchSharp's forward
// pre-hooks, so the engine and its runner run as they do in production. A decode step run whole
// in managed code (EngineOptions.DecodeWeights other than Torch) calls no layer: to fail decode
// steps, serve with DecodeWeights.Torch.
using System.Runtime.InteropServices;
using Stratus.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Tests.Inference;

public sealed class FailingForward
{
    /// <summary>The first line of libtorch's error for a CUDA allocation that failed (the
    /// default), and how the engine describes it (Stratus.OutOfMemory).</summary>
    public const string OutOfMemory = "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.19 GiB of which 1.25 GiB is free. Including non-PyTorch memory, this process has 77.93 GiB memory in use.";
    public const string OutOfMemoryDescribed = "out of GPU memory: could not allocate 20.00 MiB (GPU 0 has a total capacity of 79.19 GiB of which 1.25 GiB is free)";

    long[] tokens = [];
    bool failing;
    int failures;

    /// <param name="fails">Whether a call fails, given its token ids and their positions (both
    /// row by row).</param>
    /// <param name="error">The first line of the error it fails with.</param>
    public FailingForward(CausalLanguageModel model, Func<long[], long[], bool> fails, string error = OutOfMemory)
    {
        var layers = model.named_modules().ToDictionary(m => m.name, m => m.module);
        // Forward reads the token embedding, then the position embedding: each call sees both.
        ((Embedding)layers["transformer.wte"]).register_forward_pre_hook((_, input) =>
        {
            tokens = Values(input);
            return input;
        });
        ((Embedding)layers["transformer.wpe"]).register_forward_pre_hook((_, input) =>
        {
            failing = fails(tokens, Values(input));
            return input;
        });
        ((LayerNorm)layers["transformer.h.1.ln_1"]).register_forward_pre_hook((_, input) =>
        {
            if (!failing) return input;
            Interlocked.Increment(ref failures);
            throw new ExternalException($"{error}\nException raised from forward at model.cpp:42 (most recent call first):\nframe #0: c10::Error::Error");
        });
    }

    /// <summary>Calls that failed so far.</summary>
    public int Failures => Volatile.Read(ref failures);

    /// <summary>Every call whose tokens include <paramref name="token"/> fails.</summary>
    public static FailingForward OnToken(CausalLanguageModel model, int token, string error = OutOfMemory) => new(model, (tokens, _) => tokens.Contains(token), error);

    /// <summary>The ids or positions of a call (the engine's are contiguous, on the CPU in tests).</summary>
    static long[] Values(Tensor input) => input.data<long>().ToArray();
}
