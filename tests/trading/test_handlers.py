"""Every action a machine may name has a handler, and every handler is for an action a machine may name."""

from __future__ import annotations

from engine.machines.actions import BOT_ACTIONS, PORTFOLIO_ACTIONS, SYSTEM_ACTIONS, actions_for
from engine.rules.facts import all_kinds
from engine.trading.handlers import HANDLERS


def test_every_declared_action_is_wired_and_nothing_else() -> None:
    declared = {name for kind in all_kinds() for name in actions_for(kind)}
    assert declared == set(BOT_ACTIONS) | set(SYSTEM_ACTIONS) | set(PORTFOLIO_ACTIONS)
    assert set(HANDLERS) == declared
