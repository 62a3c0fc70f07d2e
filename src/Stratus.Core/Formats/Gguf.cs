// The GGUF file format (llama.cpp, version 3): "GGUF", version, tensor and key/value counts,
// typed key/value metadata, tensor infos (name, dims innermost first, type, offset), padding to
// the alignment, then tensor data. Writes f32, f16 and q8_0 tensors; reads headers back to
// verify files and to refuse truncated ones with a clear message.
using System.Buffers.Binary;
using System.Text;

namespace Stratus.Formats;

public enum GgmlType : uint { F32 = 0, F16 = 1, Q8_0 = 8 }

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

    public static long ByteSize(GgmlType type, long elements) => type switch
    {
        GgmlType.F32 => elements * 4,
        GgmlType.F16 => elements * 2,
        GgmlType.Q8_0 => elements / Q8Block * (2 + Q8Block),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

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

    public static GgufFile Read(string path)
    {
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
                if (!Enum.IsDefined(type)) throw file.Corrupt($"tensor {name} has ggml type {(uint)type}, which is none that Stratus writes (f32, f16, q8_0)");
                var offset = r.ReadUInt64();
                file.Tensors.Add((name, dims, type, offset <= long.MaxValue ? (long)offset : throw file.Corrupt($"tensor {name} has offset {offset}")));
            }
            var alignment = file.Metadata.TryGetValue("general.alignment", out var a) ? a as uint? ?? 0 : GgufWriter.Alignment;
            if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw file.Corrupt($"general.alignment {a} is not a power of two (a uint32)");
            var dataStart = (stream.Position + alignment - 1) / alignment * alignment;
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
