// The expression tree a JinjaTemplate evaluates: literals, names, lists, dicts, operators (as
// closures over their parts), macro calls and filter calls, each evaluation spent from the budget.

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
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

        /// <summary>The variable, or its key, the expression reads, as vLLM's content format detection
        /// follows them (<see cref="Access"/>); null for anything else.</summary>
        public Access? Reads { get; init; }

        /// <summary>The value, its evaluation and size spent from the render's budget.</summary>
        public object? Eval(Scope scope)
        {
            var value = Evaluate(scope);
            scope.Budget.Spend(Step + Values.Size(value));
            return value;
        }

        protected abstract object? Evaluate(Scope scope);
    }

    /// <summary>What an expression reads, as vLLM's detection of a template's content format sees
    /// it: a variable (messages), one key of it read by name (message['content'], message.content),
    /// or the elements of either (a slice, a filter or a test of it: messages[1:], messages | list).</summary>
    /// <param name="Whole">Whether it is the variable or key itself, not its elements: only a
    /// variable itself is read by key (messages[1:]['content'] is none of these).</param>
    sealed record Access(string Variable, string? Key, bool Whole)
    {
        /// <summary>Its elements: a slice, filter or test of it.</summary>
        public Access Elements => this with { Whole = false };

        /// <summary>A key read by name of it, where it is a variable itself.</summary>
        public Access? Of(string key) => Key is null && Whole ? this with { Key = key } : null;
    }

    sealed class Literal(object? value) : Expr([])
    {
        public object? Value => value;
        protected override object? Evaluate(Scope scope) => value;
    }

    sealed class Name : Expr
    {
        readonly string name;

        public Name(string name) : base([])
        {
            this.name = name;
            Reads = new Access(name, null, Whole: true);
        }

        /// <summary>What the name reads where it is not set: made once, as templates test names
        /// that are seldom set (tools_in_user_message is defined) in every render.</summary>
        Undefined? undefined;

        public string Identifier => name;
        protected override object? Evaluate(Scope scope) =>
            scope.TryGetValue(name, out var v) ? v : Values.Functions.Contains(name) ? new GlobalFunction(name) : undefined ??= Undefined.Variable(name);
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
            var dict = new Mapping();
            foreach (var (key, value) in items) dict[key.Eval(scope)] = value.Eval(scope);
            return dict;
        }
    }

    sealed class Lambda(Func<Scope, object?> eval, params IEnumerable<Expr> parts) : Expr(parts)
    {
        protected override object? Evaluate(Scope scope) => eval(scope);
    }

    /// <summary>*items among a macro call's arguments: the items as arguments of their own, in
    /// their place (Jamba's templates call macros_to_call[i](*params_for_macros[i])).</summary>
    sealed class Spread(Expr items) : Expr([items])
    {
        protected override object? Evaluate(Scope scope) => throw new JinjaException("*arguments are given only in a call");

        /// <summary>A call's arguments evaluated, each spread one's items in its place.</summary>
        public static List<object?> Arguments(List<Expr> arguments, Scope scope)
        {
            var values = new List<object?>(arguments.Count);
            foreach (var argument in arguments)
            {
                if (argument is Spread spread) values.AddRange(Values.Iterate(spread.Items.Eval(scope)));
                else values.Add(argument.Eval(scope));
            }
            return values;
        }

        Expr Items => items;
    }

    /// <summary>A call of a macro read as a value (an item of a list of macros): the text its
    /// body renders.</summary>
    sealed class ValueCall(Expr target, List<Expr> arguments) : Expr([target, .. arguments])
    {
        protected override object? Evaluate(Scope scope) => target.Eval(scope) switch
        {
            Macro macro => macro.Call(Spread.Arguments(arguments, scope), caller: null),
            Undefined u => throw u.Error(),
            var other => throw new JinjaException($"{Values.Describe(other)} cannot be called"),
        };
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
            return macro.Call(Spread.Arguments(arguments, scope), caller);
        }
    }

    /// <summary>One filter with its arguments (keywords as name-value pairs), applied to a value.</summary>
    sealed record FilterCall(Func<object?, List<object?>, Budget, object?> Filter, List<Expr> Arguments)
    {
        public object? Apply(object? value, Scope scope) => Filter(value, Arguments.Select(a => a.Eval(scope)).ToList(), scope.Budget);
    }
}
