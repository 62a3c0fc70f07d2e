// Matrix-vector products for decoding: y = x W^T + b for 1-8 rows of x. Single-stream decode
// is bound by reading every weight once per token, and libtorch serves it poorly here: its
// fp32 x @ W^T for one row runs at about half the memory bandwidth, and its bf16 GEMM is no
// faster than fp32, so bf16's halved bytes never became speed. These kernels stream each
// weight row once with wide vector loads and independent accumulators, split the outputs over
// threads (the kernel's own, kept between calls), and read W either in place (fp32) or from a
// bf16 copy widened to fp32 in registers (bf16 is the top half of an fp32, so widening is a
// 16-bit shift). Sums are fp32 throughout.
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Models;

/// <summary>Which weights small-batch inference matmuls read.</summary>
public enum DecodeWeights
{
    /// <summary>libtorch's own matmul (the training path).</summary>
    Torch,
    /// <summary>The fp32 parameters, in place, through the decode kernel.</summary>
    Float32,
    /// <summary>bf16 copies of the parameters (made on first use) through the decode kernel.</summary>
    BFloat16,
}

/// <param name="threads">Threads that split a product's outputs (default: libtorch's count
/// when the kernel is made), so libtorch's own small ops can run on one thread meanwhile.</param>
public sealed unsafe class DecodeKernel(DecodeWeights weights, int? threads = null)
{
    readonly Crew crew = new(threads ?? torch.get_num_threads());

    /// <summary>Most input rows taken per pass over the weights; larger batches use libtorch,
    /// whose GEMM wins once enough rows share each weight read (served GPT-2-small shape here:
    /// the kernel +10% at 8 rows, -17% at 16).</summary>
    public const int MaxRows = 8;

    // Keyed by the weight's storage address: TorchSharp hands out a new wrapper object for some
    // parameters (Embedding.weight) on every access, so object identity would miss.
    readonly Dictionary<IntPtr, ushort[]> bf16Copies = [];

    public DecodeWeights Weights => weights;
    public int Threads => crew.Threads;

    public static bool Applies(Tensor x) =>
        !torch.is_grad_enabled() && x.device_type == DeviceType.CPU && x.numel() / x.shape[^1] <= MaxRows;

    /// <summary>x [..., in] times weight [out, in] transposed, plus bias: [..., out] fp32.</summary>
    public Tensor Apply(Tensor x, Tensor weight, Tensor? bias) => Apply(x, [(weight, bias)])[0];

    /// <summary>Several products of the same input in one pass (q, k and v; gate and up): their
    /// outputs are split over the threads together, so the threads meet once, not per matrix.</summary>
    public Tensor[] Apply(Tensor x, IReadOnlyList<(Tensor Weight, Tensor? Bias)> layers)
    {
        // Every libtorch call costs microseconds through TorchSharp, which on a small model is
        // about what the product itself costs: fp32, contiguous tensors (the usual case) are read
        // in place, and biases are added by the kernel's own threads.
        var temporaries = new List<Tensor>();
        try
        {
            var input = Float32Contiguous(x, temporaries);
            var shape = input.shape;
            var inputs = (int)shape[^1];
            var rows = (int)(input.numel() / inputs);
            var outputs = new Tensor[layers.Count];
            var products = new Product[layers.Count];
            for (var l = 0; l < layers.Count; l++)
            {
                shape[^1] = layers[l].Weight.shape[0];
                outputs[l] = empty(shape, ScalarType.Float32);
                products[l] = new Product(layers[l].Weight, layers[l].Bias, (float*)Address(outputs[l]));
            }
            Multiply((float*)Address(input), rows, inputs, products, temporaries);
            return outputs;
        }
        finally
        {
            foreach (var t in temporaries) t.Dispose();
        }
    }

    /// <summary>One product of <see cref="Multiply"/>: y = x weight^T + bias into Output, [rows, out].</summary>
    public readonly struct Product(Tensor weight, Tensor? bias, float* output)
    {
        public Tensor Weight { get; } = weight;
        public Tensor? Bias { get; } = bias;
        public float* Output { get; } = output;
    }

    /// <summary>The products of raw fp32 input rows (x: rows of <paramref name="inputs"/>, contiguous),
    /// each written to its own output; the entry of a whole decode step in managed code
    /// (DecodeStep). Weights and biases that are not fp32 and contiguous are copied into
    /// <paramref name="temporaries"/>, which the caller disposes.</summary>
    public void Multiply(float* xs, int rows, int inputs, ReadOnlySpan<Product> products, List<Tensor> temporaries)
    {
        // On the stack: a decode step multiplies a few times per layer, for every token.
        Span<Part> parts = stackalloc Part[products.Length];
        var total = 0;
        for (var l = 0; l < products.Length; l++)
        {
            var (weight, bias) = (products[l].Weight, products[l].Bias);
            if (weight.size(1) != inputs) throw new ArgumentException("fused products need weights with the same input size");
            var count = (int)weight.size(0);
            var w = weights == DecodeWeights.BFloat16
                ? (byte*)Unsafe.AsPointer(ref Bf16Copy(weight)[0]) // pinned: stable address
                : (byte*)Address(Float32Contiguous(weight, temporaries));
            var b = bias is null ? null : (float*)Address(Float32Contiguous(bias, temporaries));
            parts[l] = new Part(w, b, products[l].Output, count, total);
            total += count;
        }
        var job = new Job((Part*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(parts)), parts.Length, xs, rows, inputs, weights == DecodeWeights.BFloat16, total);
        var workers = (long)total * inputs < MinWeightsPerSplit ? 1 : Math.Max(1, Math.Min(Threads, total / 64));
        // The crew serves one call at a time: a second caller at once (two engines on one model)
        // computes alone, its core being busy with the first's anyway.
        if (workers == 1 || !crew.TryRun(job, workers)) Compute(job, 0, total);
    }

    /// <summary>A call's products, for the thread that runs part of it: the parts are on the
    /// caller's stack, which outlives the call's use of them because the caller waits for its
    /// helpers before it returns.</summary>
    readonly struct Job(Part* parts, int count, float* x, int rows, int inputs, bool bf16, int total)
    {
        public ReadOnlySpan<Part> Parts => new(parts, count);
        public float* X { get; } = x;
        public int Rows { get; } = rows;
        public int Inputs { get; } = inputs;
        public bool Bf16 { get; } = bf16;
        public int Total { get; } = total;
    }

    static void Compute(in Job job, int from, int to) => Compute(job.Parts, job.X, job.Rows, job.Inputs, job.Bf16, from, to);

    /// <summary>The kernel's helper threads, made on first use and kept between calls. A call's
    /// outputs are cut into slices that the caller and the helpers claim one at a time, so that
    /// a helper still asleep, or descheduled on a busy machine, delays nothing: the caller takes
    /// the slices nobody has claimed, and waits only for those being computed. A decode step
    /// splits some 50 products a token (GPT-2 124M), and the runtime has nothing that runs a
    /// parallel loop without allocating: Parallel.For makes its delegate, closure, options and
    /// tasks on every call (about 1.8 KB a call measured here), as do Parallel.Invoke and PLINQ.
    /// (A reused IThreadPoolWorkItem would not allocate, but the pool's threads are the
    /// server's, and a slice would wait behind its requests' work.) So a call is handed over
    /// through fields and a counter: a helper that has finished one spins a little for the next
    /// (the caller's work between two products is a few microseconds of norms and attention;
    /// waking a sleeping thread takes longer), then sleeps on a monitor, and ends after
    /// <see cref="IdleTimeout"/> without work, so that an idle kernel, or one nobody holds any
    /// more, leaves no thread behind.</summary>
    sealed class Crew(int threads)
    {
        static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(10);
        static readonly long SpinTicks = Stopwatch.Frequency / 20_000; // 50 us

        // Whether each helper's thread is alive (it ends when idle).
        readonly bool[] running = new bool[Math.Max(0, threads - 1)];
        // Guards the call's fields and the helpers' sleep: a helper reads a call whole, and none
        // sleeps through one.
        readonly object gate = new();
        readonly ManualResetEventSlim finished = new();
        int busy;
        // The call in progress and its number.
        Job job;
        int sliceSize, slices;
        uint call;
        // The call's number (high half) and its next slice to claim (low half): a helper that
        // read an earlier call claims nothing of this one, whose parts lie on another stack.
        long ticket;
        // Slices not computed yet.
        int remaining;
        Exception? failure;

        public int Threads => threads;

        /// <summary>Runs <paramref name="products"/> split <paramref name="workers"/> ways, this
        /// thread taking part; false, running nothing, when another call holds the crew.</summary>
        public bool TryRun(in Job products, int workers)
        {
            workers = Math.Min(workers, running.Length + 1);
            if (workers < 2 || Interlocked.CompareExchange(ref busy, 1, 0) != 0) return false;
            try
            {
                failure = null;
                remaining = workers;
                finished.Reset();
                uint number;
                lock (gate)
                {
                    (job, sliceSize, slices) = (products, (products.Total + workers - 1) / workers, workers);
                    for (var h = 0; h < workers - 1; h++)
                    {
                        if (running[h]) continue;
                        running[h] = true;
                        Start(h, call);
                    }
                    number = ++call;
                    Volatile.Write(ref ticket, (long)number << 32);
                    Monitor.PulseAll(gate);
                }
                Work(number, products, sliceSize, slices);
                // The helpers read this thread's stack until their slices are done. Spins first,
                // then sleeps: the slices are equal, so a helper's is usually done as soon.
                finished.Wait();
                if (failure is { } error) ExceptionDispatchInfo.Throw(error);
                return true;
            }
            finally
            {
                Volatile.Write(ref busy, 0);
            }
        }

        /// <summary>A method of its own: the closure is made where the variables it captures are
        /// declared, which in TryRun's loop would be at every call.</summary>
        void Start(int index, uint seen) =>
            new Thread(() => Help(index, seen)) { IsBackground = true, Name = "stratus-decode" }.Start();

        void Help(int index, uint seen)
        {
            while (Next(index, ref seen, out var products, out var size, out var count)) Work(seen, products, size, count);
        }

        /// <summary>Claims and computes call <paramref name="number"/>'s slices until none is left.
        /// Throws nothing: a slice that fails is counted as done and its error kept for the
        /// caller, who would otherwise wait for it forever.</summary>
        void Work(uint number, in Job products, int size, int count)
        {
            while (true)
            {
                var claimed = Volatile.Read(ref ticket);
                var slice = (int)(uint)claimed;
                if ((uint)(claimed >>> 32) != number || slice >= count) return;
                if (Interlocked.CompareExchange(ref ticket, claimed + 1, claimed) != claimed) continue;
                try
                {
                    var from = Math.Min(products.Total, slice * size);
                    Compute(products, from, Math.Min(products.Total, from + size));
                }
                catch (Exception e)
                {
                    failure = e;
                }
                if (Interlocked.Decrement(ref remaining) == 0) finished.Set();
            }
        }

        /// <summary>Waits for the call after <paramref name="seen"/> and reads it; false when none
        /// came within <see cref="IdleTimeout"/>, and the helper is to end.</summary>
        bool Next(int index, ref uint seen, out Job products, out int size, out int count)
        {
            var start = Stopwatch.GetTimestamp();
            var spinner = new SpinWait();
            while ((uint)(Volatile.Read(ref ticket) >>> 32) == seen && Stopwatch.GetTimestamp() - start < SpinTicks)
                spinner.SpinOnce(sleep1Threshold: -1);
            lock (gate)
            {
                while (call == seen)
                {
                    if (!Monitor.Wait(gate, IdleTimeout) && call == seen)
                    {
                        running[index] = false;
                        (products, size, count) = (default, 0, 0);
                        return false;
                    }
                }
                (seen, products, size, count) = (call, job, sliceSize, slices);
                return true;
            }
        }
    }

    /// <summary>One product's pointers and its outputs' place among all the products' outputs.</summary>
    readonly struct Part(byte* weight, float* bias, float* output, int outputs, int start)
    {
        public byte* Weight { get; } = weight;
        public float* Bias { get; } = bias;
        public float* Output { get; } = output;
        public int Outputs { get; } = outputs;
        public int Start { get; } = start;
    }

    /// <summary>The outputs [from, to) of the products, counted across all of them.</summary>
    static void Compute(ReadOnlySpan<Part> parts, float* x, int rows, int inputs, bool bf16, int from, int to)
    {
        foreach (var part in parts)
        {
            float* y = part.Output, bias = part.Bias;
            var (count, start) = (part.Outputs, part.Start);
            var (a, b) = (Math.Max(from, start) - start, Math.Min(to, start + count) - start);
            if (a >= b) continue;
            if (bf16) Rows<Bf16Weights>(part.Weight, x, y, rows, inputs, count, a, b);
            else Rows<F32Weights>(part.Weight, x, y, rows, inputs, count, a, b);
            if (bias is null) continue;
            for (var r = 0; r < rows; r++)
            {
                var yr = y + (long)r * count;
                for (var o = a; o < b; o++) yr[o] += bias[o];
            }
        }
    }

    /// <summary>t itself when it is fp32 and contiguous, else an fp32 contiguous copy (kept in
    /// <paramref name="temporaries"/> until the call ends).</summary>
    static Tensor Float32Contiguous(Tensor t, List<Tensor> temporaries)
    {
        if (t.dtype == ScalarType.Float32 && t.is_contiguous()) return t;
        var copy = t.detach().to(ScalarType.Float32).contiguous();
        temporaries.Add(copy);
        return copy;
    }

    ushort[] Bf16Copy(Tensor weight)
    {
        var key = Address(weight);
        lock (bf16Copies)
        {
            if (bf16Copies.TryGetValue(key, out var copy) && copy.Length == weight.numel()) return copy;
            using var bf16 = weight.detach().to(ScalarType.BFloat16).cpu().contiguous();
            copy = GC.AllocateUninitializedArray<ushort>((int)bf16.numel(), pinned: true);
            bf16.bytes.CopyTo(MemoryMarshal.AsBytes(copy.AsSpan()));
            return bf16Copies[key] = copy;
        }
    }

    /// <summary>The data of a contiguous CPU tensor, read in place: TorchSharp's `bytes` is a span
    /// over the tensor's own memory.</summary>
    internal static IntPtr Address(Tensor t) => (IntPtr)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    // Below this many weights (1 MB in fp32) a product runs on the calling thread: handing part of
    // it to another thread costs more than it saves. Measured here with the demo's 0.8M-parameter
    // model (its largest matrix 128 x 512), whole-step decode: 2,380-2,540 tok/s always split,
    // 4,140-4,330 with this threshold; GPT-2 124M's matrices are all above it.
    const long MinWeightsPerSplit = 1 << 18;

    /// <summary>How the row loops read a weight format, widened to fp32: 64 weights as four
    /// 512-bit vectors, 16 as two 256-bit ones, or one.</summary>
    interface IWeightFormat
    {
        static abstract int Bytes { get; }
        static abstract (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) Load64(byte* row, int i);
        static abstract (Vector256<float>, Vector256<float>) Load16(byte* row, int i);
        static abstract float At(byte* row, int i);
    }

    readonly struct F32Weights : IWeightFormat
    {
        public static int Bytes => sizeof(float);

        public static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) Load64(byte* row, int i)
        {
            var w = (float*)row + i;
            return (Vector512.Load(w), Vector512.Load(w + 16), Vector512.Load(w + 32), Vector512.Load(w + 48));
        }

        public static (Vector256<float>, Vector256<float>) Load16(byte* row, int i) => (Vector256.Load((float*)row + i), Vector256.Load((float*)row + i + 8));

        public static float At(byte* row, int i) => ((float*)row)[i];
    }

    readonly struct Bf16Weights : IWeightFormat
    {
        public static int Bytes => sizeof(ushort);

        public static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) Load64(byte* row, int i)
        {
            var w = (ushort*)row + i;
            var (l0, h0) = Vector512.Widen(Vector512.Load(w));
            var (l1, h1) = Vector512.Widen(Vector512.Load(w + 32));
            return (Vector512.ShiftLeft(l0, 16).AsSingle(), Vector512.ShiftLeft(h0, 16).AsSingle(), Vector512.ShiftLeft(l1, 16).AsSingle(), Vector512.ShiftLeft(h1, 16).AsSingle());
        }

        public static (Vector256<float>, Vector256<float>) Load16(byte* row, int i)
        {
            var (low, high) = Vector256.Widen(Vector256.Load((ushort*)row + i));
            return (Vector256.ShiftLeft(low, 16).AsSingle(), Vector256.ShiftLeft(high, 16).AsSingle());
        }

        // bf16 is the top half of an fp32.
        public static float At(byte* row, int i) => BitConverter.Int32BitsToSingle(((ushort*)row)[i] << 16);
    }

    // The row loops are compiled fully optimized from the start: under tiered compilation they
    // stayed in slower code (a 384 x 128 product took 33 us against 6.6 us optimized, measured
    // here), which made the kernel lose to libtorch on small models.
    // AVX-512, rows of a multiple of 64. Each weight row is read from memory once per call and
    // stays in L1 while groups of four input rows use it with sixteen register accumulators. Every
    // input row sums in the same order (four accumulators, then (a0 + a1) + (a2 + a3)) whether it
    // goes in a group or alone, so a row's result never depends on the other rows of its batch:
    // batched and single-stream decoding agree bit for bit.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows512<TWeights>(byte* w, float* x, float* y, int rows, int n, int outputs, int from, int to) where TWeights : IWeightFormat
    {
        var rowBytes = (long)n * TWeights.Bytes;
        for (var o = from; o < to; o++)
        {
            var row = w + o * rowBytes;
            var r = 0;
            for (; r + 4 <= rows; r += 4) Dot4<TWeights>(row, x + (long)r * n, n, y + (long)r * outputs + o, outputs);
            for (; r < rows; r++) y[(long)r * outputs + o] = Dot1<TWeights>(row, x + (long)r * n, n);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot1<TWeights>(byte* row, float* x, int n) where TWeights : IWeightFormat
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (var i = 0; i < n; i += 64)
        {
            var (w0, w1, w2, w3) = TWeights.Load64(row, i);
            a0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(x + i), a0);
            a1 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(x + i + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(x + i + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(x + i + 48), a3);
        }
        return Vector512.Sum((a0 + a1) + (a2 + a3));
    }

    // Unrolled by hand: sixteen named accumulators stay in registers, where a helper taking
    // them by reference would make the JIT keep them in memory.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Dot4<TWeights>(byte* row, float* x, int n, float* y, int stride) where TWeights : IWeightFormat
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
        float* xa = x, xb = x + n, xc = x + 2L * n, xd = x + 3L * n;
        for (var i = 0; i < n; i += 64)
        {
            var (w0, w1, w2, w3) = TWeights.Load64(row, i);
            a0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(xa + i), a0);
            a1 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(xa + i + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(xa + i + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(xa + i + 48), a3);
            b0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(xb + i), b0);
            b1 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(xb + i + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(xb + i + 32), b2);
            b3 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(xb + i + 48), b3);
            c0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(xc + i), c0);
            c1 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(xc + i + 16), c1);
            c2 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(xc + i + 32), c2);
            c3 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(xc + i + 48), c3);
            d0 = Vector512.FusedMultiplyAdd(w0, Vector512.Load(xd + i), d0);
            d1 = Vector512.FusedMultiplyAdd(w1, Vector512.Load(xd + i + 16), d1);
            d2 = Vector512.FusedMultiplyAdd(w2, Vector512.Load(xd + i + 32), d2);
            d3 = Vector512.FusedMultiplyAdd(w3, Vector512.Load(xd + i + 48), d3);
        }
        y[0] = Vector512.Sum((a0 + a1) + (a2 + a3));
        y[stride] = Vector512.Sum((b0 + b1) + (b2 + b3));
        y[2L * stride] = Vector512.Sum((c0 + c1) + (c2 + c3));
        y[3L * stride] = Vector512.Sum((d0 + d1) + (d2 + d3));
    }

    /// <summary>y[r, o] = x[r] . w[o] for the outputs o in [from, to) of every input row r.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows<TWeights>(byte* w, float* x, float* y, int rows, int n, int outputs, int from, int to) where TWeights : IWeightFormat
    {
        if (Vector512.IsHardwareAccelerated && n % 64 == 0)
        {
            Rows512<TWeights>(w, x, y, rows, n, outputs, from, to);
            return;
        }
        // Any other width or CPU: 256-bit vectors (128-bit where that is all there is, as .NET
        // lowers them), one accumulator per row, the rest of a row in scalar steps.
        var vectorEnd = n - n % 16;
        var rowBytes = (long)n * TWeights.Bytes;
        var sums = stackalloc Vector256<float>[MaxRows];
        for (var first = 0; first < rows; first += MaxRows)
        {
            var count = Math.Min(MaxRows, rows - first);
            for (var o = from; o < to; o++)
            {
                var row = w + o * rowBytes;
                for (var r = 0; r < count; r++) sums[r] = default;
                for (var i = 0; i < vectorEnd; i += 16)
                {
                    var (w0, w1) = TWeights.Load16(row, i);
                    for (var r = 0; r < count; r++)
                    {
                        var xr = x + (long)(first + r) * n + i;
                        sums[r] = Vector256.FusedMultiplyAdd(w0, Vector256.Load(xr), Vector256.FusedMultiplyAdd(w1, Vector256.Load(xr + 8), sums[r]));
                    }
                }
                for (var r = 0; r < count; r++)
                {
                    var total = Vector256.Sum(sums[r]);
                    for (var i = vectorEnd; i < n; i++) total += TWeights.At(row, i) * x[(long)(first + r) * n + i];
                    y[(long)(first + r) * outputs + o] = total;
                }
            }
        }
    }
}
