// libtorch allocates every tensor with malloc. glibc serves blocks above its mmap threshold from
// fresh mappings and hands freed memory at the top of its heap back to the kernel, so a training
// step that frees and reallocates the same activations every step takes a page fault (and a page
// clear) for each of their pages, every step: about 5,800 per step for the GPT-2-small shape in
// bf16. Raising the mmap threshold to 32 MB and never trimming keeps freed blocks for the next
// step, as jemalloc and tcmalloc (which PyTorch's CPU tuning guide preloads) do. Measured here
// with `stratus bench train` on the GPT-2-small shape in bf16: 5,958 -> 119 page faults and
// 513-548 -> 498-500 ms per step. (Allocations served by glibc's secondary arenas, which some
// threads get, can still lose a heap that empties completely; those settings cannot change that.)
using System.Runtime.InteropServices;

namespace Stratus;

public static partial class NativeAllocator
{
    const int TrimThreshold = -1, MmapThreshold = -3; // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    const int LargestMmapThreshold = 32 << 20;        // the most glibc's own adaptive threshold reaches

    /// <summary>Makes glibc keep memory that libtorch frees for reuse instead of returning it to
    /// the kernel (blocks over 32 MB are still mapped and unmapped). Call once at start-up; a
    /// process's resident memory then stays at its peak. Returns false where the C library is
    /// not glibc (nothing changes there).</summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return mallopt(MmapThreshold, LargestMmapThreshold) == 1 & mallopt(TrimThreshold, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc.so.6")]
    private static partial int mallopt(int param, int value);
}
