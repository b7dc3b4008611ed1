"""The risk gate: the last word on an entry, with the order rate and the capital counted down within a tick.

The rules themselves live in rules/preflight.yaml (`order_rate_ok`, `capital_room`, ...), evaluated against
facts that carry the gate's running counts (`orders_last_minute`, `capital_room_usd`), so a bot evaluated
after another was granted sees what is left. The gate adds what YAML cannot know: the system machine is armed,
and the signal could be sized; and the bot's own limits in bots.yaml (its trade window, max_trades_per_day,
max_concurrent_positions), which the shipped machines ask through `may_open` but a machine file may leave out of
its entry's `when`. Exits and cancels never pass through here: reduce-only orders are allowed even while halted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.brokers.base import Snapshot
from engine.config.model import BotRisk
from engine.trading import entries
from engine.trading.facts_builder import EntryPlan


def limits_reached(facts: Mapping[str, Any], risk: BotRisk) -> tuple[str, ...]:
    """The bot's limits of bots.yaml an entry now would break, by name: outside its session's trade window
    (`trade_window`), `max_trades_per_day` entries made today, or `max_concurrent_positions` symbols held or being
    entered. The gate holds them whatever the machine's `when` asked: a machine arming on `preflight_ok` alone
    validated, and its bot entered before trade_start and 22 times with a cap of one."""
    reached = []
    if facts["in_trade_window"] is not True:
        reached.append("trade_window")
    if not facts["trades_today"] < risk.max_trades_per_day:
        reached.append("max_trades_per_day")
    if not facts["open_positions"] < risk.max_concurrent_positions:
        reached.append("max_concurrent_positions")
    return tuple(reached)


@dataclass(frozen=True)
class Grant:
    plan: EntryPlan


@dataclass(frozen=True)
class Denial:
    """Why an entry was refused: the failed preflight checks by name, `system_armed`, the bot's limits
    (`limits_reached`), or `size`."""

    failed: tuple[str, ...]

    @property
    def reason(self) -> str:
        return ", ".join(self.failed)


@dataclass
class Gate:
    orders_last_minute: int
    capital_room_usd: float

    @classmethod
    def open(cls, orders_last_minute: int, deployable_usd: float | None, snapshot: Snapshot) -> Gate:
        """The tick's starting counts: orders sent in the last minute, and capital left to deploy (none when
        the PortfolioBot has no allocations)."""
        room = entries.room_usd(deployable_usd, snapshot) if deployable_usd is not None else 0.0
        return cls(orders_last_minute, room)

    def grant(
        self,
        *,
        failed_checks: tuple[str, ...],
        system_armed: bool,
        plan: EntryPlan | None,
        snapshot: Snapshot,
        limits: tuple[str, ...] = (),
    ) -> Grant | Denial:
        """`limits`: the bot's limits an entry would break (`limits_reached`)."""
        if failed_checks:
            return Denial(failed_checks)
        if not system_armed:
            return Denial(("system_armed",))
        if limits:
            return Denial(limits)
        if plan is None:
            return Denial(("size",))
        self.orders_last_minute += 1
        cost = entries.cost_usd(plan.request, snapshot)
        # an entry whose cost cannot be told takes what room is left: no later entry this tick counts on it
        self.capital_room_usd = self.capital_room_usd - cost if cost is not None else min(self.capital_room_usd, 0.0)
        return Grant(plan)
