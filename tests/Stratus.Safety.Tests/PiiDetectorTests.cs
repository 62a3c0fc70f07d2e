// PII detection: no false positives on ordinary prose, every supported format found, and
// numbers with a wrong checksum or an unissued range left alone.
using Stratus.Safety;

namespace Stratus.Safety.Tests;

public sealed class PiiDetectorTests
{
    static readonly PiiDetector Detector = new();

    static string[] Labels(string text) => [.. Detector.Find(text).Select(m => m.Label)];

    [Fact]
    public void Flags_none_of_200_ordinary_sentences()
    {
        var sentences = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "OrdinarySentences.txt")).Where(l => l.Length > 0).ToList();
        Assert.True(sentences.Count >= 200);
        var flagged = sentences.Select(s => (s, found: Detector.Find(s))).Where(x => x.found.Count > 0)
            .Select(x => $"{x.s} -> {string.Join(", ", x.found.Select(m => $"{m.Label}:{x.s.Substring(m.Start, m.Length)}"))}").ToList();
        Assert.True(flagged.Count == 0, string.Join("\n", flagged));
    }

    [Theory]
    [InlineData("+1")]
    [InlineData("+1 ")]
    [InlineData("+44 20 ")]
    public void Long_digit_runs_after_a_plus_sign_are_no_number_and_no_timeout(string lead)
    {
        // Each run is read once: before, the international phone pattern tried every split of
        // 40 digits into groups at every plus sign, past both of its time bounds (PII_TIMEOUT).
        var text = string.Concat(Enumerable.Repeat(lead + new string('9', 40) + " ", 2000));
        Assert.Empty(Detector.Find(text));
    }

    [Fact]
    public void A_number_followed_by_a_long_digit_run_is_found()
    {
        const string text = "call +44 20794 60958 1234567890123456 now";
        var match = Assert.Single(Detector.Find(text));
        Assert.Equal(("PHONE", "+44 20794 60958"), (match.Label, text.Substring(match.Start, match.Length)));
    }

    [Theory]
    [InlineData("Write to john.doe@example.com today", "EMAIL", "john.doe@example.com")]
    [InlineData("cc a_b+tag@mail.co.uk, please", "EMAIL", "a_b+tag@mail.co.uk")]
    [InlineData("Call (415) 555-2671 after lunch", "PHONE", "(415) 555-2671")]
    [InlineData("Call 415-555-2671 after lunch", "PHONE", "415-555-2671")]
    [InlineData("Call 415.555.2671 after lunch", "PHONE", "415.555.2671")]
    [InlineData("London office: +44 20 7946 0958.", "PHONE", "+44 20 7946 0958")]
    [InlineData("Berlin office: +49 30 901820 now", "PHONE", "+49 30 901820")]
    [InlineData("US: +1 415 555 2671", "PHONE", "+1 415 555 2671")]
    [InlineData("Card 4111 1111 1111 1111 exp 12/29", "CARD", "4111 1111 1111 1111")]
    [InlineData("Card 5555555555554444.", "CARD", "5555555555554444")]
    [InlineData("Amex 3782 822463 10005 ok", "CARD", "3782 822463 10005")]
    [InlineData("Discover 6011-1111-1111-1117", "CARD", "6011-1111-1111-1117")]
    [InlineData("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN", "DE89 3704 0044 0532 0130 00")]
    [InlineData("IBAN DE89 3704 0044 0532 0130 00 ABCD please", "IBAN", "DE89 3704 0044 0532 0130 00")]
    [InlineData("Pay GB82WEST12345698765432 now", "IBAN", "GB82WEST12345698765432")]
    [InlineData("Pay FR14 2004 1010 0505 0001 3M02 606.", "IBAN", "FR14 2004 1010 0505 0001 3M02 606")]
    [InlineData("Pay NL91ABNA0417164300", "IBAN", "NL91ABNA0417164300")]
    [InlineData("Server 192.168.1.20 is down.", "IP_ADDRESS", "192.168.1.20")]
    [InlineData("DNS is 8.8.8.8", "IP_ADDRESS", "8.8.8.8")]
    [InlineData("Ping 1.2.3.4 now", "IP_ADDRESS", "1.2.3.4")]
    [InlineData("Host 2001:db8::8a2e:370:7334 replied", "IP_ADDRESS", "2001:db8::8a2e:370:7334")]
    [InlineData("Link-local fe80::1 only", "IP_ADDRESS", "fe80::1")]
    [InlineData("Mapped ::ffff:192.0.2.1 here", "IP_ADDRESS", "::ffff:192.0.2.1")]
    [InlineData("Full 2001:0db8:85a3:0000:0000:8a2e:0370:7334.", "IP_ADDRESS", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]
    [InlineData("SSN 536-22-8726 on file", "SSN", "536-22-8726")]
    // Digits of other scripts and full-width forms are read as ASCII; the span is the original text.
    [InlineData("SSN ５３６-２２-８７２６ on file", "SSN", "５３６-２２-８７２６")]
    [InlineData("SSN ٥٣٦-٢٢-٨٧٢٦ on file", "SSN", "٥٣٦-٢٢-٨٧٢٦")]
    [InlineData("ref 536-22-872٦", "SSN", "536-22-872٦")]
    [InlineData("カード ４１１１　１１１１　１１１１　１１１１ です", "CARD", "４１１１　１１１１　１１１１　１１１１")]
    [InlineData("電話 ４１５－５５５－２６７１ まで", "PHONE", "４１５－５５５－２６７１")]
    [InlineData("メール ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ へ", "EMAIL", "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ")]
    public void Finds_each_supported_format(string text, string label, string expected)
    {
        var match = Assert.Single(Detector.Find(text));
        Assert.Equal(label, match.Label);
        Assert.Equal(expected, text.Substring(match.Start, match.Length));
    }

    [Theory]
    [InlineData("Card 4111 1111 1111 1112 exp 12/29")]
    [InlineData("Card 5555555555554445.")]
    [InlineData("IBAN DE89 3704 0044 0532 0130 01 please")]
    [InlineData("Pay GB82WEST12345698765431 now")]
    [InlineData("Pay NL92ABNA0417164300")]
    [InlineData("Ref 4111 1111 1111 11 11")]
    [InlineData("Address 256.1.1.1 is not valid")]
    [InlineData("Octal-looking 01.02.03.04 is not an address")]
    [InlineData("Version 1.2.3.4 is out")]
    [InlineData("Upgrade to v1.2.3.4 today")]
    [InlineData("release 10.0.2.1 notes")]
    [InlineData("It ended at 12:30:45 exactly")]
    [InlineData("Use std::vector here")]
    [InlineData("SSN 000-12-3456")]
    [InlineData("SSN 666-12-3456")]
    [InlineData("SSN 900-12-3456")]
    [InlineData("SSN 123-00-4567")]
    [InlineData("SSN 123-45-0000")]
    [InlineData("Call 115-555-2671")]
    [InlineData("Extension +12 34")]
    [InlineData("mail me at john@localhost")]
    public void Leaves_invalid_checksums_and_non_pii_alone(string text) =>
        Assert.Empty(Detector.Find(text));

    [Fact]
    public void Redacts_every_occurrence_with_its_label()
    {
        var text = "Mail bob@example.org or call 415-555-2671; card 4111111111111111, ssn 536-22-8726, ip 10.0.0.1.";
        var redacted = PiiDetector.Redact(text, Detector.Find(text));
        Assert.Equal("Mail [EMAIL] or call [PHONE]; card [CARD], ssn [SSN], ip [IP_ADDRESS].", redacted);
    }

    [Fact]
    public void Of_overlapping_candidates_the_longest_is_kept_and_the_spans_come_in_text_order()
    {
        // The IPv4 address inside the IPv6 one is a candidate too, and the IPv6 one, longer, wins;
        // repeated, each repetition is found (RemoveOverlaps reads the characters that kept spans cover).
        const string piece = "at ::ffff:192.168.0.1 or bob@example.org, ";
        var text = string.Concat(Enumerable.Repeat(piece, 3000));
        var found = Detector.Find(text);
        Assert.Equal(6000, found.Count);
        for (var i = 0; i < found.Count; i += 2)
        {
            var at = i / 2 * piece.Length;
            Assert.Equal(new SafetyMatch(at + 3, "::ffff:192.168.0.1".Length, "IP_ADDRESS"), found[i]);
            Assert.Equal(new SafetyMatch(at + 25, "bob@example.org".Length, "EMAIL"), found[i + 1]);
        }
    }

    [Theory]
    [InlineData("my number is ١٢٣-٤٥-٦٧٨٩ ok")]
    [InlineData("my number is １２３-４５-６７８٩ ok")]
    [InlineData("ref 123-45-678٩")]
    public async Task Ssn_shaped_non_ascii_digits_do_not_throw(string text)
    {
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("gpt2"), []);
        Assert.False((await pipeline.AnalyzeAsync(text, ContentDirection.Prompt)).Blocked);
    }

    [Theory]
    [InlineData("Mail jo\u200Bhn@example.org today", "Mail [EMAIL] today")]
    [InlineData("Mail john@exam\u00ADple.org today", "Mail [EMAIL] today")]
    [InlineData("call 415-\u2060555-2671 now", "call [PHONE] now")]
    [InlineData("ssn 536\u200D-22-8726, card 4111\uFE0F111111111111.", "ssn [SSN], card [CARD].")]
    [InlineData("Mail 𝐣𝐨𝐡𝐧@example.org today", "Mail [EMAIL] today")]
    [InlineData("call 𝟒𝟏𝟓-𝟓𝟓𝟓-𝟐𝟔𝟕𝟏 now", "call [PHONE] now")]
    [InlineData("ssn ⁵³⁶-²²-⁸⁷²⁶ here", "ssn [SSN] here")]          // superscript digits, and nothing else a digit
    [InlineData("call ₄₁₅-₅₅₅-₂₆₇₁ now", "call [PHONE] now")]        // subscript
    public void Invisible_characters_and_letters_drawn_otherwise_do_not_hide_pii(string text, string redacted)
    {
        // Read in the blocklists' matching form; before, each of these passed unseen.
        Assert.Equal(redacted, PiiDetector.Redact(text, Detector.Find(text)));
    }

    [Theory]
    [InlineData("The committee met on a grey morning to discuss the harbour and the ferries.")]
    [InlineData("Η επιτροπή συναντήθηκε ένα γκρίζο πρωινό για το λιμάνι της πόλης.")]
    [InlineData("委员会在一个灰色的早晨开会，讨论港口和渡轮。")]
    public void Prose_without_a_digit_at_sign_or_colon_is_read_without_allocating(string prose)
    {
        // The streaming guard looks for PII in its window at every token, and that is mostly
        // prose like this: it was read in its matching form first (an object, or a copy of the
        // window with where each character came from) only to find nothing to match.
        Detector.Find(prose);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var found = Detector.Find(prose);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Empty(found);
    }

    [Fact]
    public void Redaction_replaces_the_original_characters_of_a_full_width_number()
    {
        const string text = "ssn ５３６－２２－８７２６, card ４１１１-１１１１-１１１１-１１１１.";
        Assert.Equal("ssn [SSN], card [CARD].", PiiDetector.Redact(text, Detector.Find(text)));
    }

    [Fact]
    public void Disabled_kinds_are_not_reported()
    {
        var onlyEmail = new PiiDetector([PiiKind.Email]);
        Assert.Equal(["EMAIL"], onlyEmail.Find("a@b.io at 10.0.0.1").Select(m => m.Label));
    }

    [Fact]
    public async Task Severity_is_high_for_financial_and_identity_numbers()
    {
        var results = await Detector.AnalyzeAsync("ssn 536-22-8726 and a@b.io", ContentDirection.Prompt, default);
        var result = Assert.Single(results);
        Assert.Equal(SafetyCategory.Pii, result.Category);
        Assert.Equal(Severity.High, result.Severity);
        Assert.Equal(["SSN", "EMAIL"], result.Matches.Select(m => m.Label));
        var low = Assert.Single(await Detector.AnalyzeAsync("ip 10.0.0.1", ContentDirection.Prompt, default));
        Assert.Equal(Severity.Low, low.Severity);
    }

    [Theory]
    [InlineData("79927398713", true)]
    [InlineData("79927398710", false)]
    [InlineData("4111111111111111", true)]
    public void Luhn_matches_the_reference_examples(string digits, bool valid) =>
        Assert.Equal(valid, PiiDetector.LuhnValid(digits));

    [Fact]
    public void Mod97_accepts_only_the_right_check_digits()
    {
        Assert.True(PiiDetector.IsIban("GB29NWBK60161331926819"));
        var accepted = Enumerable.Range(0, 100).Select(i => $"GB{i:00}NWBK60161331926819").Count(PiiDetector.IsIban);
        Assert.Equal(1, accepted);
    }
}
