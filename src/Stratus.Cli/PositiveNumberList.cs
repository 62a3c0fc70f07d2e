// The value of a bench option that lists positive whole numbers (`--terms 10,1000`, `--sizes
// 128,4096`, `--concurrency 1,4,16`): each number that is not one refused by name, in one line
// saying what fits.
namespace Stratus.Cli;

static class PositiveNumberList
{
    /// <param name="fits">What the option takes, as the error says it: "list sizes such as 10,1000".</param>
    public static int[] Parse(string option, string text, string fits)
    {
        var numbers = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!int.TryParse(part, out var number) || number < 1)
                throw new StratusUserException($"{option}: '{part}' is not a positive whole number; give {fits}");
            numbers.Add(number);
        }
        if (numbers.Count == 0) throw new StratusUserException($"{option} names no number; give {fits}");
        return [.. numbers];
    }
}
