// Turns generated token ids into text piece by piece. A byte-level BPE token can end in the
// middle of a UTF-8 character; such pieces are held back until the character is complete,
// so streamed text never contains a broken character. Special tokens are left out unless kept
// (vLLM's skip_special_tokens, true by default): dropped before the bytes around them are
// joined, as Hugging Face's decode drops them.
namespace Stratus.Tokenization;

public sealed class StreamingDecoder(ITokenizer tokenizer, bool skipSpecialTokens)
{
    readonly List<int> pending = [];

    /// <summary>Adds a token; returns the text it completes (possibly empty).</summary>
    public string Push(int token)
    {
        if (skipSpecialTokens && tokenizer.IsSpecial(token)) return "";
        pending.Add(token);
        var text = tokenizer.Decode(pending);
        if (text.Length > 0 && text[^1] == '\uFFFD' && pending.Count < 4) return "";
        pending.Clear();
        return text;
    }

    /// <summary>Whatever is still held back at the end of generation.</summary>
    public string Flush()
    {
        var text = pending.Count == 0 ? "" : tokenizer.Decode(pending);
        pending.Clear();
        return text;
    }
}
