// A .NET startup hook (DOTNET_STARTUP_HOOKS=<this test assembly>) that makes the CLI meet an
// exception no handler of its own expects, on the rank named by STRATUS_TEST_CONSOLE_FAILS_ON_RANK
// (0 for a single process): that rank's console refuses its first write, which rank 0 makes once
// training has begun, so the other ranks are by then waiting for it in a collective. The CLI
// itself has no hook for failures: this one is the runtime's. With STRATUS_TEST_SIGTERM_ON_OUTPUT
// the process sends itself SIGTERM as it writes the first line holding that text, for a stop at a
// point of the run that a signal from outside could only hit by chance.
using System.Runtime.InteropServices;
using System.Text;

static class StartupHook
{
    public static void Initialize()
    {
        var rank = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK") ?? "0";
        if (Environment.GetEnvironmentVariable("STRATUS_TEST_CONSOLE_FAILS_ON_RANK") == rank)
            Console.SetOut(new FailingWriter());
        if (Environment.GetEnvironmentVariable("STRATUS_TEST_SIGTERM_ON_OUTPUT") is { } text)
            Console.SetOut(new SignallingWriter(Console.Out, text));
    }

    sealed class SignallingWriter(TextWriter console, string text) : TextWriter
    {
        bool signalled;

        public override Encoding Encoding => console.Encoding;

        public override void Write(char value) => console.Write(value);

        public override void Write(string? value) => console.Write(value);

        public override void WriteLine(string? value)
        {
            console.WriteLine(value);
            if (signalled || value?.Contains(text) != true) return;
            signalled = true;
            console.Flush();
            // .NET runs the CLI's handler on a thread of its own, started for the signal, while the
            // run goes on: a fixed wait for it was a guess a loaded machine could beat. Handlers
            // run on that thread, the last registered first, so this one, registered after the
            // CLI's, names the thread; its end is the CLI's handler's end.
            Thread? handling = null;
            using (var handled = new ManualResetEventSlim())
            using (PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => { handling = Thread.CurrentThread; handled.Set(); }))
            {
                _ = kill(Environment.ProcessId, 15);
                handled.Wait();
            }
            handling!.Join();
        }
    }

    [DllImport("libc", SetLastError = true)]
    static extern int kill(int pid, int signal);

    sealed class FailingWriter : TextWriter
    {
        public override Encoding Encoding => Encoding.UTF8;

        // Every other Write and WriteLine of TextWriter ends here.
        public override void Write(char value) => throw new InvalidOperationException("injected failure: the console refused a write");
    }
}
