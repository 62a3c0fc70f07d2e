// Values as JinjaTemplate's templates see them, with Python's semantics over C# objects: truth,
// printing (str and repr), JSON, sizes, iteration, attribute and index access, slicing, equality,
// ordering and arithmetic.
using System.Globalization;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    static partial class Values
    {
        public static bool Truthy(object? v) => v switch
        {
            null or Undefined => false,
            bool b => b,
            long l => l != 0,
            double d => d != 0,
            string s => s.Length > 0,
            System.Collections.ICollection c => c.Count > 0,
            Mapping m => m.Count > 0,
            _ => true,
        };

        /// <summary>A value as Jinja prints it, Python's str(): a list or mapping as Python's repr
        /// writes it ({'role': 'user'}, as SmolLM3's "tool | string").</summary>
        public static string ToText(object? v) => v switch
        {
            string s => s,
            Undefined => "",
            _ => Repr(v),
        };

        public static string Repr(object? v)
        {
            var text = new StringBuilder();
            WriteRepr(text, v, 0);
            return text.ToString();
        }

        /// <summary>Python's repr, checked for depth and length as <see cref="WriteJson"/> is.</summary>
        static void WriteRepr(StringBuilder text, object? v, int depth)
        {
            if (depth > MaxDepth) throw TooDeep();
            switch (v)
            {
                case null: text.Append("None"); break;
                case Undefined: text.Append("Undefined"); break;
                case bool b: text.Append(b ? "True" : "False"); break;
                case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: text.Append(FloatRepr(d)); break;
                case string s: WriteStringRepr(text, s); break;
                case Macro or GlobalFunction: text.Append(v); break;
                case BoundMethod m: throw new JinjaException($"the template writes the method .{m.Name} of {Describe(m.Target)} as text; call it: .{m.Name}()");
                case Namespace ns:
                    text.Append("<Namespace ");
                    WriteRepr(text, Attributes(ns), depth + 1);
                    text.Append('>');
                    break;
                case Mapping d:
                    text.Append('{');
                    var first = true;
                    foreach (var (key, value) in d)
                    {
                        if (!first) text.Append(", ");
                        first = false;
                        WriteRepr(text, key, depth + 1);
                        text.Append(": ");
                        WriteRepr(text, value, depth + 1);
                    }
                    text.Append('}');
                    break;
                case IEnumerable<object?> list:
                    var tuple = v is TupleValue;
                    text.Append(tuple ? '(' : '[');
                    var count = 0;
                    foreach (var item in list)
                    {
                        if (count++ > 0) text.Append(", ");
                        WriteRepr(text, item, depth + 1);
                    }
                    text.Append(tuple && count == 1 ? ",)" : tuple ? ")" : "]");
                    break;
                default: text.Append(v); break;
            }
            CheckLength(text.Length);
        }

        /// <summary>Python's repr of a string: in single quotes unless it holds one and no double
        /// quote, with backslashes, that quote and characters Python does not print escaped.</summary>
        static void WriteStringRepr(StringBuilder text, string s)
        {
            var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
            text.Append(quote);
            for (var i = 0; i < s.Length; i++)
            {
                var c = s[i];
                if (c == quote || c == '\\') text.Append('\\').Append(c);
                else if (c == '\n') text.Append("\\n");
                else if (c == '\r') text.Append("\\r");
                else if (c == '\t') text.Append("\\t");
                else if (char.IsSurrogatePair(s, i))
                {
                    var codePoint = char.ConvertToUtf32(s, i);
                    if (Printable(CharUnicodeInfo.GetUnicodeCategory(codePoint), codePoint)) text.Append(s, i, 2);
                    else text.Append("\\U").Append(codePoint.ToString("x8", CultureInfo.InvariantCulture));
                    i++;
                }
                else if (Printable(CharUnicodeInfo.GetUnicodeCategory(c), c)) text.Append(c);
                else if (c < 0x100) text.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                else text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
            }
            text.Append(quote);
        }

        /// <summary>Python's str.isprintable for one character: not a control, format, surrogate,
        /// private-use, unassigned or separator character, except the space.</summary>
        static bool Printable(UnicodeCategory category, int c) => c == ' ' || category is not (UnicodeCategory.Control or UnicodeCategory.Format
            or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned
            or UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator);

        /// <summary>Python's repr of a float, which str() and json.dumps write too: the shortest
        /// digits that read back the same, in positional notation with at least one decimal
        /// (3.0) for exponents from -4 to 15, else as 1e+16 or 1.5e-05.</summary>
        static string FloatRepr(double d)
        {
            if (double.IsNaN(d)) return "nan";
            if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
            if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
            // .NET's "R" gives the same shortest digits; only their layout differs.
            var shortest = Math.Abs(d).ToString("R", CultureInfo.InvariantCulture);
            var e = shortest.IndexOf('E');
            var mantissa = e < 0 ? shortest : shortest[..e];
            var dot = mantissa.IndexOf('.');
            var digits = mantissa.Replace(".", "");
            var point = (dot < 0 ? mantissa.Length : dot) + (e < 0 ? 0 : int.Parse(shortest[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture));
            var leading = digits.Length - digits.TrimStart('0').Length;
            (digits, point) = (digits.Trim('0'), point - leading);
            var exponent = point - 1;
            var sign = d < 0 ? "-" : "";
            if (exponent is < -4 or >= 16)
                return $"{sign}{digits[0]}{(digits.Length > 1 ? "." + digits[1..] : "")}e{(exponent < 0 ? "-" : "+")}{Math.Abs(exponent):00}";
            if (point <= 0) return $"{sign}0.{new string('0', -point)}{digits}";
            if (point >= digits.Length) return $"{sign}{digits}{new string('0', point - digits.Length)}.0";
            return $"{sign}{digits[..point]}.{digits[point..]}";
        }

        /// <summary>How tojson writes JSON: Python's json.dumps with transformers' arguments
        /// (ensure_ascii, indent, separators, sort_keys). Llama 3.1's templates write tools with
        /// tojson(indent=4), GLM's with tojson(ensure_ascii=False).</summary>
        public sealed record JsonStyle(bool Ascii, string? Indent, string ItemSeparator, string KeySeparator, bool SortKeys)
        {
            /// <summary>transformers' default, json.dumps(ensure_ascii=False): ", " and ": ", all on one line.</summary>
            public static readonly JsonStyle Default = new(false, null, ", ", ": ", false);

            public static JsonStyle Of(object? ascii, object? indent, object? separators, object? sortKeys)
            {
                // As json.dumps: an indent of n spaces (none below 1) or the string given, a line per item.
                var unit = indent switch
                {
                    null => null,
                    long or bool => new string(' ', (int)Math.Clamp(Number(indent), 0, 64)),
                    string text => text,
                    _ => throw new JinjaException($"tojson's indent is a number or a string, not {Describe(indent)}"),
                };
                var (item, key) = separators switch
                {
                    null => (unit is null ? ", " : ",", ": "),
                    IList<object?> { Count: 2 } pair when pair[0] is string i && pair[1] is string k => (i, k),
                    _ => throw new JinjaException($"tojson's separators are two strings, (item, key), not {Describe(separators)}"),
                };
                return new(Truthy(ascii), unit, item, key, Truthy(sortKeys));
            }
        }

        /// <summary>As transformers' tojson writes it (Python's json.dumps): by default ", " and
        /// ": " between items, strings with only '"', backslash and control characters escaped (a
        /// tool's description keeps its '&lt;', '&amp;' and accents as the model was trained to read them).</summary>
        public static string ToJson(object? v, JsonStyle? style = null)
        {
            var json = new StringBuilder();
            WriteJson(json, v, 0, style ?? JsonStyle.Default);
            return json.ToString();
        }

        /// <summary>Checked for depth and length as it goes: a value may hold itself (a namespace
        /// set into itself), or the same large list at every level.</summary>
        static void WriteJson(StringBuilder json, object? v, int depth, JsonStyle style)
        {
            if (depth > MaxDepth) throw TooDeep();
            void Between(int level, bool first)
            {
                if (!first) json.Append(style.ItemSeparator);
                NewLine(level);
            }
            void NewLine(int level)
            {
                if (style.Indent is not { } unit) return;
                // An indent the template gives may be long: its length checked before it is repeated.
                CheckLength(json.Length + 1 + (long)unit.Length * level);
                json.Append('\n').Insert(json.Length, unit, level);
            }
            switch (v)
            {
                case null: json.Append("null"); break;
                case Undefined u: throw new JinjaException($"{u.Error().Message}, and an undefined value cannot be written as JSON");
                case bool b: json.Append(b ? "true" : "false"); break;
                // As json.dumps writes them (allow_nan=True), not as Python prints them (nan, inf).
                case double d when !double.IsFinite(d): json.Append(double.IsNaN(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity"); break;
                case long or double: json.Append(ToText(v)); break;
                case string s: WriteString(json, s, style.Ascii); break;
                case Namespace ns: WriteJson(json, Attributes(ns), depth, style); break;
                case Mapping d:
                    json.Append('{');
                    var first = true;
                    foreach (var (key, value) in style.SortKeys ? SortedByKey(d) : (IEnumerable<KeyValuePair<object?, object?>>)d)
                    {
                        Between(depth + 1, first);
                        first = false;
                        WriteString(json, JsonKey(key), style.Ascii);
                        json.Append(style.KeySeparator);
                        WriteJson(json, value, depth + 1, style);
                    }
                    if (d.Count > 0) NewLine(depth);
                    json.Append('}');
                    break;
                case IEnumerable<object?> list:
                    json.Append('[');
                    var any = false;
                    foreach (var item in list)
                    {
                        Between(depth + 1, !any);
                        any = true;
                        WriteJson(json, item, depth + 1, style);
                    }
                    if (any) NewLine(depth);
                    json.Append(']');
                    break;
                default: throw new JinjaException($"tojson cannot write {Describe(v)}");
            }
            CheckLength(json.Length);
        }

        /// <summary>A mapping's items as json.dumps(sort_keys=True) orders them: by the keys
        /// themselves, before they are written as text (10 after 2); keys that Python cannot
        /// order (a number and a string) are refused.</summary>
        static List<KeyValuePair<object?, object?>> SortedByKey(Mapping d)
        {
            var items = d.ToList();
            try { items.Sort((x, y) => Order(x.Key, y.Key)); }
            catch (InvalidOperationException e) when (e.InnerException is JinjaException inner) { throw inner; }
            return items;
        }

        /// <summary>A namespace's attributes as a mapping, which is how it prints and writes as JSON.</summary>
        static Mapping Attributes(Namespace ns)
        {
            var mapping = new Mapping();
            foreach (var (name, value) in ns) mapping[name] = value;
            return mapping;
        }

        /// <summary>A mapping's key as json.dumps writes it: a string as it is, a number, boolean or
        /// none as its JSON text ({1: 'a'} is {"1": "a"}); any other key is refused, as Python refuses it.</summary>
        static string JsonKey(object? key) => key switch
        {
            string s => s,
            null or bool or long or double => ToJson(key),
            _ => throw new JinjaException($"tojson cannot write {Describe(key)} as a mapping's key (keys must be str, int, float, bool or None)"),
        };

        /// <summary>A JSON string as json.dumps writes it: '"', backslash and control characters
        /// escaped, and with ensure_ascii every character past '~' as \uXXXX (a surrogate pair
        /// for one past U+FFFF: the UTF-16 units, as Python writes them).</summary>
        static void WriteString(StringBuilder json, string s, bool ascii)
        {
            json.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': json.Append("\\\""); break;
                    case '\\': json.Append("\\\\"); break;
                    case '\n': json.Append("\\n"); break;
                    case '\r': json.Append("\\r"); break;
                    case '\t': json.Append("\\t"); break;
                    case '\b': json.Append("\\b"); break;
                    case '\f': json.Append("\\f"); break;
                    // ensure_ascii keeps ' ' to '~' only (DEL too is escaped).
                    case < ' ' or > '~' when c < ' ' || ascii: json.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                    default: json.Append(c); break;
                }
            }
            json.Append('"');
        }

        /// <summary>Refuses a text longer than <see cref="MaxLength"/>, before it is built where
        /// its length is known.</summary>
        public static void CheckLength(long length)
        {
            if (length > MaxLength) throw new JinjaException($"the template builds a text of more than {MaxLength:N0} characters");
        }

        public static string Concatenate(string a, string b)
        {
            CheckLength((long)a.Length + b.Length);
            return a + b;
        }

        /// <summary>What a value costs to make or to read through (<see cref="Budget"/>).</summary>
        public static long Size(object? v) => v switch
        {
            string s => s.Length,
            System.Collections.ICollection c => c.Count,
            Mapping m => m.Count,
            _ => 0,
        };

        /// <summary>Ordinal search compares up to the length of what it looks for at every
        /// position: spent up front, so a search of a long text for a long pattern stops.</summary>
        static void SpendOnSearch(Budget budget, string within, string what) => budget.Spend((long)within.Length * Math.Max(1, what.Length));

        /// <summary>A value's items as Python iterates them; an undefined value has none, but none
        /// (a template's "for tool in tools" without tools) cannot be iterated, as in jinja2.</summary>
        public static IEnumerable<object?> Iterate(object? v) => v switch
        {
            Undefined => [],
            string s => s.Select(c => (object?)c.ToString()),
            Mapping d => d.Keys,
            IEnumerable<object?> list => list,
            _ => throw new JinjaException($"cannot iterate over {Describe(v)}"),
        };

        /// <summary>A mapping's items as (key, value) tuples, as dict.items() and |items give them.</summary>
        public static List<object?> Pairs(Mapping d) => d.Select(kv => (object?)new TupleValue { kv.Key, kv.Value }).ToList();

        /// <summary>Python's hash, for a mapping's keys and |unique's items: numbers by value (1, 1.0
        /// and true hash alike, as they are equal), strings and tuples by their contents; a value
        /// that is not <see cref="Hashable"/> is refused in the words given.</summary>
        public static int Hash(object? v, Func<object?, string> refusal) => v switch
        {
            _ when !Hashable(v) => throw new JinjaException(refusal(v)),
            string s => s.GetHashCode(StringComparison.Ordinal),
            long or double or bool => Number(v).GetHashCode(),
            TupleValue tuple => tuple.Aggregate(17, (hash, item) => HashCode.Combine(hash, Hash(item, refusal))),
            _ => 0, // none and undefined (jinja2's Undefined is hashable, and all of them are equal)
        };

        /// <summary>Whether Python hashes a value: none, undefined, a string, a number, a boolean or a
        /// tuple of those; not a list or a mapping.</summary>
        static bool Hashable(object? v) => v is null or Undefined or string or long or double or bool || v is TupleValue tuple && tuple.All(Hashable);

        /// <summary>The methods of Python's dict that Jinja's immutable sandbox lets a template read
        /// (those that change the dict read as undefined), and those of str.</summary>
        static readonly HashSet<string> DictMethods = ["copy", "fromkeys", "get", "items", "keys", "values"];
        static readonly HashSet<string> ChangingDictMethods = ["clear", "pop", "popitem", "setdefault", "update"];
        static readonly HashSet<string> StringMethods =
        [
            "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format", "format_map", "index",
            "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable", "isspace",
            "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix", "removesuffix", "replace",
            "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
            "title", "translate", "upper", "zfill",
        ];

        /// <summary>x.name, as Jinja's getattr: a method of a dict or string before a key, so
        /// spec.items is the method even where spec has the key "items" (spec["items"] is the key).</summary>
        public static object? Member(object? target, string name) => target switch
        {
            Undefined u => throw u.Error(),
            Namespace ns => ns.TryGetValue(name, out var v) ? v : Undefined.Attribute(ns, name),
            LoopInfo loop => loop[name],
            Mapping d when DictMethods.Contains(name) => new BoundMethod(d, name),
            Mapping when ChangingDictMethods.Contains(name) => Undefined.Unsafe(name),
            Mapping d => d.TryGetValue(name, out var v) ? v : Undefined.Attribute(d, name),
            string s when StringMethods.Contains(name) => new BoundMethod(s, name),
            _ => Undefined.Attribute(target, name),
        };

        /// <summary>Python's indexing, negative counting from the end; out of range is undefined,
        /// as Jinja's getitem turns Python's IndexError into an undefined value. A key the mapping
        /// lacks is looked up as an attribute where it is a string, as Jinja's getitem falls back to
        /// getattr; one Python cannot hash (a list) is missing, as getitem turns its TypeError into
        /// an undefined value.</summary>
        public static object? Index(object? target, object? index) => (target, index) switch
        {
            (Undefined u, _) => throw u.Error(),
            (Mapping d, string key) => d.TryGetValue(key, out var v) ? v : Member(target, key),
            (Mapping d, _) when Hashable(index) && d.TryGetValue(index, out var v) => v,
            (IList<object?> list, long i) => Position(i, list.Count) is { } at ? list[at] : Undefined.Element(target, index),
            (string s, long i) => Position(i, s.Length) is { } at ? s[at].ToString() : Undefined.Element(target, index),
            // As Jinja's getitem: a name it cannot index by is looked up as an attribute.
            (_, string key) => Member(target, key),
            _ => Undefined.Element(target, index),
        };

        static int? Position(long index, int count) => (index < 0 ? count + index : index) is var at && at >= 0 && at < count ? (int)at : null;

        /// <summary>Python's slice [start:stop:step], as slice.indices bounds it: a negative bound
        /// counts from the end, one past either end is clamped, a negative step walks backwards
        /// (messages[::-1]).</summary>
        public static object? Slice(object? target, object? start, object? stop, object? step)
        {
            var length = target switch
            {
                IList<object?> list => list.Count,
                string s => s.Length,
                Undefined u => throw u.Error(),
                _ => throw new JinjaException($"cannot slice {Describe(target)}"),
            };
            var by = step switch { null => 1L, long l => l, _ => throw new JinjaException("slice indices must be integers or none") };
            if (by == 0) throw new JinjaException("slice step cannot be zero");
            long Bound(object? b, long fallback) => b switch
            {
                null => fallback,
                long l when l < 0 => Math.Max(l + length, by < 0 ? -1 : 0),
                long l => Math.Min(l, by < 0 ? length - 1 : length),
                _ => throw new JinjaException("slice indices must be integers or none"),
            };
            var (from, to) = (Bound(start, by < 0 ? length - 1 : 0), Bound(stop, by < 0 ? -1 : length));
            var positions = new List<int>();
            for (var i = from; by > 0 ? i < to : i > to; i += by) positions.Add((int)i);
            return target is string text
                ? string.Concat(positions.Select(i => text[i]))
                : positions.Select(i => ((IList<object?>)target!)[i]).ToList();
        }

        public static bool Contains(object? container, object? item, Budget budget)
        {
            switch (container)
            {
                case string s when item is string sub:
                    SpendOnSearch(budget, s, sub);
                    return s.Contains(sub, StringComparison.Ordinal);
                case Mapping d:
                    return d.ContainsKey(item);
                case IEnumerable<object?> list:
                    foreach (var x in list)
                    {
                        // Comparing strings of equal length reads them through.
                        budget.Spend(1 + Size(x));
                        if (ItemEqual(x, item)) return true;
                    }
                    return false;
                case string:
                    throw new JinjaException($"'in' a string needs a string, not {Describe(item)}");
                case Undefined:
                    return false;
                default:
                    throw new JinjaException($"cannot look for a value in {Describe(container)}");
            }
        }

        /// <summary>Python's ==: numbers by value (True == 1), lists and tuples item by item (a
        /// list is never a tuple), mappings by their keys and values in any order (Mistral's
        /// "message == user_messages[-1]" is true of an earlier message that reads the same).</summary>
        public static bool Equal(object? a, object? b) => Equal(a, b, 0);

        /// <summary>Python's comparison of a container's items, of 'in', of keys and of a set's
        /// members: the same object first, then ==, so the NaN in [n] == [n] equals itself where
        /// n == n is false.</summary>
        public static bool ItemEqual(object? a, object? b, int depth = 0) => ReferenceEquals(a, b) || Equal(a, b, depth);

        static bool Equal(object? a, object? b, int depth)
        {
            // A float's == is IEEE's, where a NaN equals nothing, itself included.
            if (ReferenceEquals(a, b) && a is not double) return true;
            if (depth > MaxDepth) throw TooDeep();
            return (a, b) switch
            {
                (Undefined, Undefined) or (null, null) => true,
                (long x, long y) => x == y,
                (long or double or bool, long or double or bool) when a is not bool || b is not bool => Number(a) == Number(b),
                (Namespace, _) or (_, Namespace) => false,
                (Mapping x, Mapping y) =>
                    x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var other) && ItemEqual(kv.Value, other, depth + 1)),
                (IList<object?> x, IList<object?> y) =>
                    x is TupleValue == y is TupleValue && x.Count == y.Count && x.Zip(y).All(p => ItemEqual(p.First, p.Second, depth + 1)),
                _ => Equals(a, b),
            };
        }

        static double Number(object? v) => v switch { bool b => b ? 1 : 0, long l => l, _ => (double)v! };

        public static object Compare(string op, object? a, object? b)
        {
            if (op == "==") return Equal(a, b);
            if (op == "!=") return !Equal(a, b);
            var order = Order(a, b);
            // Every order of a NaN is false, where .NET's CompareTo puts a NaN first.
            if (a is double x && double.IsNaN(x) || b is double y && double.IsNaN(y)) return false;
            return op switch { "<" => order < 0, ">" => order > 0, "<=" => order <= 0, _ => order >= 0 };
        }

        /// <summary>Python's ordering, which <, |sort, |min and |max use: numbers by value (True
        /// is 1), strings by code point, lists (or tuples) item by item; anything else, or a
        /// string against a number, cannot be compared.</summary>
        public static int Order(object? a, object? b) => Order(a, b, 0);

        static int Order(object? a, object? b, int depth)
        {
            if (depth > MaxDepth) throw TooDeep();
            switch (a, b)
            {
                case (string x, string y):
                    var at = 0;
                    while (at < x.Length && at < y.Length && x[at] == y[at]) at++;
                    if (at == x.Length || at == y.Length) return x.Length.CompareTo(y.Length);
                    // UTF-16 units order surrogates (U+10000 and up) below U+E000..U+FFFF; code points do not.
                    return CodePointAt(x, at).CompareTo(CodePointAt(y, at));
                case (long x, long y): return x.CompareTo(y);
                case (long or double or bool, long or double or bool): return Number(a).CompareTo(Number(b));
                case (IList<object?> x, IList<object?> y) when x is TupleValue == y is TupleValue:
                    for (var i = 0; i < x.Count && i < y.Count; i++)
                    {
                        if (!ItemEqual(x[i], y[i], depth + 1)) return Order(x[i], y[i], depth + 1);
                    }
                    return x.Count.CompareTo(y.Count);
                case (Undefined u, _): throw u.Error();
                case (_, Undefined u): throw u.Error();
                default: throw new JinjaException($"cannot compare {Describe(a)} and {Describe(b)}");
            }
        }

        /// <summary>The code point at a position: a surrogate pair's whole, a lone surrogate's own (as Python has them).</summary>
        static int CodePointAt(string s, int i) =>
            char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]) ? char.ConvertToUtf32(s[i], s[i + 1])
            : char.IsLowSurrogate(s[i]) && i > 0 && char.IsHighSurrogate(s[i - 1]) ? char.ConvertToUtf32(s[i - 1], s[i])
            : s[i];

        public static object? Arithmetic(string op, object? a, object? b)
        {
            if (op == "+" && a is string sa && b is string sb) return Concatenate(sa, sb);
            if (op == "+" && a is List<object?> la && b is List<object?> lb)
            {
                if (la.Count + lb.Count > MaxItems) throw new JinjaException($"the template builds a list of more than {MaxItems:N0} items");
                return la.Concat(lb).ToList();
            }
            if (op == "*" && a is string repeated && b is long times)
            {
                // As in Python, zero or fewer times is the empty string.
                if (times <= 0) return "";
                CheckLength(Math.Min(times, int.MaxValue) * repeated.Length);
                return string.Concat(Enumerable.Repeat(repeated, (int)times));
            }
            // Python's printf-style formatting, which |format also uses: "%s has %d" % (name, n).
            if (op == "%" && a is string format) return Printf.Format(format, b is TupleValue tuple ? tuple : [b], b as Mapping);
            if (a is Undefined ua) throw ua.Error();
            if (b is Undefined ub) throw ub.Error();
            // A boolean is the integer 0 or 1 in Python's arithmetic (|sum of [true, true] is 2).
            if (a is bool ba) a = ba ? 1L : 0L;
            if (b is bool bb) b = bb ? 1L : 0L;
            if (op == "**") return Power(a, b);
            if (a is long x && b is long y && op != "/")
            {
                try
                {
                    return op switch
                    {
                        "+" => checked(x + y), "-" => checked(x - y), "*" => checked(x * y),
                        // Python's modulo takes the divisor's sign; x % -1 is 0 (C#'s long.MinValue % -1 overflows).
                        "%" => y == 0 ? throw new JinjaException("modulo by zero") : y == -1 ? 0L : x % y is var r && r != 0 && (r < 0) != (y < 0) ? r + y : r,
                        // Floored, exactly: through a double, 2**53 + 1 would lose its last digit.
                        _ => y == 0 ? throw new JinjaException("division by zero") : checked(x / y) - (x % y != 0 && (x < 0) != (y < 0) ? 1 : 0),
                    };
                }
                catch (OverflowException) { throw new JinjaException($"{x} {op} {y} is beyond 64-bit integers"); }
            }
            if (a is long or double && b is long or double)
            {
                var (p, q) = (Convert.ToDouble(a), Convert.ToDouble(b));
                // Python refuses a float division by zero where C# gives infinity or NaN.
                if (q == 0 && op is "/" or "//" or "%") throw new JinjaException(op == "%" ? "modulo by zero" : "division by zero");
                return op switch { "+" => p + q, "-" => p - q, "*" => p * q, "/" => p / q, "%" => FloatDivMod(p, q).Modulo, _ => FloatDivMod(p, q).Quotient };
            }
            throw new JinjaException($"cannot apply '{op}' to {Describe(a)} and {Describe(b)}");
        }

        /// <summary>Python's float divmod (floatobject.c): the modulo takes the divisor's sign, a
        /// zero one signed as the divisor (-7.5 % 2 is 0.5, where C#'s remainder is -1.5), and the
        /// floored quotient comes from the exact remainder (-4 // 1e-7 is -40000001.0, where
        /// Math.Floor(-4 / 1e-7) gives -40000000.0).</summary>
        static (double Quotient, double Modulo) FloatDivMod(double p, double q)
        {
            var modulo = p % q;
            var quotient = (p - modulo) / q;
            if (modulo != 0)
            {
                if ((q < 0) != (modulo < 0)) (modulo, quotient) = (modulo + q, quotient - 1);
            }
            else modulo = Math.CopySign(0.0, q);
            if (quotient == 0) return (Math.CopySign(0.0, p / q), modulo);
            var floored = Math.Floor(quotient);
            return (quotient - floored > 0.5 ? floored + 1 : floored, modulo);
        }

        /// <summary>Unary minus: -0.0 stays a negative zero, as in Python (0 - 0.0 is 0.0).</summary>
        public static object? Negate(object? v) => v is double d ? -d : Arithmetic("-", 0L, v);

        /// <summary>Unary plus, Python's: a number as it is (a boolean as 0 or 1); nothing else has one.</summary>
        public static object? Plus(object? v) => v switch
        {
            long or double => v,
            bool b => b ? 1L : 0L,
            Undefined u => throw u.Error(),
            _ => throw new JinjaException($"cannot apply unary '+' to {Describe(v)}"),
        };

        /// <summary>Python's a ** b: integers stay integers (refused past 64 bits, where Python's
        /// grow), a negative exponent gives a float; 0 to a negative power, a negative number to
        /// a fractional one (a complex number) and a float overflow are refused as Python refuses them.</summary>
        static object Power(object? a, object? b)
        {
            if (a is long x && b is long y && y >= 0)
            {
                try
                {
                    long result = 1;
                    for (var (factor, exponent) = (x, y); exponent > 0; exponent >>= 1)
                    {
                        if ((exponent & 1) == 1) result = checked(result * factor);
                        if (exponent > 1) factor = checked(factor * factor);
                    }
                    return result;
                }
                catch (OverflowException) { throw new JinjaException($"{x} ** {y} is beyond 64-bit integers"); }
            }
            if (a is not (long or double) || b is not (long or double)) throw new JinjaException($"cannot apply '**' to {Describe(a)} and {Describe(b)}");
            var (p, q) = (Convert.ToDouble(a), Convert.ToDouble(b));
            if (p == 0 && q < 0) throw new JinjaException("0.0 cannot be raised to a negative power");
            var power = Math.Pow(p, q);
            if (double.IsNaN(power) && !double.IsNaN(p) && !double.IsNaN(q)) throw new JinjaException($"{ToText(a)} ** {ToText(b)} is a complex number");
            if (double.IsInfinity(power) && double.IsFinite(p) && double.IsFinite(q)) throw new JinjaException($"{ToText(a)} ** {ToText(b)} is out of the range of floats");
            return power;
        }

        /// <summary>The name of a value's type as jinja2's errors write it (Python's type name:
        /// 'dict object', 'str object', 'None').</summary>
        public static string TypeName(object? v) => v switch
        {
            null => "None",
            bool => "bool object",
            long => "int object",
            double => "float object",
            string => "str object",
            TupleValue => "tuple object",
            Namespace => "jinja2.utils.Namespace object",
            Mapping => "dict object",
            LoopInfo => "jinja2.runtime.LoopContext object",
            Macro => "jinja2.runtime.Macro object",
            BoundMethod => "builtin_function_or_method object",
            GlobalFunction => "function object",
            Undefined => "jinja2.runtime.Undefined object",
            _ => "list object",
        };

        public static string Describe(object? v) => v switch
        {
            null => "none",
            Undefined => "an undefined value",
            string => "a string",
            long or double => "a number",
            bool => "a boolean",
            BoundMethod => "a method",
            LoopInfo => "a loop",
            Namespace => "a namespace",
            Mapping => "a mapping",
            _ => "a list",
        };
    }
}
