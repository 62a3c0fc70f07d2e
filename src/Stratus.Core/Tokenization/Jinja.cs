// The subset of Jinja2 that Hugging Face chat templates use (ChatML, Llama 2/3.x, Mistral v1/v3/Nemo,
// Zephyr, Qwen2/2.5/3, Gemma 2/3, Phi-3/4, DeepSeek, Command-R, SmolLM, Hermes, Granite): text,
// {{ expressions }}, {% if/elif/else %}, {% for ... in ... if ... %} with loop.* and {% break %} /
// {% continue %} (the loopcontrols transformers enables), loop.cycle() and loop.changed(), recursive
// loops ({% for x in xs recursive %} with loop(x.children)), {% set %} (also namespace attributes,
// unpacking "a, b = pair", and {% set x | filter %}...{% endset %} blocks), {% filter %} blocks,
// {% macro %} (default arguments, keyword arguments, recursion, varargs and kwargs, a macro read
// as a value and called, arguments spread from a list: fs[i](*args)) and {% call %}
// with caller() (and its arguments: {% call(item) m() %}), {% raw %}, transformers' {% generation %},
// comments, whitespace control ({%- -%},
// and {%+ +%}, which keep what lstrip_blocks / trim_blocks would remove) and the trim_blocks /
// lstrip_blocks settings transformers renders with; "\r\n" and "\r" are line breaks as "\n", as
// Jinja's lexer reads them. Expressions cover literals (adjacent strings joined, Python's escapes
// but \N{name}, numbers such as 1_000, 1e16 and 0x1F, integers within 64 bits, tuples), lists, dicts
// (keyed by any value Python hashes: Seed-OSS's {0: 0, 512: 128}), attribute/index access (a dict's
// or string's methods before its keys, as Jinja reads spec.items; d.1 is d[1], and a dot takes a
// name or an integer alone: d.1e5 is refused), slices with steps,
// arithmetic (** too, and printf-style "%s" % x), ~ concatenation (between + and * in precedence,
// as Jinja has it), comparisons by value, in, and/or/not, inline if, is-tests, which bind as filters do ("1 + 1 is even" tests the second 1)
// (defined, none, string, mapping, iterable, in, equalto, ne, gt,
// divisibleby, ...), the filters templates use (selectattr/rejectattr/select/reject, map by
// attribute or filter, sort/unique/dictsort/min/max, sum, round, format, batch, escape, tojson,
// join, trim, title, replace, indent, first/last/length/list/reverse, default, items, ...), string
// methods (str.format too) and dict methods, Python's full case mappings ('ß' | upper is "SS"),
// values printed as Python prints them, and the functions transformers gives
// templates besides Jinja's range(), namespace() and dict(): raise_exception() and strftime_now()
// (the local date and time, which Llama 3.1-3.3's templates write as "Today Date").
// Anything else fails at parse time with the construct named (a test or filter named by a string,
// as in select("x"), where it is applied), so a template is either rendered
// faithfully or refused.
// Scopes are Jinja's: a {% for %} body (and its else) is a scope of its own, begun again each
// iteration, so a {% set %} in it lasts to the iteration's end and only namespace() attributes
// carry a value out; an {% if %} is no scope. A macro sees its arguments and the variables where
// it was defined as they are when it is called, not its caller's loop variables.
// Markup: transformers renders with autoescape off, so nothing is escaped unless a template asks
// with |escape; jinja2's |escape and |safe then give Markup, which |escape leaves as it is and
// "+" escapes the other side of. Here there is no Markup: |escape and |safe give plain text, so
// escaping twice escapes twice (no chat template we know of escapes at all).
// Undefined is jinja2's default Undefined, which transformers keeps: a missing name, key, attribute
// or element prints as nothing, is false and empty, but an attribute or item of it, arithmetic or
// ordering with it, calling it or writing it as JSON is an error in jinja2's words ('x' is
// undefined, 'dict object' has no attribute 'b'). none, unlike it, is no sequence: a loop over
// none, its length or a search in it is an error, as in jinja2 (select, reject and map read any
// false value as no items, as jinja2's do).
// An error names the template's line (that of the innermost tag where it happened).
// A template comes with a downloaded model, so a render is bounded: nesting, text and list
// sizes, range(), a format's precision (10,000 digits, in JinjaPrintf.cs) and the work done
// are capped, each breach a JinjaException (see the limits below).
// This file holds the entry point, the values templates share and the limits; the other parts
// are JinjaLexer.cs, JinjaParser.cs, JinjaStatements.cs, JinjaExpressions.cs, JinjaValues.cs,
// JinjaFilters.cs, JinjaMethods.cs, JinjaPrintf.cs, JinjaStrFormat.cs, JinjaCase.cs,
// JinjaCaseTables.cs and JinjaContentFormat.cs. tests/Stratus.Core.Tests/Jinja2 checks it against jinja2 itself.
using System.Text;
using System.Text.Json;

namespace Stratus.Tokenization;

/// <summary>A template that cannot be parsed or rendered: the reason, with the template's line
/// where the parser or renderer was (raise_exception's message is the template's own, as it wrote it).</summary>
public sealed class JinjaException : Exception
{
    public JinjaException(string message) : this(message, null, raised: false) { }

    JinjaException(string message, int? line, bool raised) : base(line is { } at ? $"{message} (line {at} of the template)" : message) =>
        (Reason, Line, Raised) = (message, line, raised);

    /// <summary>The line of the template where it happened (1 is the first), where known.</summary>
    public int? Line { get; }

    string Reason { get; }

    /// <summary>Whether raise_exception() threw it, with the template's own words.</summary>
    bool Raised { get; }

    /// <summary>The error at a line of the template (0: a template of one line, which names
    /// none), unless it already names one (an inner block's, nearer the cause) or is the
    /// template's own message.</summary>
    internal JinjaException At(int line) => line > 0 && Line is null && !Raised ? new(Reason, line, raised: false) : this;

    /// <summary>raise_exception(message): the template's words, as they are.</summary>
    internal static JinjaException RaisedByTemplate(string message) => new(message, null, raised: true);
}

public sealed partial class JinjaTemplate
{
    /// <summary>The most characters a render builds, in any one text or in the whole prompt: 8 Mi,
    /// far beyond any model's context (a million tokens is about 4 M characters), so a template
    /// cannot exhaust memory ('a' * 1000000000, a string doubled in a loop).</summary>
    internal const int MaxLength = 1 << 23;

    /// <summary>The most items range() gives and list concatenation builds, as Jinja's sandbox
    /// (which transformers renders chat templates in) caps range().</summary>
    internal const int MaxItems = 100_000;

    /// <summary>How deep blocks, expressions and values may nest: parsing, rendering and printing
    /// recurse once per level, and a template nested thousands deep would overflow the stack,
    /// which kills the process.</summary>
    internal const int MaxDepth = 200;

    /// <summary>The work one render may do, in units of about one character copied; a step of
    /// evaluation costs <see cref="Step"/> and a loop iteration (which binds its loop variables)
    /// <see cref="Iteration"/>, about the time each takes. ChatML spends some 20 million on a
    /// conversation of 4 million characters; nested loops over large ranges, or large strings
    /// built over and over, stop after about a second instead of running for hours.</summary>
    internal const long MaxWork = 1_000_000_000;
    const int Step = 100;
    const int Iteration = 1_000;

    readonly List<Node> body;

    public JinjaTemplate(string source)
    {
        var parser = new Parser(Lexer.Tokenize(source));
        body = parser.ParseBlock();
        if (!parser.AtEnd) throw new JinjaException($"unexpected {{% {parser.PeekTagName()} %}}").At(parser.Line);
        IteratesMessageContent = ContentFormat.IteratesMessageContent(parser.ForLoops, parser.Assignments);
    }

    /// <summary>Whether the template loops over a message's content as a list of parts ({% for
    /// part in message['content'] %}), so that it is given one, vLLM's "openai" content format,
    /// rather than a string (see JinjaContentFormat.cs).</summary>
    public bool IteratesMessageContent { get; }

    /// <param name="clock">What strftime_now() reads: the system's local time unless a test fixes it.</param>
    public string Render(IReadOnlyDictionary<string, object?> variables, TimeProvider? clock = null)
    {
        var output = new StringBuilder();
        var scope = new Scope(variables, new Budget(), clock ?? TimeProvider.System);
        foreach (var node in body) node.Render(scope, output);
        return output.ToString();
    }

    /// <summary>A JSON value as templates read it (what Python's json.loads gives): objects as
    /// mappings in their order, arrays as lists, integers as long, other numbers as double.</summary>
    public static object? FromJson(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => value.EnumerateObject().Aggregate(new Mapping(), (d, p) => { d[p.Name] = FromJson(p.Value); return d; }),
        JsonValueKind.Array => value.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => value.GetString(),
        // Boxed apart: "? whole : GetDouble()" would make every integer a double (2 writes as 2.0).
        JsonValueKind.Number => value.TryGetInt64(out var whole) ? (object)whole : value.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    /// <summary>Jinja's "undefined", as transformers' environment has it (jinja2's default
    /// Undefined): it prints as nothing, is false, empty and equal only to another undefined, but
    /// reading an attribute or item of it, calling it, computing with it or writing it as JSON
    /// is an error that says what was missing, in jinja2's words ('x' is undefined, 'dict object'
    /// has no attribute 'b').</summary>
    internal sealed class Undefined
    {
        // The message is written only where it is needed: templates test for missing keys
        // (message.tool_calls is defined) in every render.
        readonly string? hint;
        readonly object? target, key;
        readonly bool element;

        Undefined(string hint) => this.hint = hint;

        Undefined(object? target, object? key, bool element) => (this.target, this.key, this.element) = (target, key, element);

        /// <summary>A value that is undefined for no one reason the template could be told.</summary>
        public static readonly Undefined Instance = new("a value is undefined");

        // Jinja's own words for the undefined values it gives.
        public static readonly Undefined NoFirst = new("No first item, sequence was empty.");
        public static readonly Undefined NoLast = new("No last item, sequence was empty.");
        public static readonly Undefined NoPrevious = new("there is no previous item");
        public static readonly Undefined NoNext = new("there is no next item");
        public static readonly Undefined NoElse = new("the inline if-expression evaluated to false and no else section was defined.");

        public static Undefined Variable(string name) => new($"'{name}' is undefined");

        /// <summary>target.name, or target[name] of a mapping, that target lacks.</summary>
        public static Undefined Attribute(object? target, string name) => new(target, name, element: false);

        /// <summary>target[index] beyond a list's or string's end.</summary>
        public static Undefined Element(object? target, object? index) => new(target, index, element: true);

        /// <summary>A dict's method that would change it, which Jinja's immutable sandbox hides.</summary>
        public static Undefined Unsafe(string name) => new($"access to attribute '{name}' of 'dict' object is unsafe.");

        public static Undefined Parameter(string name) => new($"parameter '{name}' was not provided");

        public JinjaException Error() => new(hint ?? (element
            ? $"{Values.TypeName(target)} has no element {Values.Repr(key)}"
            : $"'{Values.TypeName(target)}' has no attribute {Values.Repr(key)}"));
    }

    /// <summary>What namespace() makes: attributes only (ns.items is the one set, not a method).</summary>
    internal sealed class Namespace : Dictionary<string, object?>;

    /// <summary>A dict, as Python has it: its keys any value Python hashes (strings, numbers, none,
    /// tuples: Seed-OSS's template looks a thinking budget up in {0: 0, 512: 128, ...}), 1, 1.0
    /// and true being one key, which keeps its first spelling; its items in the order their keys
    /// were first set.</summary>
    internal sealed class Mapping : IEnumerable<KeyValuePair<object?, object?>>
    {
        readonly Dictionary<Key, object?> items = [];

        public int Count => items.Count;

        /// <summary>Sets a key's value: a key equal to one there (1.0 to 1) keeps that one and its place.</summary>
        public object? this[object? key] { set => items[new(key)] = value; }

        /// <summary>A key's value; a key Python cannot hash (a list) is refused, as Python refuses it.</summary>
        public bool TryGetValue(object? key, out object? value) => items.TryGetValue(new(key), out value);

        public bool ContainsKey(object? key) => items.ContainsKey(new(key));

        public IEnumerable<object?> Keys => items.Keys.Select(k => k.Value);

        public IEnumerable<object?> Values => items.Values;

        public IEnumerator<KeyValuePair<object?, object?>> GetEnumerator() => items.Select(kv => KeyValuePair.Create(kv.Key.Value, kv.Value)).GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

        /// <summary>A key as Python compares and hashes it (none included, which no .NET dictionary takes as a key itself).</summary>
        readonly record struct Key(object? Value)
        {
            public bool Equals(Key other) => JinjaTemplate.Values.ItemEqual(Value, other.Value);
            public override int GetHashCode() => JinjaTemplate.Values.Hash(Value, v => $"{JinjaTemplate.Values.Describe(v)} cannot be a mapping's key (as Python: unhashable)");
        }
    }

    /// <summary>A tuple, ('a', 'b'): a list that prints as Python writes a tuple.</summary>
    internal sealed class TupleValue : List<object?>;

    /// <summary>A method read as a value, not called (spec.items): Jinja reads a dict's or a
    /// string's methods before its keys, so this is defined and true, and templates that test
    /// it or pass it on render as in jinja2; printing it (an address in jinja2) is refused.</summary>
    sealed record BoundMethod(object Target, string Name);

    /// <summary>A global function read as a value, not called: defined (templates test
    /// "strftime_now is defined" before calling it).</summary>
    sealed record GlobalFunction(string Name)
    {
        public override string ToString() => $"<function {Name}>";
    }

    /// <summary>A render's variables, with the work it has left and its clock (shared with the
    /// scopes a loop's filter makes).</summary>
    sealed class Scope(IEnumerable<KeyValuePair<string, object?>> variables, Budget budget, TimeProvider clock) : Dictionary<string, object?>(variables)
    {
        public Budget Budget => budget;
        public TimeProvider Clock => clock;

        /// <summary>The loops under way that bind names here, outermost first, each with the
        /// values the names it binds (its variables, loop, what its body sets) hid (undefined where
        /// there was none): a macro defined outside a loop sees those values, not the loop's
        /// (<see cref="Macro"/>).</summary>
        public List<Dictionary<string, object?>> Loops { get; } = [];
    }

    /// <summary>The work a render may still do (<see cref="MaxWork"/>).</summary>
    sealed class Budget
    {
        long left = MaxWork;
        int calls; // macro calls and recursive loops under way, one inside another

        /// <summary>A macro call (or a recursive loop's loop(...)) begins: refused past
        /// <see cref="MaxDepth"/> calls one inside another (a recursion that never ends: Jinja's
        /// RecursionError), or where the thread's stack runs short (each call nests its body's
        /// blocks and expressions).</summary>
        /// <param name="macro">The macro's name; null: a recursive loop's loop(...).</param>
        public void EnterCall(string? macro)
        {
            if (calls >= MaxDepth || !System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
                throw new JinjaException($"{(macro is null ? "the recursive loop" : $"the macro '{macro}'")} is called more than {MaxDepth} levels deep, one call inside another; does it call itself without end?");
            calls++;
        }

        public void LeaveCall() => calls--;

        public void Spend(long units)
        {
            left -= units;
            if (left < 0) throw new JinjaException($"the template does too much work (more than {MaxWork:N0} steps); does it loop over large ranges or build large strings over and over?");
        }
    }

    static JinjaException TooDeep() => new($"the template nests deeper than {MaxDepth} levels");
}
