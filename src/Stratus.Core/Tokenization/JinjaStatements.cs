// The statements a JinjaTemplate parses into and how each renders: text, output, if, for (with
// loop and loop controls), set, macro, call and generation, and a defined macro called.
using System.Text;

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    abstract class Node
    {
        /// <summary>The line of the template the statement (or text) begins on.</summary>
        public int Line { get; set; }

        /// <summary>Renders the node; an error names its line, unless a node inside it named its own.</summary>
        public void Render(Scope scope, StringBuilder output)
        {
            try { Emit(scope, output); }
            catch (JinjaException e) when (e.Line is null) { throw e.At(Line); }
        }

        protected abstract void Emit(Scope scope, StringBuilder output);

        /// <summary>Adds the names this statement binds in the scope it renders in ({% set %},
        /// {% macro %}, and those of the blocks in it that share that scope, as an if's do), which
        /// a loop around it keeps to each of its iterations, as Jinja does.</summary>
        public virtual void AddAssigned(HashSet<string> names) { }

        public static HashSet<string> Assigned(IEnumerable<Node> nodes)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var node in nodes) node.AddAssigned(names);
            return names;
        }

        protected static void Write(StringBuilder output, string text)
        {
            Values.CheckLength((long)output.Length + text.Length);
            output.Append(text);
        }
    }

    sealed class TextNode(string text) : Node
    {
        protected override void Emit(Scope scope, StringBuilder output) => Write(output, text);
    }

    sealed class OutputNode(Expr expr) : Node
    {
        protected override void Emit(Scope scope, StringBuilder output) => Write(output, Values.ToText(expr.Eval(scope)));
    }

    sealed class IfNode(List<(Expr Condition, List<Node> Body)> branches, List<Node>? otherwise) : Node
    {
        protected override void Emit(Scope scope, StringBuilder output)
        {
            foreach (var (condition, branch) in branches)
            {
                if (!Values.Truthy(condition.Eval(scope))) continue;
                foreach (var node in branch) node.Render(scope, output);
                return;
            }
            if (otherwise is not null) foreach (var node in otherwise) node.Render(scope, output);
        }

        public override void AddAssigned(HashSet<string> names)
        {
            foreach (var (_, branch) in branches) foreach (var node in branch) node.AddAssigned(names);
            if (otherwise is not null) foreach (var node in otherwise) node.AddAssigned(names);
        }
    }

    /// <summary>{% for %}: as in Jinja, its body is a scope of its own, begun again each
    /// iteration: the loop's variables and the names its body sets hide those outside it (which
    /// each iteration starts from) until the loop ends, and only a namespace's attributes carry a
    /// value out. Its else is a scope of its own too. A recursive loop's body may call
    /// loop(items): the loop again over those items, one level deeper, giving the text it renders.</summary>
    sealed class ForNode(List<string> targets, Expr iterable, Expr? filter, List<Node> body, List<Node>? otherwise, bool recursive) : Node
    {
        /// <summary>The names an iteration binds: the targets, loop and what the body sets.</summary>
        readonly string[] iterationNames = [.. targets.Append("loop").Union(Assigned(body))];
        readonly string[] otherwiseNames = otherwise is null ? [] : [.. Assigned(otherwise)];

        protected override void Emit(Scope scope, StringBuilder output) => Loop(scope, output, iterable.Eval(scope), depth0: 0);

        void Loop(Scope scope, StringBuilder output, object? iterable, int depth0)
        {
            var items = Values.Iterate(iterable).ToList();
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
                if (otherwise is null) return;
                var outside = Save(scope, otherwiseNames);
                foreach (var node in otherwise) node.Render(scope, output);
                Restore(scope, outside);
                return;
            }
            var saved = Save(scope, iterationNames);
            scope.Loops.Add(saved);
            var loop = new LoopInfo(items, depth0, recursive ? Recursion(scope, output, depth0 + 1) : null);
            try
            {
                for (var i = 0; i < items.Count; i++)
                {
                    scope.Budget.Spend(Iteration);
                    if (i > 0) Restore(scope, saved);
                    Bind(scope, items[i]);
                    loop.Index0 = i;
                    scope["loop"] = loop;
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

        /// <summary>loop(items) in a recursive loop's body: the loop over them, one level deeper, as
        /// text (bounded as deeply nested macro calls are: a tree may be deeper than the stack).
        /// Made apart from <see cref="Loop"/>, which would otherwise allocate the lambda's captures
        /// for every loop, recursive or not.</summary>
        Func<object?, string> Recursion(Scope scope, StringBuilder output, int depth0) => items =>
        {
            scope.Budget.EnterCall(macro: null);
            try
            {
                var text = new StringBuilder();
                Loop(scope, text, items, depth0);
                Values.CheckLength((long)output.Length + text.Length);
                return text.ToString();
            }
            finally { scope.Budget.LeaveCall(); }
        };

        /// <summary>The values that names have before a scope hides them (undefined: none).</summary>
        public static Dictionary<string, object?> Save(Scope scope, string[] names)
        {
            var saved = new Dictionary<string, object?>(names.Length, StringComparer.Ordinal);
            foreach (var name in names) saved[name] = scope.TryGetValue(name, out var v) ? v : Undefined.Instance;
            return saved;
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

    /// <summary>loop(items), the value of "loop" called: a recursive loop again over the items.</summary>
    static string LoopCall(object? loop, List<object?> arguments) => (loop, arguments) switch
    {
        (LoopInfo info, [var items]) => info.Recurse(items),
        (LoopInfo, _) => throw new JinjaException($"loop(...) takes the items to loop over, one argument, not {arguments.Count}"),
        (Undefined u, _) => throw u.Error(),
        _ => throw new JinjaException("loop is not a loop here, so it cannot be called"),
    };

    /// <summary>{% filter %}: its body's text through the filters. As in Jinja, the body is a
    /// scope of its own: a {% set %} in it lasts to its end.</summary>
    sealed class FilterNode(List<FilterCall> filters, List<Node> body) : Node
    {
        readonly string[] assigned = [.. Assigned(body)];

        protected override void Emit(Scope scope, StringBuilder output)
        {
            var outside = ForNode.Save(scope, assigned);
            var text = new StringBuilder();
            foreach (var node in body) node.Render(scope, text);
            ForNode.Restore(scope, outside);
            object? value = text.ToString();
            foreach (var filter in filters) value = filter.Apply(value, scope);
            Write(output, Values.ToText(value));
        }
    }

    /// <summary>A loop's "loop" variable, one for all its iterations: its attributes, and the
    /// methods loop.cycle(...) and loop.changed(...), and for a recursive loop loop(items).</summary>
    internal sealed class LoopInfo(List<object?> items, int depth0, Func<object?, string>? recurse)
    {
        /// <summary>loop(items): refused, as by Jinja, in a loop not marked recursive.</summary>
        public string Recurse(object? deeper) =>
            recurse is null ? throw new JinjaException("loop(...) calls the loop again only in a loop marked recursive ({% for x in xs recursive %})") : recurse(deeper);

        /// <summary>What loop.changed(...) was last called with; none yet (a call is then a change).</summary>
        TupleValue? changedLast;

        public int Index0 { get; set; }

        public object? this[string name] => name switch
        {
            "index0" => (long)Index0,
            "index" => (long)Index0 + 1,
            "first" => Index0 == 0,
            "last" => Index0 == items.Count - 1,
            "length" => (long)items.Count,
            "revindex" => (long)(items.Count - Index0),
            "revindex0" => (long)(items.Count - Index0 - 1),
            "previtem" => Index0 > 0 ? items[Index0 - 1] : Undefined.NoPrevious,
            "nextitem" => Index0 < items.Count - 1 ? items[Index0 + 1] : Undefined.NoNext,
            "depth" => depth0 + 1L,
            "depth0" => (long)depth0,
            "cycle" or "changed" => new BoundMethod(this, name),
            _ => Undefined.Attribute(this, name),
        };

        /// <summary>loop.cycle('odd', 'even'): the argument at the iteration's place, in turn.</summary>
        public object? Cycle(List<object?> args) =>
            args.Count > 0 ? args[Index0 % args.Count] : throw new JinjaException("loop.cycle() takes the items to cycle through");

        /// <summary>loop.changed(value, ...): whether the values differ from those of its last call.</summary>
        public bool Changed(List<object?> args)
        {
            var values = new TupleValue();
            values.AddRange(args);
            if (changedLast is not null && Values.Equal(changedLast, values)) return false;
            changedLast = values;
            return true;
        }

        public override string ToString() => $"<LoopContext {Index0 + 1}/{items.Count}>";
    }

    /// <summary>{% set %}: a value, or with no "=" the text its block renders (through filters
    /// where the tag names them: {% set x | trim %}...{% endset %}), bound to a name, to names
    /// unpacked from it ({% set a, b = pair %}), or to a namespace's attribute.</summary>
    sealed class SetNode(List<string> names, string? attribute, Expr? value, List<Node>? block, List<FilterCall> filters) : Node
    {
        public override void AddAssigned(HashSet<string> assigned)
        {
            // A namespace's attribute is set in the namespace, wherever it lives.
            if (attribute is null) assigned.UnionWith(names);
        }

        protected override void Emit(Scope scope, StringBuilder output)
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
        protected override void Emit(Scope scope, StringBuilder output) => throw new LoopControl(isBreak);
    }

    sealed class LoopControl(bool isBreak) : Exception
    {
        public bool Break => isBreak;
    }

    sealed class GenerationNode(List<Node> body) : Node
    {
        protected override void Emit(Scope scope, StringBuilder output)
        {
            foreach (var node in body) node.Render(scope, output);
        }

        public override void AddAssigned(HashSet<string> names)
        {
            foreach (var node in body) node.AddAssigned(names);
        }
    }

    /// <summary>Whether a macro's (or caller's) body reads varargs, kwargs: then it takes such arguments.</summary>
    sealed record ExtraArguments(bool Varargs, bool Kwargs);

    /// <summary>{% macro name(a, b=default) %}: the macro, bound to its name where the tag is
    /// reached, as Jinja defines it there.</summary>
    sealed class MacroNode(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, ExtraArguments extra) : Node
    {
        protected override void Emit(Scope scope, StringBuilder output) => scope[name] = new Macro(name, parameters, body, extra, scope);

        public override void AddAssigned(HashSet<string> names) => names.Add(name);
    }

    /// <summary>{% call(parameters) name(args) %}body{% endcall %}: the macro called with the body
    /// as its caller(parameters), which renders where the call is.</summary>
    sealed class CallNode(string name, List<Expr> arguments, List<(string Name, Expr? Default)> parameters, List<Node> body, ExtraArguments extra) : Node
    {
        protected override void Emit(Scope scope, StringBuilder output) =>
            Write(output, MacroCall.Invoke(scope, name, arguments, new Macro("caller", parameters, body, extra, scope)));
    }

    /// <summary>A defined macro: called, its body renders into the text it returns, in a scope of
    /// its own over the one it was defined in (a {% set %} in it stays there), its parameters
    /// bound from the arguments by position then by keyword, else from their defaults (evaluated
    /// at the call, after the parameters before them), else undefined, as Jinja binds them. One
    /// whose body reads varargs or kwargs gets there the arguments beyond its parameters: the
    /// positional ones as a tuple, the keyword ones as a mapping.</summary>
    sealed class Macro(string name, List<(string Name, Expr? Default)> parameters, List<Node> body, ExtraArguments extra, Scope definedIn)
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
            var varargs = extra.Varargs ? new TupleValue() : null;
            var kwargs = extra.Kwargs ? new Mapping() : null;
            var positional = 0;
            foreach (var argument in arguments)
            {
                if (argument is KeyValuePair<string, object?> keyword)
                {
                    if (parameters.All(p => p.Name != keyword.Key))
                    {
                        if (kwargs is null) throw new JinjaException($"macro '{name}' takes no keyword argument '{keyword.Key}'");
                        kwargs[keyword.Key] = keyword.Value;
                    }
                    else if (!given.TryAdd(keyword.Key, keyword.Value)) throw new JinjaException($"macro '{name}' got multiple values for argument '{keyword.Key}'");
                }
                else if (positional < parameters.Count) given[parameters[positional++].Name] = argument;
                else if (varargs is not null) varargs.Add(argument);
                else throw new JinjaException($"macro '{name}' takes not more than {parameters.Count} argument(s)");
            }
            budget.EnterCall(name);
            try
            {
                var scope = new Scope(definedIn, budget, definedIn.Clock);
                // Innermost first, so a name several loops bound gets back what the outermost hid.
                for (var i = definedIn.Loops.Count - 1; i >= loops; i--) ForNode.Restore(scope, definedIn.Loops[i]);
                foreach (var (parameter, fallback) in parameters)
                    scope[parameter] = given.TryGetValue(parameter, out var value) ? value : fallback is null ? Undefined.Parameter(parameter) : fallback.Eval(scope);
                if (varargs is not null) scope["varargs"] = varargs;
                if (kwargs is not null) scope["kwargs"] = kwargs;
                if (caller is not null) scope["caller"] = caller;
                var output = new StringBuilder();
                foreach (var node in body) node.Render(scope, output);
                return output.ToString();
            }
            finally { budget.LeaveCall(); }
        }
    }
}
