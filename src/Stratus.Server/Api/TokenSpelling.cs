// How logprobs name a token: its text, or, when its bytes are not whole UTF-8 characters (a
// byte-level token holding part of one), "bytes:\xe2\x80" as OpenAI writes such tokens. Decoded
// alone they would all read "\uFFFD": alternatives would collide and say nothing of what they are.
using System.Text.Unicode;
using Stratus.Tokenization;

namespace Stratus.Server.Api;

static class TokenSpelling
{
    public static string Text(ITokenizer tokenizer, int token)
    {
        var bytes = tokenizer.TokenBytes(token);
        return Utf8.IsValid(bytes) ? Encoding.UTF8.GetString(bytes) : "bytes:" + string.Concat(bytes.Select(b => $"\\x{b:x2}"));
    }

    /// <summary>The token's bytes, as the chat API's `bytes` field lists them.</summary>
    public static int[] Bytes(ITokenizer tokenizer, int token) => Array.ConvertAll(tokenizer.TokenBytes(token), b => (int)b);
}
