// The streaming guard releases only checked text: a blocked word is never sent, not even in
// part, however it is split into chunks; clean text comes through whole.
using System.Globalization;
using Stratus.Safety;

namespace Stratus.Safety.Tests;

public sealed class StreamingSafetyGuardTests
{
    static SafetyPipeline Pipeline(PiiMode pii = PiiMode.Off, params string[] terms) =>
        SafetyPipeline.Create(SafetyPolicy.Default("gpt2") with { Pii = pii, Blocklists = terms.Length > 0 ? ["words"] : [] },
            terms.Length > 0 ? [new Blocklist("words", terms, [])] : []);

    static IEnumerable<string> Chunks(string text, int seed)
    {
        var random = new Random(seed);
        for (var i = 0; i < text.Length;)
        {
            var n = Math.Min(text.Length - i, random.Next(1, 4));
            yield return text.Substring(i, n);
            i += n;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public async Task A_blocked_word_split_over_many_chunks_is_never_released(int seed)
    {
        const string word = "Frobnicator";
        var prefix = string.Concat(Enumerable.Repeat("This is a perfectly ordinary sentence about gardens. ", 6));
        var text = prefix + "and then the " + word + " appeared, followed by more text that should never be seen.";
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var released = "";
        GuardStep? blocked = null;
        foreach (var chunk in Chunks(text, seed))
        {
            var step = await guard.AppendAsync(chunk);
            released += step.Released;
            Assert.StartsWith(released, text, StringComparison.Ordinal);
            if (step.Blocked) { blocked = step; break; }
        }
        Assert.NotNull(blocked);
        var wordStart = text.IndexOf(word, StringComparison.Ordinal);
        Assert.True(released.Length <= wordStart, $"released {released.Length} chars, word starts at {wordStart}");
        Assert.DoesNotContain("Frob", released);
        // Most of the clean prefix did get through: the guard holds back a window, not everything.
        Assert.True(released.Length > prefix.Length / 2);
        Assert.Equal("", (await guard.AppendAsync(" more")).Released);
        Assert.True((await guard.CompleteAsync()).Verdict.Blocked);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task A_blocked_phrase_is_never_released_even_its_first_word(int seed)
    {
        var prefix = string.Concat(Enumerable.Repeat("Plain words about the weather and the sea. ", 5));
        var text = prefix + "Then came the purple elephant dance, which must not be sent.";
        var guard = Pipeline(PiiMode.Off, "purple elephant dance").GuardStream();
        var released = "";
        foreach (var chunk in Chunks(text, seed))
        {
            var step = await guard.AppendAsync(chunk);
            released += step.Released;
            if (step.Blocked) break;
        }
        Assert.NotNull(guard.BlockedBy);
        Assert.DoesNotContain("purple", released);
        Assert.StartsWith(released, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_term_of_voiced_kana_written_half_width_is_never_released_even_in_part()
    {
        // 20 voiced kana, 40 half-width characters (each kana and its ﾞ): the guard holds back the
        // term's length and 16, so counting each ﾞ it let the term's first kana out.
        const string term = "ガギグゲゴザジズゼゾダヂヅデドバビブベボ";
        const string written = "ｶﾞｷﾞｸﾞｹﾞｺﾞｻﾞｼﾞｽﾞｾﾞｿﾞﾀﾞﾁﾞﾂﾞﾃﾞﾄﾞﾊﾞﾋﾞﾌﾞﾍﾞﾎﾞ";
        var text = string.Concat(Enumerable.Repeat("今日は晴れです。", 10)) + written + "。";
        var guard = Pipeline(PiiMode.Off, term).GuardStream();
        var released = "";
        foreach (var chunk in text.Select(c => c.ToString()))
        {
            var step = await guard.AppendAsync(chunk);
            released += step.Released;
            if (step.Blocked) break;
        }
        Assert.NotNull(guard.BlockedBy);
        Assert.DoesNotContain("ｶ", released);
        Assert.StartsWith("今日は晴れです。", released, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public async Task A_stream_is_blocked_exactly_when_its_whole_text_is_with_look_alike_letters(int seed)
    {
        // The look-alike fold reads each letter by itself, so a window of the stream reads a term
        // as the whole text does: blocked or not alike, and nothing of the first hit released.
        string[] words = ["the", "bomb", "bоmb", "ВОМВ", "ΒΟΜΒ", "bomber", "вомбат", "вода", "ВОДА", "вoдa", "вод", "рот", "бомба", "ωμέγα",
            "b\u200Bоmb", "е\u0308ж", "ёж", "ΚΑΚΌΣ", "κακός", "\u200B", "и", "and", "water", "ﬁre", "...",
            "ВОТ", "вот", "кот", "КОТ", "вомв", "ьомь", "b\U0001D6D0mb"];
        var random = new Random(seed);
        for (var trial = 0; trial < 40; trial++)
        {
            var pipeline = Pipeline(PiiMode.Off, "bomb", "вода", "ёж", "κακός", "bot", "bot kot");
            var text = string.Join(random.Next(4) == 0 ? "  " : " ", Enumerable.Range(0, 30).Select(_ => words[random.Next(words.Length)]));
            var whole = await pipeline.AnalyzeAsync(text, ContentDirection.Completion);
            var guard = pipeline.GuardStream();
            var released = "";
            foreach (var chunk in Chunks(text, trial))
            {
                var step = await guard.AppendAsync(chunk);
                released += step.Released;
                if (step.Blocked) break;
            }
            if (guard.BlockedBy is null) released += (await guard.CompleteAsync()).Step.Released;
            Assert.True(whole.Blocked == guard.BlockedBy is not null, $"whole text {(whole.Blocked ? "blocked" : "passed")}, stream not: \"{text}\"");
            if (whole.Blocked)
                Assert.True(released.Length <= whole.Filtered.SelectMany(r => r.Matches).Min(m => m.Start), $"released \"{released}\" of \"{text}\"");
            else
                Assert.Equal(text, released);
        }
    }

    [Fact]
    public async Task A_shorter_term_where_the_look_alike_rule_turns_down_the_longer_blocks_the_stream_and_the_whole_text()
    {
        // "ВОТ" is drawn as BOT; "bot kot" that begins there is turned down ("кот" is kot only
        // through case), and "bot" must still block, whether the guard's window has read "кот" yet or not.
        var pipeline = Pipeline(PiiMode.Off, "bot", "bot kot");
        var text = "Вот он: ВОТ кот, и всё. " + string.Concat(Enumerable.Repeat("Вода тёплая. ", 8));
        var whole = await pipeline.AnalyzeAsync(text, ContentDirection.Completion);
        var guard = pipeline.GuardStream();
        foreach (var c in text)
            if ((await guard.AppendAsync(c.ToString())).Blocked) break;
        if (guard.BlockedBy is null) await guard.CompleteAsync();
        Assert.True(whole.Blocked, "whole text passed");
        Assert.NotNull(guard.BlockedBy);
    }

    [Fact]
    public async Task Multi_word_term_with_long_whitespace_run_never_releases_its_first_word()
    {
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("gpt2") with { Pii = PiiMode.Off, Blocklists = ["words"] }, [new Blocklist("words", ["purple elephant"], [])]);
        var guard = pipeline.GuardStream();
        var text = "Some ordinary text here, then purple" + new string(' ', 40) + "elephant and more text after it.";
        var released = "";
        foreach (var c in text) { var step = await guard.AppendAsync(c.ToString()); released += step.Released; if (step.Blocked) break; }
        Assert.NotNull(guard.BlockedBy);
        Assert.DoesNotContain("purple", released);
    }

    [Theory]
    [InlineData("\u200b")]        // zero-width space
    [InlineData("\u0337")]        // a combining diacritic
    [InlineData("\U000E0020")]    // a tag character (a surrogate pair)
    public async Task A_term_padded_with_many_invisible_characters_is_never_released(string padding)
    {
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var padded = string.Join(string.Concat(Enumerable.Repeat(padding, 30)), "frobnicator".Select(c => c.ToString()));
        var text = string.Concat(Enumerable.Repeat("Plain words about the weather and the sea. ", 4)) + padded + " and the rest.";
        var released = "";
        foreach (var chunk in Chunks(text, 9))
        {
            var step = await guard.AppendAsync(chunk);
            released += step.Released;
            if (step.Blocked) break;
        }
        if (guard.BlockedBy is null) released += (await guard.CompleteAsync()).Step.Released;
        Assert.NotNull(guard.BlockedBy);
        Assert.DoesNotContain("f", released);
        Assert.True(released.Length <= text.IndexOf(padded, StringComparison.Ordinal), $"released {released.Length} characters");
    }

    [Theory]
    [InlineData("\u200b")]
    [InlineData("\u200b\u0301")]
    public async Task A_stream_of_nothing_but_invisible_characters_is_not_held_back_without_end(string piece)
    {
        // A model stuck on a zero-width token: what takes no room in the window still counts
        // past StreamingSafetyGuard.MaxRoomless, or nothing would be released and every token
        // would check all the text so far again.
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var released = (await guard.AppendAsync("Hello there. ")).Released.Length;
        for (var i = 0; i < 3000; i++) released += (await guard.AppendAsync(piece)).Released.Length;
        var generated = 13 + 3000 * piece.Length;
        Assert.InRange(generated - released, 0, StreamingSafetyGuard.MaxRoomless + 2 * 256);
        Assert.Null(guard.BlockedBy);
    }

    [Theory]
    [InlineData("ass")]
    [InlineData("hell")]
    public async Task A_term_that_ends_an_ordinary_word_does_not_block_the_stream_it_was_released_in(string term)
    {
        // Each check reads the unreleased text with StreamingWindow characters before it, which
        // begin wherever they fall: often inside a word, whose tail ("ass" of "class") is no
        // word of its own.
        string[] words = ["the", "class", "went", "out", "to", "a", "grassland", "with", "a", "compass", "and", "a", "glass", "of", "water",
            "in", "its", "shell", "this", "morning"];
        var random = new Random(7);
        for (var trial = 0; trial < 40; trial++)
        {
            var guard = Pipeline(PiiMode.Off, term).GuardStream();
            var text = string.Join(" ", Enumerable.Range(0, 40).Select(_ => words[random.Next(words.Length)]));
            var released = "";
            foreach (var chunk in Chunks(text, trial))
            {
                var step = await guard.AppendAsync(chunk);
                Assert.False(step.Blocked, $"blocked after releasing '{released}'");
                released += step.Released;
            }
            Assert.Equal(text, released + (await guard.CompleteAsync()).Step.Released);
        }
    }

    [Fact]
    public async Task A_forced_release_never_splits_a_surrogate_pair()
    {
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("gpt2") with { Pii = PiiMode.Off, Blocklists = ["words"] }, [new Blocklist("words", ["abc"], [])]);
        var guard = pipeline.GuardStream();
        var pieces = new List<string>();
        var text = "a" + string.Concat(Enumerable.Repeat("😀", 400));
        foreach (var c in new[] { "a" }.Concat(Enumerable.Repeat("😀", 400)))
        { var step = await guard.AppendAsync(c); if (step.Released.Length > 0) pieces.Add(step.Released); }
        pieces.Add((await guard.CompleteAsync()).Step.Released);
        Assert.Equal(text, string.Concat(pieces));
        foreach (var piece in pieces.Where(p => p.Length > 0))
        {
            Assert.False(char.IsHighSurrogate(piece[^1]));
            Assert.False(char.IsLowSurrogate(piece[0]));
        }
    }

    [Fact]
    public async Task A_word_that_only_starts_like_a_blocked_term_is_released()
    {
        var guard = Pipeline(PiiMode.Off, "ass").GuardStream();
        const string text = "Please let me assist you with the class schedule today, it is no hassle at all.";
        var released = "";
        foreach (var chunk in Chunks(text, 7))
        {
            var step = await guard.AppendAsync(chunk);
            Assert.False(step.Blocked);
            released += step.Released;
        }
        var (last, verdict) = await guard.CompleteAsync();
        Assert.False(verdict.Blocked);
        Assert.Equal(text, released + last.Released);
    }

    [Fact]
    public async Task Released_text_ends_on_word_boundaries_until_the_end()
    {
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var text = string.Join(" ", Enumerable.Range(0, 60).Select(i => $"word{i}"));
        foreach (var chunk in Chunks(text, 11))
        {
            var released = (await guard.AppendAsync(chunk)).Released;
            if (released.Length > 0) Assert.EndsWith(" ", released);
        }
    }

    [Fact]
    public async Task Text_in_a_script_without_spaces_streams_as_it_is_checked()
    {
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var text = string.Concat(Enumerable.Repeat("春眠不觉晓处处闻啼鸟夜来风雨声花落知多少", 8));
        var released = "";
        foreach (var chunk in Chunks(text, 5)) released += (await guard.AppendAsync(chunk)).Released;
        // Only the held-back window waits for the end; waiting for a space would have held it all.
        Assert.InRange(released.Length, text.Length - 80, text.Length);
        Assert.Equal(text, released + (await guard.CompleteAsync()).Step.Released);
    }

    [Fact]
    public async Task Thai_streams_as_it_is_checked_without_parting_a_letter_from_its_marks()
    {
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var text = string.Concat(Enumerable.Repeat("วันนี้อากาศดีมากเราจะไปเที่ยวทะเลกันที่หัวหิน", 6));
        var pieces = new List<string>();
        foreach (var chunk in Chunks(text, 5)) pieces.Add((await guard.AppendAsync(chunk)).Released);
        Assert.InRange(pieces.Sum(p => p.Length), text.Length - 80, text.Length);
        pieces.Add((await guard.CompleteAsync()).Step.Released);
        Assert.Equal(text, string.Concat(pieces));
        // A vowel or tone mark (Mn) sent in the delta after its consonant is drawn on nothing.
        foreach (var piece in pieces.Where(p => p.Length > 0))
            Assert.NotEqual(UnicodeCategory.NonSpacingMark, CharUnicodeInfo.GetUnicodeCategory(piece[0]));
    }

    [Fact]
    public async Task Pii_is_redacted_in_the_stream_even_when_split()
    {
        var guard = Pipeline(PiiMode.Redact).GuardStream();
        var text = "Contact me at jane.roe@example.com or 415-555-2671 for details about the order we discussed yesterday at length.";
        var released = "";
        foreach (var chunk in Chunks(text, 3)) released += (await guard.AppendAsync(chunk)).Released;
        var (last, verdict) = await guard.CompleteAsync();
        released += last.Released;
        Assert.Equal("Contact me at [EMAIL] or [PHONE] for details about the order we discussed yesterday at length.", released);
        Assert.Equal(Severity.Medium, verdict.SeverityOf(SafetyCategory.Pii));
    }

    [Fact]
    public async Task Pii_whose_patterns_time_out_is_redacted_in_the_stream_where_it_is()
    {
        // A timeout of one tick, as a loaded machine: each check of the window timed out, and its
        // PII_TIMEOUT span redacted all of it.
        var policy = SafetyPolicy.Default("gpt2") with { Pii = PiiMode.Redact };
        var guard = new SafetyPipeline(policy, [new PiiDetector(null, TimeSpan.FromTicks(1))]).GuardStream();
        var text = "At 10:30 in room 404, contact me at jane.roe@example.com or 415-555-2671 about the order of 12 boxes we discussed at length.";
        var released = "";
        foreach (var chunk in Chunks(text, 3)) released += (await guard.AppendAsync(chunk)).Released;
        var (last, _) = await guard.CompleteAsync();
        released += last.Released;
        Assert.Equal("At 10:30 in room 404, contact me at [EMAIL] or [PHONE] about the order of 12 boxes we discussed at length.", released);
    }

    [Fact]
    public async Task A_blocked_term_in_the_held_back_tail_is_caught_at_completion()
    {
        var guard = Pipeline(PiiMode.Off, "frobnicator").GuardStream();
        var released = (await guard.AppendAsync("short answer: frobnicator")).Released;
        Assert.Equal("", released);
        var (last, verdict) = await guard.CompleteAsync();
        Assert.True(verdict.Blocked);
        Assert.Equal("", last.Released);
    }

    [Fact]
    public async Task A_pattern_hit_followed_by_one_still_open_is_not_released()
    {
        // The first "kill" is settled, the last touches the end. .NET's linear-time regex engine
        // reports only the last in this text (dotnet/runtime#130176: a match before a later one is
        // dropped when the text opens with the pattern's optional first character): the guard saw
        // one open match, blocked nothing and released "So I kill".
        var pipeline = SafetyPipeline.Create(SafetyPolicy.Default("gpt2") with { Pii = PiiMode.Off, Blocklists = ["words"] }, [new Blocklist("words", [], ["s?kill"])]);
        var guard = pipeline.GuardStream();
        var step = await guard.AppendAsync("So I kill " + string.Concat(Enumerable.Repeat("and then the story goes on ", 6)) + "kill");
        Assert.True(step.Blocked);
        Assert.Equal("", step.Released);
    }
}
