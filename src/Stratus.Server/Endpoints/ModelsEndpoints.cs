// GET /v1/models and GET /v1/models/{id}: the models this server serves, each with the registered
// version it came from where it was served by reference (registered_version, Stratus's own field).
using Stratus.Server.Api;
using Stratus.Server.Hosting;

namespace Stratus.Server.Endpoints;

public static class ModelsEndpoints
{
    public static RouteGroupBuilder MapModels(this RouteGroupBuilder group)
    {
        group.MapGet("/models", (HttpContext http, ServedModels servedModels) =>
        {
            // An empty list while they load would say the server serves none.
            servedModels.EnsureLoaded();
            var cards = new List<ModelCard>(servedModels.All.Count);
            foreach (var model in servedModels.All) cards.Add(Card(model));
            return http.Response.WriteAsJsonAsync(new ModelList(cards), OpenAiJson.Options, http.RequestAborted);
        });
        group.MapGet("/models/{id}", (HttpContext http, ServedModels servedModels, string id) =>
            http.Response.WriteAsJsonAsync(Card(servedModels.Get(id)), OpenAiJson.Options, http.RequestAborted));
        return group;
    }

    static ModelCard Card(ServedModel model) => new(model.Name, model.Created, model.ContextLength, model.RegisteredVersion);
}
