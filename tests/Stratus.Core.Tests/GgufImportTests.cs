// `import gguf`: GGUF files (Stratus's exports, and llama.cpp's own quantizer's files made from
// them) come back as Stratus models computing what the file's model computes: f32 exports give
// the original's logits, f16 and q8_0 its weights within their rounding, llama.cpp's quantized
// types dequantize exactly as ggml's own to_float and then agree with llama.cpp's logits; the
// tokenizer rebuilt from the metadata gives Stratus's and llama.cpp's ids; bad files are refused
// in one line.
using System.Runtime.InteropServices;
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class GgufImportTests
{
    static readonly string[] Prompts = ["Hello world, this is", "The quick brown fox", "1 2 3 4 5 6"];
    static readonly string[] Texts = ["Hello world, it's 2024!", "naïve café 東京", "  spaces\n\nnewlines", "digits 1234567 and 3.14"];

    static (CausalLanguageModel Model, Checkpoint Checkpoint) Imported(string gguf, string run)
    {
        GgufImport.Import(gguf, run);
        var checkpoint = Checkpoint.Open(Checkpoint.Resolve(run));
        var model = checkpoint.CreateModel();
        model.eval();
        return (model, checkpoint);
    }

    static double MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => (double)Math.Abs(x - y)).Max();

    [Theory]
    [MemberData(nameof(ParityTests.Architectures), MemberType = typeof(ParityTests))]
    public void An_f32_export_imports_as_the_same_model_and_tokenizer(string architecture)
    {
        using var temp = new TempDirectory();
        using var original = ParityTests.RandomModel(ParityTests.Config(architecture));
        GgufExport.Write(original, Gpt2Tokenizer.Instance, null, temp["m.gguf"], GgmlType.F32);
        var (model, checkpoint) = Imported(temp["m.gguf"], temp["run"]);
        using (model)
        {
            var expected = original.Config;
            var actual = checkpoint.ModelConfig;
            Assert.Equal((expected.Architecture, expected.NLayer, expected.NHead, expected.KvHeads, expected.NEmbd, expected.MlpWidth, expected.VocabSize, expected.BlockSize, expected.TieWordEmbeddings, expected.AttentionBias),
                (actual.Architecture, actual.NLayer, actual.NHead, actual.KvHeads, actual.NEmbd, actual.MlpWidth, actual.VocabSize, actual.BlockSize, actual.TieWordEmbeddings, actual.AttentionBias));
            Assert.Equal(expected.RopeScaling is null, actual.RopeScaling is null);
            foreach (var prompt in Prompts)
            {
                var tokens = Gpt2Tokenizer.Instance.Encode(prompt);
                var difference = MaxDifference(ParityTests.StratusLastLogits(original, tokens), ParityTests.StratusLastLogits(model, tokens));
                Assert.True(difference < 1e-5, $"{architecture} '{prompt}': max |logit difference| {difference}");
            }
            foreach (var text in Texts) Assert.Equal(Gpt2Tokenizer.Instance.Encode(text), checkpoint.Tokenizer.Encode(text));
            Assert.Equal(Gpt2Tokenizer.Instance.EndOfTextId, checkpoint.Tokenizer.EndOfTextId);
        }
    }

    [Fact]
    public void A_qwen2_file_with_unpermuted_q_and_k_imports_as_its_model()
    {
        // llama.cpp's qwen2 graph rotates halves, as Hugging Face does: its q/k rows are never permuted.
        using var temp = new TempDirectory();
        var config = ParityTests.Config("llama-untied-bias-rope-scaling") with { RopeScaling = null, TieWordEmbeddings = true };
        using var original = ParityTests.RandomModel(config);
        GgufExport.Write(original, Gpt2Tokenizer.Instance, null, temp["llama.gguf"], GgmlType.F32);
        var weights = original.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        var stratusNames = GgufExport.TensorNames(config).ToDictionary(t => t.Gguf, t => t.Stratus);
        GgufRewrite.Copy(temp["llama.gguf"], temp["qwen2.gguf"],
            key => key == "general.architecture" ? null : key.StartsWith("llama.", StringComparison.Ordinal) ? "qwen2." + key["llama.".Length..] : key,
            (name, values) => Values(weights[stratusNames[name]]), extra: w => w.Add("general.architecture", "qwen2"));
        var (model, checkpoint) = Imported(temp["qwen2.gguf"], temp["run"]);
        using (model)
        {
            Assert.True(checkpoint.ModelConfig.AttentionBias);
            var tokens = Gpt2Tokenizer.Instance.Encode(Prompts[0]);
            Assert.True(MaxDifference(ParityTests.StratusLastLogits(original, tokens), ParityTests.StratusLastLogits(model, tokens)) < 1e-5);
        }
    }

    static float[] Values(Tensor tensor)
    {
        using var f32 = tensor.detach().to(ScalarType.Float32).contiguous();
        return f32.data<float>().ToArray();
    }

    /// <summary>f16 rounds each weight to 11 significant bits (relative error at most 2^-11, or
    /// 2^-25 absolute below f16's normal range), bf16 to 8 (at most 2^-8 relative); q8_0 each to a multiple of its block's
    /// scale d = max|x| / 127 (error at most d / 2), d itself rounded to f16.</summary>
    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    [InlineData(GgmlType.Q8_0)]
    public void Reduced_precision_exports_import_within_their_rounding(GgmlType type)
    {
        using var temp = new TempDirectory();
        var config = ParityTests.Config("llama-gqa-tied");
        using var original = ParityTests.RandomModel(config);
        GgufExport.Write(original, Gpt2Tokenizer.Instance, null, temp["m.gguf"], type);
        var (model, _) = Imported(temp["m.gguf"], temp["run"]);
        using (model)
        {
            var imported = model.state_dict().ToDictionary(kv => kv.Key, kv => Values(kv.Value));
            foreach (var (name, tensor) in original.state_dict())
            {
                var before = Values(tensor);
                var after = imported[name];
                var width = (int)tensor.shape[^1];
                for (var i = 0; i < before.Length; i++)
                {
                    double bound;
                    if (tensor.dim() == 1) bound = 0; // vectors stay f32
                    else if (type == GgmlType.F16) bound = Math.Max(Math.Abs(before[i]) * Math.Pow(2, -11), Math.Pow(2, -25));
                    else if (type == GgmlType.BF16) bound = Math.Abs(before[i]) * Math.Pow(2, -8);
                    else
                    {
                        var blockStart = i / 32 * 32;
                        var max = before.AsSpan(blockStart, 32).ToArray().Max(Math.Abs);
                        // d / 2, d rounded to f16 (relative 2^-11) times at most 127.
                        bound = max / 127 / 2 + max / 127 * Math.Pow(2, -11) * 127 + 1e-7;
                    }
                    // q/k rows were permuted in the file: compared by name, they came back in place.
                    Assert.True(Math.Abs(before[i] - after[i]) <= bound, $"{type} {name}[{i / width}, {i % width}]: {before[i]} became {after[i]} (bound {bound})");
                }
            }
        }
    }

    [Fact]
    public void Character_and_sentencepiece_vocabularies_give_the_same_ids_as_before_and_as_llama_cpp()
    {
        using var temp = new TempDirectory();
        // A character vocabulary is byte-level tokens in GGUF, with merges only inside multi-byte characters.
        var chars = TokenizerStore.Create("char", "abc déf\n!😀");
        var charConfig = new ModelConfig { Architecture = "llama", VocabSize = chars.VocabSize, BlockSize = 32, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false };
        using (var model = CausalLanguageModel.Create(charConfig))
            Checkpoint.Save(temp["char-model"], model, chars);
        GgufExport.Write(temp["char-model"], temp["char.gguf"], GgmlType.F32);
        GgufImport.Import(temp["char.gguf"], temp["char-run"]);
        var imported = Checkpoint.Open(Checkpoint.Resolve(temp["char-run"])).Tokenizer;
        const string sample = "bad féé!\nfab😀";
        Assert.Equal(chars.Encode(sample), imported.Encode(sample));
        Assert.Equal(sample, imported.Decode(imported.Encode(sample)));
        // Token 0 ("\n"), which the export names as bos/eos for want of such tokens, stays text.
        Assert.Null(imported.EndOfTextId);
        Assert.Empty(imported.EndOfGenerationIds);
        Assert.False(imported.IsSpecial(0));

        // SentencePiece: merges rebuilt from scores, byte fallback, <s> before a prompt.
        var spm = SentencePieceTests.Tokenizer();
        var spmConfig = charConfig with { VocabSize = spm.VocabSize };
        using (var model = CausalLanguageModel.Create(spmConfig))
            Checkpoint.Save(temp["spm-model"], model, spm);
        GgufExport.Write(temp["spm-model"], temp["spm.gguf"], GgmlType.F32);
        GgufImport.Import(temp["spm.gguf"], temp["spm-run"]);
        var spmImported = Checkpoint.Open(Checkpoint.Resolve(temp["spm-run"])).Tokenizer;
        using var reference = new LlamaCppModel(temp["spm.gguf"], 32, 2);
        foreach (var text in new[] { "the cat sat on a cat", "a  cat, é!", "hello there 123", "<s>the cat</s><s> sat on</s>" })
        {
            Assert.Equal(spm.Encode(text), spmImported.Encode(text));
            Assert.Equal(reference.Tokenize(text), spmImported.Encode(text));
            Assert.Equal(reference.Tokenize(text, addSpecialTokens: true), spmImported.Encode(text, addSpecialTokens: true));
        }
        Assert.Equal((spm.BosId, spm.EndOfTextId), (((HfTokenizer)spmImported).BosId, spmImported.EndOfTextId));
    }

    [Fact]
    public void The_chat_template_and_a_gpt2_vocabulary_tokenize_as_llama_cpp_does()
    {
        using var temp = new TempDirectory();
        using var original = ParityTests.RandomModel(ParityTests.Config("llama-gqa-tied") with { NLayer = 1 });
        GgufExport.Write(original, Gpt2Tokenizer.Instance, ChatTemplateTests.ChatMl, temp["m.gguf"], GgmlType.F32);
        var imported = GgufImport.Import(temp["m.gguf"], temp["run"]);
        Assert.True(imported.HasChatTemplate);
        Assert.Equal(ChatTemplateTests.ChatMl, File.ReadAllText(Path.Combine(imported.CheckpointDirectory, ChatTemplate.FileName)));
        Assert.Equal([Gpt2Tokenizer.Instance.EndOfTextId!.Value], imported.Tokenizer.EndOfGenerationIds);
        using (var reference = new LlamaCppModel(temp["m.gguf"], 64, 2))
            foreach (var text in Texts.Append("<|endoftext|>and after")) Assert.Equal(reference.Tokenize(text), imported.Tokenizer.Encode(text));

        // A control token llama.cpp ends generations at by its text, though no id names it.
        var source = GgufFile.Read(temp["m.gguf"]);
        var tokens = ((object[])source.Metadata["tokenizer.ggml.tokens"]).Cast<string>().ToList();
        var types = ((object[])source.Metadata["tokenizer.ggml.token_type"]).Cast<int>().ToList();
        (tokens[100], types[100]) = ("<|im_end|>", 3);
        GgufRewrite.Copy(temp["m.gguf"], temp["im_end.gguf"], key => key is "tokenizer.ggml.tokens" or "tokenizer.ggml.token_type" ? null : key, extra: w =>
        {
            w.Add("tokenizer.ggml.tokens", tokens);
            w.Add("tokenizer.ggml.token_type", types);
        });
        Assert.Equal([Gpt2Tokenizer.Instance.EndOfTextId!.Value, 100], GgufImport.Import(temp["im_end.gguf"], temp["im_end-run"]).Tokenizer.EndOfGenerationIds);

        // The pre-tokenizers llama.cpp names (Llama 3's and Qwen2's split digits differently,
        // SmolLM's one by one), each given to the same vocabulary.
        foreach (var pre in new[] { "llama-bpe", "qwen2", "smollm" })
        {
            var file = temp[$"{pre}.gguf"];
            GgufRewrite.Copy(temp["m.gguf"], file, key => key == "tokenizer.ggml.pre" ? null : key, extra: w => w.Add("tokenizer.ggml.pre", pre));
            var tokenizer = GgufImport.Import(file, temp[$"{pre}-run"]).Tokenizer;
            using var reference = new LlamaCppModel(file, 64, 2);
            foreach (var text in Texts.Append("I'm sure they'll pay 1234567 or 12 345\n\n  twice"))
                Assert.True(reference.Tokenize(text).SequenceEqual(tokenizer.Encode(text)), $"{pre} '{text}': llama.cpp [{string.Join(", ", reference.Tokenize(text))}], Stratus [{string.Join(", ", tokenizer.Encode(text))}]");
        }
    }

    /// <summary>llama.cpp's quantizer's file types and the tensor type each puts in the layers
    /// (BF16, which it does not make, is Stratus's export).</summary>
    public static TheoryData<string, GgmlType> Quantizations => new()
    {
        { "BF16", GgmlType.BF16 }, { "F16", GgmlType.F16 }, { "Q8_0", GgmlType.Q8_0 },
        { "Q4_0", GgmlType.Q4_0 }, { "Q4_1", GgmlType.Q4_1 }, { "Q5_0", GgmlType.Q5_0 }, { "Q5_1", GgmlType.Q5_1 },
        { "Q2_K", GgmlType.Q2_K }, { "Q3_K_M", GgmlType.Q3_K }, { "Q4_K_M", GgmlType.Q4_K }, { "Q5_K_M", GgmlType.Q5_K }, { "Q6_K", GgmlType.Q6_K },
    };

    /// <summary>A Llama 256 wide (k-quants need rows of whole 256-value super-blocks; llama.cpp
    /// quietly stores narrower ones in other types) with a small character vocabulary.</summary>
    static CausalLanguageModel QuantizableModel(TempDirectory temp, out ITokenizer tokenizer)
    {
        tokenizer = TokenizerStore.Create("char", "abcdefghijklmnopqrstuvwxyz ,.!?\n");
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 64, NLayer = 2, NHead = 4, NKvHead = 2, NEmbd = 256, IntermediateSize = 512,
            Bias = false, TieWordEmbeddings = false,
        };
        return ParityTests.RandomModel(config);
    }

    [Theory]
    [MemberData(nameof(Quantizations))]
    public void Llama_cpp_quantized_files_dequantize_as_ggml_does_and_agree_with_llama_cpp(string fileType, GgmlType layerType)
    {
        using var temp = new TempDirectory();
        using var original = QuantizableModel(temp, out var tokenizer);
        if (layerType == GgmlType.BF16) GgufExport.Write(original, tokenizer, null, temp["q.gguf"], GgmlType.BF16);
        else
        {
            GgufExport.Write(original, tokenizer, null, temp["f32.gguf"], GgmlType.F32);
            LlamaCppModel.Quantize(temp["f32.gguf"], temp["q.gguf"], fileType, 2);
        }
        var file = GgufFile.Read(temp["q.gguf"]);
        Assert.Equal(layerType, file.Tensors.Single(t => t.Name == "blk.0.attn_q.weight").Type);

        using var reference = new LlamaCppModel(temp["q.gguf"], 64, 2);
        // Each type in the file but f32 (which ggml does not convert), dequantized by ggml's own
        // to_float (loaded with llama.cpp above).
        foreach (var group in file.Tensors.GroupBy(t => t.Type).Where(g => g.Key != GgmlType.F32))
        {
            var tensor = group.First();
            var values = new float[tensor.Dims.Aggregate(1L, (a, b) => a * b)];
            file.ReadValues(tensor, values);
            var bytes = File.ReadAllBytes(temp["q.gguf"]).AsSpan((int)(file.DataStart + tensor.Offset), (int)GgufWriter.ByteSize(tensor.Type, values.Length)).ToArray();
            Assert.Equal(GgmlReference.ToFloat(tensor.Type, bytes, values.Length), values);
        }

        var (model, _) = Imported(temp["q.gguf"], temp["run"]);
        using (model)
        {
            foreach (var text in new[] { "hello world, this is", "the quick brown fox jumps" })
            {
                var tokens = tokenizer.Encode(text);
                var expected = reference.LastLogits(tokens);
                var actual = ParityTests.StratusLastLogits(model, tokens);
                var scale = expected.Max(Math.Abs);
                var difference = MaxDifference(expected, actual);
                // The weights are llama.cpp's to the bit (above); llama.cpp alone rounds the
                // activations, to 8 bits per block of 32 (q8_0) or 256 (q8_K) values before each
                // product with quantized weights: up to 1/254 of a block's largest value each, over
                // 15 matrix products here. Measured: 1.0-2.3% of the largest logit.
                Assert.True(difference < 0.05 * scale, $"{fileType}: max |logit difference| {difference} vs max |logit| {scale}");
            }
        }
    }

    [Fact]
    public void A_gpt2_head_that_copies_its_embeddings_imports_and_a_head_of_its_own_is_refused()
    {
        // output.weight was read as convert_hf_to_gguf.py's copy of the embeddings and ignored: a
        // GPT-2 whose head was its own imported as another model, with no word said.
        using var temp = new TempDirectory();
        var tokenizer = TokenizerStore.Create("char", "abcdefghijklmnopqrstuvwxyz ,.!?\n");
        // 256 wide: llama.cpp's k-quants need rows of whole 256-value super-blocks.
        var config = new ModelConfig { Architecture = "gpt2", VocabSize = tokenizer.VocabSize, BlockSize = 64, NLayer = 1, NHead = 4, NEmbd = 256, HiddenAct = "gelu_new" };
        using var original = ParityTests.RandomModel(config);
        var embeddings = original.state_dict()["transformer.wte.weight"];
        GgufExport.Write(original, tokenizer, null, temp["tied.gguf"], GgmlType.F32);
        string WithHead(string name, Tensor head)
        {
            var values = Values(head);
            GgufRewrite.Copy(temp["tied.gguf"], temp[name], key => key, extra: w => w.Add(new GgufTensor("output.weight", [config.VocabSize, config.NEmbd], () => values, GgmlType.F32)));
            return temp[name];
        }

        // The copy as converted.
        var copy = WithHead("copy.gguf", embeddings);
        var (model, _) = Imported(copy, temp["copy"]);
        using (model)
        {
            var tokens = tokenizer.Encode("hello world");
            Assert.True(MaxDifference(ParityTests.StratusLastLogits(original, tokens), ParityTests.StratusLastLogits(model, tokens)) < 1e-5);
        }

        // A head of its own: another matrix of the same scale, and the embeddings fine-tuned by a
        // tenth of their size (refused in f32, where a copy is exact; a Q2_K's rounding is not).
        using var other = randn_like(embeddings) * embeddings.std();
        using var tuned = embeddings + 0.1 * randn_like(embeddings) * embeddings.std();
        string Refusal(string path) => Assert.Throws<StratusUserException>(() => GgufImport.Import(path, temp[Guid.NewGuid().ToString("N")])).Message;
        var untied = WithHead("untied.gguf", other);
        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(untied)}: its GPT-2 head \(output.weight, f32\) is not a copy of its token embeddings \(token_embd.weight, f32\): they differ by 1\.4\d of their size, where rounding to those types leaves a copy within 0\.0001; Stratus's GPT-2 ties its head to the token embeddings, so a head of its own is not supported: use a GPT-2 whose head is its token embeddings$",
            Refusal(untied));
        Assert.Matches(@"\(token_embd.weight, f32\): they differ by 0\.(09\d*|1\d*) of their size, where", Refusal(WithHead("tuned.gguf", tuned)));

        // Copies rounded apart by llama.cpp's quantizer (the head q6_K, the embeddings q2_K, q4_K,
        // or both q8_0) import; a head of its own so rounded does not.
        foreach (var (fileType, embeddingType) in new[] { ("Q2_K", GgmlType.Q2_K), ("Q4_K_M", GgmlType.Q4_K), ("Q8_0", GgmlType.Q8_0) })
        {
            LlamaCppModel.Quantize(copy, temp[$"{fileType}.gguf"], fileType, 2);
            var types = GgufFile.Read(temp[$"{fileType}.gguf"]).Tensors.ToDictionary(t => t.Name, t => t.Type);
            Assert.Equal((embeddingType, fileType == "Q8_0" ? GgmlType.Q8_0 : GgmlType.Q6_K), (types["token_embd.weight"], types["output.weight"]));
            GgufImport.Import(temp[$"{fileType}.gguf"], temp[$"{fileType}-run"]);
        }
        LlamaCppModel.Quantize(untied, temp["untied-Q2_K.gguf"], "Q2_K", 2);
        Assert.Matches(@"\(output.weight, q6_K\) is not a copy of its token embeddings \(token_embd.weight, q2_K\): they differ by 1\.[34]\d of their size, where rounding to those types leaves a copy within 0\.648;", Refusal(temp["untied-Q2_K.gguf"]));
    }

    /// <summary>llama.cpp keeps Llama 3's rope scaling as each frequency's divisor: the settings
    /// found again from them give the same divisors (Llama 3.1's, Llama 3.2's, and ones whose
    /// band is not Llama 3's low 1 and high 4), so the same model.</summary>
    [Theory]
    [InlineData(500000.0, 8.0, 1.0, 4.0, 8192)]
    [InlineData(500000.0, 32.0, 1.0, 4.0, 8192)]
    [InlineData(10000.0, 4.0, 2.0, 16.0, 256)]
    public void Llama_3_rope_scaling_is_found_again_from_its_divisors(double theta, double factor, double low, double high, int originalContext)
    {
        using var temp = new TempDirectory();
        var tokenizer = TokenizerStore.Create("char", "abcdefgh ");
        var scaling = new RopeScaling { Factor = factor, LowFreqFactor = low, HighFreqFactor = high, OriginalMaxPositionEmbeddings = originalContext };
        var config = new ModelConfig
        {
            Architecture = "llama", VocabSize = tokenizer.VocabSize, BlockSize = 64, NLayer = 1, NHead = 1, NEmbd = 128, IntermediateSize = 64, Bias = false,
            RopeTheta = theta, RopeScaling = scaling,
        };
        using var original = ParityTests.RandomModel(config);
        GgufExport.Write(original, tokenizer, null, temp["m.gguf"], GgmlType.F32);
        var (model, checkpoint) = Imported(temp["m.gguf"], temp["run"]);
        using (model)
        {
            var found = checkpoint.ModelConfig.RopeScaling!;
            var (expected, actual) = (scaling.FrequencyDivisors(theta, 128), found.FrequencyDivisors(theta, 128));
            Assert.True(expected.Zip(actual).All(d => Math.Abs(d.First - d.Second) <= 1e-5 * d.First), $"found {found}");
            var tokens = tokenizer.Encode("abc defg hab");
            Assert.True(MaxDifference(ParityTests.StratusLastLogits(original, tokens), ParityTests.StratusLastLogits(model, tokens)) < 1e-5);
        }
    }

    [Fact]
    public void Bad_files_are_refused_in_one_line_naming_the_problem()
    {
        using var temp = new TempDirectory();
        using var original = ParityTests.RandomModel(ParityTests.Config("llama-gqa-tied") with { NLayer = 1 });
        GgufExport.Write(original, Gpt2Tokenizer.Instance, null, temp["m.gguf"], GgmlType.F32);
        string Refusal(string path) => Assert.Throws<StratusUserException>(() => GgufImport.Import(path, temp[Guid.NewGuid().ToString("N")])).Message;

        var bytes = File.ReadAllBytes(temp["m.gguf"]);
        File.WriteAllBytes(temp["cut.gguf"], bytes[..(bytes.Length / 2)]);
        Assert.StartsWith($"{temp["cut.gguf"]} is not a valid GGUF file: file is truncated: tensor ", Refusal(temp["cut.gguf"]));

        GgufRewrite.Copy(temp["m.gguf"], temp["mamba.gguf"], key => key == "general.architecture" ? null : key, extra: w => w.Add("general.architecture", "mamba"));
        Assert.Equal($"{temp["mamba.gguf"]}: architecture 'mamba' is not supported; import gguf reads llama (Llama 2/3, Mistral, SmolLM, TinyLlama), qwen2 and gpt2", Refusal(temp["mamba.gguf"]));

        GgufRewrite.Copy(temp["m.gguf"], temp["no-tokenizer.gguf"], key => key.StartsWith("tokenizer.", StringComparison.Ordinal) ? null : key);
        Assert.Equal($"{temp["no-tokenizer.gguf"]} has no tokenizer (tokenizer.ggml.model); import gguf needs the vocabulary a llama.cpp model file carries", Refusal(temp["no-tokenizer.gguf"]));

        GgufRewrite.Copy(temp["m.gguf"], temp["wider.gguf"], key => key == "llama.feed_forward_length" ? null : key, extra: w => w.Add("llama.feed_forward_length", 128u));
        Assert.Equal($"{temp["wider.gguf"]}: tensor blk.0.ffn_gate.weight has shape [96, 64] but the metadata implies [128, 64]", Refusal(temp["wider.gguf"]));

        GgufRewrite.Copy(temp["m.gguf"], temp["deeper.gguf"], key => key == "llama.block_count" ? null : key, extra: w => w.Add("llama.block_count", 2u));
        Assert.StartsWith($"{temp["deeper.gguf"]} has no tensor blk.1.", Refusal(temp["deeper.gguf"]));

        // A type Stratus does not read, of the same size as the file's (i32 for f32).
        GgufRewrite.SetType(temp["m.gguf"], temp["i32.gguf"], "output_norm.weight", GgmlType.I32);
        Assert.StartsWith($"{temp["i32.gguf"]}: tensor output_norm.weight is i32, which Stratus cannot dequantize (it reads f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, q6_K); use a file of those types",
            Refusal(temp["i32.gguf"]));
        GgufRewrite.SetType(temp["m.gguf"], temp["iq.gguf"], "blk.0.attn_q.weight", GgmlType.IQ4_NL, dims: [64, 64]);
        Assert.StartsWith($"{temp["iq.gguf"]}: tensor blk.0.attn_q.weight is iq4_nl, which Stratus cannot dequantize", Refusal(temp["iq.gguf"]));
    }

    [Fact]
    public async Task A_named_pipe_device_or_folder_given_as_the_gguf_file_is_refused_in_one_line()
    {
        // GgufFile.Read opened the path it was given: a named pipe waited for a writer for ever,
        // saying nothing, and a folder "did not exist".
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempDirectory();
        var fifo = temp["pipe.gguf"];
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo)!) await mkfifo.WaitForExitAsync();
        var reading = Task.Run(() => GgufImport.Import(fifo, temp["run"]));
        var finished = await Task.WhenAny(reading, Task.Delay(TimeSpan.FromSeconds(30)));
        // A reader still waiting gets its writer, so that no thread is left blocked.
        if (finished != reading) using (new FileStream(fifo, FileMode.Open, FileAccess.Write)) { }
        Assert.True(finished == reading, $"import gguf of the named pipe {fifo} waited for a writer");
        Assert.Equal($"{fifo} is a named pipe (FIFO), not a regular file; a GGUF file is read in place, each tensor at its offset: give the .gguf file itself",
            (await Assert.ThrowsAsync<StratusUserException>(() => reading)).Message);

        var device = temp["zero.gguf"];
        File.CreateSymbolicLink(device, "/dev/zero");
        Assert.Equal($"{device} is a character device, not a regular file; a GGUF file is read in place, each tensor at its offset: give the .gguf file itself",
            Assert.Throws<StratusUserException>(() => GgufFile.Read(device)).Message);
        Directory.CreateDirectory(temp["folder.gguf"]);
        Assert.Equal($"{temp["folder.gguf"]} is a folder; pass a .gguf file", Assert.Throws<StratusUserException>(() => GgufFile.Read(temp["folder.gguf"])).Message);
    }
}

/// <summary>GGUF files made from others for tests: metadata renamed, dropped or added, tensors replaced.</summary>
static class GgufRewrite
{
    /// <param name="rename">A key's new name, or null to drop it.</param>
    public static void Copy(string source, string destination, Func<string, string?> rename, Func<string, float[], float[]>? tensors = null, Action<GgufWriter>? extra = null)
    {
        var file = GgufFile.Read(source);
        var writer = new GgufWriter();
        foreach (var (key, value) in file.Metadata)
        {
            if (rename(key) is not { } name) continue;
            switch (value)
            {
                case string s: writer.Add(name, s); break;
                case uint u: writer.Add(name, u); break;
                case float f: writer.Add(name, f); break;
                case bool b: writer.Add(name, b); break;
                case object[] list when list.All(x => x is string): writer.Add(name, list.Cast<string>().ToList()); break;
                case object[] list when list.All(x => x is float): writer.Add(name, list.Cast<float>().ToList()); break;
                case object[] list when list.All(x => x is int): writer.Add(name, list.Cast<int>().ToList()); break;
                default: throw new InvalidOperationException($"{key}: {value.GetType()}");
            }
        }
        extra?.Invoke(writer);
        foreach (var tensor in file.Tensors)
        {
            var values = new float[tensor.Dims.Aggregate(1L, (a, b) => a * b)];
            file.ReadValues(tensor, values);
            var name = tensor.Name;
            writer.Add(new GgufTensor(name, [.. tensor.Dims.Reverse()], () => tensors?.Invoke(name, values) ?? values, tensor.Type));
        }
        writer.Write(destination);
    }

    /// <summary>A copy whose tensor <paramref name="name"/> says it is of <paramref name="type"/>
    /// (and, where given, of other dimensions): its bytes stay as they were.</summary>
    public static void SetType(string source, string destination, string name, GgmlType type, long[]? dims = null)
    {
        var bytes = File.ReadAllBytes(source);
        var file = GgufFile.Read(source);
        var tensor = file.Tensors.Single(t => t.Name == name);
        // The tensor info: name's length and bytes, dimension count, dimensions, type.
        var nameBytes = System.Text.Encoding.UTF8.GetBytes(name);
        var at = bytes.AsSpan().IndexOf([.. BitConverter.GetBytes((ulong)nameBytes.Length), .. nameBytes]) + 8 + nameBytes.Length + 4;
        if (dims is not null)
            for (var d = 0; d < dims.Length; d++) BitConverter.TryWriteBytes(bytes.AsSpan(at + 8 * d), (ulong)dims[d]);
        BitConverter.TryWriteBytes(bytes.AsSpan(at + 8 * tensor.Dims.Length), (uint)type);
        File.WriteAllBytes(destination, bytes);
    }
}

/// <summary>ggml's own dequantization (its type traits' to_float), from the libggml-base that
/// LLamaSharp loaded for llama.cpp: an implementation of every block layout that Stratus's
/// does not share.</summary>
static class GgmlReference
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void ToFloatFunction(IntPtr source, IntPtr destination, long count);

    delegate IntPtr TypeTraits(int type);

    public static float[] ToFloat(GgmlType type, byte[] data, int count)
    {
        var library = File.ReadLines("/proc/self/maps").Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault())
            .First(path => path is not null && Path.GetFileName(path) == "libggml-base.so")!;
        var traits = Marshal.GetDelegateForFunctionPointer<TypeTraits>(NativeLibrary.GetExport(NativeLibrary.Load(library), "ggml_get_type_traits"))((int)type);
        // struct ggml_type_traits { const char * type_name; int64_t blck_size; int64_t blck_size_interleave; size_t type_size; bool is_quantized; ggml_to_float_t to_float; ... }
        var (values, bytes) = GgmlTypes.Block(type);
        Assert.Equal(((long)values, (long)bytes), (Marshal.ReadInt64(traits, 8), Marshal.ReadInt64(traits, 24)));
        var toFloat = Marshal.GetDelegateForFunctionPointer<ToFloatFunction>(Marshal.ReadIntPtr(traits, 40));
        var result = new float[count];
        var source = GCHandle.Alloc(data, GCHandleType.Pinned);
        var destination = GCHandle.Alloc(result, GCHandleType.Pinned);
        try { toFloat(source.AddrOfPinnedObject(), destination.AddrOfPinnedObject(), count); }
        finally
        {
            source.Free();
            destination.Free();
        }
        return result;
    }
}
