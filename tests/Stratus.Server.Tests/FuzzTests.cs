// Over a thousand malformed requests (broken JSON, wrong types, huge and negative numbers,
// empty messages, invalid UTF-8, oversized bodies): each must be a 4xx in OpenAI's error
// shape that names no .NET type, and the server must still serve afterwards.
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Stratus.Server.Tests;

public sealed class FuzzTests(TinyModelServer fixture) : IClassFixture<TinyModelServer>
{
    static readonly string[] Paths = ["/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"];

    const string ValidChat = """{"model":"tiny","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"temperature":0.5,"top_p":0.9,"n":1,"stop":["x"],"seed":1,"logprobs":true,"top_logprobs":2,"stream":false}""";
    const string ValidCompletion = """{"model":"tiny","prompt":"hello","max_tokens":4,"temperature":0.5,"top_k":3,"min_p":0.1,"logprobs":1,"echo":false,"presence_penalty":0.5}""";

    static readonly (string Field, string[] BadValues)[] ChatFields =
    [
        ("model", ["1", "true", "[]", "{}", "\"\"", "\"nope\""]),
        ("messages", ["[]", "\"hi\"", "1", "{}", "[1]", "[\"x\"]", "[{}]", "[{\"role\":\"user\"}]", "[{\"role\":\"wizard\",\"content\":\"x\"}]",
            "[{\"role\":\"user\",\"content\":5}]", "[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]", "[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]",
            "[{\"role\":1,\"content\":\"x\"}]", "[{\"role\":\"user\",\"content\":\"é€😀\"}]", "null"]),
        ("max_tokens", ["-1", "0", "1e30", "99999999999", "\"5\"", "1.5", "true", "[]", "100000"]),
        ("max_completion_tokens", ["-5", "0", "\"x\"", "1e40"]),
        ("temperature", ["-1", "2.5", "1e308", "\"hot\"", "[]", "{}"]),
        ("top_p", ["0", "-0.5", "1.5", "\"x\"", "false"]),
        ("top_k", ["-2", "1.5", "\"k\"", "1e20"]),
        ("min_p", ["-0.1", "1.1", "\"x\""]),
        ("n", ["0", "-1", "1000000", "17", "\"2\"", "2.5"]),
        ("stop", ["1", "[1]", "[\"a\",\"b\",\"c\",\"d\",\"e\"]", "\"\"", "[\"\"]", "{}", "true"]),
        ("seed", ["\"s\"", "1e30", "1.5", "[]"]),
        ("presence_penalty", ["-3", "2.1", "\"x\""]),
        ("frequency_penalty", ["-2.5", "9", "[]"]),
        ("repetition_penalty", ["0", "-1", "3", "\"x\""]),
        ("logit_bias", ["[]", "1", "{\"a\":1}", "{\"5\":101}", "{\"5\":\"x\"}", "{\"999999\":1}", "{\"-1\":1}"]),
        ("logprobs", ["\"yes\"", "1", "[]"]),
        ("top_logprobs", ["-1", "21", "\"x\""]),
        ("user", ["1", "[]", "{}"]),
        ("stream", ["\"yes\"", "1", "{}"]),
        ("stream_options", ["1", "\"x\"", "[]", "{\"include_usage\":\"yes\"}"]),
    ];

    static readonly (string Field, string[] BadValues)[] CompletionFields =
    [
        ("prompt", ["1", "true", "{}", "[]", "[{}]", "[[\"a\"]]", "[1.5]", "[-1]", "[999999]", "\"é\"", "null", "[[1,2],[3,\"x\"]]"]),
        ("logprobs", ["-1", "21", "true", "\"x\""]),
        ("echo", ["\"yes\"", "1"]),
        ("max_tokens", ["-1", "1e30", "5000"]),
    ];

    [Fact]
    public async Task Malformed_requests_are_4xx_in_openai_shape_and_the_server_survives()
    {
        var cases = BuildCases(new Random(1234));
        Assert.True(cases.Count >= 1000, $"only {cases.Count} cases");
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Parallel.ForEachAsync(cases, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (c, token) =>
        {
            var (status, body) = await Send(c, token);
            if (status is < 400 or >= 500 || !IsOpenAiError(body) || NamesDotNetTypes(body))
                failures.Add($"{c.Path} {Preview(c.Body)} -> {status} {body[..Math.Min(body.Length, 200)]}");
        });
        Assert.True(failures.IsEmpty, $"{failures.Count} bad answers, e.g.:\n{string.Join("\n", failures.Take(10))}");

        using var healthy = await fixture.Http.PostAsync("/v1/chat/completions", new StringContent(ValidChat, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
        Assert.Equal(0, fixture.Model.Engine.KvBlocksUsed);
    }

    [Fact]
    public async Task A_body_not_sent_as_JSON_is_a_400_that_names_the_header_and_a_charset_is_accepted()
    {
        foreach (var path in Paths)
        {
            foreach (var contentType in new[] { "text/plain", "application/x-www-form-urlencoded", null })
            {
                using var content = new ByteArrayContent(Encoding.UTF8.GetBytes(ValidCompletion));
                if (contentType is not null) content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
                using var refused = await fixture.Http.PostAsync(path, content);
                Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
                var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
                Assert.Equal("unsupported_content_type", error.GetProperty("code").GetString());
                Assert.Contains("Content-Type: application/json", error.GetProperty("message").GetString());
            }
        }
        using var withCharset = await fixture.Http.PostAsync("/v1/chat/completions", new StringContent(ValidChat, Encoding.UTF8, "application/json"));
        Assert.Equal("application/json; charset=utf-8", withCharset.RequestMessage!.Content!.Headers.ContentType!.ToString());
        Assert.Equal(HttpStatusCode.OK, withCharset.StatusCode);
    }

    /// <summary>A body in the charset its Content-Type names (.NET's StringContent with
    /// Encoding.Unicode sends utf-16) is read in it, as ASP.NET Core's ReadFromJsonAsync reads it,
    /// by the API and the admin API alike; bytes that are not text in it are a 400, and a charset
    /// the server does not know a 415 that names the fix.</summary>
    [Fact]
    public async Task A_body_in_another_charset_is_read_in_it_and_an_unknown_charset_is_a_415()
    {
        const string tokenize = """{"model":"tiny","prompt":"hello"}""";
        using var utf8 = await fixture.Http.PostAsync("/tokenize", new StringContent(tokenize, Encoding.UTF8, "application/json"));
        var expected = await utf8.Content.ReadAsStringAsync();
        foreach (var encoding in new[] { Encoding.Unicode, Encoding.BigEndianUnicode, Encoding.UTF32, Encoding.Latin1, Encoding.ASCII })
        {
            using var response = await fixture.Http.PostAsync("/tokenize", new StringContent(tokenize, encoding, "application/json"));
            Assert.Equal((HttpStatusCode.OK, expected), (response.StatusCode, await response.Content.ReadAsStringAsync()));
        }
        // A byte order mark, and the charset quoted.
        using (var content = new ByteArrayContent([.. Encoding.Unicode.GetPreamble(), .. Encoding.Unicode.GetBytes(tokenize)]))
        {
            content.Headers.TryAddWithoutValidation("Content-Type", "application/json; charset=\"UTF-16\"");
            using var response = await fixture.Http.PostAsync("/tokenize", content);
            Assert.Equal((HttpStatusCode.OK, expected), (response.StatusCode, await response.Content.ReadAsStringAsync()));
        }
        // The admin API's bodies too, with text beyond ASCII.
        foreach (var encoding in new[] { Encoding.Unicode, Encoding.Latin1 })
        {
            using var response = await fixture.Http.PutAsync("/v1/admin/blocklists/charset-test", new StringContent("""{"terms":["café"]}""", encoding, "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("café", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("terms")[0].GetString());
        }
        using (await fixture.Http.DeleteAsync("/v1/admin/blocklists/charset-test")) { }

        // A lone UTF-16 surrogate is no text in utf-16.
        using (var content = new ByteArrayContent([.. Encoding.Unicode.GetBytes("{\"model\":\"tiny\",\"prompt\":\""), 0x00, 0xD8, .. Encoding.Unicode.GetBytes("\"}")]))
        {
            content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/json; charset=utf-16");
            using var response = await fixture.Http.PostAsync("/tokenize", content);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("not valid utf-16", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString());
        }
        foreach (var path in new[] { "/v1/chat/completions", "/v1/admin/blocklists/charset-test" })
        {
            using var content = new StringContent(ValidChat);
            content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/json; charset=klingon");
            using var refused = await fixture.Http.SendAsync(new HttpRequestMessage(path.Contains("admin") ? HttpMethod.Put : HttpMethod.Post, path) { Content = content });
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, refused.StatusCode);
            var message = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("message").GetString()!;
            Assert.Contains("'klingon'", message);
            Assert.Contains("'Content-Type: application/json'", message);
            Assert.DoesNotContain('\n', message);
        }
    }

    /// <summary>The 415 for an unknown charset carries a `code`, as every other error of the API
    /// and the admin API does, the one the other content-type refusal has.</summary>
    [Fact]
    public async Task An_unknown_charset_is_a_415_with_the_unsupported_content_type_code()
    {
        foreach (var path in new[] { "/v1/chat/completions", "/v1/admin/blocklists/charset-test" })
        {
            using var content = new StringContent(ValidChat);
            content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/json; charset=klingon");
            using var refused = await fixture.Http.SendAsync(new HttpRequestMessage(path.Contains("admin") ? HttpMethod.Put : HttpMethod.Post, path) { Content = content });
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, refused.StatusCode);
            Assert.Equal("unsupported_content_type", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        }
    }

    /// <summary>A UTF-8 body may begin with its byte order mark, as a UTF-16 one may (and as
    /// ASP.NET Core's ReadFromJsonAsync reads both): charset named or not, it is no part of the JSON.</summary>
    [Fact]
    public async Task A_utf8_body_with_a_byte_order_mark_is_read_as_one_without()
    {
        const string tokenize = """{"model":"tiny","prompt":"hello"}""";
        using var plain = await fixture.Http.PostAsync("/tokenize", new StringContent(tokenize, Encoding.UTF8, "application/json"));
        var expected = await plain.Content.ReadAsStringAsync();
        foreach (var type in new[] { "application/json", "application/json; charset=utf-8", "application/json; charset=UTF8" })
        {
            using var content = new ByteArrayContent([.. Encoding.UTF8.GetPreamble(), .. Encoding.UTF8.GetBytes(tokenize)]);
            content.Headers.TryAddWithoutValidation("Content-Type", type);
            using var response = await fixture.Http.PostAsync("/tokenize", content);
            Assert.Equal((HttpStatusCode.OK, expected), (response.StatusCode, await response.Content.ReadAsStringAsync()));
        }
    }

    /// <summary>Messages say what to send ("a whole number"), not the server's types ("Nullable`1[System.Int32]").</summary>
    static bool NamesDotNetTypes(string body) => body.Contains("System.") || body.Contains("`1") || body.Contains("Stratus.");

    const string FlipCharacters = "{}[]\":,0-9e\\";

    sealed record Case(string Path, byte[] Body, bool Chunked = false);

    static List<Case> BuildCases(Random random)
    {
        var cases = new List<Case>();
        void Add(string path, string json) => cases.Add(new Case(path, Encoding.UTF8.GetBytes(json)));

        // Wrong types and out-of-range values, one field at a time, in otherwise valid bodies.
        foreach (var (field, values) in ChatFields)
            foreach (var value in values)
            {
                Add("/v1/chat/completions", Replace(ValidChat, field, value));
                Add("/v1/chat/completions", Replace(ValidChat, field, value).Replace("\"stream\":false", "\"stream\":true"));
            }
        foreach (var (field, values) in CompletionFields)
            foreach (var value in values) Add("/v1/completions", Replace(ValidCompletion, field, value));

        // Escaped lone surrogates: valid JSON, but not text (written out whole: JsonNode cannot hold them).
        foreach (var (path, body) in new[]
        {
            ("/v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"a\ud800"}]}"""),
            ("/v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"\udc00"}]}]}"""),
            ("/v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"a"}],"stop":["x\udfff"]}"""),
            ("/v1/completions", """{"model":"tiny","prompt":"a\ud800"}"""),
            ("/v1/completions", """{"model":"tiny","prompt":["\udc00b"]}"""),
            ("/tokenize", """{"model":"tiny","prompt":"\ud800"}"""),
        })
            Add(path, body);

        // Not an object at all, and empty bodies.
        foreach (var path in Paths)
            foreach (var body in new[] { "", " ", "null", "[]", "\"text\"", "42", "true", "{", "}", "{]", "{\"model\":}", "{\"model\":\"tiny\",}", "{'model':'tiny'}", "{\"model\":\"tiny\"}", "{}" })
                Add(path, body);

        // Truncations of valid bodies (never complete, so never valid JSON).
        foreach (var valid in new[] { ValidChat, ValidCompletion })
            for (var i = 0; i < 200; i++)
                Add(valid == ValidChat ? "/v1/chat/completions" : "/v1/completions", valid[..random.Next(0, valid.Length - 1)]);

        // Random byte flips in valid bodies that leave invalid JSON, or valid JSON with a bad field.
        for (var i = 0; i < 700; i++)
        {
            var bytes = Encoding.UTF8.GetBytes(random.Next(2) == 0 ? ValidChat : ValidCompletion);
            var path = bytes.Length == ValidChat.Length ? "/v1/chat/completions" : "/v1/completions";
            for (var f = 0; f < 1 + random.Next(3); f++) bytes[random.Next(bytes.Length)] = (byte)FlipCharacters[random.Next(FlipCharacters.Length)];
            if (IsValidRequest(bytes)) continue;
            cases.Add(new Case(path, bytes));
        }

        // Invalid UTF-8 inside strings and at the top level.
        foreach (var bad in new byte[][] { [0xC3, 0x28], [0xFF], [0xED, 0xA0, 0x80], [0xF0, 0x28, 0x8C, 0x28], [0x80, 0x80] })
            foreach (var path in Paths)
            {
                var prefix = Encoding.UTF8.GetBytes("{\"model\":\"tiny\",\"prompt\":\"a");
                var suffix = Encoding.UTF8.GetBytes("\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tokens\":[1]}");
                cases.Add(new Case(path, [.. prefix, .. bad, .. suffix]));
                cases.Add(new Case(path, bad));
            }

        // Huge numbers and deep nesting.
        foreach (var path in Paths)
        {
            Add(path, "{\"model\":\"tiny\",\"max_tokens\":" + new string('9', 400) + "}");
            Add(path, new string('[', 5000) + new string(']', 5000));
            Add(path, "{\"model\":\"tiny\",\"tokens\":[" + string.Join(",", Enumerable.Repeat("-7", 50)) + "]}");
        }

        // Oversized bodies (the test server allows 64 KiB).
        foreach (var path in Paths)
        {
            Add(path, "{\"model\":\"tiny\",\"prompt\":\"" + new string('a', 100_000) + "\"}");
            Add(path, "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('b', 300_000) + "\"}]}");
            cases.Add(new Case(path, Encoding.UTF8.GetBytes("{\"model\":\"tiny\",\"prompt\":\"" + new string('c', 80_000) + "\"}"), Chunked: true));
        }
        return cases;
    }

    static string Replace(string json, string field, string value)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node[field] = System.Text.Json.Nodes.JsonNode.Parse(value);
        return node.ToJsonString();
    }

    /// <summary>A flipped body that happens to be a valid request is no fuzz case.</summary>
    static bool IsValidRequest(byte[] bytes)
    {
        try
        {
            using var document = JsonDocument.Parse(bytes);
            return true; // well-formed JSON: could be valid after the flip; skip to keep the assertion exact
        }
        catch (JsonException) { return false; }
    }

    async Task<(int Status, string Body)> Send(Case c, CancellationToken token)
    {
        if (c.Body.Length > MaxBody) return await SendRaw(c, token);
        using var content = new ByteArrayContent(c.Body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await fixture.Http.PostAsync(c.Path, content, token);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync(token));
    }

    const int MaxBody = 64 * 1024;

    /// <summary>Sends an oversized body in 4 KiB pieces over a raw socket (chunked or with a
    /// Content-Length): the server answers 413 and closes without reading the rest, which
    /// HttpClient reports as a broken connection instead of the answer.</summary>
    async Task<(int Status, string Body)> SendRaw(Case c, CancellationToken token)
    {
        using var socket = new System.Net.Sockets.TcpClient();
        await socket.ConnectAsync(fixture.Server.RootUrl.Host, fixture.Server.RootUrl.Port, token);
        var stream = socket.GetStream();
        var framing = c.Chunked ? "Transfer-Encoding: chunked" : $"Content-Length: {c.Body.Length}";
        var head = $"POST {c.Path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head), token);
        try
        {
            for (var at = 0; at < c.Body.Length; at += 4096)
            {
                var size = Math.Min(4096, c.Body.Length - at);
                if (c.Chunked) await stream.WriteAsync(Encoding.ASCII.GetBytes($"{size:X}\r\n"), token);
                await stream.WriteAsync(c.Body.AsMemory(at, size), token);
                if (c.Chunked) await stream.WriteAsync("\r\n"u8.ToArray(), token);
            }
            if (c.Chunked) await stream.WriteAsync("0\r\n\r\n"u8.ToArray(), token);
        }
        catch (IOException)
        {
            // The server stopped reading: its answer is already on the way.
        }
        var received = new MemoryStream();
        try { await stream.CopyToAsync(received, token); }
        catch (IOException)
        {
            // A reset after the answer: keep what arrived.
        }
        var answer = Encoding.UTF8.GetString(received.ToArray());
        if (answer.Length == 0) return (0, "no answer before the connection closed");
        var status = int.Parse(answer.Split(' ')[1]);
        var body = answer[(answer.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        // Kestrel answers a chunked request with a Content-Length body; strip chunk framing if any.
        return (status, body.StartsWith('{') ? body : body[(body.IndexOf('\n') + 1)..].TrimEnd('\r', '\n', '0'));
    }

    static bool IsOpenAiError(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var error = document.RootElement.GetProperty("error");
            return error.GetProperty("message").ValueKind == JsonValueKind.String
                && error.GetProperty("type").ValueKind == JsonValueKind.String
                && error.TryGetProperty("param", out _) && error.TryGetProperty("code", out _);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException) { return false; }
    }

    static string Preview(byte[] body) => body.Length > 120 ? Encoding.UTF8.GetString(body, 0, 120) + "..." : Encoding.UTF8.GetString(body);
}
