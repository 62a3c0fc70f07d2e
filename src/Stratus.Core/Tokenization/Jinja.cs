// The subset of Jinja2 that Hugging Face chat templates use (ChatML, Llama 2/3.x, Mistral v1/v3/Nemo,
// Zephyr, Qwen2/2.5/3, Gemma 2/3, Phi-3/4, DeepSeek, Command-R, SmolLM, Hermes, Granite): text,
// {{ expressions }}, {% if/elif/else %}, {% for ... in ... if ... %} with loop.* and {% break %} /
// {% continue %} (the loopcontrols transformers enables) and loop.cycle(), {% set %} (also namespace
// attributes, unpacking "a, b = pair", and {% set x | filter %}...{% endset %} blocks), {% macro %}
// (default arguments, keyword arguments, recursion) and {% call %} with caller(),
// transformers' {% generation %}, comments, whitespace control ({%- -%}) and the trim_blocks /
// lstrip_blocks settings transformers renders with. Expressions cover literals (adjacent strings
// joined, Python's escapes, numbers such as 1_000 and 1e16, tuples), lists, dicts, attribute/index
// access (a dict's or string's methods before its keys, as Jinja reads spec.items), slices with
// steps, arithmetic (** too, and printf-style "%s" % x), ~ concatenation, comparisons by value, in,
// and/or/not, inline if, is-tests (defined, none, string, mapping, iterable, in, equalto, ne, gt,
// divisibleby, ...), the filters templates use (selectattr/rejectattr/select/reject, map by
// attribute or filter, sort/unique/dictsort/min/max, sum, round, format, batch, escape, tojson,
// join, trim, title, replace, indent, first/last/length/list/reverse, default, items, ...), string
// and dict methods, values printed as Python prints them, and the functions transformers gives
// templates besides Jinja's range(), namespace() and dict(): raise_exception() and strftime_now()
// (the local date and time, which Llama 3.1-3.3's templates write as "Today Date").
// Anything else fails at parse time with the construct named (a test or filter named by a string,
// as in select("x"), where it is applied), so a template is either rendered
// faithfully or refused.
// Simplifications: {% set %} inside a loop assigns in the enclosing scope (Jinja keeps it to
// the iteration); chat templates set such variables before reading them in the same iteration,
// and use namespace() when they mean to carry a value out, so they render the same. A macro sees
// its arguments and the variables where it was defined as they are when it is called, not its
// caller's loop variables, as in Jinja, but it does see such a loop-scoped {% set %}. |escape
// gives plain text, not Markup: escaping its result (or |safe's) again escapes it again.
// A template comes with a downloaded model, so a render is bounded: nesting, text and list
// sizes, range() and the work done are capped, each breach a JinjaException (see the limits below).
using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;

namespace Stratus.Tokenization;

public sealed class JinjaException(string message) : Exception(message);

public sealed class JinjaTemplate
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
        if (!parser.AtEnd) throw new JinjaException($"unexpected {{% {parser.PeekTagName()} %}}");
    }

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
        JsonValueKind.Object => value.EnumerateObject().Aggregate(new Dictionary<string, object?>(), (d, p) => { d[p.Name] = FromJson(p.Value); return d; }),
        JsonValueKind.Array => value.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => value.GetString(),
        // Boxed apart: "? whole : GetDouble()" would make every integer a double (2 writes as 2.0).
        JsonValueKind.Number => value.TryGetInt64(out var whole) ? (object)whole : value.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    /// <summary>Jinja's "undefined": prints as nothing, is falsy, and any access yields itself.</summary>
    internal sealed class Undefined
    {
        public static readonly Undefined Instance = new();
    }

    /// <summary>What namespace() makes: attributes only (ns.items is the one set, not a method).</summary>
    internal sealed class Namespace : Dictionary<string, object?>;

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

        /// <summary>The loops under way that bind their variables here, outermost first, each with
        /// the values its variables hid (undefined where there was none): a macro defined outside
        /// a loop sees those values, not the loop's (<see cref="Macro"/>).</summary>
        public List<Dictionary<string, object?>> Loops { get; } = [];
    }

    /// <summary>The work a render may still do (<see cref="MaxWork"/>).</summary>
    sealed class Budget
    {
        long left = MaxWork;
        int macros; // macro calls under way, one inside another

        /// <summary>A macro call begins: refused past <see cref="MaxDepth"/> calls one inside
        /// another (a recursion that never ends: Jinja's RecursionError), or where the thread's
        /// stack runs short (each call nests its body's blocks and expressions).</summary>
        public void EnterMacro(string name)
        {
            if (macros >= MaxDepth || !System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
                throw new JinjaException($"the macro '{name}' is called more than {MaxDepth} levels deep, one call inside another; does it call itself without end?");
            macros++;
        }

        public void LeaveMacro() => macros--;

        public void Spend(long units)
        {
            left -= units;
            if (left < 0) throw new JinjaException($"the template does too much work (more than {MaxWork:N0} steps); does it loop over large ranges or build large strings over and over?");
        }
    }

    static JinjaException TooDeep() => new($"the template nests deeper than {MaxDepth} levels");

    // ---- lexing: text and tags, with whitespace control applied ----

    enum PieceKind { Text, Output, Statement }

    sealed record Piece(PieceKind Kind, string Content);

    static class Lexer
    {
        public static List<Piece> Tokenize(string source)
        {
            var pieces = new List<Piece>();
            var i = 0;
            var trimNext = false; // a "-%}"/"-}}" or a block tag's trim_blocks asks to trim the next text
            var trimBlockNewline = false;
            while (i < source.Length)
            {
                var open = FindOpen(source, i);
                var text = source[i..(open < 0 ? source.Length : open)];
                // Whether the text begins a line, which lstrip_blocks needs where it holds no line break.
                var lineStart = i == 0 || source[i - 1] == '\n';
                if (trimNext) text = text.TrimStart();
                else if (trimBlockNewline && text.StartsWith('\n')) (text, lineStart) = (text[1..], true);
                else if (trimBlockNewline && text.StartsWith("\r\n")) (text, lineStart) = (text[2..], true);
                trimNext = trimBlockNewline = false;
                if (open < 0)
                {
                    if (text.Length > 0) pieces.Add(new Piece(PieceKind.Text, text));
                    break;
                }
                var kind = source[open + 1];
                var close = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
                var end = kind == '#' ? source.IndexOf(close, open + 2, StringComparison.Ordinal) : FindClose(source, open + 2, close);
                if (end < 0) throw new JinjaException($"unclosed tag at offset {open}");
                var inner = source[(open + 2)..end];
                var trimBefore = inner.StartsWith('-');
                // "{{-}}": one dash trims before, and is not also the one that trims after.
                var trimAfter = inner.Length > (trimBefore ? 1 : 0) && inner.EndsWith('-');
                if (trimBefore) text = text.TrimEnd();
                else if (kind != '{') text = LstripBlock(text, lineStart);
                if (text.Length > 0) pieces.Add(new Piece(PieceKind.Text, text));
                inner = inner[(trimBefore ? 1 : 0)..(inner.Length - (trimAfter ? 1 : 0))];
                if (kind == '{') pieces.Add(new Piece(PieceKind.Output, inner));
                else if (kind == '%') pieces.Add(new Piece(PieceKind.Statement, inner.Trim()));
                trimNext = trimAfter;
                trimBlockNewline = kind != '{';
                i = end + 2;
            }
            return pieces;
        }

        /// <summary>Where a tag closes: the first <paramref name="close"/> outside its string
        /// literals, as Jinja's lexer reads them ({{ "}}" }} writes "}}").</summary>
        static int FindClose(string s, int from, string close)
        {
            char? quote = null;
            for (var i = from; i < s.Length; i++)
            {
                if (quote is { } q)
                {
                    if (s[i] == '\\') i++;
                    else if (s[i] == q) quote = null;
                }
                else if (s[i] is '\'' or '"') quote = s[i];
                else if (string.CompareOrdinal(s, i, close, 0, close.Length) == 0) return i;
            }
            return -1;
        }

        static int FindOpen(string s, int from)
        {
            for (var i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
            {
                if (s[i + 1] is '{' or '%' or '#') return i;
            }
            return -1;
        }

        /// <summary>lstrip_blocks: spaces and tabs between a line start and a block tag go; those
        /// after other output on the line stay ("{{ x }} {% endfor %}" keeps its space).</summary>
        static string LstripBlock(string text, bool lineStart)
        {
            var j = text.Length;
            while (j > 0 && text[j - 1] is ' ' or '\t') j--;
            return (j == 0 && lineStart) || (j > 0 && text[j - 1] == '\n') ? text[..j] : text;
        }
    }

    // ---- statements ----

    abstract class Node
    {
        public abstract void Render(Scope scope, StringBuilder output);

        protected static void Write(StringBuilder output, string text)
        {
            Values.CheckLength((long)output.Length + text.Length);
            output.Append(text);
        }
    }

    sealed class TextNode(string text) : Node
    {
        public override void Render(Scope scope, StringBuilder output) => Write(output, text);
    }

    sealed class OutputNode(Expr expr) : Node
    {
        public override void Render(Scope scope, StringBuilder output) => Write(output, Values.ToText(expr.Eval(scope)));
    }

    sealed class IfNode(List<(Expr Condition, List<Node> Body)> branches, List<Node>? otherwise) : Node
    {
        public override void Render(Scope scope, StringBuilder output)
        {
            foreach (var (condition, branch) in branches)
            {
                if (!Values.Truthy(condition.Eval(scope))) continue;
                foreach (var node in branch) node.Render(scope, output);
                return;
            }
            if (otherwise is not null) foreach (var node in otherwise) node.Render(scope, output);
        }
    }

    sealed class ForNode(List<string> targets, Expr iterable, Expr? filter, List<Node> body, List<Node>? otherwise) : Node
    {
        public override void Render(Scope scope, StringBuilder output)
        {
            var items = Values.Iterate(iterable.Eval(scope)).ToList();
            if (filter is not null)
            {
                items = items.Where(item =>
                {
                    var probe = new Scope(scope, scope.Budget, scope.Clock);
                    Bind(probe, item);
                    return Values.Truthy(filter.Eval(probe));
                }).ToList();
            }
            if (items.Count == 0)
            {
                if (otherwise is not null) foreach (var node in otherwise) node.Render(scope, output);
                return;
            }
            // Jinja scopes loop variables to the loop, but assignments to namespaces persist.
            var saved = targets.Append("loop").Distinct().ToDictionary(t => t, t => scope.TryGetValue(t, out var v) ? v : Undefined.Instance);
            scope.Loops.Add(saved);
            try
            {
                for (var i = 0; i < items.Count; i++)
                {
                    scope.Budget.Spend(Iteration);
                    Bind(scope, items[i]);
                    scope["loop"] = new LoopInfo
                    {
                        ["index0"] = (long)i, ["index"] = (long)i + 1, ["first"] = i == 0, ["last"] = i == items.Count - 1,
                        ["length"] = (long)items.Count, ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                        ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance, ["nextitem"] = i < items.Count - 1 ? items[i + 1] : Undefined.Instance,
                    };
                    try
                    {
                        foreach (var node in body) node.Render(scope, output);
                    }
                    catch (LoopControl control)
                    {
                        if (control.Break) break;
                    }
                }
            }
            finally { scope.Loops.RemoveAt(scope.Loops.Count - 1); }
            Restore(scope, saved);
        }

        /// <summary>Puts back the values a loop's variables hid (undefined: none).</summary>
        public static void Restore(Scope scope, Dictionary<string, object?> saved)
        {
            foreach (var (key, value) in saved)
            {
                if (value is Undefined) scope.Remove(key);
                else scope[key] = value;
            }
        }

        void Bind(Scope scope, object? item)
        {
            if (targets.Count == 1) { scope[targets[0]] = item; return; }
            var parts = SetNode.Unpack(item, targets.Count);
            for (var t = 0; t < targets.Count; t++) scope[targets[t]] = parts[t];
        }
    }

    /// <summary>A loop's "loop" variable: its attributes, and loop.cycle(...), a method.</summary>
    internal sealed class LoopInfo : Dictionary<string, object?>;

    /// <summary>{% set %}: a value, or with no "=" the text its block renders (through filters
    /// where the tag names them: {% set x | trim %}...{% endset %}), bound to a name, to names
    /// unpacked from it ({% set a, b = pair %}), or to a namespace's attribute.</summary>
    sealed class SetNode(List<string> names, string? attribute, Expr? value, List<Node>? block, List<FilterCall> filters) : Node
    {
        public override void Render(Scope scope, StringBuilder output)
        {
            object? v;
            if (value is not null) v = value.Eval(scope);
            else
            {
                var text = new StringBuilder();
                foreach (var node in block!) node.Render(scope, text);
                v = text.ToString();
                foreach (var filter in filters) v = filter.Apply(v, scope);
            }
            if (attribute is not null)
            {
                if (scope.TryGetValue(names[0], out var target) && target is Namespace ns) ns[attribute] = v;
                else throw new JinjaException($"cannot set {names[0]}.{attribute}: {names[0]} is not a namespace");
            }
            else if (names.Count == 1) scope[names[0]] = v;
            else
            {
                var parts = Unpack(v, names.Count);
                for (var i = 0; i < names.Count; i++) scope[names[i]] = parts[i];
            }
        }

        /// <summary>A value's items for as many names, as Python unpacks them (a mapping gives its keys, a string its characters).</summary>
        public static List<object?> Unpack(object? value, int count)
        {
            var parts = Values.Iterate(value).Take(count + 1).ToList();
            if (parts.Count > count) throw new JinjaException($"too many values to unpack (expected {count})");
            if (parts.Count < count) throw new JinjaException($"not enough values to unpack (expected {count}, got {parts.Count})");
            return parts;
        }
    }

    /// <summary>{% break %} / {% continue %} (Jinja's loopcontrols, which transformers enables):
    /// leaves the iteration, unwinding the blocks inside it, to the loop that catches it.</summary>
    sealed class LoopControlNode(bool isBreak) : Node
    {
        public override void Render(Scope scope, StringBuilder output) => throw new LoopControl(isBreak);
    }

    sealed class LoopControl(bool isBreak) : Exception
    {
        public bool Break => isBreak;
    }

    sealed class GenerationNode(List<Node> body) : Node
    {
        public override void Render(Scope scope, StringBuilder output)
        {
            foreach (var node in body) node.Render(scope, output);
        }
    }

    /// <summary>{% macro name(a, b=default) %}: the macro, bound to its name where the tag is
    /// reached, as Jinja defines it there.</summary>
    sealed class MacroNode(string name, List<(string Name, Expr? Default)> parameters, List<Node> body) : Node
    {
        public override void Render(Scope scope, StringBuilder output) => scope[name] = new Macro(name, parameters, body, scope);
    }

    /// <summary>{% call name(args) %}body{% endcall %}: the macro called with the body as its
    /// caller(), which renders where the call is.</summary>
    sealed class CallNode(string name, List<Expr> arguments, List<Node> body) : Node
    {
        public override void Render(Scope scope, StringBuilder output) =>
            Write(output, MacroCall.Invoke(scope, name, arguments, new Macro("caller", [], body, scope)));
    }

    /// <summary>A defined macro: called, its body renders into the text it returns, in a scope of
    /// its own over the one it was defined in (a {% set %} in it stays there), its parameters
    /// bound from the arguments by position then by keyword, else from their defaults (evaluated
    /// at the call, after the parameters before them), else undefined, as Jinja binds them.</summary>
    sealed class Macro(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, Scope definedIn)
    {
        /// <summary>The loops under way where the macro was defined: it sees their variables, and
        /// not those of loops begun since (a top-level macro called in a loop does not see the
        /// loop's variables, as in Jinja, where a macro sees only its arguments and the variables
        /// of where it was defined).</summary>
        readonly int loops = definedIn.Loops.Count;

        public override string ToString() => $"<Macro '{name}'>";

        public string Call(List<object?> arguments, Macro? caller)
        {
            var budget = definedIn.Budget;
            budget.Spend(Iteration + definedIn.Count);
            var given = new Dictionary<string, object?>();
            var positional = 0;
            foreach (var argument in arguments)
            {
                if (argument is KeyValuePair<string, object?> keyword)
                {
                    if (parameters.All(p => p.Name != keyword.Key)) throw new JinjaException($"macro '{name}' takes no keyword argument '{keyword.Key}'");
                    if (!given.TryAdd(keyword.Key, keyword.Value)) throw new JinjaException($"macro '{name}' got multiple values for argument '{keyword.Key}'");
                }
                else if (positional < parameters.Count) given[parameters[positional++].Name] = argument;
                else throw new JinjaException($"macro '{name}' takes not more than {parameters.Count} argument(s)");
            }
            budget.EnterMacro(name);
            try
            {
                var scope = new Scope(definedIn, budget, definedIn.Clock);
                // Innermost first, so a name several loops bound gets back what the outermost hid.
                for (var i = definedIn.Loops.Count - 1; i >= loops; i--) ForNode.Restore(scope, definedIn.Loops[i]);
                foreach (var (parameter, fallback) in parameters)
                    scope[parameter] = given.TryGetValue(parameter, out var value) ? value : fallback is null ? Undefined.Instance : fallback.Eval(scope);
                if (caller is not null) scope["caller"] = caller;
                var output = new StringBuilder();
                foreach (var node in body) node.Render(scope, output);
                return output.ToString();
            }
            finally { budget.LeaveMacro(); }
        }
    }

    // ---- parsing ----

    sealed class Parser(List<Piece> pieces)
    {
        int position;
        int depth; // blocks open around the one being parsed
        int macroBodies; // macro bodies open around the one being parsed
        int loops; // {% for %} bodies open around the one being parsed, in the same macro body

        /// <summary>The names a call may name besides the functions: the template's macros, known
        /// before any is parsed (a macro may call one defined after it), and caller.</summary>
        readonly HashSet<string> macros = MacroNames(pieces);

        static HashSet<string> MacroNames(List<Piece> pieces)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var piece in pieces)
            {
                // White space of any kind may follow "macro" ("{% macro\n name(...) %}").
                var words = piece.Content.Split(TagSeparators, 2, StringSplitOptions.RemoveEmptyEntries);
                if (piece.Kind == PieceKind.Statement && words is ["macro", var header]) names.Add(header.Split('(', 2)[0].Trim());
            }
            if (names.Count > 0) names.Add("caller");
            return names;
        }

        Expr Expression(string source) => ExpressionParser.Parse(source, macros, macroBodies > 0);

        public bool AtEnd => position >= pieces.Count;

        /// <summary>A statement's first word, which a '(' also ends ({% call(x) m() %}, {% if(x) %}).</summary>
        public string PeekTagName() => pieces[position].Content.Split([.. TagSeparators, '('], 2)[0];

        static readonly char[] TagSeparators = [' ', '\n', '\t', '\r'];

        /// <summary>Nodes up to (not including) a statement whose first word is in stopAt.</summary>
        public List<Node> ParseBlock(params string[] stopAt)
        {
            if (++depth > MaxDepth) throw TooDeep();
            var nodes = new List<Node>();
            while (position < pieces.Count)
            {
                var piece = pieces[position];
                if (piece.Kind == PieceKind.Text) { nodes.Add(new TextNode(piece.Content)); position++; continue; }
                if (piece.Kind == PieceKind.Output) { nodes.Add(new OutputNode(Expression(piece.Content))); position++; continue; }
                var word = PeekTagName();
                if (stopAt.Contains(word))
                {
                    depth--;
                    return nodes;
                }
                position++;
                nodes.Add(word switch
                {
                    "if" => ParseIf(piece.Content[2..]),
                    "for" => ParseFor(piece.Content[3..]),
                    "set" => ParseSet(piece.Content[3..]),
                    "macro" => ParseMacro(piece.Content[5..]),
                    "call" => ParseCall(piece.Content[4..]),
                    "generation" => ParseGeneration(piece.Content),
                    "break" or "continue" => ParseLoopControl(piece.Content),
                    _ => throw new JinjaException($"the tag {{% {word} %}} is not supported"),
                });
            }
            if (stopAt.Length > 0) throw new JinjaException($"missing {{% {stopAt[^1]} %}}");
            depth--;
            return nodes;
        }

        Node ParseIf(string condition)
        {
            var branches = new List<(Expr, List<Node>)> { (Expression(condition), ParseBlock("elif", "else", "endif")) };
            List<Node>? otherwise = null;
            while (true)
            {
                var tag = pieces[position++].Content;
                if (tag.StartsWith("elif")) branches.Add((Expression(tag[4..]), ParseBlock("elif", "else", "endif")));
                else if (tag == "else") otherwise = ParseBlock("endif");
                else return new IfNode(branches, otherwise);
            }
        }

        Node ParseLoopControl(string tag)
        {
            if (tag is not ("break" or "continue")) throw new JinjaException($"{{% {tag} %}} takes nothing after its name");
            if (loops == 0) throw new JinjaException($"{{% {tag} %}} is outside a {{% for %}} loop");
            return new LoopControlNode(tag == "break");
        }

        Node ParseFor(string header)
        {
            var inAt = FindKeyword(header, "in");
            var targets = ExpressionParser.ParseTargets(header[..inAt], macros);
            var rest = header[(inAt + 2)..];
            var ifAt = FindKeyword(rest, "if");
            var iterable = Expression(ifAt < 0 ? rest : rest[..ifAt]);
            var filter = ifAt < 0 ? null : Expression(rest[(ifAt + 2)..]);
            loops++;
            var body = ParseBlock("else", "endfor");
            loops--;
            List<Node>? otherwise = null;
            if (pieces[position++].Content == "else")
            {
                otherwise = ParseBlock("endfor");
                position++;
            }
            return new ForNode(targets, iterable, filter, body, otherwise);
        }

        Node ParseSet(string statement)
        {
            var (names, attribute, value, filters) = ExpressionParser.ParseSet(statement, macros, macroBodies > 0);
            if (value is not null) return new SetNode(names, attribute, value, null, []);
            var block = ParseBlock("endset");
            position++;
            return new SetNode(names, attribute, null, block, filters);
        }

        Node ParseMacro(string header)
        {
            var (name, parameters) = ExpressionParser.ParseSignature(header, macros);
            // A macro is a function of its own: a loop around its definition is not one its body may break.
            var outerLoops = loops;
            loops = 0;
            macroBodies++;
            var body = ParseBlock("endmacro");
            macroBodies--;
            loops = outerLoops;
            position++;
            return new MacroNode(name, parameters, body);
        }

        Node ParseCall(string header)
        {
            if (header.TrimStart().StartsWith('(')) throw new JinjaException("{% call(...) %} with arguments for caller() is not supported");
            var call = Expression(header);
            if (call is not MacroCall { Caller: false } macroCall) throw new JinjaException($"{{% call {header.Trim()} %}} must call a macro the template defines");
            // Its body is caller(), a function of its own, as a macro's is.
            var outerLoops = loops;
            loops = 0;
            var body = ParseBlock("endcall");
            loops = outerLoops;
            position++;
            return new CallNode(macroCall.Name, macroCall.Arguments, body);
        }

        /// <summary>{% generation %}: transformers' tag around an assistant's reply, which marks
        /// its tokens for return_assistant_tokens_mask; rendered, it is its body.</summary>
        Node ParseGeneration(string tag)
        {
            if (tag != "generation") throw new JinjaException($"{{% {tag} %}} takes nothing after its name");
            var body = ParseBlock("endgeneration");
            position++;
            return new GenerationNode(body);
        }

        /// <summary>Position of a keyword surrounded by spaces, outside string literals.</summary>
        static int FindKeyword(string s, string keyword)
        {
            char? quote = null;
            for (var i = 0; i < s.Length; i++)
            {
                if (quote is { } q) { if (s[i] == q) quote = null; continue; }
                if (s[i] is '\'' or '"') { quote = s[i]; continue; }
                if (i > 0 && s[i - 1] == ' ' && string.CompareOrdinal(s, i, keyword, 0, keyword.Length) == 0 && i + keyword.Length < s.Length && s[i + keyword.Length] == ' ')
                    return i;
            }
            return keyword == "in" ? throw new JinjaException($"{{% for {s} %}} has no 'in'") : -1;
        }
    }

    // ---- expressions ----

    /// <summary>An expression over the parts it evaluates: evaluation recurses once per level, so
    /// one nested deeper than <see cref="MaxDepth"/> is refused here ("1 + 1 + ... + 1" nests as
    /// deep as it is long).</summary>
    abstract class Expr
    {
        protected Expr(IEnumerable<Expr> parts)
        {
            Depth = 1 + parts.Select(p => p.Depth).DefaultIfEmpty().Max();
            if (Depth > MaxDepth) throw TooDeep();
        }

        int Depth { get; }

        /// <summary>The value, its evaluation and size spent from the render's budget.</summary>
        public object? Eval(Scope scope)
        {
            var value = Evaluate(scope);
            scope.Budget.Spend(Step + Values.Size(value));
            return value;
        }

        protected abstract object? Evaluate(Scope scope);
    }

    sealed class Literal(object? value) : Expr([])
    {
        public object? Value => value;
        protected override object? Evaluate(Scope scope) => value;
    }

    sealed class Name(string name) : Expr([])
    {
        public string Identifier => name;
        protected override object? Evaluate(Scope scope) =>
            scope.TryGetValue(name, out var v) ? v : Values.Functions.Contains(name) ? new GlobalFunction(name) : Undefined.Instance;
    }

    sealed class ListExpr(List<Expr> items, bool tuple = false) : Expr(items)
    {
        protected override object? Evaluate(Scope scope)
        {
            var values = tuple ? new TupleValue() : new List<object?>();
            foreach (var item in items) values.Add(item.Eval(scope));
            return values;
        }
    }

    sealed class DictExpr(List<(Expr Key, Expr Value)> items) : Expr(items.SelectMany(i => new[] { i.Key, i.Value }))
    {
        protected override object? Evaluate(Scope scope)
        {
            // A repeated key takes the later value, as in Python.
            var dict = new Dictionary<string, object?>();
            foreach (var (key, value) in items) dict[Values.ToText(key.Eval(scope))] = value.Eval(scope);
            return dict;
        }
    }

    sealed class Lambda(Func<Scope, object?> eval, params IEnumerable<Expr> parts) : Expr(parts)
    {
        protected override object? Evaluate(Scope scope) => eval(scope);
    }

    /// <summary>name(arguments) where name is one of the template's macros (or caller): the text
    /// its body renders.</summary>
    sealed class MacroCall(string name, List<Expr> arguments) : Expr(arguments)
    {
        public string Name => name;
        public List<Expr> Arguments => arguments;
        public bool Caller => name == "caller";

        protected override object? Evaluate(Scope scope) => Invoke(scope, name, arguments, caller: null);

        public static string Invoke(Scope scope, string name, List<Expr> arguments, Macro? caller)
        {
            // As Jinja: a macro exists once its tag has been reached.
            if (!scope.TryGetValue(name, out var value) || value is Undefined) throw new JinjaException($"'{name}' is undefined where it is called");
            if (value is not Macro macro) throw new JinjaException($"'{name}' is not a macro, so it cannot be called");
            return macro.Call(arguments.Select(a => a.Eval(scope)).ToList(), caller);
        }
    }

    /// <summary>One filter with its arguments (keywords as name-value pairs), applied to a value.</summary>
    sealed record FilterCall(Func<object?, List<object?>, Budget, object?> Filter, List<Expr> Arguments)
    {
        public object? Apply(object? value, Scope scope) => Filter(value, Arguments.Select(a => a.Eval(scope)).ToList(), scope.Budget);
    }

    sealed class ExpressionParser
    {
        readonly List<string> tokens;
        int position;
        int depth; // parses under way that recurse per nesting level: "((x))", "not not x", "- -x"

        /// <summary>The names a call may name besides the functions (<see cref="Parser"/>'s macros).</summary>
        readonly IReadOnlySet<string> macros;
        /// <summary>Whether the expression is in a macro's body, where Jinja's varargs and kwargs are.</summary>
        readonly bool inMacro;

        ExpressionParser(string source, IReadOnlySet<string> macros, bool inMacro) => (tokens, this.macros, this.inMacro) = (Split(source), macros, inMacro);

        public static Expr Parse(string source, IReadOnlySet<string> macros, bool inMacro)
        {
            var parser = new ExpressionParser(source, macros, inMacro);
            var expr = parser.Conditional();
            parser.End(source);
            return expr;
        }

        void End(string source)
        {
            if (position < tokens.Count) throw new JinjaException($"unexpected '{tokens[position]}' in expression '{source.Trim()}'");
        }

        /// <summary>A macro's name and parameters, each with its default where it has one:
        /// "name(a, b=default)".</summary>
        public static (string Name, List<(string Name, Expr? Default)> Parameters) ParseSignature(string header, IReadOnlySet<string> macros)
        {
            var parser = new ExpressionParser(header, macros, inMacro: false);
            var name = parser.Next();
            if (!IsIdentifier(name)) throw new JinjaException($"{{% macro {header.Trim()} %}} needs a name");
            var parameters = new List<(string, Expr?)>();
            parser.Expect("(");
            while (!parser.Accept(")"))
            {
                var parameter = parser.Next();
                if (!IsIdentifier(parameter)) throw new JinjaException($"'{parameter}' is not a parameter name in {{% macro {header.Trim()} %}}");
                parameters.Add((parameter, parser.Accept("=") ? parser.Conditional() : null));
                if (!parser.Accept(",") && parser.Peek != ")") throw new JinjaException($"expected ',' or ')' but found '{parser.Peek ?? "end"}' in {{% macro {header.Trim()} %}}");
            }
            parser.End(header);
            return (name, parameters);
        }

        string? Peek => position < tokens.Count ? tokens[position] : null;

        bool Accept(string token)
        {
            if (Peek != token) return false;
            position++;
            return true;
        }

        void Expect(string token)
        {
            if (!Accept(token)) throw new JinjaException($"expected '{token}' but found '{Peek ?? "end of expression"}'");
        }

        string Next() => position < tokens.Count ? tokens[position++] : throw new JinjaException("expression ends too early");

        void Enter()
        {
            if (++depth > MaxDepth) throw TooDeep();
        }

        Expr Conditional()
        {
            Enter();
            var value = Or();
            if (Accept("if"))
            {
                var (then, condition) = (value, Or());
                var otherwise = Accept("else") ? Conditional() : new Literal(Undefined.Instance);
                value = new Lambda(s => Values.Truthy(condition.Eval(s)) ? then.Eval(s) : otherwise.Eval(s), then, condition, otherwise);
            }
            depth--;
            return value;
        }

        Expr Or()
        {
            var left = And();
            while (Accept("or"))
            {
                var (l, r) = (left, And());
                left = new Lambda(s => l.Eval(s) is var a && Values.Truthy(a) ? a : r.Eval(s), l, r);
            }
            return left;
        }

        Expr And()
        {
            var left = Not();
            while (Accept("and"))
            {
                var (l, r) = (left, Not());
                left = new Lambda(s => l.Eval(s) is var a && !Values.Truthy(a) ? a : r.Eval(s), l, r);
            }
            return left;
        }

        Expr Not()
        {
            if (!Accept("not")) return Comparison();
            Enter();
            var operand = Not();
            depth--;
            return new Lambda(s => !Values.Truthy(operand.Eval(s)), operand);
        }

        Expr Comparison()
        {
            var left = Concat();
            while (true)
            {
                var l = left;
                if (Peek is "==" or "!=" or "<" or ">" or "<=" or ">=")
                {
                    var op = tokens[position++];
                    var r = Concat();
                    left = new Lambda(s => Values.Compare(op, l.Eval(s), r.Eval(s)), l, r);
                }
                else if (Peek == "in" || (Peek == "not" && position + 1 < tokens.Count && tokens[position + 1] == "in"))
                {
                    var negate = Accept("not");
                    Expect("in");
                    var r = Concat();
                    left = new Lambda(s => Values.Contains(r.Eval(s), l.Eval(s), s.Budget) != negate, l, r);
                }
                else if (Accept("is"))
                {
                    var negate = Accept("not");
                    var test = Next();
                    Expr? argument = null;
                    if (Accept("(")) { argument = Conditional(); Expect(")"); }
                    // As Jinja: without parentheses a test takes one argument, a primary and its
                    // postfixes ("is divisibleby 3", "is in ['a', 'b']"), unless a keyword follows.
                    else if (Peek is { } next && (next[0] is '\'' or '"' or '(' or '[' or '{' || IsIdentifier(next) || char.IsDigit(next[0])) && next is not ("and" or "or" or "else"))
                        argument = Postfix();
                    var check = Values.Test(test);
                    var arg = argument;
                    left = new Lambda(s => check(l.Eval(s), arg?.Eval(s), s.Budget) != negate, arg is null ? [l] : [l, arg]);
                }
                else return left;
            }
        }

        Expr Concat()
        {
            var left = Additive();
            while (Accept("~"))
            {
                var (l, r) = (left, Additive());
                left = new Lambda(s => Values.Concatenate(Values.ToText(l.Eval(s)), Values.ToText(r.Eval(s))), l, r);
            }
            return left;
        }

        Expr Additive()
        {
            var left = Multiplicative();
            while (Peek is "+" or "-")
            {
                var op = tokens[position++];
                var (l, r) = (left, Multiplicative());
                left = new Lambda(s => Values.Arithmetic(op, l.Eval(s), r.Eval(s)), l, r);
            }
            return left;
        }

        Expr Multiplicative()
        {
            var left = Power();
            while (Peek is "*" or "/" or "%" or "//")
            {
                var op = tokens[position++];
                var (l, r) = (left, Power());
                left = new Lambda(s => Values.Arithmetic(op, l.Eval(s), r.Eval(s)), l, r);
            }
            return left;
        }

        /// <summary>As Jinja parses "**": tighter than "*", looser than a minus ("-2 ** 2" is 4),
        /// and from the left ("2 ** 3 ** 2" is 64, where Python gives 512).</summary>
        Expr Power()
        {
            var left = Unary();
            while (Accept("**"))
            {
                var (l, r) = (left, Unary());
                left = new Lambda(s => Values.Arithmetic("**", l.Eval(s), r.Eval(s)), l, r);
            }
            return left;
        }

        /// <summary>As Jinja: a minus binds tighter than the filters after it ("-3 | abs" is 3).</summary>
        Expr Unary(bool withFilters = true)
        {
            Expr value;
            if (Accept("-"))
            {
                Enter();
                var operand = Unary(withFilters: false);
                depth--;
                value = new Lambda(s => Values.Arithmetic("-", 0L, operand.Eval(s)), operand);
            }
            else value = Postfix();
            return withFilters ? Filtered(value) : value;
        }

        Expr Filtered(Expr value)
        {
            foreach (var filter in Filters())
            {
                var v = value;
                value = new Lambda(s => filter.Apply(v.Eval(s), s), [v, .. filter.Arguments]);
            }
            return value;
        }

        /// <summary>"| name(arguments) | ...", as many as follow.</summary>
        List<FilterCall> Filters()
        {
            var filters = new List<FilterCall>();
            while (Accept("|"))
            {
                var name = Next();
                filters.Add(new FilterCall(Values.Filter(name), Accept("(") ? Arguments(")") : []));
            }
            return filters;
        }

        /// <summary>What {% set %} assigns to: a name, names to unpack ("a, b" or "(a, b)"), or a
        /// namespace's attribute; then its value after "=", or, with none, the filters its block's
        /// text goes through.</summary>
        public static (List<string> Names, string? Attribute, Expr? Value, List<FilterCall> Filters) ParseSet(string statement, IReadOnlySet<string> macros, bool inMacro)
        {
            var parser = new ExpressionParser(statement, macros, inMacro);
            var names = parser.Targets("set");
            string? attribute = null;
            if (names.Count == 1 && parser.Accept("."))
            {
                attribute = parser.Next();
                if (!IsIdentifier(attribute)) throw new JinjaException($"'{attribute}' is not an attribute name in {{% set {statement.Trim()} %}}");
            }
            if (parser.Accept("="))
            {
                var value = parser.Conditional();
                // "a, b = 1, 2": a tuple without its parentheses, as Jinja reads a set's value.
                if (parser.Peek == ",")
                {
                    var items = new List<Expr> { value };
                    while (parser.Accept(",") && parser.Peek is not null) items.Add(parser.Conditional());
                    value = new ListExpr(items, tuple: true);
                }
                parser.End(statement);
                return (names, attribute, value, []);
            }
            var filters = parser.Filters();
            parser.End(statement);
            return (names, attribute, null, filters);
        }

        /// <summary>The names before a {% for %}'s "in".</summary>
        public static List<string> ParseTargets(string source, IReadOnlySet<string> macros)
        {
            var parser = new ExpressionParser(source, macros, inMacro: false);
            var names = parser.Targets("for");
            parser.End(source);
            return names;
        }

        /// <summary>"a", "a, b", "(a, b)" (a trailing comma allowed), as Jinja reads assignment targets.</summary>
        List<string> Targets(string tag)
        {
            var parenthesized = Accept("(");
            var names = new List<string>();
            do
            {
                if (Peek is not { } name || !IsIdentifier(name) || name is "in") break;
                names.Add(name);
                position++;
            }
            while (Accept(","));
            if (parenthesized) Expect(")");
            if (names.Count == 0) throw new JinjaException($"{{% {tag} %}} needs a name to assign to");
            if (names.Contains("loop")) throw new JinjaException($"{{% {tag} %}} cannot assign to the special variable 'loop'");
            return names;
        }

        Expr Postfix()
        {
            var value = Primary();
            while (true)
            {
                var target = value;
                if (Accept("."))
                {
                    var member = Next();
                    if (Accept("("))
                    {
                        var arguments = Arguments(")");
                        value = new Lambda(s => Values.CallMethod(target.Eval(s), member, arguments.Select(a => a.Eval(s)).ToList(), s.Budget), [target, .. arguments]);
                    }
                    else value = new Lambda(s => Values.Member(target.Eval(s), member), target);
                }
                else if (Accept("["))
                {
                    Expr? start = null, stop = null, step = null;
                    if (Peek != ":") start = Conditional();
                    if (Accept(":"))
                    {
                        if (Peek is not ("]" or ":")) stop = Conditional();
                        if (Accept(":") && Peek != "]") step = Conditional();
                        Expect("]");
                        var (a, b, c) = (start, stop, step);
                        value = new Lambda(s => Values.Slice(target.Eval(s), a?.Eval(s), b?.Eval(s), c?.Eval(s)), [target, .. new[] { a, b, c }.OfType<Expr>()]);
                    }
                    else
                    {
                        Expect("]");
                        var index = start!;
                        value = new Lambda(s => Values.Index(target.Eval(s), index.Eval(s)), target, index);
                    }
                }
                else if (Peek == "(" && value is Name function)
                {
                    position++;
                    var arguments = Arguments(")");
                    value = macros.Contains(function.Identifier) ? new MacroCall(function.Identifier, arguments) : Values.Function(function.Identifier, arguments);
                }
                else return value;
            }
        }

        List<Expr> Arguments(string close)
        {
            var list = new List<Expr>();
            while (!Accept(close))
            {
                // Keyword arguments (namespace(found=false)) become (name, value) pairs.
                if (position + 1 < tokens.Count && tokens[position + 1] == "=" && IsIdentifier(tokens[position]))
                {
                    var key = tokens[position];
                    position += 2;
                    var value = Conditional();
                    list.Add(new Lambda(s => new KeyValuePair<string, object?>(key, value.Eval(s)), value));
                }
                else list.Add(Conditional());
                if (!Accept(",") && Peek != close) throw new JinjaException($"expected ',' or '{close}' but found '{Peek ?? "end"}'");
            }
            return list;
        }

        Expr Primary()
        {
            var token = Peek ?? throw new JinjaException("expression ends too early");
            position++;
            if (token == "(")
            {
                // A comma makes a tuple: ('user', 'system'), (x,); () is the empty one.
                if (Accept(")")) return new ListExpr([], tuple: true);
                var inner = Conditional();
                if (Accept(")")) return inner;
                Expect(",");
                return new ListExpr([inner, .. Arguments(")")], tuple: true);
            }
            if (token == "[") return new ListExpr(Arguments("]"));
            if (token == "{")
            {
                var items = new List<(Expr, Expr)>();
                while (!Accept("}"))
                {
                    var key = Conditional();
                    Expect(":");
                    items.Add((key, Conditional()));
                    Accept(",");
                }
                return new DictExpr(items);
            }
            if (token[0] is '\'' or '"')
            {
                // Adjacent string literals are one string, as in Python ('it''s' is "its").
                var text = new StringBuilder(token, 1, token.Length - 1, token.Length);
                while (Peek is { } next && next[0] is '\'' or '"')
                {
                    text.Append(next, 1, next.Length - 1);
                    position++;
                }
                return new Literal(text.ToString());
            }
            if (char.IsDigit(token[0]))
            {
                // The lexer keeps letters and digits together ("1abc"), and any script's digits count.
                var digits = token.Replace("_", "");
                if (NumberEnd(token, 0) == token.Length)
                {
                    if (digits.AsSpan().ContainsAny('.', 'e', 'E') && double.TryParse(digits, NumberStyles.Float, CultureInfo.InvariantCulture, out var real)) return new Literal(real);
                    if (long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var whole)) return new Literal(whole);
                }
                throw new JinjaException($"'{token}' is not a number this template engine reads");
            }
            return token switch
            {
                "true" or "True" => new Literal(true),
                "false" or "False" => new Literal(false),
                "none" or "None" => new Literal(null),
                "varargs" or "kwargs" when inMacro => throw new JinjaException($"a macro's {token} (arguments beyond its parameters) are not supported"),
                _ when IsIdentifier(token) => new Name(token),
                _ => throw new JinjaException($"unexpected '{token}' in expression"),
            };
        }

        static bool IsIdentifier(string token) => token.Length > 0 && (char.IsLetter(token[0]) || token[0] == '_');

        /// <summary>Tokens of an expression; a string literal becomes its quote char followed by
        /// its unescaped content.</summary>
        static List<string> Split(string source)
        {
            var tokens = new List<string>();
            var i = 0;
            while (i < source.Length)
            {
                var c = source[i];
                if (char.IsWhiteSpace(c)) { i++; continue; }
                if (c is '\'' or '"')
                {
                    var text = new StringBuilder().Append(c);
                    i++;
                    while (i < source.Length && source[i] != c)
                    {
                        if (source[i] == '\\' && i + 1 < source.Length) i = Unescape(source, i, text);
                        else text.Append(source[i++]);
                    }
                    if (i >= source.Length) throw new JinjaException("unterminated string literal");
                    i++;
                    tokens.Add(text.ToString());
                    continue;
                }
                if (c is >= '0' and <= '9')
                {
                    var start = i;
                    i = NumberEnd(source, i);
                    // Letters straight after a number ("1abc", "1e") stay in the token, which is then refused as a number.
                    while (i < source.Length && (char.IsLetterOrDigit(source[i]) || source[i] == '_')) i++;
                    tokens.Add(source[start..i]);
                    continue;
                }
                if (char.IsLetterOrDigit(c) || c == '_')
                {
                    var start = i;
                    while (i < source.Length && (char.IsLetterOrDigit(source[i]) || source[i] == '_')) i++;
                    tokens.Add(source[start..i]);
                    continue;
                }
                var two = i + 1 < source.Length ? source.Substring(i, 2) : "";
                if (two is "==" or "!=" or "<=" or ">=" or "//" or "**") { tokens.Add(two); i += 2; continue; }
                if ("+-*/%~|.,:()[]{}<>=".Contains(c)) { tokens.Add(c.ToString()); i++; continue; }
                throw new JinjaException($"unexpected character '{c}' in expression '{source.Trim()}'");
            }
            return tokens;
        }

        /// <summary>Where a number literal that starts at <paramref name="i"/> ends, as Jinja reads
        /// them: digits with single underscores between them (1_000), then a fraction (1.5), an
        /// exponent (1e16, 1.5e-5) or both.</summary>
        static int NumberEnd(string s, int i)
        {
            int Digits(int at)
            {
                if (at >= s.Length || !char.IsAsciiDigit(s[at])) return at;
                at++;
                while (at < s.Length && (char.IsAsciiDigit(s[at]) || (s[at] == '_' && at + 1 < s.Length && char.IsAsciiDigit(s[at + 1])))) at++;
                return at;
            }
            i = Digits(i);
            if (i + 1 < s.Length && s[i] == '.' && char.IsAsciiDigit(s[i + 1])) i = Digits(i + 1);
            if (i + 1 < s.Length && s[i] is 'e' or 'E')
            {
                var sign = s[i + 1] is '+' or '-' ? 1 : 0;
                var end = Digits(i + 1 + sign);
                if (end > i + 1 + sign) i = end;
            }
            return i;
        }

        /// <summary>One escape in a string literal, as Python's unicode-escape decodes it (which is
        /// how Jinja reads them): \n and the other one-letter escapes, \x41, \u00e9, \U0001F600,
        /// octal \101; any other character after the backslash keeps it ("\q" is backslash q).
        /// Returns where the literal goes on.</summary>
        static int Unescape(string s, int i, StringBuilder text)
        {
            var c = s[i + 1];
            int Hex(int digits)
            {
                var end = i + 2 + digits;
                if (end > s.Length || !long.TryParse(s.AsSpan(i + 2, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code))
                    throw new JinjaException($"truncated \\{c} escape in a string literal: it takes {digits} hexadecimal digits");
                if (code > 0x10FFFF) throw new JinjaException($"the escape \\{s[(i + 1)..end]} is not a Unicode character");
                // A lone surrogate (\ud800) stays one, as in Python.
                if (code <= char.MaxValue) text.Append((char)code);
                else text.Append(char.ConvertFromUtf32((int)code));
                return end;
            }
            switch (c)
            {
                case 'x': return Hex(2);
                case 'u': return Hex(4);
                case 'U': return Hex(8);
                case 'N': throw new JinjaException("the escape \\N{...} (a character by its name) is not supported; write the character itself or \\u and its code");
                case >= '0' and <= '7':
                    var end = i + 1;
                    var value = 0;
                    while (end < s.Length && end < i + 4 && s[end] is >= '0' and <= '7') value = value * 8 + (s[end++] - '0');
                    text.Append((char)value);
                    return end;
                case '\n': return i + 2; // a backslash at a line's end joins the lines
            }
            var escaped = c switch { 'n' => '\n', 't' => '\t', 'r' => '\r', 'a' => '\a', 'b' => '\b', 'f' => '\f', 'v' => '\v', '\\' or '\'' or '"' => c, _ => (char?)null };
            if (escaped is { } e) text.Append(e);
            else text.Append('\\').Append(c);
            return i + 2;
        }
    }

    /// <summary>Python's printf-style formatting ("%s has %d items" % (a, n), and |format, which
    /// Jinja implements with it) and the exact decimal rounding it and |round share: digits of a
    /// float's exact binary value, ties to even, as Python's dtoa gives them.</summary>
    static class Printf
    {
        public static string Format(string format, IReadOnlyList<object?> args, IDictionary<string, object?>? mapping)
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
                int? Number()
                {
                    if (i < format.Length && format[i] == '*') throw new JinjaException("a '*' width or precision in a format is not supported; write the number");
                    var from = i;
                    while (i < format.Length && char.IsAsciiDigit(format[i])) i++;
                    return i > from ? int.Min(int.Parse(format.AsSpan(from, i - from), CultureInfo.InvariantCulture), 10_000) : null;
                }
                var width = Number() ?? 0;
                int? precision = null;
                if (i < format.Length && format[i] == '.') { i++; precision = Number() ?? 0; }
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
                        long code when code is >= 0 and <= 0x10FFFF => char.ConvertFromUtf32((int)code),
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

        /// <summary>%f, %e and %g of a float, digits exact as Python writes them.</summary>
        static string Real(double x, char type, int precision, bool alternate, bool upper)
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
                text = exponent < -4 || exponent >= significant ? Exponential(x, significant - 1) : Fixed(x, significant - 1 - exponent);
                if (!alternate)
                {
                    var e = text.IndexOf('e');
                    var (mantissa, tail) = e < 0 ? (text, "") : (text[..e], text[e..]);
                    if (mantissa.Contains('.')) mantissa = mantissa.TrimEnd('0').TrimEnd('.');
                    text = mantissa + tail;
                }
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
            var exponent = (int)Math.Floor(Math.Log10(Math.Abs(x)));
            var limit = BigInteger.Pow(10, decimals + 1);
            var scaled = Scaled(x, decimals - exponent);
            if (scaled >= limit) exponent++;
            else if (scaled < limit / 10) exponent--;
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

    // ---- values: Python/Jinja semantics over C# objects ----

    static class Values
    {
        public static bool Truthy(object? v) => v switch
        {
            null or Undefined => false,
            bool b => b,
            long l => l != 0,
            double d => d != 0,
            string s => s.Length > 0,
            System.Collections.ICollection c => c.Count > 0,
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
                    WriteRepr(text, new Dictionary<string, object?>(ns), depth + 1);
                    text.Append('>');
                    break;
                case IDictionary<string, object?> d:
                    text.Append('{');
                    var first = true;
                    foreach (var (key, value) in d)
                    {
                        if (!first) text.Append(", ");
                        first = false;
                        WriteStringRepr(text, key);
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

        /// <summary>tojson's indent (Llama 3.1's templates write tools with tojson(indent=4)), as a
        /// keyword or the first argument; null: all on one line.</summary>
        static int? Indent(List<object?> args) => args switch
        {
            [KeyValuePair<string, object?> { Key: "indent", Value: long n }] => (int)Math.Clamp(n, 0, 64),
            [long n] => (int)Math.Clamp(n, 0, 64),
            [] => null,
            _ => throw new JinjaException("tojson takes only indent (a number)"),
        };

        /// <summary>As transformers' tojson writes it, Python's json.dumps(ensure_ascii=False):
        /// ", " and ": " between items, or with an indent a line per item; strings with only '"',
        /// '\' and control characters escaped (a tool's description keeps its '<', '&amp;' and
        /// accents as the model was trained to read them).</summary>
        public static string ToJson(object? v, int? indent = null)
        {
            var json = new StringBuilder();
            WriteJson(json, v, 0, indent);
            return json.ToString();
        }

        /// <summary>Checked for depth and length as it goes: a value may hold itself (a namespace
        /// set into itself), or the same large list at every level.</summary>
        static void WriteJson(StringBuilder json, object? v, int depth, int? indent)
        {
            if (depth > MaxDepth) throw TooDeep();
            void Between(int level, bool first)
            {
                if (!first) json.Append(indent is null ? ", " : ",");
                if (indent is { } width) json.Append('\n').Append(' ', width * level);
            }
            switch (v)
            {
                case null or Undefined: json.Append("null"); break;
                case bool b: json.Append(b ? "true" : "false"); break;
                case long or double: json.Append(ToText(v)); break;
                case string s: WriteString(json, s); break;
                case IDictionary<string, object?> d:
                    json.Append('{');
                    var first = true;
                    foreach (var (key, value) in d)
                    {
                        Between(depth + 1, first);
                        first = false;
                        WriteString(json, key);
                        json.Append(": ");
                        WriteJson(json, value, depth + 1, indent);
                    }
                    if (d.Count > 0 && indent is { } close) json.Append('\n').Append(' ', close * depth);
                    json.Append('}');
                    break;
                case IEnumerable<object?> list:
                    json.Append('[');
                    var any = false;
                    foreach (var item in list)
                    {
                        Between(depth + 1, !any);
                        any = true;
                        WriteJson(json, item, depth + 1, indent);
                    }
                    if (any && indent is { } end) json.Append('\n').Append(' ', end * depth);
                    json.Append(']');
                    break;
                default: throw new JinjaException($"tojson cannot write {Describe(v)}");
            }
            CheckLength(json.Length);
        }

        static void WriteString(StringBuilder json, string s)
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
                    case < ' ': json.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
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
            _ => 0,
        };

        /// <summary>Ordinal search compares up to the length of what it looks for at every
        /// position: spent up front, so a search of a long text for a long pattern stops.</summary>
        static void SpendOnSearch(Budget budget, string within, string what) => budget.Spend((long)within.Length * Math.Max(1, what.Length));

        public static IEnumerable<object?> Iterate(object? v) => v switch
        {
            null or Undefined => [],
            string s => s.Select(c => (object?)c.ToString()),
            IDictionary<string, object?> d => d.Keys,
            IEnumerable<object?> list => list,
            _ => throw new JinjaException($"cannot iterate over {Describe(v)}"),
        };

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
            Namespace ns => ns.TryGetValue(name, out var v) ? v : Undefined.Instance,
            LoopInfo loop when name == "cycle" => new BoundMethod(loop, name),
            LoopInfo loop => loop.TryGetValue(name, out var v) ? v : Undefined.Instance,
            IDictionary<string, object?> d when DictMethods.Contains(name) => new BoundMethod(d, name),
            IDictionary<string, object?> d when ChangingDictMethods.Contains(name) => Undefined.Instance,
            IDictionary<string, object?> d => d.TryGetValue(name, out var v) ? v : Undefined.Instance,
            string s when StringMethods.Contains(name) => new BoundMethod(s, name),
            _ => Undefined.Instance,
        };

        /// <summary>Python's indexing, negative counting from the end; out of range is undefined,
        /// as Jinja's getitem turns Python's IndexError into an undefined value. A key the mapping
        /// lacks is looked up as an attribute, as Jinja's getitem falls back to getattr.</summary>
        public static object? Index(object? target, object? index) => (target, index) switch
        {
            (IDictionary<string, object?> d, string key) => d.TryGetValue(key, out var v) ? v : Member(target, key),
            (IList<object?> list, long i) => Position(i, list.Count) is { } at ? list[at] : Undefined.Instance,
            (string s, long i) => Position(i, s.Length) is { } at ? s[at].ToString() : Undefined.Instance,
            _ => Undefined.Instance,
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
                case IDictionary<string, object?> d:
                    return item is string key && d.ContainsKey(key);
                case IEnumerable<object?> list:
                    foreach (var x in list)
                    {
                        // Comparing strings of equal length reads them through.
                        budget.Spend(1 + Size(x));
                        if (Equal(x, item)) return true;
                    }
                    return false;
                default:
                    return false;
            }
        }

        /// <summary>Python's ==: numbers by value (True == 1), lists and tuples item by item (a
        /// list is never a tuple), mappings by their keys and values in any order (Mistral's
        /// "message == user_messages[-1]" is true of an earlier message that reads the same).</summary>
        public static bool Equal(object? a, object? b) => Equal(a, b, 0);

        static bool Equal(object? a, object? b, int depth)
        {
            if (ReferenceEquals(a, b)) return true;
            if (depth > MaxDepth) throw TooDeep();
            return (a, b) switch
            {
                (Undefined, Undefined) or (null, null) => true,
                (long x, long y) => x == y,
                (long or double or bool, long or double or bool) when a is not bool || b is not bool => Number(a) == Number(b),
                (Namespace, _) or (_, Namespace) => false,
                (IDictionary<string, object?> x, IDictionary<string, object?> y) =>
                    x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var other) && Equal(kv.Value, other, depth + 1)),
                (IList<object?> x, IList<object?> y) =>
                    x is TupleValue == y is TupleValue && x.Count == y.Count && x.Zip(y).All(p => Equal(p.First, p.Second, depth + 1)),
                _ => Equals(a, b),
            };
        }

        static double Number(object? v) => v switch { bool b => b ? 1 : 0, long l => l, _ => (double)v! };

        public static object Compare(string op, object? a, object? b)
        {
            if (op == "==") return Equal(a, b);
            if (op == "!=") return !Equal(a, b);
            var order = Order(a, b);
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
                        if (!Equal(x[i], y[i], depth + 1)) return Order(x[i], y[i], depth + 1);
                    }
                    return x.Count.CompareTo(y.Count);
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
            if (op == "%" && a is string format) return Printf.Format(format, b is TupleValue tuple ? tuple : [b], b as IDictionary<string, object?>);
            // A boolean is the integer 0 or 1 in Python's arithmetic (|sum of [true, true] is 2).
            if (a is bool ba) a = ba ? 1L : 0L;
            if (b is bool bb) b = bb ? 1L : 0L;
            if (op == "**") return Power(a, b);
            if (a is long x && b is long y && op != "/")
            {
                return op switch
                {
                    "+" => x + y, "-" => x - y, "*" => x * y,
                    // Python's modulo takes the divisor's sign; x % -1 is 0 (C#'s long.MinValue % -1 overflows).
                    "%" => y == 0 ? throw new JinjaException("modulo by zero") : y == -1 ? 0L : x % y is var r && r != 0 && (r < 0) != (y < 0) ? r + y : r,
                    _ => y == 0 ? throw new JinjaException("division by zero") : (long)Math.Floor((double)x / y),
                };
            }
            if (a is long or double && b is long or double)
            {
                var (p, q) = (Convert.ToDouble(a), Convert.ToDouble(b));
                return op switch { "+" => p + q, "-" => p - q, "*" => p * q, "/" => p / q, "%" => p % q, _ => Math.Floor(p / q) };
            }
            throw new JinjaException($"cannot apply '{op}' to {Describe(a)} and {Describe(b)}");
        }

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
            "mapping" => (v, _, _) => v is IDictionary<string, object?>,
            // A mapping is iterable (its keys) and a sequence (it has a length and items), as in Jinja.
            "sequence" or "iterable" => (v, _, _) => v is string or IEnumerable<object?> or IDictionary<string, object?>,
            "callable" => (v, _, _) => v is Macro or GlobalFunction or BoundMethod,
            "even" => (v, _, _) => v is long l && l % 2 == 0,
            "odd" => (v, _, _) => v is long l && l % 2 != 0,
            "divisibleby" => (v, arg, _) => (v, arg) is (long l, long by) ? by != 0 ? l % by == 0 : throw new JinjaException("divisibleby zero") : throw new JinjaException("'is divisibleby' takes integers"),
            "lower" => (v, _, _) => v is string s && s == s.ToLowerInvariant(),
            "upper" => (v, _, _) => v is string s && s == s.ToUpperInvariant(),
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
            "upper" => (v, _, _) => ToText(v).ToUpperInvariant(),
            "lower" => (v, _, _) => ToText(v).ToLowerInvariant(),
            "capitalize" => (v, _, _) => Capitalize(ToText(v)),
            "title" => (v, _, _) => TitleFilter(ToText(v)),
            "replace" => (v, args, budget) => args is [var old, var replacement] ? Replace(ToText(v), ToText(old), ToText(replacement), budget) : throw new JinjaException("|replace takes the text to replace and its replacement"),
            "indent" => (v, args, _) => IndentLines(ToText(v), args),
            "length" or "count" => (v, _, _) => v switch { string s => (long)s.Length, System.Collections.ICollection c => (long)c.Count, _ => 0L },
            "string" => (v, _, _) => ToText(v),
            // Markup in Jinja, which prints as the text itself: there is no autoescaping here.
            "safe" => (v, _, _) => ToText(v),
            "int" => (v, _, _) => v switch { long l => l, double d => (long)d, string s when long.TryParse(s, out var l) => l, _ => 0L },
            "float" => (v, _, _) => v switch { long l => (double)l, double d => d, string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d, _ => 0.0 },
            "abs" => (v, _, _) => v switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), _ => throw new JinjaException($"|abs of {Describe(v)}") },
            "tojson" => (v, args, _) => ToJson(v, Indent(args)),
            "first" => (v, _, _) => Iterate(v).FirstOrDefault(),
            "last" => (v, _, _) => Iterate(v).LastOrDefault(),
            "list" => (v, _, _) => Iterate(v).ToList(),
            "reverse" => (v, _, _) => v is string s ? string.Concat(s.Reverse()) : Iterate(v).Reverse().ToList(),
            "join" => (v, args, _) => Join(Iterate(v), args.Count > 0 ? ToText(args[0]) : ""),
            "default" or "d" => (v, args, _) => v is Undefined || (args.Count > 1 && Truthy(args[1]) && !Truthy(v)) ? (args.Count > 0 ? args[0] : "") : v,
            "items" => (v, _, _) => v is IDictionary<string, object?> d ? d.Select(kv => (object?)new TupleValue { kv.Key, kv.Value }).ToList() : [],
            "select" or "reject" => (v, args, budget) => Select(Iterate(v), args, attribute: null, keep: name == "select", budget),
            "selectattr" or "rejectattr" => (v, args, budget) => args is [string attribute, .. var test]
                ? Select(Iterate(v), test, attribute, keep: name == "selectattr", budget)
                : throw new JinjaException($"|{name} takes an attribute's name, then optionally a test and its argument"),
            "map" => (v, args, budget) => Map(Iterate(v), args, budget),
            "sort" => (v, args, budget) => Bind("sort", args, ("reverse", false), ("case_sensitive", false), ("attribute", null))
                is var (reverse, caseSensitive, attribute) ? Sort(Iterate(v), SortKey(attribute, Truthy(caseSensitive), multiple: true), Truthy(reverse), budget) : null,
            "unique" => (v, args, budget) => Bind("unique", args, ("case_sensitive", false), ("attribute", null)) is var (caseSensitive, attribute, _)
                ? Unique(Iterate(v), SortKey(attribute, Truthy(caseSensitive), multiple: false), budget) : null,
            "dictsort" => (v, args, budget) => Bind("dictsort", args, ("case_sensitive", false), ("by", "key"), ("reverse", false)) is var (caseSensitive, by, reverse)
                ? DictSort(v, Truthy(caseSensitive), by, Truthy(reverse), budget) : null,
            "min" or "max" => (v, args, budget) => Bind(name, args, ("case_sensitive", false), ("attribute", null)) is var (caseSensitive, attribute, _)
                ? Extreme(Iterate(v), SortKey(attribute, Truthy(caseSensitive), multiple: false), name == "max", budget) : null,
            "sum" => (v, args, _) => Bind("sum", args, ("attribute", null), ("start", 0L)) is var (attribute, start, _) ? Sum(Iterate(v), attribute, start) : null,
            "round" => (v, args, _) => Bind("round", args, ("precision", 0L), ("method", "common")) is var (precision, method, _) ? Round(v, precision, method) : null,
            "batch" => (v, args, _) => Bind("batch", args, ("linecount", Undefined.Instance), ("fill_with", null)) is var (count, fill, _) ? Batch(Iterate(v), count, fill) : null,
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

        static string Capitalize(string s) => s.Length > 0 ? char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant() : "";

        /// <summary>Jinja's |title: each word (after a space, '-', '(', '{', '[' or '&lt;')
        /// capitalized, unlike Python's str.title(), which capitalizes after an apostrophe too.</summary>
        static string TitleFilter(string s) =>
            string.Concat(System.Text.RegularExpressions.Regex.Split(s, @"([-\s({\[<]+)").Where(w => w.Length > 0).Select(Capitalize));

        /// <summary>Python's str.title(): a letter after a cased letter is lower case, any other upper case.</summary>
        static string TitleMethod(string s)
        {
            var text = new StringBuilder(s.Length);
            var afterCased = false;
            foreach (var c in s)
            {
                text.Append(afterCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
                afterCased = char.IsUpper(c) || char.IsLower(c);
            }
            return text.ToString();
        }

        /// <summary>A filter's arguments, by position then by keyword, in the order of its
        /// parameters (up to three), each its default where not given; anything else refused by name.</summary>
        static (object? First, object? Second, object? Third) Bind(string filter, List<object?> args, params (string Name, object? Default)[] parameters)
        {
            var values = parameters.Select(p => p.Default).Append(null).Append(null).ToArray();
            var given = new bool[parameters.Length];
            for (var i = 0; i < args.Count; i++)
            {
                var (index, value) = args[i] is KeyValuePair<string, object?> kv
                    ? (Array.FindIndex(parameters, p => p.Name == kv.Key) is var at && at >= 0 ? at : throw new JinjaException($"|{filter} takes {string.Join(", ", parameters.Select(p => p.Name))}, not {kv.Key}"), kv.Value)
                    : (i < parameters.Length ? i : throw new JinjaException($"|{filter} takes at most {parameters.Length} argument(s)"), args[i]);
                if (given[index]) throw new JinjaException($"|{filter} got {parameters[index].Name} twice");
                (given[index], values[index]) = (true, value);
            }
            var missing = Array.FindIndex(values, 0, parameters.Length, v => v is Undefined);
            if (missing >= 0) throw new JinjaException($"|{filter} needs its {parameters[missing].Name}");
            return (values[0], values[1], values[2]);
        }

        /// <summary>What |sort, |unique, |min and |max order items by: the item or its attribute
        /// (a dotted path; for |sort, several separated by commas, compared in turn), a string in
        /// lower case unless case_sensitive, as Jinja's ignore_case makes it.</summary>
        static Func<object?, object?> SortKey(object? attribute, bool caseSensitive, bool multiple)
        {
            object? Fold(object? v) => !caseSensitive && v is string s ? s.ToLowerInvariant() : v;
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
            if (v is not IDictionary<string, object?> d) throw new JinjaException($"|dictsort takes a mapping, not {Describe(v)}");
            var at = by switch { "key" => 0, "value" => 1, _ => throw new JinjaException("|dictsort sorts by either \"key\" or \"value\"") };
            var pairs = d.Select(kv => (object?)new TupleValue { kv.Key, kv.Value });
            return Sort(pairs, pair => SortKey(null, caseSensitive, multiple: false)(((TupleValue)pair!)[at]), reverse, budget);
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
            var seen = new HashSet<object?>(HashableComparer.Instance);
            var kept = new List<object?>();
            foreach (var item in items)
            {
                budget.Spend(1);
                if (seen.Add(key(item))) kept.Add(item);
            }
            return kept;
        }

        /// <summary>Python's hashing for the values a set can hold: numbers by value, strings, none,
        /// tuples of those; lists and mappings cannot be hashed.</summary>
        sealed class HashableComparer : IEqualityComparer<object?>
        {
            public static readonly HashableComparer Instance = new();
            public new bool Equals(object? a, object? b) => Equal(a, b);
            public int GetHashCode(object? v) => v switch
            {
                null => 0,
                string s => s.GetHashCode(StringComparison.Ordinal),
                long or double or bool => Number(v).GetHashCode(),
                TupleValue tuple => tuple.Aggregate(17, (hash, item) => HashCode.Combine(hash, GetHashCode(item))),
                _ => throw new JinjaException($"|unique cannot hash {Describe(v)} (as Python: unhashable)"),
            };
        }

        /// <summary>Python's sum(items, start): numbers added, lists joined; strings refused, as Python refuses them.</summary>
        static object? Sum(IEnumerable<object?> items, object? attribute, object? start)
        {
            if (start is string) throw new JinjaException("|sum cannot add strings; use |join");
            var total = start;
            foreach (var item in items) total = Arithmetic("+", total, attribute is null ? item : Attribute(item, ToText(attribute)));
            return total;
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
                    return (method is "floor" ? Math.Floor(scaled) : Math.Ceiling(scaled)) / scale;
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
            var mapping = new Dictionary<string, object?>();
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
            var indention = width switch { string text => text, long n => new string(' ', (int)Math.Clamp(n, 0, 1000)), _ => throw new JinjaException("|indent's width is a number or a string") };
            // Python's splitlines, after Jinja appends a newline: a final line break leaves no empty line.
            var lines = System.Text.RegularExpressions.Regex.Split(s + "\n", "\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]").SkipLast(1).ToList();
            var result = Truthy(blank)
                ? string.Join("\n" + indention, lines)
                : string.Join("\n", lines.Select((line, i) => i == 0 || line.Length == 0 ? line : indention + line));
            if (Truthy(first)) result = indention + result;
            CheckLength(result.Length);
            return result;
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
            // strip(none) and split(none) mean white space, as in Python.
            return (target, name) switch
            {
                // loop.cycle('odd', 'even'): the argument at the iteration's place, in turn.
                (LoopInfo loop, "cycle") => args.Count > 0 ? args[(int)((long)loop["index0"]! % args.Count)] : throw new JinjaException("loop.cycle() takes the items to cycle through"),
                (string s, "strip") => args is [{ } chars] ? s.Trim(Characters(s, chars, budget)) : s.Trim(),
                (string s, "lstrip") => args is [{ } chars] ? s.TrimStart(Characters(s, chars, budget)) : s.TrimStart(),
                (string s, "rstrip") => args is [{ } chars] ? s.TrimEnd(Characters(s, chars, budget)) : s.TrimEnd(),
                (string s, "upper") => s.ToUpperInvariant(),
                (string s, "lower") => s.ToLowerInvariant(),
                (string s, "title") => TitleMethod(s),
                (string s, "capitalize") => Capitalize(s),
                // Either takes a tuple of texts, any of which may match, as in Python.
                (string s, "startswith") => Affixes(args[0]).Any(prefix => s.StartsWith(prefix, StringComparison.Ordinal)),
                (string s, "endswith") => Affixes(args[0]).Any(suffix => s.EndsWith(suffix, StringComparison.Ordinal)),
                (string s, "replace") => Replace(s, ToText(args[0]), ToText(args[1]), budget),
                (string s, "split") => Split(s, args, budget).Select(p => (object?)p).ToList(),
                (IDictionary<string, object?> d, "items") => d.Select(kv => (object?)new TupleValue { kv.Key, kv.Value }).ToList(),
                (IDictionary<string, object?> d, "keys") => d.Keys.Select(k => (object?)k).ToList(),
                (IDictionary<string, object?> d, "values") => d.Values.ToList(),
                (IDictionary<string, object?> d, "get") => d.TryGetValue(ToText(args[0]), out var v) ? v : args.Count > 1 ? args[1] : null,
                _ => throw new JinjaException($"the method .{name}() on {Describe(target)} is not supported"),
            };
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
            "raise_exception" => new Lambda(s => throw new JinjaException(ToText(arguments.FirstOrDefault()?.Eval(s))), arguments),
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
                var dict = new Dictionary<string, object?>();
                var values = arguments.Select(a => a.Eval(s)).ToList();
                var positional = values.Where(v => v is not KeyValuePair<string, object?>).ToList();
                switch (positional)
                {
                    case []: break;
                    case [IDictionary<string, object?> mapping]:
                        foreach (var (key, value) in mapping) dict[key] = value;
                        break;
                    case [IEnumerable<object?> pairs]:
                        foreach (var pair in pairs)
                        {
                            if (pair is not IList<object?> { Count: 2 } kv) throw new JinjaException("dict() takes pairs of a key and a value");
                            dict[ToText(kv[0])] = kv[1];
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

        public static string Describe(object? v) => v switch
        {
            null => "none",
            Undefined => "an undefined value",
            string => "a string",
            long or double => "a number",
            bool => "a boolean",
            BoundMethod => "a method",
            IDictionary<string, object?> => "a mapping",
            _ => "a list",
        };
    }
}
