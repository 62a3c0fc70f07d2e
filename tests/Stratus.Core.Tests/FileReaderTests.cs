// Files a user hands Stratus (weights, token shards) may be damaged or made by hand: each bad
// header must be a one-line error, never a negative seek, an overflowing size or a read past
// the file.
using System.Buffers.Binary;
using System.Text;
using Stratus.Data;
using Stratus.Formats;

namespace Stratus.Tests;

public sealed class FileReaderTests
{
    /// <summary>A safetensors file with this header and <paramref name="dataBytes"/> zero bytes of data.</summary>
    static string SafeTensorsFile(TempDirectory temp, string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        var path = temp[$"{Guid.NewGuid():N}.safetensors"];
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}""", 8, "data_offsets")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-2,-1],"data_offsets":[0,8]}}""", 8, "negative dimension")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", 0, "too large")]
    [InlineData("""{"w":{"dtype":"F32","data_offsets":[0,8]}}""", 8, "no shape")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2]}}""", 8, "no data_offsets")]
    [InlineData("""{"w":{"dtype":"F32","shape":["a"],"data_offsets":[0,8]}}""", 8, "no shape")]
    [InlineData("""{"w":{"dtype":5,"shape":[2],"data_offsets":[0,8]}}""", 8, "no dtype")]
    [InlineData("""{"__metadata__":"x","w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "__metadata__")]
    [InlineData("""{"w":[1]}""", 8, "not an object")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "not valid JSON")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12, "starts at data byte 4")]
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 12, "the file has")]
    public void A_damaged_safetensors_header_is_refused_naming_what_is_wrong(string header, int dataBytes, string expected)
    {
        using var temp = new TempDirectory();
        var path = SafeTensorsFile(temp, header, dataBytes);
        var error = Assert.Throws<StratusUserException>(() => SafeTensors.Open(path).Dispose());
        Assert.Contains("is not a valid safetensors file", error.Message);
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void A_token_shard_whose_count_overflows_or_whose_ids_pass_its_vocabulary_is_refused()
    {
        using var temp = new TempDirectory();
        var path = temp["train.bin"];
        TokenShard.Write(path, [1, 2, 3, 4, 5, 6, 7, 8], vocabSize: 10);
        var good = File.ReadAllBytes(path);

        // count * 4 wraps around to the file's size: 2^62 + 8 tokens of 4 bytes "fit" 32 bytes.
        var overflowing = (byte[])good.Clone();
        BinaryPrimitives.WriteInt32LittleEndian(overflowing.AsSpan(12), 4);
        BinaryPrimitives.WriteInt64LittleEndian(overflowing.AsSpan(16), (1L << 62) + 4);
        File.WriteAllBytes(path, overflowing);
        Assert.Contains("truncated or corrupt", Assert.Throws<StratusUserException>(() => TokenShard.Open(path)).Message);

        // An id at the vocabulary size would be an embedding index libtorch aborts on.
        var outside = (byte[])good.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(outside.AsSpan(TokenShard.HeaderSize + 2 * 5), 10);
        File.WriteAllBytes(path, outside);
        using var shard = TokenShard.Open(path);
        var window = new long[8];
        shard.Read(0, window.AsSpan(0, 5));
        Assert.Contains("token id 10", Assert.Throws<StratusUserException>(() => shard.Read(0, window)).Message);
    }
}
