// Small corpora and tiny configs shared by the tests, made on the fly (no ../shared needed).
using System.Text;
using Stratus.Data;
using Stratus.Training;

namespace Stratus.Tests;

static class TestData
{
    public static string Corpus(int lines = 400)
    {
        var random = new Random(7);
        var words = new[] { "the", "king", "shall", "speak", "of", "love", "and", "war", "my", "lord", "good", "night", "sweet", "prince" };
        var text = new StringBuilder();
        for (var i = 0; i < lines; i++)
        {
            text.Append(i % 5 == 0 ? "ROMEO:\n" : "");
            for (var w = 0; w < 8; w++) text.Append(words[random.Next(words.Length)]).Append(w < 7 ? ' ' : '\n');
        }
        return text.ToString();
    }

    public static string PrepareCharDataset(TempDirectory temp)
    {
        var input = temp["corpus.txt"];
        File.WriteAllText(input, Corpus());
        var data = temp["data"];
        DatasetPreparer.Prepare(input, data, "char");
        return data;
    }

    /// <summary>A char dataset and a run of <see cref="TinyConfig"/> trained <paramref name="steps"/>
    /// steps on it (checkpoints/last and best saved), in <paramref name="temp"/>'s "data" and "run".</summary>
    public static (string Data, string Run) TrainedRun(TempDirectory temp, int steps = 5)
    {
        var data = PrepareCharDataset(temp);
        var run = temp["run"];
        using (var trainer = Trainer.Start(TinyConfig with { MaxIters = steps }, data, run)) trainer.Run();
        return (data, run);
    }

    public static TrainConfig TinyConfig => new()
    {
        Model = new() { NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 16, Bias = false },
        BatchSize = 4,
        LearningRate = 3e-3, MinLr = 3e-4, MaxIters = 20, LrDecayIters = 20, WarmupIters = 2,
        EvalInterval = 10, EvalIters = 2, LogInterval = 1, CheckpointInterval = 5, Seed = 42, Beta2 = 0.99,
    };
}
