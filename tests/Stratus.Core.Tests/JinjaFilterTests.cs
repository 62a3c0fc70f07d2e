// The rest of the Jinja that Hub chat templates reach for: the filters sort (attribute=, reverse=,
// case-insensitive by default), unique, dictsort, round, sum, min, max, format (printf-style, and the %
// operator on a string), batch and escape; the ** operator; dict(); {% set %} blocks and unpacking;
// loop.cycle; number literals such as 1e16; \x and \u escapes; and Jinja's scoping of macros (a macro
// sees its arguments and where it was defined, not its caller's loop variables). Every expected text is
// what jinja2 3.1.6 renders, set up as transformers sets it up (see JinjaFeatureTests).
using System.Text.Json;
using Stratus.Tokenization;

namespace Stratus.Core.Tests;

public sealed class JinjaFilterTests
{
    static readonly Dictionary<string, object?> Variables = JinjaDifferentialTests.Variables("{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}, {\"role\": \"user\", \"content\": \"Hi\"}], \"spec\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"description\": \"A list.\"}, \"tools\": [{\"name\": \"b_tool\", \"n\": 2}, {\"name\": \"A_tool\", \"n\": 1}, {\"name\": \"c\", \"n\": 3}]}");

    [Theory]
    // sort: case-insensitive by default, stable, by attributes (several, comma-separated), reversed
    [InlineData("{{ ['b', 'A', 'c', 'a', 'B'] | sort }} {{ ['b', 'A', 'c', 'a', 'B'] | sort(case_sensitive=true) }} {{ ['b', 'A', 'c'] | sort(reverse=true) }} {{ ['b', 'A', 'c'] | sort(true) }}", "['A', 'a', 'b', 'B', 'c'] ['A', 'B', 'a', 'b', 'c'] ['c', 'b', 'A'] ['c', 'b', 'A']")]
    [InlineData("{{ tools | sort(attribute='name') | map(attribute='name') | join(',') }} {{ tools | sort(attribute='n', reverse=true) | map(attribute='name') | join(',') }} {{ tools | sort(attribute='n,name') | map(attribute='name') | join(',') }}", "A_tool,b_tool,c c,b_tool,A_tool A_tool,b_tool,c")]
    [InlineData("{{ [3, 1, 2.5, true] | sort }} {{ spec | sort }} {{ 'cba' | sort }} {{ [[2, 'b'], [1, 'z'], [1, 'a']] | sort }}", "[1, True, 2.5, 3] ['description', 'items', 'type'] ['a', 'b', 'c'] [[1, 'a'], [1, 'z'], [2, 'b']]")]
    // unique: case-insensitive, first kept; 1, 1.0 and true are one, as in a Python set
    [InlineData("{{ ['b', 'A', 'a', 'B', 'b'] | unique | list }} {{ ['b', 'A', 'a', 'B', 'b'] | unique(case_sensitive=true) | list }} {{ tools | unique(attribute='n') | map(attribute='name') | list }} {{ [1, 1.0, true, 2] | unique | list }}", "['b', 'A'] ['b', 'A', 'a', 'B'] ['b_tool', 'A_tool', 'c'] [1, 2]")]
    // dictsort: by key (case-insensitive) or value, pairs to unpack
    [InlineData("{{ spec | dictsort }} {{ {'b': 1, 'A': 2, 'a': 3} | dictsort }} {{ {'b': 1, 'A': 2, 'a': 3} | dictsort(true) }} {{ {'b': 1, 'A': 2, 'c': 0} | dictsort(by='value') }} {{ {'b': 1, 'A': 2, 'c': 0} | dictsort(reverse=true) }}", "[('description', 'A list.'), ('items', {'type': 'string'}), ('type', 'array')] [('A', 2), ('a', 3), ('b', 1)] [('A', 2), ('a', 3), ('b', 1)] [('c', 0), ('b', 1), ('A', 2)] [('c', 0), ('b', 1), ('A', 2)]")]
    [InlineData("{% for k, v in spec | dictsort %}{{ k }}={{ v }};{% endfor %}", "description=A list.;items={'type': 'string'};type=array;")]
    // round: ties to even on the float's exact value, an integer stays one, floor and ceil give floats
    [InlineData("{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.4 | round }} {{ -2.5 | round }} {{ 2.675 | round(2) }} {{ 3 | round }} {{ 3.14159 | round(2, 'floor') }} {{ 3.14159 | round(1, 'ceil') }} {{ 42 | round(-1) }} {{ 45 | round(-1) }} {{ 1.5 | round | int }}", "2.0 4.0 2.0 -2.0 2.67 3 3.14 3.2 40 40 2")]
    [InlineData("{{ 1.23456 | round(3) }} {{ 1.5 | round(0, 'floor') }} {{ -1.5 | round(method='ceil') }} {{ 1234.5 | round(-2) }} {{ 15 | round(-1) }} {{ 25 | round(-1) }} {{ -0.4 | round }} {{ 0.285 | round(2) }} {{ 1.0e-7 | round(8) }} {{ 5 | round(1, 'floor') }}", "1.235 1.0 -1.0 1200.0 20 20 -0.0 0.28 1e-07 5.0")]
    // sum, min and max: an empty sum is 0, an empty min undefined; strings compared case-insensitively
    [InlineData("{{ [1, 2, 3] | sum }} {{ [] | sum }} {{ [1.5, 2] | sum }} {{ [1, 2] | sum(start=10) }} {{ tools | sum(attribute='n') }} {{ [[1], [2]] | sum(start=[]) }} {{ [true, true] | sum }}", "6 0 3.5 13 6 [1, 2] 2")]
    [InlineData("{{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ ['b', 'A', 'c'] | min }} {{ ['b', 'A', 'c'] | max }} {{ ['b', 'A', 'c'] | min(case_sensitive=true) }} {{ tools | max(attribute='n') }} {{ [] | min }}|{{ 'hello' | max }} {{ [2, 1.5, true] | min }}", "1 3 A c A {'name': 'c', 'n': 3} |o True")]
    // format and %: printf-style, as Python formats
    [InlineData("{{ '%s has %d items' | format('list', 3) }} {{ '%r' | format('x') }} {{ '%5.2f|%-4s|%03d|%x|%%' | format(3.14159, 'ab', 7, 255) }} {{ '%s' | format([1, 'a']) }} {{ '%d' | format(3.9) }} {{ '%s and %s' | format(none, true) }}", "list has 3 items 'x'  3.14|ab  |007|ff|% [1, 'a'] 3 None and True")]
    [InlineData("{{ '%e|%.2e|%E|%g|%g|%g|%.3g|%G|%#x|%o|%+d|% d|%5s|%-5d|%05.1f|%c%c' | format(12345.678, 0.000123, 1.0, 0.0001, 123456789.0, 100000.0, 3.14159, 1e-10, 255, 8, 5, 5, 'ab', 42, -2.25, 65, 'z') }}", "1.234568e+04|1.23e-04|1.000000E+00|0.0001|1.23457e+08|100000|3.14|1E-10|0xff|10|+5| 5|   ab|42   |-02.2|Az")]
    [InlineData("{{ '%.2f %.0f %.0f %.1f %f' | format(0.125, 0.5, 1.5, -0.05, 1e20) }} {{ '%(a)s-%(b)d' | format(a='x', b=2) }} {{ '%s and %s' % ('a', 'b') }} {{ 'n=%d' % 3 }} {{ '%(x)s' % {'x': 1} }}", "0.12 0 2 -0.1 100000000000000000000.000000 x-2 a and b n=3 1")]
    // batch and escape
    [InlineData("{{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ [1, 2, 3, 4, 5] | batch(2, 'x') | list }} {{ [1, 2] | batch(3) | list }} {{ [] | batch(2) | list }} {% for row in [1, 2, 3] | batch(2) %}{{ row | join(',') }};{% endfor %}", "[[1, 2], [3, 4], [5]] [[1, 2], [3, 4], [5, 'x']] [[1, 2]] [] 1,2;3;")]
    [InlineData("{{ '<a href=\"x\">&\\'' | escape }} {{ 'a<b' | e }} {{ 3 | e }} {{ none | e }} {{ ('<b>' | e) ~ '<i>' }} {{ ['<'] | e }} {{ ('<b>' | e) | length }}", "&lt;a href=&#34;x&#34;&gt;&amp;&#39; a&lt;b 3 None &lt;b&gt;<i> [&#39;&lt;&#39;] 9")]
    // ** (from the left, as Jinja parses it), dict()
    [InlineData("{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2.0 ** 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 2 * 3 ** 2 }} {{ 2 ** 0.5 }} {{ (-2) ** 3 }} {{ (-2) ** -2 }} {{ 2 ** 62 }}", "1024 0.5 4.0 64 4 18 1.4142135623730951 -8 0.25 4611686018427387904")]
    [InlineData("{{ dict(a=1, b='x') }} {{ dict() }} {{ dict(a=1).a }} {{ dict(role='user') == {'role': 'user'} }} {{ dict({'a': 1}) }} {{ dict([('a', 1), ['b', 2]]) }} {{ dict({'a': 1}, b=2) }}", "{'a': 1, 'b': 'x'} {} 1 True {'a': 1} {'a': 1, 'b': 2} {'a': 1, 'b': 2}")]
    // {% set %} blocks (through filters, into a namespace) and unpacking
    [InlineData("{% set x %}Hello {{ messages[1].content }}!{% endset %}[{{ x }}] {{ x | length }}", "[Hello Hi!] 9")]
    [InlineData("{% set x -%}\n  a  \n{%- endset %}[{{ x }}]{% set y | trim | upper %}\n  hi  \n{% endset %}[{{ y }}]{% set ns = namespace(a='') %}{% set ns.a %}z{% endset %}{{ ns.a }}", "[a][HI]z")]
    [InlineData("{% set a, b = 1, 2 %}{{ a }} {{ b }} {% set a, b = [3, 4] %}{{ a }} {{ b }} {% set a, b = 'xy' %}{{ a }} {{ b }} {% set (a, b) = (1, 2) %}{{ a }}{{ b }} {% set a, b = {'x': 1, 'y': 2} %}{{ a }}{{ b }}", "1 2 3 4 x y 12 xy")]
    [InlineData("{% for a, b in [(1, 2), (3, 4)] %}{{ a }}{{ b }};{% endfor %}{% for (a, b) in [(1, 2), (3, 4)] %}{{ a }}{{ b }};{% endfor %}", "12;34;12;34;")]
    // loop.cycle
    [InlineData("{% for m in messages %}{{ loop.cycle('odd', 'even') }}{% endfor %} {% for x in [1, 2, 3] %}{{ loop.cycle('a', 'b', 'c', 'd') }}{% endfor %} {% for x in [1] %}{{ loop.cycle is defined }}{{ loop.items is defined }}{% endfor %}", "oddevenoddeven abc TrueFalse")]
    // number literals and string escapes
    [InlineData("{{ 1e16 }} {{ 1e3 }} {{ 1.5e-5 }} {{ 2E2 }} {{ 1_000 }} {{ 1.5e+3 }} {{ 0.1e1 }} {{ 12e0 }} {{ 1_0.5 }} {{ 10_000_000 }}", "1e+16 1000.0 1.5e-05 200.0 1000 1500.0 1.0 12.0 10.5 10000000")]
    [InlineData("{{ '\\x41\\u00e9\\U0001F600|\\'|\\\"|\\\\|\\a\\b\\f\\v|\\0|\\q' }} {{ '\\101' }} {{ 'a\\\nb' }}", "Aé😀|'|\"|\\|\u0007\u0008\u000c\u000b|\u0000|\\q A ab")]
    // a macro sees its arguments and where it was defined, not its caller's loop variables
    [InlineData("{% macro m() %}[{{ x | default('none') }}]{% endmacro %}{% for x in [1, 2] %}{{ m() }}{% endfor %}", "[none][none]")]
    [InlineData("{% macro m() %}[{{ y | default('none') }}{{ loop is defined }}]{% endmacro %}{% macro outer(y) %}{{ m() }}{% endmacro %}{% for y in [1] %}{{ outer(5) }}{{ m() }}{% endfor %}", "[noneFalse][noneFalse]")]
    [InlineData("{% for x in [1, 2] %}{% macro m() %}[{{ x }}]{% endmacro %}{{ m() }}{% endfor %}{% set g = 1 %}{% macro n() %}[{{ g }}{{ later }}]{% endmacro %}{% set g = 2 %}{% set later = 'L' %}{{ n() }}", "[1][2][2L]")]
    [InlineData("{% macro m(n) %}{% for i in range(n) %}{{ i }}{% endfor %}[{{ i | default('-') }}]{% endmacro %}{% for i in [9] %}{{ m(2) }}{% endfor %}", "01[-]")]
    [InlineData("{% macro inner() %}[{{ role | default('?') }}]{% endmacro %}{% macro outer() %}{% for role in ['x'] %}{{ inner() }}{% endfor %}{% endmacro %}{{ outer() }}", "[?]")]
    [InlineData("{% for m in messages[:1] %}{% macro show() %}{{ m.role }}{% endmacro %}{% for m in messages[1:2] %}{{ show() }}{% endfor %}{% endfor %}", "system")]
    [InlineData("{% macro m2() %}{{ caller() }}{% endmacro %}{% for x in [7] %}{% call m2() %}[{{ x }}]{% endcall %}{% endfor %}{% set ns = namespace(i=0) %}{% macro count() %}{% set ns.i = ns.i + 1 %}{{ ns.i }}{% endmacro %}{% for x in [1, 2] %}{{ count() }}{% endfor %}", "[7]12")]
    // Python's arithmetic: unary minus keeps -0.0, float modulo takes the divisor's sign, integer floor division is exact
    [InlineData("{{ -0.0 }} {{ -(0.0) }} {{ [-0.0] }} {{ -0.0 / -1.5 }} {{ -1 }} {{ -true }}", "-0.0 -0.0 [-0.0] 0.0 -1 -1")]
    [InlineData("{{ -7.5 % 2 }} {{ 7.5 % -2 }} {{ -1 % 2.0 }} {{ -7.5 % 2.5 }} {{ 9007199254740993 // 1 }} {{ -7 // 2 }} {{ 7 // -2 }} {{ -9223372036854775807 // 2 }}", "0.5 -0.5 1.0 0.0 9007199254740993 -4 -4 -4611686018427387904")]
    // floor and ceil give no -0.0 (Python's are integers); float // floors the exact quotient, as Python's divmod
    [InlineData("{{ -0.0 | round(method='floor') }} {{ -0.5 | round(method='ceil') }} {{ -0.04 | round(1, 'ceil') }} {{ -3.14159 | round(2, 'ceil') }} {{ (-7 // 2) // 1e-7 }} {{ 7.5 // -2 }} {{ -7.5 // 2 }} {{ 0.0 // -3 }} {{ -0.0 % 5 }} {{ 5.5 % -2 }} {{ 1e300 // 1e-10 }}", "0.0 0.0 0.0 -3.14 -40000001.0 -4.0 -4.0 -0.0 0.0 -0.5 inf")]
    // a boolean is 1 or 0 to |int and |float; |first and |last of nothing are undefined, printed as nothing
    [InlineData("{{ true | int }} {{ false | int }} {{ true | float }} [{{ [] | first }}|{{ [] | last }}|{{ ([] | first) is defined }}|{{ {} | dictsort | first | default('d') }}]", "1 0 1.0 [||False|d]")]
    // the source's one final line break is dropped (keep_trailing_newline off), before trim_blocks
    [InlineData("a\n\n", "a\n")]
    [InlineData("<|im_start|>assistant\n", "<|im_start|>assistant")]
    [InlineData("{{ 1 }}\r\n", "1")]
    [InlineData("{% if true %}x{% endif %}\n\n", "x")]
    // case-insensitive ordering and |lower fold as Python's str.lower(): 'İ' is "i\u0307", so it sorts with the i's
    [InlineData("{{ ['ß', 'İ', 'a', 'j'] | sort | join(',') }} {{ ['İ', 'i\u0307'] | unique | list | length }} {{ {'İ': 1, 'ß': 2} | dictsort | first | first }} {{ ['ß', 'İ'] | min }} {{ 'İ' | lower | length }} {{ 'AİB'.lower() | length }} {{ 'xİ' | capitalize | length }}", "a,İ,j,ß 1 İ İ 2 4 3")]
    public void Renders_as_jinja2_renders_it(string source, string expected) =>
        Assert.Equal(expected, new JinjaTemplate(source).Render(Variables));

    [Theory]
    // jinja2 refuses each of these too, with Python's error.
    [InlineData("{{ [3, 'a'] | sort }}", "cannot compare a number and a string")]
    [InlineData("{{ [{'a': 1}] | unique | list }}", "|unique cannot hash a mapping (as Python: unhashable)")]
    [InlineData("{{ ['a', 'b'] | sum }}", "cannot apply '+' to a number and a string")]
    [InlineData("{{ 3.7 | round(method='x') }}", "|round's method must be common, ceil or floor")]
    [InlineData("{{ '%s %s' | format('x') }}", "not enough arguments for format string")]
    [InlineData("{{ '%s' | format('a', 'b') }}", "not all arguments converted during string formatting")]
    [InlineData("{{ '%d' | format('x') }}", "%d format: a real number is required, not a string")]
    [InlineData("{{ '%q' | format(1) }}", "unsupported format character 'q' (0x71) at index 1")]
    [InlineData("{{ '%(a)s' | format('x', a=1) }}", "|format cannot take positional and keyword arguments at once")]
    [InlineData("{{ 0 ** -1 }}", "0.0 cannot be raised to a negative power")]
    [InlineData("{% set a, b = [1, 2, 3] %}", "too many values to unpack (expected 2)")]
    [InlineData("{% for a, b in [(1,)] %}{% endfor %}", "not enough values to unpack (expected 2, got 1)")]
    [InlineData("{% for m in messages %}{{ loop.cycle() }}{% endfor %}", "loop.cycle() takes the items to cycle through")]
    [InlineData("{{ 1 / 0 }}", "division by zero")]
    [InlineData("{{ 1.0 / 0 }}", "division by zero")]
    [InlineData("{{ 1 // 0.0 }}", "division by zero")]
    [InlineData("{{ 1.5 % 0.0 }}", "modulo by zero")]
    // Past what Python computes: integers beyond 64 bits, and complex numbers.
    [InlineData("{{ 2 ** 63 }}", "2 ** 63 is beyond 64-bit integers")]
    [InlineData("{{ 1e300 | int }}", "1e+300 | int is beyond 64-bit integers")]
    [InlineData("{{ 9223372036854775807 + 1 }}", "9223372036854775807 + 1 is beyond 64-bit integers")]
    [InlineData("{{ (-8) ** 0.5 }}", "-8 ** 0.5 is a complex number")]
    public void What_jinja2_refuses_or_python_cannot_hold_is_refused(string source, string message)
    {
        var error = Assert.Throws<JinjaException>(() => new JinjaTemplate(source).Render(Variables));
        Assert.Equal(message, error.Message);
    }

    [Theory]
    [InlineData("{{ '\\x4' }}", "truncated \\x escape in a string literal: it takes 2 hexadecimal digits")]
    [InlineData("{{ '\\u12' }}", "truncated \\u escape in a string literal: it takes 4 hexadecimal digits")]
    [InlineData("{{ '\\N{BULLET}' }}", "the escape \\N{...} (a character by its name) is not supported; write the character itself or \\u and its code")]
    [InlineData("{{ 1e }}", "'1e' is not a number this template engine reads")]
    public void A_literal_jinja2_cannot_read_or_this_engine_does_not_is_refused_at_load(string source, string message)
    {
        var error = Assert.Throws<JinjaException>(() => new JinjaTemplate(source));
        Assert.Equal(message, error.Message);
    }
}
