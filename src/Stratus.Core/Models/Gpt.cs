// GPT-2: token and position embeddings, pre-LayerNorm blocks of causal self-attention and a
// GELU MLP, a final LayerNorm and an LM head tied to the token embedding. Parameter names
// follow nanoGPT / Hugging Face (transformer.h.0.attn.c_attn.weight ...) so checkpoints map by
// name; Linear weights are [out, in] as in nn.Linear (HF's Conv1D stores them transposed).
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Stratus.Models;

public sealed class Gpt : CausalLanguageModel
{
    readonly GptTransformer transformer;

    public Gpt(ModelConfig config, Device? device = null, bool initialize = true) : base("gpt", config)
    {
        var make = new LayerFactory(device, initialize);
        transformer = new GptTransformer(config, Precision, make);
        RegisterComponents();
        if (make.Initializes) InitializeWeights();
        AttachAdapters(make);
    }

    protected override Tensor FinalHiddenStates(Tensor tokens, Tensor positions, IKvCache? cache)
    {
        var x = transformer.drop.call(transformer.wte.call(tokens) + transformer.wpe.call(positions));
        for (var i = 0; i < transformer.h.Count; i++) x = transformer.h[i].Forward(x, i, cache);
        return transformer.ln_f.call(x);
    }

    protected override DecodeStep NewDecodeStep() => new GptDecodeStep(this);

    /// <summary>The layers above for one new token per row, in managed code (see DecodeStep).</summary>
    sealed unsafe class GptDecodeStep(Gpt model) : DecodeStep(model.Config, 5 * model.Config.NEmbd + model.Config.MlpWidth)
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void Layers(Rows rows, ReadOnlySpan<int> ids, ReadOnlySpan<int> positions, IKvCache cache, OneTokenAttention step,
            DecodeKernel kernel, List<Tensor> temporaries, float* logits)
        {
            var (config, t) = (model.Config, model.transformer);
            var (n, c, mlpWidth, eps) = (rows.Count, rows.Width, config.MlpWidth, config.LayerNormEps);
            // Scratch per row: normed input or a layer's output (c), q|k|v (3c), attention (c), MLP (mlpWidth).
            var h = rows.Free;
            var qkv = h + n * c;
            var attention = qkv + n * 3 * c;
            var mlp = attention + n * c;
            var wte = Data(t.wte.weight!);
            var wpe = Data(t.wpe.weight!);
            for (var r = 0; r < n; r++)
                TensorPrimitives.Add(new ReadOnlySpan<float>(wte + (long)ids[r] * c, c), new ReadOnlySpan<float>(wpe + (long)positions[r] * c, c), rows.Row(rows.X, r, c));
            for (var i = 0; i < t.h.Count; i++)
            {
                var block = t.h[i];
                LayerNorm(rows, rows.X, h, block.ln_1.weight!, block.ln_1.bias, eps);
                kernel.Multiply(h, n, c, [new(block.attn.c_attn.weight!, block.attn.c_attn.bias, qkv)], temporaries);
                Attention(cache, step, i, qkv, 3 * c, qkv + c, qkv + 2 * c, 3 * c, attention, config.NHead, config.HeadDim);
                kernel.Multiply(attention, n, c, [new(block.attn.c_proj.weight!, block.attn.c_proj.bias, h)], temporaries);
                AddResidual(rows, h);
                LayerNorm(rows, rows.X, h, block.ln_2.weight!, block.ln_2.bias, eps);
                kernel.Multiply(h, n, c, [new(block.mlp.c_fc.weight!, block.mlp.c_fc.bias, mlp)], temporaries);
                Gelu(mlp, n * mlpWidth, tanhApproximation: block.mlp.approximate == GELU.Approximate.tanh);
                kernel.Multiply(mlp, n, mlpWidth, [new(block.mlp.c_proj.weight!, block.mlp.c_proj.bias, h)], temporaries);
                AddResidual(rows, h);
            }
            LayerNorm(rows, rows.X, h, t.ln_f.weight!, t.ln_f.bias, eps);
            kernel.Multiply(h, n, c, [new(t.wte.weight!, null, logits)], temporaries);
        }
    }

    // Tied LM head: the token embedding matrix projects back onto the vocabulary.
    protected override Tensor LmHeadWeight => transformer.wte.weight!;

    protected override Linear? LmHead => null;

    public override long ParameterCount(bool nonEmbedding = true)
    {
        var total = parameters().Sum(p => p.numel());
        return nonEmbedding ? total - transformer.wpe.weight!.numel() : total;
    }

    void InitializeWeights()
    {
        using var noGrad = no_grad();
        var residualStd = 0.02 / Math.Sqrt(2.0 * Config.NLayer);
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith(".bias")) nn.init.zeros_(parameter);
            else if (name.Contains(".ln_")) nn.init.ones_(parameter); // ln_1, ln_2 and transformer.ln_f
            else if (name.EndsWith("c_proj.weight")) nn.init.normal_(parameter, 0, residualStd);
            else nn.init.normal_(parameter, 0, 0.02);
        }
    }

    sealed class GptTransformer : nn.Module
    {
        public readonly Embedding wte, wpe;
        public readonly Dropout drop;
        public readonly ModuleList<GptBlock> h;
        public readonly LayerNorm ln_f;

        public GptTransformer(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("transformer")
        {
            wte = make.Embedding(c.VocabSize, c.NEmbd);
            wpe = make.Embedding(c.BlockSize, c.NEmbd);
            drop = nn.Dropout(c.Dropout);
            h = new ModuleList<GptBlock>(Enumerable.Range(0, c.NLayer).Select(_ => new GptBlock(c, precision, make)).ToArray());
            ln_f = nn.LayerNorm(c.NEmbd, c.LayerNormEps, elementwise_affine: true, bias: c.Bias, device: make.Device);
            RegisterComponents();
        }
    }

    sealed class GptBlock : nn.Module
    {
        public readonly LayerNorm ln_1, ln_2;
        public readonly GptAttention attn;
        public readonly GptMlp mlp;

        public GptBlock(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("block")
        {
            ln_1 = nn.LayerNorm(c.NEmbd, c.LayerNormEps, elementwise_affine: true, bias: c.Bias, device: make.Device);
            attn = new GptAttention(c, precision, make);
            ln_2 = nn.LayerNorm(c.NEmbd, c.LayerNormEps, elementwise_affine: true, bias: c.Bias, device: make.Device);
            mlp = new GptMlp(c, precision, make);
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, int layer, IKvCache? cache)
        {
            x = x + attn.Forward(ln_1.call(x), layer, cache);
            return x + mlp.Forward(ln_2.call(x));
        }
    }

    sealed class GptAttention : nn.Module
    {
        public readonly Linear c_attn, c_proj;
        readonly Dropout resid_dropout;
        readonly MatmulPrecision precision;
        readonly int heads;
        readonly double dropout;

        public GptAttention(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("attn")
        {
            c_attn = make.Linear(c.NEmbd, 3 * c.NEmbd, c.Bias);
            c_proj = make.Linear(c.NEmbd, c.NEmbd, c.Bias);
            resid_dropout = nn.Dropout(c.Dropout);
            this.precision = precision;
            heads = c.NHead;
            dropout = c.Dropout;
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, int layer, IKvCache? cache)
        {
            var (b, t, c) = ((int)x.shape[0], (int)x.shape[1], (int)x.shape[2]);
            // unbind rather than indexing: its backward stacks the three gradients in one copy,
            // where each index's backward fills a zeroed tensor the size of all three and the three
            // are then summed (CPU config, interleaved steps: 34.1-34.7 vs 34.7-35.5 ms/step).
            var qkv = precision.Linear(x, c_attn).view(b, t, 3, heads, c / heads).unbind(2);
            Tensor q = qkv[0].transpose(1, 2), k = qkv[1].transpose(1, 2), v = qkv[2].transpose(1, 2);
            var p = training ? dropout : 0.0;
            var y = cache is null ? precision.CausalAttention(q, k, v, p) : cache.Attend(layer, q, k, v);
            y = y.transpose(1, 2).reshape(b, t, c);
            return resid_dropout.call(precision.Linear(y, c_proj).to(x.dtype));
        }
    }

    sealed class GptMlp : nn.Module
    {
        public readonly Linear c_fc, c_proj;
        readonly Dropout dropout;
        readonly MatmulPrecision precision;

        public GptMlp(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("mlp")
        {
            c_fc = make.Linear(c.NEmbd, c.MlpWidth, c.Bias);
            c_proj = make.Linear(c.MlpWidth, c.NEmbd, c.Bias);
            dropout = nn.Dropout(c.Dropout);
            this.precision = precision;
            approximate = c.HiddenAct == "gelu_new" ? GELU.Approximate.tanh : GELU.Approximate.none;
            RegisterComponents();
        }

        public readonly GELU.Approximate approximate;

        public Tensor Forward(Tensor x) =>
            dropout.call(precision.Linear(F.gelu(precision.Linear(x, c_fc), approximate), c_proj).to(x.dtype));
    }
}
