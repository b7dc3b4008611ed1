"""Built-in parameterised guards: small Python functions for what an expression says less clearly.

Each declares its parameters with a kind: `fact` (a fact name, checked against the vocabulary), `number`,
or `op` (a comparison operator). `--validate` checks a rule's params against these declarations.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.rules.errors import MissingFact

ParamKind = Literal["fact", "number", "op", "fact_or_number", "facts"]
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _read(facts: Mapping[str, Any], name: str) -> Any:
    value = facts[name]
    if value is None:
        raise MissingFact(name)
    return value


def _value(facts: Mapping[str, Any], ref: Any) -> Any:
    return _read(facts, ref) if isinstance(ref, str) else ref


def compare(facts: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """`left op right`, where right is a fact name or a number."""
    return OPERATORS[params["op"]](_read(facts, params["left"]), _value(facts, params["right"]))


def all_true(facts: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Every listed boolean fact is true."""
    return all(bool(_read(facts, name)) for name in params["facts"])


@dataclass(frozen=True)
class Builtin:
    function: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
    params: Mapping[str, ParamKind]
    description: str


BUILTINS: dict[str, Builtin] = {
    "compare": Builtin(compare, {"left": "fact", "op": "op", "right": "fact_or_number"}, "left op right"),
    "all_true": Builtin(all_true, {"facts": "facts"}, "every listed boolean fact is true"),
}
