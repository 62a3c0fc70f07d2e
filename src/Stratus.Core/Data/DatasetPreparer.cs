// `stratus prepare`: a text file, a folder of .txt/.md files or a JSONL file (field "text")
// becomes train.bin and val.bin token shards, the tokenizer, and meta.json describing both.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;

namespace Stratus.Data;

public sealed record PreparedDataset(string Directory, ITokenizer Tokenizer, long TrainTokens, long ValTokens, string SourceSha256);

public static class DatasetPreparer
{
    public const string MetaFile = "meta.json";
    public const string TrainShard = "train.bin";
    public const string ValShard = "val.bin";

    /// <param name="tokenizerFrom">Use this tokenizer (e.g. an imported model's) instead of
    /// creating one of <paramref name="tokenizerKind"/>.</param>
    public static PreparedDataset Prepare(string input, string outputDirectory, string tokenizerKind, double valFraction = 0.1, ITokenizer? tokenizerFrom = null)
    {
        if (valFraction is < 0 or >= 1) throw new StratusUserException($"--val-fraction must be in [0, 1), got {valFraction}");
        var (documents, sha256) = ReadDocuments(input);
        var tokenizer = tokenizerFrom ?? TokenizerStore.Create(tokenizerKind, tokenizerKind == "char" ? string.Join("\n", documents) : null);
        var tokens = Tokenize(documents, tokenizer);
        if (tokens.Count < 2) throw new StratusUserException($"{input} has too little text to train on ({tokens.Count} tokens)");

        var trainCount = (int)(tokens.Count * (1 - valFraction));
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens);
        Directory.CreateDirectory(outputDirectory);
        TokenShard.Write(Path.Combine(outputDirectory, TrainShard), span[..trainCount], tokenizer.VocabSize);
        TokenShard.Write(Path.Combine(outputDirectory, ValShard), span[trainCount..], tokenizer.VocabSize);
        TokenizerStore.Save(tokenizer, outputDirectory);
        var meta = new JsonObject
        {
            ["format"] = "stratus-dataset",
            ["version"] = 1,
            ["tokenizer"] = tokenizer.ToJson(),
            ["vocab_size"] = tokenizer.VocabSize,
            ["token_bytes"] = TokenShard.TokenBytesFor(tokenizer.VocabSize),
            ["train_tokens"] = trainCount,
            ["val_tokens"] = tokens.Count - trainCount,
            ["val_fraction"] = valFraction,
            ["source"] = new JsonObject { ["path"] = Path.GetFullPath(input), ["documents"] = documents.Count, ["sha256"] = sha256 },
            ["created_utc"] = DateTime.UtcNow.ToString("O"),
        };
        AtomicFile.WriteAllText(Path.Combine(outputDirectory, MetaFile), meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new PreparedDataset(outputDirectory, tokenizer, trainCount, tokens.Count - trainCount, sha256);
    }

    static List<int> Tokenize(List<string> documents, ITokenizer tokenizer)
    {
        var tokens = new List<int>();
        for (var i = 0; i < documents.Count; i++)
        {
            tokens.AddRange(tokenizer.Encode(documents[i]));
            // Byte-level BPE separates documents with <|endoftext|> (as GPT-2 was trained);
            // a char vocabulary has no such token, so documents are joined by a newline.
            if (i < documents.Count - 1)
            {
                if (tokenizer.EndOfTextId is { } eot) tokens.Add(eot);
                else tokens.AddRange(tokenizer.Encode("\n"));
            }
        }
        return tokens;
    }

    static (List<string> Documents, string Sha256) ReadDocuments(string input)
    {
        if (string.IsNullOrWhiteSpace(input)) throw new StratusUserException("no input given; pass --input <file|folder|file.jsonl>");
        if (Directory.Exists(input))
        {
            var files = Directory.EnumerateFiles(input, "*", SearchOption.AllDirectories)
                .Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal).ToList();
            if (files.Count == 0) throw new StratusUserException($"folder {input} has no .txt or .md files; point --input at a text file, a folder of .txt/.md files or a JSONL file");
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var documents = new List<string>();
            foreach (var file in files)
            {
                var bytes = File.ReadAllBytes(file);
                hash.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(input, file) + "\n"));
                hash.AppendData(SHA256.HashData(bytes));
                var text = Encoding.UTF8.GetString(bytes);
                if (text.Length > 0) documents.Add(text);
            }
            return NonEmpty(documents, input, Convert.ToHexStringLower(hash.GetHashAndReset()));
        }
        if (!File.Exists(input)) throw new StratusUserException($"input {input} does not exist; pass a text file, a folder of .txt/.md files or a JSONL file");
        var content = File.ReadAllBytes(input);
        var sha = Convert.ToHexStringLower(SHA256.HashData(content));
        var all = Encoding.UTF8.GetString(content);
        if (input.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)) return NonEmpty(ReadJsonl(input, all), input, sha);
        return NonEmpty(all.Length == 0 ? [] : [all], input, sha);
    }

    static List<string> ReadJsonl(string path, string content)
    {
        var documents = new List<string>();
        var lineNumber = 0;
        foreach (var line in content.Split('\n'))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? node;
            try { node = JsonNode.Parse(line); }
            catch (JsonException e) { throw new StratusUserException($"{path}:{lineNumber}: not valid JSON ({e.Message}); each line must be an object with a \"text\" field"); }
            if (node is not JsonObject obj || obj["text"] is not JsonValue value || !value.TryGetValue<string>(out var text))
                throw new StratusUserException($"{path}:{lineNumber}: expected an object with a string field \"text\"");
            if (text.Length > 0) documents.Add(text);
        }
        return documents;
    }

    static (List<string>, string) NonEmpty(List<string> documents, string input, string sha) =>
        documents.Count == 0 ? throw new StratusUserException($"{input} is empty; give it some text to train on") : (documents, sha);
}
