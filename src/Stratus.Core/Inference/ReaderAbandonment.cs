// What a sequence's reader holds so that a caller who stops reading and lets go of it without
// disposing it (an enumerator driven by hand and dropped unfinished, or one whose caller threw
// between two MoveNext calls) does not leave the engine making
// tokens nobody can read up to max_tokens, on an engine other requests share. Nothing but
// the reader refers to it, so the GC finds it unreachable with the reader, and its finalizer
// cancels the sequence. That holds only while the engine, which holds the sequence, cannot reach
// the reader: what a reader waits on the sequence's channel with must not lead back to it
// (TextGenerator's TokenReader waits with an event, GenerationStream with its OutputWait).
namespace Stratus.Inference;

internal sealed class ReaderAbandonment(Sequence sequence) : IDisposable
{
    ~ReaderAbandonment() => sequence.Cancel();

    /// <summary>The reading has ended (the sequence is over or has been cancelled): nothing is
    /// left to do when the reader is collected.</summary>
    public void Dispose() => GC.SuppressFinalize(this);
}
