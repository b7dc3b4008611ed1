"""libyaml's shortcut (engine/config/yaml_fast.py) reads a file exactly as ruamel does, or leaves it to ruamel."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine.config.errors import ConfigError
from engine.config.yaml_fast import parse_common
from engine.config.yaml_source import LINE_BREAK, YamlDocument, parse_yaml, ruamel_document

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for folder in ("config", "machines", "rules") for p in (ROOT / folder).glob("*.yaml"))


def by_ruamel(text: str) -> YamlDocument:
    return ruamel_document(text, "x.yaml", LINE_BREAK.split(text))


def read_alike(text: str) -> None:
    """The shortcut took `text`, and ruamel reads the same data at the same places, with no problem."""
    common = parse_common(text)
    assert common is not None, "left to ruamel"
    doc = by_ruamel(text)
    assert doc.problems == []
    assert common == (doc.data, doc.key_positions, doc.value_positions)


def test_shipped_files_are_read_by_the_shortcut_as_ruamel_reads_them() -> None:
    assert len(SHIPPED) >= 10
    for path in SHIPPED:
        read_alike(path.read_text(encoding="utf-8"))


def test_parse_yaml_takes_the_shortcut_and_answers_as_ruamel() -> None:
    text = (ROOT / "config" / "bots.yaml").read_text(encoding="utf-8")
    doc = parse_yaml(text, "bots.yaml")
    slow = by_ruamel(text)
    assert (doc.data, doc.key_positions, doc.value_positions, doc.lines) == (
        slow.data, slow.key_positions, slow.value_positions, slow.lines)  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "a: 'single ''quoted'''\nb: \"double \\u00e9 \\\"x\\\"\"\n",
        "text: >-\n  folded\n  lines\nkept: |\n  one\n  two\n",
        "flow: {a: 1, b: [x, 'y', {c: true}]}\nempty_list: []\nempty_map: {}\n",
        "clé: été\n€: 2\nnested:\n  über: [ä, ö]\n",  # columns count characters, not bytes
        "yes: off\nno: on\nclock: 07:30\nword: y\n",  # YAML 1.2: text
        "n: -12\nf: -0.5\nz: 0\nt: True\nnull_value: ~\nnull_word: null\n",
        "---\nlist:\n- a\n- - nested\n  - more\n- k: v\n  j: w\n...\n",
        "# comment\nkey: value # trailing\n\n\n# end\n",
        "quoted_keys:\n  'single': 1\n  \"double\": 2\n",
        'pairs: [a: 1, \'b\': 2, "c": 3]\njson: {"a":1}\n',  # a ':' with a space after it, or in braces
        "text: | # a comment after a space\n  x\nkept: |\n\n    y\n",  # a first line that is empty, not spaces
        "a: 1\n...\n# the end\n",
    ],
)
def test_what_both_parsers_read_alike_is_read_by_the_shortcut(text: str) -> None:
    read_alike(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nb: *x\n",  # anchors and aliases: refused by the engine, in ruamel's words
        "a: !!str 1\n",  # tags
        "a: !custom 1\n",
        "%YAML 1.1\n---\na: 1\n",  # directives
        "day: 2026-01-01\n",  # a date
        "hex: 0x1f\n",
        "under: 1_0\n",
        "exp: 1e5\n",
        "inf: .inf\n",
        "octal: 007\n",
        "dot: 1.\n",
        "eq: =\n",
        "big: 99999999999999999999\n",
        "huge: " + "9" * 400 + ".5\n",
        "a:\nb: 1\n",
        "- \n- a\n",  # nothing written: ruamel places it elsewhere than libyaml
        "a: 1\na: 2\n",  # a duplicate
        "1: a\n",
        "true: a\n",
        "null: a\n",
        "? [a]\n: 1\n",
        "<<: {a: 1}\n",  # keys that are not text
        "a:\tb\n",
        "a: 1\r\nb: 2\r\n",
        "\ufeffa: 1\n",
        "a: b\x85c\n",
        'a: "b\u2028c"\nd: 1\n',  # libyaml counts U+2028 and U+2029 as line breaks, ruamel's marks do not
        "# a\u2029\nb: 1\n",
        "a: \x07\n",  # characters read differently
        "a: 1\n---\nb: 2\n",  # two documents
        "",
        "# only a comment\n",
        "~\n",  # nothing
        "a: [1, 2\n",
        "a: b: c\n",
        "  a: 1\n b: 2\n",  # syntax errors: ruamel says what
        "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 70)) + "  " * 70 + "v: 1\n",  # too deep
    ],
)
def test_anything_else_is_left_to_ruamel(text: str) -> None:
    assert parse_common(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "a: |#x\n  b\n",  # a comment without a space before it after a block scalar's indicators
        "a: >-#x\n  b\n",
        "a: |2#\n  b\n",
        "a: |\n  \n    b\n",  # a first line of spaces, then a line indented more
        ">- \n \n   \n \n",
        "- a\n...\n...\n",  # a second document end
        "- a\n...\n# c\n...\n",
        'a: ["b":c]\n',  # in a list, a ':' with no space after it does not start a value
        "a: ['b':c]\n",
        'a: ["b" :c]\n',
        'a: [x, ? "b":c]\n',
    ],
)
def test_what_ruamel_refuses_is_left_to_ruamel(text: str) -> None:
    """libyaml read each of these (found by a differential fuzzer); ruamel refuses it, with a message at its line."""
    assert parse_common(text) is None
    with pytest.raises(ConfigError):
        by_ruamel(text)


@pytest.mark.parametrize(
    "text",
    [
        "|-\n\n...",  # ruamel reads the text '\n...', libyaml '' (it reads a document end)
        "just text",
        "'quoted'\n",
        "--- >\n  folded\n",
    ],
)
def test_a_file_that_is_one_scalar_is_left_to_ruamel(text: str) -> None:
    """No engine file is a scalar, and at the top ruamel reads a block scalar unlike libyaml: ruamel reads them."""
    assert parse_common(text) is None


PIECES = (
    *":- \n#'\"[]{},&*!|>?%@`\\", "yes", "1.0", "~", "null", "1e3", "0x10", "2026-01-01", "<<", "é", "  ", "\n  ",
    "\n- ", ": ", "- ", "'a'", '"\\u00e9"', "1_0", "TRUE", "-.5", "+1", "007", "12:30", "---\n", "...\n", "? ",
    "!!str ", "&a ", "*a", "|\n  x\n", ">-\n  y\n", "\t", "\r\n", "\n ", "\n   ", "{a: 1}", "[a, b]", "1.", ".5",
)  # fmt: skip


def test_mangled_files_are_read_alike_or_left_to_ruamel() -> None:
    """Seeded mutations of the shipped files: whatever the shortcut reads, ruamel reads the same, without a problem
    (about half of them are taken; the rest, errors included, are ruamel's)."""
    rng = random.Random(20261202)
    texts = [path.read_text(encoding="utf-8") for path in SHIPPED]
    taken = 0
    for _ in range(150):
        text = rng.choice(texts)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text) + 1)
            cut = rng.choice((0, 0, rng.randint(1, 4)))
            text = text[:at] + rng.choice(PIECES) + text[at + cut :]
        if parse_common(text) is not None:
            taken += 1
            read_alike(text)
    assert taken >= 30
