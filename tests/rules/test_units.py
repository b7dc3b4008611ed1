"""Guards that compare facts of different units: two numbers type-check, so `minutes_in_position >=
health_max_price_staleness_seconds` (off by sixty) and a kill condition written against a fraction of the
percent limit (firing at a hundredth of the loss) validated; the facts' own units (`python -m engine facts`) refuse
them."""

from __future__ import annotations

import pytest

from engine.config.errors import Problem
from engine.rules import expressions
from engine.rules.book import fact_units
from engine.rules.errors import ExpressionError
from engine.validate import validate
from tests.conftest import ProjectCopy

GUARDS = "rules/guards.yaml"
KILL = "rules/kill_conditions.yaml"
PREFLIGHT = "rules/preflight.yaml"


def problems(project: ProjectCopy) -> list[Problem]:
    return validate(project.config, project.machines, project.rules).problems


@pytest.mark.parametrize(
    ("relative", "old", "new", "words"),
    [
        (
            GUARDS,
            "minutes_in_position >= exits_time_stop_minutes",
            "minutes_in_position >= health_max_price_staleness_seconds",
            "'>=' compares minutes: minutes_in_position, with seconds: health_max_price_staleness_seconds",
        ),
        (
            KILL,
            "daily_pnl_pct <= -risk_global_max_daily_loss_pct",
            "daily_pnl_pct <= -risk_global_max_daily_loss_pct / 100",
            "'<=' compares percent: daily_pnl_pct, with a fraction (percent / 100): risk_global_max_daily_loss_pct",
        ),
        (
            PREFLIGHT,
            "quote_age_s <= health_max_price_staleness_seconds",
            "quote_age_s <= exits_time_stop_minutes",
            "'<=' compares seconds: quote_age_s, with minutes: exits_time_stop_minutes",
        ),
        (
            GUARDS,
            "worst_position_pnl_pct <= -exits_stop_loss_pct",
            "position_pnl_pct <= -budget_usd",
            "'<=' compares percent: position_pnl_pct, with dollars: budget_usd",
        ),
    ],
)
def test_a_guard_comparing_two_units_is_refused_at_its_operator(
    project: ProjectCopy, relative: str, old: str, new: str, words: str
) -> None:
    project.replace(relative, old, new)
    found = problems(project)
    assert len(found) == 1, found
    (p,) = found
    assert p.file.endswith(relative) and p.line == project.line_of(relative, new)
    assert p.col == (project.root / relative).read_text().splitlines()[p.line - 1].index(new.split()[1]) + 1
    assert words in p.message and "convert one side to the other's unit" in p.message


@pytest.mark.parametrize(
    "new",
    [
        "minutes_in_position * 60 >= health_max_price_staleness_seconds",  # converted to seconds
        "minutes_in_position >= health_max_price_staleness_seconds / 60",  # converted to minutes
        "minutes_in_position >= exits_time_stop_minutes / 2",  # scaled, same unit
        "minutes_in_position >= 25",  # a constant has no unit
    ],
)
def test_a_converted_or_scaled_unit_is_still_valid(project: ProjectCopy, new: str) -> None:
    project.replace(GUARDS, "minutes_in_position >= exits_time_stop_minutes", new)
    assert problems(project) == []


def test_a_fraction_times_100_is_percent_again() -> None:
    node = expressions.parse(
        "position_pnl_pct / 100 * 100 >= exits_take_profit_pct", {"position_pnl_pct": "float", "exits_take_profit_pct": "float"}
    )
    expressions.check_units(node, fact_units("momentum"))
    bad = expressions.parse(
        "position_pnl_pct / 100 >= exits_take_profit_pct", {"position_pnl_pct": "float", "exits_take_profit_pct": "float"}
    )
    with pytest.raises(ExpressionError, match="compares a fraction"):
        expressions.check_units(bad, fact_units("momentum"))


def test_config_units_come_from_the_names_and_declared_units_from_the_vocabulary() -> None:
    units = fact_units("momentum")
    assert units["exits_stop_loss_pct"] == "%" and units["exits_time_stop_minutes"] == "min"
    assert units["health_max_price_staleness_seconds"] == "s" and units["quote_age_s"] == "s"
    assert units["budget_usd"] == "USD" and units["risk_max_trades_per_day"] == "count"
    assert fact_units("options")["chain_rules_dte_min"] == "days" and "chain_rules_delta_min" not in fact_units("options")


@pytest.mark.parametrize(
    ("relative", "old", "new", "words"),
    [
        # the shipped kill switch at a loss of 100 %: never
        (
            KILL,
            "daily_pnl_pct <= -risk_global_max_daily_loss_pct",
            "daily_pnl_pct <= -risk_global_max_daily_loss_pct * 100",
            "'<=' compares percent: daily_pnl_pct, with percent * 100: risk_global_max_daily_loss_pct",
        ),
        (
            GUARDS,
            "worst_position_pnl_pct <= -exits_stop_loss_pct",
            "position_pnl_pct <= -exits_stop_loss_pct * 100",
            "'<=' compares percent: position_pnl_pct, with percent * 100: exits_stop_loss_pct",
        ),
        (
            GUARDS,
            "worst_position_pnl_pct <= -exits_stop_loss_pct",
            "position_pnl_pct <= -exits_stop_loss_pct / 0.01",
            "with percent * 100: exits_stop_loss_pct",
        ),  # `/ 0.01` is `* 100`
        # the time stop sixty times late
        (
            GUARDS,
            "minutes_in_position >= exits_time_stop_minutes",
            "minutes_in_position / 60 >= exits_time_stop_minutes",
            "'>=' compares minutes / 60: minutes_in_position, with minutes: exits_time_stop_minutes",
        ),
        (
            GUARDS,
            "minutes_in_position >= exits_time_stop_minutes",
            "minutes_in_position >= 60 * exits_time_stop_minutes",
            "with seconds: exits_time_stop_minutes",
        ),
        (
            PREFLIGHT,
            "quote_age_s <= health_max_price_staleness_seconds",
            "quote_age_s <= health_max_price_staleness_seconds * 1000",
            "'<=' compares seconds: quote_age_s, with seconds * 1000: health_max_price_staleness_seconds",
        ),
        # a count is not minutes
        (
            GUARDS,
            "minutes_in_position >= exits_time_stop_minutes",
            "minutes_in_position >= risk_max_trades_per_day",
            "'>=' compares minutes: minutes_in_position, with a count: risk_max_trades_per_day",
        ),
    ],
)
def test_a_conversion_number_that_converts_nothing_for_its_unit_is_refused(
    project: ProjectCopy, relative: str, old: str, new: str, words: str
) -> None:
    """`* 100` on a percent, `/ 60` on minutes kept their unit, as `/ 2` does: the mistakes that switch a limit off
    (a kill switch at a loss of 100 %, a time stop sixty times late) validated. A unit conversion's number used on
    a unit it does not convert gives a unit no fact has; a config count (no unit ending) is a count."""
    project.replace(relative, old, new)
    found = problems(project)
    assert len(found) == 1, found
    assert words in found[0].message and found[0].line == project.line_of(relative, new)


@pytest.mark.parametrize(
    "new",
    [
        "minutes_in_position >= exits_time_stop_minutes * 1.5",
        "minutes_in_position >= exits_time_stop_minutes / 2 - 5",
        "trades_today < risk_max_trades_per_day - 1",  # a count against a count
        "minutes_in_position * 100 > 0",  # no united side to compare with
        "minutes_in_position >= health_max_price_staleness_seconds * (1 / 60)",  # `* 0.0166...` is `/ 60`
    ],
)
def test_other_factors_keep_the_unit(project: ProjectCopy, new: str) -> None:
    project.replace(GUARDS, "minutes_in_position >= exits_time_stop_minutes", new)
    assert problems(project) == []
