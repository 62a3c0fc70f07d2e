// The safetensors format (Hugging Face): 8-byte little-endian header length, a JSON header
// mapping names to {dtype, shape, data_offsets}, then raw little-endian tensor bytes.
// Written by hand because it is a few dozen lines, and Stratus needs what general readers do
// not give together: atomic writes, reading one tensor at a time from shards without loading
// the file whole, and clear errors for truncated or foreign files.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Formats;

public static class SafeTensors
{
    static readonly Dictionary<ScalarType, (string Name, int Size)> Types = new()
    {
        [ScalarType.Float32] = ("F32", 4), [ScalarType.Float16] = ("F16", 2), [ScalarType.BFloat16] = ("BF16", 2),
        [ScalarType.Float64] = ("F64", 8), [ScalarType.Int64] = ("I64", 8), [ScalarType.Int32] = ("I32", 4),
        [ScalarType.Int16] = ("I16", 2), [ScalarType.Int8] = ("I8", 1), [ScalarType.Byte] = ("U8", 1), [ScalarType.Bool] = ("BOOL", 1),
    };

    static readonly Dictionary<string, ScalarType> TypesByName = Types.ToDictionary(kv => kv.Value.Name, kv => kv.Key);

    public static void Save(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var files = new StagedFiles();
        Save(files, path, tensors, metadata);
        files.Commit();
    }

    /// <summary>Writes the file staged among <paramref name="files"/>, to replace
    /// <paramref name="path"/> with the others they commit together (an exported model's).</summary>
    public static void Save(StagedFiles files, string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.Select(kv => (kv.Key, Tensor: kv.Value.detach().cpu().contiguous())).ToList();
        try
        {
            var header = new JsonObject();
            if (metadata is { Count: > 0 })
            {
                var meta = new JsonObject();
                foreach (var (k, v) in metadata) meta[k] = v;
                header["__metadata__"] = meta;
            }
            long offset = 0;
            foreach (var (name, tensor) in list)
            {
                var (typeName, size) = Types.TryGetValue(tensor.dtype, out var t) ? t : throw new NotSupportedException($"safetensors cannot store {tensor.dtype}");
                var bytes = tensor.numel() * size;
                header[name] = new JsonObject
                {
                    ["dtype"] = typeName,
                    ["shape"] = new JsonArray(tensor.shape.Select(d => (JsonNode)d).ToArray()),
                    ["data_offsets"] = new JsonArray(offset, offset + bytes),
                };
                offset += bytes;
            }
            var json = Encoding.UTF8.GetBytes(header.ToJsonString());
            var padded = (json.Length + 7) / 8 * 8; // the format aligns tensor data to 8 bytes
            files.Write(path, stream =>
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
                stream.Write(length);
                stream.Write(json);
                for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
                foreach (var (_, tensor) in list) stream.Write(Bytes(tensor));
            });
        }
        finally
        {
            foreach (var (_, tensor) in list) tensor.Dispose();
        }
    }

    // For a contiguous CPU tensor, TorchSharp's `bytes` is a span over the tensor's own memory.
    static ReadOnlySpan<byte> Bytes(Tensor tensor) => tensor.bytes;

    /// <summary>Reads every tensor of a file (on the CPU).</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var reader = Open(path);
        return reader.Names.ToDictionary(n => n, reader.Read);
    }

    public static Reader Open(string path) => new(path);

    public sealed record Entry(string Name, ScalarType DType, long[] Shape, long Start, long End);

    /// <summary>Reads tensors one at a time; checks the header against the file size.</summary>
    public sealed class Reader : IDisposable
    {
        readonly FileStream stream;
        long dataStart;

        internal Reader(string path)
        {
            if (!File.Exists(path)) throw new StratusUserException($"{path} does not exist");
            Path = path;
            stream = FileBytes.OpenRegular(path);
            // A refused file is closed at once, not when the finalizer gets to it.
            try { ReadHeader(); }
            catch
            {
                stream.Dispose();
                throw;
            }
        }

        void ReadHeader()
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            if (stream.ReadAtLeast(lengthBytes, 8, throwOnEndOfStream: false) < 8) throw Corrupt("shorter than its 8-byte header length");
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > 100_000_000 || 8 + (long)headerLength > stream.Length) throw Corrupt($"header length {headerLength} does not fit the file of {stream.Length} bytes");
            var headerBytes = new byte[headerLength];
            stream.ReadExactly(headerBytes);
            dataStart = 8 + (long)headerLength;
            // Strings that are no text (bad UTF-8, half a surrogate pair) would throw wherever they
            // are read, an InvalidOperationException naming neither the file nor the problem.
            if (JsonText.Problem(headerBytes) is { } problem) throw Corrupt($"its header is not text: {problem}");
            try
            {
                var header = JsonNode.Parse(headerBytes, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false }) as JsonObject
                    ?? throw Corrupt("header is not a JSON object");
                foreach (var (name, node) in header)
                {
                    if (name == "__metadata__")
                    {
                        Metadata = node is JsonObject metadata ? metadata.ToDictionary(kv => kv.Key, kv => kv.Value?.ToString() ?? "") : throw Corrupt("__metadata__ is not an object");
                        continue;
                    }
                    Entries[name] = ReadEntry(name, node);
                }
            }
            catch (JsonException e) { throw Corrupt($"header is not valid JSON ({StratusUserException.InUsersWords(e)})"); }
            // As the reference implementation: the tensors tile the data exactly, with no overlap
            // and no hole, so no byte is read as two tensors or left for something else. Ordered
            // by end too, as it orders them: an empty tensor where another starts comes first.
            var end = 0L;
            foreach (var entry in Entries.Values.OrderBy(e => e.Start).ThenBy(e => e.End))
            {
                if (entry.Start != end) throw Corrupt($"tensor {entry.Name} starts at data byte {entry.Start}, not {end} where the one before it ends");
                end = entry.End;
            }
            if (dataStart + end != stream.Length) throw Corrupt($"its tensors end at byte {dataStart + end} but the file has {stream.Length}");
        }

        /// <summary>One tensor's header entry, every field checked: a hand-made or damaged header
        /// must not become a negative seek, an overflowing size or a read outside the file.</summary>
        Entry ReadEntry(string name, JsonNode? node)
        {
            if (node is not JsonObject tensor) throw Corrupt($"tensor {name} is not an object");
            var dtypeName = tensor["dtype"] is JsonValue text && text.TryGetValue<string>(out var dtypeText) ? dtypeText : throw Corrupt($"tensor {name} has no dtype");
            if (!TypesByName.TryGetValue(dtypeName, out var dtype)) throw Corrupt($"tensor {name} has unsupported dtype {dtypeName}");
            var shape = WholeNumbers(tensor["shape"]) ?? throw Corrupt($"tensor {name} has no shape (a list of whole numbers)");
            if (WholeNumbers(tensor["data_offsets"]) is not [var start, var end]) throw Corrupt($"tensor {name} has no data_offsets [start, end]");
            long bytes;
            try { bytes = checked(shape.Aggregate(1L, (a, d) => d < 0 ? throw Corrupt($"tensor {name} has a negative dimension") : a * d) * Types[dtype].Size); }
            catch (OverflowException) { throw Corrupt($"tensor {name} has a shape too large to exist"); }
            if (start < 0 || end - start != bytes) throw Corrupt($"tensor {name} has data_offsets that do not match its shape");
            if (dataStart + end > stream.Length) throw Corrupt($"file is truncated: tensor {name} ends at byte {dataStart + end} of {stream.Length}");
            return new Entry(name, dtype, shape, start, end);
        }

        static long[]? WholeNumbers(JsonNode? node)
        {
            if (node is not JsonArray array) return null;
            var values = new long[array.Count];
            for (var i = 0; i < values.Length; i++)
                if (array[i] is not JsonValue value || !value.TryGetValue(out values[i])) return null;
            return values;
        }

        public string Path { get; }
        public Dictionary<string, Entry> Entries { get; } = new(StringComparer.Ordinal);
        public IReadOnlyDictionary<string, string> Metadata { get; private set; } = new Dictionary<string, string>();
        public IEnumerable<string> Names => Entries.Keys;

        public Tensor Read(string name)
        {
            var entry = Entries.TryGetValue(name, out var e) ? e : throw new StratusUserException($"{Path} has no tensor '{name}'");
            var tensor = empty(entry.Shape, entry.DType);
            stream.Position = dataStart + entry.Start;
            stream.ReadExactly(tensor.bytes);
            return tensor;
        }

        /// <summary>The tensor <paramref name="name"/>, read once its header entry has
        /// <paramref name="shape"/> and <paramref name="dtype"/>, else refused naming the tensor,
        /// the file, what was needed and what is there (a tensor of another type would be
        /// converted without a word where it is copied); <paramref name="mismatch"/> says what a
        /// tensor missing or unlike the one needed means.</summary>
        public Tensor Read(string name, long[] shape, ScalarType dtype, string mismatch)
        {
            Require(name, shape, dtype, mismatch);
            return Read(name);
        }

        /// <summary>Refuses, without reading it, a tensor that <see cref="Read(string, long[], ScalarType, string)"/> would.</summary>
        public void Require(string name, long[] shape, ScalarType dtype, string mismatch)
        {
            if (!Entries.TryGetValue(name, out var entry)) throw new StratusUserException($"{Path} has no tensor '{name}'; {mismatch}");
            if (!entry.Shape.SequenceEqual(shape))
                throw new StratusUserException($"{Path}: tensor '{name}' has shape [{string.Join(", ", entry.Shape)}], where [{string.Join(", ", shape)}] is needed; {mismatch}");
            if (entry.DType != dtype)
                throw new StratusUserException($"{Path}: tensor '{name}' is {Types[entry.DType].Name}, where {(Types.TryGetValue(dtype, out var needed) ? needed.Name : dtype.ToString())} is needed; {mismatch}");
        }

        StratusUserException Corrupt(string why) => new($"{Path} is not a valid safetensors file: {why}");

        public void Dispose() => stream.Dispose();
    }
}
