// A grammar read byte by byte: a given text, or a random walk through what it accepts, byte by
// printable byte, as sampling would take one (the bounds tests check that every walk ends in a
// valid document and never at a dead end).
using System.Text;
using Stratus.Inference;

namespace Stratus.Tests.Inference;

static class GrammarWalk
{
    static readonly byte[] Printable = Enumerable.Range(0x20, 0x5F).Select(b => (byte)b).ToArray();

    /// <summary>The index of the first byte of <paramref name="text"/> refused (-1: none) and
    /// whether the text is whole.</summary>
    public static (int Refused, bool Complete) Read(JsonSchema schema, string text)
    {
        var json = new JsonGrammar(schema);
        var bytes = Encoding.UTF8.GetBytes(text);
        for (var i = 0; i < bytes.Length; i++)
            if (!json.Accept(bytes[i])) return (i, false);
        return (-1, json.IsComplete);
    }

    /// <summary>The document one walk writes: a digit <paramref name="digitOdds"/> - 1 times in
    /// <paramref name="digitOdds"/> where one is allowed (so walks reach the bounds' lengths and
    /// fractions), else any byte allowed.</summary>
    public static string Write(JsonSchema schema, Random random, int digitOdds)
    {
        var state = new JsonGrammar(schema);
        var text = new List<byte>();
        while (!state.IsComplete)
        {
            var options = Printable.Where(b => { var next = state; return next.Accept(b); }).ToArray();
            Assert.NotEmpty(options); // never a dead end
            var digits = options.Where(b => char.IsAsciiDigit((char)b)).ToArray();
            var b = digits.Length > 0 && random.Next(digitOdds) > 0 ? digits[random.Next(digits.Length)] : options[random.Next(options.Length)];
            Assert.True(state.Accept(b));
            text.Add(b);
        }
        return Encoding.UTF8.GetString([.. text]);
    }
}
