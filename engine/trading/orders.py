"""Orders: deterministic client_order_ids, intents committed before they are sent, no blind re-POSTs.

The life of an order here:
  pending  -> the intent is committed to SQLite (before any request is made)
  (sent)   -> the broker's answer is recorded: accepted, filled, ... or rejected
  unknown  -> the send failed and the lookup could not tell; looked up again every tick
  not_sent -> lookups proved the broker never got it
After any error the order is looked up by client_order_id; a POST is repeated only for an intent that
provably never reached the broker, with the same client_order_id (which the broker refuses to accept twice).

Fills move the bot's owned positions (SQLite `positions`), from which exits are sized and the broker's
positions are reconciled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from engine.brokers.base import Broker, BrokerError, Order, OrderRequest, Snapshot
from engine.brokers.symbols import asset_class_of
from engine.core.clock import Clock
from engine.core.journal import Journal
from engine.core.store import StateStore

LOCAL_OPEN = ("pending", "unknown")
BROKER_OPEN = tuple(sorted(Order.OPEN_STATUSES))
OPEN = LOCAL_OPEN + BROKER_OPEN
RESEND_WITHIN = timedelta(seconds=60)


def multiplier(symbol: str) -> float:
    return 100.0 if asset_class_of(symbol) == "us_option" else 1.0


@dataclass
class OrderManager:
    store: StateStore
    broker: Broker
    journal: Journal
    clock: Clock
    on_failure: Callable[[BrokerError], None]
    fills: int = 0
    sent: int = 0
    cancel_requested: set[str] = field(default_factory=set)

    # --- intents -------------------------------------------------------------------------------------------

    def next_client_order_id(self, bot_id: str, day: date) -> str:
        sequence = self.store.bump_counter(day, bot_id, "order_seq")
        return f"{bot_id}-{day:%Y%m%d}-{sequence:04d}"

    def record_intent(self, bot_id: str, day: date, purpose: str, request: OrderRequest, reason: str) -> None:
        """Commit the intent (inside the tick's transaction), before anything is sent."""
        now = self.clock.now().isoformat()
        row = {
            "client_order_id": request.client_order_id,
            "bot_id": bot_id,
            "trading_date": day.isoformat(),
            "purpose": purpose,
            "symbol": request.symbol,
            "side": request.side,
            "qty": request.qty,
            "notional": request.notional,
            "order_type": request.order_type,
            "limit_price": request.limit_price,
            "time_in_force": request.time_in_force,
            "status": "pending",
            "reason": reason,
            "created_at": now,
            "updated_at": now,
        }
        self.store.add_order(row)
        logged = {k: v for k, v in row.items() if k not in ("bot_id", "trading_date", "status", "created_at", "updated_at")}
        self.journal.log("order", action="intent", bot=bot_id, **logged)

    @staticmethod
    def request_of(row: dict[str, Any]) -> OrderRequest:
        return OrderRequest(
            symbol=row["symbol"],
            side=row["side"],
            client_order_id=row["client_order_id"],
            order_type=row["order_type"],
            time_in_force=row["time_in_force"],
            qty=row["qty"],
            notional=row["notional"],
            limit_price=row["limit_price"],
        )

    # --- sending -------------------------------------------------------------------------------------------

    def send_pending(self) -> None:
        for row in self.store.orders(statuses=("pending",)):
            self._send(row)

    def _send(self, row: dict[str, Any]) -> None:
        cid = row["client_order_id"]
        try:
            order = self.broker.submit_order(self.request_of(row))
        except BrokerError as exc:
            self.on_failure(exc)
            self.journal.log(
                "order",
                action="send_failed",
                bot=row["bot_id"],
                client_order_id=cid,
                kind=exc.kind,
                status=exc.status,
                message=exc.message,
            )
            self._after_send_error(row, exc)
            return
        self.sent += 1
        self._apply(row, order, "submitted")

    def _after_send_error(self, row: dict[str, Any], error: BrokerError) -> None:
        """Never re-POST blindly: ask the broker whether the order exists."""
        cid = row["client_order_id"]
        try:
            found = self.broker.get_order_by_client_id(cid)
        except BrokerError as exc:
            self.on_failure(exc)
            self._set(row, status="unknown", error=f"{error.kind}: {error.message}; lookup failed: {exc.kind}")
            return
        if found is not None:
            self.sent += 1
            self._apply(row, found, "found_after_error")
        elif error.kind == "rejected":
            self._set(row, status="rejected", error=error.message)
            self.store.bump_counter(date.fromisoformat(row["trading_date"]), row["bot_id"], "rejections")
            self.journal.log("order", action="rejected", bot=row["bot_id"], client_order_id=cid, message=error.message)
        else:
            self._set(row, status="unknown", error=f"{error.kind}: {error.message}")

    # --- keeping up with the broker ------------------------------------------------------------------------

    def sync(self, snapshot: Snapshot) -> None:
        """Bring every order we think is open up to date from the snapshot, looking up the ones that left it."""
        if snapshot.open_orders is None:
            return  # unknown this tick: nothing is concluded from a failed read
        live = {o.client_order_id: o for o in snapshot.open_orders}
        now = self.clock.now()
        for row in self.store.orders(statuses=("unknown", *BROKER_OPEN)):
            order = live.get(row["client_order_id"])
            if order is not None:
                self._apply(row, order, "update")
                continue
            try:
                found = self.broker.get_order_by_client_id(row["client_order_id"])
            except BrokerError as exc:
                self.on_failure(exc)
                continue
            if found is not None:
                self._apply(row, found, "update")
            elif row["status"] == "unknown" and now - datetime.fromisoformat(row["created_at"]) > RESEND_WITHIN:
                self._set(row, status="not_sent")
                self.journal.log("order", action="not_sent", bot=row["bot_id"], client_order_id=row["client_order_id"])

    def recover_pending(self) -> None:
        """At start-up: intents committed before a crash. Adopt what reached the broker; resend what provably
        did not and is still recent (same client_order_id, so it cannot be doubled); drop the rest."""
        now = self.clock.now()
        for row in self.store.orders(statuses=LOCAL_OPEN):
            found = self.broker.get_order_by_client_id(row["client_order_id"])  # BrokerError: retried next start/tick
            if found is not None:
                self._apply(row, found, "recovered")
            elif now - datetime.fromisoformat(row["created_at"]) <= RESEND_WITHIN:
                self.journal.log(
                    "order", action="resend_after_restart", bot=row["bot_id"], client_order_id=row["client_order_id"]
                )
                self._send(row)
            else:
                self._set(row, status="not_sent")
                self.journal.log("order", action="not_sent", bot=row["bot_id"], client_order_id=row["client_order_id"])

    def _set(self, row: dict[str, Any], **changes: Any) -> None:
        self.store.update_order(row["client_order_id"], self.clock.now(), **changes)
        row.update(changes)

    def _apply(self, row: dict[str, Any], order: Order, action: str) -> None:
        """Record the broker's view of an order and turn any new fill into owned-position changes."""
        old_qty, old_avg = float(row["filled_qty"] or 0), row["filled_avg_price"]
        new_qty, new_avg = order.filled_qty, order.filled_avg_price
        changed = order.status != row["status"] or new_qty != old_qty
        self._set(
            row,
            status=order.status,
            broker_order_id=order.id,
            filled_qty=new_qty,
            filled_avg_price=new_avg,
            qty=order.qty if order.qty is not None else row["qty"],
        )
        if new_qty > old_qty + 1e-12 and new_avg is not None:
            delta = new_qty - old_qty
            price = (new_avg * new_qty - (old_avg or 0) * old_qty) / delta
            self._fill(row, delta, price)
        if order.status == "rejected" and changed:
            self.store.bump_counter(date.fromisoformat(row["trading_date"]), row["bot_id"], "rejections")
        if changed:
            self.journal.log(
                "order",
                action=action,
                bot=row["bot_id"],
                client_order_id=row["client_order_id"],
                status=order.status,
                filled_qty=new_qty,
                filled_avg_price=new_avg,
                symbol=row["symbol"],
            )

    def _fill(self, row: dict[str, Any], qty: float, price: float) -> None:
        bot_id, symbol = row["bot_id"], row["symbol"]
        now = self.clock.now()
        held = next((p for p in self.store.positions(bot_id) if p["symbol"] == symbol), None)
        held_qty = held["qty"] if held else 0.0
        held_avg = held["avg_entry_price"] if held else 0.0
        day = date.fromisoformat(row["trading_date"])
        if row["side"] == "buy":
            total = held_qty + qty
            avg = (held_avg * held_qty + price * qty) / total
            opened = datetime.fromisoformat(held["opened_at"]) if held else now
            self.store.set_position(bot_id, symbol, total, avg, opened)
        else:
            sold = min(qty, held_qty)
            pnl = sold * (price - held_avg) * multiplier(symbol)
            self.store.add_realized_pnl(day, bot_id, pnl)
            opened = datetime.fromisoformat(held["opened_at"]) if held else now
            self.store.set_position(bot_id, symbol, held_qty - sold, held_avg, opened)
        self.store.bump_counter(day, bot_id, "fills")
        self.fills += 1
        self.journal.log(
            "fill",
            bot=bot_id,
            client_order_id=row["client_order_id"],
            symbol=symbol,
            side=row["side"],
            qty=qty,
            price=round(price, 6),
        )

    # --- cancels -------------------------------------------------------------------------------------------

    def cancel_entries(self, bot_id: str | None = None) -> None:
        """Cancel working entry orders (of one bot, or of every bot), once each."""
        for row in self.store.orders(statuses=BROKER_OPEN, bot_id=bot_id):
            if row["purpose"] != "entry" or not row["broker_order_id"] or row["client_order_id"] in self.cancel_requested:
                continue
            try:
                self.broker.cancel_order(row["broker_order_id"])
                self.cancel_requested.add(row["client_order_id"])
                self.journal.log("order", action="cancel_requested", bot=row["bot_id"], client_order_id=row["client_order_id"])
            except BrokerError as exc:
                if exc.kind != "rejected":  # 422: it already ended; the next sync records how
                    self.on_failure(exc)

    # --- reading -------------------------------------------------------------------------------------------

    def working(self, bot_id: str) -> dict[str, list[dict[str, Any]]]:
        """The bot's orders not yet ended, by purpose ("entry", "exit"), from one query."""
        by_purpose: dict[str, list[dict[str, Any]]] = {"entry": [], "exit": []}
        for row in self.store.orders(statuses=OPEN, bot_id=bot_id):
            by_purpose.setdefault(row["purpose"], []).append(row)
        return by_purpose

    def last_entry(self, bot_id: str, day: date) -> dict[str, Any] | None:
        rows = [r for r in self.store.orders(bot_id=bot_id) if r["purpose"] == "entry" and r["trading_date"] == day.isoformat()]
        return rows[-1] if rows else None
