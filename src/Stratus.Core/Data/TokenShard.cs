// A token shard: a flat array of token ids behind a self-describing 64-byte header, in the
// spirit of llm.c's .bin files, so a file can be recognised, versioned and size-checked on load.
//
//   offset  size  field
//   0       8     magic "STRATOK\0"
//   8       4     format version (1)
//   12      4     bytes per token (2 = uint16, 4 = uint32)
//   16      8     token count
//   24      8     vocabulary size
//   32      32    reserved (zero)
//   64      ...   tokens, little-endian
using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace Stratus.Data;

public sealed unsafe class TokenShard : IDisposable
{
    public const int HeaderSize = 64;
    public const int Version = 1;
    static ReadOnlySpan<byte> Magic => "STRATOK\0"u8;

    readonly MemoryMappedFile? map;
    readonly MemoryMappedViewAccessor? view;
    readonly byte* tokens;

    TokenShard(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* tokens, int tokenBytes, long count, long vocabSize)
    {
        Path = path;
        this.map = map;
        this.view = view;
        this.tokens = tokens;
        TokenBytes = tokenBytes;
        Count = count;
        VocabSize = vocabSize;
    }

    public string Path { get; }
    public int TokenBytes { get; }
    public long Count { get; }
    public long VocabSize { get; }

    public static int TokenBytesFor(long vocabSize) => vocabSize <= ushort.MaxValue + 1 ? 2 : 4;

    public static void Write(string path, ReadOnlySpan<int> tokenIds, long vocabSize)
    {
        var tokens = tokenIds.ToArray();
        AtomicFile.Write(path, stream =>
        {
            var writer = new Writer(stream, vocabSize);
            writer.Append(tokens);
            writer.Finish();
        });
    }

    /// <summary>Writes a train and a val shard from one stream of tokens: <paramref name="write"/>
    /// appends every token to the train writer and returns how many stay there; the rest move to
    /// val. Both are staged in <paramref name="files"/>: they replace the files there when it commits.</summary>
    public static (long Train, long Val) WriteSplit(StagedFiles files, string trainPath, string valPath, long vocabSize, Func<Writer, long> write)
    {
        long trainCount = 0, valCount = 0;
        files.Write(trainPath, trainStream =>
        {
            var train = new Writer(trainStream, vocabSize);
            var keep = write(train);
            files.Write(valPath, valStream =>
            {
                var val = new Writer(valStream, vocabSize);
                train.MoveTailTo(val, keep);
                val.Finish();
                valCount = val.Count;
            });
            train.Finish();
            trainCount = train.Count;
        });
        return (trainCount, valCount);
    }

    /// <summary>Writes a shard to a stream as tokens arrive, for corpora too large to hold: the
    /// header's count is filled in by <see cref="Finish"/>. Give it the stream of
    /// <see cref="AtomicFile.Write"/> or <see cref="StagedFiles.Write"/> so that a failure leaves
    /// no partial shard behind.</summary>
    public sealed class Writer
    {
        readonly Stream stream;
        readonly long vocabSize;
        readonly byte[] buffer = new byte[1 << 16];

        public Writer(Stream stream, long vocabSize)
        {
            this.stream = stream;
            this.vocabSize = vocabSize;
            TokenBytes = TokenBytesFor(vocabSize);
            stream.Write(new byte[HeaderSize]);
        }

        public int TokenBytes { get; }
        public long Count { get; private set; }

        public void Append(ReadOnlySpan<int> tokens)
        {
            var filled = 0;
            foreach (var token in tokens)
            {
                if ((ulong)token >= (ulong)vocabSize) throw new InvalidDataException($"token {token} is outside the vocabulary of {vocabSize}");
                if (TokenBytes == 2) BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(filled), (ushort)token);
                else BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(filled), (uint)token);
                filled += TokenBytes;
                if (filled == buffer.Length) { stream.Write(buffer); filled = 0; }
            }
            stream.Write(buffer, 0, filled);
            Count += tokens.Length;
        }

        /// <summary>Moves the tokens after the first <paramref name="keep"/> to the end of
        /// <paramref name="other"/> (same vocabulary) and cuts them from this shard: a corpus written
        /// whole becomes its train and val split.</summary>
        public void MoveTailTo(Writer other, long keep)
        {
            if (other.TokenBytes != TokenBytes || keep < 0 || keep > Count) throw new ArgumentOutOfRangeException(nameof(keep));
            var tailStart = HeaderSize + keep * TokenBytes;
            stream.Position = tailStart;
            stream.CopyTo(other.stream);
            other.Count += Count - keep;
            stream.SetLength(tailStart);
            Count = keep;
        }

        /// <summary>Writes the header and leaves the stream at its end.</summary>
        public void Finish()
        {
            Span<byte> header = stackalloc byte[HeaderSize];
            header.Clear();
            Magic.CopyTo(header);
            BinaryPrimitives.WriteInt32LittleEndian(header[8..], Version);
            BinaryPrimitives.WriteInt32LittleEndian(header[12..], TokenBytes);
            BinaryPrimitives.WriteInt64LittleEndian(header[16..], Count);
            BinaryPrimitives.WriteInt64LittleEndian(header[24..], vocabSize);
            stream.Position = 0;
            stream.Write(header);
            stream.Seek(0, SeekOrigin.End);
        }
    }

    /// <summary>Maps a shard read-only; the tokens stay on disk and in the page cache.</summary>
    public static TokenShard Open(string path)
    {
        if (!File.Exists(path)) throw new StratusUserException($"token shard {path} does not exist; run `stratus prepare` first");
        var length = new FileInfo(path).Length;
        Span<byte> header = stackalloc byte[HeaderSize];
        using (var stream = FileBytes.OpenRegular(path))
        {
            if (length < HeaderSize || stream.ReadAtLeast(header, HeaderSize, throwOnEndOfStream: false) < HeaderSize || !header[..8].SequenceEqual(Magic))
                throw new StratusUserException($"{path} is not a Stratus token shard (bad magic); prepare the data again with `stratus prepare`");
        }
        var version = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        if (version != Version) throw new StratusUserException($"{path} has shard format version {version}; this Stratus reads version {Version}");
        var width = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        var count = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        var vocab = BinaryPrimitives.ReadInt64LittleEndian(header[24..]);
        // The count is compared by division first: a huge one would overflow count * width into a
        // product that matches the file, and reads would then run past the mapping.
        if (width is not (2 or 4) || count < 0 || count > (length - HeaderSize) / width || length != HeaderSize + count * width)
            throw new StratusUserException($"{path} is truncated or corrupt: header says {count} tokens of {width} bytes but the file has {length} bytes; prepare the data again");
        if (vocab < 1 || TokenBytesFor(vocab) > width)
            throw new StratusUserException($"{path} is corrupt: its header gives a vocabulary of {vocab} tokens for {width}-byte tokens; prepare the data again");
        if (count == 0) return new TokenShard(path, null, null, null, width, 0, vocab);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        return new TokenShard(path, map, view, pointer + view.PointerOffset + HeaderSize, width, count, vocab);
    }

    /// <summary>Copies tokens [start, start + destination.Length) into destination.</summary>
    /// <exception cref="StratusUserException">A token id is outside the shard's vocabulary (a
    /// damaged or hand-made shard): libtorch would abort on it as an embedding index.</exception>
    public void Read(long start, Span<long> destination)
    {
        if (start < 0 || start + destination.Length > Count) throw new ArgumentOutOfRangeException(nameof(start));
        long largest = 0;
        if (TokenBytes == 2)
        {
            var source = new ReadOnlySpan<ushort>(tokens + start * 2, destination.Length);
            for (var i = 0; i < source.Length; i++) largest = Math.Max(largest, destination[i] = source[i]);
        }
        else
        {
            var source = new ReadOnlySpan<uint>(tokens + start * 4, destination.Length);
            for (var i = 0; i < source.Length; i++) largest = Math.Max(largest, destination[i] = source[i]);
        }
        if (largest >= VocabSize)
            throw new StratusUserException($"{Path} holds token id {largest} near token {start}, outside its vocabulary of {VocabSize}; prepare the data again");
    }

    public void Dispose()
    {
        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
        }
        map?.Dispose();
    }
}
