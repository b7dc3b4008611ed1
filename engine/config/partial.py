"""The named checks of a file that failed its schema, on every part its problems leave alone.

A user fixing a config wants every error at once. The named checks (engine/config/checks.py) read typed
objects, which a file with a schema error cannot be built into; they ran only once the schema passed, so a
misspelt key hid an inverted delta range until the key was fixed. Here the file is built anyway, each value
the schema refused (and each key it found missing) replaced by a stand-in of its type, into subclasses of the
model's dataclasses that note each value a check reads. A check that read a value its file's problems make
unknown (`untrusted_paths`) is dropped, whatever it found or raised: its input is itself the mistake already
reported, and a second problem for it would only confuse. The others' problems are reported with the schema's.
A check is dropped whole, for every bot it covers: which of its problems an untrusted value led to is not known
(two bots' ids are compared with each other), so a time written wrong in one bot's session holds back the session
checks of the others until it is fixed.

Nothing built here leaves validation: a file with a problem is refused whole, as before.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

from engine.config.errors import PathPart, Problem

T = TypeVar("T")
Path = tuple[PathPart, ...]

# What a check may raise on a stand-in value (a 0 it divides by, an empty text it parses): only ever kept from
# the user when the check read an untrusted value; raised as the bug it is otherwise.
_STAND_IN_ERRORS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError)


class Watch:
    """The untrusted key paths of the files being checked, each under its file's label, and whether the check
    running now has read one."""

    def __init__(self) -> None:
        self.untrusted: set[Path] = set()
        self.touched = False

    def read(self, path: Path, value: Any) -> None:
        # A block, or a list of blocks, is untrusted only where it or what holds it is: what it holds is read
        # through its own fields (a list of them tells how many there are, not what they hold). Any other value
        # is read whole, untrusted if anything in it is.
        block = _is_block(value) or (isinstance(value, tuple) and any(_is_block(item) for item in value))
        for bad in self.untrusted:
            if path[: len(bad)] == bad or (not block and bad[: len(path)] == path):
                self.touched = True
                return

    def run(self, check: Callable[..., list[Problem]], *args: Any) -> list[Problem]:
        """`check(*args)`'s problems, or none when it read an untrusted value."""
        self.touched = False
        try:
            found = check(*args)
        except _STAND_IN_ERRORS:
            if self.touched:
                return []
            raise
        return [] if self.touched else found


def _is_block(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


class _Tracked:
    """Marks the watched subclasses; they keep their place (`_at`) and their `Watch` (`_watch`)."""


def _watched_class(cls: type) -> type:
    """`cls` with each read of a field told to its instance's Watch; isinstance() still sees a `cls`."""
    names = frozenset(f.name for f in dataclasses.fields(cls))

    def __getattribute__(self: Any, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name in names:
            object.__getattribute__(self, "_watch").read((*object.__getattribute__(self, "_at"), name), value)
        return value

    return type(cls.__name__, (cls, _Tracked), {"__getattribute__": __getattribute__, "__module__": cls.__module__})


# One subclass per class (typed loosely: mypy thinks a class unhashable).
_tracked: Callable[[Any], type] = cache(_watched_class)


_ABSENT = object()
_LARGEST = 1e308  # an integer past what a float holds (refused while reading) raised OverflowError
# A class's type hints never change: resolved once per class (typed loosely: mypy thinks a class unhashable).
_hints: Callable[[Any], dict[str, Any]] = cache(typing.get_type_hints)


def watched(cls: type[T], data: Any, label: str, untrusted: set[Path], watch: Watch) -> T:
    """`data` (a file's plain data, schema errors and all) as a watched `cls`; `untrusted`: its
    `untrusted_paths`, noted in `watch` under `label`."""
    watch.untrusted.update((label, *path) for path in untrusted)
    return _build(cls, data, (label,), watch)


def _build(cls: type[T], data: Any, at: Path, watch: Watch) -> T:
    hints = _hints(cls)
    given = data if isinstance(data, dict) else {}
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            kwargs[f.name] = _value(hints[f.name], given[f.name], (*at, f.name), watch)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _value(hints[f.name], _ABSENT, (*at, f.name), watch)  # the schema says it is missing
    # Only a block holding an untrusted value (or one itself) is watched: the read of a block inside an untrusted
    # one is noted by the block that holds it, and one that holds none cannot lead a check to one. A bots.yaml of
    # 2,000 bots and one misspelt key watches the one bot's path, and its checks run at the plain objects' pace.
    if not any(bad[: len(at)] == at for bad in watch.untrusted):
        return cls(**kwargs)
    built = _tracked(cls)(**kwargs)
    object.__setattr__(built, "_at", at)
    object.__setattr__(built, "_watch", watch)
    return typing.cast("T", built)


def _value(hint: Any, value: Any, at: Path, watch: Watch) -> Any:
    """`value` as `hint`, or a stand-in of that type where it is not one (the schema has said so)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, at, watch)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return tuple(_value(item, v, (*at, i), watch) for i, v in enumerate(value)) if isinstance(value, list) else ()
    if origin is Mapping or hint is Mapping:
        return types.MappingProxyType(dict(value) if isinstance(value, dict) else {})
    if origin is typing.Literal:
        options = typing.get_args(hint)
        return value if value in options else options[0]
    if hint is bool:
        return value if isinstance(value, bool) else False
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else 0
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if number and abs(value) <= _LARGEST else 0.0
    if hint is str:
        return value if isinstance(value, str) else ""
    return None if value is _ABSENT else value
