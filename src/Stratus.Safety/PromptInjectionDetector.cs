// Detects prompt injection and jailbreak attempts in prompts: instruction overrides ("ignore
// previous instructions"), role-play jailbreaks (DAN, "pretend you are", developer mode),
// system-prompt extraction ("repeat your system prompt"), requests to drop restrictions, forged
// role markers and claimed authority. Each family is a weighted signal; the score combines the
// strongest hit of each family as a noisy-OR (1 - prod(1 - w)), so one weak cue ("pretend you
// are a pirate") stays low while several independent cues add up to high.
using System.Text.RegularExpressions;

namespace Stratus.Safety;

public sealed class PromptInjectionDetector : IContentSafetyProvider
{
    /// <summary>One cue: a family (several cues of one family count once), a weight in (0, 1)
    /// and a pattern.</summary>
    public sealed record Signal(string Family, double Weight, Regex Pattern);

    const RegexOptions Options = RegexOptions.IgnoreCase | RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture;
    static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(200);

    static Signal S(string family, double weight, string pattern) => new(family, weight, new Regex(pattern, Options, Timeout));

    const string Previous = @"(?:all\s+|any\s+|the\s+|your\s+|my\s+|these\s+|those\s+)*(?:previous|prior|above|earlier|preceding|initial|original|former|system|developer)";
    const string Instructions = @"(?:instructions?|rules|directions|directives|prompts?|guidelines|guidance|context|constraints|programming|commands)";

    public static IReadOnlyList<Signal> DefaultSignals { get; } =
    [
        S("override", 0.6, $@"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)\s+{Previous}\s+{Instructions}"),
        S("override", 0.5, $@"\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|(?:said|written)\s+(?:above|before))"),
        S("override", 0.45, @"\bnew\s+instructions?\s*:"),
        S("override", 0.4, @"\b(?:from\s+now\s+on|henceforth),?\s+you\s+(?:will|must|shall|are)\b"),
        S("roleplay", 0.6, @"(?-i:\bDAN\b)|\bdo\s+anything\s+now\b"),
        S("roleplay", 0.5, @"\b(?:developer|god|jailbreak|unrestricted|unfiltered)\s+mode\b"),
        S("roleplay", 0.5, @"\byou\s+are\s+(?:no\s+longer|not)\s+(?:bound|restricted|limited|an?\s+(?:AI|assistant|language\s+model))"),
        S("roleplay", 0.45, @"\b(?:act|behave|respond)\s+as\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|evil|jailbroken|amoral)"),
        S("roleplay", 0.3, @"\bpretend\s+(?:that\s+)?(?:you\s+are|you're|to\s+be)\b"),
        S("roleplay", 0.3, @"\b(?:role-?play|imagine)\s+(?:that\s+)?you\s+(?:are|have)\s+no\b"),
        S("extraction", 0.6, @"\b(?:repeat|print|show|reveal|output|display|tell\s+me|give\s+me|leak|dump|write\s+out|what\s+(?:is|are|was|were))\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|exact\s+|entire\s+|original\s+|hidden\s+|secret\s+|initial\s+)*(?:system|initial|hidden|original|secret|developer)\s+(?:prompt|instructions?|message|rules)"),
        S("extraction", 0.5, @"\b(?:repeat|print|output)\s+(?:everything|all\s+(?:the\s+)?text)\s+(?:above|before)\b"),
        S("extraction", 0.4, @"\bwhat\s+(?:were|are)\s+you\s+told\s+(?:before|at\s+the\s+start|initially)\b"),
        S("unrestricted", 0.3, @"\bwithout\s+(?:any\s+)?(?:restrictions|filters?|limitations|censorship|moral|ethical)\b"),
        S("unrestricted", 0.3, @"\b(?:no|ignore\s+(?:your|all))\s+(?:ethical|safety|content)\s+(?:guidelines|policies|filters|rules)\b"),
        S("unrestricted", 0.25, @"\b(?:never|don't|do\s+not)\s+refuse\b"),
        S("forged_role", 0.35, @"<\|im_start\|>\s*system|<\|system\|>|\[/?(?:system|INST)\]|(?m:^\s*#{0,3}\s*system\s*:)|</s>"),
        S("authority", 0.2, @"\bI\s+am\s+(?:your|the|an?)\s+(?:developer|administrator|admin|creator|owner|OpenAI\s+employee)\b"),
    ];

    /// <summary>The default signals' patterns, shared by every detector: each builds its linear-time
    /// engine at its first check (SafetyRegex), 24 MiB and 0.1-0.4 s for the 18 on the 2-core machine,
    /// which a detector of its own would pay at every pipeline built (every 5 s for a deployment
    /// taking requests).</summary>
    static readonly SafetyRegex[] DefaultPatterns = [.. DefaultSignals.Select(s => new SafetyRegex(s.Pattern))];

    readonly IReadOnlyList<Signal> signals;
    /// <summary>Each signal's pattern, in the order of <see cref="signals"/>.</summary>
    readonly SafetyRegex[] patterns;

    public PromptInjectionDetector(IReadOnlyList<Signal>? signals = null) : this(signals, null) { }

    /// <param name="matchTimeout">Bounds each signal's first try in place of its pattern's own
    /// match timeout: tests make it fire.</param>
    internal PromptInjectionDetector(IReadOnlyList<Signal>? signals, TimeSpan? matchTimeout)
    {
        this.signals = signals ?? DefaultSignals;
        foreach (var s in this.signals)
            if (s.Weight is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(signals), $"Signal weight {s.Weight} of family {s.Family} must be in (0, 1).");
        patterns = this.signals == DefaultSignals && matchTimeout is null
            ? DefaultPatterns
            : [.. this.signals.Select(s => new SafetyRegex(matchTimeout is { } timeout ? new Regex(s.Pattern.ToString(), s.Pattern.Options, timeout) : s.Pattern))];
    }

    public string Name => "prompt_injection";

    /// <summary>Injection is a property of prompts; completions are not checked.</summary>
    public int StreamingWindow => 0;

    /// <summary>Score boundaries: one strong cue (0.6) is medium, two families are high.</summary>
    public static Severity SeverityFor(double score) => score switch
    {
        < 0.25 => Severity.Safe,
        < 0.5 => Severity.Low,
        < 0.75 => Severity.Medium,
        _ => Severity.High,
    };

    public ValueTask<IReadOnlyList<CategoryResult>> AnalyzeAsync(string text, ContentDirection direction, CancellationToken cancellationToken)
    {
        if (direction != ContentDirection.Prompt) return ValueTask.FromResult<IReadOnlyList<CategoryResult>>([]);
        var (score, matches) = Score(text);
        if (matches.Count == 0) return ValueTask.FromResult<IReadOnlyList<CategoryResult>>([]);
        IReadOnlyList<CategoryResult> results = [new CategoryResult(SafetyCategory.Jailbreak, SeverityFor(score), score, Name, matches)];
        return ValueTask.FromResult(results);
    }

    /// <summary>The combined score and the spans of every cue that fired (labelled by family).</summary>
    public (double Score, IReadOnlyList<SafetyMatch> Matches) Score(string text)
    {
        var strongest = new Dictionary<string, double>();
        var matches = new List<SafetyMatch>();
        for (var i = 0; i < signals.Count; i++)
        {
            var signal = signals[i];
            var found = patterns[i].Find(text);
            if (found.MoveNext()) matches.Add(new SafetyMatch(found.Current.Index, found.Current.Length, signal.Family));
            // Where nothing could tell in time (SafetyRegex), input crafted to stall a signal is
            // itself a cue: count the signal as fired.
            else if (found.TimedOut) matches.Add(new SafetyMatch(0, text.Length, signal.Family + " (timed out)"));
            else continue;
            strongest[signal.Family] = Math.Max(strongest.GetValueOrDefault(signal.Family), signal.Weight);
        }
        var keep = 1.0;
        foreach (var w in strongest.Values) keep *= 1 - w;
        matches.Sort((a, b) => a.Start.CompareTo(b.Start));
        return (1 - keep, matches);
    }
}
