using Stratus.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Stratus.Tests;

public sealed class NativeLoadingTests
{
    [Fact]
    public void Model_forward_and_backward_run_on_this_machine()
    {
        torch.manual_seed(1);
        using var model = new Gpt(new ModelConfig { VocabSize = 11, BlockSize = 8, NLayer = 1, NHead = 2, NEmbd = 8 });
        using var tokens = torch.randint(0, 11, [2, 8], dtype: ScalarType.Int64);
        using var logits = model.Forward(tokens);
        Assert.Equal(new long[] { 2, 8, 11 }, logits.shape);
        using var loss = nn.functional.cross_entropy(logits.view(-1, 11), tokens.view(-1));
        loss.backward();
        using var grad = model.parameters().First().grad!;
        Assert.True(grad.abs().sum().item<float>() > 0);
    }
}
