// The recognizer of constrained decoding: fed the generated text's UTF-8 bytes one at a time, it
// says whether the text is still the beginning of a JSON document valid against a compiled
// JsonSchema (RFC 8259 and the schema's structure) and whether it is a whole one. JSON mode
// (OpenAI's response_format json_object) is the schema {"type": "object"}: one JSON object, any
// keys and values. The state is a value (the stack of open containers, each a node of the schema
// and a count, and the place in the current token), so the sampler tries each candidate token's
// bytes on a copy and the sequence keeps its own.
// Written by hand because no .NET library offers an incremental byte-level prefix recognizer that
// can be copied per candidate token: System.Text.Json's Utf8JsonReader reads forward over complete
// or final buffers (a token cut by the buffer's end is read again from its start) and cannot say
// whether one more byte keeps the text a viable prefix.
using System.Runtime.CompilerServices;

namespace Stratus.Inference;

public struct JsonGrammar : IEquatable<JsonGrammar>
{
    /// <summary>Containers open at once. Each is a 32-bit frame in the state, copied for each of a
    /// vocabulary's tokens at each uncached step; answers nest far less deeply, and
    /// System.Text.Json, which reads 64 levels by default, parses whatever this accepts. A
    /// container, key or item is refused where the shortest value it needs would not fit, so no
    /// text the mask lets through is a dead end.</summary>
    public const int MaxDepth = 32;

    /// <summary>Whitespace bytes in a row between two tokens. Without a bound a model can pad
    /// forever (OpenAI warns of an "unending stream of whitespace" in JSON mode); 32 still lets a
    /// newline and the indentation of pretty-printed JSON through, 2 spaces a level to depth 15
    /// or 4 to depth 7. Whitespace inside strings is text and not counted.</summary>
    public const int MaxWhitespace = 32;

    enum Expect : byte
    {
        /// <summary>The root object's '{' (the default state).</summary>
        Start,
        /// <summary>After '{': a key or '}'.</summary>
        FirstKey,
        /// <summary>After ',' in an object.</summary>
        Key,
        Colon,
        /// <summary>After ':', or ',' in an array.</summary>
        Value,
        /// <summary>After '[': a value or ']'.</summary>
        FirstValue,
        /// <summary>',' or the innermost container's closer.</summary>
        AfterValue,
        Complete,
        /// <summary>In a string's text; <see cref="pending"/> says what a character begun in
        /// UTF-8 still needs.</summary>
        String,
        Escape,
        /// <summary>In \uXXXX; <see cref="pending"/> hex digits to come.</summary>
        Unicode,
        /// <summary>In \uXXXX after a first digit d: a second of 8 to b begins the high half of a
        /// surrogate pair, c to f a low half, which may only follow a high one (System.Text.Json
        /// refuses to read a string with half a pair).</summary>
        UnicodeAfterD,
        /// <summary>The last <see cref="pending"/> hex digits of a high surrogate's escape.</summary>
        HighSurrogate,
        /// <summary>After a high surrogate's escape: byte <see cref="pending"/> of "\ud" and a
        /// digit of c to f, the low half's beginning; its last two digits are any. The pair is one
        /// character, counted at the high half's backslash.</summary>
        LowSurrogate,
        /// <summary>In one of an object's keys; <see cref="trie"/> is the place in its key trie.</summary>
        KeyName,
        /// <summary>In an enum or const value, true, false or null; <see cref="trie"/> is the place in its trie.</summary>
        Literal,
        Minus,
        /// <summary>A leading 0, which no digit may follow.</summary>
        Zero,
        Integer,
        Point,
        Fraction,
        Exponent,
        ExponentSign,
        ExponentDigits,
    }

    [InlineArray(MaxDepth)]
    struct Frames
    {
#pragma warning disable IDE0044, IDE0051 // the inline array's element
        uint element;
#pragma warning restore IDE0044, IDE0051
    }

    JsonSchema? schema;
    /// <summary>Frame d - 1 describes the container at depth d: its schema node (low 16 bits)
    /// and count (high 16 bits): an object's next property index, an array's items so far
    /// (saturated where more make no difference, so that states repeat).</summary>
    Frames frames;
    int trie;
    /// <summary>The string or number being read where its node constrains it (a format,
    /// minLength or maxLength; bounds or multipleOf): the node + 1 (low 16 bits; 0 for a free
    /// value) and above it the state of the format's or range's automaton (a number's takes 37
    /// bits), or the characters so far (saturated where more make no difference, so that states
    /// repeat).</summary>
    ulong text;
    byte depth;
    Expect expect;
    /// <summary>In an escape, what it still needs (<see cref="Expect.Unicode"/>); in a string's
    /// text, the UTF-8 continuation bytes a character still needs (low 2 bits) and the range the
    /// next must be in (above: <see cref="ContinuationRanges"/>); else 0.</summary>
    byte pending;
    byte whitespace;
    bool inKey;
    bool integer;

    /// <summary>The start of a document valid against <paramref name="schema"/>; the default
    /// state starts JSON mode's (<see cref="JsonSchema.AnyObject"/>).</summary>
    public JsonGrammar(JsonSchema schema) => this.schema = schema;

    public readonly JsonSchema Schema => schema ?? JsonSchema.AnyObject;

    /// <summary>Whether the bytes so far are one whole document (then no byte may follow).</summary>
    public readonly bool IsComplete => expect == Expect.Complete;

    /// <summary>Adds the bytes; false when the text would no longer begin a valid document, after
    /// which this state is spent (try candidates on a copy).</summary>
    public bool Accept(ReadOnlySpan<byte> bytes)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            if (expect == Expect.String && text == 0 && pending == 0)
            {
                // Inside a string most bytes are plain ASCII text: skip them at once, not one by
                // one (a character of UTF-8 is checked byte by byte, across tokens).
                var special = bytes[i..].IndexOfAny(StringSpecials);
                if (special < 0) return true;
                i += special;
            }
            if (!Accept(bytes[i])) return false;
        }
        return true;
    }

    /// <summary>The bytes that do something in a string: its end, an escape, the control bytes it
    /// may not hold, and those of UTF-8 beyond ASCII, which must make whole characters.</summary>
    static readonly System.Buffers.SearchValues<byte> StringSpecials = System.Buffers.SearchValues.Create([.. Enumerable.Range(0, 0x20).Concat(Enumerable.Range(0x80, 0x80)).Select(b => (byte)b), (byte)'"', (byte)'\\']);

    /// <inheritdoc cref="Accept(ReadOnlySpan{byte})"/>
    public bool Accept(byte b)
    {
        switch (expect)
        {
            case Expect.String when text != 0:
                return TextByte(b);
            case Expect.String:
                if (pending != 0) return Continuation(b);
                if (b == '"')
                {
                    if (inKey) (expect, inKey) = (Expect.Colon, false);
                    else EndValue();
                }
                else if (b == '\\') expect = Expect.Escape;
                else if (b >= 0x80) return Lead(b);
                else return b >= 0x20;
                return true;
            case Expect.Escape:
                if (b == 'u') (expect, pending) = (Expect.Unicode, 4);
                else if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t') expect = Expect.String;
                else return false;
                return true;
            case Expect.Unicode:
                if (!char.IsAsciiHexDigit((char)b)) return false;
                if (pending == 4 && b is (byte)'d' or (byte)'D') expect = Expect.UnicodeAfterD;
                if (--pending == 0) expect = Expect.String;
                return true;
            case Expect.UnicodeAfterD:
                if (IsDigit(b) && b <= '7') (expect, pending) = (Expect.Unicode, 2);
                else if (b is (byte)'8' or (byte)'9' or >= (byte)'a' and <= (byte)'b' or >= (byte)'A' and <= (byte)'B') (expect, pending) = (Expect.HighSurrogate, 2);
                else return false;
                return true;
            case Expect.HighSurrogate:
                if (!char.IsAsciiHexDigit((char)b)) return false;
                if (--pending == 0) expect = Expect.LowSurrogate;
                return true;
            case Expect.LowSurrogate:
                if (pending < 3 ? b != "\\ud"u8[pending] && !(pending == 2 && b == 'D') : b is not (>= (byte)'c' and <= (byte)'f' or >= (byte)'C' and <= (byte)'F')) return false;
                if (++pending == 4) (expect, pending) = (Expect.Unicode, 2);
                return true;
            case Expect.KeyName:
                return KeyByte(b);
            case Expect.Literal:
                return LiteralByte(b);
            case Expect.Minus:
                if (!IsDigit(b) || !BoundedDigit(b)) return false;
                expect = b == '0' ? Expect.Zero : Expect.Integer;
                return true;
            case Expect.Point:
                if (!IsDigit(b) || !BoundedDigit(b)) return false;
                expect = Expect.Fraction;
                return true;
            case Expect.Exponent:
                if (b is (byte)'+' or (byte)'-') expect = Expect.ExponentSign;
                else if (IsDigit(b)) expect = Expect.ExponentDigits;
                else return false;
                return true;
            case Expect.ExponentSign:
                if (!IsDigit(b)) return false;
                expect = Expect.ExponentDigits;
                return true;
            case Expect.Zero or Expect.Integer or Expect.Fraction or Expect.ExponentDigits:
                if (IsDigit(b) && expect is not Expect.Zero) return BoundedDigit(b);
                if (b == '.' && !integer && expect is Expect.Zero or Expect.Integer)
                {
                    if (text != 0 && !Advance(RangeOf().Dot(TextState))) return false;
                    expect = Expect.Point;
                }
                // A bounded number is written without an exponent (NumberRange).
                else if (b is (byte)'e' or (byte)'E' && !integer && text == 0 && expect is not Expect.ExponentDigits) expect = Expect.Exponent;
                // A number ends at the first byte that cannot continue it, which must follow a value.
                else
                {
                    if (text != 0 && !RangeOf().IsWhole(TextState)) return false;
                    EndValue();
                    return Between(b);
                }
                return true;
            case Expect.Complete:
                return false;
            default:
                return Between(b);
        }
    }

    /// <summary>A byte between tokens: whitespace, or the punctuation or value the state expects.</summary>
    bool Between(byte b)
    {
        if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
        {
            if (whitespace == MaxWhitespace) return false;
            whitespace++;
            return true;
        }
        whitespace = 0;
        var s = Schema;
        if (expect == Expect.Start) return Begin(s, s.Root, b);
        ref readonly var node = ref s.Nodes[TopNode];
        var count = TopCount;
        switch (expect)
        {
            case Expect.FirstKey when b == '}':
                return (node.Kind == JsonSchema.Kind.Map || (node.Kind == JsonSchema.Kind.Object && (node.Closable![count >> 6] >> count & 1) != 0)) && Close();
            case Expect.FirstValue when b == ']':
                return node.Min == 0 && Close();
            case Expect.FirstKey or Expect.Key:
                if (b != '"') return false;
                if (node.Kind == JsonSchema.Kind.Map)
                {
                    if (!Fits(s, node.A)) return false;
                    (expect, inKey) = (Expect.String, true);
                    return true;
                }
                // A discriminated union's first key is its discriminator's.
                trie = node.Kind == JsonSchema.Kind.Tagged ? node.Keys : s.KeyRoots[node.Keys + count];
                expect = Expect.KeyName;
                return KeyByte(b);
            case Expect.Colon:
                if (b != ':') return false;
                expect = Expect.Value;
                return true;
            case Expect.Value or Expect.FirstValue:
                if (node.Kind == JsonSchema.Kind.Array)
                {
                    if (node.Max == 0) return false;
                    // Counted as it begins; past the counts that matter the count stays.
                    var cap = node.Max == int.MaxValue ? node.Min : node.Max;
                    if (count < cap) SetTopCount(count + 1);
                    return Begin(s, node.A, b);
                }
                if (node.Kind == JsonSchema.Kind.Tagged)
                {
                    // The discriminator's value, which ends in the object it selects (EndValue).
                    (trie, expect) = (node.A, Expect.Literal);
                    return LiteralByte(b);
                }
                return Begin(s, node.Kind == JsonSchema.Kind.Map ? node.A : s.Properties[node.A + count - 1].Node, b);
            default: // AfterValue
                switch (node.Kind)
                {
                    case JsonSchema.Kind.Object:
                        if (b == ',')
                        {
                            if (count >= node.Count || depth + s.TrieDepth[s.KeyRoots[node.Keys + count]] > MaxDepth) return false;
                            expect = Expect.Key;
                            return true;
                        }
                        return b == '}' && (node.Closable![count >> 6] >> count & 1) != 0 && Close();
                    case JsonSchema.Kind.Map:
                        if (b == ',')
                        {
                            if (!Fits(s, node.A)) return false;
                            expect = Expect.Key;
                            return true;
                        }
                        return b == '}' && Close();
                    default: // Array
                        if (b == ',')
                        {
                            if (count >= node.Max || !Fits(s, node.A)) return false;
                            expect = Expect.Value;
                            return true;
                        }
                        return b == ']' && count >= node.Min && Close();
                }
        }
    }

    /// <summary>The first byte of a value of <paramref name="id"/> (a union's alternative is the
    /// one that byte selects).</summary>
    bool Begin(JsonSchema s, int id, byte b)
    {
        if (s.Nodes[id].Kind == JsonSchema.Kind.Union)
        {
            if (b >= 128) return false;
            id = s.Dispatch[s.Nodes[id].A + b];
            if (id < 0) return false;
        }
        ref readonly var node = ref s.Nodes[id];
        if (depth + node.MinDepth > MaxDepth) return false;
        switch (node.Kind)
        {
            case JsonSchema.Kind.Object or JsonSchema.Kind.Map or JsonSchema.Kind.Tagged:
                if (b != '{') return false;
                Push(id);
                expect = Expect.FirstKey;
                return true;
            case JsonSchema.Kind.Array:
                if (b != '[') return false;
                Push(id);
                expect = Expect.FirstValue;
                return true;
            case JsonSchema.Kind.String:
                if (b != '"') return false;
                (expect, inKey) = (Expect.String, false);
                if (node.Format != StringFormat.None || node.Min > 0 || node.Max != int.MaxValue) text = (ulong)id + 1;
                return true;
            case JsonSchema.Kind.Number or JsonSchema.Kind.Integer:
                if (b == '-') expect = Expect.Minus;
                else if (b == '0') expect = Expect.Zero;
                else if (IsDigit(b)) expect = Expect.Integer;
                else return false;
                integer = node.Kind == JsonSchema.Kind.Integer;
                if (node.Range is not { } range) return true;
                text = (ulong)id + 1;
                if (b != '-') return BoundedDigit(b);
                text |= NumberRange.Negative << 16;
                return range.AllowsNegative;
            default: // Literal
                trie = node.A;
                expect = Expect.Literal;
                return LiteralByte(b);
        }
    }

    /// <summary>Whether a value of <paramref name="id"/> can begin inside the innermost container.</summary>
    readonly bool Fits(JsonSchema s, int id) => depth + s.Nodes[id].MinDepth <= MaxDepth;

    bool KeyByte(byte b)
    {
        var s = Schema;
        var next = Edge(s, trie, b);
        if (next < 0 || depth + s.TrieDepth[next] > MaxDepth) return false;
        var property = s.TrieValue[next];
        if (property < 0)
        {
            trie = next;
            return true;
        }
        // A key ends at its closing quote, so no key continues another.
        SetTopCount(property + 1);
        (expect, trie) = (Expect.Colon, 0);
        return true;
    }

    bool LiteralByte(byte b)
    {
        var s = Schema;
        var next = Edge(s, trie, b);
        // A discriminator's value selects an object, which must fit (its trie keeps the least depth below).
        if (next >= 0)
        {
            if (depth + s.TrieDepth[next] > MaxDepth) return false;
            trie = next;
            if (s.TrieValue[next] >= 0 && s.EdgeStart[next] == s.EdgeStart[next + 1]) EndValue();
            return true;
        }
        // A literal that another continues (the number 1 of enum [1, 12]) ends at the byte after it.
        if (s.TrieValue[trie] < 0) return false;
        EndValue();
        return Between(b);
    }

    /// <summary>A byte of a string whose node constrains it: a step of its format's automaton
    /// (no escapes: a format's characters need none), or a character counted.</summary>
    bool TextByte(byte b)
    {
        ref readonly var node = ref Schema.Nodes[(int)(text & 0xFFFF) - 1];
        var count = (int)TextState;
        if (node.Format != StringFormat.None)
        {
            if (b == '"') return StringFormats.IsWhole(node.Format, count) && EndString();
            var next = StringFormats.Step(node.Format, count, b);
            if (next < 0) return false;
            text = (text & 0xFFFF) | (ulong)next << 16;
            return true;
        }
        if (pending != 0) return Continuation(b);
        if (b == '"') return count >= node.Min && EndString();
        if (b < 0x20) return false;
        // A character is counted at its first byte, an escape at its backslash.
        if (count == node.Max || (b >= 0x80 && !Lead(b))) return false;
        if (count < (node.Max == int.MaxValue ? node.Min : node.Max)) text += 1ul << 16;
        if (b == '\\') expect = Expect.Escape;
        return true;
    }

    /// <summary>A digit of a number: where its node bounds it, a step of its range's automaton.</summary>
    bool BoundedDigit(byte b) => text == 0 || Advance(RangeOf().Step(TextState, b));

    /// <summary>Takes the range's next state; false where it is -1 (no value in range goes on so).</summary>
    bool Advance(long next)
    {
        if (next < 0) return false;
        text = (text & 0xFFFF) | (ulong)next << 16;
        return true;
    }

    readonly long TextState => (long)(text >> 16);

    readonly NumberRange RangeOf() => Schema.Nodes[(int)(text & 0xFFFF) - 1].Range!.Value;

    /// <summary>For each first byte of a character from C0 on, what <see cref="pending"/> becomes:
    /// the continuation bytes to come and the range of the next (0: no character begins so, an
    /// overlong C0/C1 or past U+10FFFF), as Unicode's table 3-7 of well-formed UTF-8 has them.</summary>
    static ReadOnlySpan<byte> Leads =>
    [
        0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, // C0-DF
        2 | 1 << 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 | 2 << 2, 2, 2, // E0 (A0-BF next: no overlong), ED (80-9F: no surrogate)
        3 | 3 << 2, 3, 3, 3, 3 | 4 << 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // F0 (90-BF: no overlong), F4 (80-8F: to U+10FFFF)
    ];

    /// <summary>The least and greatest byte that may continue a character, by the range its first
    /// byte set (80-BF but after E0, ED, F0 and F4).</summary>
    static ReadOnlySpan<byte> ContinuationRanges => [0x80, 0xBF, 0xA0, 0xBF, 0x80, 0x9F, 0x90, 0xBF, 0x80, 0x8F];

    /// <summary>A byte of 80 or more that begins a character in a string.</summary>
    bool Lead(byte b)
    {
        if (b < 0xC0) return false;
        pending = Leads[b - 0xC0];
        return pending != 0;
    }

    /// <summary>A byte that goes on with a character begun in UTF-8.</summary>
    bool Continuation(byte b)
    {
        var range = (pending >> 2) * 2;
        if (b < ContinuationRanges[range] || b > ContinuationRanges[range + 1]) return false;
        pending = (byte)((pending & 3) - 1);
        return true;
    }

    bool EndString()
    {
        EndValue();
        return true;
    }

    static int Edge(JsonSchema s, int node, byte b)
    {
        var bytes = s.EdgeBytes;
        for (var e = s.EdgeStart[node]; e < s.EdgeStart[node + 1]; e++)
            if (bytes[e] == b) return s.EdgeTargets[e];
        return -1;
    }

    readonly int TopNode => (int)(frames[depth - 1] & 0xFFFF);
    readonly int TopCount => (int)(frames[depth - 1] >> 16);
    void SetTopCount(int count) => frames[depth - 1] = (frames[depth - 1] & 0xFFFF) | (uint)count << 16;

    void Push(int node) => frames[depth++] = (uint)node;

    void EndValue()
    {
        // A discriminated union's value has chosen its object, which goes on after its first property.
        if (expect == Expect.Literal && depth > 0 && Schema.Nodes[TopNode].Kind == JsonSchema.Kind.Tagged)
            frames[depth - 1] = (uint)Schema.TrieValue[trie] | 1u << 16;
        expect = depth == 0 ? Expect.Complete : Expect.AfterValue;
        (trie, text, pending, integer) = (0, 0, 0, false);
    }

    bool Close()
    {
        depth--;
        EndValue();
        return true;
    }

    static bool IsDigit(byte b) => (uint)(b - '0') <= 9;

    /// <summary>Two states are equal when every byte string takes them to the same answers: the
    /// key under which <see cref="JsonVocabulary"/> keeps each state's allowed tokens (the
    /// schema's identity included).</summary>
    public readonly bool Equals(JsonGrammar other)
    {
        if (!ReferenceEquals(Schema, other.Schema) || depth != other.depth || expect != other.expect || trie != other.trie
            || text != other.text || pending != other.pending || whitespace != other.whitespace || inKey != other.inKey || integer != other.integer) return false;
        ReadOnlySpan<uint> mine = frames, theirs = other.frames;
        return mine[..depth].SequenceEqual(theirs[..depth]);
    }

    public override readonly bool Equals(object? obj) => obj is JsonGrammar other && Equals(other);

    public override readonly int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(RuntimeHelpers.GetHashCode(Schema));
        hash.Add(HashCode.Combine(depth, expect, trie, text, pending, whitespace, inKey, integer));
        ReadOnlySpan<uint> stack = frames;
        foreach (var frame in stack[..depth]) hash.Add(frame);
        return hash.ToHashCode();
    }
}
