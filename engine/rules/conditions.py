"""Conditions: a guard name, or `all` / `any` / `not` of conditions, as written in `when:` in YAML.

Machines and composite guards share this one small tree. Evaluation asks a callback whether a named guard
holds, so the same tree runs against real facts in the engine and against a truth table in generated tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Ref | All | AnyOf | Not
TRUE = All(())


def parse(node: Any) -> Condition:
    """Parse schema-valid YAML data (str or single-key mapping) into a Condition; None means always true."""
    if node is None:
        return TRUE
    if isinstance(node, str):
        return Ref(node)
    ((key, value),) = node.items()
    if key == "all":
        return All(tuple(parse(item) for item in value))
    if key == "any":
        return AnyOf(tuple(parse(item) for item in value))
    if key == "not":
        return Not(parse(value))
    raise ValueError(f"unknown condition operator {key!r}")


def refs(condition: Condition) -> Iterator[str]:
    """Every guard name the condition uses, in order of appearance."""
    if isinstance(condition, Ref):
        yield condition.name
    elif isinstance(condition, (All, AnyOf)):
        for item in condition.items:
            yield from refs(item)
    else:
        yield from refs(condition.item)


def places(condition: Condition, at: tuple[str | int, ...] = ()) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """Every guard name the condition uses, in order, with where it is written below the `when:` key (`('all',
    1)` for the second item of an `all`), so that a problem with one name is told at its own line."""
    if isinstance(condition, Ref):
        yield condition.name, at
    elif isinstance(condition, (All, AnyOf)):
        key = "all" if isinstance(condition, All) else "any"
        for index, item in enumerate(condition.items):
            yield from places(item, (*at, key, index))
    else:
        yield from places(condition.item, (*at, "not"))


def evaluate(condition: Condition, holds: Callable[[str], bool]) -> bool:
    """Evaluate with short-circuiting, left to right, as a reader of the YAML expects."""
    if isinstance(condition, Ref):
        return holds(condition.name)
    if isinstance(condition, All):
        return all(evaluate(item, holds) for item in condition.items)
    if isinstance(condition, AnyOf):
        return any(evaluate(item, holds) for item in condition.items)
    return not evaluate(condition.item, holds)


def render(condition: Condition) -> str:
    """Short text for diagrams and tables: `a and (b or not c)`."""
    if isinstance(condition, Ref):
        return condition.name
    if isinstance(condition, Not):
        inner = render(condition.item)
        return f"not {inner}" if isinstance(condition.item, Ref) else f"not ({inner})"
    if not condition.items:
        return ""
    joiner = " and " if isinstance(condition, All) else " or "
    parts = [render(i) if isinstance(i, (Ref, Not)) else f"({render(i)})" for i in condition.items]
    return joiner.join(parts)


def _negated(condition: Condition) -> Condition:
    """`not condition`, with a double negation taken away: the text a reader writes for it."""
    return condition.item if isinstance(condition, Not) else Not(condition)


def _decides(condition: Condition, holds: Callable[[str], bool], value: bool) -> Condition:
    """The smallest part of `condition` (which evaluates to `value`) that makes it `value`, as `evaluate` meets it,
    with every `not` pushed onto that part: `all` is false by its first false item and true by all of them; `any`
    is true by its first true item and false by all of them; `not x` is the negation of what decides `x`."""
    if isinstance(condition, Ref):
        return condition
    if isinstance(condition, Not):
        return _negated(_decides(condition.item, holds, not value))
    alone = isinstance(condition, AnyOf)  # the value one item decides it by: false for `all`, true for `any`
    if value == alone:
        item = next(i for i in condition.items if evaluate(i, holds) == value)
        return _decides(item, holds, value)
    deciding = [_decides(i, holds, value) for i in condition.items]  # every item: none alone decides it
    if len(deciding) == 1 or not deciding:
        return deciding[0] if deciding else condition
    return All(tuple(deciding)) if value else AnyOf(tuple(deciding))


def false_part(condition: Condition, holds: Callable[[str], bool]) -> Condition | None:
    """Why a `when` does not hold, for `why`: the part of it that is false (a guard name, `not g` for a guard that
    holds under a `not`, or `a or b` when no item of an `any` holds); None when the condition holds. Under `not`
    the guard that stops a transition is one that holds: looking for a guard that is false named none, or the
    wrong one."""
    if evaluate(condition, holds):
        return None
    return _decides(condition, holds, False)
