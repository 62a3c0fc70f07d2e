// Scripts written without spaces between words: CJK ideographs, kana, CJK punctuation and the
// full-width and half-width forms used alongside them. In such text a word can begin and end at
// any character, so the streaming guard may release after any of them and a blocklist term
// edged by one needs no word boundary there. One definition, so the two cannot disagree.
namespace Stratus.Safety;

static class UnspacedScripts
{
    public static bool Contains(char c) =>
        c is (>= '\u3000' and <= '\u30FF') or (>= '\u3400' and <= '\u4DBF') or (>= '\u4E00' and <= '\u9FFF') or (>= '\uFF00' and <= '\uFFEF');
}
