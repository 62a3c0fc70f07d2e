// The calls a host makes to wire the trust layer in:
//   builder.Services.AddStratusTrust(new TrustOptions { DataDir = ..., InsecureNoAuth = ... });
//   app.UseStratusTrust();           // before the endpoints run (WebApplication routes first)
//   app.MapStratusTrustEndpoints();  // /v1/moderations, /v1/admin/*, /v1/usage, /api/models, /api/key
using Microsoft.Extensions.Hosting;
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Trust;

public static class TrustServiceExtensions
{
    /// <summary>Opens the platform database in the data directory and registers StratusTrust
    /// and the startup guard. <paramref name="time"/> is the trust layer's clock (the system's
    /// unless a test sets it).</summary>
    /// <exception cref="Stratus.Safety.TrustUserException">No data directory can be determined,
    /// or its database is from a newer Stratus.</exception>
    public static IServiceCollection AddStratusTrust(this IServiceCollection services, TrustOptions options, TimeProvider? time = null)
    {
        services.AddSingleton(options);
        services.AddSingleton(new StratusTrust(options, time));
        services.AddHostedService<TrustStartupGuard>();
        // Prompt checks, token admission, output guards and usage in every generation request.
        services.AddSingleton<TrustGenerationFilter>();
        services.AddSingleton<IGenerationFilter>(provider => provider.GetRequiredService<TrustGenerationFilter>());
        // Blocked prompts are refused and audited as such before a request's own faults.
        services.AddSingleton<IPromptScreen>(provider => provider.GetRequiredService<TrustGenerationFilter>());
        return services;
    }

    /// <summary>Adds error translation and key authentication (scope, requests per minute,
    /// rate-limit headers). With WebApplication the route is already matched here, so scopes
    /// follow the matched endpoint; with a plain IApplicationBuilder call UseRouting first.
    /// A host whose own error middleware maps TrustUserException and ApiException (StratusServer)
    /// passes <paramref name="shapeErrors"/> false, so one middleware shapes (and counts) every
    /// error, the refusals of keys, scopes and requests per minute included.</summary>
    public static IApplicationBuilder UseStratusTrust(this IApplicationBuilder app, bool shapeErrors = true)
    {
        if (shapeErrors) app.UseMiddleware<TrustErrorMiddleware>();
        app.UseMiddleware<TrustAuthenticationMiddleware>(shapeErrors);
        return app;
    }

    /// <summary>The request's trust context; null on paths served without a key.</summary>
    public static RequestTrust? FindStratusTrust(this HttpContext context) => context.Features.Get<RequestTrust>();

    /// <summary>The request's trust context.</summary>
    /// <exception cref="InvalidOperationException">UseStratusTrust is missing from the pipeline,
    /// or this path is served without a key.</exception>
    public static RequestTrust GetStratusTrust(this HttpContext context) =>
        context.FindStratusTrust() ?? throw new InvalidOperationException(
            $"No trust context for {context.Request.Path}: call app.UseStratusTrust() before the endpoints, and do not ask for it on {string.Join(", ", TrustRoutes.AnonymousPaths)}.");

    /// <summary>Maps /v1/moderations (inference scope), the admin API under /v1/admin,
    /// GET /v1/usage and the model registry's /api/models (admin scope), and GET /api/key (any key).</summary>
    public static IEndpointRouteBuilder MapStratusTrustEndpoints(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapModerations();
        endpoints.MapTrustAdmin();
        endpoints.MapModelRegistry();
        endpoints.MapCallerKey();
        return endpoints;
    }
}
