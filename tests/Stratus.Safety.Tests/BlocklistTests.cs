// Custom blocklists: whole-word, case-insensitive terms; regexes validated at creation and
// bounded by a match timeout.
using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Stratus.Safety;

namespace Stratus.Safety.Tests;

public sealed class BlocklistTests
{
    static async Task<IReadOnlyList<CategoryResult>> Analyze(Blocklist list, string text) =>
        await new BlocklistProvider([CompiledBlocklist.Compile(list)]).AnalyzeAsync(text, ContentDirection.Prompt, default);

    [Theory]
    [InlineData("That is a FooBar idea", true)]
    [InlineData("foobar.", true)]
    [InlineData("(foobar)", true)]
    [InlineData("foobars are fine", false)]
    [InlineData("snafoobar", false)]
    [InlineData("foo_bar", false)]
    public async Task Terms_match_whole_words_case_insensitively(string text, bool hit)
    {
        var results = await Analyze(new Blocklist("words", ["foobar"], []), text);
        Assert.Equal(hit, results.Count == 1);
    }

    [Theory]
    [InlineData("κακός", "ΚΑΚΌΣ")]                              // final sigma: the regex pairs Σ with σ alone
    [InlineData("ΚΑΚΌΣ", "είναι κακός")]
    [InlineData("σοφός", "ΣΟΦΌΣ")]
    [InlineData("µg", "ΜG")]                                    // the micro sign: the regex pairs Μ with μ alone
    [InlineData("ϐαρύς", "ΒΑΡΎΣ")]                              // β's curled form
    [InlineData("\U0001E900\U0001E923", "\U0001E922\U0001E901")]    // Adlam: the regex folds no case past U+FFFF
    [InlineData("\U00010400\U0001042F", "\U00010428\U00010407")]    // Deseret
    public async Task Terms_match_in_any_case_where_the_regex_alone_would_not(string term, string text)
    {
        // .NET's IgnoreCase pairs each capital with one small letter and folds UTF-16 characters
        // only: the matching form reads the other small forms (ς, µ, ϐ) as the one it pairs, and
        // letters past U+FFFF in one case.
        Assert.Single(await Analyze(new Blocklist("words", [term], []), text));
    }

    [Fact]
    public void Terms_are_one_entry_exactly_when_the_term_regex_reads_them_alike()
    {
        // Every character of the BMP that the matching form reads as one: the characters its term
        // regex matches, read so too, are exactly those with its entry key. OrdinalIgnoreCase pairs
        // more (µ and μ) and fewer (ß and ẞ) than the regex.
        var read = new char[0x10000];
        for (var c = 1; c < read.Length; c++)
            read[c] = char.IsSurrogate((char)c) || char.IsWhiteSpace((char)c) || MatchingForm.Of(((char)c).ToString()).Text is not [var one] ? '\0' : one;
        var text = new string(read);
        var entries = Enumerable.Range(1, read.Length - 1).Where(c => read[c] != '\0')
            .GroupBy(c => Blocklist.EntryKey(((char)c).ToString())).ToDictionary(g => g.Key, g => g.ToHashSet());
        var wrong = new List<string>();
        foreach (var (key, alike) in entries)
        {
            var matched = new HashSet<int>();
            var regex = new Regex(Regex.Escape(read[alike.First()].ToString()), CompiledBlocklist.Options);
            for (var m = regex.Match(text); m.Success; m = m.NextMatch()) matched.Add(m.Index);
            if (!matched.SetEquals(alike))
                wrong.Add($"U+{alike.First():X4}: matches {string.Join(" ", matched.Order().Select(c => $"U+{c:X4}"))}, one entry with {string.Join(" ", alike.Order().Select(c => $"U+{c:X4}"))}");
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(10)));
    }

    [Theory]
    [InlineData("炸弹", "如何制造炸弹的方法")]
    [InlineData("爆弾", "爆弾を作る方法")]
    [InlineData("ระเบิด", "วิธีทำระเบิดที่บ้าน")]
    [InlineData("ລະເບີດ", "ວິທີເຮັດລະເບີດ")]
    [InlineData("គ្រាប់បែក", "វិធីធ្វើគ្រាប់បែកនៅផ្ទះ")]
    [InlineData("ဗုံး", "ဗုံးလုပ်နည်း")]
    public async Task A_term_in_running_text_of_a_script_without_spaces_is_blocked(string term, string text)
    {
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("gpt2") with { Blocklists = ["words"] }, [new Blocklist("words", [term], [])]);
        Assert.True((await pipeline.AnalyzeAsync(text, ContentDirection.Prompt)).Blocked);
        Assert.True((await pipeline.AnalyzeAsync(term, ContentDirection.Prompt)).Blocked);
    }

    [Theory]
    [InlineData("sarin毒气", "how to make sarin毒气 at home", true)]
    [InlineData("sarin毒气", "how to make xsarin毒气 at home", false)]
    [InlineData("毒气sarin", "毒气sarins are not this term", false)]
    [InlineData("sarin", "如何制造sarin的方法", true)]
    [InlineData("sarin", "爆弾をsarinで", true)]
    [InlineData("sarin", "วิธีทำsarinที่บ้าน", true)]
    public async Task A_term_keeps_the_word_boundary_at_an_edge_in_a_spaced_script(string term, string text, bool hit)
    {
        var results = await Analyze(new Blocklist("words", [term], []), text);
        Assert.Equal(hit, results.Count == 1);
    }

    [Theory]
    [InlineData("how to build a ｂｏｍｂ", "ｂｏｍｂ")]          // full-width
    [InlineData("ＢＯＭＢ now", "ＢＯＭＢ")]
    [InlineData("a 𝐛𝐨𝐦𝐛 here", "𝐛𝐨𝐦𝐛")]                    // mathematical bold
    [InlineData("a 𝒷𝑜𝓂𝒷 here", "𝒷𝑜𝓂𝒷")]                    // mathematical script and italic
    [InlineData("a 𝒷ℴ𝓂𝒷 here", "𝒷ℴ𝓂𝒷")]                     // script as written: its o is U+2134
    [InlineData("ℬℴ𝓂𝒷!", "ℬℴ𝓂𝒷")]                            // the script B is U+212C
    [InlineData("a 🅑🅞🅜🅑 here", "🅑🅞🅜🅑")]                    // negative circled
    [InlineData("ⓑⓞⓜⓑ!", "ⓑⓞⓜⓑ")]                          // circled
    [InlineData("a bo\u200bmb here", "bo\u200bmb")]          // zero-width space
    [InlineData("a b\u200do\u200dm\u200db here", "b\u200do\u200dm\u200db")]   // zero-width joiners
    [InlineData("a bo\u00admb here", "bo\u00admb")]          // soft hyphen
    [InlineData("a b\u0337o\u0337m\u0337b\u0337 here", "b\u0337o\u0337m\u0337b\u0337")]   // combining diacritics
    [InlineData("a bo\u0335\u0336mb here", "bo\u0335\u0336mb")]   // overlays, which compose with no letter
    [InlineData("a b\u0301\u0302o\u0337mb here", "b\u0301\u0302o\u0337mb")]   // b has no accented forms
    [InlineData("a bomb\ufe0f here", "bomb\ufe0f")]          // variation selector
    [InlineData("如何制造ｂｏｍｂ的方法", "ｂｏｍｂ")]
    [InlineData("a ᵇᵒᵐᵇ here", "ᵇᵒᵐᵇ")]                      // superscript
    [InlineData("a ᴮᴼᴹᴮ here", "ᴮᴼᴹᴮ")]                      // superscript capitals
    [InlineData("a bₒmb here", "bₒmb")]                      // a subscript letter
    public async Task A_term_written_in_other_forms_of_its_letters_or_padded_with_invisible_characters_is_found(string text, string written)
    {
        var result = Assert.Single(await Analyze(new Blocklist("words", ["bomb"], []), text));
        var span = Assert.Single(result.Matches);
        // Reported as written: what the guard holds back and a client would have seen.
        Assert.Equal(written, text.Substring(span.Start, span.Length));
    }

    [Theory]
    [InlineData("a bоmb here", "bоmb")]                      // Cyrillic о
    [InlineData("a ВОМВ here", "ВОМВ")]                      // Cyrillic capitals
    [InlineData("a bοmb here", "bοmb")]                      // Greek ο
    [InlineData("a ΒΟΜΒ here", "ΒΟΜΒ")]                      // Greek capitals
    [InlineData("a bօmb here", "bօmb")]                      // Armenian օ
    [InlineData("a Ᏼomb here", "Ᏼomb")]                      // Cherokee Ᏼ
    [InlineData("a b\U0001D6D0mb here", "b\U0001D6D0mb")]   // mathematical bold Greek ο
    [InlineData("a bо\u200bmb here", "bо\u200bmb")]          // with a zero-width space too
    public async Task A_term_written_with_look_alike_letters_of_other_scripts_is_found(string text, string written)
    {
        var result = Assert.Single(await Analyze(new Blocklist("words", ["bomb"], []), text));
        var span = Assert.Single(result.Matches);
        Assert.Equal(written, text.Substring(span.Start, span.Length));
    }

    [Theory]
    [InlineData("вода", "чистая вода", true)]
    [InlineData("вода", "ЧИСТАЯ ВОДА", true)]
    [InlineData("вода", "чистая вoдa", true)]          // Latin o and a in a Russian word
    [InlineData("ВОДА", "чистая BOДA", true)]          // Latin capitals
    [InlineData("вода", "чистая вод", false)]
    [InlineData("ёж", "е\u0308ж в лесу", true)]         // ё decomposed: its е is read as e, and ё as ë
    [InlineData("ёж", "ëж в лесу", true)]              // Latin ë
    [InlineData("ўзбек", "у\u0306збек", true)]          // ў, which Latin has no y with a breve for
    [InlineData("ўзбек", "узбек", false)]
    [InlineData("ύδωρ", "ΎΔΩΡ", true)]
    public async Task Look_alike_letters_are_read_alike_in_terms_and_text_of_any_script(string term, string text, bool hit)
    {
        var results = await Analyze(new Blocklist("words", [term], []), text);
        Assert.Equal(hit, results.Count == 1);
    }

    [Theory]
    [InlineData("bot", "вот и всё", false)]      // в and т look like b and t only as capitals
    [InlineData("bot", "Вот и всё", false)]
    [InlineData("bot", "ВОТ И ВСЁ", true)]       // drawn as BOT
    [InlineData("bot", "bот и всё", true)]       // Latin b: a word of two scripts
    [InlineData("pot", "открыл рот", false)]
    [InlineData("pot", "ОТКРЫЛ РОТ", true)]
    [InlineData("вот", "вот и всё", true)]       // a term of the text's own script is its letters
    [InlineData("вот", "bot", true)]
    [InlineData("tax", "τάξη", false)]
    [InlineData("max", "μάχη", false)]
    [InlineData("kai", "και", false)]            // κ looks like K only as a capital
    [InlineData("kai", "ΚΑΙ", true)]
    public async Task A_word_of_another_script_matches_a_latin_term_only_if_it_is_drawn_as_it(string term, string text, bool hit)
    {
        var results = await Analyze(new Blocklist("words", [term], []), text);
        Assert.Equal(hit, results.Count == 1);
    }

    [Fact]
    public async Task Ordinary_russian_and_greek_sentences_are_not_blocked_by_a_list_of_english_terms()
    {
        // Read letter by letter, "рот" (mouth) was "pot" and "Вот" (here is) "bot": 3 of 40 Russian
        // sentences were blocked by this list. Words of one script that are not drawn as the term
        // (their в, т read as b, t through their capitals) are not its hits.
        string[] terms = ["ass", "asshole", "bastard", "bitch", "bollocks", "boob", "boobs", "bomb", "bomber", "bullshit", "butt", "cock", "coke", "cocaine",
            "crack", "crap", "cum", "cunt", "damn", "dick", "dildo", "dope", "fag", "fuck", "fucker", "gun", "guns", "hell", "heroin", "hoe", "homo",
            "horny", "jerk", "kill", "killer", "kkk", "meth", "molest", "murder", "nazi", "nude", "orgasm", "orgy", "penis", "piss", "poop", "porn",
            "pot", "prick", "pussy", "rape", "rapist", "retard", "scam", "semen", "sex", "sexy", "shit", "shoot", "slut", "smack", "spunk", "stab",
            "suicide", "terror", "tit", "tits", "twat", "vagina", "wank", "weed", "whore", "xxx", "acid", "ammo", "anal", "arse", "bang", "beat",
            "blow", "bot", "cop", "cops", "hate", "hack", "hot", "hit", "nuke", "pig", "pimp", "poison", "rifle", "thug", "toke", "yob", "knife",
            "hoax", "booze", "kiss", "naked", "pee", "puke", "skank", "slay", "shag", "tosser", "tramp", "cack", "bimbo", "moron", "idiot"];
        var sentences = await File.ReadAllLinesAsync(Path.Combine(AppContext.BaseDirectory, "RussianAndGreekSentences.txt"));
        var list = new Blocklist("english", terms, []);
        var blocked = new List<string>();
        foreach (var sentence in sentences)
            if ((await Analyze(list, sentence)).Count > 0) blocked.Add(sentence);
        Assert.True(blocked.Count == 0, string.Join("\n", blocked));
        Assert.Single(await Analyze(list, sentences[0] + " ВОМВ"));
    }

    [Fact]
    public void A_letter_and_its_other_case_are_read_as_one_letter()
    {
        // Terms match in either case, so a look-alike fold that read В as B must read в as b:
        // a Russian term in capitals would otherwise miss the same word in small letters.
        var wrong = new List<string>();
        for (var c = '\u00A0'; c < char.MaxValue; c++)
        {
            if (char.IsSurrogate(c)) continue;
            foreach (var other in new[] { char.ToUpperInvariant(c), char.ToLowerInvariant(c) })
                // (U+0345, a mark the form leaves out, has Ι as its capital.)
                if (other != c && Blocklist.EntryKey(c.ToString()) is [_, ..] and var key && key != Blocklist.EntryKey(other.ToString()))
                    wrong.Add($"U+{(int)c:X4} {Blocklist.EntryKey(c.ToString())} and U+{(int)other:X4} {Blocklist.EntryKey(other.ToString())}");
        }
        Assert.True(wrong.Count == 0, string.Join("\n", wrong.Take(10)));
    }

    [Theory]
    [InlineData("año", "el año pasado", true)]
    [InlineData("ano", "el año pasado", false)]         // a precomposed letter is a letter of its own
    [InlineData("ano", "el an\u0303o pasado", false)]   // and so is the same letter written decomposed
    [InlineData("año", "el an\u0303o pasado", true)]
    [InlineData("an\u0303o", "el año pasado", true)]    // a term typed decomposed is the word it shows
    [InlineData("an\u0303o", "un ano", false)]
    [InlineData("мой", "это мои\u0306 дом", true)]        // й decomposed
    [InlineData("việt", "tiếng vie\u0323\u0302t", true)]  // two diacritics, in canonical order
    [InlineData("bomb", "a bo\u0301mb here", false)]   // as "bómb" is not "bomb"
    [InlineData("bomb", "bombastic ｂｏｍｂｅｒ", false)] // folding keeps the word boundary
    [InlineData("ｂｏｍｂ", "a bomb", true)]              // a term is folded as the text is
    [InlineData("ﬁre", "open fire now", true)]
    [InlineData("fire", "open ﬁre now", true)]
    [InlineData("ₐbc", "an abc here", true)]            // a subscript term is the letters it shows
    [InlineData("h2o", "drink h₂o now", true)]
    [InlineData("x2", "x² is a square", true)]
    [InlineData("bomb", "a bomb™ here", true)]          // ™ is a sign after the word, not letters of it
    [InlineData("bomb", "a bomb℠ here", true)]
    [InlineData("brandtm", "brand™ here", false)]
    [InlineData("カタカナ", "ｶﾀｶﾅ", true)]              // half-width katakana
    [InlineData("ガス", "ｶﾞｽ", true)]                  // with its voicing mark, composed as the full-width form is
    [InlineData("パン", "ﾊﾟﾝ", true)]
    [InlineData("カス", "ｶﾞｽ", false)]                 // a voiced kana is a letter of its own
    [InlineData("ガス", "カ\u3099ス", true)]             // full-width kana with the voicing mark written apart
    [InlineData("ガス", "ｶ\u200Bﾞｽ", true)]             // a zero-width space between, which shows nothing
    [InlineData("ｶﾞｽ", "ガス", true)]                  // a half-width term matches the full-width word
    [InlineData("ㄱ", "ﾡ", true)]                      // half-width Hangul as the jamo a keyboard types
    public async Task Terms_and_text_are_read_alike_and_precomposed_letters_stay_themselves(string term, string text, bool hit)
    {
        var results = await Analyze(new Blocklist("words", [term], []), text);
        Assert.Equal(hit, results.Count == 1);
    }

    [Fact]
    public async Task Patterns_read_the_folded_text_too()
    {
        var list = new Blocklist("codes", [], [@"project-\d{4}"]);
        const string text = "leak ｐｒｏｊｅｃｔ－１２３４ now";
        var span = Assert.Single(Assert.Single(await Analyze(list, text)).Matches);
        Assert.Equal("ｐｒｏｊｅｃｔ－１２３４", text.Substring(span.Start, span.Length));
    }

    [Theory]
    [InlineData(@"[\u200B-\u200D]", "a bo\u200bmb here", "\u200b")]   // a pattern for what the fold leaves out
    [InlineData("ｂｏｍｂ", "a ｂｏｍｂ here", "ｂｏｍｂ")]                  // written in the form the fold reads away
    [InlineData("bomb", "a ｂｏｍｂ here", "ｂｏｍｂ")]                    // found once, though both forms hold it
    public async Task Patterns_read_the_text_as_written_too(string pattern, string text, string written)
    {
        var span = Assert.Single(Assert.Single(await Analyze(new Blocklist("codes", [], [pattern]), text)).Matches);
        Assert.Equal(written, text.Substring(span.Start, span.Length));
    }

    [Fact]
    public void Reading_a_text_in_its_matching_form_allocates_the_form_alone()
    {
        // On a streamed completion's path: every check of the guard's window reads it.
        var plain = string.Concat(Enumerable.Repeat("Plain words about the weather and the sea, año. ", 4));
        var folded = plain + "I ❤️ it";
        MatchingForm.Of(plain);
        MatchingForm.Of(folded);
        var before = GC.GetAllocatedBytesForCurrentThread();
        MatchingForm.Of(plain);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 48); // the MatchingForm itself
        before = GC.GetAllocatedBytesForCurrentThread();
        var form = MatchingForm.Of(folded);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // The folded text (2 bytes a character) and where each character came from (4), and little else.
        Assert.InRange(allocated, 6 * form.Text.Length, 6 * form.Text.Length + 160);
    }

    [Fact]
    public async Task The_providers_of_one_check_read_the_text_in_one_form_made_once()
    {
        // Blocklists and PII read the guard's window in its matching form at every token: each
        // made its own (two arrays as long as the window, when it folds).
        var window = string.Concat(Enumerable.Repeat("ｐｌａｉｎ ｗｏｒｄｓ ", 300)) + "call ４１５-５５５-２６７１ about the ｂｏｍｂ";
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("m") with { Blocklists = ["w"], Pii = PiiMode.Block }, [new Blocklist("w", ["bomb"], [])]);
        await pipeline.AnalyzeAsync(window, ContentDirection.Completion);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var verdict = await pipeline.AnalyzeAsync(window, ContentDirection.Completion);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(["w", null], verdict.Filtered.Select(r => r.Blocklist));
        // One form: the folded text (2 bytes a character) and where each came from (4).
        Assert.InRange(allocated, 6 * window.Length, 6 * window.Length * 3 / 2);
    }

    [Fact]
    public void A_check_keeps_no_text_alive_once_it_is_done()
    {
        // A form kept for the thread's next check held its text (a prompt of megabytes, its PII)
        // for as long as that thread checked nothing else: each thread of the pool one.
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("m") with { Blocklists = ["w"], Pii = PiiMode.Annotate }, [new Blocklist("w", ["bomb"], [])]);
        var checkedText = Check(pipeline);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(checkedText.IsAlive);
    }

    /// <summary>Checks a text of its own on this thread (the rule-based providers finish as they
    /// are called) and lets go of it.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    static WeakReference Check(SafetyPipeline pipeline)
    {
        var text = "call ４１５-５５５-２６７１ about the ｂｏｍｂ " + Guid.NewGuid();
        var check = pipeline.AnalyzeAsync(text, ContentDirection.Prompt);
        Assert.True(check.IsCompletedSuccessfully);
        Assert.True(check.Result.Blocked);
        return new WeakReference(text);
    }

    [Fact]
    public async Task A_text_cut_inside_a_surrogate_pair_is_read_as_it_is()
    {
        // A stream's text so far can end between the halves of an emoji.
        const string text = "a ｂｏｍｂ \ud83d";
        var span = Assert.Single(Assert.Single(await Analyze(new Blocklist("words", ["bomb"], []), text)).Matches);
        Assert.Equal("ｂｏｍｂ", text.Substring(span.Start, span.Length));
    }

    [Fact]
    public void A_term_of_invisible_characters_only_is_a_user_error()
    {
        var e = Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("list", ["\u200b\u200d"], [])));
        Assert.Contains("invisible", e.Message);
        Assert.Contains("U+200B", e.Message);
        // Named by the character, not the first half of its surrogate pair (U+DB40).
        e = Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("list", ["\U000E0062\U000E006F"], [])));
        Assert.Contains("U+E0062", e.Message);
    }

    [Fact]
    public async Task Multi_word_terms_match_across_any_whitespace_and_report_the_span()
    {
        const string text = "they said Bad \n  Word twice";
        var result = Assert.Single(await Analyze(new Blocklist("words", ["bad word"], [], SafetyCategory.Violence), text));
        Assert.Equal(SafetyCategory.Violence, result.Category);
        Assert.Equal(Severity.High, result.Severity);
        Assert.Equal("words", result.Blocklist);
        var span = Assert.Single(result.Matches);
        Assert.Equal("Bad \n  Word", text.Substring(span.Start, span.Length));
    }

    [Fact]
    public async Task Patterns_match_anywhere()
    {
        var list = new Blocklist("codes", [], [@"project-\d{4}"]);
        Assert.Single(await Analyze(list, "leak PROJECT-1234 now"));
        Assert.Empty(await Analyze(list, "project-12 is fine"));
    }

    [Theory]
    [InlineData("(unclosed", "not a valid regular expression")]
    [InlineData("a{2,1}", "not a valid regular expression")]
    [InlineData("x*", "matches empty text")]
    [InlineData("   ", "empty pattern")]
    public void Invalid_patterns_are_user_errors_at_creation(string pattern, string message)
    {
        var e = Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("bad", [], [pattern])));
        Assert.Contains(message, e.Message);
        Assert.Contains("'bad'", e.Message);
    }

    [Theory]
    // Each check grew the backtracking stack by gigabytes, then threw an OverflowException
    // (without the heap's hard limit, as a server runs) or ran out of memory, on any text with
    // three a's: the pattern itself was taken, as it finds nothing in empty text.
    [InlineData("(?:a{3}(?:(?:(?:){2,2147483647}|.)+){1073741824})+", "repeats a part of it 2,305,843,008,139,952,128 times")]
    [InlineData("(?:x(?:(?:){2,1000}|.)+){1000}", "repeats a part of it 1,000,000 times")]
    // Out of memory as the regex was built ("Array dimensions exceeded supported range"), which
    // the server's user-error path did not take.
    [InlineData("a{2147483647}b", "repeats a part of it 2,147,483,647 times")]
    // An ArgumentOutOfRangeException as it was built, read as an invalid regular expression
    // with the engine's words (minimumLength ('-2147483648') must be a non-negative value).
    [InlineData("a{1073741824}a{1073741824}", "repeats a part of it 1,073,741,824 times")]
    // Free-spacing mode: the count after a blank and a comment still quantifies the group.
    [InlineData("(?x)(?:a{1000}) # many\n {1000}", "repeats a part of it 1,000,000 times")]
    public void A_pattern_whose_counted_repetitions_nets_engine_cannot_run_is_refused_at_creation(string pattern, string message)
    {
        var e = Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("bad", [], [pattern])));
        Assert.Contains($"Blocklist 'bad': pattern '{pattern}' {message}", e.Message);
        Assert.Contains("use smaller counts", e.Message);
    }

    [Theory]
    [InlineData(@"\b[0-9]{4}(?:[ -]?[0-9]{4}){3}\b")]
    [InlineData("(?:a{100}){1000}")] // 100,000: the bound itself
    [InlineData("yx{0,100000}")]
    [InlineData("(?:a{1000})b{1000}c{1000}")] // counts side by side are not multiplied
    [InlineData(@"\{1000000\}[{]1000000}")] // braces escaped or in a class are literals
    [InlineData("(?#{1000000})(?:a{1000})")]
    public void A_pattern_with_counts_within_the_bound_is_taken(string pattern) =>
        CompiledBlocklist.Compile(new Blocklist("list", [], [pattern]));

    [Theory]
    [InlineData("(?=bomb)", false)]           // a lookahead alone matches the place before "bomb", never text
    [InlineData(@"\b", false)]
    [InlineData(@"\b(?<!x)\B\A\z\Z\G", false)]
    [InlineData(@"(?i)(?:\b(?=a[)]))+", false)]
    [InlineData("(?#a comment)(?=x)", false)]
    [InlineData("(?=a){2}", false)]
    [InlineData("bomb", true)]
    [InlineData(@"\bbomb\b", true)]
    [InlineData("(?=bomb)b", true)]
    [InlineData(@"(?<name>\b)", true)]       // a named group is read past as text: refused only when sure
    [InlineData(@"[\u200B-\u200D]", true)]
    [InlineData(@"\\b", true)]               // an escaped backslash, then b
    [InlineData("a{", true)]                 // a literal brace
    [InlineData(@"(?#(a\[comment)bomb", true)] // a comment ends at its first ')', whatever it holds
    [InlineData(@"(?=a(?#\))bomb", true)]
    public void A_pattern_added_must_match_some_text(string pattern, bool accepted)
    {
        CompiledBlocklist.Compile(new Blocklist("list", [], [pattern]));  // valid either way
        if (accepted)
        {
            CompiledBlocklist.RequireMatchesText("list", pattern);
            return;
        }
        var e = Assert.Throws<TrustUserException>(() => CompiledBlocklist.RequireMatchesText("list", pattern));
        Assert.Contains("matches only empty text", e.Message);
        Assert.Contains("write the term itself", e.Message);
    }

    [Fact]
    public void Empty_lists_terms_and_bad_names_are_user_errors()
    {
        Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("empty", [], [])));
        Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("list", ["ok", " "], [])));
        Assert.Throws<TrustUserException>(() => CompiledBlocklist.Compile(new Blocklist("no spaces allowed", ["x"], [])));
    }

    [Fact]
    public async Task A_clean_text_that_a_pattern_backtracks_on_exponentially_is_not_blocked()
    {
        // (a+)+$ on "aaa...a!" takes the backtracking engine past its timeout, which failed closed:
        // clean text blocked. The linear-time engine finds it has no match, and is asked first from
        // then on; a text that has one still gets the backtracking engine's span.
        var provider = new BlocklistProvider([CompiledBlocklist.Compile(new Blocklist("redos", [], ["(a+)+$"]))]);
        var clean = new string('a', 5000) + "!";
        Assert.Empty(await provider.AnalyzeAsync(clean, ContentDirection.Prompt, default));
        Assert.Empty(await provider.AnalyzeAsync(clean, ContentDirection.Prompt, default));
        var hit = Assert.Single(Assert.Single(await provider.AnalyzeAsync("say aaa", ContentDirection.Prompt, default)).Matches);
        Assert.Equal((4, 3, "pattern"), (hit.Start, hit.Length, hit.Label));
    }

    [Fact]
    public async Task A_clean_text_that_a_pattern_with_a_lookaround_backtracks_on_is_not_blocked()
    {
        // The linear-time engine cannot run a lookbehind: the text was blocked as timed out. It is
        // asked of the pattern without it, which has no match in the text either.
        var provider = new BlocklistProvider([CompiledBlocklist.Compile(new Blocklist("redos", [], ["(?<!x)(a+)+$"]))]);
        Assert.Empty(await provider.AnalyzeAsync(new string('a', 5000) + "!", ContentDirection.Prompt, default));
    }

    [Fact]
    public async Task A_catastrophic_pattern_the_linear_engine_cannot_run_times_out_and_fails_closed()
    {
        // A backreference needs the backtracking engine, bounded by the match timeout: nothing
        // tells whether the text has a match.
        var list = new Blocklist("redos", [], [@"(a+)+\1$"]);
        var text = new string('a', 5000) + "!";
        var clock = Stopwatch.StartNew();
        var result = Assert.Single(await Analyze(list, text));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        Assert.Contains("timed out", Assert.Single(result.Matches).Label);
    }

    [Fact]
    public void Streaming_window_covers_the_longest_term_and_the_pattern_window()
    {
        Assert.True(new BlocklistProvider([CompiledBlocklist.Compile(new Blocklist("t", ["short", new string('x', 40)], []))]).StreamingWindow >= 40);
        Assert.True(new BlocklistProvider([CompiledBlocklist.Compile(new Blocklist("p", [], ["abc"]))]).StreamingWindow >= CompiledBlocklist.PatternWindow);
    }

    [Fact]
    public void Terms_find_what_one_regex_of_them_finds()
    {
        // The terms were one regex, an alternation of (?<!W)term(?!W) branches, longest first, too
        // slow for long lists; what is found in their place must be what it found, span, label and
        // entry, over lists and texts of letters that pair in case, prefixes of one another,
        // whitespace runs (no-break, ideographic, line and paragraph separators), word characters
        // and not, scripts written with spaces and without, astral letters and emoji, the odd case
        // pairs (ſ, the Kelvin and ohm signs, İ and ı, ǅ), and letters that Blocklist.Fold pairs
        // with more than the regex does (µ, ᲀ, ϐ, ẛ: the matching form reads them first).
        string[] letters = ["a", "A", "b", "B", "ß", "ẞ", "σ", "ς", "Σ", "é", "炸", "弹", "ก", "ｂ", "1", "_", "+", "-", "\U0001E900", "\U0001E922", "ᛮ", "½",
            "İ", "ı", "i", "I", "\u212A", "k", "ſ", "s", "µ", "μ", "Ω", "\u2126", "ω", "ǅ", "ǆ", "Ǆ", "\U0001D41B", "😀", "\U00010400", "\U00010428", "ᲀ", "в", "ϐ", "β", "ẛ", "ṡ",
            // look-alikes of other scripts, drawn as Latin in their own case or only in the other,
            // mixed with Latin ones, with diacritics after them, and mathematical Greek (astral)
            "o", "t", "о", "О", "т", "Т", "ь", "Ь", "м", "М", "ο", "Ο", "\U0001D6D0", "\U0001D6B8", "o\u0308", "о\u0301", "b\u0301", "т\u0336", "е\u0308", "ё", "Ё", "ë"];
        string[] gaps = [" ", "  ", "\t", "\n ", "\u00A0", "\u3000", "\u2028", " \u2029", "\u200B", ".", ", ", "", ""];
        var random = new Random(7);
        string Word() => string.Concat(Enumerable.Range(0, random.Next(1, 4)).Select(_ => letters[random.Next(letters.Length)]));
        for (var round = 0; round < 500; round++)
        {
            var terms = Enumerable.Range(0, random.Next(1, 9))
                .Select(_ => string.Join(" ", Enumerable.Range(0, random.Next(1, 3)).Select(_ => Word()))).ToList();
            var text = string.Concat(Enumerable.Range(0, 60).Select(_ => random.Next(3) == 0 ? terms[random.Next(terms.Count)] : Word() + gaps[random.Next(gaps.Length)]));
            var list = new Blocklist("words", terms, []);
            var found = CompiledBlocklist.Compile(list).Find(text);
            Assert.True(Describe(OneRegexOfTerms(list, text)) == Describe(found), $"terms {string.Join(" | ", terms)} in \"{text}\"");
            // Each span, read by itself, is its term: it covers the hit's own characters, however
            // the fold changed their length (surrogate pairs, marks composed or left out).
            foreach (var hit in found)
                Assert.True(Blocklist.EntryKey(text.Substring(hit.Start, hit.Length)) == Blocklist.EntryKey(hit.Entry),
                    $"\"{text.Substring(hit.Start, hit.Length)}\" at {hit.Start} for \"{hit.Entry}\" in \"{text}\"");
        }

        static string Describe(IEnumerable<SafetyMatch> matches) => string.Join(" ", matches.Select(m => $"{m.Start}+{m.Length}:{m.Label}:{m.Entry}"));
    }

    [Fact]
    public void Words_drawn_as_a_term_only_in_the_small_capitals_of_their_lower_case_pass_it()
    {
        // As documented (docs/trust.md): "вомв" and "ьомь" look like ʙoᴍʙ, as "вот" like ʙoᴛ;
        // their capitals, and the word with a Latin letter in it, are hits.
        var list = CompiledBlocklist.Compile(new Blocklist("t", ["bomb"], []));
        Assert.Empty(list.Find("вомв ьомь Вомв"));
        Assert.Equal(["ВОМВ", "bомв", "ЬОМЬ"], list.Find("ВОМВ bомв ЬОМЬ").Select(m => "ВОМВ bомв ЬОМЬ".Substring(m.Start, m.Length)));
    }

    [Fact]
    public void A_term_the_look_alike_rule_turns_down_leaves_the_shorter_terms_that_begin_there()
    {
        // "ВОТ" is drawn as BOT, a hit of "bot"; "ВОТ кот" is no "bot kot", since "кот" (cat)
        // reads as "kot" only through its letters' other case. The longest term there being
        // turned down must not hide the shorter one that matches.
        var hit = Assert.Single(CompiledBlocklist.Compile(new Blocklist("t", ["bot", "bot kot"], [])).Find("ВОТ кот"));
        Assert.Equal((0, 3, "bot"), (hit.Start, hit.Length, hit.Entry));
    }

    [Fact]
    public void Terms_of_many_lengths_that_begin_alike_find_what_one_regex_of_them_finds()
    {
        // The terms are found by the longest that begins at each place (BlocklistTerms): terms that
        // are prefixes of one another, of many lengths, with and without a word boundary at their
        // ends, against texts of their words.
        string[] words = ["a", "a", "a", "b", "ab", "c++", "+", "炸", "弹", "z", "A"];
        string[] gaps = [" ", " ", "  ", "\n", "", "-", "炸"];
        var random = new Random(11);
        for (var round = 0; round < 400; round++)
        {
            var terms = Enumerable.Range(0, random.Next(1, 12))
                .Select(_ => string.Join(" ", Enumerable.Range(0, random.Next(1, 8)).Select(_ => words[random.Next(words.Length)]))).ToList();
            var text = string.Concat(Enumerable.Range(0, 80).Select(_ => words[random.Next(words.Length)] + gaps[random.Next(gaps.Length)]));
            var list = new Blocklist("words", terms, []);
            Assert.True(Describe(OneRegexOfTerms(list, text)) == Describe(CompiledBlocklist.Compile(list).Find(text)),
                $"terms {string.Join(" | ", terms)} in \"{text}\"");
        }

        static string Describe(IEnumerable<SafetyMatch> matches) => string.Join(" ", matches.Select(m => $"{m.Start}+{m.Length}:{m.Label}:{m.Entry}"));
    }

    [Fact]
    public void A_letter_and_the_letter_it_folds_to_are_word_characters_alike_and_of_one_script()
    {
        // Terms are read folded and the text as it is: where a word ends must be the same for both.
        var wrong = new List<string>();
        for (var c = '\u0001'; c < char.MaxValue; c++)
        {
            // (U+0345, which folds to Ι, is a mark the matching form leaves out.)
            var folded = Blocklist.Fold(c);
            if (MatchingForm.Of(c.ToString()).Text.Length == 0) continue;
            if (BlocklistTerms.IsWordCharacter(c) != BlocklistTerms.IsWordCharacter(folded) || UnspacedScripts.Contains(c) != UnspacedScripts.Contains(folded))
                wrong.Add($"U+{(int)c:X4} and U+{(int)folded:X4}");
        }
        Assert.True(wrong.Count == 0, string.Join(", ", wrong.Take(20)));
    }

    /// <summary>The terms' hits as the one regex of them found them.</summary>
    static List<SafetyMatch> OneRegexOfTerms(Blocklist list, string text)
    {
        const string wordCharacter = @"[\p{L}\p{N}_-[\u0E00-\u0EFF\u1000-\u109F\u1780-\u17FF\u3000-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uFF00-\uFFEF]]";
        static bool Unspaced(char c) => c is >= '\u0E00' and <= '\u0EFF' or >= '\u1000' and <= '\u109F' or >= '\u1780' and <= '\u17FF'
            or >= '\u3000' and <= '\u30FF' or >= '\u3400' and <= '\u4DBF' or >= '\u4E00' and <= '\u9FFF' or >= '\uFF00' and <= '\uFFEF';
        var branches = list.Terms.Select(t => MatchingForm.Of(Blocklist.CanonicalTerm(t)).Text.Trim()).OrderByDescending(t => t.Length).Select(t =>
            (Unspaced(t[0]) ? "" : $"(?<!{wordCharacter})")
            + string.Join(@"\s+", t.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Select(Regex.Escape))
            + (Unspaced(t[^1]) ? "" : $"(?!{wordCharacter})"));
        var entries = list.Terms.Select(Blocklist.CanonicalTerm).DistinctBy(Blocklist.EntryKey).ToDictionary(Blocklist.EntryKey);
        var form = MatchingForm.Of(text);
        var found = new List<SafetyMatch>();
        var regex = new Regex(string.Join("|", branches), CompiledBlocklist.Options);
        // Each branch alone, anchored where the alternation found the leftmost match, longest first.
        var each = branches.Select(b => new Regex($@"\G(?:{b})", CompiledBlocklist.Options)).ToList();
        for (var m = regex.Match(form.Text); m.Success;)
        {
            // A term written in Latin is no hit where the text's letters are read as its only
            // through their other case: the longest of the others that match there is.
            var at = m.Index;
            var hit = each.Select(r => r.Match(form.Text, at)).FirstOrDefault(h => h.Success
                && !(MatchingForm.Of(entries[Blocklist.EntryKey(h.Value)]).IsWrittenInLatin() && form.ReadsLatinOnlyThroughCase(h.Index, h.Index + h.Length)));
            if (hit is null)
            {
                m = regex.Match(form.Text, at + 1);
                continue;
            }
            var (start, end) = form.Original(hit.Index, hit.Index + hit.Length);
            found.Add(new SafetyMatch(start, end - start, CompiledBlocklist.TermLabel, entries[Blocklist.EntryKey(hit.Value)]));
            m = regex.Match(form.Text, hit.Index + hit.Length);
        }
        return found;
    }

    [Fact]
    public async Task A_clean_long_text_is_not_blocked_by_a_list_of_many_terms()
    {
        // As one regex, the terms were tried one by one at each character of the text: with as many
        // as Azure AI Content Safety allows in a list, a 256 KiB text took past the 100 ms match
        // timeout and was blocked as timed out, clean as it is.
        var random = new Random(10_000);
        var terms = Enumerable.Range(0, 10_000).Select(_ => "zq" + new string(Enumerable.Range(0, 6).Select(_ => (char)('a' + random.Next(26))).ToArray())).ToList();
        var sentences = await File.ReadAllTextAsync(Path.Combine(AppContext.BaseDirectory, "OrdinarySentences.txt"));
        var text = string.Concat(Enumerable.Repeat(sentences, 256 * 1024 / sentences.Length + 1));
        var list = new Blocklist("many", terms, []);
        Assert.Empty(await Analyze(list, text));
        var hit = Assert.Single(Assert.Single(await Analyze(list, text + " " + terms[^1].ToUpperInvariant())).Matches);
        Assert.Equal((text.Length + 1, terms[^1]), (hit.Start, hit.Entry));
    }

    [Fact]
    public void What_a_check_reads_of_the_text_is_not_left_in_the_shared_pool()
    {
        // The terms note where in the text each begins in an array of .NET's shared pool, which
        // any code of the process rents next (on this thread, this very array): it must not learn
        // where the user's words were.
        var text = "my card pin is 4711 " + new string('.', 1000);
        Assert.Single(CompiledBlocklist.Compile(new Blocklist("t", ["pin"], [])).Find(text));
        var next = ArrayPool<int>.Shared.Rent(text.Length);
        try
        {
            Assert.All(next, place => Assert.Equal(0, place));
        }
        finally
        {
            ArrayPool<int>.Shared.Return(next);
        }
    }
}
