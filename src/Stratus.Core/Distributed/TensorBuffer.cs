// The raw memory of a TorchSharp tensor, checked for what a collective can send without copying:
// a contiguous CPU tensor of a dtype every MPI has. TorchSharp 0.107 has no public data_ptr, so
// the address comes from LibTorchSharp's own THSTensor_data (at::Tensor::data_ptr, which already
// includes the storage offset, so narrowed views work).
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Distributed;

internal readonly partial record struct TensorBuffer(nint Address, long Count, ScalarType DType)
{
    public long Bytes => Count * ElementSize(DType);

    public static TensorBuffer Of(Tensor tensor, string operation)
    {
        if (tensor.device_type != DeviceType.CPU)
            throw new StratusUserException($"{operation}: tensor is on {tensor.device}; collectives here go through host MPI and need CPU tensors.");
        if (!tensor.is_contiguous())
            throw new StratusUserException($"{operation}: tensor of shape [{string.Join(", ", tensor.shape)}] is not contiguous; collectives work on its memory in place, so pass a contiguous tensor (or .contiguous() and copy back).");
        if (tensor.dtype is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.Int32 or ScalarType.Int64))
            throw new StratusUserException($"{operation}: dtype {tensor.dtype} is not supported; use float32, float64, int32 or int64 (cast bfloat16 gradients to float32 before reducing).");
        var address = THSTensor_data(tensor.Handle);
        if (address == 0 && tensor.numel() != 0)
            throw new InvalidOperationException($"{operation}: LibTorchSharp returned no data pointer for a tensor of {tensor.numel()} elements.");
        return new TensorBuffer(address, tensor.numel(), tensor.dtype);
    }

    public static TensorBuffer Of(Tensor tensor, ReduceOp op, string operation)
    {
        var buffer = Of(tensor, operation);
        if (op == ReduceOp.Average && buffer.DType is ScalarType.Int32 or ScalarType.Int64)
            throw new StratusUserException($"{operation}: averaging needs a floating-point tensor, got {buffer.DType}; use ReduceOp.Sum.");
        return buffer;
    }

    /// <summary>Checks that <paramref name="whole"/> is exactly <paramref name="parts"/> chunks the size of <paramref name="chunk"/>.</summary>
    public static void RequireChunks(TensorBuffer whole, TensorBuffer chunk, int parts, string operation)
    {
        if (whole.DType != chunk.DType)
            throw new StratusUserException($"{operation}: tensors have different dtypes ({whole.DType} and {chunk.DType}).");
        if (whole.Count != chunk.Count * parts)
            throw new StratusUserException($"{operation}: the full tensor has {whole.Count} elements but must have world size {parts} x chunk {chunk.Count} = {chunk.Count * parts}; pad it to a multiple of the world size.");
    }

    public static long ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        _ => 4,
    };

    // Resolves to the libLibTorchSharp.so that TorchSharp itself loaded (same file next to
    // TorchSharp.dll, so the same handle).
    [LibraryImport("LibTorchSharp")]
    private static partial nint THSTensor_data(nint tensor);
}
