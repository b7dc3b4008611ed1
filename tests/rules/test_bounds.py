"""Kill conditions and preflight checks that read facts and still can never hold (or always hold), whatever values
the facts take: `daily_pnl_pct > 0 and daily_pnl_pct < 0` passed validation as a kill condition, a protection
switched off without a word. `engine.rules.bounds` decides the plain cases, and must refuse nothing that can hold."""

from __future__ import annotations

import pytest

from engine.rules import bounds
from engine.rules.book import divisor_span, fact_domains, fact_types
from engine.rules.expressions import Node, parse
from engine.validate import validate
from tests.conftest import ProjectCopy

NEVER = [
    "daily_pnl_pct > 0 and daily_pnl_pct < 0",
    "daily_pnl_pct >= 1 and daily_pnl_pct <= 0.5",
    "daily_pnl_pct > 2 and daily_pnl_pct == 2",
    "daily_pnl_pct == 1 and daily_pnl_pct == 2",
    "daily_pnl_pct == 1 and daily_pnl_pct != 1",
    "not (daily_pnl_pct > -5) and daily_pnl_pct > 0",
    "not (daily_pnl_pct <= 1 or daily_pnl_pct >= 3) and daily_pnl_pct > 4",
    "anomalies < 0",  # a count is 0 and up
    "-1 >= orders_last_minute",
    "stale_markets > 0 and stale_markets < 1",  # a count is a whole number
    "stale_markets == 0.5",
    "anomalies >= 0 and anomalies <= 1 and anomalies != 0 and anomalies != 1",
    "daily_pnl_pct < daily_pnl_pct",
    "daily_pnl_pct != daily_pnl_pct",
    "system_halted and not system_halted",
    "system_halted == true and system_halted != true",
    "account_status == 'ACTIVE' and account_status == 'INACTIVE'",
    "account_status == 'ACTIVE' and account_status != 'ACTIVE'",
    "anomalies < 0 or stale_markets < 0",
    "daily_pnl_pct <= -2 and (anomalies < 0 or stale_markets < 0)",
    "daily_pnl_pct > 0 and false",
]
ALWAYS = [
    "anomalies >= 0",
    "daily_pnl_pct > 5 or daily_pnl_pct <= 5",
    "daily_pnl_pct == daily_pnl_pct",
    "not (anomalies < 0)",
    "system_halted or not system_halted",
]
MAY_HOLD = [
    "daily_pnl_pct <= -risk_global_max_daily_loss_pct and daily_pnl_pct > 5",  # a config value is not assumed
    "daily_pnl_pct <= -2 and (anomalies > 0 or daily_pnl_pct > 3)",
    "daily_pnl_pct > 0 and daily_pnl_pct < 0.0000001",
    "daily_pnl_pct >= 0 and daily_pnl_pct <= 0",
    "anomalies > 0 and anomalies < 2",
    "daily_pnl_pct + 1 > 0 and daily_pnl_pct < -2",  # arithmetic on a fact's side is not looked into
    "account_status > 'A' and account_status < 'A'",  # nor is the order of strings
    "daily_pnl_pct != 1 and daily_pnl_pct != 2",
    "minutes_to_close < 0",  # minutes are not assumed to be 0 and up: only counts and levels are
    "account_status != 'ACTIVE' and account_status != 'INACTIVE'",
]


def node(text: str) -> Node:
    return parse(text, fact_types("system"))


@pytest.mark.parametrize("text", NEVER)
def test_a_rule_that_can_never_hold_is_found(text: str) -> None:
    assert bounds.never_holds(node(text), fact_domains("system")) is not None
    assert bounds.always_holds(node(text), fact_domains("system")) is None


@pytest.mark.parametrize("text", ALWAYS)
def test_a_rule_that_always_holds_is_found(text: str) -> None:
    assert bounds.always_holds(node(text), fact_domains("system")) is not None
    assert bounds.never_holds(node(text), fact_domains("system")) is None


@pytest.mark.parametrize("text", MAY_HOLD)
def test_a_rule_that_may_hold_is_left_alone(text: str) -> None:
    assert bounds.never_holds(node(text), fact_domains("system")) is None
    assert bounds.always_holds(node(text), fact_domains("system")) is None


def test_the_shipped_rules_validate(project: ProjectCopy) -> None:
    assert validate(project.config, project.machines, project.rules).problems == []


def test_a_kill_condition_or_a_check_that_can_never_hold_is_refused(project: ProjectCopy) -> None:
    """As a kill condition, `daily_pnl_pct > 0 and daily_pnl_pct < 0` switched the daily-loss halt off, and
    `--validate` said OK; as a preflight check, `orders_last_minute < 0` blocked every entry."""
    project.replace("rules/kill_conditions.yaml", "expr: daily_pnl_pct <= -risk_global_max_daily_loss_pct",
                    'expr: "daily_pnl_pct > 0 and daily_pnl_pct < 0"')  # fmt: skip
    project.replace("rules/preflight.yaml", "expr: orders_last_minute < risk_max_orders_per_minute",
                    "expr: orders_last_minute < 0")  # fmt: skip
    problems = validate(project.config, project.machines, project.rules).problems
    by_path = {p.path: p for p in problems}
    assert sorted(by_path) == ["kill_conditions.max_daily_loss_halt.expr", "preflight.order_rate_ok.expr"], problems
    kill = by_path["kill_conditions.max_daily_loss_halt.expr"]
    assert kill.message.startswith("can never hold (no value of 'daily_pnl_pct' is daily_pnl_pct > 0 and daily_pnl_pct < 0)")
    assert "never fire" in kill.message and kill.line == project.line_of("rules/kill_conditions.yaml", "daily_pnl_pct > 0")
    check = by_path["preflight.order_rate_ok.expr"]
    assert "whole number from 0 up" in check.message and "block every entry" in check.message, check.message


def test_a_kill_condition_that_always_holds_is_refused_and_a_check_may_ask_for_a_fact(project: ProjectCopy) -> None:
    """`anomalies >= 0` as a kill condition halts at every tick; as a preflight check it still fails while the
    fact is missing (a check that the fact is known), which may be meant: not refused."""
    project.replace("rules/kill_conditions.yaml", "expr: anomalies > 0", "expr: anomalies >= 0")
    project.replace("rules/preflight.yaml", "expr: orders_last_minute < risk_max_orders_per_minute",
                    "expr: orders_last_minute >= 0")  # fmt: skip
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert problem.path == "kill_conditions.anomaly_halt.expr" and problem.message.startswith("always holds")
    assert "halt at every tick" in problem.message


@pytest.mark.parametrize(
    ("text", "says"),
    [("daily_pnl_pct > 0 and 1 > 2", "a part reads no fact and is false at every tick"),
     ("(daily_pnl_pct > 0 and 'a' > 'b') or anomalies < 0", "a part reads no fact and is false at every tick")],
)  # fmt: skip
def test_a_part_that_reads_no_fact_is_run_unless_asked_to_pass_it_over(text: str, says: str) -> None:
    """Its answer is the same at every tick; a transition that is not a halt or a close may be switched off so."""
    assert says in (bounds.never_holds(node(text), fact_domains("system")) or "")
    assert bounds.never_holds(node(text), fact_domains("system"), constants=False) is None
    assert bounds.never_holds(node("daily_pnl_pct > 0 and 2 > 1"), fact_domains("system")) is None


# --- divisions by what can be 0 -----------------------------------------------------------------------------------

DIVIDES_BY_ZERO = [
    ("daily_pnl_pct / anomalies > 1", ["anomalies"]),  # a count: 0 is one of its values
    ("daily_pnl_pct % minutes_to_close > 1", ["minutes_to_close"]),
    ("daily_pnl_pct / risk_global_max_daily_loss_pct > 1", ["risk_global_max_daily_loss_pct"]),  # a config value
    ("daily_pnl_pct / (anomalies + 1) > 1", ["anomalies + 1"]),  # a sum is not looked into
    ("anomalies >= 0 and daily_pnl_pct / anomalies > 1", ["anomalies"]),  # a bound that leaves 0 in
    ("anomalies > 0 or daily_pnl_pct / anomalies > 1", ["anomalies"]),  # evaluated when anomalies is 0
    ("daily_pnl_pct / anomalies > 1 and anomalies > 0", ["anomalies"]),  # the guard comes after the division
    ("daily_pnl_pct / anomalies > 1 or daily_pnl_pct / stale_markets > 1", ["anomalies", "stale_markets"]),
    ("stale_markets > 0 and daily_pnl_pct / (stale_markets * anomalies) > 1", ["stale_markets * anomalies"]),
    # brackets are no node: the divisor is quoted with the ones it opens or closes, never half of a pair
    ("daily_pnl_pct / -(-anomalies) > 1", ["-(-anomalies)"]),
    ("daily_pnl_pct / -( -(anomalies) ) > 1", ["-( -(anomalies) )"]),
    ("daily_pnl_pct / ((anomalies) * (stale_markets)) > 1", ["(anomalies) * (stale_markets)"]),
]
GUARDED = [
    "daily_pnl_pct / 2 > 1",
    "anomalies > 0 and daily_pnl_pct / anomalies > 1",
    "anomalies != 0 and daily_pnl_pct % anomalies > 1",
    "anomalies >= 1 and daily_pnl_pct / -anomalies > 1",
    "anomalies == 0 or daily_pnl_pct / anomalies > 1",
    "not (anomalies < 1) and daily_pnl_pct / anomalies > 1",
    "minutes_to_close < 0 and daily_pnl_pct / minutes_to_close > 1",
    "anomalies > 0 and stale_markets > 0 and daily_pnl_pct / (anomalies * stale_markets) > 1",
    "anomalies > 0 and (daily_pnl_pct > 0 or daily_pnl_pct / anomalies > 1)",
    "(anomalies > 0 and daily_pnl_pct > 1) and daily_pnl_pct / anomalies > 1",
]


@pytest.mark.parametrize(("text", "divisors"), DIVIDES_BY_ZERO)
def test_a_division_by_a_fact_that_can_be_zero_is_found(text: str, divisors: list[str]) -> None:
    """At run time it raises whenever the fact is 0: the rule fails and the engine halts, a config that passed
    `--validate` and halts on the first quiet tick. Every such division is found, each at its divisor."""
    found = bounds.zero_divisors(node(text), fact_domains("system"))
    spans = [divisor_span(d.right, text) for d in found]
    assert [text[column : column + width] for column, width in spans] == divisors


@pytest.mark.parametrize("text", GUARDED)
def test_a_division_the_expression_guards_is_left_alone(text: str) -> None:
    """A divisor that cannot be 0 by its bounds, or that a part evaluated before the division rules 0 out of
    (`and`'s earlier parts held, `or`'s failed: compiled rules short-circuit so)."""
    assert bounds.zero_divisors(node(text), fact_domains("system")) == []


def test_validate_reports_every_division_by_what_can_be_zero_at_its_divisor(project: ProjectCopy) -> None:
    """`pnl / budget`-like rules passed `--validate`, then halted the bot at run time whenever the divisor was 0.
    Each is an error at its divisor (file:line:col), every one at once; the guarded form is accepted."""
    project.replace("rules/kill_conditions.yaml", "expr: anomalies > 0", "expr: daily_pnl_pct / anomalies > 0")
    project.replace("rules/guards.yaml", "expr: worst_position_pnl_pct <= -exits_stop_loss_pct",
                    "expr: position_pnl_pct / budget_usd <= -exits_stop_loss_pct")  # fmt: skip
    project.replace("rules/guards.yaml", "expr: position_pnl_pct >= exits_take_profit_pct",
                    "expr: budget_usd > 0 and position_pnl_pct / budget_usd >= exits_take_profit_pct")  # fmt: skip
    problems = validate(project.config, project.machines, project.rules).problems
    by_path = {p.path: p for p in problems}
    assert sorted(by_path) == ["guards.stop_loss_hit.expr", "kill_conditions.anomaly_halt.expr"], problems
    kill = by_path["kill_conditions.anomaly_halt.expr"]
    line = project.line_of("rules/kill_conditions.yaml", "daily_pnl_pct / anomalies")
    written = (project.root / "rules/kill_conditions.yaml").read_text().splitlines()[line - 1]
    assert (kill.line, kill.col) == (line, written.index("anomalies > 0") + 1)
    assert kill.message.startswith("expression error: division by anomalies, which can be 0")
    assert "'anomalies > 0 and ...'" in kill.message
    assert "division by budget_usd" in by_path["guards.stop_loss_hit.expr"].message


def test_the_warning_quotes_the_divisor_with_its_closing_bracket(project: ProjectCopy) -> None:
    """The message read "division by -(-anomalies, which can be 0": the divisor was cut at its last token."""
    project.replace("rules/kill_conditions.yaml", "expr: anomalies > 0", "expr: daily_pnl_pct / -(-anomalies) > 0")
    (problem,) = validate(project.config, project.machines, project.rules).problems
    assert "division by -(-anomalies), which can be 0" in problem.message, problem.message
    assert problem.excerpt.splitlines()[1].strip() == "^" * len("-(-anomalies)")
