"""Every action a machine may name has a handler, and every handler is for an action a machine may name."""

from __future__ import annotations

from engine.core.clock import ManualClock
from engine.machines.actions import actions_for
from engine.machines.spec import load_machines
from engine.paths import PROJECT_ROOT
from engine.rules.facts import all_kinds
from engine.trading.handlers import HANDLERS
from tests.conftest import ProjectCopy
from tests.trading.conftest import make_rig


def test_every_declared_action_is_wired_and_nothing_else() -> None:
    declared = {name for kind in all_kinds() for name in actions_for(kind)}
    assert set(HANDLERS) == declared


def test_every_action_the_shipped_machines_name_is_declared_for_their_kind() -> None:
    for kind, spec in load_machines(PROJECT_ROOT / "machines").items():
        named = {action for transition in spec.transitions for action in transition.actions}
        assert named <= set(actions_for(kind)), (kind, named - set(actions_for(kind)))
        assert named <= set(HANDLERS)


def test_a_paused_bot_opens_nothing_whatever_its_preflight_says(project: ProjectCopy, clock: ManualClock) -> None:
    """A pause (the broker refused the bot's orders repeatedly) is held by the gate itself: rules/preflight.yaml is
    the user's, and with its `bot_not_paused` check deleted the paused bot entered again at once, to be refused
    again. Its entries are denied (`bot_paused`) until the pause ends; the other bots trade on."""
    from datetime import timedelta

    project.replace(
        "rules/preflight.yaml",
        "  bot_not_paused:\n    description: >-\n      The bot is not paused: the broker refused three of its orders of one kind"
        " (insufficient funds, below the\n      minimum, a wash trade, forbidden); its positions are kept and managed"
        " meanwhile.\n    expr: not bot_paused\n",
        "",
    )
    rig = make_rig(project, clock)
    rig.ticks(3)
    now = clock.now()
    rig.store.start_halt("crypto_core", "orders refused repeatedly (insufficient_funds)", ("refusals",), False, now,
                         now + timedelta(minutes=30))  # fmt: skip
    rig.ticks(300)  # 25 minutes, inside the pause
    assert not [r for r in rig.store.orders(bot_id="crypto_core") if r.purpose == "entry"]
    assert any(e["bot"] == "crypto_core" and e["failed"] == ["bot_paused"] for e in rig.events("entry_blocked"))
    assert [r for r in rig.store.orders() if r.purpose == "entry"]  # the other bots' entries went out
