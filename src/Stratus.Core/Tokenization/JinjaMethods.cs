// The string and dict methods and the global functions JinjaTemplate's templates may call:
// range(), namespace(), dict(), raise_exception() and strftime_now().
using System.Globalization;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    static partial class Values
    {
        /// <summary>How many arguments each method takes. Python's optional ones that this
        /// subset does not implement (startswith's start, replace's count) are refused rather
        /// than ignored.</summary>
        static readonly Dictionary<string, (int Min, int Max)> Arity = new()
        {
            ["strip"] = (0, 1), ["lstrip"] = (0, 1), ["rstrip"] = (0, 1), ["upper"] = (0, 0), ["lower"] = (0, 0), ["title"] = (0, 0),
            ["capitalize"] = (0, 0), ["startswith"] = (1, 1), ["endswith"] = (1, 1), ["replace"] = (2, 2), ["split"] = (0, 2),
            ["items"] = (0, 0), ["keys"] = (0, 0), ["values"] = (0, 0), ["get"] = (1, 2),
        };

        public static object? CallMethod(object? target, string name, List<object?> args, Budget budget)
        {
            if (Arity.TryGetValue(name, out var arity) && (args.Count < arity.Min || args.Count > arity.Max))
            {
                var count = arity.Min == arity.Max ? $"{arity.Min}" : $"{arity.Min} or {arity.Max}";
                throw new JinjaException($".{name}() takes {count} argument{(arity.Max == 1 ? "" : "s")}, not {args.Count}");
            }
            if (target is Undefined u) throw u.Error();
            // strip(none) and split(none) mean white space, as in Python.
            return (target, name) switch
            {
                (LoopInfo loop, "cycle") => loop.Cycle(args),
                (LoopInfo loop, "changed") => loop.Changed(args),
                (string s, "strip") => args is [{ } chars] ? s.Trim(Characters(s, chars, budget)) : s.Trim(),
                (string s, "lstrip") => args is [{ } chars] ? s.TrimStart(Characters(s, chars, budget)) : s.TrimStart(),
                (string s, "rstrip") => args is [{ } chars] ? s.TrimEnd(Characters(s, chars, budget)) : s.TrimEnd(),
                (string s, "upper") => Upper(s),
                (string s, "lower") => Lower(s),
                (string s, "title") => TitleMethod(s),
                (string s, "capitalize") => Capitalize(s),
                // Either takes a tuple of texts, any of which may match, as in Python.
                (string s, "startswith") => Affixes(args[0]).Any(prefix => s.StartsWith(prefix, StringComparison.Ordinal)),
                (string s, "endswith") => Affixes(args[0]).Any(suffix => s.EndsWith(suffix, StringComparison.Ordinal)),
                (string s, "replace") => Replace(s, ToText(args[0]), ToText(args[1]), budget),
                (string s, "split") => Split(s, args, budget).Select(p => (object?)p).ToList(),
                (string s, "format") => StrFormat.Format(s, [.. args.Where(a => a is not KeyValuePair<string, object?>)], Keywords(args)),
                // Its fields are names, so only the mapping's string keys can be read.
                (string s, "format_map") => args is [Mapping mapping]
                    ? StrFormat.Format(s, [], mapping.Where(kv => kv.Key is string).ToDictionary(kv => (string)kv.Key!, kv => kv.Value))
                    : throw new JinjaException(".format_map() takes one mapping"),
                (Mapping d, "items") => Pairs(d),
                (Mapping d, "keys") => d.Keys.ToList(),
                (Mapping d, "values") => d.Values.ToList(),
                (Mapping d, "get") => d.TryGetValue(args[0], out var v) ? v : args.Count > 1 ? args[1] : null,
                _ => throw new JinjaException($"the method .{name}() on {Describe(target)} is not supported"),
            };
        }

        /// <summary>A call's keyword arguments by name, each given once.</summary>
        static Dictionary<string, object?> Keywords(List<object?> args)
        {
            var keywords = new Dictionary<string, object?>();
            foreach (var (key, value) in args.OfType<KeyValuePair<string, object?>>())
                if (!keywords.TryAdd(key, value)) throw new JinjaException($"keyword argument repeated: {key}");
            return keywords;
        }

        /// <summary>The characters strip() removes; each character of the text is looked up among them.</summary>
        static char[] Characters(string s, object? chars, Budget budget)
        {
            var set = ToText(chars);
            SpendOnSearch(budget, s, set);
            return set.ToCharArray();
        }

        static string Replace(string s, string old, string replacement, Budget budget)
        {
            if (old.Length == 0) throw new JinjaException(".replace() of the empty string is not supported");
            SpendOnSearch(budget, s, old);
            if (replacement.Length > old.Length)
            {
                long count = 0;
                for (var at = s.IndexOf(old, StringComparison.Ordinal); at >= 0; at = s.IndexOf(old, at + old.Length, StringComparison.Ordinal)) count++;
                CheckLength(s.Length + count * (replacement.Length - old.Length));
            }
            return s.Replace(old, replacement, StringComparison.Ordinal);
        }

        static IEnumerable<string> Affixes(object? argument) => argument switch
        {
            TupleValue tuple => tuple.Select(a => a as string ?? throw new JinjaException("startswith/endswith take a text or a tuple of texts")),
            string text => [text],
            _ => throw new JinjaException("startswith/endswith take a text or a tuple of texts"),
        };

        /// <summary>Python's split(sep=None, maxsplit=-1): at each separator, or at runs of white
        /// space (none at either end) without one, at most maxsplit times.</summary>
        static string[] Split(string s, List<object?> args, Budget budget)
        {
            var separator = args.Count > 0 && args[0] is { } given ? ToText(given) : null;
            var most = args.Count > 1 ? args[1] is long n ? n : throw new JinjaException(".split()'s maxsplit is a number") : -1;
            var count = most < 0 ? int.MaxValue : (int)Math.Min(most + 1, int.MaxValue);
            if (separator is null)
            {
                budget.Spend(s.Length);
                // The rest after the last split keeps its trailing white space, not its leading.
                var parts = s.TrimStart().Split((char[]?)null, count, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length > 0) parts[^1] = parts[^1].TrimStart();
                return parts;
            }
            if (separator.Length == 0) throw new JinjaException(".split() with an empty separator");
            SpendOnSearch(budget, s, separator);
            return s.Split(separator, count);
        }

        /// <summary>The functions <see cref="Function"/> calls.</summary>
        public static readonly HashSet<string> Functions = ["raise_exception", "namespace", "range", "strftime_now", "dict"];

        public static Expr Function(string name, List<Expr> arguments) => name switch
        {
            "raise_exception" => new Lambda(s => throw JinjaException.RaisedByTemplate(ToText(arguments.FirstOrDefault()?.Eval(s))), arguments),
            "namespace" => new Lambda(s =>
            {
                var ns = new Namespace();
                foreach (var a in arguments)
                {
                    if (a.Eval(s) is KeyValuePair<string, object?> kv) ns[kv.Key] = kv.Value;
                }
                return ns;
            }, arguments),
            // Python's dict(): a mapping or (key, value) pairs, then keyword arguments.
            "dict" => new Lambda(s =>
            {
                var dict = new Mapping();
                var values = arguments.Select(a => a.Eval(s)).ToList();
                var positional = values.Where(v => v is not KeyValuePair<string, object?>).ToList();
                switch (positional)
                {
                    case []: break;
                    case [Mapping mapping]:
                        foreach (var (key, value) in mapping) dict[key] = value;
                        break;
                    case [IEnumerable<object?> pairs]:
                        foreach (var pair in pairs)
                        {
                            if (pair is not IList<object?> { Count: 2 } kv) throw new JinjaException("dict() takes pairs of a key and a value");
                            dict[kv[0]] = kv[1];
                        }
                        break;
                    default: throw new JinjaException("dict() takes at most one mapping or list of pairs, then keyword arguments");
                }
                foreach (var v in values)
                {
                    if (v is KeyValuePair<string, object?> keyword) dict[keyword.Key] = keyword.Value;
                }
                return dict;
            }, arguments),
            "range" => new Lambda(s =>
            {
                if (arguments.Count is 0 or > 3) throw new JinjaException($"range() takes 1 to 3 integers, not {arguments.Count}");
                var values = arguments.Select(a => a.Eval(s) is long l ? l : throw new JinjaException("range() takes integers")).ToList();
                var (start, stop) = values.Count == 1 ? (0L, values[0]) : (values[0], values[1]);
                var step = values.Count > 2 ? values[2] : 1L;
                if (step == 0) throw new JinjaException("range() step must not be zero");
                // Counted before it is built, in 128 bits: the bounds may be any two longs.
                var span = step > 0 ? (Int128)stop - start : (Int128)start - stop;
                var count = span <= 0 ? 0 : (span + Int128.Abs(step) - 1) / Int128.Abs(step);
                if (count > MaxItems) throw new JinjaException($"range() of {count:N0} numbers is too large (at most {MaxItems:N0}, as in Jinja's sandbox)");
                var list = new List<object?>((int)count);
                for (var i = 0L; i < count; i++) list.Add(start + i * step);
                return list;
            }, arguments),
            // transformers' datetime.now().strftime(format), so a rendering holds today's date as it does.
            "strftime_now" => new Lambda(s => arguments is [var format] && format.Eval(s) is string text
                ? Strftime(s.Clock.GetLocalNow(), text)
                : throw new JinjaException("strftime_now() takes one format string"), arguments),
            _ => throw new JinjaException($"the function {name}() is not supported"),
        };

        /// <summary>Python's strftime in the C locale for the directives templates use ("%d %b %Y",
        /// "%Y-%m-%d"), with glibc's "-" for no padding ("%-d"); any other is refused by name.</summary>
        static string Strftime(DateTimeOffset now, string format)
        {
            var text = new StringBuilder();
            for (var i = 0; i < format.Length; i++)
            {
                if (format[i] != '%')
                {
                    text.Append(format[i]);
                    continue;
                }
                var pad = !(i + 1 < format.Length && format[i + 1] == '-');
                i += pad ? 1 : 2;
                if (i >= format.Length) throw new JinjaException($"strftime_now(\"{format}\"): the format ends inside a directive");
                string Number(int value, int width) => value.ToString(pad ? new string('0', width) : "0", CultureInfo.InvariantCulture);
                text.Append(format[i] switch
                {
                    'a' => now.ToString("ddd", CultureInfo.InvariantCulture),
                    'A' => now.ToString("dddd", CultureInfo.InvariantCulture),
                    'b' => now.ToString("MMM", CultureInfo.InvariantCulture),
                    'B' => now.ToString("MMMM", CultureInfo.InvariantCulture),
                    'd' => Number(now.Day, 2),
                    'm' => Number(now.Month, 2),
                    'y' => Number(now.Year % 100, 2),
                    'Y' => Number(now.Year, 4),
                    'H' => Number(now.Hour, 2),
                    'I' => Number((now.Hour + 11) % 12 + 1, 2),
                    'p' => now.Hour < 12 ? "AM" : "PM",
                    'M' => Number(now.Minute, 2),
                    'S' => Number(now.Second, 2),
                    'j' => Number(now.DayOfYear, 3),
                    '%' => "%",
                    var other => throw new JinjaException($"strftime_now(\"{format}\"): the directive %{other} is not supported"),
                });
            }
            return text.ToString();
        }
    }
}
