// Special tokens a model generates (and that do not end its output) are left out of the text, as
// vLLM detokenizes with skip_special_tokens=True by default: Hugging Face's added tokens marked
// special, GPT-2's <|endoftext|> when generation goes past it (ignore_eos). Added tokens not
// marked special are text. A request may keep them (SkipSpecialTokens = false).
using System.Text.Json.Nodes;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using TorchSharp;

namespace Stratus.Tests;

public sealed class GeneratedSpecialTokensTests
{
    const int EndOfText = 256, ImStart = 257, Think = 258;

    /// <summary>A byte-level tokenizer.json with one token per byte, the special tokens
    /// &lt;|endoftext|&gt; (its eos_token) and &lt;|im_start|&gt;, and &lt;think&gt;, an added token
    /// not marked special.</summary>
    internal static HfTokenizer EveryByteTokenizer()
    {
        var vocab = new JsonObject();
        for (var b = 0; b < 256; b++) vocab[ByteLevel.Encode([(byte)b])] = b;
        var json = JsonNode.Parse("""
            {"added_tokens": [{"id": 256, "content": "<|endoftext|>", "special": true}, {"id": 257, "content": "<|im_start|>", "special": true},
                              {"id": 258, "content": "<think>", "special": false}],
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}, "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "merges": []}}
            """)!.AsObject();
        json["model"]!["vocab"] = vocab;
        return HfTokenizer.FromHuggingFace(json, new JsonObject { ["eos_token"] = "<|endoftext|>" });
    }

    /// <summary>The text a GenerationStream gives for these generated tokens.</summary>
    static string Read(ITokenizer tokenizer, int[] generated, GenerationRequest? request = null)
    {
        request = (request ?? new GenerationRequest { PromptTokens = [] }) with { PromptTokens = [0], MaxTokens = generated.Length };
        var sequence = new Sequence(1, request, tokenizer.VocabSize);
        foreach (var token in generated) sequence.Append(new GeneratedToken(token, 0, null), emit: true);
        sequence.Finish(FinishReason.Length);
        var text = new System.Text.StringBuilder();
        var chunks = new GenerationStream(tokenizer, sequence).ReadAllAsync().GetAsyncEnumerator();
        while (chunks.MoveNextAsync().AsTask().GetAwaiter().GetResult()) text.Append(chunks.Current.Text);
        return text.ToString();
    }

    [Fact]
    public void Generated_special_tokens_are_left_out_of_the_text_and_added_tokens_not_marked_special_stay()
    {
        var tokenizer = EveryByteTokenizer();
        var e = tokenizer.Encode("é");
        // A special token between the two bytes of "é" leaves the character whole, as Hugging
        // Face's decode(skip_special_tokens=True) drops it before joining the bytes.
        int[] generated = [.. tokenizer.Encode("Hi "), ImStart, Think, e[0], ImStart, e[1], EndOfText, .. tokenizer.Encode("!")];
        Assert.Equal("Hi <think>é!", Read(tokenizer, generated));
        // Kept, they are their text.
        var kept = Read(tokenizer, generated, new GenerationRequest { PromptTokens = [], SkipSpecialTokens = false });
        Assert.StartsWith("Hi <|im_start|><think>", kept);
        Assert.EndsWith("<|endoftext|>!", kept);
    }

    [Fact]
    public void Each_tokenizer_says_which_tokens_are_special()
    {
        var hf = EveryByteTokenizer();
        Assert.True(hf.IsSpecial(EndOfText));
        Assert.True(hf.IsSpecial(ImStart));
        Assert.False(hf.IsSpecial(Think));
        Assert.False(hf.IsSpecial('a'));
        Assert.True(Gpt2Tokenizer.Instance.IsSpecial(50256));
        Assert.False(Gpt2Tokenizer.Instance.IsSpecial(Gpt2Tokenizer.Instance.Encode("Hello").Single()));
        var characters = CharTokenizer.FromCorpus("<|>ab");
        Assert.All(Enumerable.Range(0, characters.VocabSize), id => Assert.False(characters.IsSpecial(id)));
    }

    [Fact]
    public void GPT_2_s_end_of_text_generated_past_with_ignore_eos_is_left_out()
    {
        var gpt2 = Gpt2Tokenizer.Instance;
        int[] generated = [.. gpt2.Encode("Hello"), 50256, .. gpt2.Encode(" world"), 50256];
        Assert.Equal("Hello world", Read(gpt2, generated, new GenerationRequest { PromptTokens = [], IgnoreEos = true }));
    }

    /// <summary>A GPT whose output is scripted by position: token embeddings one-hot, each
    /// position's embedding pointing at the token to write there, and blocks that add nothing,
    /// so greedy sampling after a one-token prompt writes <paramref name="script"/>.</summary>
    static Gpt ScriptedGpt(int vocab, int[] script)
    {
        var model = new Gpt(new ModelConfig { VocabSize = vocab, BlockSize = 16, NLayer = 1, NHead = 1, NEmbd = vocab + 1, Bias = false });
        using var noGrad = torch.no_grad();
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (name.EndsWith("c_proj.weight")) parameter.zero_();
            if (name.EndsWith("wte.weight")) parameter.copy_(torch.eye(vocab, vocab + 1));
            if (name.EndsWith("wpe.weight"))
            {
                parameter.zero_();
                for (var p = 0; p < script.Length; p++) parameter[p, script[p]] = torch.tensor(10f);
            }
        }
        model.eval();
        return model;
    }

    [Fact]
    public void Sampling_leaves_generated_special_tokens_out_of_the_text()
    {
        var tokenizer = EveryByteTokenizer();
        var tokens = tokenizer.Encode("ab");
        using var model = ScriptedGpt(tokenizer.VocabSize, [tokens[0], ImStart, tokens[1], EndOfText]);
        var text = string.Concat(new TextGenerator(model, tokenizer).Generate("a", 10, new SamplingOptions { Temperature = 0 }));
        Assert.Equal("ab", text);
    }
}
