"""Input that must never crash or hang the validator (issue 13, items 5, 6, 7 and 12): every file of config/,
machines/ and rules/ is read through engine/config/yaml_source.py, so each case is tested once here."""

from __future__ import annotations

import re
import time
import tracemalloc
from pathlib import Path

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.yaml_source import load_yaml, parse_yaml
from engine.paths import PROJECT_ROOT
from engine.validate import validate
from tests.conftest import ProjectCopy


def refused(path: Path) -> Problem:
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, path.name)
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


def refused_text(text: str) -> Problem:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "f.yaml")
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


# --- 5: bytes that are not UTF-8 -------------------------------------------------------------------------------


def test_latin1_file_is_named_with_the_byte_its_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bots.yaml"
    path.write_bytes("kind: momentum\ndescription: café\n".encode("latin-1"))
    p = refused(path)
    assert (p.file, p.line, p.col) == ("bots.yaml", 2, 17)
    assert p.message.startswith("not UTF-8 text (byte 0xe9 at offset 31)")


def test_binary_file_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "guards.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    p = refused(path)
    assert (p.line, p.col) == (2, 118)  # the first line break is byte 10
    assert "binary data, not UTF-8 text (byte 0x80 at offset 128)" in p.message


def test_utf16_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_bytes("system:\n  timezone: UTC\n".encode("utf-16"))
    assert refused(path).message.startswith("UTF-16 text, not UTF-8 text (byte 0xff at offset 0)")


def test_control_character_in_utf8_text(tmp_path: Path) -> None:
    p = refused_text("a: 1\nb: x\x00y\n")
    assert (p.line, p.col) == (2, 5) and "control character (U+0000)" in p.message


# --- 6: anchors and aliases are refused --------------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["result: *i"]
)


def test_alias_bomb_is_refused_at_its_first_anchor_in_bounded_time_and_memory() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        p = refused_text(BILLION_LAUGHS)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0 and peak < 5_000_000
    assert (p.line, p.col) == (1, 4) and "anchors and aliases are not allowed in engine files (anchor '&a')" in p.message


def test_a_single_alias_is_refused_too() -> None:
    p = refused_text("base: {enabled: true}\nother: *base\n")
    assert (p.line, p.col) == (2, 8) and "anchors and aliases are not allowed in engine files (alias '*base')" in p.message


def test_nesting_deeper_than_the_limit_is_refused_not_a_recursion_error() -> None:
    p = refused_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert p.line == 1 and "lists and mappings nested more than 64 deep" in p.message


# --- 7: size ----------------------------------------------------------------------------------------------------


def test_a_5_mb_file_is_refused_at_once_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "momentum.yaml"
    line = "  - {trigger: go, source: idle, dest: armed, when: flat}\n"
    path.write_text("transitions:\n" + line * (5_000_000 // len(line)), encoding="utf-8")
    started = time.perf_counter()
    p = refused(path)
    assert time.perf_counter() - started < 0.5
    assert (p.line, p.col) == (1, 1)
    assert p.message.startswith("file too large: 4,9") and "over the limit of 1,048,576 bytes (1,024 KiB)" in p.message


def test_a_file_at_the_limit_is_read(tmp_path: Path) -> None:
    from engine.config.yaml_source import MAX_FILE_BYTES

    path = tmp_path / "big.yaml"
    line = "key_{:06d}: a value of some length\n"
    count = MAX_FILE_BYTES // len(line.format(0))
    path.write_text("".join(line.format(i) for i in range(count)), encoding="utf-8")
    assert len(load_yaml(path).data) == count


# --- values that would switch a limit off ------------------------------------------------------------------------


@pytest.mark.parametrize("written", [".nan", ".inf", "-.inf", ".NaN"])
def test_nan_and_infinity_are_refused(written: str) -> None:
    doc = parse_yaml(f"risk:\n  global_max_daily_loss_pct: {written}\n", "f.yaml")
    (p,) = doc.problems
    assert (p.line, p.col, p.path) == (2, 30, "risk.global_max_daily_loss_pct") and "not a number the engine can use" in p.message


def test_an_unquoted_date_is_reported_with_the_fix() -> None:
    (p,) = parse_yaml("sim:\n  start: 2026-11-23\n", "f.yaml").problems
    assert p.message == 'YAML reads 2026-11-23 as a date, not as text: put it in quotes ("2026-11-23")'


@pytest.mark.parametrize("written", ["9" * 5000, "-" + "9" * 5000, "1_" + "9" * 5000])
def test_an_integer_python_will_not_convert_is_a_problem_at_its_place_not_a_traceback(written: str) -> None:
    """Python refuses `int()` of over 4,300 decimal digits with advice for a Python programmer
    (`sys.set_int_max_str_digits()`), which the user read as the reason: said as for a hex integer of that size."""
    p = refused_text("risk:\n  max_orders_per_minute: " + written + "\n")
    too_large = "a whole number of over 4,300 digits is too large: the engine reads integers up to 9,223,372,036,854,775,807"
    assert (p.line, p.col, p.message) == (2, 26, too_large), p


def test_a_decimal_key_too_long_for_python_is_a_problem_at_the_key() -> None:
    """The key form of the same: a key is text, and the message says so without Python's advice."""
    p = refused_text("? " + "9" * 5000 + "\n: 1\n")
    message = "YAML reads this key as a number of over 4,300 digits, not as text: put it in quotes"
    assert (p.line, p.col, p.message) == (1, 3, message), p


@pytest.mark.parametrize("written", ["0x" + "f" * 5000, "0o" + "7" * 6000, "-0x" + "f" * 5000])
def test_a_hex_or_octal_integer_too_long_for_decimal_is_a_problem_not_a_traceback(project: ProjectCopy, written: str) -> None:
    """Python reads a hex or octal integer at any length but will not write one of over 4,300 decimal digits: the
    problem's own wording, and jsonschema's message at a key with a maximum or a type, raised ValueError."""
    project.replace("config/settings.yaml", "max_orders_per_minute: 10", f"max_orders_per_minute: {written}")
    project.replace("machines/system.yaml", "trigger: arm", f"trigger: {written}")
    found = validate(project.config, project.machines, project.rules).problems
    assert [(p.path, p.line) for p in found] == [
        ("risk.max_orders_per_minute", project.line_of("config/settings.yaml", "max_orders_per_minute")),
        ("transitions[2].trigger", project.line_of("machines/system.yaml", "trigger: " + written[:6])),
    ], found
    assert all("a whole number of over 4,300 digits is too large" in p.message for p in found), found


def test_a_key_too_long_for_decimal_is_a_problem_at_the_key() -> None:
    (p,) = parse_yaml("? 0x" + "f" * 5000 + "\n: 1\n", "f.yaml").problems
    assert (p.line, p.col) == (1, 3) and p.message == "YAML reads this key as a number of over 4,300 digits, not as text: put it in quotes"


def test_an_empty_file_says_so() -> None:
    (p,) = parse_yaml("# only a comment\n", "f.yaml").problems
    assert (p.line, p.col, p.message) == (1, 1, "the file is empty (or holds only comments)")


# --- 12: syntax errors in plain words, with a caret ---------------------------------------------------------------

SYNTAX_CASES = {
    "over-indented key": (
        "states:\n  idle:\n    description: Flat\n      armed:\n    description: y\n",
        (4, 7),
        "this line is indented more than line 3 above it",
        "          armed:\n          ^",
    ),
    "key out of line": (
        "states:\n  idle:\n    description: x\n   armed:\n    description: y\n",
        (4, 4),
        "this line is indented by 3 spaces, which matches none of the blocks it could belong to (4 spaces on line 3, 2 spaces on line 2, 0 spaces on line 1)",
        "       armed:\n       ^",
    ),
    "colon in a value": (
        "states:\n  idle:\n    description: Flat: not permitted\n",
        (3, 22),
        "the value of 'description' contains ': '",
        "        description: Flat: not permitted\n                         ^",
    ),
    "no space after the colon": (
        "exits:\n  stop_loss_pct:0.5\n  take_profit_pct: 1\n",
        (2, 16),
        "a ':' needs a space after it",
        None,
    ),
    "key without its colon": (
        "states:\n  idle\n    description: x\n",
        (2, 3),
        "line 2 ('idle') has no ':'",
        "      idle\n      ^",
    ),
    "tab": ("exits:\n\tstop_loss_pct: 0.5\n", (2, 1), "a tab character: YAML indents with spaces only", None),
    "unclosed bracket": ("tickers: [SPY, QQQ\nenabled: true\n", (2, 8), "the '[' on line 1 (column 10) is not closed", None),
    "unclosed quote": ('a: "abc\nb: 1\n', (1, 4), "this quote is never closed", None),
    "list item among keys": ("a:\n  b: 1\n  - c\n", (3, 3), "a '- ' list item among the keys of a mapping", None),
    "value starting with @": ("a: @home\n", (1, 4), "a value cannot start with '@' in YAML: put the value in quotes", None),
    "two documents": ("a: 1\n---\nb: 2\n", (2, 1), "a second YAML document starts here", None),
    # ruamel's words were "expected chomping or indentation indicators, but found '='", and "expected a comment or
    # a line break, but found 'x'": a guard's `op: >=` unquoted
    "value starting with >": (
        "params:\n  - op: >=\n    right: 2\n",
        (2, 9),
        "a value cannot start with '>' in YAML unless the text is on the lines below ('|' keeps their line breaks, "
        "'>' folds them): put the value in quotes (op: \">=\")",
        None,
    ),
    "value starting with |": ("a: | x\n", (1, 4), "a value cannot start with '|' in YAML unless", None),
    # ruamel's words were "expected <block end>, but found '?'"
    "key among list items": ("a:\n  - x\n  b: 1\n", (3, 3), "a key among the '- ' items of a list", None),
}


@pytest.mark.parametrize("case", SYNTAX_CASES, ids=[name.replace(" ", "-") for name in SYNTAX_CASES])
def test_syntax_errors_are_explained_in_plain_words_with_a_caret(case: str) -> None:
    text, place, words, excerpt = SYNTAX_CASES[case]
    p = refused_text(text)
    assert (p.line, p.col) == place, p
    assert p.message.startswith("YAML syntax error: ") and words in p.message, p.message
    for raw in ("mapping values are not allowed here", "expected <block end>", "cannot start any token", "while parsing"):
        assert raw not in p.message
    assert p.excerpt.count("\n") == 1 and p.excerpt.endswith("^")
    line_shown, caret = p.excerpt.split("\n")
    assert line_shown == "    " + text.splitlines()[p.line - 1]
    assert caret.index("^") == 4 + p.col - 1
    if excerpt is not None:
        assert p.excerpt == excerpt
    assert str(p) == f"{p.headline}\n{p.excerpt}"


# A quote left open, and closed by a quote (or an apostrophe) lines below: the place ruamel gives is that later
# quote's, with its words about what follows it; the mistake is told where the quote opens (issue 13, item 12).
UNCLOSED_QUOTES = {
    "double quote in a mapping": ('a:\n  b: "x\n  c: 1\n  d: "y"\n', (2, 6), 'the next " (line 4, column 6)'),
    "single quote closed by an apostrophe": ("a:\n  b: 'x\n  c: the bot's day\n", (2, 6), "the next ' (line 3, column 13)"),
    "list item": ('syms:\n  - "SPY\n  - QQQ\nb: "z"\n', (2, 5), 'the next " (line 4, column 4)'),
    "key of a list item": ('bots:\n  - name: "x\n    kind: y\n  - name: "z"\n', (2, 11), 'the next " (line 4, column 11)'),
    "flow list": ('a: ["SPY, QQQ]\nb: 1\nc: "x"\n', (1, 5), 'the next " (line 3, column 4)'),
    "flow mapping": ('a: {x: "SPY, y: 2}\nb: 1\nc: "x"\n', (1, 8), 'the next " (line 3, column 4)'),
    "closed by an apostrophe in a comment": (
        "a:\n  b: 'x\n  # the bot's day\n  c: 1\n",
        (2, 6),
        "the next ' (line 3, column 12)",
    ),
    "stopped by a backslash below": ('a: "x\nb: C:\\dir\nc: 1\n', (1, 4), "line 2, where it fails"),
}


@pytest.mark.parametrize("case", UNCLOSED_QUOTES, ids=[name.replace(" ", "-") for name in UNCLOSED_QUOTES])
def test_an_unclosed_quote_is_told_where_it_opens(case: str) -> None:
    """An unclosed quote was told at the next quote of its kind, lines below (a `">="` read as a block scalar:
    "expected chomping or indentation indicators", or "text after the closing quote" at the apostrophe of "bot's"),
    when the mistake is on the line where it opens; a quoted value running over keys is almost always one."""
    text, place, until = UNCLOSED_QUOTES[case]
    p = refused_text(text)
    assert (p.line, p.col) == place, p
    quote = text.splitlines()[p.line - 1][p.col - 1]
    assert p.message == (
        "YAML syntax error: this quote is not closed on its line, so YAML reads the lines below it, keys included, as "
        f"part of this value, up to {until}: add the closing {quote} at the end of the value"
        + (" (inside '...', write '' for an apostrophe)" if quote == "'" else "")
    ), p.message


@pytest.mark.parametrize("text", ['a: 1\nb: "x\n', "a: 1\nb: 'x", 'a: "x\nb: 1\n'])
def test_a_quote_the_file_ends_in_is_said_never_closed(text: str) -> None:
    p = refused_text(text)
    assert p.message == "YAML syntax error: this quote is never closed: add the closing quote at the end of the value"
    assert text.splitlines()[p.line - 1][p.col - 1] in "'\""


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ('a: "one\n  two"\nb: 1\n', {"a": "one two", "b": 1}),
        ("a:\n  b: 'the bot''s\n    day'\n  c: 1\n", {"a": {"b": "the bot's day", "c": 1}}),
        ('- "one\n  two: three"\n- x\n', ["one two: three", "x"]),
    ],
)
def test_a_quoted_value_over_several_lines_indented_under_its_key_is_read(text: str, data: object) -> None:
    assert parse_yaml(text, "f.yaml").data == data


def test_a_quoted_value_over_several_lines_before_another_error_is_not_blamed() -> None:
    """Its lines are indented under its key, as a value that goes on is written: the error below is told."""
    p = refused_text('a: "one\n  b: two"\nc: 1\n  d: [x\n')
    assert (p.line, p.col) == (4, 3) and "this line is indented more than line 3" in p.message, p


def test_an_unclosed_quote_in_a_shipped_guard_is_told_at_its_line(project: ProjectCopy) -> None:
    """The audit's case: `expr: "past_trade_end` in rules/guards.yaml was told 35 lines below, at `op: ">="`."""
    for quote in "\"'":
        project.replace("rules/guards.yaml", "expr: past_trade_end", f"expr: {quote}past_trade_end")
        (p,) = validate(project.config, project.machines, project.rules).problems
        assert (p.line, p.col) == (project.line_of("rules/guards.yaml", f"expr: {quote}past_trade_end"), 11), p
        assert "this quote is not closed on its line" in p.message, p
        project.replace("rules/guards.yaml", f"expr: {quote}past_trade_end", "expr: past_trade_end")


@pytest.mark.parametrize("shipped", ["config/settings.yaml", "rules/preflight.yaml", "rules/kill_conditions.yaml"])
def test_a_quote_opened_and_not_closed_on_any_shipped_value_is_told_at_its_line(shipped: str) -> None:
    """Every value of these files, given an opening quote (double, then single) and no closing one: the error is
    on that line. An apostrophe in a comment below (`# the bot's ...`) closed `expr: 'account_ok` there, and the
    error was told on the comment's line."""
    lines = (PROJECT_ROOT / shipped).read_text(encoding="utf-8").split("\n")
    tried = 0
    for index, line in enumerate(lines):
        found = re.match(r"(\s*(?:- )?[\w$.]+: )([^\"'\s#\[{>|].*)$", line)
        if found is None:
            continue
        for quote in "\"'":
            text = "\n".join([*lines[:index], found.group(1) + quote + found.group(2), *lines[index + 1 :]])
            p = refused_text(text)
            assert p.line == index + 1, (shipped, index + 1, quote, str(p))
            tried += 1
    assert tried > 10


def test_every_duplicate_key_of_a_file_is_told_at_once_with_the_line_of_the_first() -> None:
    """ruamel stops at the first duplicate key: a file with several was told one a run, each fix bringing the
    next; and a duplicate in a flow mapping (`{a: 1, a: 2}`) was said to be "above" instead of on its line."""
    text = "a: 1\nb:\n  c: 1\n  c: 2\nd: {e: 1, e: 2}\na: 3\n"
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "f.yaml")
    assert [(p.line, p.col, p.message) for p in caught.value.problems] == [
        (4, 3, "YAML syntax error: duplicate key 'c': it is already written on line 3, in the same mapping; keep one of them"),
        (5, 11, "YAML syntax error: duplicate key 'e': it is already written on line 5, in the same mapping; keep one of them"),
        (6, 1, "YAML syntax error: duplicate key 'a': it is already written on line 1, in the same mapping; keep one of them"),
    ]


@pytest.mark.parametrize("text", ["\ufeff", "--- # the settings\n# nothing yet\n", "%YAML 1.2\n---\n", "\ufeff# x\n", "  \n", "...\n", "# x\n...\n# y\n"])
def test_a_file_that_writes_nothing_is_said_empty_not_null(text: str) -> None:
    """A BOM alone, or a document marker with a comment after it, is a file in which nothing is written: it was
    said to hold null, a value the user never wrote."""
    (p,) = parse_yaml(text, "f.yaml").problems
    assert (p.line, p.col, p.message) == (1, 1, "the file is empty (or holds only comments)")


@pytest.mark.parametrize("text", ["~\n", "--- null\n", "null # x\n"])
def test_a_file_that_writes_null_is_said_null(text: str) -> None:
    (p,) = parse_yaml(text, "f.yaml").problems
    assert p.message == "the file holds only null, not a mapping of keys and values"
