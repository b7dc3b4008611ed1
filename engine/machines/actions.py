"""Named actions: what a transition asks for when it fires. They produce intents, never broker calls.

The trading layer (engine/trading) turns intents into orders after the risk gate; that split keeps a machine
step pure and testable. A machine file may only name actions registered here for its kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.rules.facts import BOT_KINDS


@dataclass(frozen=True)
class Intent:
    """An action asked for by a transition: which action, for which bot, on which trigger."""

    action: str
    bot_id: str
    trigger: str
    because: tuple[str, ...] = ()  # the guards that held, innermost last (e.g. exit_rule_hit, stop_loss_hit)


BOT_ACTIONS = {
    "open_entry": "Size an entry from the bot's budget and stop distance, and send it (entries need preflight).",
    "close_position": "Close every position the bot holds (reduce-only; allowed while halted).",
    "cancel_entry": "Cancel the bot's working entry orders.",
}
SYSTEM_ACTIONS = {
    "record_halt": "Record a halt in SQLite with the kill conditions that hold, and its end (cooloff_minutes).",
}
PORTFOLIO_ACTIONS = {
    "allocate_budgets": "Log today's allocations (the budgets themselves are recomputed each tick).",
}


def actions_for(kind: str) -> dict[str, str]:
    """The actions a machine of `kind` may name, with their descriptions."""
    if kind in BOT_KINDS:
        return BOT_ACTIONS
    return SYSTEM_ACTIONS if kind == "system" else PORTFOLIO_ACTIONS
