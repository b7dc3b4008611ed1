"""The common engine file read by libyaml (PyYAML's C parser), about ten times faster than ruamel's pure Python.

ruamel.yaml stays the engine's YAML reader: it decides what a file means (YAML 1.2) and words every error. This
module only takes a shortcut for a file that holds nothing but what both parsers read alike: mappings, lists and
scalars, no anchor, alias, tag or directive, one document, text keys, no duplicate, and values that are text,
true/false, null, a plain decimal integer or a plain decimal fraction. For such a file it returns what
`yaml_source.parse_yaml` would build (the plain data and every key's and value's line and column); for anything
else, or any error of libyaml's, it returns None, and ruamel reads the file as before. So a file either reads
exactly as ruamel reads it, or ruamel reads it: the shortcut changes the time, never the answer (tests compare
both on every shipped file and on a corpus of unusual ones).

Why it matters: every command reads the configuration first, and ruamel's scanner was most of what
`python -m engine --validate` cost: its checks took 177 ms with ruamel alone, 86 ms with this (the shipped files,
on the 2-core machine of 2026-12-02).

Scalars are resolved by ruamel's own resolver (YAML 1.2), so `yes`, `off` and `07:30` are text here as there;
a scalar ruamel would build as anything but the five kinds above (a date, `0x1f`, `1_0`, `1e5`, `.inf`, `=`) is
left to ruamel, with its messages.

Where libyaml (a YAML 1.1 reader) accepts what ruamel refuses or reads otherwise, the file is ruamel's too (a
differential fuzzer found these): a file that is one scalar, a block scalar with `#` right after its indicators or
a first line of spaces, a second `...`, and a pair in a flow list whose ':' has no space after it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

try:  # PyYAML built with libyaml; without it (a wheel built without the C library) ruamel reads every file
    from yaml import YAMLError as _LibyamlError
    from yaml._yaml import CParser
    from yaml.events import (
        DocumentEndEvent,
        DocumentStartEvent,
        MappingEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceEndEvent,
        SequenceStartEvent,
        StreamEndEvent,
        StreamStartEvent,
    )

    _LIBYAML = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _LIBYAML = False

from engine.config.errors import PathPart

Position = tuple[int, int]
Parsed = tuple[Any, dict[tuple[PathPart, ...], Position], dict[tuple[PathPart, ...], Position]]

# Characters both parsers read the same way. With any other (a tab, which the engine refuses outside quotes in
# words of its own; a BOM; a carriage return; NEL and the Unicode line and paragraph separators, which YAML 1.1
# and 1.2 count differently; a control character) ruamel reads the file.
_UNSURE_ASCII = re.compile("[^\n\x20-\x7e]")
# U+2028 and U+2029 are not in it: libyaml counts them as line breaks, ruamel's marks do not. Compiled when needed
# (5 ms).
_UNSURE_TEXT = "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
_INTEGER = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FRACTION = re.compile(r"[-+]?[0-9]+\.[0-9]+")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = frozenset(("~", "null", "Null", "NULL"))
_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null"))
_LARGEST = 2**63 - 1  # yaml_source.MAX_INTEGER: a larger one is a problem ruamel's reading reports
_DEEPEST = 60  # under yaml_source.MAX_NESTING (64): deeper files are refused by ruamel, with its message
_BLOCK_STYLES = frozenset("|>")
_BLOCK_HEADER = re.compile(r"[|>][-+0-9]*(?=[ \n]|\Z)")  # the indicators, then a space, a line break or the end
_DOCUMENT_END = re.compile(r"^\.\.\.(?=[ \n]|\Z)", re.MULTILINE)
_RESOLVER = VersionedResolver()  # YAML 1.2, as ruamel's round-trip loader reads an engine file


class _NotHere(Exception):
    """The file holds something the shortcut leaves to ruamel."""


def parse_common(text: str) -> Parsed | None:
    """(data, key positions, value positions) as `yaml_source` builds them (1-based lines and columns), or None
    when ruamel must read the file."""
    if not _LIBYAML or (_UNSURE_ASCII if text.isascii() else re.compile(_UNSURE_TEXT)).search(text) is not None:
        return None
    reader = _Reader(text)
    try:
        return reader.document()
    except _NotHere:
        return None
    except (_LibyamlError, RecursionError, ValueError, TypeError):  # libyaml refused it: ruamel says why, its way
        return None
    finally:
        reader.parser.dispose()


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.parser = CParser(text)
        self.keys: dict[tuple[PathPart, ...], Position] = {}
        self.values: dict[tuple[PathPart, ...], Position] = {}

    def document(self) -> Parsed:
        get: Callable[[], Any] = self.parser.get_event
        if type(get()) is not StreamStartEvent:
            raise _NotHere
        start = get()
        if type(start) is not DocumentStartEvent or start.version is not None or start.tags:
            raise _NotHere  # no document (an empty file), or a %YAML or %TAG directive
        root = get()
        if type(root) is ScalarEvent:
            # Null, or text that no engine file is (yaml_source and the schema say so); and ruamel reads a block
            # scalar at the top differently (`|-` then a blank line and `...` at the end is the text '\n...' there).
            raise _NotHere
        data = self.node(root, (), 1)
        end = get()
        if type(end) is not DocumentEndEvent or type(get()) is not StreamEndEvent:
            raise _NotHere  # a second document
        if end.explicit and len(_DOCUMENT_END.findall(self.text)) > 1:
            raise _NotHere  # libyaml skips a second `...`; ruamel reads a second (empty) document there
        return data, self.keys, self.values

    def node(self, event: Any, path: tuple[PathPart, ...], depth: int) -> Any:
        kind = type(event)
        if kind is ScalarEvent:
            if event.style in _BLOCK_STYLES:
                self.check_block_scalar(event)
            return _scalar(event)
        if depth > _DEEPEST or getattr(event, "anchor", None) is not None or getattr(event, "tag", None) is not None:
            raise _NotHere  # an alias event has an anchor too
        get: Callable[[], Any] = self.parser.get_event
        if kind is MappingStartEvent:
            mapping: dict[str, Any] = {}
            pair = event.flow_style and self.text[event.start_mark.index] != "{"  # `[a: 1]`, a pair in a list
            while type(key_event := get()) is not MappingEndEvent:
                key = self.node(key_event, path, depth) if type(key_event) is ScalarEvent else None
                if type(key) is not str or key in mapping:
                    raise _NotHere  # a key that is not text (`1:`, `? [a]`, `<<`), or said twice
                child = (*path, key)
                value_event = get()
                if pair:
                    self.check_pair_colon(key_event, value_event)
                self.keys[child], self.values[child] = _place(key_event), _place(value_event)
                mapping[key] = self.node(value_event, child, depth + 1)
            return mapping
        if kind is SequenceStartEvent:
            items: list[Any] = []
            while type(item_event := get()) is not SequenceEndEvent:
                child = (*path, len(items))
                self.keys[child] = self.values[child] = _place(item_event)
                items.append(self.node(item_event, child, depth + 1))
            return items
        raise _NotHere

    def check_pair_colon(self, key_event: Any, value_event: Any) -> None:
        """Leave to ruamel a pair in a list whose ':' has no space after it (`["a":b]`, `['a' :b]`): in a flow
        list YAML 1.2 reads such a ':' as text, so ruamel refuses the list, where libyaml reads a pair."""
        between = self.text[key_event.end_mark.index : value_event.start_mark.index]
        colon = between.find(":")
        if colon >= 0 and between[colon + 1 : colon + 2] not in (" ", "\n"):
            raise _NotHere

    def check_block_scalar(self, event: Any) -> None:
        """Leave to ruamel the block scalars (`|`, `>`) whose header or first line libyaml reads and ruamel refuses:
        a comment right after the indicators (`|#`, `>-#`: libyaml reads a comment, ruamel an error), and a first
        line of spaces only, which ruamel refuses as "more indented follow up line than first" when a line below
        is indented more (libyaml reads it; editors leave such lines, so this is not rare)."""
        text = self.text
        header = _BLOCK_HEADER.match(text, event.start_mark.index)
        if header is None:
            raise _NotHere
        line_end = text.find("\n", header.end())
        if line_end < 0:
            return
        next_end = text.find("\n", line_end + 1)
        first = text[line_end + 1 : next_end if next_end >= 0 else len(text)]
        if first and not first.strip(" "):
            raise _NotHere


@functools.lru_cache(maxsize=4096)
def _plain_tag(value: str) -> str:
    """The tag ruamel's resolver gives a plain scalar: the same for the same text, and a file repeats its words
    (`true`, `3`, `bot_id`); asked of the resolver each time, it was half of what reading a large file cost."""
    return str(_RESOLVER.resolve(ScalarNode, value, (True, False)))


def _place(event: Any) -> Position:
    """Where an event's node starts, 1-based (libyaml's marks are 0-based, in characters)."""
    mark = event.start_mark
    return mark.line + 1, mark.column + 1


def _scalar(event: Any) -> Any:
    if event.anchor is not None or event.tag is not None:
        raise _NotHere
    value: str = event.value
    if event.style:  # quoted, literal or folded: text
        return value
    if not value:  # nothing written (`key:`): ruamel places it at what follows, libyaml after the colon
        raise _NotHere
    tag = _plain_tag(value)
    if tag == _STR:
        return value
    if tag == _INT and _INTEGER.fullmatch(value) is not None and abs(number := int(value)) <= _LARGEST:
        return number
    if tag == _FLOAT and _FRACTION.fullmatch(value) is not None and math.isfinite(fraction := float(value)):
        return fraction
    if tag == _BOOL and value in _BOOLS:
        return _BOOLS[value]
    if tag == _NULL and value in _NULLS:
        return None
    raise _NotHere
