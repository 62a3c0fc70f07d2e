// Scripts written without spaces between words: Thai, Lao, Myanmar and Khmer, CJK ideographs,
// kana, CJK punctuation and the full-width and half-width forms used alongside them. In such
// text a word can begin and end at any character, so the streaming guard may release after any
// of them and a blocklist term edged by one needs no word boundary there. One definition, so
// the two cannot disagree.
namespace Stratus.Safety;

static class UnspacedScripts
{
    static readonly (char First, char Last)[] Ranges =
    [
        ('\u0E00', '\u0EFF'), // Thai, Lao
        ('\u1000', '\u109F'), // Myanmar
        ('\u1780', '\u17FF'), // Khmer
        ('\u3000', '\u30FF'), ('\u3400', '\u4DBF'), ('\u4E00', '\u9FFF'), ('\uFF00', '\uFFEF'),
    ];

    public static bool Contains(char c)
    {
        foreach (var (first, last) in Ranges)
            if (c >= first && c <= last) return true;
        return false;
    }
}
