"""YAML features the engine does not read: tags on lists and mappings, the merge key, keys that are not text,
and files whose name cannot even be resolved. Each is refused at its place, never a traceback, never dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.errors import ConfigError, Problem
from engine.config.yaml_source import parse_yaml
from engine.validate import validate
from tests.conftest import ProjectCopy

BOTS = "config/bots.yaml"


def refused_text(text: str) -> Problem:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "f.yaml")
    assert len(caught.value.problems) == 1, caught.value
    return caught.value.problems[0]


@pytest.mark.parametrize(
    ("text", "tag", "line", "col"),
    [
        ("a: !foo {b: 1}\n", "!foo", 1, 4),  # was read as if the tag were not there
        ("a: !foo [1]\n", "!foo", 1, 4),  # was a TypeError
        ("a:\n  b: !!omap [c: 1]\n", "!!omap", 2, 6),  # was a TypeError
        ("a: !!pairs [c: 1]\n", "!!pairs", 1, 4),
        ("!thing\na: 1\n", "!thing", 1, 1),
        ("a: !custom 3\n", "!custom", 1, 4),
    ],
)
def test_a_tag_the_engine_does_not_read_is_refused_at_its_place(text: str, tag: str, line: int, col: int) -> None:
    p = refused_text(text)
    assert (p.line, p.col) == (line, col)
    assert f"the YAML tag '{tag}' is not allowed" in p.message


@pytest.mark.parametrize(
    ("text", "tag", "kind", "line", "col"),
    [
        ("a: !!str [x]\n", "!!str", "a list", 1, 4),  # was a TypeError: a traceback from --validate
        ("- !!str\n  - x\n", "!!str", "a list", 1, 3),  # the same, in block style
        ("a: !!str {b: 1}\n", "!!str", "a mapping", 1, 4),  # was read as the mapping without a word
        ("a: !!int [1]\n", "!!int", "a list", 1, 4),
        ("a:\n  b: !!set x\n", "!!set", "a single value", 2, 6),  # was "'ScalarNode' object has no attribute..."
        ("a: !!seq x\n", "!!seq", "a single value", 1, 4),
    ],
)
def test_a_tag_of_the_other_kind_of_node_is_refused_at_its_place(text: str, tag: str, kind: str, line: int, col: int) -> None:
    p = refused_text(text)
    assert (p.line, p.col) == (line, col)
    assert f"the YAML tag '{tag}' is not for {kind}" in p.message


def test_a_string_tag_on_a_machine_files_list_is_a_problem_not_a_traceback(project: ProjectCopy) -> None:
    """Found by tools/configfuzz.py: `actions: !!str [cancel_entry]` in machines/options.yaml."""
    path = project.replace("machines/options.yaml", "actions: [cancel_entry]", "actions: !!str [cancel_entry]")
    line = project.line_of("machines/options.yaml", "!!str")
    (p,) = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert p.file == str(path) and (p.line, p.col) == (line, 14)
    assert "the YAML tag '!!str' is not for a list" in p.message


@pytest.mark.parametrize(("text", "expected"), [("a: !!str 1\n", "1"), ("a: ! 3\n", 3), ("a: !!float 3\n", 3.0)])
def test_the_json_tags_are_still_read(text: str, expected: object) -> None:
    doc = parse_yaml(text, "f.yaml")
    assert doc.data == {"a": expected} and not doc.problems


@pytest.mark.parametrize(("text", "line", "col"), [("<<: {a: 1}\nb: 2\n", 1, 1), ("x:\n  b: 1\n  <<: [{a: 1}, {c: 2}]\n", 3, 3)])
def test_the_merge_key_is_refused_not_a_key_error(text: str, line: int, col: int) -> None:
    p = refused_text(text)
    assert (p.line, p.col) == (line, col) and "merge key '<<'" in p.message


@pytest.mark.parametrize(
    ("text", "path", "line", "col", "says"),
    [
        ('1: a\n"1": b\n', "1", 1, 1, "the key 1 as a number"),  # both were one key: 'a' vanished
        ('true: a\n"True": b\n', "true", 1, 1, "the key true as a bool"),
        ("~: a\n", "null", 1, 1, "the key null as null"),
        ("x:\n  0x10: a\n", "x.16", 2, 3, "the key 16 as a number"),
        ("[a, b]: 1\n", "?", 1, 1, "a list or a mapping cannot be a key"),
    ],
)
def test_a_key_that_is_not_text_is_a_problem_at_the_key(text: str, path: str, line: int, col: int, says: str) -> None:
    doc = parse_yaml(text, "f.yaml")
    assert [(p.path, p.line, p.col) for p in doc.problems] == [(path, line, col)]
    assert says in doc.problems[0].message


def test_a_non_text_key_in_bots_yaml_fails_validation(project: ProjectCopy) -> None:
    project.replace("config/bots.yaml", "    params: {}", "    params: {12: 3}")
    found = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert any(p.path == "momentum_bots[0].signal.params.12" and "put it in quotes" in p.message for p in found), found


@pytest.mark.parametrize("relative", ["config/bots.yaml", "machines/system.yaml", "rules/guards.yaml"])
def test_a_symlink_loop_is_a_file_that_cannot_be_read(project: ProjectCopy, relative: str) -> None:
    path: Path = project.root / relative
    path.unlink()
    path.symlink_to(path)
    found = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    mine = [p for p in found if p.file.endswith(relative)]
    assert mine and all(p.line == 0 and "cannot read file" in p.message for p in mine), found


@pytest.mark.parametrize(
    ("text", "line", "col", "escape"),
    [('a: "\\U00110000"\n', 1, 5, "\\U00110000"), ('a: 1\nb: "xy \\UFFFFFFFF"\n', 2, 8, "\\UFFFFFFFF")],
)
def test_an_escape_past_the_last_unicode_character_is_refused_at_its_place(text: str, line: int, col: int, escape: str) -> None:
    """ruamel passes the escape's digits to chr(): a ValueError (or an OverflowError past 0x7FFFFFFF) traceback."""
    p = refused_text(text)
    assert (p.line, p.col) == (line, col) and f"'{escape}' is past the last character of Unicode" in p.message


def test_the_last_unicode_character_is_still_read() -> None:
    assert parse_yaml('a: "\\U0010FFFF"\n', "f.yaml").data == {"a": "\U0010ffff"}


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_unicode_line_separator_moves_no_problem_to_another_line(project: ProjectCopy, separator: str) -> None:
    """Neither YAML 1.2 (ruamel) nor an editor counts NEL or the line and paragraph separators as line breaks. One
    in a quoted value put every problem below it a line too low (the libyaml shortcut counted it), and the excerpt
    under a problem showed the line above its own (the file's lines were split at it). Found by
    tools/configfuzz.py."""
    project.replace(BOTS, "  cooloff_minutes: 390", f'  note: "a{separator}b"\n  cooloff_minutes: 390')
    project.replace(BOTS, "ticker: AAPL", "ticker: [AAPL]")
    lines = (project.root / BOTS).read_text(encoding="utf-8").split("\n")
    found = validate(project.config, project.machines, project.rules, project.root / "none.db").problems
    assert [(p.path, p.line) for p in found] == [
        ("exitbot.note", next(n for n, text in enumerate(lines, 1) if "note:" in text)),
        ("momentum_bots[0].ticker", next(n for n, text in enumerate(lines, 1) if "ticker: [AAPL]" in text)),
    ]
    for p in found:
        assert lines[p.line - 1].strip()[:10] in p.excerpt or not p.excerpt


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"])
def test_a_line_separator_in_a_comment_is_named_in_the_syntax_error(char: str) -> None:
    """Pasted from a web page into a comment, U+2028 (or NEL, U+2029) is a line break to ruamel where an editor shows
    none: the rest of the comment was read as YAML, and the error spoke of the indentation of the key below only."""
    p = refused_text(f"# keep it{char} simple\nrunner:\n  loop_interval_seconds: 5\n")
    assert p.line == 2 and p.message.startswith("YAML syntax error: "), p
    assert f"(line 1, column 10 holds U+{ord(char):04X}, " in p.message and p.message.endswith(": remove it)"), p


def test_a_line_separator_far_from_a_syntax_error_is_not_named() -> None:
    """One in a description further up is read as part of that text: not the cause, not named."""
    p = refused_text("a: one\u2028two\nb: 1\nc: 2\nd: [\n")
    assert "U+2028" not in p.message, p
