"""Load YAML into plain Python data while remembering where every key and value stood.

The engine validates and uses plain dicts, lists and scalars, but every error must point at a line and column
in the user's file. ruamel.yaml's round-trip loader keeps those positions on its container nodes; this module
copies the data out once and keeps an index from the key path to the (line, col) of the key and of the value.

It is also the validator's first line of defence, so nothing a file holds may crash or hang it:
- a file over `MAX_FILE_BYTES` is refused before it is read (ruamel's pure-Python parser, which reads every file
  libyaml's shortcut leaves to it, reads about 250 KB a second: a 5 MB machine file took over 30 s and 500 MB;
  the shipped files are under 6 KB, and the limit still leaves room for a bots.yaml of a few thousand bots);
- bytes that are not UTF-8 are named (byte, offset, line) instead of raising UnicodeDecodeError;
- anchors (`&name`) and aliases (`*name`) are refused while the file is parsed, before anything is built, so an
  alias bomb ("billion laughs") costs nothing; copying a block by alias also hides which line a value came
  from, and every error must point at one;
- nesting deeper than `MAX_NESTING` is refused (deep nesting would exhaust Python's recursion limit);
- `.nan`, `.inf` and values of types JSON does not have (dates, binary, sets, custom tags) are refused: a NaN
  threshold compares false with everything, which would switch a limit off without a word;
- a syntax error is explained in plain words with the line and a caret under the column, never with the
  parser's raw text alone.
"""

from __future__ import annotations

import errno
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, NodeEvent, SequenceStartEvent
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.parser import Parser
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import Scanner

from engine.config.errors import ConfigError, PathPart, Problem, caret_excerpt, format_path
from engine.config.yaml_fast import parse_common
from engine.paths import PathKind, path_kind

Position = tuple[int, int]  # 1-based line and column

MAX_FILE_BYTES = 1024 * 1024  # about 2,800 MomentumBots in bots.yaml; parsed in about 4 s by ruamel, 0.5 s by libyaml
MAX_NESTING = 64
# The largest integer of SQLite and of most JSON readers (a signed 64-bit integer); a larger one is a typo, and
# Python cannot make a float of one over 309 digits (OverflowError while the config is built).
MAX_INTEGER = 2**63 - 1
# The line breaks ruamel's marks count (its Reader.forward), and a person's editor: CRLF, LF and a lone CR. NEL and
# the Unicode line and paragraph separators are not among them: counted here, an error below one was shown with
# the excerpt of the line above it (the caret under another key), and libyaml, which counts them, gave every
# place below one a line too many (engine/config/yaml_fast.py leaves such a file to ruamel).
LINE_BREAK = re.compile("\r\n|[\n\r]")


@dataclass
class YamlDocument:
    """One parsed file: its plain data, where each path's key and value are written, and its lines.

    `problems` holds what the file's values break of the rules above (a NaN, a date); a document with problems
    is reported, not used.
    """

    path: str
    data: Any
    key_positions: dict[tuple[PathPart, ...], Position] = field(default_factory=dict)
    value_positions: dict[tuple[PathPart, ...], Position] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list, repr=False)
    problems: list[Problem] = field(default_factory=list)
    # A value Python could not build (a date of month 13, `!!int abc`): the file is refused whole, with every such
    # value and every other problem of `problems` at its place.
    unreadable: bool = field(default=False, repr=False)

    def position(self, path: Sequence[PathPart], *, of_key: bool = False) -> Position:
        """Where `path` is written; falls back to the nearest written ancestor, then to the file's start."""
        parts = tuple(path)
        while parts:
            table = self.key_positions if of_key else self.value_positions
            if parts in table:
                return table[parts]
            if parts in self.key_positions:
                return self.key_positions[parts]
            parts = parts[:-1]
            of_key = False
        return (1, 1)

    def problem(self, path: Sequence[PathPart], message: str, *, of_key: bool = False) -> Problem:
        line, col = self.position(path, of_key=of_key)
        return Problem(self.path, line, col, format_path(path), message)

    def excerpt(self, line: int, col: int, width: int = 1) -> str:
        """Line `line` of the file with a caret under `col` (both 1-based), for a Problem's `excerpt`."""
        return caret_excerpt(self.lines[line - 1], col, width) if 0 < line <= len(self.lines) else ""


class _Refused(Exception):
    """Something the engine's files may not contain, found while parsing, at a 0-based line and column."""

    def __init__(self, line: int, col: int, message: str):
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message


class _EngineScanner(Scanner):
    """ruamel's scanner, refusing a `%YAML` directive of another version than 1.2 where it is written.

    Under `%YAML 1.1` ruamel reads `off` as false, `010` as 8 and `1:30` as 90, where YAML 1.2, which the engine,
    its schemas and its messages follow, reads the text 'off', 10 and the text '1:30': one line at the top of a
    file would change what its values mean, and still validate. And `%YAML 1.3` (or 1.0) failed an assertion of
    ruamel's: a traceback, not a problem at a line."""

    def scan_directive(self) -> Any:
        token = super().scan_directive()
        if token.name == "YAML" and tuple(token.value) != (1, 2):
            mark = token.start_mark
            shown_version = ".".join(str(part) for part in token.value)
            raise _Refused(mark.line, mark.column, _VERSION_MESSAGE.format(version=shown_version))
        return token

    def scan_flow_scalar_non_spaces(self, double: Any, start_mark: Any) -> Any:
        """ruamel's, refusing an escape past the last character of Unicode (`"\\U00110000"`) where it is written:
        ruamel passes its eight digits to chr(), whose ValueError (or OverflowError) was a traceback, not a problem at a
        line."""
        try:
            return super().scan_flow_scalar_non_spaces(double, start_mark)
        except (ValueError, OverflowError):  # chr() of 0x110000, and of 0x80000000 and more
            mark = self.reader.get_mark()  # at the escape's digits, after its backslash and 'U'
            digits = self.reader.prefix(8)
            message = (
                f"'\\U{digits}' is past the last character of Unicode (U+10FFFF): no text can hold it; write the "
                "character itself, or an escape of one"
            )
            raise _Refused(mark.line, max(0, mark.column - 2), message) from None


class _EngineComposer(Composer):
    """ruamel's composer, refusing anchors, aliases and deep nesting as the parser meets them.

    Events are produced on demand, so a refusal happens at the first anchor of the file, before any node
    is built: an alias bomb costs no more than reading up to its first line.
    """

    _nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            raise _Refused(event.start_mark.line, event.start_mark.column, _ALIAS_MESSAGE.format(name=event.anchor))
        if isinstance(event, NodeEvent) and event.anchor is not None:
            raise _Refused(event.start_mark.line, event.start_mark.column, _ANCHOR_MESSAGE.format(name=event.anchor))
        if isinstance(event, NodeEvent):
            _refuse_tag(event)
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING:
                mark = event.start_mark
                raise _Refused(mark.line, mark.column, f"lists and mappings nested more than {MAX_NESTING} deep")
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        """A list or a mapping used as a key (`? [a]`, `[a, b]: 1`) is replaced by a placeholder the constructor
        builds as a `_ComplexKey`, reported at its place as a key that is not text. Left to ruamel, a key holding
        a mapping (`? [{a: 1}]`, `? {a: {b: 1}}`) raised TypeError ("unhashable type") while the document was
        built: a traceback instead of a problem."""
        node = super().compose_mapping_node(anchor)
        node.value = [
            (key if isinstance(key, ScalarNode) else ScalarNode(_COMPLEX_KEY_TAG, "?", key.start_mark, key.end_mark), value)
            for key, value in node.value
        ]
        return node


# Tags whose values the engine reads: the JSON types (an explicit `!!str 1` is the text '1'), and '!', which only
# says "not a plain scalar". `!!binary`, `!!timestamp` and `!!set` are built and then refused with a message of
# their own (see `_unsupported`), so that every such value of a file is reported, not only the first.
_READ_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq")} | {"!"}
_EXPLAINED_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("binary", "timestamp", "set")}
_MERGE_TAG = "tag:yaml.org,2002:merge"


# The tags of one kind of node: a value's on a list or a mapping, or a list's or a mapping's on a value
_SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "binary", "timestamp")}
_COLLECTION_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "set")}


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


def _refuse_tag(event: Any) -> None:
    """Refuse a node with a tag the engine does not read (`!!omap`, `!!pairs`, `!custom`), before it is built.

    ruamel builds such a list or mapping without the line and column of its items, and a custom tag on a
    mapping would otherwise be dropped without a word: the value would be read as if the tag were not there.

    A tag of the other kind of node is refused too: `!!str [a]` built a list without the places of its items (a
    TypeError, a traceback, from `--validate`), `!!str {a: 1}` was read as the mapping without a word, and
    `!!set x` was told as "'ScalarNode' object has no attribute 'flow_style'".
    """
    tag = getattr(event, "tag", None)
    if tag is None:
        return
    collection = isinstance(event, CollectionStartEvent)
    if (collection and tag in _SCALAR_TAGS) or (not collection and tag in _COLLECTION_TAGS):
        kind = ("a list" if isinstance(event, SequenceStartEvent) else "a mapping") if collection else "a single value"
        mark = event.start_mark
        raise _Refused(
            mark.line,
            mark.column,
            f"the YAML tag '{_shown_tag(tag)}' is not for {kind}: remove the tag, and write the value it should be",
        )
    if tag in _READ_TAGS or tag in _EXPLAINED_TAGS:
        return
    shown_tag = _shown_tag(tag)
    mark = event.start_mark
    raise _Refused(
        mark.line,
        mark.column,
        f"the YAML tag '{shown_tag}' is not allowed in engine files: write a plain value (text, a number, true or "
        "false, a list or a mapping) without it",
    )


_COMPLEX_KEY_TAG = "tag:trading-hydra.local,2026:complex-key"  # never written by a user: `_refuse_tag` refuses it


class _ComplexKey:
    """A list or a mapping used as a key, in its place: each one a different key (two are never a duplicate)."""

    __slots__ = ()


class _Unreadable:
    """A value Python could not build (a date of month 13, `!!int abc`, an integer of more than 4300 digits), left
    in its place so that it is reported at its key path, beside every other problem of the file, not alone."""

    __slots__ = ("reason", "too_long_integer")

    def __init__(self, reason: str, *, too_long_integer: bool = False):
        self.reason = reason
        # a decimal integer past `sys.get_int_max_str_digits()` digits: Python's own reason is advice to a Python
        # programmer (`sys.set_int_max_str_digits()`), so it is worded as a hex one of that size is
        self.too_long_integer = too_long_integer


_INT_TAG = "tag:yaml.org,2002:int"


def _is_too_long_integer(node: Any) -> bool:
    """Whether `node` is a plain integer with more decimal digits than Python converts (ruamel's `int(text)`)."""
    if not isinstance(node, ScalarNode) or str(node.tag) != _INT_TAG:
        return False
    return sum(char.isdigit() for char in str(node.value)) > sys.get_int_max_str_digits()


class _EngineConstructor(RoundTripConstructor):
    """ruamel's round-trip constructor, turning any error of Python's while it builds a value into an
    `_Unreadable` at that value (a problem of the document), instead of a traceback."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        was_deep = self.deep_construct
        try:
            return super().construct_object(node, deep=deep)
        except (_Refused, YAMLError, RecursionError):
            raise
        except Exception as exc:  # whatever Python raised, the value is refused at its place
            self.recursive_objects.pop(node, None)
            self.deep_construct = was_deep
            too_long = isinstance(exc, ValueError) and _is_too_long_integer(node)
            value = self.constructed_objects[node] = _Unreadable(str(exc), too_long_integer=too_long)
            return value

    def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any, value: Any) -> bool:
        """A key said twice in one mapping is kept once and noted (`duplicates`: 0-based line and column, the key,
        and where it was first written), instead of ruamel's DuplicateKeyError at the first one: a file with
        several was told one a run, each fix bringing the next."""
        if key not in mapping:
            return True
        try:
            first: tuple[int, int] | None = mapping.lc.key(key)
        except (AttributeError, KeyError, TypeError):
            first = None
        mark = key_node.start_mark
        self.__dict__.setdefault("duplicates", []).append((mark.line, mark.column, key, first))
        return False

    def flatten_mapping(self, node: Any) -> Any:
        """Refuse the merge key `<<`: it copies another mapping's keys in, so those keys would have no line of
        their own in this mapping (and ruamel keeps no position for them), and it is the alias feature again."""
        for key_node, _value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                mark = key_node.start_mark
                raise _Refused(mark.line, mark.column, _MERGE_MESSAGE)
        return super().flatten_mapping(node)


_EngineConstructor.add_constructor(_COMPLEX_KEY_TAG, lambda _constructor, _node: _ComplexKey())

_ALIAS_MESSAGE = (
    "YAML anchors and aliases are not allowed in engine files (alias '*{name}'): write the values out where they are used"
)
_VERSION_MESSAGE = (
    "the directive '%YAML {version}' is not allowed in engine files: they are YAML 1.2, and under another version "
    "values read differently (in 1.1, off is false, 010 is 8 and 1:30 is 90); remove the directive"
)
_MERGE_MESSAGE = "the YAML merge key '<<' is not allowed in engine files: write the keys out in this mapping"
_ANCHOR_MESSAGE = (
    "YAML anchors and aliases are not allowed in engine files (anchor '&{name}'): write the values out where they are used"
)


def _plain(node: Any, path: tuple[PathPart, ...], doc: YamlDocument) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, key if isinstance(key, str) else _key_text(key))
            kline, kcol = node.lc.key(key)
            vline, vcol = node.lc.value(key)
            doc.key_positions[child] = (kline + 1, kcol + 1)
            doc.value_positions[child] = (vline + 1, vcol + 1)
            if not isinstance(key, str):
                # `1:` and `"1":` (or `true:` and `"True":`) would become one key and one value would vanish;
                # JSON keys are text, and so are every key the engine reads.
                doc.unreadable = doc.unreadable or isinstance(key, _Unreadable)
                doc.problems.append(doc.problem(child, _key_message(key), of_key=True))
                continue
            out[key] = _plain(value, child, doc)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            line, col = node.lc.item(index)
            doc.key_positions[child] = doc.value_positions[child] = (line + 1, col + 1)
            items.append(_plain(value, child, doc))
        return items
    if node is None:
        return None
    if isinstance(node, TaggedScalar) and str(node.tag) == "tag:yaml.org,2002:str":
        return str(node.value)  # `!!str 1` is the string '1'
    # ruamel wraps scalars in subclasses (ScalarFloat, DoubleQuotedScalarString...); unwrap to plain types.
    for plain_type in (bool, int, float, str):
        if isinstance(node, plain_type):
            value = plain_type(node)
            if isinstance(value, float) and not math.isfinite(value):
                doc.problems.append(doc.problem(path, _not_finite(value, doc, path)))
            elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
                digits = _digits(value)
                doc.problems.append(doc.problem(path, _too_large_integer(digits)))
                if _int_text(value) is None:
                    # told here, and not handed on: the schema's own message (jsonschema writes the value in
                    # decimal) raised ValueError, a traceback instead of this problem
                    return None
            return value
    if isinstance(node, _Unreadable):
        doc.unreadable = True
        if node.too_long_integer:
            message = _too_large_integer(_digits_over_limit())
        else:
            message = f"this value cannot be read ({node.reason})"
        doc.problems.append(doc.problem(path, message))
        return None
    doc.problems.append(doc.problem(path, _unsupported(node)))
    return None


def _int_text(value: int) -> str | None:
    """`value` in decimal, or None when Python will not write it so: a hex or octal integer (`0x` and 5,000 digits)
    is read at any length, but its decimal text is refused past `sys.get_int_max_str_digits()` (ValueError), which
    was a traceback where the problem of a too large number was being worded."""
    try:
        return str(value)
    except ValueError:
        return None


def _digits(value: int) -> str:
    """How many decimal digits `value` has, in words."""
    text = _int_text(abs(value))
    return f"{len(text):,}" if text is not None else _digits_over_limit()


def _too_large_integer(digits: str) -> str:
    return f"a whole number of {digits} digits is too large: the engine reads integers up to {MAX_INTEGER:,}"


def _digits_over_limit() -> str:
    """The length, in words, of an integer Python will not write in (or read from) decimal."""
    return f"over {sys.get_int_max_str_digits():,}"


def _not_finite(value: float, doc: YamlDocument, path: tuple[PathPart, ...]) -> str:
    """`.nan` and `.inf` by name; a number written out but too large for a float (1e309) reads as infinity."""
    line, col = doc.position(path)
    written = doc.lines[line - 1][col - 1 :].lstrip("+-") if 0 < line <= len(doc.lines) else ""
    if not math.isnan(value) and written[:1].isdigit():
        return "this number is too large (over 1.8e308, which reads as infinity): write a finite number"
    spelled = ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    return f"{spelled} is not a number the engine can use: write a finite number"


def _key_text(key: Any) -> str:
    """A key that is not text, as YAML spells it (`true`, `null`, `1`); a list or mapping used as a key as `?`."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return _int_text(key) or f"(a number of {_digits(key)} digits)"
    if isinstance(key, float):
        return str(key)
    return "?"


def _key_message(key: Any) -> str:
    """Why a key that YAML did not read as text is refused."""
    if isinstance(key, _Unreadable) and key.too_long_integer:
        return f"YAML reads this key as a number of {_digits_over_limit()} digits, not as text: put it in quotes"
    if isinstance(key, _Unreadable):
        return f"this key cannot be read ({key.reason}): a key is text; put it in quotes"
    if isinstance(key, int) and not isinstance(key, bool) and _int_text(key) is None:
        return f"YAML reads this key as a number of {_digits(key)} digits, not as text: put it in quotes"
    if key is None or isinstance(key, (bool, int, float)):
        kind = "null" if key is None else "a bool" if isinstance(key, bool) else "a number"
        written = _key_text(key)
        return f'YAML reads the key {written} as {kind}, not as text: put it in quotes ("{written}": ...)'
    return "a list or a mapping cannot be a key: a key is text"


def _unsupported(node: Any) -> str:
    """Why a value of a type JSON does not have cannot be used, and how to write it instead."""
    import datetime

    if isinstance(node, (datetime.date, datetime.datetime)):
        return f'YAML reads {node.isoformat()} as a date, not as text: put it in quotes ("{node.isoformat()}")'
    if isinstance(node, TaggedScalar):
        return f"the YAML tag '{node.tag}' is not allowed here: write a plain value (text, a number, true or false)"
    kind = type(node).__name__
    return f"a YAML value of type {kind} is not allowed here: write text, a number, true/false, a list or a mapping"


def read_text(path: Path, shown: str) -> str:
    """The file's text, or ConfigError saying in plain words why it cannot be used: missing, not a regular
    file, over MAX_FILE_BYTES, or not UTF-8. Never reads more than MAX_FILE_BYTES + 1 bytes."""

    def refuse(message: str, line: int = 0, col: int = 0) -> ConfigError:
        return ConfigError([Problem(shown, line, col, "", message)])

    def refuse_size(size: int) -> ConfigError:
        return refuse(_too_large(size), 1, 1)

    try:
        found = path_kind(path)
        if found.absent:  # said as the failed open would say it
            raise refuse(f"cannot read file: {os.strerror(errno.ENOENT)}")
        if found is not PathKind.FILE:
            raise refuse("not a regular file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise refuse_size(size)
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:  # it grew after stat
        raise refuse_size(len(data))
    return decode_utf8(data, shown)


def _too_large(size: int) -> str:
    return (
        f"file too large: {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES // 1024:,} KiB) "
        "for an engine file "
        "(split it, or check that it is the file you meant)"
    )


def decode_utf8(data: bytes, shown: str) -> str:
    """`data` as text, or ConfigError at the first byte that is not UTF-8 (with its line and column)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start
    line_start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    col = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    byte = data[offset]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        message = f"UTF-16 text, not UTF-8 text (byte 0x{byte:02x} at offset {offset}): save the file as UTF-8"
    elif b"\x00" in data[:1024]:
        message = f"binary data, not UTF-8 text (byte 0x{byte:02x} at offset {offset})"
    else:
        message = f"not UTF-8 text (byte 0x{byte:02x} at offset {offset}): save the file as UTF-8"
    raise ConfigError([Problem(shown, line, col, "", message)])


def load_yaml(path: Path | str, display_path: str | None = None) -> YamlDocument:
    """Parse one YAML file. Unreadable files and syntax errors raise ConfigError with the file, line and column."""
    shown = display_path or str(path)
    return parse_yaml(read_text(Path(path), shown), shown)


def parse_yaml(text: str, shown: str) -> YamlDocument:
    """Parse YAML text that came from the file named `shown` (only used in messages)."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_FILE_BYTES:
        raise ConfigError([Problem(shown, 1, 1, "", _too_large(size))])
    lines = LINE_BREAK.split(text)
    if _writes_nothing(lines):  # comments and `...` alone were a syntax error to ruamel ("found '<document end>'")
        return YamlDocument(shown, None, problems=[Problem(shown, 1, 1, "", EMPTY_FILE)], lines=lines)
    common = parse_common(text)  # libyaml, for a file both parsers read alike (engine/config/yaml_fast.py)
    if common is not None:
        data, key_positions, value_positions = common
        return YamlDocument(shown, data, key_positions, value_positions, lines=lines)
    return ruamel_document(text, shown, lines)


def ruamel_document(text: str, shown: str, lines: list[str]) -> YamlDocument:
    """The file as ruamel reads it: the engine's reading of YAML, and every error's wording."""
    yaml = YAML(typ="rt")
    # The round-trip nodes (and so every key's and value's line and column), without the round-trip scanner's
    # comment keeping: nothing writes these documents back, and gathering comments was a quarter of parsing.
    yaml.Scanner = _EngineScanner
    yaml.Parser = Parser
    yaml.Composer = _EngineComposer
    yaml.Constructor = _EngineConstructor
    try:
        node = yaml.load(text)
    except _Refused as exc:
        raise ConfigError([_at(shown, lines, exc.line, exc.col, exc.message)]) from None
    except MarkedYAMLError as exc:
        raise ConfigError([_syntax_problem(exc, shown, lines)]) from None
    except ReaderError as exc:
        raise ConfigError([_reader_problem(exc, shown, text, lines)]) from None
    except (YAMLError, RecursionError) as exc:  # no place is known: the whole file
        raise ConfigError([Problem(shown, 0, 0, "", f"YAML error: {exc}")]) from None
    doc = YamlDocument(shown, None, lines=lines)
    if node is None:  # the schema would say "None is not of type 'object'"
        doc.problems.append(Problem(shown, 1, 1, "", _empty_message(lines)))
    doc.data = _plain(node, (), doc)
    duplicates = [_duplicate_problem(shown, lines, *found) for found in getattr(yaml.constructor, "duplicates", ())]
    if duplicates or doc.unreadable:
        raise ConfigError([*duplicates, *doc.problems])
    return doc


def _duplicate_problem(shown: str, lines: list[str], line0: int, col0: int, key: Any, first: tuple[int, int] | None) -> Problem:
    """A key written twice in one mapping, at the second, saying the line of the first."""
    name = key if isinstance(key, str) else _key_text(key)
    where = f" on line {first[0] + 1}" if first is not None else " above"
    message = f"duplicate key '{name}': it is already written{where}, in the same mapping; keep one of them"
    return _at(shown, lines, line0, col0, f"YAML syntax error: {message}")


# A line that writes nothing: blank, a comment, a document marker (with a comment after it, `--- # settings`), or
# a `%YAML` directive; a byte order mark before it is no character of the text either
_WRITES_NOTHING = re.compile(r"(?:(?:---|\.\.\.|%YAML\s+1\.2)(?:\s+#.*)?|#.*)?")
EMPTY_FILE = "the file is empty (or holds only comments)"


def _writes_nothing(lines: list[str]) -> bool:
    return all(_WRITES_NOTHING.fullmatch(line.strip().lstrip("\ufeff").strip()) for line in lines)


def _empty_message(lines: list[str]) -> str:
    """Why a document that reads as null holds nothing to use: it is empty, or says null (`~`, `null`). A file of
    a BOM alone, or of `--- # notes` and comments, was said to hold null: the user wrote no null, only nothing."""
    return EMPTY_FILE if _writes_nothing(lines) else "the file holds only null, not a mapping of keys and values"


def _at(shown: str, lines: list[str], line0: int, col0: int, message: str, width: int = 1) -> Problem:
    """A Problem at a 0-based place, with the line and a caret under the column."""
    text = lines[line0] if 0 <= line0 < len(lines) else ""
    return Problem(shown, line0 + 1, col0 + 1, "", message, caret_excerpt(text, col0 + 1, width) if text else "")


def _reader_problem(exc: ReaderError, shown: str, text: str, lines: list[str]) -> Problem:
    position = exc.position if isinstance(exc.position, int) else 0
    before = text[:position]
    line0 = len(LINE_BREAK.findall(before))
    last = LINE_BREAK.split(before)[-1] if before else ""
    character = exc.character if isinstance(exc.character, int) else 0
    message = f"a control character (U+{character:04X}) that YAML text may not contain: is this a text file?"
    return _at(shown, lines, line0, len(last), message)


# --- syntax errors in plain words ----------------------------------------------------------------------------


def _spaces(count: int) -> str:
    return f"{count} space" if count == 1 else f"{count} spaces"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _previous_content_line(lines: list[str], line0: int) -> int | None:
    """The last line before `line0` that holds more than blanks and a comment."""
    for index in range(min(line0, len(lines)) - 1, -1, -1):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith("#"):
            return index
    return None


def _quoted(value: str) -> str:
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


def _mapping_value_not_allowed(lines: list[str], line0: int, col0: int) -> tuple[int, int, str]:
    """ruamel's "mapping values are not allowed here": a ': ' where no key can start. Three usual causes."""
    text = lines[line0] if line0 < len(lines) else ""
    body = text[:col0].strip()
    while body.startswith("- "):
        body = body[2:].lstrip()
    if ": " in body:  # `description: Flat: not permitted`
        key, _sep, _value = text.strip().lstrip("- ").partition(": ")
        value = text.strip().lstrip("- ")[len(key) + 2 :].split(" #")[0].strip()
        return (
            line0,
            col0,
            f"the value of '{key}' contains ': ', which YAML reads as the start of another key; put the whole value "
            f"in quotes: {key}: {_quoted(value)}",
        )
    previous = _previous_content_line(lines, line0)
    if previous is not None:
        above = lines[previous]
        if re.search(r"^\s*(- )?[^\s#:'\"][^#:]*:[^\s:]", above) and ": " not in above:  # `stop_loss_pct:0.5`
            col = above.index(":")
            return (
                previous,
                col,
                f"a ':' needs a space after it ('key: value'); without one YAML reads line {previous + 1} and the "
                "next as one piece of text",
            )
        written = above.split(" #")[0].strip()
        if ":" not in written and not written.startswith(("-", "'", '"')):  # `idle` where `idle:` was meant
            return (
                previous,
                _indent(above),
                f"line {previous + 1} ('{written}') has no ':', so YAML reads it and the line below as one piece of "
                f"text; a key needs a ':' after it ('{written}:')",
            )
        if _indent(text) > _indent(above):
            return (
                line0,
                _indent(text),
                f"this line is indented more than line {previous + 1} above it, so YAML reads it as more of that "
                f"line's value; indent it like the keys it belongs with (line {previous + 1} is indented by "
                f"{_spaces(_indent(above))})",
            )
    return line0, col0, "a ':' where YAML cannot start a key: check the indentation of this line and the line above"


def _open_levels(lines: list[str], line0: int, most: int = 4) -> list[tuple[int, int]]:
    """(0-based line, column) of the blocks still open above `line0`, innermost first: where a line that follows
    could start. A `- key:` line opens two, the list's column and its item's keys' column."""
    levels: list[tuple[int, int]] = []
    limit = None
    for index in range(min(line0, len(lines)) - 1, -1, -1):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            continue
        columns = [_indent(lines[index])]
        rest = lines[index][columns[0] :]
        while rest.startswith("- "):
            columns.append(columns[-1] + 2 + _indent(rest[2:]))
            rest = rest[2:].lstrip(" ")
        for col in sorted(columns, reverse=True):
            if limit is None or col < limit:
                levels.append((index, col))
                limit = col
        if limit == 0 or len(levels) >= most:
            break
    return levels[:most]


def _block_end_expected(exc: MarkedYAMLError, lines: list[str], line0: int, col0: int) -> tuple[int, int, str] | None:
    """ruamel's "expected <block end>, but found ...": a line that does not fit the block it is in."""
    found = re.search(r"but found '(.+)'$", exc.problem or "")
    token = found.group(1) if found else ""
    ctx = exc.context_mark
    if token in ("<block mapping start>", "<block sequence start>") and ctx is not None:
        levels = ", ".join(f"{_spaces(col)} on line {index + 1}" for index, col in _open_levels(lines, line0))
        return (
            line0,
            col0,
            f"this line is indented by {_spaces(col0)}, which matches none of the blocks it could belong to "
            f"({levels}); the keys of one mapping, and the '- ' items of one list, start in the same column",
        )
    if token == "?" and "block collection" in (exc.context or ""):  # ruamel's name for a key: `b: 1` below '- ' items
        return (
            line0,
            col0,
            "a key among the '- ' items of a list: every item of one list starts with '- ' in the same column; a key "
            "of the mapping the list belongs to goes in the column of that mapping's keys",
        )
    if token == "-":
        return (
            line0,
            col0,
            "a '- ' list item among the keys of a mapping: a list goes under a key of its own ('key:' with the items "
            "indented below it), and every item of one list starts in the same column",
        )
    if token in ("]", "}"):
        opener = "[" if token == "]" else "{"
        return line0, col0, f"a closing '{token}' without an opening '{opener}' before it"
    if token == "<scalar>":
        text = lines[line0] if line0 < len(lines) else ""
        if text[:col0].rstrip().endswith(("'", '"')):
            return (
                line0,
                col0,
                "text after the closing quote of a value: put the whole value inside the quotes (inside '...', write "
                "'' for one ')",
            )
        advice = "check that the line above is 'key: value' and that this line is indented like it"
        return line0, col0, f"unexpected text here: {advice}"
    return None


def _block_indicator_message(lines: list[str], line0: int, col0: int) -> str:
    """A value starting with '>' or '|' followed by more text (`op: >=`): YAML reads the character as the start of a
    block of text, which only a line break (or its indicators and a comment) may follow; ruamel's words were
    "expected chomping or indentation indicators, but found '='"."""
    text = lines[line0] if line0 < len(lines) else ""
    char = text[col0 : col0 + 1] or ">"
    value = text[col0:].split(" #")[0].strip()
    key = text[:col0].strip()
    while key.startswith("- "):
        key = key[2:].lstrip()
    example = f" ({key} {_quoted(value)})" if key.endswith(":") else f" ({_quoted(value)})"
    return (
        f"a value cannot start with '{char}' in YAML unless the text is on the lines below ('|' keeps their line "
        f"breaks, '>' folds them): put the value in quotes{example}"
    )


def _explain(exc: MarkedYAMLError, lines: list[str]) -> tuple[int, int, str]:
    """(0-based line, 0-based column, message in plain words) for one of ruamel's syntax errors."""
    mark = exc.problem_mark or exc.context_mark
    line0, col0 = (mark.line, mark.column) if mark is not None else (0, 0)
    problem = exc.problem or ""
    context = exc.context or ""
    ctx = exc.context_mark
    if isinstance(exc, DuplicateKeyError):
        found = re.search(r'found duplicate key "(.*)" with value', problem)
        key = found.group(1) if found else "?"
        first = next(
            (
                i
                for i in range(ctx.line if ctx else 0, line0)
                if _indent(lines[i]) == _indent(lines[line0]) and lines[i].strip().lstrip("- ").startswith(f"{key}:")
            ),
            None,
        )
        where = f" on line {first + 1}" if first is not None else " above"
        return line0, col0, f"duplicate key '{key}': it is already written{where}, in the same mapping; keep one of them"
    if problem == "mapping values are not allowed here":
        return _mapping_value_not_allowed(lines, line0, col0)
    if problem.startswith("expected <block end>"):
        explained = _block_end_expected(exc, lines, line0, col0)
        if explained is not None:
            return explained
    if context in ("while parsing a flow sequence", "while parsing a flow mapping") and ctx is not None:
        opener, closer = ("[", "]") if "sequence" in context else ("{", "}")
        return (
            line0,
            col0,
            f"the '{opener}' on line {ctx.line + 1} (column {ctx.column + 1}) is not closed with '{closer}' before "
            f"this point, or a ',' is missing between two of its items",
        )
    if context.startswith("while scanning a") and context.endswith("quoted scalar") and ctx is not None:
        if "end of stream" in problem or "document separator" in problem:
            return ctx.line, ctx.column, "this quote is never closed: add the closing quote at the end of the value"
        escape = re.search(r"found unknown escape character '?(.)'?", problem)
        if escape:
            return (
                line0,
                col0,
                f"'\\{escape.group(1)}' is not an escape YAML knows inside \"...\": write '\\\\' for a backslash, or "
                "use single quotes",
            )
    if context == "while scanning a block scalar" and ctx is not None:
        return ctx.line, ctx.column, _block_indicator_message(lines, ctx.line, ctx.column)
    character = re.search(r"found character '(.+)' that cannot start any token", problem)
    if character:
        char = character.group(1)
        if char in ("\\t", "\t"):
            return line0, col0, "a tab character: YAML indents with spaces only; replace the tab with spaces"
        return line0, col0, f"a value cannot start with '{char}' in YAML: put the value in quotes"
    if context == "while scanning a simple key" and ctx is not None:
        return (
            ctx.line,
            ctx.column,
            f"line {ctx.line + 1} has no ':' where YAML expects 'key: value' (a value that goes on over several lines "
            "must be quoted)",
        )
    if context in ("while scanning an alias", "while scanning an anchor"):
        return (
            line0,
            col0,
            "a value that starts with '*' or '&' must be in quotes (YAML reads them as aliases and anchors, which "
            "engine files do not use)",
        )
    if context == "expected a single document in the stream":
        return (
            line0,
            col0,
            "a second YAML document starts here ('---'): an engine file holds one document; remove the '---' line "
            "or what follows it",
        )
    where = f" ({context}, line {ctx.line + 1})" if context and ctx is not None else (f" ({context})" if context else "")
    return line0, col0, f"{problem or context}{where}"


class _QuoteRecorder(_EngineScanner):
    """The engine's scanner, noting where each quoted value starts and ends (0-based marks and its quote), for
    `_unclosed_quote`; used only once a file has failed to parse."""

    def scan_flow_scalar(self, style: Any) -> Any:
        token = super().scan_flow_scalar(style)
        self.__dict__.setdefault("quoted", []).append((token.start_mark, token.end_mark, "'" if style == "'" else '"'))
        return token


# A line that starts a key (`name:`, `- name:`, `$schema:`), a list item (`- x`) or a comment (`# the bot's...`):
# the structure of a file, which no quoted value runs over unless its closing quote is missing
_STRUCTURE_LINE = re.compile(r"( *)(?:-(?: |$)|#|[A-Za-z_$][\w$.\-]*:(?: |$))")


def _key_column(line: str) -> int:
    """The column of the first key or value of a line, after its indentation and any '- ' of list items."""
    col = _indent(line)
    while line[col:].startswith("- "):
        col += 2 + _indent(line[col + 2 :])
    return col


def _runs_over_structure(lines: list[str], start0: int, last0: int) -> bool:
    """Whether a quoted value opened on line `start0` runs over a line up to `last0` (0-based, inclusive) that is
    written as a key, a list item or a comment no deeper than the value's own key: a value that goes on over
    several lines is indented under its key, so such a line is the file's structure, read as text by a quote
    left open (an apostrophe in a comment below closed `expr: 'account_ok`)."""
    limit = _key_column(lines[start0]) if start0 < len(lines) else 0
    for index in range(start0 + 1, min(last0, len(lines) - 1) + 1):
        found = _STRUCTURE_LINE.match(lines[index])
        if found and len(found.group(1)) <= limit:
            return True
    return False


def _unclosed_quote(exc: MarkedYAMLError, lines: list[str]) -> tuple[int, int, str] | None:
    """A quote left open, said where it opens, when it is the cause of a syntax error found further down.

    Without its closing quote a quoted value runs on to the next quote of its kind, often an apostrophe or a
    quote many lines below, and ruamel's error is about what follows that one (`">="` read as a block scalar,
    text after "the bot's"): a line and words with nothing to do with the mistake. A quoted value that spans
    lines and runs over keys or list items no deeper than its own key is almost surely unclosed, so the error is
    told at its opening quote. A value legitimately spread over several lines is indented under its key, and a
    file that parses is never looked at here.
    """
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return None
    ctx = exc.context_mark
    context = exc.context or ""
    if context.startswith("while scanning a") and context.endswith("quoted scalar") and ctx is not None:
        # the error is inside the quoted value itself: one the file's end or a '---' closes is said never closed
        # (`_explain`); one stopped by what the value cannot hold (a backslash of a later line read as an escape)
        # is told at its opening quote
        ended = "end of stream" in (exc.problem or "") or "document separator" in (exc.problem or "")
        if not ended and mark.line > ctx.line and _runs_over_structure(lines, ctx.line, mark.line):
            quote = lines[ctx.line][ctx.column : ctx.column + 1] if ctx.line < len(lines) else '"'
            return ctx.line, ctx.column, _unclosed_message(quote, f"line {mark.line + 1}, where it fails")
        return None
    yaml = YAML(typ="rt")
    yaml.Scanner = _QuoteRecorder
    tokens = yaml.scan("\n".join(lines))
    try:
        for token in tokens:
            if token.start_mark.line > mark.line:
                break
    except (YAMLError, _Refused):
        pass  # the file's own syntax error, met again: the quoted values before it are what is wanted
    finally:
        tokens.close()
    for start, end, quote in reversed(getattr(yaml.scanner, "quoted", [])):
        if start.line < end.line <= mark.line and _runs_over_structure(lines, start.line, end.line):
            closed_at = f"the next {quote} (line {end.line + 1}, column {end.column})"
            return start.line, start.column, _unclosed_message(quote, closed_at)
    return None


def _unclosed_message(quote: str, until: str) -> str:
    """Why a quote left open is an error, in words: how far YAML read it (`until`), and how to fix it."""
    apostrophe = " (inside '...', write '' for an apostrophe)" if quote == "'" else ""
    return (
        f"this quote is not closed on its line, so YAML reads the lines below it, keys included, as part of this "
        f"value, up to {until}: add the closing {quote} at the end of the value{apostrophe}"
    )


_SEPARATORS = {"\x85": "NEL, a next line", "\u2028": "a line separator", "\u2029": "a paragraph separator"}


def _syntax_problem(exc: MarkedYAMLError, shown: str, lines: list[str]) -> Problem:
    line0, col0, message = _unclosed_quote(exc, lines) or _explain(exc, lines)
    return _at(shown, lines, line0, col0, f"YAML syntax error: {message}{_separator_note(lines, line0)}")


def _separator_note(lines: list[str], line0: int) -> str:
    """Where a NEL, U+2028 or U+2029 on the error's line or the one above is, when there is one: ruamel's scanner
    takes one for a line break where an editor shows none (pasted from a web page into a comment, the rest of the
    comment read as YAML), so the error's own words, about the line below, did not say what to remove. One further
    up (in a description) is not the cause and is not named."""
    for number in range(min(line0, len(lines) - 1), max(line0 - 2, -1), -1):
        found = [(lines[number].find(char), char) for char in _SEPARATORS if char in lines[number]]
        if found:
            col, char = min(found)
            return (
                f" (line {number + 1}, column {col + 1} holds U+{ord(char):04X}, {_SEPARATORS[char]}, which YAML reads "
                "as a line break where an editor shows none: remove it)"
            )
    return ""
