// The string formats structured outputs enforce, each a small automaton over the string's bytes
// (between its quotes) whose state fits the 16 bits JsonGrammar keeps for a string. Each accepts
// a subset of what JSON Schema's format allows, chosen so that every value it accepts is read by
// System.Text.Json into the .NET type whose schema carries the format (what
// Microsoft.Extensions.AI's GetResponseAsync<T> asks for): DateTime and DateTimeOffset
// ("date-time"), DateOnly ("date"), TimeOnly ("time"), Guid ("uuid") and Uri ("uri").
namespace Stratus.Inference;

internal enum StringFormat : byte
{
    None,
    /// <summary>YYYY-MM-DDTHH:MM:SS, a fraction of 1 to 7 digits or none, then Z or +HH:MM / -HH:MM
    /// (the offset RFC 3339 requires; System.Text.Json reads it into a DateTime too).</summary>
    DateTime,
    /// <summary>YYYY-MM-DD.</summary>
    Date,
    /// <summary>HH:MM:SS and a fraction of 1 to 7 digits or none: what TimeOnly's schema means
    /// and System.Text.Json reads (it refuses RFC 3339's offset there).</summary>
    Time,
    /// <summary>8-4-4-4-12 hexadecimal digits, either case.</summary>
    Uuid,
    /// <summary>http:// or https://, a host of dot-separated labels of 1 to 63 lowercase letters
    /// and digits (255 characters at most), then path segments of letters, digits and ._~-.</summary>
    Uri,
}

internal static class StringFormats
{
    public static StringFormat Parse(string name) => name switch
    {
        "date-time" => StringFormat.DateTime,
        "date" => StringFormat.Date,
        "time" => StringFormat.Time,
        "uuid" => StringFormat.Uuid,
        "uri" => StringFormat.Uri,
        _ => StringFormat.None,
    };

    /// <summary>How many characters a value has, at least and at most (int.MaxValue: no bound).</summary>
    public static (int Min, int Max) Lengths(StringFormat format) => format switch
    {
        StringFormat.DateTime => (DateLength + 1 + SecondsLength + 1, DateLength + 1 + TimeLength + OffsetLength),
        StringFormat.Date => (DateLength, DateLength),
        StringFormat.Time => (SecondsLength, TimeLength),
        StringFormat.Uuid => (UuidLength, UuidLength),
        _ => ("http://".Length + 1, int.MaxValue),
    };

    const int DateLength = 10;
    /// <summary>HH:MM:SS.</summary>
    const int SecondsLength = 8;
    /// <summary>HH:MM:SS.fffffff.</summary>
    const int TimeLength = 16;
    /// <summary>+HH:MM.</summary>
    const int OffsetLength = 6;
    const int UuidLength = 36;

    // A state is the number of bytes read (the place in the value's fixed shape, low 6 bits) and
    // what the bytes to come depend on (the bits above): the month, the first digit of the day.
    const int PlaceMask = 0x3F;
    const int MemoryShift = 6;

    /// <summary>The state after <paramref name="b"/>, or -1 where no value of the format goes on so.</summary>
    public static int Step(StringFormat format, int state, byte b) => format switch
    {
        StringFormat.DateTime => DateTimeStep(state, b),
        StringFormat.Date => DateStep(state, b),
        StringFormat.Time => TimeStep(state, b),
        StringFormat.Uuid => UuidStep(state, b),
        _ => UriStep(state, b),
    };

    /// <summary>Whether the bytes read are a whole value.</summary>
    public static bool IsWhole(StringFormat format, int state) => format switch
    {
        StringFormat.DateTime => state == DateTimeEnd,
        StringFormat.Date => state == DateLength,
        StringFormat.Time => IsWholeTime(state),
        StringFormat.Uuid => state == UuidLength,
        _ => state == UriPath || ((state & UriHost) != 0 && (state & UriLabelMask) != 0),
    };

    /// <summary>Whether <paramref name="text"/> is a whole value of the format.</summary>
    public static bool Matches(StringFormat format, string text)
    {
        var state = 0;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(text))
            if ((state = Step(format, state, b)) < 0) return false;
        return IsWhole(format, state);
    }

    /// <summary>The characters that finish a value of the format from wherever one may have got
    /// to (JsonSchema.Needs): from each state, a byte toward a whole value that the vocabulary
    /// spells all the way, else the first byte that goes on (which names what is missing).</summary>
    public static IEnumerable<string> Needs(StringFormat format, Func<string, bool> spells)
    {
        var (states, edges) = Graphs[(int)format].Value;
        var spelled = new bool[128];
        for (var b = 0x20; b < 0x7F; b++) spelled[b] = spells(((char)b).ToString());
        // Which states can finish, to a fixed point; from the last reached, as most edges lead
        // to states reached later, so that a pass or two settles it.
        var finishable = new bool[states.Length];
        for (var changed = true; changed;)
        {
            changed = false;
            for (var i = states.Length - 1; i >= 0; i--)
                if (!finishable[i] && (IsWhole(format, states[i]) || edges[i].Any(e => spelled[e.Byte] && finishable[e.Target])))
                    finishable[i] = changed = true;
        }
        var needed = new HashSet<string>();
        for (var i = 0; i < states.Length; i++)
        {
            if (IsWhole(format, states[i])) continue;
            var toward = Array.FindIndex(edges[i], e => spelled[e.Byte] && finishable[e.Target]);
            needed.Add(((char)edges[i][Math.Max(toward, 0)].Byte).ToString());
        }
        return needed;
    }

    /// <summary>Each format's states from the start, in the order first reached, with the
    /// bytes that lead on from each.</summary>
    static readonly Lazy<(int[] States, (byte Byte, int Target)[][] Edges)>[] Graphs =
        [.. Enum.GetValues<StringFormat>().Select(format => new Lazy<(int[], (byte, int)[][])>(() => Graph(format)))];

    static (int[] States, (byte Byte, int Target)[][] Edges) Graph(StringFormat format)
    {
        if (format == StringFormat.None) return ([], []);
        var states = new List<int> { 0 };
        var index = new Dictionary<int, int> { [0] = 0 };
        var edges = new List<(byte, int)[]>();
        for (var i = 0; i < states.Count; i++)
        {
            var from = new List<(byte, int)>();
            for (var b = (byte)0x20; b < 0x7F; b++)
                if (Step(format, states[i], b) is var next and >= 0)
                {
                    if (index.TryAdd(next, states.Count)) states.Add(next);
                    from.Add((b, index[next]));
                }
            edges.Add([.. from]);
        }
        return ([.. states], [.. edges]);
    }

    static bool Digit(byte b, char from = '0', char to = '9') => b >= from && b <= to;

    static int Next(int state, int memory) => ((state & PlaceMask) + 1) | memory << MemoryShift;

    /// <summary>Years 1000 to 9998 (a DateTimeOffset of 9999-12-31 with a negative offset is past
    /// DateTime.MaxValue; one of 0001-01-01 with a positive offset is before its MinValue), months
    /// 01 to 12, and days up to each month's last, February's 28th (29 would need the year's leap).</summary>
    static int DateStep(int state, byte b)
    {
        var memory = state >> MemoryShift;
        switch (state & PlaceMask)
        {
            // Memory: 1 while the year's digits are all 9s.
            case 0: return Digit(b, '1') ? Next(state, b == '9' ? 1 : 0) : -1;
            case 1 or 2: return Digit(b) ? Next(state, memory & (b == '9' ? 1 : 0)) : -1;
            case 3: return Digit(b) && !(memory == 1 && b == '9') ? Next(state, 0) : -1;
            case 4 or 7: return b == '-' ? Next(state, memory) : -1;
            // Memory: the month's first digit, then the month.
            case 5: return Digit(b, '0', '1') ? Next(state, b - '0') : -1;
            case 6: return (memory == 0 ? Digit(b, '1') : Digit(b, '0', '2')) ? Next(state, memory * 10 + b - '0') : -1;
            // Memory: the month, and the day's first digit above it.
            case 8: return Digit(b, '0', memory == 2 ? '2' : '3') ? Next(state, memory | (b - '0') << 4) : -1;
            case 9:
                var (month, tens) = (memory & 0xF, memory >> 4);
                var last = tens switch
                {
                    0 or 1 => '9',
                    2 => month == 2 ? '8' : '9',
                    _ => month is 4 or 6 or 9 or 11 ? '0' : '1',
                };
                return Digit(b, tens == 0 ? '1' : '0', last) ? Next(state, 0) : -1;
            default: return -1;
        }
    }

    /// <summary>Hours 00 to 23, minutes and seconds 00 to 59 (no leap second: .NET reads none),
    /// then '.' and 1 to 7 digits or nothing; the place counts the fraction's digits too.</summary>
    static int TimeStep(int state, byte b)
    {
        var place = state & PlaceMask;
        return place switch
        {
            // Memory: whether the hour's first digit is 2.
            0 => Digit(b, '0', '2') ? Next(state, b == '2' ? 1 : 0) : -1,
            1 => Digit(b, '0', state >> MemoryShift == 1 ? '3' : '9') ? Next(state, 0) : -1,
            2 or 5 => b == ':' ? Next(state, 0) : -1,
            3 or 6 => Digit(b, '0', '5') ? Next(state, 0) : -1,
            4 or 7 => Digit(b) ? Next(state, 0) : -1,
            SecondsLength => b == '.' ? Next(state, 0) : -1,
            > SecondsLength and < TimeLength => Digit(b) ? Next(state, 0) : -1,
            _ => -1,
        };
    }

    static bool IsWholeTime(int state) => state == SecondsLength || state is > SecondsLength + 1 and <= TimeLength;

    // Date-time: the date (places 0 to 9), 'T', the time (11 to 27), then the offset from its sign
    // (28 to 32) or 'Z', to the end (33).
    const int TimeStart = DateLength + 1;
    const int OffsetStart = TimeStart + TimeLength + 1;
    const int DateTimeEnd = OffsetStart + OffsetLength - 1;

    /// <summary>Offsets from -14:00 to +14:00, as DateTimeOffset's.</summary>
    static int DateTimeStep(int state, byte b)
    {
        var place = state & PlaceMask;
        if (place < DateLength) return DateStep(state, b);
        if (place == DateLength) return b == 'T' ? TimeStart : -1;
        if (place < OffsetStart)
        {
            var time = state - TimeStart;
            if (IsWholeTime(time) && b is (byte)'Z' or (byte)'+' or (byte)'-') return b == 'Z' ? DateTimeEnd : OffsetStart;
            var next = TimeStep(time, b);
            return next < 0 ? -1 : next + TimeStart;
        }
        // Memory: the hours' first digit is 1, then: the hours are 14, which no minutes may follow.
        var memory = state >> MemoryShift;
        return (place - OffsetStart) switch
        {
            0 => Digit(b, '0', '1') ? Next(state, b == '1' ? 1 : 0) : -1,
            1 => Digit(b, '0', memory == 1 ? '4' : '9') ? Next(state, memory == 1 && b == '4' ? 1 : 0) : -1,
            2 => b == ':' ? Next(state, memory) : -1,
            3 => Digit(b, '0', memory == 1 ? '0' : '5') ? Next(state, memory) : -1,
            4 => Digit(b, '0', memory == 1 ? '0' : '9') ? DateTimeEnd : -1,
            _ => -1,
        };
    }

    static int UuidStep(int state, byte b) => state switch
    {
        8 or 13 or 18 or 23 => b == '-' ? state + 1 : -1,
        < UuidLength => char.IsAsciiHexDigit((char)b) ? state + 1 : -1,
        _ => -1,
    };

    // Uri: "https://" one byte at a time (places 0 to 7, 's' optional), then the host (UriHost,
    // the host's length and its last label's), then the path (UriPath).
    const string UriPrefix = "https://";
    const int UriHost = 1 << 14;
    const int UriLabelMask = 0x3F;
    const int UriHostShift = 6;
    const int UriPath = 1 << 15;
    /// <summary>Longer labels and hosts are refused by Uri (DNS's limits).</summary>
    const int MaxLabel = 63, MaxHost = 255;

    static int UriStep(int state, byte b)
    {
        if (state == UriPath) return b is (byte)'/' or (byte)'.' or (byte)'_' or (byte)'~' or (byte)'-' || char.IsAsciiLetterOrDigit((char)b) ? UriPath : -1;
        if ((state & UriHost) != 0)
        {
            var (host, label) = ((state >> UriHostShift) & 0xFF, state & UriLabelMask);
            if (b == '/' && label > 0) return UriPath;
            if (host == MaxHost) return -1;
            // A dot needs room after it for a label's character.
            if (b == '.') return label > 0 && host + 1 < MaxHost ? UriHost | (host + 1) << UriHostShift : -1;
            return (char.IsAsciiLetterLower((char)b) || char.IsAsciiDigit((char)b)) && label < MaxLabel ? UriHost | (host + 1) << UriHostShift | (label + 1) : -1;
        }
        // "http" then 's' or ':'.
        if (state == 4 && b == ':') return 6;
        if (b != UriPrefix[state]) return -1;
        return state + 1 == UriPrefix.Length ? UriHost : state + 1;
    }
}
