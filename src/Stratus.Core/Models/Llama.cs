// The Llama family (Llama 2/3, Mistral, TinyLlama, SmolLM, Qwen2): token embedding, pre-RMSNorm
// blocks of grouped-query attention with rotary position embeddings and a SwiGLU MLP, a final
// RMSNorm and an LM head that is tied to the embedding or not. Parameter names are Hugging
// Face's (model.layers.0.self_attn.q_proj.weight ...) so HF checkpoints map by name, and the
// rotary embedding uses HF's "rotate half" layout (llama.cpp's interleaved layout is reached by
// permuting q/k rows on GGUF export).
using System.Runtime.CompilerServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Stratus.Models;

public sealed class Llama : CausalLanguageModel
{
    readonly LlamaBackbone model;
    readonly Linear? lm_head;
    // Rotary frequencies are a function of the config, not learned: kept as plain numbers so
    // they stay out of the state dict and follow the input's device.
    readonly float[] inverseFrequencies;

    public Llama(ModelConfig config, Device? device = null, bool initialize = true) : base("llama", config)
    {
        var make = new LayerFactory(device, initialize);
        model = new LlamaBackbone(config, Precision, make);
        if (!config.TieWordEmbeddings) lm_head = make.Linear(config.NEmbd, config.VocabSize, bias: false);
        RegisterComponents();
        inverseFrequencies = InverseFrequencies(config);
        if (make.Initializes) InitializeWeights();
        AttachAdapters(make);
    }

    /// <summary>theta^(-2i/d) for i &lt; d/2, divided by Llama 3's scaling divisors when set.</summary>
    public static float[] InverseFrequencies(ModelConfig config)
    {
        var dim = config.HeadDim;
        var divisors = config.RopeScaling?.FrequencyDivisors(config.RopeTheta, dim);
        var result = new float[dim / 2];
        for (var i = 0; i < result.Length; i++)
            result[i] = (float)(1.0 / Math.Pow(config.RopeTheta, 2.0 * i / dim) / (divisors?[i] ?? 1.0));
        return result;
    }

    protected override Tensor FinalHiddenStates(Tensor tokens, Tensor positions, IKvCache? cache)
    {
        // Each row's own positions: in a serving batch the rows continue different contexts.
        var (cos, signedSin) = Rotary(positions);
        var x = model.embed_tokens.call(tokens);
        for (var i = 0; i < model.layers.Count; i++) x = model.layers[i].Forward(x, cos, signedSin, i, cache);
        return model.norm.call(x);
    }

    protected override DecodeStep NewDecodeStep() => new LlamaDecodeStep(this);

    /// <summary>The layers above for one new token per row, in managed code (see DecodeStep).</summary>
    sealed unsafe class LlamaDecodeStep(Llama llama) : DecodeStep(llama.Config,
        3 * llama.Config.NEmbd + 2 * llama.Config.KvHeads * llama.Config.HeadDim + 2 * llama.Config.MlpWidth + llama.Config.HeadDim)
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        protected override void Layers(Rows rows, ReadOnlySpan<int> ids, ReadOnlySpan<int> positions, IKvCache cache, OneTokenAttention step,
            DecodeKernel kernel, List<Tensor> temporaries, float* logits)
        {
            var (config, model) = (llama.Config, llama.model);
            var (n, c, heads, kvHeads, dim, mlpWidth, eps) = (rows.Count, rows.Width, config.NHead, config.KvHeads, config.HeadDim, config.MlpWidth, config.RmsNormEps);
            var kvWidth = kvHeads * dim;
            // Scratch per row: normed input or a layer's output (c), q (c), k and v (kvWidth each),
            // attention (c), gate and up (mlpWidth each), the rotation's cos and sin (dim / 2 each).
            var h = rows.Free;
            var q = h + n * c;
            var k = q + n * c;
            var v = k + n * kvWidth;
            var attention = v + n * kvWidth;
            var gate = attention + n * c;
            var up = gate + n * mlpWidth;
            var rotation = up + n * mlpWidth;
            var embedding = Data(model.embed_tokens.weight!);
            for (var r = 0; r < n; r++)
            {
                new ReadOnlySpan<float>(embedding + (long)ids[r] * c, c).CopyTo(rows.Row(rows.X, r, c));
                // As Rotary: the angle position * frequency in fp32, then its cos and sin.
                var cos = rotation + r * dim;
                var sin = cos + dim / 2;
                for (var i = 0; i < dim / 2; i++)
                {
                    var angle = positions[r] * llama.inverseFrequencies[i];
                    (cos[i], sin[i]) = (MathF.Cos(angle), MathF.Sin(angle));
                }
            }
            for (var i = 0; i < model.layers.Count; i++)
            {
                var layer = model.layers[i];
                var (attn, mlp) = (layer.self_attn, layer.mlp);
                RmsNorm(rows, rows.X, h, layer.input_layernorm.weight, eps);
                kernel.Multiply(h, n, c, [new(attn.q_proj.weight!, attn.q_proj.bias, q), new(attn.k_proj.weight!, attn.k_proj.bias, k), new(attn.v_proj.weight!, attn.v_proj.bias, v)], temporaries);
                for (var r = 0; r < n; r++)
                {
                    var cos = rotation + r * dim;
                    var sin = cos + dim / 2;
                    for (var head = 0; head < heads; head++) Rotate(q + r * c + head * dim, cos, sin, dim);
                    for (var head = 0; head < kvHeads; head++) Rotate(k + r * kvWidth + head * dim, cos, sin, dim);
                }
                Attention(cache, step, i, q, c, k, v, kvWidth, attention, heads, dim);
                kernel.Multiply(attention, n, c, [new(attn.o_proj.weight!, null, h)], temporaries);
                AddResidual(rows, h);
                RmsNorm(rows, rows.X, h, layer.post_attention_layernorm.weight, eps);
                kernel.Multiply(h, n, c, [new(mlp.gate_proj.weight!, null, gate), new(mlp.up_proj.weight!, null, up)], temporaries);
                SwiGlu(gate, up, n * mlpWidth);
                kernel.Multiply(gate, n, mlpWidth, [new(mlp.down_proj.weight!, null, h)], temporaries);
                AddResidual(rows, h);
            }
            RmsNorm(rows, rows.X, h, model.norm.weight, eps);
            kernel.Multiply(h, n, c, [new(llama.LmHeadWeight, null, logits)], temporaries);
        }

        /// <summary>One head rotated in place, Hugging Face's layout: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
        /// over its two halves.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        static void Rotate(float* x, float* cos, float* sin, int dim)
        {
            var half = dim / 2;
            for (var i = 0; i < half; i++)
            {
                var (x1, x2) = (x[i], x[i + half]);
                x[i] = x1 * cos[i] - x2 * sin[i];
                x[i + half] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }

    protected override Tensor LmHeadWeight => lm_head?.weight ?? model.embed_tokens.weight!;

    protected override Linear? LmHead => lm_head;

    /// <summary>cos of position * frequency for positions [B, T], as [B, 1, T, head_dim] (one per
    /// row, the same for every head), each half repeated (HF layout), and the sin likewise with its
    /// first half negated (see <see cref="LlamaAttention.Rotate"/>).</summary>
    (Tensor Cos, Tensor SignedSin) Rotary(Tensor positions)
    {
        var frequencies = tensor(inverseFrequencies, device: positions.device);
        var angles = (positions.to(ScalarType.Float32).unsqueeze(-1) * frequencies).unsqueeze(1);
        var sin = angles.sin();
        return (cat([angles, angles], -1).cos(), cat([-sin, sin], -1));
    }

    public override long ParameterCount(bool nonEmbedding = true)
    {
        var total = parameters().Sum(p => p.numel());
        // An untied embedding is a lookup (no multiply-adds); a tied one is also the LM head.
        return nonEmbedding && lm_head is not null ? total - model.embed_tokens.weight!.numel() : total;
    }

    void InitializeWeights()
    {
        using var noGrad = no_grad();
        var residualStd = 0.02 / Math.Sqrt(2.0 * Config.NLayer);
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith(".bias")) nn.init.zeros_(parameter);
            else if (name.EndsWith("norm.weight")) nn.init.ones_(parameter);
            else if (name.EndsWith("o_proj.weight") || name.EndsWith("down_proj.weight")) nn.init.normal_(parameter, 0, residualStd);
            else nn.init.normal_(parameter, 0, 0.02);
        }
    }

    sealed class LlamaBackbone : nn.Module
    {
        public readonly Embedding embed_tokens;
        public readonly ModuleList<LlamaLayer> layers;
        public readonly RmsNorm norm;

        public LlamaBackbone(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("model")
        {
            embed_tokens = make.Embedding(c.VocabSize, c.NEmbd);
            layers = new ModuleList<LlamaLayer>(Enumerable.Range(0, c.NLayer).Select(_ => new LlamaLayer(c, precision, make)).ToArray());
            norm = new RmsNorm(c.NEmbd, c.RmsNormEps, make.Device);
            RegisterComponents();
        }
    }

    sealed class LlamaLayer : nn.Module
    {
        public readonly RmsNorm input_layernorm, post_attention_layernorm;
        public readonly LlamaAttention self_attn;
        public readonly LlamaMlp mlp;
        readonly Dropout residualDropout;

        public LlamaLayer(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("layer")
        {
            input_layernorm = new RmsNorm(c.NEmbd, c.RmsNormEps, make.Device);
            self_attn = new LlamaAttention(c, precision, make);
            post_attention_layernorm = new RmsNorm(c.NEmbd, c.RmsNormEps, make.Device);
            mlp = new LlamaMlp(c, precision, make);
            residualDropout = nn.Dropout(c.Dropout);
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, Tensor cos, Tensor signedSin, int layer, IKvCache? cache)
        {
            x = x + residualDropout.call(self_attn.Forward(input_layernorm.call(x), cos, signedSin, layer, cache));
            return x + residualDropout.call(mlp.Forward(post_attention_layernorm.call(x)));
        }
    }

    sealed class LlamaAttention : nn.Module
    {
        public readonly Linear q_proj, k_proj, v_proj, o_proj;
        readonly MatmulPrecision precision;
        readonly int heads, kvHeads, headDim;
        readonly double dropout;

        public LlamaAttention(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("self_attn")
        {
            heads = c.NHead;
            kvHeads = c.KvHeads;
            headDim = c.HeadDim;
            q_proj = make.Linear(c.NEmbd, heads * headDim, c.AttentionBias);
            k_proj = make.Linear(c.NEmbd, kvHeads * headDim, c.AttentionBias);
            v_proj = make.Linear(c.NEmbd, kvHeads * headDim, c.AttentionBias);
            o_proj = make.Linear(heads * headDim, c.NEmbd, bias: false);
            this.precision = precision;
            dropout = c.Dropout;
            RegisterComponents();
        }

        public Tensor Forward(Tensor x, Tensor cos, Tensor signedSin, int layer, IKvCache? cache)
        {
            var (b, t) = ((int)x.shape[0], (int)x.shape[1]);
            var qkv = precision.Linear(x, q_proj, k_proj, v_proj);
            var q = Rotate(qkv[0].view(b, t, heads, headDim).transpose(1, 2), cos, signedSin);
            var k = Rotate(qkv[1].view(b, t, kvHeads, headDim).transpose(1, 2), cos, signedSin);
            var v = qkv[2].view(b, t, kvHeads, headDim).transpose(1, 2);
            var p = training ? dropout : 0.0;
            var y = cache is null ? precision.CausalAttention(q, k, v, p) : cache.Attend(layer, q, k, v);
            y = y.transpose(1, 2).reshape(b, t, heads * headDim);
            return precision.Linear(y, o_proj).to(x.dtype);
        }

        /// <summary>x * cos + rotate_half(x) * sin, where rotate_half(x) = [-x2, x1]: computed as
        /// [x2, x1] (a roll by half a head) times [-sin, sin], the same products in fewer libtorch
        /// calls (each costs microseconds when decoding one token).</summary>
        static Tensor Rotate(Tensor x, Tensor cos, Tensor signedSin) =>
            x * cos.to(x.dtype) + x.roll(x.shape[^1] / 2, -1) * signedSin.to(x.dtype);
    }

    sealed class LlamaMlp : nn.Module
    {
        public readonly Linear gate_proj, up_proj, down_proj;
        readonly MatmulPrecision precision;

        public LlamaMlp(ModelConfig c, MatmulPrecision precision, LayerFactory make) : base("mlp")
        {
            gate_proj = make.Linear(c.NEmbd, c.MlpWidth, bias: false);
            up_proj = make.Linear(c.NEmbd, c.MlpWidth, bias: false);
            down_proj = make.Linear(c.MlpWidth, c.NEmbd, bias: false);
            this.precision = precision;
            RegisterComponents();
        }

        public Tensor Forward(Tensor x)
        {
            var gateUp = precision.Linear(x, gate_proj, up_proj);
            return precision.Linear(F.silu(gateUp[0]) * gateUp[1], down_proj).to(x.dtype);
        }
    }
}

/// <summary>Root-mean-square LayerNorm without centring or bias, computed in fp32 (as Hugging
/// Face's LlamaRMSNorm) whatever the activations' dtype.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    readonly double eps;

    public RmsNorm(long size, double eps, Device? device) : base("rms_norm")
    {
        weight = new Parameter(ones(size, device: device));
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var x32 = x.to(ScalarType.Float32);
        var normalized = x32 * (x32.pow(2).mean([-1], keepdim: true) + eps).rsqrt();
        return weight * normalized.to(x.dtype);
    }
}
