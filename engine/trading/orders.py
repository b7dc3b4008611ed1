"""Orders: deterministic client_order_ids, intents committed before they are sent, no blind re-POSTs.

The life of an order is the table in engine/core/order_lifecycle.py. In short:
  pending  -> the intent is committed to SQLite (before any request is made)
  (sent)   -> the broker's answer is recorded: accepted, filled, ... or rejected
  unknown  -> the send failed and the lookup could not tell; looked up again every tick
  not_sent -> lookups proved the broker never got it (several, over a while: NOT_FOUND_LOOKS, NOT_FOUND_SPAN)
After any error the order is looked up by client_order_id; a POST is repeated only for an intent that
provably never reached the broker, with the same client_order_id (which the broker refuses to accept twice).
Every order event is flushed to the JSONL before the request it describes leaves the process.

Fills move the bot's owned positions (SQLite `positions`), from which exits are sized and the broker's
positions are reconciled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Literal

from engine.brokers.base import (
    NOT_OURS,
    ORDER_AMOUNTS,
    ORDER_FIXED,
    Broker,
    BrokerError,
    Order,
    OrderRequest,
    Position,
    Snapshot,
    added_fill_price,
    fill_value_contradicts,
    fill_value_slack,
    same_amount,
)
from engine.brokers.errors import REFUSALS  # the refusals on an order's merits: its bot's denial (and pause)
from engine.brokers.symbols import contract_multiplier, is_crypto
from engine.core import failpoints
from engine.core import order_lifecycle as lifecycle
from engine.core.clock import Clock
from engine.core.journal import Journal
from engine.core.money import cents
from engine.core.store import EXITBOT_ID, SYSTEM_SCOPE, Halt, OrderRow, PositionRow, StateStore, TradeRow, is_dust
from engine.trading import fillprice, kept, reconcile

RESEND_WITHIN = timedelta(seconds=60)
# A lookup by client_order_id that answers 404 proves little right after a POST whose answer was lost: Alpaca's order
# listing can lag the order. An order whose POST may have left is judged never sent only once NOT_FOUND_LOOKS lookups
# answered 404, the first and the last NOT_FOUND_SPAN or more apart (`_proved_absent`); until then it stays `unknown`,
# looked up every tick, and is never POSTed again. Counted by this process: a restart counts again from nothing.
NOT_FOUND_LOOKS = 3
NOT_FOUND_SPAN = timedelta(seconds=20)
# How many replacements in a row (each replaced in turn between two reads) are followed in one read; more is junk.
MAX_REPLACEMENTS = 8
# The error a send of an `unknown` order is recorded with when the broker said it already has the client_order_id
# (422 "client_order_id must be unique", reference/alpaca-api.md section 6): the order exists, so lookups that
# answer 404 prove nothing about it and it never ends `not_sent` or `rejected`; it is looked up until found.
EXISTS = "the broker has this client_order_id"
# How long an order the broker said it has may go unfound before that answer is taken for one we cannot read.
EXISTS_PATIENCE = timedelta(minutes=5)
# A cancel the broker took (204) is asynchronous: an order still working this long after, not even pending_cancel,
# is asked again (the broker may drop a cancel it took); once a minute at most.
CANCEL_PATIENCE = timedelta(seconds=60)
# How far the broker's clock may be behind ours when an order found under one of our client_order_ids is judged ours
# (`_foreign`): the broker created it no earlier than the row was committed (before its first send), less this. Two
# state files on one account count their ids apart and give the same `bot-YYYYMMDD-NNNN`; an order the broker created
# before this file ever recorded the id is another engine's (or another state file's), never our earlier try.
# Alpaca's and a synced host's clocks differ by well under a second; a host clock ahead by more halts (fail closed)
# on the paths that look an order up (after a send error, at a restart), never on our own POST's answer.
CLOCK_ALLOWANCE = timedelta(seconds=5)
# Why an intent ended `not_sent` without any request for it: nothing to look for at the broker.
NEVER_POSTED = ("halted before it was sent", "held too long")


def _duplicate_id(error: BrokerError) -> bool:
    """The broker refused a POST because the client_order_id is taken: an earlier attempt landed."""
    text = error.message.lower()
    return error.status == 422 and "client_order_id" in text and "unique" in text


def client_order_id(bot_id: str, day: date, sequence: int) -> str:
    """Deterministic: the same bot, day and sequence always give the same id, so a resend cannot double."""
    return f"{bot_id}-{day:%Y%m%d}-{sequence:04d}"


def request_of(row: OrderRow) -> OrderRequest:
    return OrderRequest(
        symbol=row.symbol,
        side=row.side,  # type: ignore[arg-type]  # written from an OrderRequest, so one of its literals
        client_order_id=row.client_order_id,
        order_type=row.order_type,  # type: ignore[arg-type]  # as above
        time_in_force=row.time_in_force,  # type: ignore[arg-type]  # as above
        qty=row.qty,
        notional=row.notional,
        limit_price=row.limit_price,
    )


@dataclass
class OrderManager:
    store: StateStore
    broker: Broker
    journal: Journal
    clock: Clock
    on_failure: Callable[[BrokerError], None]
    # system.timezone: a fill is booked (realized P&L, its trade, the `fills` counter) on the trading date it is
    # seen on, which may be a later one than its order's (`_fill`)
    zone: tzinfo
    fills: int = 0
    sent: int = 0
    # client_order_id -> when the broker took its cancel: lost at a restart, safely (the cancel is asked again sooner)
    cancel_requested: dict[str, datetime] = field(default_factory=dict)
    # client_order_ids whose cancel the broker refused (422): kept in the state file with the two below (`save_watch`)
    cancels_refused: set[str] = field(default_factory=set)
    # symbol -> quantity bought in fills this tick's sync learned: the snapshot read the positions before the
    # orders, so these may be missing from its positions (handlers._exit_qty)
    bought_this_tick: dict[str, float] = field(default_factory=dict)
    sold_this_tick: dict[str, float] = field(default_factory=dict)  # the same of sells (`moved_this_tick`)
    # symbols with a working order of ours this tick's sync could not bring up to date (neither listed nor found, or
    # its lookup failed); None when the open orders could not be read: fills since the last read are not booked
    # there, so a position smaller than the bots own may be a sale, not a fee (`reconcile.adopt_fee_shortfalls`)
    unsettled: set[str] | None = field(default_factory=set)
    _recorded: int = 0  # intents recorded since the last send_pending
    _held: set[str] = field(default_factory=set)  # intents held back behind an opposite working order
    _read_after_snapshot: set[str] = field(default_factory=set)  # orders read during this sync, after its snapshot
    _missing_since: dict[str, datetime] = field(default_factory=dict)  # see sync; kept (`save_watch`)
    # cid -> (first 404, 404s): `_proved_absent`. Lost at a restart, safely: the proof that an order never reached the
    # broker starts again, so its row stays `unknown` (never sent again) longer, and a restart's exit is resent only
    # under its own client_order_id, which the broker refuses to take twice
    _not_found: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    _replacements_missing: dict[str, datetime] = field(default_factory=dict)  # see _replacement_unfound; kept
    _watch_saved: kept.OrderWatch = field(default_factory=lambda: kept.OrderWatch({}, {}, frozenset()))
    # (bot, symbol) -> the last refusal of its exit, which the next exit waits on (handlers._exit_qty): read back from
    # the refused exits' rows at start (`restore_refused_exits`), or a restart sent a refused exit again at once
    exits_refused: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _mine: set[str] = field(default_factory=set)  # intents this process recorded (the others: a run that ended)
    _maybe_unsent: bool = True  # rows may have ended `not_sent` after a request (read once at start, then kept)
    _cancels_due: list[OrderRow] = field(default_factory=list)  # `cancel_after_commit`: asked for inside the tick
    # entries whose cancel a committed tick asked for and that no request has reached yet (`send_cancels`)
    _cancels_wanted: dict[str, None] = field(default_factory=dict)
    # client_order_id -> the quotes of its symbol seen since it was recorded, which its fills' prices are held to
    # (`_fill_price`). Lost at a restart: an order of an earlier run is held to the quotes from this run's first read
    # of it on, so a fill at a price the market left while no engine ran halts (it cannot be told from a wrong one).
    _seen: dict[str, fillprice.Seen] = field(default_factory=dict)
    # the intents recorded inside the tick's transaction, not yet committed: what this manager keeps of them in memory
    # (`_seen`, `_mine`, `_recorded`) is forgotten with them when it rolls back (`rolled_back`), and kept once the
    # tick commits (`tick_committed`). Kept, an entry of `_seen` no order has was walked every tick for the rest of
    # the run, and the next tick, given the same sequence number back, reused it for its own intent: a fill of that
    # order was held to the quotes of the one rolled back (another symbol's, when another decision came next).
    _uncommitted: list[str] = field(default_factory=list)
    _quotes: Snapshot | None = None  # the last sync's snapshot: the quotes an intent recorded now was decided on
    # Whether fills are held to the quotes seen (`_fill_price`): a backtest's fills are its own fill model's over the
    # recorded bars (the next bar's open, a slippage of up to 100 %), no broker's answer to doubt (replay/backtest.py).
    fill_band: bool = True
    # How far a quote's own time may be from its snapshot's for the band to be made of it (health.
    # max_price_staleness_seconds, set by the engine; None: any, for a desk of its own): `fillprice.quote_of`.
    quote_max_age_s: float | None = None

    def restore_refused_exits(self, now: datetime) -> None:
        """At start: `exits_refused` from the state file, where each refusal is already kept: an exit's row ended
        `rejected`, its `updated_at` the refusal's time (taken as `now` if later: the clock went back, and the wait
        is one from now, not one until the clock catches up). The last two trading dates are read (a refusal is
        written as it happens; the wait is a minute). A row the broker rejected after taking it counts too: waiting
        a minute before that exit's next try is the side that sends less."""
        today = now.astimezone(self.zone).date()
        for day in (today - timedelta(days=1), today):
            for row in self.store.orders(statuses=("rejected",), day=day):
                if row.purpose != "exit":
                    continue
                at = min(row.updated_at, now)
                before = self.exits_refused.get((row.bot_id, row.symbol))
                if before is None or at > before:
                    self.exits_refused[row.bot_id, row.symbol] = at

    def restore_watch(self, now: datetime, day: date) -> None:
        """At start: the patience an earlier run of the day was keeping (kept.OrderWatch): since when an order the
        broker took was missing, or its replacement unfound (past EXISTS_PATIENCE, an answer we cannot read: it
        halts), and which orders' cancel it refused once (refused again, it halts). Started again at each start, a
        crash loop every few minutes never reached either. Only for orders still open here. A record that cannot be
        read is taken as patience run out: what this run finds missing or refused is reported at once."""
        open_ids = {row.client_order_id for row in self.store.orders(statuses=lifecycle.OPEN)}
        watch = kept.order_watch(self.store, now, day)
        if watch is None:
            gone = now - EXISTS_PATIENCE - timedelta(seconds=1)
            watch = kept.OrderWatch(dict.fromkeys(open_ids, gone), dict.fromkeys(open_ids, gone), frozenset(open_ids))
        else:
            self._watch_saved = watch
        self._missing_since = {cid: t for cid, t in watch.missing.items() if cid in open_ids}
        self._replacements_missing = {cid: t for cid, t in watch.replacements.items() if cid in open_ids}
        self.cancels_refused = set(watch.refused & open_ids)

    def _watch(self) -> kept.OrderWatch:
        return kept.OrderWatch(dict(self._missing_since), dict(self._replacements_missing), frozenset(self.cancels_refused))

    @property
    def watch_changed(self) -> bool:
        """Whether the watch differs from the one last written: its three collections compared with the saved
        record's, as `OrderWatch.__eq__` compares them (a set equals the frozenset of its members), without the
        copies `_watch` makes. Asked twice a tick, nearly always of three empty collections."""
        saved = self._watch_saved
        return not (
            self._missing_since == saved.missing
            and self._replacements_missing == saved.replacements
            and self.cancels_refused == saved.refused
        )

    def save_watch(self, now: datetime, day: date, *, again: bool = False) -> None:
        """Write what `restore_watch` reads, inside the caller's transaction, when it changed since the last write (or
        `again`: the transaction that held the last write was rolled back). Nearly always empty and unchanged: the
        record (`_watch`, copies of the collections) is built only to be written."""
        if self.watch_changed or again:
            watch = self._watch()
            kept.save_order_watch(self.store, now, day, watch)
            self._watch_saved = watch

    # --- intents -------------------------------------------------------------------------------------------

    def next_client_order_id(self, bot_id: str, day: date) -> str:
        return client_order_id(bot_id, day, self.store.bump_counter(day, bot_id, "order_seq"))

    def record_intent(self, bot_id: str, day: date, purpose: str, request: OrderRequest, reason: str) -> OrderRow:
        """Commit the intent (inside the tick's transaction), before anything is sent."""
        now = self.clock.now()
        row = OrderRow(
            client_order_id=request.client_order_id,
            bot_id=bot_id,
            trading_date=day,
            purpose=purpose,
            symbol=request.symbol,
            side=request.side,
            qty=request.qty,
            notional=request.notional,
            order_type=request.order_type,
            limit_price=request.limit_price,
            time_in_force=request.time_in_force,
            status="pending",
            broker_order_id=None,
            filled_qty=0.0,
            filled_avg_price=None,
            reason=reason,
            error=None,
            created_at=now,
            updated_at=now,
        )
        self.store.add_order(row)
        self._recorded += 1
        self._mine.add(row.client_order_id)
        self._uncommitted.append(row.client_order_id)
        self._watch_price(row)
        self.journal.log(
            "order",
            action="intent",
            bot=bot_id,
            client_order_id=row.client_order_id,
            purpose=purpose,
            symbol=row.symbol,
            side=row.side,
            qty=row.qty,
            notional=row.notional,
            order_type=row.order_type,
            limit_price=row.limit_price,
            time_in_force=row.time_in_force,
            reason=reason,
        )
        return row

    # --- sending -------------------------------------------------------------------------------------------

    def send_pending(self, entry_refusal: Callable[[OrderRow], str | None] | None = None) -> int:
        """Send the intents committed this tick, and those held back earlier; returns how many were attempted.
        Only intents recorded by this process are looked for here (none: no query); those of an earlier process
        are `recover_pending`'s.

        An entry leaves only if, at this moment, no halt is in force for the system or its bot (an operator may
        have halted from another process since the gate granted it), and `entry_refusal` (the engine's: this
        tick's reads, the system's state, the bot's preflight, how old its reads are by the clock now) gives no
        reason against it; otherwise it ends `not_sent`.

        Alpaca refuses an order that would cross the account's own working order on the other side of the same
        symbol (a "potential wash trade"); an order whose send is in doubt (`unknown`) may be working there too.
        Such an order is held, not sent: it stays `pending` and goes out on a later tick, once the opposite order
        is done. An entry standing in the way of an exit, whichever bot's, is
        cancelled so that the exit can go; an entry held for longer than RESEND_WITHIN ends `not_sent` (its signal
        is stale). The exits of a send go before its entries, so an entry and another bot's exit crossing it hold
        the entry; and an exit held waits ahead of the entries that would cross it: they are held behind it. Sent
        past it (the held exit was only `pending`), each new entry on the symbol, a limit working up to its
        machine's timeout, held a stop loss back once more when the order in its way was done."""
        if not self._recorded and not self._held:
            return 0
        # The tick's transaction is committed: its events (intents, fills, trades, halts) go to the log now, not
        # at the first send or the tick's end, so that a kill during the sync to disk below, or before a send,
        # cannot leave SQLite holding what the log never says (the window is down to this one write)
        self.journal.flush()
        failpoints.reach("intent_committed")  # after the tick's transaction, before any of its sends
        # exits first: of two crossing orders of one send (one bot's exit, another's entry on the symbol), the one that
        # only reduces risk goes, the other is held; in creation order, the bot id decided
        rows = sorted(self.store.orders(statuses=("pending",)), key=lambda row: row.purpose != "exit")
        if rows:
            self.store.sync_to_disk()  # the intents outlive a power cut before the broker hears of them
        now = self.clock.now()
        working = self.store.orders(statuses=lifecycle.WORKING | {"unknown"}) if rows else []
        sides = {(o.symbol, o.side) for o in working}
        held: set[str] = set()
        waiting: list[OrderRow] = []  # the exits held in this send
        attempted = 0
        for row in rows:
            # read again before each entry: a halt committed while an earlier order of this tick was on its way
            # (another process's `engine halt`, or a bad answer that halted) stops it
            halt = self._halt_over(row, now) if row.purpose == "entry" else None
            if halt is not None:
                self._entry_not_sent(row, f"halted before it was sent: {halt.reason}", halt.reason)
                continue
            refused = entry_refusal(row) if row.purpose == "entry" and entry_refusal is not None else None
            if refused is not None:
                self._entry_not_sent(row, f"not sent: {refused}", refused)
                continue
            opposite = "sell" if row.side == "buy" else "buy"
            if (row.symbol, opposite) in sides:
                self._hold(row, [o for o in (*working, *waiting) if o.symbol == row.symbol and o.side == opposite], now, held)
                if row.purpose == "exit" and row.client_order_id in held:
                    waiting.append(row)  # an entry that would cross it waits with it: it goes out first
                    sides.add((row.symbol, row.side))
                continue
            attempted += 1
            self._send(row)
            sides.add((row.symbol, row.side))  # it may be working now: a later opposite intent waits for it
        # only now: an exception out of a send (the tick boundary halts on it) leaves the intents after it pending,
        # and the next call, finding `_recorded` still set, takes them up (an entry then meets the halt)
        self._recorded = 0
        self._held = held
        return attempted

    def _entry_not_sent(self, row: OrderRow, error: str, reason: str) -> None:
        """An entry ends `not_sent` before any request for it was made (a halt or a failing preflight at its send,
        held too long behind an opposite order, given up by its bot while held): it was no trade, so the count its
        grant added to the bot's `entries` (`trades_today`, against risk.max_trades_per_day) is given back, in the
        same transaction. Kept, a bot whose entries were held behind another bot's exit on the symbol for a minute
        each had its day's trades used up without one order sent."""
        with self.store.transaction():
            self._set(row, status="not_sent", error=error)
            if self.store.counter(row.trading_date, row.bot_id, "entries") > 0:  # an intent recorded by hand was never counted
                self.store.bump_counter(row.trading_date, row.bot_id, "entries", -1)
        self.journal.log("order", action="not_sent", bot=row.bot_id, client_order_id=row.client_order_id, reason=reason)

    def _halt_over(self, row: OrderRow, now: datetime) -> Halt | None:
        """The latest halt in force, as the state file has it now, for the system or the order's bot."""
        halts = [h for h in self.store.halts(open_only=True) if h.in_force(now)]
        return next((h for h in reversed(halts) if h.scope in (SYSTEM_SCOPE, row.bot_id)), None)

    def _hold(self, row: OrderRow, in_the_way: list[OrderRow], now: datetime, held: set[str]) -> None:
        """Keep an intent back while an opposite order on its symbol works (see send_pending)."""
        if row.purpose == "entry" and now - row.created_at > RESEND_WITHIN:
            self._entry_not_sent(row, "held too long behind an opposite order on its symbol", "held behind an opposite order")
            return
        held.add(row.client_order_id)
        if row.client_order_id not in self._held:  # logged once, when first held
            self.journal.log(
                "order",
                action="held",
                bot=row.bot_id,
                client_order_id=row.client_order_id,
                reason="an opposite order on the symbol is working (Alpaca would refuse it as a wash trade)",
                behind=[o.client_order_id for o in in_the_way],
            )
        if row.purpose == "exit":
            # an entry in the way of an exit, whichever bot's, is cancelled: the exit only reduces risk, and left to
            # work a limit entry held a stop loss back until its machine's timeout. Its bot sees it end as any
            # cancelled entry (what filled meanwhile is its own) and may enter again once the exit is done
            self.cancel_entries(in_the_way)  # only the entries among them

    def _send(self, row: OrderRow) -> None:
        """POST the order and record the broker's answer. An exception on the way (anything the tick boundary
        catches: the state file locked past the wait as the answer is written, a bug) leaves whether the broker has
        the order unknown: the row is moved to `unknown`, which every sync looks up until the broker shows it or
        RESEND_WITHIN proves it absent. Left `pending`, no sync looked at it again in this run: the order working
        or filled at the broker was never followed, its fill never owned by its bot."""
        try:
            self._post(row)
        except Exception as exc:  # a BaseException ends the run: the next start's `recover_pending` looks it up
            self._send_interrupted(row, exc)
            raise

    def _send_interrupted(self, row: OrderRow, exc: Exception) -> None:
        """`_send`'s exception: a row still `pending` (its answer, if any, not recorded) becomes `unknown`. Nothing
        here may hide the exception: a state file that cannot be written now leaves the row to the next start's
        `recover_pending`, which looks it up."""
        with contextlib.suppress(Exception):
            current = self.store.order(row.client_order_id)
            if current is not None and current.status == "pending":
                self._set(current, status="unknown", error=f"the send was interrupted ({type(exc).__name__}): looked up")
                self.journal.log("order", action="send_interrupted", bot=row.bot_id, client_order_id=row.client_order_id,
                                 error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def _post(self, row: OrderRow) -> None:
        self.journal.flush()  # the intent is on disk before the request leaves
        failpoints.reach("before_post")
        try:
            order = self.broker.submit_order(request_of(row))
            failpoints.reach("after_post")
        except BrokerError as exc:
            self.on_failure(exc)
            self.journal.log(
                "order",
                action="send_failed",
                bot=row.bot_id,
                client_order_id=row.client_order_id,
                kind=exc.kind,
                status=exc.status,
                message=exc.message,
            )
            self._after_send_error(row, exc)
            return
        self._sent(row, order, "submitted")

    def _after_send_error(self, row: OrderRow, error: BrokerError) -> None:
        """Never re-POST blindly: ask the broker whether the order exists."""
        try:
            found = self.broker.get_order_by_client_id(row.client_order_id)
        except BrokerError as exc:
            self.on_failure(exc)
            said = f"{EXISTS}: {error.message}" if _duplicate_id(error) else f"{error.kind}: {error.message}"
            self._set(row, status="unknown", error=f"{said}; lookup failed: {exc.kind}")  # the marker kept first
            return
        if found is None:
            self._proved_absent(row)  # the first look: it proves nothing alone (a listing may lag the POST)
        if found is not None:
            self._sent(row, found, "found_after_error")
        elif _duplicate_id(error):  # it exists though the lookup did not find it yet: looked up until it is
            self._set(row, status="unknown", error=f"{EXISTS}: {error.message}")
        elif error.kind == "rejected" or error.reason in REFUSALS:
            refused = error.reason in REFUSALS
            # the refusal and its count commit together: committed apart, a kill between them left a rejected order
            # that no count held, and the repeated-rejections anomaly and the refusals' pause came one refusal late
            with self.store.transaction():
                self._set(row, status="rejected", error=f"{error.reason}: {error.message}")
                self.store.bump_counter(self._today(), row.bot_id, f"refused:{error.reason}" if refused else "rejections")
            if row.purpose == "exit":  # the next exit of it waits a while (handlers._exit_qty), not the next tick
                self.exits_refused[row.bot_id, row.symbol] = self.clock.now()
            self.journal.log(
                "order",
                action="refused" if refused else "rejected",
                bot=row.bot_id,
                client_order_id=row.client_order_id,
                reason=error.reason,
                message=error.message,
            )
        else:
            self._set(row, status="unknown", error=f"{error.kind}: {error.message}")

    # --- keeping up with the broker ------------------------------------------------------------------------

    def sync(self, snapshot: Snapshot, *, again: bool = False) -> None:
        """Bring every order we think is open up to date from the snapshot, looking up the ones that left it.

        The broker's account is the one that counts. An open order at the broker whose row ended `not_sent` (a POST
        that landed after lookups had answered 404) is adopted, and so is one that already filled, found by
        looking up the day's unsent orders on a symbol whose position differs from what the bots own. An order
        the broker shows open although it ended here (filled, then new) cannot happen: it is reported as an answer
        that cannot be read (`bad_response`, which halts the system) and the other orders are still brought up
        to date, so one contradiction never stops the tick, nor the exits it manages.

        `again`: a second read within the tick (start-up reconciliation's re-read): the fills it books add to the
        tick's (`moved_this_tick`), which the tick's own snapshot predates as well."""
        if not again:
            self.bought_this_tick.clear()
            self.sold_this_tick.clear()
            self.unsettled = None if snapshot.open_orders is None else set()
        self._quotes = snapshot
        for client_order_id, prices in self._seen.items():  # the quotes since: what a fill read from now on may be at
            quote = fillprice.quote_of(snapshot, prices.symbol, self.quote_max_age_s)
            if quote is not None:
                self._seen[client_order_id] = prices.add(*quote)
        if snapshot.open_orders is None:
            return  # unknown this tick: nothing is concluded from a failed read
        live = {o.client_order_id: o for o in snapshot.open_orders}
        now = self.clock.now()
        self._read_after_snapshot.clear()
        rows = self.store.orders(statuses=lifecycle.WORKING | {"unknown"})
        # working orders the broker has neither listed nor found, since when: kept only while still unfound
        missing, self._missing_since = self._missing_since, {}
        for row in rows:
            order = live.get(row.client_order_id)
            if order is not None:
                self._checked(row, order, "update")
                continue
            looked_up, found = self._look_up(row)
            if found is None and self.unsettled is not None:
                self.unsettled.add(row.symbol)
            if not looked_up:
                if row.client_order_id in missing:  # a failed lookup proves nothing either way: the wait goes on
                    self._missing_since[row.client_order_id] = missing[row.client_order_id]
                continue
            if found is not None:
                self._checked(row, found, "update")
            elif (row.error or "").startswith(EXISTS):
                if now - row.created_at > EXISTS_PATIENCE:  # its bot waits on it: someone must look
                    self.on_failure(BrokerError("bad_response", f"{row.client_order_id}: refused as a duplicate id, not found "
                                                f"since {row.created_at.isoformat()}", operation="get_order"))  # fmt: skip
            elif row.status == "unknown" and self._proved_absent(row) and now - row.created_at > RESEND_WITHIN:
                self._set(row, status="not_sent", error=f"lookups by client_order_id never found it ({row.error})")
                self.journal.log("order", action="not_sent", bot=row.bot_id, client_order_id=row.client_order_id)
            elif row.broker_order_id:
                # the broker took it (it gave it an id) and now neither lists nor finds it: a moment's lag is
                # waited out; past that, its bot waits on an order nobody can see (its exit is never sent again)
                since = self._missing_since[row.client_order_id] = missing.get(row.client_order_id, now)
                if now - since > EXISTS_PATIENCE:
                    lost = f"{row.client_order_id}: accepted as {row.broker_order_id}, neither listed nor found since "
                    lost += since.isoformat()
                    self.on_failure(BrokerError("bad_response", lost, operation="get_order"))
        seen = {r.client_order_id for r in rows}
        for cid, order in live.items():
            if cid in seen or cid in self._read_after_snapshot:  # a replacement read since is newer than the list
                continue
            ended = self.store.order(cid)  # None: no bot sent it, which reconciliation reports
            if ended is not None and ended.status in lifecycle.ENDED:
                self._checked(ended, order, "found_after_not_sent" if ended.status == "not_sent" else "update")
        self._find_unsent_fills(snapshot)

    def _find_unsent_fills(self, snapshot: Snapshot) -> None:
        """Where the broker holds another quantity of a symbol than the bots own, the day's orders on it that
        ended `not_sent` after a request may have been sent after all (and filled at once, so never seen open):
        look them up. Only while such rows exist (none, nearly always: then not even the positions are compared)
        and only for a symbol whose quantities differ."""
        if snapshot.positions is None or not self._maybe_unsent:
            return
        # The trading date may be the UTC date's day before or after (system.timezone): the three are read.
        today = self.clock.now().date()
        unsent = [
            row
            for day in (today - timedelta(days=1), today, today + timedelta(days=1))
            for row in self.store.orders(statuses=("not_sent",), day=day)
            if not (row.error or "").startswith(NEVER_POSTED)
        ]
        if not unsent:
            self._maybe_unsent = False  # until one ends `not_sent` after a request: nothing to compare per tick
            return
        differ = reconcile.differences(self.store.positions(), snapshot.positions)
        for row in unsent:
            if row.symbol in differ:
                _, found = self._look_up(row)
                if found is not None:
                    self._checked(row, found, "found_after_not_sent")

    def _look_up(self, row: OrderRow) -> tuple[bool, Order | None]:
        """(whether the broker answered, the order it has under the row's client_order_id); a failure is recorded."""
        try:
            found = self.broker.get_order_by_client_id(row.client_order_id)
        except BrokerError as exc:
            self.on_failure(exc)
            return False, None
        if found is not None:
            self._not_found.pop(row.client_order_id, None)
        return True, found

    def _proved_absent(self, row: OrderRow) -> bool:
        """Count one more lookup of `row` that answered 404; whether the lookups so far prove the broker never got it
        (NOT_FOUND_LOOKS of them, over NOT_FOUND_SPAN at least). One 404 right after a POST whose answer was lost is
        the listing lagging as often as the order missing: judged on it, an entry ended `not_sent` (its bot free to
        enter again, under a new client_order_id) and a restart's exit was POSTed again while the first one stood."""
        now = self.clock.now()
        first, count = self._not_found.get(row.client_order_id, (now, 0))
        self._not_found[row.client_order_id] = (first, count + 1)
        return count + 1 >= NOT_FOUND_LOOKS and now - first >= NOT_FOUND_SPAN

    def _checked(self, row: OrderRow, order: Order, action: str) -> None:
        """`_apply`, with a move the lifecycle table refuses, or an answer contradicting the order's row (`_contradicts`),
        reported as an unreadable answer (it halts) and nothing of it recorded."""
        try:
            self._apply(row, order, action)
        except lifecycle.IllegalOrderMove as exc:
            self.journal.log("order", action="illegal_move", bot=row.bot_id, client_order_id=row.client_order_id,
                             source=exc.source, dest=exc.dest)  # fmt: skip
            self.on_failure(BrokerError("bad_response", f"{exc} (the broker contradicts itself)", operation="order_sync"))
        except Contradiction as exc:
            corrected = self._id_confirmed(row, order)
            if corrected is None:
                self._contradicted(row, exc)
                return
            self._checked(corrected, order, action)

    def _id_confirmed(self, row: OrderRow, order: Order) -> OrderRow | None:
        """The row with the broker's id put right, when `order` differs from it in that id alone and a lookup by the
        row's client_order_id (ours, unique in the account) names the same id again; else None.

        The id was recorded from one answer, the send's; two reads since, the listing and the lookup, both name
        another one for the same order. Left as it was, every sync after found the order contradicting its row and
        halted again, for good (the faults long over), and a cancel went out under the send's id: a 404, or,
        were that id another working order's, a cancel of that order. The broker contradicted itself, so it
        is still reported as an answer that could not be read (one halt), and said in the log."""
        if not row.broker_order_id or order.id == row.broker_order_id:
            return None
        corrected = dataclasses.replace(row, broker_order_id=order.id)
        if _contradicts(corrected, order) is not None:
            return None  # more than the id differs: not about this order
        if self._id_taken(row, order.id) is not None:
            return None  # another working order's id: a cancel under it would cancel that order (as `_sent` refuses)
        looked_up, found = self._look_up(row)
        if not looked_up or found is None or found.id != order.id or _contradicts(corrected, found) is not None:
            return None
        said = f"order {row.client_order_id}: recorded as the broker's {row.broker_order_id} from the send's answer; "
        said += f"the broker lists and finds it as {order.id}"
        self.journal.log("order", action="id_corrected", bot=row.bot_id, client_order_id=row.client_order_id,
                         recorded=row.broker_order_id, broker=order.id)  # fmt: skip
        self.on_failure(BrokerError("bad_response", f"{said} (the id was put right)", operation="order_sync"))
        return self._set(row, broker_order_id=order.id)

    def _contradicted(self, row: OrderRow, exc: Contradiction) -> None:
        self.journal.log("order", action="contradicted", bot=row.bot_id, client_order_id=row.client_order_id,
                         detail=str(exc))  # fmt: skip
        self.on_failure(BrokerError("bad_response", f"{exc} (nothing of it was recorded)", operation="order_sync"))

    def _sent(self, row: OrderRow, order: Order, action: str) -> None:
        """The broker's answer to a send (or the lookup after a failed one) recorded; one that contradicts the row
        leaves the order `unknown` (the broker has something under its client_order_id: never sent again, looked
        up every tick), and halts."""
        self.sent += 1
        try:
            taken = self._id_taken(row, order.id)
            if taken is not None:
                raise Contradiction(f"order {row.client_order_id}: answered with {order.id}, the id of our working {taken}")
            self._apply(row, order, action)
        except Contradiction as exc:
            self._contradicted(row, exc)
            self._set(row, status="unknown", error=f"{EXISTS}: {exc}")

    def _id_taken(self, row: OrderRow, order_id: str) -> str | None:
        """The client_order_id of another order of ours still working under `order_id`, the id a send's answer gives
        `row`; None when no other has it. Recorded, a cancel of `row` would go out under that id and cancel the
        other order (an exit, maybe); the answer is not about `row`."""
        for other in self.store.orders(statuses=lifecycle.WORKING):
            if other.broker_order_id == order_id and other.client_order_id != row.client_order_id:
                return other.client_order_id
        return None

    def recover_pending(self, positions: Iterable[Position]) -> None:
        """At start-up (and at reconciliation after a failed start): intents committed before a crash, each
        looked up by client_order_id first. Adopt what reached the broker. A recent exit not found is sent again at
        once (same client_order_id, so it cannot be doubled: a lookup's 404 may be a listing that lags, and the
        broker answers the second POST of a landed one with 422 "must be unique"), when the broker's `positions`
        (read this tick) still hold what it sells: an exit only reduces risk while the position is there. An entry
        never is (its signal, its preflight and any halt since belong to the run that died): one whose POST may
        have left stays `unknown` until lookups prove it absent (`_proved_absent`), then ends `not_sent`, as does
        anything older than RESEND_WITHIN. An exit an opposite order on its symbol would cross is held, as
        `send_pending` holds one, and goes out from there once that order is done."""
        now = self.clock.now()
        held: dict[str, float] = {}
        for position in positions:
            held[position.symbol] = held.get(position.symbol, 0.0) + position.qty
        for row in self.store.orders(statuses=lifecycle.LOCAL):
            found = self.broker.get_order_by_client_id(row.client_order_id)  # BrokerError: retried next start/tick
            if found is not None:
                self._not_found.pop(row.client_order_id, None)
                self._checked(row, found, "recovered")
            elif (row.error or "").startswith(EXISTS):
                continue  # the broker said it has it: it stays `unknown`, looked up every tick until found
            elif row.purpose == "entry" and not self._never_posted(row) and not self._proved_absent(row):
                # an entry ended `not_sent` frees its bot to enter again under a new id, beside the one that may
                # have landed: it waits for proof. An exit goes on below: sent again under its own id, which the
                # broker refuses to take twice (a 422 "must be unique" says the first landed: looked up until found)
                self._await_lookups(row)
            elif row.purpose == "exit" and (short := _more_than_held(row, held.get(row.symbol, 0.0))) is not None:
                # the position went meanwhile (closed by hand, by the broker): sold as recorded, the exit would open
                # a short where the account allows one; what the bots own and the broker does not halts next
                self._set(row, status="not_sent", error=short)
                self.journal.log("order", action="not_sent", bot=row.bot_id, client_order_id=row.client_order_id, reason=short)
            elif row.purpose == "exit" and now - row.created_at <= RESEND_WITHIN and (in_the_way := self._crossing(row)):
                # held behind an opposite order (the run that ended may have been holding it): sent by `send_pending`
                # once that is done. Sent at once, Alpaca refused it as a wash trade and the exit ended `rejected`
                kept_back: set[str] = set()
                self._hold(row, in_the_way, now, kept_back)
                self._held |= kept_back
            elif row.purpose == "exit" and now - row.created_at <= RESEND_WITHIN:
                # an exit this run recorded while start-up reconciliation still failed (exits are managed
                # meanwhile: sized reduce-only, they cannot add risk), or one a run that ended left
                action = "send_before_reconciled" if row.client_order_id in self._mine else "resend_after_restart"
                self.journal.log("order", action=action, bot=row.bot_id, client_order_id=row.client_order_id)
                self._send(row)
            else:
                reason = "an entry is not resent after a restart" if row.purpose == "entry" else "too old to resend"
                self._set(row, status="not_sent", error=reason)
                self.journal.log("order", action="not_sent", bot=row.bot_id, client_order_id=row.client_order_id, reason=reason)

    def _crossing(self, row: OrderRow) -> list[OrderRow]:
        """The orders working (or whose send is in doubt) on the other side of `row`'s symbol: Alpaca would refuse
        `row` as a potential wash trade while any is (send_pending)."""
        opposite = "sell" if row.side == "buy" else "buy"
        working = self.store.orders(statuses=lifecycle.WORKING | {"unknown"})
        return [o for o in working if o.symbol == row.symbol and o.side == opposite]

    def _never_posted(self, row: OrderRow) -> bool:
        """An intent this process recorded and has not tried to send: no request for it has left (an exception out of
        a send moves its row to `unknown`). Any other local row may be at the broker: a run that ended may have
        POSTed it and died before the answer, or the answer was lost."""
        return row.status == "pending" and row.client_order_id in self._mine

    def _await_lookups(self, row: OrderRow) -> None:
        """A local row whose POST may have left, not found yet: `unknown` (looked up by every sync), never sent again
        until lookups prove it absent (`_proved_absent`)."""
        if row.status != "pending":
            return
        said = "a run that ended left it unanswered: looked up until found or proved never sent"
        self._set(row, status="unknown", error=said)
        self.journal.log("order", action="awaiting_lookups", bot=row.bot_id, client_order_id=row.client_order_id)

    def _set(self, row: OrderRow, **changes: Any) -> OrderRow:
        if "status" in changes:
            lifecycle.check_move(row.client_order_id, row.status, changes["status"])
            if changes["status"] not in lifecycle.LOCAL:
                self._not_found.pop(row.client_order_id, None)  # decided: its lookups are counted no more
            if changes["status"] == "not_sent" and not str(changes.get("error") or "").startswith(NEVER_POSTED):
                self._maybe_unsent = True  # a request went out for it: `_find_unsent_fills` has one to look for
            if changes["status"] in lifecycle.ENDED:
                self._seen.pop(row.client_order_id, None)  # no fill to judge any more (one found after is seen anew)
        self.store.update_order(row.client_order_id, self.clock.now(), **changes)
        return dataclasses.replace(row, **changes)

    def _apply(self, row: OrderRow, order: Order, action: str) -> None:
        """Record the broker's view of an order and turn any new fill into owned-position changes. A `replaced`
        order (Alpaca may replace one itself, after a corporate action) is followed to its replacement first,
        which the engine then owns like the order it replaces; until the replacement is read, nothing moves.

        The order's new status and filled quantity, the positions its fill moves and the counters commit in one
        transaction: a crash between them would leave a fill recorded on the order but owned by no bot, which no
        later sync could repair (the fill is counted from the difference in filled quantity). The replacement
        is read before it, so no transaction waits on the network.

        Contradiction when the answer is not about the order the row records (`_contradicts`): nothing is written."""
        # the answer to our own POST is the order that request made (a duplicate id is a 422, never an order): only an
        # order found under our id is held to having been made after the row (`_foreign`), so a host clock a few
        # seconds ahead of the broker's halts only on the rare paths that look an order up, not on every order
        contradiction = _contradicts(row, order, found=action != "submitted")
        if contradiction is not None:
            raise Contradiction(f"order {row.client_order_id}: {contradiction}")
        if row.client_order_id not in self._seen:
            self._watch_price(row)  # an order of an earlier run, or one ended here: held to the quotes from now on
        chain: list[Order] = []  # the replacement, and its own replacements when it was replaced in turn
        if order.status == "replaced" and row.status != "replaced" and order.replaced_by:
            chain = self._replacements(row, order)
            if not chain:
                return  # a replacement not readable yet: the replaced order stays as it was, followed again next tick
        if not chain and _unchanged(row, order):
            return  # nothing new: no write, no transaction (every working order, every tick)
        with self.store.transaction():
            replaced = row
            for replacement in chain:
                replaced = self._adopt_replacement(replaced, replacement)
            self._record(row, order, action)
        failpoints.reach("order_committed")  # the broker's answer committed; a simulated exchange's own save may not be

    def _replacements(self, row: OrderRow, order: Order) -> list[Order]:
        """The order that replaced `order`, and, while that one was replaced too (twice between two reads: each
        `replaced`, naming the next), each next one: the last is the order that works on. Only the first was
        followed: the second, adopted as a new intent, cannot be `replaced` (IllegalOrderMove), so every tick
        halted on it and the order working at the broker was never followed. A chain ends at a replacement some
        row already records (its own row follows it). Empty when one is unreadable (a failure) or not found yet.

        Contradiction when a replacement is in another symbol or side, or the chain comes back on itself."""
        chain: list[Order] = []
        seen = {order.id}
        current = order
        while current.status == "replaced" and current.replaced_by:
            if current.replaced_by in seen or len(chain) >= MAX_REPLACEMENTS:
                why = "which it already passed through" if current.replaced_by in seen else "too many times to follow"
                raise Contradiction(f"order {row.client_order_id}: replaced by {current.replaced_by}, {why}")
            try:
                replacement = self.broker.get_order(current.replaced_by)
            except BrokerError as exc:
                self.on_failure(exc)
                return []
            if replacement is None:
                self._replacement_unfound(row, current.replaced_by)
                return []
            for name in ("symbol", "side"):  # a replacement changes the amounts, the price, the time in force only
                if getattr(replacement, name) != getattr(row, name):
                    raise Contradiction(f"order {row.client_order_id} ({getattr(row, name)}) was replaced by "
                                        f"{replacement.id}, whose {name} is {getattr(replacement, name)}")  # fmt: skip
            chain.append(replacement)
            seen.add(replacement.id)
            if self.store.order(replacement.client_order_id) is not None:
                break  # already recorded: its own row follows it
            current = replacement
        self._replacements_missing.pop(row.client_order_id, None)
        return chain

    def _replacement_unfound(self, row: OrderRow, replaced_by: str) -> None:
        """The broker says it replaced the order, and does not find the replacement: a moment's lag is waited out;
        past EXISTS_PATIENCE it is an answer we cannot read (reported every tick until the replacement is read,
        which halts), as for an order the broker took and then neither lists nor finds. Unreported, the replaced
        order was followed every tick for ever, its row working and its bot waiting on an order nobody can see."""
        now = self.clock.now()
        since = self._replacements_missing.setdefault(row.client_order_id, now)
        if now - since > EXISTS_PATIENCE:
            lost = f"{row.client_order_id}: replaced by {replaced_by}, which the broker has not found since {since.isoformat()}"
            self.on_failure(BrokerError("bad_response", lost, operation="get_order"))

    def _record(self, row: OrderRow, order: Order, action: str) -> None:
        old_qty, old_avg = row.filled_qty, row.filled_avg_price
        new_qty, new_avg = order.filled_qty, order.filled_avg_price
        changed = order.status != row.status or new_qty != old_qty
        if _unchanged(row, order):
            return  # nothing new: no write
        booked: tuple[float, float | None] | None = None
        if new_qty > old_qty + 1e-12 and new_avg is not None:
            booked = self._fill_price(row, old_qty, old_avg, new_qty, new_avg)  # judged while the quotes are kept
        row = self._set(
            row,
            status=order.status,
            broker_order_id=order.id,
            filled_qty=new_qty,
            filled_avg_price=new_avg,
            qty=order.qty if order.qty is not None else row.qty,
        )
        failpoints.reach("order_updated")  # the crash tests' kill between an order's new fill and its position
        if booked is not None:
            self._fill(row, new_qty - old_qty, *booked)
        if order.status == "rejected" and changed:
            self.store.bump_counter(self._today(), row.bot_id, "rejections")
        if changed:
            self.journal.log(
                "order",
                action=action,
                bot=row.bot_id,
                client_order_id=row.client_order_id,
                status=order.status,
                filled_qty=new_qty,
                filled_avg_price=new_avg,
                symbol=row.symbol,
            )

    def _watch_price(self, row: OrderRow) -> None:
        """Start holding `row`'s fills to the quotes of its symbol, from the last sync's on (`fillprice`)."""
        quote = fillprice.quote_of(self._quotes, row.symbol, self.quote_max_age_s) if self._quotes is not None else None
        if quote is not None:
            seen = self._seen.get(row.client_order_id) or fillprice.Seen(row.symbol, *quote, (quote[0] + quote[1]) / 2)
            self._seen[row.client_order_id] = seen.add(*quote)

    def _fill_price(
        self, row: OrderRow, old_qty: float, old_avg: float | None, new_qty: float, new_avg: float
    ) -> tuple[float, float | None]:
        """(the price a new fill of `row`'s order is booked at, the broker's own when that is another).

        The broker's price, unless it is one nobody could have traded the order at (`fillprice.implausible`: no price,
        worse than its limit, outside the band around the quotes seen since it was recorded, when one of the market at
        this tick is read), judged for the order's new average and for the part added since the last answer. Then the
        fill is booked at a stand-in (`fillprice.stand_in`) and the system halts on an answer it cannot explain, in
        the transaction that books it, so no kill between them leaves the fill booked unexplained. With no stand-in
        either: Contradiction (nothing of the answer booked; it halts)."""
        added = added_fill_price(old_qty, old_avg, new_qty, new_avg)
        # The band only with a usable quote of the market at this tick (`fillprice.quote_of`: read now, not from a
        # cached chain, not stale by its own time): made of earlier quotes alone, it would refuse a true fill after a
        # gap (a day order filled at the next open while the feed is one-sided, frozen or down; a 0DTE stop judged
        # against a chain a minute old) and book it at the price before the gap.
        now_quoted = (
            self.fill_band
            and self._quotes is not None
            and fillprice.quote_of(self._quotes, row.symbol, self.quote_max_age_s) is not None
        )
        seen = self._seen.get(row.client_order_id) if now_quoted else None
        slack = fill_value_slack((old_avg or 0.0) * old_qty, new_avg * new_qty) / (new_qty - old_qty)
        why = fillprice.implausible(row, new_avg, seen) or fillprice.implausible(row, added, seen, slack=slack)
        if why is None:
            return added, None
        price = fillprice.stand_in(row, seen)
        if price is None:
            raise Contradiction(f"order {row.client_order_id}: {why}, and no quote was seen to book it at")
        said = f"order {row.client_order_id} ({row.side} {row.symbol}) {why}: its {new_qty - old_qty:g} booked at "
        said += f"{price:g} (the last quote seen), unverified"
        self.journal.log(
            "order", action="fill_price_unverified", bot=row.bot_id, client_order_id=row.client_order_id,
            symbol=row.symbol, side=row.side, broker_price=_as_logged(new_avg), booked_price=round(price, 6),
            band=[round(x, 6) for x in seen.band()] if seen is not None else None, reason=why,
        )  # fmt: skip
        self.on_failure(BrokerError("bad_response", said, operation="order_sync"))
        return price, added

    def _adopt_replacement(self, row: OrderRow, replacement: Order) -> OrderRow:
        """Record the order that replaced `row` under the same bot and purpose (once); its row. A cancel still
        wanted for `row` (its bot gave it up while the broker replaced it) is wanted for its replacement: it would
        work on."""
        self._read_after_snapshot.add(replacement.client_order_id)
        if row.client_order_id in self._cancels_wanted:
            self._cancels_wanted[replacement.client_order_id] = None
        adopted = self.store.order(replacement.client_order_id)
        if adopted is None:
            now = self.clock.now()
            adopted = dataclasses.replace(
                row,
                client_order_id=replacement.client_order_id,
                qty=replacement.qty,
                notional=replacement.notional,
                limit_price=replacement.limit_price,
                order_type=replacement.order_type,
                time_in_force=replacement.time_in_force,
                status="pending",
                broker_order_id=None,
                filled_qty=0.0,
                filled_avg_price=None,
                reason=f"replaces {row.client_order_id}",
                error=None,
                created_at=now,
                updated_at=now,
            )
            self.store.add_order(adopted)
            if row.client_order_id in self._seen:  # the same order to the market: its fills held to the same quotes
                self._seen[adopted.client_order_id] = self._seen[row.client_order_id]  # (immutable)
            self._watch_price(adopted)
            self.journal.log(
                "order",
                action="replacement_adopted",
                bot=row.bot_id,
                client_order_id=adopted.client_order_id,
                replaces=row.client_order_id,
            )
            self._record(adopted, replacement, "update")
        return adopted

    def _today(self) -> date:
        """The trading date in system.timezone now: what a fill or a refusal is counted on, whatever its order's date
        (a held intent sent, or a queued order refused, after midnight). Counted on the order's day, a refusal went
        to a day that is over, and the ExitBot's repeated-rejections anomaly, which reads today's count, missed it."""
        return self.clock.now().astimezone(self.zone).date()

    def _fill(self, row: OrderRow, qty: float, price: float, broker_price: float | None = None) -> None:
        """A fill moves the bot's own position; the sell that makes it flat closes its round trip: a `trade`.
        A fill of the ExitBot's flatten of a shared symbol is split among the bots holding it, in proportion.

        What it realizes, its trade and its count are the day's it is seen on (system.timezone), not its order's:
        a day order sent after the close fills at the next open, a GTC crypto order past midnight. Booked on the
        order's date, a loss taken today went to a day that is over: today's budget (`portfolio.budget_left`) never
        saw it, and the bot went on opening with the budget it had just lost.

        `broker_price`: the broker's price, when the fill is booked at a stand-in for it (`_fill_price`)."""
        day = self._today()
        if row.bot_id == EXITBOT_ID:
            holders = [p for p in self.store.positions() if p.symbol == row.symbol and p.qty > 0]
            shares = split_fill(qty, [p.qty for p in holders], coins=is_crypto(row.symbol))
            for holder, share in zip(holders, shares, strict=True):
                self._fill_position(dataclasses.replace(row, bot_id=holder.bot_id), holder, share, price, day)
        else:
            held = next((p for p in self.store.positions(row.bot_id) if p.symbol == row.symbol), None)
            self._fill_position(row, held, qty, price, day)
        self.store.bump_counter(day, row.bot_id, "fills")
        self.fills += 1
        unverified = {} if broker_price is None else {"price_unverified": True, "broker_price": _as_logged(broker_price)}
        self.journal.log(
            "fill", bot=row.bot_id, client_order_id=row.client_order_id, symbol=row.symbol, side=row.side, qty=qty,
            price=round(price, 6), **unverified,
        )  # fmt: skip

    def _fill_position(self, row: OrderRow, held: PositionRow | None, qty: float, price: float, day: date) -> None:
        bot_id, symbol = row.bot_id, row.symbol
        now = self.clock.now()
        if held is None:
            held = PositionRow(bot_id, symbol, 0.0, 0.0, now)
        if row.side == "buy":
            self.bought_this_tick[symbol] = self.bought_this_tick.get(symbol, 0.0) + qty
            total = held.qty + qty
            avg = (held.avg_entry_price * held.qty + price * qty) / total
            self.store.save_position(dataclasses.replace(held, qty=total, avg_entry_price=avg, bought_qty=held.bought_qty + qty))
            return
        sold = min(qty, held.qty)  # never more than the bot owns
        self.sold_this_tick[symbol] = self.sold_this_tick.get(symbol, 0.0) + sold
        pnl = sold * (price - held.avg_entry_price) * contract_multiplier(symbol)
        self.store.add_realized_pnl(day, bot_id, pnl)
        after = dataclasses.replace(
            held,
            qty=held.qty - sold,
            sold_qty=held.sold_qty + sold,
            sold_value=held.sold_value + sold * price,
            realized=held.realized + pnl,
        )
        self.store.save_position(after)
        if is_dust(after.qty, after.bought_qty) and after.sold_qty > 0:
            self._close_trade(after, row, now, day)

    def _close_trade(self, position: PositionRow, exit_row: OrderRow, now: datetime, day: date) -> None:
        entry_price, fees = entry_and_fees(position)
        trade = TradeRow(
            bot_id=position.bot_id,
            symbol=position.symbol,
            trading_date=day,
            opened_at=position.opened_at,
            closed_at=now,
            qty=max(position.bought_qty, position.sold_qty),
            entry_price=entry_price,
            exit_price=position.sold_value / position.sold_qty,
            pnl=position.realized,
            fees=fees,
            exit_trigger=exit_row.reason,
        )
        self.store.add_trade(trade)
        self.journal.log(
            "trade",
            bot=trade.bot_id,
            symbol=trade.symbol,
            entry_time=trade.opened_at,
            exit_time=trade.closed_at,
            qty=trade.qty,
            entry_price=round(trade.entry_price, 6),
            exit_price=round(trade.exit_price, 6),
            pnl=cents(trade.pnl),  # rounded to the cent, a loss of 0.004 was logged -0.0
            fees=trade.fees,
            exit_trigger=trade.exit_trigger,
        )

    def moved_this_tick(self) -> dict[str, tuple[float, float]]:
        """Symbol -> (bought, sold) in the fills booked since this tick's sync began, which the snapshot's positions
        (read before its orders) may not show yet (`reconcile.mid_fill`)."""
        bought, sold = self.bought_this_tick, self.sold_this_tick
        return {symbol: (bought.get(symbol, 0.0), sold.get(symbol, 0.0)) for symbol in {*bought, *sold}}

    # --- cancels -------------------------------------------------------------------------------------------

    def cancel_after_commit(self, rows: Iterable[OrderRow]) -> None:
        """Cancel these working entries once the tick's transaction is committed (`send_cancels`): a request made
        inside it would hold SQLite's write lock for as long as the broker takes to answer (its whole timeout),
        and an operator's `halt` or `resume` meanwhile would fail on a locked state file."""
        self._cancels_due.extend(rows)

    def send_cancels(self) -> int:
        """Send the cancels asked for during the committed tick, and again those asked for earlier that no request
        has reached yet (`cancel_entries`); returns how many were requested."""
        due, self._cancels_due = self._cancels_due, []
        return self.cancel_entries(due)

    def tick_committed(self) -> None:
        """The tick's transaction committed: the intents recorded in it are the state file's now (`rolled_back`)."""
        self._uncommitted.clear()

    def rolled_back(self) -> None:
        """The tick's transaction was rolled back: what it asked to cancel is decided again next tick (what a
        committed tick asked for stays wanted), and what this manager keeps in memory of the intents it recorded is
        forgotten with their rows (`_uncommitted`): every map keyed by an order holds only orders the file has."""
        self._cancels_due.clear()
        for client_order_id in self._uncommitted:
            self._seen.pop(client_order_id, None)
            self._mine.discard(client_order_id)
        self._recorded = max(0, self._recorded - len(self._uncommitted))
        self._uncommitted.clear()

    def cancel_entries(self, rows: Iterable[OrderRow]) -> int:
        """Cancel these entry orders now, and those asked for earlier that no request has reached yet; returns how
        many were requested. One the broker took (`cancel_requested`) stays wanted until the order ends, and is asked
        again if it still works, not even pending_cancel, CANCEL_PATIENCE later.

        A machine asks for its entry's cancel once, as it leaves `entering`, and a restart once for the entries a
        dead run abandoned; nothing asks again. So a cancel stays wanted until the order ended (a refusal as no
        longer cancellable included: `_cancel_refused`): a DELETE that timed out, an entry whose POST
        answer was lost (no broker id yet: recovery finds it) or one the broker is replacing is asked again next
        tick. A GTC entry left working would fill, later, for a bot that gave it up. An entry still here, held back
        behind an opposite order, is not sent at all."""
        fresh = {row.client_order_id: row for row in rows if row.purpose == "entry"}
        wanted = {**self._cancels_wanted, **dict.fromkeys(fresh)}
        self._cancels_wanted = {}
        requested = 0
        now = self.clock.now()
        for client_order_id in wanted:
            row = fresh.get(client_order_id) or self.store.order(client_order_id)
            if row is None or row.status not in lifecycle.OPEN:
                self.cancel_requested.pop(client_order_id, None)  # ended: nothing more to watch, nor to remember
                self.cancels_refused.discard(client_order_id)
                continue
            taken_at = self.cancel_requested.get(client_order_id)
            if taken_at is not None:
                self._cancels_wanted[client_order_id] = None  # the broker has the request: wanted until the order ends
                if row.status == "pending_cancel" or now - taken_at < CANCEL_PATIENCE:
                    continue
            if row.status == "pending":  # never reached the broker (held behind an opposite order): it never will
                if self._halt_over(row, now) is not None:
                    self._cancels_wanted[client_order_id] = None  # send_pending ends it, naming the halt
                    continue
                self._entry_not_sent(row, "its bot gave the entry up before it was sent", "its bot gave the entry up")
                continue
            if row.status == "pending_cancel":
                continue  # a cancel is under way already
            if not row.broker_order_id or row.status not in lifecycle.WORKING or row.status in lifecycle.NO_CANCEL:
                self._cancels_wanted[client_order_id] = None  # its send in doubt, or being replaced: next tick
                continue
            requested += 1
            # failed: asked again next tick; taken or refused: watched until the order ends (`_cancel_refused`)
            if self._request_cancel(row) == "refused":
                self._cancel_refused(row, now)
            self._cancels_wanted[client_order_id] = None
        return requested

    def _cancel_refused(self, row: OrderRow, now: datetime) -> None:
        """The broker refused a cancel as not cancellable (422): true of an order that has just ended, which the next
        sync records, and the wish ends with it. Believed at once, an entry the broker went on showing working was
        never asked for again: it worked on, silently, for a bot that had given it up. So the refusal is treated as a
        cancel taken: asked again if the order still works CANCEL_PATIENCE later; and a second refusal of an order
        the broker still shows working contradicts the first: reported as an answer that cannot be read (it
        halts), the cancel still asked once a minute until the order ends."""
        if row.client_order_id in self.cancels_refused:
            said = f"{row.client_order_id}: the broker refuses to cancel it as not cancelable, and still shows it {row.status}"
            self.on_failure(BrokerError("bad_response", said, operation="cancel_order"))
        self.cancels_refused.add(row.client_order_id)
        self.cancel_requested[row.client_order_id] = now

    def _request_cancel(self, row: OrderRow) -> Literal["taken", "refused", "failed"]:
        """One DELETE for a working order with a broker id: taken by the broker, refused as no longer cancellable
        (422: the next sync records how it ended), or failed to get through (counted as a broker failure)."""
        assert row.broker_order_id is not None
        self.journal.log("order", action="cancel_requested", bot=row.bot_id, client_order_id=row.client_order_id)
        self.journal.flush()
        try:
            self.broker.cancel_order(row.broker_order_id)
            failpoints.reach("after_cancel")  # the broker took the cancel; nothing of it recorded
        except BrokerError as exc:
            if exc.kind == "rejected":
                return "refused"
            self.on_failure(exc)
            return "failed"
        self.cancel_requested[row.client_order_id] = self.clock.now()
        return "taken"


def split_fill(qty: float, held: list[float], *, coins: bool) -> list[float]:
    """What each holder sells of a fill of `qty` of the ExitBot's flatten of a symbol they hold `held` of: in
    proportion, adding up to the fill exactly; all of it when the whole sum sold.

    Whole units stay whole: where the fill and every holding are whole numbers and not `coins` (option contracts
    always, shares bought whole), each share is a whole number, the remainders going one unit each to the largest fractions. Split
    in exact proportion, a flatten of 60 contracts held 20 and 40, filled 50 and expired at the close, left 3.33 and
    6.67 contracts owned: each bot's exit of its own was refused (an option order takes whole contracts), and so
    was every exit after it."""
    total = sum(held)
    if total <= 0:
        return []
    if is_dust(total - qty, total):  # the whole sum sold: each holder sells all it holds
        return list(held)
    exact = [qty * h / total for h in held]
    if not coins and float(qty).is_integer() and all(float(h).is_integer() for h in held):
        whole = [float(math.floor(x + 1e-9)) for x in exact]
        left = round(qty - sum(whole))
        by_fraction = sorted(range(len(held)), key=lambda i: (-(exact[i] - whole[i]), -held[i], i))
        for i in by_fraction[:left]:
            whole[i] += 1.0
        return whole
    exact[-1] = qty - sum(exact[:-1])  # the split adds up to the fill exactly
    return exact


def _as_logged(price: float) -> float | str:
    """A broker's price for the log: a number JSON can hold, else its text (`nan`, `inf`)."""
    return round(price, 6) if math.isfinite(price) else str(price)


class Contradiction(Exception):
    """The broker's answer about an order is not about the order its row records: unreadable, never booked."""


def _more_than_held(row: OrderRow, held: float) -> str | None:
    """Why an exit recorded before a restart is not sent again, when it sells more than the broker holds of its
    symbol (beyond a float's rounding), or an amount it does not state; None when it may go."""
    if row.side != "sell":
        return None
    if row.qty is None:
        return "the exit states no quantity: not resent after a restart"
    if row.qty > held and not same_amount(row.qty, held):
        return f"the broker holds {held:g} of {row.symbol}, under the exit's {row.qty:g}: not resent after a restart"
    return None


def _contradicts(row: OrderRow, order: Order, found: bool = True) -> str | None:
    """What in the broker's `order` contradicts its row, or None. An order never changes what it is (Alpaca changes
    one by replacing it, under a new id), and its filled quantity never goes down. The adapter holds its answers to
    what it sent and said this run; after a restart the row is the only record, and a fill booked from such an
    answer moved a bot's position for good: MSFT's fill onto an AAPL position, a fill reported 5, 3, then 5 booked
    as 7 (the rise counted from the row's lowered quantity). The value filled is judged here only
    (`fill_value_contradicts`): the row holds what was booked, where the adapter's memory would also keep an answer
    refused here and then refuse the right one measured against it. `found`: the order was looked up or listed
    under the row's id (then it must also have been made after the row, `_foreign`), not our own POST's answer."""
    foreign = _foreign(row, order) if found else None
    if foreign is not None:
        return foreign
    for name in ORDER_FIXED:
        mine, theirs = getattr(row, name), getattr(order, name)
        if mine != theirs:
            return f"recorded with {name} {mine}, the broker's answer has {theirs}"
    for name in ORDER_AMOUNTS:
        mine, theirs = getattr(row, name), getattr(order, name)
        if mine is not None and theirs is not None and not same_amount(mine, theirs):
            return f"recorded with {name} {mine:g}, the broker's answer has {theirs:g}"
    if row.broker_order_id and order.id != row.broker_order_id:
        return f"recorded as the broker's {row.broker_order_id}, the broker's answer is {order.id}"
    if order.filled_qty < row.filled_qty and not same_amount(order.filled_qty, row.filled_qty):
        return f"{row.filled_qty:g} recorded filled, the broker's answer has {order.filled_qty:g}: a fill never goes back"
    if fill_value_contradicts(row.filled_qty, row.filled_avg_price, order.filled_qty, order.filled_avg_price):
        return (f"{row.filled_qty:g} recorded filled at {row.filled_avg_price or 0:g}, the broker's answer has "
                f"{order.filled_qty:g} at {order.filled_avg_price:g}: no fill lowers or moves the value filled")  # fmt: skip
    return None


def _foreign(row: OrderRow, order: Order) -> str | None:
    """Why `order`, found under the row's client_order_id, cannot be the row's, or None: the broker created it before
    this state file recorded the intent (less CLOCK_ALLOWANCE), so no send of ours made it, or it is not the order the
    row records (another symbol, side, type, time in force or amount), so no send of ours made it either. Judged while
    no broker id is recorded for the row (once one is, `_contradicts` holds the answer to that id). Two state files on
    one account give the same ids; the second file's POST is refused as a duplicate and the lookup finds the first
    file's order: taken as "our earlier try landed", both files booked the one fill, and each bot would sell it. One
    that differs was said only as a difference (or, by the adapter, as an answer that could not be read), and the
    trader was left looking for a broker fault, not for the other engine."""
    if row.broker_order_id:
        return None
    if order.created_at < row.created_at - CLOCK_ALLOWANCE:
        return (
            f"the broker created it at {order.created_at.isoformat()}, before this state file recorded it at "
            f"{row.created_at.isoformat()}: {NOT_OURS}"
        )
    for name in ORDER_FIXED:
        mine, theirs = getattr(row, name), getattr(order, name)
        if mine != theirs:
            return f"recorded with {name} {mine}, the broker's order under this id has {theirs}: not the order sent; {NOT_OURS}"
    for name in ORDER_AMOUNTS:  # an amount recorded is one sent: the broker's order without it is not the order sent
        mine, theirs = getattr(row, name), getattr(order, name)
        if mine is not None and (theirs is None or not same_amount(mine, theirs)):
            shown = "none" if theirs is None else f"{theirs:g}"
            return f"recorded with {name} {mine:g}, the broker's order under this id has {shown}: not the order sent; {NOT_OURS}"
    return None


def _unchanged(row: OrderRow, order: Order) -> bool:
    """The broker says nothing the row does not: same status, filled quantity, id and quantity."""
    return (
        order.status == row.status
        and order.filled_qty == row.filled_qty
        and order.id == row.broker_order_id
        and (order.qty is None or order.qty == row.qty)
    )


def entry_and_fees(position: PositionRow) -> tuple[float, float]:
    """(the buys' average fill price, the fees the round trip is seen to have paid) of a position sold whole.

    A crypto buy's fee is taken from the coins delivered, and the position keeps what they cost
    (`reconcile.cost_kept`): its entry price is then above the fills', and its realized P&L already net of that
    fee. What the buys paid is the cost of everything sold, `sold_value - realized` (per unit of the contract); over
    the quantity bought, that is the fills' price again, and the coins bought but never sold are the fee. Nothing
    else is seen: no order shows a commission, and a crypto sell's fee comes out of the dollars received. A
    position whose buys are not recorded (adopted) keeps its entry price and no fee."""
    bought, sold = position.bought_qty, position.sold_qty
    if bought <= 0 or sold <= 0:
        return position.avg_entry_price, 0.0
    paid = position.sold_value - position.realized / contract_multiplier(position.symbol)
    entry = paid / bought
    return entry, max((bought - sold) * entry, 0.0)
