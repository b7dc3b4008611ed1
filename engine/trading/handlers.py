"""What each named action does: a registry from the action names machines may use (engine/machines/actions.py)
to the functions that carry them out. A name lint accepts always has a handler here; a test holds the two to
each other. Handlers turn intents into order intents in SQLite (inside the tick's transaction), never into
broker calls: the orders are sent after the transaction commits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from engine.brokers.base import Account, Holding, OrderRequest, Position
from engine.brokers.symbols import is_crypto
from engine.core.store import EXITBOT_ID
from engine.machines.actions import Intent
from engine.trading.exitbot import KillVerdict
from engine.trading.facts_builder import BotFacts
from engine.trading.gate import Denial, Gate, limits_reached
from engine.trading.view import TickView

if TYPE_CHECKING:
    from engine.trading.engine import Engine


@dataclass
class TickContext:
    """The tick in progress, as the handlers need it."""

    engine: Engine
    view: TickView
    gate: Gate
    kills: KillVerdict
    system_armed: bool = False
    evaluated: dict[str, BotFacts] = field(default_factory=dict)  # bot id -> its facts this tick
    closing: set[tuple[str, str]] = field(default_factory=set)  # (bot, symbol) given an exit this tick
    sell_room: dict[str, float] = field(default_factory=dict)  # symbol -> what exits may still sell (`_sellable`)
    entered: set[str] = field(default_factory=set)  # bots granted an entry this tick (`open_entry`)


Handler = Callable[[TickContext, Intent], None]


def open_entry(tick: TickContext, intent: Intent) -> None:
    """Ask the gate; a grant numbers the planned order and commits its intent, a denial is logged."""
    engine, view = tick.engine, tick.view
    bot = engine.bot(intent.bot_id)
    if bot.bot_id in tick.entered:
        # One entry a bot a tick: its facts, and the plan sized to its whole budget, were worked out before the first
        # was granted, and a second would be sized the same (two entries, twice the risk its config allows). A
        # machine asking twice in one step is refused by validation; this holds whatever the machine says.
        engine.journal.log("entry_blocked", bot=bot.bot_id, failed=["one_entry_per_tick"])
        return
    evaluated = tick.evaluated[intent.bot_id]
    verdict = tick.gate.grant(
        failed_checks=evaluated.failed_checks,
        system_armed=tick.system_armed,
        plan=evaluated.plan,
        snapshot=view.snapshot,
        # a pause (the broker refused its orders repeatedly) holds whatever preflight.yaml and the machine ask
        limits=limits_reached(evaluated.facts, bot.config.risk) + (("bot_paused",) if view.bot(bot.bot_id).paused else ()),
    )
    if isinstance(verdict, Denial):
        bot.memory.entry_blocked = True
        bot.memory.last_denial = verdict.failed
        engine.journal.log("entry_blocked", bot=bot.bot_id, failed=list(verdict.failed))
        return
    plan = verdict.plan
    request = dataclasses.replace(plan.request, client_order_id=engine.orders.next_client_order_id(bot.bot_id, view.day))
    bot.memory.entry_blocked = False
    bot.memory.last_denial = ()
    bot.memory.size_blocked_on = None
    bot.memory.size_blocked_for.clear()
    tick.entered.add(bot.bot_id)
    engine.orders.record_intent(bot.bot_id, view.day, "entry", request, intent.trigger)
    engine.store.bump_counter(view.day, bot.bot_id, "entries")
    contract = plan.contract
    if contract is not None and contract.symbol == request.symbol:
        engine.journal.log(
            "contract_chosen",
            bot=bot.bot_id,
            symbol=contract.symbol,
            underlying=contract.underlying,
            expiry=contract.expiry,
            dte=(contract.expiry - view.exchange_day).days,
            delta=round(contract.delta, 4),
            bid=contract.bid,
            ask=contract.ask,
            quote_age_s=None if plan.quote_age_s is None else round(plan.quote_age_s, 3),
            spread_pct=None if plan.spread_pct is None else round(plan.spread_pct, 3),
        )


def close_position(tick: TickContext, intent: Intent) -> None:
    """Exit orders for every owned position of the bot that has no working exit: reduce-only, never gated."""
    engine, view = tick.engine, tick.view
    records = view.bot(intent.bot_id)
    busy = {r.symbol for r in records.open_exits}
    shared = _shared_symbols(view) if view.flatten_requested else set()
    for position in records.positions:
        key = (intent.bot_id, position.symbol)
        if position.symbol in busy or key in tick.closing or position.symbol in shared:
            continue  # already closing; or, under a flatten, a symbol others hold too: the ExitBot closes it once
        tick.closing.add(key)
        qty = _exit_qty(tick, intent.bot_id, position.symbol, position.qty)
        if qty is None:
            continue
        crypto = is_crypto(position.symbol)
        request = OrderRequest(
            position.symbol,
            "sell",
            engine.orders.next_client_order_id(intent.bot_id, view.day),
            "market",
            "gtc" if crypto else "day",
            qty=qty,
        )
        # the reason names the rule that fired, as the trade's exit trigger: "exit: stop_loss_hit"
        reason = f"{intent.trigger}: {intent.because[-1]}" if intent.because else intent.trigger
        engine.orders.record_intent(intent.bot_id, view.day, "exit", request, reason)


def _sellable(tick: TickContext, symbol: str) -> float | None:
    """What exits may still sell of `symbol` this tick: what the broker says the account holds long, less what
    the working and pending sells on it and the exits recorded earlier in this tick will sell; never more than
    the broker says may be sold (`Position.qty_available`, which an order placed beside the engine lowers too:
    sized past it, the exit was refused each minute and sold nothing). None when the broker's positions were not
    read this tick nor within POSITIONS_STAND_IN (`_held`)."""
    room = tick.sell_room.get(symbol)
    if room is None:
        positions = _held(tick, symbol)
        if positions is None:
            return None
        held = sum(p.qty for p in positions)
        selling = sum(
            max((r.qty or 0.0) - r.filled_qty, 0.0)
            for records in tick.view.bots.values()
            for r in records.open_exits
            if r.symbol == symbol
        )
        room = max(held, 0.0) - selling
        said = [p.qty_available for p in positions if p.qty_available is not None]
        if said:  # what the broker's open orders hold already (ours at the broker among them): not less `selling`
            room = min(room, sum(said))
        tick.sell_room[symbol] = room
    return room


def _held(tick: TickContext, symbol: str) -> list[Position] | list[Holding] | None:
    """What the broker says the account holds in `symbol`, as an exit is sized: this tick's positions; when some of
    them could not be read, what that answer still says of `symbol` (`Snapshot.positions_in_part`: one bad field of
    another position, or a price of this one, leaves its quantity known), unless its quantity is what could not be
    read; else the positions last read, within POSITIONS_STAND_IN (the engine's own fills since being in `owned`,
    its own sells in `_sellable`'s `selling`). None: unknown, and the exit waits."""
    snapshot = tick.view.snapshot
    if snapshot.positions is not None:
        return [p for p in snapshot.positions if p.symbol == symbol]
    in_part = snapshot.positions_in_part
    if in_part is not None and symbol not in in_part.unknown:
        return [h for h in in_part.holdings if h.symbol == symbol]
    stand_in = _stand_in(tick)
    return None if stand_in is None else [p for p in stand_in if p.symbol == symbol]


def _exit_qty(tick: TickContext, owner: str, symbol: str, owned: float) -> float | None:
    """The quantity an exit of `owned` sells: never more than the account holds and no other sell will take
    (`_sellable`), so that an exit can only reduce a position, never open a short one, nor be refused for a
    float's last digit. The bots' count is more than the broker's when something outside the engine sold (by
    hand, or an earlier exit the broker had not shown yet): then what is there is sold, and what the bots still own
    is a difference reconciliation halts on. None when nothing is left to sell. A shortfall no larger than what
    this tick's fills bought is the snapshot's order of reads (positions before orders), not a sale: `owned` goes.

    While the positions read fails, the exit is sized against the positions last read, for POSITIONS_STAND_IN:
    exits must go on through a moment's outage, and what can have changed since is a sale outside the engine in
    that very moment. None, the exit waiting for a later tick, when no positions were read lately (what the
    account holds is unknown: the bots' count, sent blind, opened a short where the broker held none), when the
    broker blocks the account's orders in the symbol, or within EXIT_RETRY_AFTER of the broker refusing this
    bot's last exit of it (either would be refused again, each tick). Said once a spell (`exit_waiting`)."""
    wanted = round(owned, 9)  # Alpaca takes 9 decimals; past them is a float sum's tail (a split fill), not a quantity
    if wanted <= 0:  # dust the store has not removed yet: nothing Alpaca could sell
        return None
    said = tick.engine.exits_limited
    snapshot, now = tick.view.snapshot, tick.view.now
    refused_at = tick.engine.orders.exits_refused.get((owner, symbol))
    waiting = (
        "the broker's positions could not be read lately" if _held(tick, symbol) is None
        else "the broker says the account may not place these orders (trading_blocked, account_blocked, suspended, "
             "or crypto not active)"
        if snapshot.account is not None and _blocked(snapshot.account, symbol)
        else f"the broker refused the last exit at {refused_at.isoformat()}: tried again a minute after"
        if refused_at is not None and now - refused_at < EXIT_RETRY_AFTER else None
    )  # fmt: skip
    room = _sellable(tick, symbol) if waiting is None else None
    if room is None:
        if said.get((owner, symbol)) != (owned, -1.0):  # -1: waiting, said once until the exit is sized again
            said[owner, symbol] = (owned, -1.0)
            tick.engine.journal.log("exit_waiting", bot=owner, symbol=symbol, owned=owned, reason=waiting)
        return None
    short = owned - room
    if wanted <= room or short <= tick.engine.orders.bought_this_tick.get(symbol, 0.0) * (1 + _QTY_SLACK):
        said.pop((owner, symbol), None)  # not limited: a later difference is news again
        tick.sell_room[symbol] = room - wanted
        return wanted
    # 9 decimals, rounded down but not below a decimal a float sum only just missed
    qty = min(math.floor(max(room, 0.0) * 1e9 + 1e-6) / 1e9, wanted)
    if short > _QTY_SLACK * max(1.0, owned) and said.get((owner, symbol)) != (owned, qty):  # once per difference
        said[owner, symbol] = (owned, qty)
        tick.engine.journal.log(
            "exit_limited", bot=owner, symbol=symbol, owned=owned, sellable=max(room, 0.0), sent=max(qty, 0.0)
        )
    if qty <= 0:
        return None
    tick.sell_room[symbol] = room - qty
    return qty


def _blocked(account: Account, symbol: str) -> bool:
    """The broker says an order in `symbol` would be refused. Only its explicit blocks (and, for a coin, crypto
    trading not active): a status other than ACTIVE (an account being updated) is not known to refuse an order
    that closes a position."""
    if account.trading_blocked or account.account_blocked or account.trade_suspended_by_user:
        return True
    return is_crypto(symbol) and account.crypto_status is not None and account.crypto_status != "ACTIVE"


def _stand_in(tick: TickContext) -> tuple[Position, ...] | None:
    """The positions last read, while they are recent enough to stand in for a read that failed (a moment's
    outage); older, what the account holds is unknown (a sale by hand in a long outage would be sold again).
    Aged at the clock's time now, not the tick's start: a snapshot whose reads hung (each up to its timeout) has
    spent part of the minute before the exit is sized, and the age the exit trusts is the age it is sent at."""
    engine = tick.engine
    if engine.last_positions is None or engine.last_positions_at is None:
        return None
    now = max(tick.view.now, engine.clock.now())
    return engine.last_positions if now - engine.last_positions_at <= POSITIONS_STAND_IN else None


# How long the positions last read stand in for reads that fail; and how long after a refused exit the next waits.
POSITIONS_STAND_IN = timedelta(minutes=1)
EXIT_RETRY_AFTER = timedelta(minutes=1)


_QTY_SLACK = 1e-9  # float sums of quantities: a difference this small (relative) is no difference to report


def _shared_symbols(view: TickView) -> set[str]:
    seen: dict[str, int] = {}
    for records in view.bots.values():
        for position in records.positions:
            seen[position.symbol] = seen.get(position.symbol, 0) + 1
    return {symbol for symbol, holders in seen.items() if holders > 1}


def flatten_shared(tick: TickContext, symbol: str, holders: list[str]) -> None:
    """The kill switch's flatten of a symbol several bots hold: one sell of their sum, owned by the ExitBot
    (`EXITBOT_ID`); its fills are split among the holders in proportion to what each owns (orders.py)."""
    engine, view = tick.engine, tick.view
    if any(r.symbol == symbol for r in view.bot(EXITBOT_ID).open_exits) or any(
        r.symbol == symbol for bot_id in holders for r in view.bot(bot_id).open_exits
    ):
        return  # an exit is already working on it
    keys = [(bot_id, symbol) for bot_id in holders]
    if any(key in tick.closing for key in keys):
        return
    owned = sum(p.qty for bot_id in holders for p in view.bot(bot_id).positions if p.symbol == symbol)
    tick.closing.update(keys)
    qty = _exit_qty(tick, EXITBOT_ID, symbol, owned)
    if qty is None:
        return
    request = OrderRequest(
        symbol,
        "sell",
        engine.orders.next_client_order_id(EXITBOT_ID, view.day),
        "market",
        "gtc" if is_crypto(symbol) else "day",
        qty=qty,
    )
    engine.orders.record_intent(EXITBOT_ID, view.day, "exit", request, "flatten")


def cancel_entry(tick: TickContext, intent: Intent) -> None:
    tick.engine.orders.cancel_after_commit(tick.view.bot(intent.bot_id).open_entries)  # no request inside the transaction


def record_halt(tick: TickContext, intent: Intent) -> None:
    """The system's kill fired: the ExitBot records the halt with the conditions that hold, and its cooloff, unless
    a system halt in force already does what they ask (`ExitBot.kill_recorded`). At an operator's `resume` the
    machine left `halted` (expire) the tick the ExitBot recorded the kill itself (no halt was then in force), and
    its `kill` edge the next tick recorded the same halt again, with a cooloff of its own."""
    exitbot = tick.engine.exitbot
    if not exitbot.kill_recorded(tick.kills, tick.view):
        exitbot.record_kill(tick.kills, tick.view.now)


def allocate_budgets(tick: TickContext, intent: Intent) -> None:
    """The PortfolioBot's machine asks for today's allocations to be logged."""
    tick.engine.log_allocations(tick.view.day, asked=True)


HANDLERS: dict[str, Handler] = {
    "open_entry": open_entry,
    "close_position": close_position,
    "cancel_entry": cancel_entry,
    "record_halt": record_halt,
    "allocate_budgets": allocate_budgets,
}


def dispatch(tick: TickContext, intent: Intent) -> None:
    HANDLERS[intent.action](tick, intent)
