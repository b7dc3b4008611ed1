"""Every action a machine may name has a handler, and every handler is for an action a machine may name."""

from __future__ import annotations

from engine.machines.actions import actions_for
from engine.machines.spec import load_machines
from engine.paths import PROJECT_ROOT
from engine.rules.facts import all_kinds
from engine.trading.handlers import HANDLERS


def test_every_declared_action_is_wired_and_nothing_else() -> None:
    declared = {name for kind in all_kinds() for name in actions_for(kind)}
    assert set(HANDLERS) == declared


def test_every_action_the_shipped_machines_name_is_declared_for_their_kind() -> None:
    for kind, spec in load_machines(PROJECT_ROOT / "machines").items():
        named = {action for transition in spec.transitions for action in transition.actions}
        assert named <= set(actions_for(kind)), (kind, named - set(actions_for(kind)))
        assert named <= set(HANDLERS)
