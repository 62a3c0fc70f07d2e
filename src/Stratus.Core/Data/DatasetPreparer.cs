// `stratus prepare`: a text file, a folder of .txt/.md files or a JSONL file (field "text")
// becomes train.bin and val.bin token shards, the tokenizer, and meta.json describing both.
//
// The corpus is streamed, never held whole: documents are read in pieces of about a million
// characters, cut where the tokenizer gives the same tokens piece by piece as for the whole text
// (ITokenizer.Cuts), encoded, and appended to one shard whose last val_fraction of tokens then
// moves to val.bin. Memory stays at a few pieces whatever the corpus size, and a text over .NET's
// 1G-character string limit is no obstacle.
using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using Stratus.Safety;
using Stratus.Tokenization;

namespace Stratus.Data;

/// <param name="UpToDate">The folder held this dataset already (the same source prepared with the
/// same settings), and was left as it was.</param>
public sealed record PreparedDataset(string Directory, ITokenizer Tokenizer, long TrainTokens, long ValTokens, string SourceSha256, bool UpToDate = false);

/// <summary>How far preparation is: <paramref name="Phase"/> is "hashing", "reading characters"
/// (a char vocabulary) or "tokenizing"; bytes are of the source files.</summary>
public readonly record struct PrepareProgress(string Phase, long BytesDone, long BytesTotal, long Tokens);

public static class DatasetPreparer
{
    public const string MetaFile = "meta.json";
    public const string TrainShard = "train.bin";
    public const string ValShard = "val.bin";
    /// <summary>The longest text handed to the tokenizer at once, where the tokenizer allows a cut.</summary>
    public const int DefaultPieceChars = 1 << 20;

    /// <param name="tokenizerFrom">Use this tokenizer (e.g. an imported model's) instead of
    /// creating one of <paramref name="tokenizerKind"/>.</param>
    /// <param name="overwrite">Replace a dataset of another source or other settings in the folder
    /// (DatasetFolder.Write).</param>
    public static PreparedDataset Prepare(string input, string outputDirectory, string tokenizerKind, double valFraction = 0.1,
        ITokenizer? tokenizerFrom = null, IProgress<PrepareProgress>? progress = null, int pieceChars = DefaultPieceChars, bool overwrite = false)
    {
        RequireValFraction(valFraction);
        var corpus = new Corpus(input, progress);
        // A character vocabulary is the corpus's own; a given tokenizer is known by its hash. One file
        // is read as JSONL documents or as plain text by its name alone, which its sha256 does not see.
        var settings = new JsonObject { ["format"] = "text", ["input"] = corpus.IsJsonl ? "jsonl" : "text" };
        if (tokenizerFrom is null) settings["tokenizer"] = tokenizerKind;
        else settings["tokenizer_sha256"] = TokenizerStore.Sha256(tokenizerFrom);
        return DatasetFolder.Write(outputDirectory, overwrite, new Preparation(corpus.Hash, settings, valFraction),
            (meta, stored) => new PreparedDataset(outputDirectory, stored, (long)meta["train_tokens"]!, (long)meta["val_tokens"]!, (string)meta["source"]!["sha256"]!, UpToDate: true),
            (sha256, files) =>
        {
            var tokenizer = tokenizerFrom ?? (tokenizerKind == "char" ? corpus.CharVocabulary(pieceChars) : TokenizerStore.Create(tokenizerKind));

            var documents = 0;
            var (trainCount, valCount) = TokenShard.WriteSplit(files, Path.Combine(outputDirectory, TrainShard), Path.Combine(outputDirectory, ValShard), tokenizer.VocabSize, all =>
            {
                documents = corpus.Tokenize(tokenizer, all, pieceChars);
                if (all.Count < 2) throw new StratusUserException($"{input} has too little text to train on ({all.Count} tokens)");
                return (long)(all.Count * (1 - valFraction));
            });
            TokenizerStore.Save(tokenizer, outputDirectory, files);
            var meta = new JsonObject
            {
                ["format"] = "stratus-dataset",
                ["version"] = 1,
                // Its kind, as a chat dataset's meta.json has it: the tokenizer is tokenizer.json,
                // beside it. A copy here (as datasets prepared before hold, which nothing reads)
                // made a 128k-token vocabulary's meta.json 9 MB, read by every prepare, train and eval.
                ["tokenizer"] = tokenizer.Kind,
                ["vocab_size"] = tokenizer.VocabSize,
                ["token_bytes"] = TokenShard.TokenBytesFor(tokenizer.VocabSize),
                ["train_tokens"] = trainCount,
                ["val_tokens"] = valCount,
                ["val_fraction"] = valFraction,
                ["source"] = new JsonObject { ["path"] = Path.GetFullPath(input), ["documents"] = documents, ["sha256"] = sha256 },
                [DatasetFolder.SettingsKey] = settings,
                ["created_utc"] = DateTime.UtcNow.ToString("O"),
            };
            // Said where there are some (a Llama's BOS), so a reader sees how documents start and
            // end; a dataset prepared before documents got them has no such key.
            var (before, after) = tokenizer.SpecialTokensAround;
            if (before.Count + after.Count > 0)
                meta["document_special_tokens"] = new JsonObject { ["before"] = JsonSerializer.SerializeToNode(before), ["after"] = JsonSerializer.SerializeToNode(after) };
            files.WriteJson(Path.Combine(outputDirectory, MetaFile), meta);
            return new PreparedDataset(outputDirectory, tokenizer, trainCount, valCount, sha256);
        });
    }

    /// <summary>A dataset's meta.json, or null where it has none (or it is not a JSON object).</summary>
    internal static JsonObject? ReadMeta(string datasetDirectory)
    {
        var path = Path.Combine(datasetDirectory, MetaFile);
        return File.Exists(path) ? JsonText.ParseFile(path, hint: "Run `stratus prepare` for this folder again.") as JsonObject : null;
    }

    /// <summary>Refuses a val fraction outside [0, 1) before anything is read or written. NaN fails
    /// every comparison, so the test is written to let only the range through: a NaN let in only
    /// failed when meta.json was written, after the new shards had replaced the old.</summary>
    internal static void RequireValFraction(double valFraction)
    {
        if (!(valFraction >= 0 && valFraction < 1)) throw new StratusUserException($"--val-fraction must be in [0, 1), got {valFraction}");
    }

    /// <summary>Reads a corpus file as UTF-8 (JSON Lines must be; text is too, as nanoGPT's and
    /// Hugging Face's readers take it), skipping a UTF-8 byte order mark. A byte that is not
    /// UTF-8 (a Latin-1 or UTF-16 file, a binary file) is an error naming the file and the byte,
    /// not a U+FFFD in the vocabulary and the tokens. Only such bytes reach the fallback, so valid
    /// text decodes at full speed.</summary>
    internal static StreamReader ReadUtf8(string file, FileStream stream)
    {
        // StreamReader would otherwise decode in the encoding of any byte order mark: a file that
        // merely begins with FF FE as UTF-16, into other characters.
        if (OtherByteOrderMark(stream) is (var encoding, var iconv))
        {
            stream.Dispose();
            throw new StratusUserException($"{file} is not UTF-8 text: it begins with the byte order mark of {encoding}; convert it to UTF-8, e.g. with `iconv -f {iconv} -t utf-8`, and prepare again");
        }
        return new(stream, Encoding.GetEncoding("utf-8", EncoderFallback.ReplacementFallback, new NotUtf8Fallback(file)), detectEncodingFromByteOrderMarks: false);
    }

    /// <summary>The encoding other than UTF-8 whose byte order mark begins the stream, and its name
    /// for iconv, or null; the stream is left at its start.</summary>
    static (string Encoding, string Iconv)? OtherByteOrderMark(FileStream stream)
    {
        Span<byte> head = stackalloc byte[4];
        head = head[..stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false)];
        stream.Position = 0;
        // UTF-32 LE's mark begins with UTF-16 LE's, so it is looked for first.
        return head.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE, 0, 0]) ? ("UTF-32 LE", "utf-32")
            : head.StartsWith((ReadOnlySpan<byte>)[0, 0, 0xFE, 0xFF]) ? ("UTF-32 BE", "utf-32")
            : head.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xFE]) ? ("UTF-16 LE", "utf-16")
            : head.StartsWith((ReadOnlySpan<byte>)[0xFE, 0xFF]) ? ("UTF-16 BE", "utf-16")
            : null;
    }

    sealed class NotUtf8Fallback(string file) : DecoderFallback
    {
        public override int MaxCharCount => 0;
        public override DecoderFallbackBuffer CreateFallbackBuffer() => new Refusal(file);

        sealed class Refusal(string file) : DecoderFallbackBuffer
        {
            public override bool Fallback(byte[] bytesUnknown, int index) =>
                throw new StratusUserException($"{file} is not UTF-8 text (byte offset {FirstInvalidUtf8Byte(file)}); convert it to UTF-8, e.g. with `iconv -f latin1 -t utf-8`, and prepare again");
            public override char GetNextChar() => '\0';
            public override bool MovePrevious() => false;
            public override int Remaining => 0;
        }
    }

    /// <summary>The offset of the first byte of the file that is not part of a UTF-8 character.
    /// The decoder only knows where it is in its own buffer, so the file is read again from its start.</summary>
    static long FirstInvalidUtf8Byte(string file)
    {
        using var stream = File.OpenRead(file);
        var bytes = new byte[1 << 20];
        var chars = new char[bytes.Length];
        long start = 0; // the file offset of bytes[0]
        var filled = 0;
        while (true)
        {
            var read = stream.Read(bytes, filled, bytes.Length - filled);
            filled += read;
            var status = Utf8.ToUtf16(bytes.AsSpan(0, filled), chars, out var valid, out _, replaceInvalidSequences: false, isFinalBlock: read == 0);
            if (status == OperationStatus.InvalidData || read == 0) return start + valid;
            // A character cut by the end of the buffer is decoded with the next read.
            bytes.AsSpan(valid, filled - valid).CopyTo(bytes);
            start += valid;
            filled -= valid;
        }
    }

    /// <summary>A stretch of one document's text, and whether the document ends with it.</summary>
    readonly record struct Piece(string Text, bool EndsDocument);

    /// <summary>The source files of a corpus, read as a stream of document pieces.</summary>
    sealed class Corpus
    {
        readonly string input;
        readonly List<string> files;
        readonly bool jsonl;
        readonly IProgress<PrepareProgress>? progress;
        /// <summary>Read as JSONL documents (field text), not as plain text.</summary>
        public bool IsJsonl => jsonl;
        readonly long totalBytes;
        long finishedBytes, currentLength;
        FileStream? current;

        public Corpus(string input, IProgress<PrepareProgress>? progress)
        {
            if (string.IsNullOrWhiteSpace(input)) throw new StratusUserException("no input given; pass --input <file|folder|file.jsonl>");
            this.input = input;
            this.progress = progress;
            if (Directory.Exists(input))
            {
                files = TextFiles(input);
                if (files.Count == 0) throw new StratusUserException($"folder {input} has no .txt or .md files; point --input at a text file, a folder of .txt/.md files or a JSONL file");
            }
            else if (File.Exists(input)) files = [input];
            else throw new StratusUserException($"input {input} does not exist; pass a text file, a folder of .txt/.md files or a JSONL file");
            jsonl = files.Count == 1 && input.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
            // A link's own length is that of the path it holds: the bytes read are its target's.
            totalBytes = files.Sum(f => (new FileInfo(f).ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? new FileInfo(f)).Length);
            if (totalBytes == 0) throw new StratusUserException($"{input} is empty; give it some text to train on");
        }

        /// <summary>The .txt and .md files under <paramref name="folder"/>, in the ordinal order of
        /// their paths. Symbolic links are followed, as `find -L` does, except where they lead to
        /// text read already: into the corpus (a file or folder of it linked from elsewhere in it),
        /// to a folder above it (which would read all that folder holds), or to a file or folder
        /// read through another link. Files are told apart by their real paths (every link in them
        /// resolved), and the corpus's own are read before any link is followed, then the links in
        /// the order of their paths: so the outcome does not depend on which link comes first, each
        /// text is read once, none of the val split's can also be in train, and none is left out.</summary>
        static List<string> TextFiles(string folder)
        {
            var corpus = RealPath.Of(folder) ?? throw Loop(folder);
            // Real paths of the files taken and of the folders walked.
            var taken = new HashSet<string>();
            var walked = new HashSet<string>();
            var files = new List<string>();
            // The links met, by their paths as below the folder as given (errors name files so).
            var links = new PriorityQueue<(string Named, FileSystemInfo Link), string>(StringComparer.Ordinal);
            static bool IsText(string name) => name.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".md", StringComparison.OrdinalIgnoreCase);

            // The files of a real folder and of the real folders in it; the links there wait.
            void Walk(string real, string named)
            {
                var folders = new Stack<(string Real, string Named)>([(real, named)]);
                while (folders.TryPop(out var current))
                {
                    if (!walked.Add(current.Real)) continue;
                    foreach (var entry in new DirectoryInfo(current.Real).EnumerateFileSystemInfos())
                    {
                        var path = Path.Combine(current.Named, entry.Name);
                        if (entry.LinkTarget is not null) links.Enqueue((path, entry), path);
                        else if (entry is DirectoryInfo) folders.Push((entry.FullName, path));
                        else if (IsText(entry.Name) && taken.Add(entry.FullName)) files.Add(path);
                    }
                }
            }

            Walk(corpus, folder);
            while (links.TryDequeue(out var link, out _))
            {
                if (link.Link is FileInfo && !IsText(link.Link.Name)) continue;
                var target = RealPath.Of(link.Link.FullName) ?? throw Loop(link.Named);
                if (link.Link is DirectoryInfo)
                {
                    if (!Within(corpus, target)) Walk(target, link.Named);
                }
                else if (!File.Exists(target))
                    throw new StratusUserException($"{link.Named} is a symbolic link to {target}, which does not exist; remove the link or restore what it pointed at");
                else if (taken.Add(target)) files.Add(link.Named);
            }
            // A named pipe among them would keep prepare waiting for a writer, and a device
            // (a link to /dev/zero) reading for ever: the file given as --input may be a pipe, one
            // found in a folder may not.
            foreach (var file in files) FileBytes.RequireRegular(file);
            return [.. files.Order(StringComparer.Ordinal)];
        }

        static StratusUserException Loop(string link) =>
            new($"{link} is a symbolic link in a loop of links (too many levels of symbolic links); remove it or point it at a file or folder");

        /// <summary>Whether <paramref name="path"/> is <paramref name="folder"/> or lies in it.</summary>
        static bool Within(string path, string folder) =>
            path == folder || path.StartsWith(Path.EndsInDirectorySeparator(folder) ? folder : folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);

        /// <summary>The sha256 of the file, or of a folder's relative paths and file hashes.</summary>
        public string Hash()
        {
            finishedBytes = 0;
            if (!Directory.Exists(input)) return Convert.ToHexStringLower(HashFile(input));
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (var file in files)
            {
                hash.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(input, file) + "\n"));
                hash.AppendData(HashFile(file));
            }
            return Convert.ToHexStringLower(hash.GetHashAndReset());
        }

        byte[] HashFile(string file)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            using (var stream = Open(file))
            {
                var buffer = new byte[1 << 20];
                for (int read, blocks = 0; (read = stream.Read(buffer)) > 0; blocks++)
                {
                    hash.AppendData(buffer, 0, read);
                    if (blocks % 64 == 0) Report("hashing", 0);
                }
            }
            Close("hashing", 0);
            return hash.GetHashAndReset();
        }

        /// <summary>The sorted set of characters (Unicode scalar values) in the corpus, plus the
        /// newline that joins documents.</summary>
        public CharTokenizer CharVocabulary(int pieceChars)
        {
            // Indexed by code point: 1.1 MB once, rather than a hash lookup per character read.
            var seen = new bool[0x110000];
            var documents = 0;
            var documentHasText = false;
            foreach (var piece in Pieces(TextCuts.Anywhere, pieceChars, "reading characters", () => 0))
            {
                var text = piece.Text;
                for (int i = 0, length; i < text.Length; i += length) seen[CodePoints.At(text, i, out length)] = true;
                documentHasText |= piece.Text.Length > 0;
                if (!piece.EndsDocument) continue;
                if (documentHasText) documents++;
                documentHasText = false;
            }
            if (documents > 1) seen['\n'] = true;
            return CharTokenizer.FromCharacters(Enumerable.Range(0, seen.Length).Where(c => seen[c]));
        }

        /// <summary>Encodes the corpus into <paramref name="shard"/> as Hugging Face's run_clm.py
        /// does: each document with the special tokens the tokenizer puts around a text (a Llama's
        /// BOS before it), as every prompt the model is later given has them. Where the tokenizer
        /// puts nothing after a text, documents are joined by &lt;|endoftext|&gt; (as GPT-2 was
        /// trained) or, for a vocabulary without it, a newline: a Llama's shard
        /// reads BOS d1 EOS BOS d2, GPT-2's d1 &lt;|endoftext|&gt; d2. Returns the number of documents.</summary>
        public int Tokenize(ITokenizer tokenizer, TokenShard.Writer shard, int pieceChars)
        {
            int[] before = [.. tokenizer.SpecialTokensAround.Before], after = [.. tokenizer.SpecialTokensAround.After];
            int[]? separator = null; // encoded when a second document comes: a one-document char vocabulary may lack "\n"
            var documents = 0;
            var inDocument = false;
            var hasText = false;
            // One piece at a time: encoding pieces on several threads was no faster here (two
            // threads on one TiktokenTokenizer ran slower than one; an instance per thread gained
            // nothing on a repetitive corpus and 10% on a random one), so reading stays simple.
            // A piece is encoded as plain text: the special tokens go around its whole document.
            foreach (var piece in Pieces(tokenizer.Cuts, pieceChars, "tokenizing", () => shard.Count))
            {
                if (piece.Text.Length > 0)
                {
                    hasText = hasText || !string.IsNullOrWhiteSpace(piece.Text);
                    if (!inDocument)
                    {
                        if (documents > 0 && after.Length == 0) shard.Append(separator ??= tokenizer.EndOfTextId is { } eot ? [eot] : tokenizer.Encode("\n"));
                        shard.Append(before);
                        documents++;
                        inDocument = true;
                    }
                    shard.Append(tokenizer.Encode(piece.Text));
                }
                if (!piece.EndsDocument || !inDocument) continue;
                shard.Append(after);
                inDocument = false;
            }
            // Whitespace alone teaches nothing: such a corpus is as empty as one of no bytes.
            if (!hasText) throw new StratusUserException($"{input} holds nothing but whitespace; give it some text to train on");
            return documents;
        }

        /// <summary>Every document of the corpus in pieces of about <paramref name="pieceChars"/>
        /// characters, cut only where <paramref name="cuts"/> allows.</summary>
        IEnumerable<Piece> Pieces(TextCuts cuts, int pieceChars, string phase, Func<long> tokens)
        {
            finishedBytes = 0; // each phase reads the corpus from its start
            foreach (var file in files)
            {
                using (var reader = ReadUtf8(file, Open(file)))
                {
                    if (!jsonl)
                    {
                        foreach (var piece in Cut(reader, cuts, pieceChars, phase, tokens)) yield return piece;
                    }
                    else
                    {
                        var lineNumber = 0;
                        while (reader.ReadLine() is { } line)
                        {
                            lineNumber++;
                            if (string.IsNullOrWhiteSpace(line)) continue;
                            foreach (var piece in Cut(new StringReader(JsonlText(line, lineNumber)), cuts, pieceChars, phase, tokens)) yield return piece;
                        }
                    }
                }
                Close(phase, tokens());
            }
        }

        IEnumerable<Piece> Cut(TextReader reader, TextCuts cuts, int pieceChars, string phase, Func<long> tokens)
        {
            var text = new StringBuilder();
            var block = new char[pieceChars];
            int read;
            while ((read = reader.ReadBlock(block, 0, block.Length)) > 0)
            {
                text.Append(block, 0, read);
                Report(phase, tokens());
                var cut = LastCut(text, text.Length - read, cuts);
                if (cut <= 0) continue;
                yield return new Piece(text.ToString(0, cut), false);
                text.Remove(0, cut);
            }
            yield return new Piece(text.ToString(), true);
        }

        /// <summary>The last place the text may be cut (0: nowhere yet). Only places that the
        /// characters from <paramref name="appendedAt"/> on make possible are looked at: the text
        /// before them was searched already, and the last cut found taken.</summary>
        static int LastCut(StringBuilder text, int appendedAt, TextCuts cuts)
        {
            // Not after a high surrogate whose low half is still to be read: encoded apart, the
            // halves of an emoji would be two lone surrogates, which no character vocabulary holds.
            if (cuts == TextCuts.Anywhere) return char.IsHighSurrogate(text[^1]) ? text.Length - 1 : text.Length;
            if (cuts == TextCuts.Nowhere) return 0;
            for (var p = text.Length - 1; p >= Math.Max(2, appendedAt); p--)
            {
                if (text[p - 1] == '\n' && !char.IsWhiteSpace(text[p - 2]) && !char.IsWhiteSpace(text[p])) return p;
            }
            return 0;
        }

        string JsonlText(string line, int lineNumber)
        {
            var node = JsonText.ParseLine(input, lineNumber, line, "Each line must be an object with a \"text\" field.");
            if (node is not JsonObject obj || obj["text"] is not JsonValue value || !value.TryGetValue<string>(out var text))
                throw new StratusUserException($"{input}:{lineNumber}: expected an object with a string field \"text\"");
            return text;
        }

        FileStream Open(string file)
        {
            current = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            currentLength = current.Length;
            return current;
        }

        void Report(string phase, long tokens) =>
            progress?.Report(new PrepareProgress(phase, finishedBytes + (current?.CanRead == true ? current.Position : 0), totalBytes, tokens));

        /// <summary>Counts the current file as read.</summary>
        void Close(string phase, long tokens)
        {
            finishedBytes += currentLength;
            current = null;
            Report(phase, tokens);
        }
    }
}
