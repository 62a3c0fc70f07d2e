// `stratus prepare --format chat`: supervised fine-tuning data. Each JSONL line holds
// {"messages": [{"role": ..., "content": ...}, ...]}; it is rendered with the model's own chat
// template and tokenized with the model's tokenizer, and a loss mask marks the tokens the model
// should learn to produce (assistant turns, including the template's end-of-turn marker).
// Tokens go to train.bin/val.bin as for plain text, masks to train.mask.bin/val.mask.bin.
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Data;

public sealed record PreparedChatDataset(string Directory, ITokenizer Tokenizer, int TrainExamples, int ValExamples,
    long TrainTokens, long ValTokens, long SupervisedTokens);

public static class ChatDatasetPreparer
{
    public const string TrainMask = "train.mask.bin";
    public const string ValMask = "val.mask.bin";

    public static PreparedChatDataset Prepare(string input, string outputDirectory, string modelPath, double valFraction = 0.1)
    {
        if (valFraction is < 0 or >= 1) throw new StratusUserException($"--val-fraction must be in [0, 1), got {valFraction}");
        if (!File.Exists(input)) throw new StratusUserException($"input {input} does not exist; pass a JSONL file with one {{\"messages\": [...]}} per line");
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(modelPath));
        var tokenizer = checkpoint.Tokenizer;
        var template = ChatTemplate.Load(checkpoint.Directory);

        var examples = new List<(int[] Tokens, byte[] Mask)>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(input))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var messages = ParseMessages(input, lineNumber, line);
            try { examples.Add(Encode(template, tokenizer, messages)); }
            catch (StratusUserException e) { throw new StratusUserException($"{input}:{lineNumber}: {e.Message}"); }
        }
        if (examples.Count < 2) throw new StratusUserException($"{input} has {examples.Count} conversation(s); fine-tuning needs at least 2 (train and val)");

        // Whole conversations go to one split: the last val_fraction of them (at least one) to val.
        var valCount = valFraction == 0 ? 0 : Math.Max(1, (int)Math.Round(examples.Count * valFraction));
        var train = examples[..^valCount];
        var val = valCount == 0 ? examples[^1..] : examples[^valCount..];
        Directory.CreateDirectory(outputDirectory);
        var (trainTokens, trainSupervised) = Write(outputDirectory, DatasetPreparer.TrainShard, TrainMask, train, tokenizer.VocabSize);
        var (valTokens, _) = Write(outputDirectory, DatasetPreparer.ValShard, ValMask, val, tokenizer.VocabSize);
        if (trainSupervised == 0) throw new StratusUserException($"{input} has no assistant messages to learn from");
        TokenizerStore.Save(tokenizer, outputDirectory);
        var meta = new JsonObject
        {
            ["format"] = "stratus-dataset",
            ["version"] = 1,
            ["kind"] = "chat",
            ["tokenizer"] = tokenizer.Kind,
            ["vocab_size"] = tokenizer.VocabSize,
            ["train_tokens"] = trainTokens,
            ["val_tokens"] = valTokens,
            ["train_examples"] = train.Count,
            ["val_examples"] = val.Count,
            ["supervised_train_tokens"] = trainSupervised,
            ["source"] = new JsonObject { ["path"] = Path.GetFullPath(input), ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(input))), ["model"] = Path.GetFullPath(checkpoint.Directory) },
            ["created_utc"] = DateTime.UtcNow.ToString("O"),
        };
        AtomicFile.WriteAllText(Path.Combine(outputDirectory, DatasetPreparer.MetaFile), meta.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return new PreparedChatDataset(outputDirectory, tokenizer, train.Count, val.Count, trainTokens, valTokens, trainSupervised);
    }

    /// <summary>Tokens and loss mask of one conversation. The template is rendered for growing
    /// prefixes of the conversation, so each message's text is the difference between two
    /// renderings; an assistant turn is split into the generation prompt (not learned) and
    /// its content up to the next turn (learned).</summary>
    public static (int[] Tokens, byte[] Mask) Encode(ChatTemplate template, ITokenizer tokenizer, IReadOnlyList<(string Role, string Content)> messages)
    {
        var tokens = new List<int>();
        var mask = new List<byte>();
        var rendered = "";
        void Add(string text, byte learn, string whole)
        {
            if (!text.StartsWith(rendered, StringComparison.Ordinal))
                throw new StratusUserException("the chat template renders a conversation differently from its beginning, so assistant turns cannot be located; it cannot be used for fine-tuning");
            var piece = tokenizer.Encode(text[rendered.Length..]);
            tokens.AddRange(piece);
            mask.AddRange(Enumerable.Repeat(learn, piece.Length));
            rendered = whole;
        }
        for (var k = 0; k < messages.Count; k++)
        {
            var upTo = messages.Take(k + 1).ToList();
            var full = template.Render(upTo, addGenerationPrompt: false);
            if (messages[k].Role == "assistant")
            {
                var prompt = template.Render(messages.Take(k).ToList(), addGenerationPrompt: true);
                Add(prompt, 0, prompt);
                Add(full, 1, full);
            }
            else Add(full, 0, full);
        }
        return (tokens.ToArray(), mask.ToArray());
    }

    static List<(string, string)> ParseMessages(string path, int lineNumber, string line)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(line); }
        catch (JsonException e) { throw new StratusUserException($"{path}:{lineNumber}: not valid JSON ({e.Message})"); }
        if (node?["messages"] is not JsonArray list || list.Count == 0)
            throw new StratusUserException($"{path}:{lineNumber}: expected {{\"messages\": [{{\"role\": ..., \"content\": ...}}, ...]}}");
        return list.Select(m => m is JsonObject o && o["role"] is JsonValue role && o["content"] is JsonValue content
                ? ((string)role!, (string)content!)
                : throw new StratusUserException($"{path}:{lineNumber}: every message needs string fields \"role\" and \"content\""))
            .ToList();
    }

    static (long Tokens, long Supervised) Write(string directory, string shard, string maskShard, List<(int[] Tokens, byte[] Mask)> examples, int vocabSize)
    {
        var tokens = examples.SelectMany(e => e.Tokens).ToArray();
        var mask = examples.SelectMany(e => e.Mask.Select(m => (int)m)).ToArray();
        TokenShard.Write(Path.Combine(directory, shard), tokens, vocabSize);
        TokenShard.Write(Path.Combine(directory, maskShard), mask, 2);
        return (tokens.Length, mask.Sum(m => (long)m));
    }
}
