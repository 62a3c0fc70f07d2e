#!/usr/bin/env python3
"""Renders each case below with jinja2, set up as transformers sets it up, and writes what it
renders (or that it refuses) into JinjaDifferentialCases.cs beside this script, which
JinjaDifferentialTests.cs checks Stratus's renderer against. The tests need no Python; run this
by hand after changing a case:

    python3 tests/Stratus.Core.Tests/Jinja2/make_cases.py    (jinja2 3.1.6)

A case is (name, template, variables); a template named "@Name" is that constant of the C# tests
(a chat template in the style of a real model's), read from the test sources ("@Name with CRLF":
saved with Windows line breaks). Where Stratus refuses
on purpose what jinja2 renders, the case names the words of Stratus's refusal instead; where it renders otherwise on purpose, what
it renders and why (a comment in the generated file says what jinja2 renders)."""
import datetime
import json
import pathlib
import re

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parent
CLOCK = datetime.datetime(2026, 3, 5, 15, 4, 5)  # what the C# tests' fixed clock reads

# transformers' environment (utils/chat_template_utils.py _compile_jinja_template).
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
env.globals["raise_exception"] = lambda message: (_ for _ in ()).throw(jinja2.exceptions.TemplateError(message))
env.globals["strftime_now"] = lambda fmt: CLOCK.strftime(fmt)


def constants():
    """The C# tests' raw-string template constants: name -> (class.name, text), as C# reads a raw
    literal (the closing quotes' indentation removed from every line)."""
    found = {}
    namespaces = {}
    for source in HERE.parent.glob("*.cs"):
        namespaces[source.stem] = "global::" + re.search(r"^namespace ([\w.]+);", source.read_text(), re.M).group(1)
        for m in re.finditer(r'const string (\w+) = """\n(.*?)\n([ \t]*)""";', source.read_text(), re.S):
            indent = m.group(3)
            found[m.group(1)] = (f"{namespaces[source.stem]}.{source.stem}.{m.group(1)}", "\n".join(line[len(indent):] for line in m.group(2).split("\n")))
    return found


TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city <\u00e9 & 'quotes'>",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city"}, "days": {"type": "integer"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "The time.", "parameters": {"type": "object", "properties": {}}}},
]
CALLS = [
    {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
    {"id": "call00002", "type": "function", "function": {"name": "get_time", "arguments": {}}},
]
CONVERSATIONS = {
    "one call": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
                 {"role": "assistant", "content": "", "tool_calls": CALLS[:1]}, {"role": "tool", "tool_call_id": "call00001", "content": "{\"temp\": 20}"}],
    "two calls": [{"role": "user", "content": "Weather and time?"}, {"role": "assistant", "content": "", "tool_calls": CALLS},
                  {"role": "tool", "tool_call_id": "call00001", "content": "{\"temp\": 21.5}"}, {"role": "tool", "tool_call_id": "call00002", "content": "12:00"},
                  {"role": "assistant", "content": "21.5 degrees at noon."}, {"role": "user", "content": "Thanks \u00df"}],
}
CHAT = {"bos_token": "<s>", "eos_token": "</s>", "tools": TOOLS}

# Seed-OSS-36B-Instruct's reflection-interval lookup, as its chat_template.jinja has it.
SEED_BUDGET = """{%- set budget_reflections_v05 = {
    0:      0,
    512:    128,
    1024:   256,
    2048:   512,
    4096:   512,
    8192:   1024,
    16384:  1024
} -%}
{%- set ns = namespace(interval = None) -%}
{%- for k, v in budget_reflections_v05 | dictsort -%}
    {%- if ns.interval is none and thinking_budget <= k -%}
        {%- set ns.interval = v -%}
    {%- endif -%}
{%- endfor -%}
{%- if ns.interval is none -%}
    {%- set ns.interval = budget_reflections_v05[16384] -%}
{%- endif -%}
You will reflect on your thinking process every {{ ns.interval }} tokens."""

class Differs:
    """Where Stratus renders otherwise than jinja2 on purpose: what it renders, and why."""
    def __init__(self, renders, why):
        self.renders, self.why = renders, why


CASES = [
    # {% set %} in a loop body sets a name of the loop's own: every iteration starts from the
    # value outside, and after the loop (and in its else) the outer value is back.
    ("set in a loop is the iteration's", "{% set x = 'out' %}{% for i in range(3) %}{{ x }}{% set x = i %}{{ x }};{% endfor %}{{ x }}", {}),
    ("set in a loop does not reach the next iteration", "{% for i in range(3) %}{% if i == 0 %}{% set x = 'a' %}{% endif %}[{{ x }}]{% endfor %}[{{ x }}]", {}),
    ("set in nested loops", "{% set x = 1 %}{% for i in range(2) %}{% for j in range(2) %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}|{% endfor %}{{ x }}", {}),
    ("set in a loop's else", "{% set x = 1 %}{% for i in [] %}{% set x = 2 %}{% else %}{% set x = 3 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("set in an if is not scoped", "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}", {}),
    ("set block in a loop", "{% set x = 'o' %}{% for i in range(2) %}{% set x %}<{{ i }}>{% endset %}{{ x }}{% endfor %}{{ x }}", {}),
    ("unpacking set in a loop", "{% set a, b = 1, 2 %}{% for i in range(1) %}{% set a, b = b, a %}{{ a }}{{ b }}{% endfor %}{{ a }}{{ b }}", {}),
    ("a macro defined outside a loop", "{% set x = 'o' %}{% macro m() %}{{ x }}{% endmacro %}{% for i in range(2) %}{% set x = i %}{{ m() }}{% endfor %}", {}),
    ("a macro defined in a loop", "{% for i in range(2) %}{% set x = i %}{% macro m() %}{{ x }}{% endmacro %}{{ m() }}{% endfor %}", {}),
    ("namespaces carry out of loops", "{% set ns = namespace(a=0, last=none) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% set ns.last = i %}{% endfor %}{{ ns.a }} {{ ns.last }}", {}),
    ("a loop over messages finds the last user turn", "{% set last = -1 %}{% for m in messages %}{% if m.role == 'user' %}{% set last = loop.index0 %}{% endif %}{% endfor %}{{ last }}", {"messages": CONVERSATIONS["two calls"]}),
    ("set in a macro in a loop", "{% macro m() %}{% set y = 2 %}{{ y }}{% endmacro %}{% set y = 1 %}{% for i in range(1) %}{{ m() }}{{ y }}{% endfor %}{{ y }}", {}),
    # ~ binds tighter than + and -, looser than * and /; comparisons looser than both.
    ("~ and *", "{{ 'a' ~ 2 * 3 }} {{ 'a' ~ 6 / 4 }} {{ 'a' ~ 7 // 2 }} {{ 'a' ~ 7 % 4 }}", {}),
    ("~ and + of strings", "{{ 'a' + 'b' ~ 'c' }} {{ 'a' ~ 'b' + 'c' }}", {}),
    ("~ before +", "{{ 1 + 2 ~ 3 }}", {}),
    ("~ before + on the right", "{{ 'a' ~ 1 + 2 }}", {}),
    ("~ before -", "{{ 'x' ~ 3 - 1 }}", {}),
    ("~ and comparisons", "{{ 'ab' ~ 'c' == 'abc' }} {{ 'a' ~ 'b' in 'xaby' }} {{ 1 ~ 2 < '2' }}", {}),
    ("~ and filters", "{{ 'a' ~ 'b' | upper }} {{ -1 ~ 2 }} {{ 'a' ~ none ~ true }}", {}),
    # A tag closes at "}}" or "%}" outside brackets, as jinja2's lexer balances them.
    ("a nested dict in a tag", "{{ {'a': {'b': 1}} | tojson }} {{ {'a': {'b': [1, {'c': 2}]}}['a']['b'][1].c }}{% set d = {'x': {'y': 1}}%}{{ d.x.y }}{{ {'e':1}}}", {}),
    # "is" binds as a filter does, tighter than any operator.
    ("is binds as tightly as a filter", "{{ 1 + 1 is even }} {{ 2 * 3 is odd }} {{ 'a' ~ 'b' is string }} {{ -3 is odd | string }} {{ [1] | length > 0 is sameas true }} {{ not 1 is odd }} {{ 5 is divisibleby 3 + 2 }} {{ 1 is odd | string is string }} {{ 1 is not odd + 1 }} {{ 1 is odd() }}", {}),
    ("is in a condition", "{% if 1 is odd == true %}y{% endif %}{% for i in range(4) if i is odd %}{{ i }}{% endfor %}{{ x is defined and 1 + 1 is even }}", {}),
    ("tests chained with is", "{{ 1 is odd is sameas true }}", {}),
    # {%+ keeps the white space before a tag that lstrip_blocks would strip; +%} keeps the line
    # break after one that trim_blocks would remove.
    ("{%+ keeps the indentation", "  {%+ if true %}x{% endif %}\n  {% if true %}y{% endif %}", {}),
    ("+%} keeps the line break", "{% if true +%}\nx{% endif %}\n", {}),
    ("+%} and -%}", "{% for i in range(2) +%}\n{{ i }}\n{%- endfor %}|{% if true -%}\n  z{% endif %}", {}),
    ("{%+ on a comment's line", "  {#+ note #}\nA\n  {# note #}\nB", {}),
    ("{{+ is not a modifier", "  {{+ 1 }}", {}),
    ("+}} is not a modifier", "{{ 1 +}}", {}),
    # Line breaks: \r\n and \r become \n in text and literals, so trim_blocks and lstrip_blocks
    # see a template saved on Windows as they see it saved on Linux.
    ("\\r\\n with trim_blocks and lstrip_blocks", "a\r\n  {% if true %}\r\nb\r\n  {% endif %}\r\nc\r\n", {}),
    ("\\r\\n in text and literals", "a\r\n{{ 'x\r\ny' }}\rz\r\n\r\n", {}),
    ("\\r\\n after -%}", "{% for m in messages -%}\r\n  {{ m.role }}\r\n{%- endfor %}\r\n", {"messages": CONVERSATIONS["one call"]}),
    ("\\r line endings", "{% if true %}\r  x\r  {% endif %}\rend", {}),
    # loop.*
    ("loop.changed", "{% for i in [1, 1, 2, 3, 3] %}{% if loop.changed(i) %}{{ i }}{% endif %}{% endfor %}", {}),
    ("loop.changed of several values", "{% for m in messages %}{{ loop.changed(m.role, m.content == '') }}{% endfor %}", {"messages": CONVERSATIONS["two calls"]}),
    ("loop.previtem and nextitem", "{% for i in [1, 2, 3] %}{{ loop.previtem }}{{ loop.nextitem }}|{{ loop.previtem is defined }}{% endfor %}", {}),
    ("loop.depth", "{% for i in [1] %}{{ loop.depth }}{{ loop.depth0 }}{% endfor %}", {}),
    # A macro that reads varargs or kwargs takes arguments beyond its parameters.
    ("varargs and kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}|{{ m() }}", {}),
    ("varargs alone", "{% macro m(a, b=2) %}{{ a }}{{ b }}{% for v in varargs %}-{{ v }}{% endfor %}{% endmacro %}{{ m(1) }} {{ m(1, 3, 4, 5) }}", {}),
    ("kwargs alone", "{% macro m(a) %}{{ a }}{% for k, v in kwargs | dictsort %} {{ k }}={{ v }}{% endfor %}{% endmacro %}{{ m(1, z=2, y=3) }} {{ m(a=0) }}", {}),
    ("extra arguments without varargs", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", {}),
    ("a keyword without kwargs", "{% macro m(a) %}{{ a }}{{ varargs }}{% endmacro %}{{ m(1, k=2) }}", {}),
    ("varargs and kwargs in caller", "{% macro m() %}{{ caller(1, 2) }}{% endmacro %}{% call m() %}{{ varargs }}{% endcall %}", {}),
    # str.format
    ("str.format", "{{ '{} and {}'.format(1, 'b') }} {{ '{0}{1}{0}'.format('a', 'b') }} {{ '{x}-{y}'.format(x=3, y='z') }} {{ '{{}}{}'.format(none) }}", {}),
    ("str.format specs", "{{ '{:>5}|{:<4}|{:^5}|{:05d}|{:.2f}|{:,}|{:x}|{!r}'.format('ab', 'c', 'd', 42, 3.14159, 1234567, 255, 'q') }}", {}),
    ("str.format of attributes and items", "{{ '{0[role]}: {0[content]}'.format(messages[0]) }} {{ '{m[0]}'.format(m=[7]) }}", {"messages": CONVERSATIONS["one call"]}),
    ("str.format with too few arguments", "{{ '{} {}'.format(1) }}", {}),
    ("str.format of booleans", "{{ '{:>5}|{}|{:d}|{!s:>6}'.format(true, true, true, true) }}", {}),
    ("str.format of none with a spec", "{{ '{:5}'.format(none) }}", {}),
    ("str.format of none", "{{ '{}|{!r}'.format(none, none) }}", {}),
    ("str.format of a string as a number", "{{ '{:d}'.format('x') }}", {}),
    ("str.format of numbers", "{{ '{:,.2f}|{:e}|{:%}|{:b}|{:#x}|{:+d}|{:=+6d}|{:*^9}|{:_}|{:.3}|{:g}|{:.1e}|{:08.3f}|{:-^7d}'.format(1234.5, 0.000123, 0.25, 5, 255, 3, 42, 'mid', 1000000, 3.14159, 1e20, 12345.678, -3.14159, 5) }}", {}),
    ("str.format of more numbers", "{{ '{:f}|{}|{:.3}|{:,}|{:c}|{:n}|{: d}|{: d}|{:#b}|{:#o}|{:#X}|{:10.3e}|{:G}|{:E}|{:.0f}|{:.0%}|{:g}|{:g}|{:g}|{:_x}|{:x}'.format(3, 2.0, 2.0, -1234567, 65, 1234, 5, -5, 5, 8, 255, -1234.5, 1e-10, 1.5, 2.5, 0.125, 100000, 1e16, 123456789, 65535, -255) }}", {}),
    ("str.format mixing numberings", "{{ '{0} {}'.format(1, 2) }}", {}),
    ("str.format_map", "{{ '{name}: {n:03d}'.format_map({'name': 'x', 'n': 7}) }}", {}),
    ("str.format of a list", "{{ '{}|{!r}'.format([1, 'a'], 'q') }}", {}),
    ("str.format of a list with a spec", "{{ '{:>10}'.format([1]) }}", {}),
    ("str.format nested fields", "{{ '{:.2}|{:{w}}'.format('abcdef', 'a', w=4) }} {{ '{0:{1}}'.format(1, 2) }} {{ '{:>{}}'.format(1, 3) }}", {}),
    ("str.format of a lone brace", "{{ '{'.format() }}", {}),
    ("str.format of a closing brace", "{{ '}'.format() }}", {}),
    ("str.format of a float as hex", "{{ '{:x}'.format(2.5) }}", {}),
    ("str.format items of a string and a list", "{{ '{0[0]}{0[-1]}|{1[1]}|{x.y}'.format('abc', [5, 6], x={'y': 1}) }}", {}),
    ("str.format '=' of a string", "{{ '{:=5}'.format('a') }}", {}),
    ("str.format zeros before a string's width", "{{ '{:05}'.format('ab') }}", {}),
    ("str.format of nested items and attributes", "{{ '{a[b][c]}|{a.b.c}|{a[b].c}'.format(a={'b': {'c': 3}}) }}", {}),
    ("str.format and % of a lone surrogate", "{{ '{:c}'.format(55296) | length }} {{ ('%c' % 56319) | length }}", {}),
    ("a width or precision of more than 64 bits", "{{ '{:99999999999999999999}'.format('a') }}", {}),
    ("a % width beyond 32 bits", "{{ '%99999999999d' % 1 }}", {}),
    ("a % precision beyond 32 bits", "{{ '%.99999999999f' % 1 }}", {}),
    # Python pads any width and writes any number of digits. Stratus pads any width the text a
    # render may build holds (8 Mi characters), and refuses more digits after the point than
    # 10,000 (they cost time growing with their number) rather than render a shorter text.
    ("a width beyond 10,000", "{{ '{:20000}'.format(1) | length }} {{ ('%20000d' % 1) | length }} {{ '{:>20000}'.format('a')[-2:] }}", {}),
    ("a width beyond the text a render builds", "{{ '{:9000000}'.format(1) | length }}", {}, "width of 9000000, beyond the 8,388,608 characters"),
    ("a % width beyond the text a render builds", "{{ ('%9000000d' % 1) | length }}", {}, "width of 9000000, beyond the 8,388,608 characters"),
    ("a precision beyond 10,000", "{{ '{:.20000f}'.format(1) }}", {}, "precision of 20000, beyond the 10,000"),
    ("a % precision beyond 10,000", "{{ '%.20000f' % 1 }}", {}, "precision of 20000, beyond the 10,000"),
    ("a width of 10,000", "{{ '{:10000}'.format(1) | length }} {{ ('%10000s' % 'a') | length }} {{ '{:.10000f}'.format(1) | length }}", {}),
    ("indent by any width", "{{ 'a\\nb' | indent(2000) | length }} {{ 'a' | indent(999999999) }} {{ 'a\\nb' | indent(-3) }}", {}),
    ("abs of the extremes", "{{ (-9223372036854775807 - 1) | abs }}", {}, "beyond 64-bit integers"),
    ("abs of booleans and the largest integer", "{{ true | abs }} {{ false | abs }} {{ -9223372036854775807 | abs }} {{ -0.0 | abs }}", {}),
    ("str.format of a float without a type", "{{ '{:.1}|{:.2}|{:.3}|{:3.0}|{:.1}|{:.1}|{:.2}'.format(3.14159, 12.5, 3.14159, -0.0, 0.5, 0.0, 100.0) }}", {}),
    ("17 digits of a float near a power of ten", "{{ '%.17g' % 1e-7 }} {{ '%.16e' % 1e-7 }} {{ '{:.17}'.format(1e-7) }} {{ '%.17g' % 1e23 }} {{ '%.3e' % 9.9995 }} {{ '%.0e' % 0.95 }}", {}),
    ("str.format refuses # of a string", "{{ '{!r:#12}'.format('ab') }}", {}),
    ("str.format refuses , of hexadecimal", "{{ '{:,x}'.format(1234567) }}", {}),
    ("str.format refuses _ of a character", "{{ '{:_c}'.format(65) }}", {}),
    ("str.format groups hexadecimal by _", "{{ '{:_x}|{:_b}|{:,d}|{:_}'.format(1234567, 255, 1234567, 1234567) }}", {}),
    # Integer literals
    ("hexadecimal, octal and binary literals", "{{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 0XfF }} {{ 0O7 }} {{ 0B1 }}", {}),
    ("underscores in literals", "{{ 1_000 }} {{ 0x_ff }} {{ 0xFF_FF }} {{ 0b_1_0 }} {{ 1_0.5 }} {{ 1e1_0 }}", {}),
    ("a leading zero", "{{ 007 }}", {}),
    ("a bad digit", "{{ 0b102 }}", {}),
    ("integers beyond 64 bits", "{{ 99999999999999999999 }}", {}, "beyond 64-bit integers"),
    ("arithmetic beyond 64 bits", "{{ 2 ** 70 }}", {}, "beyond 64-bit integers"),
    ("the largest 64-bit integer", "{{ 9223372036854775807 }} {{ -9223372036854775807 - 1 }} {{ 0x7fffffffffffffff }}", {}),
    # A number after a dot is an index: jinja2's lexer reads no float right after a dot, so
    # d.1e5 is d.1 followed by a name, and d.01 is d.0 followed by an integer, both refused.
    ("a number after a dot is an index", "{% set d = {1: 'b', 10: 'c'} %}{% set x = [1, 2, 3] %}{{ d.1 }} {{ x.1 }} {{ x.0 }} {{ x.00 }} {{ d.0x1 }} {{ x.0b1 }} {{ d.1_0 }} {{ d. 1 }} {{ d . 1 }} {{ d.1.0 }} [{{ d.1.5 }}] [{{ d.1.e5 }}] [{{ d.2 }}] [{{ x.5 }}] [{{ x.1 .0 }}] {{ (x).1 }} {{ x.1 | string }}", {}),
    ("a float after a dot and a space", "{{ d. 1.5 }}", {"d": {}}),
    ("a string after a dot", "{{ d.'x' }}", {"d": {}}),
    ("an exponent after a dot", "{{ d.1e5 }}", {"d": {}}),
    ("an upper-case exponent after a dot", "{{ d.1E5 }}", {"d": {}}),
    ("an exponent without digits after a dot", "{{ d.1e }}", {"d": {}}),
    ("a leading zero after a dot", "{{ x.01 }}", {"x": [1, 2]}),
    ("an underscore after a zero after a dot", "{{ x.0_1 }}", {"x": [1, 2]}),
    ("letters after a number after a dot", "{{ d.1x }}", {"d": {}}),
    ("a negative index after a dot", "{{ x.-1 }}", {"x": [1, 2]}),
    ("a plus after a dot", "{{ x.+1 }}", {"x": [1, 2]}),
    ("a dot after an index after a dot", "{{ x.1. }}", {"x": [1, 2]}),
    # NaN and infinity, made from variables (jinja2 folds a constant such as 1e400 or
    # 'inf' | float into its code as the name inf, which it then does not find, unless it only
    # prints it): printed as Python prints them (nan, inf), written as json.dumps writes them
    # (NaN, Infinity), rounded as Python rounds them; a floor, a ceiling or an integer of
    # infinity is refused, and |int of NaN (or of text it cannot read) is its default.
    ("nan and infinity as text", "{% set i = inf | float %}{% set n = nan | float %}{{ n }} {{ i }} {{ -i }} {{ [n, i, -i] }} {{ {'a': i} }} {{ n | string }} {{ -i | string }} {{ n ~ i }} {{ '%s %f %.2f %e' | format(n, i, -i, i) }} {{ '{} {:f} {:.1%}'.format(i, n, -i) }} {{ i | abs }} {{ -i | abs }} {{ n == n }} {{ n != n }} {{ [n] == [n] }} {{ n in [n] }} {{ n is eq n }} {{ [n, n] | unique | list }} {{ n < 1 }} {{ n >= n }} {{ [n] < [n] }} {{ i > 1e308 }} {{ i is number }} {{ i * 0 }}", {"inf": "inf", "nan": "nan"}),
    ("nan and infinity read by float", "{{ 'nan' | float }} {{ 'inf' | float }} {{ '-inf' | float }} {{ 'Infinity' | float }} {{ '-INFINITY' | float }} {{ 'NaN' | float }} {{ '+inf' | float }} {{ ' iNf ' | float }} {{ '-nan' | float }} {{ 'infinit' | float }} {{ '\u221e' | float }} {{ '1_000.5' | float }} {{ '1__0' | float }} {{ '_1' | float }} {{ ' .5e1 ' | float }} {{ '1.' | float }} {{ 'x' | float(1.5) }} {{ [] | float(default=2) }}", {}),
    ("nan and infinity as JSON", "{% set i = inf | float %}{% set n = nan | float %}{{ n | tojson }} {{ i | tojson }} {{ -i | tojson }} {{ [n, {'a': i}] | tojson }} {{ {i: 1, -i: 2} | tojson }} {{ {'b': n, 'a': -i} | tojson(indent=1, sort_keys=true) }}", {"inf": "inf", "nan": "nan"}),
    ("nan and infinity rounded", "{% set i = inf | float %}{% set n = nan | float %}{{ n | round }} {{ i | round }} {{ -i | round(2) }} {{ n | round(1) }} {{ i | round(-1) }}", {"inf": "inf", "nan": "nan"}),
    ("infinity rounded down", "{{ inf | float | round(1, 'floor') }}", {"inf": "inf", "nan": "nan"}),
    ("nan rounded up", "{{ nan | float | round(0, 'ceil') }}", {"inf": "inf", "nan": "nan"}),
    ("nan as an integer", "{% set n = nan | float %}{{ n | int }} {{ n | int(5) }} {{ 'nan' | int }} {{ 'nan' | int(7) }} {{ 'x' | int(default=2) }}", {"inf": "inf", "nan": "nan"}),
    ("infinity as an integer", "{{ inf | float | int }}", {"inf": "inf", "nan": "nan"}),
    ("minus infinity as an integer", "{{ -(inf | float) | int(3) }}", {"inf": "inf", "nan": "nan"}),
    ("'inf' as an integer", "{{ 'inf' | int }} {{ '-inf' | int(4) }} {{ '2.7' | int }} {{ '1e3' | int }} {{ ' -4 ' | int }} {{ '1_000' | int }} {{ 'x' | int(default=2) }} {{ [] | int(3) }}", {}),
    ("a literal beyond floats printed", "{{ 1e400 }} {{ -1e400 }}", {}),
    ("infinity formatted as an integer", "{{ '%d' | format(inf | float) }}", {"inf": "inf", "nan": "nan"}),
    # \N{...}
    ("\\N escapes", "{{ '\\N{BULLET} \\N{LATIN SMALL LETTER E WITH ACUTE} \\N{bullet}' }}", {}, "\\N{"),
    # Case mappings with Python's special casing
    ("upper with special casing", "{{ 'stra\u00dfe' | upper }} {{ '\u00df'.upper() }} {{ '\ufb01' | upper }} {{ '\u0149' | upper }} {{ '\u1f80' | upper }}", {}),
    ("lower with special casing", "{{ '\u0130' | lower }} {{ '\u03a3\u0391\u03a3' | lower }} {{ '\u0130'.lower() }} {{ 'A\u03a3 B' | lower }}", {}),
    ("title and capitalize with special casing", "{{ '\u00df' | title }} {{ '\u00dfa' | capitalize }} {{ '\u00df'.title() }} {{ '\u00df'.capitalize() }}", {}),
    ("case mappings of many scripts", "{% set s = '\u01c4\u01c5\u01c6 \u0390 \ufb03 \ufb06 \u1f80\u1fb3\u1ffc \u0587 \u13a0\uab70 \u10d0\u10d1 \u24b6\u24d0 \u216b\u217b \U00010400\U00010428 o\u0130\u03a3 \u03a3\u0301a\u03a3\u0301 \u03c3\u03a3.' %}{{ s | upper }}|{{ s | lower }}|{{ s | title }}|{{ s | capitalize }}|{{ s.title() }}|{{ s.upper() is upper }}{{ s.lower() is lower }}", {}),
    ("upper of the dotless i", "{{ '\u0131' | upper }} {{ '\u0131'.upper() }} {{ '\u0131'.title() }} {{ '\u0131x' | capitalize }} {{ 'x \u0131' | title }}", {}),
    # Cased letters without a case of their own (Unicode's Other_Lowercase and Other_Uppercase:
    # modifier letters, ordinal indicators, circled letters) end a word for title and final sigma.
    ("modifier letters are cased", "{{ '\u1d50a \u00aab \u1da2\uff45'.title() }} {{ 'x\u1d50\u03a3' | lower }} {{ '\u1d50\u03a3' | lower }} {{ '\u1d50' is lower }} {{ '\u24b6' is upper }} {{ '\u00aa' is lower }} {{ '\u02b0A' is upper }}", {}),
    ("is upper and is lower", "{{ '\u00df' is lower }} {{ 'SS' is upper }} {{ '\u00df' is upper }}", {}),
    # Markup: with autoescape off (transformers) |escape gives Markup, which |escape leaves as it
    # is; Stratus has no Markup (chat templates escape nothing), so |escape and |safe give plain
    # text, and escaping twice escapes twice.
    ("escape twice", "{{ '<b>' | e | e }} {{ '<' | safe | e }} {{ '<a>' | escape | length }}", {}, Differs("&amp;lt;b&amp;gt; &lt; 9", "no Markup: |escape gives plain text")),
    ("escape then concatenate", "{{ ('<b>' | e) ~ '<' }}", {}),
    # Undefined, as transformers' environment has it (jinja2's default Undefined): a missing
    # variable, key, attribute or element prints as nothing, is false, empty and equal only to
    # another undefined, but reading into it, calling it, computing with it or writing it as JSON
    # raises, naming what was missing.
    ("undefined prints as nothing", "[{{ x }}][{{ d.b }}][{{ l[5] }}][{{ s.text }}][{{ x ~ 'a' }}][{{ x | length }}{{ x | count }}][{{ x | upper }}{{ x | trim }}{{ x | string }}{{ x | e }}]", {"d": {"a": 1}, "l": [1], "s": "ab"}),
    ("undefined is false, empty and equal to none of the values", "{{ x is defined }} {{ x == none }} {{ x != 1 }} {{ 'a' in x }} {{ x in [1] }} {{ x | list }} {{ x | sort }} {{ x | join(',') }} {{ x | default('z') }} {% for i in x %}{{ i }}{% else %}empty{% endfor %} {{ x is none }} {{ x is string }} {{ d.b is defined }} {{ x == y }}", {"d": {"a": 1}}),
    ("an attribute of an undefined variable", "{{ x.y }}", {}),
    ("an attribute of a missing key", "{{ d.b.c }}", {"d": {"a": 1}}),
    ("an attribute of a missing element", "{{ l[5].c }}", {"l": [1]}),
    ("an attribute of a string's missing attribute", "{{ s.text.x }}", {"s": "ab"}),
    ("an item of an undefined variable", "{{ x['y'] }}", {}),
    ("whether an attribute of an undefined variable is defined", "{{ x.y is defined }}", {}),
    ("a default for an attribute of an undefined variable", "{{ x.y | default('z') }}", {}),
    ("an attribute of the first of nothing", "{{ ([] | first).a }}", {}),
    ("an attribute of a method", "[{{ d.items.x }}]", {"d": {"a": 1}}),
    ("arithmetic with undefined", "{{ x + 1 }}", {}),
    ("arithmetic with undefined on the right", "{{ 'a' + x }}", {}),
    ("undefined multiplied", "{{ x * 2 }}", {}),
    ("undefined negated", "{{ -x }}", {}),
    ("undefined compared by order", "{{ x < 1 }}", {}),
    ("undefined called", "{{ x() }}", {}),
    ("undefined as an integer", "{{ x | int }}", {}),
    ("undefined as JSON", "{{ x | tojson }}", {}),
    # tojson is transformers' (x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # GLM's templates write tojson(ensure_ascii=False); a first positional argument is ensure_ascii.
    ("tojson's arguments", "{{ d | tojson(ensure_ascii=False) }}|{{ d | tojson(4) }}|{{ d | tojson(true, 1) }}|{{ d | tojson(sort_keys=true, separators=(',', ':')) }}|{{ d | tojson(indent='  ', separators=[';', '=']) }}|{{ d | tojson(indent=0) }}|{{ [{}, []] | tojson(indent=2) }}", {"d": {"z\u00e9": ["\U0001f600 \u007f <&>", 1.5, None], "a": {"b": True}}}),
    ("tojson with an unknown argument", "{{ 1 | tojson(ascii=true) }}", {}),
    ("tojson with three separators", "{{ 1 | tojson(separators=(',', ':', ';')) }}", {}),
    ("a missing key as JSON", "{{ d.b | tojson }}", {"d": {"a": 1}}),
    ("undefined dictsorted", "{{ x | dictsort }}", {}),
    ("items of undefined", "{% for k, v in x | items %}{{ k }}{% endfor %}ok", {}),
    ("items of a string", "{% for k, v in 'ab' | items %}{{ k }}{% endfor %}", {}),
    ("items of none", "{% for k, v in none | items %}{{ k }}{% endfor %}", {}),
    # none is no sequence: a loop over it, its length or a search in it is an error (a tool-use
    # template's "for tool in tools" without tools), while an undefined value has no items, and
    # select, reject and map read any false value as none.
    ("a loop over none", "{% for t in tools %}{{ t }}{% endfor %}", {"tools": None}),
    ("a loop over none with else", "{% for t in none %}{% else %}e{% endfor %}", {}),
    ("the length of none", "{{ none | length }}", {}),
    ("the length of a number", "{{ 3 | length }}", {}),
    ("in none", "{{ 1 in none }}", {}),
    ("a number in a string", "{{ 1 in '123' }}", {}),
    ("none's items filtered and mapped", "{{ none | selectattr('a') | list }}{{ none | reject | list }}{{ 0 | map('upper') | list }}{{ '' | select | list }}{{ x | length }}{{ 'a' in x }}{% for i in x %}{{ i }}{% endfor %}{{ x | list }}", {}),
    # {% raw %}: its text is written as it is, tags and all; whitespace control applies to its own tags.
    ("raw", "{% raw %}{{ x }}{% if %}{# c #}{% endraw %}|{{ 1 }}", {}),
    ("raw with whitespace control", "a  {%- raw -%}  {{ b }}  {%- endraw -%}  c\n  {% raw %}\nd{% endraw %}\ne", {}),
    ("raw spanning lines", "{% for i in range(2) %}{% raw %}\n{{ i }}\n{% endraw %}{{ i }}{% endfor %}", {}),
    ("raw not closed", "{% raw %}{{ x }}", {}),
    ("endraw without raw", "{% endraw %}", {}),
    # Recursive loops: loop(children) renders the body again over them, one level deeper.
    ("a recursive loop", "{% for n in tree recursive %}<{{ n.name }}:{{ loop.depth }}{% if n.children %}[{{ loop(n.children) }}]{% endif %}>{% endfor %}", {"tree": [{"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}, {"name": "d"}]}, {"name": "e"}]}),
    ("a recursive loop's loop variables", "{% for n in tree recursive %}{{ loop.index }}/{{ loop.length }}{{ loop.first }}{{ loop.depth0 }}{% if n is mapping %}({{ loop(n['k']) }}){% endif %};{% endfor %}", {"tree": [1, {"k": [2, 3]}, 4]}),
    ("a recursive loop with a filter and else", "{% for n in tree if n.keep recursive %}{{ n.name }}{{ loop(n.children or []) }}{% else %}-{% endfor %}", {"tree": [{"name": "a", "keep": True, "children": [{"name": "b", "keep": False}]}, {"name": "c", "keep": True}]}),
    ("a recursive loop unpacking pairs", "{% for k, v in d | dictsort recursive %}{{ k }}{% if v is mapping %}({{ loop(v | dictsort) }}){% endif %}{% endfor %}", {"d": {"b": {"y": 1, "x": {"z": 2}}, "a": 0}}),
    ("loop() in a loop that is not recursive", "{% for n in [1] %}{{ loop([2]) }}{% endfor %}", {}),
    ("a recursive loop's scope", "{% set x = 'o' %}{% for n in [[1], 2] recursive %}{% set x = n %}{% if n is iterable %}{{ loop(n) }}{% endif %}{{ x }}{% endfor %}{{ x }}", {}),
    ("break in a recursive loop", "{% for n in [[1, 2, 3], 4, 5] recursive %}{% if n == 2 %}{% break %}{% endif %}{% if n is iterable %}{{ loop(n) }}{% else %}{{ n }}{% endif %}{% endfor %}", {}),
    # {% call(args) m() %}: caller(...) passes the body its arguments.
    ("call with arguments", "{% macro list(items) %}{% for i in items %}{{ caller(i, loop.index) }}{% endfor %}{% endmacro %}{% call(item, n) list(['a', 'b']) %}{{ n }}={{ item }};{% endcall %}", {}),
    ("call with a default argument", "{% macro m() %}{{ caller() }}|{{ caller('x') }}{% endmacro %}{% call(a='d') m() %}[{{ a }}]{% endcall %}", {}),
    ("call with a keyword argument", "{% macro m() %}{{ caller(b=2, a=1) }}{% endmacro %}{% call(a, b) m() %}{{ a }}{{ b }}{% endcall %}", {}),
    ("call with too many arguments", "{% macro m() %}{{ caller(1, 2) }}{% endmacro %}{% call(a) m() %}{{ a }}{% endcall %}", {}),
    ("call with a missing argument", "{% macro m() %}[{{ caller() }}]{% endmacro %}{% call(a) m() %}{{ a }}{% endcall %}", {}),
    ("call's arguments hide outer names", "{% set a = 'out' %}{% macro m() %}{{ caller('in') }}{% endmacro %}{% call(a) m() %}{{ a }}{% endcall %}{{ a }}", {}),
    ("call with arguments and varargs", "{% macro m() %}{{ caller(1, 2, 3) }}{% endmacro %}{% call(a) m() %}{{ a }}{{ varargs }}{% endcall %}", {}),
    # {% filter %}: the body's text through filters (Fireworks' firefunction-v2 trims a block of
    # instructions with it); its body is a scope of its own.
    ("filter blocks", "{% set x = 1 %}{% filter upper %}a{% set x = 2 %}{{ x }}{% endfilter %}{{ x }}|{% filter trim | upper %}  ab  {% endfilter %}|{% filter indent(2, true) %}a\nb{% endfilter %}|{% filter default('z') %}{% endfilter %}", {}),
    ("a filter block in a set block", "{%- set suffix -%}\n{%- filter trim -%}\n  Call functions.\n\n  {{ n }} of them.\n{%- endfilter -%}\n{%- endset -%}\n[{{ suffix }}]", {"n": 2}),
    ("break in a filter block", "{% for i in range(3) %}{% filter upper %}x{{ i }}{% if i == 1 %}{% break %}{% endif %}{% endfilter %}{% endfor %}", {}),
    ("a filter block without a filter", "{% filter %}a{% endfilter %}", {}),
    ("a filter block of an unknown filter", "{% filter nope %}a{% endfilter %}", {}),
    # A macro read as a value (an item of a list) and called, its arguments spread from a list
    # (*items), as AI21 Jamba's templates call macros_to_call[i](*params_for_macros[i]).
    ("macros called from a list with spread arguments", "{% macro a(x, y='d') %}[{{ x }}{{ y }}]{% endmacro %}{% macro b(x) %}<{{ x }}>{% endmacro %}{% set fs = [a, b] %}{% set ps = [[1, 2], [3]] %}{% for i in range(2) %}{{ fs[i](*ps[i]) }}{% endfor %}{{ a(*[5]) }}{{ a(*'xy') }}{{ a(0, *[]) }}{{ (fs | last)(4) }}", {}),
    ("a number called", "{% set x = [1] %}{{ x[0]() }}", {}),
    ("an undefined value called", "{{ x[0](1) }}", {}),
    ("too many spread arguments", "{% macro a(x) %}{{ x }}{% endmacro %}{{ a(*[1, 2]) }}", {}),
    ("spread arguments to a function", "{{ range(*[3]) | list }}", {}, "*arguments are given only to a macro"),
    # A dict's keys are any value Python hashes, not text: Seed-OSS's template looks its thinking
    # budget up in {0: 0, 512: 128, ...}, sorted with dictsort and read as budget_reflections[16384].
    ("a dict with integer keys", "{% set d = {1: 'a', 2: 'b'} %}{{ d[1] }}{{ d.get(2) }}{{ d.get(3, 'z') }}{{ d.get('1') }}|{% for k in d %}{{ k + 1 }}{% endfor %}|{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d }} {{ d | list }} {{ d.keys() | list }} {{ d | items | list }} {{ d | length }} {{ d.1 }}", {}),
    ("keys of other types", "{% set d = {1.5: 'f', true: 't', none: 'n', (1, 'x'): 'tp', '1': 's'} %}{{ d }} {{ d[1] }} {{ d[none] }} {{ d[(1, 'x')] }} {{ d['1'] }} {{ 1.0 in d }} {{ 2 in d }} {{ none in d }} {{ (1, 'x') in d }} {{ d | length }} {{ {x: 1} }}", {}),
    ("1, 1.0 and true are one key", "{{ {1: 'a', 1.0: 'b', true: 'c'} }} {{ {true: 'a', 1: 'b'} }} {{ {0: 'z'}[false] }} {{ {1: 'a'} == {1.0: 'a'} }} {{ {1: 'a'} == {'1': 'a'} }} {{ {none: 1} == {none: 1} }}", {}),
    ("a text key is not a number", "{% set d = {'2': 'x'} %}{{ d.get(2) }} {{ d[2] is defined }} {{ 2 in d }} {{ d['2'] }} {{ {2: 'x'}['2'] is defined }}", {}),
    ("a missing integer key", "{% set d = {1: 'a'} %}[{{ d[3] }}]{{ d[3].x }}", {}),
    ("a list as a key", "{{ {[1]: 2} }}", {}),
    ("a list looked up in a dict", "[{{ {'a': 1}[[1]] }}]", {}),
    ("a list searched for in a dict", "{{ [1] in {'a': 1} }}", {}),
    ("a list got from a dict", "{{ {'a': 1}.get([1]) }}", {}),
    ("integer keys as JSON", "{{ {1: 'a', 2.5: [1], true: 1, false: 0, none: none, 'k': {3: 4}} | tojson }} {{ {10: 'a', 2: 'b'} | tojson(sort_keys=true) }}", {}),
    ("a tuple key as JSON", "{{ {(1, 2): 3} | tojson }}", {}),
    ("keys of two types sorted as JSON", "{{ {1: 'a', 'b': 2} | tojson(sort_keys=true) }}", {}),
    ("integer keys sorted, mapped and formatted", "{{ {3: 'c', 1: 'a', 2: 'b'} | dictsort }} {{ {3: 'c', 1: 'a'} | dictsort(by='value', reverse=true) }} {{ dict([(1, 'a'), (2, 'b')]) }} {{ dict({1: 'x'}, y=2) }} {{ [{1: 'a'}, {1: 'b'}] | map(attribute='1') | list }} {{ '{0[1]}'.format({1: 'a'}) }} {{ '{x}'.format_map({'x': 1, 2: 3}) }} {{ {2: 1, 1: 2} | min }} {{ {2: 1, 1: 2} | sort }} {{ {-1: 'n', 0.5: 'h'} | string }}", {}),
    ("an integer key named in a format", "{{ '%(1)s' % {1: 'x'} }}", {}),
    ("Seed-OSS's thinking budget", SEED_BUDGET, {"thinking_budget": 700}),
    ("Seed-OSS's thinking budget past its last gear", SEED_BUDGET, {"thinking_budget": 20000}),
    # Real templates' styles with tools (the C# tests' templates), with a fixed clock.
    ("Llama 3.1 style, one call", "@Llama31", dict(CHAT, messages=CONVERSATIONS["one call"], add_generation_prompt=True)),
    ("Llama 3.1 style, no tools", "@Llama31", dict(CHAT, messages=CONVERSATIONS["one call"][:2], tools=None, add_generation_prompt=True)),
    ("Llama 3.1 style saved with CRLF", "@Llama31 with CRLF", dict(CHAT, messages=CONVERSATIONS["one call"], add_generation_prompt=True)),
    ("Qwen style saved with CRLF", "@QwenTools with CRLF", dict(CHAT, messages=CONVERSATIONS["two calls"], add_generation_prompt=True)),
    ("Qwen style, one call", "@QwenTools", dict(CHAT, messages=CONVERSATIONS["one call"], add_generation_prompt=True)),
    ("Qwen style, two calls", "@QwenTools", dict(CHAT, messages=CONVERSATIONS["two calls"], add_generation_prompt=False)),
    ("Mistral style, two calls", "@MistralStyleTools", dict(CHAT, messages=CONVERSATIONS["two calls"], add_generation_prompt=False)),
]


def cs(text):
    """A C# string literal."""
    if text is None:
        return "null"
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"': out.append('\\"')
        elif ch == "\\": out.append("\\\\")
        elif ch == "\n": out.append("\\n")
        elif ch == "\r": out.append("\\r")
        elif ch == "\t": out.append("\\t")
        elif code < 0x20 or code >= 0x7f: out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else: out.append(ch)
    return '"' + "".join(out) + '"'


def main():
    templates = constants()
    rows = []
    for case in CASES:
        name, template, variables = case[:3]
        refusal = case[3] if len(case) > 3 and isinstance(case[3], str) else None
        differs = case[3] if len(case) > 3 and isinstance(case[3], Differs) else None
        template_cs, source = templates[template[1:].removesuffix(" with CRLF")] if template.startswith("@") else (cs(template), template)
        if template.endswith(" with CRLF"):  # the constant saved with Windows line breaks
            template_cs, source = template_cs + '.ReplaceLineEndings("\\r\\n")', source.replace("\n", "\r\n")
        why = ""
        try:
            expected = env.from_string(source).render(**variables)
        except Exception as error:  # jinja2 refuses it: so must Stratus
            expected = None
            why = f"  // jinja2: {type(error).__name__}: {error}".replace("\n", " ")
        if refusal is not None and expected is None:
            raise SystemExit(f"{name}: jinja2 refuses it, so it needs no refusal of Stratus's own")
        if differs is not None:
            why = f"  // jinja2 renders {cs(expected)}; Stratus differs: {differs.why}"
            expected = differs.renders
        rows.append(f"        {{ {cs(name)}, {template_cs}, {cs(json.dumps(variables, ensure_ascii=False))}, {cs(expected if refusal is None else None)}, {cs(refusal)} }},{why}")
    (HERE / "JinjaDifferentialCases.cs").write_text(
        "// Generated by make_cases.py from what jinja2 " + jinja2.__version__ + " renders; do not edit, run it again.\n"
        "namespace Stratus.Core.Tests;\n\n"
        "static class JinjaDifferentialCases\n{\n"
        "    /// <summary>Name, template, variables (JSON), what jinja2 renders (null: it refuses the\n"
        "    /// template), and the words of Stratus's refusal where Stratus refuses what jinja2 renders.</summary>\n"
        "    public static TheoryData<string, string, string, string?, string?> Cases => new()\n    {\n"
        + "\n".join(rows) + "\n    };\n}\n")
    print(f"{len(rows)} cases written")


main()
