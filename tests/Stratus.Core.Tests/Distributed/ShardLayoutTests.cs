using Stratus.Distributed;

namespace Stratus.Tests.Distributed;

public sealed class ShardLayoutTests
{
    [Fact]
    public void Shards_split_parameters_at_shard_boundaries()
    {
        long[] sizes = [5, 3, 4];
        Assert.Equal([new ShardSegment(0, 0, 0, 4)], ShardLayout.Compute(sizes, 3, 0).Segments);
        Assert.Equal([new ShardSegment(0, 4, 0, 1), new ShardSegment(1, 0, 1, 3)], ShardLayout.Compute(sizes, 3, 1).Segments);
        Assert.Equal([new ShardSegment(2, 0, 0, 4)], ShardLayout.Compute(sizes, 3, 2).Segments);
    }

    [Fact]
    public void Flat_space_is_padded_to_equal_shards()
    {
        var layout = ShardLayout.Compute([5, 2], 3, 2);
        Assert.Equal(7, layout.TotalElements);
        Assert.Equal(3, layout.ShardElements);
        Assert.Equal(9, layout.PaddedElements);
        Assert.Equal(6, layout.ShardStart);
        Assert.Equal([0L, 5], layout.ParameterOffsets);
        Assert.Equal([new ShardSegment(1, 1, 0, 1)], layout.Segments);
    }

    [Fact]
    public void A_rank_past_the_end_owns_only_padding() =>
        Assert.Empty(ShardLayout.Compute([2], 4, 3).Segments);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(8)]
    public void Every_element_belongs_to_exactly_one_rank(int worldSize)
    {
        long[] sizes = [7, 1, 0, 12, 5];
        var owners = new int[sizes.Sum()];
        for (var rank = 0; rank < worldSize; rank++)
        {
            var layout = ShardLayout.Compute(sizes, worldSize, rank);
            foreach (var segment in layout.Segments)
            {
                Assert.InRange(segment.ShardOffset + segment.Length, 0, layout.ShardElements);
                for (var i = 0L; i < segment.Length; i++)
                    owners[layout.ParameterOffsets[segment.ParameterIndex] + segment.ParameterOffset + i]++;
            }
        }
        Assert.All(owners, count => Assert.Equal(1, count));
    }

    [Fact]
    public void Rejects_a_rank_outside_the_world() =>
        Assert.Throws<StratusUserException>(() => ShardLayout.Compute([4], 2, 2));
}
