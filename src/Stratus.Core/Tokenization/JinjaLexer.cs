// Jinja's lexer for JinjaTemplate: a template's source cut into text, {{ output }} and {% statement %}
// pieces, with whitespace control ({%- -%}, {%+ +%}) and transformers' trim_blocks / lstrip_blocks applied.

namespace Stratus.Tokenization;

public sealed partial class JinjaTemplate
{
    enum PieceKind { Text, Output, Statement }

    /// <summary>A piece of the template, and the line it begins on (1 is the first).</summary>
    sealed record Piece(PieceKind Kind, string Content, int Line);

    static partial class Lexer
    {
        public static List<Piece> Tokenize(string source)
        {
            // As Jinja's lexer, "\r\n" and "\r" are line breaks like "\n", in text and string
            // literals alike, so trim_blocks and lstrip_blocks treat a template saved on Windows as
            // one saved on Linux, and what it renders has "\n" line breaks.
            if (source.Contains('\r')) source = source.Replace("\r\n", "\n").Replace('\r', '\n');
            // Jinja drops a source's one final line break (keep_trailing_newline is off in
            // transformers), so a chat_template.jinja ending in one does not add it to every prompt.
            if (source.EndsWith('\n')) source = source[..^1];
            var pieces = new List<Piece>();
            var i = 0;
            // The line at lineCounted, counted up to it; 0 throughout a template of one line,
            // whose errors need not say where they are.
            var (line, lineCounted) = (source.Contains('\n') ? 1 : 0, 0);
            var trimNext = false; // a "-%}"/"-}}" asks to trim the next text
            var trimBlockNewline = false; // trim_blocks: a block or comment tag's line break goes
            while (i < source.Length)
            {
                var open = FindOpen(source, i);
                var text = source[i..(open < 0 ? source.Length : open)];
                // Whether the text begins a line, which lstrip_blocks needs where it holds no line break.
                var lineStart = i == 0 || source[i - 1] == '\n';
                if (trimNext) text = text.TrimStart();
                else if (trimBlockNewline && text.StartsWith('\n')) (text, lineStart) = (text[1..], true);
                trimNext = trimBlockNewline = false;
                if (open < 0)
                {
                    if (text.Length > 0) pieces.Add(new Piece(PieceKind.Text, text, line));
                    break;
                }
                line += source.AsSpan(lineCounted, open - lineCounted).Count('\n');
                lineCounted = open;
                var kind = source[open + 1];
                var close = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
                // A bracket left open: the tag ends at its first close after all, for the parser to
                // say what it misses ("{% macro m( %}" ends too early).
                var end = kind == '#' ? source.IndexOf(close, open + 2, StringComparison.Ordinal)
                    : FindClose(source, open + 2, close, balanced: true) is >= 0 and var balanced ? balanced : FindClose(source, open + 2, close, balanced: false);
                if (end < 0) throw new JinjaException($"{source.Substring(open, 2)} is not closed by {close}").At(line);
                var inner = source[(open + 2)..end];
                var trimBefore = inner.StartsWith('-');
                // "{%+" and "{#+" keep the indentation lstrip_blocks would strip before the tag,
                // "+%}" and "+#}" the line break trim_blocks would remove after it; in {{ }} a
                // plus is the expression's (unary plus).
                var keepBefore = kind != '{' && inner.StartsWith('+');
                // "{{-}}": one dash trims before, and is not also the one that trims after.
                var marked = trimBefore || keepBefore ? 1 : 0;
                var trimAfter = inner.Length > marked && inner.EndsWith('-');
                var keepAfter = kind != '{' && inner.Length > marked && inner.EndsWith('+');
                if (trimBefore) text = text.TrimEnd();
                else if (kind != '{' && !keepBefore) text = LstripBlock(text, lineStart);
                if (text.Length > 0) pieces.Add(new Piece(PieceKind.Text, text, line));
                inner = inner[marked..(inner.Length - (trimAfter || keepAfter ? 1 : 0))];
                if (kind == '%' && inner.AsSpan().Trim().SequenceEqual("raw") && !keepAfter)
                {
                    (i, trimNext, trimBlockNewline) = Raw(source, end + 2, trimAfter, pieces, line);
                    continue;
                }
                if (kind == '{') pieces.Add(new Piece(PieceKind.Output, inner, line));
                else if (kind == '%') pieces.Add(new Piece(PieceKind.Statement, inner.Trim(), line));
                trimNext = trimAfter;
                trimBlockNewline = kind != '{' && !keepAfter;
                i = end + 2;
            }
            return pieces;
        }

        /// <summary>{% raw %}...{% endraw %}: what lies between is text, tags and all. As Jinja's
        /// lexer reads it, "-%}" after raw trims the text's start, "{%-" before endraw its end,
        /// and lstrip_blocks strips endraw's indentation; trim_blocks removes the line break after
        /// endraw, not after raw. Returns where the template goes on and how its next text is trimmed.</summary>
        static (int Next, bool TrimNext, bool TrimBlockNewline) Raw(string source, int from, bool trimStart, List<Piece> pieces, int line)
        {
            var endRaw = EndRaw().Match(source, from);
            if (!endRaw.Success) throw new JinjaException("{% raw %} is not closed by {% endraw %}").At(line);
            var text = source[from..endRaw.Index];
            if (trimStart) text = text.TrimStart();
            text = endRaw.Groups[1].Value switch { "-" => text.TrimEnd(), "+" => text, _ => LstripBlock(text, lineStart: false) };
            if (text.Length > 0) pieces.Add(new Piece(PieceKind.Text, text, line));
            var after = endRaw.Groups[2].Value;
            return (endRaw.Index + endRaw.Length, after == "-", after != "+");
        }

        [System.Text.RegularExpressions.GeneratedRegex(@"\{%([-+]?)\s*endraw\s*([-+]?)%\}")]
        private static partial System.Text.RegularExpressions.Regex EndRaw();

        /// <summary>Where a tag closes: the first <paramref name="close"/> outside its string
        /// literals, and if <paramref name="balanced"/> outside its brackets, as Jinja's lexer reads
        /// them ({{ "}}" }} writes "}}", and {{ {'a': {'b': 1}} }} a dict in a dict).</summary>
        static int FindClose(string s, int from, string close, bool balanced)
        {
            char? quote = null;
            var depth = 0;
            for (var i = from; i < s.Length; i++)
            {
                if (quote is { } q)
                {
                    if (s[i] == '\\') i++;
                    else if (s[i] == q) quote = null;
                }
                else if (s[i] is '\'' or '"') quote = s[i];
                else if (depth == 0 && string.CompareOrdinal(s, i, close, 0, close.Length) == 0) return i;
                else if (!balanced) continue;
                else if (s[i] is '(' or '[' or '{') depth++;
                // A stray closing bracket is the parser's to report.
                else if (s[i] is ')' or ']' or '}' && depth > 0) depth--;
            }
            return -1;
        }

        static int FindOpen(string s, int from)
        {
            for (var i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
            {
                if (s[i + 1] is '{' or '%' or '#') return i;
            }
            return -1;
        }

        /// <summary>lstrip_blocks: spaces and tabs between a line start and a block tag go; those
        /// after other output on the line stay ("{{ x }} {% endfor %}" keeps its space).</summary>
        static string LstripBlock(string text, bool lineStart)
        {
            var j = text.Length;
            while (j > 0 && text[j - 1] is ' ' or '\t') j--;
            return (j == 0 && lineStart) || (j > 0 && text[j - 1] == '\n') ? text[..j] : text;
        }
    }
}
