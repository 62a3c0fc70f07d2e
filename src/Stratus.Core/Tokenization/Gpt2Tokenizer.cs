// GPT-2's byte-level BPE (50,257 tokens including <|endoftext|>) through Microsoft.ML.Tokenizers
// and its bundled GPT-2 vocabulary package, so nothing is downloaded at run time.
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace Stratus.Tokenization;

public sealed class Gpt2Tokenizer : ITokenizer
{
    public const string EndOfText = "<|endoftext|>";
    public static readonly Gpt2Tokenizer Instance = new();

    readonly TiktokenTokenizer tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    Gpt2Tokenizer()
    {
        EndOfTextId = tokenizer.SpecialTokens![EndOfText];
    }

    public string Kind => "gpt2";
    public TextCuts Cuts => TextCuts.BetweenLines;
    public int VocabSize => 50257;
    public int? EndOfTextId { get; }

    public int[] Encode(string text) => tokenizer.EncodeToIds(text).ToArray();

    // Byte-level BPE spells every string.
    public IReadOnlyList<char> Unencodable(string text) => [];

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids);

    public bool HasSpecialToken(string token) => tokenizer.SpecialTokens!.ContainsKey(token);

    public JsonObject ToJson() => new() { ["type"] = Kind };
}
