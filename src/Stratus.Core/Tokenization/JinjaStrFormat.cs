// Python's str.format and str.format_map for JinjaTemplate ('{} of {}'.format(a, b)), as jinja2's
// sandbox runs them: fields by position (automatic or numbered) or keyword, reached into with
// .name and [key] as Jinja reads attributes and items, !r/!s conversions, and the format
// mini-language ([[fill]align][sign][#][0][width][grouping][.precision][type]), nested fields in
// a spec included.
using System.Globalization;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    static class StrFormat
    {
        public static string Format(string format, IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> named)
        {
            var numbering = new Numbering();
            return Format(format, positional, named, numbering, nested: false);
        }

        /// <summary>Whether fields are numbered automatically ({}) or by hand ({0}): a format may not mix them.</summary>
        sealed class Numbering
        {
            public int Next;
            public bool? Automatic;
        }

        static string Format(string format, IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> named, Numbering numbering, bool nested)
        {
            var text = new StringBuilder(format.Length);
            for (var i = 0; i < format.Length; i++)
            {
                var c = format[i];
                if (c == '}')
                {
                    if (i + 1 < format.Length && format[i + 1] == '}') { text.Append('}'); i++; continue; }
                    throw new JinjaException("Single '}' encountered in format string");
                }
                if (c != '{') { text.Append(c); continue; }
                if (i + 1 < format.Length && format[i + 1] == '{') { text.Append('{'); i++; continue; }
                // The field runs to its matching '}', a spec's nested fields inside it.
                var end = i + 1;
                for (var depth = 1; end < format.Length; end++)
                {
                    if (format[end] == '{') depth++;
                    else if (format[end] == '}' && --depth == 0) break;
                }
                if (end >= format.Length) throw new JinjaException("Single '{' encountered in format string");
                if (nested && format.AsSpan(i + 1, end - i - 1).Contains('{')) throw new JinjaException("Max string recursion exceeded");
                text.Append(Field(format[(i + 1)..end], positional, named, numbering));
                Values.CheckLength(text.Length);
                i = end;
            }
            return text.ToString();
        }

        /// <summary>One replacement field, "name.attr[key]!r:spec", formatted.</summary>
        static string Field(string field, IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> named, Numbering numbering)
        {
            var colon = FieldEnd(field, ':');
            var spec = colon < 0 ? "" : field[(colon + 1)..];
            var head = colon < 0 ? field : field[..colon];
            var bang = FieldEnd(head, '!');
            char? conversion = null;
            if (bang >= 0)
            {
                if (head.Length != bang + 2) throw new JinjaException("expected ':' after conversion specifier");
                conversion = head[bang + 1];
                head = head[..bang];
            }
            var value = Lookup(head, positional, named, numbering);
            value = conversion switch
            {
                null => value,
                's' => Values.ToText(value),
                'r' => Values.Repr(value),
                'a' => throw new JinjaException("the conversion !a of str.format is not supported; use !r"),
                var other => throw new JinjaException($"Unknown conversion specifier {other}"),
            };
            if (spec.Contains('{')) spec = Format(spec, positional, named, numbering, nested: true);
            return FormatValue(value, spec);
        }

        /// <summary>Where the field's name ends at <paramref name="mark"/>, outside its [keys] (which may hold ':' or '!').</summary>
        static int FieldEnd(string field, char mark)
        {
            var inKey = false;
            for (var i = 0; i < field.Length; i++)
            {
                if (field[i] == '[') inKey = true;
                else if (field[i] == ']') inKey = false;
                else if (!inKey && field[i] == mark) return i;
            }
            return -1;
        }

        /// <summary>The value a field names: an argument, then its attributes and items, as Jinja's getattr and getitem read them.</summary>
        static object? Lookup(string name, IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> named, Numbering numbering)
        {
            var first = name.IndexOfAny(['.', '[']);
            var argument = first < 0 ? name : name[..first];
            object? value;
            if (argument.Length == 0 || char.IsAsciiDigit(argument[0]))
            {
                var automatic = argument.Length == 0;
                if (numbering.Automatic is { } was && was != automatic)
                    throw new JinjaException(automatic ? "cannot switch from manual field specification to automatic field numbering" : "cannot switch from automatic field numbering to manual field specification");
                numbering.Automatic = automatic;
                var index = automatic ? numbering.Next++ : int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var at) ? at : int.MaxValue;
                value = index < positional.Count ? positional[index] : throw new JinjaException($"Replacement index {index} out of range for positional args tuple");
            }
            else value = named.TryGetValue(argument, out var found) ? found : throw new JinjaException($"the format names '{argument}', which .format() is not given");
            for (var i = first; i >= 0 && i < name.Length;)
            {
                if (name[i] == '.')
                {
                    var end = name.IndexOfAny(['.', '['], i + 1);
                    if (end < 0) end = name.Length;
                    if (end == i + 1) throw new JinjaException("Empty attribute in format string");
                    value = Values.Member(value, name[(i + 1)..end]);
                    i = end;
                }
                else if (name[i] == '[')
                {
                    var close = name.IndexOf(']', i);
                    if (close < 0) throw new JinjaException("Missing ']' in format string");
                    var key = name[(i + 1)..close];
                    // As Python: digits are an index, anything else a key ('-1' too).
                    value = Values.Index(value, key.Length > 0 && key.All(char.IsAsciiDigit) && long.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : key);
                    i = close + 1;
                }
                else throw new JinjaException("Only '.' or '[' may follow ']' in format field specifier");
            }
            return value;
        }

        /// <summary>format(value, spec): the mini-language over strings, integers and floats;
        /// anything else only with an empty spec, as its str().</summary>
        static string FormatValue(object? value, string spec)
        {
            if (spec.Length == 0) return Values.ToText(value);
            var i = 0;
            char? fill = null, align = null;
            if (spec.Length > 1 && spec[1] is '<' or '>' or '^' or '=') { fill = spec[0]; align = spec[1]; i = 2; }
            else if (spec[0] is '<' or '>' or '^' or '=') { align = spec[0]; i = 1; }
            char? sign = i < spec.Length && spec[i] is '+' or '-' or ' ' ? spec[i++] : null;
            if (i < spec.Length && spec[i] == 'z') throw new JinjaException("the 'z' option of str.format is not supported");
            var alternate = i < spec.Length && spec[i] == '#';
            if (alternate) i++;
            if (i < spec.Length && spec[i] == '0')
            {
                // "0" before the width: zeros after the sign, unless an alignment is given.
                fill ??= '0';
                align ??= value is string ? '<' : '=';
                i++;
            }
            var widthFrom = i;
            while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
            var width = i > widthFrom ? Printf.Width(spec.AsSpan(widthFrom, i - widthFrom)) : 0;
            char? grouping = i < spec.Length && spec[i] is ',' or '_' ? spec[i++] : null;
            int? precision = null;
            if (i < spec.Length && spec[i] == '.')
            {
                i++;
                var from = i;
                while (i < spec.Length && char.IsAsciiDigit(spec[i])) i++;
                if (i == from) throw new JinjaException("Format specifier missing precision");
                precision = Printf.Precision(spec.AsSpan(from, i - from));
            }
            char? type = i < spec.Length ? spec[i++] : null;
            if (i < spec.Length) throw new JinjaException($"Invalid format specifier '{spec}' for object of type '{TypeName(value)}'");

            string body;
            var prefix = "";
            switch (value)
            {
                case string s:
                    if (type is not (null or 's')) throw new JinjaException($"Unknown format code '{type}' for object of type 'str'");
                    if (sign is not null) throw new JinjaException("Sign not allowed in string format specifier");
                    if (align == '=') throw new JinjaException("'=' alignment not allowed in string format specifier");
                    if (grouping is not null) throw new JinjaException($"Cannot specify '{grouping}' with 's'.");
                    if (alternate) throw new JinjaException("Alternate form (#) not allowed in string format specifier");
                    body = precision is { } most && s.Length > most ? s[..most] : s;
                    return Pad(body, "", fill ?? ' ', align ?? '<', width);
                case long or bool when type is null or 'd' or 'n' or 'b' or 'o' or 'x' or 'X' or 'c':
                    if (precision is not null) throw new JinjaException("Precision not allowed in integer format specifier");
                    // Python groups binary, octal and hexadecimal digits by '_' only, and characters not at all.
                    if (grouping is { } by && (type is 'c' or 'n' || (by == ',' && type is 'b' or 'o' or 'x' or 'X'))) throw new JinjaException($"Cannot specify '{by}' with '{type}'.");
                    var number = value is bool b ? (b ? 1L : 0L) : (long)value;
                    if (type == 'c')
                    {
                        if (number is < 0 or > 0x10FFFF) throw new JinjaException("%c arg not in range(0x110000)");
                        return Pad(CodePoints.Text((int)number), "", fill ?? ' ', align ?? '>', width);
                    }
                    var radix = type switch { 'b' => 2, 'o' => 8, 'x' or 'X' => 16, _ => 10 };
                    body = Digits(number, radix, type == 'X');
                    if (grouping is { } separator) body = Group(body, separator, radix == 10 ? 3 : 4);
                    if (alternate && radix != 10) prefix = type switch { 'b' => "0b", 'o' => "0o", 'x' => "0x", _ => "0X" };
                    prefix = (number < 0 ? "-" : sign is '+' or ' ' ? sign.Value.ToString() : "") + prefix;
                    return Pad(body, prefix, fill ?? ' ', align ?? '>', width);
                case long or bool or double when type is null or 'e' or 'E' or 'f' or 'F' or 'g' or 'G' or 'n' or '%':
                    var x = value switch { bool flag => flag ? 1.0 : 0.0, long whole => whole, _ => (double)value };
                    if (type == '%') x *= 100;
                    var kind = type switch { null or 'n' => 'g', '%' => 'f', var t => t.Value };
                    // No type nor precision (a float's, as integers went above): as str() writes it.
                    body = type is null && precision is null
                        ? Values.ToText(Math.Abs(x))
                        : Printf.Real(Math.Abs(x), char.ToLowerInvariant(kind), precision ?? 6, alternate, char.IsUpper(kind), dotZero: type is null);
                    if (type == '%') body += "%";
                    if (grouping is { } comma)
                    {
                        var point = body.IndexOfAny(['.', 'e', '%']);
                        body = point < 0 ? Group(body, comma, 3) : Group(body[..point], comma, 3) + body[point..];
                    }
                    // .NET's NaN has its sign bit set; Python writes no sign of a NaN.
                    prefix = double.IsNegative(x) && !double.IsNaN(x) ? "-" : sign is '+' or ' ' ? sign.Value.ToString() : "";
                    return Pad(body, prefix, fill ?? ' ', align ?? '>', width);
                case long or bool or double:
                    throw new JinjaException($"Unknown format code '{type}' for object of type '{TypeName(value)}'");
                default:
                    throw new JinjaException($"unsupported format string passed to {TypeName(value)}.__format__");
            }
        }

        /// <summary>The digits of |n| in a base.</summary>
        static string Digits(long n, int radix, bool upper)
        {
            var magnitude = n < 0 ? (ulong)(-(n + 1)) + 1 : (ulong)n;
            if (radix == 10) return magnitude.ToString(CultureInfo.InvariantCulture);
            var digits = new StringBuilder();
            do
            {
                var digit = (int)(magnitude % (ulong)radix);
                digits.Insert(0, (char)(digit < 10 ? '0' + digit : (upper ? 'A' : 'a') + digit - 10));
                magnitude /= (ulong)radix;
            }
            while (magnitude > 0);
            return digits.ToString();
        }

        /// <summary>Digits in groups of <paramref name="size"/> from the right, the separator between them.</summary>
        static string Group(string digits, char separator, int size)
        {
            var text = new StringBuilder(digits.Length + digits.Length / size);
            for (var i = 0; i < digits.Length; i++)
            {
                if (i > 0 && (digits.Length - i) % size == 0) text.Append(separator);
                text.Append(digits[i]);
            }
            return text.ToString();
        }

        /// <summary>The sign and prefix, then the body, padded to the width as the alignment says ('=': between them).</summary>
        static string Pad(string body, string prefix, char fill, char align, int width)
        {
            var pad = width - prefix.Length - body.Length;
            if (pad <= 0) return prefix + body;
            return align switch
            {
                '<' => prefix + body + new string(fill, pad),
                '^' => new string(fill, pad / 2) + prefix + body + new string(fill, pad - pad / 2),
                '=' => prefix + new string(fill, pad) + body,
                _ => new string(fill, pad) + prefix + body,
            };
        }

        static string TypeName(object? value) => value switch
        {
            null => "NoneType",
            string => "str",
            bool => "bool",
            long => "int",
            double => "float",
            TupleValue => "tuple",
            Mapping => "dict",
            IList<object?> => "list",
            _ => "object",
        };
    }
}
