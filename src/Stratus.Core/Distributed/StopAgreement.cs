// Whether the ranks of a job stop within a training step (Ctrl+C, SIGTERM or SIGUSR1 on any),
// asked between two micro-batches. The ranks agree through a collective, which makes each wait
// for the slowest: asked before every micro-batch, under `mpirun -np 2` on two busy cores (load
// 6-14), a chat step of 8 micro-batches of a 4-layer model spent 51 ms in collectives, and 31 ms
// asked about once a second as here, as without asking (medians of 7 interleaved runs; 41 against
// 25 in 9 more; a non-blocking all-reduce begun at each micro-batch and read at its end did no
// better, 46: Open MPI moves it on only inside its calls; no difference on idle cores). Each
// agreement also sums the ranks' time in micro-batches since the last, from which all space the
// next alike, so every rank asks after the same micro-batches.
namespace Stratus.Distributed;

public sealed class StopAgreement(ICommunicator communicator, double everySeconds = 1)
{
    int interval = 1, since;
    TimeSpan elapsed;

    /// <summary>Notes a micro-batch this rank ran and the time it took.</summary>
    public void Ran(TimeSpan time)
    {
        since++;
        elapsed += time;
    }

    /// <summary>True on every rank when <paramref name="flag"/> is on any, as <see
    /// cref="DataParallel.AnyRank"/>, asked by every rank between the same two micro-batches; false
    /// until about <c>everySeconds</c> of micro-batches have run since the last agreement. In a
    /// world of one, the flag at each.</summary>
    public bool Agreed(bool flag)
    {
        if (communicator.WorldSize == 1) return flag;
        if (since < interval) return false;
        var sums = communicator.SumOverRanks(flag ? 1 : 0, elapsed.TotalSeconds);
        interval = (int)Math.Clamp(everySeconds / (sums[1] / communicator.WorldSize / since), 1, int.MaxValue);
        (since, elapsed) = (0, TimeSpan.Zero);
        return sums[0] > 0;
    }
}
