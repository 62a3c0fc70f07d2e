// An IProgress<T> that reports on the working thread, in order: Progress<T> would post each
// report to the thread pool, so a progress bar could see them late and out of order.
namespace Stratus.Cli;

sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
