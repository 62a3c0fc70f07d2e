// The parsers of JinjaTemplate: statements into blocks of nodes, and expressions (by Jinja's
// precedence, each level a method) into the expression tree, refusing what the subset lacks by name.
using System.Globalization;
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    sealed class Parser(List<Piece> pieces)
    {
        int position;
        int depth; // blocks open around the one being parsed
        /// <summary>Which of varargs and kwargs the innermost macro (or call) body being parsed
        /// reads, which makes it take arguments beyond its parameters, as in Jinja; null outside one.</summary>
        HashSet<string>? extraArguments;
        int loops; // {% for %} bodies open around the one being parsed, in the same macro body

        /// <summary>Each {% for %} of one target over what vLLM's content format detection follows,
        /// and each {% set %} of one name to such a value (<see cref="IteratesMessageContent"/>).</summary>
        public List<(string Target, Access Iterable)> ForLoops { get; } = [];
        public List<(string Name, Access Value)> Assignments { get; } = [];

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

        Expr Expression(string source) => ExpressionParser.Parse(source, macros, extraArguments);

        /// <summary>An expression of a tag on another line than the block's ({% elif %}).</summary>
        Expr ExpressionAt(string source, int line)
        {
            try { return Expression(source); }
            catch (JinjaException e) when (e.Line is null) { throw e.At(line); }
        }

        public bool AtEnd => position >= pieces.Count;

        /// <summary>The line of the piece the parser is at.</summary>
        public int Line => pieces[position].Line;

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
                var word = piece.Kind == PieceKind.Statement ? PeekTagName() : "";
                if (stopAt.Contains(word))
                {
                    depth--;
                    return nodes;
                }
                position++;
                // An error names the line of the piece it is in; a block's end tag that is missing, the block's.
                try
                {
                    var node = piece.Kind switch
                    {
                        PieceKind.Text => new TextNode(piece.Content),
                        PieceKind.Output => new OutputNode(Expression(piece.Content)),
                        _ => word switch
                        {
                            "if" => ParseIf(piece.Content[2..]),
                            "for" => ParseFor(piece.Content[3..]),
                            "set" => ParseSet(piece.Content[3..]),
                            "macro" => ParseMacro(piece.Content[5..]),
                            "call" => ParseCall(piece.Content[4..]),
                            "generation" => ParseGeneration(piece.Content),
                            "filter" => ParseFilterBlock(piece.Content[6..]),
                            "break" or "continue" => ParseLoopControl(piece.Content),
                            _ => throw new JinjaException($"the tag {{% {word} %}} is not supported"),
                        },
                    };
                    node.Line = piece.Line;
                    nodes.Add(node);
                }
                catch (JinjaException e) when (e.Line is null) { throw e.At(piece.Line); }
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
                var (tag, line) = (pieces[position].Content, pieces[position++].Line);
                if (tag.StartsWith("elif")) branches.Add((ExpressionAt(tag[4..], line), ParseBlock("elif", "else", "endif")));
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
            var rest = header[(inAt + 2)..].TrimEnd();
            // "recursive" ends the header, after any filter.
            var recursive = rest.EndsWith("recursive", StringComparison.Ordinal) && rest.Length > 9 && char.IsWhiteSpace(rest[^10]);
            if (recursive) rest = rest[..^9];
            var ifAt = FindKeyword(rest, "if");
            var iterable = Expression(ifAt < 0 ? rest : rest[..ifAt]);
            var filter = ifAt < 0 ? null : Expression(rest[(ifAt + 2)..]);
            if (targets is [var target] && iterable.Reads is { } reads) ForLoops.Add((target, reads));
            loops++;
            var body = ParseBlock("else", "endfor");
            loops--;
            List<Node>? otherwise = null;
            if (pieces[position++].Content == "else")
            {
                otherwise = ParseBlock("endfor");
                position++;
            }
            return new ForNode(targets, iterable, filter, body, otherwise, recursive);
        }

        Node ParseSet(string statement)
        {
            var (names, attribute, value, filters) = ExpressionParser.ParseSet(statement, macros, extraArguments);
            if (names is [var name] && attribute is null && value?.Reads is { } reads) Assignments.Add((name, reads));
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
            var (body, extra) = ParseFunctionBody("endmacro");
            loops = outerLoops;
            return new MacroNode(name, parameters, body, extra);
        }

        Node ParseCall(string header)
        {
            // {% call(a, b=1) m() %}: the parameters of caller(), which the macro passes it arguments for.
            List<(string Name, Expr? Default)> parameters = [];
            if (header.TrimStart().StartsWith('('))
            {
                var close = ClosingParenthesis(header, header.IndexOf('('));
                if (close < 0) throw new JinjaException($"{{% call{header} %}}: the parameters of caller() are not closed by ')'");
                parameters = ExpressionParser.ParseSignature("caller" + header[header.IndexOf('(')..(close + 1)], macros, $"{{% call{header} %}}").Parameters;
                header = header[(close + 1)..];
            }
            var call = Expression(header);
            if (call is not MacroCall { Caller: false } macroCall) throw new JinjaException($"{{% call {header.Trim()} %}} must call a macro the template defines");
            // Its body is caller(), a function of its own, as a macro's is.
            var outerLoops = loops;
            loops = 0;
            var (body, extra) = ParseFunctionBody("endcall");
            loops = outerLoops;
            return new CallNode(macroCall.Name, macroCall.Arguments, parameters, body, extra);
        }

        /// <summary>A macro's or caller's body, up to its end tag, and which of varargs and kwargs it reads.</summary>
        (List<Node> Body, ExtraArguments Extra) ParseFunctionBody(string end)
        {
            var outer = extraArguments;
            extraArguments = [];
            try
            {
                var body = ParseBlock(end);
                position++;
                return (body, new ExtraArguments(extraArguments.Contains("varargs"), extraArguments.Contains("kwargs")));
            }
            finally { extraArguments = outer; }
        }

        /// <summary>{% filter trim | upper %}...{% endfilter %}: the text of its body through the filters.</summary>
        Node ParseFilterBlock(string filters)
        {
            var calls = ExpressionParser.ParseFilters(filters, macros, extraArguments);
            var body = ParseBlock("endfilter");
            position++;
            return new FilterNode(calls, body);
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

        /// <summary>Where the parenthesis opened at <paramref name="open"/> closes, outside string
        /// literals (-1: nowhere).</summary>
        static int ClosingParenthesis(string s, int open)
        {
            char? quote = null;
            var depth = 0;
            for (var i = open; i < s.Length; i++)
            {
                if (quote is { } q)
                {
                    if (s[i] == '\\') i++;
                    else if (s[i] == q) quote = null;
                }
                else if (s[i] is '\'' or '"') quote = s[i];
                else if (s[i] == '(') depth++;
                else if (s[i] == ')' && --depth == 0) return i;
            }
            return -1;
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

    sealed class ExpressionParser
    {
        readonly List<string> tokens;
        int position;
        int depth; // parses under way that recurse per nesting level: "((x))", "not not x", "- -x"

        /// <summary>The names a call may name besides the functions (<see cref="Parser"/>'s macros).</summary>
        readonly IReadOnlySet<string> macros;
        /// <summary>Where the expression is in a macro's body: which of varargs and kwargs it reads go here.</summary>
        readonly HashSet<string>? extraArguments;

        ExpressionParser(string source, IReadOnlySet<string> macros, HashSet<string>? extraArguments) => (tokens, this.macros, this.extraArguments) = (Split(source), macros, extraArguments);

        public static Expr Parse(string source, IReadOnlySet<string> macros, HashSet<string>? extraArguments)
        {
            var parser = new ExpressionParser(source, macros, extraArguments);
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
        /// <param name="tag">The tag as an error names it: the {% macro %} by default.</param>
        public static (string Name, List<(string Name, Expr? Default)> Parameters) ParseSignature(string header, IReadOnlySet<string> macros, string? tag = null)
        {
            tag ??= $"{{% macro {header.Trim()} %}}";
            var parser = new ExpressionParser(header, macros, extraArguments: null);
            var name = parser.Next();
            if (!IsIdentifier(name)) throw new JinjaException($"{tag} needs a name");
            var parameters = new List<(string, Expr?)>();
            parser.Expect("(");
            while (!parser.Accept(")"))
            {
                var parameter = parser.Next();
                if (!IsIdentifier(parameter)) throw new JinjaException($"'{parameter}' is not a parameter name in {tag}");
                parameters.Add((parameter, parser.Accept("=") ? parser.Conditional() : null));
                if (!parser.Accept(",") && parser.Peek != ")") throw new JinjaException($"expected ',' or ')' but found '{parser.Peek ?? "end"}' in {tag}");
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
                var otherwise = Accept("else") ? Conditional() : new Literal(Undefined.NoElse);
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
            var left = Additive();
            while (true)
            {
                var l = left;
                if (Peek is "==" or "!=" or "<" or ">" or "<=" or ">=")
                {
                    var op = tokens[position++];
                    var r = Additive();
                    left = new Lambda(s => Values.Compare(op, l.Eval(s), r.Eval(s)), l, r);
                }
                else if (Peek == "in" || (Peek == "not" && position + 1 < tokens.Count && tokens[position + 1] == "in"))
                {
                    var negate = Accept("not");
                    Expect("in");
                    var r = Additive();
                    left = new Lambda(s => Values.Contains(r.Eval(s), l.Eval(s), s.Budget) != negate, l, r);
                }
                else return left;
            }
        }

        /// <summary>As Jinja parses "~": tighter than "+" and "-", looser than "*" ("'a' ~ 1 + 2" adds
        /// 2 to the text "a1", which fails, as in jinja2).</summary>
        Expr Concat()
        {
            var left = Multiplicative();
            while (Accept("~"))
            {
                var (l, r) = (left, Multiplicative());
                left = new Lambda(s => Values.Concatenate(Values.ToText(l.Eval(s)), Values.ToText(r.Eval(s))), l, r);
            }
            return left;
        }

        Expr Additive()
        {
            var left = Concat();
            while (Peek is "+" or "-")
            {
                var op = tokens[position++];
                var (l, r) = (left, Concat());
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

        /// <summary>As Jinja: a sign binds tighter than the filters after it ("-3 | abs" is 3).</summary>
        Expr Unary(bool withFilters = true)
        {
            Expr value;
            if (Peek is "-" or "+")
            {
                var minus = tokens[position++] == "-";
                Enter();
                var operand = Unary(withFilters: false);
                depth--;
                value = minus ? new Lambda(s => Values.Negate(operand.Eval(s)), operand) : new Lambda(s => Values.Plus(operand.Eval(s)), operand);
            }
            else value = Postfix();
            return withFilters ? Filtered(value) : value;
        }

        /// <summary>Filters and "is" tests, which Jinja binds alike, tighter than any operator: "1 + 1
        /// is even" tests the second 1, "x is odd | string" filters the test's answer.</summary>
        Expr Filtered(Expr value)
        {
            while (true)
            {
                foreach (var filter in Filters())
                {
                    var v = value;
                    value = new Lambda(s => filter.Apply(v.Eval(s), s), [v, .. filter.Arguments]) { Reads = v.Reads?.Elements };
                }
                if (!Accept("is")) return value;
                value = Tested(value);
            }
        }

        /// <summary>"is [not] name", and its argument, applied to <paramref name="value"/>.</summary>
        Expr Tested(Expr value)
        {
            var negate = Accept("not");
            var test = Next();
            Expr? argument = null;
            if (Accept("(")) { if (!Accept(")")) { argument = Conditional(); Expect(")"); } }
            // As Jinja: without parentheses a test takes one argument, a primary and its
            // postfixes ("is divisibleby 3", "is in ['a', 'b']"), unless a keyword follows.
            else if (Peek is { } next && (next[0] is '\'' or '"' or '(' or '[' or '{' || IsIdentifier(next) || char.IsDigit(next[0])) && next is not ("and" or "or" or "else"))
            {
                if (next == "is") throw new JinjaException($"tests cannot be chained ('is {test} is ...'); join them with 'and'");
                argument = Postfix();
            }
            var check = Values.Test(test);
            var arg = argument;
            return new Lambda(s => check(value.Eval(s), arg?.Eval(s), s.Budget) != negate, arg is null ? [value] : [value, arg]) { Reads = value.Reads?.Elements };
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

        /// <summary>The filters a {% filter %} tag names: "trim | indent(2)".</summary>
        public static List<FilterCall> ParseFilters(string source, IReadOnlySet<string> macros, HashSet<string>? extraArguments)
        {
            if (string.IsNullOrWhiteSpace(source)) throw new JinjaException("{% filter %} needs the name of a filter");
            var parser = new ExpressionParser("|" + source, macros, extraArguments);
            var filters = parser.Filters();
            parser.End(source);
            return filters;
        }

        /// <summary>What {% set %} assigns to: a name, names to unpack ("a, b" or "(a, b)"), or a
        /// namespace's attribute; then its value after "=", or, with none, the filters its block's
        /// text goes through.</summary>
        public static (List<string> Names, string? Attribute, Expr? Value, List<FilterCall> Filters) ParseSet(string statement, IReadOnlySet<string> macros, HashSet<string>? extraArguments)
        {
            var parser = new ExpressionParser(statement, macros, extraArguments);
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
            var parser = new ExpressionParser(source, macros, extraArguments: null);
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
                    // d.1 is d[1], as Jinja's parser reads an integer after the dot, and only a
                    // name or an integer: d.1e5, d. 1.5, d.'a' and x.-1 are refused.
                    if (!IsIdentifier(member) && !(char.IsAsciiDigit(member[0]) && Number(member) is long))
                        throw new JinjaException($"'{member.TrimStart('\'', '"')}' after '.' is neither a name nor an integer: write other keys in brackets (x[-1], d['a b'], d[1.5])");
                    if (char.IsAsciiDigit(member[0])) { var index = (long)Number(member); value = new Lambda(s => Values.Index(target.Eval(s), index), target); }
                    else if (Accept("("))
                    {
                        var arguments = Arguments(")");
                        value = new Lambda(s => Values.CallMethod(target.Eval(s), member, arguments.Select(a => a.Eval(s)).ToList(), s.Budget), [target, .. arguments]);
                    }
                    else value = new Lambda(s => Values.Member(target.Eval(s), member), target) { Reads = target.Reads?.Of(member) };
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
                        value = new Lambda(s => Values.Slice(target.Eval(s), a?.Eval(s), b?.Eval(s), c?.Eval(s)), [target, .. new[] { a, b, c }.OfType<Expr>()]) { Reads = target.Reads?.Elements };
                    }
                    else
                    {
                        Expect("]");
                        var index = start!;
                        value = new Lambda(s => Values.Index(target.Eval(s), index.Eval(s)), target, index) { Reads = index is Literal { Value: string key } ? target.Reads?.Of(key) : null };
                    }
                }
                else if (Peek == "(" && value is Name function)
                {
                    position++;
                    var arguments = Arguments(")", call: true);
                    if (!macros.Contains(function.Identifier) && arguments.Any(a => a is Spread))
                        throw new JinjaException($"*arguments are given only to a macro, not to {function.Identifier}()");
                    value = macros.Contains(function.Identifier) ? new MacroCall(function.Identifier, arguments)
                        : function.Identifier == "loop" ? new Lambda(s => LoopCall(function.Eval(s), arguments.Select(a => a.Eval(s)).ToList()), arguments)
                        : Values.Function(function.Identifier, arguments);
                }
                else if (Accept("("))
                    value = new ValueCall(target, Arguments(")", call: true));
                else return value;
            }
        }

        /// <param name="call">Whether these are a call's, which may spread a list (*items).</param>
        List<Expr> Arguments(string close, bool call = false)
        {
            var list = new List<Expr>();
            while (!Accept(close))
            {
                if (call && Accept("*")) list.Add(new Spread(Conditional()));
                // Keyword arguments (namespace(found=false)) become (name, value) pairs.
                else if (position + 1 < tokens.Count && tokens[position + 1] == "=" && IsIdentifier(tokens[position]))
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
            if (char.IsDigit(token[0])) return new Literal(Number(token));
            return token switch
            {
                "true" or "True" => new Literal(true),
                "false" or "False" => new Literal(false),
                "none" or "None" => new Literal(null),
                "varargs" or "kwargs" when extraArguments is not null => Extra(token),
                _ when IsIdentifier(token) => new Name(token),
                _ => throw new JinjaException($"unexpected '{token}' in expression"),
            };
        }

        /// <summary>varargs or kwargs read in a macro's body: the macro takes such arguments.</summary>
        Name Extra(string token)
        {
            extraArguments!.Add(token);
            return new Name(token);
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
                    // No fraction straight after a dot, as Jinja's lexer reads none there: d.1.0 is d[1][0].
                    i = NumberEnd(source, i, fraction: start == 0 || source[start - 1] != '.');
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

        /// <summary>A number literal's value, as Jinja reads them: 1_000, 1.5, 1e16, 0x1F, 0o17,
        /// 0b101 (a single underscore before any digit); an integer is a 64-bit one here (Python's
        /// are unbounded), and one beyond that range is refused as such.</summary>
        static object Number(string token)
        {
            // The lexer keeps letters and digits together ("1abc"), and any script's digits count.
            var radix = token.Length > 2 && token[0] == '0' ? char.ToLowerInvariant(token[1]) switch { 'x' => 16, 'o' => 8, 'b' => 2, _ => 0 } : 0;
            if (radix > 0)
            {
                long value = 0;
                var valid = true;
                for (var i = 2; i < token.Length && valid; i++)
                {
                    // An underscore stands before a digit.
                    if (token[i] == '_') { valid = i + 1 < token.Length && token[i + 1] != '_'; continue; }
                    var digit = HexDigit(token[i]);
                    valid = digit < radix;
                    if (!valid) break;
                    if (value > (long.MaxValue - digit) / radix) throw BeyondLong(token);
                    value = value * radix + digit;
                }
                if (valid) return value;
            }
            else if (NumberEnd(token, 0) == token.Length)
            {
                var digits = token.Replace("_", "");
                if (digits.AsSpan().ContainsAny('.', 'e', 'E')) return double.Parse(digits, NumberStyles.Float, CultureInfo.InvariantCulture);
                // As in Python, 0 may be written 00 but 07 is no integer (octal is 0o7).
                if (digits.Length > 1 && digits[0] == '0' && digits.AsSpan().ContainsAnyExcept('0'))
                    throw new JinjaException($"'{token}' is not a number: an integer does not begin with 0 (write {digits.TrimStart('0')}, or 0o{digits.TrimStart('0')} for octal)");
                return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var whole) ? whole : throw BeyondLong(token);
            }
            throw new JinjaException($"'{token}' is not a number this template engine reads");
        }

        static int HexDigit(char c) => c switch { >= '0' and <= '9' => c - '0', >= 'a' and <= 'f' => c - 'a' + 10, >= 'A' and <= 'F' => c - 'A' + 10, _ => int.MaxValue };

        static JinjaException BeyondLong(string token) => new($"the integer {token} is beyond 64-bit integers, which this template engine keeps to");

        /// <summary>Where a number literal that starts at <paramref name="i"/> ends, as Jinja reads
        /// them: digits with single underscores between them (1_000), then a fraction (1.5), an
        /// exponent (1e16, 1.5e-5) or both (without <paramref name="fraction"/>, an exponent alone).</summary>
        static int NumberEnd(string s, int i, bool fraction = true)
        {
            int Digits(int at)
            {
                if (at >= s.Length || !char.IsAsciiDigit(s[at])) return at;
                at++;
                while (at < s.Length && (char.IsAsciiDigit(s[at]) || (s[at] == '_' && at + 1 < s.Length && char.IsAsciiDigit(s[at + 1])))) at++;
                return at;
            }
            i = Digits(i);
            if (fraction && i + 1 < s.Length && s[i] == '.' && char.IsAsciiDigit(s[i + 1])) i = Digits(i + 1);
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
                text.Append(CodePoints.Text((int)code));
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
}
