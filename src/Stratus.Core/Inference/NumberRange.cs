// The bounds and multipleOf of a number in structured outputs (JSON Schema's minimum, maximum,
// exclusiveMinimum, exclusiveMaximum and multipleOf, as zod and pydantic write them), enforced as
// JsonGrammar reads the digits. A number is read as an integer scaled by 10^Fraction (0.75 with
// 2 fraction digits is 75, 3 is 300): the state is the sign, the significant digits read (a
// leading 0 and the zeros after "0." are none), whether they are below, equal to or above the
// first digits of the least and greatest magnitude of that sign, whether the point has come and
// how many fraction digits, and for a multipleOf the remainder so far. The value's own digits are
// not kept, so states repeat and JsonVocabulary's per-state cache serves them. Each digit must
// leave some value in range (and a multiple) reachable, so a document out of range cannot be
// sampled. No exponent is written; a number has at most Fraction fraction digits and at most 19
// digits in all once scaled: a side without a bound, or one beyond that, stops at ±long.MaxValue.
using System.Globalization;

namespace Stratus.Inference;

/// <param name="Least">The least value allowed, scaled by 10^<paramref name="Fraction"/>; -long.MaxValue or more.</param>
/// <param name="Most">The greatest, scaled likewise; long.MaxValue or less, and Least or more.</param>
/// <param name="Fraction">The fraction digits a value may have (0: an integer).</param>
/// <param name="Multiple">The scaled values are multiples of it (1: any); only on integers.</param>
internal readonly record struct NumberRange(long Least, long Most, int Fraction = 0, int Multiple = 1)
{
    /// <summary>The largest multipleOf enforced: the remainder takes 20 bits of the state, and each
    /// remainder is a state of its own to JsonVocabulary's cache.</summary>
    public const int MaxMultiple = 1_000_000;

    /// <summary>Fraction digits at most: 19 digits in all once scaled leaves 4 before the point.</summary>
    public const int MaxFraction = 15;

    // A state: bit 0 the sign, bits 1-5 the significant digits read, bits 6-7 and 8-9 how they
    // compare with the first digits of the sign's least and greatest magnitude (Equal, Below,
    // Above), bit 10 a leading 0, bit 11 the point, bits 12-16 the fraction digits read, bits 17-36
    // the remainder of the significant digits by Multiple.
    const int Equal = 0, Below = 1, Above = 2;
    const long LeadingZero = 1 << 10, Point = 1 << 11, Counts = (31 << 1) | (15 << 6) | (((1L << 20) - 1) << 17);

    /// <summary>After a '-': the state of a negative number with no digit yet.</summary>
    public const long Negative = 1;

    /// <summary>Whether a negative number can be written (-0 is not: 0 is written as 0).</summary>
    public bool AllowsNegative
    {
        get
        {
            var (low, high) = Magnitudes(true);
            return FirstMultiple(low) <= high;
        }
    }

    static int Significant(long state) => (int)(state >> 1 & 31);
    static int Fractions(long state) => (int)(state >> 12 & 31);

    /// <summary>The state after <paramref name="digit"/>, or -1 where no value in range goes on so.</summary>
    public long Step(long state, byte digit)
    {
        var d = digit - '0';
        var point = (state & Point) != 0;
        if (point)
        {
            if (Fractions(state) == Fraction) return -1;
            state += 1 << 12;
        }
        // A leading 0 is the whole integer part: no digit may follow it before a point.
        else if ((state & LeadingZero) != 0) return -1;
        var n = Significant(state);
        if (n == 0 && d == 0)
        {
            if (!point) state |= LeadingZero;
        }
        else
        {
            var (low, high) = Magnitudes((state & Negative) != 0);
            var remainder = ((state >> 17) * 10 + d) % Multiple;
            state = (state & ~Counts) | (long)(n + 1) << 1 | (long)Compare((int)(state >> 6 & 3), d, low, n) << 6
                | (long)Compare((int)(state >> 8 & 3), d, high, n) << 8 | remainder << 17;
        }
        return Reaches(state, whole: false) ? state : -1;
    }

    /// <summary>The state after a '.', or -1 where no fraction may follow.</summary>
    public long Dot(long state)
    {
        if (Fraction == 0 || (state & Point) != 0 || (Significant(state) == 0 && (state & LeadingZero) == 0)) return -1;
        state |= Point;
        return Reaches(state, whole: false) ? state : -1;
    }

    /// <summary>Whether the text read is a whole number in range.</summary>
    public bool IsWhole(long state) => ((state & Point) == 0 || Fractions(state) > 0) && Reaches(state, whole: true);

    /// <summary>Whether some digits (none where <paramref name="whole"/>) make the text read a value in range.</summary>
    bool Reaches(long state, bool whole)
    {
        var (low, high) = Magnitudes((state & Negative) != 0);
        var n = Significant(state);
        // The digits still to come: after the point, those left of Fraction; before it, any
        // number of the integer part's and then Fraction.
        var rest = Fraction - Fractions(state);
        if (n == 0)
        {
            // Nothing but zeros yet: the value is what the places left hold.
            if ((state & LeadingZero) == 0) return !whole && FirstMultiple(low) <= high;
            return FirstMultiple(low) <= Math.Min(high, whole ? 0 : Powers[rest] - 1);
        }
        if (whole || (state & Point) != 0) return Admits(state, n + rest, rest, whole);
        for (var length = n + rest; length <= Length(high); length++)
            if (Admits(state, length, length - n, whole: false)) return true;
        return false;
    }

    /// <summary>Whether a value of <paramref name="length"/> significant digits that begins with
    /// those read and has <paramref name="free"/> more (zeros where <paramref name="whole"/>) can
    /// be in range: longer than the least magnitude, or as long and not below its digits so far,
    /// and likewise toward the greatest; where the digits so far equal a bound's first ones, the
    /// rest is held to the bound's rest, and a multipleOf must have a multiple in what is left.</summary>
    bool Admits(long state, int length, int free, bool whole)
    {
        var (low, high) = Magnitudes((state & Negative) != 0);
        var (lowLength, highLength) = (Length(low), Length(high));
        var (toLow, toHigh) = ((int)(state >> 6 & 3), (int)(state >> 8 & 3));
        if (length < lowLength || (length == lowLength && toLow == Below) || length > highLength || (length == highLength && toHigh == Above)) return false;
        var least = length == lowLength && toLow == Equal ? low % Powers[free] : 0;
        var most = whole ? 0 : length == highLength && toHigh == Equal ? high % Powers[free] : Powers[free] - 1;
        if (Multiple == 1) return least <= most;
        // The value is the digits read times 10^free plus the rest: the first rest from least on
        // that makes it a multiple.
        var m = (ulong)Multiple;
        var needed = (m - (ulong)(state >> 17) * (Powers[free] % m) % m) % m;
        return least + (needed + m - least % m) % m <= most;
    }

    /// <summary>The least multiple of <see cref="Multiple"/> from <paramref name="value"/> on.</summary>
    ulong FirstMultiple(ulong value) => value + ((ulong)Multiple - value % (ulong)Multiple) % (ulong)Multiple;

    /// <summary>How the digits so far compare with <paramref name="bound"/>'s first ones, given
    /// how the ones before compared and the next digit, at place <paramref name="n"/>.</summary>
    static int Compare(int before, int digit, ulong bound, int n)
    {
        if (before != Equal || n >= Length(bound)) return before;
        var at = (int)(bound / Powers[Length(bound) - 1 - n] % 10);
        return digit < at ? Below : digit > at ? Above : Equal;
    }

    /// <summary>The least and greatest magnitude of the sign's values (high below low: none).</summary>
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

    /// <summary>The bytes a number in range may begin with.</summary>
    public IEnumerable<byte> FirstBytes()
    {
        if (AllowsNegative) yield return (byte)'-';
        for (var b = (byte)'0'; b <= '9'; b++)
            if (Step(0, b) >= 0) yield return b;
    }

    /// <summary>The value in range nearest 0, the shortest to write.</summary>
    public string Shortest
    {
        get
        {
            var (positive, negative) = (FirstMultiple(Magnitudes(false).Low), FirstMultiple(Magnitudes(true).Low));
            var positiveFits = positive <= Magnitudes(false).High;
            if (positiveFits && (!AllowsNegative || positive <= negative)) return Text(positive);
            return "-" + Text(negative);
        }
    }

    /// <summary>A scaled magnitude written as the number it stands for, without trailing zeros.</summary>
    string Text(ulong magnitude)
    {
        var digits = magnitude.ToString(CultureInfo.InvariantCulture).PadLeft(Fraction + 1, '0');
        var (whole, fraction) = (digits[..^Fraction], digits[^Fraction..].TrimEnd('0'));
        return fraction.Length == 0 ? whole : $"{whole}.{fraction}";
    }

    /// <summary>The characters that finish a value in range from wherever the mask lets one get
    /// to: the digits of either bound (copied to stay on a bound), 0 (to pad to a bound's length)
    /// and 1 (the least magnitude of a negative), the point where there is a fraction, and every
    /// digit for a multipleOf (the one that makes a multiple may be any).</summary>
    public IEnumerable<string> Needs() =>
        $"{Least}{Most}01{(Fraction > 0 ? "." : "")}{(Multiple > 1 ? "0123456789" : "")}".Where(c => char.IsAsciiDigit(c) || c == '.').Select(c => c.ToString()).Distinct();
}
