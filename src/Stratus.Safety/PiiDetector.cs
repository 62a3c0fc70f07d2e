// Finds personal data in text: e-mail addresses, phone numbers, payment card numbers (Luhn),
// IBANs (ISO 13616 mod-97), IPv4/IPv6 addresses and US Social Security numbers (SSA rules).
// Candidates come from regexes; every number format with a checksum or structural rule is then
// verified in code, because ordinary prose is full of digits and a false positive blocks or
// mangles a legitimate request.
//
// Decisions (tested in PiiDetectorTests):
// - A dotted quad is an IPv4 address unless it reads as a version: directly after a letter
//   ("v1.2.3.4") or after the words version, ver, release, build or firmware. A bare "1.2.3.4"
//   is reported: it is a valid address and the text gives no way to tell.
// - Octets with leading zeros ("01.02.03.04") are not addresses (ambiguous octal forms).
// - Phone numbers need separators or a leading "+": North American 3-3-4 groups with a valid
//   area code and exchange, or an international "+CC ..." number of 8 to 15 digits (E.164). A
//   bare run of digits and 7-digit local numbers are not reported.
// - SSNs are reported only in the dashed form (123-45-6789); a bare 9-digit run is too often
//   something else.
// - Text is read in the blocklists' matching form (MatchingForm: invisible characters left
//   out, full-width and mathematical letters as the letters they show), then:
// - Decimal digits of every script ("١٢٣", "１２３") are read as ASCII digits, and full-width
//   forms ("＠", "－": the matching form's; the ideographic space) as their ASCII counterparts: a
//   number typed in a Japanese IME's full-width mode is as personal as an ASCII one. Spans found in the folded
//   text are mapped back to the original, so redaction replaces what was written. The patterns match ASCII digits only ([0-9], not \d), so every
//   candidate the verifiers parse is ASCII by construction.
using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace Stratus.Safety;

public enum PiiKind { Email, Phone, PaymentCard, Iban, IpAddress, Ssn }

/// <summary>What a deployment does with PII it finds.</summary>
public enum PiiMode
{
    /// <summary>Do not look for PII.</summary>
    Off,
    /// <summary>Report it in the filter results; pass the text unchanged.</summary>
    Annotate,
    /// <summary>Replace each occurrence with a label such as [EMAIL].</summary>
    Redact,
    /// <summary>Refuse the request or stop the completion.</summary>
    Block,
}

public sealed class PiiDetector : IContentSafetyProvider, IMatchingFormReader
{
    const RegexOptions Options = RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture;
    static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(200);

    /// <summary>Where candidates of each kind are looked for, each pattern's first try bounded
    /// by one match timeout (SafetyRegex).</summary>
    sealed class Patterns(TimeSpan timeout)
    {
        public readonly SafetyRegex Email = New(
            @"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
            timeout);

        public readonly SafetyRegex NorthAmericanPhone = New(
            @"(?<![\w+])(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?![\w-]|\.[0-9])",
            timeout);

        // A group never starts before 16 digits in a row: a match takes a run whole (the closing
        // lookahead refuses a digit after it), and 16 digits are past the 15 a number has
        // (DigitCount). Without it a long run ("+1" and 40 nines, many times over) was tried at
        // every split into groups before the closing lookahead refused each: a second of CPU for
        // any client who sent it. One answer changes, for the better: a number followed by a space
        // and 16 or more digits is found, where the greedy take of the run made one 20-odd-digit
        // non-number of both.
        public readonly SafetyRegex InternationalPhone = New(
            @"(?<![\w+])\+[1-9][0-9]{0,2}(?:[ .-]?(?![0-9]{16})(?:\([0-9]{1,4}\)|[0-9]{1,5})){2,6}(?![\w-]|\.[0-9])",
            timeout);

        public readonly SafetyRegex Card = New(@"(?<![\w-])[0-9](?:[ -]?[0-9]){12,18}(?![ -]?[0-9])", timeout);

        public readonly SafetyRegex Iban = New(
            @"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?|[A-Z0-9]{11,30})(?![A-Za-z0-9])",
            timeout);

        public readonly SafetyRegex IPv4 = New(
            @"(?<![\w.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?!\w|\.\w)",
            timeout);

        public readonly SafetyRegex IPv6 = New(
            @"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?(?![\w:]|\.[0-9])",
            timeout);

        public readonly SafetyRegex Ssn = New(@"(?<![0-9-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9-])", timeout);

        static SafetyRegex New(string pattern, TimeSpan timeout) => new(new Regex(pattern, Options, timeout));
    }

    static readonly Patterns DefaultPatterns = new(Timeout);

    /// <summary>Whether the words before a dotted quad make it a version. It reads 16 characters,
    /// so its first try keeps the detector's own bound whatever the patterns' is.</summary>
    static readonly SafetyRegex VersionWord = new(new Regex(@"\b(?:version|ver\.?|release|build|firmware)\s*$", Options | RegexOptions.IgnoreCase, Timeout));

    /// <summary>What every kind needs, a digit, an '@' (e-mail) or a ':' (IPv6), in any form the
    /// text is read in: a decimal digit of any script, the full-width '＠' and '：', the high
    /// surrogate of the mathematical digits (U+1D7CE-U+1D7FF), superscript and subscript digits. Prose without any, the most of
    /// what a model writes, is neither folded nor matched: the guard checks its window at every
    /// token.</summary>
    static readonly SearchValues<char> Required = SearchValues.Create([.. "@:＠：\uD835", .. MatchingForm.DigitForms, .. Enumerable.Range(0, char.MaxValue + 1).Select(c => (char)c).Where(char.IsDigit)]);

    readonly HashSet<PiiKind> kinds;
    readonly Patterns patterns;

    public PiiDetector(IEnumerable<PiiKind>? kinds = null) : this(kinds, null) { }

    /// <param name="matchTimeout">Bounds each pattern's first try in place of the 200 ms the
    /// detector's own patterns have: tests make it fire.</param>
    internal PiiDetector(IEnumerable<PiiKind>? kinds, TimeSpan? matchTimeout)
    {
        this.kinds = [.. kinds ?? Enum.GetValues<PiiKind>()];
        patterns = matchTimeout is { } timeout ? new Patterns(timeout) : DefaultPatterns;
    }

    public string Name => "pii";

    /// <summary>Covers IBANs (34 characters plus spaces), IPv6 (45) and addresses of ordinary
    /// length; a longer e-mail address in a stream may be partly sent before it is found.</summary>
    public int StreamingWindow => 64;

    public static string Label(PiiKind kind) => kind switch
    {
        PiiKind.Email => "EMAIL",
        PiiKind.Phone => "PHONE",
        PiiKind.PaymentCard => "CARD",
        PiiKind.Iban => "IBAN",
        PiiKind.IpAddress => "IP_ADDRESS",
        PiiKind.Ssn => "SSN",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    public ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        MatchingForm? form = null;
        return ValueTask.FromResult(((IMatchingFormReader)this).Analyze(text, ref form, cancellationToken));
    }

    IReadOnlyList<CategoryResult> IMatchingFormReader.Analyze(string text, ref MatchingForm? form, CancellationToken cancellationToken)
    {
        var matches = Find(text, ref form);
        if (matches.Count == 0) return [];
        var severity = matches.Max(m => SeverityOf(m.Label));
        return [new CategoryResult(SafetyCategory.Pii, severity, CategoryResult.ScoreFor(severity), Name, matches)];
    }

    static Severity SeverityOf(string label) => label switch
    {
        "CARD" or "IBAN" or "SSN" => Severity.High,
        "EMAIL" or "PHONE" => Severity.Medium,
        _ => Severity.Low,
    };

    /// <summary>Verified PII spans in text order, without overlaps (the longest wins).</summary>
    public IReadOnlyList<SafetyMatch> Find(string text)
    {
        MatchingForm? form = null;
        return Find(text, ref form);
    }

    /// <param name="form">The text's matching form, made here when null and needed.</param>
    IReadOnlyList<SafetyMatch> Find(string text, ref MatchingForm? form)
    {
        if (!text.AsSpan().ContainsAny(Required)) return [];
        // The blocklists' matching form first (MatchingForm): an address written with a zero-width
        // space or soft hyphen inside it, or in mathematical letters, is the address it shows.
        var read = form ??= MatchingForm.Of(text);
        var folded = Fold(read.Text);
        var candidates = new List<SafetyMatch>();
        if (!FindCandidates(folded, candidates))
        {
            // A pattern neither engine could settle in its time (SafetyRegex): hostile input, or
            // a machine far past busy. Fail closed.
            return [new SafetyMatch(0, text.Length, "PII_TIMEOUT")];
        }
        var found = RemoveOverlaps(candidates, folded.Length);
        if (!read.IsFolded) return found;
        // A loop, not a lambda: one capturing the form would be allocated at every call.
        for (var i = 0; i < found.Count; i++)
        {
            var (start, end) = read.Original(found[i].Start, found[i].End);
            found[i] = found[i] with { Start = start, Length = end - start };
        }
        return found;
    }

    /// <summary>Replaces each span with [LABEL]. Spans must not overlap (Find guarantees it).</summary>
    public static string Redact(string text, IEnumerable<SafetyMatch> matches)
    {
        var builder = new StringBuilder(text.Length);
        var position = 0;
        foreach (var m in matches.OrderBy(m => m.Start))
        {
            if (m.Start < position) continue;
            builder.Append(text, position, m.Start - position).Append('[').Append(m.Label).Append(']');
            position = m.End;
        }
        return builder.Append(text, position, text.Length - position).ToString();
    }

    /// <summary>The text (in its matching form, where full-width ASCII is ASCII already) with
    /// digits of any script and the ideographic space replaced by ASCII, one character for one
    /// so that indices still point into the matching form.</summary>
    static string Fold(string text) =>
        Ascii.IsValid(text) ? text : string.Create(text.Length, text, static (folded, source) =>
        {
            for (var i = 0; i < source.Length; i++) folded[i] = Fold(source[i]);
        });

    static char Fold(char c) => c switch
    {
        '\u3000' => ' ',
        _ when char.IsDigit(c) => (char)('0' + CharUnicodeInfo.GetDecimalDigitValue(c)),
        _ => c,
    };

    /// <summary>Adds the candidates of every kind looked for in <paramref name="text"/>; false
    /// where a pattern's matches could not all be told (SafetyRegex.Matches.TimedOut).</summary>
    bool FindCandidates(string text, List<SafetyMatch> into)
    {
        var p = patterns;
        if (kinds.Contains(PiiKind.Email) && !AddAll(p.Email, text, PiiKind.Email, into, static (_, _) => true)) return false;
        if (kinds.Contains(PiiKind.Phone)
            && !(AddAll(p.NorthAmericanPhone, text, PiiKind.Phone, into, static (_, _) => true)
                 && AddAll(p.InternationalPhone, text, PiiKind.Phone, into, static (_, m) => DigitCount(m.Value) is >= 8 and <= 15))) return false;
        if (kinds.Contains(PiiKind.PaymentCard) && !AddAll(p.Card, text, PiiKind.PaymentCard, into, static (_, m) => IsPaymentCard(m.Value))) return false;
        if (kinds.Contains(PiiKind.Iban) && !AddIbans(p.Iban, text, into)) return false;
        if (kinds.Contains(PiiKind.IpAddress)
            && !(AddAll(p.IPv4, text, PiiKind.IpAddress, into, static (text, m) => !ReadsAsVersion(text, m.Index))
                 && AddAll(p.IPv6, text, PiiKind.IpAddress, into, static (_, m) => IsIPv6(m.Value)))) return false;
        return !kinds.Contains(PiiKind.Ssn) || AddAll(p.Ssn, text, PiiKind.Ssn, into, static (_, m) => IsSsn(m.Value));
    }

    /// <summary>Adds the regex's matches in <paramref name="text"/> that <paramref name="verify"/>
    /// (given the text too: a lambda capturing it would be allocated at every call of Find, prose
    /// included) accepts; false where a timeout left some untold.</summary>
    static bool AddAll(SafetyRegex regex, string text, PiiKind kind, List<SafetyMatch> into, Func<string, Match, bool> verify)
    {
        var matches = regex.Find(text);
        while (matches.MoveNext())
            if (verify(text, matches.Current)) into.Add(new SafetyMatch(matches.Current.Index, matches.Current.Length, Label(kind)));
        return !matches.TimedOut;
    }

    static bool AddIbans(SafetyRegex iban, string text, List<SafetyMatch> into)
    {
        var matches = iban.Find(text);
        while (matches.MoveNext())
        {
            var m = matches.Current;
            // A grouped IBAN followed by a capitalised word ("... 0130 00 ABCD") swallows the
            // word as a group; drop trailing groups until the checksum holds.
            var candidate = m.Value;
            while (!IsIban(candidate))
            {
                var lastSpace = candidate.LastIndexOf(' ');
                if (lastSpace < 0) { candidate = ""; break; }
                candidate = candidate[..lastSpace];
            }
            if (candidate.Length > 0) into.Add(new SafetyMatch(m.Index, candidate.Length, Label(PiiKind.Iban)));
        }
        return !matches.TimedOut;
    }

    /// <summary>Longest first, then leftmost, each kept unless it overlaps one kept before. One
    /// candidate, as most texts with PII have, is kept as it is: on the guard's path, the sort
    /// and its buffers would be allocated at every check.</summary>
    /// <param name="textLength">The length of the text the candidates are spans of.</param>
    static List<SafetyMatch> RemoveOverlaps(List<SafetyMatch> candidates, int textLength)
    {
        if (candidates.Count < 2) return candidates;
        var kept = new List<SafetyMatch>(candidates.Count);
        // The characters kept spans cover: a candidate reads its own characters rather than every
        // span kept, which took time in the square of their number (a 1 MiB moderation input of
        // e-mail addresses: a minute). Each pattern's matches do not overlap one another, so the
        // candidates cover the text at most once a pattern.
        var taken = ArrayPool<bool>.Shared.Rent(textLength);
        try
        {
            Array.Clear(taken, 0, textLength);
            foreach (var c in candidates.OrderByDescending(c => c.Length).ThenBy(c => c.Start))
            {
                var span = taken.AsSpan(c.Start, c.Length);
                if (span.Contains(true)) continue;
                span.Fill(true);
                kept.Add(c);
            }
        }
        finally
        {
            ArrayPool<bool>.Shared.Return(taken);
        }
        kept.Sort(static (a, b) => a.Start.CompareTo(b.Start));
        return kept;
    }

    static int DigitCount(string s)
    {
        var count = 0;
        foreach (var c in s) if (char.IsAsciiDigit(c)) count++;
        return count;
    }

    static bool ReadsAsVersion(string text, int index)
    {
        var start = Math.Max(0, index - 16);
        // Where nothing can tell, it is not a version: the address is reported (fail closed).
        var word = VersionWord.Find(text.Substring(start, index - start));
        return word.MoveNext();
    }

    // How issuers print card numbers: 4-4-4-4 (and 4-4-4-4-3 for 19 digits), Amex 4-6-5,
    // Diners 4-6-4. A digit run grouped any other way (the tail of an IBAN, a reference
    // number) is not reported even if it happens to pass Luhn, as one in ten numbers does.
    static readonly int[][] CardGroupings = [[4, 4, 4, 4], [4, 4, 4, 4, 3], [4, 6, 5], [4, 6, 4]];

    internal static bool IsPaymentCard(string value)
    {
        var groups = value.Split([' ', '-']).Select(g => g.Length).ToArray();
        if (groups.Length > 1 && !CardGroupings.Any(g => g.SequenceEqual(groups))) return false;
        Span<char> digits = stackalloc char[19];
        var n = 0;
        foreach (var c in value)
            if (char.IsAsciiDigit(c))
            {
                if (n == digits.Length) return false;
                digits[n++] = c;
            }
        return n is >= 13 and <= 19 && LuhnValid(digits[..n]);
    }

    /// <summary>Luhn mod 10: double every second digit from the right.</summary>
    internal static bool LuhnValid(ReadOnlySpan<char> digits)
    {
        var sum = 0;
        for (var i = 0; i < digits.Length; i++)
        {
            var d = digits[digits.Length - 1 - i] - '0';
            if (i % 2 == 1)
            {
                d *= 2;
                if (d > 9) d -= 9;
            }
            sum += d;
        }
        return sum % 10 == 0;
    }

    /// <summary>ISO 13616: move the first four characters to the end, letters become 10..35,
    /// and the number mod 97 must be 1. Computed digit by digit to avoid big integers.</summary>
    internal static bool IsIban(string value)
    {
        var compact = value.Replace(" ", "");
        if (compact.Length is < 15 or > 34) return false;
        var rearranged = compact[4..] + compact[..4];
        var remainder = 0;
        foreach (var c in rearranged)
        {
            if (char.IsAsciiDigit(c)) remainder = (remainder * 10 + (c - '0')) % 97;
            else if (char.IsAsciiLetterUpper(c)) remainder = (remainder * 100 + (c - 'A' + 10)) % 97;
            else return false;
        }
        return remainder == 1;
    }

    static bool IsIPv6(string value) =>
        value.Trim(':').Length > 0
        && IPAddress.TryParse(value, out var address)
        && address.AddressFamily == AddressFamily.InterNetworkV6;

    /// <summary>SSA rules: area 000, 666 and 900-999, group 00 and serial 0000 are never issued.</summary>
    internal static bool IsSsn(string value)
    {
        var area = int.Parse(value.AsSpan(0, 3));
        var group = int.Parse(value.AsSpan(4, 2));
        var serial = int.Parse(value.AsSpan(7, 4));
        return area is not (0 or 666 or >= 900) && group != 0 && serial != 0;
    }
}
