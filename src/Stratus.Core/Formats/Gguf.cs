// The GGUF file format (llama.cpp, version 3): "GGUF", version, tensor and key/value counts,
// typed key/value metadata, tensor infos (name, dims innermost first, type, offset), padding to
// the alignment, then tensor data. Writes f32, f16, bf16 and q8_0 tensors; reads the header of a file
// of any of ggml's tensor types (llama.cpp's quantized files too), checked against the file's
// size, and a tensor's bytes for GgufImport to dequantize.
using System.Buffers.Binary;
using System.Text;

namespace Stratus.Formats;

/// <summary>ggml's tensor types by their numbers in a GGUF file (ggml.h's enum ggml_type; the
/// numbers it no longer uses are left out).</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
}

public static class GgmlTypes
{
    /// <summary>How many values a block of the type holds and how many bytes it takes (ggml.c's
    /// type_traits: blck_size, type_size). A row of a tensor is whole blocks.</summary>
    public static (int Values, int Bytes) Block(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.I32 => (1, 4),
        GgmlType.F16 or GgmlType.BF16 or GgmlType.I16 => (1, 2),
        GgmlType.I8 => (1, 1),
        GgmlType.F64 or GgmlType.I64 => (1, 8),
        GgmlType.Q4_0 or GgmlType.IQ4_NL => (32, 18),
        GgmlType.Q4_1 => (32, 20),
        GgmlType.Q5_0 => (32, 22),
        GgmlType.Q5_1 => (32, 24),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q8_1 => (32, 36),
        GgmlType.MXFP4 => (32, 17),
        GgmlType.Q2_K => (256, 84),
        GgmlType.Q3_K or GgmlType.IQ3_S => (256, 110),
        GgmlType.Q4_K => (256, 144),
        GgmlType.Q5_K => (256, 176),
        GgmlType.Q6_K => (256, 210),
        GgmlType.Q8_K => (256, 292),
        GgmlType.IQ2_XXS or GgmlType.TQ2_0 => (256, 66),
        GgmlType.IQ2_XS => (256, 74),
        GgmlType.IQ3_XXS => (256, 98),
        GgmlType.IQ1_S => (256, 50),
        GgmlType.IQ2_S => (256, 82),
        GgmlType.IQ4_XS => (256, 136),
        GgmlType.IQ1_M => (256, 56),
        GgmlType.TQ1_0 => (256, 54),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>The type's name as llama.cpp prints it (q4_K, iq2_xxs, bf16).</summary>
    public static string Name(GgmlType type) => type.ToString().ToLowerInvariant().Replace("_k", "_K", StringComparison.Ordinal);
}

/// <summary>A tensor to write: dims in torch order (outermost first); Data produces its f32
/// values row-major when the file is written, so a whole model is never held twice.</summary>
public sealed record GgufTensor(string Name, long[] Shape, Func<float[]> Data, GgmlType Type)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}

public sealed class GgufWriter
{
    public const uint Magic = 0x46554747; // "GGUF" little-endian
    public const uint Version = 3;
    public const int Alignment = 32;
    public const int Q8Block = 32;

    enum ValueType : uint { UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12 }

    readonly List<(string Key, Action<BinaryWriter> Write)> metadata = [];
    readonly List<GgufTensor> tensors = [];

    public void Add(string key, string value) => metadata.Add((key, w => { w.Write((uint)ValueType.String); WriteString(w, value); }));
    public void Add(string key, uint value) => metadata.Add((key, w => { w.Write((uint)ValueType.UInt32); w.Write(value); }));
    public void Add(string key, float value) => metadata.Add((key, w => { w.Write((uint)ValueType.Float32); w.Write(value); }));
    public void Add(string key, bool value) => metadata.Add((key, w => { w.Write((uint)ValueType.Bool); w.Write((byte)(value ? 1 : 0)); }));

    public void Add(string key, IReadOnlyList<string> values) => metadata.Add((key, w =>
    {
        w.Write((uint)ValueType.Array);
        w.Write((uint)ValueType.String);
        w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    }));

    public void Add(string key, IReadOnlyList<float> values) => metadata.Add((key, w =>
    {
        w.Write((uint)ValueType.Array);
        w.Write((uint)ValueType.Float32);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    }));

    public void Add(string key, IReadOnlyList<int> values) => metadata.Add((key, w =>
    {
        w.Write((uint)ValueType.Array);
        w.Write((uint)ValueType.Int32);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    }));

    public void Add(GgufTensor tensor)
    {
        if (tensor.Type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0))
            throw new ArgumentException($"GGUF tensors are written as f32, f16, bf16 or q8_0, not {GgmlTypes.Name(tensor.Type)}: {tensor.Name}");
        if (tensor.Type == GgmlType.Q8_0 && tensor.Shape[^1] % Q8Block != 0)
            throw new ArgumentException($"q8_0 needs rows that are a multiple of {Q8Block}: {tensor.Name}");
        tensors.Add(tensor);
    }

    public void Write(string path) => AtomicFile.Write(path, stream =>
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, write) in metadata)
        {
            WriteString(w, key);
            write(w);
        }
        long offset = 0;
        foreach (var t in tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            for (var i = t.Shape.Length - 1; i >= 0; i--) w.Write((ulong)t.Shape[i]);
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset = Align(offset + ByteSize(t.Type, t.Elements));
        }
        w.Flush();
        Pad(stream);
        foreach (var t in tensors)
        {
            var bytes = Encode(t);
            stream.Write(bytes);
            Pad(stream);
        }
    });

    /// <summary>The bytes of <paramref name="elements"/> values (whole blocks) of the type.</summary>
    public static long ByteSize(GgmlType type, long elements)
    {
        var (values, bytes) = GgmlTypes.Block(type);
        return checked(elements / values * bytes);
    }

    static byte[] Encode(GgufTensor t)
    {
        var data = t.Data();
        if (data.Length != t.Elements) throw new InvalidOperationException($"{t.Name}: {data.Length} values for shape [{string.Join(", ", t.Shape)}]");
        var bytes = new byte[ByteSize(t.Type, data.Length)];
        switch (t.Type)
        {
            case GgmlType.F32:
                Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
                break;
            case GgmlType.F16:
                for (var i = 0; i < data.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)data[i]);
                break;
            case GgmlType.BF16:
                // ggml's fp32_to_bf16: the top 16 bits, rounded to nearest even; a NaN stays one.
                for (var i = 0; i < data.Length; i++)
                {
                    var bits = BitConverter.SingleToUInt32Bits(data[i]);
                    var top = float.IsNaN(data[i]) ? (bits >> 16) | 64 : (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
                    BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), (ushort)top);
                }
                break;
            case GgmlType.Q8_0:
                // llama.cpp's quantize_row_q8_0: per block of 32, d = max|x| / 127 (stored as f16)
                // and q = round(x / d).
                for (int block = 0, o = 0; block < data.Length / Q8Block; block++, o += 2 + Q8Block)
                {
                    var values = data.AsSpan(block * Q8Block, Q8Block);
                    var max = 0f;
                    foreach (var v in values) max = Math.Max(max, Math.Abs(v));
                    var d = max / 127f;
                    var inverse = d != 0 ? 1f / d : 0f;
                    BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(o), (Half)d);
                    for (var i = 0; i < Q8Block; i++) bytes[o + 2 + i] = (byte)(sbyte)MathF.Round(values[i] * inverse, MidpointRounding.AwayFromZero);
                }
                break;
        }
        return bytes;
    }

    static long Align(long offset) => (offset + Alignment - 1) / Alignment * Alignment;

    static void Pad(Stream stream)
    {
        var padding = (int)(Align(stream.Position) - stream.Position);
        for (var i = 0; i < padding; i++) stream.WriteByte(0);
    }

    static void WriteString(BinaryWriter w, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}

/// <summary>Reads a GGUF file's metadata and tensor table and checks that every tensor's data
/// lies inside the file. Every count, size and offset is checked before it is used: a damaged or
/// hand-made header must be a one-line error, not an exception, an allocation of gigabytes or a
/// recursion that overflows the stack.</summary>
public sealed class GgufFile
{
    /// <summary>ggml's GGML_MAX_DIMS.</summary>
    const int MaxDims = 4;
    /// <summary>How deep arrays of arrays may nest (GGUF files hold lists of strings, not deeper).</summary>
    const int MaxArrayDepth = 8;

    GgufFile(string path) => Path = path;

    public string Path { get; }
    public uint Version { get; private set; }
    public Dictionary<string, object> Metadata { get; } = new(StringComparer.Ordinal);
    public List<(string Name, long[] Dims, GgmlType Type, long Offset)> Tensors { get; } = [];
    /// <summary>Where the tensor data starts: tensor offsets count from here.</summary>
    public long DataStart { get; private set; }

    public static GgufFile Read(string path)
    {
        // Before it is opened: opening a named pipe waits for a writer, for ever where there is
        // none, and a device has no size to check the header against. GGUF is read in place
        // (each tensor at its offset), so neither could be read as a stream either.
        if (Directory.Exists(path)) throw new StratusUserException($"{path} is a folder; pass a .gguf file");
        if (FileBytes.Irregular(path) is { } kind)
            throw new StratusUserException($"{path} is {kind}, not a regular file; a GGUF file is read in place, each tensor at its offset: give the .gguf file itself");
        if (!File.Exists(path)) throw new StratusUserException($"{path} does not exist");
        var file = new GgufFile(path);
        using var stream = File.OpenRead(path);
        using var r = new BinaryReader(stream);
        try
        {
            if (stream.Length < 24 || r.ReadUInt32() != GgufWriter.Magic) throw file.Corrupt("no GGUF magic at the start");
            file.Version = r.ReadUInt32();
            if (file.Version is < 2 or > 3) throw file.Corrupt($"GGUF version {file.Version} (expected 3)");
            var tensorCount = r.ReadUInt64();
            var kvCount = r.ReadUInt64();
            if (tensorCount > 1_000_000 || kvCount > 1_000_000) throw file.Corrupt("implausible tensor or key counts");
            for (ulong i = 0; i < kvCount; i++)
            {
                var key = ReadString(r);
                file.Metadata[key] = ReadValue(r, r.ReadUInt32(), 0);
            }
            for (ulong i = 0; i < tensorCount; i++)
            {
                var name = ReadString(r);
                var count = r.ReadUInt32();
                if (count > MaxDims) throw file.Corrupt($"tensor {name} has {count} dimensions (at most {MaxDims})");
                var dims = new long[count];
                for (var d = 0; d < dims.Length; d++)
                    dims[d] = r.ReadUInt64() is var dim && dim <= long.MaxValue ? (long)dim : throw file.Corrupt($"tensor {name} has a dimension of {dim}");
                var type = (GgmlType)r.ReadUInt32();
                if (!Enum.IsDefined(type)) throw file.Corrupt($"tensor {name} has ggml type {(uint)type}, which Stratus does not know (a newer llama.cpp's?)");
                // A row is whole blocks: a quantized type's bytes would not divide into values otherwise.
                var block = GgmlTypes.Block(type).Values;
                if (dims.Length > 0 && dims[0] % block != 0)
                    throw file.Corrupt($"tensor {name} has rows of {dims[0]} values, not whole {GgmlTypes.Name(type)} blocks of {block}");
                var offset = r.ReadUInt64();
                file.Tensors.Add((name, dims, type, offset <= long.MaxValue ? (long)offset : throw file.Corrupt($"tensor {name} has offset {offset}")));
            }
            var alignment = file.Metadata.TryGetValue("general.alignment", out var a) ? a as uint? ?? 0 : GgufWriter.Alignment;
            if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw file.Corrupt($"general.alignment {a} is not a power of two (a uint32)");
            var dataStart = file.DataStart = (stream.Position + alignment - 1) / alignment * alignment;
            foreach (var (name, dims, type, offset) in file.Tensors)
            {
                long end;
                try { end = checked(dataStart + offset + GgufWriter.ByteSize(type, dims.Aggregate(1L, (x, y) => checked(x * y)))); }
                catch (OverflowException) { throw file.Corrupt($"tensor {name} is too large to exist"); }
                if (end > stream.Length) throw file.Corrupt($"file is truncated: tensor {name} ends at byte {end} of {stream.Length}");
            }
        }
        catch (EndOfStreamException) { throw file.Corrupt("file is truncated inside its header"); }
        catch (InvalidDataException e) { throw file.Corrupt(e.Message); }
        return file;
    }

    /// <summary>Values of a tensor of the table (of a type <see cref="GgmlDequantize"/> reads)
    /// from value <paramref name="start"/> (a row's first) on, read and converted a megabyte of
    /// its bytes at a time: never all of them at once beside the values.</summary>
    public void ReadValues((string Name, long[] Dims, GgmlType Type, long Offset) tensor, Span<float> values, long start = 0)
    {
        var (blockValues, blockBytes) = GgmlTypes.Block(tensor.Type);
        var blocksPerChunk = Math.Max(1, (1 << 20) / blockBytes);
        var buffer = new byte[blocksPerChunk * blockBytes];
        var blocks = values.Length / blockValues;
        var first = DataStart + tensor.Offset + start / blockValues * blockBytes;
        using var handle = File.OpenHandle(Path);
        for (var block = 0; block < blocks; block += blocksPerChunk)
        {
            var count = Math.Min(blocksPerChunk, blocks - block);
            var chunk = buffer.AsSpan(0, count * blockBytes);
            var at = first + (long)block * blockBytes;
            for (var done = 0; done < chunk.Length;)
            {
                var read = RandomAccess.Read(handle, chunk[done..], at + done);
                // The file may have shrunk since its header was read.
                if (read == 0) throw Corrupt($"file is truncated: tensor {tensor.Name} ends past the end of the file");
                done += read;
            }
            GgmlDequantize.ToFloat(tensor.Type, chunk, values.Slice(block * blockValues, count * blockValues));
        }
    }

    static string ReadString(BinaryReader r)
    {
        var length = r.ReadUInt64();
        if (length > int.MaxValue || (long)length > r.BaseStream.Length - r.BaseStream.Position) throw new EndOfStreamException();
        return Encoding.UTF8.GetString(r.ReadBytes((int)length));
    }

    static object ReadValue(BinaryReader r, uint type, int depth) => type switch
    {
        0 => r.ReadByte(), 1 => r.ReadSByte(), 2 => r.ReadUInt16(), 3 => r.ReadInt16(), 4 => r.ReadUInt32(), 5 => r.ReadInt32(),
        6 => r.ReadSingle(), 7 => r.ReadByte() != 0, 8 => ReadString(r), 10 => r.ReadUInt64(), 11 => r.ReadInt64(), 12 => r.ReadDouble(),
        9 => depth < MaxArrayDepth ? ReadArray(r, depth + 1) : throw new InvalidDataException($"arrays nest deeper than {MaxArrayDepth}"),
        _ => throw new InvalidDataException($"unknown GGUF value type {type}"),
    };

    static object[] ReadArray(BinaryReader r, int depth)
    {
        var type = r.ReadUInt32();
        var count = r.ReadUInt64();
        // Each item takes at least a byte of the file (a string or an array, 8 or more), so the
        // file's rest bounds the count: a few bytes cannot ask for billions of items.
        var smallest = type switch { 0 or 1 or 7 => 1UL, 2 or 3 => 2UL, 4 or 5 or 6 => 4UL, _ => 8UL };
        if (count > (ulong)(r.BaseStream.Length - r.BaseStream.Position) / smallest) throw new EndOfStreamException();
        var values = new object[count];
        for (ulong i = 0; i < count; i++) values[i] = ReadValue(r, type, depth);
        return values;
    }

    StratusUserException Corrupt(string why) => new($"{Path} is not a valid GGUF file: {why}");
}
