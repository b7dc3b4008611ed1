"""Load YAML into plain Python data while remembering where every key and value stood.

The engine validates and uses plain dicts, lists and scalars, but every error must point at a line and column
in the user's file. ruamel.yaml's round-trip loader keeps those positions on its container nodes; this module
copies the data out once and keeps an index from the key path to the (line, col) of the key and of the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from engine.config.errors import ConfigError, PathPart, Problem, format_path

Position = tuple[int, int]  # 1-based line and column


@dataclass
class YamlDocument:
    """One parsed file: its plain data and where each path's key and value are written."""

    path: str
    data: Any
    key_positions: dict[tuple[PathPart, ...], Position] = field(default_factory=dict)
    value_positions: dict[tuple[PathPart, ...], Position] = field(default_factory=dict)

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


def _plain(node: Any, path: tuple[PathPart, ...], doc: YamlDocument) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            kline, kcol = node.lc.key(key)
            vline, vcol = node.lc.value(key)
            doc.key_positions[child] = (kline + 1, kcol + 1)
            doc.value_positions[child] = (vline + 1, vcol + 1)
            out[str(key)] = _plain(value, child, doc)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            line, col = node.lc.item(index)
            doc.key_positions[child] = doc.value_positions[child] = (line + 1, col + 1)
            items.append(_plain(value, child, doc))
        return items
    # ruamel wraps scalars in subclasses (ScalarFloat, DoubleQuotedScalarString...); unwrap to plain types.
    for plain_type in (bool, int, float, str):
        if isinstance(node, plain_type):
            return plain_type(node)
    return node


def load_yaml(path: Path | str, display_path: str | None = None) -> YamlDocument:
    """Parse one YAML file. Syntax errors and duplicate keys raise ConfigError with the file, line and column."""
    shown = display_path or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(shown, 0, 0, "", f"cannot read file: {exc.strerror or exc}")]) from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> YamlDocument:
    """Parse YAML text that came from the file named `shown` (only used in messages)."""
    yaml = YAML(typ="rt")
    try:
        node = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([Problem(shown, line, col, "", f"YAML syntax error: {message}")]) from None
    except YAMLError as exc:
        raise ConfigError([Problem(shown, 0, 0, "", f"YAML error: {exc}")]) from None
    doc = YamlDocument(shown, None)
    doc.data = _plain(node, (), doc)
    return doc
