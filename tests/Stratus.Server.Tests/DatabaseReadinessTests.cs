// /ready and /health while the platform database cannot be used, made so as a fault or an
// operator's hand would (its tables taken away under the running server, then given back). /ready
// answers 503 meanwhile, so a balancer takes the server out of rotation, and 200 once the database
// answers again; /health (liveness) stays 200, since a restart brings no database back. With keys
// /ready is authenticated, as every path but /health is, and the key's read fails first
// (storage_unavailable); with --insecure-no-auth nothing read the database before, and /ready said
// 200 while requests failed with storage_unavailable.
using System.Net;
using System.Text.Json.Nodes;

namespace Stratus.Server.Tests;

public sealed class DatabaseReadinessTests
{
    static readonly string[] Tables = ["api_keys", "usage_daily", "safety_policies", "blocklists", "audit_log"];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Ready_is_503_while_the_database_cannot_be_used_and_200_once_it_answers_while_health_stays_200(bool insecureNoAuth)
    {
        var fixture = new TinyModelServer { InsecureNoAuth = insecureNoAuth };
        await fixture.InitializeAsync();
        try
        {
            Assert.Equal("ready", await fixture.Http.GetStringAsync("/ready"));
            fixture.Sql(string.Concat(Tables.Select(table => $"ALTER TABLE {table} RENAME TO {table}_away;")));

            using var ready = await fixture.Http.GetAsync("/ready");
            var body = await ready.Content.ReadAsStringAsync();
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            var error = JsonNode.Parse(body)!["error"]!;
            Assert.Equal(insecureNoAuth ? "not_ready" : "storage_unavailable", (string?)error["code"]);
            Assert.Contains("its database of keys, usage and safety settings", (string?)error["message"]);
            // Clients have no business with the server's paths: its log names the database.
            Assert.DoesNotContain(fixture.DataDir, body);
            Assert.True(ready.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After: " + ready.Headers.RetryAfter);
            using (var anonymous = fixture.AnonymousClient()) Assert.Equal("ok", await anonymous.GetStringAsync("/health"));

            fixture.Sql(string.Concat(Tables.Select(table => $"ALTER TABLE {table}_away RENAME TO {table};")));
            Assert.Equal("ready", await fixture.Http.GetStringAsync("/ready"));
        }
        finally
        {
            await fixture.DisposeAsync();
        }
    }
}
