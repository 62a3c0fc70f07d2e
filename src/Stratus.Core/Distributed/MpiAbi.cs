// Everything that depends on which MPI library is installed: its file name, how its handles
// (communicator, datatypes, reduction ops) are spelled, and its special constants. The rest of
// Stratus talks to MPI only through this class, so another MPI family means another Load branch.
//
// Two families exist on Linux:
// - Open MPI (libmpi.so.40): handles are pointers to exported globals (MPI_COMM_WORLD is
//   &ompi_mpi_comm_world, MPI_FLOAT is &ompi_mpi_float ...); MPI_IN_PLACE is (void*)1 and
//   MPI_STATUS_IGNORE is NULL.
// - MPICH and its ABI relatives (libmpich.so.12: MPICH, Intel MPI, MVAPICH): handles are 32-bit
//   integers fixed in mpi.h; MPI_IN_PLACE is (void*)-1 and MPI_STATUS_IGNORE is (MPI_Status*)1.
//
// The P/Invoke signatures pass every handle as nint. For MPICH's int handles that is still the
// right call on the 64-bit targets we build for (x64 SysV and arm64 pass an int in the low half
// of the same register or stack slot and the callee reads only that half), and out-handles
// (MPI_Request) are written into a zeroed nint whose low half is the value on little-endian.
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using static TorchSharp.torch;

namespace Stratus.Distributed;

internal sealed partial class MpiAbi
{
    // The name the P/Invokes below bind to; ResolveLibrary maps it to whichever MPI was loaded.
    private const string ResolvedName = "stratus-mpi";

    private const string OpenMpiLibrary = "libmpi.so.40";
    private const string MpichLibrary = "libmpich.so.12";

    // MPI_THREAD_SERIALIZED has the same value in every MPI: any thread may call, one at a time.
    public const int ThreadSerialized = 2;

    private static readonly Lock LoadLock = new();
    private static MpiAbi? _loaded;

    private readonly nint _library;

    private MpiAbi(string libraryName, nint library)
    {
        LibraryFile = libraryName;
        _library = library;
    }

    // The file that was loaded, for messages ("libmpi.so.40").
    public string LibraryFile { get; }

    public nint CommWorld { get; private init; }

    public nint OpSum { get; private init; }

    public nint OpMax { get; private init; }

    public nint InPlace { get; private init; }

    public nint StatusIgnore { get; private init; }

    private nint Float32 { get; init; }

    private nint Float64 { get; init; }

    private nint Int32 { get; init; }

    private nint Int64 { get; init; }

    public nint Datatype(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => Float32,
        ScalarType.Float64 => Float64,
        ScalarType.Int32 => Int32,
        ScalarType.Int64 => Int64,
        _ => throw new StratusUserException($"MPI: dtype {dtype} has no MPI datatype here; use float32, float64, int32 or int64."),
    };

    /// <summary>
    /// Loads the system MPI (Open MPI first, then the MPICH ABI) once per process; null with
    /// <paramref name="failure"/> set when neither is installed.
    /// </summary>
    public static MpiAbi? TryLoad(out string? failure)
    {
        lock (LoadLock)
        {
            failure = null;
            if (_loaded is not null)
                return _loaded;
            if (NativeLibrary.TryLoad(OpenMpiLibrary, out var openMpi))
                _loaded = OpenMpi(openMpi);
            else if (NativeLibrary.TryLoad(MpichLibrary, out var mpich))
                _loaded = Mpich(mpich);
            else
            {
                failure = $"no MPI library found ({OpenMpiLibrary} from Open MPI or {MpichLibrary} from MPICH); install one, e.g. apt-get install openmpi-bin libopenmpi-dev";
                return null;
            }
            AssemblyLoadContext.GetLoadContext(typeof(MpiAbi).Assembly)!.ResolvingUnmanagedDll += ResolveLibrary;
            return _loaded;
        }
    }

    private static MpiAbi OpenMpi(nint library)
    {
        nint Global(string name) => NativeLibrary.TryGetExport(library, name, out var address)
            ? address
            : throw new InvalidOperationException($"{OpenMpiLibrary} does not export {name}; it is not the Open MPI 4.x ABI this code was written for.");
        return new MpiAbi(OpenMpiLibrary, library)
        {
            CommWorld = Global("ompi_mpi_comm_world"),
            Float32 = Global("ompi_mpi_float"),
            Float64 = Global("ompi_mpi_double"),
            Int32 = Global("ompi_mpi_int32_t"),
            Int64 = Global("ompi_mpi_int64_t"),
            OpSum = Global("ompi_mpi_op_sum"),
            OpMax = Global("ompi_mpi_op_max"),
            InPlace = 1,
            StatusIgnore = 0,
        };
    }

    // Values from MPICH's mpi.h; they are part of its ABI and shared by its derivatives.
    private static MpiAbi Mpich(nint library) => new(MpichLibrary, library)
    {
        CommWorld = 0x44000000,
        Float32 = 0x4c00040a,
        Float64 = 0x4c00080b,
        Int32 = 0x4c000439,
        Int64 = 0x4c00083a,
        OpSum = 0x58000003,
        OpMax = 0x58000001,
        InPlace = -1,
        StatusIgnore = 1,
    };

    private static nint ResolveLibrary(Assembly assembly, string name) =>
        name == ResolvedName && _loaded is not null ? _loaded._library : 0;

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Initialized(out int flag);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Finalized(out int flag);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Init_thread(nint argc, nint argv, int required, out int provided);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Finalize();

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Comm_rank(nint comm, out int rank);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Comm_size(nint comm, out int size);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Allreduce(nint sendbuf, nint recvbuf, int count, nint datatype, nint op, nint comm);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Iallreduce(nint sendbuf, nint recvbuf, int count, nint datatype, nint op, nint comm, ref nint request);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Wait(ref nint request, nint status);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Test(ref nint request, out int flag, nint status);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Reduce_scatter_block(nint sendbuf, nint recvbuf, int recvcount, nint datatype, nint op, nint comm);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Allgather(nint sendbuf, int sendcount, nint sendtype, nint recvbuf, int recvcount, nint recvtype, nint comm);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Gather(nint sendbuf, int sendcount, nint sendtype, nint recvbuf, int recvcount, nint recvtype, int root, nint comm);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Bcast(nint buffer, int count, nint datatype, int root, nint comm);

    [LibraryImport(ResolvedName)]
    public static partial int MPI_Abort(nint comm, int errorcode);

    [LibraryImport(ResolvedName)]
    public static unsafe partial int MPI_Error_string(int errorcode, byte* text, out int length);
}
