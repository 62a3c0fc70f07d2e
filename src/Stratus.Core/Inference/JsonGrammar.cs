// JSON mode's recognizer (OpenAI's response_format json_object): fed the generated text's UTF-8
// bytes one at a time, it says whether the text is still the beginning of one JSON object
// (RFC 8259) and whether it is a whole one. The state is a 12-byte value, so the sampler tries
// each candidate token's bytes on a copy and the sequence keeps its own.
// Written by hand because no .NET library offers an incremental byte-level prefix recognizer that
// can be copied per candidate token: System.Text.Json's Utf8JsonReader reads forward over complete
// or final buffers (a token cut by the buffer's end is read again from its start) and cannot say
// whether one more byte keeps the text a viable prefix.
namespace Stratus.Inference;

public struct JsonGrammar : IEquatable<JsonGrammar>
{
    /// <summary>Containers open at once. The stack is a bit a level (object or array) in one
    /// uint, which keeps the state a few bytes to copy for each of a vocabulary's tokens at each
    /// step; answers nest far less deeply, and System.Text.Json, which reads 64 levels by
    /// default, parses whatever this accepts.</summary>
    public const int MaxDepth = 32;

    /// <summary>Whitespace bytes in a row between two tokens. Without a bound a model can pad
    /// forever (OpenAI warns of an "unending stream of whitespace" in JSON mode); 32 still lets a
    /// newline and the indentation of pretty-printed JSON through, 2 spaces a level to depth 15
    /// or 4 to depth 7. Whitespace inside strings is text and not counted.</summary>
    public const int MaxWhitespace = 32;

    enum Expect : byte
    {
        /// <summary>The top-level object's '{' (the default state).</summary>
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
        String,
        Escape,
        /// <summary>In \uXXXX; <see cref="pending"/> hex digits to come.</summary>
        Unicode,
        /// <summary>In true, false or null; <see cref="pending"/> indexes the next byte in <see cref="Literals"/>.</summary>
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

    static ReadOnlySpan<byte> Literals => "true\0false\0null\0"u8;

    /// <summary>Bit d - 1 is set when the container at depth d is an object.</summary>
    uint containers;
    byte depth;
    Expect expect;
    byte pending;
    byte whitespace;
    bool inKey;

    /// <summary>Whether the bytes so far are one whole JSON object (then no byte may follow).</summary>
    public readonly bool IsComplete => expect == Expect.Complete;

    readonly bool InObject => (containers >> (depth - 1) & 1) != 0;

    /// <summary>Adds the bytes; false when the text would no longer begin a JSON object, after
    /// which this state is spent (try candidates on a copy).</summary>
    public bool Accept(ReadOnlySpan<byte> bytes)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            if (expect == Expect.String)
            {
                // Inside a string most bytes are plain text: skip them at once, not one by one.
                var special = bytes[i..].IndexOfAny(StringSpecials);
                if (special < 0) return true;
                i += special;
            }
            if (!Accept(bytes[i])) return false;
        }
        return true;
    }

    /// <summary>The bytes that do something in a string: its end, an escape, and the control
    /// bytes it may not hold.</summary>
    static readonly System.Buffers.SearchValues<byte> StringSpecials = System.Buffers.SearchValues.Create([.. Enumerable.Range(0, 0x20).Select(b => (byte)b), (byte)'"', (byte)'\\']);

    /// <inheritdoc cref="Accept(ReadOnlySpan{byte})"/>
    public bool Accept(byte b)
    {
        switch (expect)
        {
            case Expect.String:
                if (b == '"') expect = inKey ? Expect.Colon : Expect.AfterValue;
                else if (b == '\\') expect = Expect.Escape;
                // Bytes >= 0x80 are the UTF-8 of the text's characters, whole or split across tokens.
                else return b >= 0x20;
                return true;
            case Expect.Escape:
                if (b == 'u') (expect, pending) = (Expect.Unicode, 4);
                else if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t') expect = Expect.String;
                else return false;
                return true;
            case Expect.Unicode:
                if (!char.IsAsciiHexDigit((char)b)) return false;
                if (--pending == 0) expect = Expect.String;
                return true;
            case Expect.Literal:
                if (b != Literals[pending]) return false;
                if (Literals[++pending] == 0) expect = Expect.AfterValue;
                return true;
            case Expect.Minus:
                if (b == '0') expect = Expect.Zero;
                else if (IsDigit(b)) expect = Expect.Integer;
                else return false;
                return true;
            case Expect.Point:
                if (!IsDigit(b)) return false;
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
                if (IsDigit(b) && expect is not Expect.Zero) return true;
                if (b == '.' && expect is Expect.Zero or Expect.Integer) expect = Expect.Point;
                else if (b is (byte)'e' or (byte)'E' && expect is not Expect.ExponentDigits) expect = Expect.Exponent;
                // A number ends at the first byte that cannot continue it, which must follow a value.
                else
                {
                    expect = Expect.AfterValue;
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
        switch (expect)
        {
            case Expect.Start:
                return b == '{' && Open(isObject: true);
            case Expect.FirstKey when b == '}':
            case Expect.FirstValue when b == ']':
                return Close();
            case Expect.FirstKey or Expect.Key:
                if (b != '"') return false;
                (expect, inKey) = (Expect.String, true);
                return true;
            case Expect.Colon:
                if (b != ':') return false;
                expect = Expect.Value;
                return true;
            case Expect.Value or Expect.FirstValue:
                return Value(b);
            default: // AfterValue
                if (b == ',')
                {
                    expect = InObject ? Expect.Key : Expect.Value;
                    return true;
                }
                return b == (InObject ? '}' : ']') && Close();
        }
    }

    bool Value(byte b)
    {
        switch (b)
        {
            case (byte)'{' or (byte)'[':
                return Open(isObject: b == '{');
            case (byte)'"':
                (expect, inKey) = (Expect.String, false);
                return true;
            case (byte)'-':
                expect = Expect.Minus;
                return true;
            case (byte)'0':
                expect = Expect.Zero;
                return true;
            case (byte)'t' or (byte)'f' or (byte)'n':
                // Index of the literal's second byte in Literals.
                (expect, pending) = (Expect.Literal, (byte)(b == 't' ? 1 : b == 'f' ? 6 : 12));
                return true;
            default:
                if (!IsDigit(b)) return false;
                expect = Expect.Integer;
                return true;
        }
    }

    bool Open(bool isObject)
    {
        if (depth == MaxDepth) return false;
        containers = isObject ? containers | 1u << depth : containers & ~(1u << depth);
        depth++;
        expect = isObject ? Expect.FirstKey : Expect.FirstValue;
        return true;
    }

    bool Close()
    {
        depth--;
        expect = depth == 0 ? Expect.Complete : Expect.AfterValue;
        return true;
    }

    static bool IsDigit(byte b) => (uint)(b - '0') <= 9;

    /// <summary>Two states are equal when every byte string takes them to the same answers: the
    /// key under which <see cref="JsonVocabulary"/> keeps each state's allowed tokens.</summary>
    public readonly bool Equals(JsonGrammar other) =>
        containers == other.containers && depth == other.depth && expect == other.expect
        && pending == other.pending && whitespace == other.whitespace && inKey == other.inKey;

    public override readonly bool Equals(object? obj) => obj is JsonGrammar other && Equals(other);

    public override readonly int GetHashCode() => HashCode.Combine(containers, depth, expect, pending, whitespace, inKey);
}
