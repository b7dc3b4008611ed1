"""The tick's one read of the world: the broker snapshot and everything the tick needs from SQLite.

Read in a fixed number of bulk queries whatever the number of bots, each an index range whose size does not
grow with the history in the file (open orders, today's orders, open halts, today's counters), never a query
per bot. Frozen: the facts builder, the ExitBot and the gate read it; anything that writes during the tick
(a halt, a granted entry) is visible to the rest of the tick through a new view or the gate's own counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from functools import cached_property
from types import MappingProxyType
from zoneinfo import ZoneInfo

from engine.brokers.base import Snapshot
from engine.core import order_lifecycle as lifecycle
from engine.core.calendar import NEW_YORK
from engine.core.clock import wall_clock
from engine.core.store import SYSTEM_SCOPE, Halt, OrderRow, PositionRow, StateStore

_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True)
class BotRecords:
    """What SQLite knows about one bot this tick."""

    positions: tuple[PositionRow, ...] = ()
    open_entries: tuple[OrderRow, ...] = ()  # not yet ended: ours (pending, unknown) or working at the broker
    open_exits: tuple[OrderRow, ...] = ()
    last_entry: OrderRow | None = None  # today's latest entry order, whatever its status
    halt: Halt | None = None  # the bot's own halt in force, if any, that is not a pause (its positions are closed)
    paused: Halt | None = None  # the bot's pause in force (`Halt.pause`): no entries, its positions kept and managed
    counters: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # today's: entries, fills, rejections, order_seq
    realized_pnl: float = 0.0  # today's, USD

    def counter(self, name: str) -> int:
        return self.counters.get(name, 0)


_NO_RECORDS = BotRecords()


@dataclass(frozen=True)
class TickView:
    now: datetime
    day: date  # the trading date in the system's time zone
    local_time: time
    snapshot: Snapshot
    halts: tuple[Halt, ...]  # every halt in force, oldest first
    open_halts: tuple[Halt, ...]  # every halt not ended, those whose cooloff ran out included (for the ExitBot)
    bots: Mapping[str, BotRecords]
    orders_last_minute: int
    recent_orders: tuple[datetime, ...] = ()  # when the orders of the last minute were created
    stamp: tuple[int, int] = (-1, -1)  # `StateStore.records_stamp()` when the records were read
    zone: tzinfo | None = None  # system.timezone, in which `day` and `local_time` are read

    @cached_property
    def exchange_day(self) -> date:
        """Today's date in New York, the exchange's: an option's expiry is a New York date, and its days to expiry
        count from this one. `day` is the wall-clock date of system.timezone (counters, budgets), which in a zone
        east of UTC+9:30 (Pacific/Auckland) is New York's date plus one through the whole session."""
        return self.now.astimezone(NEW_YORK).date()

    @cached_property
    def broker_prices(self) -> Mapping[str, float]:
        """The broker's current price of each position it holds (read once a tick, for every bot's P&L)."""
        return {p.symbol: p.current_price for p in self.snapshot.positions or ()}

    def bot(self, bot_id: str) -> BotRecords:
        return self.bots.get(bot_id, _NO_RECORDS)

    @property
    def system_halt(self) -> Halt | None:
        """The latest system-wide halt in force (what a flatten asks is asked of them all: `flatten_requested`)."""
        return self.system_halts[-1] if self.system_halts else None

    @cached_property
    def system_halts(self) -> tuple[Halt, ...]:
        """Every system-wide halt in force, oldest first."""
        return tuple(h for h in self.halts if h.scope == SYSTEM_SCOPE)

    @cached_property
    def flatten_requested(self) -> bool:
        """Whether a flatten is in force: ANY system halt in force asks for every position to be closed. The one
        answer every reader takes (the ExitBot's duties, the exits' handlers, the `flatten_requested` fact). Read
        from the latest halt alone, a later halt without flatten (an operator's, an anomaly's) made the kill
        switch forget the daily-loss sell-off it had recorded, its exits still waiting."""
        return any(h.flatten for h in self.system_halts)

    def with_halts(self, open_halts: tuple[Halt, ...]) -> TickView:
        """The same view after the ExitBot wrote or ended halts (`open_halts`: the halts not ended, re-read)."""
        in_force = tuple(h for h in open_halts if h.in_force(self.now))
        if in_force == self.halts:  # the same halts in force: every bot's records stand as they are
            return self if open_halts == self.open_halts else dataclasses.replace(self, open_halts=open_halts)
        latest, paused = _latest_halts(in_force)
        bots = dict(self.bots)
        for bot_id, records in self.bots.items():
            halt, pause = latest.get(bot_id), paused.get(bot_id)
            if records.halt is not halt or records.paused is not pause:
                bots[bot_id] = dataclasses.replace(records, halt=halt, paused=pause)
        for scope in latest.keys() | paused.keys():
            if scope != SYSTEM_SCOPE and scope not in bots:
                bots[scope] = BotRecords(halt=latest.get(scope), paused=paused.get(scope))
        return dataclasses.replace(self, halts=in_force, open_halts=open_halts, bots=bots)


def _latest_halts(in_force: tuple[Halt, ...]) -> tuple[dict[str, Halt], dict[str, Halt]]:
    """The latest halt in force of each scope that is not a pause, and the latest pause of each bot (oldest first:
    the latest wins). Apart, so a bot paused after it halted on a fault (or the other way) still has its halt's
    positions closed: read as one, the later pause hid the fault's halt and its positions were kept."""
    halts = {h.scope: h for h in in_force if not h.pause}
    pauses = {h.scope: h for h in in_force if h.pause}
    return halts, pauses


def read_view(store: StateStore, snapshot: Snapshot, now: datetime, tz: ZoneInfo, previous: TickView | None = None) -> TickView:
    """Seven queries, whatever the number of bots and the length of the history; one when nothing was written
    since `previous` (by this engine or any other process) on the same trading day, the clock not behind it: its
    records are reused. The orders of the last minute are then `previous`'s, less those that left the window,
    which holds only while the window moves forward: a clock set back would bring back into it orders `previous`
    never read, and the rate limit would count too few.

    Read again in the same tick (the same snapshot, the same instant, the same zone) with nothing written since,
    it is `previous` itself: every field would be built again to the same value (the tick's second read, inside
    its transaction, exists to catch another process's halt, which moves the stamp)."""
    stamp = store.records_stamp()
    if (previous is not None and previous.snapshot is snapshot and previous.now == now and previous.zone is tz
            and previous.stamp == stamp):  # fmt: skip
        return previous
    local = wall_clock(now, tz)  # never back within a day: an hour the clocks repeat stands still
    day = local.date()
    if previous is not None and previous.stamp == stamp and previous.day == day and now >= previous.now:
        if previous.recent_orders:
            since = now - timedelta(seconds=60)
            recent = tuple(t for t in previous.recent_orders if t >= since)
        else:
            recent = ()
        # built field by field, as `dataclasses.replace` would (a third of what a tick that wrote nothing spent here)
        view = TickView(
            now=now,
            day=day,
            local_time=local.time(),
            snapshot=snapshot,
            halts=previous.halts,
            open_halts=previous.open_halts,
            bots=previous.bots,
            orders_last_minute=len(recent),
            recent_orders=recent,
            stamp=stamp,
            zone=previous.zone,
        )
        return view.with_halts(previous.open_halts)
    positions: dict[str, list[PositionRow]] = {}
    for position in store.positions():
        positions.setdefault(position.bot_id, []).append(position)
    open_orders: dict[tuple[str, str], list[OrderRow]] = {}
    for order in store.orders(statuses=lifecycle.OPEN):
        open_orders.setdefault((order.bot_id, order.purpose), []).append(order)
    last_entries = store.last_entries(day)
    counters = store.counters(day)
    realized = store.realized_pnl(day)
    open_halts = tuple(store.halts(open_only=True))
    halts = tuple(h for h in open_halts if h.in_force(now))
    bot_ids = set(positions) | {b for b, _ in open_orders} | set(last_entries) | set(counters) | set(realized)
    bot_ids |= {h.scope for h in halts if h.scope != SYSTEM_SCOPE}
    # The order rate (risk.max_orders_per_minute) is counted from the state file's orders, every one committed before it
    # is sent: a restart, or a crash loop, counts the orders of the minute before it as the running engine did.
    recent = tuple(store.orders_created_since(now - timedelta(seconds=60)))
    latest, paused = _latest_halts(halts)
    bots = {
        bot_id: BotRecords(
            positions=tuple(positions.get(bot_id, ())),
            open_entries=tuple(open_orders.get((bot_id, "entry"), ())),
            open_exits=tuple(open_orders.get((bot_id, "exit"), ())),
            last_entry=last_entries.get(bot_id),
            halt=latest.get(bot_id),
            paused=paused.get(bot_id),
            counters=MappingProxyType(counters.get(bot_id, {})),
            realized_pnl=realized.get(bot_id, 0.0),
        )
        for bot_id in bot_ids
    }
    return TickView(
        now=now,
        day=day,
        local_time=local.time(),
        snapshot=snapshot,
        halts=halts,
        open_halts=open_halts,
        bots=bots,
        orders_last_minute=len(recent),
        recent_orders=recent,
        stamp=stamp,
        zone=tz,
    )
