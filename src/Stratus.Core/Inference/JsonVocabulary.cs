// The vocabulary as constrained decoding (JSON mode, JSON schemas) reads it: every drawable
// token's bytes in one array, read from the tokenizer once per engine (at its first JSON request), so that the mask walks spans at each step
// instead of asking the tokenizer, which allocates, for each of 50,257 tokens.
using System.Text;
using Stratus.Tokenization;

namespace Stratus.Inference;

public sealed class JsonVocabulary
{
    /// <summary>The order in which missing characters are named: those every document may need
    /// first (the closers, ':' and '0', then the letters that finish true, false and null).</summary>
    const string Order = "{}]\":0aelrsu,[";

    readonly byte[] bytes;
    readonly int[] starts;

    /// <param name="drawable">The ids tokens are drawn from (<see cref="LogitsSampler.DrawableTokens"/>).</param>
    public JsonVocabulary(ITokenizer tokenizer, int drawable)
    {
        starts = new int[drawable + 1];
        var all = new List<byte>();
        for (var token = 0; token < drawable; token++)
        {
            // A special token is a control token, never text (an empty token is no step forward).
            if (!tokenizer.IsSpecial(token))
            {
                var text = tokenizer.TokenBytes(token);
                all.AddRange(text);
                // A token that is one character, or one byte of a byte-level vocabulary.
                if (text.Length is > 0 and <= 4 && (text.Length == 1 || Rune.DecodeFromUtf8(text, out _, out var read) == System.Buffers.OperationStatus.Done && read == text.Length))
                {
                    var key = Convert.ToHexString(text);
                    if (!spellers.TryGetValue(key, out var list)) spellers[key] = list = [];
                    list.Add(token);
                }
                opensArrays |= text.AsSpan().Contains((byte)'[');
            }
            starts[token + 1] = all.Count;
        }
        bytes = [.. all];
    }

    /// <summary>The tokens that are exactly one character or one byte, by their bytes (in hex).</summary>
    readonly Dictionary<string, List<int>> spellers = [];

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
    /// visits, by any sequence with the same schema (the state holds the schema's identity).
    /// Used by the engine's thread alone.</summary>
    readonly Dictionary<JsonGrammar, ulong[]> allowedByState = [];

    /// <summary>Bit t of the result is set when token t's bytes keep <paramref name="state"/>'s
    /// text the beginning of a valid document (never for a special or empty token).</summary>
    public ReadOnlySpan<ulong> Allowed(JsonGrammar state)
    {
        if (allowedByState.TryGetValue(state, out var bits)) return bits;
        if (allowedByState.Count == MaxKeptStates) allowedByState.Clear();
        var tokens = starts.Length - 1;
        bits = new ulong[(tokens + 63) / 64];
        // Most tokens fail at their first byte: try each byte once, and copy the state (a stack
        // of frames) only for the tokens whose first byte it takes.
        Span<bool> firstTaken = stackalloc bool[256];
        for (var b = 0; b < 256; b++)
        {
            var next = state;
            firstTaken[b] = next.Accept((byte)b);
        }
        for (var token = 0; token < tokens; token++)
        {
            var text = this[token];
            if (text.IsEmpty || !firstTaken[text[0]]) continue;
            var next = state;
            if (next.Accept(text)) bits[token >> 6] |= 1UL << token;
        }
        allowedByState[state] = bits;
        return bits;
    }

    /// <summary>The characters a document valid against <paramref name="schema"/> may need to
    /// finish (<see cref="JsonSchema.Needs"/>) that no token of one character (or one byte)
    /// spells but those in <paramref name="endTokens"/>, which the mask keeps for the end (a
    /// character-level model whose corpus had no braces; a chat template that ends a turn with
    /// '}'); empty when the mask can close whatever it opens.</summary>
    public string MissingFor(JsonSchema schema, int[] endTokens)
    {
        bool Spells(byte[] text) => spellers.TryGetValue(Convert.ToHexString(text), out var tokens) && tokens.Any(t => Array.IndexOf(endTokens, t) < 0);
        bool SpellsCharacter(string character)
        {
            var text = Encoding.UTF8.GetBytes(character);
            return Spells(text) || text.All(b => Spells([b]));
        }
        return string.Concat(schema.Needs(SpellsCharacter, opensArrays)
            .Where(c => !SpellsCharacter(c))
            .OrderBy(c => Order.IndexOf(c, StringComparison.Ordinal) is var at and >= 0 ? at : Order.Length + char.ConvertToUtf32(c, 0)));
    }
}
