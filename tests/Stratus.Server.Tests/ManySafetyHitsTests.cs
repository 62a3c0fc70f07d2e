// Texts as large as the server takes, full of blocklist and PII hits: each is checked in time
// linear in its hits. Every hit was compared with every one found before it, so a 480 KiB
// moderation input of one blocked term repeated kept a core busy for minutes and its client
// waiting without a byte.
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class ManySafetyHitsTests(FullSizeBodyServer fixture) : IClassFixture<FullSizeBodyServer>
{
    // Two of them and their JSON fit the 1 MiB the server takes.
    const int InputChars = 480 * 1024;

    [Fact]
    public async Task A_large_input_full_of_blocked_terms_and_PII_is_judged_with_every_hit()
    {
        var http = fixture.Server.Http;
        using (var list = await http.PutAsJsonAsync("/v1/admin/blocklists/many-hits", new { terms = new[] { "a" }, category = "hate" }))
            Assert.True(list.IsSuccessStatusCode, await list.Content.ReadAsStringAsync());
        using (var policy = await http.PutAsJsonAsync($"/v1/admin/policies/{TinyModelServer.ModelName}",
            new { block_at = new { hate = "medium" }, pii = "block", blocklists = new[] { "many-hits" } }))
            Assert.True(policy.IsSuccessStatusCode, await policy.Content.ReadAsStringAsync());

        // 245,760 hits of the term; 70,217 e-mail addresses.
        var terms = string.Concat(Enumerable.Repeat("a ", InputChars / 2));
        var addresses = string.Concat(Enumerable.Repeat("x@y.de ", InputChars / 7));
        using var response = await http.PostAsJsonAsync("/v1/moderations", new { model = TinyModelServer.ModelName, input = new[] { terms, addresses } });
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var results = JsonNode.Parse(body)!["results"]!.AsArray();
        Assert.True((bool)results[0]!["categories"]!["hate"]!, body[..Math.Min(body.Length, 500)]);
        Assert.True((bool)results[1]!["flagged"]!, body[..Math.Min(body.Length, 500)]);

        // A chat prompt with a character outside the model's vocabulary is screened whole before
        // it is refused for that: blocked, as the policy says, in OpenAI's error shape.
        using var chat = await http.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = TinyModelServer.ModelName,
            messages = new[] { new { role = "user", content = "\u00e9 " + terms } },
            max_tokens = 1,
        });
        var error = JsonNode.Parse(await chat.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal(HttpStatusCode.BadRequest, chat.StatusCode);
        Assert.Equal("content_filter", (string?)error["code"]);
    }
}
