// Data-parallel gradient reduction, as PyTorch DDP does it: parameters are grouped into buckets
// of about 25 MB, each bucket's gradients live in one flat buffer, and one all-reduce per bucket
// combines them across ranks (the trainer sums them: see DataParallelAdamW.ReduceGradients).
//
// Each parameter's .grad is set to a view into its bucket's buffer (TorchSharp 0.107 has a public
// Tensor.grad setter). libtorch's AccumulateGrad adds into an existing .grad in place, so
// backward writes straight into the buckets and averaging needs no copy in or out.
//
// Overlap with backward: TorchSharp 0.107 exposes no tensor hooks (no register_hook, no
// post-accumulate-grad hook; Module has only forward hooks), so a bucket cannot be started the
// moment its last gradient is ready. Instead AllReduceGradients starts every bucket's
// non-blocking all-reduce right after backward, in reverse parameter order (the order backward
// finishes them), and then waits for all of them.
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Stratus.Distributed;

public sealed class GradientBuckets : IDisposable
{
    /// <summary>PyTorch DDP's default bucket_cap_mb.</summary>
    public const long DefaultBucketBytes = 25L * 1024 * 1024;

    private readonly ICommunicator _communicator;
    private readonly Bucket[] _buckets;

    /// <summary>
    /// Groups the parameters that require gradients into buckets and points their .grad into them.
    /// Parameters are first broadcast from rank 0 so that every rank starts from the same weights.
    /// </summary>
    public GradientBuckets(IEnumerable<Parameter> parameters, ICommunicator communicator, long bucketBytes = DefaultBucketBytes)
    {
        if (bucketBytes <= 0)
            throw new StratusUserException($"Gradient bucket size must be positive, got {bucketBytes} bytes.");
        _communicator = communicator;
        var trainable = parameters.Where(p => p.requires_grad).ToArray();
        foreach (var parameter in trainable)
        {
            if (!parameter.is_floating_point())
                throw new StratusUserException($"Parameter of dtype {parameter.dtype} cannot have gradients to average.");
            communicator.Broadcast(parameter, root: 0);
        }
        _buckets = Plan(trainable, bucketBytes).Select(members => new Bucket(members)).ToArray();
    }

    /// <summary>Zeroes all gradients in place (one fill per bucket; keeps .grad pointing into the buckets).</summary>
    public void ZeroGradients()
    {
        foreach (var bucket in _buckets)
            bucket.Flat.zero_();
    }

    /// <summary>
    /// Reduces every parameter's gradient across ranks with <paramref name="op"/>. Call after
    /// backward on every rank.
    /// </summary>
    public void AllReduceGradients(ReduceOp op)
    {
        var pending = new IPendingCollective[_buckets.Length];
        for (var i = 0; i < _buckets.Length; i++)
        {
            _buckets[i].Reattach();
            pending[i] = _communicator.StartAllReduce(_buckets[i].Flat, op);
        }
        foreach (var operation in pending)
            operation.Wait();
    }

    public void Dispose()
    {
        foreach (var bucket in _buckets)
            bucket.Dispose();
    }

    // Reverse parameter order (backward produces the last layers' gradients first), cutting a new
    // bucket when the dtype changes or the size limit would be passed; a parameter larger than
    // the limit gets a bucket of its own.
    private static List<List<Parameter>> Plan(Parameter[] parameters, long bucketBytes)
    {
        var buckets = new List<List<Parameter>>();
        var current = new List<Parameter>();
        long currentBytes = 0;
        for (var i = parameters.Length - 1; i >= 0; i--)
        {
            var parameter = parameters[i];
            var bytes = parameter.numel() * parameter.element_size();
            if (current.Count > 0 && (current[0].dtype != parameter.dtype || currentBytes + bytes > bucketBytes))
            {
                buckets.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(parameter);
            currentBytes += bytes;
        }
        if (current.Count > 0)
            buckets.Add(current);
        return buckets;
    }

    private sealed class Bucket : IDisposable
    {
        private readonly Parameter[] _parameters;
        private readonly Tensor[] _views;
        private readonly nint[] _addresses;

        public Bucket(List<Parameter> parameters)
        {
            _parameters = [.. parameters];
            Flat = zeros(parameters.Sum(p => p.numel()), dtype: parameters[0].dtype);
            _views = new Tensor[_parameters.Length];
            _addresses = new nint[_parameters.Length];
            long offset = 0;
            for (var i = 0; i < _parameters.Length; i++)
            {
                var parameter = _parameters[i];
                _views[i] = Flat.narrow(0, offset, parameter.numel()).view(parameter.shape);
                _addresses[i] = TensorBuffer.Of(_views[i], "GradientBuckets").Address;
                using (var existing = parameter.grad)
                {
                    if (existing is not null)
                        _views[i].copy_(existing);
                }
                parameter.grad = _views[i];
                offset += parameter.numel();
            }
        }

        public Tensor Flat { get; }

        // Someone may have replaced a .grad since the last step (Module.zero_grad with
        // set_to_none, or backward on a parameter whose grad was cleared): bring such a gradient
        // back into the bucket so that it is reduced, and point .grad at the bucket again.
        public void Reattach()
        {
            for (var i = 0; i < _parameters.Length; i++)
            {
                using var grad = _parameters[i].grad;
                if (grad is not null && grad.is_contiguous() && grad.dtype == Flat.dtype && TensorBuffer.Of(grad, "GradientBuckets").Address == _addresses[i])
                    continue;
                if (grad is null)
                    _views[i].zero_();
                else
                    _views[i].copy_(grad);
                _parameters[i].grad = _views[i];
            }
        }

        public void Dispose()
        {
            foreach (var view in _views)
                view.Dispose();
            Flat.Dispose();
        }
    }
}
