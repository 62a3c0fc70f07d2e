// JSON mode in the sampler: whatever the logits and the bias favour, the tokens drawn spell the
// beginning of one JSON object, the end tokens come only once it is whole and then nothing else,
// log-probabilities describe the masked distribution, and the mask allocates nothing per token.
using System.Text;
using System.Text.Json;
using Stratus.Inference;
using Stratus.Tokenization;

namespace Stratus.Tests.Inference;

public sealed class JsonModeSamplingTests
{
    // Printable ASCII and a newline, as a character-level model of code or JSON would have.
    static readonly CharTokenizer Tokenizer = CharTokenizer.FromCorpus(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\n");
    static readonly int Vocab = Tokenizer.VocabSize;
    static readonly JsonVocabulary Vocabulary = new(Tokenizer, Vocab);

    static int Id(char c) => Tokenizer.Encode(c.ToString()).Single();

    static Dictionary<int, float> Bias(params (char Token, float Value)[] bias) => bias.ToDictionary(b => Id(b.Token), b => b.Value);

    static GenerationRequest Request(Dictionary<int, float>? bias, bool json = true, double temperature = 0, int? logprobs = null) => new()
    {
        PromptTokens = [0],
        MaxTokens = 500,
        Sampling = new SamplingOptions { Temperature = temperature, Seed = 1 },
        LogitBias = bias,
        JsonObject = json,
        Logprobs = logprobs,
    };

    /// <summary>Draws from all-zero logits (plus the bias) until an end token or the object is
    /// whole, as the engine does; the text and whether an end token ended it.</summary>
    static (string Text, bool Ended) Generate(GenerationRequest request, int[]? endTokens = null)
    {
        var sampler = new LogitsSampler(Vocab);
        var sequence = new Sequence(1, request, Vocab, endTokens, Vocabulary);
        var row = new float[Vocab];
        var text = new List<int>();
        while (sequence.Generated < request.MaxTokens)
        {
            Array.Clear(row);
            var token = sampler.Choose(row, sequence);
            if (endTokens?.Contains(token.Token) == true) return (Tokenizer.Decode(text), true);
            sequence.Append(token, emit: true);
            text.Add(token.Token);
            if (sequence.Json.IsComplete && endTokens is null) break;
        }
        return (Tokenizer.Decode(text), false);
    }

    static void AssertObject(string text) => Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);

    [Fact]
    public void A_bias_towards_quotes_and_braces_still_gives_one_json_object()
    {
        var bias = Bias(('"', 10), ('}', 9));
        // Unconstrained, the greedy choice is a quote at every step: no JSON object.
        Assert.Equal(new string('"', 10), Generate(Request(bias, json: false) with { MaxTokens = 10 }).Text);

        var (text, _) = Generate(Request(bias));
        AssertObject(text);
        // Greedy among the tokens left: whitespace (the newline has the lowest id) up to the
        // bound where nothing the bias favours may come, then what it favours.
        var pad = new string('\n', JsonGrammar.MaxWhitespace);
        Assert.Equal(pad + "{\"\"" + pad + ":\"\"}", text);
    }

    [Fact]
    public void End_tokens_come_only_once_the_object_is_whole_and_then_nothing_else()
    {
        // '~' ends the generation here and is favoured most: as text it could be in a string.
        var (text, ended) = Generate(Request(Bias(('~', 20), ('"', 10), ('}', 9), ('{', 10), (':', 10))), endTokens: [Id('~')]);
        Assert.True(ended);
        Assert.Equal("{\"\":\"\"}", text);
    }

    [Fact]
    public void Sampled_text_is_always_a_viable_prefix_and_a_whole_object_where_it_ends()
    {
        var random = new Random(3);
        var sampler = new LogitsSampler(Vocab);
        var row = new float[Vocab];
        var complete = 0;
        SamplingOptions[] samplings = [new() { Temperature = 1.5 }, new() { Temperature = 0.8, TopK = 5 }, new() { TopP = 0.5 }, new() { MinP = 0.2 }, new() { Temperature = 0 }];
        for (var trial = 0; trial < 100; trial++)
        {
            // A bias towards closers in some trials, so that some objects close in time.
            var bias = trial % 2 == 0 ? Bias(('}', 3), (']', 3), ('"', 2)) : null;
            var request = Request(bias) with { Sampling = samplings[trial % samplings.Length] with { Seed = trial }, MaxTokens = 60 };
            var sequence = new Sequence(1, request, Vocab, [], Vocabulary);
            var text = new List<int>();
            while (sequence.Generated < request.MaxTokens && !sequence.Json.IsComplete)
            {
                for (var i = 0; i < Vocab; i++) row[i] = (float)(random.NextDouble() * 8 - 4);
                var token = sampler.Choose(row, sequence);
                sequence.Append(token, emit: true);
                text.Add(token.Token);
            }
            var check = new JsonGrammar();
            Assert.True(check.Accept(Encoding.UTF8.GetBytes(Tokenizer.Decode(text))), Tokenizer.Decode(text));
            if (!sequence.Json.IsComplete) continue;
            AssertObject(Tokenizer.Decode(text));
            complete++;
        }
        Assert.InRange(complete, 5, 95);
    }

    [Fact]
    public void Logprobs_describe_the_masked_distribution()
    {
        var sampler = new LogitsSampler(Vocab);
        var sequence = new Sequence(1, Request(Bias(('"', 10)), logprobs: 5), Vocab, [], Vocabulary);
        var token = sampler.Choose(new float[Vocab], sequence);
        // Only whitespace or '{' may begin the text: three tokens of this vocabulary, equally
        // likely once the quote the bias favours is masked.
        Assert.Equal(['\n', ' ', '{'], token.TopLogprobs!.Select(t => Tokenizer.Decode([t.Token])[0]).Order().ToArray());
        Assert.All(token.TopLogprobs!, t => Assert.Equal(Math.Log(1.0 / 3), t.Logprob, 5));
        Assert.Equal(Math.Log(1.0 / 3), token.Logprob, 5);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("""{"type":"object","properties":{"a":{"type":"array","items":{"enum":["x",1,null]}},"b":{"anyOf":[{"type":"string"},{"type":"integer"}]}},"required":["a","b"]}""")]
    public void The_mask_and_logit_bias_allocate_nothing_per_token(string? schema)
    {
        var sampler = new LogitsSampler(Vocab);
        var row = new float[Vocab];
        // The first sequence warms up what is created once (the JIT's, the recognizer's statics);
        // the second is measured. With a logit_bias, which the sampler adds at every token too.
        var allocated = 0L;
        for (var round = 0; round < 2; round++)
        {
            var request = Request(new() { [1] = 0.5f, [2] = -0.5f }, temperature: 1) with { MaxTokens = 40 };
            if (schema is not null) request = request with { Schema = JsonSchema.Compile(JsonDocument.Parse(schema).RootElement) };
            var sequence = new Sequence(1, request, Vocab, [], Vocabulary);
            while (sequence.Generated < 40 && !sequence.Json.IsComplete)
            {
                Array.Clear(row);
                var before = GC.GetAllocatedBytesForCurrentThread();
                var token = sampler.Choose(row, sequence);
                if (round == 1) allocated += GC.GetAllocatedBytesForCurrentThread() - before;
                sequence.Append(token, emit: true);
            }
        }
        Assert.Equal(0, allocated);
    }

    [Fact]
    public void The_tokens_kept_for_a_state_are_those_a_walk_of_the_vocabulary_allows_there()
    {
        // One vocabulary across many texts, so that states met before answer later visits: states
        // that differ only in their containers, depth, whitespace run or place in a key, a
        // string, a literal or a number must each get their own tokens.
        var vocabulary = new JsonVocabulary(Tokenizer, Vocab);
        var texts = new[]
        {
            "{\"a\": [1, {\"b\": [true, null]}, \"x\\u00e9\"], \"c\": {\"d\": {\"e\": -0.5e+3}}}",
            "{\"a\":{\"b\":[[[]]],\"c\":false},  \"d\" :  \"  \\n \" }",
            "{\n  \"nested\": [\n    {\"k\": 10},\n    [20, 30]\n  ]\n}",
            "{" + new string(' ', JsonGrammar.MaxWhitespace) + "\"a\":1}", // the whitespace bound reached
        };
        foreach (var text in texts)
        {
            var state = new JsonGrammar();
            foreach (var b in Encoding.UTF8.GetBytes(text))
            {
                var kept = vocabulary.Allowed(state);
                for (var token = 0; token < Vocab; token++)
                {
                    var next = state;
                    var walked = !vocabulary[token].IsEmpty && next.Accept(vocabulary[token]);
                    Assert.True(walked == ((kept[token >> 6] >> token & 1) == 1), $"token {token} after {text[..Math.Min(text.Length, 40)]}...");
                }
                Assert.True(state.Accept(b));
            }
        }
    }

    static readonly CharTokenizer Prose = CharTokenizer.FromCorpus("abcdefghijklmnopqrstuvwxyz .,!?\n");
    static readonly CharTokenizer ProseWithBracket = CharTokenizer.FromCorpus("abcdefghijklmnopqrstuvwxyz .,!?[\n");

    [Fact]
    public void A_vocabulary_without_the_characters_that_close_an_object_is_named()
    {
        Assert.Equal("", Vocabulary.MissingFor(JsonSchema.AnyObject, []));
        Assert.Equal("{}]\":0", new JsonVocabulary(ProseWithBracket, ProseWithBracket.VocabSize).MissingFor(JsonSchema.AnyObject, []));
        // Without '[' no array can open, and none needs its ']': JSON of objects alone.
        Assert.Equal("{}\":0", new JsonVocabulary(Prose, Prose.VocabSize).MissingFor(JsonSchema.AnyObject, []));
        var records = CharTokenizer.FromCorpus("{\"name\": \"romeo\", \"age\": 10, \"alive\": true, \"x\": false, \"y\": null}\n");
        Assert.Equal("", new JsonVocabulary(records, records.VocabSize).MissingFor(JsonSchema.AnyObject, []));
        // A token that ends the generation is kept for the end: it closes nothing before it.
        Assert.Equal("}\"", Vocabulary.MissingFor(JsonSchema.AnyObject, [Tokenizer.Encode("}")[0], Tokenizer.Encode("\"")[0], Tokenizer.Encode("~")[0]]));
    }
}
