// A JSON schema compiled for constrained decoding (OpenAI's Structured Outputs, vLLM's guided
// decoding): an immutable table of nodes that JsonGrammar walks byte by byte. Compiled once per
// schema text and shared by every request that sends it, so that JsonVocabulary's per-state
// cache (keyed by the schema's identity) serves them all.
//
// The language accepted is a non-empty subset of the schema's: keys come in the order of
// `properties` (as OpenAI writes them), extra keys are never written, enum and const values are
// written in their compact form, and of union alternatives that begin with the same byte only
// the first is kept, except objects told apart by their first property: a discriminated union
// (see Kind.Tagged), such as the calls to different tools of a tool_choice "required". A keyword that would constrain values without being enforced is refused,
// naming where it is, unless it sits on one alternative of a union that has others: that
// alternative is dropped (System.Text.Json writes a number read from strings as
// {"type": ["string", "integer"], "pattern": ...}; the integer is left).
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Stratus.Inference;

public sealed class JsonSchema
{
    internal enum Kind : byte
    {
        /// <summary>An object with the keys of <see cref="Node.Properties"/>, in order.</summary>
        Object,
        /// <summary>An object with any keys, whose values are <see cref="Node.A"/>.</summary>
        Map,
        /// <summary>Items <see cref="Node.A"/>, between <see cref="Node.Min"/> and <see cref="Node.Max"/> of them.</summary>
        Array,
        /// <summary>Of <see cref="Node.Format"/>, or of <see cref="Node.Min"/> to <see cref="Node.Max"/> characters.</summary>
        String,
        Number,
        Integer,
        /// <summary>One of the texts of the trie rooted at <see cref="Node.A"/> (enum, const, true, false, null).</summary>
        Literal,
        /// <summary>One of its alternatives, told apart by the first byte (<see cref="Node.A"/>: the dispatch table's offset).</summary>
        Union,
        /// <summary>A discriminated union: one of several objects that begin with the same
        /// required property (key <see cref="Node.Keys"/>, a trie of one key) whose values are
        /// consts or enums no two of them share. The value is read on the trie rooted at
        /// <see cref="Node.A"/>, whose texts end in the object they select; the container then
        /// goes on as that object after its first property. The alternatives are
        /// <see cref="Tags"/>[<see cref="Node.Min"/>..+<see cref="Node.Count"/>].</summary>
        Tagged,
    }

    internal struct Node
    {
        public Kind Kind;
        /// <summary>Map: the values' node; Array: the items' node; Literal: the trie's root;
        /// Union: offset in <see cref="dispatch"/>; Object: first property in <see cref="properties"/>.</summary>
        public int A;
        /// <summary>Object: number of properties.</summary>
        public int Count;
        /// <summary>Object: offset in <see cref="keyRoots"/> of the key tries, one for each next property index.</summary>
        public int Keys;
        /// <summary>Array: how many items; String: how many characters (Unicode code points, as
        /// JSON Schema counts them), at least and at most (int.MaxValue: no bound).</summary>
        public int Min, Max;
        public StringFormat Format;
        /// <summary>Number or integer: the bounds and multipleOf its values keep to (null: none,
        /// any number of digits, and a number's fraction and exponent).</summary>
        public NumberRange? Range;
        /// <summary>Object: whether the object may close with no more keys from each next property index on (bit i).</summary>
        public ulong[]? Closable;
        /// <summary>Containers open at once that the shortest valid value needs; <see cref="Unreachable"/> where none fits.</summary>
        public int MinDepth;
    }

    internal readonly record struct Property(string Name, int Node, bool Required);

    internal const int Unreachable = int.MaxValue / 2;

    /// <summary>Node ids and counts share a 32-bit frame in JsonGrammar's stack.</summary>
    const int MaxNodes = ushort.MaxValue;
    const int MaxTrieNodes = 1 << 20;
    /// <summary>Schemas compiled one inside another: a document no more than 32 containers deep
    /// needs far fewer, and each costs the compiler a few hundred bytes of the stack.</summary>
    const int MaxNesting = 256;
    /// <summary>minItems, maxItems, minLength and maxLength above this are refused: JsonGrammar
    /// counts items and characters in 16 bits.</summary>
    public const int MaxCountLimit = ushort.MaxValue;

    internal Node[] Nodes = [];
    internal Property[] Properties = [];
    /// <summary>The alternatives of every <see cref="Kind.Tagged"/> node, one run after another.</summary>
    internal int[] Tags = [];
    /// <summary>For each union, 128 entries (a value never begins with a non-ASCII byte): the alternative a first byte selects, or -1.</summary>
    internal int[] Dispatch = [];
    internal int[] KeyRoots = [];
    internal int Root;

    // The tries of keys and literals: node n's edges are EdgeBytes/EdgeTargets[EdgeStart[n]..EdgeStart[n + 1]].
    internal int[] EdgeStart = [];
    internal byte[] EdgeBytes = [];
    internal int[] EdgeTargets = [];
    /// <summary>Key tries: the property a whole key names (-1 inside a key); literal tries: 0 where a text ends, else -1.</summary>
    internal int[] TrieValue = [];
    /// <summary>Key tries: the least <see cref="Node.MinDepth"/> of the properties below a trie node.</summary>
    internal int[] TrieDepth = [];

    /// <summary>The schema's text as compiled (compact).</summary>
    public string Text { get; private set; } = "";

    static readonly ConcurrentDictionary<string, JsonSchema> Compiled = new();
    static readonly Lock keeping = new();
    static long compiledBytes;
    /// <summary>The compiled schemas kept, by the size of their tables, not their number: a
    /// 17 KB schema of 600 optional properties compiles to 12 MB of key tries, and 256 of
    /// them were kept, 3 GB from a few megabytes of requests.</summary>
    const long MaxCompiledBytes = 64L << 20;

    /// <summary>About what the tables take in memory.</summary>
    internal long Footprint =>
        Nodes.Length * (long)System.Runtime.CompilerServices.Unsafe.SizeOf<Node>() + Nodes.Sum(n => n.Closable?.Length ?? 0) * 8L
        + Properties.Length * 16L + (Tags.Length + Dispatch.Length + KeyRoots.Length + EdgeStart.Length + EdgeTargets.Length + TrieValue.Length + TrieDepth.Length) * 4L
        + EdgeBytes.Length + Text.Length * 2L;

    /// <summary>JSON mode's schema, {"type": "object"}: one JSON object, any keys and values.</summary>
    public static JsonSchema AnyObject { get; } = Compile(JsonDocument.Parse("{\"type\":\"object\"}").RootElement);


    /// <summary>The schema compiled, or the one compiled before from the same text.</summary>
    /// <param name="path">How messages name the schema (the API's parameter, say).</param>
    /// <exception cref="StratusUserException">The schema is malformed, uses a keyword Stratus
    /// does not enforce, or no document can be valid against it; the message names where.</exception>
    public static JsonSchema Compile(JsonElement schema, string path = "schema") => Compile(schema, path, objectRoot: true);

    /// <param name="objectRoot">Whether the root must be one object, as Structured Outputs
    /// require; the calls of a tool_choice "required" are an array (<see cref="ToolCalls"/>).</param>
    static JsonSchema Compile(JsonElement schema, string path, bool objectRoot)
    {
        string text;
        // System.Text.Json parses a string with half of a surrogate pair but will not read it,
        // nor write it back: the writer's JsonException would read as a malformed body.
        try { text = JsonSerializer.Serialize(schema, Unbounded); }
        catch (JsonException) when (HalfSurrogate(schema, path) is { } where) { throw new StratusUserException($"{where} half of a surrogate pair (a \\u escape of D800 to DFFF without its other half), which is no text"); }
        // Kept apart by their root's rule: a schema with any root must not serve a response_format.
        var key = objectRoot ? text : "any root:" + text;
        if (Compiled.TryGetValue(key, out var known)) return known;
        var compiled = new Compiler(schema, path, objectRoot).Run();
        compiled.Text = text;
        var bytes = compiled.Footprint;
        lock (keeping)
        {
            if (Compiled.TryGetValue(key, out known)) return known;
            // One larger than all the room is used and not kept.
            if (bytes > MaxCompiledBytes) return compiled;
            if (compiledBytes + bytes > MaxCompiledBytes)
            {
                Compiled.Clear();
                compiledBytes = 0;
            }
            compiledBytes += bytes;
            return Compiled[key] = compiled;
        }
    }

    /// <summary>The schema of a tool_choice "required" answer: an array of one or more calls
    /// (exactly one unless <paramref name="parallel"/>), each {"name": one of the tools' names,
    /// "arguments": an object of that tool's parameters}, a discriminated union by name (see
    /// <see cref="Kind.Tagged"/>). The caller compiles each tool's parameters on their own first,
    /// so that one Stratus cannot enforce is refused naming its tool.</summary>
    /// <param name="tools">Each tool's name and parameters (null: a function of no parameters).</param>
    public static JsonSchema ToolCalls(IReadOnlyList<(string Name, JsonElement? Parameters)> tools, bool parallel, string path = "tools")
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("type", "array");
            json.WriteNumber("minItems", 1);
            if (!parallel) json.WriteNumber("maxItems", 1);
            json.WriteStartObject("items");
            json.WriteStartArray("anyOf");
            for (var i = 0; i < tools.Count; i++)
            {
                var (name, parameters) = tools[i];
                json.WriteStartObject();
                json.WriteString("type", "object");
                json.WriteStartObject("properties");
                json.WriteStartObject("name");
                json.WriteString("const", name);
                json.WriteEndObject();
                json.WritePropertyName("arguments");
                if (parameters is { } schema) WriteMoved(json, schema, $"/items/anyOf/{i}/properties/arguments");
                else json.WriteRawValue(NoParameters);
                json.WriteEndObject();
                json.WriteStartArray("required");
                json.WriteStringValue("name");
                json.WriteStringValue("arguments");
                json.WriteEndArray();
                json.WriteBoolean("additionalProperties", false);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        using var document = JsonDocument.Parse(buffer.WrittenMemory, new JsonDocumentOptions { MaxDepth = int.MaxValue });
        return Compile(document.RootElement, path, objectRoot: false);
    }

    /// <summary>The parameters of a function that declares none: OpenAI's empty parameter list, {}.</summary>
    public const string NoParameters = "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}";

    /// <summary>A tool's parameters written where <paramref name="at"/> (a JSON pointer) puts them
    /// in <see cref="ToolCalls"/>' schema: its references within itself ("#/$defs/x") made to
    /// point there. Values that are data, not schemas (const, enum, default, examples), are
    /// written as they are.</summary>
    static void WriteMoved(Utf8JsonWriter json, JsonElement value, string at)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                json.WriteStartObject();
                foreach (var property in value.EnumerateObject())
                {
                    json.WritePropertyName(property.Name);
                    if (property.Name == "$ref" && property.Value.ValueKind == JsonValueKind.String && property.Value.GetString() is { } target && target.StartsWith('#'))
                        json.WriteStringValue("#" + at + target[1..]);
                    else if (property.Name is "const" or "enum" or "default" or "examples") property.Value.WriteTo(json);
                    else WriteMoved(json, property.Value, at);
                }
                json.WriteEndObject();
                break;
            case JsonValueKind.Array:
                json.WriteStartArray();
                foreach (var item in value.EnumerateArray()) WriteMoved(json, item, at);
                json.WriteEndArray();
                break;
            default:
                value.WriteTo(json);
                break;
        }
    }

    /// <summary>The serializer's 64 levels would refuse, as a malformed body, a schema that
    /// IChatClient callers parse deeper (its depth is the caller's parser's to bound; the compiler
    /// bounds what it nests).</summary>
    static readonly JsonSerializerOptions Unbounded = new() { MaxDepth = int.MaxValue };

    /// <summary>Where in <paramref name="value"/> a string or key holds half of a surrogate pair
    /// ("schema.enum[1] holds", "schema.properties has a key that holds"); null where none does.</summary>
    static string? HalfSurrogate(JsonElement value, string path)
    {
        // Depth first from a stack, not by recursion: the body's depth is the parser's to bound.
        var pending = new Stack<(JsonElement Value, string Path)>([(value, path)]);
        while (pending.TryPop(out var at))
        {
            switch (at.Value.ValueKind)
            {
                case JsonValueKind.String when !Reads(() => at.Value.GetString()):
                    return $"{at.Path} holds";
                case JsonValueKind.Object:
                    foreach (var property in at.Value.EnumerateObject())
                    {
                        if (!Reads(() => property.Name)) return $"{at.Path} has a key that holds";
                        pending.Push((property.Value, $"{at.Path}.{property.Name}"));
                    }
                    break;
                case JsonValueKind.Array:
                    var i = 0;
                    foreach (var item in at.Value.EnumerateArray()) pending.Push((item, $"{at.Path}[{i++}]"));
                    break;
            }
        }
        return null;

        static bool Reads(Func<string?> read)
        {
            try { read(); return true; }
            catch (InvalidOperationException) { return false; }
        }
    }

    /// <summary>The characters a document may need to finish from wherever the mask lets a
    /// sequence go, as a vocabulary is asked to spell them: the closers, ':' and '0' (a digit
    /// ends a number and fills a \u escape), ',' between required members, the rest of every key
    /// and literal that may have begun, the low half of a surrogate pair's escape, and the whole
    /// of the values the schema requires.</summary>
    /// <param name="spells">Whether the vocabulary can write a character (one rune).</param>
    /// <param name="opensArrays">Whether any token can open an array: where none can, no ']' is needed to close one.</param>
    internal IEnumerable<string> Needs(Func<string, bool> spells, bool opensArrays)
    {
        var needed = new HashSet<string> { "{", "}", "\"", ":", "0" };
        var wholes = new Dictionary<int, HashSet<string>>();
        var escapes = false;
        foreach (var id in Reachable())
        {
            ref readonly var node = ref Nodes[id];
            escapes |= node.Kind == Kind.Map || (node.Kind == Kind.String && node.Format == StringFormat.None);
            switch (node.Kind)
            {
                case Kind.Object:
                    var required = 0;
                    for (var p = 0; p < node.Count; p++)
                    {
                        var property = Properties[node.A + p];
                        if (Nodes[property.Node].MinDepth >= Unreachable) continue;
                        if (property.Required) required++;
                        // Once a key has begun, the rest of it and a value must follow.
                        AddText(needed, KeyText(property.Name)[1..]);
                        needed.UnionWith(Whole(property.Node, spells, wholes));
                    }
                    if (required > 0 && node.Count > 1) needed.Add(",");
                    break;
                // Values and items that cannot be written (additionalProperties or items false)
                // need nothing: the mask never begins one.
                case Kind.Map:
                    if (Nodes[node.A].MinDepth < Unreachable) needed.UnionWith(Whole(node.A, spells, wholes));
                    break;
                case Kind.Array when opensArrays:
                    needed.Add("]");
                    if (node.Max > 0 && Nodes[node.A].MinDepth < Unreachable) needed.UnionWith(Whole(node.A, spells, wholes));
                    if (node.Min > 1) needed.Add(",");
                    break;
                case Kind.Literal:
                    foreach (var literal in Texts(node.A)) AddText(needed, literal[1..]);
                    break;
                case Kind.String:
                    needed.UnionWith(Contents(node, spells));
                    break;
                case Kind.Number or Kind.Integer when node.Range is { } range:
                    needed.UnionWith(range.Needs());
                    break;
                case Kind.Tagged:
                    // The discriminator's key and values; the objects they select are reachable themselves.
                    foreach (var key in Texts(node.Keys)) AddText(needed, key[1..]);
                    foreach (var literal in Texts(node.A)) AddText(needed, literal[1..]);
                    break;
            }
        }
        needed.UnionWith(Whole(Root, spells, wholes));
        // After the escape of a surrogate pair's high half (\ud800 to \udbff) only its low half
        // may come: a vocabulary that spells the one needs the digit that begins the other.
        if (escapes && spells("\\") && spells("u") && (spells("d") || spells("D")) && Runes("89abAB").Any(spells))
            needed.Add(Runes("cdefCDEF").FirstOrDefault(spells) ?? "c");
        return needed;
    }

    /// <summary>What writing the shortest whole value of <paramref name="id"/> takes: of a
    /// union's or literal's choices, the first the vocabulary can spell. Worked out once per node
    /// (<paramref name="wholes"/>): a union tries its alternatives before taking one, and without
    /// it each level of nested unions doubled the work (30 levels took hours).</summary>
    HashSet<string> Whole(int id, Func<string, bool> spells, Dictionary<int, HashSet<string>> wholes)
    {
        if (wholes.TryGetValue(id, out var known)) return known;
        // Filled in place: a node met again inside its own value (recursion) adds what is known
        // of it so far, as the shortest value does not go through itself.
        var needed = wholes[id] = [];
        ref readonly var node = ref Nodes[id];
        switch (node.Kind)
        {
            case Kind.Object:
                needed.UnionWith(["{", "}"]);
                var required = 0;
                for (var p = 0; p < node.Count; p++)
                {
                    var property = Properties[node.A + p];
                    if (!property.Required) continue;
                    required++;
                    AddText(needed, KeyText(property.Name));
                    needed.Add(":");
                    needed.UnionWith(Whole(property.Node, spells, wholes));
                }
                if (required > 1) needed.Add(",");
                break;
            case Kind.Map:
                needed.UnionWith(["{", "}"]);
                break;
            case Kind.Array:
                needed.UnionWith(["[", "]"]);
                if (node.Min > 0) needed.UnionWith(Whole(node.A, spells, wholes));
                if (node.Min > 1) needed.Add(",");
                break;
            case Kind.String:
                needed.Add("\"");
                needed.UnionWith(Contents(node, spells));
                break;
            case Kind.Number or Kind.Integer when node.Range is { } range:
                AddText(needed, range.Shortest);
                break;
            case Kind.Number or Kind.Integer:
                needed.Add("0");
                break;
            case Kind.Literal:
                var texts = Texts(node.A).ToList();
                AddText(needed, texts.FirstOrDefault(t => Runes(t).All(spells)) ?? texts[0]);
                break;
            case Kind.Union or Kind.Tagged:
                var leaves = (node.Kind == Kind.Union ? Leaves(id) : TagsOf(node)).ToList();
                needed.UnionWith(leaves.Select(leaf => Whole(leaf, spells, wholes)).FirstOrDefault(leaf => leaf.All(spells)) ?? Whole(leaves[0], spells, wholes));
                break;
        }
        return needed;
    }

    /// <summary>What a string may need between its quotes once begun: the rest of a value of its
    /// format, or a character to reach its minLength (the first of a few the vocabulary spells).</summary>
    static IEnumerable<string> Contents(in Node node, Func<string, bool> spells)
    {
        if (node.Format != StringFormat.None) return StringFormats.Needs(node.Format, spells);
        if (node.Min == 0) return [];
        const string Plain = "abcdefghijklmnopqrstuvwxyz0123456789";
        return [Runes(Plain).FirstOrDefault(spells) ?? "a"];
    }

    static void AddText(HashSet<string> needed, string text) => needed.UnionWith(Runes(text));

    static IEnumerable<string> Runes(string text) => text.EnumerateRunes().Select(r => r.ToString());

    /// <summary>The alternatives a union's first bytes select, in order.</summary>
    internal IEnumerable<int> Leaves(int union)
    {
        var offset = Nodes[union].A;
        var seen = new HashSet<int>();
        for (var b = 0; b < 128; b++)
            if (Dispatch[offset + b] is var leaf and >= 0 && seen.Add(leaf)) yield return leaf;
    }

    /// <summary>The objects a discriminated union selects among.</summary>
    internal ArraySegment<int> TagsOf(in Node tagged) => new(Tags, tagged.Min, tagged.Count);

    /// <summary>Every node a document may reach from the root.</summary>
    IEnumerable<int> Reachable()
    {
        var seen = new HashSet<int> { Root };
        var pending = new Stack<int>([Root]);
        while (pending.TryPop(out var id))
        {
            yield return id;
            var node = Nodes[id];
            IEnumerable<int> next = node.Kind switch
            {
                Kind.Object => Properties.AsSpan(node.A, node.Count).ToArray().Select(p => p.Node),
                Kind.Map or Kind.Array => [node.A],
                Kind.Union => Leaves(id),
                Kind.Tagged => TagsOf(node),
                _ => [],
            };
            foreach (var n in next)
                if (Nodes[n].MinDepth < Unreachable && seen.Add(n)) pending.Push(n);
        }
    }

    /// <summary>The texts of the trie rooted at <paramref name="root"/>, in byte order.</summary>
    IEnumerable<string> Texts(int root)
    {
        var bytes = new List<byte>();
        var result = new List<string>();
        // Depth first from a stack, not by recursion: a trie is as deep as its longest text, and
        // a const may be as long as the request.
        // Each entry: an edge to follow (-1: none, at the root) and the length of the text before it.
        var pending = new Stack<(int Edge, int Length)>([(-1, 0)]);
        while (pending.TryPop(out var at))
        {
            bytes.RemoveRange(at.Length, bytes.Count - at.Length);
            var node = root;
            if (at.Edge >= 0)
            {
                bytes.Add(EdgeBytes[at.Edge]);
                node = EdgeTargets[at.Edge];
            }
            if (TrieValue[node] >= 0) result.Add(Encoding.UTF8.GetString([.. bytes]));
            // Pushed last to first, so that texts come in byte order, as the mask meets them.
            for (var e = EdgeStart[node + 1] - 1; e >= EdgeStart[node]; e--) pending.Push((e, bytes.Count));
        }
        return result;
    }

    /// <summary>A key as the grammar has it written: quoted, with only what JSON requires escaped.</summary>
    internal static string KeyText(string name) => Quote(name);

    static string Quote(string text)
    {
        var quoted = new StringBuilder("\"");
        foreach (var c in text)
        {
            if (c is '"' or '\\') quoted.Append('\\').Append(c);
            else if (c < 0x20) quoted.Append($"\\u{(int)c:x4}");
            else quoted.Append(c);
        }
        return quoted.Append('"').ToString();
    }

    /// <summary>A value's compact text, as a literal is written (strings escaped as keys are).</summary>
    static string Compact(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => Quote(value.GetString()!),
        JsonValueKind.Object => "{" + string.Join(",", value.EnumerateObject().Select(p => Quote(p.Name) + ":" + Compact(p.Value))) + "}",
        JsonValueKind.Array => "[" + string.Join(",", value.EnumerateArray().Select(Compact)) + "]",
        _ => value.GetRawText(),
    };

    /// <summary>Builds the tables from a schema's JSON, then settles unions, depths and key tries.</summary>
    sealed class Compiler(JsonElement document, string rootPath, bool objectRoot)
    {
        readonly List<Node> nodes = [];
        readonly List<int[]> alternatives = [];   // per node: a union's alternatives before dispatch
        readonly Dictionary<string, int> byPointer = [];
        /// <summary>The keys of <see cref="byPointer"/> in the order added, so that dropping an
        /// alternative forgets what it added without going through them all.</summary>
        readonly List<string> pointers = [];
        /// <summary>Per node: an object's properties in order, laid out flat when settled; else null.</summary>
        readonly List<List<(string Name, int Node, bool Required)>?> members = [];
        readonly Trie literals = new();
        readonly List<(int Node, List<string> Texts)> literalTexts = [];
        int any = -1;
        /// <summary>Schemas being compiled, one inside another (<see cref="MaxNesting"/>).</summary>
        int nesting;

        static readonly HashSet<string> Annotations = ["title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs", "definitions", "deprecated", "readOnly", "writeOnly"];
        static readonly HashSet<string> ObjectKeywords = ["properties", "required", "additionalProperties"];
        static readonly HashSet<string> ArrayKeywords = ["items", "minItems", "maxItems"];
        static readonly HashSet<string> StringKeywords = ["minLength", "maxLength"];
        /// <summary>Keywords that constrain one type's values and are not enforced: a type list drops the type.</summary>
        static readonly Dictionary<string, string> Unenforced = new()
        {
            // A format of StringFormats' is enforced; any other is not.
            ["pattern"] = "string", ["format"] = "string", ["contentEncoding"] = "string", ["contentMediaType"] = "string",
            ["patternProperties"] = "object", ["propertyNames"] = "object", ["minProperties"] = "object", ["maxProperties"] = "object",
            ["dependentRequired"] = "object", ["dependentSchemas"] = "object", ["unevaluatedProperties"] = "object", ["dependencies"] = "object",
            ["prefixItems"] = "array", ["contains"] = "array", ["minContains"] = "array", ["maxContains"] = "array", ["uniqueItems"] = "array", ["unevaluatedItems"] = "array",
        };
        /// <summary>The bounds of a number or integer, enforced by <see cref="NumberRange"/> and on
        /// enum and const values (which they filter), as multipleOf is.</summary>
        static readonly string[] Bounds = ["minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"];
        static readonly HashSet<string> NumberKeywords = [.. Bounds, "multipleOf"];
        static readonly string[] Types = ["object", "array", "string", "number", "integer", "boolean", "null"];

        /// <summary>A keyword Stratus does not enforce: an alternative of a union that holds one is dropped.</summary>
        sealed class Unsupported(string message) : Exception(message);

        public JsonSchema Run()
        {
            var schema = new JsonSchema();
            try
            {
                if (document.ValueKind != JsonValueKind.Object) throw Invalid(rootPath, "must be an object");
                var root = Compile(document, "#", rootPath);
                return Settle(schema, root);
            }
            catch (Unsupported e) { throw new StratusUserException(e.Message); }
        }

        static StratusUserException Invalid(string path, string what) => new($"{path} {what}");

        int NewNode(Node node, int[]? alternativesOf = null)
        {
            if (nodes.Count == MaxNodes) throw Invalid(rootPath, $"is too large: more than {MaxNodes} schemas in it");
            nodes.Add(node);
            alternatives.Add(alternativesOf ?? []);
            members.Add(null);
            return nodes.Count - 1;
        }

        int Any()
        {
            if (any >= 0) return any;
            any = NewNode(new Node { Kind = Kind.Union });
            var map = NewNode(new Node { Kind = Kind.Map, A = any });
            var array = NewNode(new Node { Kind = Kind.Array, A = any, Max = int.MaxValue });
            alternatives[any] = [map, array, NewNode(new Node { Kind = Kind.String, Max = int.MaxValue }), NewNode(new Node { Kind = Kind.Number }), Literal(["true", "false", "null"])];
            return any;
        }

        int Literal(List<string> texts)
        {
            var id = NewNode(new Node { Kind = Kind.Literal, A = literals.Add(texts) });
            literalTexts.Add((id, texts));
            return id;
        }

        int Empty() => Literal([]);

        /// <summary>The node for the schema at <paramref name="pointer"/>, compiled once: a $ref to
        /// it (recursion included) gets the same node.</summary>
        int Compile(JsonElement schema, string pointer, string path)
        {
            if (byPointer.TryGetValue(pointer, out var known)) return known;
            if (schema.ValueKind == JsonValueKind.True) return Remember(pointer, Any());
            if (schema.ValueKind == JsonValueKind.False) return Remember(pointer, Empty());
            if (schema.ValueKind != JsonValueKind.Object) throw Invalid(path, $"must be a schema (an object), got {Describe(schema)}");
            // Each schema inside another is compiled a level deeper on the stack, and a chain of
            // $refs (each to a new place) nests without bound in a small request: a request
            // thread's stack overflowing would end the process.
            if (nesting == MaxNesting) throw Invalid(path, $"nests more than {MaxNesting} schemas, one inside another or through $ref");
            nesting++;
            try
            {
                // Reserved before its parts, so a $ref back to it (recursion) finds it; filled below.
                var id = Remember(pointer, NewNode(new Node { Kind = Kind.Union }));
                alternatives[id] = Build(schema, pointer, path);
                return id;
            }
            finally { nesting--; }
        }

        /// <summary>The alternatives the schema allows (a union node with one is an alias).</summary>
        int[] Build(JsonElement schema, string pointer, string path)
        {
            foreach (var keyword in schema.EnumerateObject())
            {
                var name = keyword.Name;
                if (Annotations.Contains(name) || name is "type" or "enum" or "const" or "anyOf" or "$ref" || ObjectKeywords.Contains(name) || ArrayKeywords.Contains(name) || StringKeywords.Contains(name) || NumberKeywords.Contains(name) || Unenforced.ContainsKey(name)) continue;
                var why = name is "oneOf" or "allOf" or "not" or "if" or "then" or "else"
                    ? "only anyOf combines schemas"
                    : "Stratus enforces type, properties, required, additionalProperties, items, minItems, maxItems, minLength, maxLength, format (date-time, date, time, uuid, uri), minimum, maximum, exclusiveMinimum, exclusiveMaximum and multipleOf, enum, const, anyOf and $ref";
                throw new Unsupported($"{path}.{name} is not supported: {why}");
            }
            if (schema.TryGetProperty("$ref", out var reference))
            {
                OnlyAnnotationsBeside(schema, "$ref", path);
                if (reference.ValueKind != JsonValueKind.String) throw Invalid($"{path}.$ref", "must be a string");
                var target = reference.GetString()!;
                var (element, targetPath) = Resolve(target, path);
                return [Compile(element, target, targetPath)];
            }
            if (schema.TryGetProperty("anyOf", out var anyOf))
            {
                OnlyAnnotationsBeside(schema, "anyOf", path);
                if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0) throw Invalid($"{path}.anyOf", "must be a non-empty array of schemas");
                var kept = new List<int>();
                Unsupported? first = null;
                var i = 0;
                foreach (var alternative in anyOf.EnumerateArray())
                {
                    // An alternative with a keyword that is not enforced is dropped, with what it compiled.
                    var (nodeCount, pointerCount) = (nodes.Count, pointers.Count);
                    try { kept.Add(Compile(alternative, $"{pointer}/anyOf/{i}", $"{path}.anyOf[{i}]")); }
                    catch (Unsupported e)
                    {
                        first ??= e;
                        Rollback(nodeCount, pointerCount);
                    }
                    i++;
                }
                // A value that could only be null (zod's .nullable() of a string with a pattern)
                // is refused, not written as null every time.
                if (first is not null && kept.All(OnlyNull)) throw new Unsupported($"{first.Message}, and without that alternative only null would be left");
                return [.. kept];
            }

            var types = Types.ToList();
            var typed = false;
            if (schema.TryGetProperty("type", out var type))
            {
                typed = true;
                var listed = type.ValueKind == JsonValueKind.Array ? type.EnumerateArray().ToList() : [type];
                if (listed.Count == 0 || listed.Any(t => t.ValueKind != JsonValueKind.String || !Types.Contains(t.GetString()!)))
                    throw Invalid($"{path}.type", $"must be one of {string.Join(", ", Types)} or a list of them, got {Describe(type)}");
                types = [.. Types.Where(t => listed.Any(l => l.GetString() == t))];
            }
            else
            {
                // Keywords of one type, without a type, constrain only values of that type: the
                // language generated is that type's, a subset.
                var objectish = ObjectKeywords.Any(k => schema.TryGetProperty(k, out _));
                var arrayish = ArrayKeywords.Any(k => schema.TryGetProperty(k, out _));
                var stringish = StringKeywords.Any(k => schema.TryGetProperty(k, out _)) || FormatOf(schema) != StringFormat.None;
                var numberish = NumberKeywords.Any(k => schema.TryGetProperty(k, out _));
                if (objectish || arrayish || stringish || numberish)
                    types = [.. types.Where(t => (objectish && t == "object") || (arrayish && t == "array") || (stringish && t == "string") || (numberish && t is "number" or "integer"))];
            }
            var literal = schema.TryGetProperty("enum", out _) || schema.TryGetProperty("const", out _);
            foreach (var keyword in schema.EnumerateObject())
            {
                if (!Unenforced.TryGetValue(keyword.Name, out var of) || (keyword.Name == "format" && FormatOf(schema) != StringFormat.None)) continue;
                var left = types.Where(t => t != of).ToList();
                // Left with only null, the value could never be given (as in a nullable string of a pattern).
                if (left.Count == 0 || !typed || left is ["null"])
                    throw new Unsupported($"{path}.{keyword.Name} is not supported: Stratus does not enforce it{(of == "string" ? " (the string's contents are free)" : "")}{(left is ["null"] ? ", and without it only null would be left" : "")}");
                types = left;
            }

            if (literal) return [Literal(Values(schema, types, StringOf(schema, path), path))];
            var result = new List<int>();
            foreach (var t in types)
                result.Add(t switch
                {
                    "object" => ObjectOf(schema, pointer, path),
                    "array" => ArrayOf(schema, pointer, path),
                    "string" => NewNode(StringOf(schema, path)),
                    "number" => NumberOf(schema, path, integer: false),
                    "integer" => NumberOf(schema, path, integer: true),
                    "boolean" => Literal(["true", "false"]),
                    _ => Literal(["null"]),
                });
            return [.. result];
        }

        /// <summary>Whether a node allows only null (through aliases).</summary>
        bool OnlyNull(int id)
        {
            while (nodes[id].Kind == Kind.Union && alternatives[id] is [var only]) id = only;
            return nodes[id].Kind == Kind.Literal && literalTexts.Find(l => l.Node == id).Texts is ["null"];
        }

        /// <summary>Fraction digits a bounded number may have where neither its bounds nor a
        /// multipleOf ask for more or fewer: enough for any answer a model gives in decimal,
        /// leaving 13 digits before the point (19 in all once scaled).</summary>
        const int DefaultFraction = 6;

        /// <summary>A number or integer node: with bounds or multipleOf, its range, each bound made
        /// the value it allows first or last (a number's with the fraction digits it is written
        /// with: those of its bounds, at least <see cref="DefaultFraction"/>, or those of a
        /// multipleOf of 0.1, 0.01, ...). A number whose multipleOf is a whole number is written
        /// as an integer, its multiple.</summary>
        int NumberOf(JsonElement schema, string path, bool integer)
        {
            var bounds = Bounds.Where(k => schema.TryGetProperty(k, out _)).ToList();
            var what = integer ? "integer" : "number";
            var stepped = schema.TryGetProperty("multipleOf", out var step);
            if (bounds.Count == 0 && !stepped) return NewNode(new Node { Kind = integer ? Kind.Integer : Kind.Number });
            // Finer bounds than MaxFraction digits are rounded inward to it, as an integer's to integers.
            var scale = bounds.Select(k => -Decimal(schema.GetProperty(k), $"{path}.{k}").Exponent).Append(DefaultFraction).Max();
            var (fraction, multiple) = (integer ? 0 : Math.Min(scale, NumberRange.MaxFraction), 1);
            if (stepped)
            {
                var (significant, exponent, negative) = Decimal(step, $"{path}.multipleOf");
                if (negative || significant.Length == 0) throw Invalid($"{path}.multipleOf", $"must be a number greater than 0, got {Describe(step)}");
                // A power of ten below 1 takes a number to that many fraction digits; every integer is its multiple.
                if (significant == "1" && exponent < 0) fraction = integer ? 0 : -exponent;
                else if (exponent >= 0 && significant.Length + exponent <= 7 && int.Parse(significant + new string('0', exponent), CultureInfo.InvariantCulture) is var m && m <= NumberRange.MaxMultiple)
                    (integer, fraction, multiple) = (true, 0, m);
                else throw new Unsupported($"{path}.multipleOf {step.GetRawText()} is not supported: Stratus enforces a multipleOf that is a whole number up to {NumberRange.MaxMultiple} or a power of ten below 1 (0.1, 0.01, ...)");
            }
            if (fraction > NumberRange.MaxFraction)
                throw new Unsupported($"{path}.multipleOf {step.GetRawText()} is not supported: Stratus writes at most {NumberRange.MaxFraction} fraction digits");
            var (least, most) = (decimal.MinValue, decimal.MaxValue);
            foreach (var keyword in bounds)
            {
                var (floor, ceiling) = Scaled(schema.GetProperty(keyword), fraction, $"{path}.{keyword}");
                switch (keyword)
                {
                    case "minimum": least = Math.Max(least, ceiling); break;
                    case "exclusiveMinimum": least = Math.Max(least, floor + 1); break;
                    case "maximum": most = Math.Min(most, floor); break;
                    default: most = Math.Min(most, ceiling - 1); break;
                }
            }
            var given = string.Join(", ", bounds.Select(k => $"{k} {Describe(schema.GetProperty(k))}"));
            if (least > most)
                throw Invalid(path, $"allows no {what}: {given}; give bounds with {(what == "integer" ? "an" : "a")} {what}{(!integer && scale > fraction ? $" of at most {fraction} fraction digits" : "")} between them");
            // Past long's range every bound was taken as ±10^20; a side stops at ±long.MaxValue.
            if (least > long.MaxValue || most < -long.MaxValue)
                throw new Unsupported($"{path} is not supported: it allows only {what}s of more than 19 digits{(fraction > 0 ? $" once scaled by its {fraction} fraction digits" : "")}, which Stratus does not write");
            (least, most) = (Math.Max(least, -long.MaxValue), Math.Min(most, long.MaxValue));
            if (multiple > 1 && Math.Ceiling(least / multiple) * multiple > most)
                throw Invalid(path, $"allows no multiple of {step.GetRawText()}{(bounds.Count > 0 ? $": {given}" : "")}; give bounds with a multiple between them");
            return NewNode(new Node { Kind = integer ? Kind.Integer : Kind.Number, Range = new NumberRange((long)least, (long)most, fraction, multiple) });
        }

        /// <summary>A number's digits as written: the significant ones (no leading or trailing
        /// zeros; none for 0), the power of ten they are multiplied by, the sign, and how many
        /// fraction digits the value has. Read from the text, not through decimal (28 digits) or
        /// double, which would round 5.00000000000000000000000000001 or 1e-400 onto a bound.</summary>
        static (string Significant, int Exponent, bool Negative) Decimal(JsonElement value, string path) =>
            value.ValueKind == JsonValueKind.Number ? Decimal(value.GetRawText()) : throw Invalid(path, $"must be a number, got {Describe(value)}");

        static (string Significant, int Exponent, bool Negative) Decimal(string text)
        {
            var e = text.IndexOfAny(['e', 'E']);
            var mantissa = e < 0 ? text : text[..e];
            // An exponent past int's range only says the number is huge or tiny.
            var exponent = e < 0 ? 0 : int.TryParse(text[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var given) ? given : text[e + 1] == '-' ? -1_000_000 : 1_000_000;
            var point = mantissa.IndexOf('.');
            if (point >= 0) exponent -= mantissa.Length - point - 1;
            var digits = mantissa.TrimStart('-').Replace(".", "", StringComparison.Ordinal).TrimStart('0');
            var significant = digits.TrimEnd('0');
            return (significant, exponent + digits.Length - significant.Length, text[0] == '-');
        }

        /// <summary>The integers next below and above a bound times 10^<paramref name="shift"/>
        /// (both it, where it is one). Past ±10^20, beyond every value written, it is taken as ±10^20.</summary>
        static (decimal Floor, decimal Ceiling) Scaled(JsonElement value, int shift, string path)
        {
            const decimal Past = 1e20m;
            var (significant, exponent, negative) = Decimal(value, path);
            exponent += shift;
            if (significant.Length == 0) return (0, 0);
            // The whole part's magnitude and whether a fraction follows it (significant ends in a non-zero digit).
            var (whole, fraction) = significant.Length + exponent > 21 ? (Past, false)
                : exponent >= 0 ? (decimal.Parse(significant + new string('0', exponent), CultureInfo.InvariantCulture), false)
                : -exponent >= significant.Length ? (0m, true)
                : (decimal.Parse(significant[..^-exponent], CultureInfo.InvariantCulture), true);
            whole = Math.Min(whole, Past);
            var part = fraction ? 1 : 0;
            return negative ? (-whole - part, -whole) : (whole, whole + part);
        }

        /// <summary>Whether a number (an enum or const value) keeps to the schema's bounds and multipleOf.</summary>
        static bool WithinBounds(JsonElement schema, JsonElement value, string path)
        {
            foreach (var keyword in Bounds)
            {
                if (!schema.TryGetProperty(keyword, out var given)) continue;
                if (given.ValueKind != JsonValueKind.Number) throw Invalid($"{path}.{keyword}", $"must be a number, got {Describe(given)}");
                // In decimal where both fit (exact to 28 digits), else in double.
                var order = value.TryGetDecimal(out var x) && given.TryGetDecimal(out var bound) ? x.CompareTo(bound) : value.GetDouble().CompareTo(given.GetDouble());
                if (keyword switch { "minimum" => order < 0, "exclusiveMinimum" => order <= 0, "maximum" => order > 0, _ => order >= 0 }) return false;
            }
            if (!schema.TryGetProperty("multipleOf", out var step)) return true;
            if (step.ValueKind != JsonValueKind.Number || !(step.TryGetDecimal(out var m) ? m > 0 : step.GetDouble() > 0))
                throw Invalid($"{path}.multipleOf", $"must be a number greater than 0, got {Describe(step)}");
            // A value beyond decimal's 28 digits is left out: it cannot be checked exactly.
            return value.TryGetDecimal(out var v) && step.TryGetDecimal(out m) && v % m == 0;
        }

        int Remember(string pointer, int id)
        {
            byPointer[pointer] = id;
            pointers.Add(pointer);
            return id;
        }

        /// <summary>Forgets the nodes and pointers added since there were <paramref name="nodeCount"/>
        /// and <paramref name="pointerCount"/>, in time proportional to them: an anyOf of
        /// thousands of dropped alternatives took seconds and gigabytes copying what came before.</summary>
        void Rollback(int nodeCount, int pointerCount)
        {
            for (var p = pointerCount; p < pointers.Count; p++) byPointer.Remove(pointers[p]);
            pointers.RemoveRange(pointerCount, pointers.Count - pointerCount);
            if (any >= nodeCount) any = -1;
            // Literal nodes are listed as they are made: those dropped are the last.
            while (literalTexts.Count > 0 && literalTexts[^1].Node >= nodeCount) literalTexts.RemoveAt(literalTexts.Count - 1);
            nodes.RemoveRange(nodeCount, nodes.Count - nodeCount);
            alternatives.RemoveRange(nodeCount, alternatives.Count - nodeCount);
            members.RemoveRange(nodeCount, members.Count - nodeCount);
        }

        static void OnlyAnnotationsBeside(JsonElement schema, string keyword, string path)
        {
            foreach (var other in schema.EnumerateObject())
                if (other.Name != keyword && !Annotations.Contains(other.Name))
                    throw new Unsupported($"{path}.{other.Name} is not supported beside {keyword}: put it inside the {(keyword == "anyOf" ? "alternatives" : "referenced schema")}");
        }

        /// <summary>The enum's values (or the const) of the allowed types, strings of
        /// <paramref name="strings"/>' format and length, as texts.</summary>
        List<string> Values(JsonElement schema, List<string> types, Node strings, string path)
        {
            List<JsonElement> values;
            if (schema.TryGetProperty("enum", out var enumeration))
            {
                if (enumeration.ValueKind != JsonValueKind.Array) throw Invalid($"{path}.enum", "must be an array");
                values = [.. enumeration.EnumerateArray()];
            }
            else values = [];
            if (schema.TryGetProperty("const", out var constant))
                values = enumeration.ValueKind == JsonValueKind.Array ? [.. values.Where(v => JsonElement.DeepEquals(v, constant))] : [constant];
            return [.. values.Where(v => types.Contains(TypeOf(v)) || (TypeOf(v) == "number" && types.Contains("integer") && IsInteger(v)))
                .Where(v => v.ValueKind != JsonValueKind.String || Fits(strings, v.GetString()!))
                .Where(v => v.ValueKind != JsonValueKind.Number || WithinBounds(schema, v, path)).Select(Compact).Distinct()];
        }

        static bool Fits(Node strings, string text)
        {
            if (strings.Format != StringFormat.None) return StringFormats.Matches(strings.Format, text);
            var characters = text.EnumerateRunes().Count();
            return characters >= strings.Min && characters <= strings.Max;
        }

        static StringFormat FormatOf(JsonElement schema) =>
            schema.TryGetProperty("format", out var format) && format.ValueKind == JsonValueKind.String ? StringFormats.Parse(format.GetString()!) : StringFormat.None;

        /// <summary>A string node: its format, else its bounds on length. A format's values have
        /// lengths of their own: bounds beside one that would leave some out are not enforced.</summary>
        static Node StringOf(JsonElement schema, string path)
        {
            var format = FormatOf(schema);
            var (min, max) = (Count(schema, "minLength", 0, path), Count(schema, "maxLength", int.MaxValue, path));
            if (format != StringFormat.None)
            {
                var (least, most) = StringFormats.Lengths(format);
                if (min > least || max < most)
                    throw new Unsupported($"{path}.{(min > least ? "minLength" : "maxLength")} is not supported beside format {schema.GetProperty("format").GetRawText()}, whose values have {least} to {(most == int.MaxValue ? "any number of" : most)} characters: give one or the other");
                (min, max) = (0, int.MaxValue);
            }
            return new Node { Kind = Kind.String, Format = format, Min = min, Max = max };
        }

        /// <summary>A count keyword's value (minItems, maxLength, ...), or <paramref name="fallback"/> where it is absent.</summary>
        static int Count(JsonElement schema, string keyword, int fallback, string path)
        {
            if (!schema.TryGetProperty(keyword, out var value)) return fallback;
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var count) || count < 0)
                throw Invalid($"{path}.{keyword}", $"must be a whole number, 0 or more, got {Describe(value)}");
            if (count > MaxCountLimit) throw new Unsupported($"{path}.{keyword} is not supported above {MaxCountLimit}, got {count}");
            return count;
        }

        static string TypeOf(JsonElement value) => value.ValueKind switch
        {
            JsonValueKind.Object => "object",
            JsonValueKind.Array => "array",
            JsonValueKind.String => "string",
            JsonValueKind.Number => IsInteger(value) ? "integer" : "number",
            JsonValueKind.True or JsonValueKind.False => "boolean",
            _ => "null",
        } is var t && t == "integer" ? "number" : t;

        static bool IsInteger(JsonElement value) => value.TryGetDecimal(out var d) && decimal.Truncate(d) == d;

        int ObjectOf(JsonElement schema, string pointer, string path)
        {
            var properties = new List<(string Name, int Node, bool Required)>();
            var required = new List<string>();
            if (schema.TryGetProperty("required", out var requiredList))
            {
                if (requiredList.ValueKind != JsonValueKind.Array || requiredList.EnumerateArray().Any(r => r.ValueKind != JsonValueKind.String))
                    throw Invalid($"{path}.required", "must be an array of property names");
                required = [.. requiredList.EnumerateArray().Select(r => r.GetString()!).Distinct()];
            }
            if (schema.TryGetProperty("properties", out var declared))
            {
                if (declared.ValueKind != JsonValueKind.Object) throw Invalid($"{path}.properties", "must be an object");
                foreach (var property in declared.EnumerateObject())
                    properties.Add((property.Name, Compile(property.Value, $"{pointer}/properties/{Escape(property.Name)}", $"{path}.properties.{property.Name}"), required.Contains(property.Name)));
            }
            // A required name that no property describes may hold any value.
            foreach (var name in required.Where(r => properties.All(p => p.Name != r))) properties.Add((name, Any(), true));

            var extra = schema.TryGetProperty("additionalProperties", out var additional) ? additional : default;
            if (extra.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Object))
                throw Invalid($"{path}.additionalProperties", "must be a boolean or a schema");
            if (properties.Count == 0 && extra.ValueKind != JsonValueKind.False)
                return NewNode(new Node { Kind = Kind.Map, A = extra.ValueKind == JsonValueKind.Object ? Compile(extra, $"{pointer}/additionalProperties", $"{path}.additionalProperties") : Any() });
            var id = NewNode(new Node { Kind = Kind.Object, Count = properties.Count });
            members[id] = properties;
            return id;
        }

        int ArrayOf(JsonElement schema, string pointer, string path)
        {
            var items = Any();
            if (schema.TryGetProperty("items", out var itemSchema))
            {
                if (itemSchema.ValueKind == JsonValueKind.Array) throw new Unsupported($"{path}.items is not supported as an array (a tuple): give one schema for every item");
                items = Compile(itemSchema, $"{pointer}/items", $"{path}.items");
            }
            return NewNode(new Node { Kind = Kind.Array, A = items, Min = Count(schema, "minItems", 0, path), Max = Count(schema, "maxItems", int.MaxValue, path) });
        }

        (JsonElement Element, string Path) Resolve(string reference, string path)
        {
            if (!reference.StartsWith('#')) throw Invalid($"{path}.$ref", $"'{Truncate(reference)}' cannot be resolved: only references within the schema (\"#/$defs/...\") are");
            var element = document;
            var at = rootPath;
            foreach (var raw in reference[1..].Split('/').Skip(1))
            {
                var segment = Uri.UnescapeDataString(raw).Replace("~1", "/").Replace("~0", "~");
                if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty(segment, out var child)) (element, at) = (child, $"{at}.{segment}");
                else if (element.ValueKind == JsonValueKind.Array && int.TryParse(segment, out var index) && index >= 0 && index < element.GetArrayLength()) (element, at) = (element[index], $"{at}[{index}]");
                else throw Invalid($"{path}.$ref", $"'{Truncate(reference)}' cannot be resolved: the schema has nothing at '{Truncate(segment)}'");
            }
            if (reference.Length > 1 && reference[1] != '/') throw Invalid($"{path}.$ref", $"'{Truncate(reference)}' cannot be resolved: only JSON pointers (\"#/$defs/...\") are");
            return (element, at);
        }

        static string Escape(string segment) => segment.Replace("~", "~0").Replace("/", "~1");

        static string Describe(JsonElement value) => Truncate(value.GetRawText());

        static string Truncate(string text) => text.Length > 40 ? text[..40] + "..." : text;

        /// <summary>A discriminated union's objects, its first property's name and each object's values of it.</summary>
        sealed record TagGroup(List<int> Objects, string Key, Dictionary<int, List<string>> Texts);

        readonly Dictionary<int, TagGroup> tagGroups = [];

        /// <summary>Where a union has two or more objects whose first property is required, of
        /// one name, and a const or enum no two of them share, a <see cref="Kind.Tagged"/> node
        /// takes the first one's place among its leaves and the others leave: the first byte
        /// ('{') does not tell them apart, that property's value does. The same objects in
        /// several unions (an alias and what it names) share one node.</summary>
        void Discriminate(List<int>?[] leaves)
        {
            var texts = literalTexts.ToDictionary(l => l.Node, l => l.Texts);
            var made = new Dictionary<string, int>();
            for (var id = 0; id < leaves.Length; id++)
            {
                if (leaves[id] is not { } list) continue;
                var objects = list.Where(l => nodes[l].Kind == Kind.Object).ToList();
                if (objects.Count < 2) continue;
                var key = members[objects[0]]!.FirstOrDefault().Name;
                var values = new Dictionary<int, List<string>>();
                var taken = new HashSet<string>();
                foreach (var o in objects)
                {
                    if (members[o] is not [var first, ..] || !first.Required || first.Name != key) break;
                    var value = nodes[first.Node].Kind == Kind.Union && leaves[first.Node] is [var only] ? only : first.Node;
                    if (!texts.TryGetValue(value, out var of) || of.Count == 0 || !of.All(taken.Add)) break;
                    values[o] = of;
                }
                if (values.Count != objects.Count) continue;
                var signature = string.Join(",", objects);
                if (!made.TryGetValue(signature, out var tagged))
                {
                    made[signature] = tagged = NewNode(new Node { Kind = Kind.Tagged });
                    tagGroups[tagged] = new TagGroup(objects, key!, values);
                }
                var at = list.IndexOf(objects[0]);
                list.RemoveAll(objects.Contains);
                list.Insert(at, tagged);
            }
        }

        /// <summary>Unions flattened and dispatched by first byte, depths settled, key tries built.</summary>
        JsonSchema Settle(JsonSchema schema, int root)
        {
            // Each union's leaves (non-union nodes) in order, through nested unions and aliases.
            var leaves = new List<int>[nodes.Count];
            for (var id = 0; id < leaves.Length; id++)
            {
                if (nodes[id].Kind != Kind.Union) continue;
                var list = leaves[id] = [];
                var seen = new HashSet<int>();
                void Collect(int n)
                {
                    if (!seen.Add(n)) return; // a cycle of aliases adds nothing
                    if (nodes[n].Kind == Kind.Union) foreach (var a in alternatives[n]) Collect(a);
                    else list.Add(n);
                }
                Collect(id);
            }
            Discriminate(leaves);
            var count = nodes.Count;
            var table = nodes.ToArray();
            System.Array.Resize(ref leaves, count);
            var trieFirsts = new Dictionary<int, byte[]>();
            foreach (var (node, _) in literalTexts) trieFirsts[node] = literals.FirstBytes(table[node].A);
            IEnumerable<byte> FirstBytes(int leaf) => table[leaf].Kind switch
            {
                Kind.Object or Kind.Map or Kind.Tagged => "{"u8.ToArray(),
                Kind.Array => "["u8.ToArray(),
                Kind.String => "\""u8.ToArray(),
                Kind.Number or Kind.Integer when table[leaf].Range is { } range => range.FirstBytes(),
                Kind.Number or Kind.Integer => "-0123456789"u8.ToArray(),
                _ => trieFirsts[leaf],
            };

            var dispatch = new int[count][];
            var depth = new int[count];
            var changed = true;
            for (var round = 0; changed; round++)
            {
                // Depths given the current dispatch (all leaves at first), then dispatch among the
                // leaves that have a value, until neither changes: dropping a leaf only deepens.
                System.Array.Fill(depth, Unreachable);
                for (var relaxed = true; relaxed;)
                {
                    relaxed = false;
                    for (var id = 0; id < count; id++)
                    {
                        var d = MinDepth(id, table, depth, leaves, dispatch);
                        if (d < depth[id]) (depth[id], relaxed) = (d, true);
                    }
                }
                changed = false;
                for (var id = 0; id < count; id++)
                {
                    if (leaves[id] is not { } list) continue;
                    var next = new int[128];
                    System.Array.Fill(next, -1);
                    foreach (var leaf in list)
                        if (depth[leaf] < Unreachable)
                            foreach (var b in FirstBytes(leaf))
                                if (next[b] < 0) next[b] = leaf;
                    if (dispatch[id] is null || !dispatch[id].AsSpan().SequenceEqual(next)) (dispatch[id], changed) = (next, true);
                }
                // Each round drops at least one leaf from some union, so this ends; the bound is a guard.
                if (round > count + 2) break;
            }
            for (var id = 0; id < count; id++) table[id].MinDepth = depth[id];

            var rootLeaf = table[root].Kind == Kind.Union ? (leaves[root].Count == 1 ? leaves[root][0] : -1) : root;
            if (!objectRoot) rootLeaf = root;
            else if (rootLeaf < 0 || table[rootLeaf].Kind is not (Kind.Object or Kind.Map))
                throw Invalid(rootPath, "must describe an object (\"type\": \"object\", not a union), as OpenAI's Structured Outputs require at the root");
            if (depth[rootLeaf] > JsonGrammar.MaxDepth)
                throw Invalid(rootPath, $"has no valid document that Stratus can write: a required property or item has no valid value (an empty enum, minItems above maxItems or minLength above maxLength, recursion that never ends) or needs more than {JsonGrammar.MaxDepth} levels of nesting");

            // Dispatch tables and object properties in flat arrays.
            var dispatchFlat = new List<int>();
            var properties = new List<Property>();
            var keyRoots = new List<int>();
            var keys = new Trie();
            var tags = new List<int>();
            for (var id = 0; id < count; id++)
            {
                if (dispatch[id] is { } next)
                {
                    table[id].A = dispatchFlat.Count;
                    dispatchFlat.AddRange(next);
                }
                if (tagGroups.TryGetValue(id, out var group))
                {
                    // Each tries of its own in the key tries' table (offset below): the key, and the
                    // values, each ending in the object it selects; depths count from inside the object.
                    (table[id].Min, table[id].Count) = (tags.Count, group.Objects.Count);
                    tags.AddRange(group.Objects);
                    table[id].Keys = keys.Add([(KeyText(group.Key), 0, depth[id] - 1)]);
                    table[id].A = keys.Add([.. group.Objects.Where(o => depth[o] < Unreachable).SelectMany(o => group.Texts[o].Select(t => (t, o, depth[o] - 1)))]);
                }
                if (table[id].Kind != Kind.Object) continue;
                var list = members[id]!;
                table[id].A = properties.Count;
                table[id].Keys = keyRoots.Count;
                var closable = new ulong[(list.Count + 1 + 63) / 64];
                for (var from = 0; from <= list.Count; from++)
                {
                    if (!list.Skip(from).Any(p => p.Required)) closable[from >> 6] |= 1UL << from;
                    // The keys that may come next: on to the first required one, leaving out those
                    // whose value cannot be written.
                    var candidates = new List<(string Text, int Value, int Depth)>();
                    for (var p = from; p < list.Count; p++)
                    {
                        if (depth[list[p].Node] < Unreachable) candidates.Add((KeyText(list[p].Name), p, depth[list[p].Node]));
                        if (list[p].Required) break;
                    }
                    keyRoots.Add(keys.Add(candidates));
                }
                table[id].Closable = closable;
                properties.AddRange(list.Select(p => new Property(p.Name, p.Node, p.Required)));
            }

            schema.Nodes = table;
            schema.Root = rootLeaf;
            schema.Dispatch = [.. dispatchFlat];
            schema.Properties = [.. properties];
            schema.KeyRoots = [.. keyRoots];
            schema.Tags = [.. tags];
            // Literal and key tries in one table: keys' node ids follow the literals'.
            var offset = literals.Count;
            for (var k = 0; k < schema.KeyRoots.Length; k++) schema.KeyRoots[k] += offset;
            foreach (var id in tagGroups.Keys) (table[id].A, table[id].Keys) = (table[id].A + offset, table[id].Keys + offset);
            (schema.EdgeStart, schema.EdgeBytes, schema.EdgeTargets, schema.TrieValue, schema.TrieDepth) = Trie.Join(literals, keys);
            return schema;
        }

        int MinDepth(int id, Node[] table, int[] depth, List<int>[] leaves, int[][] dispatch)
        {
            var node = table[id];
            switch (node.Kind)
            {
                case Kind.Object:
                    var deepest = 0;
                    foreach (var p in members[id]!)
                        if (p.Required) deepest = Math.Max(deepest, depth[p.Node]);
                    return deepest >= Unreachable ? Unreachable : 1 + deepest;
                case Kind.Map:
                    return 1;
                case Kind.Array:
                    if (node.Min > node.Max) return Unreachable;
                    return node.Min == 0 ? 1 : depth[node.A] >= Unreachable ? Unreachable : 1 + depth[node.A];
                case Kind.Literal:
                    return literals.IsEmpty(node.A) ? Unreachable : 0;
                case Kind.String:
                    return node.Min > node.Max ? Unreachable : 0;
                case Kind.Union:
                    var least = Unreachable;
                    var from = dispatch[id] is { } d ? d.Where(l => l >= 0).Distinct() : leaves[id];
                    foreach (var leaf in from) least = Math.Min(least, depth[leaf]);
                    return least;
                case Kind.Tagged:
                    return tagGroups[id].Objects.Min(o => depth[o]);
                default:
                    return 0;
            }
        }
    }

    /// <summary>Byte tries under construction (several roots in one table).</summary>
    sealed class Trie
    {
        readonly List<Dictionary<byte, int>> children = [];
        readonly List<int> values = [];
        readonly List<int> depths = [];

        public int Count => children.Count;

        int NewNode()
        {
            if (children.Count == MaxTrieNodes) throw new StratusUserException($"the schema is too large: its keys and enum values need more than {MaxTrieNodes} trie nodes");
            children.Add([]);
            values.Add(-1);
            depths.Add(Unreachable);
            return children.Count - 1;
        }

        /// <summary>A literal trie: every text ends with value 0.</summary>
        public int Add(List<string> texts) => Add([.. texts.Select(t => (t, 0, 0))]);

        /// <summary>A trie of texts, each ending in its value; each node keeps the least depth below it.</summary>
        public int Add(List<(string Text, int Value, int Depth)> texts)
        {
            var root = NewNode();
            foreach (var (text, value, depth) in texts)
            {
                var at = root;
                depths[at] = Math.Min(depths[at], depth);
                foreach (var b in Encoding.UTF8.GetBytes(text))
                {
                    if (!children[at].TryGetValue(b, out var next)) children[at][b] = next = NewNode();
                    at = next;
                    depths[at] = Math.Min(depths[at], depth);
                }
                values[at] = value;
            }
            return root;
        }

        public bool IsEmpty(int root) => children[root].Count == 0 && values[root] < 0;

        public byte[] FirstBytes(int root) => [.. children[root].Keys.Where(b => b < 128)];

        public static (int[] Starts, byte[] Bytes, int[] Targets, int[] Values, int[] Depths) Join(Trie first, Trie second)
        {
            var starts = new List<int> { 0 };
            var bytes = new List<byte>();
            var targets = new List<int>();
            foreach (var (trie, offset) in new[] { (first, 0), (second, first.Count) })
                foreach (var edges in trie.children)
                {
                    foreach (var (b, target) in edges.OrderBy(e => e.Key))
                    {
                        bytes.Add(b);
                        targets.Add(target + offset);
                    }
                    starts.Add(bytes.Count);
                }
            return ([.. starts], [.. bytes], [.. targets], [.. first.values, .. second.values], [.. first.depths, .. second.depths]);
        }
    }
}
