// The vocabulary as JSON mode reads it: every drawable token's bytes in one array, read from the
// tokenizer once per engine (at its first JSON request), so that the mask walks spans at each step
// instead of asking the tokenizer, which allocates, for each of 50,257 tokens.
using System.Text;
using Stratus.Tokenization;

namespace Stratus.Inference;

public sealed class JsonVocabulary
{
    /// <summary>The bytes that close whatever a viable prefix has opened, plus the '{' that opens
    /// it: '}' ']' '"' ':', '0' (ends a number, fills a \u escape or a value) and the letters that
    /// finish true, false and null. With a token for each, no prefix the mask lets through is a
    /// dead end.</summary>
    public const string Closers = "{}]\":0aelrsu";

    readonly byte[] bytes;
    readonly int[] starts;

    /// <param name="drawable">The ids tokens are drawn from (<see cref="LogitsSampler.DrawableTokens"/>).</param>
    public JsonVocabulary(ITokenizer tokenizer, int drawable)
    {
        starts = new int[drawable + 1];
        var all = new List<byte>();
        var spellers = Closers.Select(_ => new List<int>()).ToArray();
        for (var token = 0; token < drawable; token++)
        {
            // A special token is a control token, never text (an empty token is no step forward).
            if (!tokenizer.IsSpecial(token))
            {
                var text = tokenizer.TokenBytes(token);
                all.AddRange(text);
                if (text.Length == 1 && Closers.IndexOf((char)text[0]) is var closer and >= 0) spellers[closer].Add(token);
                opensArrays |= text.AsSpan().Contains((byte)'[');
            }
            starts[token + 1] = all.Count;
        }
        bytes = [.. all];
        closerTokens = [.. spellers.Select(list => list.ToArray())];
    }

    /// <summary>For each of <see cref="Closers"/>, the tokens that are that one byte.</summary>
    readonly int[][] closerTokens;

    /// <summary>Whether a token can open an array. Where none can (a character-level model
    /// trained on JSON without arrays), no ']' is needed to close one.</summary>
    readonly bool opensArrays;

    /// <summary>The token's bytes; empty for a special token.</summary>
    public ReadOnlySpan<byte> this[int token] => bytes.AsSpan(starts[token], starts[token + 1] - starts[token]);

    /// <summary>States whose allowed tokens are kept at once (each costs a bit per token: 6 KB
    /// for GPT-2's vocabulary); emptied when full.</summary>
    const int MaxKeptStates = 256;

    /// <summary>The tokens each recognizer state met so far allows, a bit per token. A text passes
    /// through few states, and again and again (inside a string it is one state at every token,
    /// whatever the string says), so one walk of every token's bytes serves each state's later
    /// visits, by any sequence. Used by the engine's thread alone.</summary>
    readonly Dictionary<JsonGrammar, ulong[]> allowedByState = [];

    /// <summary>Bit t of the result is set when token t's bytes keep <paramref name="state"/>'s
    /// text the beginning of one JSON object (never for a special or empty token).</summary>
    public ReadOnlySpan<ulong> Allowed(JsonGrammar state)
    {
        if (allowedByState.TryGetValue(state, out var bits)) return bits;
        if (allowedByState.Count == MaxKeptStates) allowedByState.Clear();
        var tokens = starts.Length - 1;
        bits = new ulong[(tokens + 63) / 64];
        for (var token = 0; token < tokens; token++)
        {
            var text = this[token];
            var next = state;
            if (!text.IsEmpty && next.Accept(text)) bits[token >> 6] |= 1UL << token;
        }
        allowedByState[state] = bits;
        return bits;
    }

    /// <summary>The characters of <see cref="Closers"/> that no one-byte token spells but those
    /// in <paramref name="endTokens"/>, which the mask keeps for the end (a character-level
    /// model whose corpus had no braces; a chat template that ends a turn with '}'); empty when
    /// JSON mode can close whatever it opens.</summary>
    public string MissingFor(int[] endTokens)
    {
        var missing = new StringBuilder();
        for (var i = 0; i < Closers.Length; i++)
            if ((Closers[i] != ']' || opensArrays) && closerTokens[i].All(token => Array.IndexOf(endTokens, token) >= 0)) missing.Append(Closers[i]);
        return missing.ToString();
    }
}
