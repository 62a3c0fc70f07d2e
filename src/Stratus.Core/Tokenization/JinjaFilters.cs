// The is-tests and filters of JinjaTemplate, as Jinja defines them: each by name, with its
// arguments by position or keyword, and the helpers they share (attributes, sort keys).
using System.Globalization;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    static partial class Values
    {
        /// <summary>An is-test: the value, the test's argument where it takes one, and the budget
        /// (in searches a list).</summary>
        public static Func<object?, object?, Budget, bool> Test(string name) => name switch
        {
            "defined" => (v, _, _) => v is not Undefined,
            "undefined" => (v, _, _) => v is Undefined,
            "none" => (v, _, _) => v is null,
            "string" => (v, _, _) => v is string,
            "number" => (v, _, _) => v is long or double,
            "integer" => (v, _, _) => v is long,
            "float" => (v, _, _) => v is double,
            "boolean" => (v, _, _) => v is bool,
            "true" => (v, _, _) => v is true,
            "false" => (v, _, _) => v is false,
            "mapping" => (v, _, _) => v is Mapping,
            // A mapping is iterable (its keys) and a sequence (it has a length and items), as in Jinja.
            "sequence" or "iterable" => (v, _, _) => v is string or IEnumerable<object?> or Mapping,
            "callable" => (v, _, _) => v is Macro or GlobalFunction or BoundMethod,
            "even" => (v, _, _) => v is long l && l % 2 == 0,
            "odd" => (v, _, _) => v is long l && l % 2 != 0,
            "divisibleby" => (v, arg, _) => (v, arg) is (long l, long by) ? by != 0 ? l % by == 0 : throw new JinjaException("divisibleby zero") : throw new JinjaException("'is divisibleby' takes integers"),
            "lower" => (v, _, _) => v is string s && IsLower(s),
            "upper" => (v, _, _) => v is string s && IsUpper(s),
            "equalto" or "sameas" or "eq" or "==" => (v, arg, _) => Equal(v, arg),
            "ne" or "!=" => (v, arg, _) => !Equal(v, arg),
            "lt" or "lessthan" or "<" => (v, arg, _) => (bool)Compare("<", v, arg),
            "le" or "<=" => (v, arg, _) => (bool)Compare("<=", v, arg),
            "gt" or "greaterthan" or ">" => (v, arg, _) => (bool)Compare(">", v, arg),
            "ge" or ">=" => (v, arg, _) => (bool)Compare(">=", v, arg),
            "in" => (v, arg, budget) => Contains(arg, v, budget),
            _ => throw new JinjaException($"the test 'is {name}' is not supported"),
        };

        /// <summary>A filter: the value, the filter's arguments (keywords as name-value pairs) and the budget.</summary>
        public static Func<object?, List<object?>, Budget, object?> Filter(string name) => name switch
        {
            "trim" => (v, _, _) => ToText(v).Trim(),
            "upper" => (v, _, _) => Upper(ToText(v)),
            "lower" => (v, _, _) => Lower(ToText(v)),
            "capitalize" => (v, _, _) => Capitalize(ToText(v)),
            "title" => (v, _, _) => TitleFilter(ToText(v)),
            "replace" => (v, args, budget) => args is [var old, var replacement] ? Replace(ToText(v), ToText(old), ToText(replacement), budget) : throw new JinjaException("|replace takes the text to replace and its replacement"),
            "indent" => (v, args, _) => IndentLines(ToText(v), args),
            "length" or "count" => (v, _, _) => v switch { string s => (long)s.Length, System.Collections.ICollection c => (long)c.Count, Mapping m => (long)m.Count, Undefined => 0L, _ => throw new JinjaException($"{Describe(v)} has no length") },
            "string" => (v, _, _) => ToText(v),
            // Markup in Jinja, which prints as the text itself: there is no autoescaping here.
            "safe" => (v, _, _) => ToText(v),
            // |int(default=0): Python's int(), else int(float()), else the default; as in Jinja,
            // NaN gives the default but infinity is refused, where text of it ('inf') gives the default.
            "int" => (v, args, _) => Bind("int", args, ("default", 0L)) is [var fallback] ? v switch
            {
                long l => l, bool b => b ? 1L : 0L,
                double d => double.IsNaN(d) ? fallback : Integer(d),
                string s when long.TryParse(s, NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite | NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l) => l,
                string s when ParseFloat(s) is { } d && double.IsFinite(d) => Integer(d),
                Undefined u => throw u.Error(),
                _ => fallback,
            } : null,
            // |float(default=0.0): Python's float(), else the default.
            "float" => (v, args, _) => Bind("float", args, ("default", 0.0)) is [var fallback] ? v switch
            {
                long l => (double)l, bool b => b ? 1.0 : 0.0, double d => d,
                string s when ParseFloat(s) is { } d => d,
                Undefined u => throw u.Error(),
                _ => fallback,
            } : null,
            // Python's abs(): a boolean as 0 or 1; the most negative 64-bit integer's is beyond 64 bits, as its negation is.
            "abs" => (v, _, _) => v switch { long l => l < 0 ? Negate(l) : l, bool b => b ? 1L : 0L, double d => Math.Abs(d), _ => throw new JinjaException($"|abs of {Describe(v)}") },
            // transformers' own tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False), not Jinja's.
            "tojson" => (v, args, _) => Bind("tojson", args, ("ensure_ascii", false), ("indent", null), ("separators", null), ("sort_keys", false))
                is [var ascii, var indent, var separators, var sortKeys] ? ToJson(v, JsonStyle.Of(ascii, indent, separators, sortKeys)) : null,
            "first" => (v, _, _) => Iterate(v).DefaultIfEmpty(Undefined.NoFirst).First(),
            "last" => (v, _, _) => Iterate(v).DefaultIfEmpty(Undefined.NoLast).Last(),
            "list" => (v, _, _) => Iterate(v).ToList(),
            "reverse" => (v, _, _) => v is string s ? string.Concat(s.Reverse()) : Iterate(v).Reverse().ToList(),
            "join" => (v, args, _) => Join(Iterate(v), args.Count > 0 ? ToText(args[0]) : ""),
            "default" or "d" => (v, args, _) => v is Undefined || (args.Count > 1 && Truthy(args[1]) && !Truthy(v)) ? (args.Count > 0 ? args[0] : "") : v,
            "items" => (v, _, _) => v switch
            {
                Mapping d => Pairs(d),
                Undefined => [],
                _ => throw new JinjaException($"|items takes a mapping, not {Describe(v)}"),
            },
            // These three read a false value (none, 0, "") as no items, as jinja2's do.
            "select" or "reject" => (v, args, budget) => Select(Items(v), args, attribute: null, keep: name == "select", budget),
            "selectattr" or "rejectattr" => (v, args, budget) => args is [string attribute, .. var test]
                ? Select(Items(v), test, attribute, keep: name == "selectattr", budget)
                : throw new JinjaException($"|{name} takes an attribute's name, then optionally a test and its argument"),
            "map" => (v, args, budget) => Map(Items(v), args, budget),
            "sort" => (v, args, budget) => Bind("sort", args, ("reverse", false), ("case_sensitive", false), ("attribute", null))
                is [var reverse, var caseSensitive, var attribute] ? Sort(Iterate(v), SortKey(attribute, Truthy(caseSensitive), multiple: true), Truthy(reverse), budget) : null,
            "unique" => (v, args, budget) => Bind("unique", args, ("case_sensitive", false), ("attribute", null)) is [var caseSensitive, var attribute]
                ? Unique(Iterate(v), SortKey(attribute, Truthy(caseSensitive), multiple: false), budget) : null,
            "dictsort" => (v, args, budget) => Bind("dictsort", args, ("case_sensitive", false), ("by", "key"), ("reverse", false)) is [var caseSensitive, var by, var reverse]
                ? DictSort(v, Truthy(caseSensitive), by, Truthy(reverse), budget) : null,
            "min" or "max" => (v, args, budget) => Bind(name, args, ("case_sensitive", false), ("attribute", null)) is [var caseSensitive, var attribute]
                ? Extreme(Iterate(v), SortKey(attribute, Truthy(caseSensitive), multiple: false), name == "max", budget) : null,
            "sum" => (v, args, _) => Bind("sum", args, ("attribute", null), ("start", 0L)) is [var attribute, var start] ? Sum(Iterate(v), attribute, start) : null,
            "round" => (v, args, _) => Bind("round", args, ("precision", 0L), ("method", "common")) is [var precision, var method] ? Round(v, precision, method) : null,
            "batch" => (v, args, _) => Bind("batch", args, ("linecount", Undefined.Instance), ("fill_with", null)) is [var count, var fill] ? Batch(Iterate(v), count, fill) : null,
            "format" => (v, args, _) => FormatFilter(ToText(v), args),
            "escape" or "e" => (v, _, _) => Escape(ToText(v)),
            _ => throw new JinjaException($"the filter '|{name}' is not supported"),
        };

        /// <summary>|select and |reject (the items themselves), |selectattr and |rejectattr (an
        /// attribute of each): the items whose value passes the test (truth, without one) or fails it.</summary>
        static List<object?> Select(IEnumerable<object?> items, List<object?> test, string? attribute, bool keep, Budget budget)
        {
            var check = test is [string name, ..] ? Test(name) : null;
            Func<object?, bool> passes = test switch
            {
                [] => Truthy,
                [string] => v => check!(v, null, budget),
                [string, var argument] => v => check!(v, argument, budget),
                _ => throw new JinjaException("a select filter takes a test's name and at most one argument for it"),
            };
            return items.Where(item => passes(attribute is null ? item : Attribute(item, attribute)) == keep).ToList();
        }

        /// <summary>|map(attribute='a.b', default=x): each item's attribute (x where it is undefined);
        /// |map('filter', args...): the filter applied to each item.</summary>
        static List<object?> Map(IEnumerable<object?> items, List<object?> args, Budget budget)
        {
            switch (args)
            {
                case [KeyValuePair<string, object?> { Key: "attribute", Value: var attribute }, .. var rest]:
                    var fallback = rest switch
                    {
                        [] => Undefined.Instance,
                        [KeyValuePair<string, object?> { Key: "default", Value: var value }] => value,
                        _ => throw new JinjaException("|map(attribute=...) takes only a default= besides"),
                    };
                    return items.Select(item => Attribute(item, ToText(attribute)) is var v && v is Undefined ? fallback : v).ToList();
                case [string filterName, .. var filterArguments]:
                    var filter = Filter(filterName);
                    return items.Select(item => filter(item, filterArguments, budget)).ToList();
                default:
                    throw new JinjaException("|map takes a filter's name or attribute=");
            }
        }

        /// <summary>An item's attribute as Jinja's attribute filters read it: a dotted path, a
        /// number in it an index ("function.name", "content.0").</summary>
        static object? Attribute(object? item, string path)
        {
            foreach (var part in path.Split('.'))
                item = Index(item, long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var at) ? at : part);
            return item;
        }

        static IEnumerable<object?> Items(object? v) => Truthy(v) ? Iterate(v) : [];

        /// <summary>A filter's arguments, by position then by keyword, in the order of its
        /// parameters, each its default where not given; anything else refused by name.</summary>
        static object?[] Bind(string filter, List<object?> args, params (string Name, object? Default)[] parameters)
        {
            var values = parameters.Select(p => p.Default).ToArray();
            var given = new bool[parameters.Length];
            for (var i = 0; i < args.Count; i++)
            {
                var (index, value) = args[i] is KeyValuePair<string, object?> kv
                    ? (Array.FindIndex(parameters, p => p.Name == kv.Key) is var at && at >= 0 ? at : throw new JinjaException($"|{filter} takes {string.Join(", ", parameters.Select(p => p.Name))}, not {kv.Key}"), kv.Value)
                    : (i < parameters.Length ? i : throw new JinjaException($"|{filter} takes at most {parameters.Length} argument(s)"), args[i]);
                if (given[index]) throw new JinjaException($"|{filter} got {parameters[index].Name} twice");
                (given[index], values[index]) = (true, value);
            }
            var missing = Array.FindIndex(values, v => v is Undefined);
            if (missing >= 0) throw new JinjaException($"|{filter} needs its {parameters[missing].Name}");
            return values;
        }

        /// <summary>What |sort, |unique, |min and |max order items by: the item or its attribute
        /// (a dotted path; for |sort, several separated by commas, compared in turn), a string in
        /// lower case unless case_sensitive, as Jinja's ignore_case makes it.</summary>
        static Func<object?, object?> SortKey(object? attribute, bool caseSensitive, bool multiple)
        {
            object? Fold(object? v) => !caseSensitive && v is string s ? Lower(s) : v;
            if (attribute is null) return multiple ? item => new List<object?> { Fold(item) } : Fold;
            var paths = multiple ? ToText(attribute).Split(',') : [ToText(attribute)];
            return multiple ? item => paths.Select(path => Fold(Attribute(item, path))).ToList() : item => Fold(Attribute(item, paths[0]));
        }

        /// <summary>A comparer by <see cref="Order"/> that spends from the budget per comparison.</summary>
        static Comparer<object?> Ordering(Budget budget) => Comparer<object?>.Create((a, b) =>
        {
            budget.Spend(1);
            return Order(a, b);
        });

        /// <summary>Python's sorted(items, key, reverse): stable, also reversed (equal items keep their order).</summary>
        static List<object?> Sort(IEnumerable<object?> items, Func<object?, object?> key, bool reverse, Budget budget)
        {
            var keyed = items.Select(item => (Key: key(item), Item: item)).ToList();
            try
            {
                var sorted = reverse ? keyed.OrderByDescending(p => p.Key, Ordering(budget)) : keyed.OrderBy(p => p.Key, Ordering(budget));
                return sorted.Select(p => p.Item).ToList();
            }
            catch (InvalidOperationException e) when (e.InnerException is JinjaException inner) { throw inner; }
        }

        static List<object?> DictSort(object? v, bool caseSensitive, object? by, bool reverse, Budget budget)
        {
            if (v is not Mapping d) throw new JinjaException($"|dictsort takes a mapping, not {Describe(v)}");
            var at = by switch { "key" => 0, "value" => 1, _ => throw new JinjaException("|dictsort sorts by either \"key\" or \"value\"") };
            return Sort(Pairs(d), pair => SortKey(null, caseSensitive, multiple: false)(((TupleValue)pair!)[at]), reverse, budget);
        }

        /// <summary>|min and |max: the first item whose key is least (greatest); undefined for no items.</summary>
        static object? Extreme(IEnumerable<object?> items, Func<object?, object?> key, bool greatest, Budget budget)
        {
            object? best = Undefined.Instance, bestKey = null;
            foreach (var item in items)
            {
                var itemKey = key(item);
                budget.Spend(1);
                if (best is Undefined || Order(itemKey, bestKey) * (greatest ? 1 : -1) > 0) (best, bestKey) = (item, itemKey);
            }
            return best;
        }

        /// <summary>|unique: each item whose key (Python's set, where 1, 1.0 and true are one) is new, in order.</summary>
        static List<object?> Unique(IEnumerable<object?> items, Func<object?, object?> key, Budget budget)
        {
            var seen = new HashSet<object?>(UniqueKeys.Instance);
            var kept = new List<object?>();
            foreach (var item in items)
            {
                budget.Spend(1);
                if (seen.Add(key(item))) kept.Add(item);
            }
            return kept;
        }

        /// <summary>|unique's keys, as Python's set hashes them.</summary>
        sealed class UniqueKeys : IEqualityComparer<object?>
        {
            public static readonly UniqueKeys Instance = new();
            public new bool Equals(object? a, object? b) => ItemEqual(a, b);
            public int GetHashCode(object? v) => Hash(v, v => $"|unique cannot hash {Describe(v)} (as Python: unhashable)");
        }

        /// <summary>Python's sum(items, start): numbers added, lists joined; strings refused, as Python refuses them.</summary>
        static object? Sum(IEnumerable<object?> items, object? attribute, object? start)
        {
            if (start is string) throw new JinjaException("|sum cannot add strings; use |join");
            var total = start;
            foreach (var item in items) total = Arithmetic("+", total, attribute is null ? item : Attribute(item, ToText(attribute)));
            return total;
        }

        /// <summary>Python's int() of a float, which refuses infinity; Python's grows past 64 bits,
        /// where a cast would saturate.</summary>
        static long Integer(double d) =>
            !double.IsFinite(d) ? throw new JinjaException($"cannot convert float {ToText(d)} to integer")
            : Math.Abs(d) < 9223372036854775808.0 ? (long)d : throw new JinjaException($"{ToText(d)} | int is beyond 64-bit integers");

        /// <summary>Python's float() of text, null where it refuses it: white space around an
        /// optional sign, then inf, infinity or nan in any case, or decimal digits with single
        /// underscores between them, a point and an exponent (.NET's own words, such as "∞", are
        /// not Python's).</summary>
        static double? ParseFloat(string text)
        {
            var s = text.Trim();
            var unsigned = s.Length > 0 && s[0] is '+' or '-' ? s[1..] : s;
            var sign = s.StartsWith('-') ? -1.0 : 1.0;
            if (unsigned.Equals("inf", StringComparison.OrdinalIgnoreCase) || unsigned.Equals("infinity", StringComparison.OrdinalIgnoreCase)) return sign * double.PositiveInfinity;
            if (unsigned.Equals("nan", StringComparison.OrdinalIgnoreCase)) return double.NaN;
            if (unsigned.Length == 0 || !(char.IsAsciiDigit(unsigned[0]) || unsigned[0] == '.')) return null;
            for (var i = s.IndexOf('_'); i >= 0; i = s.IndexOf('_', i + 1))
                if (i == 0 || i + 1 == s.Length || !char.IsAsciiDigit(s[i - 1]) || !char.IsAsciiDigit(s[i + 1])) return null;
            return double.TryParse(s.Replace("_", ""), NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out var d) ? d : null;
        }

        /// <summary>Jinja's |round(precision=0, method='common'): Python's round() (ties to even,
        /// an integer stays one), or floor/ceil at that precision, which give a float.</summary>
        static object Round(object? v, object? precision, object? method)
        {
            if (v is not (long or double)) throw new JinjaException($"|round takes a number, not {Describe(v)}");
            if (precision is not long digits) throw new JinjaException("|round's precision is an integer");
            switch (method)
            {
                // Boxed apart: "? long : double" would make the integer a double (3 | round writes 3).
                case "common": return v is long whole ? (object)Printf.Round(whole, digits) : Printf.Round((double)v, digits);
                case "floor" or "ceil":
                    var scale = Math.Pow(10, digits);
                    var scaled = Convert.ToDouble(v) * scale;
                    if (!double.IsFinite(scaled)) throw new JinjaException($"cannot convert float {ToText(scaled)} to integer");
                    // Python's floor and ceil give an integer, which has no -0: + 0.0 makes -0.0 zero.
                    return ((method is "floor" ? Math.Floor(scaled) : Math.Ceiling(scaled)) + 0.0) / scale;
                default: throw new JinjaException("|round's method must be common, ceil or floor");
            }
        }

        /// <summary>|batch(count, fill_with=none): the items in lists of count, the last filled up with fill_with where given.</summary>
        static List<object?> Batch(IEnumerable<object?> items, object? count, object? fill)
        {
            if (count is not long size || size < 1) throw new JinjaException("|batch takes a positive number of items per batch");
            var batches = new List<object?>();
            List<object?>? current = null;
            foreach (var item in items)
            {
                if (current is null || current.Count == size) batches.Add(current = []);
                current.Add(item);
            }
            if (fill is not null && current is not null) while (current.Count < size) current.Add(fill);
            return batches;
        }

        /// <summary>|format(args) or |format(name=value): the value % args, Python's printf-style formatting.</summary>
        static string FormatFilter(string format, List<object?> args)
        {
            var keywords = args.OfType<KeyValuePair<string, object?>>().ToList();
            if (keywords.Count == 0) return Printf.Format(format, args, mapping: null);
            if (keywords.Count < args.Count) throw new JinjaException("|format cannot take positional and keyword arguments at once");
            var mapping = new Mapping();
            foreach (var (key, value) in keywords) mapping[key] = value;
            return Printf.Format(format, [mapping], mapping);
        }

        /// <summary>|escape (|e): HTML's special characters as markupsafe writes them.</summary>
        static string Escape(string s)
        {
            var text = new StringBuilder(s.Length);
            foreach (var c in s)
            {
                text.Append(c switch { '&' => "&amp;", '<' => "&lt;", '>' => "&gt;", '"' => "&#34;", '\'' => "&#39;", _ => null });
                if (c is not ('&' or '<' or '>' or '"' or '\'')) text.Append(c);
            }
            CheckLength(text.Length);
            return text.ToString();
        }

        /// <summary>Jinja's |indent(width=4, first=false, blank=false): every line after the first
        /// (and the first with first=true) indented, blank lines too with blank=true.</summary>
        static string IndentLines(string s, List<object?> args)
        {
            object? width = 4L, first = false, blank = false;
            for (var i = 0; i < args.Count; i++)
            {
                var (key, value) = args[i] is KeyValuePair<string, object?> kv ? (kv.Key, kv.Value) : (i switch { 0 => "width", 1 => "first", _ => "blank" }, args[i]);
                switch (key)
                {
                    case "width": width = value; break;
                    case "first": first = value; break;
                    case "blank": blank = value; break;
                    default: throw new JinjaException($"|indent takes width, first and blank, not {key}");
                }
            }
            var size = width switch { string text => text.Length, long n => Math.Max(n, 0), _ => throw new JinjaException("|indent's width is a number or a string") };
            // Python's splitlines, after Jinja appends a newline: a final line break leaves no empty line.
            var lines = System.Text.RegularExpressions.Regex.Split(s + "\n", "\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]").SkipLast(1).ToList();
            // Any width, as Python's, the length checked before the text is built, which many
            // indented lines could take past what a string holds.
            var indented = (Truthy(blank) ? lines.Count - 1 : lines.Skip(1).Count(line => line.Length > 0)) + (Truthy(first) ? 1 : 0);
            if (indented > 0) CheckLength(s.Length + Math.Min(size, MaxLength + 1L) * indented);
            var indention = width as string ?? new string(' ', indented > 0 ? (int)size : 0);
            var result = Truthy(blank)
                ? string.Join("\n" + indention, lines)
                : string.Join("\n", lines.Select((line, i) => i == 0 || line.Length == 0 ? line : indention + line));
            return Truthy(first) ? indention + result : result;
        }

        static string Join(IEnumerable<object?> items, string separator)
        {
            var text = new StringBuilder();
            var between = "";
            foreach (var item in items)
            {
                text.Append(between).Append(ToText(item));
                between = separator;
                CheckLength(text.Length);
            }
            return text.ToString();
        }
    }
}
