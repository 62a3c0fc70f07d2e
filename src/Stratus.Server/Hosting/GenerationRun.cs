// Runs one API request's generations on the engine: one sequence per prompt and choice,
// submitted together (so a full queue refuses the whole request before anything is sent),
// read as one merged stream of pieces, with filters and metrics applied on the way out.
// Both completion endpoints use it; the endpoints only translate to and from OpenAI's shapes.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Stratus.Inference;
using Stratus.Server.Api;

namespace Stratus.Server.Hosting;

/// <summary>A piece of one choice's output, or that choice's end (FinishReason set).</summary>
public readonly record struct ChoicePiece(int Choice, string Text, GeneratedToken? Token, string? FinishReason);

public sealed class GenerationRun : IAsyncDisposable
{
    readonly GenerationContext context;
    readonly IReadOnlyList<IGenerationFilter> filters;
    readonly ServingMetrics metrics;
    readonly GenerationStream[] streams;
    readonly CancellationTokenSource cancel;
    readonly long started = Stopwatch.GetTimestamp();
    long? firstToken;
    string outcome = FinishReason.Cancelled;

    GenerationRun(GenerationContext context, IReadOnlyList<IGenerationFilter> filters, ServingMetrics metrics, GenerationStream[] streams, CancellationTokenSource cancel)
    {
        this.context = context;
        this.filters = filters;
        this.metrics = metrics;
        this.streams = streams;
        this.cancel = cancel;
    }

    public IReadOnlyList<GenerationStream> Streams => streams;
    public int PromptTokens { get; private set; }
    public int CompletionTokens { get; private set; }

    /// <summary>Runs the filters and submits every sequence; 429 when the engine's queue is full.</summary>
    public static async Task<GenerationRun> StartAsync(GenerationContext context, IReadOnlyList<int[]> promptTokens, IReadOnlyList<IGenerationFilter> filters,
        ServingMetrics metrics, CancellationToken cancellation)
    {
        foreach (var filter in filters) await filter.BeforeGenerationAsync(context, cancellation);
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var streams = new GenerationStream[promptTokens.Count * context.Choices];
        try
        {
            for (var p = 0; p < promptTokens.Count; p++)
            {
                for (var i = 0; i < context.Choices; i++)
                {
                    // Choices of one request differ, yet a seed still reproduces all of them.
                    var request = context.Request with { PromptTokens = promptTokens[p], Seed = context.Request.Seed + i };
                    streams[p * context.Choices + i] = new GenerationStream(context.Model.Engine, request, cancel.Token);
                }
            }
        }
        catch (Exception e)
        {
            cancel.Cancel();
            cancel.Dispose();
            throw e switch
            {
                EngineOverloadedException o => new ApiException(429, o.Message, code: "rate_limit_exceeded") { RetryAfterSeconds = (int)Math.Ceiling(o.RetryAfter.TotalSeconds) },
                EngineUnavailableException u => new ApiException(503, $"The model `{context.Model.Name}` is not available: {u.Message}.", code: "service_unavailable") { RetryAfterSeconds = 5 },
                StratusUserException s => ApiException.Invalid(s.Message),
                _ => e,
            };
        }
        return new GenerationRun(context, filters, metrics, streams, cancel);
    }

    /// <summary>Pieces of all choices as they are generated, each choice ending with a piece
    /// that carries its finish reason.</summary>
    public async IAsyncEnumerable<ChoicePiece> ReadAllAsync()
    {
        var token = cancel.Token;
        // One choice (the common case) is read directly: merging would add a thread hop per token.
        var pieces = streams.Length == 1 ? ReadChoiceAsync(0, token) : Merge(token);
        await foreach (var piece in pieces.ConfigureAwait(false))
        {
            if (piece.Token is not null && firstToken is null) firstToken = Stopwatch.GetTimestamp();
            yield return piece;
        }
        foreach (var stream in streams)
        {
            PromptTokens += stream.PromptTokens;
            CompletionTokens += stream.CompletionTokens;
        }
        // Prompt tokens are counted once per prompt, not per choice (OpenAI's usage).
        PromptTokens /= context.Choices;
        outcome = streams.Length > 0 && Array.TrueForAll(streams, s => s.FinishReason == FinishReason.Stop) ? FinishReason.Stop : FinishReason.Length;
        metrics.Generated(context.Model.Name, started, firstToken, PromptTokens, CompletionTokens);
    }

    IAsyncEnumerable<ChoicePiece> Merge(CancellationToken cancellation)
    {
        var merged = Channel.CreateUnbounded<ChoicePiece>(new UnboundedChannelOptions { SingleReader = true });
        var pumps = new Task[streams.Length];
        for (var i = 0; i < streams.Length; i++) pumps[i] = Pump(i, merged.Writer, cancellation);
        _ = Task.WhenAll(pumps).ContinueWith(t => merged.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        return merged.Reader.ReadAllAsync(cancellation);
    }

    async Task Pump(int choice, ChannelWriter<ChoicePiece> writer, CancellationToken cancellation)
    {
        await foreach (var piece in ReadChoiceAsync(choice, cancellation).ConfigureAwait(false)) writer.TryWrite(piece);
    }

    async IAsyncEnumerable<ChoicePiece> ReadChoiceAsync(int choice, [EnumeratorCancellation] CancellationToken cancellation)
    {
        var stream = streams[choice];
        await foreach (var chunk in stream.ReadAllAsync(cancellation).ConfigureAwait(false))
        {
            var text = chunk.Text;
            for (var f = 0; f < filters.Count; f++) text = filters[f].OnOutputText(context, choice, text);
            yield return new ChoicePiece(choice, text, chunk.Token, null);
        }
        yield return new ChoicePiece(choice, "", null, stream.FinishReason);
    }

    public async ValueTask DisposeAsync()
    {
        // Whatever happened (client gone, error), the sequences leave the engine now.
        await cancel.CancelAsync();
        cancel.Dispose();
        metrics.RequestEnded(context.Model.Name, outcome);
    }
}
