// The operators' dashboard at /dashboard/: the files of wwwroot/dashboard, embedded in this
// assembly and answered from memory. They hold no data, so they are answered without a key
// (TrustRoutes.IsAnonymous asks IsFile); the page reads everything it shows from the
// authenticated API with the key its operator pastes in. Each file carries a Content
// Security Policy that lets it run this server's scripts alone and talk to this server alone.
using System.Collections.Frozen;
using System.Security.Cryptography;

namespace Stratus.Server.Endpoints;

public static class DashboardEndpoints
{
    public const string Prefix = "/dashboard";
    const string ResourceFolder = "wwwroot/dashboard/";

    /// <summary>No inline script or style, nothing from elsewhere, no framing: a page that shows
    /// audit entries and key names must not run what those texts might smuggle in.</summary>
    const string ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    sealed record DashboardFile(byte[] Content, string ContentType, string ETag);

    // By request path: each file at /dashboard/<its path under wwwroot/dashboard>.
    // Case-insensitive, as routing matches.
    static readonly FrozenDictionary<string, DashboardFile> Files = Load();

    /// <summary>Whether <paramref name="path"/> is exactly one of the dashboard's files, the page
    /// at /dashboard/ or the /dashboard that redirects to it; nothing below or beside them is.</summary>
    public static bool IsFile(string? path) =>
        path is not null && (Files.ContainsKey(path) || path.Equals(Prefix, StringComparison.OrdinalIgnoreCase) || path.Equals(Prefix + "/", StringComparison.OrdinalIgnoreCase));

    public static IEndpointRouteBuilder MapDashboard(this IEndpointRouteBuilder app)
    {
        string[] reading = [HttpMethods.Get, HttpMethods.Head];
        var index = Files[$"{Prefix}/index.html"];
        // Routing matches /dashboard and /dashboard/ alike; the page is answered at the second
        // only, so that its relative links (its files, ../v1/...) resolve below it, also behind a
        // proxy that serves this server under a path of its own (hence a relative Location).
        app.MapMethods(Prefix, reading, (HttpContext http) => http.Request.Path.Value!.EndsWith('/') ? Serve(http, index) : Redirect(http));
        foreach (var (path, file) in Files)
            app.MapMethods(path, reading, (HttpContext http) => Serve(http, file));
        return app;
    }

    static IResult Redirect(HttpContext http)
    {
        SetSecurityHeaders(http.Response.Headers);
        return Results.Redirect("dashboard/");
    }

    /// <summary>On every answer at /dashboard, the redirect and a 304 included.</summary>
    static void SetSecurityHeaders(IHeaderDictionary headers)
    {
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        // frame-ancestors' equivalent for browsers that predate it.
        headers.XFrameOptions = "DENY";
        headers.XContentTypeOptions = "nosniff";
        headers["Referrer-Policy"] = "no-referrer";
    }

    static IResult Serve(HttpContext http, DashboardFile file)
    {
        var headers = http.Response.Headers;
        SetSecurityHeaders(headers);
        // Revalidated on every load, so a browser never runs an older server's script.
        headers.CacheControl = "no-cache";
        headers.ETag = file.ETag;
        if (http.Request.Headers.IfNoneMatch == file.ETag) return Results.StatusCode(StatusCodes.Status304NotModified);
        return Results.Bytes(file.Content, file.ContentType);
    }

    static FrozenDictionary<string, DashboardFile> Load()
    {
        var assembly = typeof(DashboardEndpoints).Assembly;
        var files = new Dictionary<string, DashboardFile>(StringComparer.OrdinalIgnoreCase);
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            var name = resource.Replace('\\', '/');
            if (!name.StartsWith(ResourceFolder, StringComparison.Ordinal)) continue;
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var bytes = new MemoryStream();
            stream.CopyTo(bytes);
            var content = bytes.ToArray();
            var relative = name[ResourceFolder.Length..];
            var file = new DashboardFile(content, ContentType(relative), $"\"{Convert.ToHexStringLower(SHA256.HashData(content))[..16]}\"");
            files[$"{Prefix}/{relative}"] = file;
        }
        return files.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);
    }

    static string ContentType(string name) => Path.GetExtension(name) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        var other => throw new InvalidOperationException($"wwwroot/dashboard holds a {other} file; name its content type in DashboardEndpoints.ContentType"),
    };
}
