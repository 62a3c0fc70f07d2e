// Python's printf-style formatting for JinjaTemplate (|format and "%s" % x), and the exact decimal
// rounding it shares with |round.
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    /// <summary>Python's printf-style formatting ("%s has %d items" % (a, n), and |format, which
    /// Jinja implements with it) and the exact decimal rounding it and |round share: digits of a
    /// float's exact binary value, ties to even, as Python's dtoa gives them.</summary>
    static class Printf
    {
        /// <summary>The most digits after the point a format may ask for. Python's have no such
        /// limit, but a float's digits take time growing with their number.</summary>
        const int MaxPrecision = 10_000;

        /// <summary>A field's width as a format writes it (digits): as in Python, any that the text
        /// a render may build (<see cref="MaxLength"/>) holds, since a width only pads.</summary>
        public static int Width(ReadOnlySpan<char> digits) => FieldSize(digits, "width", MaxLength, "characters a template may build");

        /// <summary>A precision as a format writes it (digits), up to <see cref="MaxPrecision"/>.</summary>
        public static int Precision(ReadOnlySpan<char> digits) => FieldSize(digits, "precision", MaxPrecision, "digits this template engine writes");

        /// <summary>A width or precision, refused beyond its limit rather than cut short, which
        /// would render a shorter text than jinja2 does.</summary>
        static int FieldSize(ReadOnlySpan<char> digits, string what, int most, string unit) =>
            int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var size) && size <= most ? size
            : throw new JinjaException($"the format asks for a {what} of {(digits.Length > 20 ? $"{digits.Length} digits" : digits.ToString())}, beyond the {most:N0} {unit}; ask for less");

        public static string Format(string format, IReadOnlyList<object?> args, Mapping? mapping)
        {
            var text = new StringBuilder();
            var next = 0;
            for (var i = 0; i < format.Length; i++)
            {
                if (format[i] != '%') { text.Append(format[i]); continue; }
                var start = i++;
                object? argument = null;
                var named = false;
                if (i < format.Length && format[i] == '(')
                {
                    var close = format.IndexOf(')', i);
                    if (close < 0) throw new JinjaException("incomplete format key");
                    if (mapping is null) throw new JinjaException("format requires a mapping");
                    var key = format[(i + 1)..close];
                    argument = mapping.TryGetValue(key, out var found) ? found : throw new JinjaException($"the format names '{key}', which the mapping does not hold");
                    named = true;
                    i = close + 1;
                }
                var flags = "";
                while (i < format.Length && format[i] is '-' or '+' or ' ' or '#' or '0') flags += format[i++];
                int? Number(bool isWidth)
                {
                    if (i < format.Length && format[i] == '*') throw new JinjaException("a '*' width or precision in a format is not supported; write the number");
                    var from = i;
                    while (i < format.Length && char.IsAsciiDigit(format[i])) i++;
                    return i > from ? isWidth ? Width(format.AsSpan(from, i - from)) : Precision(format.AsSpan(from, i - from)) : null;
                }
                var width = Number(isWidth: true) ?? 0;
                int? precision = null;
                if (i < format.Length && format[i] == '.') { i++; precision = Number(isWidth: false) ?? 0; }
                if (i >= format.Length) throw new JinjaException("incomplete format");
                var type = format[i];
                if (type == '%') { text.Append('%'); continue; }
                if (!named)
                {
                    if (next >= args.Count) throw new JinjaException("not enough arguments for format string");
                    argument = args[next++];
                }
                var body = Convert(type, argument, flags, precision, start, out var numeric);
                var sign = numeric && body.StartsWith('-') ? "-" : numeric && flags.Contains('+') ? "+" : numeric && flags.Contains(' ') ? " " : "";
                if (numeric && body.StartsWith('-')) body = body[1..];
                var prefix = flags.Contains('#') && type is 'x' or 'X' or 'o' ? "0" + type : "";
                var pad = width - sign.Length - prefix.Length - body.Length;
                if (pad <= 0) text.Append(sign).Append(prefix).Append(body);
                else if (flags.Contains('-')) text.Append(sign).Append(prefix).Append(body).Append(' ', pad);
                else if (flags.Contains('0') && numeric) text.Append(sign).Append(prefix).Append('0', pad).Append(body);
                else text.Append(' ', pad).Append(sign).Append(prefix).Append(body);
                Values.CheckLength(text.Length);
            }
            // A mapping is one argument, which named conversions read: Python does not count what is left of it.
            if (next < args.Count && mapping is null) throw new JinjaException("not all arguments converted during string formatting");
            return text.ToString();
        }

        /// <summary>One conversion's text, without its padding; numeric: it takes a sign and zeros.</summary>
        static string Convert(char type, object? argument, string flags, int? precision, int at, out bool numeric)
        {
            numeric = type is not ('s' or 'r' or 'c');
            switch (type)
            {
                case 's': return precision is { } most && Values.ToText(argument) is var s && s.Length > most ? s[..most] : Values.ToText(argument);
                case 'r': return precision is { } cut && Values.Repr(argument) is var r && r.Length > cut ? r[..cut] : Values.Repr(argument);
                case 'c':
                    return argument switch
                    {
                        long code when code is >= 0 and <= 0x10FFFF => CodePoints.Text((int)code),
                        string { Length: 1 } one => one,
                        _ => throw new JinjaException("%c requires an integer in range(0x110000) or a single character"),
                    };
                case 'd' or 'i' or 'u':
                    return argument switch
                    {
                        long or bool => Values.ToText(Integer(argument)),
                        double d when double.IsFinite(d) => new BigInteger(Math.Truncate(d)).ToString(CultureInfo.InvariantCulture),
                        double d => throw new JinjaException($"cannot convert float {Values.ToText(d)} to integer"),
                        _ => throw new JinjaException($"%{type} format: a real number is required, not {Values.Describe(argument)}"),
                    };
                case 'x' or 'X' or 'o':
                    if (argument is not (long or bool)) throw new JinjaException($"%{type} format: an integer is required, not {Values.Describe(argument)}");
                    var value = Integer(argument);
                    var digits = type == 'o' ? System.Convert.ToString(Math.Abs(value), 8) : Math.Abs(value).ToString(type == 'x' ? "x" : "X", CultureInfo.InvariantCulture);
                    return (value < 0 ? "-" : "") + digits;
                case 'f' or 'F' or 'e' or 'E' or 'g' or 'G':
                    var number = argument switch
                    {
                        long or bool => (double)Integer(argument),
                        double d => d,
                        _ => throw new JinjaException($"%{type} format: a real number is required, not {Values.Describe(argument)}"),
                    };
                    return Real(number, char.ToLowerInvariant(type), precision ?? 6, flags.Contains('#'), char.IsUpper(type));
                default:
                    throw new JinjaException($"unsupported format character '{type}' (0x{(int)type:x}) at index {at + 1}");
            }
        }

        static long Integer(object? v) => v is bool b ? (b ? 1 : 0) : (long)v!;

        /// <summary>%f, %e and %g of a float, digits exact as Python writes them (str.format's too).</summary>
        /// <param name="dotZero">str.format without a type: as %g, but exponential from one exponent
        /// earlier ('{:.1}' of 3.14 is "3e+00") and a fixed-point result keeps a digit after the point ("2.0").</param>
        public static string Real(double x, char type, int precision, bool alternate, bool upper, bool dotZero = false)
        {
            if (!double.IsFinite(x)) return (double.IsNaN(x) ? "nan" : x > 0 ? "inf" : "-inf") is var word && upper ? word.ToUpperInvariant() : word;
            var sign = double.IsNegative(x) ? "-" : "";
            string text;
            if (type == 'f') text = Fixed(x, precision);
            else if (type == 'e') text = Exponential(x, precision);
            else
            {
                // %g: exponential where the exponent is below -4 or reaches the precision, trailing zeros dropped.
                var significant = Math.Max(precision, 1);
                var exponent = Exponent(x, significant - 1);
                text = exponent < -4 || exponent >= significant - (dotZero ? 1 : 0) ? Exponential(x, significant - 1) : Fixed(x, significant - 1 - exponent);
                if (!alternate)
                {
                    var e = text.IndexOf('e');
                    var (mantissa, tail) = e < 0 ? (text, "") : (text[..e], text[e..]);
                    if (mantissa.Contains('.')) mantissa = mantissa.TrimEnd('0').TrimEnd('.');
                    text = mantissa + tail;
                }
                if (dotZero && !text.Contains('e') && !text.Contains('.')) text += ".0";
            }
            if (alternate && !text.Contains('.') && type != 'g') text = text.Contains('e') ? text.Replace("e", ".e") : text + ".";
            return sign + (upper ? text.ToUpperInvariant() : text);
        }

        static string Fixed(double x, int decimals)
        {
            var digits = Scaled(x, decimals).ToString(CultureInfo.InvariantCulture).PadLeft(decimals + 1, '0');
            return decimals == 0 ? digits : $"{digits[..^decimals]}.{digits[^decimals..]}";
        }

        static string Exponential(double x, int decimals)
        {
            var exponent = Exponent(x, decimals);
            var digits = x == 0 ? new string('0', decimals + 1) : Scaled(x, decimals - exponent).ToString(CultureInfo.InvariantCulture);
            var mantissa = decimals == 0 ? digits : $"{digits[0]}.{digits[1..]}";
            return $"{mantissa}e{(exponent < 0 ? '-' : '+')}{Math.Abs(exponent):00}";
        }

        /// <summary>The decimal exponent of |x| once rounded to decimals + 1 significant digits (9.99 is 1e+01 at 2).</summary>
        static int Exponent(double x, int decimals)
        {
            if (x == 0) return 0;
            // The least exponent whose rounded digits fit: Log10 may be one off either way near a
            // power of ten (1e-07 is 9.9999999999999995e-08, whose Log10 is -7), so from one below it.
            var exponent = (int)Math.Floor(Math.Log10(Math.Abs(x))) - 1;
            var limit = BigInteger.Pow(10, decimals + 1);
            while (Scaled(x, decimals - exponent) >= limit) exponent++;
            return exponent;
        }

        /// <summary>|x| times 10^decimals (decimals may be negative), rounded to an integer, ties to
        /// even, from the float's exact binary value (2.675 is 2.67499..., so it rounds down).</summary>
        public static BigInteger Scaled(double x, int decimals)
        {
            var bits = BitConverter.DoubleToInt64Bits(x);
            var biased = (int)((bits >> 52) & 0x7FF);
            var fraction = bits & ((1L << 52) - 1);
            var (mantissa, exponent) = biased == 0 ? (fraction, -1074) : (fraction | (1L << 52), biased - 1075);
            BigInteger numerator = mantissa, denominator = BigInteger.One;
            if (exponent > 0) numerator <<= exponent;
            else denominator <<= -exponent;
            if (decimals >= 0) numerator *= BigInteger.Pow(10, decimals);
            else denominator *= BigInteger.Pow(10, -decimals);
            var quotient = BigInteger.DivRem(numerator, denominator, out var remainder);
            var half = (remainder * 2).CompareTo(denominator);
            return half > 0 || (half == 0 && !quotient.IsEven) ? quotient + 1 : quotient;
        }

        /// <summary>Python's round(x, digits) of a float: the nearest float to the exactly rounded decimal.</summary>
        public static double Round(double x, long digits)
        {
            if (!double.IsFinite(x) || x == 0 || digits > 400) return x;
            if (digits < -400) return double.IsNegative(x) ? -0.0 : 0.0;
            var scaled = Scaled(x, (int)digits);
            if (scaled.IsZero) return double.IsNegative(x) ? -0.0 : 0.0;
            var rounded = double.Parse($"{scaled}E{-digits}", NumberStyles.Float, CultureInfo.InvariantCulture);
            if (double.IsInfinity(rounded)) throw new JinjaException("rounded value too large to represent");
            return double.IsNegative(x) ? -rounded : rounded;
        }

        /// <summary>Python's round(n, digits) of an integer: itself, or to a multiple of 10^-digits, ties to even.</summary>
        public static long Round(long n, long digits)
        {
            if (digits >= 0) return n;
            if (digits < -19) return 0;
            var unit = (Int128)BigInteger.Pow(10, (int)-digits);
            var quotient = Int128.DivRem(n, unit);
            var (q, r) = quotient;
            if (r < 0) { q--; r += unit; }
            var half = (r * 2).CompareTo(unit);
            if (half > 0 || (half == 0 && q % 2 != 0)) q++;
            return (long)(q * unit);
        }
    }
}
