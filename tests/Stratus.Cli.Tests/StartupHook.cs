// A .NET startup hook (DOTNET_STARTUP_HOOKS=<this test assembly>) that makes the CLI meet an
// exception no handler of its own expects, on the rank named by STRATUS_TEST_CONSOLE_FAILS_ON_RANK
// (0 for a single process): that rank's console refuses its first write, which rank 0 makes once
// training has begun, so the other ranks are by then waiting for it in a collective. The CLI
// itself has no hook for failures: this one is the runtime's.
using System.Text;

static class StartupHook
{
    public static void Initialize()
    {
        var rank = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK") ?? "0";
        if (Environment.GetEnvironmentVariable("STRATUS_TEST_CONSOLE_FAILS_ON_RANK") == rank)
            Console.SetOut(new FailingWriter());
    }

    sealed class FailingWriter : TextWriter
    {
        public override Encoding Encoding => Encoding.UTF8;

        // Every other Write and WriteLine of TextWriter ends here.
        public override void Write(char value) => throw new InvalidOperationException("injected failure: the console refused a write");
    }
}
