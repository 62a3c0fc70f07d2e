// The seam for learned safety classifiers (a fine-tuned small transformer, an ONNX model, a
// remote model server): the classifier returns a probability per category, and
// ClassifierProvider turns probabilities into severities with configurable thresholds.
namespace Stratus.Safety;

public interface ISafetyClassifier
{
    string Name { get; }

    /// <summary>Probability in [0, 1] per category it knows; categories it does not know are
    /// left out.</summary>
    ValueTask<IReadOnlyDictionary<SafetyCategory, double>> ScoreAsync(string text, ContentDirection direction, CancellationToken cancellationToken);
}

/// <summary>Score boundaries from probability to severity (score &lt; Low is safe).</summary>
public sealed record SeverityThresholds(double Low = 0.2, double Medium = 0.5, double High = 0.8)
{
    public Severity For(double score) =>
        score >= High ? Severity.High : score >= Medium ? Severity.Medium : score >= Low ? Severity.Low : Severity.Safe;
}

public sealed class ClassifierProvider(ISafetyClassifier classifier, SeverityThresholds? thresholds = null) : IContentSafetyProvider
{
    readonly SeverityThresholds thresholds = thresholds ?? new SeverityThresholds();

    public string Name => classifier.Name;

    /// <summary>A classifier judges the text it is given as a whole.</summary>
    public int StreamingWindow => 0;

    public async ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        var scores = await classifier.ScoreAsync(text, direction, cancellationToken);
        var results = new List<CategoryResult>();
        foreach (var (category, raw) in scores)
        {
            var score = Math.Clamp(raw, 0, 1);
            var severity = thresholds.For(score);
            results.Add(new CategoryResult(category, severity, score, Name, []));
        }
        return results;
    }
}
