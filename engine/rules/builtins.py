"""Built-in parameterised guards: for what reads better as parameters than as an expression.

Each declares its parameters with a kind: `fact` (a fact name, checked against the vocabulary), `facts` (a list of
them), `number`, `fact_or_number`, or `op` (a comparison operator). `--validate` checks a rule's params against
these declarations. A built-in then builds the same typed tree an expression would (engine/rules/expressions.py),
so it is type-checked the same way, compiled to the same fast code, and its facts are known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.rules import expressions
from engine.rules.expressions import Node

ParamKind = Literal["fact", "number", "op", "fact_or_number", "facts"]
OPERATORS: tuple[str, ...] = expressions.COMPARISONS
Unknown = Callable[[str], str]


def compare(params: Mapping[str, Any], types: Mapping[str, str], unknown: Unknown | None = None) -> Node:
    """`left op right`, where right is a fact name or a number."""
    left = expressions.fact(params["left"], types, unknown=unknown)
    right_ref = params["right"]
    right = expressions.fact(right_ref, types, unknown=unknown) if isinstance(right_ref, str) else expressions.const(right_ref)
    return expressions.binary(params["op"], left, right)


def all_true(params: Mapping[str, Any], types: Mapping[str, str], unknown: Unknown | None = None) -> Node:
    """Every listed boolean fact is true."""
    return expressions.logic("and", [expressions.fact(name, types, unknown=unknown) for name in params["facts"]])


@dataclass(frozen=True)
class Builtin:
    """`build(params, fact types, unknown-name wording)` returns the typed tree, or raises ExpressionError."""

    build: Callable[[Mapping[str, Any], Mapping[str, str], Unknown | None], Node]
    params: Mapping[str, ParamKind]
    description: str


BUILTINS: dict[str, Builtin] = {
    "compare": Builtin(compare, {"left": "fact", "op": "op", "right": "fact_or_number"}, "left op right"),
    "all_true": Builtin(all_true, {"facts": "facts"}, "every listed boolean fact is true"),
}
