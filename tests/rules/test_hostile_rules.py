"""Guard arithmetic that leaves the finite numbers: infinity compared false with every limit (and NaN with
everything), so a rule whose arithmetic overflowed was silently false; a kill condition that could never hold."""

from __future__ import annotations

import math

import pytest

from engine.paths import PROJECT_ROOT
from engine.rules import conditions, expressions
from engine.rules.book import Entry, compile_rules, load_rules
from engine.rules.errors import ExpressionError, GuardError
from engine.validate import validate
from tests.conftest import ProjectCopy

TYPES = {"x": "float", "n": "int", "flag": "bool"}
GUARDS = "rules/guards.yaml"
TAKE_PROFIT = "expr: position_pnl_pct >= exits_take_profit_pct"


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        ("x * 1e200 * 1e200 > 0", {"x": 1.0}),  # infinity: compared, it said False to `< 0` and True to `> 0`
        ("x * 1e300 - x * 1e300 < 1", {"x": 1e10}),  # infinity less infinity: NaN, False to every comparison
        ("-(x * 1e300) * 1e300 <= -1", {"x": 1e10}),
        ("n * 1e300 * 1e300 % 7 == 0", {"n": 5}),
    ],
)
def test_arithmetic_that_gives_no_finite_number_raises_at_run_time(text: str, facts: dict[str, float]) -> None:
    compiled = expressions.compile_expression(text, TYPES)
    with pytest.raises(OverflowError, match="too large to use"):
        compiled.function(facts)


def test_finite_arithmetic_is_unchanged() -> None:
    compiled = expressions.compile_expression("x * 1e200 / 1e200 - n % 3 + 0.5 > 1", TYPES)
    assert compiled.function({"x": 2.0, "n": 4}) is True
    big = expressions.compile_expression(f"n * {2**63 - 1} * {2**63 - 1} > 0", TYPES)  # exact ints stay exact
    assert big.function({"n": 1}) is True


def test_an_overflow_inside_a_composition_is_a_guard_error_named_after_its_guard() -> None:
    book = load_rules(PROJECT_ROOT / "rules")
    template = book.guards["in_trade_window"]
    body = {"description": "d", "expr": "trades_today * 1e300 * 1e300 > 0"}
    book.entries["guards"]["huge"] = Entry("guards", "huge", body, template.doc)
    rules, problems = compile_rules(book, "momentum", ["in_trade_window", "huge"])
    assert problems == []
    first = rules.first_holding([conditions.All((conditions.Ref("in_trade_window"), conditions.Ref("huge")))])
    with pytest.raises(GuardError) as caught:
        first({"in_trade_window": True, "trades_today": 1})
    assert caught.value.guard == "huge" and isinstance(caught.value.cause, OverflowError)


@pytest.mark.parametrize(
    ("text", "operator", "says"),
    [
        ("x < 1e308 * 10", "*", "too large to use"),
        ("x < -(1e308 + 1e308)", "+", "too large to use"),
        ("x < 1 / (2 - 2)", "/", "division by zero"),
        ("x < 5 % (0.5 - 0.5)", "%", "division by zero"),
        (f"x < {2**63 - 1}" + f" * {2**63 - 1}" * 17 + " / 1", "/", "too large to use"),  # int / int: OverflowError
    ],
)
def test_arithmetic_of_constants_that_overflows_is_refused_at_its_operator(text: str, operator: str, says: str) -> None:
    with pytest.raises(ExpressionError, match=says) as caught:
        expressions.compile_expression(text, TYPES)
    assert caught.value.column == text.rindex(operator)


def test_validate_refuses_a_guard_whose_constants_overflow(project: ProjectCopy) -> None:
    """`position_pnl_pct >= 1e308 * 10` validated, and the take profit could never be hit."""
    project.replace(GUARDS, TAKE_PROFIT, "expr: position_pnl_pct >= 1e308 * 10")
    (p,) = validate(project.config, project.machines, project.rules).problems
    assert p.file.endswith(GUARDS) and p.path == "guards.take_profit_hit.expr"
    assert p.line == project.line_of(GUARDS, "1e308 * 10") and "too large to use" in p.message


def test_the_largest_finite_constant_arithmetic_is_still_a_number() -> None:
    compiled = expressions.compile_expression("x < 1e308 + 1e307", TYPES)
    assert compiled.function({"x": 1.0}) is True and math.isfinite(1e308 + 1e307)
