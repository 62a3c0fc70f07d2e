// Per-key requests-per-minute and tokens-per-minute, charged at two moments: the request in
// the authentication middleware (every authenticated request counts, whatever the endpoint),
// the tokens when a completion handler knows the prompt's size (Admit). Two QuotaEnforcers,
// each seeing only its own limit, keep the windows apart; a request refused for tokens has
// still used its request slot, as with OpenAI, where failed requests count toward RPM.
using Stratus.Platform;

namespace Stratus.Server.Trust;

public sealed class TrustQuotas(TimeProvider? time = null)
{
    readonly QuotaEnforcer requests = new(time);
    readonly QuotaEnforcer tokens = new(time);

    /// <summary>Charges one request against the key's RPM.</summary>
    public QuotaDecision AdmitRequest(ApiKeyRecord key) => requests.TryAdmit(RequestsOnly(key), 0, 0);

    /// <summary>Charges prompt + max_tokens against the key's TPM; correct it with the ticket.</summary>
    public QuotaDecision AdmitTokens(ApiKeyRecord key, int promptTokens, int maxTokens) =>
        tokens.TryAdmit(TokensOnly(key), promptTokens, maxTokens);

    /// <summary>Both windows as one header set; <paramref name="retryAfter"/> comes from a refusal.</summary>
    public RateLimitStatus StatusOf(ApiKeyRecord key, TimeSpan? retryAfter = null)
    {
        var r = requests.StatusOf(RequestsOnly(key));
        var t = tokens.StatusOf(TokensOnly(key));
        return new RateLimitStatus(r.LimitRequests, t.LimitTokens, r.RemainingRequests, t.RemainingTokens, r.ResetRequests, t.ResetTokens, retryAfter);
    }

    /// <summary>Drops a key's windows (after revocation).</summary>
    public void Forget(string keyId)
    {
        requests.Forget(keyId);
        tokens.Forget(keyId);
    }

    static ApiKeyRecord RequestsOnly(ApiKeyRecord key) => key with { Limits = new RateLimits(key.Limits.RequestsPerMinute, 0) };

    static ApiKeyRecord TokensOnly(ApiKeyRecord key) => key with { Limits = new RateLimits(0, key.Limits.TokensPerMinute) };
}
