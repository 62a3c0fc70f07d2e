// The Llama family (Llama 2/3, Mistral, TinyLlama, SmolLM, Qwen2): token embedding, pre-RMSNorm
// blocks of grouped-query attention with rotary position embeddings and a SwiGLU MLP, a final
// RMSNorm and an LM head that is tied to the embedding or not. Parameter names are Hugging
// Face's (model.layers.0.self_attn.q_proj.weight ...) so HF checkpoints map by name, and the
// rotary embedding uses HF's "rotate half" layout (llama.cpp's interleaved layout is reached by
// permuting q/k rows on GGUF export).
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

    public Llama(ModelConfig config) : base("llama", config)
    {
        model = new LlamaBackbone(config, Precision);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.NEmbd, config.VocabSize, hasBias: false);
        RegisterComponents();
        inverseFrequencies = InverseFrequencies(config);
        InitializeWeights();
        AttachAdapters();
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

    protected override Tensor FinalHiddenStates(Tensor tokens, int length, IKvCache? cache)
    {
        // Each row's own positions: in a serving batch the rows continue different contexts.
        var positions = cache?.BeginStep(length) ?? arange(length, dtype: ScalarType.Int64, device: tokens.device).unsqueeze(0);
        var (cos, signedSin) = Rotary(positions);
        var x = model.embed_tokens.call(tokens);
        for (var i = 0; i < model.layers.Count; i++) x = model.layers[i].Forward(x, cos, signedSin, i, cache);
        cache?.EndStep();
        return model.norm.call(x);
    }

    protected override Tensor LmHeadWeight => lm_head?.weight ?? model.embed_tokens.weight!;

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

        public LlamaBackbone(ModelConfig c, MatmulPrecision precision) : base("model")
        {
            embed_tokens = nn.Embedding(c.VocabSize, c.NEmbd);
            layers = new ModuleList<LlamaLayer>(Enumerable.Range(0, c.NLayer).Select(_ => new LlamaLayer(c, precision)).ToArray());
            norm = new RmsNorm(c.NEmbd, c.RmsNormEps);
            RegisterComponents();
        }
    }

    sealed class LlamaLayer : nn.Module
    {
        public readonly RmsNorm input_layernorm, post_attention_layernorm;
        public readonly LlamaAttention self_attn;
        public readonly LlamaMlp mlp;
        readonly Dropout residualDropout;

        public LlamaLayer(ModelConfig c, MatmulPrecision precision) : base("layer")
        {
            input_layernorm = new RmsNorm(c.NEmbd, c.RmsNormEps);
            self_attn = new LlamaAttention(c, precision);
            post_attention_layernorm = new RmsNorm(c.NEmbd, c.RmsNormEps);
            mlp = new LlamaMlp(c, precision);
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

        public LlamaAttention(ModelConfig c, MatmulPrecision precision) : base("self_attn")
        {
            heads = c.NHead;
            kvHeads = c.KvHeads;
            headDim = c.HeadDim;
            q_proj = nn.Linear(c.NEmbd, heads * headDim, hasBias: c.AttentionBias);
            k_proj = nn.Linear(c.NEmbd, kvHeads * headDim, hasBias: c.AttentionBias);
            v_proj = nn.Linear(c.NEmbd, kvHeads * headDim, hasBias: c.AttentionBias);
            o_proj = nn.Linear(heads * headDim, c.NEmbd, hasBias: false);
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
            Tensor y;
            if (cache is null)
            {
                y = precision.CausalAttention(q, k, v, p);
            }
            else
            {
                y = cache.Attend(layer, q, k, v);
            }
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

        public LlamaMlp(ModelConfig c, MatmulPrecision precision) : base("mlp")
        {
            gate_proj = nn.Linear(c.NEmbd, c.MlpWidth, hasBias: false);
            up_proj = nn.Linear(c.NEmbd, c.MlpWidth, hasBias: false);
            down_proj = nn.Linear(c.MlpWidth, c.NEmbd, hasBias: false);
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

    public RmsNorm(long size, double eps) : base("rms_norm")
    {
        weight = new Parameter(ones(size));
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
