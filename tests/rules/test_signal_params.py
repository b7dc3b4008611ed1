"""A signal function reads parameters by name; each must be declared in rules/signals.yaml, or the first tick that
calls it raises KeyError and halts the system. Found by fuzzing: renaming `lookback_ticks` passed --validate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.rules.book import required_signal_params
from engine.strategy.signals import SIGNALS
from engine.validate import validate
from tests.conftest import ProjectCopy


def reads_two(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
    return bool(params["alpha"]) and params.get("optional") is None and bool(params["beta"]) and bool(prices)


def test_the_parameters_a_signal_subscripts_are_found() -> None:
    assert required_signal_params(reads_two) == {"alpha", "beta"}
    assert required_signal_params(SIGNALS["momentum_breakout"]) == {"lookback_ticks", "min_move_pct"}


def test_a_signal_missing_a_parameter_its_function_reads_is_refused(project: ProjectCopy) -> None:
    project.replace("rules/signals.yaml", "      lookback_ticks: {type: integer, default: 12, minimum: 1, description: Ticks to look back.}\n", "")
    line = project.line_of("rules/signals.yaml", "placeholder_crypto_momo_v1:")
    found = validate(project.config, project.machines, project.rules).problems
    wrong = [p for p in found if "reads the parameter 'lookback_ticks'" in p.message]
    assert len(wrong) == 1 and wrong[0].line > line, found


@pytest.mark.parametrize("lookback", [0, -3])
def test_the_placeholder_signal_refuses_a_lookback_below_one(lookback: int) -> None:
    """Reached only past validation (a config checked before the minimum existed): it raises, so its bot halts
    (`signal_error`) instead of comparing the price with itself or with an old one."""
    with pytest.raises(ValueError, match="lookback_ticks must be 1 or more"):
        SIGNALS["momentum_breakout"]([100.0, 101.0, 102.0, 103.0], {"lookback_ticks": lookback, "min_move_pct": 0.0})
