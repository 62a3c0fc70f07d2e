// GGUF files as llama.cpp reads them: the header Stratus writes reads back, f16 and q8_0 exports
// load and stay close to f32, llama.cpp tokenizes text exactly as Stratus does from the exported
// vocabulary (GPT-2 BPE and a character vocabulary, also through a Hugging Face folder), and a
// truncated file is refused clearly.
using Stratus.Formats;
using Stratus.Inference;
using Stratus.Models;
using Stratus.Tokenization;
using Stratus.Training;

namespace Stratus.Tests;

public sealed class GgufTests
{
    [Fact]
    public void Export_says_when_llama_cpp_computes_the_model_differently()
    {
        Assert.Contains("exact GELU", GgufExport.Difference(new Models.ModelConfig { Architecture = "gpt2", HiddenAct = "gelu" }));
        Assert.Null(GgufExport.Difference(new Models.ModelConfig { Architecture = "gpt2", HiddenAct = "gelu_new" }));
        Assert.Null(GgufExport.Difference(new Models.ModelConfig { Architecture = "llama" }));
    }

    [Fact]
    public void Exported_header_has_llama_cpp_metadata_and_tensor_layout()
    {
        using var temp = new TempDirectory();
        using var model = ParityTests.RandomModel(ParityTests.Config("llama-gqa-tied"));
        GgufExport.Write(model, Gpt2Tokenizer.Instance, ChatTemplateTests.ChatMl, temp.File("m.gguf"), GgmlType.Q8_0);
        var file = GgufFile.Read(temp.File("m.gguf"));
        Assert.Equal("llama", file.Metadata["general.architecture"]);
        Assert.Equal(2u, file.Metadata["llama.attention.head_count_kv"]);
        Assert.Equal(ChatTemplateTests.ChatMl, file.Metadata["tokenizer.chat_template"]);
        var q = file.Tensors.Single(t => t.Name == "blk.0.attn_q.weight");
        Assert.Equal(new long[] { 64, 64 }, q.Dims);
        Assert.Equal(GgmlType.Q8_0, q.Type);
        Assert.Equal(GgmlType.F32, file.Tensors.Single(t => t.Name == "blk.0.attn_norm.weight").Type);
        Assert.DoesNotContain(file.Tensors, t => t.Name == "output.weight"); // tied: llama.cpp reuses token_embd
    }

    [Theory]
    [InlineData(GgmlType.F16, 0.02)]
    [InlineData(GgmlType.Q8_0, 0.1)]
    public void Reduced_precision_exports_load_and_stay_close(GgmlType type, double relativeTolerance)
    {
        using var temp = new TempDirectory();
        using var model = ParityTests.RandomModel(ParityTests.Config("llama-gqa-tied"));
        GgufExport.Write(model, Gpt2Tokenizer.Instance, null, temp.File("m.gguf"), type);
        using var reference = new LlamaCppModel(temp.File("m.gguf"), 64, 2);
        var tokens = Gpt2Tokenizer.Instance.Encode("The quick brown fox");
        var expected = ParityTests.StratusLastLogits(model, tokens);
        var actual = reference.LastLogits(tokens);
        var scale = expected.Max(Math.Abs);
        var difference = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(difference < relativeTolerance * scale, $"{type}: max difference {difference} vs max |logit| {scale}");
    }

    [Fact]
    public void Llama_cpp_tokenizes_like_Stratus_with_the_exported_vocabularies()
    {
        using var temp = new TempDirectory();
        using (var gpt2 = ParityTests.RandomModel(ParityTests.Config("gpt2") with { NLayer = 1 }))
        {
            GgufExport.Write(gpt2, Gpt2Tokenizer.Instance, null, temp.File("gpt2.gguf"), GgmlType.F32);
            using var reference = new LlamaCppModel(temp.File("gpt2.gguf"), 64, 2);
            foreach (var text in new[] { "Hello world, it's 2024!", "naïve café 東京", "  spaces\n\nnewlines" })
                Assert.Equal(Gpt2Tokenizer.Instance.Encode(text), reference.Tokenize(text));
        }

        // A character vocabulary: one token per character, multi-byte characters joined by merges.
        var chars = TokenizerStore.Create("char", "abc déf\n!😀");
        var config = new ModelConfig { Architecture = "llama", VocabSize = chars.VocabSize, BlockSize = 32, NLayer = 1, NHead = 2, NEmbd = 32, IntermediateSize = 64, Bias = false };
        using var model = CausalLanguageModel.Create(config);
        Checkpoint.Save(temp.File("char-model"), model, chars);
        GgufExport.Write(temp.File("char-model"), temp.File("char.gguf"), GgmlType.F32);
        using var charReference = new LlamaCppModel(temp.File("char.gguf"), 32, 2);
        const string sample = "bad féé!\nfab😀";
        Assert.Equal(chars.Encode(sample), charReference.Tokenize(sample));

        // The same model through a Hugging Face folder, whose tokenizer.json lists the pieces of
        // the multi-byte characters past the model's tokens: the GGUF has the model's tokens only.
        HuggingFace.Export(temp.File("char-model"), temp.File("char-hf"));
        HuggingFace.Import(temp.File("char-hf"), temp.File("char-imported"));
        GgufExport.Write(temp.File("char-imported"), temp.File("char-imported.gguf"), GgmlType.F32);
        Assert.Equal(chars.VocabSize, ((object[])GgufFile.Read(temp.File("char-imported.gguf")).Metadata["tokenizer.ggml.tokens"]).Length);
        using var importedReference = new LlamaCppModel(temp.File("char-imported.gguf"), 32, 2);
        Assert.Equal(chars.Encode(sample), importedReference.Tokenize(sample));
    }

    [Fact]
    public void A_truncated_file_is_refused_clearly()
    {
        using var temp = new TempDirectory();
        using var model = ParityTests.RandomModel(ParityTests.Config("llama-gqa-tied") with { NLayer = 1 });
        GgufExport.Write(model, Gpt2Tokenizer.Instance, null, temp.File("m.gguf"), GgmlType.F32);
        var bytes = File.ReadAllBytes(temp.File("m.gguf"));
        File.WriteAllBytes(temp.File("cut.gguf"), bytes[..(bytes.Length / 2)]);
        Assert.Contains("is not a valid GGUF file: file is truncated", Assert.Throws<StratusUserException>(() => GgufFile.Read(temp.File("cut.gguf"))).Message);
        File.WriteAllBytes(temp.File("header.gguf"), bytes[..100]);
        Assert.Contains("truncated inside its header", Assert.Throws<StratusUserException>(() => GgufFile.Read(temp.File("header.gguf"))).Message);
        Assert.Throws<StratusUserException>(() => new LlamaCppModel(temp.File("cut.gguf"), 64, 2));
    }

    /// <summary>A GGUF file of <paramref name="keys"/> key/values and <paramref name="tensors"/>
    /// tensor infos that <paramref name="write"/> writes, then 64 bytes of data.</summary>
    static string HandMade(TempDirectory temp, ulong keys, ulong tensors, Action<BinaryWriter> write)
    {
        var path = temp.File($"{Guid.NewGuid():N}.gguf");
        using (var w = new BinaryWriter(File.Create(path)))
        {
            w.Write(GgufWriter.Magic);
            w.Write(3u);
            w.Write(tensors);
            w.Write(keys);
            write(w);
            w.Write(new byte[64]);
        }
        return path;
    }

    static void Text(BinaryWriter w, string text)
    {
        w.Write((ulong)text.Length);
        w.Write(System.Text.Encoding.UTF8.GetBytes(text));
    }

    [Fact]
    public void A_hand_made_header_is_refused_clearly_not_thrown_on()
    {
        // Each was an exception of .NET's (divide by zero, an argument out of range, an array too
        // large for memory) or, nested, a stack overflow that kills the process.
        using var temp = new TempDirectory();
        string Refusal(ulong keys, ulong tensors, Action<BinaryWriter> write)
        {
            var path = HandMade(temp, keys, tensors, write);
            var message = Assert.Throws<StratusUserException>(() => GgufFile.Read(path)).Message;
            Assert.StartsWith($"{path} is not a valid GGUF file: ", message);
            return message;
        }
        void Key(BinaryWriter w, string key, uint type) { Text(w, key); w.Write(type); }
        void Tensor(BinaryWriter w, uint dims, uint type)
        {
            Text(w, "w");
            w.Write(dims);
            for (var d = 0; d < Math.Min(dims, 4u); d++) w.Write(4UL);
            w.Write(type);
            w.Write(0UL);
        }

        Assert.EndsWith("unknown GGUF value type 99", Refusal(1, 0, w => Key(w, "x", 99)));
        Assert.EndsWith("general.alignment 0 is not a power of two (a uint32)", Refusal(1, 0, w => { Key(w, "general.alignment", 4); w.Write(0u); }));
        Assert.EndsWith("general.alignment x is not a power of two (a uint32)", Refusal(1, 0, w => { Key(w, "general.alignment", 8); Text(w, "x"); }));
        Assert.EndsWith("tensor w has 4294967295 dimensions (at most 4)", Refusal(0, 1, w => Tensor(w, uint.MaxValue, 0)));
        Assert.EndsWith("tensor w has ggml type 99, which Stratus does not know (a newer llama.cpp's?)", Refusal(0, 1, w => Tensor(w, 1, 99)));
        // A row of 4 values is no whole block of q4_0's 32: its bytes would not divide into values.
        Assert.EndsWith("tensor w has rows of 4 values, not whole q4_0 blocks of 32", Refusal(0, 1, w => Tensor(w, 1, 2)));
        Assert.EndsWith("arrays nest deeper than 8", Refusal(1, 0, w =>
        {
            Key(w, "x", 9);
            for (var i = 0; i < 100_000; i++) { w.Write(9u); w.Write(1UL); }
        }));
        Assert.EndsWith("tensor w is too large to exist", Refusal(0, 1, w =>
        {
            Text(w, "w");
            w.Write(2u);
            w.Write(1UL << 40);
            w.Write(1UL << 40);
            w.Write(0u);
            w.Write(0UL);
        }));
    }
}
