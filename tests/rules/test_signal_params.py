"""A signal function reads parameters by name; each must be declared in rules/signals.yaml, or the first tick that
calls it raises KeyError and halts the system. Found by fuzzing: renaming `lookback_ticks` passed --validate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.core.clock import ManualClock
from engine.rules.book import required_signal_params
from engine.strategy.signals import SIGNALS
from engine.validate import validate
from tests.conftest import ProjectCopy
from tests.trading.conftest import OPEN, make_rig


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


def test_a_signal_that_does_not_say_how_far_back_it_reads_is_refused(project: ProjectCopy) -> None:
    """The engine keeps, for a symbol, as many prices as its bots' signals read back (and two more): a signal whose
    window had another name than lookback_ticks was handed 14 prices, and one reading 30 never fired, silently."""
    project.replace("rules/signals.yaml", "implementation: momentum_breakout\n    kinds: [momentum]\n    params:\n"
                    "      lookback_ticks: {type: integer, default: 12, minimum: 1, description: Ticks to look back (12 "
                    "ticks = 1 minute at a 5 s loop).}\n",
                    "implementation: reads_two\n    kinds: [momentum]\n    params:\n"
                    "      alpha: {type: integer, default: 30, description: A window.}\n")
    line = project.line_of("rules/signals.yaml", "placeholder_momentum_v1:")
    found = [p for p in validate(project.config, project.machines, project.rules).problems if "ticks back" in p.message]
    assert [(p.line, p.path) for p in found] == [(line, "signals.placeholder_momentum_v1")], found


@pytest.mark.parametrize(("history", "said"), [
    ("window", "'window' is not a parameter of this signal"),
    ("min_move_pct", "'min_move_pct' is a number parameter"),
])  # fmt: skip
def test_a_history_naming_no_integer_parameter_is_refused(project: ProjectCopy, history: str, said: str) -> None:
    project.replace("rules/signals.yaml", "implementation: momentum_breakout\n    kinds: [momentum]\n",
                    f"implementation: momentum_breakout\n    history: {history}\n    kinds: [momentum]\n")
    line = project.line_of("rules/signals.yaml", f"history: {history}")
    found = [p for p in validate(project.config, project.machines, project.rules).problems if said in p.message]
    assert [(p.line, p.path) for p in found] == [(line, "signals.placeholder_momentum_v1.history")], found


def test_the_prices_kept_follow_the_declared_history(project: ProjectCopy) -> None:
    """`history: window` with a bot's `window: 40`: its signal is handed 40 prices back and the one before."""
    project.replace("rules/signals.yaml", "implementation: momentum_breakout\n    kinds: [momentum]\n    params:\n",
                    "implementation: momentum_breakout\n    history: window\n    kinds: [momentum]\n    params:\n"
                    "      window: {type: integer, default: 5, minimum: 1, description: Ticks the signal reads.}\n")
    project.replace("config/bots.yaml", 'mode: "placeholder_momentum_v1"\n      params: {}',
                    'mode: "placeholder_momentum_v1"\n      params: {window: 40}')
    assert validate(project.config, project.machines, project.rules).ok
    rig = make_rig(project, ManualClock(OPEN))
    seen: list[int] = []

    def counts(prices: Sequence[float], params: Mapping[str, Any]) -> bool:
        seen.append(len(prices))
        return False

    rig.engine.bot("mom_AAPL").signal = counts
    rig.ticks(150)
    assert max(seen) == 42
