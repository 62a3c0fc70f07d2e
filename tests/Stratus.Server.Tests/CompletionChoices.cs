// The first choice of a /v1/completions answer, streamed or not, as its parts: the text the
// chunks carry together, and the echo's and generation's logprobs tokens and text offsets.
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

static class CompletionChoices
{
    public sealed record FirstChoice(string Text, List<string> Tokens, List<int> Offsets);

    /// <param name="json">The response body: one JSON document, or server-sent events where
    /// <paramref name="stream"/>.</param>
    public static FirstChoice First(string json, bool stream)
    {
        var choices = stream
            ? json.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonNode.Parse(l["data: ".Length..])!["choices"]!.AsArray()).Where(c => c.Count > 0).Select(c => c[0]!).ToList()
            : [JsonNode.Parse(json)!["choices"]![0]!];
        var logprobs = choices.Where(c => c["logprobs"] is JsonObject).Select(c => c["logprobs"]!).ToList();
        return new(
            string.Concat(choices.Select(c => (string)c["text"]!)),
            [.. logprobs.SelectMany(l => l["tokens"]!.AsArray().Select(t => (string)t!))],
            [.. logprobs.SelectMany(l => l["text_offset"]!.AsArray().Select(o => (int)o!))]);
    }
}
