// /v1/completions stops at every id a model lists as ending a generation (an imported model's
// generation_config.json eos_token_id), not only at its tokenizer's eos_token, with
// finish_reason "stop"; ignore_eos generates past all of them, as vLLM does.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class EndOfGenerationTests(ByteLevelModelServer fixture) : IClassFixture<ByteLevelModelServer>
{
    async Task<JsonNode> Complete(bool ignoreEos)
    {
        var body = new Dictionary<string, object?>
        {
            ["model"] = "tiny", ["prompt"] = "ab", ["max_tokens"] = 5, ["ignore_eos"] = ignoreEos, ["logprobs"] = 0,
            ["logit_bias"] = new Dictionary<string, int> { [ByteLevelModelServer.ListedEnd.ToString()] = 100 },
        };
        using var response = await fixture.Server.Http.PostAsJsonAsync("/v1/completions", body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task A_completion_stops_at_an_end_of_generation_id_other_than_the_tokenizers_eos()
    {
        var stopped = await Complete(ignoreEos: false);
        Assert.Equal("stop", (string?)stopped["choices"]![0]!["finish_reason"]);
        Assert.Equal("", (string?)stopped["choices"]![0]!["text"]);
        Assert.Equal(1, (int)stopped["usage"]!["completion_tokens"]!);

        var ignored = (await Complete(ignoreEos: true))["choices"]![0]!;
        Assert.Equal("length", (string?)ignored["finish_reason"]);
        Assert.Equal(Enumerable.Repeat("<|end_of_text|>", 5), ignored["logprobs"]!["tokens"]!.AsArray().Select(t => (string)t!));
    }
}
