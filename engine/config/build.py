"""Turn validated plain data into the frozen dataclasses of `engine.config.model`, driven by type hints.

One generic builder instead of a hand-written `from_dict` per class: the dataclass fields are the only list
of keys in Python, so they cannot drift from a second list elsewhere.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


# A class's type hints never change: resolved once per class (typed loosely: mypy thinks a class unhashable).
_hints: Callable[[Any], dict[str, Any]] = cache(typing.get_type_hints)


def _convert(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(hint)
        return tuple(_convert(item_type, v) for v in value)
    if origin in (Mapping, typing.Mapping) or hint is Mapping:
        return types.MappingProxyType(dict(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def build(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build `cls` from a mapping already checked by the schema; missing optional keys take their defaults."""
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)
