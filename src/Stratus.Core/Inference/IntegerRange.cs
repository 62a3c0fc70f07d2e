// The bounds of an integer in structured outputs (JSON Schema's minimum, maximum,
// exclusiveMinimum and exclusiveMaximum, as zod writes for every z.number().int()), enforced as
// JsonGrammar reads the digits: an automaton whose state is the sign, how many digits have come,
// and whether they are below, equal to or above the first digits of the least and greatest
// magnitude of that sign. It fits the 16 bits JsonGrammar keeps beside a value's node, and states
// repeat (a value's own digits are not kept), so JsonVocabulary's per-state cache serves them.
// Integers of more than 19 digits are never written: a side without a bound, or one beyond
// long's range, stops at ±long.MaxValue.
using System.Globalization;

namespace Stratus.Inference;

/// <param name="Least">The least integer allowed, -long.MaxValue or more.</param>
/// <param name="Most">The greatest, long.MaxValue or less, and Least or more.</param>
internal readonly record struct IntegerRange(long Least, long Most)
{
    // A state: bit 0 the sign, bits 1-5 the digits read, bits 6-7 and 8-9 how they compare with
    // the first digits of the sign's least and greatest magnitude (Equal, Below, Above).
    const int Equal = 0, Below = 1, Above = 2;

    /// <summary>After a '-': the state of a negative integer with no digit yet.</summary>
    public const int Negative = 1;

    /// <summary>Whether a negative integer can be written (-0 is not: 0 is written as 0).</summary>
    public bool AllowsNegative => Least <= -1;

    /// <summary>The state after <paramref name="digit"/>, or -1 where no integer in range goes on so.</summary>
    public int Step(int state, byte digit)
    {
        var negative = (state & Negative) != 0;
        var (low, high) = Magnitudes(negative);
        if (high < low) return -1;
        var n = state >> 1 & 31;
        var d = digit - '0';
        var next = (negative ? Negative : 0) | (n + 1) << 1 | Compare(state >> 6 & 3, d, low, n) << 6 | Compare(state >> 8 & 3, d, high, n) << 8;
        // A leading 0 is the whole integer: no digit may follow it.
        return (n == 0 && d == 0 ? IsWhole(next) : CanFinish(next)) ? next : -1;
    }

    /// <summary>Whether the digits read are a whole integer in range.</summary>
    public bool IsWhole(int state)
    {
        var (low, high) = Magnitudes((state & Negative) != 0);
        var n = state >> 1 & 31;
        return n > 0 && Fits(n, state, Length(low), Length(high));
    }

    /// <summary>Whether some digits (none included) make the digits read a whole integer in range.</summary>
    bool CanFinish(int state)
    {
        var (low, high) = Magnitudes((state & Negative) != 0);
        var (n, lowLength, highLength) = (state >> 1 & 31, Length(low), Length(high));
        for (var length = n; length <= highLength; length++)
            if (Fits(length, state, lowLength, highLength)) return true;
        return false;
    }

    /// <summary>Whether an integer of <paramref name="length"/> digits that begins with the digits
    /// read can be in range: longer than the least magnitude, or as long and not below its
    /// digits so far (the rest can copy its rest), and likewise toward the greatest. The two hold
    /// apart: where the digits so far equal both bounds' first digits, copying the least's rest
    /// stays within the greatest.</summary>
    static bool Fits(int length, int state, int lowLength, int highLength) =>
        (length > lowLength || (length == lowLength && (state >> 6 & 3) != Below))
        && (length < highLength || (length == highLength && (state >> 8 & 3) != Above));

    /// <summary>How the digits so far compare with <paramref name="bound"/>'s first ones, given
    /// how the ones before compared and the next digit, at place <paramref name="n"/>.</summary>
    static int Compare(int before, int digit, ulong bound, int n)
    {
        if (before != Equal || n >= Length(bound)) return before;
        var at = (int)(bound / Powers[Length(bound) - 1 - n] % 10);
        return digit < at ? Below : digit > at ? Above : Equal;
    }

    /// <summary>The least and greatest magnitude of the sign's integers (high below low: none).</summary>
    (ulong Low, ulong High) Magnitudes(bool negative)
    {
        if (negative) return Least <= -1 ? ((ulong)Math.Max(-Most, 1), (ulong)-Least) : (1, 0);
        return Most >= 0 ? ((ulong)Math.Max(Least, 0), (ulong)Most) : (1, 0);
    }

    static int Length(ulong value)
    {
        var length = 1;
        while (length < Powers.Length && value >= Powers[length]) length++;
        return length;
    }

    /// <summary>10^0 to 10^19 (ulong holds 10^19, one place past long.MaxValue's 19 digits).</summary>
    static readonly ulong[] Powers = [.. Enumerable.Range(0, 20).Select(Power)];

    static ulong Power(int p)
    {
        var value = 1UL;
        for (var i = 0; i < p; i++) value *= 10;
        return value;
    }

    /// <summary>The bytes an integer in range may begin with.</summary>
    public IEnumerable<byte> FirstBytes()
    {
        if (AllowsNegative) yield return (byte)'-';
        for (var b = (byte)'0'; b <= '9'; b++)
            if (Step(0, b) >= 0) yield return b;
    }

    /// <summary>The integer in range nearest 0, the shortest to write.</summary>
    public string Shortest => (Least > 0 ? Least : Most < 0 ? Most : 0).ToString(CultureInfo.InvariantCulture);

    /// <summary>The characters that finish an integer in range from wherever the mask lets one
    /// get to: the digits of either bound (copied to stay on a bound), 0 (to pad to a bound's
    /// length) and 1 (the least magnitude of a negative).</summary>
    public IEnumerable<string> Needs() =>
        $"{Least}{Most}01".Where(char.IsAsciiDigit).Select(c => c.ToString()).Distinct();
}
