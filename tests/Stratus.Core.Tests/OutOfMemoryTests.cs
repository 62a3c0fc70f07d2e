// An allocation the device cannot make is known from libtorch's own error, on the CPU here and, by
// the words of its CUDA allocator, on a GPU; other libtorch errors are bugs and stay unrecognised.
using System.Runtime.InteropServices;
using TorchSharp;

namespace Stratus.Tests;

public sealed class OutOfMemoryTests
{
    [Fact]
    public void A_cpu_allocation_over_the_address_space_is_out_of_memory_with_its_size()
    {
        // 2^48 floats: 1 PiB, more than any x86-64 or arm64 process can map, overcommit or not.
        var e = Assert.Throws<ExternalException>(() => torch.empty(1L << 48, dtype: torch.float32).Dispose());
        Assert.True(OutOfMemory.Is(e), e.Message);
        Assert.Equal("out of memory: could not allocate 1048576.0 GiB", OutOfMemory.Describe(e));
    }

    [Fact]
    public void A_cuda_allocators_refusal_keeps_the_size_and_what_the_gpu_has_free()
    {
        // What PyTorch 2.11's libtorch said on an H100 asked for 4 TiB (bench/README.md, third check).
        var e = new ExternalException("CUDA out of memory. Tried to allocate 4096.00 GiB. GPU 0 has a total capacity of 79.18 GiB of which 78.66 GiB is free. "
            + "Including non-PyTorch memory, this process has 518.00 MiB memory in use. Of the allocated memory 0 bytes is allocated by PyTorch, and 0 bytes is reserved "
            + "by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  "
            + "See documentation for Memory Management  (https://docs.pytorch.org/docs/stable/notes/cuda.html#optimizing-memory-usage-with-pytorch-cuda-alloc-conf)");
        Assert.True(OutOfMemory.Is(e));
        Assert.Equal("out of GPU memory: could not allocate 4096.00 GiB (GPU 0 has a total capacity of 79.18 GiB of which 78.66 GiB is free)", OutOfMemory.Describe(e));
    }

    [Fact]
    public void Other_libtorch_errors_are_not_out_of_memory()
    {
        using var a = torch.zeros(2, 3);
        var e = Assert.Throws<ExternalException>(() => a.reshape(7).Dispose());
        Assert.False(OutOfMemory.Is(e), e.Message);
    }
}
