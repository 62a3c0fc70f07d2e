// Where every parameter element lives in ZeRO-1's flat parameter space, and which slice of it
// each rank owns. Pure arithmetic, so it can be checked without a model or a second process.
namespace Stratus.Distributed;

/// <summary>
/// The part of one parameter that falls in this rank's shard: elements
/// [ParameterOffset, ParameterOffset + Length) of the flattened parameter sit at
/// [ShardOffset, ShardOffset + Length) of the shard.
/// </summary>
public readonly record struct ShardSegment(int ParameterIndex, long ParameterOffset, long ShardOffset, long Length);

public sealed record ShardLayout
{
    private ShardLayout(long[] parameterOffsets, long totalElements, int worldSize, int rank, ShardSegment[] segments)
    {
        ParameterOffsets = parameterOffsets;
        TotalElements = totalElements;
        WorldSize = worldSize;
        Rank = rank;
        ShardElements = (totalElements + worldSize - 1) / worldSize;
        Segments = segments;
    }

    /// <summary>Where each parameter starts in the flat space (parameters laid out in order, unpadded).</summary>
    public IReadOnlyList<long> ParameterOffsets { get; }

    /// <summary>Elements of all parameters together.</summary>
    public long TotalElements { get; }

    public int WorldSize { get; }

    public int Rank { get; }

    /// <summary>Elements per rank: TotalElements / WorldSize rounded up.</summary>
    public long ShardElements { get; }

    /// <summary>The flat space padded with zeros at the end to WorldSize equal shards.</summary>
    public long PaddedElements => ShardElements * WorldSize;

    /// <summary>This rank's shard starts here in the flat space.</summary>
    public long ShardStart => ShardElements * Rank;

    /// <summary>The parameters (or parts of them) in this rank's shard, in flat order; padding is in none.</summary>
    public IReadOnlyList<ShardSegment> Segments { get; }

    public static ShardLayout Compute(IReadOnlyList<long> parameterElements, int worldSize, int rank)
    {
        if (worldSize < 1)
            throw new StratusUserException($"World size must be at least 1, got {worldSize}.");
        if (rank < 0 || rank >= worldSize)
            throw new StratusUserException($"Rank {rank} is outside a world of {worldSize} ranks.");
        var offsets = new long[parameterElements.Count];
        long total = 0;
        for (var i = 0; i < offsets.Length; i++)
        {
            if (parameterElements[i] < 0)
                throw new StratusUserException($"Parameter {i} has a negative size ({parameterElements[i]}).");
            offsets[i] = total;
            total += parameterElements[i];
        }
        var shard = (total + worldSize - 1) / worldSize;
        long start = shard * rank, end = Math.Min(start + shard, total);
        var segments = new List<ShardSegment>();
        for (var i = 0; i < offsets.Length; i++)
        {
            long from = Math.Max(start, offsets[i]), to = Math.Min(end, offsets[i] + parameterElements[i]);
            if (from < to)
                segments.Add(new ShardSegment(i, from - offsets[i], from - start, to - from));
        }
        return new ShardLayout(offsets, total, worldSize, rank, [.. segments]);
    }
}
